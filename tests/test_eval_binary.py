"""Binary AVC / AVSA evaluation: the rotated negatives (physics), the pairing, the head, and an
end-to-end run on a tiny checkpoint.

``make_tiny_run`` (also used by the other evaluation tests) writes factory shards and a
checkpoint in the trainer's format, without training: evaluation code must run on any model.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_config, to_dict
from pipeline.features import AudioFeatureConfig, doa_from_intensity, foa_features
from pipeline.foa import encode_plane_wave
from pipeline.spatial import angular_distance_rad, wrap_azimuth_rad
from pipeline.synth.shard_factory import make_shards
from trainer.checkpoint import save_checkpoint
from trainer.config import AUDIO_FEATURES, TrainConfig
from trainer.data import ShardStream
from evals.audio.binary import (BinaryEvalConfig, PairSet, accuracy_with_se,
                                cluster_robust_se, control_scores, encode_batch,
                                evaluate_binary, extract_features, mismatched_partners,
                                negative_yaws_rad, pair_accuracy, pair_set,
                                paired_difference_pct, random_yaws_rad, read_pair_file,
                                rotate_by_yaw, scored_subset, split_by_clip, stored_features,
                                train_pair_classifier, views_showing_sounding_object,
                                window_yaws_rad, write_pair_file)
from evals.frozen import iter_shard_batches, load_frozen
from trainer.models import build_model, model_args_from_config

torch.set_num_threads(1)  # tiny models: threads only add contention on 2 shared cores
ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.avc_batch_size=0", "model.preset=tiny", "model.feature_dim=32",
        "model.embed_dim=16"]


def make_tiny_run(root: Path, audio_input: str = "foa_iv", experiment: str = "avsa",
                  seed: int = 0) -> tuple[Path, Path]:
    """Factory shards (train + test, 1 s of FOA per sample) and an untrained tiny checkpoint
    at ``root/runs/<experiment>/ckpt.pt``. Returns ``(ckpt_path, shards_dir)``."""
    shards = root / "shards"
    if not (shards / "shards.jsonl").exists():
        make_shards(shards, n_clips=6, windows_per_clip=2, n_audio_samples=24000, seed=seed)
        make_shards(shards, n_clips=4, windows_per_clip=2, n_audio_samples=24000, seed=seed,
                    split="test")
    cfg = load_config(TrainConfig, ROOT / "configs" / "experiments" / f"{experiment}.yaml",
                      [*TINY, f"data.shards_dir={shards}", f"data.audio_input={audio_input}",
                       f"run.out_dir={root / 'runs'}"])
    torch.manual_seed(seed)
    model = build_model(cfg.model, cfg.data.audio_channels)
    ckpt = root / "runs" / experiment / "ckpt.pt"
    save_checkpoint(ckpt, {"model_args": model_args_from_config(cfg.model, cfg.data.audio_channels),
                           "config": to_dict(cfg), "model": model.state_dict(), "optimizer": {},
                           "scaler": {}, "epoch": 1, "step": 1, "phase": "avsa",
                           "rng_states": [], "history": []})
    return ckpt, shards


# ----------------------------------------------------------------------------- negatives

@pytest.mark.parametrize("yaw_deg", [60.0, 135.0, 250.0, 300.0])
def test_rotated_negative_moves_the_intensity_doa_by_the_yaw(yaw_deg):
    rng = np.random.default_rng(1)
    az, el = np.deg2rad(40.0), np.deg2rad(20.0)
    foa = encode_plane_wave(rng.standard_normal(24000).astype(np.float32), az, el)
    cfg = AudioFeatureConfig()
    assert angular_distance_rad(*doa_from_intensity(foa, cfg), az, el) < np.deg2rad(2.0)
    rotated_az, rotated_el = doa_from_intensity(rotate_by_yaw(foa, np.deg2rad(yaw_deg)), cfg)
    # The field turns by -yaw: a source at az is heard at az - yaw, at the same elevation.
    expected_az = wrap_azimuth_rad(az - np.deg2rad(yaw_deg))
    assert angular_distance_rad(rotated_az, rotated_el, expected_az, el) < np.deg2rad(2.0)


def test_negative_yaws_follow_the_documented_laws():
    """Kolmogorov-Smirnov against the stated distributions: U(-180, 180) deg for the authors'
    protocol (``uniform``), U(60, 300) deg for ``away``."""
    from scipy.stats import kstest

    rng = np.random.default_rng(0)
    uniform = negative_yaws_rad(4000, rng, BinaryEvalConfig())
    assert kstest(uniform, "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 0.01
    assert np.abs(uniform).min() < np.deg2rad(2.0)          # near-zero turns are negatives too
    away = np.rad2deg(negative_yaws_rad(4000, rng, BinaryEvalConfig(negative_yaw="away")))
    assert kstest(away, "uniform", args=(60.0, 240.0)).pvalue > 0.01
    assert kstest(uniform, "uniform", args=(np.deg2rad(60.0), np.deg2rad(240.0))).pvalue < 1e-6


def test_controls_catch_an_audio_shortcut_and_pass_a_task_that_needs_the_video():
    """Two constructed tasks. (1) Audio-decidable: the positive's audio carries a marker the
    negative's lacks, whatever the video: the audio-only control scores high and leaves the
    full head no margin. (2) Needs the video: the audio equals the video's code only in the
    positive: the audio-only control is at chance, the other-clip control falls to chance,
    and the full head keeps a wide margin."""
    rng = np.random.default_rng(0)
    n, k, d = 160, 2, 8
    cfg = BinaryEvalConfig(max_epochs=80, val_fraction=0.0, batch_size=128, lr=3e-3,
                           hidden_dim=64, dropout=0.1)
    clip_ids = np.arange(n).astype(str)
    video = rng.standard_normal((n, k, d)).astype(np.float32)
    noise = lambda: 0.1 * rng.standard_normal((n, k, d)).astype(np.float32)
    marker = np.zeros((n, k, d), np.float32)
    marker[..., 0] = 3.0
    audio_decidable = PairSet(video, rng.standard_normal((n, k, d)) + marker,
                              rng.standard_normal((n, k, d)), clip_ids)
    needs_video = PairSet(video, video + noise(), np.roll(video, 1, axis=1) + noise(), clip_ids)
    device = torch.device("cpu")
    for pairs, audio_decides in ((audio_decidable, True), (needs_video, False)):
        train, test = pairs.subset(np.arange(n) < 112), pairs.subset(np.arange(n) >= 112)
        head, _ = train_pair_classifier(train, cfg, device, seed=0)
        full = pair_accuracy(head, test, device, seed=1)["single_view"]
        controls = control_scores(head, train, test, cfg, device, seed=0)
        assert 40.0 <= controls["video_only"]["single_view"] <= 60.0     # chance by design
        if audio_decides:
            assert controls["audio_only"]["single_view"] > 90.0
            assert full - controls["audio_only"]["single_view"] < 5.0
        else:
            assert 35.0 <= controls["audio_only"]["single_view"] <= 65.0
            assert 35.0 <= controls["other_clip_video"]["single_view"] <= 65.0
            assert full > 85.0


def test_random_yaws_stay_away_from_the_original_direction():
    yaws = np.rad2deg(random_yaws_rad(1000, np.random.default_rng(0), 60.0, 300.0))
    assert yaws.min() >= 60.0 and yaws.max() <= 300.0 and np.ptp(yaws) > 200.0
    with pytest.raises(ValueError):
        random_yaws_rad(3, np.random.default_rng(0), 0.0, 300.0)


def test_avc_negatives_always_come_from_another_clip():
    clip_ids = np.array(["a", "a", "a", "b", "c", "c"])
    for seed in range(20):
        partners = mismatched_partners(clip_ids, np.random.default_rng(seed))
        assert np.all(clip_ids[partners] != clip_ids)
    with pytest.raises(ValueError, match="at least 2 clips"):
        mismatched_partners(["a", "a"], np.random.default_rng(0))


def test_window_yaws_depend_only_on_the_seed_and_the_window():
    cfg = BinaryEvalConfig()
    first = window_yaws_rad("clip-a", 2, 4, cfg)
    np.testing.assert_array_equal(first, window_yaws_rad("clip-a", 2, 4, cfg))
    assert first[0] == window_yaws_rad("clip-a", 2, 1, cfg)[0]      # 1 yaw: a prefix of 4
    assert not np.allclose(first, window_yaws_rad("clip-a", 3, 4, cfg))
    assert not np.allclose(first, window_yaws_rad("clip-b", 2, 4, cfg))
    assert not np.allclose(first, window_yaws_rad("clip-a", 2, 4, replace(cfg, seed=1)))
    assert np.all(np.abs(first) <= np.pi)
    with pytest.raises(ValueError, match="test_yaws_per_window must be >= 1"):
        window_yaws_rad("clip-a", 2, 0, cfg)


# ----------------------------------------------------------------------------- statistics

def test_cluster_robust_se_by_hand():
    """One row per clip: the textbook sd / sqrt(n). Clips whose pairs all agree: the SE of
    the clip means (two clips at 100 % and 0 %: 50 +- 50 points), far above the binomial
    sqrt(p (1 - p) / n) = 11 points that treats the 20 pairs as independent."""
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert cluster_robust_se(values, np.arange(6)) == pytest.approx(
        values.std(ddof=1) / np.sqrt(6))
    correct = np.repeat([True, False], 10)
    clips = np.repeat(["a", "b"], 10)
    summary = accuracy_with_se(correct, clips)
    assert (summary["accuracy_pct"], summary["n_pairs"], summary["n_clusters"]) == (50.0, 20, 2)
    assert summary["se_pct"] == pytest.approx(50.0)
    assert np.sqrt(0.25 / 20) * 100 == pytest.approx(11.18, abs=0.01)
    assert np.isnan(cluster_robust_se(values, np.zeros(6)))          # one clip: no SE


def test_paired_difference_of_two_models_pair_by_pair():
    """Model a is right on every pair, b on the first clip's pairs only: a - b = 50 points;
    per clip the differences are 0 and 100, so the clustered SE is 50 and the interval
    50 +- 1.96 * 50."""
    clips = np.repeat([0, 1], 4)
    a, b = np.ones(8, bool), np.repeat([True, False], 4)
    diff = paired_difference_pct(a, b, clips)
    assert (diff["mean"], diff["se"], diff["n_pairs"], diff["n_clusters"]) == (50.0, 50.0, 8, 2)
    assert (diff["low"], diff["high"]) == pytest.approx((50.0 - 98.0, 50.0 + 98.0))
    assert paired_difference_pct(a, a, clips)["se"] == 0.0
    with pytest.raises(ValueError, match="must align"):
        paired_difference_pct(a, b[:6], clips)


# ----------------------------------------------------------------------------- decidable pairs

def test_decidable_views_see_a_sounding_object_in_their_crop():
    """Viewpoint 0 looks at (30, 10) deg with a 60 deg crop; the sounding object sits there,
    behind it at (-150, -10) deg, or 25 / 35 deg off-axis (inside / outside half the FOV).
    Silent, undrawn and padding objects never count."""
    deg = np.deg2rad
    view_az = deg(np.array([[30.0, -150.0, 55.0, 65.0]]))
    view_el = deg(np.array([[10.0, -10.0, 10.0, 10.0]]))
    fov = deg(np.full((1, 4), 60.0))
    gt_az, gt_el = deg(np.array([[30.0, 30.0, 30.0]])), deg(np.array([[10.0, 10.0, 10.0]]))
    sounding = np.array([[True, False, True]])
    shown = views_showing_sounding_object(view_az, view_el, fov, gt_az, gt_el, sounding,
                                          gt_count=np.array([1]))
    # in front; behind; 25 deg off-axis (< 30) at the same elevation; 35 deg off-axis
    np.testing.assert_array_equal(shown, [[True, False, True, False]])
    silent = views_showing_sounding_object(view_az, view_el, fov, gt_az, gt_el,
                                           np.zeros((1, 3), bool), np.array([3]))
    hidden = views_showing_sounding_object(view_az, view_el, fov, gt_az, gt_el, sounding,
                                           np.array([1]), gt_visible=np.zeros((1, 3), bool))
    padding = views_showing_sounding_object(view_az, view_el, fov, gt_az, gt_el, sounding,
                                            np.array([0]))
    assert not silent.any() and not hidden.any() and not padding.any()


def test_decidable_subset_of_the_pairs():
    """Single views keep the pairs of decidable views; multi-view windows with >= 1 of them."""
    correct_single = np.zeros((2, 3, 2, 4), bool)          # (label, window, yaw, view)
    correct_single[:, 0, :, 1] = True                       # right only on window 0, view 1
    decidable = np.zeros((3, 4), bool)
    decidable[0, 1] = decidable[2, 3] = True
    kept, clusters = scored_subset(correct_single, np.array([0, 0, 1]), decidable)
    assert len(kept) == 2 * 2 * 2 and kept.mean() == 0.5           # 2 views x 2 yaws x 2 labels
    np.testing.assert_array_equal(np.unique(clusters), [0, 1])
    multi, _ = scored_subset(np.ones((2, 3, 2), bool), np.array([0, 0, 1]), decidable)
    assert len(multi) == 2 * 2 * 2                                   # windows 0 and 2
    everything, _ = scored_subset(correct_single, np.array([0, 0, 1]))
    assert len(everything) == correct_single.size


# ----------------------------------------------------------------------------- head

def test_pair_classifier_learns_a_separable_correspondence():
    rng = np.random.default_rng(0)
    n, k, d = 96, 4, 8
    video = rng.standard_normal((n, k, d)).astype(np.float16)
    audio = (video + 0.1 * rng.standard_normal((n, k, d))).astype(np.float16)   # aligned
    rotated = np.roll(audio, 1, axis=1)                                         # wrong viewpoint
    clip_ids = np.arange(n).astype(str)
    cfg = BinaryEvalConfig(max_epochs=60, val_fraction=0.0, batch_size=128, lr=3e-3,
                           hidden_dim=64, dropout=0.1)
    train = PairSet(video[:64], audio[:64], rotated[:64], clip_ids[:64])
    test = PairSet(video[64:], audio[64:], rotated[64:], clip_ids[64:])
    head, fit = train_pair_classifier(train, cfg, torch.device("cpu"), seed=0)
    assert (fit.epochs_run, fit.best_epoch, fit.val_loss) == (60, 60, None)
    accuracy = pair_accuracy(head, test, torch.device("cpu"), seed=1)
    assert accuracy["single_view"] > 85.0 and accuracy["multi_view"] > 90.0


def test_head_validation_clips_are_never_in_its_training_pairs():
    rng = np.random.default_rng(0)
    clip_ids = np.repeat([f"clip{i}" for i in range(10)], 3)
    pairs = PairSet(rng.standard_normal((30, 4, 8)), rng.standard_normal((30, 4, 8)), None,
                    clip_ids, rng.random((30, 4)) < 0.5)
    fit, val = split_by_clip(pairs, 0.2, np.random.default_rng(1))
    assert len(set(val.clip_ids)) == 2 and len(set(fit.clip_ids)) == 8
    assert not set(fit.clip_ids) & set(val.clip_ids)
    assert len(fit.video) + len(val.video) == 30 and val.from_detection.shape == (6, 4)
    kept = np.isin(clip_ids, val.clip_ids)
    np.testing.assert_array_equal(val.audio_positive, pairs.audio_positive[kept])
    with pytest.raises(ValueError, match="fewer than 2 to train"):
        split_by_clip(pairs.subset(np.isin(clip_ids, ["clip0", "clip1", "clip2"])), 0.2,
                      np.random.default_rng(0))


def test_head_stops_early_and_keeps_its_best_validation_epoch():
    """Pure-noise features: the validation loss cannot keep falling, so training stops
    ``patience`` epochs after the kept head, long before ``max_epochs``."""
    rng = np.random.default_rng(0)
    n, k, d = 120, 2, 8
    pairs = PairSet(rng.standard_normal((n, k, d)), rng.standard_normal((n, k, d)),
                    rng.standard_normal((n, k, d)), np.arange(n).astype(str))
    cfg = BinaryEvalConfig(max_epochs=400, patience=5, val_fraction=0.25, batch_size=64,
                           lr=1e-2, hidden_dim=64, dropout=0.0)
    _, fit = train_pair_classifier(pairs, cfg, torch.device("cpu"), seed=0)
    assert fit.epochs_run == fit.best_epoch + cfg.patience < cfg.max_epochs
    assert fit.val_loss is not None and 0.0 <= fit.val_accuracy_pct <= 100.0


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("audio_input", ["foa_iv", "beamform"])
def test_evaluation_inputs_equal_the_trainers(tmp_path, audio_input):
    """Same audio channels, same normalisation, same video scaling as trainer.data."""
    ckpt, shards = make_tiny_run(tmp_path, audio_input=audio_input)
    frozen = load_frozen(ckpt, "cpu")
    stream = ShardStream(shards, "test", frozen.config.data, batch_size=4, training=False,
                         equal_steps=False)
    trainer_batch = next(stream.iter_worker(0, 1))
    ours = {}
    for batch in iter_shard_batches(shards, "test", "random", 4,
                                    AUDIO_FEATURES[audio_input]):
        audio = frozen.audio_input_from_features(batch["features"])
        for i, clip_id in enumerate(batch["clip_id"]):
            ours[(clip_id, int(batch["window_index"][i]))] = (audio[i], batch["crops"][i])
    for i, clip_id in enumerate(trainer_batch["clip_id"]):
        audio, crops = ours[(clip_id, int(trainer_batch["window_index"][i]))]
        np.testing.assert_allclose(audio, trainer_batch["audio"][i].numpy(), atol=1e-5)
        with torch.no_grad():
            expected = frozen.model.video_encoder(trainer_batch["video"][i])
        np.testing.assert_allclose(frozen.encode_video(crops), expected.numpy(), atol=1e-4)


def test_recomputed_features_are_checked_against_the_stored_ones(tmp_path, caplog):
    """Evaluation recomputes the audio features from the stored FOA; the first batch's stored
    features are read back for its rows and viewpoints, and a > 1 dB gap is reported."""
    ckpt, shards = make_tiny_run(tmp_path, audio_input="foa")
    frozen = load_frozen(ckpt, "cpu")
    batch = list(iter_shard_batches(shards, "test", "random", 4, ("logmel_foa",), 3))[1]
    stored = stored_features(shards, batch, "random", ("logmel_foa",))
    np.testing.assert_array_equal(stored["logmel_foa"], batch["features"]["logmel_foa"])
    # The factory stores made-up features; what preprocessing would have stored is this:
    consistent = np.stack([foa_features(foa, az, el, frozen.feature_cfg)["logmel_foa"]
                           for foa, az, el in zip(batch["foa"], batch["azimuth_rad"],
                                                  batch["elevation_rad"])])
    yaws = np.deg2rad(np.full(len(batch["clip_id"]), 90.0))
    with caplog.at_level("WARNING", logger="evals.audio.binary"):
        encode_batch(frozen, batch, yaws, {"logmel_foa": consistent})
        assert "differs from the stored" not in caplog.text
        encode_batch(frozen, batch, yaws, {"logmel_foa": consistent + 3.0})
    assert "logmel_foa recomputed from foa_acn_sn3d differs" in caplog.text


def test_pair_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    correct = {"avsa.single_view": rng.random((2, 5, 3, 4)) < 0.5,
               "avsa.multi_view": rng.random((2, 5, 3)) < 0.5}
    clip_ids = np.array(["c1", "c0", "c1", "c2", "c0"])
    path = write_pair_file(tmp_path / "eval.pairs.npz", clip_ids, np.arange(5),
                           rng.uniform(-np.pi, np.pi, (5, 3)), correct, rng.random((5, 4)) < 0.3)
    back = read_pair_file(path)
    assert set(back["correct"]) == set(correct)
    for name, value in correct.items():
        np.testing.assert_array_equal(back["correct"][name], value)
    np.testing.assert_array_equal(back["clip_id"], clip_ids)
    np.testing.assert_array_equal(back["clusters"], [1, 0, 1, 2, 0])
    np.testing.assert_array_equal(back["labels"], [1, 0])
    assert back["decidable"].shape == (5, 4) and back["yaws_rad"].shape == (5, 3)
    assert read_pair_file(write_pair_file(tmp_path / "b.npz", clip_ids, np.arange(5),
                                          np.zeros((5, 1)), correct))["decidable"] is None


def test_two_models_are_scored_against_the_same_yaws(tmp_path):
    """Two differently initialised models on the same shards: the same windows and yaws, in
    the same order (so their pair files align), different features; the test split expands
    to one row per (window, yaw) with the window's positive repeated."""
    ckpt_a, shards = make_tiny_run(tmp_path, experiment="avsa", seed=0)
    ckpt_b, _ = make_tiny_run(tmp_path, experiment="avc", seed=1)
    cfg = BinaryEvalConfig(extract_batch=8)
    features = [extract_features(load_frozen(ckpt, "cpu"), shards, "test", cfg, 0, n_yaws=3)
                for ckpt in (ckpt_a, ckpt_b)]
    a, b = features
    np.testing.assert_array_equal(a["yaws_rad"], b["yaws_rad"])
    np.testing.assert_array_equal(a["clip_id"], b["clip_id"])
    np.testing.assert_array_equal(a["window_index"], b["window_index"])
    assert a["yaws_rad"].shape == (8, 3) and not np.allclose(a["audio_foa"], b["audio_foa"])
    assert a["audio_rotated_more"].shape == (8, 2, 4, 32)
    assert a["decidable"].shape == (8, 4)
    expected = [window_yaws_rad(c, w, 3, cfg) for c, w in zip(a["clip_id"], a["window_index"])]
    np.testing.assert_allclose(a["yaws_rad"], expected)
    pairs = pair_set(a, "avsa", "plain", all_yaws=True)
    assert pairs.video.shape == (24, 4, 32) and pairs.audio_negative.shape == (24, 4, 32)
    np.testing.assert_array_equal(pairs.audio_positive[3:6], np.repeat(a["audio_foa"][1:2], 3, 0))
    np.testing.assert_array_equal(pairs.audio_negative[4], a["audio_rotated_more"][1, 0])
    assert pair_set(a, "avsa", "plain").video.shape == (8, 4, 32)       # training: yaw 0 only


