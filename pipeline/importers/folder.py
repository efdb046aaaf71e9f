"""A folder of your own 360° clips with first-order ambisonics inside."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from pipeline.ffmpeg_bin import probe
from pipeline.manifest import Clip, stable_split

from pipeline.importers.common import (DEFAULT_SPLIT_FRACTIONS, VIDEO_SUFFIXES, ImportProblem,
                                      _build_all, _clip_from_probe, _log_summary)

log = logging.getLogger(__name__)


def import_video_folder(
    folder: str | os.PathLike,
    *,
    ambisonics: str = "ambix",
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    split_by: str = "file",
    dataset: str = "folder",
    workers: int = 4,
) -> tuple[list[Clip], list[ImportProblem]]:
    """Clips for every video (``.mp4 .mkv .mov .webm .m4v`` at any depth) with audio inside.

    ``clip_id`` is the path relative to ``folder`` without its suffix. The split is
    ``stable_split`` of the clip id (``split_by="file"``) or of its parent folder
    (``split_by="folder"``: keep clips cut from one long video together). Unreadable files,
    files without audio, the wrong channel count for ``ambisonics`` or non-2:1 frames are
    reported as problems.
    """
    if split_by not in ("file", "folder"):
        raise ValueError(f"split_by must be 'file' or 'folder', got {split_by!r}")
    stable_split("probe-fractions", split_fractions)  # validates the fractions before probing
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    problems: list[ImportProblem] = []
    candidates: list[tuple[str, str, str]] = []  # clip_id, relative path, split
    owner: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(folder).as_posix()
        clip_id = rel[: -len(path.suffix)]
        if clip_id in owner:
            problems.append(ImportProblem(rel, f"clip id {clip_id!r} already taken by {owner[clip_id]}"))
            continue
        owner[clip_id] = rel
        key = clip_id if split_by == "file" else (Path(rel).parent.as_posix())
        candidates.append((clip_id, rel, stable_split(key, split_fractions)))

    def build(candidate) -> Clip:
        clip_id, rel, split = candidate
        info = probe(folder / rel)
        return _clip_from_probe(clip_id, rel, None, info, info, split=split,
                                ambisonics=ambisonics, dataset=dataset)

    clips, build_problems = _build_all(candidates, build, key=lambda c: c[1], workers=workers)
    problems += build_problems
    _log_summary("folder", len(files), clips, problems)
    return clips, problems
