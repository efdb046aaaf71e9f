"""Write a synthetic clip (equirectangular frames + FOA track) into one media file via ffmpeg.

Video frames stream into ffmpeg's stdin as raw RGB24; the FOA track goes through a temporary
raw ``f32le`` file declared as 4 interleaved channels (``-f f32le -ar SR -ac 4`` are *input*
options describing the raw layout; nothing is remixed). Outputs:

- ``mp4``: H.264 yuv420p + AAC (default 256 kb/s, ffmpeg's native encoder with its default
  tools). Measured on synthetic scenes: a single source keeps its intensity direction within
  ~1.3°, per-bin |I|/E stays >= 0.98 on average; switching intensity stereo and perceptual noise
  substitution off (``-aac_is 0 -aac_pns 0``) made both slightly worse at this bitrate (more
  quantisation noise), so the defaults stay.
- ``mkv``: H.264 yuv420p + PCM float32 (bit-exact audio).

Files are written under a temporary name and renamed atomically, so a clip either exists
complete or not at all (resumable generation).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.errors import PipelineError
from pipeline.ffmpeg_bin import ffmpeg_exe

AUDIO_CODECS = {"mp4": ["-c:a", "aac"], "mkv": ["-c:a", "pcm_f32le"]}
#: A label on the audio stream; mp4 stores it as the handler name (a long mp4 ``title`` makes
#: ffmpeg 9 warn "UDTA parsing failed" on every read), mkv as the track title.
_AUDIO_LABEL = "ambiX FOA (ACN/SN3D: W, Y, Z, X)"
_AUDIO_LABEL_KEY = {"mp4": "handler_name", "mkv": "title"}


class ClipWriteError(PipelineError):
    """ffmpeg failed to write a synthetic clip."""


def encode_command(
    out_path: Path,
    audio_path: Path | None,
    *,
    width: int,
    height: int,
    fps: float,
    sample_rate: int,
    container: str,
    crf: int = 23,
    preset: str = "veryfast",
    audio_bitrate: str = "256k",
) -> list[str]:
    """The ffmpeg command line: raw RGB24 video on stdin, raw 4-channel f32le audio from a file
    (``audio_path=None``: a video-only file, as STARSS23's ``video_dev``)."""
    if container not in AUDIO_CODECS:
        raise ValueError(f"container must be one of {sorted(AUDIO_CODECS)}, got {container!r}")
    audio_codec = AUDIO_CODECS[container] + (["-b:a", audio_bitrate] if container == "mp4" else [])
    video_input = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                   "-r", str(fps), "-i", "pipe:0"]
    video_codec = ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if audio_path is None:
        return [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *video_input,
                "-map", "0:v:0", *video_codec, "-an", str(out_path)]
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *video_input,
        "-f", "f32le", "-ar", str(sample_rate), "-ac", "4", "-i", str(audio_path),
        "-map", "0:v:0", "-map", "1:a:0", *video_codec, *audio_codec,
        "-metadata:s:a:0", f"{_AUDIO_LABEL_KEY[container]}={_AUDIO_LABEL}",
        str(out_path),
    ]  # fmt: skip


def write_clip(
    out_path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    foa: np.ndarray | None,
    *,
    fps: float,
    sample_rate: int,
    crf: int = 23,
    preset: str = "veryfast",
    audio_bitrate: str = "256k",
) -> Path:
    """Encode ``frames`` (each ``(H, W, 3)`` uint8 RGB) and ``foa`` (``(4, n)`` ambiX; None for
    a video-only file) into ``out_path``; the container (``.mp4`` or ``.mkv``) follows the
    suffix. Returns the path."""
    out_path = Path(out_path)
    container = out_path.suffix.lstrip(".").lower()
    if foa is not None:
        foa = np.asarray(foa, dtype=np.float32)
        if foa.ndim != 2 or foa.shape[0] != 4:
            raise ValueError(f"{out_path.name}: expected FOA shaped (4, n), got {foa.shape}")
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    partial = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synth_audio_") as tmp:
        audio_path = None
        if foa is not None:
            audio_path = Path(tmp) / "foa.f32"
            np.ascontiguousarray(foa.T).astype("<f4").tofile(audio_path)  # interleaved W Y Z X
        cmd = encode_command(
            partial, audio_path, width=width, height=height, fps=fps, sample_rate=sample_rate,
            container=container, crf=crf, preset=preset, audio_bitrate=audio_bitrate,
        )  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            for frame in itertools.chain([first], frames):
                if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                    raise ValueError(
                        f"{out_path.name}: expected frames ({height}, {width}, 3) uint8, "
                        f"got {frame.shape} {frame.dtype}"
                    )
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
            stderr = proc.stderr.read().decode("utf-8", errors="replace")
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            partial.unlink(missing_ok=True)
            raise
    if code != 0:
        partial.unlink(missing_ok=True)
        raise ClipWriteError(f"{out_path}: ffmpeg exited with {code}: {stderr.strip()[-500:]}")
    os.replace(partial, out_path)
    return out_path


def write_tagged_audio(path: str | os.PathLike, interleaved: np.ndarray, sample_rate: int,
                       codec: str, layout: str | None) -> Path:
    """Encode ``(n, channels)`` float audio with ffmpeg ``codec``, the input tagged with the
    ffmpeg channel ``layout`` ("4.0", "quad", "4C", ...): how files of each layout tag are made
    for the channel-order measurements. ``codec="untagged"`` writes 16-bit PCM with Python's
    ``wave`` instead (no channel mask; ``layout`` is ignored). Returns the path."""
    path = Path(path)
    interleaved = np.ascontiguousarray(np.asarray(interleaved, dtype="<f4"))
    if codec == "untagged":
        with wave.open(str(path), "wb") as out:
            out.setnchannels(interleaved.shape[1])
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(np.round(interleaved * 32767).astype("<i2").tobytes())
        return path
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le",
           "-ar", str(sample_rate), "-ch_layout", str(layout), "-i", "pipe:", "-c:a", codec]
    if codec == "aac":
        cmd += ["-b:a", "256k"]
    subprocess.run(cmd + [str(path)], input=interleaved.tobytes(), check=True, capture_output=True)
    return path
