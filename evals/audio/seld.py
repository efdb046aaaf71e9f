"""Sound event localisation and detection (SELD) on STARSS23 as a downstream task of a frozen
audio encoder, scored with the DCASE metrics (:mod:`evals.audio.seld_metrics`).

    python -m evals.audio.seld ckpt=runs/demo_avsa/ckpt.pt starss_dir=data/starss23_synth
    make eval-seld CKPT=runs/demo_avsa/ckpt.pt STARSS_DIR=/data/STARSS23

Protocol (the same head, budget and seeds for every arm):

- **Inputs, one sequence of 100 ms frames per recording** (``LABEL_HOP_S``), from the
  recording's own FOA (front = the recording's front, no rotation):
  ``encoder``: the checkpoint's audio encoder, frozen, on 1 s windows of the features it was
  trained on; its map before global pooling, max over the mel axis, resampled linearly to the
  ten label frames of each window. ``random_encoder``: the same network with random weights
  (seeded), the floor any pretraining must beat. ``dcase_features``: the DCASE baseline's input
  features, log-mel of the four channels and the FOA intensity vectors (64 mel bands, 20 ms
  hop, as ``sharathadavanne/seld-dcase2023``), averaged over each 100 ms frame: 7 x 64 = 448
  numbers per frame, no network. ``no_input``: a constant input, so the head can only learn
  the training labels' priors (how often each class sounds, where sources usually are): what
  a score is worth without listening.
- **Head** (trained on ``dev-train-*``, scored on ``dev-test-*``, nothing chosen on test):
  standardisation (train statistics), a linear layer, a 2-layer bidirectional GRU and a
  multi-ACCDOA output of 3 tracks x classes x (x, y, z) with tanh, trained with the ADPIT loss
  (Shimada et al., ICASSP 2022: per frame and class, the mean squared error to the best of the
  six track assignments of its up to three reference events, a single event filling all three
  tracks, two events one duplicated; no event: all tracks zero). Adam, a fixed number of
  epochs of random ``sequence_frames``-long crops; the last epoch is scored.
- **Decoding**: a track is active where its vector is longer than ``activity_threshold``; two
  active tracks of one class closer than ``unify_threshold_deg`` are merged (mean direction).
- **Scores**: location-dependent error rate and F-score within 20°, class-dependent
  localisation error and recall, macro over the classes present in the test references (all 13
  on STARSS23), 1 s segments, and the SELD score; mean and sd over seeds per arm, with the
  paired difference encoder - arm per seed.

Classes and their names come from the folder: STARSS23's 13, or the synthetic stand-in's
(``SYNTHETIC.json``), whose results are labelled SYNTHETIC.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from evals.audio.seld_metrics import Event, SELDMetrics
from evals.cli import EvalIO, run_evaluator
from evals.frozen import (FrozenModel, describe_run, load_frozen, read_ambisonic_segment,
                          resample_foa, run_dir_of)
from pipeline.features import AudioFeatureConfig, foa_features
from pipeline.spatial import direction_vector, vector_to_direction
from pipeline.starss23 import (LABEL_HOP_S, LabelRow, Starss23Recording, class_names_of,
                               read_label_csv, scan_layout)
from trainer.models import build_model

log = logging.getLogger("evals.seld")

ARMS = ("encoder", "random_encoder", "dcase_features", "no_input")
TRACKS = 3
#: Random encoders are drawn with seed offset + protocol seed, so none equals a trained run's
#: initialisation (runs use small seeds).
RANDOM_ENCODER_SEED_OFFSET = 1000
#: The DCASE 2023 baseline's FOA features: 64 mel bands, 20 ms hop (40 ms window), 24 kHz.
DCASE_FEATURES = AudioFeatureConfig(sample_rate=24000, window_s=1.0, n_fft=1024, hop_length=480,
                                    n_mels=64, fmin_hz=0.0, fmax_hz=12000.0, top_db=100.0,
                                    n_frames=50)


@dataclass(frozen=True)
class SeldProtocol:
    """Head, training budget and decoding of the SELD evaluation (frames of 100 ms)."""

    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2)
    hidden: int = 128
    gru_layers: int = 2
    dropout: float = 0.1
    epochs: int = 40
    sequence_frames: int = 50          # 5 s training crops
    batch_size: int = 8
    lr: float = 1e-3
    activity_threshold: float = 0.5
    unify_threshold_deg: float = 15.0
    doa_threshold_deg: float = 20.0
    plot: bool = True                  # azimuth tracks of one test recording (PNG)


@dataclass(frozen=True)
class SeldRun(EvalIO):
    """``configs/evals/seld.yaml``: the STARSS23(-layout) folder, the checkpoint (optional:
    without it only the ``dcase_features`` arm runs) and the protocol."""

    starss_dir: str = ""
    protocol: SeldProtocol = field(default_factory=SeldProtocol)


# ----------------------------------------------------------------------------- labels

def reference_events(rows: Sequence[LabelRow], n_frames: int) -> list[Event]:
    """Label rows as metric events (radians), frames ``< n_frames`` only."""
    return [Event(r.frame, r.class_index, r.source_index, math.radians(r.azimuth_deg),
                  math.radians(r.elevation_deg)) for r in rows if r.frame < n_frames]


def adpit_targets(rows: Sequence[LabelRow], n_frames: int, n_classes: int) -> np.ndarray:
    """ADPIT targets ``(n_frames, 6, TRACKS, n_classes, 3)`` float32: for each frame and class,
    the six candidate assignments of its reference events (sorted by source; at most three kept)
    to the three tracks. One event fills all tracks; two give the six patterns with one of them
    duplicated; three give their six permutations; none leaves zeros."""
    targets = np.zeros((n_frames, 6, TRACKS, n_classes, 3), np.float32)
    events: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for r in rows:
        if r.frame < n_frames:
            events.setdefault((r.frame, r.class_index), []).append(
                (r.source_index, direction_vector(math.radians(r.azimuth_deg),
                                                  math.radians(r.elevation_deg))))
    for (frame, class_index), found in events.items():
        vectors = [v for _, v in sorted(found, key=lambda item: item[0])][:TRACKS]
        for pattern, tracks in enumerate(assignment_patterns(len(vectors))):
            targets[frame, pattern, :, class_index] = [vectors[i] for i in tracks]
    return targets


def assignment_patterns(n_events: int) -> list[tuple[int, int, int]]:
    """The six track assignments (event index per track) of ``n_events`` in 1..3."""
    if n_events == 1:
        return [(0, 0, 0)] * 6
    if n_events == 2:
        return [(0, 1, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 0), (1, 0, 1)]
    if n_events == 3:
        return list(itertools.permutations(range(3)))
    raise ValueError(f"expected 1 to 3 events, got {n_events}")


def adpit_loss(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over frames and classes of the smallest, over the six assignments, mean squared
    error; ``prediction`` ``(..., TRACKS, C, 3)``, ``targets`` ``(..., 6, TRACKS, C, 3)``."""
    errors = ((prediction.unsqueeze(-4) - targets) ** 2).mean(dim=(-1, -3))   # (..., 6, C)
    return errors.min(dim=-2).values.mean()


