"""Sound event localisation and detection (SELD) on STARSS23 as a downstream task of a frozen
audio encoder, scored with the DCASE metrics (:mod:`evals.audio.seld_metrics`).

    python -m evals.audio.seld ckpt=runs/demo_avsa/ckpt.pt starss_dir=data/starss23_synth
    make eval-seld CKPT=runs/demo_avsa/ckpt.pt STARSS_DIR=/data/STARSS23

Protocol (the same head, budget and seeds for every arm):

- **Inputs, one sequence of 100 ms frames per recording** (``LABEL_HOP_S``), from the
  recording's own FOA, read out by :mod:`evals.audio.readout`:
  ``encoder``: the checkpoint's audio encoder, frozen, on 1 s windows of the features it was
  trained on, the sound field rotated toward K viewpoints (``protocol.readout``, default the 8
  azimuths 0, 45, ..., 315 deg on the horizon), its map before global pooling with the mel axis
  kept, resampled to the ten label frames of each window (K x D x M'' numbers per frame).
  ``random_encoder``: the same read-out of the same network with random weights (seeded), the
  floor any pretraining must beat. ``front_view``: the earlier read-out of the checkpoint's
  encoder, the front view only (az = el = 0) with the mel axis max-pooled (D per frame), so the
  effect of the read-out itself is reported. ``dcase_features``: the input features of the DCASE
  2023 baseline (``sharathadavanne/seld-dcase2023``, ``cls_feature_class.py`` with its
  ``parameters.py``: 24 kHz, hop 480 (20 ms), Hann window 960 in an FFT of 1024, power
  spectrogram, librosa's 64-band Slaney mel to 12 kHz, ``power_to_db`` (ref 1, top 80 dB per
  channel and recording) of the four channels, and the intensity vector of the ACN channels
  (Y, Z, X) divided by ``|W|^2 + (|Y|^2 + |Z|^2 + |X|^2) / 3``, mel-weighted), computed with
  librosa exactly as there; the five 20 ms frames of each label frame are stacked:
  5 x 7 x 64 = 2240 numbers per frame, no network (the baseline's per-dimension standard
  scaling on the training features is the head's standardisation below). ``no_input``: a
  constant input, so the head can only learn the training labels' priors: what a score is
  worth without listening.
- **Head** (trained on ``dev-train-*``, scored on ``dev-test-*``, nothing chosen on test):
  standardisation (statistics of the recordings it trains on), a linear layer, ``conv_blocks``
  residual temporal convolutions (kernel 3, dilations 1, 2, 4: 1.5 s of context) and a
  multi-ACCDOA output of 3 tracks x classes x (x, y, z) with tanh, trained with the ADPIT loss
  (Shimada et al., ICASSP 2022: per frame and class, the mean squared error to the best of the
  six track assignments of its up to three reference events, a single event filling all three
  tracks, two events one duplicated; no event: all tracks zero). AdamW on random
  ``sequence_frames``-long crops. (A temporal-convolution head instead of the earlier 2-layer
  BiGRU: ~10x cheaper per step on a CPU.)
- **Budget: early stopping on validation data**, the same rule for every arm and seed: the head
  trains on dev-train less a validation part (every ``validation_every``-th dev-train
  recording by name), is scored on that part every ``validate_every_steps`` optimizer steps,
  keeps the weights of its lowest validation SELD score and stops after ``patience``
  validations without improvement or at ``steps``. The kept step and the validation curve of
  every arm and seed are in the JSON (``best_steps``, ``validation``). Why: with a fixed budget
  of 3000 steps the heads memorised the 12 recordings of the former synthetic set (the DCASE
  arm: dev-train LE 2.8 deg and F 99.8 %, dev-test LE 75 deg), and the step that is best
  differs per arm (measured: the front view peaks after ~300 steps, the encoder read-outs and
  the DCASE features after 600-1200): one fixed budget is unfair to some arm.
- **Decoding**: a track is active where its vector is longer than ``activity_threshold``; two
  active tracks of one class closer than ``unify_threshold_deg`` are merged (mean direction).
- **Scores** (the official DCASE 2023 evaluation's semantics, :mod:`evals.audio.seld_metrics`):
  one location-dependent error rate pooled over classes per 1 s segment, F-score within 20°,
  class-dependent localisation error and recall macro over the classes present in the test
  references (all 13 on STARSS23), and the SELD score; mean and sd over seeds per arm, with
  the paired difference encoder - arm per seed.

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
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from evals.audio.readout import (ReadoutConfig, front_view_frames, frames_per_window,
                                 multiview_frames)
from evals.audio.seld_metrics import Event, SELDMetrics
from evals.cli import EvalIO, run_evaluator
from evals.frozen import (FrozenModel, describe_run, load_frozen, read_ambisonic_segment,
                          resample_foa, run_dir_of)
from pipeline.spatial import direction_vector, vector_to_direction
from pipeline.importers.starss23 import (LABEL_HOP_S, LabelRow, Starss23Recording, class_names_of,
                               read_label_csv, scan_layout)
from trainer.models import build_model

log = logging.getLogger("evals.seld")

ARMS = ("encoder", "random_encoder", "front_view", "dcase_features", "no_input")
ENCODER_ARMS = ("encoder", "random_encoder", "front_view")
TRACKS = 3
#: Random encoders are drawn with seed offset + protocol seed, so none equals a trained run's
#: initialisation (runs use small seeds).
RANDOM_ENCODER_SEED_OFFSET = 1000
#: The DCASE 2023 baseline's FOA features (``parameters.py``, ``cls_feature_class.py``).
DCASE_SAMPLE_RATE = 24000
DCASE_HOP = 480                        # hop_len_s 0.02
DCASE_WINDOW = 960                     # 2 * hop
DCASE_N_FFT = 1024                     # next power of 2 above the window
DCASE_N_MELS = 64
DCASE_EPS = 1e-8
DCASE_FRAMES_PER_LABEL = 5             # label_hop_len_s 0.1 / hop_len_s 0.02


@dataclass(frozen=True)
class SeldProtocol:
    """Head, training budget and decoding of the SELD evaluation (frames of 100 ms)."""

    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2)
    hidden: int = 128
    conv_blocks: int = 3               # dilations 1, 2, 4, ...
    dropout: float = 0.1
    weight_decay: float = 0.0          # AdamW's decoupled weight decay
    steps: int = 3000                  # most optimizer steps per head (early stopping below)
    validate_every_steps: int = 100    # validation SELD score every this many steps
    patience: int = 5                  # stop after this many validations without a better one
    validation_every: int = 4          # every 4th dev-train recording validates
    sequence_frames: int = 50          # 5 s training crops
    batch_size: int = 8
    lr: float = 1e-3
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    activity_threshold: float = 0.5
    unify_threshold_deg: float = 15.0
    doa_threshold_deg: float = 20.0
    plot: bool = True                  # azimuth tracks of one test recording (PNG)

    def validate(self) -> None:
        """ValueError naming the first unusable setting."""
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise ValueError(f"protocol.arms expected a non-empty subset of {ARMS}, got "
                             f"{list(self.arms)}")
        if not self.seeds:
            raise ValueError("protocol.seeds expected at least one seed, got none")
        for key in ("steps", "validate_every_steps", "patience", "sequence_frames",
                    "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"protocol.{key}: expected a positive integer, got "
                                 f"{getattr(self, key)}")
        if self.validation_every < 2:
            raise ValueError(f"protocol.validation_every: expected >= 2, got "
                             f"{self.validation_every}")
        if not 0.0 <= self.dropout < 1.0 or self.weight_decay < 0.0:
            raise ValueError(f"protocol.dropout in [0, 1) and protocol.weight_decay >= 0 "
                             f"expected, got {self.dropout} and {self.weight_decay}")
        self.readout.validate()


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

def dcase_baseline_frames(foa: np.ndarray, n_label_frames: int) -> np.ndarray:
    """The DCASE 2023 baseline's FOA input features of one recording, per label frame.

    Args:
        foa: ``(4, n)`` ambiX (ACN W, Y, Z, X, SN3D) at 24 kHz, the whole recording (the
            baseline's dB floor is per channel and recording).
        n_label_frames: 100 ms frames wanted.
    Returns:
        float32 ``(n_label_frames, 5 * 7 * 64)``: for each of the five 20 ms feature frames of a
        label frame, the baseline's 448 features in its order: log-mel (dB) of W, Y, Z, X, then
        the intensity vector in the ACN channel order (Y, Z, X), N3D-style energy.
    """
    import librosa   # only this arm needs it (about 1 s of imports)

    audio = np.asarray(foa, dtype=np.float32) + DCASE_EPS
    n_feature_frames = audio.shape[1] // DCASE_HOP
    spectra = librosa.stft(audio, n_fft=DCASE_N_FFT, hop_length=DCASE_HOP,
                           win_length=DCASE_WINDOW, window="hann")[:, :, :n_feature_frames]
    spectra = spectra.transpose(0, 2, 1)                                      # (4, T, bins)
    mel_weights = librosa.filters.mel(sr=DCASE_SAMPLE_RATE, n_fft=DCASE_N_FFT,
                                      n_mels=DCASE_N_MELS).T                  # (bins, 64)
    logmel = np.stack([librosa.power_to_db(np.abs(channel) ** 2 @ mel_weights)
                       for channel in spectra])                               # (4, T, 64)
    w = spectra[0]
    intensity = np.real(np.conj(w)[None] * spectra[1:])                       # (3, T, bins)
    energy = DCASE_EPS + (np.abs(w) ** 2 + (np.abs(spectra[1:]) ** 2).sum(axis=0) / 3.0)
    iv = (intensity / energy[None]) @ mel_weights                             # (3, T, 64)
    per_frame = np.concatenate([logmel, iv]).transpose(1, 0, 2).reshape(n_feature_frames, -1)
    wanted = n_label_frames * DCASE_FRAMES_PER_LABEL
    out = np.zeros((wanted, per_frame.shape[1]), np.float32)
    out[:min(wanted, n_feature_frames)] = per_frame[:wanted]
    return out.reshape(n_label_frames, -1)


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
                   frozen: FrozenModel | None, random_model: FrozenModel | None,
                   readout: ReadoutConfig = ReadoutConfig()) -> None:
    """Fill ``inputs[arm]`` ``(n_frames, D)`` of every recording."""
    for item in tqdm(data, desc="seld inputs", unit="recording"):
        if "no_input" in arms:
            item.inputs["no_input"] = np.zeros((item.n_frames, 1), np.float32)
        if not set(arms) - {"no_input"}:
            continue
        foa, rate = read_ambisonic_segment(root / item.recording.audio_path)
        for arm in (a for a in arms if a != "no_input"):
            if arm == "dcase_features":
                signal = resample_foa(foa, rate, DCASE_SAMPLE_RATE)
                item.inputs[arm] = dcase_baseline_frames(signal, item.n_frames)
                continue
            model = random_model if arm == "random_encoder" else frozen
            signal = resample_foa(foa, rate, model.feature_cfg.sample_rate)
            item.inputs[arm] = (front_view_frames(model, signal, item.n_frames)
                                if arm == "front_view"
                                else multiview_frames(model, signal, item.n_frames, readout))


# ----------------------------------------------------------------------------- the head

class SeldHead(nn.Module):
    """Frame features ``(B, T, D_in)`` -> multi-ACCDOA ``(B, T, TRACKS, C, 3)`` in [-1, 1]:
    a linear layer, ``conv_blocks`` residual temporal convolutions (kernel 3, dilation 2^i,
    non-causal, same length) and a 2-layer output MLP with tanh."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 128, conv_blocks: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        self.n_classes = n_classes
        self.inp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=2 ** i, dilation=2 ** i),
                          nn.ReLU(), nn.Dropout(dropout)) for i in range(conv_blocks))
        self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, TRACKS * n_classes * 3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.inp(x).transpose(1, 2)                                  # (B, H, T)
        for block in self.blocks:
            hidden = hidden + block(hidden)
        return self.out(hidden.transpose(1, 2)).unflatten(-1, (TRACKS, self.n_classes, 3))


