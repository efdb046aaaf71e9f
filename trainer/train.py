"""Train audio-visual encoders by contrastive spatial alignment, streaming HDF5 shards.

    python -m trainer.train --config configs/experiments/avsa.yaml [dotted.key=value ...]
    torchrun --nproc_per_node=2 -m trainer.train --config configs/experiments/avsa.yaml

CPU recipe (minutes, on shards from ``pipeline/synth/shard_factory.py`` or the synthetic pipeline):

    python -m trainer.train --config configs/experiments/avsa.yaml model.preset=tiny \
        model.feature_dim=64 data.batch_size=8 curriculum.epochs=6 curriculum.switch_epoch=3

Curriculum (``curriculum.pretext``): ``avsa`` trains AVC (one viewpoint per clip) for
``switch_epoch`` epochs, then AVSA with the translation transformers, in the same run and from
the same encoders; ``avc`` and ``avts`` train one phase for all epochs. The run folder
``<run.out_dir>/<run.name or experiment>/`` gets ``config.yaml`` (the resolved config),
``metrics.csv``, ``curves.png`` and ``ckpt.pt`` (see ``trainer/checkpoint.py``);
``run.init_from=resume`` continues that run exactly from its last checkpoint (taken at the
end of an epoch). Under torchrun every rank streams its own shards and takes the same number
of steps; negatives are gathered from all ranks (``trainer/losses.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.config import (ConfigError, dump_config, from_dict, load_config, save_config,
                             to_dict)
from pipeline.locks import LOCK_NAME, folder_lock
from pipeline.shards import shard_settings
from trainer import distributed
from trainer.distributed import (available_memory_gib, cpu_has_amx_bf16, cpu_threads,
                                 resolve_device)
from trainer.checkpoint import (capture_rng_state, load_checkpoint, load_trained_model,
                                restore_rng_state, save_checkpoint)
from trainer.config import TEMPORAL_PRETEXTS, TRANSLATION_PHASES, OptimConfig, TrainConfig
from trainer.data import ShardStream, make_loader
from trainer.metrics import MetricsLog, plot_curves
from trainer.losses import LossTerms, avc_loss, avsa_loss, avts_loss, pooled_translation_loss
from trainer.models import build_model, model_args_from_config

__all__ = ["main", "load_trained_model", "phase_for_epoch"]

log = logging.getLogger("trainer.train")

# Keys that may differ between a run and its resumption without breaking exact continuation.
RESUME_MAY_CHANGE = {"run.init_from", "curriculum.epochs", "run.log_interval", "run.device",
                     "run.val_max_steps", "run.ckpt_interval_epochs", "run.overwrite"}
# Files that mark a folder as holding a run (a new run refuses to start over them).
RUN_FILES = ("config.yaml", "ckpt.pt", "metrics.csv")
# The demo's CPU recipe, suggested when the paper preset is started on a CPU.
CPU_RECIPE = ("model.preset=tiny model.feature_dim=64 model.video_input_size=56 "
              "model.video_input_frames=4 data.batch_size=8 optim.lr=1e-3 curriculum.epochs=10 "
              "curriculum.switch_epoch=6")


def phase_for_epoch(curriculum, epoch: int) -> str:
    """``avc`` during the first ``switch_epoch`` epochs of an ``avsa`` run, else the pretext."""
    if curriculum.pretext == "avsa" and epoch < curriculum.switch_epoch:
        return "avc"
    return curriculum.pretext


#: Peak resident memory of one paper-preset training step on the CPU, fp32, measured with
#: bench/gpu.py's step in a fresh process (AVC: 1.71 GiB at 2 clips, 2.74 at 8; AVSA with 4
#: viewpoints: 2.48 at 1 clip, 3.66 at 3): about 1.9 GiB plus 0.17 GiB per crop of the step.
PAPER_CPU_GIB_BASE, PAPER_CPU_GIB_PER_CROP = 1.9, 0.17


def curriculum_phases(cfg: TrainConfig) -> list[str]:
    """The phase of every epoch of the run, in order."""
    return [phase_for_epoch(cfg.curriculum, epoch) for epoch in range(cfg.curriculum.epochs)]


def windows_per_clip(cfg: TrainConfig) -> int:
    """Windows of one clip in a batch: >= 2 for the temporal pretexts (same-clip negatives)."""
    return cfg.data.avts_windows_per_clip if cfg.curriculum.pretext in TEMPORAL_PRETEXTS else 1


def views_per_clip(phase: str, data_cfg) -> int:
    """Viewpoints read per clip in ``phase``: K in the phases that translate, else 1."""
    return data_cfg.views_per_step if phase in TRANSLATION_PHASES else 1


def paper_cpu_memory_gib(cfg: TrainConfig, phases: Sequence[str]) -> tuple[float, int]:
    """The largest phase's crops per step and the paper preset's estimated peak memory for it on
    the CPU: ``(GiB, crops)``."""
    crops = max(phase_batch_size(phase, cfg.data)
                * (views_per_clip(phase, cfg.data) if phase in TRANSLATION_PHASES
                   else windows_per_clip(cfg))
                for phase in phases)
    return PAPER_CPU_GIB_BASE + PAPER_CPU_GIB_PER_CROP * crops, crops


def check_cpu_memory(cfg: TrainConfig, phases: Sequence[str],
                     available_gib: float | None) -> None:
    """Refuse, before the first step, a paper-preset CPU run whose steps need more memory than
    the machine has available (the authors' 112-clip AVC step: about 21 GiB), with the memory
    it needs and the ways out."""
    if cfg.model.preset != "paper" or available_gib is None:
        return
    need, crops = paper_cpu_memory_gib(cfg, phases)
    if need > available_gib:
        fits = max(1, int((available_gib - PAPER_CPU_GIB_BASE) / PAPER_CPU_GIB_PER_CROP))
        raise ConfigError(
            f"the paper preset's largest step ({crops} crops) needs about {need:.0f} GiB on the "
            f"CPU (measured: {PAPER_CPU_GIB_BASE} GiB + {PAPER_CPU_GIB_PER_CROP} GiB per crop); "
            f"this machine has {available_gib:.1f} GiB available. Use steps of at most {fits} "
            f"crops (data.avc_batch_size, data.batch_size x data.views_per_step), a GPU, or the "
            f"CPU recipe: {CPU_RECIPE}")


def phase_batch_size(phase: str, data) -> int:
    """Clips per step of a phase: ``data.avc_batch_size`` single crops in the AVC phase (the
    authors' InstDisc stage reads 112), else ``data.batch_size``; 0 = ``batch_size``."""
    if phase == "avc" and data.avc_batch_size > 0:
        return data.avc_batch_size
    return data.batch_size


def autocast_dtype_for(precision: str, device: torch.device,
                       cpu_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of ``optim.precision`` on ``device`` (None: plain fp32). ``auto`` is
    bf16 on CUDA (the range of fp32, so no loss scaling) and on CPUs that multiply bf16 in
    hardware (AMX, read from the CPU flags; ``cpu_bf16`` overrides the check), where the tiny
    step ran 1.66-1.73x faster and eight pretraining seeds per precision of the demo's AVC model
    scored the same within their spread (docs/RESULTS.md, bf16 on the CPU); fp32 on other CPUs."""
    if precision == "auto":
        if device.type == "cpu" and cpu_bf16 is None:
            cpu_bf16 = cpu_has_amx_bf16()
        precision = "bf16" if device.type == "cuda" or cpu_bf16 else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def learning_rate(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total_steps``: linear
    warm-up over ``warmup_steps``, then ``optim.schedule`` (constant or cosine decay)."""
    lr = optim.lr * min(1.0, (step + 1) / max(1, optim.warmup_steps))
    if optim.schedule == "cosine":
        decay_steps = max(1, total_steps - optim.warmup_steps - 1)
        progress = min(1.0, max(0.0, (step - optim.warmup_steps) / decay_steps))
        floor = optim.min_lr_ratio
        lr *= floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * progress))
    return float(lr)


def compute_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any], phase: str,
                 cfg: TrainConfig) -> LossTerms:
    """The phase's loss terms from model outputs (B, K, E). AVC/AVTS batches hold K = 1."""
    tau = cfg.loss.temperature
    if phase == "avc":
        return avc_loss(outputs["video"][:, 0], outputs["audio"][:, 0], tau)
    if phase == "avts":
        return avts_loss(outputs["video"][:, 0], outputs["audio"][:, 0], batch["clip_index"], tau)
    if phase in ("avc_transf", "avts_transf"):
        return pooled_translation_loss(
            outputs["video"], outputs["audio"], outputs["video_from_audio"],
            outputs["audio_from_video"], tau, phase.split("_")[0],
            batch["clip_index"] if phase == "avts_transf" else None)
    terms = LossTerms()
    terms.update(avsa_loss(outputs["video"], outputs["audio"], outputs["video_from_audio"],
                           outputs["audio_from_video"], tau, cfg.loss.avsa_candidates),
                 cfg.loss.avsa_weight)
    if cfg.loss.avc_weight_in_avsa > 0:   # optional AVC term on each clip's first viewpoint
        terms.update(avc_loss(outputs["video"][:, 0], outputs["audio"][:, 0], tau),
                     cfg.loss.avc_weight_in_avsa)
    return terms


