"""Trainer benchmark: can the shard loader feed the model?

    python -m bench.train [--steps 16] [--paper-steps 2] [--threads 1] [--out-dir DIR]

Writes factory shards (``pipeline/synth/shard_factory.py``) at two sizes into a temporary folder:
``tiny`` (32 px crops, 4 frames, 32 x 25 log-mel) and ``paper`` (112 px, 8 frames, 128 x 100,
the sizes of the real pipeline). Then measures, all in this process:

1. loader throughput (samples/s, K = 4 viewpoints, augmentation on) with 0, 1 and 2 workers,
   for both sizes;
2. the training loop (``trainer.train.main``, tiny preset, AVSA phase) with 0, 1 and 2 workers:
   clips/s, ms per step and the share of the step spent waiting for data;
3. the CPU training step in fp32 and in the precision ``optim.precision=auto`` picks (bf16
   autocast on CPUs with AMX), tiny and paper presets (R(2+1)D-18 + 9-layer audio CNN +
   transformers), AVC and AVSA phases; one optimizer step of the paper preset on CUDA when
   available (AMP fp16, the paper's 14 clips per GPU, peak memory).

Prints a Markdown table. Numbers depend on the machine and its load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import tempfile
import time
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.synth.shard_factory import make_shards  # noqa: E402
from trainer import train  # noqa: E402
from trainer.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from trainer.data import ShardStream, make_loader  # noqa: E402
from trainer.models import build_model  # noqa: E402

#: Shards that ``python bench/preprocess.py`` writes (rendered 360° scenes at the paper's sizes,
#: the default storage): crops of real-looking content, where the factory's are noise.
PREPROCESS_SHARDS = Path(__file__).resolve().parents[1] / "outputs" / "bench_preprocess" / "no_yolo"

SIZES = {"tiny": dict(crop_size=32, n_frames=4, n_mels=32, n_frames_audio=25),
         "paper": dict(crop_size=112, n_frames=8, n_mels=128, n_frames_audio=100)}


def loader_samples_per_s(shards_dir: Path, workers: int, n_batches: int, batch_size: int,
                         audio_input: str | None = None) -> float:
    """Samples per second through ``make_loader`` over ``n_batches`` batches, as many epochs
    as that takes; each epoch's first batch (worker start-up, shards opened) is left out."""
    cfg = DataConfig(batch_size=batch_size, views_per_step=4)
    if audio_input is not None:
        cfg = dataclasses.replace(cfg, audio_input=audio_input)
    dataset = ShardStream(shards_dir, "train", cfg)
    loader = make_loader(dataset, workers)
    n_read, n_counted, elapsed = 0, 0, 0.0
    while n_counted < n_batches:
        batches = iter(loader)
        if next(batches, None) is None:
            raise ValueError(f"{shards_dir}: no batch of {batch_size} samples")
        start, counted_before = time.perf_counter(), n_counted
        for batch in batches:
            n_read += batch["video"].shape[0]
            n_counted += 1
            if n_counted == n_batches:
                break
        elapsed += time.perf_counter() - start
        del batches                                  # its workers shut down outside the clock
        if n_counted == counted_before:
            raise ValueError(f"{shards_dir}: an epoch holds one batch of {batch_size} samples; "
                             "nothing left to time after its start-up")
    return n_read / elapsed


