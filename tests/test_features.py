"""Log-mel and FOA intensity-vector features: shapes, librosa agreement, plane-wave physics."""

import json
from pathlib import Path

import librosa
import numpy as np
import pytest

from pipeline.features import (
    AMIN,
    AudioFeatureConfig,
    NormStats,
    NormStatsAccumulator,
    doa_from_intensity,
    foa_features,
    intensity_directness,
    intensity_vector_mel,
    logmel,
    mel_average_weights,
    mel_filterbank,
    stft,
)
from pipeline.foa import beamform, encode_plane_wave, rotate_to_viewpoints
from pipeline.spatial import angular_distance_rad, direction_vector, vector_to_direction

CFG = AudioFeatureConfig()
DEG = np.pi / 180
DIRECTIONS_DEG = [(0, 0), (90, 0), (-170, 20), (155, -50), (30, 80), (-100, -80)]


def _noise(n=24000, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def _fibonacci_sphere(n):
    """Nearly uniform directions (azimuth_rad, elevation_rad) on the sphere."""
    i = np.arange(n) + 0.5
    return np.mod(np.pi * (1 + 5**0.5) * i, 2 * np.pi) - np.pi, np.arcsin(1 - 2 * i / n)


def _diffuse_field(n_sources=200, n=24000, seed=1):
    """Sum of uncorrelated noise plane waves spread evenly over the sphere, ambiX (4, n)."""
    azimuth_rad, elevation_rad = _fibonacci_sphere(n_sources)
    noise = np.random.default_rng(seed).standard_normal((n_sources, n))
    x, y, z = direction_vector(azimuth_rad, elevation_rad).T
    return np.stack([noise.sum(0), y @ noise, z @ noise, x @ noise]).astype(np.float32)


def _mean_iv_direction(iv):
    """Direction of the IV averaged over mel bands and frames, and its mean per-bin norm."""
    return vector_to_direction(iv.mean(axis=(-2, -1))), float(np.linalg.norm(iv, axis=0).mean())


# --------------------------------------------------------------------------- STFT, mel, log-mel


def test_stft_matches_librosa():
    x = np.random.default_rng(2).standard_normal((3, 24000))
    expected = librosa.stft(x, n_fft=512, hop_length=240, center=True, pad_mode="reflect")
    ours = stft(x, 512, 240)
    assert ours.shape == expected.shape == (3, 257, 101)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    ours32 = stft(x.astype(np.float32), 512, 240)
    assert ours32.dtype == np.complex64
    np.testing.assert_allclose(ours32, expected, atol=1e-4 * np.abs(expected).max())


def test_mel_filterbank_is_librosa_slaney_and_cached():
    fb = mel_filterbank(CFG)
    assert fb.shape == (128, 257) and fb.dtype == np.float32
    expected = librosa.filters.mel(
        sr=24000, n_fft=512, n_mels=128, fmin=0.0, fmax=12000.0, htk=False, norm="slaney"
    )
    np.testing.assert_allclose(fb, expected, rtol=1e-6)
    assert mel_filterbank(AudioFeatureConfig()) is fb
    np.testing.assert_allclose(mel_average_weights(CFG).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("sample_rate, n_fft, n_mels, fmin_hz, fmax_hz", [
    (24000, 1024, 64, 0.0, 12000.0),       # the DCASE baseline's FOA features
    (48000, 2048, 96, 50.0, 16000.0),
    (16000, 512, 12, 300.0, 900.0),        # all edges below the 1 kHz break of the scale
])
def test_mel_filterbank_equals_librosa_for_other_settings(sample_rate, n_fft, n_mels, fmin_hz,
                                                          fmax_hz):
    cfg = AudioFeatureConfig(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels,
                             fmin_hz=fmin_hz, fmax_hz=fmax_hz)
    expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin_hz,
                                   fmax=fmax_hz, htk=False, norm="slaney")
    np.testing.assert_allclose(mel_filterbank(cfg), expected, rtol=1e-6, atol=1e-9)


def test_features_do_not_import_librosa():
    """Workers compute features without importing librosa (0.9 s of CPU per process)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from pipeline import features; "
            "features.foa_features(np.zeros((4, 24000), np.float32), [0.0], [0.0]); "
            "print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


def test_logmel_shapes_floor_and_level():
    rng = np.random.default_rng(3)
    signals = rng.standard_normal((2, 4, 24000)).astype(np.float32)
    features = logmel(signals, CFG)
    assert features.shape == (2, 4, 128, 100) and features.dtype == np.float32
    assert np.all(features >= features.max(axis=(-2, -1), keepdims=True) - CFG.top_db - 1e-3)
    np.testing.assert_allclose(logmel(np.zeros(24000, np.float32)), 20 * np.log10(AMIN))
    # amplitude x 2 -> +6.02 dB everywhere (magnitude spectrogram, power 1)
    np.testing.assert_allclose(
        logmel(2 * signals[0, 0]) - logmel(signals[0, 0]), 20 * np.log10(2), atol=1e-3
    )
    # a short input is padded to exactly n_frames; a long one trimmed
    assert logmel(signals[0, 0, :12000]).shape == (128, 100)
    assert logmel(np.tile(signals[0, 0], 2)).shape == (128, 100)


def test_logmel_peak_band_of_a_sine():
    t = np.arange(24000) / 24000
    features = logmel(np.sin(2 * np.pi * 3000.0 * t).astype(np.float32))
    peak_band = int(np.argmax(features[:, 50]))
    centres_hz = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=12000.0, htk=False)[1:-1]
    assert abs(centres_hz[peak_band] - 3000.0) < 100.0


# --------------------------------------------------------------------------- intensity vectors


@pytest.mark.parametrize("az_deg, el_deg", DIRECTIONS_DEG)
def test_iv_of_plane_wave_points_to_source(az_deg, el_deg):
    foa = encode_plane_wave(_noise(), az_deg * DEG, el_deg * DEG)
    iv = intensity_vector_mel(foa, CFG)
    assert iv.shape == (3, 128, 100) and iv.dtype == np.float32
    (azimuth_rad, elevation_rad), mean_norm = _mean_iv_direction(iv)
    assert angular_distance_rad(azimuth_rad, elevation_rad, az_deg * DEG, el_deg * DEG) < 2 * DEG
    assert mean_norm > 0.95
    doa = doa_from_intensity(foa, CFG)
    assert angular_distance_rad(*doa, az_deg * DEG, el_deg * DEG) < 2 * DEG


def test_iv_diffuse_field_is_near_zero_and_two_sources_in_between():
    """Diffuseness is a property of averages: per bin the IV of a diffuse field fluctuates,
    so the norm of the IV averaged over bands and frames is what must vanish."""
    diffuse = _diffuse_field()
    iv_diffuse = intensity_vector_mel(diffuse, CFG)
    assert np.linalg.norm(iv_diffuse.mean(axis=(1, 2))) < 0.2
    assert intensity_directness(diffuse, CFG) < 0.2

    two_sources = encode_plane_wave(_noise(seed=4), 0.5, 0.0) + encode_plane_wave(
        _noise(seed=5), -1.0, 0.3
    )
    mean_norm_two = np.linalg.norm(intensity_vector_mel(two_sources, CFG).mean(axis=(1, 2)))
    assert 0.3 < mean_norm_two < 0.9
    assert 0.3 < intensity_directness(two_sources, CFG) < 0.9
    assert intensity_directness(encode_plane_wave(_noise(), 2.0, 0.4), CFG) > 0.99


def test_iv_components_are_ordered_x_y_z():
    iv = intensity_vector_mel(encode_plane_wave(_noise(), np.pi / 2, 0.0), CFG)  # from the left
    np.testing.assert_allclose(iv.mean(axis=(1, 2)), [0, 1, 0], atol=1e-3)


# --------------------------------------------------------------------------- foa_features


def test_foa_features_shapes_and_rotated_iv_points_front():
    az_src, el_src = 140 * DEG, -35 * DEG
    foa = encode_plane_wave(_noise(), az_src, el_src)
    azimuth_rad = np.array([az_src, 0.0, -2.0, 1.0])
    elevation_rad = np.array([el_src, 0.0, 0.5, -1.0])
    features = foa_features(foa, azimuth_rad, elevation_rad, CFG)
    assert features["logmel_foa"].shape == (4, 4, 128, 100)
    assert features["iv"].shape == (4, 3, 128, 100)
    assert features["logmel_beam"].shape == (4, 1, 128, 100)
    assert all(v.dtype == np.float32 for v in features.values())

    (azimuth_front, elevation_front), mean_norm = _mean_iv_direction(features["iv"][0])
    assert (
        angular_distance_rad(azimuth_front, elevation_front, 0.0, 0.0) < 2 * DEG
        and mean_norm > 0.95
    )
    for k in range(1, 4):  # other viewpoints see the source where the rotation puts it
        source_in_view = vector_to_direction(
            rotate_to_viewpoints(
                encode_plane_wave(np.ones(1), az_src, el_src),
                azimuth_rad[k : k + 1],
                elevation_rad[k : k + 1],
            )[0, [3, 1, 2], 0]
        )
        assert (
            angular_distance_rad(*_mean_iv_direction(features["iv"][k])[0], *source_in_view)
            < 2 * DEG
        )


def test_foa_features_equal_time_domain_rotation_and_beam():
    rng = np.random.default_rng(6)
    foa = rng.standard_normal((4, 24000)).astype(np.float32)  # arbitrary 4-channel content
    azimuth_rad, elevation_rad = rng.uniform(-np.pi, np.pi, 3), rng.uniform(-1.2, 1.2, 3)
    cfg = AudioFeatureConfig(beam_pattern="hypercardioid")
    features = foa_features(foa, azimuth_rad, elevation_rad, cfg)

    rotated = rotate_to_viewpoints(foa, azimuth_rad, elevation_rad)
    beams = beamform(foa, azimuth_rad, elevation_rad, "hypercardioid")
    np.testing.assert_allclose(
        features["logmel_foa"], logmel(rotated, cfg, top_db_axes=(-3, -2, -1)), atol=2e-3
    )
    np.testing.assert_allclose(features["logmel_beam"], logmel(beams[:, None], cfg), atol=2e-3)
    iv_time_domain = np.stack([intensity_vector_mel(r, cfg) for r in rotated])
    np.testing.assert_allclose(features["iv"], iv_time_domain, atol=1e-4)


def test_foa_features_rejects_wrong_window():
    with pytest.raises(ValueError, match="expected 24000 samples"):
        foa_features(np.zeros((4, 23999), np.float32), [0.0], [0.0], CFG)
    with pytest.raises(ValueError, match="4, n_samples"):
        foa_features(np.zeros((2, 24000), np.float32), [0.0], [0.0], CFG)


# --------------------------------------------------------------------------- normalisation


def test_norm_stats_streaming_equals_batch_and_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    batches = [
        {
            "logmel_foa": rng.normal(-40, 10, (n, 2, 4, 8, 5)),
            "iv": rng.normal(0.2, 0.3, (n, 2, 3, 8, 5)),
        }
        for n in (3, 1, 6)
    ]
    stats = NormStats.accumulate(batches)
    for key in ("logmel_foa", "iv"):
        stacked = np.concatenate([b[key] for b in batches])  # (N, K, C, M, F)
        np.testing.assert_allclose(stats.mean[key], stacked.mean(axis=(0, 1, 4)), rtol=1e-5)
        np.testing.assert_allclose(stats.std[key], stacked.std(axis=(0, 1, 4)), rtol=1e-5)
        standardised = stats.apply(key, stacked)
        np.testing.assert_allclose(standardised.mean(axis=(0, 1, 4)), 0, atol=1e-4)
        np.testing.assert_allclose(standardised.std(axis=(0, 1, 4)), 1, atol=1e-4)

    left, right = NormStatsAccumulator(), NormStatsAccumulator()
    left.update(batches[0])
    right.update(batches[1])
    right.update(batches[2])
    left.merge(right)
    merged = left.finalize()
    np.testing.assert_allclose(merged.std["iv"], stats.std["iv"], rtol=1e-6)

    path = tmp_path / "norm_stats.json"
    stats.to_json(path)
    loaded = NormStats.from_json(path)
    assert json.loads(path.read_text())["schema_version"] == 1
    for key in stats.mean:
        np.testing.assert_array_equal(loaded.mean[key], stats.mean[key])
        np.testing.assert_array_equal(loaded.std[key], stats.std[key])
    assert (
        loaded.count == stats.count == {"logmel_foa": 100, "iv": 100}
    )  # 10 examples x K 2 x 5 frames
    with pytest.raises(KeyError):
        stats.apply("logmel_beam", batches[0]["iv"])


def test_norm_stats_accumulator_equals_the_direct_moments_and_leaves_its_input():
    from pipeline.features import NormStatsAccumulator

    rng = np.random.default_rng(4)
    batches = [rng.normal(-40.0, 12.0, (n, 3, 4, 8, 20)).astype(np.float32) for n in (5, 2, 7)]
    accumulator = NormStatsAccumulator()
    for batch in batches:
        kept = batch.copy()
        accumulator.update({"logmel_foa": batch})
        np.testing.assert_array_equal(batch, kept)
    values = np.moveaxis(np.concatenate(batches).astype(np.float64), -1, 0).reshape(-1, 4, 8)
    stats = accumulator.finalize()
    np.testing.assert_allclose(stats.mean["logmel_foa"], values.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.std["logmel_foa"], values.std(axis=0), rtol=1e-6)
    assert stats.count["logmel_foa"] == values.shape[0]
