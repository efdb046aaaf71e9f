"""Action recognition on UCF-101 / HMDB-51 with the trained video encoder.

    python -m evals.video.action dataset=ucf101 root=DIR split=1 ckpt=CKPT \
        protocol=finetune [epochs=20] [out=runs/downstream/ucf101-split1-finetune]
    python -m evals.video.action dataset=hmdb51 root=DIR split=1 ckpt=CKPT protocol=linear
    python -m evals.video.action ... ckpt=scratch preset=tiny     # no pretraining

Protocols
---------
- ``finetune`` (Morgado et al. 2020, Table 3; defaults from the reference code's
  ``configs/benchmark/ucf/ucf-8at16-fold1.yaml``): the whole video encoder plus dropout 0.5 and
  a linear layer are trained with Adam, lr 1e-4, no weight decay, the learning rate multiplied
  by 0.3 at epochs 8, 12 and 16 of 20, batches of 28 clips, 5 random clips per training video
  and epoch.
- ``linear`` (Wang et al. 2022, "without fine tuning"): the encoder is frozen (eval mode, its
  batch-norm statistics untouched) and only a linear classifier on its D-dim pooled features
  is trained (Adam, lr 1e-3, same schedule, no dropout).

Clips are 8 frames at 16 fps, 112 x 112 (:mod:`evals.video.action_data`).
Metrics on the test list of the split, 25 uniformly spaced centre-cropped clips per video:
``clip@1`` = top-1 accuracy of every clip on its own (averaged over all clips of all test
videos); ``video@1`` = top-1 accuracy of the mean of the 25 clips' softmax probabilities.

Outputs in ``out``: ``config.json`` (the resolved settings, written first) and
``results.json`` (metrics, chance level, per-epoch training loss / accuracy / lr / clips per
second, timings). Decoded frames go to ``cache_dir`` (see action_data: keyed by path, mtime
and decode settings, shared between runs and protocols).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from pipeline.ground_truth import is_synthetic_dataset
from evals.cli import run_evaluator
from evals.video.action_data import (CLIP_FRAMES, CROP_SIZE, DATASETS, TEST_CLIPS,
                                     DecodeSpec, FrameCache,
                                     EvalVideoDataset, TrainClipDataset,
                                     build_frame_cache, chance_accuracy, load_action_split)
from trainer.distributed import resolve_device
from trainer.models import VideoEncoder

__all__ = ["ActionEvalConfig", "clip_top1", "video_top1", "video_predictions",
           "ActionClassifier", "load_video_encoder", "train_epoch", "predict_test_clips",
           "run_action_eval", "main"]

log = logging.getLogger("evals.video.action")

PROTOCOLS = ("linear", "finetune")
SCRATCH = "scratch"
#: Per-protocol defaults (a value given on the command line wins).
PROTOCOL_DEFAULTS = {
    "finetune": {"lr": 1e-4, "dropout": 0.5},
    "linear": {"lr": 1e-3, "dropout": 0.0},
}


@dataclass(frozen=True)
class ActionEvalConfig:
    """Settings of one run (``configs/evals/action.yaml``; resolved ones saved as ``config.json``).

    ``lr`` and ``dropout`` left empty take the protocol's default (:data:`PROTOCOL_DEFAULTS`);
    an empty ``out`` is ``runs/downstream/<dataset>-split<N>-<protocol>``.
    """

    dataset: str = "ucf101"                    # ucf101 | hmdb51
    root: str = ""                             # data set folder (layout: action_data.py)
    split: int = 1                             # 1, 2 or 3
    ckpt: str = ""                             # path, or "scratch" (random init of ``preset``)
    protocol: str = "finetune"                 # finetune | linear
    out: str = ""
    cache_dir: str = "cache/action_frames"
    epochs: int = 20
    batch_size: int = 28                       # training clips per step
    lr: float | None = None                    # default: 1e-4 finetune, 1e-3 linear
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = (8, 12, 16)
    lr_gamma: float = 0.3
    dropout: float | None = None               # default: 0.5 finetune, 0 linear
    clips_per_video: int = 5                   # random training clips per video and epoch
    test_clips: int = TEST_CLIPS
    eval_batch_clips: int = 100                # clips per forward pass at test time
    clip_frames: int = CLIP_FRAMES
    crop_size: int = CROP_SIZE
    short_side: int = 128                      # decode size of the cache (crop from it)
    min_crop_scale: float = 0.5
    workers: int = 2                           # decode processes and DataLoader workers
    device: str = "auto"
    threads: int = 0                           # torch CPU threads, 0 = torch's default
    seed: int = 0
    preset: str = "tiny"                       # scratch only
    feature_dim: int = 512                     # scratch only
    max_train_videos: int = 0                  # 0 = all (smoke runs)
    max_test_videos: int = 0
    videos_dir: str = ""                       # override the layout search
    splits_dir: str = ""

    def validate(self) -> None:
        if not self.root or not self.ckpt:
            raise ValueError(f"root and ckpt: expected a data set folder and a checkpoint (or "
                             f"'scratch'), got root={self.root!r}, ckpt={self.ckpt!r}")
        if self.split not in (1, 2, 3):
            raise ValueError(f"split: expected 1, 2 or 3, got {self.split}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.test_clips < 1:
            raise ValueError(f"expected epochs >= 0, batch_size >= 1, test_clips >= 1, got "
                             f"{self.epochs}, {self.batch_size}, {self.test_clips}")

    def resolved(self) -> "ActionEvalConfig":
        """A copy with the protocol defaults and the default output folder filled in."""
        defaults = PROTOCOL_DEFAULTS[self.protocol]
        return replace(
            self, lr=defaults["lr"] if self.lr is None else self.lr,
            dropout=defaults["dropout"] if self.dropout is None else self.dropout,
            out=self.out or f"runs/downstream/{self.dataset}-split{self.split}-{self.protocol}")


# ----------------------------------------------------------------------------- metrics (pure)

def clip_top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of clips whose highest logit is their label. logits (N, C), labels (N,)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float64."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def video_predictions(logits: np.ndarray, labels: np.ndarray,
                      video_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per video (sorted by id): predicted class = argmax of the mean softmax of its clips,
    and its label. logits (N, C) of N clips; labels (N,), equal for the clips of one video;
    video_ids (N,)."""
    logits, labels, video_ids = np.asarray(logits), np.asarray(labels), np.asarray(video_ids)
    videos, inverse = np.unique(video_ids, return_inverse=True)
    mean_probabilities = np.zeros((len(videos), logits.shape[1]))
    np.add.at(mean_probabilities, inverse, softmax(logits) if len(logits) else logits)
    video_labels = np.full(len(videos), -1)
    video_labels[inverse] = labels
    if np.any(video_labels[inverse] != labels):
        raise ValueError("clips of one video carry different labels")
    return np.argmax(mean_probabilities, axis=1), video_labels


