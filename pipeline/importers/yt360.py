"""YouTube-360 (Morgado et al. 2020) as released: ``video/`` and ``audio/`` folders and a clip
list; the channel order of its .m4a files (docs/channel_order.md)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from pipeline.decode import AMBIX_CHANNEL_ORDER, check_channel_order
from pipeline.errors import ManifestError
from pipeline.ffmpeg_bin import probe
from pipeline.manifest import Clip

from pipeline.importers.common import (_SHOW_FIRST, ImportProblem, _build_all, _clip_from_probe,
                                      _is_number, _log_summary)

log = logging.getLogger(__name__)


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
