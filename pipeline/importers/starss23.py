"""STARSS23 as distributed (Sony-TAu Realistic Spatial Soundscapes 2023, DCASE 2023/2024 task 3):
its folder layout, its frame-wise label files, and its importer (:func:`import_starss23`: clips
for pretraining with their labels kept).

Layout (the development set; the synthetic stand-in of :mod:`pipeline.synth.starss23` writes the
same)::

    <root>/foa_dev/<split>/<name>.wav        4-channel ambiX (ACN/SN3D), 24 kHz
    <root>/video_dev/<split>/<name>.mp4      360° equirectangular video (1920x960, 29.97 fps)
    <root>/metadata_dev/<split>/<name>.csv   labels

with ``<split>`` one of ``dev-train-sony``, ``dev-train-tau``, ``dev-test-sony``,
``dev-test-tau``. A label row is ``frame, class, source, azimuth, elevation[, distance]``: the
0-based label frame of ``LABEL_HOP_S`` = 100 ms, the 0-based class index, the source (instance)
number that tells apart simultaneous events of one class, azimuth and elevation in integer
degrees and, in the 2024 release, distance in centimetres. Azimuth is counter-clockwise from the
front (+90° = left) and elevation up from the horizon, as in this project (``CONVENTIONS.md``);
the DCASE baseline's label-to-vector conversion (x = cos(el) cos(az), y = cos(el) sin(az),
z = sin(el)) and its intensity vectors from ACN channels W, Y, Z, X agree with it.

This module reads; it never decides what to do with a problem. Readers return
``(result, problems)`` with every malformed row or unpaired file named, so the importer
(:func:`pipeline.importers.import_starss23`) and the SELD evaluation (``evals.audio.seld``)
report them instead of dropping them silently.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline.ffmpeg_bin import probe
from pipeline.ground_truth import SYNTHETIC_MARKER_NAME, is_synthetic_dataset
from pipeline.importers.common import ImportProblem, _build_all, _clip_from_probe, _log_summary
from pipeline.manifest import Clip

__all__ = [
    "import_starss23",
    "LABEL_HOP_S",
    "STARSS23_CLASSES",
    "STARSS23_SPLITS",
    "LabelRow",
    "LayoutProblem",
    "Starss23Recording",
    "read_label_csv",
    "write_label_csv",
    "scan_layout",
    "is_train_split",
    "class_names_of",
]

LABEL_HOP_S = 0.1
#: The 13 classes of STARSS23 in index order (DCASE 2023 task 3).
STARSS23_CLASSES = (
    "female_speech", "male_speech", "clapping", "telephone", "laughter", "domestic_sounds",
    "footsteps", "door", "music", "musical_instrument", "water_tap", "bell", "knock",
)
STARSS23_SPLITS = ("dev-train-sony", "dev-train-tau", "dev-test-sony", "dev-test-tau")
AUDIO_FOLDER, VIDEO_FOLDER, LABEL_FOLDER = "foa_dev", "video_dev", "metadata_dev"


@dataclass(frozen=True)
class LabelRow:
    """One active event in one 100 ms label frame; angles in degrees (azimuth counter-clockwise
    from the front, elevation up), distance in centimetres or None (2023 files)."""

    frame: int
    class_index: int
    source_index: int
    azimuth_deg: float
    elevation_deg: float
    distance_cm: float | None = None


@dataclass(frozen=True)
class LayoutProblem:
    """A file (relative to the root) or a row (``file:line``) that could not be used, and why."""

    item: str
    reason: str


@dataclass(frozen=True)
class Starss23Recording:
    """One recording of the layout; paths relative to the root, ``video_path`` None if absent."""

    name: str
    split: str
    audio_path: str
    labels_path: str
    video_path: str | None

    @property
    def is_train(self) -> bool:
        return is_train_split(self.split)


def is_train_split(split: str) -> bool:
    """``dev-train-*`` -> True, ``dev-test-*`` -> False (ValueError for anything else)."""
    if split.startswith("dev-train"):
        return True
    if split.startswith("dev-test"):
        return False
    raise ValueError(f"split expected dev-train-* or dev-test-*, got {split!r}")


def class_names_of(root: str | os.PathLike) -> tuple[list[str], bool]:
    """``(class names by index, synthetic?)`` of a STARSS23(-layout) folder: STARSS23's 13, or
    those in the ``SYNTHETIC.json`` marker of a set written by ``pipeline.synth.cli starss23``."""
    if not is_synthetic_dataset(root):
        return list(STARSS23_CLASSES), False
    marker = Path(root) / SYNTHETIC_MARKER_NAME
    names = json.loads(marker.read_text(encoding="utf-8")).get("class_names")
    if not names:
        raise ValueError(f"{marker}: expected class_names in the marker of a synthetic "
                         "STARSS23-layout set; regenerate it with pipeline.synth.cli starss23")
    return list(names), True


def read_label_csv(path: str | os.PathLike, n_classes: int = len(STARSS23_CLASSES),
                   name: str | None = None) -> tuple[list[LabelRow], list[LayoutProblem]]:
    """Rows of a label CSV, and one problem per malformed row (``name:line``: what was wrong).

    A row needs 5 or 6 numeric fields; frame and source >= 0, class in ``0..n_classes-1``,
    azimuth in [-180, 180], elevation in [-90, 90], distance >= 0. An azimuth of exactly +180 is
    kept (it equals -180). Blank lines are skipped.
    """
    name = name or str(path)
    rows: list[LabelRow] = []
    problems: list[LayoutProblem] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for line_number, fields in enumerate(csv.reader(handle), 1):
            if not fields or all(not f.strip() for f in fields):
                continue
            row, reason = _parse_row(fields, n_classes)
            if row is None:
                problems.append(LayoutProblem(f"{name}:{line_number}", reason))
            else:
                rows.append(row)
    return rows, problems


def _parse_row(fields: Sequence[str], n_classes: int) -> tuple[LabelRow | None, str]:
    if len(fields) not in (5, 6):
        return None, (f"expected 5 or 6 fields (frame, class, source, azimuth, elevation"
                      f"[, distance]), got {len(fields)}: {','.join(fields)!r}")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return None, f"expected numbers, got {','.join(fields)!r}"
    if not all(math.isfinite(v) for v in values):
        return None, f"expected finite numbers, got {','.join(fields)!r}"
    frame, class_index, source_index, azimuth, elevation = values[:5]
    distance = values[5] if len(values) == 6 else None
    checks = (
        (frame >= 0 and frame == int(frame), f"frame expected an integer >= 0, got {fields[0]}"),
        (class_index == int(class_index) and 0 <= class_index < n_classes,
         f"class expected an integer in 0..{n_classes - 1}, got {fields[1]}"),
        (source_index >= 0 and source_index == int(source_index),
         f"source expected an integer >= 0, got {fields[2]}"),
        (-180.0 <= azimuth <= 180.0, f"azimuth expected in [-180, 180] degrees, got {fields[3]}"),
        (-90.0 <= elevation <= 90.0, f"elevation expected in [-90, 90] degrees, got {fields[4]}"),
        (distance is None or distance >= 0.0, f"distance expected >= 0 cm, got {fields[-1]}"),
    )
    for ok, reason in checks:
        if not ok:
            return None, reason
    return LabelRow(int(frame), int(class_index), int(source_index), azimuth, elevation,
                    distance), ""


def write_label_csv(path: str | os.PathLike, rows: Sequence[LabelRow]) -> Path:
    """Write rows as STARSS23 does: integers, sorted by frame then class then source, 5 fields
    (6 when the rows carry distances). Written under a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (r.frame, r.class_index, r.source_index))
    lines = []
    for r in ordered:
        fields = [r.frame, r.class_index, r.source_index, round(r.azimuth_deg),
                  round(r.elevation_deg)]
        if r.distance_cm is not None:
            fields.append(round(r.distance_cm))
        lines.append(",".join(str(int(v)) for v in fields))
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, path)
    return path