def video_top1(logits: np.ndarray, labels: np.ndarray, video_ids: np.ndarray) -> float:
    """Top-1 accuracy of videos, each predicted by the mean softmax of its clips (see
    :func:`video_predictions`)."""
    predicted, video_labels = video_predictions(logits, labels, video_ids)
    return float(np.mean(predicted == video_labels)) if len(video_labels) else float("nan")


# ----------------------------------------------------------------------------- model

class ActionClassifier(nn.Module):
    """Video encoder -> (dropout) -> linear layer. (N, 3, T, S, S) in [0, 1] -> (N, classes).

    With ``freeze_encoder`` the encoder's parameters are not trained, it stays in eval mode
    whatever ``train()`` says (batch-norm statistics untouched) and runs without autograd.
    """

    def __init__(self, encoder: VideoEncoder, feature_dim: int, n_classes: int,
                 dropout: float, freeze_encoder: bool):
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(feature_dim, n_classes)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "ActionClassifier":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            features = self.encoder(video)
        return self.classifier(self.dropout(features))


def load_video_encoder(ckpt: str, preset: str = "tiny",
                       feature_dim: int = 512) -> tuple[VideoEncoder, int, dict]:
    """The video encoder f_v of a trained checkpoint (or a random ``preset`` one for
    ``ckpt="scratch"``), its output size D and a description for the results."""
    if ckpt == SCRATCH:
        encoder = VideoEncoder(feature_dim, preset)
        return encoder, feature_dim, {"ckpt": SCRATCH, "preset": preset, "feature_dim": feature_dim}
    from trainer.checkpoint import load_trained_model

    model, train_cfg = load_trained_model(ckpt, "cpu")
    info = {"ckpt": str(ckpt), "experiment": train_cfg.experiment, "preset": train_cfg.model.preset,
            "feature_dim": train_cfg.model.feature_dim,
            "pretext": train_cfg.curriculum.pretext, "audio_input": train_cfg.data.audio_input}
    return model.video_encoder, train_cfg.model.feature_dim, info


# ----------------------------------------------------------------------------- loops

def train_epoch(model: ActionClassifier, loader: DataLoader, optimizer: torch.optim.Optimizer,
                device: torch.device) -> dict[str, float]:
    """One pass over the training clips: mean loss, top-1 accuracy, clips/s."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        logits = model(video)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    seconds = time.perf_counter() - started
    return {"train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
            "clips_per_s": seen / max(seconds, 1e-9), "seconds": seconds}


@torch.no_grad()
def predict_test_clips(model: ActionClassifier, loader: DataLoader, device: torch.device,
                       clips_per_forward: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (N, C), labels (N,) and video indices (N,) of every test clip."""
    model.eval()
    all_logits, all_labels, all_videos = [], [], []
    for batch in loader:
        video = batch["video"]                                   # (B, n_clips, 3, T, S, S)
        n_clips = video.shape[1]
        flat = video.flatten(0, 1)
        logits = torch.cat([model(chunk.to(device)).float().cpu()
                            for chunk in flat.split(clips_per_forward)])
        all_logits.append(logits.numpy())
        all_labels.append(batch["label"].repeat_interleave(n_clips).numpy())
        all_videos.append(batch["video_index"].repeat_interleave(n_clips).numpy())
    if not all_logits:
        return np.zeros((0, model.classifier.out_features)), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(all_logits), np.concatenate(all_labels), np.concatenate(all_videos)


