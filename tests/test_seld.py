"""SELD downstream: multi-ACCDOA targets and the ADPIT loss, decoding, frame-wise inputs (with
physics: the DCASE baseline's intensity channels of a plane wave from the left, in its ACN order
and N3D-style energy), the head's step budget and validation split, and the evaluation end to
end on a few synthetic STARSS23-layout recordings."""

import json
import math

import numpy as np
import pytest
import torch

from evals.audio.readout import front_view_frames
from evals.audio.seld import (ARMS, RecordingData, SeldHead, SeldProtocol, SeldRun, adpit_loss,
                              adpit_targets, assignment_patterns, dcase_baseline_frames,
                              decode_tracks, format_table, split_train_validation, summarise,
                              train_head, train_with_early_stopping, run)
from evals.frozen import load_frozen
from pipeline.foa import encode_plane_wave
from pipeline.spatial import direction_vector
from pipeline.importers.starss23 import LabelRow, Starss23Recording
from pipeline.synth.cli import generate_starss23
from pipeline.synth.starss23 import Starss23SynthConfig
from tests.test_eval_binary import make_tiny_run

torch.set_num_threads(1)


def direction_xyz(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """The unit vector of a label direction in degrees (the targets' convention)."""
    return direction_vector(math.radians(azimuth_deg), math.radians(elevation_deg))


def test_direction_convention_left_is_plus_y():
    np.testing.assert_allclose(direction_xyz(90.0, 0.0), [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(direction_xyz(0.0, 90.0), [0.0, 0.0, 1.0], atol=1e-12)


def test_adpit_targets_hold_every_assignment():
    a, b = LabelRow(0, 1, 0, 0.0, 0.0), LabelRow(0, 1, 5, 90.0, 0.0)
    other = LabelRow(1, 2, 0, 180.0, 0.0)
    targets = adpit_targets([b, a, other], n_frames=3, n_classes=3)
    assert targets.shape == (3, 6, 3, 3, 3)
    va, vb = direction_xyz(0.0, 0.0), direction_xyz(90.0, 0.0)
    expected = [[va if i == 0 else vb for i in tracks] for tracks in assignment_patterns(2)]
    np.testing.assert_allclose(targets[0, :, :, 1], expected, atol=1e-6)   # sorted by source
    for pattern in range(6):                              # one event fills every track
        np.testing.assert_allclose(targets[1, pattern, :, 2], [direction_xyz(180.0, 0.0)] * 3,
                                   atol=1e-6)
    assert not targets[2].any() and not targets[0, :, :, 0].any()
    assert len(set(assignment_patterns(3))) == 6


def test_adpit_loss_is_invariant_to_the_track_order_and_penalises_a_missed_event():
    a, b = LabelRow(0, 0, 0, 0.0, 0.0), LabelRow(0, 0, 1, 120.0, 30.0)
    targets = torch.from_numpy(adpit_targets([a, b], 1, 1))
    va, vb = direction_xyz(0.0, 0.0), direction_xyz(120.0, 30.0)
    for tracks in ([vb, va, va], [va, vb, vb], [vb, vb, va]):
        prediction = torch.tensor(np.array(tracks)[None, :, None, :], dtype=torch.float32)
        assert float(adpit_loss(prediction, targets)) < 1e-10
    only_a = torch.tensor(np.array([va, va, va])[None, :, None, :], dtype=torch.float32)
    assert float(adpit_loss(only_a, targets)) > 0.1


def test_decoding_thresholds_and_merges_close_tracks():
    output = np.zeros((2, 3, 2, 3), np.float32)
    output[0, 0, 0] = 0.9 * direction_xyz(90.0, 0.0)          # left
    output[0, 1, 0] = 0.9 * direction_xyz(100.0, 0.0)         # 10 deg away: merged
    output[0, 2, 0] = 0.9 * direction_xyz(-90.0, 0.0)         # right: a second event
    output[1, 0, 1] = 0.4 * direction_xyz(0.0, 0.0)           # too short: inactive
    events = decode_tracks(output, activity_threshold=0.5, unify_threshold_deg=15.0)
    assert [(e.frame, e.class_id) for e in events] == [(0, 0), (0, 0)]
    azimuths = sorted(math.degrees(e.azimuth_rad) for e in events)
    np.testing.assert_allclose(azimuths, [-90.0, 95.0], atol=1e-3)


def test_dcase_baseline_features_of_a_plane_wave_from_the_left():
    """The baseline's IV: ACN order (Y, Z, X), energy |W|^2 + (|Y|^2+|Z|^2+|X|^2)/3, so a
    plane wave gives I_Y = 0.75 per unit of mel weight; log-mel floored 80 dB under its peak."""
    import librosa
    rng = np.random.default_rng(0)
    foa = encode_plane_wave(0.1 * rng.standard_normal(36000).astype(np.float32),
                            math.radians(90.0), 0.0)                  # 1.5 s from the left
    frames = dcase_baseline_frames(foa, n_label_frames=15)
    assert frames.shape == (15, 5 * 7 * 64) and np.isfinite(frames).all()
    per_channel = frames.reshape(15, 5, 7, 64)[1:-1]                   # away from the edges
    band_weight = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=64).sum(axis=1)
    iv_y, iv_z, iv_x = (per_channel[:, :, c] / band_weight for c in (4, 5, 6))
    np.testing.assert_allclose(iv_y.mean(), 0.75, atol=0.01)
    assert abs(iv_x.mean()) < 0.01 and abs(iv_z.mean()) < 0.01
    logmel = frames.reshape(15, 5, 7, 64)[:, :, :4]
    assert (logmel.max(axis=(0, 1, 3)) - logmel.min(axis=(0, 1, 3)) <= 80.0 + 1e-3).all()
    # The X channel of a wave from the left is silent: its log-mel sits at its floor.
    assert logmel[:, :, 3].mean() < logmel[:, :, 0].mean() - 40.0


def _tiny_training_set() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((30, 5)).astype(np.float32),
             adpit_targets([LabelRow(f, 1, 0, 45.0, 0.0) for f in range(30)], 30, 2))]


