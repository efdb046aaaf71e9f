"""Which input channel lands in which output channel, for 4-channel files ffmpeg tags differently.

Writes 1 s of four tones (500, 700, 1100, 1300 Hz, amplitude 0.25, one per channel 0-3) into
AAC (.m4a, .mp4) and PCM (.wav, .mkv) files tagged with each 4-channel layout ffmpeg writes
(``4.0``, ``quad``, an unspecified-order ``4 channels``) and into a plain 16-bit WAVE file
without a channel mask (Python's ``wave``), then reads each file back two ways:

- ``ours``: ``pipeline.decode.decode_audio`` (``-ar`` only, no layout change);
- ``4.0 remix``: ffmpeg with ``-af aformat=channel_layouts=4.0``, the libswresample conversion
  that PyAV's ``AudioResampler(layout="4.0")`` (the authors' YT-360 loader) performs; where it
  mixes, also with 16-bit output as that loader asks (``format="s16p"``), for which
  libswresample scales the whole matrix so that no output row sums above 1.

It also remixes a 6-channel 5.1 file holding ``X Y Z 0 W 0`` (the layout the public note
reports for audio downloaded from YouTube) to 4.0. For each read it prints the amplitude of
every tone in every output channel: row = output channel, column = input channel. Results
are in docs/channel_order.md. Run: ``.venv/bin/python scripts/channel_layout_experiment.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.decode import decode_audio  # noqa: E402
from pipeline.ffmpeg_bin import ffmpeg_exe, probe  # noqa: E402
from pipeline.synth.write import write_tagged_audio  # noqa: E402

SAMPLE_RATE = 48_000
TONES_HZ = (500.0, 700.0, 1100.0, 1300.0)
TONE_AMPLITUDE = 0.25
# (suffix, codec, layout given to ffmpeg when writing)
CASES = [
    (".m4a", "aac", "4.0"), (".m4a", "aac", "quad"), (".m4a", "aac", "4C"),
    (".mp4", "aac", "4.0"), (".mp4", "aac", "quad"),
    (".wav", "pcm_f32le", "4.0"), (".wav", "pcm_f32le", "quad"), (".wav", "pcm_f32le", "4C"),
    (".mkv", "pcm_f32le", "4.0"), (".mkv", "pcm_f32le", "quad"), (".mkv", "pcm_f32le", "4C"),
    (".wav", "untagged", "none"),
]


def tone_signals(n_channels: int, tone_of_channel: dict[int, int], duration_s: float = 1.0) -> np.ndarray:
    """``(n_samples, n_channels)`` float32: channel c holds tone ``tone_of_channel[c]``, others silent."""
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros((t.size, n_channels), dtype=np.float32)
    for channel, tone in tone_of_channel.items():
        out[:, channel] = TONE_AMPLITUDE * np.sin(2 * np.pi * TONES_HZ[tone] * t)
    return out


def write_file(path: Path, interleaved: np.ndarray, codec: str, layout: str) -> None:
    """Encode ``(n, channels)`` float32 at SAMPLE_RATE, tagged ``layout`` (or "untagged")."""
    write_tagged_audio(path, interleaved, SAMPLE_RATE, codec, layout)


def read_remixed(path: Path, n_channels: int, layout: str = "4.0", s16: bool = False) -> np.ndarray:
    """``(channels, n)`` float after ffmpeg converts the stream to ``layout`` (libswresample),
    with float output, or 16-bit output (``s16``) scaled back to [-1, 1]."""
    sample_fmt, codec, dtype, scale = ("s16p", "pcm_s16le", "<i2", 32767.0) if s16 else \
        ("fltp", "pcm_f32le", "<f4", 1.0)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
           "-af", f"aformat=sample_fmts={sample_fmt}:channel_layouts={layout}",
           "-f", codec.removeprefix("pcm_"), "-c:a", codec, "pipe:"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=dtype).reshape(-1, n_channels).T / scale


def tone_matrix(signals: np.ndarray) -> np.ndarray:
    """``(n_out, 4)`` amplitude of each tone in each output channel, from 0.25 s to 0.75 s
    (Hann window; AAC's priming and edge effects are outside it)."""
    segment = signals[:, int(0.25 * SAMPLE_RATE):int(0.75 * SAMPLE_RATE)].astype(np.float64)
    window = np.hanning(segment.shape[1])
    t = np.arange(segment.shape[1]) / SAMPLE_RATE
    basis = np.exp(-2j * np.pi * np.outer(TONES_HZ, t)) * window  # (4, n)
    return 2 * np.abs(segment @ basis.T) / window.sum()


def describe(matrix: np.ndarray) -> str:
    """Rows "out k: a0 a1 a2 a3" in units of the written amplitude."""
    return "\n".join(f"    out {k}: " + " ".join(f"{v / TONE_AMPLITUDE:5.2f}" for v in row)
                     for k, row in enumerate(matrix))


def main() -> int:
    identity = {c: c for c in range(4)}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, codec, layout in CASES:
            path = Path(tmp) / f"tones_{layout.replace('.', '')}{suffix}"
            try:
                write_file(path, tone_signals(4, identity), codec, layout)
            except subprocess.CalledProcessError as exc:
                reason = exc.stderr.decode(errors="replace").strip().splitlines()[0]
                print(f"{suffix} {codec} written as {layout!r}: refused by ffmpeg ({reason})")
                continue
            info = probe(path)
            ours = tone_matrix(decode_audio(path, SAMPLE_RATE, "ambix"))
            remixed = tone_matrix(read_remixed(path, 4))
            print(f"{suffix} {codec} written as {layout!r}, probed as {info.audio.channel_layout!r}")
            print(f"  ours (decode_audio):\n{describe(ours)}")
            print(f"  4.0 remix (aformat=channel_layouts=4.0):\n{describe(remixed)}")
            if layout == "quad" and suffix != ".mkv":
                remixed_s16 = tone_matrix(read_remixed(path, 4, s16=True))
                print(f"  4.0 remix to 16-bit (as PyAV s16p):\n{describe(remixed_s16)}")
        # The note's YouTube download: 6 channels, X Y Z 0 W 0, tagged 5.1. Tones: X=0, Y=1, Z=2, W=3.
        path = Path(tmp) / "youtube_like_51.m4a"
        write_file(path, tone_signals(6, {0: 0, 1: 1, 2: 2, 4: 3}), "aac", "5.1")
        info = probe(path)
        remixed = tone_matrix(read_remixed(path, 4))
        print(f".m4a aac 6 channels 'X Y Z 0 W 0' written as '5.1', probed as "
              f"{info.audio.channel_layout!r}; columns X Y Z W")
        print(f"  4.0 remix (aformat=channel_layouts=4.0):\n{describe(remixed)}")
        remixed_s16 = tone_matrix(read_remixed(path, 4, s16=True))
        print(f"  4.0 remix to 16-bit (as PyAV s16p):\n{describe(remixed_s16)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
