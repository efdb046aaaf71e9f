"""A small synthetic action data set: one moving object per video, one class per motion pattern.

    python -m pipeline.synth.actions --out data/synthetic_actions --layout ucf
    python -m pipeline.synth.actions --out data/synthetic_hmdb --layout hmdb

The videos are written as the real data sets are distributed (mp4 instead of avi), so the
loaders of :mod:`evals.video.action_data` and both protocols of
:mod:`evals.video.action` run end to end on them:

- ``ucf``:  ``<out>/UCF-101/<Class>/v_<Class>_gGG_c01.mp4`` and ``<out>/ucfTrainTestlist/``
  with ``classInd.txt``, ``trainlist01.txt`` (with labels), ``testlist01.txt`` (without).
  Test videos take groups 1..n_test, training videos the following groups (as in UCF-101,
  where the groups of one split never mix).
- ``hmdb``: ``<out>/hmdb51_org/<class>/<class>_synth_NNN.mp4`` and
  ``<out>/testTrainMulti_7030_splits/<class>_test_split1.txt`` with tags 1 (train), 2 (test)
  and 0 (unused: ``n_unused`` extra videos per class).

Only split 1 is written. Classes (:data:`MOTION_CLASSES`) differ by motion alone: the object's
colour, shape, size, orientation, the background and the speeds are drawn independently of the
class, and every 0.5 s window shows its class's motion (the translation restarts on the left
after crossing the central 60 % of the frame, oscillations and blinking are periodic with periods
below 1.6 s), inside the central square that crops keep. Videos are rendered at 25 frames/s (not
16) so that the loaders' resampling to 16 fps is exercised. Deterministic in
``(seed, class, index)``; files are written under a temporary name and renamed, and existing
files are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pipeline.ground_truth import write_synthetic_marker
from pipeline.ffmpeg_bin import ffmpeg_exe

__all__ = ["MOTION_CLASSES", "SyntheticActionConfig", "object_state", "render_action_video",
           "write_video_mp4", "generate_action_tree", "main"]

log = logging.getLogger("pipeline.synth.actions")

MOTION_CLASSES = ("left_to_right", "up_down", "circle", "expanding", "rotating", "static_blinking")


@dataclass(frozen=True)
class SyntheticActionConfig:
    """Size of the set and of its videos (pixels, frames/s, seconds)."""

    width: int = 160
    height: int = 120
    fps: float = 25.0
    duration_s: float = 2.0
    train_per_class: int = 8
    test_per_class: int = 3
    unused_per_class: int = 1          # hmdb layout only (tag 0)
    classes: tuple[str, ...] = MOTION_CLASSES
    object_size: tuple[float, float] = (0.12, 0.2)   # bar half length / frame height, range
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.classes) - set(MOTION_CLASSES))
        if unknown:
            raise ValueError(f"classes: expected names from {MOTION_CLASSES}, got {unknown}")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"expected an even frame size (yuv420p), got "
                             f"{self.width}x{self.height}")


# ----------------------------------------------------------------------------- motion (pure)

def object_state(motion: str, t_s: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """Object state at times ``t_s`` (s), for a motion pattern and its random ``params``.

    Returns arrays shaped like ``t_s``: ``x``, ``y`` centre as fractions of the frame width /
    height, ``scale`` size factor, ``angle_rad`` orientation, ``visible`` bool.
    """
    t = np.asarray(t_s, dtype=np.float64)
    x = np.full_like(t, params["x0"])
    y = np.full_like(t, params["y0"])
    scale = np.ones_like(t)
    angle = np.full_like(t, params["angle0_rad"])
    visible = np.ones_like(t, dtype=bool)
    phase = params["phase"]
    if motion == "left_to_right":        # crosses the central 60 %, then starts again on the left
        x = 0.2 + np.mod(params["x0"] - 0.2 + params["speed"] * t, 0.6)
    elif motion == "up_down":
        y = 0.5 + 0.3 * np.sin(2 * np.pi * t / params["period_s"] + phase)
    elif motion == "circle":
        radius = 0.25
        x = 0.5 + radius * np.cos(2 * np.pi * t / params["period_s"] * params["direction"] + phase)
        y = 0.5 + radius * np.sin(2 * np.pi * t / params["period_s"] * params["direction"] + phase)
    elif motion == "expanding":          # grows from 0.4x to 1.6x, then starts again
        scale = 0.4 + 1.2 * np.mod(t / params["period_s"] + phase / (2 * np.pi), 1.0)
    elif motion == "rotating":
        angle = params["angle0_rad"] + params["direction"] * params["spin_rad_s"] * t
    elif motion == "static_blinking":
        visible = np.mod(t / params["blink_period_s"] + phase / (2 * np.pi), 1.0) < 0.5
    else:
        raise ValueError(f"motion: expected one of {MOTION_CLASSES}, got {motion!r}")
    return {"x": x, "y": y, "scale": scale, "angle_rad": angle, "visible": visible}


def _random_params(rng: np.random.Generator, object_size: tuple[float, float]) -> dict:
    """Class-independent look and class-specific speeds (all drawn for every video)."""
    return {
        "x0": rng.uniform(0.25, 0.75), "y0": rng.uniform(0.3, 0.7),
        "angle0_rad": rng.uniform(0, np.pi), "phase": rng.uniform(0, 2 * np.pi),
        "speed": rng.uniform(0.4, 0.6),                  # frame widths per second
        "period_s": rng.uniform(1.0, 1.6),
        "direction": rng.choice([-1.0, 1.0]),
        "spin_rad_s": rng.uniform(3.0, 5.0),
        "blink_period_s": rng.uniform(0.3, 0.45),
        "size": rng.uniform(*object_size),               # half length, fraction of the height
        "aspect": rng.uniform(0.35, 0.5),                # bar: half width / half length
        "colour": rng.integers(60, 256, size=3),
        "background": rng.integers(0, 90, size=3),
        "texture_seed": int(rng.integers(2**31)),
    }


def _background(params: dict, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(params["texture_seed"])
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width)).astype(np.float32), (0, 0), 3)
    image = params["background"][None, None, :].astype(np.float32) + noise[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def render_action_video(motion: str, rng: np.random.Generator, width: int, height: int,
                        fps: float, duration_s: float,
                        object_size: tuple[float, float] = (0.12, 0.2)) -> np.ndarray:
    """Frames ``(n, height, width, 3)`` uint8 RGB of one video: a bar (a rotated rectangle)
    following ``motion`` over a textured background, ``n = round(duration_s * fps)``; the
    bar's half length is drawn from ``object_size`` (fractions of the frame height)."""
    params = _random_params(rng, object_size)
    n_frames = int(round(duration_s * fps))
    state = object_state(motion, np.arange(n_frames) / fps, params)
    background = _background(params, width, height)
    colour = tuple(int(c) for c in params["colour"])
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i in range(n_frames):
        frame = background.copy()
        if state["visible"][i]:
            half_length = params["size"] * height * state["scale"][i]
            box = ((state["x"][i] * width, state["y"][i] * height),
                   (2 * half_length, 2 * half_length * params["aspect"]),
                   math.degrees(state["angle_rad"][i]))
            corners = np.round(cv2.boxPoints(box) * 16).astype(np.int32)   # 4 fractional bits
            cv2.fillConvexPoly(frame, corners, colour, lineType=cv2.LINE_AA, shift=4)
        frames[i] = frame
    return frames


