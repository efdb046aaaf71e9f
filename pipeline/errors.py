"""Named exceptions shared by every pipeline stage.

Messages name the item (clip id or file path) and say what was expected and what was found,
e.g. ``clip abc-10: expected 4-channel ambiX audio, got 2 channels``. Catch ``PipelineError`` to
handle every pipeline failure in one place (``--on-error skip`` records the message).
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "DecodeError",
    "NotEquirectangularError",
    "ClipTooShortError",
    "AmbisonicFormatError",
    "ManifestError",
    "MissingMediaError",
    "DetectorWeightsError",
]


class PipelineError(Exception):
    """Base class of every error raised on purpose by the pipeline."""


class DecodeError(PipelineError):
    """A media file cannot be probed or decoded (empty, truncated, not media, ffmpeg failed)."""


class NotEquirectangularError(DecodeError):
    """A video that must be equirectangular does not have a 2:1 frame (width == 2 * height)."""


class ClipTooShortError(DecodeError):
    """A clip holds less audio or video than the caller asked for."""


class AmbisonicFormatError(PipelineError, ValueError):
    """Audio is not the ambisonic layout it was declared as (channel count, NaN/inf samples)."""


class ManifestError(PipelineError, ValueError):
    """A manifest record or file is invalid (unknown key, wrong type, duplicate id, bad path)."""


class MissingMediaError(PipelineError, FileNotFoundError):
    """A media file named by a manifest or an importer does not exist."""


class DetectorWeightsError(PipelineError):
    """Object-detector weights are missing or cannot be loaded."""
