"""Benchmark the downstream evaluations on the CPU: data loading, training steps, learning.

    python bench/downstream.py [--threads 1] [--presets tiny,paper] [--learning]

Throughput rows (medians of ``--repeats`` timed calls after a warm-up call):

- clip loading: a random training clip (8 frames at 16 fps, random crop to 112) read from the
  JPEG frame cache, against the baseline of decoding the same 8 frames from the video with
  ffmpeg in ``__getitem__`` (``pipeline.decode.decode_frames_at``); and one test video
  (25 centre-cropped clips) from the cache.
- action steps: ``linear`` (frozen encoder forward + linear layer, backward through the
  layer only) and ``finetune`` (forward + backward through the encoder), clips/s, per preset.
- segmentation: frozen feature extraction (video pyramid, crops/s) and one FPN-head training
  step on stored features (crops/s), per preset.

``--learning`` also runs the two learning benchmarks on synthetic data (a few CPU minutes):
fine-tuning the tiny encoder from scratch on the 6-class synthetic action set (accuracy vs
chance) and the FPN segmentation head on frozen random-init tiny features over synthetic 360°
clips (mIoU vs the majority-class baseline).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    parser.add_argument("--presets", default="tiny,paper", help="video encoder presets to time")
    parser.add_argument("--batch", type=int, default=8, help="clips (crops) per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--learning", action="store_true", help="also run the learning benchmarks")
    parser.add_argument("--work-dir", default="", help="default: a temporary folder")
    return parser.parse_args()


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def loading_rows(work: Path, repeats: int) -> list[tuple[str, float, str]]:
    import numpy as np

    from pipeline.decode import decode_frames_at
    from evals.video.action_data import (DecodeSpec, EvalVideoDataset, FrameCache,
                                         TrainClipDataset, build_frame_cache,
                                         load_ucf101)
    from pipeline.synth.actions import SyntheticActionConfig, generate_action_tree

    # UCF-like videos: 320 x 240 at 25 fps, 7 s (the UCF-101 average).
    cfg = SyntheticActionConfig(width=320, height=240, duration_s=7.0, train_per_class=2,
                                test_per_class=1, classes=("circle", "rotating"))
    root = generate_action_tree(work / "ucf_like", cfg, "ucf")
    split = load_ucf101(root, 1)
    cache = FrameCache(work / "cache", DecodeSpec())
    started = time.perf_counter()
    build_frame_cache(list(split.train) + list(split.test), cache, workers=1, progress=False)
    decode_s = (time.perf_counter() - started) / (len(split.train) + len(split.test))
    train = TrainClipDataset(split.train, cache, clips_per_video=50)
    rng = np.random.default_rng(0)
    counter = iter(range(10**9))

    def cached_clip():
        return train[next(counter) % len(train)]

    def ffmpeg_clip():
        start = rng.uniform(0, 6.4)
        return decode_frames_at(split.train[0].path, start + np.arange(8) / 16.0, 16.0, 170, 128)

    test = EvalVideoDataset(split.test, cache)
    return [
        ("decode a 7 s 320x240 video into the cache", 1.0 / decode_s, "videos/s"),
        ("training clip from the JPEG cache", 1.0 / median_seconds(cached_clip, 20 * repeats), "clips/s"),
        ("training clip decoded by ffmpeg (baseline)", 1.0 / median_seconds(ffmpeg_clip, repeats), "clips/s"),
        ("test video, 25 clips, from the cache", 25.0 / median_seconds(lambda: test[0], repeats), "clips/s"),
    ]


def step_rows(preset: str, batch: int, repeats: int) -> list[tuple[str, float, str]]:
    import torch

    from evals.video.action import ActionClassifier
    from evals.video.segmentation import FPNSegmentationHead, video_pyramid
    from trainer.models import VideoEncoder

    dim = 512 if preset == "paper" else 64
    video = torch.rand(batch, 3, 8, 112, 112)
    labels = torch.randint(0, 101, (batch,))
    rows = []
    for protocol in ("linear", "finetune"):
        model = ActionClassifier(VideoEncoder(dim, preset), dim, 101, 0.5, protocol == "linear")
        optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
        model.train()

        def step():
            loss = torch.nn.functional.cross_entropy(model(video), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        rows.append((f"{preset}: {protocol} step (112 px)", batch / median_seconds(step, repeats),
                     "clips/s"))
    encoder = VideoEncoder(dim, preset).eval()
    with torch.no_grad():
        levels = video_pyramid(encoder, video)
    rows.append((f"{preset}: segmentation features (frozen pyramid)",
                 batch / median_seconds(lambda: torch.no_grad()(video_pyramid)(encoder, video),
                                        repeats), "crops/s"))
    head = FPNSegmentationHead([level.shape[1] for level in levels], 33)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-4)
    target = torch.randint(0, 33, (batch, 112, 112))

    def head_step():
        logits = torch.nn.functional.interpolate(head(levels), size=(112, 112), mode="bilinear")
        loss = torch.nn.functional.cross_entropy(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    rows.append((f"{preset}: FPN head step (256/128 wide)", batch / median_seconds(head_step, repeats),
                 "crops/s"))
    return rows


def action_learning(work: Path) -> dict:
    from evals.video.action import ActionEvalConfig, run_action_eval
    from pipeline.synth.actions import SyntheticActionConfig, generate_action_tree

    data = SyntheticActionConfig(width=96, height=72, duration_s=2.0, train_per_class=16,
                                 test_per_class=4)
    root = generate_action_tree(work / "actions6", data, "ucf", workers=2)
    cfg = ActionEvalConfig("ucf101", str(root), 1, "scratch", "finetune", str(work / "actions6_out"),
                           cache_dir=str(work / "cache6"), epochs=20, batch_size=16, lr=3e-3,
                           lr_milestones=(15,), dropout=0.0, clips_per_video=4, test_clips=25,
                           crop_size=48, short_side=56, min_crop_scale=0.8, workers=0,
                           preset="tiny", feature_dim=64)
    started = time.perf_counter()
    results = run_action_eval(cfg)
    results["wall_seconds"] = time.perf_counter() - started
    return results


def segmentation_learning(work: Path) -> dict:
    import torch

    from pipeline.config import from_dict, load_config, to_dict
    from pipeline.preprocess import run_preprocess
    from pipeline.preprocess_config import PreprocessConfig
    from pipeline.synth.cli import generate_videos
    from pipeline.synth.scenes import SceneConfig
    from trainer.checkpoint import save_checkpoint
    from trainer.config import TrainConfig
    from evals.video.segmentation import SegmentationEvalConfig, run_segmentation_eval
    from trainer.models import build_model, model_args_from_config

    scene = SceneConfig(width=256, height=128, duration_s=3.0, radius_deg=(15.0, 30.0),
                        min_sources=2, max_sources=4)
    generate_videos(work / "synth", n_train=32, n_test=8, seed=0, scene=scene, workers=2)
    run_preprocess(load_config(PreprocessConfig, None, [
        f"paths.data_root={work / 'synth'}", f"paths.manifest={work / 'synth' / 'manifest.jsonl'}",
        f"paths.out_dir={work / 'shards'}", "detector.enabled=false", "dask.scheduler=serial",
        "decode.width=256", "decode.height=128", "viewpoints.crop_size=64",
        "windows.max_per_clip=3", "shards.compression=none"]), progress=False)
    train_cfg = from_dict(TrainConfig, {"model": {"preset": "tiny", "feature_dim": 64}})
    torch.manual_seed(0)
    model = build_model(train_cfg.model, train_cfg.data.audio_channels)
    ckpt = save_checkpoint(work / "random_tiny.pt", {
        "model_args": model_args_from_config(train_cfg.model, train_cfg.data.audio_channels),
        "config": to_dict(train_cfg), "model": model.state_dict()})
    results = {}
    for features in ("video", "video+audio+context"):
        cfg = SegmentationEvalConfig(
            shards=str(work / "shards"), ckpt=str(ckpt), out=str(work / f"seg_{features}"),
            manifest=str(work / "synth" / "manifest.jsonl"), features=features, epochs=25,
            batch_size=8, lr=3e-3, weight_decay=0.0, lr_milestones=(18,), fpn_dim=64, segm_dim=32)
        results[features] = run_segmentation_eval(cfg)
    return results


def main() -> None:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from pipeline.runtime import configure_logging, offline_environment

    offline_environment()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="bench_downstream_") as tmp:
        work = Path(args.work_dir or tmp)
        rows = loading_rows(work, args.repeats)
        for preset in args.presets.split(","):
            rows += step_rows(preset, args.batch if preset == "tiny" else max(2, args.batch // 4),
                              args.repeats if preset == "tiny" else 2)
        print(f"downstream bench: {args.threads} thread(s), batch {args.batch} (paper: "
              f"{max(2, args.batch // 4)}), 8 x 112 x 112 clips\n")
        print(f"| {'operation':<50} | {'throughput':>18} |")
        print(f"|{'-' * 52}|{'-' * 20}|")
        for name, value, unit in rows:
            print(f"| {name:<50} | {value:9.1f} {unit:<8} |")
        cached = next(v for n, v, _ in rows if n.startswith("training clip from"))
        decoded = next(v for n, v, _ in rows if n.startswith("training clip decoded"))
        print(f"\ncache vs ffmpeg per clip: {cached / decoded:.1f}x faster")

        if args.learning:
            action = action_learning(work)
            print(f"\nsynthetic actions (6 classes, tiny from scratch, fine-tuned 20 epochs, 48 px): "
                  f"clip@1 {100 * action['clip_top1']:.1f} %, video@1 "
                  f"{100 * action['video_top1']:.1f} % vs chance {100 * action['chance_top1']:.1f} % "
                  f"({action['wall_seconds']:.0f} s wall, train "
                  f"{action['history'][-1]['clips_per_s']:.0f} clips/s)")
            for features, seg in segmentation_learning(work).items():
                head, base = seg["head"], seg["majority_baseline"]
                print(f"segmentation ({features}, frozen random tiny, {seg['n_train_crops']} "
                      f"train / {seg['n_test_crops']} test crops of 64 px): mIoU "
                      f"{100 * head['mean_iou']:.1f} %, pixel acc "
                      f"{100 * head['pixel_accuracy']:.1f} % vs majority mIoU "
                      f"{100 * base['mean_iou']:.1f} %, pixel acc "
                      f"{100 * base['pixel_accuracy']:.1f} %")


if __name__ == "__main__":
    main()