def scan_layout(root: str | os.PathLike, require_video: bool = False
                ) -> tuple[list[Starss23Recording], list[LayoutProblem]]:
    """Pair the audio, label and video files of every recording under ``root``.

    A recording needs its FOA file and its label file; a missing video is a problem only with
    ``require_video`` (pretraining needs it; the SELD evaluation does not) and otherwise leaves
    ``video_path`` None. Every unpaired file and unknown split folder is reported.
    """
    root = Path(root)
    if not (root / AUDIO_FOLDER).is_dir():
        raise FileNotFoundError(f"{root}: expected a STARSS23 folder with {AUDIO_FOLDER}/ and "
                                f"{LABEL_FOLDER}/, got no {AUDIO_FOLDER}/")
    problems: list[LayoutProblem] = []
    files: dict[str, dict[tuple[str, str], str]] = {}
    for folder, suffixes in ((AUDIO_FOLDER, (".wav",)), (LABEL_FOLDER, (".csv",)),
                             (VIDEO_FOLDER, (".mp4",))):
        found: dict[tuple[str, str], str] = {}
        base = root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if not path.is_file() or path.suffix.lower() not in suffixes:
                    continue
                rel = path.relative_to(root).as_posix()
                split = path.parent.name
                if path.parent.parent != base or split not in STARSS23_SPLITS:
                    problems.append(LayoutProblem(rel, f"expected {folder}/<split>/<name>"
                                                       f"{suffixes[0]} with a split in "
                                                       f"{STARSS23_SPLITS}"))
                    continue
                found[(split, path.stem)] = rel
        files[folder] = found
    audio, labels, video = files[AUDIO_FOLDER], files[LABEL_FOLDER], files[VIDEO_FOLDER]
    recordings = []
    for key in sorted(set(audio) | set(labels)):
        split, name = key
        if key not in labels:
            problems.append(LayoutProblem(audio[key], f"no label file {LABEL_FOLDER}/{split}/"
                                                      f"{name}.csv"))
            continue
        if key not in audio:
            problems.append(LayoutProblem(labels[key], f"no audio file {AUDIO_FOLDER}/{split}/"
                                                       f"{name}.wav"))
            continue
        if key not in video and require_video:
            problems.append(LayoutProblem(audio[key], f"no video file {VIDEO_FOLDER}/{split}/"
                                                      f"{name}.mp4"))
            continue
        recordings.append(Starss23Recording(name, split, audio[key], labels[key], video.get(key)))
    for key in sorted(set(video) - set(audio) - set(labels)):
        problems.append(LayoutProblem(video[key], "video without audio or label file"))
    return recordings, problems