def decode_tracks(output: np.ndarray, activity_threshold: float = 0.5,
                  unify_threshold_deg: float = 15.0) -> list[Event]:
    """Events of a multi-ACCDOA output ``(T, TRACKS, C, 3)``: active tracks (vector longer than
    the threshold), those of one class closer than ``unify_threshold_deg`` merged."""
    events = []
    lengths = np.linalg.norm(output, axis=-1)                                     # (T, K, C)
    for frame, class_index in zip(*np.nonzero((lengths > activity_threshold).any(axis=1))):
        groups: list[list[np.ndarray]] = []
        for track in np.flatnonzero(lengths[frame, :, class_index] > activity_threshold):
            vector = output[frame, track, class_index] / lengths[frame, track, class_index]
            for group in groups:
                mean = np.mean(group, axis=0)
                cosine = float(np.dot(vector, mean / np.linalg.norm(mean)))
                if math.degrees(math.acos(min(1.0, max(-1.0, cosine)))) < unify_threshold_deg:
                    group.append(vector)
                    break
            else:
                groups.append([vector])
        for track, group in enumerate(groups):
            azimuth_rad, elevation_rad = vector_to_direction(np.mean(group, axis=0))
            events.append(Event(int(frame), int(class_index), track, float(azimuth_rad),
                                float(elevation_rad)))
    return events


# ----------------------------------------------------------------------------- inputs

