"""FOA encoding, format conversion, rotation and beams, checked against plane-wave physics."""

import numpy as np
import pytest
import soundfile as sf

from pipeline.errors import PipelineError
from pipeline.foa import (
    ACN_W,
    ACN_X,
    ACN_Y,
    ACN_Z,
    BEAM_PATTERNS,
    AmbisonicFormatError,
    ambix_to_fuma,
    beamform,
    dipole_rotation_matrix,
    encode_plane_wave,
    fuma_to_ambix,
    hoa_to_foa,
    load_ambisonic_wav,
    mirror_left_right,
    n3d_to_sn3d,
    rotate_and_beamform,
    rotate_to_viewpoints,
    rotation_matrix_to_front,
    sn3d_to_n3d,
)
from pipeline.spatial import (
    angular_distance_rad,
    direction_to_equirect_pixel,
    direction_vector,
    equirect_pixel_to_direction,
    vector_to_direction,
)

DEG = np.pi / 180
# (azimuth, elevation) in degrees: front, left, behind on both sides, near the poles, mixed.
DIRECTIONS_DEG = [
    (0, 0),
    (90, 0),
    (179, 10),
    (-155, -35),
    (160, 80),
    (-30, -80),
    (45, 45),
    (-120, 60),
]


def _noise(n=2048, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def _random_directions_rad(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(-np.pi, np.pi, n), np.arcsin(rng.uniform(-1, 1, n))


def _time_domain_doa(foa):
    """DOA of the time-averaged intensity sum_t W [X, Y, Z] (exact for a plane wave)."""
    foa = np.asarray(foa, dtype=np.float64)
    intensity = (foa[ACN_W] * foa[[ACN_X, ACN_Y, ACN_Z]]).sum(axis=-1)
    return vector_to_direction(intensity)


def _rms(x):
    return np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)), axis=-1))


def _rot_z(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _rot_y(b):
    return np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])


# --------------------------------------------------------------------------- encoding


def test_encode_plane_wave_channel_gains():
    s = _noise(64)
    foa = encode_plane_wave(s, np.pi / 2, 0.0)  # from the left
    assert foa.shape == (4, 64) and foa.dtype == np.float32
    np.testing.assert_allclose(foa[ACN_W], s, rtol=1e-6)
    np.testing.assert_allclose(foa[ACN_Y], s, rtol=1e-6)
    np.testing.assert_allclose(foa[[ACN_X, ACN_Z]], 0, atol=1e-6)
    up = encode_plane_wave(s, 1.0, np.pi / 2)
    np.testing.assert_allclose(up[ACN_Z], s, rtol=1e-6)


def test_encode_moving_source_per_sample_angles():
    n = 16
    azimuth_rad = np.linspace(-np.pi, np.pi, n)
    elevation_rad = np.linspace(-1.0, 1.0, n)
    foa = encode_plane_wave(np.ones(n), azimuth_rad, elevation_rad)
    gains_xyz = direction_vector(azimuth_rad, elevation_rad)
    np.testing.assert_allclose(foa[[ACN_X, ACN_Y, ACN_Z]].T, gains_xyz, atol=1e-6)
    with pytest.raises(ValueError):
        encode_plane_wave(np.ones(n), azimuth_rad[:-1], elevation_rad[:-1])


# --------------------------------------------------------------------------- rotation


def test_dipole_rotation_is_yaw_then_pitch_of_conventions():
    for az_deg, el_deg in DIRECTIONS_DEG:
        az, el = az_deg * DEG, el_deg * DEG
        np.testing.assert_allclose(
            dipole_rotation_matrix(az, el), _rot_y(el) @ _rot_z(-az), atol=1e-12
        )


def test_rotation_brings_plane_wave_to_front():
    az_fixed, el_fixed = np.array(DIRECTIONS_DEG, dtype=float).T * DEG
    az_random, el_random = _random_directions_rad(24)
    s = _noise()
    for azimuth_rad, elevation_rad in zip(np.r_[az_fixed, az_random], np.r_[el_fixed, el_random]):
        foa = encode_plane_wave(s, azimuth_rad, elevation_rad)
        rotated = rotate_to_viewpoints(foa, [azimuth_rad], [elevation_rad])[0]
        rms = _rms(rotated)
        assert rms[ACN_X] == pytest.approx(rms[ACN_W], rel=1e-5)
        assert rms[ACN_Y] < 1e-6 * rms[ACN_W] and rms[ACN_Z] < 1e-6 * rms[ACN_W]
        np.testing.assert_array_equal(rotated[ACN_W], foa[ACN_W])


def test_pitch_before_yaw_reference_bug_misses_off_horizon_sources():
    """The reference code applies R_z(-az) R_y(el): off-horizon sources miss the front."""
    for az_deg, el_deg in [(90, 45), (-150, 60), (120, -40)]:
        d = direction_vector(az_deg * DEG, el_deg * DEG)
        ours = dipole_rotation_matrix(az_deg * DEG, el_deg * DEG) @ d
        reference_bug = _rot_z(-az_deg * DEG) @ _rot_y(el_deg * DEG) @ d
        assert angular_distance_rad(*vector_to_direction(ours), 0.0, 0.0) < 1e-6 * DEG
        assert angular_distance_rad(*vector_to_direction(reference_bug), 0.0, 0.0) > 20 * DEG


