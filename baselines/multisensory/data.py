"""Synchronisation pretext examples (Owens & Efros 2018) from HDF5 shards (schema v1).

What one example is
-------------------
A shard sample holds ``foa_acn_sn3d`` (4, A): ``audio_window_s`` of unrotated ambiX FOA, and T
video frames at the shard's fps whose span is centred inside that window
(``video_start_s - audio_start_s`` = ``o``). The default shards hold 1 s windows with 0.5 s of
video; this experiment reads the shards of ``configs/preprocess_sync.yaml`` (3 s windows, 2 s
of video, ``o`` = 0.5 s), where most windows hold an on/off event that makes synchrony
decidable. Per clip we take one crop (``views/<source>/crops``, the first stored viewpoint or a
random one), optionally a sub-clip of ``clip_frames`` of its frames (a random start in
training, centred in evaluation: :func:`subclip_geometry`), and build a *pair*:

- positive: the audio samples aligned with the video frames, ``[o, o + L)`` (``L``: their span
  in samples, ``o`` moved with the sub-clip's start);
- negative: the same length shifted by ``s`` samples, ``[o + s, o + s + L)``, where ``|s|`` is
  uniform in ``[ceil(min_shift_s * r), floor(max_shift_s * r)]`` (``r`` samples per second)
  and the sign is a fair coin. ``s`` is never 0, and ``max_shift_s`` may not exceed the
  margin around the stored video, so the shifted audio always lies inside the stored window.

Every clip yields both, so labels are exactly balanced and a video-only or audio-only cue
cannot separate positives from negatives. The original shifts by 2.0-5.8 s within 4.2 s
clips (125 frames); our 0.25-0.5 s shifts of 1.5 s sub-clips (4-8 video frames) make the task
finer-grained synchronisation rather than "same moment or not".

The sample rate is ``A / audio_window_s``, which also covers factory shards that store fewer
samples per window; a shard whose preprocessing config names another window length is an error.

Audio in the example
--------------------
``mono``: the omni channel W. ``foa``: the four ambiX channels rotated toward the crop's
viewpoint (:func:`pipeline.foa.rotation_matrix_to_front`, yaw then pitch), so that "front" is
the crop centre; a horizontally flipped crop gets the mirrored field (``Y -> -Y``). The
waveform is divided by the RMS of W over the whole stored window: the positive and the
negative of a pair get the same gain, so loudness carries no label.

Batches (B clips): ``video`` (B, 3, T, S, S) float32 in [0, 1]; ``audio_pos`` /
``audio_neg`` (B, C, L) float32; ``shift_s`` (B,) float32 (the negative's shift; + = the
audio comes from later in the window); ``azimuth_rad``/``elevation_rad``/``fov_rad`` (B,) of
the crop; ``flipped`` (B,) bool; ``gt_count`` (B,) int64 and ``gt_azimuth_rad``,
``gt_elevation_rad``, ``gt_sounding``, ``gt_visible`` (B, O) (zeros when the shard has no
ground truth), ``has_gt`` (B,) bool; ``clip_id`` and ``source`` (shard path, row) lists of B.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.foa import rotation_matrix_to_front
from pipeline.shards import (MAX_GT_OBJECTS, ShardFormatError, ShardIndex, open_shard,
                             read_checked, stored_crops)
from baselines.multisensory.config import SyncDataConfig

__all__ = [
    "SyncSamplingError",
    "WindowGeometry",
    "window_geometry",
    "subclip_geometry",
    "draw_shifts",
    "audio_subwindow",
    "sync_pair",
    "prepare_audio",
    "SyncStream",
    "make_loader",
]

ACN_W, ACN_Y = 0, 1
RMS_FLOOR = 1e-6
MAX_OPEN_SHARDS = 8
GT_FIELDS = ("azimuth_rad", "elevation_rad", "sounding", "visible")


class SyncSamplingError(ValueError):
    """The stored window cannot hold the requested positive/negative audio windows."""


@dataclass(frozen=True)
class WindowGeometry:
    """Where the positive and negative audio lie inside a stored window, in samples.

    ``video_offset``: first sample aligned with the video; ``video_length``: L samples spanned
    by the video; shifts satisfy ``min_shift <= |s| <= max_shift <= video_offset``.
    """

    samples_per_s: float
    video_offset: int
    video_length: int
    min_shift: int
    max_shift: int


def window_geometry(n_audio_samples: int, audio_window_s: float, video_offset_s: float,
                    min_shift_s: float, max_shift_s: float) -> WindowGeometry:
    """Sample positions of the pretext windows for a stored window of ``n_audio_samples``.

    Args:
        n_audio_samples: A, samples of the stored window (``audio_window_s`` seconds).
        video_offset_s: ``video_start_s - audio_start_s``, seconds (the video is centred, so it
            spans ``audio_window_s - 2 * video_offset_s`` seconds).
        min_shift_s, max_shift_s: bounds of ``|shift|`` of the negatives, seconds.
    """
    rate = n_audio_samples / audio_window_s
    offset = int(round(video_offset_s * rate))
    length = n_audio_samples - 2 * offset
    min_shift = max(1, math.ceil(min_shift_s * rate - 1e-9))
    max_shift = math.floor(max_shift_s * rate + 1e-9)
    if offset <= 0 or length <= 0:
        raise SyncSamplingError(f"video offset {video_offset_s:.4f} s in a {audio_window_s} s "
                                f"window of {n_audio_samples} samples leaves no centred video "
                                f"span (offset {offset}, length {length} samples)")
    if min_shift > max_shift:
        raise SyncSamplingError(f"no integer shift in [{min_shift_s}, {max_shift_s}] s at "
                                f"{rate:.1f} samples/s")
    if max_shift > offset:
        raise SyncSamplingError(f"max shift {max_shift_s} s ({max_shift} samples) exceeds the "
                                f"margin around the video ({offset} samples = "
                                f"{offset / rate:.3f} s): the negative would leave the stored "
                                f"window; lower data.max_shift_s or store longer windows")
    return WindowGeometry(rate, offset, length, min_shift, max_shift)


def subclip_geometry(geometry: WindowGeometry, n_frames: int,
                     clip_frames: int, start_frame: int) -> WindowGeometry:
    """The geometry of video frames ``[start_frame, start_frame + clip_frames)`` of the
    ``n_frames`` stored ones: the aligned audio moves with them. A sub-clip lies inside the
    full video span, so its margins are at least the full ones and every shift stays valid."""
    if not 0 < clip_frames <= n_frames or not 0 <= start_frame <= n_frames - clip_frames:
        raise SyncSamplingError(f"sub-clip of {clip_frames} frames at {start_frame} does not "
                                f"fit the {n_frames} stored frames")
    per_frame = geometry.video_length / n_frames
    offset = geometry.video_offset + int(round(start_frame * per_frame))
    length = int(round(clip_frames * per_frame))
    return WindowGeometry(geometry.samples_per_s, offset, length, geometry.min_shift,
                          geometry.max_shift)


def draw_shifts(rng: np.random.Generator, n: int, min_shift: int, max_shift: int) -> np.ndarray:
    """``n`` non-zero shifts (int64 samples): ``|s|`` uniform in [min_shift, max_shift] and a
    random sign."""
    if min_shift < 1 or max_shift < min_shift:
        raise SyncSamplingError(f"shift bounds must satisfy 1 <= min <= max, got {min_shift}, "
                                f"{max_shift}")
    magnitude = rng.integers(min_shift, max_shift + 1, size=n)
    sign = np.where(rng.random(n) < 0.5, -1, 1)
    return (sign * magnitude).astype(np.int64)


def audio_subwindow(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[:, start:start + length]`` of a (C, A) window, checked to lie inside it."""
    if start < 0 or start + length > audio.shape[-1]:
        raise SyncSamplingError(f"sub-window [{start}, {start + length}) outside a window of "
                                f"{audio.shape[-1]} samples")
    return audio[..., start:start + length]


