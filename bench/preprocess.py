"""Benchmark of the preprocessing stage (a script, not a test; figures go in the README).

    python bench/preprocess.py                       # 4 synthetic 10 s clips, 1920 x 960
    python bench/preprocess.py --clips 16 --source-width 3840 --out outputs/bench_preprocess

In one run, on the same clips:

1. decode only: ffmpeg decode of each clip's audio (24 kHz ambiX) and of every video frame
   (16 fps, 512 x 256 RGB) with ``pipeline.decode``, one probe per clip and the decoder on
   one thread as in the pipeline's tasks; this is the goal's baseline;
2. the pipeline without YOLO (``detector.enabled=false``), serial, in this process; 1 and 2
   alternate ``--repeats`` times (3) and their median CPU times are compared, as these machines
   vary by tens of percent from run to run;
   and, as a second baseline, decode only of the audio and of just the frames the windows use
   (the pipeline's ffmpeg drops the others before scaling them: half of them by default);
3. the pipeline with YOLO (``detector.weights``), twice: the first run imports ultralytics and
   loads the weights (once per worker process), the second is the per-clip cost; skipped with
   a message when there are no weights;
4. the pipeline without YOLO with gzip 1 instead of lzf for the other fields, and with raw
   (lossless uint8) crops, float16 features and gzip 1 for everything (the earlier default; and
   the JPEG crops' error against those),
   and on a 2-worker Dask LocalCluster (wall clock only; shards of 2 clips so that there are
   several tasks), once with the cluster's start and once on a warm cluster (shards of 1 clip),
   beside how many cores the serial run already keeps busy (its ffmpeg decodes in parallel);
5. crop extraction (one grid per viewpoint + ``cv2.remap``) against ``py360convert.e2p`` per
   frame, on a real window (8 frames, 2 x 4 viewpoints, 112 px crops);
6. bytes per sample on disk;
7. a per-stage profile of one serial run (:func:`profile_stages`): CPU seconds per clip of
   ffmpeg, decoding, window choice, crop grids, crops, JPEG coding, FOA rotation and features,
   quantisation, keyframes, shard writing and norm statistics, so that two machines can be
   compared stage by stage.

Throughput "per core" is clips per CPU-second: the CPU time of this process plus its ffmpeg
children (``resource.getrusage``), so a multi-threaded ffmpeg does not look faster than it is.
Results are printed as a Markdown table and saved as ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Meter:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def ensure_clips(data_root: Path, n_clips: int, duration_s: float, width: int):
    """Synthetic clips (``width`` x ``width / 2`` source frames), generated once and reused."""
    from pipeline.manifest import read_manifest
    from pipeline.synth.cli import generate_videos
    from pipeline.synth.scenes import SceneConfig

    manifest = data_root / "manifest.jsonl"
    if not manifest.exists() or len(read_manifest(manifest)) != n_clips:
        generate_videos(data_root, n_train=n_clips, n_test=0, seed=123,
                        scene=SceneConfig(width=width, height=width // 2, duration_s=duration_s),
                        workers=2)
    clips = read_manifest(manifest)
    if clips[0].width != width:
        raise SystemExit(f"{data_root} holds {clips[0].width} px clips, asked for {width}: "
                         "use another --data folder")
    return clips


def bench_decode(clips, data_root: Path, cfg, frames_of: dict[str, list[int]] | None = None
                 ) -> dict:
    """Decode only: each clip's audio and every video frame, or with ``frames_of`` (clip id ->
    frame indices) only those frames, through the ffmpeg ``select`` the pipeline uses. One
    probe per clip, shared by both decodes, and the decoder pinned to one thread, as the
    pipeline's tasks do (a second probe cost 21 ms; frame threads 10 % more ffmpeg CPU)."""
    from pipeline.decode import decode_audio, iter_frames_at_indices, iter_video_frames
    from pipeline.ffmpeg_bin import probe
    from pipeline.preprocess import _single_threaded

    fps, width, height = cfg.decode.fps, cfg.decode.width, cfg.decode.height
    with Meter() as meter, _single_threaded():
        for clip in clips:
            path = clip.resolve(data_root, "video_path")
            info = probe(path)
            decode_audio(path, cfg.audio.sample_rate, clip.ambisonics,
                         expected_duration_s=clip.duration_s, info=info)
            frames = (iter_video_frames(path, fps, width, height, duration_s=clip.duration_s,
                                        info=info)
                      if frames_of is None else
                      iter_frames_at_indices(path, fps, width, height,
                                             frames_of.get(clip.clip_id, []), info=info))
            for _ in frames:
                pass
    return {"clips": len(clips), "wall_s": meter.wall, "cpu_s": meter.cpu,
            "clips_per_s": len(clips) / meter.wall, "clips_per_cpu_s": len(clips) / meter.cpu}


