"""Localisation maps: grid and map geometry, the intensity map on a plane wave, and end-to-end
runs on test shards and on a raw synthetic clip with a tiny checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.foa import encode_plane_wave
from pipeline.spatial import angular_distance_rad
from tests.test_eval_binary import make_tiny_run
from evals.av.localize import (ClipInput, LocalizeConfig, direction_grid,
                               direction_scores, evaluate_localization,
                               intensity_energy_map, map_peak, nearest_sounding_deg,
                               spread_on_sphere)

torch.set_num_threads(1)  # tiny models: threads only add contention on 2 shared cores


def test_direction_grid_covers_every_azimuth_at_every_elevation():
    az, el = direction_grid(30.0, (-30.0, 0.0, 30.0))
    assert az.shape == el.shape == (36,)
    assert np.all((az >= -np.pi) & (az < np.pi))
    assert sorted(set(np.round(np.rad2deg(el), 6))) == [-30.0, 0.0, 30.0]
    assert len(set(np.round(np.rad2deg(az), 6))) == 12


@pytest.mark.parametrize("target", [(120.0, 30.0), (-150.0, -30.0), (180.0, 0.0)])
def test_spread_map_peaks_at_the_best_scored_direction(target):
    az, el = direction_grid(30.0, (-30.0, 0.0, 30.0))
    distance = angular_distance_rad(az, el, *np.deg2rad(target))
    scores = np.cos(distance)                                     # smooth, best at the target
    values_map = spread_on_sphere(scores, az, el, 128, np.deg2rad(30.0))
    assert values_map.shape == (64, 128)
    peak = map_peak(values_map)
    assert np.rad2deg(angular_distance_rad(*peak, *np.deg2rad(target))) < 8.0


@pytest.mark.parametrize("source_deg", [(100.0, 25.0), (-45.0, -10.0), (179.0, 5.0)])
def test_intensity_map_peaks_at_a_plane_wave(source_deg):
    rng = np.random.default_rng(0)
    foa = encode_plane_wave(rng.standard_normal(24000).astype(np.float32),
                            *np.deg2rad(source_deg))
    peak = map_peak(intensity_energy_map(foa, 256, np.deg2rad(5.0)))
    assert np.rad2deg(angular_distance_rad(*peak, *np.deg2rad(source_deg))) < 3.0


def test_hits_count_only_sounding_objects():
    clip = ClipInput("c", np.zeros((1, 8, 16, 3), np.uint8), np.zeros((4, 10)), 8,
                     gt_azimuth_rad=np.deg2rad([0.0, 90.0]), gt_elevation_rad=np.zeros(2),
                     gt_sounding=np.array([False, True]))
    assert nearest_sounding_deg(np.deg2rad(80.0), 0.0, clip) == pytest.approx(10.0)
    assert nearest_sounding_deg(0.0, 0.0, clip) == pytest.approx(90.0)      # silent one ignored
    clip.gt_sounding[:] = False
    assert nearest_sounding_deg(0.0, 0.0, clip) == float("inf")


@pytest.mark.slow
def test_localization_on_test_shards_writes_maps_and_hit_rates(tmp_path):
    ckpt, _ = make_tiny_run(tmp_path, audio_input="foa")
    cfg = LocalizeConfig(n_clips=3, map_width=64, azimuth_step_deg=45.0)
    summary = evaluate_localization(ckpt, cfg, out_dir=tmp_path / "out", device="cpu")
    saved = json.loads((tmp_path / "out" / "eval_localize.json").read_text())
    assert saved["hit_rate_pct"] == summary["hit_rate_pct"]
    assert (saved["n_clips"], saved["n_scored"], saved["synthetic"]) == (3, 3, True)
    assert 0.0 <= saved["hit_rate_pct"] <= 100.0
    assert saved["settings"]["score"] == "alignment"
    assert saved["hit_rate_pct"] == saved["alignment_hit_rate_pct"]
    assert 0.0 <= saved["cosine_hit_rate_pct"] <= 100.0
    # Every sample after the first clip's also gets the previous clip's video.
    clip_ids = [r["clip"].split("@")[0] for r in saved["clips"]]
    assert len(set(clip_ids)) >= 2
    assert [("mismatched_hit" in r) for r in saved["clips"]] == [c != clip_ids[0]
                                                                 for c in clip_ids]
    assert saved["mismatched_video_hit_rate_pct"] is not None
    # The factory's FOA is a plane wave from its ground-truth object: the listening-only
    # reference must find it, which checks the ground truth and the map geometry together.
    assert saved["iv_hit_rate_pct"] == 100.0
    for record in saved["clips"]:
        assert len(record["scores"]) == 8 * len(cfg.elevations_deg) and Path(record["png"]).stat().st_size > 5_000


@pytest.mark.slow
def test_localization_of_a_raw_synthetic_clip(tmp_path):
    from pipeline.synth.cli import main as synth_main

    assert synth_main(["videos", "--out", str(tmp_path / "videos"), "--n-train", "0",
                       "--n-test", "1", "--duration-s", "2", "--width", "128",
                       "--workers", "1"]) == 0
    (clip,) = sorted((tmp_path / "videos").rglob("*.mp4"))
    ckpt, _ = make_tiny_run(tmp_path, audio_input="beamform")
    summary = evaluate_localization(ckpt, LocalizeConfig(map_width=64), clip=clip, time_s=1.0,
                                    out_dir=tmp_path / "out", device="cpu")
    assert summary["n_clips"] == 1 and summary["synthetic"] is True
    (record,) = summary["clips"]
    assert record["clip"] == f"{clip.stem}@1.00s" and Path(record["png"]).is_file()
    assert record["n_sounding"] >= 0 and len(record["model_peak_deg"]) == 2


def test_avsa_scoring_context_pairs_each_direction_with_its_quarter_turns():
    from evals.av.localize import context_indices

    azimuth_rad = np.deg2rad(np.arange(0, 360, 30.0))
    elevation_rad = np.zeros_like(azimuth_rad)
    tokens = context_indices(azimuth_rad, elevation_rad)
    assert tokens.shape == (12, 4)
    assert np.array_equal(tokens[:, 0], np.arange(12))               # token 0 is the direction
    assert np.array_equal(tokens[:, 2], (np.arange(12) + 6) % 12)    # +180 deg


def test_alignment_is_the_contrastive_log_likelihood_of_each_pair():
    rng = np.random.default_rng(0)
    video = rng.standard_normal((6, 5))
    audio = rng.standard_normal((6, 5))
    video /= np.linalg.norm(video, axis=1, keepdims=True)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    logits = torch.from_numpy(video @ audio.T / 0.07)
    target = torch.arange(6)
    expected = -0.5 * (torch.nn.functional.cross_entropy(logits, target, reduction="none")
                       + torch.nn.functional.cross_entropy(logits.T, target, reduction="none"))
    np.testing.assert_allclose(direction_scores(video, audio, "alignment", 0.07),
                               expected.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(direction_scores(video, audio, "cosine", 0.07),
                               (video * audio).sum(1))
    with pytest.raises(ValueError, match="alignment or cosine"):
        direction_scores(video, audio, "dot", 0.07)


def test_alignment_prefers_the_object_over_a_crop_that_matches_every_direction():
    # Direction 0 looks at a sounding object: its crop matches the audio turned toward it and
    # nothing else. Directions 1-3 see empty sky, whose embedding is close to *every* audio
    # embedding (nothing in front sounds alike): the highest raw cosine, yet no alignment.
    object_axis, sky_axis = np.eye(3)[0], np.eye(3)[1]
    audio = np.stack([object_axis + 0.9 * sky_axis] + [sky_axis + 0.1 * np.eye(3)[2]] * 3)
    video = np.stack([object_axis + 0.3 * sky_axis] + [sky_axis] * 3)
    video /= np.linalg.norm(video, axis=1, keepdims=True)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    assert np.argmax(direction_scores(video, audio, "cosine", 0.07)) != 0
    assert np.argmax(direction_scores(video, audio, "alignment", 0.07)) == 0
