"""Locate the ffmpeg binary and probe media files without ffprobe.

``ffmpeg_exe()`` prefers an ``ffmpeg`` on PATH and falls back to the static binary shipped by
``imageio-ffmpeg`` (which has no ffprobe). ``probe(path)`` therefore runs ``ffmpeg -i path`` and
parses the stream summary it prints on stderr, e.g.::

    Duration: 00:00:10.00, start: 0.000000, bitrate: 313 kb/s
    Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 512x256, 16 fps, ...
    Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 24000 Hz, 4.0, fltp, 256 kb/s
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DecodeError, MissingMediaError

__all__ = [
    "ffmpeg_exe",
    "ffmpeg_input_name",
    "probe",
    "parse_probe_output",
    "channels_from_layout",
    "MediaInfo",
    "VideoStreamInfo",
    "AudioStreamInfo",
    "StreamInfo",
]

PROBE_TIMEOUT_S = 60.0

# ffmpeg's named channel layouts (``ffmpeg -layouts``) and their channel counts. Anything else is
# printed as "N channels", "ambisonic N" or a custom "FL+FR+..." list, handled in the parser.
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "binaural": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3,
    "4.0": 4, "quad": 4, "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5,
    "5.1": 6, "5.1(side)": 6, "6.0": 6, "6.0(front)": 6, "3.1.2": 6, "hexagonal": 6,
    "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7,
    "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "5.1.2": 8, "5.1.2(back)": 8,
    "octagonal": 8, "cube": 8, "5.1.4": 10, "7.1.2": 10, "7.1.4": 12, "7.2.3": 12,
    "9.1.4": 14, "9.1.6": 16, "hexadecagonal": 16, "22.2": 24,
}


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``ffmpeg`` on PATH first, else the imageio-ffmpeg one."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a pinned dependency
        raise DecodeError(
            "no ffmpeg binary: expected `ffmpeg` on PATH or the imageio-ffmpeg package, got neither"
        ) from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_input_name(path: str | os.PathLike) -> str:
    """Name to give ffmpeg for a local file: ``file:`` + absolute path.

    The prefix stops ffmpeg from reading ``a:b.mp4`` as a protocol or ``-x.mp4`` as an option.
    """
    return "file:" + str(Path(path).absolute())


@dataclass(frozen=True)
class StreamInfo:
    """One stream line of the ffmpeg summary (``kind``: video, audio, subtitle, data, ...)."""

    index: int
    kind: str
    codec: str
    description: str


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first real video stream (cover art excluded); ``fps`` None when ffmpeg gives none."""

    index: int
    codec: str
    width: int
    height: int
    fps: float | None


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream; ``channel_layout`` as ffmpeg names it ("4.0", "25 channels")."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    channel_layout: str


@dataclass(frozen=True)
class MediaInfo:
    """What ``probe`` found in a file; ``duration_s`` None when the container does not say."""

    path: str
    duration_s: float | None
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None
    streams: tuple[StreamInfo, ...]


def probe(path: str | os.PathLike) -> MediaInfo:
    """Probe a media file with ``ffmpeg -i`` (no ffprobe needed).

    Raises ``MissingMediaError`` when the file does not exist and ``DecodeError`` naming the file
    when it is empty, a directory, or not readable as media.
    """
    path = Path(path)
    if not path.exists():
        raise MissingMediaError(f"{path}: expected a media file, got no such file")
    if not path.is_file():
        raise DecodeError(f"{path}: expected a media file, got a directory or special file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: expected a media file, got an empty file (0 bytes)")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_input_name(path)]
    try:
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=PROBE_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(f"{path}: ffmpeg probe did not finish within {PROBE_TIMEOUT_S:.0f} s") from exc
    return parse_probe_output(result.stderr.decode("utf-8", errors="replace"), str(path))


