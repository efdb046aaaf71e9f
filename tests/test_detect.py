"""Seam-aware detection on equirectangular frames, with a colour-blob stub detector.

The stub stands in for YOLO (no trained weights in the tests): it returns the bounding box of
every connected coloured region, so an object cut by the seam comes back as two half boxes in
the unrolled frame, as a real detector's would.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipeline.detect import (
    Detections,
    UltralyticsDetector,
    box_centre_directions,
    detect_equirect,
    load_production_detector,
    pad_detections,
    wrap_iou,
)
from pipeline.errors import DetectorWeightsError
from pipeline.spatial import angular_distance_rad, equirect_pixel_to_direction

W, H = 256, 128
COLOURS = {0: (255, 0, 0), 1: (0, 255, 0)}


def blob_detector(image: np.ndarray):
    """Boxes (pixel-edge xyxy) of connected regions of each stub colour; confidence = area."""
    boxes, confidence, class_id = [], [], []
    for cls, rgb in COLOURS.items():
        mask = np.all(image == np.array(rgb, np.uint8), axis=-1).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        for x, y, w, h, area in stats[1:n]:
            boxes.append([x, y, x + w, y + h])
            confidence.append(min(1.0, area / 500.0))
            class_id.append(cls)
    return np.asarray(boxes, float).reshape(-1, 4), np.asarray(confidence), np.asarray(class_id)


def _paint(frame: np.ndarray, az_deg: float, el_deg: float, radius_deg: float, cls: int) -> None:
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    az, el = equirect_pixel_to_direction(cols, rows, W, H)
    inside = angular_distance_rad(az, el, math.radians(az_deg), math.radians(el_deg)) <= math.radians(radius_deg)
    frame[inside] = COLOURS[cls]


def _one(detections: Detections, cls: int) -> int:
    hits = np.flatnonzero(detections.class_id == cls)
    assert len(hits) == 1, f"expected one detection of class {cls}, got {len(hits)}"
    return int(hits[0])


def test_object_across_the_seam_is_one_box_wrapping_the_right_edge():
    frame = np.zeros((H, W, 3), np.uint8)
    _paint(frame, 180.0, 10.0, 12.0, cls=0)       # behind: cut in two by the seam
    _paint(frame, 0.0, -20.0, 10.0, cls=1)        # in front
    assert len(blob_detector(frame)[0]) == 3      # the plain detector sees two halves + one
    detections = detect_equirect(frame, blob_detector)
    assert len(detections) == 2
    i = _one(detections, 0)
    x1, _, x2, _ = detections.boxes_xyxy[i]
    assert 0 <= x1 < W < x2                       # wraps across the right edge
    assert abs(abs(math.degrees(detections.azimuth_rad[i])) - 180.0) < 1.5
    assert math.degrees(detections.elevation_rad[i]) == pytest.approx(10.0, abs=1.5)
    j = _one(detections, 1)
    assert math.degrees(detections.azimuth_rad[j]) == pytest.approx(0.0, abs=1.5)
    assert math.degrees(detections.elevation_rad[j]) == pytest.approx(-20.0, abs=1.5)


@pytest.mark.parametrize("az_deg", [90.0, 92.0, -88.0, 45.0, 135.0, 170.0, -178.0])
def test_every_object_is_found_exactly_once_wherever_it_is(az_deg):
    # 90 deg sits where the two passes hand over (W/4): both see it, the merge keeps one.
    frame = np.zeros((H, W, 3), np.uint8)
    _paint(frame, az_deg, 0.0, 8.0, cls=1)
    detections = detect_equirect(frame, blob_detector)
    i = _one(detections, 1)
    error = angular_distance_rad(detections.azimuth_rad[i], detections.elevation_rad[i],
                                 math.radians(az_deg), 0.0)
    assert math.degrees(error) < 1.5


def test_detections_are_sorted_by_confidence_and_capped():
    frame = np.zeros((H, W, 3), np.uint8)
    for k, az in enumerate((-150, -90, -30, 30, 90, 150)):
        _paint(frame, az, 0.0, 4.0 + 2 * k, cls=k % 2)
    detections = detect_equirect(frame, blob_detector, max_detections=4)
    assert len(detections) == 4
    assert np.all(np.diff(detections.confidence) <= 0)


def test_box_centre_uses_pixel_centre_convention():
    boxes = np.array([[W / 2 - 10, H / 2 - 4, W / 2 + 10, H / 2 + 4],     # image centre: front
                      [W - 6, 0, W + 6, 8]])                             # across the seam, top
    az, el = box_centre_directions(boxes, W, H)
    assert az[0] == pytest.approx(0.0, abs=1e-12) and el[0] == pytest.approx(0.0, abs=1e-12)
    assert abs(abs(az[1]) - math.pi) < 1e-9
    assert el[1] == pytest.approx(math.pi * (0.5 - 4.0 / H), abs=1e-12)


def test_wrap_iou_matches_boxes_across_the_seam():
    a = np.array([W - 10.0, 10, W + 10.0, 30])
    b = np.array([[-10.0, 10, 10.0, 30], [50.0, 10, 70.0, 30]])
    np.testing.assert_allclose(wrap_iou(a, b, W), [1.0, 0.0])
    # full-width boxes around a pole, seen from both passes: the same object
    np.testing.assert_allclose(wrap_iou(np.array([0.0, 0, W, 20]), np.array([[W / 2, 0, 1.5 * W, 20]]), W), [1.0])
    np.testing.assert_allclose(wrap_iou(np.array([0.0, 0, 20, 20]), np.array([[10.0, 0, 30, 20]]), W), [1 / 3])


def test_object_around_the_pole_is_one_detection():
    frame = np.zeros((H, W, 3), np.uint8)
    _paint(frame, 0.0, 85.0, 15.0, cls=0)          # covers every column near the top
    detections = detect_equirect(frame, blob_detector)
    i = _one(detections, 0)
    assert math.degrees(detections.elevation_rad[i]) > 70


def test_pad_detections_to_the_schema_size():
    frame = np.zeros((H, W, 3), np.uint8)
    _paint(frame, 30.0, 0.0, 10.0, cls=0)
    fields = pad_detections(detect_equirect(frame, blob_detector), 16)
    assert fields["detections/count"] == 1
    assert fields["detections/boxes_xyxy"].shape == (16, 4)
    assert fields["detections/class_id"].tolist() == [0] + [-1] * 15
    assert fields["detections/confidence"][1:].sum() == 0
    empty = pad_detections(Detections.empty(), 16)
    assert empty["detections/count"] == 0


def test_missing_weights_is_a_named_error(tmp_path):
    with pytest.raises(DetectorWeightsError, match="enabled=false"):
        load_production_detector(tmp_path / "nope.pt", conf=0.25, iou=0.5, imgsz=256, device="cpu")


def test_ultralytics_wrapper_runs_a_yolo_model_on_rgb_frames():
    ultralytics = pytest.importorskip("ultralytics")
    model = ultralytics.YOLO("yolov8n.yaml")      # architecture only: random weights, offline
    detector = UltralyticsDetector(model, conf=0.0, iou=0.5, imgsz=128, device="cpu")
    frame = np.zeros((H, W, 3), np.uint8)
    _paint(frame, 0.0, 0.0, 20.0, cls=0)
    boxes, confidence, class_id = detector(frame)
    assert boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) == len(confidence) == len(class_id)
    detections = detect_equirect(frame, detector, max_detections=16)
    assert len(detections) <= 16