# ---------------------------------------------------------------------------------------------
# the importer


def import_starss23(root: str | os.PathLike, *, workers: int = 4,
                    dataset: str | None = None) -> tuple[list[Clip], list[ImportProblem]]:
    """Clips of a STARSS23 development set (``foa_dev/``, ``video_dev/``, ``metadata_dev/``;
    the layout above) for pretraining, with their labels kept (``labels_path``).

    A clip pairs ``video_dev/<split>/<name>.mp4`` with ``foa_dev/<split>/<name>.wav`` (ambiX,
    ACN/SN3D) and ``metadata_dev/<split>/<name>.csv``. The official split is kept in the paths
    and mapped to this project's splits: ``dev-train-*`` -> train, ``dev-test-*`` -> test.
    Files missing a partner, label files with malformed rows (each row named), unreadable media
    and non-2:1 video become problems; a recording with bad rows is still imported (its good
    rows are usable), the rows are listed. ``dataset`` defaults to ``starss23`` (or
    ``starss23_synth`` for a folder written by ``pipeline.synth.cli starss23``).
    """
    root = Path(root)
    class_names, synthetic = class_names_of(root)
    dataset = dataset or ("starss23_synth" if synthetic else "starss23")
    recordings, layout_problems = scan_layout(root, require_video=True)
    problems = [ImportProblem(p.item, p.reason) for p in layout_problems]
    for recording in recordings:
        _, row_problems = read_label_csv(root / recording.labels_path, len(class_names),
                                         name=recording.labels_path)
        problems += [ImportProblem(p.item, "label row skipped: " + p.reason)
                     for p in row_problems]

    def build(recording) -> Clip:
        clip = _clip_from_probe(recording.name, recording.video_path, recording.audio_path,
                                probe(root / recording.video_path),
                                probe(root / recording.audio_path),
                                split="train" if recording.is_train else "test",
                                ambisonics="ambix", dataset=dataset)
        return dataclasses.replace(clip, labels_path=recording.labels_path)

    clips, build_problems = _build_all(recordings, build, key=lambda r: r.video_path,
                                       workers=workers)
    problems += build_problems
    _log_summary("starss23", len(recordings), clips, problems)
    return clips, problems
