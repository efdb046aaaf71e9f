"""How high can a model go on a shard set's AVSA-bin benchmark? Two ceilings, no checkpoint.

    python -m evals.av.ceiling preset=spatial [shards_dir=data/shards/spatial] \
        [out=results/reproduction/ceiling-spatial.json]

AVSA-bin (:mod:`evals.audio.binary`): for a test window, K viewpoints of a stored set (``random``,
uniform directions, by default); a positive pairs each crop with the FOA audio rotated toward
that crop's viewpoint, its negative turns the audio by an extra yaw U(-180, 180) deg first; a
decision is made per view (``avsa_bin_1``) or from the K views of the window together, logits
averaged (``avsa_bin_4``). Chance is 50 %. The test pairs here are the binary evaluation's
own: same splits, viewpoint set, first K stored viewpoints, and the same
``test_yaws_per_window`` negatives per window (:func:`evals.audio.binary.window_yaws_rad`,
seeded by the window's identity; the positive is scored once per yaw), with audio features
computed the same way (:func:`pipeline.features.foa_features` of the stored FOA, positives as
is, negatives after :func:`evals.audio.binary.rotate_by_yaw`, standardised with the shards'
``norm_stats.json``). Scores are also given on the *decidable* views (the crop shows a
sounding object, :func:`evals.audio.binary.views_showing_sounding_object`).

1. **Supervised ceiling** (``supervised``): a small network trained directly on the binary
   decision from the same inputs: the stored crops (``video_frames`` of the T frames, stacked as
   channels, at ``video_size`` px) and the log-mel + intensity-vector channels of the rotated
   audio (``audio_input``: ``foa_iv`` = 7 channels, average-pooled over mel bands and frames).
   It trains on the train split (each epoch a fresh negative per window from a bank of
   ``negatives_per_window`` window-seeded yaws, the first the binary evaluation's training
   negative), picks its epoch by the loss on held-out training clips (``val_fraction``), and is
   scored on the test split. Shortcut
   controls: the same network trained with the video blanked (``audio_only``: a ceiling the audio
   alone reaches says the benchmark leaks) and with the audio blanked (``video_only``: a positive
   and its negative share the crop, so 50 % by construction), and the full network scored with
   another test clip's crops (``other_clip_video``).
2. **Oracle** (``oracle``): perfect vision of the crop. From the ground truth (``gt/*``: object
   directions, ``sounding``, ``visible``) it knows which objects lie inside each crop (gnomonic
   field of view ``views/<set>/fov_rad``, object centre) and where, and whether each sounds; from
   the rotated audio it reads summaries (energy-weighted mean intensity vector in the crop's
   frame, channel levels of Y, Z, X relative to W). A logistic regression on hand-built pair
   features (alignment of the intensity vector with the in-crop sounding / visible objects, their
   counts, the frontal energy with and without an object in view) decides per view; K views
   average its logits. ``oracle.without_sounding`` is the same without the ``sounding`` flags
   (what positions alone give). Objects outside the crop are unknown to both, as to the model.

Accuracies come with clip-clustered standard errors (decisions of one clip are not independent).
The JSON (default ``results/reproduction/ceiling-<preset>.json``) holds ``supervised``,
``oracle`` (each ``avsa_bin_4``, ``avsa_bin_1`` in %, ``se`` of ``avsa_bin_4`` and ``se_1`` of
``avsa_bin_1`` in points), ``n_test_pairs``, the ``command`` that reproduces it and ``minutes``;
the resolved config is saved beside it. Shards without ground truth (real data) stop with one
error line unless ``oracle.enabled=false``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config import ConfigError, to_dict
from pipeline.features import AudioFeatureConfig, foa_features
from pipeline.foa import dipole_rotation_matrix
from pipeline.ground_truth import is_synthetic_dataset
from pipeline.shards import NORM_STATS_NAME, ShardIndex, open_shard, read_norm_stats
from pipeline.spatial import direction_vector
from trainer.config import AUDIO_FEATURES
from trainer.data import IV_Y_CHANNEL
from evals.audio.binary import (BinaryEvalConfig, accuracy_with_se, mismatched_partners,
                                rotate_by_yaw, scored_subset, views_showing_sounding_object,
                                window_yaws_rad)
from evals.cli import run_evaluator
from evals.frozen import (feature_config_from_shards, iter_shard_batches, normalise_audio_input,
                          resolve_data_path, resolve_device)

log = logging.getLogger(__name__)

GT_FIELDS = ("gt/count", "gt/class_id", "gt/azimuth_rad", "gt/elevation_rad", "gt/sounding",
             "gt/visible")
RESULTS_DIR = Path("results") / "reproduction"
CONTROLS = ("audio_only", "video_only", "other_clip_video")


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class PairsConfig:
    """How pairs are drawn: the fields of :class:`evals.audio.binary.BinaryEvalConfig` that
    decide them, with its defaults (so the test pairs are the binary evaluation's)."""

    num_viewpoints: int = 4
    viewpoints: Literal["random", "yolo"] = "random"
    max_train_samples: int = 20000    # 0 = all
    max_test_samples: int = 0         # 0 = all
    negative_yaw: Literal["uniform", "away"] = "uniform"
    yaw_min_deg: float = 60.0
    yaw_max_deg: float = 300.0
    test_yaws_per_window: int = 4     # negatives per test window (its positive scored as often)
    extract_batch: int = 32           # shard rows per read
    seed: int = 0

    def binary(self) -> BinaryEvalConfig:
        return BinaryEvalConfig(num_viewpoints=self.num_viewpoints, viewpoints=self.viewpoints,
                                max_train_samples=self.max_train_samples,
                                max_test_samples=self.max_test_samples,
                                negative_yaw=self.negative_yaw, yaw_min_deg=self.yaw_min_deg,
                                yaw_max_deg=self.yaw_max_deg,
                                test_yaws_per_window=self.test_yaws_per_window,
                                extract_batch=self.extract_batch, seed=self.seed)


@dataclass(frozen=True)
class SupervisedConfig:
    """The network trained on the binary decision (sizes in pixels, mel bands and frames)."""

    enabled: bool = True
    audio_input: Literal["foa_iv", "foa"] = "foa_iv"
    audio_pool_mels: int = 4          # average-pool factor over mel bands (128 -> 32)
    audio_pool_frames: int = 5        # and over STFT frames (100 -> 20)
    video_frames: int = 4             # of the T stored frames, evenly spaced, stacked as channels
    video_size: int = 56              # crops resized to this (area) when stored larger
    width: int = 24                   # channels of the first conv; later layers 2x
    embed_dim: int = 64
    dropout: float = 0.3
    map_channels: int = 8             # per cell of the crop grid in the spatial term
    mirror: bool = True               # half the training pairs mirrored (crop and sound field)
    negatives_per_window: int = 4     # yaw bank of a training window (the first = binary's)
    # Also train on the crops of this stored viewpoint set of the same training windows
    # ("" = none; "yolo": detection-centred crops, many with a sounding object in front). The
    # epoch is still chosen, and the test pairs drawn, on pairs.viewpoints only.
    extra_train_viewpoints: str = ""
    val_fraction: float = 0.2         # of the training clips, to pick the epoch
    max_epochs: int = 60
    patience: int = 10
    max_minutes: float = 3.0          # per network (the full one and each control)
    batch_size: int = 64              # crops per step (K per window; each crop gives a
                                      # positive and a negative pair)
    loss_on: Literal["view", "window"] = "window"   # window: on the K views' mean logit
    lr: float = 2e-3
    weight_decay: float = 1e-4
    controls: bool = True
    control_max_epochs: int = 8       # video-only control (50 % by construction)


@dataclass(frozen=True)
class OracleConfig:
    """The ground-truth oracle: logistic regression (or a small MLP) on pair features."""

    enabled: bool = True
    model: Literal["logistic", "mlp"] = "logistic"
    c: float = 1.0                    # inverse L2 strength of the logistic regression


@dataclass(frozen=True)
class CeilingRun:
    """``configs/evals/ceiling.yaml``: which shards, where the JSON goes, and the settings."""

    preset: str = ""                  # name in the JSON and the default paths (demo, spatial)
    shards_dir: str = ""              # default: data/shards/<preset>
    out: str = ""                     # default: results/reproduction/ceiling-<preset>.json
    train_split: str = "train"
    test_split: str = "test"
    device: str = "cpu"
    pairs: PairsConfig = field(default_factory=PairsConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)


# ----------------------------------------------------------------------------- pure pieces

def pair_scores(logit_positive: np.ndarray, logit_negative: np.ndarray, clip_ids: np.ndarray,
                decidable: np.ndarray | None = None) -> dict[str, Any]:
    """AVSA-bin scores from per-view logits (> 0 = aligned), in percent, laid out as
    :func:`evals.audio.binary.scored_subset` expects (each window's positive scored once per
    negative yaw, so the score stays balanced).

    Args:
        logit_positive: ``(N, K)`` of the N windows' positives.
        logit_negative: ``(N, Y, K)`` of their Y negatives.
        clip_ids: ``(N,)`` clusters of the clip-clustered standard errors.
        decidable: optional ``(N, K)`` views whose crop shows a sounding object: adds the
            same scores on those views (``decidable``; 4 views: windows with one or more).
    Returns:
        ``avsa_bin_<K>`` (the K views' logits averaged) and ``avsa_bin_1`` (every view), with
        their clip-clustered SE ``se`` and ``se_1`` (points) and ``n_pairs`` of each.
    """
    n, y, k = logit_negative.shape
    positive = np.broadcast_to(logit_positive[:, None], (n, y, k))
    correct = {"1": np.stack([positive > 0, logit_negative <= 0]),                    # (2,N,Y,K)
               str(k): np.stack([positive.mean(-1) > 0, logit_negative.mean(-1) <= 0])}  # (2,N,Y)
    clusters = np.unique(np.asarray(clip_ids), return_inverse=True)[1]

    def summarise(mask: np.ndarray | None) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        for views, array in correct.items():
            summary = accuracy_with_se(*scored_subset(array, clusters, mask))
            se_key = "se_1" if views == "1" else "se"
            scores[f"avsa_bin_{views}"] = round(summary["accuracy_pct"], 2)
            scores[se_key] = round(summary["se_pct"], 2)
            scores[f"n_pairs_{views}"] = summary["n_pairs"]
        return {key: scores[key] for key in (f"avsa_bin_{k}", "avsa_bin_1", "se", "se_1",
                                             f"n_pairs_{k}", "n_pairs_1")}

    result = summarise(None)
    if decidable is not None and np.any(decidable):
        result["decidable"] = summarise(np.asarray(decidable, bool))
    return result


def frame_indices(n_stored: int, n_wanted: int) -> np.ndarray:
    """``n_wanted`` evenly spaced frames of ``n_stored`` (centres of equal segments)."""
    if not 1 <= n_wanted <= n_stored:
        raise ValueError(f"supervised.video_frames must be 1..{n_stored} (frames stored), "
                         f"got {n_wanted}")
    return ((np.arange(n_wanted) + 0.5) * n_stored / n_wanted).astype(np.int64)


def pool_audio(features: np.ndarray, pool_mels: int, pool_frames: int) -> np.ndarray:
    """Average-pool ``(..., C, M, F)`` by ``pool_mels`` x ``pool_frames`` (trailing bands or
    frames that do not fill a block are dropped)."""
    *lead, c, m, f = features.shape
    m2, f2 = m // pool_mels, f // pool_frames
    if m2 == 0 or f2 == 0:
        raise ValueError(f"audio features of {m} mel bands x {f} frames cannot be pooled by "
                         f"{pool_mels} x {pool_frames}")
    blocks = features[..., :m2 * pool_mels, :f2 * pool_frames]
    return blocks.reshape(*lead, c, m2, pool_mels, f2, pool_frames).mean(axis=(-3, -1))


def audio_summaries(raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What the oracle hears of K rotated windows.

    Args:
        raw: :func:`pipeline.features.foa_features` output, ``logmel_foa`` ``(K, 4, M, F)`` dB
            (W, Y, Z, X) and ``iv`` ``(K, 3, M, F)`` (I_x, I_y, I_z, energy-normalised).
    Returns:
        ``iv_mean`` ``(K, 3)``: the intensity vector averaged over bins weighted by W's power
        (x front, y left, z up in each viewpoint's frame; length 1 for one plane wave), and
        ``level_db`` ``(K, 3)``: the Y, Z, X levels relative to W, dB (power over all bins).
    """
    power = 10.0 ** (raw["logmel_foa"].astype(np.float64) / 10.0)                 # (K, 4, M, F)
    weight = power[:, 0]
    iv_mean = (raw["iv"] * weight[:, None]).sum(axis=(-2, -1)) / weight.sum(axis=(-2, -1))[:, None]
    level = 10.0 * np.log10(power.mean(axis=(-2, -1)) + 1e-20)                     # (K, 4)
    return iv_mean.astype(np.float32), (level[:, 1:] - level[:, :1]).astype(np.float32)


def objects_in_view(gt: dict[str, np.ndarray], azimuth_rad: np.ndarray,
                    elevation_rad: np.ndarray, fov_rad: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth objects of one window in the frame of each of its K viewpoints.

    Args:
        gt: ``gt/count`` (), ``gt/azimuth_rad`` / ``gt/elevation_rad`` ``(O,)`` radians.
        azimuth_rad, elevation_rad, fov_rad: ``(K,)`` viewpoints (radians; fov horizontal, the
            crop square and gnomonic).
    Returns:
        ``directions`` ``(K, n, 3)`` unit vectors in each viewpoint's frame (x = the crop's
        centre, y left, z up; ``R_y(el) R_z(-az) d``) of the ``n = gt/count`` objects, and
        ``inside`` ``(K, n)`` bool: the object's centre projects into the crop.
    """
    count = int(gt["gt/count"])
    world = direction_vector(np.asarray(gt["gt/azimuth_rad"][:count], np.float64),
                             np.asarray(gt["gt/elevation_rad"][:count], np.float64))  # (n, 3)
    rotation = dipole_rotation_matrix(azimuth_rad, elevation_rad)                      # (K, 3, 3)
    directions = np.einsum("kij,nj->kni", rotation, world)
    half = np.tan(np.asarray(fov_rad, np.float64) / 2.0)[:, None]
    front = directions[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = ((front > 1e-6) & (np.abs(directions[..., 1]) < half * front)
                  & (np.abs(directions[..., 2]) < half * front))
    return directions, inside


ORACLE_FEATURES = ("iv_x", "iv_y", "iv_z", "iv_norm", "level_y_db", "level_z_db", "level_x_db",
                   "n_visible_in_crop", "any_visible_in_crop", "best_iv_dot_visible",
                   "mean_iv_dot_visible", "iv_x_given_visible", "iv_x_given_empty",
                   "level_x_given_empty", "n_sounding_in_crop", "any_sounding_in_crop",
                   "best_iv_dot_sounding", "mean_iv_dot_sounding", "iv_x_given_sounding",
                   "level_x_given_sounding", "n_silent_in_crop")
SOUNDING_FEATURES = ORACLE_FEATURES[ORACLE_FEATURES.index("n_sounding_in_crop"):]


def in_clip_sounding_ties(shows: np.ndarray) -> float:
    """Top-1 accuracy of the in-clip pretext (pick a viewpoint among a clip's K) for a model
    whose only cue is which sounding objects each crop shows: ``shows`` ``(K, n)`` bool (object
    j sounds and is visible in crop k). Views showing the same set of sounding objects (e.g.
    none) are a tie, broken at random: the mean over the K views of 1 / (views with its set).
    A reference for the pretext's in-clip accuracy, not a bound (sky, ground, silent objects
    and elevation are cues too)."""
    shows = np.asarray(shows, dtype=bool)
    sets = [frozenset(np.flatnonzero(row).tolist()) for row in shows]
    return float(np.mean([1.0 / sum(other == own for other in sets) for own in sets]))


def oracle_pair_features(iv_mean: np.ndarray, level_db: np.ndarray, directions: np.ndarray,
                         inside: np.ndarray, visible: np.ndarray, sounding: np.ndarray
                         ) -> np.ndarray:
    """Hand-built features of K (crop, audio) pairs of one window, :data:`ORACLE_FEATURES`.

    Args:
        iv_mean, level_db: ``(K, 3)`` audio summaries in each viewpoint's frame
            (:func:`audio_summaries`).
        directions, inside: ``(K, n, 3)``, ``(K, n)`` from :func:`objects_in_view`.
        visible, sounding: ``(n,)`` bool ground truth of the window's objects.
    Returns:
        float32 ``(K, len(ORACLE_FEATURES))``.
    """
    k = iv_mean.shape[0]
    seen = inside & np.asarray(visible, bool)[None, :]                               # (K, n)
    heard = seen & np.asarray(sounding, bool)[None, :]
    silent = seen & ~np.asarray(sounding, bool)[None, :]
    dots = np.einsum("kni,ki->kn", directions, iv_mean)                              # (K, n)

    def best_and_mean(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = mask.sum(1)
        best = np.where(mask, dots, -np.inf).max(1, initial=-np.inf)
        mean = np.where(mask, dots, 0.0).sum(1) / np.maximum(n, 1)
        return np.where(n > 0, best, 0.0), mean

    best_seen, mean_seen = best_and_mean(seen)
    best_heard, mean_heard = best_and_mean(heard)
    any_seen, any_heard = seen.any(1).astype(np.float64), heard.any(1).astype(np.float64)
    columns = [iv_mean[:, 0], iv_mean[:, 1], iv_mean[:, 2], np.linalg.norm(iv_mean, axis=1),
               level_db[:, 0], level_db[:, 1], level_db[:, 2],
               seen.sum(1), any_seen, best_seen, mean_seen, iv_mean[:, 0] * any_seen,
               iv_mean[:, 0] * (1.0 - any_seen), level_db[:, 2] * (1.0 - any_seen),
               heard.sum(1), any_heard, best_heard, mean_heard, iv_mean[:, 0] * any_heard,
               level_db[:, 2] * any_heard, silent.sum(1)]
    out = np.stack([np.broadcast_to(np.asarray(c, np.float64), (k,)) for c in columns], axis=1)
    return out.astype(np.float32)


def missing_ground_truth(shards_dir: Path, splits: Sequence[str]) -> str:
    """``""`` when the first shard of every split holds all :data:`GT_FIELDS`, else a one-line
    message naming the shard and the missing fields."""
    index = ShardIndex.load(shards_dir)
    for split in splits:
        for path in index.paths(split)[:1]:
            with open_shard(path) as h5:
                missing = [name for name in GT_FIELDS if name not in h5]
            if missing:
                return f"{path}: no {', '.join(missing)}"
    return ""


# ----------------------------------------------------------------------------- extraction

@dataclass
class SplitData:
    """What both ceilings need of one split, N windows x K viewpoints, R negatives each.

    ``video`` ``(N, K, 3 V, S, S)`` uint8; ``audio_positive`` ``(N, K, C, M', F')`` and
    ``audio_negative`` ``(N, R, K, C, M', F')`` float16 (pooled, standardised);
    ``oracle_positive`` ``(N, K, P)`` and ``oracle_negative`` ``(N, R, K, P)`` float32
    (:data:`ORACLE_FEATURES`; P = 0 without ground truth); ``yaw_rad`` ``(N, R)`` (the
    negatives' turns, radians); ``decidable`` ``(N, K)`` bool (the crop shows a sounding object,
    :func:`evals.audio.binary.views_showing_sounding_object`; all false without ground truth);
    ``clip_id`` ``(N,)``, ``window_index`` ``(N,)``.
    """

    video: np.ndarray
    audio_positive: np.ndarray
    audio_negative: np.ndarray
    oracle_positive: np.ndarray
    oracle_negative: np.ndarray
    yaw_rad: np.ndarray
    decidable: np.ndarray
    clip_id: np.ndarray
    window_index: np.ndarray
    extra_views: np.ndarray | None = None   # (N,) bool: crops of extra_train_viewpoints

    def take(self, rows: np.ndarray) -> "SplitData":
        return SplitData(*(None if getattr(self, name) is None else getattr(self, name)[rows]
                           for name in self.__dataclass_fields__))

    def with_extra(self, extra: "SplitData") -> "SplitData":
        """These windows followed by ``extra`` (the same windows seen from another viewpoint
        set), marked in ``extra_views``."""
        merged = {name: np.concatenate([getattr(self, name), getattr(extra, name)])
                  for name in self.__dataclass_fields__ if name != "extra_views"}
        return SplitData(**merged, extra_views=np.r_[np.zeros(len(self.clip_id), bool),
                                                     np.ones(len(extra.clip_id), bool)])


def _resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """``(..., C, S, S)`` uint8 -> ``(..., C, size, size)`` (area averaging) when S != size."""
    if crops.shape[-1] == size:
        return crops
    lead = crops.shape[:-3]
    tensor = torch.from_numpy(crops.reshape(-1, *crops.shape[-3:]).astype(np.float32))
    resized = F.interpolate(tensor, size=(size, size), mode="area")
    return resized.round().clamp(0, 255).to(torch.uint8).numpy().reshape(*lead, -1, size, size)


def window_features(foa: np.ndarray, azimuth_rad: np.ndarray, elevation_rad: np.ndarray,
                    yaws_rad: np.ndarray, n_exact: int, cfg: AudioFeatureConfig
                    ) -> list[dict[str, np.ndarray]]:
    """:func:`pipeline.features.foa_features` of one window's positive and its negatives.

    Args:
        foa: ``(4, A)`` unrotated ambiX window; azimuth_rad, elevation_rad: ``(K,)`` radians.
        yaws_rad: ``(R,)`` turns of the negatives.
        n_exact: the first ``n_exact`` negatives go the binary evaluation's way (the field
            turned by :func:`evals.audio.binary.rotate_by_yaw`, then features); the others, in
            one call, from the viewpoints ``(az + yaw, el)``: the same rotation
            (``R_y(el) R_z(-az) R_z(-yaw)``), equal up to float rounding (tested).
    Returns:
        ``1 + R`` feature dicts of ``(K, C, M, F)`` arrays, the positive first.
    """
    k = len(azimuth_rad)
    raws = [foa_features(foa, azimuth_rad, elevation_rad, cfg)]
    raws += [foa_features(rotate_by_yaw(foa, yaw), azimuth_rad, elevation_rad, cfg)
             for yaw in yaws_rad[:n_exact]]
    rest = np.asarray(yaws_rad[n_exact:])
    if len(rest):
        turned = foa_features(foa, (azimuth_rad[None, :] + rest[:, None]).ravel(),
                              np.tile(elevation_rad, len(rest)), cfg)
        raws += [{key: value[r * k:(r + 1) * k] for key, value in turned.items()}
                 for r in range(len(rest))]
    return raws


def extract_split(shards_dir: Path, split: str, pairs: PairsConfig, sup: SupervisedConfig,
                  feature_cfg: AudioFeatureConfig, norm: dict, n_negatives: int,
                  with_gt: bool, max_samples: int, exact: bool = True) -> SplitData:
    """Read one split as :func:`evals.audio.binary.extract_features` does and compute the inputs
    of both ceilings for each window's positive and ``n_negatives`` negatives.

    The yaws are the binary evaluation's (:func:`evals.audio.binary.window_yaws_rad`: seed,
    clip id and window index), so with ``n_negatives = pairs.test_yaws_per_window`` the test
    pairs are its very pairs, and a training window's first negative is its training negative.
    ``exact``: every negative's features the binary evaluation's way; else only the first
    (:func:`window_features`).
    """
    binary_cfg = pairs.binary()
    view_set = pairs.viewpoints
    fov_field = f"views/{view_set}/fov_rad"
    k = pairs.num_viewpoints
    out: dict[str, list[np.ndarray]] = {name: [] for name in SplitData.__dataclass_fields__
                                        if name != "extra_views"}
    frames = None
    batches = iter_shard_batches(shards_dir, split, view_set, k, (), pairs.extract_batch,
                                 max_samples, pairs.seed, extra_fields=(fov_field, *GT_FIELDS))
    for batch in tqdm(batches, desc=f"ceiling inputs {split}", unit="batch", leave=False):
        n = len(batch["clip_id"])
        yaws = np.stack([window_yaws_rad(clip_id, window, n_negatives, binary_cfg)
                         for clip_id, window in zip(batch["clip_id"], batch["window_index"])])
        crops = batch["crops"]                                               # (n, K, T, S, S, 3)
        if frames is None:
            frames = frame_indices(crops.shape[2], sup.video_frames)
        video = np.moveaxis(crops[:, :, frames], -1, 3)                      # (n, K, V, 3, S, S)
        video = video.reshape(n, k, -1, *video.shape[-2:])
        out["video"].append(_resize_crops(np.ascontiguousarray(video), sup.video_size))
        fov = batch[fov_field][:, :k]
        if with_gt:
            out["decidable"].append(views_showing_sounding_object(
                batch["azimuth_rad"], batch["elevation_rad"], fov, batch["gt/azimuth_rad"],
                batch["gt/elevation_rad"], batch["gt/sounding"], batch["gt/count"],
                batch["gt/visible"]))
        else:
            out["decidable"].append(np.zeros((n, k), bool))
        for i in range(n):
            az = batch["azimuth_rad"][i].astype(np.float64)
            el = batch["elevation_rad"][i].astype(np.float64)
            foa = batch["foa"][i]
            if foa.shape[1] != feature_cfg.n_samples:
                raise ValueError(f"{batch['shard']} row {batch['row'][i]}: foa_acn_sn3d holds "
                                 f"{foa.shape[1]} samples, the shards' feature config expects "
                                 f"{feature_cfg.n_samples}")
            raws = window_features(foa, az, el, yaws[i], n_negatives if exact else 1,
                                   feature_cfg)
            audio = [pool_audio(normalise_audio_input(raw, sup.audio_input, norm),
                                sup.audio_pool_mels, sup.audio_pool_frames) for raw in raws]
            out["audio_positive"].append(audio[0].astype(np.float16))
            out["audio_negative"].append(np.stack(audio[1:]).astype(np.float16))
            if with_gt:
                gt = {name: batch[name][i] for name in GT_FIELDS}
                directions, inside = objects_in_view(gt, az, el, fov[i])
                count = int(gt["gt/count"])
                visible, sounding = gt["gt/visible"][:count], gt["gt/sounding"][:count]
                feats = [oracle_pair_features(*audio_summaries(raw), directions, inside,
                                              visible, sounding) for raw in raws]
            else:
                feats = [np.zeros((k, 0), np.float32)] * len(raws)
            out["oracle_positive"].append(feats[0])
            out["oracle_negative"].append(np.stack(feats[1:]))
        out["yaw_rad"].append(yaws)
        out["clip_id"].append(np.asarray(batch["clip_id"]).astype(str))
        out["window_index"].append(np.asarray(batch["window_index"], np.int64))
    if not out["clip_id"]:
        raise ValueError(f"no samples of split '{split}' in {shards_dir}")
    per_window = ("audio_positive", "audio_negative", "oracle_positive", "oracle_negative")
    return SplitData(**{name: (np.stack(values) if name in per_window
                               else np.concatenate(values)) for name, values in out.items()})


# ----------------------------------------------------------------------------- supervised

def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class PairNet(nn.Module):
    """Crop CNN + audio CNN, fused twice: one logit per (crop, audio) pair, > 0 = aligned.

    Video ``(B, 3 V, S, S)`` uint8 (V frames stacked), audio ``(B, C, M', F')`` standardised.
    The logit is an MLP of the two embeddings (and their product) plus a spatial term: the
    video trunk's ``G x G`` feature map (``map_channels`` per cell) dotted with a map the audio
    embedding predicts for the same cells, i.e. "is there something where the sound comes
    from". A blanked side (``use_video`` / ``use_audio`` false) is a constant zero embedding:
    a network that never sees that input (the shortcut controls).
    """

    def __init__(self, video_channels: int, audio_channels: int, width: int = 24,
                 embed_dim: int = 64, dropout: float = 0.3, map_channels: int = 8,
                 grid: int = 7, use_video: bool = True, use_audio: bool = True):
        super().__init__()
        self.use_video, self.use_audio = use_video, use_audio
        self.embed_dim, self.map_size = embed_dim, map_channels * grid * grid
        self.video_trunk = nn.Sequential(_conv(video_channels, width, 5, 2),
                                         _conv(width, 2 * width, 3, 2),
                                         _conv(2 * width, 2 * width, 3, 2))
        self.video_embed = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                         nn.Linear(2 * width * 16, embed_dim),
                                         nn.ReLU(inplace=True))
        self.video_map = nn.Sequential(nn.AdaptiveAvgPool2d(grid),
                                       nn.Conv2d(2 * width, map_channels, 1), nn.Flatten())
        self.audio_trunk = nn.Sequential(_conv(audio_channels, width, 3, 1), nn.MaxPool2d(2),
                                         _conv(width, 2 * width, 3, 1),
                                         nn.AdaptiveAvgPool2d((4, 2)), nn.Flatten())
        # + the channels' means over all bins: the sound's mean direction, directly
        self.audio_embed = nn.Sequential(nn.Linear(2 * width * 8 + audio_channels, embed_dim),
                                         nn.ReLU(inplace=True))
        self.audio_map = nn.Linear(embed_dim, self.map_size)
        self.fuse = nn.Sequential(nn.Linear(3 * embed_dim, embed_dim), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(embed_dim, 1))

    def embed_video(self, video_uint8: torch.Tensor) -> torch.Tensor:
        """``(B, embed_dim + map_size)``: the crop's embedding and its flattened map."""
        if not self.use_video:
            return torch.zeros((len(video_uint8), self.embed_dim + self.map_size),
                               device=video_uint8.device)
        trunk = self.video_trunk(video_uint8.float() / 255.0 - 0.5)
        return torch.cat([self.video_embed(trunk), self.video_map(trunk)], dim=1)

    def logits(self, video_embedding: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        audio = audio.float()
        if self.use_audio:
            a = self.audio_embed(torch.cat([self.audio_trunk(audio), audio.mean((2, 3))], 1))
        else:
            a = torch.zeros((len(audio), self.embed_dim), device=audio.device)
        v, v_map = video_embedding.split([self.embed_dim, self.map_size], dim=1)
        spatial = (v_map * self.audio_map(a)).sum(1) / self.map_size
        return self.fuse(torch.cat([v, a, v * a], dim=1)).squeeze(1) + spatial


def audio_mirror(norm: dict, sup: SupervisedConfig) -> tuple[int, np.ndarray] | None:
    """How the standardised, pooled audio input of a mirrored scene (``Y -> -Y``, what a
    horizontally flipped crop needs, CONVENTIONS.md) is made from the input: the channel of
    ``I_y`` and the offset ``o`` ``(M', 1)`` per pooled band, with ``input' = -input - o`` on
    that channel (``o = pool(2 mean / std)``: exact, as the standardisation is affine per band
    and constant in time). None when the input has no sign-carrying channel (log-mel
    magnitudes do not change)."""
    keys = AUDIO_FEATURES[sup.audio_input]
    if "iv" not in keys:
        return None
    channel = sum(4 if key == "logmel_foa" else 1 for key in keys[:keys.index("iv")]) \
        + IV_Y_CHANNEL
    if "iv" not in norm:
        return channel, np.zeros((1, 1), np.float32)
    stats = norm["iv"]
    offset = 2.0 * stats.mean[IV_Y_CHANNEL] / stats.std[IV_Y_CHANNEL]               # (M,)
    pooled = pool_audio(offset[None, :, None], sup.audio_pool_mels, 1)[0]           # (M', 1)
    return channel, pooled.astype(np.float32)


def split_clips(clip_ids: np.ndarray, val_fraction: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(fit, val)``: ``val`` holds ``round(val_fraction * clips)`` (at least 1)
    randomly chosen clips; no clip is on both sides."""
    clips = np.unique(clip_ids)
    n_val = max(1, int(round(val_fraction * len(clips))))
    if n_val >= len(clips):
        raise ValueError(f"supervised.val_fraction={val_fraction} of {len(clips)} training "
                         f"clips leaves none to train on; use more clips or a smaller fraction")
    is_val = np.isin(clip_ids, rng.choice(clips, size=n_val, replace=False))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@torch.no_grad()
def predict(net: PairNet, video: np.ndarray, audio_positive: np.ndarray,
            audio_negative: np.ndarray, device: torch.device, batch: int = 256
            ) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the positives ``(N, K)`` and of the negatives ``(N, Y, K)`` of N windows:
    ``video`` ``(N, K, ...)``, ``audio_positive`` ``(N, K, ...)``, ``audio_negative``
    ``(N, Y, K, ...)``; each crop is encoded once."""
    net.eval()
    n, y, k = audio_negative.shape[:3]
    video = video.reshape(n * k, *video.shape[2:])
    audio = np.concatenate([audio_positive[:, None], audio_negative], axis=1)  # (N, 1+Y, K, ..)
    audio = audio.swapaxes(1, 2).reshape(n * k, 1 + y, *audio.shape[3:])
    logits = np.empty((n * k, 1 + y), np.float32)
    for start in range(0, n * k, batch):
        rows = slice(start, start + batch)
        v = net.embed_video(torch.from_numpy(np.ascontiguousarray(video[rows])).to(device))
        for j in range(1 + y):
            a = torch.from_numpy(np.ascontiguousarray(audio[rows, j], dtype=np.float32))
            logits[rows, j] = net.logits(v, a.to(device)).cpu().numpy()
    logits = logits.reshape(n, k, 1 + y)
    return logits[..., 0], np.ascontiguousarray(logits[..., 1:].swapaxes(1, 2))


def train_pair_net(data: SplitData, sup: SupervisedConfig, device: torch.device, seed: int, *,
                   mirror: tuple[int, np.ndarray] | None = None, use_video: bool = True,
                   use_audio: bool = True, max_epochs: int | None = None
                   ) -> tuple[PairNet, dict[str, Any]]:
    """Train a :class:`PairNet` on the binary decision (binary cross-entropy, AdamW).

    Every epoch sees each training window once: its K crops with their positives and one
    negative yaw drawn from the window's bank, half of the windows mirrored (with
    ``sup.mirror``: crops flipped left to right and the audio of the mirrored scene,
    :func:`audio_mirror`). The loss is on every view's logit (``sup.loss_on = view``) or on the
    K views' mean logit (``window``: the decision the 4-view score makes). The clips of
    ``sup.val_fraction`` are held out with their first (the binary evaluation's) negative, and
    the network of the lowest held-out loss is kept. Stops after ``sup.patience`` epochs
    without a new minimum, at ``max_epochs`` (default ``sup.max_epochs``) or after
    ``sup.max_minutes``. Returns the network and its fit record."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = split_clips(data.clip_id, sup.val_fraction, rng)
    if data.extra_views is not None:       # the epoch is chosen on the evaluated view set
        val_rows = val_rows[~data.extra_views[val_rows]]
    fit, val = data.take(fit_rows), data.take(val_rows)
    n, r, k = fit.audio_negative.shape[:3]
    net = PairNet(data.video.shape[2], data.audio_positive.shape[2], sup.width, sup.embed_dim,
                  sup.dropout, sup.map_channels, use_video=use_video,
                  use_audio=use_audio).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=sup.lr, weight_decay=sup.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    video = torch.from_numpy(fit.video)                                   # (n, K, 3V, S, S)
    positives = torch.from_numpy(fit.audio_positive)                      # (n, K, C, M', F')
    negatives = torch.from_numpy(fit.audio_negative)                      # (n, R, K, C, M', F')
    record: dict[str, Any] = {"epochs_run": 0, "best_epoch": 0, "val_loss": None,
                              "val_accuracy_pct": None, "stopped_by": "max_epochs",
                              "n_fit_windows": int(n), "n_val_windows": int(len(val_rows)),
                              "train_loss": []}
    if mirror is not None:
        mirror_channel, mirror_offset = mirror[0], torch.from_numpy(mirror[1])
    windows_per_step = max(1, sup.batch_size // k)
    best_state, started = None, time.perf_counter()
    for epoch in range(max_epochs or sup.max_epochs):
        net.train()
        order = torch.from_numpy(rng.permutation(n))
        choice = torch.from_numpy(rng.integers(r, size=n))      # one yaw per window, all views
        flip = torch.from_numpy(rng.random(n) < 0.5) if sup.mirror else None
        total = 0.0
        for start in range(0, n, windows_per_step):
            idx = order[start:start + windows_per_step]
            b = len(idx)
            crops = video[idx]
            audio = torch.stack([positives[idx], negatives[idx, choice[idx]]]).float()
            if flip is not None:     # the whole window mirrored: crops and sound field
                mirrored = flip[idx]
                crops = torch.where(mirrored[:, None, None, None, None], crops.flip(-1), crops)
                if mirror is not None:
                    turned = -audio[:, :, :, mirror_channel] - mirror_offset
                    audio[:, :, :, mirror_channel] = torch.where(
                        mirrored[None, :, None, None, None], turned,
                        audio[:, :, :, mirror_channel])
            v = net.embed_video(crops.flatten(0, 1).to(device))
            logits = net.logits(torch.cat([v, v]), audio.flatten(0, 2).to(device)).view(2, b, k)
            if sup.loss_on == "window":       # the K views decide together, as scored
                logits = logits.mean(2, keepdim=True)
            target = torch.ones_like(logits)
            target[1] = 0.0
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * b
        record["epochs_run"] = epoch + 1
        record["train_loss"].append(round(total / n, 4))
        pos, neg = predict(net, val.video, val.audio_positive, val.audio_negative[:, :1],
                           device)                                    # (n_val, K), (n_val, 1, K)
        if sup.loss_on == "window":
            pos, neg = pos.mean(-1), neg.mean(-1)
        logits_val = torch.from_numpy(np.concatenate([pos.ravel(), neg.ravel()]))
        target_val = torch.cat([torch.ones(pos.size), torch.zeros(neg.size)])
        val_loss = float(loss_fn(logits_val, target_val))
        log.debug("epoch %d: train loss %.4f, val loss %.4f", epoch + 1,
                  record["train_loss"][-1], val_loss)
        if record["val_loss"] is None or val_loss < record["val_loss"]:
            best_state = copy.deepcopy(net.state_dict())
            record.update(best_epoch=epoch + 1, val_loss=round(val_loss, 4),
                          val_accuracy_pct=round(100.0 * float(((logits_val > 0).float()
                                                                == target_val).float().mean()), 2))
        elif epoch + 1 - record["best_epoch"] >= sup.patience:
            record["stopped_by"] = "patience"
            break
        if time.perf_counter() - started > 60.0 * sup.max_minutes:
            record["stopped_by"] = "max_minutes"
            break
    net.load_state_dict(best_state)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return net.eval(), record


def supervised_ceiling(train: SplitData, test: SplitData, sup: SupervisedConfig,
                       device: torch.device, seed: int,
                       mirror: tuple[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Scores of the network trained on the binary decision, with its controls (the
    video-only one trained for at most ``sup.control_max_epochs``: a positive and its negative
    share the crop, so it cannot leave 50 %)."""
    net, record = train_pair_net(train, sup, device, seed, mirror=mirror)
    pos, neg = predict(net, test.video, test.audio_positive, test.audio_negative, device)
    result: dict[str, Any] = {**pair_scores(pos, neg, test.clip_id, test.decidable),
                              "fit": record}
    log.info("supervised: %s (epoch %d of %d, %.0f s)", _short(result), record["best_epoch"],
             record["epochs_run"], record["seconds"])
    if not sup.controls:
        return result
    controls: dict[str, Any] = {}
    for name, flags in (("audio_only", dict(use_video=False)),
                        ("video_only", dict(use_audio=False,
                                            max_epochs=sup.control_max_epochs))):
        control, control_record = train_pair_net(train, sup, device, seed + 1, mirror=mirror,
                                                 **flags)
        pos, neg = predict(control, test.video, test.audio_positive, test.audio_negative, device)
        controls[name] = {**pair_scores(pos, neg, test.clip_id, test.decidable),
                          "fit": control_record}
        log.info("supervised control %s: %s", name, _short(controls[name]))
    partners = mismatched_partners(test.clip_id, np.random.default_rng(seed + 7))
    pos, neg = predict(net, test.video[partners], test.audio_positive, test.audio_negative,
                       device)
    controls["other_clip_video"] = pair_scores(pos, neg, test.clip_id, test.decidable)
    log.info("supervised control other_clip_video: %s", _short(controls["other_clip_video"]))
    result["controls"] = controls
    k = test.video.shape[1]
    result["margin_over_best_control"] = round(
        result[f"avsa_bin_{k}"] - max(c[f"avsa_bin_{k}"] for c in controls.values()), 2)
    return result


# ----------------------------------------------------------------------------- oracle

def oracle_ceiling(train: SplitData, test: SplitData, cfg: OracleConfig, seed: int,
                   columns: Sequence[str] = ORACLE_FEATURES) -> dict[str, Any]:
    """Fit the oracle on every training pair (positives, and each of the R negatives weighted
    1 / R so both classes weigh the same) and score it on the test pairs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pick = [ORACLE_FEATURES.index(name) for name in columns]
    n, r, k, _ = train.oracle_negative.shape
    x = np.concatenate([train.oracle_positive[..., pick].reshape(-1, len(pick)),
                        train.oracle_negative[..., pick].reshape(-1, len(pick))])
    y = np.r_[np.ones(n * k), np.zeros(n * r * k)]
    weight = np.r_[np.ones(n * k), np.full(n * r * k, 1.0 / r)]
    if cfg.model == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.c, max_iter=2000))
        model.fit(x, y, logisticregression__sample_weight=weight)
    else:   # MLPClassifier takes no weights: the negatives of bank slot 0 only (balanced)
        keep = np.r_[np.ones(n * k, bool), np.tile(np.r_[True, np.zeros(r - 1, bool)]
                                                   .repeat(k), n)]
        model = make_pipeline(StandardScaler(), MLPClassifier((32,), alpha=1e-3, max_iter=500,
                                                              early_stopping=True,
                                                              random_state=seed))
        model.fit(x[keep], y[keep])
    score = lambda feats: _decision(model, feats[..., pick].reshape(-1, len(pick))
                                    ).reshape(feats.shape[:-1])
    return pair_scores(score(test.oracle_positive), score(test.oracle_negative), test.clip_id,
                       test.decidable)


def _decision(model, x: np.ndarray) -> np.ndarray:
    """Log-odds of "aligned" (> 0 = aligned)."""
    if hasattr(model, "decision_function"):
        return model.decision_function(x)
    p = np.clip(model.predict_proba(x)[:, 1], 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# ----------------------------------------------------------------------------- driver

def default_paths(cfg: CeilingRun) -> tuple[Path, Path]:
    """``(shards_dir, out)`` with the preset's defaults filled in."""
    if not cfg.preset:
        raise ConfigError("preset: expected a name (preset=demo or preset=spatial), got none")
    shards = resolve_data_path(cfg.shards_dir or f"data/shards/{cfg.preset}")
    out = Path(cfg.out) if cfg.out else RESULTS_DIR / f"ceiling-{cfg.preset}.json"
    return shards, out


def command_line(cfg: CeilingRun) -> str:
    """The command that reproduces ``cfg``: the preset, paths, and every setting that differs
    from the defaults (``configs/evals/ceiling.yaml`` equals them)."""
    def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
        items: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[prefix + key] = value
        return items

    shards, out = default_paths(cfg)
    given, default = flat(to_dict(cfg)), flat(to_dict(CeilingRun()))
    words = [f"preset={cfg.preset}", f"shards_dir={cfg.shards_dir or shards}", f"out={out}"]
    words += [f"{key}={_yaml_word(value)}" for key, value in given.items()
              if key not in ("preset", "shards_dir", "out") and value != default[key]]
    return "python -m evals.av.ceiling " + " ".join(words)


def _yaml_word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _short(scores: dict[str, Any]) -> str:
    four = next(key for key in scores if key.startswith("avsa_bin_") and key != "avsa_bin_1")
    return (f"{four[-1]} views {scores[four]:.1f} +- {scores['se']:.1f} %, "
            f"1 view {scores['avsa_bin_1']:.1f} +- {scores['se_1']:.1f} %")


def evaluate_ceiling(cfg: CeilingRun) -> dict[str, Any]:
    """Both ceilings of one shard set; writes the JSON and returns the result dict."""
    started = time.perf_counter()
    shards_dir, out_path = default_paths(cfg)
    if not (shards_dir / "shards.jsonl").is_file():
        raise FileNotFoundError(f"{shards_dir / 'shards.jsonl'}: no shard index; build the "
                                f"{cfg.preset} shards first (see the module doc of "
                                f"evals.av.ceiling)")
    if not (cfg.supervised.enabled or cfg.oracle.enabled):
        raise ConfigError("supervised.enabled and oracle.enabled are both false: nothing to do")
    if cfg.supervised.audio_input not in AUDIO_FEATURES:
        raise ConfigError(f"supervised.audio_input: unknown input {cfg.supervised.audio_input!r}")
    missing = missing_ground_truth(shards_dir, (cfg.train_split, cfg.test_split))
    if missing and cfg.oracle.enabled:
        raise ValueError(f"{missing}: the oracle needs synthetic ground truth (real data has "
                         f"none); run with oracle.enabled=false for the supervised ceiling alone")
    norm_path = shards_dir / NORM_STATS_NAME
    if not norm_path.is_file():
        raise FileNotFoundError(f"{norm_path}: no normalisation statistics; the shards are "
                                f"incomplete (preprocessing writes them last)")
    norm = read_norm_stats(norm_path)
    feature_cfg = feature_config_from_shards(shards_dir)
    device = resolve_device(cfg.device)
    pairs = cfg.pairs
    if pairs.test_yaws_per_window < 1 or cfg.supervised.negatives_per_window < 1:
        raise ConfigError("pairs.test_yaws_per_window and supervised.negatives_per_window must "
                          "be >= 1")
    train = extract_split(shards_dir, cfg.train_split, pairs, cfg.supervised, feature_cfg, norm,
                          cfg.supervised.negatives_per_window, not missing,
                          pairs.max_train_samples, exact=False)
    extra_set = cfg.supervised.extra_train_viewpoints
    if extra_set and cfg.supervised.enabled:
        if extra_set not in ("random", "yolo") or extra_set == pairs.viewpoints:
            raise ConfigError(f"supervised.extra_train_viewpoints: expected '' or the stored "
                              f"set other than pairs.viewpoints={pairs.viewpoints}, got "
                              f"{extra_set!r}")
        extra = extract_split(shards_dir, cfg.train_split, replace(pairs, viewpoints=extra_set),
                              cfg.supervised, feature_cfg, norm,
                              cfg.supervised.negatives_per_window, not missing,
                              pairs.max_train_samples, exact=False)
        supervised_train = train.with_extra(extra)
    else:
        supervised_train = train
    test = extract_split(shards_dir, cfg.test_split, pairs, cfg.supervised, feature_cfg, norm,
                         pairs.test_yaws_per_window, not missing, pairs.max_test_samples)
    extract_s = time.perf_counter() - started
    log.info("inputs: %d train and %d test windows in %.0f s", len(train.clip_id),
             len(test.clip_id), extract_s)
    result: dict[str, Any] = {"preset": cfg.preset, "shards": str(cfg.shards_dir or shards_dir)}
    if cfg.supervised.enabled:
        mirror = audio_mirror(norm, cfg.supervised) if cfg.supervised.mirror else None
        result["supervised"] = supervised_ceiling(supervised_train, test, cfg.supervised,
                                                  device, pairs.seed * 100 + 11, mirror)
    if cfg.oracle.enabled:
        oracle = oracle_ceiling(train, test, cfg.oracle, pairs.seed)
        oracle["without_sounding"] = oracle_ceiling(
            train, test, cfg.oracle, pairs.seed,
            [name for name in ORACLE_FEATURES if name not in SOUNDING_FEATURES])
        result["oracle"] = oracle
        log.info("oracle: %s; without sounding flags: %s", _short(oracle),
                 _short(oracle["without_sounding"]))
    n_test, n_yaws, k = test.audio_negative.shape[:3]
    result.update({
        "n_test_pairs": int(2 * n_test * n_yaws * k),
        "n_test_decisions": {"1_view": int(2 * n_test * n_yaws * k),
                             f"{k}_views": int(2 * n_test * n_yaws)},
        "test_yaws_per_window": int(n_yaws),
        "ground_truth": not missing,
        "n_test_windows": int(n_test),
        "n_test_clips": int(len(np.unique(test.clip_id))),
        "n_train_windows": int(len(train.clip_id)),
        "num_viewpoints": int(k),
        "pair_viewpoints": pairs.viewpoints,
        "synthetic": is_synthetic_dataset(shards_dir),
        "command": command_line(cfg),
        "minutes": round((time.perf_counter() - started) / 60.0, 2),
        "extract_minutes": round(extract_s / 60.0, 2),
        "torch_threads": torch.get_num_threads(),
        "settings": to_dict(cfg),
        "notes": (
            f"AVSA-bin on the binary evaluation's pairs (viewpoints {pairs.viewpoints}, first "
            f"{k} stored, negatives: yaw {pairs.negative_yaw}). avsa_bin_{k}: the {k} views of "
            f"a window decide together (logits averaged), avsa_bin_1: one view; se / se_1: "
            f"clip-clustered standard errors of avsa_bin_{k} / avsa_bin_1, points; chance 50. "
            f"{n_yaws} negative yaws per test window (evals.audio.binary.window_yaws_rad: the "
            "binary evaluation's pairs), its positive scored once per yaw. n_test_pairs: "
            "single-view labelled test pairs. decidable: the same scores on the views whose "
            "crop shows a sounding object (4 views: windows with at least one). supervised: a crop "
            "CNN + log-mel/IV CNN trained on the binary decision (train split, epoch chosen on "
            "held-out training clips); controls: the same network with the video blanked "
            "(audio_only) or the audio blanked (video_only), and the full network with another "
            "test clip's crops (other_clip_video). oracle: logistic regression on ground-truth "
            "objects inside the crop (positions, visible, sounding) and audio summaries "
            "(mean intensity vector, Y/Z/X levels re W) of the rotated audio; "
            "without_sounding: the same without the sounding flags."),
    })
    _write_json(out_path, result)
    print_table(result)
    result["json_path"] = str(out_path)
    return result


def print_table(result: dict[str, Any]) -> None:
    """The ceilings as a small text table on stdout."""
    k = result["num_viewpoints"]
    rows: list[tuple[str, dict[str, Any]]] = []
    if "supervised" in result:
        rows.append(("supervised", result["supervised"]))
        rows += [(f"  control: {name}", scores)
                 for name, scores in result["supervised"].get("controls", {}).items()]
    if "oracle" in result:
        rows += [("oracle (gt in crop)", result["oracle"]),
                 ("  oracle without sounding", result["oracle"]["without_sounding"])]
    print(f"AVSA-bin ceilings of {result['preset']} ({result['n_test_windows']} test windows, "
          f"{result['n_test_clips']} clips; chance 50 %)")
    print(f"{'':30s} {f'{k} views %':>16s} {'1 view %':>16s}")
    for name, s in rows:
        print(f"{name:30s} {s[f'avsa_bin_{k}']:9.1f} +- {s['se']:4.1f} "
              f"{s['avsa_bin_1']:9.1f} +- {s['se_1']:4.1f}")
    print(f"({result['minutes']:.1f} min)")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(cfg: CeilingRun) -> Path:
    return Path(evaluate_ceiling(cfg)["json_path"])


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(CeilingRun, run, argv, name="ceiling", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
