"""Train the Owens & Efros (2018) multisensory baseline from the project's shards.

    python -m baselines.multisensory.train --config configs/baselines/multisensory.yaml
    python -m baselines.multisensory.train --config configs/baselines/separation.yaml \
        separation.pretrained=runs/multisensory/ckpt.pt

``task: sync`` trains the fused network to tell synchronised from shifted audio (balanced
BCE, :mod:`baselines.multisensory.data`), then scores the held-out split: sync accuracy
(chance 50 %) and CAM localisation against the synthetic ground truth. ``task: separation``
trains, on the same mixtures and in the same loop, an audio-visual u-net (fed the fused
network, optionally pretrained by a sync run) and an audio-only u-net, then scores both.

The run folder ``<run.out_dir>/<run.name or experiment>/`` gets ``config.yaml`` (resolved),
``metrics.csv``, ``ckpt.pt`` (:func:`save_run_checkpoint`) and the results JSON read by the
results table: ``eval_sync.json`` + ``eval_localize.json`` (+ ``cam_examples.png``), or
``eval_separation.json``. ``run.time_budget_s`` stops training early (then evaluates), for
CPU recipes that must finish in minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import dump_config, load_config, save_config, to_dict
from baselines.multisensory.cam import evaluate_sync_and_cam, save_cam_figure
from baselines.multisensory.config import MultisensoryConfig
from baselines.multisensory.data import SyncStream, make_loader
from baselines.multisensory.model import FusedNet, sync_labels, sync_logits
from trainer.distributed import resolve_device
from trainer.metrics import MetricsLog
from trainer.train import clear_replaced_run, learning_rate, refuse_to_replace_run
from baselines.multisensory.separation import (SeparationModel, evaluate_separation, make_mixtures,
                                               separation_loss)

log = logging.getLogger("baselines.multisensory.train")

CHECKPOINT_FORMAT = "multisensory-v1"
METRIC_COLUMNS = ("step", "epoch", "split", "loss", "bce", "acc", "loss_audio_visual",
                  "loss_audio_only", "lr", "grad_norm", "step_ms", "clips_per_s")
SYNC_JSON, LOCALIZE_JSON, SEPARATION_JSON = ("eval_sync.json", "eval_localize.json",
                                             "eval_separation.json")


# ----------------------------------------------------------------------------- checkpoints

def save_run_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary name, then an atomic rename. The payload holds plain
    values only (loadable with ``weights_only=True``): format, task, model_args, config,
    models (name -> state_dict), optimizer, epoch, step, history."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_fused_net(path: str | Path) -> tuple[FusedNet, dict[str, Any]]:
    """The fused network of a sync run's checkpoint (eval mode, CPU) and its config dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sync checkpoint not found: {path} (train one with "
                                f"configs/baselines/multisensory.yaml)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT or "fused" not in checkpoint.get("models", {}):
        models = list(checkpoint.get("models", {}))
        raise ValueError(f"{path}: not a multisensory sync checkpoint (format "
                         f"{checkpoint.get('format')!r}, models {models})")
    model = FusedNet(**checkpoint["model_args"])
    model.load_state_dict(checkpoint["models"]["fused"])
    return model.eval(), checkpoint["config"]


# ----------------------------------------------------------------------------- model and steps

def build_models(cfg: MultisensoryConfig, example: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """``{"fused": FusedNet}`` for sync; ``{"audio_visual", "audio_only"}`` u-nets for
    separation (shapes from one example of the training split)."""
    model_args = {"audio_channels": cfg.data.audio_channels, "preset": cfg.model.preset}
    if cfg.task == "sync":
        return {"fused": FusedNet(**model_args)}
    sep = cfg.separation
    if sep.pretrained:
        fused, fused_cfg = load_fused_net(sep.pretrained)
        if fused.audio_channels != cfg.data.audio_channels:
            raise ValueError(f"{sep.pretrained}: fused network takes {fused.audio_channels} "
                             f"audio channel(s), data.audio gives {cfg.data.audio_channels}")
        log.info("fused network from %s (preset %s)", sep.pretrained, fused.preset)
    else:
        fused = FusedNet(**model_args)
    n_samples = example["audio_pos"].shape[-1]
    probe = (example["video"].shape[1], example["video"].shape[-1])
    return {"audio_visual": SeparationModel(sep, n_samples, fused, probe, sep.freeze_fused),
            "audio_only": SeparationModel(sep, n_samples)}


def sync_step(models, batch, device) -> tuple[torch.Tensor, dict[str, float]]:
    """Balanced BCE over B positives and B negatives, and the pair accuracy."""
    logits = sync_logits(models["fused"], batch["video"].to(device), batch["audio_pos"].to(device),
                         batch["audio_neg"].to(device))
    labels = sync_labels(batch["video"].shape[0], device)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits > 0).float() == labels).float().mean()
    return loss, {"bce": float(loss.detach()), "acc": float(accuracy)}


