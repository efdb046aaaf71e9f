"""Object detection on equirectangular keyframes, with objects across the horizontal seam.

A *detector* is any callable ``detector(image) -> (boxes_xyxy (n, 4), confidence (n,),
class_id (n,))`` on an RGB uint8 image ``(H, W, 3)``; boxes are in continuous pixel coordinates
whose image spans ``[0, W] x [0, H]`` (ultralytics' convention). The production detector is
:class:`UltralyticsDetector` (YOLO weights loaded through :func:`load_detector`);
tests plug in stubs.

Seam handling (:func:`detect_equirect`): the detector runs twice, on the frame and on the frame
rolled by W/2 (the seam moves to the middle). From the first pass we keep boxes whose centre lies
in the central half of the image widened by ``seam_margin`` (W/16 each side by default); from the
second pass the boxes whose centre lies in the central half of the *rolled* image (again
widened), i.e. objects near the seam, which that pass sees whole. Rolled boxes are shifted back
by W/2; a box that straddles the seam keeps ``x1`` in ``[0, W)`` and gets ``x2 > W``. The two sets
overlap a little (the margins), and a class-wise non-maximum suppression with a seam-aware IoU
(max over shifts of 0 and ±W) removes the duplicates. Cost: two detector calls per keyframe.

Box centres become directions with ``pipeline.spatial`` (docs/CONVENTIONS.md): the centre in
edge coordinates ``x`` is pixel-centre column ``x - 0.5``.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from pipeline.errors import DetectorWeightsError
from pipeline.spatial import equirect_pixel_to_direction

__all__ = [
    "Detector",
    "Detections",
    "detect_equirect",
    "wrap_iou",
    "seam_aware_nms",
    "box_centre_directions",
    "pad_detections",
    "UltralyticsDetector",
    "load_production_detector",
    "check_weights",
    "load_detector",
]

log = logging.getLogger(__name__)

DEFAULT_SEAM_MARGIN_FRACTION = 1.0 / 16.0
#: The committed offline synthetic detector (``assets/detector/README.md``); ``make detector``
#: writes a fresh one to ``models/detector/``.
DEFAULT_WEIGHTS = Path("assets/detector/synthetic_yolo.pt")


class Detector(Protocol):
    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Detections:
    """Detections of one equirectangular frame, sorted by decreasing confidence.

    Attributes:
        boxes_xyxy: ``(n, 4)`` float32 pixel-edge coordinates of the detector's input frame;
            ``0 <= x1 < W`` and ``x2 > W`` for a box that wraps across the right edge.
        class_id: ``(n,)`` int16 detector class.
        confidence: ``(n,)`` float32.
        azimuth_rad, elevation_rad: ``(n,)`` float32 box-centre direction (CONVENTIONS.md).
    """

    boxes_xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray
    azimuth_rad: np.ndarray
    elevation_rad: np.ndarray

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int16), np.zeros(0, np.float32),
                   np.zeros(0, np.float32), np.zeros(0, np.float32))


def _as_arrays(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, confidence, class_id = result
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    class_id = np.asarray(class_id).reshape(-1).astype(np.int64)
    if not (len(boxes) == len(confidence) == len(class_id)):
        raise ValueError(f"detector returned {len(boxes)} boxes, {len(confidence)} confidences "
                         f"and {len(class_id)} classes; expected equal counts")
    return boxes, confidence, class_id


def wrap_iou(box: np.ndarray, boxes: np.ndarray, width: int) -> np.ndarray:
    """IoU of one box ``(4,)`` with boxes ``(n, 4)`` on a horizontally periodic image.

    Columns are circular: the horizontal overlap is summed over copies of ``boxes`` shifted by
    ``-W``, ``0`` and ``+W`` (so a box drawn at the left edge matches the same object drawn past
    the right edge, and two full-width boxes around a pole match whatever their ``x1``).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box_w = min(max(box[2] - box[0], 0.0), width)
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0, width)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    area_a = box_w * max(box[3] - box[1], 0.0)
    areas = widths * heights
    inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter_w = np.zeros(len(boxes))
    for shift in (-width, 0.0, width):
        inter_w += np.clip(np.minimum(box[0] + box_w, boxes[:, 0] + widths + shift)
                           - np.maximum(box[0], boxes[:, 0] + shift), 0, None)
    inter = np.minimum(inter_w, np.minimum(box_w, widths)) * inter_h
    union = area_a + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def seam_aware_nms(boxes: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, width: int,
                   iou_threshold: float) -> np.ndarray:
    """Indices kept by class-wise greedy NMS with :func:`wrap_iou`, by decreasing confidence."""
    order = np.argsort(-confidence, kind="stable")
    kept: list[int] = []
    for i in order:
        same_class = [j for j in kept if class_id[j] == class_id[i]]
        if same_class and np.any(wrap_iou(boxes[i], boxes[same_class], width) > iou_threshold):
            continue
        kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _normalise_wrap(boxes: np.ndarray, width: int) -> np.ndarray:
    """Shift boxes by multiples of W so that ``0 <= x1 < W`` (``x2`` may then exceed W)."""
    boxes = boxes.copy()
    shift = np.floor(boxes[:, 0] / width) * width
    boxes[:, 0] -= shift
    boxes[:, 2] -= shift
    return boxes


