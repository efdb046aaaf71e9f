"""Preprocessing driver: manifest of 360° clips -> sharded HDF5, in parallel with Dask.

    python -m pipeline.preprocess --config configs/preprocess.yaml [dotted.key=value ...]
    python -m pipeline.preprocess --config configs/preprocess.yaml dask.scheduler=tcp://head:8786
    python -m pipeline.preprocess --config configs/preprocess.yaml --force   # rebuild out_dir

One Dask task per shard: a deterministic group of ``shards.clips_per_shard`` clips of one split
(clips sorted by id). The task runs :func:`pipeline.clip_samples.clip_samples` on each clip and
writes the shard atomically (``<name>.h5.tmp`` then rename); it returns the index record and the
failures of its clips. Only this driver appends to ``shards.jsonl`` and ``failures.jsonl``.

Resuming: a shard is skipped when ``shards.jsonl`` lists it with the current content hash and
the same planned clips with the same manifest records (``records_hash``: a corrected
``channel_order`` rebuilds the shard), and the file is on disk with the recorded size (and
sha256 with ``--verify-sha``, or when ``make verify`` flagged it in ``verify_failures.jsonl``:
a plain rerun rebuilds what verify found); a shard whose clips all failed is skipped when ``failures.jsonl`` holds a
failure for each of them. Leftover ``*.tmp`` files (a killed run) are deleted at start. A
different content hash in ``out_dir`` is an error (new ``paths.out_dir`` or ``--force``).

Schedulers (``dask.scheduler``): ``""`` starts a ``LocalCluster`` (processes, ``n_workers`` x
``threads_per_worker``); ``"tcp://host:port"`` or a scheduler-file path uses an existing cluster
as it is (its workers need this package importable and the media at the same paths);
``"serial"`` runs in this process without Dask (tests, debugging).

After the shards: ``norm_stats.json`` (per channel and mel band mean/std of the random-view
features of the train split, ``pipeline.features.NormStats`` layout) and a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pipeline.clip_samples import ClipError, clip_samples
from pipeline.config import ConfigError, dump_config, load_config, run_main, save_config
from pipeline.decode import decoder_threads
from pipeline.detect import load_production_detector
from pipeline.detect import check_weights
from pipeline.errors import ManifestError, PipelineError
from pipeline.features import NormStatsAccumulator
from pipeline.locks import folder_lock
from pipeline.manifest import Clip, read_manifest
from pipeline.preprocess_config import DetectorConfig, PreprocessConfig
from pipeline.shards import (FAILURES_NAME, FIELDS_BY_NAME, INDEX_NAME, NORM_MOMENTS_GROUP,
                             NORM_STATS_NAME, SAMPLE_FIELDS, VERIFY_FAILURES_NAME,
                             QuantisedFeature, ShardFormatError, ShardIndex, append_jsonl,
                             feature_code_moments, file_sha256, flagged_by_verify, open_shard,
                             read_checked, read_jsonl, rebuild_advice, stored_features,
                             write_shard)

__all__ = ["ShardPlan", "ShardResult", "RunSummary", "PreprocessStateError", "plan_shards",
           "process_shard", "run_preprocess", "default_detector_factory", "main"]

log = logging.getLogger("pipeline.preprocess")

CONFIG_NAME = "preprocess_config.yaml"
NORM_FEATURES = ("logmel_foa", "iv", "logmel_beam")
NORM_SOURCE = "random"


class PreprocessStateError(PipelineError):
    """``out_dir`` holds results of another configuration or another manifest."""


@dataclass(frozen=True)
class ShardPlan:
    """A shard to build: its file name, split and clips (sorted by id)."""

    name: str
    split: str
    clips: tuple[Clip, ...]

    @property
    def clip_ids(self) -> list[str]:
        return [clip.clip_id for clip in self.clips]

    @property
    def records_hash(self) -> str:
        """sha256 of the clips' manifest records: a shard made from other records (a corrected
        ``channel_order``, duration or file) is stale even when the clip ids agree."""
        text = json.dumps([clip.to_dict() for clip in self.clips], sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ShardResult:
    """What a shard task returns to the driver."""

    name: str
    record: dict[str, Any] | None          # shards.jsonl entry; None when every clip failed
    failures: list[dict[str, Any]]         # failures.jsonl entries
    n_clips: int
    n_samples: int
    seconds: float


@dataclass
class RunSummary:
    clips_total: int = 0
    clips_ok: int = 0
    clips_failed: int = 0
    clips_skipped_done: int = 0
    samples: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    bytes_written: int = 0
    wall_s: float = 0.0
    failures_by_error: dict[str, int] = field(default_factory=dict)
    norm_stats: str | None = None

    def lines(self) -> list[str]:
        rate = self.clips_ok / self.wall_s if self.wall_s > 0 else 0.0
        out = [f"clips: {self.clips_ok} ok, {self.clips_failed} failed, "
               f"{self.clips_skipped_done} already done (of {self.clips_total})",
               f"samples: {self.samples} in {self.shards_written} new shards "
               f"({self.bytes_written / 1e6:.1f} MB), {self.shards_skipped} shards skipped",
               f"wall time: {self.wall_s:.1f} s ({rate:.2f} clips/s)"]
        if self.failures_by_error:
            out.append("failures by error: " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.failures_by_error.items())))
        if self.norm_stats:
            out.append(f"norm stats: {self.norm_stats}")
        return out


# ---------------------------------------------------------------------------------------------
# planning


def plan_shards(clips: Iterable[Clip], clips_per_shard: int) -> list[ShardPlan]:
    """Group clips into shards: per split (train, val, test order), sorted by clip id.

    Deterministic for a given manifest; names are ``{split}-{index:05d}.h5``.
    """
    by_split: dict[str, list[Clip]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    plans = []
    for split in sorted(by_split, key=lambda s: ("train", "val", "test").index(s)
                        if s in ("train", "val", "test") else 99):
        ordered = sorted(by_split[split], key=lambda c: c.clip_id)
        for index, start in enumerate(range(0, len(ordered), clips_per_shard)):
            plans.append(ShardPlan(f"{split}-{index:05d}.h5", split,
                                   tuple(ordered[start:start + clips_per_shard])))
    return plans


# ---------------------------------------------------------------------------------------------
# worker side


def default_detector_factory(detector_cfg: DetectorConfig):
    """The production detector (ultralytics YOLO, cached per process) or None when disabled."""
    if not detector_cfg.enabled:
        return None
    return load_production_detector(detector_cfg.weights, conf=detector_cfg.conf,
                                    iou=detector_cfg.iou, imgsz=detector_cfg.imgsz,
                                    device=detector_cfg.device)


@contextlib.contextmanager
def _single_threaded():
    """One compute thread per task (Dask runs one task per worker thread): OpenCV, torch when
    the detector imported it, the BLAS and OpenMP pools of the loaded libraries
    (threadpoolctl) and ffmpeg's decoder (:func:`pipeline.decode.decoder_threads`); restored
    afterwards (the serial mode runs in the caller's process).

    The BLAS pin matters on its own: numpy's OpenBLAS keeps a worker thread per core that,
    after each call it helps with (the mel projection's matmul), spins for a while before it
    sleeps. In the serial mode, where nothing else pinned it, that thread burned 0.4-0.7 CPU-s
    per clip beside the main thread's 0.75-1.1 and took the core ffmpeg decodes on (bench:
    0.39x -> 0.62x decode-only the same hour; docs/RESULTS.md, fourth round).
    Dask's nanny sets ``OPENBLAS_NUM_THREADS=1`` for its workers; this covers every mode."""
    import cv2
    from threadpoolctl import threadpool_limits

    cv2_threads = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    cv2.setNumThreads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), decoder_threads(1):
            yield
    finally:
        cv2.setNumThreads(cv2_threads)
        if torch is not None:
            torch.set_num_threads(torch_threads)