def test_head_keeps_the_sequence_and_trains_the_given_number_of_steps():
    head = SeldHead(in_dim=5, n_classes=2, hidden=8, conv_blocks=3)
    assert head(torch.zeros(3, 17, 5)).shape == (3, 17, 3, 2, 3)
    steps = []
    train_head(_tiny_training_set(), 2, SeldProtocol(hidden=8, sequence_frames=10, batch_size=2),
               seed=0, steps=7, on_step=lambda step, _: steps.append(step) or False)
    assert steps == list(range(1, 8))


def test_early_stopping_keeps_the_weights_of_the_best_validation_step():
    """Validation SELD 0.9, 0.7, 0.8, 0.75, 0.95 at steps 2, 4, ...: step 4 is kept and training
    stops after patience = 3 validations without a better score (step 10, not the budget)."""
    protocol = SeldProtocol(hidden=8, sequence_frames=10, batch_size=2, steps=40,
                            validate_every_steps=2, patience=3)
    validation_scores = iter([0.9, 0.7, 0.8, 0.75, 0.95, 0.1])
    fitted = train_with_early_stopping(_tiny_training_set(), 2,
                                       lambda head: {"seld_score": next(validation_scores)},
                                       protocol, seed=0)
    assert (fitted.best_step, fitted.steps_run) == (4, 10)
    assert [point["steps"] for point in fitted.curve] == [2, 4, 6, 8, 10]
    # The kept weights are those of a head trained exactly 4 steps (same seed, same crops).
    reference = train_head(_tiny_training_set(), 2, protocol, seed=0, steps=4)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(fitted.head.state_dict()[name], value)
    assert not fitted.head.training


def test_early_stopping_validates_after_the_last_step_of_the_budget():
    protocol = SeldProtocol(hidden=8, sequence_frames=10, batch_size=2, steps=5,
                            validate_every_steps=2, patience=10)
    scores = iter([0.9, 0.8, 0.7])
    fitted = train_with_early_stopping(_tiny_training_set(), 2,
                                       lambda head: {"seld_score": next(scores)}, protocol, 0)
    assert [p["steps"] for p in fitted.curve] == [2, 4, 5] and fitted.best_step == 5


@pytest.mark.parametrize("override, key", [({"steps": 0}, "steps"),
                                           ({"patience": 0}, "patience"),
                                           ({"validate_every_steps": 0}, "validate_every_steps"),
                                           ({"validation_every": 1}, "validation_every"),
                                           ({"arms": ("encoder", "mfcc")}, "arms"),
                                           ({"weight_decay": -1.0}, "weight_decay")])
def test_protocol_rejects_unusable_settings_naming_the_key(override, key):
    with pytest.raises(ValueError, match=f"protocol.{key}"):
        SeldProtocol(**override).validate()


