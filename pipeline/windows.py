"""Sample windows of a clip: 1 s of audio with the 0.5 s (8-frame) video window centred inside.

The heart is :func:`plan_windows`, a pure function of the clip's length, the per-candidate
loudness and a seeded generator:

1. Candidate audio windows start on a grid every ``hop_s`` seconds (snapped to the video frame
   grid so that the video frames are exact frames of the ``fps``-resampled stream); a candidate
   must hold ``window_s`` of audio and all ``video_frames`` frames.
2. Candidates whose omni (W) RMS is below ``min_rms_db`` (dB re full scale 1.0) are silent and
   skipped.
3. At most ``max_per_clip`` of the remaining candidates are kept: ``placement="random"`` draws
   them with the clip's generator, ``"even"`` spreads them evenly over the clip; either way the
   result is sorted in time and depends only on (global seed, clip id), never on the order in
   which clips are processed.

``window_index`` is the candidate's grid index (stable: the same window of a clip has the same
index whatever else was selected). Times are seconds from the start of the clip
(``Clip.segment_start_s`` is added by the decoder, not here).

Seeds come from :func:`clip_seed`, a SHA-256 of ``"{seed}:{clip_id}"`` (Python's ``hash()`` is
salted per process and would differ between Dask workers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.errors import ClipTooShortError, PipelineError

__all__ = [
    "Window",
    "NoWindowsError",
    "clip_seed",
    "clip_rng",
    "candidate_starts_s",
    "window_rms_db",
    "plan_windows",
]

#: Floor added to the RMS before taking dB, so digital silence is finite (-240 dB).
RMS_FLOOR = 1e-12


class NoWindowsError(PipelineError):
    """Every candidate window of a clip is silent (below ``min_rms_db``)."""


@dataclass(frozen=True)
class Window:
    """One sample window of a clip.

    Attributes:
        window_index: index of the candidate on the clip's window grid (stable id within a clip).
        audio_start_s: start of the audio window, seconds from the clip start.
        video_start_s: time of the first video frame, seconds (= first_frame / fps).
        first_frame: index of the first video frame in the stream resampled to ``fps``.
        n_frames: number of video frames (T).
        rms_db: RMS of the W channel over the audio window, dB re full scale.
    """

    window_index: int
    audio_start_s: float
    video_start_s: float
    first_frame: int
    n_frames: int
    rms_db: float

    @property
    def frame_indices(self) -> range:
        """Indices of the T video frames in the ``fps``-resampled stream."""
        return range(self.first_frame, self.first_frame + self.n_frames)

    @property
    def keyframe_index(self) -> int:
        """The middle video frame (index T // 2 of the window), used for detection."""
        return self.first_frame + self.n_frames // 2


def clip_seed(seed: int, clip_id: str) -> int:
    """Stable 64-bit seed from the global seed and the clip id (SHA-256, not ``hash()``)."""
    digest = hashlib.sha256(f"{int(seed)}:{clip_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def clip_rng(seed: int, clip_id: str, *stream: int) -> np.random.Generator:
    """Generator for one clip (and optional sub-stream ids, e.g. a window index and a purpose).

    ``clip_rng(s, c, 3, 1)`` is independent of ``clip_rng(s, c, 3, 0)`` and of every other clip.
    """
    return np.random.default_rng(np.random.SeedSequence([clip_seed(seed, clip_id), *map(int, stream)]))


def candidate_starts_s(duration_s: float, window_s: float, hop_s: float, fps: float,
                       n_frames: int, n_video_frames: int | None = None) -> list[tuple[int, float, int]]:
    """Candidate windows ``(window_index, audio_start_s, first_frame)`` of a clip.

    Audio starts are ``k * hop_s`` snapped to the frame grid (multiples of ``1 / fps``); the
    video window of ``n_frames`` frames is centred in the audio window to within half a frame.
    A candidate must end by ``duration_s`` and, when ``n_video_frames`` is given, its last frame
    must be an existing frame of the ``fps``-resampled stream.
    """
    if window_s <= 0 or hop_s <= 0 or fps <= 0 or n_frames < 1:
        raise ValueError(f"expected window_s, hop_s, fps > 0 and n_frames >= 1, got window_s="
                         f"{window_s}, hop_s={hop_s}, fps={fps}, n_frames={n_frames}")
    if n_frames / fps > window_s + 1e-9:
        raise ValueError(f"expected the video window ({n_frames} frames at {fps:g} fps = "
                         f"{n_frames / fps:g} s) to fit in the audio window ({window_s:g} s)")
    centring_frames = int(round((window_s * fps - n_frames) / 2.0))
    candidates = []
    k = 0
    eps = 1e-9
    while True:
        start_frame = int(round(k * hop_s * fps))
        audio_start_s = start_frame / fps
        if audio_start_s + window_s > duration_s + eps:
            break
        first_frame = start_frame + centring_frames
        if n_video_frames is not None and first_frame + n_frames > n_video_frames:
            break
        candidates.append((k, audio_start_s, first_frame))
        k += 1
    return candidates


def window_rms_db(omni: np.ndarray, start_sample: int, n_samples: int) -> float:
    """RMS of ``omni[start : start + n]`` in dB re full scale (1.0); digital silence -> -240 dB."""
    segment = np.asarray(omni[start_sample:start_sample + n_samples], dtype=np.float64)
    if segment.size == 0:
        return float(20.0 * np.log10(RMS_FLOOR))
    rms = float(np.sqrt(np.mean(segment * segment)))
    return float(20.0 * np.log10(max(rms, RMS_FLOOR)))


def plan_windows(
    candidates: Sequence[tuple[int, float, int]],
    rms_db: Sequence[float],
    *,
    n_frames: int,
    fps: float,
    max_per_clip: int,
    min_rms_db: float,
    placement: str,
    rng: np.random.Generator,
    clip_id: str = "?",
    duration_s: float | None = None,
    window_s: float | None = None,
) -> list[Window]:
    """Choose the sample windows of a clip (pure; see the module docstring).

    Args:
        candidates: from :func:`candidate_starts_s`.
        rms_db: W-channel RMS (dB re full scale) of each candidate's audio window.
        max_per_clip: keep at most this many windows (0 = no limit).
        min_rms_db: candidates quieter than this are skipped as silent.
        placement: "random" (drawn with ``rng``) or "even" (evenly spread) when more than
            ``max_per_clip`` candidates are loud enough.
        rng: the clip's generator (:func:`clip_rng`), used only by "random".
        clip_id, duration_s, window_s: for error messages.

    Raises:
        ClipTooShortError: no candidate fits in the clip.
        NoWindowsError: every candidate is silent.
    """
    if len(candidates) != len(rms_db):
        raise ValueError(f"expected one rms value per candidate, got {len(rms_db)} for "
                         f"{len(candidates)} candidates")
    if not candidates:
        raise ClipTooShortError(
            f"clip {clip_id}: expected at least one {window_s if window_s else '?'} s window with "
            f"{n_frames} video frames, got a clip of {duration_s if duration_s is not None else '?'} s")
    loud = [i for i, level in enumerate(rms_db) if level >= min_rms_db]
    if not loud:
        raise NoWindowsError(
            f"clip {clip_id}: expected at least one window with W RMS >= {min_rms_db:g} dBFS, got "
            f"{len(candidates)} silent candidates (loudest {max(rms_db):.1f} dBFS)")
    if max_per_clip > 0 and len(loud) > max_per_clip:
        if placement == "random":
            loud = sorted(rng.choice(loud, size=max_per_clip, replace=False).tolist())
        elif placement == "even":
            picks = np.linspace(0, len(loud) - 1, max_per_clip)
            loud = [loud[int(round(p))] for p in picks]
        else:
            raise ValueError(f"placement must be 'random' or 'even', got {placement!r}")
    return [Window(window_index=int(candidates[i][0]), audio_start_s=float(candidates[i][1]),
                   video_start_s=candidates[i][2] / fps, first_frame=int(candidates[i][2]),
                   n_frames=n_frames, rms_db=float(rms_db[i]))
            for i in loud]
