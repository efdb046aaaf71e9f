"""Viewpoint sampling: elevation band, minimum spacing, FOV range, detection-centred views."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.spatial import angular_distance_rad
from pipeline.viewpoints import (
    ViewpointSamplingError,
    detection_viewpoints,
    random_viewpoints,
)

BAND = dict(max_elevation_rad=math.radians(60), min_separation_rad=math.radians(30),
            fov_min_rad=math.radians(25), fov_max_rad=math.radians(90))


def _pairwise_min_rad(az, el):
    d = angular_distance_rad(az[:, None], el[:, None], az[None, :], el[None, :])
    d[np.eye(len(az), dtype=bool)] = np.inf
    return d.min()


def test_random_viewpoints_respect_band_spacing_and_fov():
    rng = np.random.default_rng(0)
    sin_el = []
    for _ in range(300):
        v = random_viewpoints(rng, 4, **BAND)
        assert v.azimuth_rad.dtype == np.float32 and len(v) == 4
        assert np.all(np.abs(v.elevation_rad) <= math.radians(60) + 1e-6)
        assert np.all((v.azimuth_rad >= -math.pi) & (v.azimuth_rad <= math.pi))
        assert _pairwise_min_rad(v.azimuth_rad, v.elevation_rad) >= math.radians(30) - 1e-5
        assert np.all((v.fov_rad >= math.radians(25)) & (v.fov_rad <= math.radians(90)))
        assert not v.from_detection.any()
        sin_el.extend(np.sin(v.elevation_rad))
    # uniform on the sphere within the band: sin(el) uniform on [-sin 60, sin 60] (mean 0, var a^2/3)
    a = math.sin(math.radians(60))
    assert abs(np.mean(sin_el)) < 0.05
    assert np.var(sin_el) == pytest.approx(a * a / 3, rel=0.1)


def test_random_viewpoints_are_deterministic_given_the_generator():
    a = random_viewpoints(np.random.default_rng(5), 4, **BAND)
    b = random_viewpoints(np.random.default_rng(5), 4, **BAND)
    np.testing.assert_array_equal(a.azimuth_rad, b.azimuth_rad)
    np.testing.assert_array_equal(a.fov_rad, b.fov_rad)


def test_impossible_spacing_is_a_named_error():
    with pytest.raises(ViewpointSamplingError, match="min_separation_deg"):
        random_viewpoints(np.random.default_rng(0), 8, **{**BAND, "min_separation_rad": 2.5})


def test_detection_viewpoints_take_confident_separated_objects_then_fill():
    az = np.radians([10.0, 12.0, -120.0, 170.0])   # the second duplicates the first
    el = np.radians([0.0, 1.0, 75.0, -10.0])       # the third is above the band: clamped to 60
    conf = np.array([0.5, 0.4, 0.9, 0.1])
    v = detection_viewpoints(np.random.default_rng(1), 4, az, el, conf, **BAND)
    assert v.from_detection.tolist() == [True, True, True, False]
    np.testing.assert_allclose(np.degrees(v.azimuth_rad[:3]), [-120.0, 10.0, 170.0], atol=1e-4)
    np.testing.assert_allclose(np.degrees(v.elevation_rad[:3]), [60.0, 0.0, -10.0], atol=1e-4)
    assert _pairwise_min_rad(v.azimuth_rad, v.elevation_rad) >= math.radians(30) - 1e-5


def test_detection_viewpoints_keep_only_k_and_fill_when_none():
    az = np.radians(np.arange(0, 360, 45.0)) - math.pi
    v = detection_viewpoints(np.random.default_rng(2), 4, az, np.zeros(8), np.linspace(1, 0.2, 8),
                             **BAND)
    assert v.from_detection.all()
    np.testing.assert_allclose(v.azimuth_rad, az[:4].astype(np.float32))
    empty = detection_viewpoints(np.random.default_rng(2), 4, np.zeros(0), np.zeros(0),
                                 np.zeros(0), **BAND)
    assert not empty.from_detection.any() and len(empty) == 4
    assert _pairwise_min_rad(empty.azimuth_rad, empty.elevation_rad) >= math.radians(30) - 1e-5
