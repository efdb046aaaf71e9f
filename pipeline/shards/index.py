"""A shard folder's ``shards.jsonl`` index and ``failures.jsonl``: append-only JSONL files that
survive a killed writer, and the check of every listed shard against its record."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from pipeline.shards.schema import (INDEX_NAME, VERIFY_FAILURES_NAME, VIEWPOINT_SOURCES,
                                    ShardFormatError, open_shard)
from pipeline.shards.writer import file_sha256

log = logging.getLogger(__name__)


@dataclass
class ShardIndex:
    """The ``shards.jsonl`` index of a shard folder (one record per finished shard).

    Records are held sorted by shard name: the file lists shards in the order parallel workers
    finished them, which changes from run to run, and every reader (training plan, evaluation
    sampling, normalisation statistics) must see the same order for seeds to reproduce."""

    root: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, check_sizes: bool = True,
             must_exist: bool = True) -> "ShardIndex":
        """Read ``shards.jsonl``; with ``check_sizes`` every listed shard must exist with the
        size the index records (a cheap check of each file; :func:`verify_shards` also
        compares sha256 digests). A folder without an index is a :class:`ShardFormatError`
        (every reader: the trainer, evaluators, ``make verify``), or an empty index with
        ``must_exist=False`` (preprocessing reading its own folder before any shard landed)."""
        root = Path(root)
        if must_exist and not (root / INDEX_NAME).is_file():
            raise ShardFormatError(f"{root}: no shards ({INDEX_NAME} missing); make them with "
                                   f"make preprocess (or make demo for the synthetic set), or "
                                   f"point to a shards folder")
        records = sorted(read_jsonl(root / INDEX_NAME), key=lambda record: record["shard"])
        index = cls(root, records)
        if check_sizes:
            for record in records:
                problem = index.problem(record)
                if problem:
                    raise ShardFormatError(problem)
        return index

    def problem(self, record: Mapping[str, Any], sha256: bool = False) -> str:
        """Why the shard of ``record`` does not match the index ("" when it does), with the
        command that rebuilds it."""
        path = self.root / record["shard"]
        rebuild = (f"rebuild it with the preprocessing run that made this folder (make "
                   f"preprocess SHARDS={self.root} with the same settings; a rerun rebuilds "
                   f"shards that differ from the index)")
        if not path.is_file():
            return f"{path}: listed in {INDEX_NAME} but missing; {rebuild}"
        size = path.stat().st_size
        if "bytes" in record and size != record["bytes"]:
            return (f"{path}: expected {record['bytes']} bytes as listed in {INDEX_NAME}, got "
                    f"{size} (truncated or replaced); {rebuild}")
        if sha256 and record.get("sha256") and file_sha256(path) != record["sha256"]:
            return f"{path}: sha256 differs from {INDEX_NAME} (corrupted); {rebuild}"
        return ""

    def paths(self, split: str | None = None) -> list[Path]:
        """Shard paths, optionally for one split, sorted by shard name."""
        return [self.root / r["shard"] for r in self.records
                if split is None or split in r["split"]]

    def n_samples(self, split: str | None = None) -> int:
        return sum(r["n_samples"] for r in self.records if split is None or split in r["split"])


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records to a JSONL file, flushed and fsynced (used for the index/failures). A
    torn last line left by a killed writer is cut off first, so no record is glued to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _cut_torn_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Truncate ``path`` after its last newline when it does not end with one."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":            # the usual case: one byte read, not the file
            return
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        log.warning("%s: cutting a torn last line (a writer was interrupted): %.60r", path,
                    data[keep:])
        handle.truncate(keep)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of an append-only JSONL file. A torn last line (a writer killed mid-line: no
    final newline) is dropped with a warning naming the file; any other unreadable line is a
    :class:`ShardFormatError` naming ``file:line``."""
    path = Path(path)
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if line_no == len(lines) and not text.endswith("\n"):
                log.warning("%s: dropping a torn last line (a writer was interrupted): %.60s",
                            path, line)
                return
            raise ShardFormatError(f"{path}:{line_no}: not a JSON record ({exc})") from exc
        yield record


def record_as_dict(record: Any) -> dict[str, Any]:
    return asdict(record) if hasattr(record, "__dataclass_fields__") else dict(record)


def verify_shards(root: str | Path, record: bool = True) -> list[str]:
    """Every shard of a folder against its index (presence, size, sha256): the problems found
    (empty when all match). With ``record``, the shards found bad are written to
    ``verify_failures.jsonl`` in the folder (removed when none is), so that the next
    preprocessing run rebuilds them (:func:`flagged_by_verify`)."""
    index = ShardIndex.load(root, check_sizes=False)
    found = [(entry["shard"], problem) for entry in index.records
             if (problem := index.problem(entry, True))]
    if record:
        _write_verify_failures(Path(root), found)
    return [problem for _, problem in found]


def _write_verify_failures(root: Path, found: list[tuple[str, str]]) -> None:
    path = root / VERIFY_FAILURES_NAME
    try:
        if not found:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps({"shard": shard, "problem": problem}) + "\n"
                               for shard, problem in found), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:                          # a read-only folder: report, do not fail
        log.warning("%s: could not record the bad shards (%s); a plain preprocessing rerun "
                    "will not know about them (use --verify-sha)", path, exc)


def flagged_by_verify(root: str | Path) -> set[str]:
    """Names of the shards the last ``make verify`` of ``root`` found bad."""
    return {record["shard"] for record in read_jsonl(Path(root) / VERIFY_FAILURES_NAME)}


def shard_settings(root: str | Path) -> dict[str, Any]:
    """What a model trained on the shard folder ``root`` depends on, as plain JSON-able values
    (recorded in every checkpoint, compared by the evaluators): ``{"folder": absolute path,
    "config_hash": the preprocessing config's hash, "audio": the audio feature settings (the
    ``audio`` section of the first shard's ``config`` attribute; shards without it give their
    ``sample_rate``, ``n_mels`` and ``n_frames``), "bank": {viewpoint source: stored
    viewpoints V}}``; ``{}`` when no shard is indexed."""
    index = ShardIndex.load(root, check_sizes=False, must_exist=False)
    if not index.records:
        return {}
    with open_shard(index.root / index.records[0]["shard"]) as h5:
        config = h5.attrs.get("config")
        audio = (json.loads(config).get("audio") if isinstance(config, (str, bytes)) else None)
        if not isinstance(audio, dict):
            audio = {key: h5.attrs[key].item() for key in ("sample_rate", "n_mels", "n_frames")
                     if key in h5.attrs}
        bank = {source: int(h5[f"views/{source}/azimuth_rad"].shape[1])
                for source in VIEWPOINT_SOURCES if f"views/{source}/azimuth_rad" in h5}
        config_hash = str(h5.attrs.get("config_hash", ""))
    return {"folder": str(Path(root).resolve()), "config_hash": config_hash, "audio": audio,
            "bank": bank}