def loader_profile(shards_dir: Path, n_samples: int, audio_input: str = "foa_iv") -> dict:
    """Per-sample cost of the loader on one core (no worker processes), split into its parts:
    reading the K viewpoints' stored feature codes, reading + decoding the K crops, and the
    rest of ``ShardStream._load_sample`` (the crops' flip, uint8 -> float and colour jitter;
    the features' codes -> normalised float32 with the audio flip and gain; layout);
    milliseconds per sample, K = 4, augmentation on."""
    from trainer.data import ShardReader, epoch_rng

    cfg = DataConfig(batch_size=4, views_per_step=4, audio_input=audio_input)
    dataset = ShardStream(shards_dir, "train", cfg)
    paths = [str(p) for p in sorted(shards_dir.glob("train-*.h5"))]
    views = [0, 1, 2, 3]
    timings = {"features": 0.0, "crops": 0.0, "sample": 0.0}
    # Two passes with their own readers, so that neither reads a chunk the other has cached:
    # the whole sample first, then its parts.
    for part in ("sample", "parts"):
        reader = ShardReader("train", "random", dataset.feature_keys)
        work = [(path, row) for path in paths
                for row in range(int(reader.shard(path).attrs["n_samples"]))][:n_samples]
        if part == "sample":                    # warm-up on the last sample: the numba kernel
            dataset._load_sample(reader, *work[-1], epoch_rng(0, 0, 2, 0, 0, 0, 1))
            work = work[:-1]
        for index, (path, row) in enumerate(work):
            fields = reader.view_fields(path)         # the datasets the loader reads, opened once
            start = time.perf_counter()
            if part == "sample":
                dataset._load_sample(reader, path, row, epoch_rng(0, 0, 2, 0, 0, index, 0))
                timings["sample"] += time.perf_counter() - start
                continue
            for key in dataset.feature_keys:
                fields["features"][key].codes((row, views))
            timings["features"] += time.perf_counter() - start
            start = time.perf_counter()
            fields["crops"][row, views]
            timings["crops"] += time.perf_counter() - start
        reader.close()
    n = len(work)
    ms = {key: 1000.0 * value / n for key, value in timings.items()}
    ms["rest"] = ms["sample"] - ms["features"] - ms["crops"]
    return {"samples": n, "ms": ms, "samples_per_s_per_core": 1000.0 / ms["sample"]}


def training_run(shards_dir: Path, out_dir: Path, workers: int, steps: int) -> dict:
    """Tiny preset, AVSA phase, batch 8 x 4 viewpoints; the mean of the logged rows after
    the first (which holds start-up)."""
    logging.getLogger().setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):        # the resolved config
        result = train.main(["--config", "configs/experiments/avsa.yaml", "model.preset=tiny",
                             "model.feature_dim=64", "data.batch_size=8",
                             f"data.num_workers={workers}", f"data.shards_dir={shards_dir}",
                             f"run.out_dir={out_dir}", f"run.name=bench_w{workers}",
                             "curriculum.switch_epoch=0", "curriculum.epochs=1",
                             f"run.max_steps_per_epoch={steps}", "run.log_interval=4",
                             "run.val_max_steps=0"])
    rows = [r for r in result["history"] if r["split"] == "train"][1:]
    return {key: sum(r[key] for r in rows) / len(rows)
            for key in ("clips_per_s", "step_ms", "data_wait_pct")}


def model_step(preset: str, device: torch.device, batch_size: int, steps: int,
               amp: bool) -> dict:
    """Seconds per AVSA optimizer step on random inputs of the paper's sizes."""
    feature_dim = 512 if preset == "paper" else 64
    cfg = TrainConfig(model=ModelConfig(preset=preset, feature_dim=feature_dim))
    model = build_model(cfg.model, 4).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    size = SIZES["paper"]
    video = torch.rand(batch_size, 4, 3, size["n_frames"], size["crop_size"], size["crop_size"],
                       device=device)
    audio = torch.randn(batch_size, 4, 4, size["n_mels"], size["n_frames_audio"], device=device)
    angles = torch.zeros(batch_size, 4, device=device)
    batch = {"video": video, "audio": audio, "azimuth_rad": angles, "elevation_rad": angles}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps + 1):                       # the first step warms up
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            outputs = model(video, audio, angles, angles, translate=True)
        loss = train.compute_loss(outputs, batch, "avsa", cfg).total()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    step_s = sum(times[1:]) / steps
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"step_s": step_s, "clips_per_s": batch_size / step_s, "peak_gb": peak_gb}


def precision_rows(tiny_steps: int, paper_steps: int) -> list[tuple]:
    """The CPU training step in fp32 and in the precision ``optim.precision=auto`` picks on this
    CPU (bf16 autocast with AMX, else fp32), tiny (B = 8) and paper (B = 2) presets, AVC and
    AVSA phases, measured alternately in this process (``bench/gpu.py``'s step): one row each,
    the ratio against fp32 in the step column."""
    from bench.gpu import measure

    cpu = torch.device("cpu")
    rows = []
    for preset, batch_size, steps in (("tiny", 8, tiny_steps), ("paper", 2, paper_steps)):
        for phase in ("avc", "avsa"):
            fp32 = measure(preset, phase, batch_size, cpu, "fp32", steps)
            auto = measure(preset, phase, batch_size, cpu, "auto", steps)
            ratio = auto["clips_per_s"] / fp32["clips_per_s"]
            rows.append((f"{phase.upper()} step, {preset} preset, B={batch_size} (CPU), "
                         f"auto = {auto['precision']}", "-", f"{auto['clips_per_s']:.2f} clips/s",
                         f"{1000 * auto['step_s']:.0f} ms, {ratio:.2f}x fp32 "
                         f"({fp32['clips_per_s']:.2f} clips/s)", ""))
    return rows