def flatten_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def check_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to start where a run would be lost or resumed from nothing (before any write)."""
    ckpt = run_dir / "ckpt.pt"
    if cfg.run.init_from == "resume":
        if not ckpt.is_file():
            started = any((run_dir / name).exists() for name in RUN_FILES)
            raise FileNotFoundError(
                f"{ckpt}: no checkpoint to resume from; " + (
                    "the run stopped before its first checkpoint: start it over with "
                    "run.overwrite=true (without run.init_from=resume)" if started else
                    "start the run without run.init_from=resume"))
        return
    refuse_to_replace_run(run_dir, cfg.run.overwrite,
                          how_to_continue=("continue it with run.init_from=resume, "
                                           if ckpt.is_file() else ""))


def refuse_to_replace_run(run_dir: Path, overwrite: bool, how_to_continue: str = "") -> None:
    """A :class:`ConfigError` when ``run_dir`` already holds a run's files and ``overwrite`` is
    off; ``how_to_continue`` (e.g. the resume override) is named first among the ways out."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{run_dir}: already holds a run ({', '.join(existing)}); "
                          f"{how_to_continue}replace it with run.overwrite=true, or choose "
                          f"another run.name")


def clear_replaced_run(run_dir: Path) -> None:
    """Empty a run folder that ``run.overwrite=true`` replaces: its checkpoint, metrics and
    every evaluation of the old model (JSONs, caches, localisation maps, plots) go, so that
    ``make results`` can never report them as the new model's. Only a folder holding a run's
    files (:data:`RUN_FILES`) is touched."""
    if not any((run_dir / name).exists() for name in RUN_FILES):
        return
    entries = sorted(p for p in run_dir.iterdir() if p.name != LOCK_NAME)   # ours: kept
    log.warning("run.overwrite=true: removing the previous run in %s (%d entries: %s)",
                run_dir, len(entries), ", ".join(p.name for p in entries[:8]))
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def format_duration(seconds: float) -> str:
    """``1 h 02 min`` / ``3 min 05 s`` / ``12 s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="experiment YAML (configs/experiments/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train one run; returns its folder, step count, checkpoint and metric rows. Errors
    propagate (tests and callers see them); ``cli`` turns known ones into one line."""
    args = parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    run_dir = Path(cfg.run.out_dir) / (cfg.run.name or cfg.experiment)
    check_run_dir(run_dir, cfg)                  # nothing is written before the checks pass
    if resolve_device(cfg.run.device).type == "cpu":
        check_cpu_memory(cfg, curriculum_phases(cfg), available_memory_gib())
    # One trainer per run folder: a second one (even with run.overwrite=true) is refused with
    # the holder named; a lock left by a killed run is cleared. Under torchrun rank 0 holds it.
    first_rank = os.environ.get("RANK", "0") == "0"
    with folder_lock(run_dir, "training") if first_rank else contextlib.nullcontext():
        return train_run(cfg, run_dir, args.config)