def write_video_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Encode ``frames`` (n, H, W, 3) uint8 RGB as H.264 yuv420p mp4, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, height, width, _ = frames.shape
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}",
           "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
           "-pix_fmt", "yuv420p", str(partial)]
    result = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: ffmpeg exited with {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[-500:]}")
    os.replace(partial, path)
    return path


# ----------------------------------------------------------------------------- trees

def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _video_seed(cfg: SyntheticActionConfig, class_index: int, index: int) -> list[int]:
    return [cfg.seed, class_index, index]


def _planned_videos(cfg: SyntheticActionConfig, layout: str) -> list[tuple[str, int, int, str]]:
    """``(relative path, class index, video index, role)`` with role train | test | unused."""
    plan = []
    for c, motion in enumerate(cfg.classes):
        roles = (["test"] * cfg.test_per_class + ["train"] * cfg.train_per_class
                 + (["unused"] * cfg.unused_per_class if layout == "hmdb" else []))
        for index, role in enumerate(roles):
            if layout == "ucf":
                name = _camel(motion)
                rel = f"UCF-101/{name}/v_{name}_g{index + 1:02d}_c01.mp4"
            else:
                rel = f"hmdb51_org/{motion}/{motion}_synth_{index:03d}.mp4"
            plan.append((rel, c, index, role))
    return plan