def test_rotation_preserves_energy_and_inverts_with_transpose():
    rng = np.random.default_rng(3)
    foa = rng.standard_normal((4, 4096)).astype(np.float32)  # an arbitrary (non plane-wave) field
    azimuth_rad, elevation_rad = _random_directions_rad(5, seed=4)
    rotated = rotate_to_viewpoints(foa, azimuth_rad, elevation_rad)
    assert rotated.shape == (5, 4, 4096) and rotated.dtype == np.float32
    np.testing.assert_allclose(
        (rotated.astype(np.float64) ** 2).sum(axis=1),
        np.broadcast_to((foa.astype(np.float64) ** 2).sum(axis=0), (5, 4096)),
        rtol=1e-5,
    )
    matrices = rotation_matrix_to_front(azimuth_rad, elevation_rad)
    np.testing.assert_allclose(rotated, matrices @ foa, atol=1e-5)
    restored = np.swapaxes(matrices, -1, -2) @ rotated
    np.testing.assert_allclose(restored, np.broadcast_to(foa, restored.shape), atol=1e-5)


@pytest.mark.parametrize("shift_columns", [7, -20, 50])
def test_yaw_rotation_matches_shifted_equirect_frame(shift_columns):
    """Turning to viewpoint (yaw, 0) = re-centring the frame: roll by yaw W / (2 pi) columns."""
    width, height = 72, 36
    dot_col, dot_row = 10, 12
    frame = np.zeros((height, width))
    frame[dot_row, dot_col] = 1.0
    azimuth_rad, elevation_rad = equirect_pixel_to_direction(dot_col, dot_row, width, height)
    yaw_rad = 2 * np.pi * shift_columns / width

    shifted = np.roll(frame, shift_columns, axis=1)
    row_after, col_after = np.unravel_index(np.argmax(shifted), shifted.shape)

    foa = encode_plane_wave(_noise(), azimuth_rad, elevation_rad)
    rotated = rotate_to_viewpoints(foa, [yaw_rad], [0.0])[0]
    doa_col, doa_row = direction_to_equirect_pixel(*_time_domain_doa(rotated), width, height)
    assert doa_col == pytest.approx(col_after, abs=1e-3)
    assert doa_row == pytest.approx(row_after, abs=1e-3)


def test_parallel_kernel_equals_serial():
    rng = np.random.default_rng(5)
    foa = rng.standard_normal((4, 300_001)).astype(np.float32)  # K * n above the parallel threshold
    azimuth_rad, elevation_rad = _random_directions_rad(4, seed=6)
    serial = rotate_and_beamform(foa, azimuth_rad, elevation_rad, "hypercardioid")
    parallel = rotate_and_beamform(foa, azimuth_rad, elevation_rad, "hypercardioid", parallel=True)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])


def test_mirror_left_right_flips_azimuth():
    azimuth_rad, elevation_rad = 0.7, 0.3
    mirrored = mirror_left_right(encode_plane_wave(_noise(), azimuth_rad, elevation_rad))
    az_back, el_back = _time_domain_doa(mirrored)
    assert az_back == pytest.approx(-azimuth_rad) and el_back == pytest.approx(elevation_rad)


# --------------------------------------------------------------------------- beams


def _beam_gain(pattern, source_az, source_el, beam_az, beam_el):
    s = _noise(512)
    beam = beamform(encode_plane_wave(s, source_az, source_el), [beam_az], [beam_el], pattern)[0]
    return float(np.dot(beam, s) / np.dot(s, s))


@pytest.mark.parametrize("pattern", sorted(BEAM_PATTERNS))
def test_beam_unit_gain_on_axis_and_cosine_pattern(pattern):
    a0, a1 = BEAM_PATTERNS[pattern]
    for az_deg, el_deg in DIRECTIONS_DEG:
        assert _beam_gain(
            pattern, az_deg * DEG, el_deg * DEG, az_deg * DEG, el_deg * DEG
        ) == pytest.approx(1, abs=1e-5)
    source_az, source_el = _random_directions_rad(6, seed=7)
    beam_az, beam_el = _random_directions_rad(6, seed=8)
    for sa, se, ba, be in zip(source_az, source_el, beam_az, beam_el):
        expected = a0 + a1 * np.cos(angular_distance_rad(sa, se, ba, be))
        assert _beam_gain(pattern, sa, se, ba, be) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "pattern, rear_gain",
    [("cardioid", 0.0), ("hypercardioid", -0.5), ("max_re", np.sqrt(3) - 2)],
)
def test_beam_rear_gain(pattern, rear_gain):
    for beam_az_deg, beam_el_deg in [(0, 0), (120, 30), (-60, -70)]:
        beam_az, beam_el = beam_az_deg * DEG, beam_el_deg * DEG
        rear_az, rear_el = vector_to_direction(-direction_vector(beam_az, beam_el))
        assert _beam_gain(pattern, rear_az, rear_el, beam_az, beam_el) == pytest.approx(
            rear_gain, abs=1e-5
        )