@dataclass
class RunContext:
    """What every part of a run reads: the config, the processes, the precision."""

    cfg: TrainConfig
    run_dir: Path
    dist_info: Any
    autocast_dtype: torch.dtype | None

    @property
    def device(self) -> torch.device:
        return self.dist_info.device

    @property
    def master(self) -> bool:
        return self.dist_info.is_master

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "ckpt.pt"


@dataclass
class RunData:
    """The run's streams: one training stream and loader per batch size (the AVC phase may
    read more single-crop clips per step than the AVSA phase reads clips of K crops), the
    validation stream, and the training shards' settings recorded in every checkpoint."""

    phases: list[str]
    train_sets: dict[int, ShardStream]
    loaders: dict[int, Any]
    val_set: ShardStream
    val_loader: Any
    trained_on: dict[str, Any]

    def train_set(self, phase: str, data_cfg) -> ShardStream:
        return self.train_sets[phase_batch_size(phase, data_cfg)]

    def loader(self, phase: str, data_cfg) -> Any:
        return self.loaders[phase_batch_size(phase, data_cfg)]


@dataclass
class TrainState:
    """Where the run stands: the next epoch, optimizer steps taken, the metric rows."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def start_processes(cfg: TrainConfig, run_dir: Path, config_path: str | None) -> RunContext:
    """Join the process group, set up logging, threads and precision, clear a replaced run
    (after every rank has checked the folder) and seed every generator."""
    dist_info = distributed.setup(cfg.run.device)
    # Under DDP every rank checks before any rank writes: rank 0 must not write config.yaml
    # while another rank is still looking at the run folder (it would refuse its own run).
    distributed.barrier()
    device, master = dist_info.device, dist_info.is_master
    logging.basicConfig(level=logging.INFO if master else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if master and cfg.run.overwrite and cfg.run.init_from != "resume":
        clear_replaced_run(run_dir)              # no evaluation outlives the model it scored
    if master:
        print(f"# resolved config ({config_path or 'defaults'})\n{dump_config(cfg)}", flush=True)
    threads = cpu_threads(cfg.data.num_workers) if device.type == "cpu" else None
    if threads is not None:
        torch.set_num_threads(threads)
        log.info("%d torch thread(s): %d core(s) less %d loader worker(s) (set OMP_NUM_THREADS "
                 "to choose)", threads, os.cpu_count() or 1, cfg.data.num_workers)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast_dtype = autocast_dtype_for(cfg.optim.precision, device)
    if device.type == "cpu" and cfg.optim.precision == "auto" and autocast_dtype is not None:
        log.info("this CPU multiplies bf16 in hardware (AMX): optim.precision=auto trains in "
                 "bf16 autocast (optim.precision=fp32 to turn it off; docs/RESULTS.md, bf16 on "
                 "the CPU)")
    # Same initial weights on every rank; then a distinct random stream per rank (dropout).
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)
    return RunContext(cfg, run_dir, dist_info, autocast_dtype)


def open_data(ctx: RunContext) -> RunData:
    """Streams and loaders of the run, checked before the first step (enough samples for a
    step, a viewpoint bank large enough for every phase that reads K viewpoints)."""
    cfg, dist_info = ctx.cfg, ctx.dist_info
    stream = dict(data_cfg=cfg.data, windows_per_clip=windows_per_clip(cfg), seed=cfg.run.seed,
                  rank=dist_info.rank, world_size=dist_info.world_size)
    pin = ctx.device.type == "cuda"
    phases = curriculum_phases(cfg)
    train_sets: dict[int, ShardStream] = {}
    loaders: dict[int, Any] = {}
    for batch_size in sorted({phase_batch_size(phase, cfg.data) for phase in phases}):
        train_sets[batch_size] = ShardStream(cfg.data.shards_dir, cfg.data.train_split,
                                             training=True, batch_size=batch_size, **stream)
        if train_sets[batch_size].steps_per_epoch == 0:
            raise ValueError(f"split '{cfg.data.train_split}' in {cfg.data.shards_dir} has "
                             f"{train_sets[batch_size].n_units} samples per epoch, fewer than "
                             f"one step of {dist_info.world_size} rank(s) x {batch_size} clips")
        loaders[batch_size] = make_loader(train_sets[batch_size], cfg.data.num_workers, pin,
                                          cfg.run.seed)
    for phase in set(phases) & set(TRANSLATION_PHASES):   # a bank too small fails now, not
        train_sets[phase_batch_size(phase, cfg.data)].check_viewpoints(   # at the switch to AVSA
            cfg.data.views_per_step)
    val_set = ShardStream(cfg.data.shards_dir, cfg.data.val_split, training=False, **stream)
    trained_on = shard_settings(cfg.data.shards_dir)   # in every checkpoint, for the evaluators
    val_loader = make_loader(val_set, cfg.data.num_workers, pin, cfg.run.seed)
    return RunData(phases, train_sets, loaders, val_set, val_loader, trained_on)


def steps_in(phase: str, data: RunData, cfg: TrainConfig) -> int:
    """Optimizer steps of one epoch of ``phase`` (``run.max_steps_per_epoch`` caps them)."""
    steps = data.train_set(phase, cfg.data).steps_per_epoch
    return min(steps, cfg.run.max_steps_per_epoch) if cfg.run.max_steps_per_epoch else steps


def resume_state(ctx: RunContext, data: RunData, model, optimizer, scaler) -> TrainState:
    """The state of the run's last checkpoint, loaded into the model, optimizer and scaler,
    with every rank's random streams restored; refused when the config changed beyond
    :data:`RESUME_MAY_CHANGE` or the shards were rebuilt with other feature settings."""
    cfg, ckpt_path = ctx.cfg, ctx.ckpt_path
    checkpoint = load_checkpoint(ckpt_path)
    # Read back through the config class: keys renamed since the checkpoint was written compare
    # under their current names.
    saved = flatten_dict(to_dict(from_dict(TrainConfig, checkpoint["config"])))
    changed = [key for key, value in flatten_dict(to_dict(cfg)).items()
               if saved.get(key) != value and key not in RESUME_MAY_CHANGE]
    if changed:
        raise ConfigError(f"{ckpt_path}: cannot resume with a different config; changed "
                          f"keys {changed} (only {sorted(RESUME_MAY_CHANGE)} may change)")
    before = checkpoint.get("shards", {}).get("audio")
    if before is not None and before != data.trained_on.get("audio"):
        raise ConfigError(f"{ckpt_path}: the shards in {cfg.data.shards_dir} were rebuilt "
                          f"with other settings since this run started (preprocessing "
                          f"config hash {checkpoint['shards'].get('config_hash')} -> "
                          f"{data.trained_on.get('config_hash')}); start the run over with "
                          f"run.overwrite=true")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    rng_states = checkpoint["rng_states"]
    if len(rng_states) == ctx.dist_info.world_size:
        restore_rng_state(rng_states[ctx.dist_info.rank])
    else:
        log.warning("checkpoint has RNG states of %d ranks, running %d: not restored",
                    len(rng_states), ctx.dist_info.world_size)
    log.info("resumed %s at epoch %d, step %d", ckpt_path, checkpoint["epoch"],
             checkpoint["step"])
    return TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["history"])


def forward_loss(ctx: RunContext, net, batch: dict[str, Any], phase: str) -> LossTerms:
    """The phase's loss terms for one batch, under the run's autocast."""
    dtype = ctx.autocast_dtype
    with torch.autocast(ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = net(batch["video"], batch["audio"], batch["azimuth_rad"],
                      batch["elevation_rad"], translate=phase in TRANSLATION_PHASES)
    return compute_loss(outputs, batch, phase, ctx.cfg)


def reduce_terms(terms: LossTerms) -> dict[str, float]:
    """Mean over ranks of the loss, its terms and accuracies (one collective)."""
    names = ["loss", *terms.losses, *(f"acc_{k}" for k in terms.accuracies)]
    values = torch.stack([terms.total().detach(), *[v.detach() for v in terms.losses.values()],
                          *terms.accuracies.values()])
    return dict(zip(names, distributed.all_reduce_mean(values).tolist()))


class StepLog:
    """The timing and logging bookkeeping of the training steps: sums over the steps since the
    last row, busy and data-wait time, the projected end after the first steps, and one
    metrics row (and log line) every ``run.log_interval`` steps and at the end of an epoch."""

    def __init__(self, ctx: RunContext, metrics: MetricsLog | None, first_step: int,
                 total_steps: int):
        self.ctx, self.metrics = ctx, metrics
        self.first_step, self.total_steps = first_step, total_steps
        self.run_started = time.perf_counter()
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps, self.busy_s, self.wait_s = 0, 0.0, 0.0

    def add(self, values: dict[str, float], step: int, t_wait: float, t_step: float,
            t_end: float, epoch: int, steps_left_in_epoch: int) -> None:
        """One finished step: its values, when its wait for data began, its compute began and
        it ended (``time.perf_counter``)."""
        self.busy_s += t_end - t_step
        self.wait_s += t_step - t_wait
        self.steps += 1
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        if step in (self.first_step, self.first_step + 2):     # console only, not metrics
            per_step = (t_end - self.run_started) / (step - self.first_step + 1)
            log.info("step %d took %.1f s (%s per step so far): epoch %d ends in ~%s, the run "
                     "(%d steps) in ~%s", step, t_end - t_wait, format_duration(per_step),
                     epoch + 1, format_duration(per_step * steps_left_in_epoch),
                     self.total_steps, format_duration(per_step * (self.total_steps - step)))

    def write_row(self, step: int, epoch: int, phase: str, lr: float, batch_size: int,
                  loss_names) -> None:
        """The mean of the steps since the last row, as a metrics row and a log line."""
        row = {k: v / self.steps for k, v in self.sums.items()}
        total_s = self.busy_s + self.wait_s
        row.update(step=step, epoch=epoch + 1, phase=phase, split="train", lr=lr,
                   step_ms=1000 * total_s / self.steps,
                   clips_per_s=self.steps * batch_size * self.ctx.dist_info.world_size / total_s,
                   data_wait_pct=100 * self.wait_s / total_s)
        terms_text = " ".join(f"{k} {row[k]:.3f}" for k in loss_names)
        eta_s = ((time.perf_counter() - self.run_started) / (step - self.first_step + 1)
                 * (self.total_steps - step))
        log.info("epoch %d step %d/%d [%s] loss %.4f (%s) | %.0f ms/step, %.1f clips/s, data "
                 "wait %.0f%% | run ends in ~%s", epoch + 1, step, self.total_steps, phase,
                 row["loss"], terms_text, row["step_ms"], row["clips_per_s"],
                 row["data_wait_pct"], format_duration(eta_s))
        if self.metrics is not None:
            self.metrics.write(row)
        self._reset()


def train_one_epoch(ctx: RunContext, data: RunData, state: TrainState, net, model, optimizer,
                    scaler, phase: str, step_log: StepLog) -> None:
    """One epoch of ``phase``: ``steps_in(phase)`` optimizer steps (learning-rate schedule,
    gradient clipping, a non-finite loss stops the run); advances ``state.step``."""
    cfg, epoch = ctx.cfg, state.epoch
    viewpoints = views_per_clip(phase, cfg.data)
    train_set, steps_per_epoch = data.train_set(phase, cfg.data), steps_in(phase, data, cfg)
    train_set.set_epoch(epoch, viewpoints, cfg.data.object_view_share
                        if phase in TRANSLATION_PHASES else 0.0)
    model.train()
    progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1} {phase}",
                    disable=None if ctx.master else True, leave=False, dynamic_ncols=True)
    batches = iter(data.loader(phase, cfg.data))
    for step_in_epoch in range(steps_per_epoch):
        t_wait = time.perf_counter()
        batch = to_device(next(batches), ctx.device)
        t_step = time.perf_counter()
        lr = learning_rate(state.step, step_log.total_steps, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        terms = forward_loss(ctx, net, batch, phase)
        loss = terms.total()
        values = reduce_terms(terms)            # same on every rank: all stop together
        if not np.isfinite(values["loss"]):
            raise FloatingPointError(
                f"non-finite loss {values['loss']} at step {state.step + 1} (epoch {epoch + 1}, "
                f"phase {phase}); terms {values}. Lower optim.lr or check the data.")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                   cfg.optim.grad_clip or float("inf"))
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        values["grad_norm"] = float(grad_norm)  # also waits for the device
        step_log.add(values, state.step, t_wait, t_step, time.perf_counter(), epoch,
                     steps_per_epoch - step_in_epoch - 1)
        progress.update(1)
        if state.step % cfg.run.log_interval == 0 or step_in_epoch == steps_per_epoch - 1:
            step_log.write_row(state.step, epoch, phase, lr, train_set.batch_size, terms.losses)
    progress.close()
    del batches


def validate(ctx: RunContext, data: RunData, model, phase: str, state: TrainState,
             metrics: MetricsLog | None) -> None:
    """The phase's loss on the same validation batches every epoch (``run.val_max_steps``)."""
    cfg = ctx.cfg
    model.eval()
    viewpoints = views_per_clip(phase, cfg.data)
    data.val_set.set_epoch(0, viewpoints)
    val_sums: dict[str, float] = {}
    n_val = min(data.val_set.steps_per_epoch, cfg.run.val_max_steps)
    with torch.no_grad():
        for _, batch in zip(range(n_val), data.val_loader):
            values = reduce_terms(forward_loss(ctx, model, to_device(batch, ctx.device), phase))
            for key, value in values.items():
                val_sums[key] = val_sums.get(key, 0.0) + value / n_val
    log.info("epoch %d validation [%s] loss %.4f over %d batches", state.epoch + 1, phase,
             val_sums["loss"], n_val)
    if metrics is not None:
        metrics.write({**val_sums, "step": state.step, "epoch": state.epoch + 1, "phase": phase,
                       "split": "val"})