def train_head(train: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int,
               protocol: SeldProtocol, seed: int, steps: int | None = None,
               on_step: Callable[[int, SeldHead], bool] | None = None) -> SeldHead:
    """Fit a head on ``(inputs (T, D) standardised, ADPIT targets)`` pairs for at most ``steps``
    optimizer steps (default ``protocol.steps``) of ``batch_size`` random crops (AdamW with
    ``protocol.weight_decay``); CPU, seeded. ``on_step(step, head)`` is called after every step
    (the head in eval mode during it); training stops when it returns True."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = SeldHead(train[0][0].shape[1], n_classes, protocol.hidden, protocol.conv_blocks,
                    protocol.dropout)
    optimiser = torch.optim.AdamW(head.parameters(), lr=protocol.lr,
                                  weight_decay=protocol.weight_decay)
    length = protocol.sequence_frames
    weights = np.array([max(len(x) - length + 1, 1) for x, _ in train], np.float64)
    head.train()
    for step in range(1, (protocol.steps if steps is None else steps) + 1):
        xs, ys = [], []
        for index in rng.choice(len(train), size=protocol.batch_size, p=weights / weights.sum()):
            x, y = train[index]
            start = int(rng.integers(0, max(len(x) - length, 0) + 1))
            xs.append(_fit(x[start:start + length], length))
            ys.append(_fit(y[start:start + length], length))
        loss = adpit_loss(head(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if on_step is not None:
            head.eval()
            stop = on_step(step, head)
            head.train()
            if stop:
                break
    return head.eval()


@dataclass
class FittedHead:
    """A head trained with early stopping: the weights of its best validation step."""

    head: SeldHead
    best_step: int                     # optimizer steps of the kept weights
    steps_run: int                     # optimizer steps taken before stopping
    curve: list[dict]                  # ``{"steps": n, **validation scores}`` per validation


def train_with_early_stopping(train: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int,
                              validate: Callable[[SeldHead], dict], protocol: SeldProtocol,
                              seed: int) -> FittedHead:
    """:func:`train_head` scored by ``validate(head)`` (a scores dict with ``seld_score``)
    every ``protocol.validate_every_steps`` steps and after the last; stops once ``patience``
    validations in a row are no better than the best, and returns the best weights (the
    earliest of equal scores) with the validation curve."""
    interval, budget = protocol.validate_every_steps, protocol.steps
    curve: list[dict] = []
    best: dict[str, Any] = {"score": math.inf, "step": 0, "state": None}

    def on_step(step: int, head: SeldHead) -> bool:
        if step % interval and step != budget:
            return False
        scores = validate(head)
        curve.append({"steps": step, **scores})
        if scores["seld_score"] < best["score"]:
            best.update(score=scores["seld_score"], step=step,
                        state={k: v.detach().clone() for k, v in head.state_dict().items()})
        return step - best["step"] >= protocol.patience * interval

    head = train_head(train, n_classes, protocol, seed, on_step=on_step)
    head.load_state_dict(best["state"])
    return FittedHead(head.eval(), best["step"], curve[-1]["steps"], curve)


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


def _score(head: SeldHead, items: Sequence[RecordingData], inputs: Sequence[np.ndarray],
           n_classes: int, classes: Sequence[int], protocol: SeldProtocol
           ) -> tuple[dict, dict[str, np.ndarray]]:
    metrics = SELDMetrics(n_classes, protocol.doa_threshold_deg)
    outputs = {}
    for item, x in zip(items, inputs):
        output = predict(head, x)
        outputs[item.recording.name] = output
        metrics.update(reference_events(item.rows, item.n_frames),
                       decode_tracks(output, protocol.activity_threshold,
                                     protocol.unify_threshold_deg))
    return metrics.scores(list(classes)), outputs


@dataclass
class ArmResult:
    """One arm and seed: dev-test scores, dev-test outputs by recording name, and the early
    stopping on the validation part (best step, steps run, validation curve)."""

    scores: dict
    outputs: dict[str, np.ndarray]
    best_step: int
    steps_run: int
    curve: list[dict]


def evaluate_arm(data: Sequence[RecordingData], arm: str, n_classes: int,
                 protocol: SeldProtocol, seed: int) -> ArmResult:
    """Train one head on the fit part of dev-train (:func:`split_train_validation`; inputs
    standardised with its statistics), stop early on the validation part's SELD score, and
    score the kept head on dev-test, which chooses nothing."""
    fit_items, validation_items = split_train_validation(data, protocol.validation_every)
    test_items = [d for d in data if not d.recording.is_train]
    mean, std = standardiser([d.inputs[arm] for d in fit_items])

    def normalised(item: RecordingData) -> np.ndarray:
        return ((item.inputs[arm] - mean) / std).astype(np.float32)

    train = [(normalised(d), adpit_targets(d.rows, d.n_frames, n_classes)) for d in fit_items]
    validation_inputs = [normalised(d) for d in validation_items]
    validation_classes = classes_with_events(validation_items)
    fitted = train_with_early_stopping(
        train, n_classes, lambda head: _score(head, validation_items, validation_inputs,
                                              n_classes, validation_classes, protocol)[0],
        protocol, seed)
    scores, outputs = _score(fitted.head, test_items, [normalised(d) for d in test_items],
                             n_classes, classes_with_events(test_items), protocol)
    return ArmResult(scores, outputs, fitted.best_step, fitted.steps_run, fitted.curve)


def split_train_validation(items: Sequence[RecordingData], every: int
                           ) -> tuple[list[RecordingData], list[RecordingData]]:
    """dev-train recordings sorted by name: every ``every``-th from the last validates, the
    others fit. dev-test recordings are never returned."""
    if every < 2:
        raise ValueError(f"protocol.validation_every: expected >= 2, got {every}")
    train = sorted((d for d in items if d.recording.is_train), key=lambda d: d.recording.name)
    validation = [d for i, d in enumerate(reversed(train)) if i % every == 0]
    fit = [d for d in train if all(d is not v for v in validation)]
    if not fit or not validation:
        raise ValueError(f"expected at least 2 dev-train recordings to carve a validation part, "
                         f"got {len(train)}")
    return fit, validation


def classes_in_test(data: Sequence[RecordingData]) -> list[int]:
    """Class indices with at least one reference event in the test recordings: the scores
    run over these (leaving a class out keeps its insertions out of the pooled error rate and
    its LE of 180° out of the average; STARSS23's test split holds all 13, so there this is the
    official average)."""
    return classes_with_events([d for d in data if not d.recording.is_train])


def classes_with_events(items: Sequence[RecordingData]) -> list[int]:
    """Class indices with at least one reference event in ``items``."""
    return sorted({r.class_index for d in items for r in d.rows if r.frame < d.n_frames})


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
    protocol.validate()
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
    elif set(arms) & set(ENCODER_ARMS):
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
    compute_inputs(root, data, fixed_arms, frozen, None, protocol.readout)
    validation_names = [d.recording.name for d in split_train_validation(
        data, protocol.validation_every)[1]]
    best_steps: dict[str, list[int]] = {arm: [] for arm in arms}
    curves: dict[str, list[list[dict]]] = {arm: [] for arm in arms}
    for seed in protocol.seeds:
        if "random_encoder" in arms:
            compute_inputs(root, data, ["random_encoder"], None,
                           random_frozen(frozen, RANDOM_ENCODER_SEED_OFFSET + seed),
                           protocol.readout)
        for arm in arms:
            result = evaluate_arm(data, arm, len(class_names), protocol, seed)
            scores = result.scores
            per_seed[arm].append(scores)
            best_steps[arm].append(result.best_step)
            curves[arm].append(result.curve)
            log.info("seed %d %s: best validation SELD at step %d of %d run; dev-test ER %.3f "
                     "F %.3f LE %.1f LR %.3f SELD %.3f", seed, arm, result.best_step,
                     result.steps_run, scores["error_rate"], scores["f_score"],
                     scores["localization_error_deg"], scores["localization_recall"],
                     scores["seld_score"])
            if seed == protocol.seeds[0]:
                plot_outputs[arm] = result.outputs[first_test.recording.name]

    out = Path(cfg.out) if cfg.out else (run_dir_of(cfg.ckpt) if cfg.ckpt
                                         else Path("runs/seld_baselines")) / "eval_seld.json"
    report: dict[str, Any] = {
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
        "steps": protocol.steps,
        "best_steps": best_steps,
        "input_dims": {arm: int(first_test.inputs[arm].shape[1]) for arm in arms},
        "per_seed": per_seed,
        "summary": summarise(per_seed),
        "validation": {"recordings": validation_names, "curves": curves},
    }
    if frozen is not None:
        report["model"] = describe_run(frozen, cfg.ckpt)
    if protocol.plot:
        plot = plot_azimuth_tracks(out.with_name(out.stem + "_tracks.png"), first_test,
                                   plot_outputs, class_names, protocol)
        report["plot"] = str(plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(format_table(report))
    return out


def format_table(report: dict) -> str:
    """The printed summary: one row per arm of ``report["arms"]`` (mean ± sd over seeds, and
    the mean best validation step), then the paired differences encoder - arm."""
    lines = [f"SELD on the {report['dataset']} ({report['recordings']['test']} test recordings, "
             f"seeds {report['seeds']}; mean ± sd; heads stopped early on validation, at most "
             f"{report['steps']} steps)",
             f"  {'arm':<30} {'ER20':>11} {'F20 %':>11} {'LE deg':>11} {'LR %':>11} "
             f"{'SELD':>11} {'best step':>9}"]
    differences = [f"encoder_minus_{arm}" for arm in report["arms"] if arm != "encoder"
                   and f"encoder_minus_{arm}" in report["summary"]]
    for name in list(report["arms"]) + differences:
        s = report["summary"][name]

        def cell(key: str, scale: float = 1.0, digits: int = 2) -> str:
            return f"{scale * s[key]['mean']:.{digits}f}±{scale * s[key]['sd']:.{digits}f}"
        steps = report.get("best_steps", {}).get(name)
        lines.append(f"  {name:<30} {cell('error_rate'):>11} {cell('f_score', 100, 1):>11} "
                     f"{cell('localization_error_deg', 1, 1):>11} "
                     f"{cell('localization_recall', 100, 1):>11} {cell('seld_score'):>11} "
                     f"{f'{np.mean(steps):.0f}' if steps else '':>9}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(SeldRun, run, argv, name="seld", description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