def _frames_per_window(window_s: float) -> int:
    frames = window_s / LABEL_HOP_S
    if abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"audio window of {window_s} s is not a whole number of "
                         f"{LABEL_HOP_S} s label frames")
    return int(round(frames))


def _windows(foa: np.ndarray, n_samples: int, n_label_frames: int,
             frames_per_window: int) -> np.ndarray:
    """Non-overlapping windows ``(W, 4, n_samples)`` covering ``n_label_frames`` frames (the
    last zero-padded)."""
    n_windows = math.ceil(n_label_frames / frames_per_window)
    padded = np.zeros((4, n_windows * n_samples), np.float32)
    length = min(foa.shape[1], padded.shape[1])
    padded[:, :length] = foa[:, :length]
    return padded.reshape(4, n_windows, n_samples).transpose(1, 0, 2)


def encoder_frames(frozen: FrozenModel, foa: np.ndarray, n_label_frames: int) -> np.ndarray:
    """``(n_label_frames, D)`` frame-wise encoder features of one FOA recording (at the model's
    sample rate), front viewpoint."""
    cfg = frozen.feature_cfg
    per_window = _frames_per_window(cfg.window_s)
    windows = _windows(foa, cfg.n_samples, n_label_frames, per_window)
    inputs = np.concatenate([frozen.audio_input_from_foa(w, [0.0], [0.0]) for w in windows])
    frames = frozen.encode_audio_frames(inputs, per_window)                       # (W, 10, D)
    return frames.reshape(-1, frames.shape[-1])[:n_label_frames]


def dcase_frames(foa: np.ndarray, n_label_frames: int,
                 cfg: AudioFeatureConfig = DCASE_FEATURES) -> np.ndarray:
    """``(n_label_frames, 7 * n_mels)``: log-mel of W, Y, Z, X and the intensity vector
    (x, y, z), each averaged over the STFT frames of a 100 ms label frame."""
    per_window = _frames_per_window(cfg.window_s)
    if cfg.n_frames % per_window:
        raise ValueError(f"{cfg.n_frames} STFT frames per window do not split into "
                         f"{per_window} label frames")
    out = []
    for window in _windows(foa, cfg.n_samples, n_label_frames, per_window):
        features = foa_features(window, [0.0], [0.0], cfg)
        stacked = np.concatenate([features["logmel_foa"][0], features["iv"][0]])  # (7, M, F)
        pooled = stacked.reshape(7, cfg.n_mels, per_window, -1).mean(axis=-1)    # (7, M, 10)
        out.append(pooled.transpose(2, 0, 1).reshape(per_window, -1))
    return np.concatenate(out)[:n_label_frames].astype(np.float32)


def random_frozen(frozen: FrozenModel, seed: int) -> FrozenModel:
    """The checkpoint's network with random weights (seeded), frozen, same inputs."""
    torch.manual_seed(seed)
    model = build_model(frozen.config.model, frozen.config.data.audio_channels)
    model = model.to(frozen.device).eval().requires_grad_(False)
    return FrozenModel(model, frozen.config, frozen.feature_cfg, frozen.norm, frozen.device)


@dataclass
class RecordingData:
    """One recording's labels, reference events and, per arm, its frame-wise inputs."""

    recording: Starss23Recording
    n_frames: int
    rows: list[LabelRow]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)


def load_recordings(root: Path, n_classes: int) -> tuple[list[RecordingData], list[str]]:
    """Every usable recording of the folder and the problems found (malformed label rows and
    unpaired files are reported and skipped, never silently)."""
    recordings, layout_problems = scan_layout(root)
    problems = [f"{p.item}: {p.reason}" for p in layout_problems]
    data = []
    for recording in recordings:
        rows, row_problems = read_label_csv(root / recording.labels_path, n_classes,
                                            name=recording.labels_path)
        problems += [f"{p.item}: {p.reason}" for p in row_problems]
        info = sf.info(str(root / recording.audio_path))
        n_frames = int(math.floor(info.frames / info.samplerate / LABEL_HOP_S + 1e-9))
        data.append(RecordingData(recording, n_frames, rows))
    return data, problems


