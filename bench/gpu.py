"""The paper preset's training step on a GPU: clips/s, step time split, peak memory.

    python bench/gpu.py                                  # CUDA, paper preset, bf16
    python bench/gpu.py --batch-sizes 28 56 --compile --channels-last
    python bench/gpu.py --device cpu --preset tiny --batch-sizes 4 --steps 2   # the CPU path

For each phase (AVC: one crop per clip; AVSA: K = 4 crops per clip and the translation
networks) and batch size it builds the model of the preset, makes one batch of the paper's input
shapes (crops 3 x 8 x 112 x 112, FOA log-mel 4 x 128 x 100; the tiny preset uses its CPU sizes)
in pinned host memory, and times full optimizer steps: the host-to-device copy of the batch (the
data wait a loader that keeps up still costs), the forward pass with the loss, and the backward
pass with the optimizer step. Precision as the trainer's ``optim.precision`` (bf16 autocast on
CUDA by default, no GradScaler); ``--channels-last`` puts the video in channels-last-3d memory
format; ``--compile`` wraps the model in ``torch.compile``. Only the trainer is imported (no
media decoding), so the script runs on a machine that has torch and this repository only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import ModelConfig, TrainConfig  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.train import autocast_dtype_for, compute_loss  # noqa: E402

# Input shapes per preset: (frames, crop size, mel bands, audio frames).
SHAPES = {"paper": (8, 112, 128, 100), "tiny": (4, 56, 128, 100)}


def make_batch(preset: str, batch_size: int, viewpoints: int, device: torch.device) -> dict:
    """One batch of random inputs in (pinned, when CUDA) host memory."""
    frames, crop, mels, audio_frames = SHAPES[preset]
    pin = device.type == "cuda"
    video = torch.rand(batch_size, viewpoints, 3, frames, crop, crop, pin_memory=pin)
    audio = torch.randn(batch_size, viewpoints, 4, mels, audio_frames, pin_memory=pin)
    angles = torch.zeros(batch_size, viewpoints, pin_memory=pin)
    return {"video": video, "audio": audio, "azimuth_rad": angles, "elevation_rad": angles,
            "clip_index": torch.arange(batch_size)}


def measure(preset: str, phase: str, batch_size: int, device: torch.device, precision: str,
            steps: int = 10, channels_last: bool = False, compile_model: bool = False) -> dict:
    """Mean seconds per step of each part (after one warm-up step), clips/s and peak memory."""
    feature_dim = 512 if preset == "paper" else 64
    cfg = TrainConfig(model=ModelConfig(preset=preset, feature_dim=feature_dim))
    model = build_model(cfg.model, 4).to(device).train()
    net = torch.compile(model) if compile_model else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = autocast_dtype_for(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    viewpoints = 4 if phase == "avsa" else 1
    host = make_batch(preset, batch_size, viewpoints, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals = {"data_wait_s": 0.0, "forward_s": 0.0, "backward_s": 0.0}
    losses = []
    for step in range(steps + 1):                        # step 0 warms up (and compiles)
        sync()
        t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in host.items()}
        if channels_last:
            b, k = batch["video"].shape[:2]
            batch["video"] = batch["video"].flatten(0, 1).contiguous(
                memory_format=torch.channels_last_3d).view_as(batch["video"])
        sync()
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = net(batch["video"], batch["audio"], batch["azimuth_rad"],
                          batch["elevation_rad"], translate=phase == "avsa")
        loss = compute_loss(outputs, batch, phase, cfg).total()
        sync()
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sync()
        t3 = time.perf_counter()
        losses.append(float(loss.detach()))
        if step > 0:
            totals["data_wait_s"] += t1 - t0
            totals["forward_s"] += t2 - t1
            totals["backward_s"] += t3 - t2
    per_step = {key: value / steps for key, value in totals.items()}
    step_s = sum(per_step.values())
    return {"preset": preset, "phase": phase, "batch_size": batch_size, "viewpoints": viewpoints,
            "device": str(device), "precision": str(dtype or torch.float32).replace("torch.", ""),
            "channels_last": channels_last, "compile": compile_model,
            **{key: round(value, 5) for key, value in per_step.items()},
            "step_s": round(step_s, 5), "clips_per_s": round(batch_size / step_s, 2),
            "crops_per_s": round(batch_size * viewpoints / step_s, 2),
            "peak_memory_gib": (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                                if device.type == "cuda" else None),
            "losses_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", choices=sorted(SHAPES), default="paper")
    parser.add_argument("--phases", nargs="+", choices=("avc", "avsa"), default=["avc", "avsa"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[28, 56, 112])
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("error: no CUDA device here; use --device cpu --preset tiny for the CPU path",
                  file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    rows = []
    print("| phase | batch | precision | data wait ms | forward ms | backward ms | clips/s | "
          "crops/s | peak GiB |\n|---|---|---|---|---|---|---|---|---|")
    for phase in args.phases:
        for batch_size in args.batch_sizes:
            try:
                row = measure(args.preset, phase, batch_size, device, args.precision, args.steps,
                              args.channels_last, args.compile)
            except torch.OutOfMemoryError:
                print(f"| {phase} | {batch_size} | out of memory |")
                torch.cuda.empty_cache()
                continue
            rows.append(row)
            print(f"| {phase} | {batch_size} | {row['precision']} | "
                  f"{1000 * row['data_wait_s']:.1f} | {1000 * row['forward_s']:.1f} | "
                  f"{1000 * row['backward_s']:.1f} | {row['clips_per_s']:.1f} | "
                  f"{row['crops_per_s']:.1f} | {row['peak_memory_gib']} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