def used_frames(shard_dir: Path, cfg) -> dict[str, list[int]]:
    """Clip id -> the video frame indices its windows used, read back from the shards'
    ``video_start_s`` (``cfg.windows.video_frames`` frames from each)."""
    from pipeline.decode import frame_indices_at
    from pipeline.shards import ShardIndex, open_shard

    used: dict[str, set[int]] = {}
    for path in ShardIndex.load(shard_dir).paths():
        with open_shard(path) as h5:
            clip_ids = h5["clip_id"].asstr()[()]
            firsts = frame_indices_at(h5["video_start_s"][()], cfg.decode.fps)
            for clip_id, first in zip(clip_ids, firsts):
                used.setdefault(clip_id, set()).update(
                    range(int(first), int(first) + cfg.windows.video_frames))
    return {clip_id: sorted(frames) for clip_id, frames in used.items()}


def median_run(runs: list[dict]) -> dict:
    """The run with the median CPU time, with every run's CPU seconds beside it (the machines
    here vary by tens of percent from run to run)."""
    ordered = sorted(runs, key=lambda r: r["cpu_s"])
    return {**ordered[len(ordered) // 2], "cpu_s_runs": [round(r["cpu_s"], 3) for r in runs]}


def bench_pipeline(cfg, out_dir: Path) -> dict:
    from pipeline.preprocess import run_preprocess
    from pipeline.shards import INDEX_NAME, read_jsonl

    shutil.rmtree(out_dir, ignore_errors=True)
    with Meter() as meter:
        summary = run_preprocess(cfg, progress=False)
    records = list(read_jsonl(out_dir / INDEX_NAME))
    n_bytes = sum(r["bytes"] for r in records)
    return {"clips": summary.clips_ok, "samples": summary.samples, "wall_s": meter.wall,
            "cpu_s": meter.cpu, "clips_per_s": summary.clips_ok / meter.wall,
            "clips_per_cpu_s": summary.clips_ok / meter.cpu if meter.cpu > 0 else float("nan"),
            "bytes": n_bytes, "bytes_per_sample": n_bytes / max(summary.samples, 1)}


def bench_dask_warm(config_path: Path, overrides: list[str], out_dir: Path,
                    n_workers: int = 2) -> dict:
    """The pipeline on a warm Dask ``LocalCluster`` of ``n_workers`` single-threaded worker
    processes: one untimed run first (worker imports, numba's cache, first calls), then the
    timed one, in shards of one clip so that every worker has tasks. Wall clock only: the
    workers' CPU time is not this process's to measure while they live."""
    from dask.distributed import LocalCluster

    from pipeline.config import load_config
    from pipeline.preprocess_config import PreprocessConfig

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        cfg = load_config(PreprocessConfig, config_path,
                          [*overrides, f"paths.out_dir={out_dir}", "detector.enabled=false",
                           "shards.clips_per_shard=1",
                           f"dask.scheduler={cluster.scheduler_address}"])
        bench_pipeline(cfg, out_dir)
        return bench_pipeline(cfg, out_dir)


#: Stages of the serial pipeline and the function whose cumulative CPU time is the stage's
#: (module, function). None of them calls another: the crops generator is resumed by the
#: coding loop between JPEG calls, quantisation follows the features.
STAGES = (
    ("ffmpeg decode (child processes)", None, None),
    ("audio decode, Python side", "pipeline/decode.py", "decode_audio"),
    ("video decode, Python side (pipe reads)", "pipeline/decode.py", "iter_frames_at_indices"),
    ("window choice (RMS, plan)", "pipeline/windows.py", "plan_windows"),
    ("crop grids", "pipeline/crops.py", "__init__"),
    ("crops (cv2.remap)", "pipeline/crops.py", "iter_crops"),
    ("JPEG coding", "pipeline/shards/codecs.py", "encode_jpeg_strips"),
    ("FOA rotation, beams, features", "pipeline/features.py", "foa_features"),
    ("feature quantisation", "pipeline/shards/codecs.py", "quantise_feature"),
    ("keyframe resize", "pipeline/crops.py", "resize_keyframe"),
    ("shard writing (HDF5, lzf, checksums)", "pipeline/shards/writer.py", "write_shard"),
    ("norm statistics", "pipeline/preprocess.py", "shard_norm_moments"),
)


def profile_stages(cfg) -> dict:
    """CPU seconds per clip of each stage of one serial run without YOLO: this process's CPU
    time per stage function from ``cProfile`` (timer ``time.process_time``) and ffmpeg's from
    ``getrusage`` of the children; "other" is the rest of the run's CPU time. Profiling adds
    overhead (the run's CPU time under the profiler is reported beside it), so compare stages
    across machines as shares, not as absolute figures. ``cfg.paths.out_dir`` is emptied first
    so that every shard is built."""
    import cProfile
    import pstats

    from pipeline.preprocess import run_preprocess

    shutil.rmtree(cfg.paths.out_dir, ignore_errors=True)
    profiler = cProfile.Profile(time.process_time)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Meter() as meter:
        profiler.enable()
        summary = run_preprocess(cfg, progress=False)
        profiler.disable()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ffmpeg_s = ((children_after.ru_utime + children_after.ru_stime)
                - (children_before.ru_utime + children_before.ru_stime))
    stats = pstats.Stats(profiler).stats               # (file, line, name) -> (.., ct, callers)
    cumulative: dict[str, float] = {}
    for label, module, name in STAGES[1:]:
        cumulative[label] = sum(entry[3] for (path, _, func), entry in stats.items()
                                if func == name and path.replace("\\", "/").endswith(module))
    clips = max(summary.clips_ok, 1)
    per_clip = {STAGES[0][0]: ffmpeg_s / clips,
                **{label: value / clips for label, value in cumulative.items()}}
    per_clip["other (Python, index, manifests, ...)"] = max(
        meter.cpu / clips - sum(per_clip.values()), 0.0)
    return {"clips": summary.clips_ok, "cpu_s_under_profiler": meter.cpu,
            "cpu_s_per_clip": {k: round(v, 4) for k, v in per_clip.items()}}


def field_sizes(out_dir: Path) -> dict[str, float]:
    """Stored bytes per sample of each dataset (compressed), over all shards."""
    import h5py

    from pipeline.shards import ShardIndex

    sizes: dict[str, int] = {}
    n_samples = 0
    for path in ShardIndex.load(out_dir).paths():
        with h5py.File(path, "r") as h5:
            n_samples += int(h5.attrs["n_samples"])
            h5.visititems(lambda name, obj: sizes.__setitem__(
                name, sizes.get(name, 0) + stored_bytes(obj))
                if isinstance(obj, h5py.Dataset) else None)
    return {name: size / max(n_samples, 1) for name, size in sorted(sizes.items())}


def stored_bytes(dataset) -> int:
    """Bytes a dataset takes on disk: its chunks, plus the heap data of a variable-length one
    (JPEG crops), which ``get_storage_size`` does not count."""
    import h5py

    size = dataset.id.get_storage_size()
    if h5py.check_vlen_dtype(dataset.dtype) is not None and dataset.dtype.kind == "O":
        size += sum(len(v) for v in dataset[()].reshape(-1))
    return size


def crop_error(out_a: Path, out_b: Path) -> float:
    """Mean absolute difference (grey levels) between the crops of two runs on the same clips
    (the viewpoints are drawn from per-clip seeds, so the samples correspond)."""
    from pipeline.shards import ShardIndex, open_shard, stored_crops

    total, count = 0.0, 0
    for path_a, path_b in zip(ShardIndex.load(out_a).paths(), ShardIndex.load(out_b).paths()):
        with open_shard(path_a) as h5a, open_shard(path_b) as h5b:
            for source in ("random", "yolo"):
                a = stored_crops(h5a, f"views/{source}/crops")[:].astype(np.int16)
                b = stored_crops(h5b, f"views/{source}/crops")[:].astype(np.int16)
                total += float(np.abs(a - b).sum())
                count += a.size
    return total / max(count, 1)


def untrained_yolo_weights(out_dir: Path) -> Path:
    """Weights of an untrained network with the offline detector's architecture (timing only)."""
    import tempfile

    from pipeline.synth.detector import DetectorTrainConfig, build_model

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "untrained_yolo.pt"
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), DetectorTrainConfig()).save(str(path))
    return path