def separation_step(models, batch, device):
    """Both u-nets on the same mixtures, each with its own loss kind; the total is the sum
    (no shared parameters, so each trains as if alone)."""
    video = batch["video"].to(device)
    parts = make_mixtures(batch["audio_pos"].to(device))
    losses = {}
    for name, model in models.items():
        out = model(parts["mix"], video)
        target = model.target_magnitudes(parts["on"], parts["off"])
        losses[name] = separation_loss(model.loss_kind, out["magnitudes"], target,
                                       model.power).mean()
    return sum(losses.values()), {f"loss_{k}": float(v.detach()) for k, v in losses.items()}


# ----------------------------------------------------------------------------- small helpers

def write_json(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/baselines/*.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-3")
    parser.add_argument("--debug", action="store_true", help="traceback of an error")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    # ---------------------------------------------------------------- config
    args = parse_args(argv)
    cfg = load_config(MultisensoryConfig, args.config, args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    device = resolve_device(cfg.run.device)
    if cfg.run.num_threads > 0:
        torch.set_num_threads(cfg.run.num_threads)
    run_dir = Path(cfg.run.out_dir) / (cfg.run.name or cfg.experiment)
    refuse_to_replace_run(run_dir, cfg.run.overwrite)   # checked before anything is written
    print(f"# resolved config ({args.config})\n{dump_config(cfg)}", flush=True)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    # ---------------------------------------------------------------- data
    data = cfg.data
    train_set = SyncStream(data.shards_dir, data.train_split, data, training=True,
                           seed=cfg.run.seed)
    val_set = SyncStream(data.shards_dir, data.val_split, data, training=False,
                         seed=cfg.run.seed, max_batches=cfg.eval.max_batches)
    if train_set.steps_per_epoch == 0 or val_set.n_samples == 0:
        raise ValueError(f"{data.shards_dir}: split '{data.train_split}' has "
                         f"{train_set.n_samples} samples (need >= {data.batch_size}) and "
                         f"'{data.val_split}' {val_set.n_samples} (need >= 1)")
    example = train_set.first_example()
    if cfg.run.overwrite:
        clear_replaced_run(run_dir)             # no evaluation outlives the model it scored
    save_config(cfg, run_dir / "config.yaml")   # every check passed: the run folder starts here
    train_loader = make_loader(train_set, data.num_workers)
    steps_per_epoch = train_set.steps_per_epoch
    if cfg.run.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, cfg.run.max_steps_per_epoch)

    # ---------------------------------------------------------------- models and optimizer
    models = build_models(cfg, example)
    for model in models.values():
        model.to(device)
    parameters = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    log.info("task %s: %s; %.3fM trainable parameters; %d train / %d held-out samples, "
             "%d steps/epoch, device %s", cfg.task, ", ".join(models),
             sum(p.numel() for p in parameters) / 1e6, train_set.n_samples, val_set.n_samples,
             steps_per_epoch, device)

    # ---------------------------------------------------------------- training loop
    metrics = MetricsLog(run_dir, columns=METRIC_COLUMNS, tensorboard=False)  # the trainer's
    history = metrics.rows
    step, epoch, started = 0, 0, time.perf_counter()
    total_steps = steps_per_epoch * cfg.run.epochs
    out_of_time = False
    for epoch in range(cfg.run.epochs):
        train_set.set_epoch(epoch)
        for model in models.values():
            model.train()
        sums: dict[str, float] = {}
        interval, interval_start = 0, time.perf_counter()
        batches = iter(train_loader)
        for _ in range(steps_per_epoch):
            batch = next(batches)
            lr = learning_rate(step, total_steps, cfg.optim)     # warm-up and schedule as trainer
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.task == "sync":
                loss, values = sync_step(models, batch, device)
            else:
                loss, values = separation_step(models, batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            if not np.isfinite(float(loss.detach())):
                raise FloatingPointError(f"non-finite loss {float(loss)} at step {step}; "
                                         f"lower optim.lr or check the shards")
            values.update(loss=float(loss.detach()), grad_norm=float(grad_norm))
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            interval += 1
            out_of_time = 0 < cfg.run.time_budget_s < time.perf_counter() - started
            if step % cfg.run.log_interval == 0 or out_of_time:
                elapsed = time.perf_counter() - interval_start
                row = {k: v / interval for k, v in sums.items()}
                row.update(step=step, epoch=epoch + 1, split="train", lr=lr,
                           step_ms=1000 * elapsed / interval,
                           clips_per_s=interval * data.batch_size / elapsed)
                log.info("epoch %d step %d loss %.4f %s| %.0f ms/step, %.1f clips/s", epoch + 1,
                         step, row["loss"], "".join(f"{k} {row[k]:.3f} " for k in values
                                                     if k not in ("loss", "grad_norm")),
                         row["step_ms"], row["clips_per_s"])
                metrics.write(row)
                sums, interval, interval_start = {}, 0, time.perf_counter()
            if out_of_time:
                break
        del batches
        if out_of_time:
            log.info("time budget of %.0f s reached at step %d", cfg.run.time_budget_s, step)
            break
    train_seconds = time.perf_counter() - started

    # ---------------------------------------------------------------- checkpoint
    save_run_checkpoint(run_dir / "ckpt.pt", {
        "task": cfg.task, "config": to_dict(cfg),
        "model_args": {"audio_channels": cfg.data.audio_channels, "preset": cfg.model.preset},
        "models": {name: model.state_dict() for name, model in models.items()},
        "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "step": step,
        "history": history})

    # ---------------------------------------------------------------- held-out evaluation
    val_loader = make_loader(val_set, data.num_workers)
    common = {"experiment": cfg.experiment, "config_path": args.config,
              "synthetic": bool(example["has_gt"]), "split": data.val_split,
              "train_steps": step, "train_seconds": round(train_seconds, 1)}
    if cfg.task == "sync":
        threshold = np.radians(cfg.eval.hit_threshold_deg)
        scores = evaluate_sync_and_cam(models["fused"], val_loader, device, threshold,
                                       cfg.eval.n_cam_figures)
        write_json(run_dir / SYNC_JSON, {**common, **scores["sync"]})
        write_json(run_dir / LOCALIZE_JSON, {**common, "method": "cam", **scores["localisation"]})
        save_cam_figure(run_dir / "cam_examples.png", scores["figures"])
        result = {"sync": scores["sync"], "localisation": scores["localisation"]}
        log.info("held-out sync accuracy %.1f %% (chance 50 %%); CAM hit rate %s %% (centre %s "
                 "%%, chance %s %%) over %d clips in view", scores["sync"]["accuracy_pct"],
                 _fmt(scores["localisation"]["hit_rate_pct"]),
                 _fmt(scores["localisation"]["centre_hit_rate_pct"]),
                 _fmt(scores["localisation"]["chance_hit_rate_pct"]),
                 scores["localisation"]["n_in_view"])
    else:
        scores = evaluate_separation(models, val_loader, device)
        n_mixtures = scores.pop("n_mixtures")
        gain = {key: scores["audio_visual"][key] - scores["audio_only"][key]
                for key in ("sdri_on", "si_sdri_on", "sdri_pit", "si_sdri_pit")}
        result = {**scores, "improvement_over_audio_only_db": gain, "n_mixtures": n_mixtures}
        write_json(run_dir / SEPARATION_JSON, {**common, "loss_kind": {
                                                   name: m.loss_kind for name, m in models.items()},
                                               "pretrained": cfg.separation.pretrained,
                                               "units": "dB", **result})
        log.info("held-out separation over %d mixtures: SI-SDRi (best assignment) audio-visual "
                 "%.2f dB vs audio-only %.2f dB; audio-visual on-screen output %.2f dB",
                 n_mixtures, scores["audio_visual"]["si_sdri_pit"],
                 scores["audio_only"]["si_sdri_pit"], scores["audio_visual"]["si_sdri_on"])
    return {"run_dir": str(run_dir), "step": step, "history": history, **result}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: :func:`main` with the shared error path (one ``error:`` line, exit
    code 2, ``--debug`` for the traceback)."""
    from pipeline.config import run_command

    return run_command(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
