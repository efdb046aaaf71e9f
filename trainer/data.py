"""Streaming training batches from HDF5 shards (schema v1, ``pipeline/shards/``).

The trainer never decodes media: it reads the crops and audio features that preprocessing
stored for each viewpoint, picks the channels an experiment needs, augments cheaply and yields
whole batches (the DataLoader runs with ``batch_size=None``).

Epoch plan (a pure function of the shard index, ``seed``, ``epoch``, rank and worker)
-------------------------------------------------------------------------------------
1. The shards of the split are cut into *parts* (row ranges); a shard is one part unless there
   are fewer shards than ``world_size * num_workers``, then each shard is cut evenly so that
   every worker of every rank can get some data.
2. Parts are shuffled with ``(seed, epoch)`` -- the same permutation in every process -- and
   dealt round-robin to ranks, then each rank's parts round-robin to its DataLoader workers.
3. Every rank takes the same number of steps,
   ``steps_per_epoch = floor(samples in the split / (world_size * batch_size))``, so DDP
   collectives never wait on a rank that ran dry. A rank splits its steps over its workers in
   proportion to their samples. A worker with more samples than its quota drops the rest (a
   different rest every epoch); a worker with fewer starts another shuffled pass over its own
   parts (never within one batch, so a batch never holds a sample twice). When the split
   divides evenly, every sample is seen exactly once per epoch.
4. A worker reads its parts ``SHARDS_IN_FLIGHT`` at a time and shuffles the units of those
   parts together (``(seed, epoch, rank, worker, pass)``), so a batch mixes several shards
   while the number of open files stays small. Shards store one compressed chunk per sample
   and viewpoint, so reading rows in random order costs no more than in order.

A *unit* is one sample (window) for AVC/AVSA. For AVTS a unit is a group of
``windows_per_clip`` windows of the same clip (grouped inside a part, from the ``clip_id``
column), so every clip in a batch brings its own hard negatives; windows left over after
grouping are skipped for that epoch.

Augmentation (training only; seeded per sample: ``(seed, epoch, rank, worker, batch, i)``)
-------------------------------------------------------------------------------------------
- Horizontal flip, one coin per *sample*, applied to all of its viewpoints: mirroring the
  whole sphere (``y -> -y``) maps the view toward ``(az, el)`` to the horizontally flipped
  crop toward ``(-az, el)``, whose rotated FOA is the original rotated FOA with ``Y -> -Y``
  (``R_y(el) R_z(az) M = M R_y(el) R_z(-az)`` for ``M = diag(1, -1, 1)``). In features:
  log-mel of every channel is unchanged (Y's magnitude is unchanged), ``I_y -> -I_y``, the
  beam toward the view centre is unchanged, and the viewpoint azimuth is negated. Flipping
  viewpoints independently would give the K views of one clip inconsistent geometry.
- Colour jitter per crop (brightness, contrast, saturation; the same for all T frames).
- Volume jitter per sample: one dB offset added to every log-mel channel of every viewpoint
  (IV is energy-normalised, so it does not change).

Normalisation
-------------
Audio is standardised per channel and mel band with ``<shards_dir>/norm_stats.json`` when it
exists (see :func:`load_norm_stats` for the format); features without statistics (IV, usually)
pass through. Video leaves the loader as float in [0, 1]; the video encoder applies the
Kinetics mean/std itself, so evaluation code can feed [0, 1] crops too.

Batch layout (B samples, K viewpoints, C audio channels, M mel bands, F frames)
--------------------------------------------------------------------------------
``video`` (B, K, 3, T, S, S) float32 in [0, 1]; ``audio`` (B, K, C, M, F) float32;
``azimuth_rad``, ``elevation_rad`` (B, K) float32; ``clip_index`` (B,) int64, equal for
samples of the same clip *within this batch* (AVTS groups), 0..B-1 otherwise;
``window_index`` (B,) int64; ``flipped`` (B,) bool; ``clip_id`` list of B str.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import torch
from numba import njit
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.spatial import angular_distance_rad
from pipeline.shards import (NORM_STATS_NAME, FeatureCodes, FeatureNorm, ShardFormatError,
                             ShardIndex, corrupt_shard, open_shard, read_norm_stats, stored_crops,
                             stored_features)
from trainer.config import AUDIO_FEATURES, DataConfig

log = logging.getLogger(__name__)

DECIBEL_FEATURES = ("logmel_foa", "logmel_beam")    # volume jitter adds dB to these
IV_Y_CHANNEL = 1                                     # iv channels are I_x, I_y, I_z
SHARDS_IN_FLIGHT = 4                                 # parts shuffled together by one worker
OBJECT_SOURCE = "yolo"                               # data.object_view_share reads this set
MIXED_MIN_SEPARATION_RAD = float(np.radians(30.0))   # bank views kept this far from object views
MAX_OPEN_SHARDS = 2 * SHARDS_IN_FLIGHT


# ----------------------------------------------------------------------------- norm stats

# ----------------------------------------------------------------------------- epoch plan

@dataclass(frozen=True)
class Part:
    """Rows ``[start, stop)`` of the shard at ``shard_path``."""

    shard_path: str
    start: int
    stop: int

    @property
    def n_samples(self) -> int:
        return self.stop - self.start


def make_parts(shard_paths: Sequence[str], shard_sizes: Sequence[int],
               min_parts: int) -> list[Part]:
    """One part per shard, or each shard cut into ``ceil(min_parts / n_shards)`` even pieces."""
    pieces = max(1, math.ceil(min_parts / max(1, len(shard_paths))))
    parts = []
    for path, size in zip(shard_paths, shard_sizes):
        bounds = np.linspace(0, size, min(pieces, size) + 1).round().astype(int)
        parts += [Part(str(path), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return parts


def epoch_rng(*key: int) -> np.random.Generator:
    """A generator that depends only on the integers in ``key`` (same in every process)."""
    return np.random.default_rng([int(k) for k in key])


def assign_parts(n_parts: int, seed: int, epoch: int, rank: int, world_size: int,
                 worker: int, num_workers: int) -> list[int]:
    """Part indices read by one DataLoader worker of one rank in ``epoch``."""
    order = epoch_rng(seed, epoch, 0).permutation(n_parts)
    rank_parts = order[rank::world_size]
    return [int(p) for p in rank_parts[worker::num_workers]]


def split_steps(total_steps: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_steps`` into integers proportional to ``weights`` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    if total_steps == 0 or weights.sum() == 0:
        return [0] * len(weights)
    exact = total_steps * weights / weights.sum()
    steps = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - steps), kind="stable")
    steps[remainder_order[:total_steps - steps.sum()]] += 1
    return steps.tolist()


# ----------------------------------------------------------------------------- shard reading

class ShardReader:
    """Open shards lazily (inside the worker process) and read samples of one view source.

    Keeps at most ``MAX_OPEN_SHARDS`` files open (least recently used closed first). The small
    per-sample fields of an open shard (ids, window indices, viewpoint angles and flags; a few
    kB) are read once when it opens: an h5py read costs ~0.1 ms however small, and a sample
    needs five of them.
    """

    def __init__(self, split: str, view_set: str, feature_keys: Sequence[str],
                 extra_sources: Sequence[str] = ()):
        self.split = split
        self.view_set = view_set
        self.view_sets = (view_set, *[s for s in extra_sources if s != view_set])
        self.feature_keys = tuple(feature_keys)
        self._open: OrderedDict[str, h5py.File] = OrderedDict()
        self._small: dict[str, dict[str, Any]] = {}

    def shard(self, path: str) -> h5py.File:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        try:
            h5 = open_shard(path)
        except OSError as exc:
            raise corrupt_shard(path, "the shard", exc) from exc
        self._check(path, h5)
        self._open[path] = h5
        self._small[path] = {
            "clip_id": h5["clip_id"].asstr()[()],
            "window_index": h5["window_index"][()],
            "views": {source: self._view_fields(h5, f"views/{source}")
                      for source in self.view_sets},
        }
        while len(self._open) > MAX_OPEN_SHARDS:
            evicted, handle = self._open.popitem(last=False)
            self._small.pop(evicted, None)
            handle.close()
        return h5

    def _view_fields(self, h5: h5py.File, prefix: str) -> dict[str, Any]:
        return {
            "azimuth_rad": h5[f"{prefix}/azimuth_rad"][()].astype(np.float32),
            "elevation_rad": h5[f"{prefix}/elevation_rad"][()].astype(np.float32),
            "from_detection": (h5[f"{prefix}/from_detection"][()].astype(bool)
                               if f"{prefix}/from_detection" in h5 else None),
            "crops": stored_crops(h5, f"{prefix}/crops"),
            "features": {key: stored_features(h5, f"{prefix}/{key}")
                         for key in self.feature_keys},
        }

    def _check(self, path: str, h5: h5py.File) -> None:
        needed = [f"views/{source}/{name}" for source in self.view_sets for name in
                  ("crops", "azimuth_rad", "elevation_rad", *self.feature_keys)]
        missing = [name for name in needed + ["clip_id", "split", "window_index"] if name not in h5]
        if missing:
            h5.close()
            raise ShardFormatError(f"{path}: missing datasets {missing}")
        splits = set(h5["split"].asstr()[()])
        if splits != {self.split}:
            h5.close()
            raise ShardFormatError(f"{path}: expected only split '{self.split}', found "
                                   f"{sorted(splits)}; the trainer needs one split per shard")

    def clip_ids(self, path: str, start: int, stop: int) -> np.ndarray:
        self.shard(path)
        return self._small[path]["clip_id"][start:stop]

    def stored_bank_size(self, path: str, source: str | None = None) -> int:
        self.shard(path)
        return int(self._views(path, source)["azimuth_rad"].shape[1])

    def view_fields(self, path: str, source: str | None = None) -> dict[str, Any]:
        """The stored view fields of the ``source`` set (default the reader's) of an open
        shard: angles, flags, and the crops and features as :func:`stored_crops` /
        :func:`stored_features` objects, made once when the shard opened."""
        self.shard(path)
        return self._views(path, source)

    def _views(self, path: str, source: str | None) -> dict[str, Any]:
        return self._small[path]["views"][source or self.view_set]

    def from_detection(self, path: str, row: int, source: str | None = None) -> np.ndarray | None:
        """``(K,)`` bool: which stored viewpoints are centred on a detection (None when the
        shard does not say, as for random viewpoints of older shards)."""
        self.shard(path)
        flags = self._views(path, source)["from_detection"]
        return None if flags is None else flags[row].copy()

    def angles(self, path: str, row: int, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stored viewpoint azimuths and elevations ``(K,)`` (radians) of one sample."""
        self.shard(path)
        views = self._views(path, source)
        return views["azimuth_rad"][row], views["elevation_rad"][row]

    def read(self, path: str, row: int, views: np.ndarray,
             source: str | None = None) -> dict[str, Any]:
        """One sample at ``views`` (K indices of the ``source`` set, default the reader's
        view source): crops (K, T, S, S, 3) uint8, features ``{key: FeatureCodes (K, C, M, F)}``
        (their ``values()`` are float32; :func:`features_to_audio` makes the encoder's input),
        azimuth/elevation (K,), clip id, window index."""
        try:
            return self._read(path, row, views, source)
        except OSError as exc:                    # h5py: corrupt chunk, truncated file
            raise corrupt_shard(path, "the shard", exc) from exc

    def _read(self, path: str, row: int, views: np.ndarray, source: str | None) -> dict[str, Any]:
        self.shard(path)                                # opens it, reads its small fields
        order = np.argsort(views)                       # h5py wants increasing indices
        sorted_views = views[order].tolist()
        restore = np.argsort(order)

        small, fields = self._small[path], self._views(path, source)
        return {
            "crops": fields["crops"].take(row, views),
            "features": {key: fields["features"][key].codes((row, sorted_views)).take(restore)
                         for key in self.feature_keys},
            "azimuth_rad": fields["azimuth_rad"][row, views],
            "elevation_rad": fields["elevation_rad"][row, views],
            "clip_id": str(small["clip_id"][row]),
            "window_index": int(small["window_index"][row]),
        }

    def close(self) -> None:
        self._small.clear()
        while self._open:
            self._open.popitem()[1].close()


def choose_views(stored_k: int, k: int, rng: np.random.Generator,
                 from_detection: np.ndarray | None = None) -> np.ndarray:
    """``k`` distinct viewpoint indices out of ``stored_k``, in random order.

    With ``from_detection`` (``(stored_k,)`` bool) and at least one detection, detection-centred
    viewpoints come first and random fill only makes up the rest (Wang et al. 2022 crop around
    detected objects to avoid audio-visual mismatches; fill exists only because fewer than K
    objects were found). Without detections it is a uniform draw."""
    if from_detection is None or not np.any(from_detection) or k >= stored_k:
        return rng.choice(stored_k, size=k, replace=False)
    detected = np.flatnonzero(from_detection)
    fill = np.flatnonzero(~np.asarray(from_detection, dtype=bool))
    order = np.concatenate([rng.permutation(detected), rng.permutation(fill)])
    return rng.permutation(order[:k])


def choose_mixed_views(k: int, object_share: float, rng: np.random.Generator,
                       object_flags: np.ndarray | None, object_angles: tuple[np.ndarray, np.ndarray],
                       bank_angles: tuple[np.ndarray, np.ndarray],
                       min_separation_rad: float = MIXED_MIN_SEPARATION_RAD,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a sample's K viewpoints drawn from two stored sets: ``round(object_share *
    k)`` (stochastic rounding) detection-centred viewpoints of the object set (``object_flags``
    (V_o,) bool; fewer when fewer were detected), and the rest from the bank (V_b viewpoints),
    preferring bank viewpoints at least ``min_separation_rad`` from every chosen object view
    so that two crops rarely show the same patch. Angles are ``(azimuth_rad, elevation_rad)``
    arrays of each set. Returns ``(object_indices, bank_indices)``."""
    detected = (np.flatnonzero(object_flags) if object_flags is not None
                else np.zeros(0, dtype=np.int64))
    wanted = int(np.floor(object_share * k + rng.random()))
    n_object = min(wanted, k, len(detected))
    object_views = (rng.choice(detected, size=n_object, replace=False) if n_object
                    else np.zeros(0, dtype=np.int64))
    bank_order = rng.permutation(len(bank_angles[0]))
    if n_object:
        distance = angular_distance_rad(
            bank_angles[0][bank_order, None], bank_angles[1][bank_order, None],
            object_angles[0][None, object_views], object_angles[1][None, object_views])
        too_close = distance.min(axis=1) < min_separation_rad
        bank_order = bank_order[np.argsort(too_close, kind="stable")]
    return object_views, bank_order[:k - n_object]


# ----------------------------------------------------------------------------- augmentation

def _output(out: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``out`` checked to be a C-contiguous float32 array of ``shape`` (or a new one)."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous float32 output of shape {shape}, got "
                         f"{out.dtype} {out.shape}")
    return out


def crops_to_video(crops: np.ndarray, jitter_strength: float = 0.0,
                   rng: np.random.Generator | None = None, flip: bool = False,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Crops ``(K, T, S, S, 3)`` uint8 -> the video encoder's input ``(K, 3, T, S, S)`` float32
    in [0, 1], with brightness, contrast and saturation jitter when ``jitter_strength`` > 0:
    one draw per crop (the same for its T frames), factors uniform in 1 +- strength; ``flip``
    mirrors every crop left-right (the crops' part of the flip; :func:`features_to_audio` is
    the rest).

    Applied in that order without intermediate clipping the three are one affine map per
    crop, ``x -> s c b x + (1 - s) c b gray(x) + (1 - c) b mean(gray(x))`` (brightness b
    scales, contrast c pulls toward the crop's mean grey level, saturation s pulls toward each
    pixel's grey level), then clipped to [0, 1]. One numba kernel splits each crop into channel
    planes with their integer sums (for the mean grey), then maps them, mirrored on the fly, and
    writes the channel-first floats once: the loader's largest cost after reading
    (bench/train.py), 3 ms per paper-size sample in numpy temporaries, 1.8 ms (3.4 flipped) in
    the first kernel, 1.1-1.3 ms with folded constants, 0.6 ms reading channel planes.
    ``out``: a C-contiguous float32 array of the output's shape to write into.
    """
    k = crops.shape[0]
    video = _output(out, (k, 3, *crops.shape[1:4]), "video")
    if jitter_strength <= 0:
        source = crops[:, :, :, ::-1] if flip else crops
        np.multiply(np.moveaxis(source, -1, 1), np.float32(1.0 / 255.0), out=video)
        return video
    brightness, contrast, saturation = rng.uniform(
        1.0 - jitter_strength, 1.0 + jitter_strength, size=(3, k)).astype(np.float32)
    rows = crops.shape[1] * crops.shape[2]                                   # T * S
    _jittered_video(np.ascontiguousarray(crops).reshape(k, rows, crops.shape[3], 3),
                    saturation * contrast * brightness,
                    (1.0 - saturation) * contrast * brightness, (1.0 - contrast) * brightness,
                    bool(flip), video.reshape(k, 3, rows, crops.shape[3]))
    return video


@njit(cache=True, nogil=True, fastmath=True)
def _jittered_video(pixels, scale, gray_weight, mean_weight, flip, out):  # pragma: no cover
    """``out[k, ch, i, j] = clip(scale[k] x + gray_weight[k] gray + mean_weight[k] mean(gray))``
    over pixels ``(K, R, W, 3)`` uint8 (R rows of W pixels; column ``W - 1 - j`` when ``flip``),
    x = pixel / 255, gray = 0.299 R + 0.587 G + 0.114 B (the mean from exact integer channel
    sums), float32 out ``(K, 3, R, W)``. The 1/255 and the grey weights fold into per-crop
    coefficients and ``fastmath`` lets LLVM vectorise the clip. Each view is first split into
    channel planes (with its sums) in a reused buffer: the map then reads contiguous bytes and
    vectorises, where reading the interleaved RGB did not (1.19-1.23 -> 0.58-0.63 ms per
    paper-size sample, half of them flipped; the same floats bit for bit)."""
    n_views, n_rows, width = pixels.shape[0], pixels.shape[1], pixels.shape[2]
    zero, one, inv = np.float32(0.0), np.float32(1.0), np.float32(1.0 / 255.0)
    planes = np.empty((3, n_rows, width), dtype=np.uint8)
    for k in range(n_views):
        sum_r, sum_g, sum_b = _channel_planes(pixels[k], planes)
        total = 0.299 * sum_r + 0.587 * sum_g + 0.114 * sum_b
        offset = np.float32(mean_weight[k] * total / 255.0 / (n_rows * width))
        a, g = np.float32(scale[k]) * inv, np.float32(gray_weight[k]) * inv
        gray_r, gray_g, gray_b = g * np.float32(0.299), g * np.float32(0.587), g * np.float32(0.114)
        for i in range(n_rows):
            plane_r, plane_g, plane_b = planes[0, i], planes[1, i], planes[2, i]
            out_r, out_g, out_b = out[k, 0, i], out[k, 1, i], out[k, 2, i]
            for j in range(width):
                source = width - 1 - j if flip else j
                r = np.float32(plane_r[source])
                gr = np.float32(plane_g[source])
                b = np.float32(plane_b[source])
                base = gray_r * r + gray_g * gr + gray_b * b + offset
                out_r[j] = min(max(a * r + base, zero), one)
                out_g[j] = min(max(a * gr + base, zero), one)
                out_b[j] = min(max(a * b + base, zero), one)


@njit(cache=True, nogil=True)
def _channel_planes(view, planes):  # pragma: no cover - numba
    """One view's ``(R, W, 3)`` uint8 pixels into ``planes (3, R, W)``; returns the exact
    integer sum of each channel."""
    flat = view.reshape(-1)
    plane_r, plane_g, plane_b = (planes[0].reshape(-1), planes[1].reshape(-1),
                                 planes[2].reshape(-1))
    sum_r, sum_g, sum_b = 0, 0, 0
    for i in range(plane_r.shape[0]):
        r, g, b = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
        plane_r[i], plane_g[i], plane_b[i] = r, g, b
        sum_r += np.int64(r)
        sum_g += np.int64(g)
        sum_b += np.int64(b)
    return sum_r, sum_g, sum_b


def features_to_audio(features: dict[str, FeatureCodes], keys: Sequence[str],
                      norm: dict[str, FeatureNorm], gain_db: float = 0.0,
                      flip: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """The audio encoder's input ``(K, C, M, F)`` float32 from the stored codes of ``keys``
    (each ``(K, C_key, M, F)``), their channels one after another in key order.

    Each key's values (:class:`~pipeline.shards.FeatureCodes`), plus ``gain_db`` for dB features
    (volume jitter), with I_y of ``iv`` negated when ``flip`` (the audio part of mirroring a
    sample left-right, y -> -y; log-mel magnitudes, including Y's, and the beam toward the view
    centre are unchanged, the azimuths negate in the caller and the crops in
    :func:`crops_to_video`), then normalised per channel and mel band where ``norm`` has the
    key: ``(value - mean) / std``. All of it is one affine map per viewpoint, channel and band,
    folded in float64 from the codec's map, the gain, the sign and the statistics; one numba
    kernel applies it to the codes and writes the output once (dequantisation and five numpy
    passes over float32 copies before: 1.9 -> 0.1 ms per paper-size sample, flip and gain on).
    ``out``: a C-contiguous float32 array of that shape to write into (a batch's row).
    """
    parts = [features[key] for key in keys]
    k, _, n_bands, n_frames = parts[0].codes.shape
    shape = (k, sum(p.codes.shape[1] for p in parts), n_bands, n_frames)
    out = _output(out, shape, "audio")
    first = 0
    for key, part in zip(keys, parts):
        n_channels = part.codes.shape[1]
        sign = np.ones(n_channels)
        if flip and key == "iv":
            sign[IV_Y_CHANNEL] = -1.0
        offset = part.offset.astype(np.float64) + (gain_db if key in DECIBEL_FEATURES else 0.0)
        if key in norm:
            stats = norm[key]
            if stats.mean.shape != (n_channels, n_bands):
                raise ShardFormatError(f"{NORM_STATS_NAME}: {key} has statistics of shape "
                                       f"{stats.mean.shape}, the shard {(n_channels, n_bands)} "
                                       "(channels, mel bands)")
            mean, std = stats.mean.astype(np.float64), stats.std.astype(np.float64)
        else:
            mean, std = np.zeros((n_channels, n_bands)), np.ones((n_channels, n_bands))
        scale = sign[:, None] * part.step / std                                         # (C, M)
        shift = (sign[None, :, None] * offset[:, None, None] - mean) / std              # (K, C, M)
        codes = part.codes if part.codes.dtype == np.uint8 else part.codes.astype(np.float32)
        _affine_codes(np.ascontiguousarray(codes), scale.astype(np.float32),
                      shift.astype(np.float32), out, first)
        first += n_channels
    return out


@njit(cache=True, nogil=True)
def _affine_codes(codes, scale, shift, out, first_channel):  # pragma: no cover - numba
    """``out[k, first_channel + c, m, :] = scale[c, m] * codes[k, c, m, :] + shift[k, c, m]``."""
    for k in range(codes.shape[0]):
        for c in range(codes.shape[1]):
            for m in range(codes.shape[2]):
                a = scale[c, m]
                b = shift[k, c, m]
                for f in range(codes.shape[3]):
                    out[k, first_channel + c, m, f] = a * codes[k, c, m, f] + b


# ----------------------------------------------------------------------------- dataset

class ShardStream(IterableDataset):
    """Batches of one split, streamed from the shards listed in ``<shards_dir>/shards.jsonl``.

    Args:
        shards_dir: folder with ``shards.jsonl`` (and optionally ``norm_stats.json``).
        split: split name (``train``, ``val``, ...); every listed shard must hold one split.
        data_cfg: :class:`DataConfig` (audio input, viewpoint source, augmentation, batch size).
        batch_size: samples per batch (default ``data_cfg.batch_size``).
        viewpoints_per_sample: K viewpoints read per sample (a random subset of the stored K
            when training, YOLO-centred ones first with ``data_cfg.prefer_detected_views``, see
            :func:`choose_views`; the first K otherwise). Change per phase with
            :meth:`set_epoch`.
        windows_per_clip: 1 = sample units; >= 2 = AVTS groups of windows of one clip.
        training: shuffle the viewpoint choice and augment (else no augmentation).
        equal_steps: every rank yields ``steps_per_epoch`` full batches (training, DDP
            validation); False = one pass over the rank's samples, last batch partial.
        seed, rank, world_size: plan inputs (rank/world_size may be simulated in tests).
    """

    def __init__(self, shards_dir: str | Path, split: str, data_cfg: DataConfig, *,
                 batch_size: int | None = None, viewpoints_per_sample: int | None = None,
                 windows_per_clip: int = 1, training: bool = True, equal_steps: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.shards_dir = Path(shards_dir)
        self.split = split
        self.cfg = data_cfg
        self.batch_size = batch_size or data_cfg.batch_size
        self.viewpoints_per_sample = viewpoints_per_sample or data_cfg.views_per_step
        self.windows_per_clip = windows_per_clip
        self.training = training
        self.equal_steps = equal_steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.object_view_share = 0.0             # set per phase with set_epoch
        if self.batch_size % windows_per_clip:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of "
                             f"windows_per_clip {windows_per_clip}")
        self.feature_keys = AUDIO_FEATURES[data_cfg.audio_input]

        index = ShardIndex.load(self.shards_dir)         # no index: "no shards", named
        records = [r for r in index.records if split in r["split"]]
        for record in records:
            if len(record["split"]) != 1:
                raise ShardFormatError(f"{self.shards_dir / record['shard']}: holds splits "
                                       f"{record['split']}; the trainer needs one split per shard")
        self.shard_paths = [str(self.shards_dir / r["shard"]) for r in records]
        self.shard_sizes = [int(r["n_samples"]) for r in records]
        self.n_samples = sum(self.shard_sizes)
        self.n_clips = sum(len(r.get("clip_ids", ())) for r in records)
        # Clip-based epochs for training on single windows (AVTS keeps its window groups).
        self.samples_per_clip = (data_cfg.samples_per_clip
                                 if training and windows_per_clip == 1 and self.n_clips else 0)

        self.norm: dict[str, FeatureNorm] = {}
        norm_path = self.shards_dir / NORM_STATS_NAME
        if data_cfg.normalize_audio and norm_path.exists():
            self.norm = read_norm_stats(norm_path)
        elif data_cfg.normalize_audio:
            log.warning("%s not found: audio features are not normalised", norm_path)

    # -- plan ------------------------------------------------------------------------------
    @property
    def n_units(self) -> int:
        """Samples per epoch: clips x ``samples_per_clip``, or every stored window."""
        return self.n_clips * self.samples_per_clip if self.samples_per_clip else self.n_samples

    @property
    def steps_per_epoch(self) -> int:
        """Batches every rank yields per epoch (equal_steps), the same on all ranks."""
        return self.n_units // (self.world_size * self.batch_size)

    def set_epoch(self, epoch: int, viewpoints_per_sample: int | None = None,
                  object_view_share: float | None = None) -> None:
        """Select the epoch's plan (and K and the share of object-centred viewpoints, which
        change with the curriculum phase). Call before ``iter(loader)``: workers receive a
        copy of the dataset at that moment."""
        self.epoch = epoch
        if viewpoints_per_sample is not None:
            self.viewpoints_per_sample = viewpoints_per_sample
        if object_view_share is not None:
            self.object_view_share = object_view_share

    def check_viewpoints(self, k: int) -> None:
        """Raise a :class:`ShardFormatError` now, before any training, when the shards store
        fewer than ``k`` viewpoints per window in the set this stream reads, or lack the object
        set that ``data.object_view_share`` needs (the reader checks every set it opens; the
        first shard decides: one preprocessing run writes every shard with the same bank)."""
        if not self.shard_paths:
            return
        mixes = self.cfg.object_view_share > 0 and k > 1
        reader = ShardReader(self.split, self.cfg.viewpoints, self.feature_keys,
                             (OBJECT_SOURCE,) if mixes else ())
        try:
            stored = reader.stored_bank_size(self.shard_paths[0])
        finally:
            reader.close()
        if stored < k:
            raise ShardFormatError(
                f"{self.shards_dir}: {stored} viewpoints stored per window in the "
                f"'{self.cfg.viewpoints}' set, {k} requested per sample (data.views_per_step); "
                f"use data.views_per_step<={stored} or rebuild the shards with "
                f"viewpoints.bank_size>={k}")

    @property
    def mixes_object_views(self) -> bool:
        """Whether samples draw some viewpoints from the object set (training, K > 1)."""
        return self.training and self.object_view_share > 0 and self.viewpoints_per_sample > 1

    def worker_plan(self, worker: int, num_workers: int) -> tuple[list[Part], int | None]:
        """Parts read by ``worker`` of this rank and its number of batches (None = one pass)."""
        parts = make_parts(self.shard_paths, self.shard_sizes, self.world_size * num_workers)
        per_worker = [[parts[i] for i in assign_parts(len(parts), self.seed, self.epoch,
                                                      self.rank, self.world_size, w,
                                                      num_workers)]
                      for w in range(num_workers)]
        if not self.equal_steps:
            return per_worker[worker], None
        sizes = [sum(p.n_samples for p in worker_parts) for worker_parts in per_worker]
        if sum(sizes) < self.batch_size:
            raise ValueError(f"rank {self.rank} of {self.world_size} gets {sum(sizes)} samples of "
                             f"split '{self.split}', fewer than one batch of {self.batch_size}; "
                             f"write smaller shards or use fewer ranks")
        # A worker holding less than one batch sits this epoch out (its samples are dropped).
        weights = [size if size >= self.batch_size else 0 for size in sizes]
        quotas = split_steps(self.steps_per_epoch, weights)
        return per_worker[worker], quotas[worker]

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        return self.iter_worker(worker, num_workers)

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The batches of one worker (tests call this directly to simulate workers)."""
        parts, quota = self.worker_plan(worker, num_workers)
        if quota == 0 or not parts:
            return
        reader = ShardReader(self.split, self.cfg.viewpoints, self.feature_keys,
                             (OBJECT_SOURCE,) if self.mixes_object_views else ())
        units_per_batch = self.batch_size // self.windows_per_clip
        produced = 0
        try:
            for pass_index in itertools.count():
                rng = epoch_rng(self.seed, self.epoch, 1, self.rank, worker, pass_index)
                part_order = rng.permutation(len(parts))
                pending: list[tuple[str, tuple[int, ...]]] = []
                produced_in_pass = 0
                for first in range(0, len(parts), SHARDS_IN_FLIGHT):
                    chunk = [parts[i] for i in part_order[first:first + SHARDS_IN_FLIGHT]]
                    units = [u for part in chunk for u in self._units(reader, part, rng)]
                    pending += [units[i] for i in rng.permutation(len(units))]
                    while len(pending) >= units_per_batch:
                        batch_units, pending = pending[:units_per_batch], pending[units_per_batch:]
                        yield self._load_batch(reader, batch_units, worker, produced)
                        produced += 1
                        produced_in_pass += 1
                        if quota is not None and produced == quota:
                            return
                if quota is None:                   # one pass: flush the partial batch
                    if pending:
                        yield self._load_batch(reader, pending, worker, produced)
                    return
                if produced_in_pass == 0:
                    raise ValueError(f"rank {self.rank} worker {worker}: its parts of split "
                                     f"'{self.split}' hold fewer than one batch of "
                                     f"{self.batch_size} samples; use fewer workers/ranks, a "
                                     f"smaller batch or more data")
        finally:
            reader.close()

    def _units(self, reader: ShardReader, part: Part,
               rng: np.random.Generator) -> list[tuple[str, tuple[int, ...]]]:
        """Units of a part: single rows (every row, or ``samples_per_clip`` random windows of
        each clip), or groups of ``windows_per_clip`` rows of one clip (AVTS)."""
        if self.windows_per_clip == 1 and not self.samples_per_clip:
            return [(part.shard_path, (row,)) for row in range(part.start, part.stop)]
        clip_ids = reader.clip_ids(part.shard_path, part.start, part.stop)
        rows_by_clip: dict[str, list[int]] = {}
        for offset, clip_id in enumerate(clip_ids):
            rows_by_clip.setdefault(clip_id, []).append(part.start + offset)
        if self.windows_per_clip == 1:          # clip-based epoch: random windows per visit
            return [(part.shard_path, (int(row),)) for rows in rows_by_clip.values()
                    for row in rng.choice(rows, size=self.samples_per_clip, replace=True)]
        units = []
        for rows in rows_by_clip.values():
            rows = [rows[i] for i in rng.permutation(len(rows))]
            for first in range(0, len(rows) - self.windows_per_clip + 1, self.windows_per_clip):
                units.append((part.shard_path, tuple(rows[first:first + self.windows_per_clip])))
        return units

    def _load_batch(self, reader: ShardReader, units: Sequence[tuple[str, tuple[int, ...]]],
                    worker: int, batch_index: int) -> dict[str, Any]:
        samples: list[dict[str, Any]] = []
        batch: dict[str, torch.Tensor] = {}
        n_samples = sum(len(rows) for _, rows in units)
        for group, (path, rows) in enumerate(units):
            for row in rows:
                rng = epoch_rng(self.seed, self.epoch, 2, self.rank, worker, batch_index,
                                len(samples))
                out = {key: batch[key][len(samples)].numpy() for key in batch} or None
                sample = self._load_sample(reader, path, row, rng, out)
                if not batch:             # the first sample fixes the shapes; the rest are
                    batch = {key: _batch_tensor(n_samples, sample[key])   # written in place
                             for key in ("video", "audio")}
                sample["clip_index"] = group
                samples.append(sample)
        return {
            **batch,
            "azimuth_rad": torch.from_numpy(np.stack([s["azimuth_rad"] for s in samples])),
            "elevation_rad": torch.from_numpy(np.stack([s["elevation_rad"] for s in samples])),
            "clip_index": torch.tensor([s["clip_index"] for s in samples], dtype=torch.int64),
            "window_index": torch.tensor([s["window_index"] for s in samples], dtype=torch.int64),
            "flipped": torch.tensor([s["flipped"] for s in samples], dtype=torch.bool),
            "clip_id": [s["clip_id"] for s in samples],
        }

    def _load_sample(self, reader: ShardReader, path: str, row: int, rng: np.random.Generator,
                     out: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """One sample; ``out``: ``video`` and ``audio`` arrays to write it into (a batch's
        rows), else new ones."""
        stored_k = reader.stored_bank_size(path)
        k = self.viewpoints_per_sample
        if k > stored_k:
            raise ShardFormatError(f"{path}: {stored_k} viewpoints stored, {k} requested")
        if self.mixes_object_views:
            sample = self._read_mixed(reader, path, row, k, rng)
        else:
            if self.training:
                detections = (reader.from_detection(path, row)
                              if self.cfg.prefer_detected_views and k < stored_k else None)
                views = choose_views(stored_k, k, rng, detections)
            else:
                views = np.arange(k)
            sample = reader.read(path, row, views)
        crops, azimuth = sample["crops"], sample["azimuth_rad"]

        flipped = bool(self.training and rng.random() < self.cfg.flip_prob)
        out = out or {}
        video = crops_to_video(crops, self.cfg.color_jitter if self.training else 0.0, rng,
                               flip=flipped, out=out.get("video"))
        gain_db = (rng.uniform(-self.cfg.volume_jitter_db, self.cfg.volume_jitter_db)
                   if self.training and self.cfg.volume_jitter_db > 0 else 0.0)
        try:
            audio = features_to_audio(sample["features"], self.feature_keys, self.norm,
                                      float(np.float32(gain_db)), flipped, out.get("audio"))
        except ShardFormatError as exc:                  # statistics that do not fit the shard
            raise ShardFormatError(f"{path}: {exc}") from exc
        return {
            "video": video,                                                        # (K, 3, T, S, S)
            "audio": audio,
            "azimuth_rad": np.ascontiguousarray(-azimuth if flipped else azimuth),
            "elevation_rad": sample["elevation_rad"],
            "window_index": sample["window_index"],
            "clip_id": sample["clip_id"],
            "flipped": flipped,
        }

    def _read_mixed(self, reader: ShardReader, path: str, row: int, k: int,
                    rng: np.random.Generator) -> dict[str, Any]:
        """A sample whose K viewpoints mix object-centred ones (``data.object_view_share``)
        with the bank's, in random order (:func:`choose_mixed_views`)."""
        object_views, bank_views = choose_mixed_views(
            k, self.object_view_share, rng, reader.from_detection(path, row, OBJECT_SOURCE),
            reader.angles(path, row, OBJECT_SOURCE), reader.angles(path, row))
        parts = [reader.read(path, row, bank_views)]
        if len(object_views):
            parts.append(reader.read(path, row, object_views, OBJECT_SOURCE))
        order = rng.permutation(k)
        joined = lambda key: np.concatenate([part[key] for part in parts])[order]
        return {**parts[0], "crops": joined("crops"), "azimuth_rad": joined("azimuth_rad"),
                "elevation_rad": joined("elevation_rad"),
                "features": {key: FeatureCodes.concatenate([p["features"][key] for p in parts])
                             .take(order) for key in self.feature_keys}}


def _batch_tensor(n_samples: int, first: np.ndarray) -> torch.Tensor:
    """A ``(n_samples, *first.shape)`` batch tensor holding ``first`` in row 0, the other rows
    to be written in place by the loader's kernels (no per-sample arrays stacked: that copy cost
    more than the kernels, bench/train.py). In a DataLoader worker it is allocated in shared
    memory, where the queue to the main process would otherwise copy it once more: allocated
    there directly, as torch's ``default_collate`` does (``share_memory_`` on a fresh tensor
    first touches private memory, then copies it into the shared segment: 31 against 19 ms for
    a 38.5 MB batch of 8, docs/RESULTS.md, sixth round)."""
    if torch.utils.data.get_worker_info() is not None:
        elem = torch.from_numpy(first[:0])
        storage = elem._typed_storage()._new_shared(n_samples * first.size, device=elem.device)
        batch = elem.new(storage).resize_(n_samples, *first.shape)
    else:           # numpy's allocation asks for huge pages: a 38.5 MB batch is first written
        # in 7 ms, against 16 ms in torch's allocation (docs/RESULTS.md, fifth round)
        batch = torch.from_numpy(np.empty((n_samples, *first.shape), dtype=first.dtype))
    batch[0] = torch.from_numpy(first)
    return batch


def make_loader(dataset: ShardStream, num_workers: int, pin_memory: bool = False,
                seed: int = 0) -> DataLoader:
    """DataLoader over whole batches. Its own torch generator keeps ``iter(loader)`` from
    consuming the global RNG (which resume restores for dropout)."""
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      prefetch_factor=4 if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))
