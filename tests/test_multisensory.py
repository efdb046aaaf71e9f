"""Owens & Efros (2018) baseline: sync sampling, fused network, CAM geometry, training smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, load_config
from pipeline.crops import crop_frames, perspective_rays
from pipeline.foa import encode_plane_wave
from pipeline.spatial import angular_distance_rad, direction_to_equirect_pixel, vector_to_direction
from pipeline.synth.shard_factory import make_shards
from baselines.multisensory.cam import (cam_from_patch_logits, cam_peak_direction,
                                        cell_to_crop_pixel, crop_pixel_to_direction,
                                        direction_to_crop_pixel, localisation_summary, localise_clip,
                                        paint_cam_on_equirect, refined_peak_cell)
from baselines.multisensory.config import MultisensoryConfig, SyncDataConfig
from baselines.multisensory.data import (SyncSamplingError, SyncStream, draw_shifts, prepare_audio,
                                         sync_pair, window_geometry)
from baselines.multisensory.model import FusedNet, sync_labels, sync_logits

RATE = 2400           # factory shards: 2400 samples per 1 s window (keeps tests fast)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("multisensory") / "shards"
    sizes = dict(crop_size=32, n_frames=8, n_audio_samples=RATE, compression=None)
    make_shards(root, n_clips=6, windows_per_clip=2, split="train", **sizes)
    make_shards(root, n_clips=4, windows_per_clip=1, split="val", seed=1, **sizes)
    return root


# ----------------------------------------------------------------------------- shift sampling

def test_window_geometry_at_24khz():
    geometry = window_geometry(24000, 1.0, 0.25, 0.15, 0.25)
    assert (geometry.video_offset, geometry.video_length) == (6000, 12000)
    assert (geometry.min_shift, geometry.max_shift) == (3600, 6000)


def test_window_geometry_rejects_shifts_leaving_the_window():
    with pytest.raises(SyncSamplingError, match="margin"):
        window_geometry(24000, 1.0, 0.25, 0.15, 0.3)
    with pytest.raises(SyncSamplingError, match="no integer shift"):
        window_geometry(100, 1.0, 0.25, 0.151, 0.159)
    with pytest.raises(ConfigError, match="min_shift_s"):
        load_config(MultisensoryConfig, None, ["data.min_shift_s=0"])


def test_sync_configs_fit_the_windows_that_preprocess_sync_stores():
    from pipeline.preprocess_config import PreprocessConfig
    prep = load_config(PreprocessConfig, "configs/preprocess_sync.yaml")
    for name in ("multisensory", "multisensory_foa", "separation"):
        data = load_config(MultisensoryConfig, f"configs/baselines/{name}.yaml").data
        assert data.audio_window_s == prep.audio.window_s
        video_s = prep.windows.video_frames / prep.decode.fps
        geometry = window_geometry(prep.audio.n_samples, prep.audio.window_s,
                                   (prep.audio.window_s - video_s) / 2, data.min_shift_s,
                                   data.max_shift_s)
        assert geometry.video_length == round(video_s * prep.audio.sample_rate)
        assert geometry.max_shift <= geometry.video_offset


def test_subclips_move_the_aligned_audio_and_keep_negatives_inside():
    from baselines.multisensory.data import subclip_geometry
    full = window_geometry(72000, 3.0, 0.5, 0.25, 0.5)           # 2 s of video in 3 s
    assert (full.video_offset, full.video_length) == (12000, 48000)
    for start in range(9):                                      # 24 of 32 frames
        sub = subclip_geometry(full, 32, 24, start)
        assert sub.video_offset == 12000 + 1500 * start and sub.video_length == 36000
        for shift in (-full.max_shift, full.max_shift):
            positive, negative = sync_pair(np.arange(72000)[None], sub, shift)
            assert positive[0, 0] == sub.video_offset and negative.shape == positive.shape
    with pytest.raises(SyncSamplingError, match="does not fit"):
        subclip_geometry(full, 32, 24, 9)


def test_stream_rejects_shards_with_another_window_length(tmp_path):
    import h5py
    from baselines.multisensory.data import _check_window_length
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["config"] = json.dumps({"audio": {"window_s": 1.0}})
    with h5py.File(path, "r") as h5:
        _check_window_length(h5, str(path), 1.0)
        with pytest.raises(SyncSamplingError, match="data.audio_window_s=1"):
            _check_window_length(h5, str(path), 3.0)


def test_shifts_are_never_zero_bounded_and_both_signs():
    shifts = draw_shifts(np.random.default_rng(0), 20000, 3600, 6000)
    assert np.all(shifts != 0)
    assert np.all((np.abs(shifts) >= 3600) & (np.abs(shifts) <= 6000))
    assert 0.48 < np.mean(shifts > 0) < 0.52
    # Smallest grid: every shift is +-1.
    assert set(draw_shifts(np.random.default_rng(1), 100, 1, 1).tolist()) == {-1, 1}


def test_sync_pair_takes_the_aligned_and_the_shifted_window():
    geometry = window_geometry(100, 1.0, 0.25, 0.1, 0.2)
    audio = np.arange(100, dtype=np.float32)[None]
    positive, negative = sync_pair(audio, geometry, -20)
    np.testing.assert_array_equal(positive[0], np.arange(25, 75))
    np.testing.assert_array_equal(negative[0], np.arange(5, 55))
    with pytest.raises(SyncSamplingError):
        sync_pair(audio, geometry, 0)


def test_stream_batches_are_balanced_pairs_with_bounded_shifts(shards):
    cfg = SyncDataConfig(shards_dir=str(shards), batch_size=4, val_split="val")
    stream = SyncStream(shards, "train", cfg, training=True, seed=3)
    batches = list(stream)
    assert len(batches) == stream.steps_per_epoch == 3
    for batch in batches:
        shift = batch["shift_s"].numpy()
        assert np.all(shift != 0) and np.all((np.abs(shift) >= 0.15 - 1e-6)
                                             & (np.abs(shift) <= 0.25 + 1e-6))
        assert batch["audio_pos"].shape == batch["audio_neg"].shape == (4, 1, RATE // 2)
        assert batch["video"].shape == (4, 3, 8, 32, 32)
        assert not torch.equal(batch["audio_pos"], batch["audio_neg"])
    labels = sync_labels(4)
    assert labels.sum() == 4 and len(labels) == 8
    # Held-out examples are reproducible; training epochs differ.
    held_out = SyncStream(shards, "val", cfg, training=False, seed=3)
    first, second = list(held_out), list(held_out)
    assert torch.equal(first[0]["audio_neg"], second[0]["audio_neg"])
    stream.set_epoch(1)
    assert not torch.equal(next(iter(stream))["audio_neg"], batches[0]["audio_neg"])


def test_foa_audio_is_rotated_toward_the_view_and_mirrored_with_the_crop():
    source_az, source_el = np.radians(70.0), np.radians(25.0)
    signal = np.random.default_rng(0).normal(size=480).astype(np.float32)
    foa = encode_plane_wave(signal, source_az, source_el)
    audio = prepare_audio(foa, source_az, source_el, "foa", flipped=False)
    w, y, z, x = audio
    np.testing.assert_allclose(x, w, atol=1e-5)                 # the source is now in front
    np.testing.assert_allclose(y, 0.0, atol=1e-5)
    off_axis = prepare_audio(foa, source_az - np.radians(30), source_el, "foa", flipped=False)
    mirrored = prepare_audio(foa, source_az - np.radians(30), source_el, "foa", flipped=True)
    assert np.mean(off_axis[1] * off_axis[0]) > 0              # source to the left: +Y
    np.testing.assert_allclose(mirrored[1], -off_axis[1], atol=1e-6)
    mono = prepare_audio(foa, 0.0, 0.0, "mono", flipped=False)
    assert mono.shape == (1, 480)
    np.testing.assert_allclose(np.sqrt(np.mean(mono ** 2)), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- fused network

@pytest.mark.parametrize("channels", [1, 4])
def test_fused_network_shapes_and_cam_linearity(channels):
    torch.manual_seed(0)
    model = FusedNet(channels, "tiny").eval()
    video = torch.rand(2, 3, 8, 32, 32)
    audio = torch.randn(2, channels, 1200)
    scales = model.features(video, audio)
    assert [tuple(s.shape[2:]) for s in scales] == [(4, 8, 8), (2, 4, 4), (1, 2, 2)]
    assert [s.shape[1] for s in scales] == list(model.scale_channels)
    logits = model(video, audio)
    assert logits.shape == (2,)
    # Global average pooling + linear head = mean of the per-patch logits (the CAM's basis).
    patch = model.patch_logits(scales[-1])
    torch.testing.assert_close(patch.mean(dim=(1, 2, 3)), logits, atol=1e-5, rtol=1e-5)
    assert cam_from_patch_logits(patch).shape == (2, 2, 2)
    pair = sync_logits(model, video, audio, audio.flip(-1))
    torch.testing.assert_close(pair[:2], logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="audio channel"):
        model(video, torch.randn(2, 5 - channels, 1200))


def test_fused_network_at_full_size_gives_a_7x7_cam():
    model = FusedNet(1, "tiny").eval()
    with torch.no_grad():
        last = model.features(torch.rand(1, 3, 8, 112, 112), torch.randn(1, 1, 12000))[-1]
    assert tuple(last.shape[2:]) == (1, 7, 7)


# ----------------------------------------------------------------------------- CAM geometry

VIEWS = [(0.0, 0.0, 90.0), (120.0, 35.0, 60.0), (-160.0, -50.0, 40.0), (179.0, 10.0, 90.0)]


@pytest.mark.parametrize("az_deg, el_deg, fov_deg", VIEWS)
def test_cam_peak_at_the_centre_maps_to_the_viewpoint(az_deg, el_deg, fov_deg):
    cam = np.zeros((7, 7))
    cam[3, 3] = 1.0
    az, el = cam_peak_direction(cam, np.radians(az_deg), np.radians(el_deg), np.radians(fov_deg),
                                112)
    assert np.degrees(angular_distance_rad(az, el, np.radians(az_deg), np.radians(el_deg))) < 1e-6


def test_peak_between_cells_is_refined_to_the_junction():
    cam = np.full((4, 4), 0.1)
    cam[1:3, 1:3] = 1.0                          # a source at the centre of an even grid
    cam[1, 1] = 1.01                             # argmax picks one of the four cells
    assert refined_peak_cell(cam) == pytest.approx((1.5, 1.5), abs=0.02)
    view = np.radians([-30.0, 15.0, 90.0])
    az, el = cam_peak_direction(cam, *view, 64)
    assert np.degrees(angular_distance_rad(az, el, view[0], view[1])) < 1.0
    edge = np.zeros((4, 4))
    edge[0, 3] = 1.0
    assert refined_peak_cell(edge) == (0.0, 3.0)


@pytest.mark.parametrize("az_deg, el_deg, fov_deg", VIEWS)
def test_crop_pixel_directions_match_the_crop_geometry(az_deg, el_deg, fov_deg):
    view = np.radians([az_deg, el_deg, fov_deg])
    rows, cols = np.meshgrid(np.arange(0, 112, 13), np.arange(0, 112, 17), indexing="ij")
    az, el = crop_pixel_to_direction(rows, cols, *view, 112)
    ray_az, ray_el = vector_to_direction(perspective_rays(*view, 112)[0][rows, cols])
    np.testing.assert_allclose(angular_distance_rad(az, el, ray_az, ray_el), 0.0, atol=1e-9)
    back_row, back_col, inside = direction_to_crop_pixel(az, el, *view, 112)
    np.testing.assert_allclose(back_row, rows, atol=1e-7)
    np.testing.assert_allclose(back_col, cols, atol=1e-7)
    assert inside.all()
    _, _, behind = direction_to_crop_pixel(view[0] + np.pi, -view[1], *view, 112)
    assert not behind


def test_an_off_centre_cam_peak_lands_where_a_painted_dot_is_cropped():
    """Paint a dot in an equirectangular frame, crop it (pipeline.crops), put the CAM peak on
    the cell holding the dot: the peak direction, the dot and the painted sphere agree."""
    width, height, size = 1024, 512, 112
    view = np.radians([40.0, 20.0, 80.0])
    dot_az, dot_el = np.radians(60.0), np.radians(32.0)
    frame = np.zeros((1, height, width, 3), np.uint8)
    col, row = direction_to_equirect_pixel(dot_az, dot_el, width, height)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    frame[0, (cols - col) ** 2 + (rows - row) ** 2 <= 4.0] = 255
    crop = crop_frames(frame, view[:1], view[1:2], view[2:], size)[0, 0, :, :, 0].astype(float)
    crop_row, crop_col = (np.array(np.nonzero(crop)) * crop[crop > 0]).sum(1) / crop.sum()
    found_az, found_el = crop_pixel_to_direction(crop_row, crop_col, *view, size)
    assert np.degrees(angular_distance_rad(found_az, found_el, dot_az, dot_el)) < 0.5
    # A 28 x 28 CAM (4-pixel cells) with its peak on the dot's cell.
    cam = np.zeros((28, 28))
    cam[int(crop_row // 4), int(crop_col // 4)] = 1.0
    peak_az, peak_el = cam_peak_direction(cam, *view, size)
    assert np.degrees(angular_distance_rad(peak_az, peak_el, dot_az, dot_el)) < 2.5
    centre_row, centre_col = cell_to_crop_pixel(int(crop_row // 4), int(crop_col // 4), (28, 28),
                                                size)
    assert abs(centre_row - crop_row) <= 2.0 and abs(centre_col - crop_col) <= 2.0
    painted = paint_cam_on_equirect(cam, *view, size, 512, 256)
    assert np.isnan(painted).mean() > 0.8                       # only the crop's footprint
    best = np.unravel_index(np.nanargmax(painted), painted.shape)
    best_az = np.pi * (1 - 2 * (best[1] + 0.5) / 512)
    best_el = np.pi * (0.5 - (best[0] + 0.5) / 256)
    assert np.degrees(angular_distance_rad(best_az, best_el, peak_az, peak_el)) < 1.5


def test_localisation_hits_centre_and_chance_references():
    view = np.radians([30.0, 0.0, 90.0])
    gt = {"count": 2, "azimuth_rad": np.radians([30.0, -120.0, 0.0]),
          "elevation_rad": np.zeros(3), "sounding": np.array([True, True, True])}
    centre = np.zeros((7, 7))
    centre[3, 3] = 1.0
    corner = np.zeros((7, 7))
    corner[0, 0] = 1.0
    threshold = np.radians(20.0)
    hit = localise_clip(centre, view, 112, gt, threshold)
    miss = localise_clip(corner, view, 112, gt, threshold)
    assert hit["hit"] and hit["in_view"] and hit["centre_hit"] and hit["error_rad"] < 1e-9
    assert not miss["hit"] and miss["error_rad"] > threshold
    assert 0.0 < hit["chance"] < 0.5
    silent = localise_clip(centre, view, 112, {**gt, "sounding": np.array([False, True, True])},
                           threshold)
    assert not silent["in_view"] and not silent["hit"]   # the 3rd object is padding (count 2)
    summary = localisation_summary([hit, miss, silent], threshold)
    assert summary["n_in_view"] == 2 and summary["hit_rate_pct"] == 50.0
    assert summary["centre_hit_rate_pct"] == 100.0
    assert summary["hit_rate_all_pct"] == pytest.approx(100 / 3)


# ----------------------------------------------------------------------------- training smoke

def test_sync_and_separation_training_smoke(shards, tmp_path):
    from baselines.multisensory.train import load_fused_net, main

    common = [f"data.shards_dir={shards}", "data.val_split=val", "data.batch_size=4",
              "data.num_workers=0", f"run.out_dir={tmp_path}", "run.epochs=1",
              "run.max_steps_per_epoch=2", "run.log_interval=1", "eval.max_batches=1",
              "eval.n_cam_figures=1", "data.audio_window_s=1.0", "data.min_shift_s=0.15",
              "data.max_shift_s=0.25", "data.clip_frames=6"]
    result = main(["--config", "configs/baselines/multisensory.yaml", *common])
    run = tmp_path / "multisensory"
    assert result["step"] == 2 and np.isfinite(result["history"][-1]["loss"])
    sync = json.loads((run / "eval_sync.json").read_text())
    assert sync["chance_pct"] == 50.0 and sync["n_pairs"] == 4 and sync["synthetic"]
    local = json.loads((run / "eval_localize.json").read_text())
    assert local["experiment"] == "multisensory" and "hit_rate_pct" in local
    assert (run / "cam_examples.png").is_file() and (run / "config.yaml").is_file()
    fused, _ = load_fused_net(run / "ckpt.pt")
    assert fused.audio_channels == 1

    result = main(["--config", "configs/baselines/separation.yaml", *common,
                   "separation.n_fft=64", "separation.hop_length=16",
                   "separation.unet_widths=[8,16]", f"separation.pretrained={run / 'ckpt.pt'}"])
    separation = json.loads((tmp_path / "separation" / "eval_separation.json").read_text())
    assert separation["n_mixtures"] == 4
    for model in ("audio_visual", "audio_only"):
        assert np.isfinite(separation[model]["si_sdri_on"])
    assert set(separation["improvement_over_audio_only_db"]) == {"sdri_on", "si_sdri_on",
                                                                 "sdri_pit", "si_sdri_pit"}
    assert separation["loss_kind"] == {"audio_visual": "plain", "audio_only": "pit"}
    with pytest.raises(ValueError, match="not a multisensory sync checkpoint"):
        load_fused_net(tmp_path / "separation" / "ckpt.pt")
