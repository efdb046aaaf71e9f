"""One small recipe per corpus: scan a data folder, probe the media, return manifest records.

Every importer returns ``(records, problems)``: nothing is dropped silently. A problem is an
``ImportProblem(item, reason)`` (missing file, unreadable media, wrong channel count, ...); the
CLI logs a summary and writes them beside the manifest as ``<name>.problems.jsonl``.

    python -m pipeline.importers yt360 --root /data/yt360 --clip-list clips.txt \\
        --train-ids train.txt --test-ids test.txt --out data_manifests/yt360.jsonl \\
        [--channel-order ambix|yt360-note|WYZX|...]
    python -m pipeline.importers eigenscape --folder /data/eigenscape --out data_manifests/eigenscape.jsonl
    python -m pipeline.importers folder --folder /data/my360 --out data_manifests/my360.jsonl
    python -m pipeline.importers starss23 --root /data/STARSS23 --out data_manifests/starss23.jsonl

Paths in the records are relative to the scanned root (the data root).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from pipeline.decode import AMBIX_CHANNEL_ORDER, check_channel_order
from pipeline.errors import ManifestError, PipelineError
from pipeline.ffmpeg_bin import MediaInfo, probe
from pipeline.manifest import Clip, Recording, stable_split, write_manifest
from pipeline import starss23

__all__ = [
    "ImportProblem",
    "import_yt360",
    "YT360_CHANNEL_ORDERS",
    "parse_yt360_channel_order",
    "import_eigenscape",
    "import_starss23",
    "import_video_folder",
    "eigenscape_fold",
    "eigenscape_fold_split",
    "parse_yt360_clip_list",
    "parse_eigenscape_name",
    "write_problems",
    "main",
]

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


# ---------------------------------------------------------------------------------------------
# YouTube-360

# What the four channels of a released YT-360 .m4a hold (letter k: channel k; docs/channel_order.md).
# "ambix": ACN W, Y, Z, X, as the authors' loader reads them (the default). "yt360-note": the
# switch reported by the public note "YT-360 ambisonics order" (its loader output X, Y, W, Z,
# reindexed [2, 1, 3, 0]); our decoder reads 4.0-tagged and untagged files in the same order as
# the authors' loader, so the same letters apply.
YT360_CHANNEL_ORDERS = {"ambix": AMBIX_CHANNEL_ORDER, "yt360-note": "XYWZ"}


def parse_yt360_channel_order(text: str) -> str:
    """A name from ``YT360_CHANNEL_ORDERS`` or four letters W, X, Y, Z (any case) -> letters."""
    name = text.strip()
    if name.lower() in YT360_CHANNEL_ORDERS:
        return YT360_CHANNEL_ORDERS[name.lower()]
    try:
        return check_channel_order(name.upper())
    except ValueError as exc:
        raise ValueError(f"{exc}; or a name from {sorted(YT360_CHANNEL_ORDERS)}") from exc


def parse_yt360_clip_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(youtube_id, start)`` pairs from lines ``YOUTUBE_ID start1,start2,...``.

    ``start`` is kept as written (it is part of the file name ``{id}-{start}.mp4``); blank
    lines and ``#`` comments are skipped; a malformed line raises ``ManifestError`` (file:line).
    """
    pairs: list[tuple[str, str]] = []
    for line_number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        starts = parts[1].split(",") if len(parts) == 2 else []
        if not starts or not all(_is_number(s) for s in starts):
            raise ManifestError(f"{path}:{line_number}: expected 'YOUTUBE_ID start1,start2,...', "
                                f"got {text!r}")
        pairs.extend((parts[0], start) for start in starts)
    return pairs


