"""Format conversion and intensity DOA on real recordings nobody on this project made.

The files live in ``../shared/realdata`` next to the repository (see its README); a clone
without that folder skips these tests.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from pipeline.features import AudioFeatureConfig, doa_from_intensity, intensity_directness
from pipeline.foa import ACN_W, hoa_to_foa, load_ambisonic_wav
from pipeline.spatial import angular_distance_rad

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
FUMA_FILES = ["jsambisonics_BF_rec1.ogg", "jsambisonics_BF_rec2.ogg", "jsambisonics_BF_rec3.ogg"]
EIGENSCAPE = "eigenscape_Beach.1_excerpt.wav"
ROOM_IR_N3D = "gewandhaus_foa_ir_acn_n3d.wav"


def _realdata_file(name: str) -> Path:
    path = REALDATA / name
    if not path.is_file():
        pytest.skip(
            f"real-data fixture {path} is absent (needs ../shared/realdata beside the repo)"
        )
    return path


def _rms(foa):
    return np.sqrt(np.mean(np.square(foa, dtype=np.float64), axis=-1))


@pytest.mark.parametrize("name", FUMA_FILES)
def test_fuma_ogg_converts_to_plausible_ambix(name):
    foa, sample_rate = load_ambisonic_wav(_realdata_file(name), "fuma")
    assert foa.shape[0] == 4 and foa.dtype == np.float32 and sample_rate == 44100
    rms = _rms(foa)
    assert np.argmax(rms) == ACN_W, f"W should carry the most energy, rms W, Y, Z, X = {rms}"
    assert np.all(rms[1:] < 1.5 * rms[ACN_W])
    raw_w_rms = _rms(sf.read(_realdata_file(name), dtype="float32", always_2d=True)[0][:, 0])
    assert rms[ACN_W] == pytest.approx(np.sqrt(2) * raw_w_rms, rel=1e-5)  # W restored by +3 dB


def test_eigenscape_fourth_order_reduces_to_foa():
    path = _realdata_file(EIGENSCAPE)
    raw, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    assert raw.shape[1] == 25  # 4th order ACN/SN3D
    foa, sample_rate_loaded = load_ambisonic_wav(path, "ambix")
    assert sample_rate_loaded == sample_rate == 48000
    np.testing.assert_array_equal(foa, hoa_to_foa(raw.T))
    assert foa.shape == (4, raw.shape[0])
    assert np.argmax(_rms(foa)) == ACN_W


def test_room_impulse_response_direct_sound_has_stable_doa():
    ir_sn3d, sample_rate = load_ambisonic_wav(_realdata_file(ROOM_IR_N3D), "acn_n3d")
    burst = np.random.default_rng(0).standard_normal(int(0.010 * sample_rate))  # 10 ms noise
    recording = scipy.signal.fftconvolve(ir_sn3d.astype(np.float64), burst[None, :], axes=1)

    # The burst starts at t = 0, so the recording's direct sound starts at the IR's onset.
    onset = int(np.argmax(np.abs(ir_sn3d[ACN_W]) > 0.5 * np.abs(ir_sn3d[ACN_W]).max()))
    direct_len = int(0.005 * sample_rate)
    direct = recording[:, onset : onset + direct_len]
    tail = recording[:, onset + int(0.2 * sample_rate) : onset + int(1.2 * sample_rate)]

    cfg = AudioFeatureConfig(
        sample_rate=sample_rate, n_fft=64, hop_length=16, fmax_hz=sample_rate / 2
    )
    first_half = doa_from_intensity(direct[:, : direct_len // 2], cfg)
    second_half = doa_from_intensity(direct[:, direct_len // 2 :], cfg)
    assert np.degrees(angular_distance_rad(*first_half, *second_half)) < 10.0
    assert intensity_directness(direct, cfg) > 0.9
    assert intensity_directness(direct, cfg) > 5 * intensity_directness(tail, cfg)