def bench_crops(clip, data_root: Path, cfg, repeats: int = 5) -> dict:
    import cv2
    import py360convert
    import py360convert.utils

    from pipeline.crops import CropSampler
    from pipeline.decode import decode_frames_at
    from pipeline.viewpoints import random_viewpoints

    cv2.setNumThreads(1)
    path = clip.resolve(data_root, "video_path")
    frames = decode_frames_at(path, [0.25 + i / cfg.decode.fps for i in range(8)], cfg.decode.fps,
                              cfg.decode.width, cfg.decode.height)
    rng = np.random.default_rng(0)
    band = dict(max_elevation_rad=math.radians(60), min_separation_rad=math.radians(30),
                fov_min_rad=math.radians(25), fov_max_rad=math.radians(90))
    views = [random_viewpoints(rng, 4, **band) for _ in range(2 * repeats)]
    size = cfg.viewpoints.crop_size

    def ours(v):
        return CropSampler(v.azimuth_rad, v.elevation_rad, v.fov_rad, size, frames.shape[2],
                           frames.shape[1]).crop(frames)

    def e2p(v, clear_cache: bool):
        out = np.empty((len(v), len(frames), size, size, 3), np.uint8)
        for k in range(len(v)):
            for t, frame in enumerate(frames):
                if clear_cache:
                    py360convert.utils.EquirecSampler.from_perspective.cache_clear()
                out[k, t] = py360convert.e2p(frame, math.degrees(v.fov_rad[k]),
                                             -math.degrees(v.azimuth_rad[k]),
                                             math.degrees(v.elevation_rad[k]), (size, size))
        return out

    ours(views[0])
    e2p(views[0], False)
    timings = {}
    for name, function in (("ours", lambda v: ours(v)), ("e2p_cached", lambda v: e2p(v, False)),
                           ("e2p_uncached", lambda v: e2p(v, True))):
        py360convert.utils.EquirecSampler.from_perspective.cache_clear()
        started = time.perf_counter()
        for v in views:
            function(v)
        timings[name] = (time.perf_counter() - started) / len(views)
    diffs = [np.abs(ours(v).astype(np.int16) - e2p(v, False).astype(np.int16)).mean()
             for v in views[:2]]
    n_crops = 4 * len(frames)
    return {"crops_per_call": n_crops, "crop_size": size,
            "ours_ms_per_view_window": 1e3 * timings["ours"] / 4,
            "e2p_cached_ms_per_view_window": 1e3 * timings["e2p_cached"] / 4,
            "e2p_uncached_ms_per_view_window": 1e3 * timings["e2p_uncached"] / 4,
            "speedup_vs_e2p_cached": timings["e2p_cached"] / timings["ours"],
            "speedup_vs_e2p_uncached": timings["e2p_uncached"] / timings["ours"],
            "mean_abs_diff_grey_levels": float(np.mean(diffs))}