def test_fused_beam_is_front_beam_of_rotated_field():
    foa = np.random.default_rng(9).standard_normal((4, 1000)).astype(np.float32)
    azimuth_rad, elevation_rad = _random_directions_rad(3, seed=10)
    rotated, beams = rotate_and_beamform(foa, azimuth_rad, elevation_rad, "cardioid")
    np.testing.assert_allclose(beams, 0.5 * rotated[:, ACN_W] + 0.5 * rotated[:, ACN_X], atol=1e-6)
    np.testing.assert_allclose(beams, beamform(foa, azimuth_rad, elevation_rad), atol=1e-6)
    with pytest.raises(ValueError, match="pattern"):
        beamform(foa, azimuth_rad, elevation_rad, "figure8")


# --------------------------------------------------------------------------- formats


def test_fuma_round_trip_and_plane_wave():
    s = _noise(256)
    azimuth_rad, elevation_rad = 2.5, -0.4
    x, y, z = direction_vector(azimuth_rad, elevation_rad)
    fuma_wxyz = np.stack([s / np.sqrt(2), s * x, s * y, s * z]).astype(np.float32)
    ambix = fuma_to_ambix(fuma_wxyz)
    np.testing.assert_allclose(ambix, encode_plane_wave(s, azimuth_rad, elevation_rad), atol=1e-6)
    np.testing.assert_allclose(ambix_to_fuma(ambix), fuma_wxyz, atol=1e-6)


def test_n3d_sn3d_round_trip_and_factors():
    rng = np.random.default_rng(11)
    for n_channels in (4, 9, 25):
        sn3d = rng.standard_normal((n_channels, 100))
        n3d = sn3d_to_n3d(sn3d)
        np.testing.assert_allclose(n3d_to_sn3d(n3d), sn3d, atol=1e-12)
        np.testing.assert_allclose(n3d[1:4], np.sqrt(3) * sn3d[1:4])  # dipoles
        np.testing.assert_allclose(n3d[0], sn3d[0])
        if n_channels >= 9:
            np.testing.assert_allclose(n3d[4:9], np.sqrt(5) * sn3d[4:9])  # quadrupoles


def test_hoa_to_foa_and_errors():
    hoa = np.arange(25 * 10, dtype=np.float32).reshape(25, 10)
    np.testing.assert_array_equal(hoa_to_foa(hoa), hoa[:4])
    for bad_shape in [(5, 10), (3, 10), (1, 10), (24, 10), (10,)]:
        with pytest.raises(AmbisonicFormatError, match="expected .*got"):
            hoa_to_foa(np.zeros(bad_shape))
    assert issubclass(AmbisonicFormatError, ValueError) and issubclass(
        AmbisonicFormatError, PipelineError
    )
    with pytest.raises(AmbisonicFormatError, match=r"\(..., 4, n_samples\), got shape \(3, 10\)"):
        rotate_to_viewpoints(np.zeros((3, 10)), [0.0], [0.0])
    with pytest.raises(AmbisonicFormatError):
        fuma_to_ambix(np.zeros((9, 10)))


def test_load_ambisonic_wav_conventions(tmp_path):
    s = 0.5 * _noise(4800) / 4
    azimuth_rad, elevation_rad = -2.0, 0.5
    ambix = encode_plane_wave(s, azimuth_rad, elevation_rad)

    sf.write(tmp_path / "fuma.wav", ambix_to_fuma(ambix).T, 48000, subtype="FLOAT")
    second_order = np.concatenate([ambix, np.zeros((5, 4800), np.float32)])
    sf.write(tmp_path / "n3d.wav", sn3d_to_n3d(second_order).T, 48000, subtype="FLOAT")
    sf.write(tmp_path / "ambix.wav", second_order.T, 48000, subtype="PCM_24")

    for name, convention, atol in [
        ("fuma.wav", "fuma", 1e-6),
        ("n3d.wav", "acn_n3d", 1e-6),
        ("ambix.wav", "ambix", 1e-5),
    ]:
        foa, sample_rate = load_ambisonic_wav(tmp_path / name, convention)
        assert sample_rate == 48000 and foa.shape == (4, 4800) and foa.dtype == np.float32
        np.testing.assert_allclose(foa, ambix, atol=atol)
    with pytest.raises(AmbisonicFormatError, match="n3d.wav"):
        load_ambisonic_wav(tmp_path / "n3d.wav", "fuma")  # 9 channels is not first-order FuMa
    with pytest.raises(ValueError, match="convention"):
        load_ambisonic_wav(tmp_path / "n3d.wav", "sn3d")
