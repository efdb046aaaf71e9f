"""Directions and the equirectangular mapping against the formulas of docs/CONVENTIONS.md."""

import numpy as np
import pytest

from pipeline.spatial import (
    angular_distance_rad,
    direction_to_equirect_pixel,
    direction_vector,
    equirect_pixel_to_direction,
    vector_to_direction,
    wrap_azimuth_rad,
)

WIDTH, HEIGHT = 64, 32


def test_direction_vector_axes():
    np.testing.assert_allclose(direction_vector(0.0, 0.0), [1, 0, 0], atol=1e-12)  # front
    np.testing.assert_allclose(direction_vector(np.pi / 2, 0.0), [0, 1, 0], atol=1e-12)  # left
    np.testing.assert_allclose(direction_vector(np.pi, 0.0), [-1, 0, 0], atol=1e-12)  # behind
    np.testing.assert_allclose(direction_vector(0.3, np.pi / 2), [0, 0, 1], atol=1e-12)  # up
    assert direction_vector(np.zeros((2, 5)), np.zeros((2, 5))).shape == (2, 5, 3)


def test_vector_to_direction_round_trip():
    rng = np.random.default_rng(0)
    azimuth_rad = rng.uniform(-np.pi, np.pi, 100)
    elevation_rad = rng.uniform(-1.5, 1.5, 100)
    vectors = 3.0 * direction_vector(azimuth_rad, elevation_rad)  # length must not matter
    az_back, el_back = vector_to_direction(vectors)
    np.testing.assert_allclose(
        angular_distance_rad(azimuth_rad, elevation_rad, az_back, el_back), 0, atol=1e-12
    )
    np.testing.assert_allclose(el_back, elevation_rad, atol=1e-12)


def test_wrap_azimuth():
    np.testing.assert_allclose(
        wrap_azimuth_rad([0.0, np.pi + 0.1, -np.pi - 0.1, 4 * np.pi + 0.2]),
        [0.0, -np.pi + 0.1, np.pi - 0.1, 0.2],
        atol=1e-12,
    )


def test_equirect_round_trip_all_pixel_centres():
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    azimuth_rad, elevation_rad = equirect_pixel_to_direction(cols, rows, WIDTH, HEIGHT)
    col_back, row_back = direction_to_equirect_pixel(azimuth_rad, elevation_rad, WIDTH, HEIGHT)
    np.testing.assert_allclose(col_back, cols, atol=1e-9)
    np.testing.assert_allclose(row_back, rows, atol=1e-9)


def test_equirect_orientation():
    centre_col, centre_row = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    az, el = equirect_pixel_to_direction(centre_col, centre_row, WIDTH, HEIGHT)
    assert az == pytest.approx(0.0, abs=1e-12) and el == pytest.approx(0.0, abs=1e-12)
    col, row = direction_to_equirect_pixel(0.0, 0.0, WIDTH, HEIGHT)
    assert (col, row) == pytest.approx((centre_col, centre_row))
    # right of centre turns right (negative azimuth); left of centre is positive azimuth
    assert equirect_pixel_to_direction(WIDTH // 2 + 3, centre_row, WIDTH, HEIGHT)[0] < 0
    assert equirect_pixel_to_direction(WIDTH // 2 - 4, centre_row, WIDTH, HEIGHT)[0] > 0
    # the quarter column left of centre is the left (+90 deg); edges are behind
    assert equirect_pixel_to_direction(WIDTH / 4 - 0.5, 0, WIDTH, HEIGHT)[0] == pytest.approx(
        np.pi / 2
    )
    assert abs(equirect_pixel_to_direction(0, 0, WIDTH, HEIGHT)[0]) > np.pi * (1 - 2 / WIDTH)
    # top rows look up, bottom rows down
    assert equirect_pixel_to_direction(0, 0, WIDTH, HEIGHT)[1] == pytest.approx(
        np.pi / 2 - np.pi / (2 * HEIGHT)
    )
    assert equirect_pixel_to_direction(0, HEIGHT - 1, WIDTH, HEIGHT)[1] < -1.4


def test_equirect_column_wraps_across_seam():
    col_a, _ = direction_to_equirect_pixel(np.pi + 0.2, 0.0, WIDTH, HEIGHT)
    col_b, _ = direction_to_equirect_pixel(-np.pi + 0.2, 0.0, WIDTH, HEIGHT)
    assert col_a == pytest.approx(col_b)
    cols, _ = direction_to_equirect_pixel(np.linspace(-10, 10, 101), 0.0, WIDTH, HEIGHT)
    assert np.all((cols >= 0) & (cols < WIDTH))
    az_left, _ = equirect_pixel_to_direction(-1, 0, WIDTH, HEIGHT)  # one column left of column 0
    az_last, _ = equirect_pixel_to_direction(WIDTH - 1, 0, WIDTH, HEIGHT)
    assert az_left == pytest.approx(az_last)


def test_angular_distance():
    assert angular_distance_rad(0, 0, np.pi / 2, 0) == pytest.approx(np.pi / 2)
    assert angular_distance_rad(0.3, 0.2, 0.3 + np.pi, -0.2) == pytest.approx(np.pi)
    assert angular_distance_rad(0, np.pi / 2, 1.0, np.pi / 2) == pytest.approx(0.0, abs=1e-12)
    assert angular_distance_rad(0, 0, 1e-7, 0) == pytest.approx(
        1e-7, rel=1e-6
    )  # no arccos cancellation
    assert angular_distance_rad(np.pi - 0.01, 0, -np.pi + 0.01, 0) == pytest.approx(0.02)