def compute_inputs(root: Path, data: Sequence[RecordingData], arms: Sequence[str],
                   frozen: FrozenModel | None, random_model: FrozenModel | None) -> None:
    """Fill ``inputs[arm]`` of every recording."""
    for item in tqdm(data, desc="seld inputs", unit="recording"):
        if "no_input" in arms:
            item.inputs["no_input"] = np.zeros((item.n_frames, 1), np.float32)
        if not set(arms) - {"no_input"}:
            continue
        foa, rate = read_ambisonic_segment(root / item.recording.audio_path)
        for arm in (a for a in arms if a != "no_input"):
            if arm == "dcase_features":
                signal = resample_foa(foa, rate, DCASE_FEATURES.sample_rate)
                item.inputs[arm] = dcase_frames(signal, item.n_frames)
            else:
                model = frozen if arm == "encoder" else random_model
                signal = resample_foa(foa, rate, model.feature_cfg.sample_rate)
                item.inputs[arm] = encoder_frames(model, signal, item.n_frames)


# ----------------------------------------------------------------------------- the head

class SeldHead(nn.Module):
    """Frame features ``(B, T, D_in)`` -> multi-ACCDOA ``(B, T, TRACKS, C, 3)`` in [-1, 1]."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 128, gru_layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.n_classes = n_classes
        self.inp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.gru = nn.GRU(hidden, hidden, num_layers=gru_layers, batch_first=True,
                          bidirectional=True, dropout=dropout if gru_layers > 1 else 0.0)
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, TRACKS * n_classes * 3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.inp(x))
        return self.out(hidden).unflatten(-1, (TRACKS, self.n_classes, 3))


def train_head(train: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int,
               protocol: SeldProtocol, seed: int) -> SeldHead:
    """Fit a head on ``(inputs (T, D) standardised, ADPIT targets)`` pairs; CPU, seeded."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = SeldHead(train[0][0].shape[1], n_classes, protocol.hidden, protocol.gru_layers,
                    protocol.dropout)
    optimiser = torch.optim.Adam(head.parameters(), lr=protocol.lr)
    length = protocol.sequence_frames
    total = sum(len(x) for x, _ in train)
    crops_per_epoch = max(1, total // length)
    weights = np.array([max(len(x) - length + 1, 1) for x, _ in train], np.float64)
    head.train()
    for _ in range(protocol.epochs):
        for _ in range(0, crops_per_epoch, protocol.batch_size):
            xs, ys = [], []
            for index in rng.choice(len(train), size=protocol.batch_size, p=weights / weights.sum()):
                x, y = train[index]
                start = int(rng.integers(0, max(len(x) - length, 0) + 1))
                xs.append(_fit(x[start:start + length], length))
                ys.append(_fit(y[start:start + length], length))
            loss = adpit_loss(head(torch.from_numpy(np.stack(xs))),
                              torch.from_numpy(np.stack(ys)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head.eval()


def _fit(array: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad a recording shorter than a training crop."""
    if len(array) >= length:
        return array
    pad = np.zeros((length - len(array), *array.shape[1:]), array.dtype)
    return np.concatenate([array, pad])


@torch.no_grad()
def predict(head: SeldHead, x: np.ndarray) -> np.ndarray:
    """Multi-ACCDOA output ``(T, TRACKS, C, 3)`` of one whole recording."""
    return head(torch.from_numpy(x[None])).numpy()[0]


def standardiser(train_inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (floored) of the training frames."""
    stacked = np.concatenate(train_inputs).astype(np.float64)
    return stacked.mean(axis=0), np.maximum(stacked.std(axis=0), 1e-5)


def evaluate_arm(data: Sequence[RecordingData], arm: str, n_classes: int,
                 protocol: SeldProtocol, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Train one head on the train recordings' ``arm`` inputs and score the test ones; returns
    the scores and the test outputs by recording name."""
    train_items = [d for d in data if d.recording.is_train]
    test_items = [d for d in data if not d.recording.is_train]
    mean, std = standardiser([d.inputs[arm] for d in train_items])

    def normalised(item: RecordingData) -> np.ndarray:
        return ((item.inputs[arm] - mean) / std).astype(np.float32)

    train = [(normalised(d), adpit_targets(d.rows, d.n_frames, n_classes)) for d in train_items]
    head = train_head(train, n_classes, protocol, seed)
    metrics = SELDMetrics(n_classes, protocol.doa_threshold_deg)
    outputs = {}
    for item in test_items:
        output = predict(head, normalised(item))
        outputs[item.recording.name] = output
        metrics.update(reference_events(item.rows, item.n_frames),
                       decode_tracks(output, protocol.activity_threshold,
                                     protocol.unify_threshold_deg))
    return metrics.scores(classes_in_test(data)), outputs


def classes_in_test(data: Sequence[RecordingData]) -> list[int]:
    """Class indices with at least one reference event in the test recordings: the macro
    average runs over these (a class absent from the test references has no defined error
    rate; STARSS23's test split holds all 13, so there this is the official average)."""
    return sorted({r.class_index for d in data if not d.recording.is_train for r in d.rows
                   if r.frame < d.n_frames})


# ----------------------------------------------------------------------------- summary

SCORE_KEYS = ("error_rate", "f_score", "localization_error_deg", "localization_recall",
              "seld_score")


def summarise(per_seed: dict[str, list[dict]]) -> dict[str, Any]:
    """Mean and sd over seeds per arm and score, and the paired differences encoder - arm."""
    summary: dict[str, Any] = {}
    for arm, runs in per_seed.items():
        summary[arm] = {key: {"mean": float(np.mean([r[key] for r in runs])),
                              "sd": float(np.std([r[key] for r in runs], ddof=1))
                              if len(runs) > 1 else 0.0}
                        for key in SCORE_KEYS}
    if "encoder" in per_seed:
        for arm in per_seed:
            if arm == "encoder":
                continue
            diffs = {key: [a[key] - b[key] for a, b in zip(per_seed["encoder"], per_seed[arm])]
                     for key in SCORE_KEYS}
            summary[f"encoder_minus_{arm}"] = {
                key: {"mean": float(np.mean(v)),
                      "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                for key, v in diffs.items()}
    return summary


def plot_azimuth_tracks(path: Path, item: RecordingData, outputs: dict[str, np.ndarray],
                        class_names: Sequence[str], protocol: SeldProtocol) -> Path:
    """Reference and predicted azimuth over time per class of one test recording, one panel
    per arm (pale squares: reference, dots: predictions, one colour per class)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(outputs)
    fig, axes = plt.subplots(len(arms), 1, figsize=(10, 2.6 * len(arms)), sharex=True,
                             squeeze=False)
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20").colors
    reference = reference_events(item.rows, item.n_frames)
    for axis, arm in zip(axes[:, 0], arms):
        predicted = decode_tracks(outputs[arm], protocol.activity_threshold,
                                  protocol.unify_threshold_deg)
        for class_index, name in enumerate(class_names):
            ref = [e for e in reference if e.class_id == class_index]
            pred = [e for e in predicted if e.class_id == class_index]
            if ref:
                axis.scatter([e.frame * LABEL_HOP_S for e in ref],
                             [math.degrees(e.azimuth_rad) for e in ref], s=22, marker="s",
                             color=colours[class_index], alpha=0.25, linewidths=0,
                             label=f"{name} (reference)")
            if pred:
                axis.scatter([e.frame * LABEL_HOP_S for e in pred],
                             [math.degrees(e.azimuth_rad) for e in pred], s=5,
                             color=colours[class_index], label=f"{name} (predicted)")
        axis.set_ylim(-185, 185)
        axis.set_yticks([-180, -90, 0, 90, 180])
        axis.set_ylabel("azimuth (deg)")
        axis.set_title(f"{item.recording.name}: {arm} (pale squares: reference, dots: "
                       f"predicted)", fontsize=9)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time (s); azimuth counter-clockwise from the front, +90 = left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry point

def run(cfg: SeldRun) -> Path:
    """Run every arm for every seed; write ``eval_seld.json`` (and the plot) and return it."""
    protocol = cfg.protocol
    unknown = sorted(set(protocol.arms) - set(ARMS))
    if unknown or not protocol.arms:
        raise ValueError(f"protocol.arms expected a non-empty subset of {ARMS}, got "
                         f"{list(protocol.arms)}")
    if not protocol.seeds:
        raise ValueError("protocol.seeds expected at least one seed, got none")
    if not cfg.starss_dir:
        raise ValueError("starss_dir: expected a STARSS23(-layout) folder (STARSS_DIR=... with "
                         "make; `python -m pipeline.synth.cli starss23 --out DIR` writes a "
                         "synthetic one), got none")
    root = Path(cfg.starss_dir)
    class_names, synthetic = class_names_of(root)
    arms = list(protocol.arms)
    frozen = None
    if cfg.ckpt:
        frozen = load_frozen(cfg.ckpt, cfg.device, cfg.norm_stats or None)
    elif set(arms) & {"encoder", "random_encoder"}:
        log.warning("no checkpoint: only the arms without an encoder run")
        arms = [arm for arm in arms if arm in ("dcase_features", "no_input")]
        if not arms:
            raise ValueError("no checkpoint and no dcase_features or no_input arm: nothing to "
                             "evaluate")
    data, problems = load_recordings(root, len(class_names))
    for problem in problems:
        log.warning("skipped: %s", problem)
    n_train = sum(d.recording.is_train for d in data)
    scored = classes_in_test(data)
    absent = [class_names[i] for i in range(len(class_names)) if i not in scored]
    if absent:
        log.warning("classes without a reference event in the test recordings, left out of "
                    "the macro average: %s", absent)
    if n_train == 0 or n_train == len(data):
        raise ValueError(f"{root}: expected recordings in both dev-train-* and dev-test-*, got "
                         f"{n_train} train and {len(data) - n_train} test")
    per_seed: dict[str, list[dict]] = {arm: [] for arm in arms}
    plot_outputs: dict[str, np.ndarray] = {}
    fixed_arms = [a for a in arms if a != "random_encoder"]
    first_test = next(d for d in data if not d.recording.is_train)     # drawn in the plot
    compute_inputs(root, data, fixed_arms, frozen, None)
    for seed in protocol.seeds:
        if "random_encoder" in arms:
            compute_inputs(root, data, ["random_encoder"], None,
                           random_frozen(frozen, RANDOM_ENCODER_SEED_OFFSET + seed))
        for arm in arms:
            scores, outputs = evaluate_arm(data, arm, len(class_names), protocol, seed)
            per_seed[arm].append(scores)
            log.info("seed %d %s: ER %.3f F %.3f LE %.1f LR %.3f SELD %.3f", seed, arm,
                     scores["error_rate"], scores["f_score"], scores["localization_error_deg"],
                     scores["localization_recall"], scores["seld_score"])
            if seed == protocol.seeds[0]:
                plot_outputs[arm] = outputs[first_test.recording.name]

    out = Path(cfg.out) if cfg.out else (run_dir_of(cfg.ckpt) if cfg.ckpt
                                         else Path("runs/seld_baselines")) / "eval_seld.json"
    result: dict[str, Any] = {
        "task": "seld",
        "dataset": ("SYNTHETIC STARSS23-layout set" if synthetic else "STARSS23 development set"),
        "synthetic": synthetic,
        "starss_dir": str(root),
        "class_names": class_names,
        "recordings": {"train": n_train, "test": len(data) - n_train},
        "test_frames": int(sum(d.n_frames for d in data if not d.recording.is_train)),
        "problems": problems,
        "classes_scored": [class_names[i] for i in scored],
        "arms": arms,
        "seeds": list(protocol.seeds),
        "per_seed": per_seed,
        "summary": summarise(per_seed),
    }
    if frozen is not None:
        result["model"] = describe_run(frozen, cfg.ckpt)
    if protocol.plot:
        plot = plot_azimuth_tracks(out.with_name(out.stem + "_tracks.png"), first_test,
                                   plot_outputs, class_names, protocol)
        result["plot"] = str(plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    _print_table(result)
    return out


def _print_table(result: dict) -> None:
    print(f"SELD on the {result['dataset']} ({result['recordings']['test']} test recordings, "
          f"seeds {result['seeds']}; mean ± sd)")
    print(f"  {'arm':<16} {'ER20':>12} {'F20 %':>12} {'LE deg':>12} {'LR %':>12} {'SELD':>12}")
    for arm in result["arms"]:
        s = result["summary"][arm]

        def cell(key, scale=1.0, digits=2):
            return f"{scale * s[key]['mean']:.{digits}f}±{scale * s[key]['sd']:.{digits}f}"
        print(f"  {arm:<16} {cell('error_rate'):>12} {cell('f_score', 100, 1):>12} "
              f"{cell('localization_error_deg', 1, 1):>12} "
              f"{cell('localization_recall', 100, 1):>12} {cell('seld_score'):>12}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(SeldRun, run, argv, name="seld", description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