def _write_split_files(out: Path, cfg: SyntheticActionConfig, layout: str,
                       plan: Sequence[tuple[str, int, int, str]]) -> None:
    if layout == "ucf":
        lists = out / "ucfTrainTestlist"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / "classInd.txt").write_text(
            "".join(f"{c + 1} {_camel(m)}\r\n" for c, m in enumerate(cfg.classes)))
        strip = len("UCF-101/")
        (lists / "trainlist01.txt").write_text("".join(
            f"{rel[strip:]} {c + 1}\r\n" for rel, c, _, role in plan if role == "train"))
        (lists / "testlist01.txt").write_text("".join(
            f"{rel[strip:]}\r\n" for rel, c, _, role in plan if role == "test"))
        return
    splits = out / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True, exist_ok=True)
    tags = {"unused": 0, "train": 1, "test": 2}
    for c, motion in enumerate(cfg.classes):
        lines = [f"{Path(rel).name} {tags[role]} \n" for rel, cc, _, role in plan if cc == c]
        (splits / f"{motion}_test_split1.txt").write_text("".join(lines))


def _render_job(job: tuple[str, str, int, int, SyntheticActionConfig]) -> bool:
    path, motion, class_index, index, cfg = job
    if Path(path).is_file():
        return False
    rng = np.random.default_rng(_video_seed(cfg, class_index, index))
    frames = render_action_video(motion, rng, cfg.width, cfg.height, cfg.fps, cfg.duration_s,
                                 cfg.object_size)
    write_video_mp4(path, frames, cfg.fps)
    return True


def generate_action_tree(out: str | Path, cfg: SyntheticActionConfig = SyntheticActionConfig(),
                         layout: str = "ucf", workers: int = 1) -> Path:
    """Write (or complete) the synthetic set under ``out`` in the ``ucf`` or ``hmdb`` layout
    (see the module docstring); returns ``out``."""
    if layout not in ("ucf", "hmdb"):
        raise ValueError(f"layout: expected 'ucf' or 'hmdb', got {layout!r}")
    out = Path(out)
    plan = _planned_videos(cfg, layout)
    jobs = [(str(out / rel), cfg.classes[c], c, index, cfg) for rel, c, index, _ in plan]
    if workers <= 1:
        written = sum(_render_job(job) for job in jobs)
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=workers) as pool:
            written = sum(pool.map(_render_job, jobs))
    _write_split_files(out, cfg, layout, plan)
    write_synthetic_marker(out, "pipeline.synth.actions", layout=layout, classes=list(cfg.classes))
    log.info("%s: %d videos written, %d already present (%s layout, %d classes)", out, written,
             len(jobs) - written, layout, len(cfg.classes))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config import run_main

    return run_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from pipeline.runtime import setup_entry_point

    setup_entry_point()
    parser = argparse.ArgumentParser(prog="python -m pipeline.synth.actions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layout", choices=("ucf", "hmdb"), default="ucf")
    defaults = SyntheticActionConfig()
    parser.add_argument("--train-per-class", type=int, default=defaults.train_per_class)
    parser.add_argument("--test-per-class", type=int, default=defaults.test_per_class)
    parser.add_argument("--duration-s", type=float, default=defaults.duration_s)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = SyntheticActionConfig(width=args.width, height=args.height, duration_s=args.duration_s,
                                train_per_class=args.train_per_class,
                                test_per_class=args.test_per_class, seed=args.seed)
    log.info("config: %s", asdict(cfg))
    generate_action_tree(args.out, cfg, args.layout, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
