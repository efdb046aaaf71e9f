"""Direction probe: how much of a sound's direction a frozen read-out keeps, measured with a
linear probe on STARSS23(-layout) recordings.

    python -m evals.audio.direction ckpt=runs/demo_avsa/ckpt.pt data_dir=data/starss23_synth
    python -m evals.audio.direction ckpt='[runs/a/ckpt.pt,runs/b/ckpt.pt]' data_dir=...
    make eval-direction CKPT=runs/demo_avsa/ckpt.pt

Protocol (the same probe, frames and choice of penalty for every arm):

- **Frames**: the 100 ms label frames of the label CSVs. *Single source*: frames with exactly
  one active event; the target is its direction. *Two sources*: frames with exactly two.
- **Inputs per frame** (:mod:`evals.audio.readout`): ``encoder``: the multi-viewpoint
  read-out of the frozen audio encoder (K viewpoints, mel axis kept); ``random_encoder``: the
  same network with random weights, seeded as SELD's (``RANDOM_ENCODER_SEED_OFFSET`` +
  ``protocol.random_seed`` + the checkpoint's index in ``ckpt``); ``front_view``: the earlier
  SELD read-out (front view only, mel max-pooled); ``foa_iv``: the intensity vector
  (I_x, I_y, I_z) of 64 mel bands, no network; ``log_mel``: log-mel of W, Y, Z, X, no network.
- **Probe**: ridge regression from the inputs, standardised with the training frames' mean
  and std, to the unit vector (x front, y left, z up) of the source; predictions are
  normalised to unit length. Deterministic (no probe seeds). The penalty is chosen from
  ``protocol.penalties`` (multiples of the input dimension) by the median error on the
  single-source frames of a validation part of dev-train (every ``validation_every``-th
  ``dev-train-*`` recording by name), then the probe is refit on all dev-train single-source
  frames and scored on ``dev-test-*``: nothing is chosen on test.
- **Scores**: median angular error (degrees) and the percentage of frames within
  ``within_deg`` (20 deg). Two sources: the same single-source probe, scored against the
  *nearer* of the two reference directions (does the read-out point at one of them?).
- **Several checkpoints** (``ckpt=[a.pt,b.pt,...]``, e.g. pretraining seeds): per arm mean
  and sd over the checkpoints, and the paired difference ``encoder - random_encoder`` per
  checkpoint (mean and sd); the hand-made arms do not depend on a checkpoint.

The result goes to ``runs/<name>/eval_direction.json`` beside the checkpoint (several:
``runs/eval_direction_<n>_checkpoints.json`` beside their run folders), with its
resolved config as ``eval_direction.config.yaml`` (:mod:`evals.cli`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from evals.audio.readout import (HAND_FEATURES, ReadoutConfig, front_view_frames,
                                 hand_feature_frames, multiview_frames)
from evals.audio.seld import (RANDOM_ENCODER_SEED_OFFSET, RecordingData, load_recordings,
                              random_frozen, split_train_validation)
from evals.cli import EvalIO, run_evaluator
from evals.frozen import (FrozenModel, describe_run, load_frozen, read_ambisonic_segment,
                          resample_foa, run_dir_of)
from pipeline.config import ConfigError
from pipeline.spatial import angular_distance_rad, direction_vector, vector_to_direction
from pipeline.importers.starss23 import class_names_of

log = logging.getLogger("evals.direction")

ARMS = ("encoder", "random_encoder", "front_view", "foa_iv", "log_mel")
ENCODER_ARMS = ("encoder", "random_encoder", "front_view")
RESULT_NAME = "eval_direction.json"
VARIANTS = ("single_source", "two_sources")


@dataclass(frozen=True)
class DirectionProtocol:
    """Probe, penalty choice and read-out of the direction evaluation."""

    arms: tuple[str, ...] = ARMS
    penalties: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    validation_every: int = 4          # every 4th dev-train recording validates the penalty
    within_deg: float = 20.0
    random_seed: int = 0
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)


@dataclass(frozen=True)
class DirectionRun(EvalIO):
    """``configs/evals/direction.yaml``: checkpoint(s) (one path or a list; none: only the
    hand-made arms), the STARSS23(-layout) folder and the protocol."""

    ckpt: str | tuple[str, ...] = ""
    data_dir: str = ""
    protocol: DirectionProtocol = field(default_factory=DirectionProtocol)


# ----------------------------------------------------------------------------- scores

def angular_error_deg(predicted_xyz: np.ndarray, reference_xyz: np.ndarray) -> np.ndarray:
    """Great-circle angle (degrees) between vectors ``(..., 3)`` (need not be unit), via
    :func:`pipeline.spatial.angular_distance_rad`."""
    return np.degrees(angular_distance_rad(*vector_to_direction(predicted_xyz),
                                           *vector_to_direction(reference_xyz)))


def direction_scores(error_deg: np.ndarray, within_deg: float = 20.0) -> dict[str, float]:
    """Median angular error (deg), percentage of errors within ``within_deg`` and the count
    (None for the scores of no frames)."""
    error_deg = np.asarray(error_deg, dtype=np.float64)
    if error_deg.size == 0:
        return {"median_error_deg": None, "within_pct": None, "n_frames": 0}
    return {"median_error_deg": float(np.median(error_deg)),
            "within_pct": float(100.0 * np.mean(error_deg <= within_deg)),
            "n_frames": int(error_deg.size)}


# ----------------------------------------------------------------------------- the probe

@dataclass
class RidgeProbe:
    """Ridge regression on standardised inputs to unit direction vectors."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray              # (D, 3)
    bias: np.ndarray                 # (3,)
    penalty: float

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Unit vectors ``(N, 3)`` (x front, y left, z up) of inputs ``(N, D)``."""
        out = ((inputs - self.mean) / self.std) @ self.weights + self.bias
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def fit_ridge_path(inputs: np.ndarray, targets_xyz: np.ndarray,
                   penalties: Sequence[float]) -> list[RidgeProbe]:
    """One :class:`RidgeProbe` per penalty (``penalty * D`` on standardised inputs), from one
    SVD of the training inputs ``(N, D)``; targets ``(N, 3)``."""
    inputs = np.asarray(inputs, dtype=np.float64)
    mean = inputs.mean(axis=0)
    std = np.maximum(inputs.std(axis=0), 1e-6)
    standardised = (inputs - mean) / std
    bias = targets_xyz.mean(axis=0)
    u, s, vt = np.linalg.svd(standardised, full_matrices=False)
    projected = u.T @ (targets_xyz - bias)                                  # (r, 3)
    probes = []
    for penalty in penalties:
        shrink = s / (s ** 2 + penalty * inputs.shape[1])
        probes.append(RidgeProbe(mean, std, vt.T @ (shrink[:, None] * projected), bias,
                                 float(penalty)))
    return probes


@dataclass
class FrameSet:
    """Inputs and reference directions of the probe's frames of some recordings."""

    single_inputs: np.ndarray        # (N1, D)
    single_xyz: np.ndarray           # (N1, 3)
    two_inputs: np.ndarray           # (N2, D)
    two_xyz: np.ndarray              # (N2, 2, 3)


