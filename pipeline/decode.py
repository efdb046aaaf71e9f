"""Streaming decode of 360° clips with ffmpeg-python: ambiX audio and equirectangular frames.

Audio comes back as ``(4, n_samples)`` float32 in ambiX (ACN order W, Y, Z, X, SN3D
normalisation, see docs/CONVENTIONS.md), resampled by ffmpeg (``-ar``) but never remixed: the
command has no ``-ac`` and no layout filter, so every channel of the file arrives in file order
whatever layout the file is tagged with (4.0, quad, none: measured in docs/channel_order.md), and
a declared channel order (``channel_order``) and the conversion from FuMa / N3D / higher order
happen here, in numpy, where they are tested.

Video comes back as ``(n, height, width, 3)`` uint8 RGB chunks from a generator that holds at most
one chunk in memory; ``decode_frames_at`` and ``iter_frames_at_indices`` pick given instants out
of one streaming pass (ffmpeg drops the other frames before scaling them).

Every error names the clip path and says expected vs got.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import math
import os
import threading
from typing import Iterator, Sequence

import ffmpeg
import numpy as np
from numba import njit

from pipeline.errors import (
    AmbisonicFormatError,
    ClipTooShortError,
    DecodeError,
    NotEquirectangularError,
)
from pipeline.ffmpeg_bin import MediaInfo, ffmpeg_exe, ffmpeg_input_name, probe

__all__ = [
    "AMBISONIC_CONVENTIONS",
    "AMBIX_CHANNEL_ORDER",
    "FUMA_CHANNEL_ORDER",
    "decode_audio",
    "native_channel_order",
    "check_channel_order",
    "reorder_channels",
    "check_ambisonic_channels",
    "to_ambix_sn3d",
    "ambisonic_sanity",
    "check_equirectangular",
    "iter_video_frames",
    "decode_frames_at",
    "iter_frames_at_indices",
    "frame_indices_at",
]

log = logging.getLogger(__name__)

AMBISONIC_CONVENTIONS = ("ambix", "fuma", "acn_n3d", "hoa_ambix")
_CONVENTION_LABELS = {"ambix": "ambiX", "fuma": "FuMa", "acn_n3d": "ACN/N3D", "hoa_ambix": "ambiX"}
# Channel orders are strings of the letters W, X, Y, Z: letter k names the component that
# channel k holds. ACN (ambiX, ACN/N3D, the first four of higher-order ambiX) is W, Y, Z, X.
AMBIX_CHANNEL_ORDER = "WYZX"
FUMA_CHANNEL_ORDER = "WXYZ"

#: ffmpeg's decoder threads (``-threads``) for the decodes started in this context; None leaves
#: ffmpeg's default (frame threads, one per core). See :func:`decoder_threads`.
_DECODER_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "decoder_threads", default=None)

DEFAULT_MAX_PAD_S = 0.1        # shortfall (s) still zero-padded: codec frame rounding, not a short clip
_TRUNCATION_TOLERANCE_S = 0.5  # decoded vs declared duration: shorter by more is truncation
_TRUNCATION_TOLERANCE_FRACTION = 0.05
_AUDIO_BLOCK_FRAMES = 48_000   # sample frames read from the pipe per block
_STDERR_KEEP_BYTES = 16_384    # tail of ffmpeg's stderr kept for error messages
# Sanity thresholds. An ideal SN3D field has (X²+Y²+Z²)/W² <= 1 and no dipole above W, but real
# microphones reach 1.5-2.4 over 1 s windows (shared/realdata recordings); FuMa read as ambiX
# doubles the ratios, N3D read as SN3D triples them.
_SANITY_DIPOLE_RATIO = 2.5
_SANITY_SINGLE_DIPOLE_RATIO = 1.5


# ---------------------------------------------------------------------------------------------
# audio


def decode_audio(
    path: str | os.PathLike,
    sample_rate: int = 24_000,
    convention: str = "ambix",
    expected_duration_s: float | None = None,
    *,
    start_s: float = 0.0,
    duration_s: float | None = None,
    accept_hoa: bool = False,
    max_pad_s: float = DEFAULT_MAX_PAD_S,
    info: MediaInfo | None = None,
    channel_order: str | None = None,
) -> np.ndarray:
    """Decode the first audio stream of ``path`` to first-order ambiX.

    Args:
        path: media file (video with an audio track, or an audio file).
        sample_rate: output rate in Hz (ffmpeg resamples; channels are never remixed).
        convention: how the file is encoded: "ambix" (ACN/SN3D), "fuma" (W, X, Y, Z with W at
            -3 dB), "acn_n3d" (ACN/N3D) or "hoa_ambix" ((N+1)² channels ACN/SN3D, N >= 1).
        expected_duration_s: if given, the result has exactly ``round(expected_duration_s *
            sample_rate)`` samples (trimmed, or zero-padded by at most ``max_pad_s``).
        start_s, duration_s: decode only this segment (seconds; ffmpeg ``-ss`` / ``-t``). When
            ``expected_duration_s`` is None the segment length is the expected length; with
            neither, audio ending well before the container's declared duration (more than
            max(0.5 s, 5 %) short: a truncated file) raises ``ClipTooShortError``.
        accept_hoa: allow (N+1)² > 4 channels for a first-order convention and keep the first 4
            ACN channels (True for EigenScape-style recordings; False for 360° video clips whose
            manifest declares 4 channels).
        max_pad_s: largest shortfall in seconds that is zero-padded; more is ``ClipTooShortError``.
        info: a ``probe`` result to reuse.
        channel_order: what the file's first four channels hold, as the letters W, X, Y, Z
            (e.g. "WXZY": Y and X swapped), undone right after reading; None means the
            convention's own order ("WXYZ" for FuMa, ACN "WYZX" otherwise).

    Returns:
        ``(4, n_samples)`` float32, ambiX channel order W, Y, Z, X with SN3D normalisation.

    Raises:
        DecodeError: no audio stream, unreadable file, ffmpeg failure.
        ClipTooShortError: less audio than requested.
        AmbisonicFormatError: wrong channel count for ``convention``, NaN or inf samples.
    """
    name = _clip_name(path)
    info = info if info is not None else probe(path)
    if info.audio is None:
        raise DecodeError(f"{name}: expected an audio stream, got none "
                          f"(streams: {_stream_summary(info)})")
    check_ambisonic_channels(info.audio.channels, convention, accept_hoa=accept_hoa, name=name)
    if channel_order is not None:
        check_channel_order(channel_order)
    _check_segment(start_s, duration_s, name)

    spec = ffmpeg.input(ffmpeg_input_name(path), **_segment_options(start_s, duration_s))
    spec = spec[str(info.audio.index)].output("pipe:", format="f32le", acodec="pcm_f32le",
                                              ar=int(sample_rate))
    first_four = reorder_channels(_read_audio_first_four(spec, info.audio.channels, name),
                                  channel_order, convention)

    if not np.all(np.isfinite(first_four)):
        n_bad = int(np.count_nonzero(~np.isfinite(first_four)))
        raise AmbisonicFormatError(f"{name}: expected finite audio samples, got {n_bad} NaN/inf "
                                   f"values out of {first_four.size}")
    target_s = expected_duration_s if expected_duration_s is not None else duration_s
    if target_s is None:
        _check_not_truncated(first_four.shape[1] / sample_rate, info.duration_s, start_s, name,
                             "audio")
    first_four = _fit_length(first_four, target_s, sample_rate, max_pad_s, start_s, name)
    return to_ambix_sn3d(first_four, convention)


def check_ambisonic_channels(channels: int, convention: str, *, accept_hoa: bool = False,
                             name: str = "audio") -> None:
    """Raise ``AmbisonicFormatError`` unless ``channels`` fits ``convention``.

    First-order conventions ("ambix", "fuma", "acn_n3d") need 4 channels, or (N+1)² >= 9 when
    ``accept_hoa``; "hoa_ambix" needs any (N+1)² >= 4.
    """
    if convention not in AMBISONIC_CONVENTIONS:
        raise ValueError(f"convention must be one of {AMBISONIC_CONVENTIONS}, got {convention!r}")
    order = _ambisonic_order(channels)
    if convention == "hoa_ambix":
        if order is None or order < 1:
            raise AmbisonicFormatError(f"{name}: expected (N+1)^2 >= 4 channels of higher-order "
                                       f"ambiX audio, got {channels} channels")
        return
    if channels == 4 or (accept_hoa and order is not None and order >= 2):
        return
    label = _CONVENTION_LABELS[convention]
    hint = ""
    if order is not None and order >= 2:
        hint = (f" ({_ordinal(order)}-order ambisonics; set decode.accept_hoa=true to keep the "
                f"first 4 ACN channels)")
    raise AmbisonicFormatError(f"{name}: expected 4-channel {label} audio, got {channels} "
                               f"channel{'s' if channels != 1 else ''}{hint}")


def native_channel_order(convention: str) -> str:
    """Order of the first four channels in ``convention``: "WXYZ" for FuMa, ACN "WYZX" else."""
    if convention not in AMBISONIC_CONVENTIONS:
        raise ValueError(f"convention must be one of {AMBISONIC_CONVENTIONS}, got {convention!r}")
    return FUMA_CHANNEL_ORDER if convention == "fuma" else AMBIX_CHANNEL_ORDER


def check_channel_order(channel_order: str) -> str:
    """Return ``channel_order`` if it is the four letters W, X, Y, Z in some order, else raise
    ``ValueError`` (letter k names the component that channel k holds)."""
    if not (isinstance(channel_order, str) and len(channel_order) == 4
            and sorted(channel_order) == sorted(FUMA_CHANNEL_ORDER)):
        raise ValueError(f"channel order expected the letters W, X, Y, Z each once (e.g. "
                         f"{AMBIX_CHANNEL_ORDER!r}), got {channel_order!r}")
    return channel_order


def reorder_channels(first_four: np.ndarray, channel_order: str | None,
                     convention: str = "ambix") -> np.ndarray:
    """Put the channels of ``(4, n)`` audio whose channel k holds ``channel_order[k]`` into
    ``convention``'s own order (:func:`native_channel_order`); None leaves them as they are.

    A pure permutation: no gain, no mixing. E.g. "WXZY" (Y and X swapped) -> rows [0, 3, 2, 1].
    """
    if channel_order is None:
        return first_four
    native = native_channel_order(convention)
    check_channel_order(channel_order)
    if channel_order == native:
        return first_four
    x = np.asarray(first_four)
    if x.ndim != 2 or x.shape[0] != 4:
        raise AmbisonicFormatError(f"expected a (4, n) array, got shape {x.shape}")
    return x[[channel_order.index(letter) for letter in native]]


def to_ambix_sn3d(first_four: np.ndarray, convention: str) -> np.ndarray:
    """Convert the first 4 channels ``(4, n)`` of a file in ``convention`` to ambiX SN3D float32.

    "fuma": W, X, Y, Z with W at -3 dB -> [√2·W, Y, Z, X]; "acn_n3d": dipoles / √3;
    "ambix" and "hoa_ambix": unchanged (the first 4 ACN/SN3D channels are first-order ambiX).
    """
    x = np.asarray(first_four, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != 4:
        raise AmbisonicFormatError(f"expected a (4, n) array, got shape {x.shape}")
    if convention in ("ambix", "hoa_ambix"):
        return x
    foa = _optional_foa_module()
    if convention == "fuma":
        if foa is not None and hasattr(foa, "fuma_to_ambix"):
            return np.asarray(foa.fuma_to_ambix(x), dtype=np.float32)
        w, x_, y, z = x
        return np.stack([np.float32(math.sqrt(2.0)) * w, y, z, x_]).astype(np.float32)
    if convention == "acn_n3d":
        if foa is not None and hasattr(foa, "n3d_to_sn3d"):
            return np.asarray(foa.n3d_to_sn3d(x), dtype=np.float32)
        gains = np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32)
        gains[1:] /= np.float32(math.sqrt(3.0))
        return x * gains[:, None]
    raise ValueError(f"convention must be one of {AMBISONIC_CONVENTIONS}, got {convention!r}")


LAYOUT_WARNING_MARKERS = ("FuMa or N3D", "wrong channel order", "channels swapped",
                          "NaN or inf", "expected a (4, n)")


def layout_contradictions(sanity_warnings: Sequence[str]) -> list[str]:
    """Those of :func:`ambisonic_sanity`'s warnings that contradict the declared channel layout
    (order or normalisation), leaving out those about the signal itself (silence, clipping).
    Callers that must not guess (``evals.audio.embed``) refuse a file that has any."""
    return [w for w in sanity_warnings if any(m in w for m in LAYOUT_WARNING_MARKERS)]


def ambisonic_sanity(foa: np.ndarray) -> list[str]:
    """Warnings (empty list if none) about a ``(4, n)`` ambiX SN3D signal that looks mislabelled.

    In SN3D, W carries at least as much energy as any dipole, and the dipoles together carry at
    most W's energy (equal for a plane wave, 1/3 each in a diffuse field). FuMa read as ambiX
    halves W's energy (ratios x2); N3D read as SN3D triples the dipoles (ratios x3). Thresholds
    leave room for real microphones (dipole sum up to ~2.4 x W over 1 s): warn when one dipole
    exceeds 1.5 x W or all together exceed 2.5 x W. A heuristic: warnings, never rejection.
    """
    x = np.asarray(foa)
    if x.ndim != 2 or x.shape[0] != 4:
        return [f"expected a (4, n) array, got shape {x.shape}"]
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    all_finite, energy, n_clipped = _sanity_sums(x)
    if not all_finite:
        return ["contains NaN or inf samples"]
    if energy.sum() <= 1e-12 * max(x.shape[1], 1):
        return ["audio is silent"]
    warnings: list[str] = []
    w_energy = energy[0]
    if w_energy <= 0.0:
        return ["W is silent while the dipoles are not: channels swapped or not ambisonic"]
    dipole_ratio = energy[1:].sum() / w_energy
    if dipole_ratio > _SANITY_DIPOLE_RATIO:
        warnings.append(f"dipole energy is {dipole_ratio:.2f} x W energy (expected <= 1 in SN3D, <= ~2.4 for real microphones): "
                        "FuMa or N3D audio read as ambiX?")
    loudest = int(np.argmax(energy))
    if loudest != 0 and energy[loudest] > _SANITY_SINGLE_DIPOLE_RATIO * w_energy:
        channel = "WYZX"[loudest]
        warnings.append(f"channel {loudest} ({channel}) carries {energy[loudest] / w_energy:.2f} x "
                        "the energy of W (expected W loudest): wrong channel order?")
    clipped = n_clipped / x.size          # not empty: an empty signal returned as silent
    if clipped > 1e-3:
        warnings.append(f"{100 * clipped:.2f}% of samples at full scale: clipped recording?")
    return warnings


@njit(cache=True, nogil=True)
def _sanity_sums(x):  # pragma: no cover - numba
    """One pass over ``(4, n)`` float samples (any strides): whether all are finite, each
    channel's energy (float64 sum of squares) and how many samples have ``|x| >= 0.999``.
    Replaces a float64 copy and four numpy passes with their temporaries (5-8 ms per 10 s of
    24 kHz FOA alone, up to 40 ms inside a preprocessing task)."""
    energy = np.zeros(4, dtype=np.float64)
    all_finite = True
    n_clipped = 0
    for channel in range(4):
        total = 0.0
        for i in range(x.shape[1]):
            value = np.float64(x[channel, i])
            if not np.isfinite(value):
                all_finite = False
            total += value * value
            if abs(value) >= 0.999:
                n_clipped += 1
        energy[channel] = total
    return all_finite, energy, n_clipped


# ---------------------------------------------------------------------------------------------
# video


def check_equirectangular(info: MediaInfo) -> None:
    """Raise ``NotEquirectangularError`` unless the video frame is 2:1 (width == 2 * height)."""
    name = _clip_name(info.path)
    if info.video is None:
        raise DecodeError(f"{name}: expected a video stream, got none "
                          f"(streams: {_stream_summary(info)})")
    width, height = info.video.width, info.video.height
    if width != 2 * height:
        raise NotEquirectangularError(
            f"{name}: expected a 2:1 equirectangular frame (width == 2 x height), got "
            f"{width}x{height}")


def iter_video_frames(
    path: str | os.PathLike,
    fps: float,
    width: int,
    height: int,
    start_s: float = 0.0,
    duration_s: float | None = None,
    chunk_frames: int = 16,
    *,
    require_equirect: bool = False,
    info: MediaInfo | None = None,
) -> Iterator[np.ndarray]:
    """Stream frames resampled to ``fps`` and scaled to ``width`` x ``height``.

    Yields ``(n, height, width, 3)`` uint8 RGB chunks with ``n <= chunk_frames``; chunk k starts
    at ``start_s + k * chunk_frames / fps`` seconds. Only one chunk is held in memory; closing the
    generator early kills ffmpeg. With ``duration_s`` set, fewer than ``round(duration_s * fps)
    - 1`` frames raise ``ClipTooShortError`` (after the frames decoded so far were yielded).
    """
    name = _clip_name(path)
    info = _probe_video(path, info, require_equirect)
    n_expected = None if duration_s is None else round(duration_s * fps)
    n_yielded = 0
    frames = _stream_frames(path, info, fps, width, height, start_s, duration_s, chunk_frames)
    with contextlib.closing(frames):  # an early close of this generator kills ffmpeg at once
        for chunk in frames:
            n_yielded += len(chunk)
            yield chunk
    if n_yielded == 0 or (n_expected is not None and n_yielded < n_expected - 1):
        wanted = f"{n_expected} frames" if n_expected is not None else "frames"
        raise ClipTooShortError(f"{name}: expected {wanted} at {fps:g} fps from {start_s:.3f} s, "
                                f"got {n_yielded}")
    if n_expected is None:
        _check_not_truncated(n_yielded / fps, info.duration_s, start_s, name, "video")


def frame_indices_at(times_s: Sequence[float], fps: float) -> np.ndarray:
    """Index of the frame shown at each instant (seconds) in a stream resampled to ``fps``."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"times_s must be a 1-D list of finite times >= 0 s, got {times_s!r}")
    return np.floor(times * fps + 1e-6).astype(np.int64)