# ----------------------------------------------------------------------------- driver

def _confusion(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> list[list[int]]:
    """Video-level confusion counts, rows = label, columns = prediction."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts.tolist()


def _limit(videos, n: int):
    return videos if n <= 0 else videos[:n]


def run_action_eval(cfg: ActionEvalConfig) -> dict:
    """Train and test one protocol on one split; writes config.json and results.json."""
    cfg.validate()
    cfg = cfg.resolved()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)

    split = load_action_split(cfg.dataset, cfg.root, cfg.split,
                              videos_dir=cfg.videos_dir or None, splits_dir=cfg.splits_dir or None)
    train_videos = _limit(split.train, cfg.max_train_videos)
    test_videos = _limit(split.test, cfg.max_test_videos)
    log.info("%s split %d: %d classes, %d training and %d test videos", cfg.dataset, cfg.split,
             split.n_classes, len(train_videos), len(test_videos))
    cache = FrameCache(cfg.cache_dir, DecodeSpec(short_side=cfg.short_side))
    started = time.perf_counter()
    build_frame_cache(list(train_videos) + list(test_videos), cache, workers=cfg.workers)
    decode_seconds = time.perf_counter() - started

    encoder, feature_dim, encoder_info = load_video_encoder(cfg.ckpt, cfg.preset, cfg.feature_dim)
    model = ActionClassifier(encoder, feature_dim, split.n_classes, cfg.dropout,
                             freeze_encoder=cfg.protocol == "linear").to(device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr,
                                 weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.lr_milestones),
                                                     cfg.lr_gamma)
    train_set = TrainClipDataset(train_videos, cache, clip_frames=cfg.clip_frames,
                                 crop_size=cfg.crop_size, clips_per_video=cfg.clips_per_video,
                                 min_crop_scale=cfg.min_crop_scale, seed=cfg.seed)
    # Workers are re-created every epoch (not persistent) so that they see set_epoch().
    loader_kwargs = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=False,
                              generator=torch.Generator().manual_seed(cfg.seed), **loader_kwargs)

    history = []
    for epoch in range(cfg.epochs):
        train_set.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, "lr": lr, **train_epoch(model, train_loader, optimizer, device)}
        scheduler.step()
        history.append(row)
        log.info("epoch %d/%d  lr %.2e  loss %.4f  top1 %.3f  %.1f clips/s", epoch + 1, cfg.epochs,
                 lr, row["train_loss"], row["train_top1"], row["clips_per_s"])

    test_set = EvalVideoDataset(test_videos, cache, clip_frames=cfg.clip_frames,
                                crop_size=cfg.crop_size, n_clips=cfg.test_clips)
    videos_per_batch = max(1, cfg.eval_batch_clips // cfg.test_clips)
    test_loader = DataLoader(test_set, batch_size=videos_per_batch, shuffle=False, **loader_kwargs)
    started = time.perf_counter()
    logits, labels, video_ids = predict_test_clips(model, test_loader, device, cfg.eval_batch_clips)
    eval_seconds = time.perf_counter() - started
    results = {
        "dataset": cfg.dataset, "split": cfg.split, "protocol": cfg.protocol,
        "synthetic": is_synthetic_dataset(cfg.root),
        "encoder": encoder_info, "n_classes": split.n_classes,
        "chance_top1": chance_accuracy(split.n_classes),
        "n_train_videos": len(train_videos), "n_test_videos": len(test_videos),
        "test_clips_per_video": cfg.test_clips,
        "clip_top1": clip_top1(logits, labels),
        "video_top1": video_top1(logits, labels, video_ids),
        "video_confusion": _confusion(*video_predictions(logits, labels, video_ids),
                                      split.n_classes),
        "class_names": list(split.class_names),
        "history": history,
        "decode_seconds": decode_seconds,
        "train_seconds": sum(row["seconds"] for row in history),
        "eval_seconds": eval_seconds,
        "eval_clips_per_s": len(labels) / max(eval_seconds, 1e-9),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log.info("%s split %d %s: clip@1 %.2f %%, video@1 %.2f %% (chance %.2f %%) -> %s",
             cfg.dataset, cfg.split, cfg.protocol, 100 * results["clip_top1"],
             100 * results["video_top1"], 100 * results["chance_top1"], out / "results.json")
    return results


# ----------------------------------------------------------------------------- CLI

def run(cfg: ActionEvalConfig) -> Path:
    cfg = cfg.resolved()
    run_action_eval(cfg)
    return Path(cfg.out) / "results.json"


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(ActionEvalConfig, run, argv, name="action", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
