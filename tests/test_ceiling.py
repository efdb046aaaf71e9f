"""AVSA-bin ceilings (evals/av/ceiling.py): the pieces against analytic cases, the pairs against
the binary evaluation's, the oracle where the answer is known, and the whole command."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.synth.shard_factory as shard_factory
from pipeline.config import load_config
from pipeline.features import AudioFeatureConfig, foa_features
from pipeline.foa import encode_plane_wave, mirror_left_right
from pipeline.shards import FeatureNorm
from evals.audio.binary import BinaryEvalConfig, extract_features, rotate_by_yaw
from evals.av.ceiling import (CeilingRun, SOUNDING_FEATURES, ORACLE_FEATURES, audio_mirror,
                              in_clip_sounding_ties,
                              evaluate_ceiling, extract_split, frame_indices, main,
                              objects_in_view, oracle_pair_features, pair_scores, pool_audio,
                              window_features)
from evals.frozen import feature_config_from_shards, load_frozen, normalise_audio_input
from pipeline.shards import read_norm_stats

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "evals" / "ceiling.yaml"
FAST = ["supervised.max_epochs=2", "supervised.width=8", "supervised.embed_dim=16"]


def write_shards(folder: Path, n_train: int = 12, n_test: int = 8, windows: int = 2) -> Path:
    shard_factory.make_shards(folder, n_clips=n_train, windows_per_clip=windows,
                              n_audio_samples=24000, seed=0)
    shard_factory.make_shards(folder, n_clips=n_test, windows_per_clip=windows,
                              n_audio_samples=24000, seed=0, split="test")
    return folder


def run_config(shards: Path, out: Path, *overrides: str) -> CeilingRun:
    return load_config(CeilingRun, CONFIG, ["preset=factory", f"shards_dir={shards}",
                                            f"out={out}", *overrides])


# ----------------------------------------------------------------------------- pure pieces

def test_pair_scores_count_each_positive_once_per_yaw_and_average_the_views():
    # 2 windows (2 clips), 2 yaws, 2 views. Window 0: positive views +1/-3 (mean < 0: wrong with
    # 2 views, one view right), negatives all -1 (right). Window 1: everything says aligned.
    positive = np.array([[1.0, -3.0], [2.0, 2.0]])
    negative = np.array([[[-1.0, -1.0], [-1.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    scores = pair_scores(positive, negative, np.array(["a", "b"]),
                         decidable=np.array([[True, False], [False, False]]))
    # single views: positives 1+2 right of 4 (each twice), negatives 4 of 4 (window 0)
    assert scores["avsa_bin_1"] == pytest.approx(100 * (2 * 3 + 4) / 16)
    assert scores["avsa_bin_2"] == pytest.approx(100 * (2 * 1 + 2) / 8)
    assert scores["n_pairs_1"] == 16 and scores["n_pairs_2"] == 8
    # decidable: only window 0's first view (positive right, both negatives right)
    assert scores["decidable"]["avsa_bin_1"] == 100.0
    assert scores["decidable"]["n_pairs_1"] == 4
    # clip-clustered SE: clip a 6 of 8 single views right, clip b 4 of 8 (residuals +-1 of 16
    # pairs): sqrt(2 / 1 * 2) / 16; with 2 views each clip is 2 of 4 right, no spread.
    assert scores["se_1"] == pytest.approx(100 * 2 / 16)
    assert scores["se"] == 0.0


def test_objects_in_view_follow_the_conventions():
    # Viewpoint at az 100 deg, el 10 deg, 90 deg wide; objects: at its centre, 30 deg to its
    # left, 30 deg above it, and behind it.
    az_k, el_k = np.deg2rad([100.0]), np.deg2rad([10.0])
    gt = {"gt/count": 4,
          "gt/azimuth_rad": np.deg2rad([100.0, 130.0, 100.0, -80.0, 0, 0, 0, 0]),
          "gt/elevation_rad": np.deg2rad([10.0, 10.0, 40.0, -10.0, 0, 0, 0, 0])}
    directions, inside = objects_in_view(gt, az_k, el_k, np.deg2rad([90.0]))
    assert directions.shape == (1, 4, 3)
    np.testing.assert_allclose(directions[0, 0], [1.0, 0.0, 0.0], atol=1e-9)
    assert directions[0, 1, 1] > 0.4                       # left of the crop centre: +y
    np.testing.assert_allclose(directions[0, 2], [np.cos(np.deg2rad(30)), 0.0,
                                                  np.sin(np.deg2rad(30))], atol=1e-9)
    np.testing.assert_allclose(directions[0, 3], [-1.0, 0.0, 0.0], atol=1e-9)
    assert inside[0].tolist() == [True, True, True, False]
    _, narrow = objects_in_view(gt, az_k, el_k, np.deg2rad([40.0]))
    assert narrow[0].tolist() == [True, False, False, False]


def test_in_clip_sounding_ties_count_views_that_show_the_same_sounding_objects():
    # 4 views, 3 objects: two empty views tie, view 2 shows object 0, view 3 objects 0 and 1
    shows = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]], bool)
    assert in_clip_sounding_ties(shows) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert in_clip_sounding_ties(np.zeros((4, 0), bool)) == pytest.approx(0.25)   # no objects
    assert in_clip_sounding_ties(np.eye(4, dtype=bool)) == pytest.approx(1.0)


def test_oracle_features_see_the_intensity_vector_point_at_the_sounding_object():
    # One view; a sounding object 20 deg left of centre, a silent one 30 deg right; the mean IV
    # points at the sounding one.
    direction = lambda az: np.array([np.cos(np.deg2rad(az)), np.sin(np.deg2rad(az)), 0.0])
    directions = np.stack([direction(20.0), direction(-30.0)])[None]
    iv = direction(20.0)[None]
    feats = oracle_pair_features(iv, np.zeros((1, 3)), directions, np.ones((1, 2), bool),
                                 np.array([True, True]), np.array([True, False]))
    named = dict(zip(ORACLE_FEATURES, feats[0]))
    assert named["best_iv_dot_sounding"] == pytest.approx(1.0)
    assert named["best_iv_dot_visible"] == pytest.approx(1.0)
    assert named["mean_iv_dot_visible"] == pytest.approx((1.0 + np.cos(np.deg2rad(50))) / 2)
    assert (named["n_sounding_in_crop"], named["n_silent_in_crop"]) == (1.0, 1.0)
    assert named["iv_x_given_empty"] == 0.0
    assert set(SOUNDING_FEATURES) < set(ORACLE_FEATURES)


def test_extra_negatives_turn_the_viewpoints_like_a_yaw_of_the_field():
    cfg = AudioFeatureConfig()
    rng = np.random.default_rng(1)
    foa = encode_plane_wave(rng.normal(size=cfg.n_samples), 0.7, 0.3).astype(np.float32)
    az, el, yaw = np.array([0.5, -2.0]), np.array([0.2, -0.4]), 1.9
    exact = window_features(foa, az, el, np.array([yaw, -yaw]), 2, cfg)
    turned = window_features(foa, az, el, np.array([yaw, -yaw]), 0, cfg)
    assert len(exact) == len(turned) == 3
    np.testing.assert_array_equal(exact[0]["iv"], foa_features(foa, az, el, cfg)["iv"])
    np.testing.assert_array_equal(exact[1]["iv"],
                                  foa_features(rotate_by_yaw(foa, yaw), az, el, cfg)["iv"])
    for a, b in zip(exact[1:], turned[1:]):
        np.testing.assert_allclose(b["logmel_foa"], a["logmel_foa"], atol=0.05)
        np.testing.assert_allclose(b["iv"], a["iv"], atol=1e-3)


def test_mirrored_input_is_the_input_of_the_mirrored_scene():
    # Mirroring the world (y -> -y) and looking from the mirrored viewpoint (-az, el) gives the
    # mirrored view: the crop flipped left-right and the rotated field with Y -> -Y.
    cfg = AudioFeatureConfig(n_mels=32, n_frames=25)
    rng = np.random.default_rng(2)
    foa = (encode_plane_wave(rng.normal(size=cfg.n_samples), 0.9, 0.2)
           + encode_plane_wave(rng.normal(size=cfg.n_samples), -2.0, -0.3)).astype(np.float32)
    az, el = np.array([0.6, 2.5]), np.array([0.1, -0.2])
    sup = CeilingRun().supervised
    norm = {"logmel_foa": FeatureNorm(rng.normal(-40, 5, (4, 32)), rng.uniform(5, 10, (4, 32))),
            "iv": FeatureNorm(rng.normal(0, 0.1, (3, 32)), rng.uniform(0.2, 0.4, (3, 32)))}

    def model_input(field, azimuth):
        features = normalise_audio_input(foa_features(field, azimuth, el, cfg), "foa_iv", norm)
        return pool_audio(features, sup.audio_pool_mels, sup.audio_pool_frames)

    channel, offset = audio_mirror(norm, sup)
    assert channel == 5                                         # W Y Z X, I_x, I_y, I_z
    plain, mirrored = model_input(foa, az), model_input(mirror_left_right(foa), -az)
    expected = plain.copy()
    expected[:, channel] = -plain[:, channel] - offset
    np.testing.assert_allclose(mirrored, expected, atol=2e-3)
    assert audio_mirror(norm, replace(sup, audio_input="foa")) is None


def test_pooling_and_frame_choice():
    x = np.arange(2 * 3 * 8 * 10, dtype=np.float64).reshape(2, 3, 8, 10)
    pooled = pool_audio(x, 4, 5)
    assert pooled.shape == (2, 3, 2, 2)
    assert pooled[1, 2, 1, 0] == x[1, 2, 4:8, 0:5].mean()
    assert frame_indices(8, 4).tolist() == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="video_frames"):
        frame_indices(4, 5)


# ----------------------------------------------------------------------------- pairs and oracle

def test_pairs_are_the_binary_evaluations(tmp_path):
    from tests.test_eval_binary import make_tiny_run

    ckpt, shards = make_tiny_run(tmp_path)
    frozen = load_frozen(ckpt, "cpu")
    binary = extract_features(frozen, shards, "test", BinaryEvalConfig(), 0, n_yaws=4)
    cfg = run_config(shards, tmp_path / "c.json")
    ours = extract_split(shards, "test", cfg.pairs, cfg.supervised,
                         feature_config_from_shards(shards),
                         read_norm_stats(shards / "norm_stats.json"),
                         cfg.pairs.test_yaws_per_window, True, 0)
    n = len(binary["clip_id"])
    assert ours.clip_id.tolist() == binary["clip_id"].tolist()
    np.testing.assert_array_equal(ours.window_index, binary["window_index"])
    np.testing.assert_array_equal(ours.yaw_rad, binary["yaws_rad"])
    np.testing.assert_array_equal(ours.decidable, binary["decidable"])
    assert ours.audio_negative.shape[:3] == (n, 4, 4)
    assert ours.oracle_negative.shape == (n, 4, 4, len(ORACLE_FEATURES))


def test_oracle_is_near_perfect_when_the_geometry_decides(tmp_path):
    # One visible sounding object per clip, the audio a plane wave from it, negatives turned
    # 60-300 deg: the object's place in the crops and the audio's direction decide.
    shards = write_shards(tmp_path / "shards", n_train=16, n_test=12)
    result = evaluate_ceiling(run_config(shards, tmp_path / "c.json", "supervised.enabled=false",
                                         "pairs.negative_yaw=away"))
    assert result["oracle"]["decidable"]["avsa_bin_1"] >= 95.0
    assert result["oracle"]["avsa_bin_4"] >= 90.0
    assert result["oracle"]["avsa_bin_1"] >= 65.0


def test_oracle_is_at_chance_when_the_audio_is_independent(tmp_path, monkeypatch):
    # The ground truth is moved to a random place, unrelated to the audio (and the crops).
    rng = np.random.default_rng(5)
    make_sample = shard_factory.make_sample

    def unrelated_truth(*args, **kwargs):
        sample = make_sample(*args, **kwargs)
        sample["gt/azimuth_rad"][0] = rng.uniform(-np.pi, np.pi)
        sample["gt/elevation_rad"][0] = rng.uniform(-0.5, 0.5)
        return sample

    monkeypatch.setattr(shard_factory, "make_sample", unrelated_truth)
    shards = write_shards(tmp_path / "shards", n_train=16, n_test=30)
    result = evaluate_ceiling(run_config(shards, tmp_path / "c.json", "supervised.enabled=false",
                                         "pairs.negative_yaw=away"))
    assert 40.0 <= result["oracle"]["avsa_bin_1"] <= 60.0
    assert 35.0 <= result["oracle"]["avsa_bin_4"] <= 65.0


# ----------------------------------------------------------------------------- the command

def test_command_writes_the_documented_json_and_its_config(tmp_path, capsys):
    shards = write_shards(tmp_path / "shards")
    out = tmp_path / "results" / "ceiling-factory.json"
    assert main(["preset=factory", f"shards_dir={shards}", f"out={out}", *FAST,
                 "oracle.model=mlp", "supervised.extra_train_viewpoints=yolo"]) == 0
    result = json.loads(out.read_text())
    for key in ("preset", "shards", "supervised", "oracle", "n_test_pairs", "command", "minutes"):
        assert key in result
    assert result["preset"] == "factory" and result["n_test_pairs"] == 2 * 16 * 4 * 4
    for part in ("supervised", "oracle"):
        for key in ("avsa_bin_4", "avsa_bin_1", "se"):
            assert 0.0 <= result[part][key] <= 100.0
    assert set(result["supervised"]["controls"]) == {"audio_only", "video_only",
                                                     "other_clip_video"}
    # A positive and its negative share the crop: the video alone is at chance exactly.
    assert result["supervised"]["controls"]["video_only"]["avsa_bin_1"] == 50.0
    assert result["supervised"]["fit"]["epochs_run"] == 2
    # the yolo crops of the same training windows join the training pairs, not the validation
    fit = result["supervised"]["fit"]
    assert fit["n_fit_windows"] + fit["n_val_windows"] > result["n_train_windows"]
    assert "supervised.max_epochs=2" in result["command"]
    assert "oracle.model=mlp" in result["command"]
    assert (out.parent / "ceiling-factory.config.yaml").is_file()
    assert "oracle (gt in crop)" in capsys.readouterr().out


def test_missing_ground_truth_is_one_clear_error(tmp_path, monkeypatch, capsys):
    make_sample = shard_factory.make_sample

    def real_data(*args, **kwargs):
        return {k: v for k, v in make_sample(*args, **kwargs).items() if not k.startswith("gt/")}

    monkeypatch.setattr(shard_factory, "make_sample", real_data)
    shards = write_shards(tmp_path / "shards", n_train=4, n_test=2)
    code = main(["preset=real", f"shards_dir={shards}", f"out={tmp_path / 'c.json'}"])
    err = capsys.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "gt/count" in error_lines[0]
    assert "oracle.enabled=false" in error_lines[0]
    assert not (tmp_path / "c.json").exists()
