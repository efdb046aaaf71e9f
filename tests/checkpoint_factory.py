"""A random-init trainer checkpoint for the evaluation tests (the shards they read come from
``pipeline/synth/shard_factory.py``)."""

from __future__ import annotations


def random_checkpoint(path, feature_dim: int = 32) -> str:
    """A trainer checkpoint of a random-init tiny model with FOA audio input (what
    ``trainer.checkpoint.load_trained_model`` reads)."""
    import torch

    from pipeline.config import from_dict, to_dict
    from trainer.checkpoint import save_checkpoint
    from trainer.config import TrainConfig
    from trainer.models import build_model, model_args_from_config

    cfg = from_dict(TrainConfig, {"model": {"preset": "tiny", "feature_dim": feature_dim}})
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.audio_channels)
    save_checkpoint(path, {"model_args": model_args_from_config(cfg.model, cfg.data.audio_channels),
                           "config": to_dict(cfg), "model": model.state_dict(), "optimizer": {},
                           "scaler": {}, "epoch": 0, "step": 0, "phase": "avc",
                           "rng_states": [], "history": []})
    return str(path)
