"""EigenScape (Green & Murphy 2017): 8 scene classes x 8 recordings, their folds and segments."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Sequence

from pipeline.errors import ManifestError
from pipeline.manifest import Recording

from pipeline.importers.common import (EIGENSCAPE_FOLDS, EIGENSCAPE_RECORDINGS_PER_FOLD,
                                      EIGENSCAPE_SEGMENT_S, ImportProblem, _log_summary)

log = logging.getLogger(__name__)


_EIGENSCAPE_NAME = re.compile(r"(?P<scene>[A-Za-z]+)[-.](?P<index>\d+)\.wav", re.IGNORECASE)


def parse_eigenscape_name(file_name: str) -> tuple[str, int] | None:
    """``(scene_class, recording_index)`` from ``Beach-01.wav`` or ``Beach.1.wav``, else None."""
    match = _EIGENSCAPE_NAME.fullmatch(file_name)
    if match is None:
        return None
    return match.group("scene"), int(match.group("index"))


def eigenscape_fold(recording_index: int,
                    recordings_per_fold: int = EIGENSCAPE_RECORDINGS_PER_FOLD) -> int:
    """0-based fold that tests a 1-based recording: fold f tests recordings 2f+1 and 2f+2."""
    return (recording_index - 1) // recordings_per_fold


def import_eigenscape(
    folder: str | os.PathLike,
    *,
    segment_s: float = EIGENSCAPE_SEGMENT_S,
    n_folds: int = EIGENSCAPE_FOLDS,
    recordings_per_fold: int = EIGENSCAPE_RECORDINGS_PER_FOLD,
    dataset: str = "eigenscape",
) -> tuple[list[Recording], list[ImportProblem]]:
    """Recordings of an EigenScape folder (``*.wav`` at any depth), with folds and segments.

    Protocol (Green & Murphy 2017, as used by Wang et al. 2022): 8 classes x 8 recordings;
    fold f in 0..3 tests recordings 2f+1 and 2f+2 of every class and trains on the other six,
    so a recording is never split across train and test. Each recording is cut into full
    ``segment_s``-second segments (the 10-minute originals give 20 segments of 30 s).
    Durations come from the file headers (soundfile.info), no audio is read.
    """
    import soundfile

    folder = Path(folder)
    recordings: list[Recording] = []
    problems: list[ImportProblem] = []
    seen: dict[str, str] = {}
    wav_files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    max_index = n_folds * recordings_per_fold
    for wav in wav_files:
        rel = wav.relative_to(folder).as_posix()
        parsed = parse_eigenscape_name(wav.name)
        if parsed is None:
            problems.append(ImportProblem(rel, "name not like 'Beach-01.wav' or 'Beach.1.wav'"))
            continue
        scene, index = parsed
        recording_id = f"{scene}-{index:02d}"
        if not 1 <= index <= max_index:
            problems.append(ImportProblem(rel, f"recording index expected in 1..{max_index} for "
                                               f"the {n_folds}-fold protocol, got {index}"))
            continue
        if recording_id in seen:
            problems.append(ImportProblem(rel, f"duplicate of {seen[recording_id]} "
                                               f"(both are {recording_id})"))
            continue
        try:
            header = soundfile.info(str(wav))
        except RuntimeError as exc:  # soundfile raises LibsndfileError (a RuntimeError)
            problems.append(ImportProblem(rel, f"unreadable audio: {exc}"))
            continue
        duration_s = header.frames / header.samplerate
        starts = [k * segment_s for k in range(int(math.floor(duration_s / segment_s + 1e-9)))]
        if not starts:
            problems.append(ImportProblem(rel, f"expected at least one {segment_s:g} s segment, "
                                               f"got a {duration_s:.3f} s recording"))
            continue
        ambisonics = "ambix" if header.channels == 4 else "hoa_ambix"
        try:
            recordings.append(Recording(
                recording_id=recording_id, audio_path=rel, scene_class=scene,
                recording_index=index, sample_rate=header.samplerate, channels=header.channels,
                duration_s=duration_s, fold=eigenscape_fold(index, recordings_per_fold),
                ambisonics=ambisonics, segment_duration_s=segment_s,
                segment_starts_s=tuple(starts), dataset=dataset))
        except ManifestError as exc:
            problems.append(ImportProblem(rel, str(exc)))
            continue
        seen[recording_id] = rel
    problems += _missing_folds(recordings, n_folds)
    _log_summary("eigenscape", len(wav_files), recordings, problems)
    return recordings, problems


def eigenscape_fold_split(recordings: Sequence[Recording], test_fold: int
                          ) -> tuple[list[Recording], list[Recording]]:
    """``(train, test)`` recordings for one fold: test holds the recordings of ``test_fold``."""
    folds = sorted({r.fold for r in recordings})
    if test_fold not in folds:
        raise ValueError(f"test_fold expected one of {folds}, got {test_fold}")
    train = [r for r in recordings if r.fold != test_fold]
    test = [r for r in recordings if r.fold == test_fold]
    return train, test


def _missing_folds(recordings: Sequence[Recording], n_folds: int) -> list[ImportProblem]:
    """One problem per class that has no recording for some fold (protocol incomplete)."""
    folds_of: dict[str, set[int]] = {}
    for recording in recordings:
        folds_of.setdefault(recording.scene_class, set()).add(recording.fold)
    problems = []
    for scene, folds in sorted(folds_of.items()):
        absent = sorted(set(range(n_folds)) - folds)
        if absent:
            problems.append(ImportProblem(scene, f"class has no recordings for fold(s) {absent}: "
                                                 "its test set is empty there"))
    return problems