def box_centre_directions(boxes_xyxy: np.ndarray, width: int, height: int):
    """Centre direction ``(azimuth_rad, elevation_rad)`` of pixel-edge boxes ``(n, 4)``."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centre_x = 0.5 * (boxes[:, 0] + boxes[:, 2]) - 0.5  # edge coords -> pixel-centre column
    centre_y = 0.5 * (boxes[:, 1] + boxes[:, 3]) - 0.5
    return equirect_pixel_to_direction(centre_x, centre_y, width, height)


def detect_equirect(frame_rgb: np.ndarray, detector: Callable[[np.ndarray], Any], *,
                    iou_threshold: float = 0.5, max_detections: int = 16,
                    seam_margin_fraction: float = DEFAULT_SEAM_MARGIN_FRACTION) -> Detections:
    """Run ``detector`` on an equirectangular RGB frame, seam-aware (see the module docstring).

    Args:
        frame_rgb: ``(H, W, 3)`` uint8, W = 2H.
        detector: callable as described in the module docstring.
        iou_threshold: merge duplicates of one object (same class, seam-aware IoU above this).
        max_detections: keep the most confident ones.
    Returns:
        :class:`Detections` sorted by decreasing confidence.
    """
    height, width = frame_rgb.shape[:2]
    half = width // 2
    low = width / 4.0 - seam_margin_fraction * width
    high = 3.0 * width / 4.0 + seam_margin_fraction * width

    boxes_a, conf_a, cls_a = _as_arrays(detector(frame_rgb))
    centre_a = 0.5 * (boxes_a[:, 0] + boxes_a[:, 2])
    keep_a = (centre_a >= low) & (centre_a <= high)

    rolled = np.ascontiguousarray(np.roll(frame_rgb, half, axis=1))
    boxes_b, conf_b, cls_b = _as_arrays(detector(rolled))
    centre_b = 0.5 * (boxes_b[:, 0] + boxes_b[:, 2])
    keep_b = (centre_b >= low) & (centre_b <= high)
    boxes_b = boxes_b.copy()
    boxes_b[:, [0, 2]] -= half  # back to the original frame's columns (may be negative)

    boxes = _normalise_wrap(np.concatenate([boxes_a[keep_a], boxes_b[keep_b]]), width)
    confidence = np.concatenate([conf_a[keep_a], conf_b[keep_b]])
    class_id = np.concatenate([cls_a[keep_a], cls_b[keep_b]])
    if len(boxes) == 0:
        return Detections.empty()
    kept = seam_aware_nms(boxes, confidence, class_id, width, iou_threshold)[:max_detections]
    boxes, confidence, class_id = boxes[kept], confidence[kept], class_id[kept]
    azimuth_rad, elevation_rad = box_centre_directions(boxes, width, height)
    return Detections(boxes.astype(np.float32), class_id.astype(np.int16),
                      confidence.astype(np.float32), np.asarray(azimuth_rad, np.float32),
                      np.asarray(elevation_rad, np.float32))


def pad_detections(detections: Detections, max_detections: int) -> dict[str, np.ndarray]:
    """Fixed-size shard fields ``detections/*`` (class -1 and confidence 0 mark padding)."""
    n = min(len(detections), max_detections)
    boxes = np.zeros((max_detections, 4), np.float32)
    class_id = np.full(max_detections, -1, np.int16)
    confidence = np.zeros(max_detections, np.float32)
    azimuth = np.zeros(max_detections, np.float32)
    elevation = np.zeros(max_detections, np.float32)
    boxes[:n] = detections.boxes_xyxy[:n]
    class_id[:n] = detections.class_id[:n]
    confidence[:n] = detections.confidence[:n]
    azimuth[:n] = detections.azimuth_rad[:n]
    elevation[:n] = detections.elevation_rad[:n]
    return {
        "detections/count": np.int16(n),
        "detections/boxes_xyxy": boxes,
        "detections/class_id": class_id,
        "detections/confidence": confidence,
        "detections/azimuth_rad": azimuth,
        "detections/elevation_rad": elevation,
    }


# ---------------------------------------------------------------------------------------------
# production detector (ultralytics YOLO)


class UltralyticsDetector:
    """A YOLO model as a :class:`Detector` (RGB in; ultralytics wants BGR numpy images).

    Args:
        model: an ``ultralytics.YOLO`` (from :func:`load_detector`).
        conf, iou: confidence and NMS IoU thresholds; imgsz: inference size (pixels, long side);
        device: "cpu", "cuda:0", ... ("" = ultralytics' choice).
    """

    def __init__(self, model, conf: float = 0.25, iou: float = 0.5, imgsz: int = 512,
                 device: str = "cpu", max_det: int = 50):
        self.model = model
        self.conf, self.iou, self.imgsz, self.device, self.max_det = conf, iou, imgsz, device, max_det

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kwargs = dict(conf=self.conf, iou=self.iou, imgsz=self.imgsz, verbose=False,
                      max_det=self.max_det)
        if self.device:
            kwargs["device"] = self.device
        result = self.model.predict(np.ascontiguousarray(image_rgb[..., ::-1]), **kwargs)[0]
        boxes = result.boxes
        return (boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                boxes.cls.cpu().numpy().astype(np.int64))


_DETECTOR_CACHE: dict[tuple, UltralyticsDetector] = {}
_DETECTOR_LOCK = threading.Lock()


def load_production_detector(weights_path: str | Path, *, conf: float, iou: float, imgsz: int,
                             device: str) -> UltralyticsDetector:
    """The YOLO detector for ``weights_path``, loaded once per process (cached).

    Raises:
        DetectorWeightsError: the weights file is missing or cannot be loaded (from
            :func:`load_detector`).
    """
    key = (str(Path(weights_path).resolve()), conf, iou, imgsz, device)
    with _DETECTOR_LOCK:
        if key not in _DETECTOR_CACHE:
            model = load_detector(weights_path)
            _DETECTOR_CACHE[key] = UltralyticsDetector(model, conf=conf, iou=iou, imgsz=imgsz,
                                                       device=device)
            log.info("loaded detector %s on %s", weights_path, device or "default device")
        return _DETECTOR_CACHE[key]


# ---------------------------------------------------------------------------------------------
# weights


def import_ultralytics():
    """Import ultralytics with the offline environment in force (no downloads, no pip)."""
    from pipeline.runtime import offline_environment

    offline_environment()
    import ultralytics

    return ultralytics


def downloads_allowed() -> bool:
    """True only when the user turned ultralytics' offline mode off (``YOLO_OFFLINE=0``); the
    entry points default it to 1, so nothing is fetched unless asked for."""
    return os.environ.get("YOLO_OFFLINE", "1").strip().lower() in ("0", "false", "no")


def check_weights(weights_path: str | Path) -> str:
    """The weights to hand to ultralytics, or DetectorWeightsError saying how to get some.

    A local file is always used. A bare model name such as ``yolo11n.pt`` that is not on disk is
    passed through to ultralytics (which downloads it, the ordinary usage) only when
    :func:`downloads_allowed`; otherwise it is an error, like any missing file.
    """
    weights_path = Path(weights_path)
    if weights_path.is_file():
        return str(weights_path)
    if weights_path.name == str(weights_path) and downloads_allowed():
        return str(weights_path)
    raise DetectorWeightsError(
        f"{weights_path}: expected YOLO detector weights, got no such file. Train the offline "
        "synthetic detector with `make detector` (CPU, a few minutes; writes "
        f"{DEFAULT_WEIGHTS}), or give the path of real weights (detector.weights=...); on a "
        "machine with internet, YOLO_OFFLINE=0 with detector.weights=yolo11n.pt lets "
        "ultralytics fetch them as usual (nothing is downloaded while YOLO_OFFLINE=1). Or set "
        "detector.enabled=false: the yolo viewpoints are then random fill, flagged "
        "from_detection=false."
    )


def load_detector(weights_path: str | Path = DEFAULT_WEIGHTS):
    """Load YOLO weights for equirectangular detection, with ultralytics' safe loader
    (``ULTRALYTICS_SAFE_LOAD=1``, set by :func:`pipeline.runtime.offline_environment`:
    ``torch.load(weights_only=True)`` against its allow-list of model classes).

    Raises DetectorWeightsError when the weights are missing (see :func:`check_weights`), not
    loadable, or refused by the safe loader (a file that would run code when unpickled).
    """
    weights_path = check_weights(weights_path)
    ultralytics = import_ultralytics()
    try:
        return ultralytics.YOLO(str(weights_path), task="detect")
    except Exception as exc:  # ultralytics raises many types for a corrupt or foreign file
        text = " ".join(str(exc).replace("ERROR ❌️", "").split())
        # ultralytics reports a refused global and a file that is no pickle alike; a .pt of
        # torch's format is a zip archive, so only a zip can be a refused (unsafe) checkpoint.
        if "outside the supported" in text and zipfile.is_zipfile(weights_path):
            raise DetectorWeightsError(
                f"{weights_path}: refused by the safe loader: the file references Python types "
                f"outside ultralytics' model classes, so unpickling it could run code. Use "
                f"weights from ultralytics or `make detector`; if you trust this file, load it "
                f"with ULTRALYTICS_SAFE_LOAD=0") from exc
        raise DetectorWeightsError(
            f"{weights_path}: expected ultralytics YOLO weights, failed to load: {text[:300]}"
        ) from exc