def phase_network(ctx: RunContext, model, phase: str):
    """The network a phase trains: its translation networks train in the AVSA phases only,
    and under DDP a new wrapper sees which parameters are used."""
    for parameter in model.translation_parameters():
        parameter.requires_grad_(phase in TRANSLATION_PHASES)
    if not ctx.dist_info.is_distributed:
        return model
    return DistributedDataParallel(model, device_ids=[ctx.device.index]
                                   if ctx.device.type == "cuda" else None)


def train_run(cfg: TrainConfig, run_dir: Path, config_path: str | None = None) -> dict[str, Any]:
    """The run of :func:`main` once its folder is checked and held, top to bottom: processes,
    data, model, resume, the epochs (train, validate, checkpoint), the end of the run."""
    ctx = start_processes(cfg, run_dir, config_path)
    data = open_data(ctx)
    total_steps = sum(steps_in(phase, data, cfg) for phase in data.phases)

    model_args = model_args_from_config(cfg.model, cfg.data.audio_channels)
    model = build_model(cfg.model, cfg.data.audio_channels).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr,
                                 weight_decay=cfg.optim.weight_decay)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.autocast_dtype is torch.float16)
    torch.manual_seed(cfg.run.seed + 1000 * ctx.dist_info.rank + 1)
    state = (resume_state(ctx, data, model, optimizer, scaler)
             if cfg.run.init_from == "resume" else TrainState())
    if ctx.master:           # every check passed: the run folder is written from here on
        save_config(cfg, run_dir / "config.yaml")
    metrics = MetricsLog(run_dir, rows=state.history) if ctx.master else None
    log_run_start(ctx, data, model)

    step_log = StepLog(ctx, metrics, state.step + 1, total_steps)
    net, net_phase = model, None
    with logging_redirect_tqdm():
        for state.epoch in range(state.epoch, cfg.curriculum.epochs):
            phase = phase_for_epoch(cfg.curriculum, state.epoch)
            if phase != net_phase:
                net, net_phase = phase_network(ctx, model, phase), phase
            log.info("epoch %d/%d: phase %s (%d viewpoint(s) per clip)", state.epoch + 1,
                     cfg.curriculum.epochs, phase.upper(),
                     views_per_clip(phase, cfg.data))
            train_one_epoch(ctx, data, state, net, model, optimizer, scaler, phase, step_log)
            if cfg.run.val_max_steps > 0 and data.val_set.steps_per_epoch > 0:
                validate(ctx, data, model, phase, state, metrics)
            finished = state.epoch + 1 == cfg.curriculum.epochs
            if (state.epoch + 1) % cfg.run.ckpt_interval_epochs == 0 or finished:
                save_run_checkpoint(ctx, data, state, phase, model, model_args, optimizer,
                                    scaler, metrics)
    return finish_run(ctx, state, metrics)