def frame_set(items: Sequence[RecordingData], arm: str) -> FrameSet:
    """Single- and two-source frames of ``items`` (one active event / exactly two)."""
    single_x, single_y, two_x, two_y = [], [], [], []
    for item in items:
        by_frame: dict[int, list[np.ndarray]] = {}
        for row in item.rows:
            if row.frame < item.n_frames:
                by_frame.setdefault(row.frame, []).append(direction_vector(
                    math.radians(row.azimuth_deg), math.radians(row.elevation_deg)))
        inputs = item.inputs[arm]
        for frame, vectors in sorted(by_frame.items()):
            if len(vectors) == 1:
                single_x.append(inputs[frame])
                single_y.append(vectors[0])
            elif len(vectors) == 2:
                two_x.append(inputs[frame])
                two_y.append(np.stack(vectors))
    dim = items[0].inputs[arm].shape[1] if items else 0

    def stack(rows: list, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack(rows) if rows else np.zeros((0, *shape))
    return FrameSet(stack(single_x, (dim,)), stack(single_y, (3,)), stack(two_x, (dim,)),
                    stack(two_y, (2, 3)))


def evaluate_arm(data: Sequence[RecordingData], arm: str, protocol: DirectionProtocol
                 ) -> dict[str, Any]:
    """Choose the penalty on validation, refit on all dev-train, score dev-test."""
    fit_items, validation_items = split_train_validation(data, protocol.validation_every)
    fit, validation = frame_set(fit_items, arm), frame_set(validation_items, arm)
    if len(fit.single_xyz) == 0 or len(validation.single_xyz) == 0:
        raise ValueError(f"{arm}: no single-source frames in the training or validation "
                         f"recordings")
    validation_median = []
    for probe in fit_ridge_path(fit.single_inputs, fit.single_xyz, protocol.penalties):
        error = angular_error_deg(probe.predict(validation.single_inputs), validation.single_xyz)
        validation_median.append(float(np.median(error)))
    penalty = protocol.penalties[int(np.argmin(validation_median))]
    train = frame_set([d for d in data if d.recording.is_train], arm)
    test = frame_set([d for d in data if not d.recording.is_train], arm)
    probe = fit_ridge_path(train.single_inputs, train.single_xyz, [penalty])[0]
    single_error = angular_error_deg(probe.predict(test.single_inputs), test.single_xyz)
    two_error = (angular_error_deg(probe.predict(test.two_inputs)[:, None], test.two_xyz)
                 .min(axis=1) if len(test.two_xyz) else np.zeros(0))
    return {"single_source": direction_scores(single_error, protocol.within_deg),
            "two_sources": direction_scores(two_error, protocol.within_deg),
            "penalty": penalty, "input_dim": int(train.single_inputs.shape[1]),
            "validation_median_error_deg": dict(zip(map(str, protocol.penalties),
                                                    validation_median))}


# ----------------------------------------------------------------------------- inputs

def compute_inputs(root: Path, data: Sequence[RecordingData], arms: Sequence[str],
                   frozen: FrozenModel | None, random_model: FrozenModel | None,
                   readout: ReadoutConfig) -> None:
    """Fill ``inputs[arm]`` ``(n_frames, D)`` of every recording for ``arms``."""
    for item in tqdm(data, desc="direction inputs", unit="recording"):
        foa, rate = read_ambisonic_segment(root / item.recording.audio_path)
        if {"foa_iv", "log_mel"} & set(arms):
            hand = hand_feature_frames(resample_foa(foa, rate, HAND_FEATURES.sample_rate),
                                       item.n_frames)                  # (T, 7, 64)
            if "log_mel" in arms:
                item.inputs["log_mel"] = hand[:, :4].reshape(item.n_frames, -1)
            if "foa_iv" in arms:
                item.inputs["foa_iv"] = hand[:, 4:].reshape(item.n_frames, -1)
        for arm in set(arms) & set(ENCODER_ARMS):
            model = random_model if arm == "random_encoder" else frozen
            signal = resample_foa(foa, rate, model.feature_cfg.sample_rate)
            item.inputs[arm] = (front_view_frames(model, signal, item.n_frames)
                                if arm == "front_view"
                                else multiview_frames(model, signal, item.n_frames, readout))


def checkpoints_of(cfg: DirectionRun) -> list[str]:
    """The checkpoint paths (``ckpt=PATH`` or the list ``ckpt=[A,B]``), each checked to exist."""
    paths = [cfg.ckpt] if isinstance(cfg.ckpt, str) else list(cfg.ckpt)
    paths = [p for p in paths if p]
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint; train one with `make train` "
                                    f"(or `make demo`) or give ckpt=<path> / ckpt=[a.pt,b.pt]")
    return paths