def sync_pair(audio: np.ndarray, geometry: WindowGeometry,
              shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) sub-windows, each (C, L), of a stored (C, A) window."""
    if shift == 0:
        raise SyncSamplingError("a negative needs a non-zero shift")
    positive = audio_subwindow(audio, geometry.video_offset, geometry.video_length)
    negative = audio_subwindow(audio, geometry.video_offset + shift, geometry.video_length)
    return positive, negative


def prepare_audio(foa: np.ndarray, azimuth_rad: float, elevation_rad: float, mode: str,
                  flipped: bool) -> np.ndarray:
    """Network waveform (C, A) float32 from stored FOA (4, A) ambiX/SN3D.

    ``mono``: W (C = 1). ``foa``: rotated toward the viewpoint (radians), ``Y -> -Y`` when the
    crop is flipped (C = 4). Divided by the RMS of W over the window.
    """
    foa = np.asarray(foa, dtype=np.float32)
    if mode == "mono":
        audio = foa[ACN_W:ACN_W + 1]
    elif mode == "foa":
        audio = rotation_matrix_to_front(azimuth_rad, elevation_rad).astype(np.float32) @ foa
        if flipped:
            audio[ACN_Y] *= -1.0
    else:
        raise ValueError(f"audio mode must be 'mono' or 'foa', got {mode!r}")
    rms = float(np.sqrt(np.mean(np.square(foa[ACN_W], dtype=np.float64))))
    return np.ascontiguousarray(audio / max(rms, RMS_FLOOR), dtype=np.float32)


class _Shards:
    """Shards opened lazily inside the worker, at most ``MAX_OPEN_SHARDS`` at once; each one's
    stored window length is checked when it is opened."""

    def __init__(self, audio_window_s: float) -> None:
        self._open: OrderedDict[str, h5py.File] = OrderedDict()
        self._audio_window_s = audio_window_s

    def get(self, path: str) -> h5py.File:
        if path not in self._open:
            h5 = open_shard(path)
            try:
                _check_window_length(h5, path, self._audio_window_s)
            except SyncSamplingError:
                h5.close()
                raise
            self._open[path] = h5
            while len(self._open) > MAX_OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(path)
        return self._open[path]

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


class SyncStream(IterableDataset):
    """Batches of sync pairs from one split of ``<shards_dir>/shards.jsonl``.

    ``training=True``: every epoch visits the split in an order drawn from ``(seed, epoch)``;
    each DataLoader worker takes every ``num_workers``-th unit of that order and yields its
    share of ``steps_per_epoch`` full batches (recycling its units if it runs short), with
    flips. ``training=False``: one pass in index order (last batch partial), no flips, and
    shifts/views drawn from ``(seed, unit)`` only, so held-out examples are the same in every
    run with the same seed.
    """

    def __init__(self, shards_dir: str | Path, split: str, cfg: SyncDataConfig, *,
                 training: bool, seed: int = 0, max_batches: int = 0):
        super().__init__()
        self.cfg, self.split, self.training = cfg, split, training
        self.seed, self.max_batches, self.epoch = seed, max_batches, 0
        index = ShardIndex.load(shards_dir)
        self.units = [(str(path), row)
                      for record, path in zip(index.records, index.paths())
                      if split in record["split"]
                      for row in range(int(record["n_samples"]))]
        self.view_prefix = f"views/{cfg.viewpoints}"

    @property
    def n_samples(self) -> int:
        return len(self.units)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.units) // self.cfg.batch_size

    def first_example(self) -> dict[str, Any]:
        """The first unit's example (shapes for building models, ground truth presence)."""
        if not self.units:
            raise ShardFormatError(f"no samples of split '{self.split}' in the shard index")
        shards = _Shards(self.cfg.audio_window_s)
        try:
            return self._example(shards, *self.units[0], np.random.default_rng([self.seed, 3]))
        finally:
            shards.close()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order (call before ``iter(loader)``)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        shards = _Shards(self.cfg.audio_window_s)
        try:
            yield from (self._train_batches if self.training else self._eval_batches)(
                shards, worker, workers)
        finally:
            shards.close()

    def _train_batches(self, shards: _Shards, worker: int, workers: int):
        order = np.random.default_rng([self.seed, 0, self.epoch]).permutation(len(self.units))
        mine = order[worker::workers]
        steps = self.steps_per_epoch
        quota = steps // workers + (worker < steps % workers)
        if quota == 0 or len(mine) == 0:
            return
        units = cycle(mine.tolist())
        for _ in range(quota):
            picks = [next(units) for _ in range(self.cfg.batch_size)]
            yield self._batch(shards, picks, [[self.seed, 1, self.epoch, u] for u in picks])

    def _eval_batches(self, shards: _Shards, worker: int, workers: int):
        size = self.cfg.batch_size
        n_batches = math.ceil(len(self.units) / size)
        if self.max_batches > 0:
            n_batches = min(n_batches, self.max_batches)
        for batch_index in range(worker, n_batches, workers):
            picks = list(range(batch_index * size, min((batch_index + 1) * size, len(self.units))))
            yield self._batch(shards, picks, [[self.seed, 2, u] for u in picks])

    def _batch(self, shards: _Shards, picks: Sequence[int],
               keys: Sequence[list[int]]) -> dict[str, Any]:
        examples = [self._example(shards, *self.units[u], np.random.default_rng(key))
                    for u, key in zip(picks, keys)]
        lengths = {e["audio_pos"].shape[-1] for e in examples}
        if len(lengths) != 1:
            raise ShardFormatError(f"split '{self.split}': the video spans differ between "
                                   f"samples ({sorted(lengths)} audio samples); every window "
                                   f"must centre its video the same way")
        batch: dict[str, Any] = {}
        for key in examples[0]:
            values = [e[key] for e in examples]
            batch[key] = (values if isinstance(values[0], (str, tuple))
                          else torch.from_numpy(np.stack(values)))
        return batch

    def _example(self, shards: _Shards, path: str, row: int,
                 rng: np.random.Generator) -> dict[str, Any]:
        h5 = shards.get(path)
        prefix = self.view_prefix
        if f"{prefix}/crops" not in h5 or "foa_acn_sn3d" not in h5:
            raise ShardFormatError(f"{path}: needs {prefix}/crops and foa_acn_sn3d")
        num_viewpoints = h5[f"{prefix}/azimuth_rad"].shape[1]
        view = int(rng.integers(num_viewpoints)) if self.cfg.view_policy == "random" else 0
        azimuth = float(h5[f"{prefix}/azimuth_rad"][row, view])
        elevation = float(h5[f"{prefix}/elevation_rad"][row, view])
        foa = read_checked(h5["foa_acn_sn3d"], row)       # checksum failure: names the shard
        offset_s = float(h5["video_start_s"][row] - h5["audio_start_s"][row])
        geometry = window_geometry(foa.shape[-1], self.cfg.audio_window_s, offset_s,
                                   self.cfg.min_shift_s, self.cfg.max_shift_s)
        n_frames = stored_crops(h5, f"{prefix}/crops").shape[2]
        clip_frames = self.cfg.clip_frames or n_frames
        if clip_frames > n_frames:
            raise SyncSamplingError(f"{path}: data.clip_frames = {clip_frames} but the shard "
                                    f"stores {n_frames} frames per window")
        start = (int(rng.integers(n_frames - clip_frames + 1)) if self.training
                 else (n_frames - clip_frames) // 2)
        if clip_frames != n_frames:
            geometry = subclip_geometry(geometry, n_frames, clip_frames, start)
        shift = int(draw_shifts(rng, 1, geometry.min_shift, geometry.max_shift)[0])
        flipped = bool(self.training and rng.random() < self.cfg.flip_prob)
        audio = prepare_audio(foa, azimuth, elevation, self.cfg.audio, flipped)
        positive, negative = sync_pair(audio, geometry, shift)
        crops = stored_crops(h5, f"{prefix}/crops")[row, view, start:start + clip_frames]
        if flipped:
            crops = crops[:, :, ::-1]
        video = np.ascontiguousarray(crops.transpose(3, 0, 1, 2), dtype=np.float32) / 255.0
        sign = -1.0 if flipped else 1.0          # a flipped crop shows the mirrored sphere
        example = {
            "video": video, "audio_pos": positive, "audio_neg": negative,
            "shift_s": np.float32(shift / geometry.samples_per_s),
            "azimuth_rad": np.float32(sign * azimuth), "elevation_rad": np.float32(elevation),
            "fov_rad": np.float32(h5[f"{prefix}/fov_rad"][row, view]),
            "flipped": np.bool_(flipped),
        }
        example.update(_ground_truth(h5, row, sign))
        example["has_gt"] = np.bool_("gt/count" in h5)
        example["clip_id"] = h5["clip_id"].asstr()[row]
        example["source"] = (path, row)
        return example


def _check_window_length(h5: h5py.File, path: str, audio_window_s: float) -> None:
    """Raise when the shard's preprocessing config (root attribute ``config``) stored windows
    of another length than ``data.audio_window_s`` (shards without it are trusted)."""
    if "config" not in h5.attrs:
        return
    try:
        stored_s = float(json.loads(h5.attrs["config"])["audio"]["window_s"])
    except (KeyError, TypeError, ValueError):
        return
    if abs(stored_s - audio_window_s) > 1e-6:
        raise SyncSamplingError(f"{path}: the shard stores {stored_s:g} s audio windows but "
                                f"data.audio_window_s = {audio_window_s:g}; set "
                                f"data.audio_window_s={stored_s:g} (or point data.shards_dir at "
                                f"shards preprocessed for this experiment)")


def _ground_truth(h5: h5py.File, row: int, azimuth_sign: float) -> dict[str, np.ndarray]:
    """Synthetic ground truth of one sample (zeros and count 0 when the shard has none)."""
    if "gt/count" not in h5:
        zeros = np.zeros(MAX_GT_OBJECTS, dtype=np.float32)
        return {"gt_count": np.int64(0), "gt_azimuth_rad": zeros, "gt_elevation_rad": zeros,
                "gt_sounding": zeros.astype(bool), "gt_visible": zeros.astype(bool)}
    out = {"gt_count": np.int64(h5["gt/count"][row])}
    for name in GT_FIELDS:
        value = h5[f"gt/{name}"][row]
        out[f"gt_{name}"] = value.astype(bool if value.dtype == bool else np.float32)
    out["gt_azimuth_rad"] = out["gt_azimuth_rad"] * np.float32(azimuth_sign)
    return out


def make_loader(stream: SyncStream, num_workers: int) -> DataLoader:
    """DataLoader over whole batches (the stream batches itself)."""
    return DataLoader(stream, batch_size=None, num_workers=num_workers,
                      prefetch_factor=2 if num_workers > 0 else None)