def _ms_per_input(run, steps: int, batch_size: int) -> float:
    """Mean wall ms per input of ``run()`` over ``steps`` calls after one warm-up call."""
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * sum(times[1:]) / steps / batch_size


def _audio_batch(batch_size: int) -> torch.Tensor:
    """(B, 7, 128, 100): log-mel + FOA-IV channels at the paper's feature size."""
    size = SIZES["paper"]
    return torch.randn(batch_size, 7, size["n_mels"], size["n_frames_audio"])


def audio_layout_ratio(preset: str, batch_size: int, steps: int) -> dict:
    """Forward + backward ms per input of the audio CNN, NCHW (baseline: calling its layers
    directly) vs the channels-last forward."""
    from trainer.models import AudioEncoder
    encoder = AudioEncoder(7, 512 if preset == "paper" else 128, preset).train()
    audio = _audio_batch(batch_size)
    runs = {"nchw": lambda: encoder.layers(audio).amax(dim=(2, 3)).sum().backward(),
            "channels_last": lambda: encoder(audio).sum().backward()}
    return {name: _ms_per_input(run, steps, batch_size) for name, run in runs.items()}


@torch.no_grad()
def audio_fusion_ratio(preset: str, batch_size: int, steps: int) -> dict:
    """Frozen-inference ms per input of the audio CNN: eval mode as trained (baseline) vs
    BatchNorm folded into the convolutions (trainer.models.fuse_batchnorm, what the evaluators
    load)."""
    import copy

    from trainer.models import AudioEncoder, fuse_batchnorm
    encoder = AudioEncoder(7, 512 if preset == "paper" else 128, preset).eval()
    fused = fuse_batchnorm(copy.deepcopy(encoder))
    audio = _audio_batch(batch_size)
    return {name: _ms_per_input(lambda: net(audio), steps, batch_size)
            for name, net in (("eval", encoder), ("fused", fused))}


def ratio_rows(what: str, ms: dict, baseline: tuple[str, str], ours: tuple[str, str],
               digits: int) -> list[tuple]:
    """Two table rows: the baseline's ms per input, then ours with its speed-up; ``baseline``
    and ``ours`` are ``(key in ms, label)``."""
    (base_key, base_label), (our_key, our_label) = baseline, ours
    return [(f"{what}, {base_label} (baseline)", "-", "", f"{ms[base_key]:.{digits}f} ms/input",
             ""),
            (f"{what}, {our_label} (ours)", "-", f"{ms[base_key] / ms[our_key]:.2f}x baseline",
             f"{ms[our_key]:.{digits}f} ms/input", "")]