def import_yt360(
    root: str | os.PathLike,
    clip_list_file: str | os.PathLike,
    train_ids_file: str | os.PathLike,
    test_ids_file: str | os.PathLike,
    *,
    workers: int = 4,
    channel_order: str = AMBIX_CHANNEL_ORDER,
) -> tuple[list[Clip], list[ImportProblem]]:
    """Clips of the YT-360 release under ``root`` (``video/{id}-{start}.mp4``, ``audio/...m4a``).

    The split of a clip is that of its YouTube id (``train_ids_file`` / ``test_ids_file``: one
    id per line, first token). Each present clip is probed (``workers`` ffmpeg processes at once);
    missing files, ids in neither list, unreadable media and non-4-channel or non-2:1 clips
    become problems. Raises ``ManifestError`` if an id is in both lists.

    Every record states ``channel_order``: the letters W, X, Y, Z that the file's channels 0-3
    hold (default ACN "WYZX", ambiX as released; "XYWZ" is the switch of the public note, see
    ``YT360_CHANNEL_ORDERS`` and docs/channel_order.md). Decoding undoes it.
    """
    check_channel_order(channel_order)
    root = Path(root)
    pairs = parse_yt360_clip_list(clip_list_file)
    split_of = _yt360_split_table(train_ids_file, test_ids_file)
    problems: list[ImportProblem] = []
    candidates: list[tuple[str, str, str, str]] = []  # clip_id, split, video, audio
    for youtube_id, start in pairs:
        clip_id = f"{youtube_id}-{start}"
        video, audio = f"video/{clip_id}.mp4", f"audio/{clip_id}.m4a"
        absent = [rel for rel in (video, audio) if not (root / rel).is_file()]
        if absent:
            problems.append(ImportProblem(clip_id, "missing " + " and ".join(absent)))
        elif youtube_id not in split_of:
            problems.append(ImportProblem(clip_id, f"youtube id {youtube_id} is in neither the "
                                                   "train nor the test id list"))
        else:
            candidates.append((clip_id, split_of[youtube_id], video, audio))

    def build(candidate) -> Clip:
        clip_id, split, video, audio = candidate
        video_info, audio_info = probe(root / video), probe(root / audio)
        clip = _clip_from_probe(clip_id, video, audio, video_info, audio_info, split=split,
                                ambisonics="ambix", dataset="yt360")
        return dataclasses.replace(clip, channel_order=channel_order)

    clips, build_problems = _build_all(candidates, build, key=lambda c: c[0], workers=workers)
    problems += build_problems
    _log_summary("yt360", len(pairs), clips, problems)
    log.info("yt360: channels 0-3 of every audio file assumed to hold %s (--channel-order)",
             ", ".join(channel_order))
    return clips, problems


def _yt360_split_table(train_ids_file, test_ids_file) -> dict[str, str]:
    train, test = _read_ids(train_ids_file), _read_ids(test_ids_file)
    both = sorted(train & test)
    if both:
        raise ManifestError(f"{train_ids_file} and {test_ids_file}: expected disjoint id lists, "
                            f"got {len(both)} ids in both (first: {both[:_SHOW_FIRST]})")
    return {**{i: "train" for i in train}, **{i: "test" for i in test}}


