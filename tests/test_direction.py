"""Direction probe and the shared multi-viewpoint read-out: rotation physics of the read-out
(plane waves from known directions), the probe recovering plane-wave directions from hand
features, the scores on hand-made vectors, and the CLI end to end on a tiny synthetic set."""

import json
import math

import numpy as np
import pytest
import torch

from evals.audio.direction import (angular_error_deg, direction_scores, fit_ridge_path,
                                   main as direction_main)
from evals.audio.readout import (ReadoutConfig, front_view_frames, hand_feature_frames,
                                 multiview_frames, readout_dim)
from evals.frozen import load_frozen
from pipeline.foa import encode_plane_wave
from pipeline.spatial import direction_vector
from pipeline.synth.cli import generate_starss23
from pipeline.synth.starss23 import Starss23SynthConfig
from tests.test_eval_binary import make_tiny_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_frozen(tmp_path_factory):
    ckpt, _ = make_tiny_run(tmp_path_factory.mktemp("direction_run"), audio_input="foa_iv")
    return load_frozen(ckpt, "cpu")


def plane_wave(azimuth_deg: float, elevation_deg: float, seconds: float, seed: int = 0):
    noise = 0.1 * np.random.default_rng(seed).standard_normal(int(24000 * seconds))
    return encode_plane_wave(noise.astype(np.float32), math.radians(azimuth_deg),
                             math.radians(elevation_deg))


# ----------------------------------------------------------------------------- read-out

def test_multiview_readout_turns_with_the_source(tiny_frozen):
    """Views 45 deg apart on the horizon: a source turned 90 deg to the left is read by view
    k exactly as the unturned source by view k - 2 (the view facing it holds what the front
    view held), also for a source above the horizon and behind."""
    cfg = ReadoutConfig()
    for azimuth_deg, elevation_deg in ((0.0, 25.0), (135.0, -20.0)):
        base = multiview_frames(tiny_frozen, plane_wave(azimuth_deg, elevation_deg, 1.0), 10, cfg)
        turned = multiview_frames(tiny_frozen, plane_wave(azimuth_deg + 90.0, elevation_deg, 1.0),
                                  10, cfg)
        k = len(cfg.view_azimuths_deg)
        base, turned = base.reshape(10, k, -1), turned.reshape(10, k, -1)
        np.testing.assert_allclose(turned, np.roll(base, 2, axis=1), rtol=1e-3, atol=1e-4)
        assert not np.allclose(turned, base, atol=1e-3)          # the views do differ


def test_readout_shapes_and_the_front_view_arm(tiny_frozen):
    foa = plane_wave(60.0, 10.0, 2.5)
    frames = multiview_frames(tiny_frozen, foa, n_label_frames=25)
    assert frames.shape == (25, readout_dim(tiny_frozen, ReadoutConfig()))
    assert frames.shape[1] % (8 * tiny_frozen.feature_dim) == 0 and np.isfinite(frames).all()
    front = front_view_frames(tiny_frozen, foa, n_label_frames=25)
    assert front.shape == (25, tiny_frozen.feature_dim)
    with pytest.raises(ValueError, match="as many view_elevations_deg"):
        multiview_frames(tiny_frozen, foa, 25, ReadoutConfig(view_elevations_deg=(0.0,)))


def test_hand_intensity_of_a_plane_wave_points_at_it():
    frames = hand_feature_frames(plane_wave(-120.0, 30.0, 1.0), n_label_frames=10)
    assert frames.shape == (10, 7, 64)
    mean_iv = frames[:, 4:].mean(axis=(0, 2))                        # (I_x, I_y, I_z)
    expected = direction_vector(math.radians(-120.0), math.radians(30.0))
    assert angular_error_deg(mean_iv, expected) < 2.0


# ----------------------------------------------------------------------------- probe, scores

def test_angular_error_and_scores_on_hand_made_vectors():
    predicted = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -3.0]])
    reference = np.array([[1.0, 0.0, 0.0]] * 4)
    np.testing.assert_allclose(angular_error_deg(predicted, reference), [0.0, 90.0, 45.0, 90.0],
                               atol=1e-9)
    scores = direction_scores(np.array([5.0, 10.0, 30.0, 50.0]), within_deg=20.0)
    assert scores == {"median_error_deg": 20.0, "within_pct": 50.0, "n_frames": 4}
    assert direction_scores(np.zeros(0))["median_error_deg"] is None


def test_ridge_probe_on_hand_features_recovers_plane_wave_directions():
    rng = np.random.default_rng(3)
    directions = [(rng.uniform(-180, 180), math.degrees(math.asin(rng.uniform(-0.8, 0.8))))
                  for _ in range(60)]
    features = np.stack([hand_feature_frames(plane_wave(az, el, 0.1, seed=i), 1)[0, 4:].ravel()
                         for i, (az, el) in enumerate(directions)])      # I_x, I_y, I_z x 64
    targets = np.stack([direction_vector(math.radians(az), math.radians(el))
                        for az, el in directions])
    probe = fit_ridge_path(features[:40], targets[:40], [0.001])[0]
    error = angular_error_deg(probe.predict(features[40:]), targets[40:])
    assert np.median(error) < 3.0 and error.max() < 10.0
    predicted = probe.predict(features[40:])
    np.testing.assert_allclose(np.linalg.norm(predicted, axis=1), 1.0, atol=1e-9)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_eval_direction_cli_end_to_end(tmp_path):
    root = tmp_path / "starss"
    generate_starss23(root, seed=1, workers=1, cfg=Starss23SynthConfig(
        n_train_per_split=2, n_test_per_split=1, duration_s=6.0, width=64, fps=8))
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa_iv")
    assert direction_main([f"ckpt={ckpt}", f"data_dir={root}", "device=cpu"]) == 0
    result = json.loads((ckpt.parent / "eval_direction.json").read_text())
    assert (ckpt.parent / "eval_direction.config.yaml").is_file()
    assert result["synthetic"] and result["task"] == "direction"
    assert result["arms"] == ["encoder", "random_encoder", "front_view", "foa_iv", "log_mel"]
    assert result["frames"]["test_single_source"] > 20
    for arm in result["arms"]:
        single = result["summary"][arm]["single_source"]
        assert 0.0 <= single["median_error_deg"]["mean"] <= 180.0
        assert 0.0 <= single["within_pct"]["mean"] <= 100.0
    entry = result["per_checkpoint"][0]
    assert entry["encoder"]["input_dim"] > entry["front_view"]["input_dim"]
    assert entry["random_encoder_seed"] == 1000
    assert "encoder_minus_random_encoder" in result["summary"]
    # Two checkpoints (the list grammar): mean and sd over them, one paired difference each.
    out = tmp_path / "two.json"
    assert direction_main([f"ckpt=[{ckpt},{ckpt}]", f"data_dir={root}", "device=cpu",
                           f"out={out}", "protocol.arms=[encoder,random_encoder]"]) == 0
    two = json.loads(out.read_text())
    assert len(two["per_checkpoint"]) == 2 and two["checkpoints"] == [str(ckpt)] * 2
    assert two["summary"]["encoder"]["single_source"]["median_error_deg"]["sd"] == 0.0
    assert two["per_checkpoint"][1]["random_encoder_seed"] == 1001


def test_eval_direction_reports_user_mistakes(tmp_path, capsys):
    assert direction_main([f"data_dir={tmp_path}", "protocol.arms=[encoder,compass]"]) == 2
    assert "protocol.arms" in capsys.readouterr().err
    assert direction_main([f"ckpt={tmp_path / 'none.pt'}", f"data_dir={tmp_path}"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