def _stack_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample dicts into shard arrays; ``gt/*`` only when every sample has it.

    Empties the sample dicts field by field as it goes, so the peak memory is the samples plus
    one stacked field, not twice the shard.
    """
    names = [spec.name for spec in SAMPLE_FIELDS if all(spec.name in s for s in samples)]
    stacked: dict[str, Any] = {}
    for name in names:
        values = [s.pop(name) for s in samples]
        # Large fields stay lists: the writer writes them sample by sample (no whole-shard copy).
        big = FIELDS_BY_NAME[name].compressed
        stacked[name] = values if isinstance(values[0], str) or big else np.stack(values)
        del values
    return stacked


def _shard_attrs(cfg: PreprocessConfig, content_hash: str) -> dict[str, Any]:
    return {
        "config_hash": content_hash,
        "config": cfg.content_dict(),
        "sample_rate": cfg.audio.sample_rate,
        "n_mels": cfg.audio.n_mels,
        "n_frames": cfg.audio.n_frames,
        "fps": cfg.decode.fps,
        "crop_size": cfg.viewpoints.crop_size,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def source_root(cfg: PreprocessConfig) -> str:
    """The folder the clips were read from (absolute): a shard made from other files is not
    current, although ``paths`` are not part of the config hash."""
    return str(Path(cfg.paths.data_root).resolve())


def process_shard(plan: ShardPlan, cfg: PreprocessConfig, out_dir: str,
                  detector_factory: Callable[[DetectorConfig], Any] = default_detector_factory,
                  ) -> ShardResult:
    """Build one shard (the Dask task). Clip failures become records (``on_error="skip"``) or
    re-raise (``"raise"``); the shard file is written atomically when any clip succeeded."""
    from pipeline.runtime import offline_environment

    offline_environment()
    started = time.perf_counter()
    content_hash = cfg.content_hash()
    detector = detector_factory(cfg.detector)   # may import torch: thread limits come after
    samples: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    with _single_threaded():
        for clip in plan.clips:
            try:
                samples.extend(clip_samples(clip, cfg, detector, cfg.paths.data_root))
            except ClipError as exc:
                if cfg.on_error == "raise":
                    raise
                log.warning("%s", exc)
                failures.append({**exc.failure_record(), "shard": plan.name,
                                 "config_hash": content_hash})
        record = _write(plan, cfg, out_dir, samples, failures, content_hash) if samples else None
    return ShardResult(plan.name, record, failures, len(plan.clips), len(samples),
                       time.perf_counter() - started)


def _write(plan: ShardPlan, cfg: PreprocessConfig, out_dir: str, samples: list[dict[str, Any]],
           failures: list[dict[str, Any]], content_hash: str) -> dict[str, Any]:
    """Write the shard of ``samples`` and return its index record."""
    compression = None if cfg.shards.compression == "none" else cfg.shards.compression
    stacked = _stack_samples(samples)
    record = write_shard(Path(out_dir) / plan.name, stacked,
                         _shard_attrs(cfg, content_hash), compression=compression,
                         level=cfg.shards.compression_level,
                         crop_codec=cfg.shards.crop_codec,
                         jpeg_quality=cfg.shards.jpeg_quality,
                         feature_codec=cfg.shards.feature_codec,
                         feature_span_db=cfg.audio.top_db,
                         norm_moments=_norm_moments(stacked) if plan.split == "train" else None)
    record["planned_clip_ids"] = plan.clip_ids
    record["records_hash"] = plan.records_hash
    record["failed_clip_ids"] = sorted(f["clip_id"] for f in failures)
    record["source_root"] = source_root(cfg)
    return record


def _norm_moments(stacked: dict[str, Any]) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """``{key: (count, mean, m2)}`` of a shard's random-view features while they are in memory,
    exactly as :func:`shard_norm_moments` would compute them from the written shard (the same
    integer code sums, or the same float16 values), stored with the shard so that the final
    pass reads a few kB per shard instead of its features again."""
    accumulator = NormStatsAccumulator()
    for key in NORM_FEATURES:
        for row in stacked.get(f"views/{NORM_SOURCE}/{key}", ()):
            if isinstance(row, QuantisedFeature):
                max_db = None if row.max_db is None else row.max_db[None]
                accumulator.add_moments(key, *feature_code_moments(row.codes[None], max_db,
                                                                   row.span_db))
            else:
                accumulator.update({key: np.asarray(row, dtype=np.float32)})
    return {key: (accumulator.count[key], accumulator.mean[key], accumulator.m2[key])
            for key in accumulator.count}


def shard_norm_moments(path: str) -> NormStatsAccumulator:
    """Moments of the random-view features of one shard (a Dask task of the final pass): those
    stored with it (``norm_moments/``), or, for shards written before, from the uint8 codes'
    integer sums (:func:`pipeline.shards.feature_code_moments`) or the float values of float16
    shards."""
    accumulator = NormStatsAccumulator()
    with open_shard(path) as h5:
        if NORM_MOMENTS_GROUP in h5:
            for key in NORM_FEATURES:
                name = f"{NORM_MOMENTS_GROUP}/{key}"
                if name not in h5:
                    raise ShardFormatError(f"{path}: {NORM_MOMENTS_GROUP} holds no {key}, "
                                           f"expected {NORM_FEATURES}; {rebuild_advice(path)}")
                group = h5[name]
                accumulator.add_moments(key, int(read_checked(group["count"])[0]),
                                        read_checked(group["mean"]), read_checked(group["m2"]))
            return accumulator
        n = int(h5.attrs["n_samples"])
        for key in NORM_FEATURES:
            features = stored_features(h5, f"views/{NORM_SOURCE}/{key}")
            for start in range(0, n, 16):
                rows = slice(start, min(start + 16, n))
                if features.codec == "uint8":
                    max_db = None if features.max_db is None else features.max_db[rows]
                    accumulator.add_moments(key, *feature_code_moments(
                        features.dataset[rows], max_db, features.span_db))
                else:
                    accumulator.update({key: features[rows]})
    return accumulator


# ---------------------------------------------------------------------------------------------
# driver side: out_dir state


def _check_out_dir(out_dir: Path, cfg: PreprocessConfig, force: bool) -> None:
    """Refuse an out_dir written with another content hash (or wipe it with ``force``)."""
    content_hash = cfg.content_hash()
    previous: set[str] = set()
    saved = out_dir / CONFIG_NAME
    index_records = list(read_jsonl(out_dir / INDEX_NAME))
    holds_shards = bool(index_records) or any(out_dir.glob("*.h5"))
    if saved.exists() and holds_shards:     # a config beside no shard (a failed start) is no claim
        try:
            previous.add(load_config(PreprocessConfig, saved).content_hash())
        except (ConfigError, ValueError) as exc:
            previous.add(f"unreadable ({exc})")
    previous.update(r.get("config_hash", "") for r in index_records)
    previous.discard(content_hash)
    if not previous:
        return
    if not force:
        raise PreprocessStateError(
            f"{out_dir}: expected shards of config hash {content_hash}, got shards of "
            f"{sorted(previous)}; use a new paths.out_dir or --force to rebuild this one")
    log.warning("--force: deleting the previous results in %s", out_dir)
    _wipe_results(out_dir)


def _wipe_results(out_dir: Path) -> None:
    for pattern in ("*.h5", "*.tmp", INDEX_NAME, FAILURES_NAME, NORM_STATS_NAME, CONFIG_NAME,
                    VERIFY_FAILURES_NAME):
        for path in out_dir.glob(pattern):
            path.unlink()


def _remove_stale_tmp(out_dir: Path) -> None:
    for path in out_dir.glob("*.tmp"):
        log.info("removing leftover %s from an interrupted run", path.name)
        path.unlink()


def _done_shards(out_dir: Path, plans: Sequence[ShardPlan], content_hash: str,
                 verify_sha: bool, root: str) -> set[str]:
    """Names of planned shards that need no work (see the module docstring): written with this
    config from the same source folder, intact, and without a failed clip (a shard with one is
    rebuilt, so that a fixed file, or a corrected ``paths.data_root``, lands)."""
    planned = {plan.name: plan for plan in plans}
    done: set[str] = set()
    flagged = flagged_by_verify(out_dir)                 # what the last make verify found bad
    for record in read_jsonl(out_dir / INDEX_NAME):
        name = record["shard"]
        plan = planned.get(name)
        if plan is None or record.get("config_hash") != content_hash:
            continue
        if record.get("source_root", root) != root:
            log.info("%s: made from %s, now reading %s: rebuilding it", name,
                     record["source_root"], root)
            continue
        if record.get("failed_clip_ids"):
            log.info("%s: retrying its %d failed clip(s)", name, len(record["failed_clip_ids"]))
            continue
        if record.get("records_hash", plan.records_hash) != plan.records_hash:
            log.info("%s: its clips' manifest records changed (e.g. channel_order): rebuilding "
                     "it", name)
            continue
        if record.get("planned_clip_ids") != plan.clip_ids:
            raise PreprocessStateError(
                f"{out_dir / name}: expected clips {plan.clip_ids[:3]}... from the manifest, got "
                f"a shard of {record.get('planned_clip_ids', [])[:3]}...: the manifest changed; "
                "use a new paths.out_dir or --force")
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != record["bytes"]:
            continue
        if (verify_sha or name in flagged) and file_sha256(path) != record["sha256"]:
            log.warning("%s: sha256 differs from the index%s, rebuilding it", name,
                        " (flagged by make verify)" if name in flagged else "")
            continue
        done.add(name)
    _rewrite_index(out_dir, done)
    _forget_failures(out_dir, {plan.name for plan in plans} - done)
    return done


def _rewrite_index(out_dir: Path, done: set[str]) -> None:
    """Drop index records of shards that will be rebuilt (lost, truncated, stale), atomically,
    so that ``shards.jsonl`` never lists a shard twice or a file that is not there."""
    seen: set[str] = set()

    def keep(record: dict[str, Any]) -> bool:
        first = record["shard"] in done and record["shard"] not in seen
        seen.add(record["shard"])
        return first

    dropped = _filter_jsonl(out_dir / INDEX_NAME, keep)
    if dropped:
        log.info("index: dropping %d records of shards to rebuild", dropped)


def _forget_failures(out_dir: Path, rebuilt: set[str]) -> None:
    """Drop the failure records of shards about to be rebuilt (their clips are retried and
    fail again, or land), atomically; failures of other shards stay."""
    dropped = _filter_jsonl(out_dir / FAILURES_NAME, lambda r: r.get("shard") not in rebuilt)
    if dropped:
        log.info("retrying %d previously failed clip(s)", dropped)


def _filter_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite a JSONL file with the records ``keep`` accepts (atomically); returns how many
    were dropped (0: the file is left untouched)."""
    records = list(read_jsonl(path))
    kept = [record for record in records if keep(record)]
    if len(kept) == len(records):
        return 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    append_jsonl(tmp, kept)
    if not kept:
        tmp.write_text("")
    os.replace(tmp, path)
    return len(records) - len(kept)


# ---------------------------------------------------------------------------------------------
# execution back-ends


class _SerialExecutor:
    """Runs tasks in this process, in order (``dask.scheduler=serial``)."""

    def map_unordered(self, function, items, max_in_flight: int, retries: int):
        """Yield ``(item, result, error)``; ``error`` is the exception of the last attempt."""
        for item in items:
            for attempt in range(retries + 1):
                try:
                    result = function(item)
                except ClipError as exc:  # deterministic (on_error=raise): no retry
                    yield item, None, exc
                    break
                except Exception as exc:
                    if attempt == retries:
                        yield item, None, exc
                    else:
                        log.warning("task %s failed (attempt %d of %d): %s, retrying",
                                    getattr(item, "name", item), attempt + 1, retries + 1, exc)
                else:
                    yield item, result, None
                    break

    def close(self) -> None:
        pass


CONNECT_TIMEOUT_S = 10


class SchedulerUnreachableError(PipelineError):
    """The Dask scheduler named by ``dask.scheduler`` did not answer."""


class _DaskExecutor:
    """Bounded number of futures in flight, refilled as they complete."""

    def __init__(self, scheduler: str, n_workers: int, threads_per_worker: int,
                 memory_limit: str):
        from dask.distributed import Client, LocalCluster

        self.cluster = None
        if scheduler == "":
            self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                        processes=True, memory_limit=memory_limit,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            if "://" not in scheduler and not Path(scheduler).is_file():
                raise ConfigError(f"dask.scheduler: expected '', 'serial', an address "
                                  f"(tcp://host:port) or a scheduler file, got {scheduler!r} "
                                  "(no such file)")
            target = {"address": scheduler} if "://" in scheduler else {
                "scheduler_file": scheduler}
            try:
                self.client = Client(**target, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise SchedulerUnreachableError(
                    f"dask.scheduler={scheduler}: no scheduler answered within "
                    f"{CONNECT_TIMEOUT_S} s ({' '.join(str(exc).split())[:200]}); start "
                    f"`dask scheduler` there (and workers with `dask worker {scheduler}`), or "
                    f"leave dask.scheduler empty for a local cluster") from exc
        self.token = uuid.uuid4().hex[:8]
        log.info("dask: %s", self.client)

    def n_threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map_unordered(self, function, items, max_in_flight: int, retries: int):
        """Yield ``(item, result, error)`` as tasks finish, at most ``max_in_flight`` running.

        A worker that dies mid-task (killed, out of memory) makes the scheduler rerun the task
        elsewhere (``distributed.scheduler.allowed-failures``); an exception raised by the task
        is retried ``retries`` times.
        """
        from dask.distributed import as_completed

        items = list(items)
        position = 0
        in_flight = as_completed()
        futures: dict[Any, Any] = {}

        def submit_next() -> None:
            nonlocal position
            item = items[position]
            position += 1
            key = f"{getattr(item, 'name', 'item')}-{position}-{self.token}"
            future = self.client.submit(function, item, key=key, retries=retries, pure=False)
            futures[future] = item
            in_flight.add(future)

        while position < len(items) and position < max(1, max_in_flight):
            submit_next()
        for future in in_flight:
            item = futures.pop(future)
            try:
                result, error = future.result(), None
            except Exception as exc:
                result, error = None, exc
            finally:
                future.release()
            if position < len(items):
                submit_next()
            yield item, result, error

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _open_executor(cfg: PreprocessConfig):
    if cfg.dask.scheduler == "serial":
        return _SerialExecutor()
    return _DaskExecutor(cfg.dask.scheduler, cfg.dask.n_workers, cfg.dask.threads_per_worker,
                         cfg.dask.memory_limit)


class _Task:
    """Picklable callable: one shard plan -> ShardResult (keeps the config out of the plan)."""

    def __init__(self, cfg: PreprocessConfig, out_dir: str, detector_factory):
        self.cfg, self.out_dir, self.detector_factory = cfg, out_dir, detector_factory

    def __call__(self, plan: ShardPlan) -> ShardResult:
        return process_shard(plan, self.cfg, self.out_dir, self.detector_factory)


# ---------------------------------------------------------------------------------------------
# the run


def run_preprocess(cfg: PreprocessConfig, *, force: bool = False, verify_sha: bool = False,
                   progress: bool = True,
                   detector_factory: Callable[[DetectorConfig], Any] | None = None) -> RunSummary:
    """Run (or resume) preprocessing for ``cfg``; returns the summary.

    Args:
        force: delete results of another configuration in ``out_dir`` instead of refusing.
        verify_sha: recompute the sha256 of finished shards before skipping them.
        detector_factory: picklable ``f(DetectorConfig) -> detector | None`` run in each task
            (default: ultralytics YOLO from ``detector.weights``; tests pass stubs).
    """
    started = time.perf_counter()
    out_dir = Path(cfg.paths.out_dir)
    # Every check before the first write into out_dir: a failed start leaves it as it was.
    if detector_factory is None:
        detector_factory = default_detector_factory
        if cfg.detector.enabled:       # fail before any work; detector.enabled=false skips YOLO
            check_weights(cfg.detector.weights)
    clips = read_manifest(cfg.paths.manifest)
    if cfg.paths.max_clips > 0:
        per_split: Counter[str] = Counter()
        kept = []
        for clip in clips:
            per_split[clip.split] += 1
            if per_split[clip.split] <= cfg.paths.max_clips:
                kept.append(clip)
        log.info("paths.max_clips=%d: %d of %d clips (the first of each split)",
                 cfg.paths.max_clips, len(kept), len(clips))
        clips = kept
    if not clips:
        raise ManifestError(f"{cfg.paths.manifest}: expected clips, got an empty manifest")
    existed = out_dir.is_dir()
    # One writer per shards folder, held before the folder's checks: --force must never wipe a
    # folder that another run is writing (a failed start removes the folder it created).
    with folder_lock(out_dir, "preprocessing"):
        if existed:
            _check_out_dir(out_dir, cfg, force)
        executor = _open_executor(cfg)         # an unreachable scheduler is a failed start too
        try:
            return _run_with_executor(cfg, out_dir, clips, executor, detector_factory,
                                      verify_sha, progress, started)
        finally:
            executor.close()


def _run_with_executor(cfg: PreprocessConfig, out_dir: Path, clips: list[Clip], executor,
                       detector_factory, verify_sha: bool, progress: bool,
                       started: float) -> RunSummary:
    content_hash = cfg.content_hash()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / CONFIG_NAME)
    _remove_stale_tmp(out_dir)

    plans = plan_shards(clips, cfg.shards.clips_per_shard)
    done = _done_shards(out_dir, plans, content_hash, verify_sha, source_root(cfg))
    pending = [plan for plan in plans if plan.name not in done]
    summary = RunSummary(clips_total=len(clips), shards_skipped=len(done),
                         clips_skipped_done=sum(len(p.clips) for p in plans if p.name in done))
    log.info("%d clips in %d shards: %d shards done, %d to build (config hash %s)", len(clips),
             len(plans), len(done), len(pending), content_hash)

    known_failures = {(f["clip_id"], f.get("config_hash")) for f in
                      read_jsonl(out_dir / FAILURES_NAME)}
    failure_counts: Counter[str] = Counter()
    max_in_flight = cfg.dask.max_in_flight or 2 * getattr(executor, "n_threads", lambda: 1)()
    task = _Task(cfg, str(out_dir), detector_factory)
    bar = _progress_bar(sum(len(p.clips) for p in pending), progress)
    try:
        for plan, result, error in executor.map_unordered(task, pending, max_in_flight,
                                                          cfg.dask.retries):
            if error is not None:
                if cfg.on_error == "raise":
                    raise error
                result = _failed_task_result(plan, error, content_hash, cfg.dask.retries)
            new_failures = [f for f in result.failures
                            if (f["clip_id"], f.get("config_hash")) not in known_failures]
            append_jsonl(out_dir / FAILURES_NAME, new_failures)
            known_failures.update((f["clip_id"], f.get("config_hash")) for f in new_failures)
            if result.record is not None:
                append_jsonl(out_dir / INDEX_NAME, [result.record])
                summary.shards_written += 1
                summary.bytes_written += result.record["bytes"]
            summary.samples += result.n_samples
            summary.clips_failed += len(result.failures)
            summary.clips_ok += result.n_clips - len(result.failures)
            failure_counts.update(f["error"] for f in result.failures)
            bar.update(result.n_clips)
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(f"{summary.clips_ok / max(elapsed, 1e-9):.2f} clips/s, "
                                f"{summary.clips_failed} failed")
    finally:
        bar.close()
    summary.norm_stats = _write_norm_stats(out_dir, executor, max_in_flight)
    (out_dir / VERIFY_FAILURES_NAME).unlink(missing_ok=True)  # every flagged shard was rebuilt
    summary.failures_by_error = dict(failure_counts)
    summary.wall_s = time.perf_counter() - started
    for line in summary.lines():
        log.info("%s", line)
    if summary.clips_failed:
        log.warning("%d clips rejected: see %s", summary.clips_failed, out_dir / FAILURES_NAME)
    return summary


def _failed_task_result(plan: ShardPlan, error: BaseException, content_hash: str,
                        retries: int) -> ShardResult:
    """A shard task that failed after its retries (not a clip error): fail each of its clips."""
    log.error("shard %s failed after %d retries: %s: %s", plan.name, retries,
              type(error).__name__, error)
    failures = [{"clip_id": clip_id, "stage": "task", "error": type(error).__name__,
                 "reason": f"shard task failed after {retries} retries: {error}",
                 "shard": plan.name, "config_hash": content_hash} for clip_id in plan.clip_ids]
    return ShardResult(plan.name, None, failures, len(plan.clips), 0, 0.0)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="preprocess", disable=not enabled,
                dynamic_ncols=True)


def _write_norm_stats(out_dir: Path, executor, max_in_flight: int) -> str | None:
    """``norm_stats.json`` from the train shards in the index (random views), in the layout of
    ``pipeline.features.NormStats.to_json`` (read by ``trainer.data.load_norm_stats``); None when
    there is no train shard."""
    paths = [str(p) for p in ShardIndex.load(out_dir, must_exist=False).paths("train")]
    if not paths:
        log.warning("no train shards: %s not written", NORM_STATS_NAME)
        return None
    accumulator = NormStatsAccumulator()
    for path, moments, error in executor.map_unordered(shard_norm_moments, paths, max_in_flight,
                                                       1):
        if error is not None:
            raise error
        accumulator.merge(moments)
    target = out_dir / NORM_STATS_NAME
    accumulator.finalize().to_json(target)
    return str(target)


# ---------------------------------------------------------------------------------------------
# command line


def _quiet_dask_logging() -> None:
    """Dask's cluster start/stop chatter at INFO drowns the progress bar: WARNING and above."""
    import distributed  # noqa: F401  (configures its loggers on import; override them after)

    level = max(logging.WARNING, logging.getLogger().level)
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(level)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.preprocess",
        description="360° clips (manifest) -> sharded HDF5 training data, with Dask.")
    parser.add_argument("--config", default="configs/preprocess.yaml", help="YAML config")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. dask.n_workers=8")
    parser.add_argument("--force", action="store_true",
                        help="delete results of another configuration in out_dir")
    parser.add_argument("--verify", action="store_true",
                        help="check the sha256 of finished shards before skipping them")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.runtime import setup_entry_point

    def run(args_list: list[str]) -> int:
        args = build_parser().parse_args(args_list)
        setup_entry_point(args.log_level)
        _quiet_dask_logging()
        cfg = load_config(PreprocessConfig, args.config, args.overrides)
        print(dump_config(cfg), file=sys.stderr)
        summary = run_preprocess(cfg, force=args.force, verify_sha=args.verify,
                                 progress=not args.no_progress)
        out_dir = Path(cfg.paths.out_dir)
        print(f"==> shards in {out_dir}/ ({INDEX_NAME}, {FAILURES_NAME}, {NORM_STATS_NAME}, "
              f"{CONFIG_NAME}); inspect them with make inspect SHARDS={out_dir}", flush=True)
        return 0 if summary.clips_ok or summary.clips_skipped_done else 1

    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