@pytest.mark.slow
def test_binary_evaluation_end_to_end_writes_and_caches(tmp_path):
    ckpt, shards = make_tiny_run(tmp_path)
    cfg = BinaryEvalConfig(max_epochs=2, batch_size=64, extract_batch=8)
    result = evaluate_binary(ckpt, shards, cfg, device="cpu")
    saved = json.loads((ckpt.parent / "eval_binary.json").read_text())
    assert saved["accuracy_pct"] == result["accuracy_pct"]
    assert saved["experiment"] == "avsa" and saved["synthetic"] is True
    assert saved["config_path"] == "configs/experiments/avsa.yaml"
    assert (saved["n_train_samples"], saved["n_test_samples"]) == (12, 8)
    assert saved["num_viewpoints"] == 4 and saved["test_yaws_per_window"] == 4
    assert saved["n_test_pairs"] == {"single_view": 2 * 8 * 4 * 4, "multi_view": 2 * 8 * 4}
    pairs = read_pair_file(ckpt.parent / saved["pairs_file"])
    for task in ("avc", "avsa"):                       # the JSON's scores are the pair file's
        for view in ("single_view", "multi_view_transformer"):
            correct = pairs["correct"][f"{task}.{view}"]
            assert saved["accuracy_pct"][task][view] == pytest.approx(100 * correct.mean(),
                                                                      abs=0.01)
            summary = accuracy_with_se(*scored_subset(correct, pairs["clusters"]))
            assert saved["se_pct"][task][view] == pytest.approx(summary["se_pct"], abs=0.01)
            decidable = saved["decidable_pct"][task][view]
            assert decidable["n_pairs"] == scored_subset(correct, pairs["clusters"],
                                                         pairs["decidable"])[0].size
    for task in ("avc", "avsa"):
        scores = saved["accuracy_pct"][task]
        assert set(scores) == {"single_view", "multi_view", "single_view_transformer",
                               "multi_view_transformer", "single_view_transformer_a2v",
                               "multi_view_transformer_a2v"}
        assert all(0.0 <= v <= 100.0 for v in scores.values())
    cached = sorted((ckpt.parent / "eval_cache").glob("binary-*.npz"))
    assert [p.name.split("-")[1] for p in cached] == ["test", "train"]
    with np.load(cached[0]) as data:
        assert data["video"].shape == (8, 4, 32) and data["audio_rotated"].shape == (8, 4, 32)
        assert np.all(np.abs(data["yaw_rad"]) <= np.pi)         # authors' protocol: U(-pi, pi)
    for task in ("avc", "avsa"):                                 # controls land in the JSON
        for variant in ("plain", "v2a", "a2v"):
            assert set(saved["controls_pct"][task][variant]) == {
                "audio_only", "video_only", "other_clip_video"}
            margin = saved["margin_over_best_control_pct"][task][variant]["multi_view"]
            best = max(c["multi_view"] for c in saved["controls_pct"][task][variant].values())
            full = saved["accuracy_pct"][task]["multi_view" + {"plain": "", "v2a": "_transformer",
                                                               "a2v": "_transformer_a2v"}[variant]]
            assert margin == pytest.approx(full - best, abs=0.02)
    again = evaluate_binary(ckpt, shards, cfg, device="cpu")                # from the cache
    assert again["accuracy_pct"] == result["accuracy_pct"]
    # The same model scored on the other stored viewpoint set: its own file and cache entries.
    other = evaluate_binary(ckpt, shards, replace(cfg, viewpoints="yolo"), device="cpu")
    saved_other = json.loads((ckpt.parent / "eval_binary_yolo.json").read_text())
    assert saved_other["pair_viewpoints"] == "yolo" and saved["pair_viewpoints"] == "random"
    assert saved_other["accuracy_pct"] == other["accuracy_pct"]
    # The factory's YOLO set centres its first viewpoint on the source, the rest are fill:
    # single views are split by kind, and the two kinds average to the whole (1 of 4 detected).
    for task in ("avc", "avsa"):
        scores = saved_other["accuracy_pct"][task]
        assert (scores["single_view_detected"] + 3 * scores["single_view_fill"]) / 4 == \
            pytest.approx(scores["single_view"])
    assert "single_view_detected" not in saved["accuracy_pct"]["avc"]   # random views: no split
    assert len(list((ckpt.parent / "eval_cache").glob("binary-*.npz"))) == 4
    with pytest.raises(ValueError, match="run, random or yolo"):
        evaluate_binary(ckpt, shards, replace(cfg, viewpoints="detr"), device="cpu")
