"""Offline detector: YOLO labels from scene ground truth, a tiny end-to-end training run on CPU
(no trained detector needed, nothing downloaded) and the missing-weights error."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.synth.detector import (
    DetectorTrainConfig,
    PixelBox,
    object_boxes,
    train_detector,
    write_yolo_dataset,
    yolo_label_lines,
)
from pipeline.detect import UltralyticsDetector, detect_equirect, load_detector
from pipeline.errors import DetectorWeightsError
from pipeline.spatial import direction_to_equirect_pixel
from pipeline.synth.render import render_frame
from pipeline.synth.scenes import ObjectSpec, SceneConfig, make_scene

CFG = SceneConfig(width=256, height=128, duration_s=0.5)


def test_box_is_centred_on_the_object_direction():
    az, el = math.radians(50.0), math.radians(-20.0)
    gt = make_scene(CFG, [ObjectSpec("drum", az, el, radius_rad=math.radians(10))], "c")
    (box,) = object_boxes(gt, 0.0)
    col, row = direction_to_equirect_pixel(az, el, CFG.width, CFG.height)
    assert box.class_id == 2
    assert (box.col_min + box.col_max) / 2 == pytest.approx(col, abs=0.6)
    assert (box.row_min + box.row_max) / 2 == pytest.approx(row, abs=0.6)


def test_seam_straddling_object_gets_two_edge_boxes_and_pole_object_full_width():
    gt = make_scene(CFG, [ObjectSpec("bell", math.pi, 0.0, radius_rad=math.radians(10))], "c")
    left, right = sorted(object_boxes(gt, 0.0), key=lambda b: b.col_min)
    assert left.col_min == 0 and right.col_max == CFG.width - 1
    assert left.col_max - left.col_min == pytest.approx(right.col_max - right.col_min, abs=1)
    gt = make_scene(CFG, [ObjectSpec("bell", 0.3, math.radians(85), radius_rad=math.radians(12))], "c")
    (box,) = object_boxes(gt, 0.0)
    assert (box.col_min, box.col_max, box.row_min) == (0, CFG.width - 1, 0)


def test_hidden_object_gets_no_box():
    specs = [
        ObjectSpec("bird", 0.0, 0.0, radius_rad=math.radians(8)),
        ObjectSpec("engine", 0.0, 0.0, radius_rad=math.radians(16)),
    ]
    boxes = object_boxes(make_scene(CFG, specs, "c"), 0.0)
    assert [b.class_id for b in boxes] == [5]  # the bird is painted over by the engine


def test_yolo_label_lines_are_normalised():
    (line,) = yolo_label_lines([PixelBox(3, 10, 20, 29, 59)], 256, 128)
    cls, cx, cy, w, h = line.split()
    assert cls == "3"
    assert (float(cx), float(cy), float(w), float(h)) == pytest.approx(
        (20 / 256, 40 / 128, 20 / 256, 40 / 128)
    )


def test_dataset_labels_match_ground_truth_boxes(tmp_path):
    cfg = DetectorTrainConfig(n_train_scenes=2, n_val_scenes=1, frames_per_scene=1, frame_width=128)
    data_yaml = write_yolo_dataset(tmp_path, cfg)
    assert "names" in data_yaml.read_text()
    images = sorted((tmp_path / "images" / "train").glob("*.jpg"))
    labels = sorted((tmp_path / "labels" / "train").glob("*.txt"))
    assert len(images) == len(labels) == 2
    from pipeline.synth.detector import detector_scene_config
    from pipeline.synth.scenes import sample_scene

    gt = sample_scene(detector_scene_config(128), (0, 100, 0), "det-train-00000")
    assert labels[0].read_text().splitlines() == yolo_label_lines(object_boxes(gt, 0.0), 128, 64)


def test_tiny_training_run_writes_weights_metrics_and_predicts(tmp_path):
    cfg = DetectorTrainConfig(
        n_train_scenes=4,
        n_val_scenes=2,
        frames_per_scene=1,
        frame_width=128,
        imgsz=64,
        epochs=1,
        batch=4,
    )
    metrics = train_detector(tmp_path / "out", cfg, work_dir=tmp_path / "work")
    assert {"precision", "recall", "mAP50"} <= set(metrics)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_train_images"] == 4
    model = load_detector(tmp_path / "out" / "synthetic_yolo.pt")
    gt = make_scene(
        SceneConfig(width=128, height=64, duration_s=0.5), [ObjectSpec("bell", 0.0, 0.0)], "c"
    )
    detector = UltralyticsDetector(model, conf=0.001, imgsz=64)
    detections = detect_equirect(render_frame(gt, 0.0), detector)
    assert ((0 <= detections.class_id) & (detections.class_id < 6)).all()
    assert (detections.boxes_xyxy[:, 0] <= detections.boxes_xyxy[:, 2]).all()


def test_missing_weights_raise_a_helpful_error(tmp_path):
    with pytest.raises(DetectorWeightsError, match="make detector"):
        load_detector(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorWeightsError, match="failed to load"):
        load_detector(corrupt)


def test_bare_model_names_reach_ultralytics_only_when_downloads_are_allowed(monkeypatch, tmp_path):
    from pipeline.detect import check_weights

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(DetectorWeightsError, match="YOLO_OFFLINE=0"):
        check_weights("yolo11n.pt")
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    assert check_weights("yolo11n.pt") == "yolo11n.pt"          # ordinary ultralytics usage
    with pytest.raises(DetectorWeightsError, match="no such file"):
        check_weights(tmp_path / "missing" / "yolo11n.pt")      # a path is never fetched
    local = tmp_path / "w.pt"
    local.write_bytes(b"x")
    assert check_weights(local) == str(local)


def test_the_committed_detector_is_the_documented_one_and_finds_objects():
    """assets/detector: the weights the demo and the default config use load with the safe
    loader, metrics.json records the command of assets/detector/README.md, and a clearly
    visible object of each of two classes is found at its class and place."""
    from pathlib import Path

    from pipeline.detect import DEFAULT_WEIGHTS

    root = Path(__file__).resolve().parents[1]
    weights = root / DEFAULT_WEIGHTS
    metrics = json.loads((weights.parent / "metrics.json").read_text())
    assert metrics["config"]["seed"] == 0 and metrics["config"]["imgsz"] == 256
    assert metrics["config"]["epochs"] == 12 and metrics["mAP50"] > 0.5
    detector = UltralyticsDetector(load_detector(weights), conf=0.25, imgsz=256)
    cfg = SceneConfig(width=512, height=256, duration_s=0.5)
    for name, azimuth_deg in (("siren", 30.0), ("fountain", -100.0)):
        gt = make_scene(cfg, [ObjectSpec(name, math.radians(azimuth_deg), 0.0,
                                         radius_rad=math.radians(18.0))], "c")
        detections = detect_equirect(render_frame(gt, 0.0), detector)
        assert len(detections) >= 1
        best = int(detections.confidence.argmax())
        assert metrics["classes"][int(detections.class_id[best])] == name
        assert abs(math.degrees(detections.azimuth_rad[best]) - azimuth_deg) < 10.0
