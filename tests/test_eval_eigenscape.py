"""EigenScape scene classification: DirAC statistics (physics), the fold protocol, the real
excerpt through the same reading path, the classifier, and end-to-end runs (real layout with a
tiny checkpoint; the synthetic fallback, flagged)."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.decode import ambisonic_sanity
from pipeline.foa import encode_plane_wave
from pipeline.importers import import_eigenscape
from pipeline.spatial import angular_distance_rad, vector_to_direction
from tests.test_eval_binary import make_tiny_run
from evals.audio.scenes import main as scenes_main
from evals.audio.scenes import (SYNTHETIC_WARNING, SceneEvalConfig, descriptor_methods, protocol_label,
                                evaluate_eigenscape, fit_logistic_regression,
                                fold_splits, recording_descriptors)
from evals.frozen import read_ambisonic_segment
from evals.audio.spatial_stats import SpatialStatsConfig, dirac_stats, logmel_stats

torch.set_num_threads(1)  # tiny models: threads only add contention on 2 shared cores
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
EXCERPT = REALDATA / "eigenscape_Beach.1_excerpt.wav"


def diffuse_field(n_samples: int, rng: np.random.Generator, n_waves: int = 256) -> np.ndarray:
    """FOA of independent noises from near-uniform directions (an isotropic diffuse field)."""
    vectors = rng.standard_normal((n_waves, 3))
    az, el = vector_to_direction(vectors)
    waves = [encode_plane_wave(rng.standard_normal(n_samples).astype(np.float32), a, e)
             for a, e in zip(az, el)]
    return np.sum(waves, axis=0) / np.sqrt(n_waves)


def write_scene_folder(folder: Path, classes=("Beach", "Park"), duration_s=2.0, rate=48000,
                       seed=0) -> Path:
    """8 recordings per class: 'Beach' = a plane wave of noise near the front, anything else =
    diffuse noise; same level, so only the spatial cue separates them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = int(duration_s * rate)
    for index, name in enumerate(classes):
        for k in range(1, 9):
            if index == 0:
                foa = encode_plane_wave(0.05 * rng.standard_normal(n).astype(np.float32),
                                        rng.uniform(-0.5, 0.5), rng.uniform(-0.2, 0.2))
            else:
                foa = 0.05 * diffuse_field(n, rng, n_waves=32)
            sf.write(folder / f"{name}.{k}.wav", foa.T, rate, subtype="PCM_16")
    return folder


# ----------------------------------------------------------------------------- DirAC

def test_dirac_stats_plane_wave_is_directional_and_diffuse_noise_is_not():
    rng = np.random.default_rng(0)
    cfg = SpatialStatsConfig()
    az, el = np.deg2rad(70.0), np.deg2rad(25.0)
    signal = rng.standard_normal(48000).astype(np.float32)
    plane = dirac_stats(encode_plane_wave(signal, az, el), cfg)
    b = cfg.n_bands
    assert plane.shape == (4 * b,)
    assert np.max(plane[3 * b:]) < 0.01                                # psi ~ 0 in every band
    mean_vector = plane[:3 * b].reshape(3, b).mean(axis=1)
    assert np.linalg.norm(mean_vector) > 0.99                          # steady direction
    assert angular_distance_rad(*vector_to_direction(mean_vector), az, el) < np.deg2rad(1.0)

    diffuse = dirac_stats(diffuse_field(48000, rng), cfg)
    assert np.mean(diffuse[3 * b:]) > 0.85 and np.min(diffuse[3 * b:]) > 0.7    # psi ~ 1


def test_logmel_stats_are_per_band_mean_and_std_of_w():
    rng = np.random.default_rng(0)
    loud = encode_plane_wave(0.5 * rng.standard_normal(24000).astype(np.float32), 0.3, 0.0)
    quiet = loud / 10.0
    stats_loud, stats_quiet = logmel_stats(loud), logmel_stats(quiet)
    assert stats_loud.shape == (256,)
    np.testing.assert_allclose(stats_loud[:128] - stats_quiet[:128], 20.0, atol=0.01)  # +20 dB
    np.testing.assert_allclose(stats_loud[128:], stats_quiet[128:], atol=0.01)


# ----------------------------------------------------------------------------- protocol

def test_folds_never_put_a_recording_in_train_and_test(tmp_path):
    classes = ("Beach", "BusyStreet", "Park")
    for name in classes:
        for k in range(1, 9):
            sf.write(tmp_path / f"{name}-{k:02d}.wav", np.zeros((2400, 4), np.float32), 24000)
    recordings, problems = import_eigenscape(tmp_path, segment_s=0.05)
    assert not problems and len(recordings) == 24
    splits = fold_splits(recordings)
    assert [s.fold for s in splits] == [0, 1, 2, 3]
    class_of = {r.recording_id: r.scene_class for r in recordings}
    tested = []
    for split in splits:
        assert not set(split.train_ids) & set(split.test_ids)
        assert set(split.train_ids) | set(split.test_ids) == set(class_of)
        for name in classes:
            assert sum(class_of[i] == name for i in split.test_ids) == 2
        tested += split.test_ids
    assert sorted(tested) == sorted(class_of)                          # each tested exactly once
    assert {r.recording_id for r in recordings if r.fold == 1} >= {"Beach-03", "Beach-04"}


