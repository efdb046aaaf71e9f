"""Offline object detector for equirectangular frames, trained on synthetic scenes.

    python -m pipeline.synth.detector train --out models/detector            # a few minutes on CPU
    python -m pipeline.synth.detector train --out models/detector --epochs 30 --n-train-scenes 600

Nothing is downloaded: the YOLO network is built from ultralytics' bundled ``yolo11.yaml``
(scaled down, ``nc`` = the synthetic classes) and trained from scratch (``pretrained=False``,
``amp=False``, ``plots=False``; ``YOLO_OFFLINE=1`` and a writable ``YOLO_CONFIG_DIR`` are set
before ultralytics is imported). Training frames are rendered straight from sampled scene
ground truth (``pipeline.synth``), saved as JPEG (a stand-in for video compression), with one
YOLO box per visible object:

- boxes are in equirectangular pixels, from the object's *visible* pixels (occlusion by objects
  drawn later is applied; an object less than a quarter visible gets no box);
- an object straddling the seam is split into two boxes, one at each image edge, because that is
  what it looks like in the unrolled frame the detector sees; parts narrower than
  ``min_box_px`` are dropped (``pipeline/detect.py`` merges detections across the seam);
- an object around a pole spans every column and gets one full-width box.

Outputs in ``--out``: ``synthetic_yolo.pt`` (ultralytics checkpoint), ``metrics.json``
(precision, recall, mAP50, mAP50-95 on held-out rendered frames, training time, config).

Inference (weights check, safe loading, seam-aware detection on RGB frames) is the stage
:mod:`pipeline.detect`; this module only makes the synthetic training set and trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from pipeline.detect import DEFAULT_WEIGHTS, import_ultralytics, load_detector
from pipeline.synth.render import background_image, object_masks_at, render_frame
from pipeline.synth.scenes import OBJECT_CLASSES, SceneConfig, sample_scene

log = logging.getLogger("pipeline.synth.detector")

WEIGHTS_NAME = "synthetic_yolo.pt"
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in OBJECT_CLASSES)
_MIN_VISIBLE_FRACTION = 0.25


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Everything that defines a detector training run (saved in metrics.json)."""

    n_train_scenes: int = 300
    n_val_scenes: int = 60
    frames_per_scene: int = 2
    frame_width: int = 512  # equirectangular width of rendered frames (height = width / 2)
    seed: int = 0
    imgsz: int = 384
    epochs: int = 12
    batch: int = 16
    depth_multiple: float = 0.33
    width_multiple: float = 0.125
    max_channels: int = 1024
    jpeg_quality: int = 85
    min_box_px: int = 4
    warmup_epochs: float = 3.0
    dataloader_workers: int = 0
    max_hours: float | None = None  # hard cap on training time (ultralytics ``time``)


class PixelBox(NamedTuple):
    """An axis-aligned box in equirectangular pixels, inclusive pixel indices."""

    class_id: int
    col_min: int
    row_min: int
    col_max: int
    row_max: int


# --------------------------------------------------------------------------- labels from ground truth