def main(argv=None) -> int:
    from pipeline.config import load_config
    from pipeline.preprocess_config import PreprocessConfig
    from pipeline.runtime import setup_entry_point

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--source-width", type=int, default=1920,
                        help="width of the synthetic source frames (YT-360 is 1920-3840); the "
                             "pipeline decodes to decode.width either way")
    parser.add_argument("--data", type=Path, default=None,
                        help="clips folder (default: data/bench_synthetic_<width>)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_preprocess")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "preprocess.yaml")
    parser.add_argument("--untrained-yolo", action="store_true",
                        help="without weights, time the YOLO path with an untrained network of "
                             "the offline detector's architecture (timing only: no real detections)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of decode-only and of the default pipeline (alternating); "
                             "the medians are compared")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = parser.parse_args(argv)
    setup_entry_point("WARNING")
    from pipeline.preprocess import _quiet_dask_logging

    _quiet_dask_logging()

    if args.data is None:
        args.data = REPO / "data" / f"bench_synthetic_{args.source_width}"
    clips = ensure_clips(args.data, args.clips, args.duration_s, args.source_width)
    # small shards so that the Dask run has several tasks (parallelism is one task per shard)
    base = [f"paths.data_root={args.data}", f"paths.manifest={args.data / 'manifest.jsonl'}",
            "dask.scheduler=serial", "shards.clips_per_shard=2", *args.overrides]
    cfg = load_config(PreprocessConfig, args.config,
                      [*base, f"paths.out_dir={args.out / 'no_yolo'}", "detector.enabled=false"])
    results: dict = {"clips": len(clips), "clip_duration_s": args.duration_s,
                     "source_frame": f"{args.source_width}x{args.source_width // 2}",
                     "frame": f"{cfg.decode.width}x{cfg.decode.height}",
                     "cpu_count": os.cpu_count()}
    print(f"{len(clips)} clips of {args.duration_s:g} s, source {results['source_frame']}, "
          f"decoded to {results['frame']} at "
          f"{cfg.decode.fps:g} fps; windows/clip <= {cfg.windows.max_per_clip}", flush=True)

    # Decode only and the pipeline alternate, --repeats times each; medians are compared.
    decode_runs, pipeline_runs = [], []
    for _ in range(args.repeats):
        decode_runs.append(bench_decode(clips, args.data, cfg))
        pipeline_runs.append(bench_pipeline(cfg, args.out / "no_yolo"))
    results["decode_only"] = median_run(decode_runs)
    print("decode only:", json.dumps(results["decode_only"]), flush=True)
    results["pipeline_no_yolo"] = median_run(pipeline_runs)
    print("pipeline, no YOLO:", json.dumps(results["pipeline_no_yolo"]), flush=True)
    frames_of = used_frames(args.out / "no_yolo", cfg)
    results["decode_used_frames"] = median_run(
        [bench_decode(clips, args.data, cfg, frames_of) for _ in range(args.repeats)])
    print("decode only, the frames the windows use:", json.dumps(results["decode_used_frames"]),
          flush=True)
    results["field_bytes_per_sample"] = field_sizes(args.out / "no_yolo")
    gzip_cfg = load_config(PreprocessConfig, args.config,
                           [*base, f"paths.out_dir={args.out / 'gzip'}", "detector.enabled=false",
                            "shards.compression=gzip", "shards.compression_level=1"])
    results["pipeline_no_yolo_gzip"] = bench_pipeline(gzip_cfg, args.out / "gzip")
    print("pipeline, no YOLO, gzip 1:", json.dumps(results["pipeline_no_yolo_gzip"]), flush=True)
    raw_cfg = load_config(PreprocessConfig, args.config,
                          [*base, f"paths.out_dir={args.out / 'raw_crops'}",
                           "detector.enabled=false", "shards.crop_codec=raw",
                           "shards.feature_codec=float16", "shards.compression=gzip",
                           "shards.compression_level=1"])
    results["pipeline_no_yolo_raw_crops"] = bench_pipeline(raw_cfg, args.out / "raw_crops")
    print("pipeline, no YOLO, raw crops, gzip 1:",
          json.dumps(results["pipeline_no_yolo_raw_crops"]), flush=True)
    if cfg.shards.crop_codec != raw_cfg.shards.crop_codec:
        results["crop_codec_error_grey_levels"] = crop_error(args.out / "no_yolo",
                                                             args.out / "raw_crops")
        print(f"crops {cfg.shards.crop_codec} vs raw: mean abs error "
              f"{results['crop_codec_error_grey_levels']:.2f} grey levels", flush=True)

    yolo_cfg = load_config(PreprocessConfig, args.config,
                           [*base, f"paths.out_dir={args.out / 'yolo'}", "detector.enabled=true"])
    results["yolo_weights"] = yolo_cfg.detector.weights
    if not Path(yolo_cfg.detector.weights).is_file() and args.untrained_yolo:
        weights = untrained_yolo_weights(args.out)
        yolo_cfg = load_config(PreprocessConfig, args.config,
                               [*base, f"paths.out_dir={args.out / 'yolo'}",
                                "detector.enabled=true", f"detector.weights={weights}"])
        results["yolo_weights"] = f"{weights} (untrained, timing only)"
    if Path(yolo_cfg.detector.weights).is_file():
        # The first run imports ultralytics and torch and loads the weights (once per worker
        # process); the second, in the same process, is the per-clip cost a long job pays.
        results["pipeline_yolo_first"] = bench_pipeline(yolo_cfg, args.out / "yolo")
        results["pipeline_yolo"] = bench_pipeline(yolo_cfg, args.out / "yolo")
        print(f"pipeline, YOLO ({results['yolo_weights']}), detector loaded:",
              json.dumps(results["pipeline_yolo"]), flush=True)
        print("  the first run, with the import of ultralytics and the weights: "
              f"{results['pipeline_yolo_first']['cpu_s']:.2f} CPU-s", flush=True)
    else:
        results["pipeline_yolo"] = None
        print(f"pipeline, YOLO: skipped, no weights at {yolo_cfg.detector.weights} "
              "(train them with `python -m pipeline.synth.detector train`)", flush=True)

    dask_cfg = load_config(PreprocessConfig, args.config,
                           [*base, f"paths.out_dir={args.out / 'dask'}", "detector.enabled=false",
                            "dask.scheduler=", "dask.n_workers=2"])
    results["pipeline_no_yolo_dask2"] = bench_pipeline(dask_cfg, args.out / "dask")
    print("pipeline, no YOLO, Dask 2 workers (wall, with the cluster's start):",
          f"{results['pipeline_no_yolo_dask2']['clips_per_s']:.2f} clips/s", flush=True)
    results["pipeline_no_yolo_dask2_warm"] = bench_dask_warm(args.config, base,
                                                             args.out / "dask_warm")
    print("pipeline, no YOLO, Dask 2 workers, warm cluster (wall):",
          f"{results['pipeline_no_yolo_dask2_warm']['clips_per_s']:.2f} clips/s", flush=True)

    profile_cfg = load_config(PreprocessConfig, args.config,
                              [*base, f"paths.out_dir={args.out / 'profile'}",
                               "detector.enabled=false"])
    results["stages"] = profile_stages(profile_cfg)
    total = sum(results["stages"]["cpu_s_per_clip"].values())
    print(f"\n| stage (serial, no YOLO, under cProfile: {total:.2f} CPU-s per clip) | CPU-s per "
          f"clip | share |\n|---|---|---|")
    for label, value in results["stages"]["cpu_s_per_clip"].items():
        print(f"| {label} | {value:.3f} | {100 * value / total:.0f} % |")

    results["crops"] = bench_crops(clips[0], args.data, cfg)
    print("crops:", json.dumps(results["crops"]), flush=True)

    decode, plain = results["decode_only"], results["pipeline_no_yolo"]
    ratio = plain["clips_per_cpu_s"] / decode["clips_per_cpu_s"]
    results["pipeline_over_decode_per_core"] = ratio
    used = results["decode_used_frames"]
    used_ratio = plain["clips_per_cpu_s"] / used["clips_per_cpu_s"]
    results["pipeline_over_decode_used_frames_per_core"] = used_ratio
    crops = results["crops"]
    rows = [
        ("decode only (ffmpeg audio + every video frame)", f"{decode['clips_per_cpu_s']:.2f}",
         f"{decode['clips_per_s']:.2f}"),
        ("decode only (ffmpeg audio + the video frames the windows use)",
         f"{used['clips_per_cpu_s']:.2f}", f"{used['clips_per_s']:.2f}"),
        (f"pipeline, no YOLO (serial), default: crops {cfg.shards.crop_codec}, others "
         f"{cfg.shards.compression}: {plain['bytes_per_sample'] / 1e6:.2f} MB/sample",
         f"{plain['clips_per_cpu_s']:.2f}", f"{plain['clips_per_s']:.2f}"),
        (f"pipeline, no YOLO (serial), crops {cfg.shards.crop_codec}, others gzip 1: "
         f"{results['pipeline_no_yolo_gzip']['bytes_per_sample'] / 1e6:.2f} MB/sample",
         f"{results['pipeline_no_yolo_gzip']['clips_per_cpu_s']:.2f}",
         f"{results['pipeline_no_yolo_gzip']['clips_per_s']:.2f}"),
        (f"pipeline, no YOLO (serial), raw crops, float16 features, all gzip 1 (the earlier "
         "default): "
         f"{results['pipeline_no_yolo_raw_crops']['bytes_per_sample'] / 1e6:.2f} MB/sample",
         f"{results['pipeline_no_yolo_raw_crops']['clips_per_cpu_s']:.2f}",
         f"{results['pipeline_no_yolo_raw_crops']['clips_per_s']:.2f}"),
    ]
    if results["pipeline_yolo"]:
        y = results["pipeline_yolo"]
        label = "untrained, timing only" if "untrained" in results["yolo_weights"] else "trained"
        rows.append((f"pipeline, YOLO {label} (serial, detector loaded; the first run "
                     f"{results['pipeline_yolo_first']['cpu_s']:.1f} CPU-s)",
                     f"{y['clips_per_cpu_s']:.2f}", f"{y['clips_per_s']:.2f}"))
    else:
        rows.append(("pipeline, YOLO", "skipped (no weights)", ""))
    rows.append(("pipeline, no YOLO, Dask 2 workers (a LocalCluster started for the run)", "",
                 f"{results['pipeline_no_yolo_dask2']['clips_per_s']:.2f}"))
    warm = results["pipeline_no_yolo_dask2_warm"]
    rows.append(("pipeline, no YOLO, Dask 2 workers, warm cluster (shards of 1 clip)", "",
                 f"{warm['clips_per_s']:.2f}"))
    print("\n| stage | clips / CPU-s (per core) | clips / s (wall) |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    gzip_ratio = results["pipeline_no_yolo_gzip"]["clips_per_cpu_s"] / decode["clips_per_cpu_s"]
    raw_ratio = (results["pipeline_no_yolo_raw_crops"]["clips_per_cpu_s"]
                 / decode["clips_per_cpu_s"])
    results["pipeline_gzip_over_decode_per_core"] = gzip_ratio
    results["pipeline_raw_crops_over_decode_per_core"] = raw_ratio
    print(f"\npipeline without YOLO / decode only, per core: {ratio:.2f} (median of "
          f"{args.repeats}; goal >= 0.67; others gzip 1: {gzip_ratio:.2f}; the earlier default, "
          f"raw crops, float16 features, gzip 1: {raw_ratio:.2f}); against decoding only the frames the windows "
          f"use: {used_ratio:.2f}")
    # Serial already keeps more than one core busy (ffmpeg decodes while Python works), so on
    # a machine of C cores 2 workers can gain at most C / (cores the serial run keeps busy).
    serial_cores = plain["cpu_s"] / plain["wall_s"]
    results["serial_cores_busy"] = serial_cores
    results["dask2_warm_over_serial_wall"] = warm["clips_per_s"] / plain["clips_per_s"]
    print(f"Dask 2 workers on a warm cluster / serial, wall: "
          f"{results['dask2_warm_over_serial_wall']:.2f}x (serial keeps {serial_cores:.2f} "
          f"cores busy; at most {min(2, os.cpu_count() or 1) / serial_cores:.2f}x on "
          f"{os.cpu_count()} cores)")
    print(f"crops, one window (8 frames) per viewpoint: ours {crops['ours_ms_per_view_window']:.2f} ms, "
          f"e2p per frame {crops['e2p_cached_ms_per_view_window']:.2f} ms with py360convert's grid "
          f"cache ({crops['speedup_vs_e2p_cached']:.1f}x), "
          f"{crops['e2p_uncached_ms_per_view_window']:.2f} ms recomputing the grid "
          f"({crops['speedup_vs_e2p_uncached']:.1f}x); mean abs diff "
          f"{crops['mean_abs_diff_grey_levels']:.3f} grey levels")
    print(f"bytes per sample on disk: {plain['bytes_per_sample'] / 1e6:.2f} MB (crops "
          f"{cfg.shards.crop_codec}, others {cfg.shards.compression})")
    for name, size in results["field_bytes_per_sample"].items():
        if size > 5e3:
            print(f"  {name}: {size / 1e3:.0f} kB")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