def log_run_start(ctx: RunContext, data: RunData, model) -> None:
    cfg = ctx.cfg
    train_set = data.train_set(data.phases[0], cfg.data)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.2fM parameters, %d audio channels; %d train samples (%d per epoch: "
             + ("%d clips x %d visits" % (train_set.n_clips, train_set.samples_per_clip)
                if train_set.samples_per_clip else "every window") + "), %d steps/epoch "
             "x %d rank(s), device %s%s", cfg.model.preset, n_params / 1e6,
             cfg.data.audio_channels, train_set.n_samples, train_set.n_units,
             steps_in(data.phases[0], data, cfg), ctx.dist_info.world_size, ctx.device,
             f", autocast {ctx.autocast_dtype}" if ctx.autocast_dtype is not None else ", fp32")
    if ctx.device.type == "cpu" and cfg.model.preset == "paper":
        log.warning("the paper preset (R(2+1)D-18, %d clips x %d viewpoints per step) on a CPU "
                    "takes seconds to minutes per step; the time of the first step and the "
                    "projected run follow. For a CPU run use the demo's recipe: make train "
                    "EXP=%s ARGS=\"%s\"", cfg.data.batch_size, cfg.data.views_per_step,
                    cfg.experiment, CPU_RECIPE)


def save_run_checkpoint(ctx: RunContext, data: RunData, state: TrainState, phase: str, model,
                        model_args, optimizer, scaler, metrics: MetricsLog | None) -> None:
    """The end-of-epoch checkpoint: weights, optimizer, every rank's random streams, the
    metric rows and the training shards' settings (written by rank 0)."""
    rng_states = distributed.all_gather_object(capture_rng_state())
    if ctx.master:
        save_checkpoint(ctx.ckpt_path, {
            "model_args": model_args, "config": to_dict(ctx.cfg),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "epoch": state.epoch + 1, "step": state.step,
            "phase": phase, "rng_states": rng_states,
            "history": list(metrics.rows), "shards": data.trained_on})
        log.info("saved %s (epoch %d, step %d)", ctx.ckpt_path, state.epoch + 1, state.step)
    distributed.barrier()


def finish_run(ctx: RunContext, state: TrainState, metrics: MetricsLog | None) -> dict[str, Any]:
    """Close the metrics, plot the curves, leave the process group; the run's summary."""
    result = {"run_dir": str(ctx.run_dir), "step": state.step, "checkpoint": str(ctx.ckpt_path),
              "history": list(metrics.rows) if metrics is not None else []}
    if metrics is not None:
        metrics.close()
        curves = plot_curves(metrics.rows, ctx.run_dir / "curves.png",
                             title=str(ctx.run_dir.name))
        log.info("wrote %s", curves)
    distributed.cleanup()
    if ctx.master:
        log.info("==> run %s: %s, %s, %s, config.yaml", ctx.run_dir, ctx.ckpt_path.name,
                 "metrics.csv", "curves.png")
    return result


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: :func:`main` with the shared error path (one ``error:`` line, exit
    code 2, ``--debug`` for the traceback)."""
    from pipeline.config import run_command

    return run_command(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
