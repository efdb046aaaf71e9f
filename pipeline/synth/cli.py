"""Generate synthetic data sets.

    python -m pipeline.synth.cli videos --out data/synthetic                # demo preset
    python -m pipeline.synth.cli videos --out data/synthetic_large --preset large
    python -m pipeline.synth.cli videos --out D --n-train 48 --n-test 16 --seed 0 --duration-s 6
    python -m pipeline.synth.cli eigenscape --out data/eigenscape_synth
    python -m pipeline.synth.cli starss23 --out data/starss23_synth

``videos`` writes ``<out>/<split>/<clip_id>.mp4`` (or ``.mkv``) with its ground truth
``<clip_id>.json`` beside it, a manifest of ``Clip`` records (``--manifest``, default
``<out>/manifest.jsonl``; paths relative to ``<out>``) and ``<out>/synth_config.json``.
``eigenscape`` writes ``<out>/<Class>.<k>.wav``, ``<out>/ground_truth.json`` and
``<out>/manifest.jsonl`` (``Recording`` records with folds). ``starss23`` writes the STARSS23
development layout (``foa_dev/``, ``video_dev/``, ``metadata_dev/``; :mod:`pipeline.synth.starss23`).

Both resume: finished files are skipped (they are written under a temporary name and renamed,
the ground-truth JSON of a clip last), so an interrupted run picks up where it stopped. A clip
already on disk whose ground truth disagrees with the requested geometry is an error: use a new
``--out`` when changing sizes, durations or the seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from pipeline.ground_truth import SYNTHETIC_MARKER_NAME, write_synthetic_marker
from pipeline.manifest import Clip, write_manifest
from pipeline.synth import eigenscape, starss23
from pipeline.synth.audio import scene_foa
from pipeline.synth.render import render_frames
from pipeline.synth.scenes import SceneConfig, sample_scene
from pipeline.synth.write import write_clip

log = logging.getLogger("pipeline.synth")

SPLIT_SEED_INDEX = {"train": 0, "val": 2, "test": 1}
#: Size presets of the video set; explicit command-line values override them.
PRESETS = {
    # 200 short clips rather than 64 long ones: more distinct scenes generalise better (the
    # tiny model overfits 48 training scenes: held-out AVSA loss stayed at chance).
    "demo": {"n_train": 160, "n_test": 40, "duration_s": 4.0},
    "large": {"n_train": 800, "n_test": 200, "duration_s": 10.0},
    # Semantics cannot solve alignment here (docs/synthetic.md): most clips hold 2-3
    # simultaneous sources of one class >= 60 deg apart plus a silent twin, objects do not
    # pulse with their sound, and every clip is reverberant.
    "spatial": {"n_train": 160, "n_test": 40, "duration_s": 4.0,
                "scene": {"p_same_class": 0.8, "visual_pulse": False, "reverb": True}},
    # Only direction decides AVSA-bin, and it can (docs/synthetic.md): every clip is `spatial`'s
    # same-class case (no class or synchrony cue, reverberant) with its objects near the horizon,
    # larger, no off-screen sound, no silent twin and a stronger direct sound. Preprocess with
    # viewpoints.max_elevation_deg=30 viewpoints.fov_deg_min=60 (supervised ceiling 78 %).
    # 40 validation clips: pretext recipes are chosen on them, the test split only reports.
    "direction": {"n_train": 160, "n_val": 40, "n_test": 40, "duration_s": 4.0,
                  "scene": {"p_same_class": 1.0, "visual_pulse": False, "reverb": True,
                            "p_silent_twin": 0.0, "p_offscreen_sound": 0.0,
                            "elevation_sd_deg": 8.0, "max_abs_elevation_deg": 20.0,
                            "p_high_elevation": 0.0, "radius_deg": (12.0, 24.0),
                            "drr_db": (6.0, 12.0)}},
}
GEOMETRY_KEYS = ("width", "height", "fps", "duration_s", "sample_rate", "seed")


class ResumeMismatchError(ValueError):
    """A clip already on disk was generated with other settings than the ones requested."""


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """One clip to synthesise. ``seed`` is the set's seed; the clip's own seed is
    ``(seed, SPLIT_SEED_INDEX[split], index)``."""

    out_root: str
    split: str
    index: int
    seed: int
    container: str
    scene: SceneConfig

    @property
    def clip_id(self) -> str:
        return f"synth-{self.split}-{self.index:05d}"

    @property
    def video_rel(self) -> str:
        return f"{self.split}/{self.clip_id}.{self.container}"

    @property
    def gt_rel(self) -> str:
        return f"{self.split}/{self.clip_id}.json"

    @property
    def clip_seed(self) -> tuple[int, int, int]:
        return (self.seed, SPLIT_SEED_INDEX[self.split], self.index)


def clip_record(job: ClipJob) -> Clip:
    """The manifest record of a clip (the audio track is inside the video file)."""
    cfg = job.scene
    return Clip(
        clip_id=job.clip_id, video_path=job.video_rel, audio_path=None, duration_s=cfg.duration_s,
        fps=cfg.fps, width=cfg.width, height=cfg.height, sample_rate=cfg.sample_rate,
        audio_channels=4, ambisonics="ambix", split=job.split, dataset="synthetic", gt_path=job.gt_rel,
    )  # fmt: skip


def synthesize_clip(job: ClipJob) -> tuple[Clip, bool]:
    """Write one clip (video + FOA) and its ground truth unless both exist; returns
    (record, whether it was written now)."""
    root = Path(job.out_root)
    video_path, gt_path = root / job.video_rel, root / job.gt_rel
    if gt_path.is_file() and video_path.is_file():
        _check_existing(gt_path, job)
        return clip_record(job), False
    gt = sample_scene(job.scene, job.clip_seed, job.clip_id)
    write_clip(
        video_path, render_frames(gt), scene_foa(gt), fps=gt["fps"], sample_rate=gt["sample_rate"]
    )
    partial = gt_path.with_name(gt_path.name + ".partial")
    partial.write_text(json.dumps(gt, separators=(",", ":")))
    os.replace(partial, gt_path)
    return clip_record(job), True


def _check_existing(gt_path: Path, job: ClipJob) -> None:
    gt = json.loads(gt_path.read_text())
    scene = {**dataclasses.asdict(job.scene), "seed": list(job.clip_seed)}
    existing = {**{key: gt[key] for key in GEOMETRY_KEYS}, "reverb": "room" in gt,
                "visual_pulse": gt.get("render", {}).get("visual_pulse", True)}
    wanted = {**{key: scene[key] for key in GEOMETRY_KEYS}, "reverb": job.scene.reverb,
              "visual_pulse": job.scene.visual_pulse}
    for key, value in existing.items():
        if value != wanted[key]:
            raise ResumeMismatchError(
                f"{gt_path}: existing clip has {key}={value!r}, this run asks for {wanted[key]!r}; "
                "use a new --out (or delete the old clips) when changing settings or presets"
            )


def run_jobs(function: Callable, jobs: Sequence, workers: int, desc: str) -> list:
    """Apply ``function`` to every job (in a process pool when workers > 1), with a progress
    bar; results come back in job order. An exception in any job is re-raised."""
    results: list = [None] * len(jobs)
    if workers <= 1:
        for position, job in enumerate(tqdm(jobs, desc=desc, unit="item")):
            results[position] = function(job)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(function, job): position for position, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="item"):
            results[futures[future]] = future.result()
    return results


def generate_videos(
    out_root: Path,
    *,
    n_train: int,
    n_test: int,
    seed: int,
    n_val: int = 0,
    scene: SceneConfig,
    container: str = "mp4",
    workers: int = 2,
    manifest_path: Path | None = None,
) -> list[Clip]:
    """Generate (or complete) the synthetic video set (``n_val`` > 0 adds a validation split,
    its clips seeded apart from train and test); writes the manifest (default
    ``<out>/manifest.jsonl``; its paths are relative to ``out_root`` wherever it lives) and
    ``<out>/synth_config.json``."""
    out_root.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    jobs = [
        ClipJob(str(out_root), split, index, seed, container, scene)
        for split, count in counts.items()
        for index in range(count)
    ]
    results = run_jobs(synthesize_clip, jobs, workers, "synthetic clips")
    records = [record for record, _ in results]
    log.info(
        "%d clips written, %d already present",
        sum(written for _, written in results),
        len(results) - sum(w for _, w in results),
    )
    write_manifest(manifest_path or out_root / "manifest.jsonl", records)
    config = {
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "container": container,
        "scene": dataclasses.asdict(scene),
    }
    (out_root / "synth_config.json").write_text(json.dumps(config, indent=1))
    return records


def _write_recording_job(
    job: tuple[str, str, eigenscape.SceneClass, list[int], eigenscape.EigenscapeConfig],
) -> dict:
    out_root, name, scene_class, seed, cfg = job
    recording = eigenscape.sample_recording(scene_class, seed, cfg)
    path = Path(out_root) / name
    if not path.is_file():
        eigenscape.write_recording(path, recording, cfg.subtype)
    return recording


def generate_eigenscape(
    out_root: Path, *, seed: int, cfg: eigenscape.EigenscapeConfig, workers: int, segment_s: float
) -> None:
    """Generate (or complete) the EigenScape-layout set, its ground truth, manifest and
    ``SYNTHETIC.json`` marker; a complete set made with the same settings is left as it is."""
    from pipeline.importers import import_eigenscape

    settings = {"seed": seed, "segment_s": segment_s, "config": dataclasses.asdict(cfg)}
    marker = out_root / SYNTHETIC_MARKER_NAME
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == settings:
        expected = [name for name, _, _ in eigenscape.recording_jobs(cfg, seed)]
        if all((out_root / name).is_file() for name in expected):
            log.info("%s: complete synthetic EigenScape-layout set (%d recordings), kept",
                     out_root, len(expected))
            return
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(out_root), name, scene_class, job_seed, cfg)
        for name, scene_class, job_seed in eigenscape.recording_jobs(cfg, seed)
    ]
    recordings = run_jobs(_write_recording_job, jobs, workers, "eigenscape recordings")
    eigenscape.write_ground_truth(out_root, {job[1]: rec for job, rec in zip(jobs, recordings)}, cfg)
    records, problems = import_eigenscape(out_root, segment_s=segment_s, dataset="eigenscape_synth")
    for problem in problems:
        log.warning("eigenscape manifest: %s", problem)
    write_manifest(out_root / "manifest.jsonl", records)
    write_synthetic_marker(out_root, "pipeline.synth.eigenscape", settings=settings)
    log.info("wrote %d recordings, ground truth and manifest to %s", len(recordings), out_root)


def _write_starss23_job(job: tuple[str, str, int, int, starss23.Starss23SynthConfig]) -> bool:
    out_root, split, index, seed, cfg = job
    return starss23.write_recording(Path(out_root), split, index, seed, cfg)


def generate_starss23(out_root: Path, *, seed: int, cfg: starss23.Starss23SynthConfig,
                      workers: int) -> None:
    """Generate (or complete) the STARSS23-layout set and its ``SYNTHETIC.json`` marker. A set
    made with other settings is an error (``ResumeMismatchError``)."""
    marker = out_root / SYNTHETIC_MARKER_NAME
    settings = {"seed": seed, "config": dataclasses.asdict(cfg)}
    if marker.is_file():
        existing = json.loads(marker.read_text()).get("settings")
        if existing != settings:
            raise ResumeMismatchError(f"{out_root}: existing set was made with {existing}, this "
                                      f"run asks for {settings}; use a new --out")
    out_root.mkdir(parents=True, exist_ok=True)
    starss23.write_marker(out_root, seed, cfg)
    jobs = [(str(out_root), split, index, seed, cfg)
            for split, index in starss23.recording_jobs(cfg)]
    written = run_jobs(_write_starss23_job, jobs, workers, "starss23 recordings")
    log.info("%d recordings written, %d already present", sum(written),
             len(written) - sum(written))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.synth.cli", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    videos = sub.add_parser("videos", help="synthetic 360° clips with FOA and ground truth")
    videos.add_argument("--out", type=Path, required=True, help="data root of the set")
    videos.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    videos.add_argument("--n-train", type=int, help="training clips (preset default)")
    videos.add_argument("--n-test", type=int, help="test clips (preset default)")
    videos.add_argument("--n-val", type=int,
                        help="validation clips, where recipes are chosen (preset default)")
    videos.add_argument("--duration-s", type=float, help="clip length in seconds (preset default)")
    videos.add_argument("--seed", type=int, default=0)
    videos.add_argument(
        "--width", type=int, default=512, help="equirectangular width; height = width / 2"
    )
    videos.add_argument("--fps", type=int, default=16)
    videos.add_argument("--sample-rate", type=int, default=24000)
    videos.add_argument(
        "--container",
        choices=("mp4", "mkv"),
        default="mp4",
        help="mp4: H.264 + AAC; mkv: H.264 + PCM f32",
    )
    videos.add_argument("--workers", type=int, default=2)
    videos.add_argument(
        "--manifest",
        type=Path,
        help="manifest path (default <out>/manifest.jsonl); paths inside are relative to --out",
    )

    eig = sub.add_parser("eigenscape", help="EigenScape-layout 4th-order ambisonic scene recordings")
    eig.add_argument("--out", type=Path, required=True)
    eig.add_argument("--seed", type=int, default=0)
    eig.add_argument("--duration-s", type=float, default=eigenscape.EigenscapeConfig.duration_s)
    eig.add_argument("--sample-rate", type=int, default=eigenscape.EigenscapeConfig.sample_rate)
    eig.add_argument("--recordings-per-class", type=int, default=eigenscape.RECORDINGS_PER_CLASS)
    eig.add_argument(
        "--subtype",
        default=eigenscape.EigenscapeConfig.subtype,
        help="WAV subtype: PCM_16, PCM_24, FLOAT",
    )
    eig.add_argument(
        "--segment-s", type=float, default=1.0, help="segment length written in the manifest"
    )
    eig.add_argument("--workers", type=int, default=2)

    defaults = starss23.Starss23SynthConfig()
    sta = sub.add_parser("starss23", help="STARSS23-layout recordings with 100 ms SELD labels")
    sta.add_argument("--out", type=Path, required=True)
    sta.add_argument("--seed", type=int, default=0)
    sta.add_argument("--n-train-per-split", type=int, default=defaults.n_train_per_split,
                     help="recordings in each of dev-train-sony and dev-train-tau")
    sta.add_argument("--n-test-per-split", type=int, default=defaults.n_test_per_split,
                     help="recordings in each of dev-test-sony and dev-test-tau")
    sta.add_argument("--duration-s", type=float, default=defaults.duration_s)
    sta.add_argument("--max-sources", type=int, default=defaults.max_sources,
                     help="most sources in a recording (at least 1)")
    sta.add_argument("--width", type=int, default=defaults.width,
                     help="equirectangular width; height = width / 2")
    sta.add_argument("--fps", type=int, default=defaults.fps)
    sta.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    sta.add_argument("--workers", type=int, default=2)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    from pipeline.config import run_main
    from pipeline.runtime import setup_entry_point

    def run(args_list: list[str]) -> int:
        setup_entry_point()
        args = _build_parser().parse_args(args_list)
        _run(args)
        where = f"{args.out}/" + (f" (manifest {args.manifest})" if getattr(args, "manifest", None)
                                  else "")
        print(f"==> {args.command}: {where}", flush=True)
        return 0

    return run_main(run, None if argv is None else list(argv))


def _run(args: argparse.Namespace) -> None:
    if args.command == "videos":
        preset = PRESETS[args.preset]
        duration_s = args.duration_s if args.duration_s is not None else preset["duration_s"]
        scene = SceneConfig(
            width=args.width,
            height=args.width // 2,
            fps=args.fps,
            duration_s=duration_s,
            sample_rate=args.sample_rate,
            **preset.get("scene", {}),
        )
        log.info("resolved scene config: %s", dataclasses.asdict(scene))
        generate_videos(
            args.out,
            n_train=args.n_train if args.n_train is not None else preset["n_train"],
            n_test=args.n_test if args.n_test is not None else preset["n_test"],
            n_val=args.n_val if args.n_val is not None else preset.get("n_val", 0),
            seed=args.seed, scene=scene, container=args.container, workers=args.workers,
            manifest_path=args.manifest,
        )  # fmt: skip
    elif args.command == "starss23":
        cfg = starss23.Starss23SynthConfig(
            n_train_per_split=args.n_train_per_split, n_test_per_split=args.n_test_per_split,
            duration_s=args.duration_s, width=args.width, fps=args.fps,
            sample_rate=args.sample_rate, max_sources=args.max_sources)
        log.info("resolved starss23 config: %s", dataclasses.asdict(cfg))
        generate_starss23(args.out, seed=args.seed, cfg=cfg, workers=args.workers)
    else:
        cfg = eigenscape.EigenscapeConfig(
            duration_s=args.duration_s, sample_rate=args.sample_rate,
            recordings_per_class=args.recordings_per_class, subtype=args.subtype,
        )  # fmt: skip
        log.info("resolved eigenscape config: %s", dataclasses.asdict(cfg))
        generate_eigenscape(
            args.out, seed=args.seed, cfg=cfg, workers=args.workers, segment_s=args.segment_s
        )


if __name__ == "__main__":
    sys.exit(main())