def print_loader_profile(root: Path, target_samples_per_s: float) -> None:
    """The loader profile on paper-size shards written with the earlier storage (4 stored
    viewpoints, raw crops, float16 features, gzip 1) and with today's default (a bank of 16,
    JPEG crops, uint8 features, lzf); K = 4 drawn per sample either way. The factory's crops are
    noise, JPEG's worst case (decoding them cost 1.4-1.7x what the crops of a scene cost), so the
    default storage is also profiled on the shards of ``bench/preprocess.py`` when they exist."""
    import math

    print("| paper-size shards (112 px, 8 frames, 128 x 100, K = 4, foa_iv) | features ms | "
          "crops ms | rest ms | samples/s per core | the same in batches of 4 | "
          f"2 worker processes, batches of 4, samples/s | cores for {target_samples_per_s:.0f}/s |")
    print("|---|---|---|---|---|---|---|---|")
    variants = (("4 stored, raw crops, float16 + gzip 1 (earlier default), noise crops", 4,
                 "raw", "float16", "gzip"),
                ("bank of 16, JPEG crops, uint8 codes, lzf for the rest (default), noise crops",
                 16, "jpeg", "uint8", "lzf"))
    rows = []
    for label, stored, codec, feature_codec, compression in variants:
        shards = root / f"shards_paper_{stored}_{codec}_{feature_codec}_{compression}"
        if not (shards / "shards.jsonl").exists():
            make_shards(shards, n_clips=16, windows_per_clip=2, samples_per_shard=8, k=stored,
                        compression=compression, crop_codec=codec,
                        feature_codec=feature_codec, **SIZES["paper"])
        rows.append((label, shards))
    if (PREPROCESS_SHARDS / "norm_stats.json").exists():
        rows.append(("the same default, crops of rendered scenes (bench/preprocess.py's shards)",
                     PREPROCESS_SHARDS))
    for label, shards in rows:
        profile = loader_profile(shards, n_samples=32)
        ms = profile["ms"]
        rate = profile["samples_per_s_per_core"]
        # The loader in this process, batches included (their assembly and the first touch of
        # their memory, which the per-sample figures leave out); one epoch, less the first batch.
        in_batches = loader_samples_per_s(shards, 0, n_batches=64, batch_size=4,
                                          audio_input="foa_iv")
        # The training path: worker processes, each batch in shared memory for the main one
        # (all cores of the machine together; 2 workers on 2 cores share them with it).
        in_workers = loader_samples_per_s(shards, 2, n_batches=40, batch_size=4,
                                          audio_input="foa_iv")
        print(f"| {label} | {ms['features']:.1f} | {ms['crops']:.1f} | {ms['rest']:.1f} | "
              f"{rate:.0f} | {in_batches:.0f} | {in_workers:.0f} | "
              f"{math.ceil(target_samples_per_s / in_batches)} |", flush=True)
    if len(rows) == len(variants):
        print(f"(no shards at {PREPROCESS_SHARDS}: run python bench/preprocess.py first for the "
              "row with the crops of rendered scenes)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="tiny training steps per run")
    parser.add_argument("--paper-steps", type=int, default=2, help="paper preset CPU steps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out-dir", default=None, help="keep shards and runs here")
    parser.add_argument("--loader-only", action="store_true",
                        help="only the per-sample loader profile at the paper's sizes")
    parser.add_argument("--target-samples-per-s", type=float, default=750.0,
                        help="a GPU's appetite, for the workers-needed column (750: an H200 "
                             "running the paper preset at a quarter of its bf16 peak)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.out_dir or tempfile.mkdtemp(prefix="bench_train_"))
    print_loader_profile(root, args.target_samples_per_s)
    if args.loader_only:
        return
    rows = []

    for name, size in SIZES.items():
        shards = root / f"shards_{name}"
        if not (shards / "shards.jsonl").exists():
            start = time.perf_counter()
            n_clips = 48 if name == "tiny" else 16
            make_shards(shards, n_clips=n_clips, windows_per_clip=2, samples_per_shard=8, **size)
            print(f"wrote {2 * n_clips} {name} samples in {time.perf_counter() - start:.1f} s")
        for workers in (0, 1, 2):
            rate = loader_samples_per_s(shards, workers, n_batches=8, batch_size=4)
            rows.append((f"loader, {name} shards", workers, f"{rate:.0f} samples/s", "", ""))
    for workers in (0, 1, 2):
        run = training_run(root / "shards_tiny", root / "runs", workers, args.steps)
        rows.append(("train loop, tiny preset, B=8 K=4 (CPU)", workers,
                     f"{run['clips_per_s']:.1f} clips/s", f"{run['step_ms']:.0f} ms",
                     f"{run['data_wait_pct']:.0f}%"))
    rows += ratio_rows("audio CNN fwd+bwd, tiny", audio_layout_ratio("tiny", 32, steps=3),
                       ("nchw", "NCHW"), ("channels_last", "channels-last"), 1)
    rows += ratio_rows("audio CNN inference, tiny", audio_fusion_ratio("tiny", 128, steps=5),
                       ("eval", "eval-mode BatchNorm"), ("fused", "BatchNorm folded"), 2)
    rows += precision_rows(args.steps, args.paper_steps)
    if torch.cuda.is_available():
        gpu = model_step("paper", torch.device("cuda"), 14, steps=10, amp=True)
        rows.append((f"model step, paper preset, B=14 K=4 (CUDA AMP, peak "
                     f"{gpu['peak_gb']:.1f} GiB)", "-", f"{gpu['clips_per_s']:.1f} clips/s",
                     f"{1000 * gpu['step_s']:.0f} ms", ""))

    print(f"\ntorch threads {torch.get_num_threads()}, shards and runs in {root}\n")
    print("| measurement | workers | rate | step | data wait |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
