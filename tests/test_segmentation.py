"""Semantic segmentation on gnomonic crops: metrics on hand-made label maps, label projection
with the RGB crop's grid (nearest neighbour, across the seam), the multi-scale features of both
encoder presets, and synthetic clips -> shards -> FPN head beating the majority baseline."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.crops import CropSampler
from pipeline.preprocess import run_preprocess
from pipeline.preprocess_config import PreprocessConfig
from pipeline.synth.cli import generate_videos
from pipeline.synth.render import background_image, render_frame, render_label_map
from pipeline.synth.scenes import CLASS_BY_NAME, ObjectSpec, SceneConfig, make_scene
from tests.checkpoint_factory import random_checkpoint
from evals.video.segmentation import (
    IGNORE_LABEL, EquirectPngLabels, FPNSegmentationHead, LabelMapError, SegmentationEvalConfig,
    SyntheticGroundTruthLabels, confusion_matrix, iter_shard_samples, majority_baseline,
    mean_iou, per_class_iou, pixel_accuracy, project_labels, run_segmentation_eval, video_pyramid)
from trainer.models import VideoEncoder




# ----------------------------------------------------------------------------- metrics

def test_pixel_accuracy_and_miou_on_hand_made_maps():
    target = np.array([[0, 0, 1], [1, 2, IGNORE_LABEL]])
    predicted = np.array([[0, 1, 1], [1, 2, 2]])
    confusion = confusion_matrix(predicted, target, n_classes=4)
    assert confusion.sum() == 5                                   # the 255 pixel is ignored
    assert pixel_accuracy(confusion) == pytest.approx(4 / 5)
    # IoU: class 0 = 1 / (1 + 1 missed); class 1 = 2 / (2 + 1 false); class 2 = 1; class 3 absent.
    iou = per_class_iou(confusion)
    np.testing.assert_allclose(iou[:3], [1 / 2, 2 / 3, 1.0])
    assert math.isnan(iou[3])
    assert mean_iou(confusion) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)

    train = np.array([[0, 0, 0], [1, IGNORE_LABEL, IGNORE_LABEL]])
    majority, baseline = majority_baseline(train, target, n_classes=4)
    assert majority == 0
    assert pixel_accuracy(baseline) == pytest.approx(2 / 5)
    assert mean_iou(baseline) == pytest.approx((2 / 5 + 0 + 0) / 3)
    with pytest.raises(ValueError, match="expected labels in 0..3"):
        confusion_matrix(np.array([4]), np.array([0]), n_classes=4)


# ----------------------------------------------------------------------------- label projection

def test_label_crops_share_the_rgb_crop_grid_also_across_the_seam():
    width, height = 256, 128
    scene = SceneConfig(width=width, height=height, duration_s=1.0)
    gt = make_scene(scene, [ObjectSpec("drum", azimuth_rad=3.0, elevation_rad=0.3, radius_rad=0.35),
                            ObjectSpec("bell", azimuth_rad=-1.0, elevation_rad=-0.4,
                                       radius_rad=0.3)], "c")
    labels = render_label_map(gt, 0.5)
    frame = render_frame(gt, 0.5)
    background = background_image(gt["background"], width, height)
    azimuth = np.array([3.0, -1.0, math.pi])            # the third straddles the seam
    elevation = np.array([0.3, -0.4, 0.2])
    fov = np.radians([90.0, 60.0, 100.0])
    label_crops = project_labels(labels, azimuth, elevation, fov, 48)
    assert label_crops.shape == (3, 48, 48) and label_crops.dtype == np.uint8
    drum, bell = 1 + CLASS_BY_NAME["drum"].class_id, 1 + CLASS_BY_NAME["bell"].class_id
    assert set(np.unique(label_crops)) <= {0, drum, bell}  # nearest: no blended label values
    assert label_crops[0, 24, 24] == drum and label_crops[1, 24, 24] == bell
    assert (label_crops[2] == drum).mean() > 0.05          # the drum seen across the seam

    sampler = CropSampler(azimuth, elevation, fov, 48, width, height)   # RGB: bilinear
    rgb = sampler.crop(frame[None])[:, 0].astype(int)
    backdrop = sampler.crop(background[None])[:, 0].astype(int)
    object_pixels = np.abs(rgb - backdrop).max(axis=-1) > 40
    agreement = (object_pixels == (label_crops > 0)).mean()
    assert agreement > 0.97, agreement                     # only boundary pixels may differ


# ----------------------------------------------------------------------------- features, head

@pytest.mark.parametrize("preset, widths", [("tiny", (16, 32, 64, 24)), ("paper", (64, 128, 256, 512))])
def test_video_pyramid_has_four_scales_consistent_with_the_pooled_feature(preset, widths, one_thread):
    torch.manual_seed(0)
    encoder = VideoEncoder(24 if preset == "tiny" else 512, preset).eval()
    video = torch.rand(2, 3, 8, 32, 32)
    with torch.no_grad():
        levels = video_pyramid(encoder, video)
        pooled = encoder(video)
    assert [tuple(level.shape) for level in levels] == [
        (2, w, 32 // s, 32 // s) for w, s in zip(widths, (2, 4, 8, 16))]
    if preset == "tiny":     # the tiny encoder's output is the global average of its last level
        torch.testing.assert_close(levels[-1].mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5)
    else:                    # the authors' R(2+1)D-18 max-pools its last stage
        with torch.no_grad():
            x = (video - encoder.mean) / encoder.std
            for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
                x = getattr(encoder.net, name)(x)
        torch.testing.assert_close(x.amax(dim=(2, 3, 4)), pooled, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(levels[-1], x.mean(dim=2), rtol=1e-4, atol=1e-5)
    if preset == "tiny" and hasattr(encoder, "resample"):       # the CPU compute knob
        small = VideoEncoder(24, preset, input_size=16).eval()
        small.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            levels = video_pyramid(small, video)
            torch.testing.assert_close(levels[-1].mean(dim=(2, 3)), small(video), rtol=1e-4,
                                       atol=1e-5)
        assert levels[0].shape[-1] == 8


def test_fpn_head_predicts_at_the_finest_scale_with_and_without_extra_features():
    levels = [torch.rand(3, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((8, 16, 32, 32))]
    head = FPNSegmentationHead((8, 16, 32, 32), n_classes=5, extra_dim=6, fpn_dim=16, segm_dim=8)
    assert head(levels, torch.rand(3, 6)).shape == (3, 5, 16, 16)
    plain = FPNSegmentationHead((8, 16, 32, 32), n_classes=5, fpn_dim=16, segm_dim=8)
    assert plain(levels).shape == (3, 5, 16, 16)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory):
    """16 + 4 synthetic 360° clips (2 s, 128 x 64, large objects) preprocessed into shards
    with 32 px crops, 2 windows per clip, K = 4 random viewpoints (FOV 25-90 degrees)."""
    root = tmp_path_factory.mktemp("seg")
    scene = SceneConfig(width=128, height=64, fps=16, duration_s=2.0, radius_deg=(20.0, 35.0),
                        min_sources=2, max_sources=4)
    generate_videos(root / "synth", n_train=16, n_test=4, seed=0, scene=scene, workers=2)
    cfg = load_config(PreprocessConfig, None, [
        f"paths.data_root={root / 'synth'}", f"paths.manifest={root / 'synth' / 'manifest.jsonl'}",
        f"paths.out_dir={root / 'shards'}", "detector.enabled=false", "dask.scheduler=serial",
        "decode.width=128", "decode.height=64", "viewpoints.crop_size=32",
        "windows.max_per_clip=2", "shards.keyframe_width=64", "shards.keyframe_height=32",
        "shards.compression=none", "viewpoints.bank_size=4"])
    run_preprocess(cfg, progress=False)
    return root


@pytest.mark.slow
def test_png_label_maps_give_the_same_crop_labels_as_the_ground_truth(synthetic_shards, tmp_path):
    root = synthetic_shards
    truth = SyntheticGroundTruthLabels(root / "synth" / "manifest.jsonl", root / "synth")
    for clip_id in ("synth-test-00000", "synth-test-00001"):      # what a user would supply
        gt = json.loads((root / "synth" / "test" / f"{clip_id}.json").read_text())
        for k in range(gt["n_frames"]):
            path = tmp_path / "labels" / clip_id / f"{k:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), render_label_map(gt, k / 16.0, 64, 32))   # any 2:1 size
    png = EquirectPngLabels(tmp_path / "labels", n_classes=7, fps=16.0)
    from_truth = next(iter_shard_samples(root / "shards", "test", truth, chunk=4))
    from_png = next(iter_shard_samples(root / "shards", "test", png, chunk=4))
    assert from_truth["clip_id"] == from_png["clip_id"]
    assert from_truth["labels"].shape == (4, 4, 32, 32)
    # The PNGs are half the decode size (nearest upscaling): labels agree but at the edges.
    assert (from_truth["labels"] == from_png["labels"]).mean() > 0.95
    assert (from_truth["labels"] > 0).any()
    with pytest.raises(LabelMapError, match=r"expected the label map .*/synth-test-00002/\d{6}.png"):
        list(iter_shard_samples(root / "shards", "test", png))


@pytest.mark.slow
def test_fpn_head_on_frozen_features_beats_the_majority_baseline(synthetic_shards, tmp_path,
                                                                 one_thread):
    root = synthetic_shards
    cfg = SegmentationEvalConfig(
        shards=str(root / "shards"), ckpt=random_checkpoint(tmp_path / "ckpt.pt", 64),
        out=str(tmp_path / "out"), manifest=str(root / "synth" / "manifest.jsonl"),
        features="video+audio+context", epochs=25, batch_size=8, lr=3e-3, weight_decay=0.0,
        lr_milestones=(18,), fpn_dim=32, segm_dim=16)
    results = run_segmentation_eval(cfg)
    head, baseline = results["head"], results["majority_baseline"]
    assert results["n_train_crops"] == 16 * 2 * 4 and results["n_test_crops"] == 4 * 2 * 4
    assert baseline["class"] == "background"
    assert head["mean_iou"] >= baseline["mean_iou"] + 0.2, results
    assert head["mean_iou"] >= 2.5 * baseline["mean_iou"], results
    assert head["pixel_accuracy"] > baseline["pixel_accuracy"], results
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["head"]["mean_iou"] == head["mean_iou"]