def parse_probe_output(stderr: str, path: str) -> MediaInfo:
    """Parse the stderr of ``ffmpeg -i path`` into a ``MediaInfo`` (input #0 only)."""
    if not re.search(r"^Input #0, ", stderr, flags=re.MULTILINE):
        raise DecodeError(f"{path}: expected a readable media file, got: {_ffmpeg_error_line(stderr)}")
    streams = tuple(_parse_stream_lines(stderr))
    return MediaInfo(
        path=path,
        duration_s=_parse_duration_s(stderr),
        video=_first_video_stream(streams, path),
        audio=_first_audio_stream(streams, path),
        streams=streams,
    )


def channels_from_layout(layout: str) -> int | None:
    """Channel count of an ffmpeg channel-layout string, or None when it cannot be read.

    Handles named layouts ("stereo", "4.0", "quad"), "N channels", "ambisonic N" ((N+1)^2
    channels, plus any "+..." extras) and custom "FL+FR+..." lists.
    """
    layout = layout.strip()
    match = re.fullmatch(r"(\d+) channels(?: \(.*\))?", layout)
    if match:
        return int(match.group(1))
    if layout in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[layout]
    match = re.fullmatch(r"ambisonic (\d+)((?:\+.+)?)", layout)
    if match:
        extras = [part for part in match.group(2).split("+") if part]
        extra_channels = [channels_from_layout(part) or 1 for part in extras]
        return (int(match.group(1)) + 1) ** 2 + sum(extra_channels)
    if "+" in layout:
        return len([part for part in layout.split("+") if part])
    return None


# ---------------------------------------------------------------------------------------------
# stderr parsing helpers

_STREAM_RE = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)(?:\[0x[0-9a-fA-F]+\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<rest>.*)$",
    flags=re.MULTILINE,
)


def _parse_stream_lines(stderr: str):
    for match in _STREAM_RE.finditer(stderr):
        rest = match.group("rest").strip()
        codec = re.split(r"[ ,]", rest, maxsplit=1)[0]
        yield StreamInfo(int(match.group("index")), match.group("kind").lower(), codec, rest)


def _parse_duration_s(stderr: str) -> float | None:
    match = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", stderr)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _first_video_stream(streams, path: str) -> VideoStreamInfo | None:
    for stream in streams:
        if stream.kind != "video" or "(attached pic)" in stream.description:
            continue
        size = re.search(r"(?<![\w/])([1-9]\d*)x([1-9]\d*)(?!\w)", stream.description)
        if size is None:
            raise DecodeError(f"{path}: expected a frame size in video stream #{stream.index}, "
                              f"got '{stream.description}'")
        return VideoStreamInfo(
            index=stream.index, codec=stream.codec, width=int(size.group(1)),
            height=int(size.group(2)), fps=_parse_fps(stream.description),
        )
    return None


def _parse_fps(description: str) -> float | None:
    for unit in ("fps", "tbr"):
        match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", description)
        if match:
            return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    return None


def _first_audio_stream(streams, path: str) -> AudioStreamInfo | None:
    for stream in streams:
        if stream.kind != "audio":
            continue
        match = re.search(r"(\d+) Hz, ([^,]+)", stream.description)
        if match is None:
            raise DecodeError(f"{path}: expected a sample rate and channel layout in audio stream "
                              f"#{stream.index}, got '{stream.description}'")
        layout = match.group(2).strip()
        channels = channels_from_layout(layout)
        if channels is None:
            raise DecodeError(f"{path}: expected a known channel layout in audio stream "
                              f"#{stream.index}, got '{layout}'")
        return AudioStreamInfo(
            index=stream.index, codec=stream.codec, sample_rate=int(match.group(1)),
            channels=channels, channel_layout=layout,
        )
    return None


def _ffmpeg_error_line(stderr: str) -> str:
    """The most telling line of an ffmpeg failure (last non-empty line that is not boilerplate)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if "At least one output file" not in line]
    for line in reversed(lines):
        if "Error opening input:" in line:
            return line.split("Error opening input:", 1)[1].strip()
    return lines[-1] if lines else "no output from ffmpeg"
