"""Semantic segmentation of gnomonic crops with an FPN head on frozen features.

    python -m evals.video.segmentation shards=data/shards/synthetic ckpt=CKPT \
        manifest=data_manifests/synthetic.jsonl data_root=data/synthetic \
        [features=video|video+audio|video+audio+context] [out=runs/downstream/seg]
    python -m evals.video.segmentation shards=DIR ckpt=CKPT \
        labels_dir=LABELS num_classes=32             # real clips, user label maps

Protocol (Morgado et al. 2020, Sec. 3 and Table 2; reference config
``configs/benchmark/segmentation/yt360-fpn-4crop-head-audio-ctx.yaml``)
--------------------------------------------------------------------------
The pretext model stays frozen. Its video encoder f_v gives features at four scales for each
crop (time-averaged, strides 2, 4, 8 and 16 for both presets); a feature pyramid network
(Lin et al. 2017) with a Panoptic-FPN semantic branch (Kirillov et al. 2019) turns them into
per-pixel class scores. ``features`` adds, at the start of the top-down pathway (broadcast
over the coarsest map and concatenated to it): ``video+audio`` the audio encoder's feature
f_a of the crop's rotated FOA; ``video+audio+context`` also the context-aware translations
g_v2a(v^1..v^K) and g_a2v(a^1..a^K) of the K viewpoints of the sample. Every input channel is
standardised by a (non-affine) batch norm first: frozen features differ in scale by orders of
magnitude between levels and modalities. Only the head trains (Adam, cross-entropy, label 255
ignored). Features are computed once per crop and kept in memory as float16 (no
augmentation; ~0.2 MB per 112 px crop for the tiny preset, ~0.75 MB for the paper preset;
``max_samples`` bounds it).

Data
----
Crops, viewpoints and audio features come from the shards (schema v1, one viewpoint source,
``views random|yolo``); audio is standardised with ``norm_stats.json`` as in training. The
label of a crop is the equirectangular label map at the time of its middle frame
(``video_start_s + (T // 2) / fps``, the keyframe) projected with **the crop's own sampling
grid** (:class:`pipeline.crops.CropSampler` at the stored azimuth, elevation and field of
view, on a frame of the preprocessing decode size) with nearest-neighbour sampling
(``cv2.INTER_NEAREST``), so labels and pixels line up exactly.

- Synthetic clips: the label map is rendered from the clip's ground truth by
  :func:`pipeline.synth.render.render_label_map` (0 background, 1 + class id; 7 classes).
- Real clips: ``<labels-dir>/<clip_id>/<k:06d>.png``, single-channel equirectangular maps
  (any 2:1 size; class ids 0..num_classes-1, 255 = unlabelled) for frame ``k`` at
  ``label_fps`` (16) on the clip's timeline (the shard's ``video_start_s``); the frame
  showing the label time is used.

Metrics on the test split: pixel accuracy and mean IoU (IoU per class from the confusion
matrix accumulated over all test pixels, averaged over the classes present in the labels or
the predictions), next to the majority-class baseline (every pixel labelled with the most
frequent training class). Outputs ``<out>/config.json`` and ``<out>/results.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evals.cli import run_evaluator
from pipeline.crops import CropSampler
from pipeline.ground_truth import class_names, render_label_map
from pipeline.shards import (NORM_STATS_NAME, ShardFormatError, ShardIndex, open_shard,
                             stored_crops, stored_features)

__all__ = [
    "IGNORE_LABEL", "FEATURE_SETS", "LabelSource", "SyntheticGroundTruthLabels",
    "EquirectPngLabels", "LabelMapError", "label_time_s", "project_labels", "iter_shard_samples",
    "video_pyramid", "predict_labels", "train_head", "segmentation_scores",
    "FPNSegmentationHead", "FeatureBank", "extract_features", "confusion_matrix",
    "pixel_accuracy", "per_class_iou", "mean_iou", "majority_baseline",
    "SegmentationEvalConfig", "run_segmentation_eval", "main",
]

log = logging.getLogger("evals.video.segmentation")

IGNORE_LABEL = 255
FEATURE_SETS = ("video", "video+audio", "video+audio+context")


class LabelMapError(FileNotFoundError):
    """A label map (or the ground truth it is rendered from) is missing for a clip."""


# ----------------------------------------------------------------------------- labels

class LabelSource(Protocol):
    n_classes: int

    def label_map(self, clip_id: str, time_s: float, width: int, height: int) -> np.ndarray:
        """Equirectangular ``(height, width)`` uint8 class ids at ``time_s`` (s, clip timeline)."""


class SyntheticGroundTruthLabels:
    """Label maps rendered from the ground truth of synthetic clips (``Clip.gt_path``)."""

    def __init__(self, manifest_path: str | Path, data_root: str | Path):
        from pipeline.manifest import read_manifest

        self.data_root = Path(data_root)
        self.clips = {clip.clip_id: clip for clip in read_manifest(manifest_path)}
        self._gt: dict[str, dict] = {}
        first = next((c.clip_id for c in self.clips.values() if c.gt_path is not None), None)
        if first is None:
            raise LabelMapError(f"{manifest_path}: expected clips with gt_path (synthetic ground "
                                f"truth), got none")
        self.class_names = class_names(self._ground_truth(first))
        self.n_classes = 1 + len(self.class_names)

    def _ground_truth(self, clip_id: str) -> dict:
        if clip_id not in self._gt:
            clip = self.clips.get(clip_id)
            if clip is None or clip.gt_path is None:
                raise LabelMapError(f"clip {clip_id}: expected a manifest record with gt_path, "
                                    f"got {'none' if clip is None else 'no gt_path'}")
            path = clip.resolve(self.data_root, "gt_path")
            if not path.is_file():
                raise LabelMapError(f"clip {clip_id}: expected ground truth at {path}, got none")
            self._gt[clip_id] = json.loads(path.read_text(encoding="utf-8"))
        return self._gt[clip_id]

    def label_map(self, clip_id: str, time_s: float, width: int, height: int) -> np.ndarray:
        segment_start_s = self.clips[clip_id].segment_start_s if clip_id in self.clips else 0.0
        return render_label_map(self._ground_truth(clip_id), segment_start_s + time_s, width,
                                height)


class EquirectPngLabels:
    """User label maps: ``<labels_dir>/<clip_id>/<k:06d>.png`` for frame k at ``fps``."""

    def __init__(self, labels_dir: str | Path, n_classes: int, fps: float = 16.0):
        self.labels_dir, self.n_classes, self.fps = Path(labels_dir), n_classes, fps

    def label_map(self, clip_id: str, time_s: float, width: int, height: int) -> np.ndarray:
        frame = int(np.floor(time_s * self.fps + 1e-6))
        path = self.labels_dir / clip_id / f"{frame:06d}.png"
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if labels is None:
            raise LabelMapError(f"clip {clip_id}: expected the label map {path} (frame {frame} at "
                                f"{self.fps:g} fps, t = {time_s:.3f} s), got no readable PNG")
        if labels.ndim != 2 or labels.shape[1] != 2 * labels.shape[0]:
            raise LabelMapError(f"{path}: expected a single-channel 2:1 equirectangular map, got "
                                f"shape {labels.shape}")
        if labels.shape != (height, width):
            labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
        return labels.astype(np.uint8)


def label_time_s(video_start_s: float, n_frames: int, fps: float) -> float:
    """Time (s) of the middle frame ``T // 2`` of a window, the frame a crop's label shows."""
    return float(video_start_s) + (n_frames // 2) / float(fps)


def project_labels(label_map: np.ndarray, azimuth_rad, elevation_rad, fov_rad,
                   crop_size: int) -> np.ndarray:
    """Gnomonic crops of an equirectangular label map ``(H, W)`` uint8 at K viewpoints
    (radians, as the RGB crops) -> ``(K, S, S)`` uint8, nearest-neighbour: the grid of
    :class:`pipeline.crops.CropSampler` for a frame of the label map's size."""
    height, width = label_map.shape
    sampler = CropSampler(azimuth_rad, elevation_rad, fov_rad, crop_size, width, height,
                          interpolation=cv2.INTER_NEAREST)
    return sampler.crop(label_map[None, :, :, None])[:, 0, :, :, 0]


# ----------------------------------------------------------------------------- shard reading

def _shard_geometry(h5, path: Path) -> tuple[int, int, float, int]:
    """(decode width, decode height, fps, frames per window) the shard's crops were made with."""
    try:
        config = json.loads(h5.attrs["config"])
        decode = config["decode"]
        return (int(decode["width"]), int(decode["height"]), float(decode["fps"]),
                int(config["windows"]["video_frames"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ShardFormatError(f"{path}: expected the preprocessing config (decode size, fps, "
                               f"video_frames) in the shard attributes, got {exc!r}") from exc


def iter_shard_samples(shards_dir: str | Path, split: str, labels: LabelSource,
                       view_set: str = "random", feature_keys: Sequence[str] = (),
                       norm: dict | None = None, max_samples: int = 0,
                       chunk: int = 8) -> Iterator[dict]:
    """Chunks of samples of ``split`` with their projected labels.

    Yields dicts: ``crops`` (n, K, T, S, S, 3) uint8, ``labels`` (n, K, S, S) uint8,
    ``azimuth_rad`` / ``elevation_rad`` (n, K) float32, ``audio`` (n, K, C, M, F) float32
    (standardised with ``norm`` when given; absent without ``feature_keys``), ``clip_id`` list.
    """
    index = ShardIndex.load(shards_dir)
    paths = index.paths(split)
    if not paths:
        raise ShardFormatError(f"{shards_dir}: expected shards of split '{split}' in "
                               f"shards.jsonl, got none")
    prefix = f"views/{view_set}"
    seen = 0
    for path in paths:
        with open_shard(path) as h5:
            width, height, fps, n_frames = _shard_geometry(h5, path)
            n = int(h5.attrs["n_samples"])
            for start in range(0, n, chunk):
                stop = min(n, start + chunk, start + max_samples - seen if max_samples else n)
                if stop <= start:
                    return
                rows = slice(start, stop)
                azimuth = h5[f"{prefix}/azimuth_rad"][rows].astype(np.float32)
                elevation = h5[f"{prefix}/elevation_rad"][rows].astype(np.float32)
                fov = h5[f"{prefix}/fov_rad"][rows].astype(np.float32)
                crops = stored_crops(h5, f"{prefix}/crops")[rows]
                clip_ids = list(h5["clip_id"].asstr()[rows])
                starts = h5["video_start_s"][rows]
                crop_size = crops.shape[-2]
                crop_labels = np.stack([
                    project_labels(labels.label_map(clip_id, label_time_s(t0, n_frames, fps),
                                                    width, height), az, el, fv, crop_size)
                    for clip_id, t0, az, el, fv in zip(clip_ids, starts, azimuth, elevation, fov)])
                out = {"crops": crops, "labels": crop_labels, "azimuth_rad": azimuth,
                       "elevation_rad": elevation, "clip_id": clip_ids}
                if feature_keys:
                    out["audio"] = _audio_features(h5, prefix, rows, feature_keys, norm or {})
                seen += stop - start
                yield out


def _audio_features(h5, prefix: str, rows: slice, feature_keys: Sequence[str],
                    norm: dict) -> np.ndarray:
    """(n, K, C, M, F) float32: the stored features of ``feature_keys`` stacked on channels,
    standardised per channel and mel band as in trainer.data."""
    channels = []
    for key in feature_keys:
        value = stored_features(h5, f"{prefix}/{key}")[rows]                # (n, K, C, M, F)
        if key in norm:
            stats = norm[key]
            value = (value - stats.mean[None, None, :, :, None]) / stats.std[None, None, :, :, None]
        channels.append(value)
    return np.concatenate(channels, axis=2)


# ----------------------------------------------------------------------------- frozen features

def video_pyramid(encoder: nn.Module, video: torch.Tensor) -> list[torch.Tensor]:
    """Multi-scale features of the video encoder, time-averaged, finest first.

    ``video`` (N, 3, T, S, S) in [0, 1] -> four ``(N, C_l, S_l, S_l)`` maps (strides 2, 4, 8, 16):
    for the paper preset the outputs of R(2+1)D-18's ``layer1..layer4`` (stride 1, 2, 4, 8 after
    its stride-2 stem), for the tiny preset
    those of its four (2+1)D blocks. Uses ``encoder.forward_features`` when the encoder has one;
    otherwise walks the known structure of :class:`trainer.models.VideoEncoder` (including its
    optional input resampling, which then sets the map sizes: the head upsamples to the labels).
    """
    if hasattr(encoder, "forward_features"):
        levels = encoder.forward_features(video)
    else:
        x = encoder.resample(video) if hasattr(encoder, "resample") else video  # compute knob
        x = (x - encoder.mean) / encoder.std
        net = encoder.net
        levels = []
        if hasattr(net, "layer1"):                      # paper: the authors' R(2+1)D-18
            x = net.stem(x)
            for name in ("layer1", "layer2", "layer3", "layer4"):
                x = getattr(net, name)(x)
                levels.append(x)
        else:                                           # tiny: Sequential of (2+1)D blocks
            for block in net:
                if isinstance(block, (nn.AdaptiveAvgPool3d, nn.Flatten)):
                    break
                x = block(x)
                levels.append(x)
    return [level.mean(dim=2) for level in levels]


@dataclass
class FeatureBank:
    """Frozen features of N crops: ``levels`` [(N, C_l, S_l, S_l) float16], ``extra``
    (N, E) float32 or None, ``labels`` (N, S, S) uint8."""

    levels: list[torch.Tensor]
    extra: torch.Tensor | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor, device: torch.device):
        levels = [level[index].to(device).float() for level in self.levels]
        extra = None if self.extra is None else self.extra[index].to(device)
        return levels, extra, self.labels[index].to(device).long()


@torch.no_grad()
def extract_features(model: nn.Module, chunks: Iterator[dict], feature_set: str,
                     device: torch.device, crops_per_forward: int = 32) -> FeatureBank:
    """Run the frozen model over sample chunks (from :func:`iter_shard_samples`).

    ``model`` is a :class:`trainer.models.AVSpatialModel`. Per crop: the video pyramid;
    with ``video+audio`` also f_a of its audio; with ``video+audio+context`` also
    g_v2a(v^1..v^K)_k and g_a2v(a^1..a^K)_k over the K viewpoints of its sample.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set: expected one of {FEATURE_SETS}, got {feature_set!r}")
    model.eval()
    levels: list[list[torch.Tensor]] = []
    extras, labels = [], []
    for chunk in chunks:
        n, k = chunk["labels"].shape[:2]
        crops = torch.from_numpy(chunk["crops"]).flatten(0, 1)                  # (nK, T, S, S, 3)
        video = crops.permute(0, 4, 1, 2, 3).float().div_(255.0)               # (nK, 3, T, S, S)
        pyramid_parts, pooled_parts = [], []
        for part in video.split(crops_per_forward):
            pyramid = video_pyramid(model.video_encoder, part.to(device))
            pyramid_parts.append([p.half().cpu() for p in pyramid])
            if feature_set == "video+audio+context":
                pooled_parts.append(model.video_encoder(part.to(device)).float().cpu())
        levels.append([torch.cat(parts) for parts in zip(*pyramid_parts)])
        labels.append(torch.from_numpy(chunk["labels"]).flatten(0, 1))
        if feature_set == "video":
            continue
        audio = torch.from_numpy(chunk["audio"]).flatten(0, 1).to(device)      # (nK, C, M, F)
        audio_features = torch.cat([model.audio_encoder(a) for a in audio.split(crops_per_forward)])
        extra = [audio_features.float().cpu()]
        if feature_set == "video+audio+context":
            video_features = torch.cat(pooled_parts).view(n, k, -1).to(device)
            az = torch.from_numpy(chunk["azimuth_rad"]).to(device)
            el = torch.from_numpy(chunk["elevation_rad"]).to(device)
            a = audio_features.view(n, k, -1)
            extra.append(model.video_to_audio(video_features, az, el).flatten(0, 1).float().cpu())
            extra.append(model.audio_to_video(a, az, el).flatten(0, 1).float().cpu())
        extras.append(torch.cat(extra, dim=1))
    if not labels:
        raise ShardFormatError("expected samples to extract features from, got none")
    return FeatureBank([torch.cat(parts) for parts in zip(*levels)],
                       torch.cat(extras) if extras else None, torch.cat(labels))


# ----------------------------------------------------------------------------- FPN head

class FPNSegmentationHead(nn.Module):
    """Input standardisation, FPN top-down pathway and Panoptic-FPN semantic branch.

    Args:
        in_channels: C_l of the pyramid levels, finest first.
        n_classes: output classes.
        extra_dim: E channels of a per-crop vector concatenated (broadcast) to the coarsest
            level before its lateral convolution; 0 = none.
        fpn_dim, segm_dim: widths of the pyramid and of the semantic branch (reference 256, 128).

    ``forward(levels, extra)``: levels [(N, C_l, S_l, S_l)], extra (N, E) or None ->
    logits (N, n_classes, S_0, S_0) at the finest level's resolution.
    """

    def __init__(self, in_channels: Sequence[int], n_classes: int, extra_dim: int = 0,
                 fpn_dim: int = 256, segm_dim: int = 128):
        super().__init__()
        channels = list(in_channels)
        # Frozen features differ in scale by orders of magnitude between levels and modalities
        # (a random-init encoder's deepest level is ~1e-4, LayerNorm'd context ~1): standardise
        # every input channel with batch statistics (running averages at test time).
        self.input_norms = nn.ModuleList(nn.BatchNorm2d(c, affine=False) for c in channels)
        self.extra_norm = nn.BatchNorm1d(extra_dim, affine=False) if extra_dim else None
        channels[-1] += extra_dim
        self.extra_dim = extra_dim
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_dim, 1) for c in channels)
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_dim, fpn_dim, 3, padding=1) for _ in channels)
        groups = next(g for g in range(min(32, segm_dim // 4), 0, -1) if segm_dim % g == 0) \
            if segm_dim >= 4 else 1
        self.semantic = nn.ModuleList(
            nn.Sequential(nn.Conv2d(fpn_dim, segm_dim, 3, padding=1, bias=False),
                          nn.GroupNorm(groups, segm_dim), nn.ReLU(inplace=True))
            for _ in channels)
        self.classifier = nn.Conv2d(segm_dim, n_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor], extra: torch.Tensor | None = None):
        levels = [norm(level) for norm, level in zip(self.input_norms, levels)]
        if self.extra_dim:
            top = levels[-1]
            tiled = self.extra_norm(extra)[:, :, None, None].expand(-1, -1, *top.shape[-2:])
            levels[-1] = torch.cat([top, tiled], dim=1)
        pyramid = [None] * len(levels)
        previous = None
        for i in reversed(range(len(levels))):
            lateral = self.lateral[i](levels[i])
            if previous is not None:
                lateral = lateral + F.interpolate(previous, size=lateral.shape[-2:], mode="nearest")
            previous = lateral
            pyramid[i] = self.smooth[i](lateral)
        size = pyramid[0].shape[-2:]
        merged = sum(F.interpolate(branch(p), size=size, mode="bilinear", align_corners=False)
                     for branch, p in zip(self.semantic, pyramid))
        return self.classifier(merged)


# ----------------------------------------------------------------------------- metrics (pure)

def confusion_matrix(predicted: np.ndarray, target: np.ndarray, n_classes: int,
                     ignore_index: int = IGNORE_LABEL) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = target class, columns = predicted class; pixels whose
    target is ``ignore_index`` are skipped. Inputs are integer label arrays of one shape."""
    predicted = np.asarray(predicted).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    keep = target != ignore_index
    predicted, target = predicted[keep], target[keep]
    if np.any((target < 0) | (target >= n_classes)) or np.any((predicted < 0) |
                                                               (predicted >= n_classes)):
        raise ValueError(f"expected labels in 0..{n_classes - 1} (or {ignore_index}), got "
                         f"{int(min(target.min(initial=0), predicted.min(initial=0)))}.."
                         f"{int(max(target.max(initial=0), predicted.max(initial=0)))}")
    return np.bincount(target * n_classes + predicted,
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Correct pixels / labelled pixels."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """``(C,)`` IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both labels
    and predictions."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of :func:`per_class_iou` over the classes present in labels or predictions."""
    iou = per_class_iou(confusion)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray,
                      n_classes: int) -> tuple[int, np.ndarray]:
    """The most frequent labelled training class and the confusion matrix of predicting it
    for every test pixel."""
    labels = np.asarray(train_labels).reshape(-1)
    counts = np.bincount(labels[labels != IGNORE_LABEL].astype(np.int64), minlength=n_classes)
    majority = int(np.argmax(counts))
    test_labels = np.asarray(test_labels)
    return majority, confusion_matrix(np.full_like(test_labels, majority), test_labels, n_classes)


def segmentation_scores(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """Pixel accuracy, mIoU and IoU per class (by name when given) of a confusion matrix."""
    iou = per_class_iou(confusion)
    names = class_names or [str(c) for c in range(len(iou))]
    return {"pixel_accuracy": pixel_accuracy(confusion), "mean_iou": mean_iou(confusion),
            "iou_per_class": {name: (None if np.isnan(v) else float(v))
                              for name, v in zip(names, iou)}}


# ----------------------------------------------------------------------------- training

def train_head(head: FPNSegmentationHead, bank: FeatureBank, *, epochs: int, batch_size: int,
               lr: float, weight_decay: float, milestones: Sequence[int], gamma: float,
               device: torch.device, seed: int = 0) -> list[dict]:
    """Train the head on a feature bank with cross-entropy at the crop resolution; per-epoch
    loss, lr and crops/s."""
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        head.train()
        started, loss_sum = time.perf_counter(), 0.0
        order = torch.randperm(len(bank), generator=generator)
        for index in order.split(batch_size):
            if len(index) < 2:          # batch norm of the inputs needs two crops
                continue
            levels, extra, target = bank.batch(index, device)
            logits = F.interpolate(head(levels, extra), size=target.shape[-2:], mode="bilinear",
                                   align_corners=False)
            loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                        "train_loss": loss_sum / len(bank),
                        "crops_per_s": len(bank) / max(seconds, 1e-9), "seconds": seconds})
        scheduler.step()
        log.info("epoch %d/%d  loss %.4f  %.0f crops/s", epoch + 1, epochs,
                 history[-1]["train_loss"], history[-1]["crops_per_s"])
    return history


@torch.no_grad()
def predict_labels(head: FPNSegmentationHead, bank: FeatureBank, device: torch.device,
                   batch_size: int = 64) -> np.ndarray:
    """Predicted class per pixel, ``(N, S, S)`` uint8 (argmax of the upsampled logits)."""
    head.eval()
    predictions = []
    for index in torch.arange(len(bank)).split(batch_size):
        levels, extra, target = bank.batch(index, device)
        logits = F.interpolate(head(levels, extra), size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
        predictions.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(predictions)


# ----------------------------------------------------------------------------- driver

@dataclass(frozen=True)
class SegmentationEvalConfig:
    """Settings of one run (``configs/evals/segmentation.yaml``; saved as ``config.json``)."""

    shards: str = ""                   # shard folder with shards.jsonl
    ckpt: str = ""                     # trainer checkpoint (frozen)
    out: str = "runs/downstream/segmentation"
    manifest: str = ""                 # synthetic labels: manifest with gt_path ...
    data_root: str = ""                # ... relative to this root
    labels_dir: str = ""               # real clips: PNG label maps (then num_classes)
    num_classes: int = 0
    label_fps: float = 16.0
    features: str = "video"
    views: str = "random"
    train_split: str = "train"
    test_split: str = "test"
    epochs: int = 10
    batch_size: int = 20
    lr: float = 1e-4
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = (5, 8)
    lr_gamma: float = 0.1
    fpn_dim: int = 256
    segm_dim: int = 128
    max_samples: int = 0               # per split, 0 = all
    norm_stats: str = ""               # default: <shards>/norm_stats.json when present
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        if not self.shards or not self.ckpt:
            raise ValueError(f"shards and ckpt: expected a shard folder and a checkpoint, got "
                             f"shards={self.shards!r}, ckpt={self.ckpt!r}")
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features: expected one of {FEATURE_SETS}, got {self.features!r}")
        if self.views not in ("random", "yolo"):
            raise ValueError(f"views: expected 'random' or 'yolo', got {self.views!r}")
        if bool(self.labels_dir) == bool(self.manifest):
            raise ValueError("labels: expected either manifest= (synthetic ground truth) or "
                             "labels_dir= (PNG label maps), got "
                             f"{'both' if self.labels_dir else 'neither'}")
        if self.labels_dir and self.num_classes < 2:
            raise ValueError(f"labels_dir needs num_classes >= 2, got {self.num_classes}")


def _label_source(cfg: SegmentationEvalConfig) -> LabelSource:
    if cfg.manifest:
        return SyntheticGroundTruthLabels(cfg.manifest, cfg.data_root or Path(cfg.manifest).parent)
    return EquirectPngLabels(cfg.labels_dir, cfg.num_classes, cfg.label_fps)


def _class_names(labels: LabelSource) -> list[str]:
    if isinstance(labels, SyntheticGroundTruthLabels):
        return ["background", *labels.class_names]
    return [str(c) for c in range(labels.n_classes)]


def run_segmentation_eval(cfg: SegmentationEvalConfig) -> dict:
    """Extract frozen features, train the FPN head, score it and the majority baseline."""
    cfg.validate()
    from pipeline.shards import read_norm_stats
    from trainer.checkpoint import load_trained_model
    from trainer.config import AUDIO_FEATURES
    from trainer.distributed import resolve_device

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model, train_cfg = load_trained_model(cfg.ckpt, device)
    labels = _label_source(cfg)
    feature_keys = AUDIO_FEATURES[train_cfg.data.audio_input] if cfg.features != "video" else ()
    norm_path = Path(cfg.norm_stats) if cfg.norm_stats else Path(cfg.shards) / NORM_STATS_NAME
    norm = (read_norm_stats(norm_path) if feature_keys and train_cfg.data.normalize_audio
            and norm_path.is_file() else {})
    if feature_keys and train_cfg.data.normalize_audio and not norm:
        log.warning("no %s: audio features enter the frozen encoder unnormalised", norm_path)

    banks, timings = {}, {}
    for split in (cfg.train_split, cfg.test_split):
        started = time.perf_counter()
        chunks = iter_shard_samples(cfg.shards, split, labels, cfg.views, feature_keys, norm,
                                    cfg.max_samples)
        banks[split] = extract_features(model, chunks, cfg.features, device)
        timings[f"extract_{split}_seconds"] = time.perf_counter() - started
        log.info("%s: %d crops, features in %.1f s", split, len(banks[split]),
                 timings[f"extract_{split}_seconds"])

    train_bank, test_bank = banks[cfg.train_split], banks[cfg.test_split]
    head = FPNSegmentationHead([level.shape[1] for level in train_bank.levels], labels.n_classes,
                               0 if train_bank.extra is None else train_bank.extra.shape[1],
                               cfg.fpn_dim, cfg.segm_dim).to(device)
    history = train_head(head, train_bank, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, weight_decay=cfg.weight_decay, milestones=cfg.lr_milestones,
                         gamma=cfg.lr_gamma, device=device, seed=cfg.seed)
    predicted = predict_labels(head, test_bank, device)
    target = test_bank.labels.numpy()
    names = _class_names(labels)
    majority, baseline_confusion = majority_baseline(train_bank.labels.numpy(), target,
                                                     labels.n_classes)
    results = {
        "features": cfg.features, "views": cfg.views, "ckpt": cfg.ckpt,
        "n_classes": labels.n_classes, "n_train_crops": len(train_bank),
        "n_test_crops": len(test_bank), "crop_size": int(target.shape[-1]),
        "head": segmentation_scores(confusion_matrix(predicted, target, labels.n_classes), names),
        "majority_baseline": {"class": names[majority],
                              **segmentation_scores(baseline_confusion, names)},
        "history": history, **timings,
        "train_seconds": sum(row["seconds"] for row in history),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log.info("segmentation (%s): pixel acc %.2f %%, mIoU %.2f %%; majority '%s': pixel acc "
             "%.2f %%, mIoU %.2f %% -> %s", cfg.features,
             100 * results["head"]["pixel_accuracy"], 100 * results["head"]["mean_iou"],
             names[majority], 100 * results["majority_baseline"]["pixel_accuracy"],
             100 * results["majority_baseline"]["mean_iou"], out / "results.json")
    return results


def run(cfg: SegmentationEvalConfig) -> Path:
    run_segmentation_eval(cfg)
    return Path(cfg.out) / "results.json"


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(SegmentationEvalConfig, run, argv, name="segmentation",
                         description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
