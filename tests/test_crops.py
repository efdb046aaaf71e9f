"""Gnomonic crops: painted dots land where the conventions say, and crops equal py360convert."""

from __future__ import annotations

import math

import cv2
import numpy as np
import py360convert
import pytest

from pipeline.crops import (CropSampler, crop_frames, perspective_grid, perspective_rays,
                            resize_keyframe)
from pipeline.spatial import (angular_distance_rad, components_to_direction,
                              direction_to_equirect_pixel, equirect_pixel_to_direction)

W, H = 512, 256


def _dot_frame(az_deg: float, el_deg: float, radius_deg: float = 1.5) -> np.ndarray:
    """Black equirectangular frame with a white disk (on the sphere) at (az, el)."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    az, el = equirect_pixel_to_direction(cols, rows, W, H)
    dist = angular_distance_rad(az, el, math.radians(az_deg), math.radians(el_deg))
    frame = np.zeros((H, W, 3), np.uint8)
    frame[dist <= math.radians(radius_deg)] = 255
    return frame


def _centroid(crop: np.ndarray) -> tuple[float, float]:
    weight = crop[..., 0].astype(np.float64)
    assert weight.sum() > 0, "dot not in the crop"
    rows, cols = np.indices(weight.shape)
    return float((rows * weight).sum() / weight.sum()), float((cols * weight).sum() / weight.sum())


@pytest.mark.parametrize("az_deg, el_deg", [(0, 0), (90, 0), (-135, 30), (179.5, 0),
                                            (-179.0, -20), (180.0, 45), (30, 60), (-60, -60)])
def test_dot_at_viewpoint_lands_at_crop_centre(az_deg, el_deg):
    frame = _dot_frame(az_deg, el_deg)
    crop = crop_frames(frame[None], [math.radians(az_deg)], [math.radians(el_deg)],
                       [math.radians(40)], 64)[0, 0]
    row, col = _centroid(crop)
    assert row == pytest.approx(31.5, abs=0.5) and col == pytest.approx(31.5, abs=0.5)


def test_crop_orientation_left_is_positive_azimuth_up_is_positive_elevation():
    # A dot 10 deg to the left of the viewpoint (+az = left, CONVENTIONS.md), then above it.
    for viewpoint_az, viewpoint_el in ((0.0, 0.0), (175.0, 0.0), (-40.0, 20.0)):
        left = _dot_frame(viewpoint_az + 10.0, viewpoint_el)
        crop = crop_frames(left[None], [math.radians(viewpoint_az)], [math.radians(viewpoint_el)],
                           [math.radians(60)], 65)[0, 0]
        row, col = _centroid(crop)
        assert col < 32 - 5 and abs(row - 32) < 3
        if viewpoint_el == 0.0:
            # FOV is a true angle: 10 deg off-axis sits at tan(10) / tan(30) of the half width
            expected_col = 32 - 32 * math.tan(math.radians(10)) / math.tan(math.radians(30))
            assert col == pytest.approx(expected_col, abs=0.3)
    up = _dot_frame(0.0, 30.0)
    crop = crop_frames(up[None], [0.0], [math.radians(20.0)], [math.radians(60)], 65)[0, 0]
    row, col = _centroid(crop)
    expected_row = 32 - 32 * math.tan(math.radians(10)) / math.tan(math.radians(30))
    assert row == pytest.approx(expected_row, abs=0.3) and abs(col - 32) < 0.3


def _textured_frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("az_deg, el_deg, fov_deg", [(0, 0, 60), (170, 10, 90), (-100, -40, 25),
                                                     (179, 55, 80), (-180, -60, 45)])
def test_matches_py360convert_e2p(az_deg, el_deg, fov_deg):
    frame = _textured_frame()
    mine = crop_frames(frame[None], [math.radians(az_deg)], [math.radians(el_deg)],
                       [math.radians(fov_deg)], 112)[0, 0]
    # CONVENTIONS.md: u_deg = -az_deg, v_deg = el_deg
    reference = py360convert.e2p(frame, fov_deg, -az_deg, el_deg, (112, 112))
    assert np.abs(mine.astype(int) - reference.astype(int)).mean() < 1.0


def test_one_grid_serves_every_frame_and_viewpoint():
    frames = np.stack([_textured_frame(s) for s in range(3)])
    az, el, fov = np.radians([10, -150, 100]), np.radians([0, 20, -45]), np.radians([30, 60, 90])
    crops = CropSampler(az, el, fov, 48, W, H).crop(frames)
    assert crops.shape == (3, 3, 48, 48, 3) and crops.dtype == np.uint8
    for k in range(3):
        for t in range(3):
            single = crop_frames(frames[t:t + 1], az[k:k + 1], el[k:k + 1], fov[k:k + 1], 48)
            np.testing.assert_array_equal(crops[k, t], single[0, 0])


def test_grid_wraps_columns_and_clamps_rows():
    cols, rows = perspective_grid([math.pi], [math.radians(60)], [math.radians(90)], 32, W, H)
    assert cols.min() >= 0 and cols.max() < W
    assert rows.min() >= 0 and rows.max() <= H - 1
    # looking behind: the crop straddles the seam, so it samples both image edges
    assert cols.min() < 50 and cols.max() > W - 50


def test_float32_grid_equals_the_float64_formulas_to_a_thousandth_of_a_pixel_of_arc():
    """The grid is computed in float32 for speed; against the float64 ray -> direction -> pixel
    formulas of pipeline.spatial it must stay far below the fixed-point maps' 1/32 px, up to 8K
    frames and over the whole sphere (columns weighted by cos(elevation): near the poles a
    column is a tiny arc)."""
    rng = np.random.default_rng(7)
    k = 24
    az, el = rng.uniform(-math.pi, math.pi, k), rng.uniform(-1.5, 1.5, k)
    fov = rng.uniform(math.radians(30), math.radians(120), k)
    rays = perspective_rays(az, el, fov, 64)
    ray_az, ray_el = components_to_direction(rays[..., 0], rays[..., 1], rays[..., 2])
    for width in (512, 1920, 7680):
        height = width // 2
        cols, rows = perspective_grid(az, el, fov, 64, width, height)
        want_cols, want_rows = direction_to_equirect_pixel(ray_az, ray_el, width, height)
        col_error = np.abs(cols - want_cols)
        col_error = np.minimum(col_error, width - col_error)          # across the seam
        assert (col_error * np.cos(ray_el)).max() < 1e-3
        assert np.abs(rows - np.clip(want_rows, 0, height - 1)).max() < 1e-3
        assert cols.min() >= 0 and cols.max() <= width


def test_resize_keyframe():
    frame = _textured_frame()
    small = resize_keyframe(frame, 256, 128)
    assert small.shape == (128, 256, 3) and small.dtype == np.uint8
    assert resize_keyframe(small, 256, 128) is not None


def test_iter_crops_gives_the_crops_of_crop_one_view_at_a_time_in_one_buffer():
    rng = np.random.default_rng(3)
    for channels in (1, 3):
        frames = rng.integers(0, 256, (3, 32, 64, channels), dtype=np.uint8)
        sampler = CropSampler(np.array([0.3, -2.0, 3.0]), np.array([0.1, 0.5, -0.9]),
                              np.array([1.0, 0.6, 1.4]), 12, 64, 32)
        every = sampler.crop(frames)
        seen = [(view.copy(), id(view)) for view in sampler.iter_crops(frames, [2, 0])]
        np.testing.assert_array_equal(seen[0][0], every[2])
        np.testing.assert_array_equal(seen[1][0], every[0])
        assert seen[0][1] == seen[1][1]               # the same buffer, overwritten