def test_logistic_regression_separates_gaussian_blobs():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 10)) * 3.0
    x = np.concatenate([c + rng.standard_normal((40, 10)) for c in centres])
    y = np.repeat(np.arange(3), 40)
    classifier = fit_logistic_regression(x[::2], y[::2], 3)
    assert np.mean(classifier.predict(x[1::2]) == y[1::2]) > 0.95


# ----------------------------------------------------------------------------- real excerpt

def test_real_eigenscape_excerpt_loads_through_the_evaluation_path(tmp_path):
    if not EXCERPT.is_file():
        pytest.skip(f"real-data folder absent: {REALDATA} (only in the project workspace)")
    shutil.copy(EXCERPT, tmp_path / "Beach.1.wav")                     # the corpus' own naming
    recordings, _ = import_eigenscape(tmp_path, segment_s=0.25)       # folds 1-3 absent: fine
    (recording,) = recordings
    assert (recording.channels, recording.sample_rate) == (25, 48000)
    foa, rate = read_ambisonic_segment(tmp_path / recording.audio_path, 0.0, 0.25, "ambix")
    assert foa.shape == (4, 12000) and rate == 48000 and np.all(np.isfinite(foa))
    assert ambisonic_sanity(foa) == []                                 # looks like ambiX SN3D
    descriptors = recording_descriptors(recording, tmp_path,
                                        descriptor_methods(None, SceneEvalConfig()))
    assert descriptors["logmel_stats"].shape == (1, 256)
    assert descriptors["dirac_stats"].shape == (1, 128)
    psi = descriptors["dirac_stats"][0, 96:]
    assert np.all((psi >= 0) & (psi <= 1)) and 0.05 < psi.mean() < 0.99   # a real, mixed field


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_eigenscape_end_to_end_with_a_checkpoint(tmp_path):
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="beamform")
    folder = write_scene_folder(tmp_path / "eigenscape")
    out = tmp_path / "out"
    result = evaluate_eigenscape(ckpt, folder, out, SceneEvalConfig(segment_s=1.0, max_iter=100),
                                 device="cpu")
    saved = json.loads((out / "eval_eigenscape.json").read_text())
    assert saved["data_source"] == "eigenscape" and "WARNING" not in saved
    # 2 classes x 8 recordings of 1 s segments: a real folder, but not the authors' protocol
    assert not saved["authors_protocol"] and "not the authors' protocol" in saved["protocol_label"]
    assert saved["experiment"] == "avsa" and saved["classes"] == ["Beach", "Park"]
    assert set(saved["methods"]) == {"model", "logmel_stats", "dirac_stats"}
    assert saved["methods"]["model"]["dim"] == 64                      # mean + max of D = 32
    for method in saved["methods"].values():
        assert len(method["fold_accuracy_pct"]) == 4
        assert np.sum(method["confusion"]) == method["n_test_segments"] == 32
    assert saved["methods"]["dirac_stats"]["mean_accuracy_pct"] == 100.0    # spatial cue only
    assert (out / "eigenscape_confusion.png").stat().st_size > 10_000
    assert result["methods"] == saved["methods"]


@pytest.mark.slow
def test_a_generated_folder_is_flagged_synthetic(tmp_path, caplog):
    from pipeline.ground_truth import write_synthetic_marker
    from pipeline.synth.eigenscape import SCENE_CLASS_NAMES

    synthetic = write_scene_folder(tmp_path / "synth", classes=SCENE_CLASS_NAMES,
                                   duration_s=0.5, rate=24000)
    write_synthetic_marker(synthetic, "pipeline.synth.eigenscape")     # what the generator adds
    with caplog.at_level(logging.WARNING):
        result = evaluate_eigenscape(None, synthetic, tmp_path / "out",
                                     SceneEvalConfig(segment_s=0.5, max_iter=50))
    assert result["data_source"] == "synthetic" and result["WARNING"] == SYNTHETIC_WARNING
    assert result["protocol_label"].startswith("SYNTHETIC") and not result["authors_protocol"]
    assert set(result["methods"]) == {"logmel_stats", "dirac_stats"}  # no checkpoint
    assert "SYNTHETIC DATA" in caplog.text
    saved = json.loads((tmp_path / "out" / "eval_eigenscape.json").read_text())
    assert list(saved)[0] == "WARNING" and saved["n_recordings"] == 64


def test_protocol_labels_say_what_was_measured():
    assert protocol_label(8, 64, 30.0, synthetic=False) == "EigenScape (authors' protocol)"
    assert "not the authors' protocol" in protocol_label(8, 64, 10.0, synthetic=False)
    assert "not the authors' protocol" in protocol_label(6, 48, 30.0, synthetic=False)
    assert protocol_label(8, 64, 30.0, synthetic=True).startswith("SYNTHETIC")


def test_the_cli_without_a_folder_is_one_clear_error(capsys):
    assert scenes_main([]) == 2
    err = capsys.readouterr().err
    assert "error: data_dir: expected an EigenScape folder" in err and "Traceback" not in err