def decode_frames_at(
    path: str | os.PathLike,
    times_s: Sequence[float],
    fps: float,
    width: int,
    height: int,
    *,
    require_equirect: bool = False,
    chunk_frames: int = 16,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """Frames shown at the given instants, from one streaming pass.

    The stream is resampled to ``fps`` (frame k covers ``[k / fps, (k + 1) / fps)`` s), starts
    at the earliest requested frame and stops after the last, and only requested frames are
    kept, so an 8-frame window plus a keyframe costs a few frames of memory, not the clip.

    Returns:
        ``(len(times_s), height, width, 3)`` uint8 RGB, in the order of ``times_s``.
    """
    indices = frame_indices_at(times_s, fps)
    if len(indices) == 0:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    wanted = sorted({int(i) for i in indices})
    found: dict[int, np.ndarray] = {}
    for index, frame in iter_frames_at_indices(path, fps, width, height, wanted,
                                               chunk_frames=chunk_frames,
                                               require_equirect=require_equirect, info=info):
        found[index] = frame.copy()
    return np.stack([found[int(i)] for i in indices])


def iter_frames_at_indices(
    path: str | os.PathLike,
    fps: float,
    width: int,
    height: int,
    frame_indices: Sequence[int],
    *,
    start_s: float = 0.0,
    chunk_frames: int = 16,
    require_equirect: bool = False,
    info: MediaInfo | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame (height, width, 3) uint8)`` for the given frame indices only.

    Frame ``i`` is the one shown at ``start_s + i / fps`` in the stream resampled to ``fps``
    (the frames :func:`iter_video_frames` yields from ``start_s``, equal to the byte). ffmpeg
    still decodes every frame up to the last index (inter-frame codecs need them), but a
    ``select`` filter drops the others before scaling and RGB conversion, which are about half
    of the decode's CPU time on a 1920 x 960 source when the windows take every other half
    second (measured: ``bench/preprocess.py``). Indices are unique and increasing; frames come
    in that order, one chunk in memory. ``ClipTooShortError`` when the stream ends first.
    """
    name = _clip_name(path)
    indices = [int(i) for i in frame_indices]
    if not indices:
        return
    if indices[0] < 0 or any(b <= a for a, b in zip(indices, indices[1:])):
        raise ValueError(f"{name}: expected unique increasing frame indices >= 0, got "
                         f"{indices[:8]}{'...' if len(indices) > 8 else ''}")
    info = _probe_video(path, info, require_equirect)
    first, last = indices[0], indices[-1]
    ranges = _index_ranges([i - first for i in indices])
    # An ffmpeg argument is at most 128 kB: beyond a few thousand runs, every frame comes out
    # and the wanted ones are picked here.
    selected = len(ranges) <= _MAX_SELECT_RANGES
    frames = _stream_frames(path, info, fps, width, height, start_s + first / fps,
                            (last - first + 1) / fps, chunk_frames,
                            select_ranges=ranges if selected else None)
    # The index of each frame ffmpeg sends: the wanted ones in turn, or every one from ``first``.
    sent_indices = iter(indices) if selected else itertools.count(first)
    wanted = set(indices)
    n_yielded = 0
    with contextlib.closing(frames):
        for chunk in frames:
            for frame, index in zip(chunk, sent_indices):
                if index in wanted:
                    yield index, frame
                    n_yielded += 1
    if n_yielded < len(indices):   # frames come in increasing order: indices[n_yielded] is missing
        t_missing = start_s + indices[n_yielded] / fps
        raise ClipTooShortError(
            f"{name}: expected a frame at {t_missing:.3f} s (index {indices[n_yielded]} at "
            f"{fps:g} fps), got only {n_yielded} of the {len(indices)} requested frames")


_MAX_SELECT_RANGES = 2000


def _index_ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Increasing indices as inclusive ``(first, last)`` runs of consecutive values."""
    ranges: list[tuple[int, int]] = []
    for index in indices:
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    return ranges


# ---------------------------------------------------------------------------------------------
# ffmpeg process handling


class _FfmpegPipe:
    """An ffmpeg process writing raw data to stdout; stderr drained by a thread (no deadlock)."""

    def __init__(self, output_spec, name: str):
        self.name = name
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"]
        self.process = output_spec.run_async(cmd=cmd, pipe_stdout=True, pipe_stderr=True)
        self._stderr = bytearray()
        self._thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._thread.start()

    def _drain_stderr(self) -> None:
        for block in iter(lambda: self.process.stderr.read(4096), b""):
            self._stderr += block
            if len(self._stderr) > _STDERR_KEEP_BYTES:
                del self._stderr[:-_STDERR_KEEP_BYTES]

    def read(self, n_bytes: int) -> bytes:
        """Up to ``n_bytes`` (fewer only at end of stream)."""
        return self.process.stdout.read(n_bytes)

    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", errors="replace").strip()

    def finish(self) -> None:
        """Wait for a process whose stdout reached EOF; DecodeError if ffmpeg failed."""
        returncode = self.process.wait()
        self._thread.join()
        self.process.stdout.close()
        if returncode != 0:
            raise DecodeError(f"{self.name}: expected ffmpeg to decode it, got exit code "
                              f"{returncode}: {self.stderr_text() or 'no message'}")
        if self.stderr_text():
            log.warning("%s: ffmpeg reported: %s", self.name, self.stderr_text()[-500:])

    def abort(self) -> None:
        """Kill the process if it still runs and reap it (safe to call twice)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._thread.join()
        if not self.process.stdout.closed:
            self.process.stdout.close()


def _read_audio_first_four(spec, n_channels: int, name: str) -> np.ndarray:
    """Read interleaved f32le frames of ``n_channels`` and keep channels 0-3 as ``(4, n)``."""
    pipe = _FfmpegPipe(spec, name)
    frame_bytes = 4 * n_channels
    blocks: list[np.ndarray] = []
    try:
        while True:
            data = pipe.read(_AUDIO_BLOCK_FRAMES * frame_bytes)
            if not data:
                break
            if len(data) % frame_bytes:
                raise DecodeError(f"{name}: expected whole {n_channels}-channel sample frames, "
                                  f"got a stream ending mid-frame")
            block = np.frombuffer(data, dtype="<f4").reshape(-1, n_channels)
            blocks.append(block[:, :4].copy())
        pipe.finish()
    finally:
        pipe.abort()
    if not blocks:
        return np.zeros((4, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(blocks).T)


def _stream_frames(path, info: MediaInfo, fps: float, width: int, height: int, start_s: float,
                   duration_s: float | None, chunk_frames: int,
                   select_ranges: Sequence[tuple[int, int]] | None = None) -> Iterator[np.ndarray]:
    """Yield ``(n, height, width, 3)`` uint8 chunks; no length check. ``select_ranges``:
    inclusive runs of frame indices (after the fps resampling) to keep; the others are dropped
    before scaling and are not written (``fps_mode passthrough``: no duplicates fill the gaps)."""
    name = _clip_name(path)
    if fps <= 0 or width <= 0 or height <= 0 or chunk_frames < 1:
        raise ValueError(f"expected fps, width, height > 0 and chunk_frames >= 1, got fps={fps}, "
                         f"width={width}, height={height}, chunk_frames={chunk_frames}")
    _check_segment(start_s, duration_s, name)
    spec = ffmpeg.input(ffmpeg_input_name(path), **_segment_options(start_s, duration_s))
    stream = spec[str(info.video.index)].filter("fps", fps=fps)
    output_options = {}
    if select_ranges is not None:
        stream = stream.filter("select", "+".join(f"between(n,{a},{b})" for a, b in select_ranges))
        output_options["fps_mode"] = "passthrough"
    spec = (stream.filter("scale", int(width), int(height))
            .output("pipe:", format="rawvideo", pix_fmt="rgb24", **output_options))
    frame_bytes = int(width) * int(height) * 3
    pipe = _FfmpegPipe(spec, name)
    try:
        while True:
            data = pipe.read(chunk_frames * frame_bytes)
            if not data:
                break
            if len(data) % frame_bytes:
                raise DecodeError(f"{name}: expected whole {width}x{height} RGB frames, got a "
                                  "stream ending mid-frame")
            yield np.frombuffer(data, dtype=np.uint8).reshape(-1, int(height), int(width), 3)
        pipe.finish()
    finally:
        pipe.abort()


# ---------------------------------------------------------------------------------------------
# small helpers


def _clip_name(path) -> str:
    return f"clip {os.fspath(path)}"


def _stream_summary(info: MediaInfo) -> str:
    return ", ".join(f"{s.kind} {s.codec}" for s in info.streams) or "none"


def _probe_video(path, info: MediaInfo | None, require_equirect: bool) -> MediaInfo:
    info = info if info is not None else probe(path)
    if info.video is None:
        raise DecodeError(f"{_clip_name(path)}: expected a video stream, got none "
                          f"(streams: {_stream_summary(info)})")
    if require_equirect:
        check_equirectangular(info)
    return info


@contextlib.contextmanager
def decoder_threads(n_threads: int | None):
    """Decode with ``n_threads`` ffmpeg decoder threads inside the block (None: ffmpeg's
    default). Preprocessing runs one task per core and pins it to 1: frame threading then only
    adds hand-offs, 10 % of ffmpeg's CPU on the bench's clips, and no wall time is lost on
    2 cores (docs/RESULTS.md, fifth round). Decoded frames are the same either way."""
    token = _DECODER_THREADS.set(n_threads)
    try:
        yield
    finally:
        _DECODER_THREADS.reset(token)


def _segment_options(start_s: float, duration_s: float | None) -> dict:
    """ffmpeg input options: the segment, and the decoder threads of :func:`decoder_threads`."""
    options = {}
    if _DECODER_THREADS.get() is not None:
        options["threads"] = str(int(_DECODER_THREADS.get()))
    if start_s:
        options["ss"] = f"{start_s:.6f}"
    if duration_s is not None:
        options["t"] = f"{duration_s:.6f}"
    return options


def _check_segment(start_s: float, duration_s: float | None, name: str) -> None:
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"{name}: start_s must be a finite time >= 0 s, got {start_s}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"{name}: duration_s must be a finite time > 0 s, got {duration_s}")


def _check_not_truncated(got_s: float, declared_s: float | None, start_s: float, name: str,
                         what: str) -> None:
    """``ClipTooShortError`` when decoding stopped well before the container's declared end."""
    if declared_s is None or declared_s - start_s <= 0:
        return
    expected_s = declared_s - start_s
    if got_s < expected_s - max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * expected_s):
        raise ClipTooShortError(
            f"{name}: expected {what} until the declared end at {declared_s:.3f} s, got "
            f"{got_s:.3f} s from {start_s:.3f} s (truncated or damaged file?)")


