"""What every importer shares: the problem record, probing many files in parallel into clips, the
summary log and the problems file."""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pipeline.errors import ManifestError, PipelineError
from pipeline.ffmpeg_bin import MediaInfo
from pipeline.manifest import Clip


log = logging.getLogger(__name__)


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".m4v")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
EIGENSCAPE_SEGMENT_S = 30.0
EIGENSCAPE_FOLDS = 4
EIGENSCAPE_RECORDINGS_PER_FOLD = 2  # per class: fold f tests recordings 2f+1 and 2f+2
_SHOW_FIRST = 5



@dataclass(frozen=True)
class ImportProblem:
    """An item an importer could not turn into a record, and why."""

    item: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)




def _clip_from_probe(clip_id: str, video_rel: str, audio_rel: str | None, video_info: MediaInfo,
                     audio_info: MediaInfo, *, split: str, ambisonics: str, dataset: str) -> Clip:
    """A ``Clip`` from probe results; ``ManifestError`` says what is wrong with the media."""
    video, audio = video_info.video, audio_info.audio
    if video is None:
        raise ManifestError(f"clip {clip_id!r}: expected a video stream in {video_rel}, got none")
    if audio is None:
        raise ManifestError(f"clip {clip_id!r}: expected an audio stream in "
                            f"{audio_rel or video_rel}, got none")
    if video.width != 2 * video.height:
        raise ManifestError(f"clip {clip_id!r}: expected a 2:1 equirectangular frame, got "
                            f"{video.width}x{video.height}")
    if video.fps is None:
        raise ManifestError(f"clip {clip_id!r}: expected a frame rate in {video_rel}, got none")
    durations = [d for d in (video_info.duration_s, audio_info.duration_s) if d is not None]
    if not durations:
        raise ManifestError(f"clip {clip_id!r}: expected a duration in the container, got none")
    return Clip(
        clip_id=clip_id, video_path=video_rel, audio_path=audio_rel, duration_s=min(durations),
        fps=video.fps, width=video.width, height=video.height, sample_rate=audio.sample_rate,
        audio_channels=audio.channels, ambisonics=ambisonics, split=split, dataset=dataset,
    )


def _build_all(candidates: Sequence, build: Callable, key: Callable, workers: int):
    """Run ``build`` on every candidate (threads: the work is in ffmpeg subprocesses).

    Returns ``(records, problems)`` in candidate order; ``PipelineError``s become problems.
    """
    def attempt(candidate):
        try:
            return build(candidate), None
        except PipelineError as exc:
            return None, ImportProblem(key(candidate), str(exc))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(attempt, candidates))
    records = [record for record, _ in results if record is not None]
    problems = [problem for _, problem in results if problem is not None]
    return records, problems


def _log_summary(corpus: str, n_items: int, records: Sequence, problems: Sequence[ImportProblem]) -> None:
    log.info("%s: %d records from %d items", corpus, len(records), n_items)
    if problems:
        first = "; ".join(f"{p.item}: {p.reason}" for p in problems[:_SHOW_FIRST])
        log.warning("%s: %d problems (first %d: %s)", corpus, len(problems),
                    min(len(problems), _SHOW_FIRST), first)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def write_problems(path: str | os.PathLike, problems: Iterable[ImportProblem]) -> Path:
    """Write problems as JSONL (``{"item": ..., "reason": ...}`` per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _problems_path(manifest_path: Path) -> Path:
    return manifest_path.with_name(manifest_path.stem + ".problems.jsonl")
