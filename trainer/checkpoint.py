"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts only)::

    format_version  1
    model_args      AVSpatialModel constructor arguments (plain dict)
    config          the resolved TrainConfig as a plain dict
    model           model state_dict
    optimizer       optimizer state_dict
    scaler          GradScaler state_dict (AMP on CUDA; empty otherwise)
    epoch           next epoch to run (the run finished epochs 0..epoch-1)
    step            optimizer steps taken so far
    phase           curriculum phase of the last finished epoch
    rng_states      one entry per rank: torch CPU, CUDA, numpy and python generator states
    history         the logged metric rows so far (for curves of a resumed run)
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import from_dict
from trainer.config import TrainConfig
from trainer.models import AVSpatialModel

FORMAT_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """This process's generator states as weights_only-safe values."""
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [bit_generator, torch.from_numpy(keys.astype(np.int64)), int(position),
                  int(has_gauss), float(cached_gaussian)],
        "python": [version, list(python_state), gauss_next],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    bit_generator, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((bit_generator, keys.numpy().astype(np.uint32), position, has_gauss,
                         cached_gaussian))
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {version}, this code reads {FORMAT_VERSION}")
    return checkpoint


def load_trained_model(ckpt_path: str | Path, device: str | torch.device = "cpu",
                       checkpoint: dict[str, Any] | None = None
                       ) -> tuple[AVSpatialModel, TrainConfig]:
    """The trained model (eval mode, on ``device``) and the config it was trained with
    (``checkpoint``: the file's contents when the caller has read them already)."""
    checkpoint = checkpoint or load_checkpoint(ckpt_path, map_location="cpu")
    # Checkpoints written before the authors' heads and transformer layers (no such arguments)
    # had shared heads, no output ReLU and the layers under ``<net>.transformer.layers``.
    model_args = {"separate_prediction_heads": False, "transformer_output_relu": False,
                  **checkpoint["model_args"]}
    model = AVSpatialModel(**model_args)
    state = {key.replace(".transformer.layers.", ".layers."): value
             for key, value in checkpoint["model"].items()}
    model.load_state_dict(state)
    config_dict = checkpoint["config"]
    model_cfg = config_dict.get("model", {})
    for key in ("separate_prediction_heads", "transformer_output_relu"):
        model_cfg.setdefault(key, model_args[key])
    config = from_dict(TrainConfig, config_dict)
    return model.to(device).eval(), config