def _read_ids(path) -> set[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


# ---------------------------------------------------------------------------------------------
# EigenScape

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


# ---------------------------------------------------------------------------------------------
# STARSS23


def import_starss23(root: str | os.PathLike, *, workers: int = 4,
                    dataset: str | None = None) -> tuple[list[Clip], list[ImportProblem]]:
    """Clips of a STARSS23 development set (``foa_dev/``, ``video_dev/``, ``metadata_dev/``;
    :mod:`pipeline.starss23`) for pretraining, with their labels kept (``labels_path``).

    A clip pairs ``video_dev/<split>/<name>.mp4`` with ``foa_dev/<split>/<name>.wav`` (ambiX,
    ACN/SN3D) and ``metadata_dev/<split>/<name>.csv``. The official split is kept in the paths
    and mapped to this project's splits: ``dev-train-*`` -> train, ``dev-test-*`` -> test.
    Files missing a partner, label files with malformed rows (each row named), unreadable media
    and non-2:1 video become problems; a recording with bad rows is still imported (its good
    rows are usable), the rows are listed. ``dataset`` defaults to ``starss23`` (or
    ``starss23_synth`` for a folder written by ``pipeline.synth.cli starss23``).
    """
    root = Path(root)
    class_names, synthetic = starss23.class_names_of(root)
    dataset = dataset or ("starss23_synth" if synthetic else "starss23")
    recordings, layout_problems = starss23.scan_layout(root, require_video=True)
    problems = [ImportProblem(p.item, p.reason) for p in layout_problems]
    for recording in recordings:
        _, row_problems = starss23.read_label_csv(root / recording.labels_path, len(class_names),
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


# ---------------------------------------------------------------------------------------------
# a user's folder of 360° clips


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


# ---------------------------------------------------------------------------------------------
# shared helpers


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


# ---------------------------------------------------------------------------------------------
# command line


def _parse_fractions(text: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> dict."""
    try:
        return {name.strip(): float(share) for name, share in
                (item.split("=") for item in text.split(","))}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'train=0.8,val=0.1,test=0.1', got {text!r}") from exc


def _channel_order_arg(text: str) -> str:
    """``ambix`` or four letters W, X, Y, Z (what channels 0-3 of the files hold)."""
    try:
        return check_channel_order(AMBIX_CHANNEL_ORDER if text.lower() == "ambix"
                                   else text.upper())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _yt360_channel_order_arg(text: str) -> str:
    try:
        return parse_yt360_channel_order(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.importers",
                                     description="Build a JSONL manifest for a corpus.")
    sub = parser.add_subparsers(dest="corpus", required=True)

    yt = sub.add_parser("yt360", help="YouTube-360 release (video/ and audio/ folders)")
    yt.add_argument("--root", required=True, help="data root holding video/ and audio/")
    yt.add_argument("--clip-list", required=True, help="lines 'YOUTUBE_ID start1,start2,...'")
    yt.add_argument("--train-ids", required=True)
    yt.add_argument("--test-ids", required=True)
    yt.add_argument("--workers", type=int, default=4)
    yt.add_argument("--channel-order", type=_yt360_channel_order_arg, default=AMBIX_CHANNEL_ORDER,
                    help="what channels 0-3 of the .m4a files hold: 'ambix' = WYZX (default, as "
                         "released), 'yt360-note' = XYWZ (the switch a public note reports), or "
                         "any 4 letters W, X, Y, Z (docs/channel_order.md)")

    eig = sub.add_parser("eigenscape", help="EigenScape folder of Beach-01.wav-style files")
    eig.add_argument("--folder", required=True)
    eig.add_argument("--segment-s", type=float, default=EIGENSCAPE_SEGMENT_S)

    fol = sub.add_parser("folder", help="a folder of your own 360° clips with FOA inside")
    fol.add_argument("--folder", required=True)
    fol.add_argument("--ambisonics", default="ambix", choices=["ambix", "fuma", "acn_n3d", "hoa_ambix"])
    fol.add_argument("--split", type=_parse_fractions, default=dict(DEFAULT_SPLIT_FRACTIONS),
                     help="split shares, e.g. train=0.8,val=0.1,test=0.1")
    fol.add_argument("--split-by", choices=["file", "folder"], default="file")
    fol.add_argument("--workers", type=int, default=4)

    sta = sub.add_parser("starss23", help="STARSS23 development set (foa_dev/, video_dev/, "
                                          "metadata_dev/), labels kept")
    sta.add_argument("--root", required=True, help="folder holding foa_dev/ and video_dev/")
    sta.add_argument("--workers", type=int, default=4)

    for command in (fol, sta):
        command.add_argument("--channel-order", type=_channel_order_arg,
                             default=AMBIX_CHANNEL_ORDER,
                             help="what channels 0-3 of the audio hold: 'ambix' = WYZX (default) "
                                  "or any 4 letters W, X, Y, Z, e.g. the order make "
                                  "channel-order recommends (docs/channel_order.md)")
    for command in (yt, eig, fol, sta):
        command.add_argument("--out", required=True, help="manifest path, e.g. data_manifests/x.jsonl")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: write the manifest and, if any, ``<name>.problems.jsonl`` beside it.
    Errors take the shared path (one ``error:`` line, exit code 2, ``--debug``)."""
    from pipeline.config import run_main

    return run_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _build_parser().parse_args(argv)
    if args.corpus == "yt360":
        records, problems = import_yt360(args.root, args.clip_list, args.train_ids, args.test_ids,
                                         workers=args.workers, channel_order=args.channel_order)
        data_root = args.root
    elif args.corpus == "eigenscape":
        records, problems = import_eigenscape(args.folder, segment_s=args.segment_s)
        data_root = args.folder
    elif args.corpus == "starss23":
        records, problems = import_starss23(args.root, workers=args.workers)
        records = [dataclasses.replace(r, channel_order=args.channel_order) for r in records]
        data_root = args.root
    else:
        records, problems = import_video_folder(args.folder, ambisonics=args.ambisonics,
                                                split_fractions=args.split, split_by=args.split_by,
                                                workers=args.workers)
        records = [dataclasses.replace(r, channel_order=args.channel_order) for r in records]
        data_root = args.folder
    problems_path = _problems_path(Path(args.out))
    if not records:
        if problems:
            write_problems(problems_path, problems)
        raise ManifestError(f"{args.out}: no usable records found under {data_root} "
                            f"({len(problems)} items skipped"
                            + (f", reasons in {problems_path}" if problems else "") +
                            "); nothing written")
    out = write_manifest(args.out, records)
    if problems:
        write_problems(problems_path, problems)
    elif problems_path.exists():
        problems_path.unlink()  # stale list from an earlier run
    print(f"wrote {len(records)} records to {out} (data root: {Path(data_root).resolve()})")
    if problems:
        print(f"{len(problems)} items skipped, reasons in {problems_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