def _column_runs(occupied: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, stop) of each run of True in a 1-D bool array."""
    padded = np.concatenate([[False], occupied, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def object_boxes(
    gt: dict, t_s: float, width: int | None = None, height: int | None = None, min_box_px: int = 4
) -> list[PixelBox]:
    """YOLO boxes of the visible objects of a scene at ``t_s`` (see the module docstring for
    occlusion, the seam split and pole-spanning objects)."""
    width = gt["width"] if width is None else width
    height = gt["height"] if height is None else height
    masks = object_masks_at(gt, t_s, width, height)
    owner = np.full((height, width), -1, dtype=np.int32)
    for obj, mask in masks:  # same painting order as the renderer
        owner[mask] = obj["object_id"]
    boxes = []
    for obj, mask in masks:
        visible = owner == obj["object_id"]
        if visible.sum() < _MIN_VISIBLE_FRACTION * mask.sum():
            continue
        for first, last in _column_runs(visible.any(axis=0)):
            if last - first + 1 < min_box_px:
                continue
            rows = np.flatnonzero(visible[:, first : last + 1].any(axis=1))
            if rows[-1] - rows[0] + 1 < min_box_px:
                continue
            boxes.append(PixelBox(obj["class_id"], first, int(rows[0]), last, int(rows[-1])))
    return boxes


def yolo_label_lines(boxes: Iterable[PixelBox], width: int, height: int) -> list[str]:
    """``class cx cy w h`` lines, normalised to [0, 1]; a box covers whole pixels."""
    lines = []
    for box in boxes:
        cx = (box.col_min + box.col_max + 1) / 2 / width
        cy = (box.row_min + box.row_max + 1) / 2 / height
        w = (box.col_max - box.col_min + 1) / width
        h = (box.row_max - box.row_min + 1) / height
        lines.append(f"{box.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def detector_scene_config(frame_width: int) -> SceneConfig:
    """Scenes for detector frames: the synthetic look, with more objects per frame."""
    return SceneConfig(
        width=frame_width,
        height=frame_width // 2,
        duration_s=4.0,
        min_sources=2,
        max_sources=5,
        p_silent_object=0.5,
    )


def write_yolo_split(root: Path, split: str, n_scenes: int, cfg: DetectorTrainConfig) -> int:
    """Render ``n_scenes × frames_per_scene`` frames with labels into ``root/images/<split>`` and
    ``root/labels/<split>``; returns the number of boxes. Scene seeds: ``(seed, 100 + split, k)``,
    disjoint from the video set's seeds."""
    from PIL import Image

    split_index = {"train": 100, "val": 101}[split]
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    scene_cfg = detector_scene_config(cfg.frame_width)
    from tqdm import tqdm

    n_boxes = 0
    for k in tqdm(range(n_scenes), desc=f"detector frames ({split})", unit="scene",
                  dynamic_ncols=True, mininterval=2.0):
        gt = sample_scene(scene_cfg, (cfg.seed, split_index, k), f"det-{split}-{k:05d}")
        background = background_image(gt["background"], gt["width"], gt["height"])
        times = np.linspace(0.0, scene_cfg.duration_s, cfg.frames_per_scene, endpoint=False)
        for j, t_s in enumerate(times):
            stem = f"{split}_{k:05d}_{j}"
            frame = render_frame(gt, float(t_s), background)
            Image.fromarray(frame).save(
                root / "images" / split / f"{stem}.jpg", quality=cfg.jpeg_quality
            )
            boxes = object_boxes(gt, float(t_s), min_box_px=cfg.min_box_px)
            (root / "labels" / split / f"{stem}.txt").write_text(
                "\n".join(yolo_label_lines(boxes, gt["width"], gt["height"]))
            )
            n_boxes += len(boxes)
    return n_boxes