def _mean_sd(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sd (ddof 1; 0 for one value) of the values that exist (None: none did)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarise(per_checkpoint: Sequence[dict[str, dict]], hand: dict[str, dict],
              arms: Sequence[str]) -> dict[str, Any]:
    """Per arm and variant: mean and sd over checkpoints of the median error and within-%;
    ``encoder_minus_random_encoder``: the paired differences per checkpoint."""
    summary: dict[str, Any] = {}
    for arm in arms:
        runs = [hand[arm]] if arm in hand else [c[arm] for c in per_checkpoint]
        summary[arm] = {variant: {key: _mean_sd([r[variant][key] for r in runs])
                                  for key in ("median_error_deg", "within_pct")}
                        for variant in VARIANTS}
    if {"encoder", "random_encoder"} <= set(arms) and per_checkpoint:
        summary["encoder_minus_random_encoder"] = {
            variant: {key: _mean_sd([_difference(c["encoder"][variant][key],
                                                 c["random_encoder"][variant][key])
                                     for c in per_checkpoint])
                      for key in ("median_error_deg", "within_pct")}
            for variant in VARIANTS}
    return summary


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ----------------------------------------------------------------------------- entry point

def run(cfg: DirectionRun) -> Path:
    """Run every arm on every checkpoint; write ``eval_direction.json`` and return its path."""
    protocol = cfg.protocol
    unknown = sorted(set(protocol.arms) - set(ARMS))
    if unknown or not protocol.arms:
        raise ConfigError(f"protocol.arms: expected a non-empty subset of {list(ARMS)}, got "
                          f"{list(protocol.arms)}")
    if not protocol.penalties or min(protocol.penalties) <= 0:
        raise ConfigError(f"protocol.penalties: expected positive numbers, got "
                          f"{list(protocol.penalties)}")
    if not cfg.data_dir:
        raise ConfigError("data_dir: expected a STARSS23(-layout) folder (`python -m "
                          "pipeline.synth.cli starss23 --out DIR` writes a synthetic one), "
                          "got none")
    root = Path(cfg.data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir: {root} is not a folder")
    protocol.readout.validate()
    checkpoints = checkpoints_of(cfg)
    arms = list(protocol.arms)
    if not checkpoints and set(arms) & set(ENCODER_ARMS):
        log.warning("no checkpoint: only the hand-made arms run")
        arms = [a for a in arms if a not in ENCODER_ARMS]
        if not arms:
            raise ConfigError("no checkpoint and no foa_iv or log_mel arm: nothing to evaluate")
    class_names, synthetic = class_names_of(root)
    data, problems = load_recordings(root, len(class_names))
    for problem in problems:
        log.warning("skipped: %s", problem)
    n_train = sum(d.recording.is_train for d in data)
    if n_train == 0 or n_train == len(data):
        raise ValueError(f"{root}: expected recordings in both dev-train-* and dev-test-*, got "
                         f"{n_train} train and {len(data) - n_train} test")

    hand_arms = [a for a in arms if a not in ENCODER_ARMS]
    encoder_arms = [a for a in arms if a in ENCODER_ARMS]
    hand: dict[str, dict] = {}
    if hand_arms:
        compute_inputs(root, data, hand_arms, None, None, protocol.readout)
        hand = {arm: evaluate_arm(data, arm, protocol) for arm in hand_arms}
    per_checkpoint: list[dict[str, Any]] = []
    models = []
    for index, ckpt in enumerate(checkpoints):
        frozen = load_frozen(ckpt, cfg.device, cfg.norm_stats or None)
        seed = RANDOM_ENCODER_SEED_OFFSET + protocol.random_seed + index
        random_model = random_frozen(frozen, seed) if "random_encoder" in arms else None
        compute_inputs(root, data, encoder_arms, frozen, random_model, protocol.readout)
        scores = {arm: evaluate_arm(data, arm, protocol) for arm in encoder_arms}
        per_checkpoint.append({"checkpoint": ckpt, "random_encoder_seed": seed, **scores})
        models.append(describe_run(frozen, ckpt))
        for item in data:                      # free this checkpoint's (large) inputs
            for arm in encoder_arms:
                item.inputs.pop(arm, None)
        del frozen, random_model
    for arm, scores in hand.items():
        _log_arm(arm, scores)
    for entry in per_checkpoint:
        for arm in encoder_arms:
            _log_arm(f"{arm} ({entry['checkpoint']})", entry[arm])

    if cfg.out:
        out = Path(cfg.out)
    elif len(checkpoints) == 1:
        out = run_dir_of(checkpoints[0]) / RESULT_NAME
    elif checkpoints:
        out = (run_dir_of(checkpoints[0]).parent
               / f"eval_direction_{len(checkpoints)}_checkpoints.json")
    else:
        out = Path("runs/direction_baselines") / RESULT_NAME
    test = [d for d in data if not d.recording.is_train]
    train = [d for d in data if d.recording.is_train]
    result: dict[str, Any] = {
        "task": "direction",
        "dataset": ("SYNTHETIC STARSS23-layout set" if synthetic else "STARSS23 development set"),
        "synthetic": synthetic,
        "data_dir": str(root),
        "problems": problems,
        "recordings": {"train": len(train), "test": len(test)},
        "frames": _frame_counts(train, test),
        "variants": {
            "single_source": "frames with one active event; error to its direction",
            "two_sources": "frames with exactly two active events; the single-source probe's "
                           "error to the nearer of the two"},
        "probe": "ridge regression on standardised inputs to the unit (x, y, z) vector, "
                 "normalised at prediction; penalty chosen on a validation part of dev-train",
        "arms": arms,
        "checkpoints": checkpoints,
        "hand_features": hand,
        "per_checkpoint": per_checkpoint,
        "summary": summarise(per_checkpoint, hand, arms),
        "models": models,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    _print_table(result)
    return out


def _frame_counts(train: Sequence[RecordingData], test: Sequence[RecordingData]
                  ) -> dict[str, int]:
    def count(items: Sequence[RecordingData], n_events: int) -> int:
        total = 0
        for item in items:
            per_frame: dict[int, int] = {}
            for row in item.rows:
                if row.frame < item.n_frames:
                    per_frame[row.frame] = per_frame.get(row.frame, 0) + 1
            total += sum(1 for n in per_frame.values() if n == n_events)
        return total
    return {"train_single_source": count(train, 1), "test_single_source": count(test, 1),
            "test_two_sources": count(test, 2)}


def _log_arm(name: str, scores: dict[str, Any]) -> None:
    single, two = scores["single_source"], scores["two_sources"]
    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"
    log.info("%s: single source median %s deg, %s %% within; two sources median %s deg "
             "(penalty %g x D)", name, fmt(single["median_error_deg"]),
             fmt(single["within_pct"]), fmt(two["median_error_deg"]), scores["penalty"])


def _print_table(result: dict) -> None:
    n_ckpt = len(result["checkpoints"])
    print(f"Direction probe on the {result['dataset']} ({result['frames']['test_single_source']}"
          f" single-source and {result['frames']['test_two_sources']} two-source test frames, "
          f"{n_ckpt} checkpoint(s){'; mean ± sd over them' if n_ckpt > 1 else ''})")
    print(f"  {'arm':<30} {'median err deg':>15} {'within 20° %':>14} {'2 src: median':>15} "
          f"{'2 src: within %':>16}")
    summary = result["summary"]
    rows = list(result["arms"])
    if "encoder_minus_random_encoder" in summary:
        rows.append("encoder_minus_random_encoder")
    for arm in rows:
        s = summary[arm]

        def cell(variant: str, key: str) -> str:
            mean, sd = s[variant][key]["mean"], s[variant][key]["sd"]
            if mean is None:
                return "–"
            return f"{mean:.1f}±{sd:.1f}" if n_ckpt > 1 else f"{mean:.1f}"
        print(f"  {arm:<30} {cell('single_source', 'median_error_deg'):>15} "
              f"{cell('single_source', 'within_pct'):>14} "
              f"{cell('two_sources', 'median_error_deg'):>15} "
              f"{cell('two_sources', 'within_pct'):>16}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(DirectionRun, run, argv, name="direction",
                         description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