def test_printed_table_has_a_row_per_arm_and_the_paired_differences():
    per_seed = {arm: [{"error_rate": 0.5, "f_score": 0.4, "localization_error_deg": 20.0 + i,
                       "localization_recall": 0.7, "seld_score": 0.4} for i in range(2)]
                for arm in ARMS}
    report = {"dataset": "SYNTHETIC set", "recordings": {"test": 4}, "seeds": [0, 1],
              "steps": 3000, "arms": list(ARMS), "summary": summarise(per_seed),
              "best_steps": {arm: [300, 500] for arm in ARMS}}
    rows = format_table(report).splitlines()[2:]
    assert [row.split()[0] for row in rows] == list(ARMS) + [
        f"encoder_minus_{arm}" for arm in ARMS if arm != "encoder"]
    front_view = next(row for row in rows if row.split()[0] == "front_view").split()
    assert front_view[1:4] == ["0.50±0.00", "40.0±0.0", "20.5±0.7"] and front_view[-1] == "400"


def test_validation_part_is_carved_from_dev_train_only():
    def item(name: str, split: str) -> RecordingData:
        return RecordingData(Starss23Recording(name, split, f"{name}.wav", f"{name}.csv", None),
                             10, [])
    data = [item(f"fold3_mix{i}", "dev-train-sony") for i in range(6)] + [
        item("fold4_mix0", "dev-test-sony")]
    fit, validation = split_train_validation(data, every=4)
    assert [d.recording.name for d in validation] == ["fold3_mix5", "fold3_mix1"]
    assert len(fit) == 4 and all(d.recording.is_train for d in fit + validation)
    with pytest.raises(ValueError, match="at least 2 dev-train"):
        split_train_validation(data[:1] + data[-1:], every=4)


def test_encoder_frames_give_one_vector_per_label_frame(tmp_path):
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa_iv")
    frozen = load_frozen(ckpt, "cpu")
    foa = encode_plane_wave(np.random.default_rng(1).standard_normal(60000).astype(np.float32)
                            * 0.1, 0.3, 0.1)                          # 2.5 s
    frames = front_view_frames(frozen, foa, n_label_frames=25)
    assert frames.shape == (25, frozen.feature_dim) and np.isfinite(frames).all()
    # The frame features of a whole window pool (max over time) to its clip feature.
    window = frozen.audio_input_from_foa(foa[:, :frozen.feature_cfg.n_samples], [0.0], [0.0])
    pooled = frozen.encode_audio(window)[0]
    assert np.all(frames[:10].max(axis=0) <= pooled + 1e-4)


@pytest.mark.slow
def test_eval_seld_end_to_end_on_synthetic_recordings(tmp_path):
    root = tmp_path / "starss"
    generate_starss23(root, seed=1, workers=1, cfg=Starss23SynthConfig(
        n_train_per_split=2, n_test_per_split=1, duration_s=6.0, width=64, fps=8))
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa_iv")
    out = tmp_path / "seld" / "eval_seld.json"
    written = run(SeldRun(ckpt=str(ckpt), out=str(out), device="cpu", starss_dir=str(root),
                          protocol=SeldProtocol(seeds=(0, 1), steps=20, hidden=16,
                                                validate_every_steps=5, patience=2)))
    result = json.loads(written.read_text())
    assert result["synthetic"] and result["dataset"].startswith("SYNTHETIC")
    assert result["recordings"] == {"train": 4, "test": 2}
    assert result["arms"] == ["encoder", "random_encoder", "front_view", "dcase_features",
                              "no_input"]
    assert result["steps"] == 20
    assert result["input_dims"]["encoder"] > result["input_dims"]["front_view"]
    assert result["input_dims"]["dcase_features"] == 5 * 7 * 64
    # Early stopping on dev-train's validation part only: one curve and best step per seed.
    assert not set(result["validation"]["recordings"]) & {"fold4_room1_mix001",
                                                           "fold4_room2_mix001"}
    for arm in result["arms"]:
        curves = result["validation"]["curves"][arm]
        assert len(curves) == 2 and all(c[0]["steps"] == 5 for c in curves)
        assert all(best in [p["steps"] for p in c]
                   for best, c in zip(result["best_steps"][arm], curves))
        assert len(result["per_seed"][arm]) == 2
        for key in ("error_rate", "f_score", "localization_error_deg", "localization_recall"):
            assert math.isfinite(result["summary"][arm][key]["mean"])
    assert set(result["summary"]) >= {"encoder_minus_random_encoder",
                                      "encoder_minus_front_view",
                                      "encoder_minus_dcase_features"}
    assert (tmp_path / "seld" / "eval_seld_tracks.png").stat().st_size > 10_000
    assert result["classes_scored"]