def write_yolo_dataset(root: Path, cfg: DetectorTrainConfig) -> Path:
    """An ultralytics detection data set (images/, labels/, data.yaml); returns data.yaml."""
    import yaml

    counts = {
        split: write_yolo_split(root, split, n, cfg)
        for split, n in (("train", cfg.n_train_scenes), ("val", cfg.n_val_scenes))
    }
    log.info("detector data set in %s: %s boxes", root, counts)
    data_yaml = root / "data.yaml"
    data = {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


# --------------------------------------------------------------------------- model, training


MODEL_YAML_NAME = "yolo11n-synthetic.yaml"  # ultralytics reads the scale letter from the name


def write_model_yaml(
    directory: Path, nc: int, depth_multiple: float, width_multiple: float, max_channels: int
) -> Path:
    """Write ``directory/yolo11n-synthetic.yaml``: ultralytics' bundled YOLO11 detection config
    with ``nc`` classes at a custom (depth, width, max channels) scale."""
    import yaml

    import_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    cfg = yaml_model_load("yolo11n.yaml")
    cfg = {k: v for k, v in cfg.items() if k not in ("scale", "yaml_file", "ch")}
    cfg["nc"] = nc
    cfg["scales"] = {"n": [depth_multiple, width_multiple, max_channels]}
    path = Path(directory) / MODEL_YAML_NAME
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def build_model(work_dir: Path, cfg: DetectorTrainConfig):
    """An untrained YOLO model from the scaled yaml (no weights involved)."""
    ultralytics = import_ultralytics()
    model_yaml = write_model_yaml(
        work_dir, len(CLASS_NAMES), cfg.depth_multiple, cfg.width_multiple, cfg.max_channels
    )
    return ultralytics.YOLO(str(model_yaml), task="detect")


def train_args(cfg: DetectorTrainConfig, data_yaml: Path, project: Path) -> dict:
    """Keyword arguments of ``YOLO.train``: CPU, offline, reproducible, colour-preserving."""
    args = dict(
        data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, device="cpu",
        workers=cfg.dataloader_workers, pretrained=False, amp=False, plots=False, seed=cfg.seed,
        deterministic=True, project=str(project), name="train", exist_ok=True, verbose=False,
        hsv_h=0.0,  # hue is a class cue: no hue jitter (saturation / value jitter stay)
        close_mosaic=max(1, cfg.epochs // 4),
        warmup_epochs=cfg.warmup_epochs,
    )  # fmt: skip
    if cfg.max_hours is not None:
        args["time"] = cfg.max_hours
    return args


def validation_metrics(model, data_yaml: Path, cfg: DetectorTrainConfig, project: Path) -> dict:
    """Precision, recall, mAP50, mAP50-95 (all classes) and AP50 per class on the val frames."""
    result = model.val(
        data=str(data_yaml),
        imgsz=cfg.imgsz,
        batch=cfg.batch,
        device="cpu",
        plots=False,
        project=str(project),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    box = result.box
    ap50_by_class = {
        CLASS_NAMES[int(c)]: round(float(ap), 4) for c, ap in zip(box.ap_class_index, box.ap50)
    }
    return {
        "precision": round(float(box.mp), 4),
        "recall": round(float(box.mr), 4),
        "mAP50": round(float(box.map50), 4),
        "mAP50_95": round(float(box.map), 4),
        "ap50_by_class": ap50_by_class,
    }


def train_detector(out_dir: Path, cfg: DetectorTrainConfig, work_dir: Path | None = None) -> dict:
    """Render the data set, train, validate on held-out frames, write weights + metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="detector_work_") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        data_yaml = write_yolo_dataset(work / "dataset", cfg)
        render_s = time.perf_counter() - started
        model = build_model(work, cfg)
        started = time.perf_counter()
        model.train(**train_args(cfg, data_yaml, work / "runs"))
        train_s = time.perf_counter() - started
        best = Path(model.trainer.best)
        if not best.is_file():
            best = Path(model.trainer.last)
        weights = out_dir / WEIGHTS_NAME
        shutil.copyfile(best, weights)
        trained = load_detector(weights)
        metrics = validation_metrics(trained, data_yaml, cfg, work / "runs")
    metrics.update(
        {
            "weights": WEIGHTS_NAME,
            "classes": list(CLASS_NAMES),
            "n_train_images": cfg.n_train_scenes * cfg.frames_per_scene,
            "n_val_images": cfg.n_val_scenes * cfg.frames_per_scene,
            "render_s": round(render_s, 1),
            "train_s": round(train_s, 1),
            "device": "cpu",
            "config": dataclasses.asdict(cfg),
        }
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info(
        "detector: precision %.3f recall %.3f mAP50 %.3f (train %.0f s) -> %s",
        metrics["precision"],
        metrics["recall"],
        metrics["mAP50"],
        train_s,
        weights,
    )
    return metrics


# --------------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.synth.detector",
        description="Offline YOLO detector on synthetic equirectangular frames.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="render frames, train from scratch on CPU, write weights + metrics"
    )
    train.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS.parent)
    train.add_argument(
        "--work-dir",
        type=Path,
        help="keep the rendered data set and ultralytics run here (default: a temporary folder)",
    )
    defaults = DetectorTrainConfig()
    for field in dataclasses.fields(DetectorTrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = float if field.name == "max_hours" else type(getattr(defaults, field.name))
        train.add_argument(flag, type=kind, default=getattr(defaults, field.name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config import run_main
    from pipeline.runtime import setup_entry_point

    def run(args_list: list[str]) -> int:
        setup_entry_point()
        args = _build_parser().parse_args(args_list)
        cfg = DetectorTrainConfig(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(DetectorTrainConfig)}
        )
        log.info("resolved detector config: %s", dataclasses.asdict(cfg))
        train_detector(args.out, cfg, args.work_dir)
        print(f"==> detector: {args.out / WEIGHTS_NAME} (metrics: {args.out / 'metrics.json'})",
              flush=True)
        return 0

    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