def _fit_length(x: np.ndarray, target_s: float | None, sample_rate: int, max_pad_s: float,
                start_s: float, name: str) -> np.ndarray:
    """Trim or zero-pad ``(4, n)`` to ``round(target_s * sample_rate)`` samples."""
    n_got = x.shape[1]
    if target_s is None:
        if n_got == 0:
            raise ClipTooShortError(f"{name}: expected audio samples from {start_s:.3f} s, got none")
        return x
    n_target = int(round(target_s * sample_rate))
    if n_got < n_target - int(round(max_pad_s * sample_rate)):
        raise ClipTooShortError(
            f"{name}: expected {target_s:.3f} s of audio from {start_s:.3f} s ({n_target} samples "
            f"at {sample_rate} Hz), got {n_got / sample_rate:.3f} s ({n_got} samples)")
    if n_got >= n_target:
        return x[:, :n_target]
    return np.pad(x, ((0, 0), (0, n_target - n_got)))


def _ambisonic_order(channels: int) -> int | None:
    """N if ``channels`` == (N+1)², else None."""
    root = math.isqrt(max(channels, 0))
    return root - 1 if root >= 1 and root * root == channels else None


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _optional_foa_module():
    """``pipeline.foa`` when it exists (single implementation of the converters), else None."""
    try:
        from pipeline import foa
    except ImportError:
        return None
    return foa
