"""Directions on the sphere and the equirectangular mapping: the single implementation of
``docs/CONVENTIONS.md``.

Frame: right-handed, +x front, +y left, +z up. Azimuth is counter-clockwise seen from above
(0 = front, +pi/2 = left, ±pi = behind); elevation is 0 on the horizon and +pi/2 up. All angles
are in radians. Functions broadcast over array inputs like numpy ufuncs.

Equirectangular frames (YouTube layout) are W wide and H = W/2 high; the centre column looks to
the front and moving right in the image turns toward negative azimuth. Pixel coordinates are
continuous with pixel *centres* at integer values: column c covers [c - 0.5, c + 0.5).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "wrap_azimuth_rad",
    "direction_vector",
    "vector_to_direction",
    "components_to_direction",
    "equirect_pixel_to_direction",
    "direction_to_equirect_pixel",
    "angular_distance_rad",
    "view_basis",
]


def wrap_azimuth_rad(azimuth_rad):
    """Wrap azimuth (radians) into [-pi, pi); broadcasts."""
    return np.mod(np.asarray(azimuth_rad, dtype=np.float64) + np.pi, 2.0 * np.pi) - np.pi


def direction_vector(azimuth_rad, elevation_rad) -> np.ndarray:
    """Unit vectors ``(cos el cos az, cos el sin az, sin el)`` with shape ``(..., 3)``.

    Args:
        azimuth_rad, elevation_rad: radians, broadcastable arrays or scalars.
    Returns:
        float64 array ``(..., 3)`` in the (x front, y left, z up) frame.
    """
    azimuth_rad, elevation_rad = np.broadcast_arrays(
        np.asarray(azimuth_rad, dtype=np.float64), np.asarray(elevation_rad, dtype=np.float64)
    )
    cos_el = np.cos(elevation_rad)
    return np.stack(
        [cos_el * np.cos(azimuth_rad), cos_el * np.sin(azimuth_rad), np.sin(elevation_rad)],
        axis=-1,
    )


def vector_to_direction(vec) -> tuple[np.ndarray, np.ndarray]:
    """Direction ``(azimuth_rad, elevation_rad)`` of vectors ``(..., 3)`` (need not be unit).

    Azimuth is in [-pi, pi] (``arctan2``), elevation in [-pi/2, pi/2]. A zero vector gives (0, 0).
    """
    vec = np.asarray(vec, dtype=np.float64)
    if vec.shape[-1] != 3:
        raise ValueError(f"expected vectors shaped (..., 3), got {vec.shape}")
    return components_to_direction(vec[..., 0], vec[..., 1], vec[..., 2])


def components_to_direction(x, y, z) -> tuple[np.ndarray, np.ndarray]:
    """:func:`vector_to_direction` of vectors given as three component arrays (faster on large
    contiguous arrays than one strided ``(..., 3)`` array)."""
    azimuth_rad = np.arctan2(y, x)
    elevation_rad = np.arctan2(z, np.hypot(x, y))
    return azimuth_rad, elevation_rad


def equirect_pixel_to_direction(col, row, width: int, height: int):
    """Direction of an equirectangular pixel position (pixel centres at integer col/row).

    ``az = pi (1 - 2 (col + 0.5) / width)``, ``el = pi (0.5 - (row + 0.5) / height)``; the
    azimuth is wrapped into [-pi, pi) so columns outside [0, width) wrap around the seam.

    Returns:
        ``(azimuth_rad, elevation_rad)`` float64 arrays (or scalars) broadcast from col, row.
    """
    col = np.asarray(col, dtype=np.float64)
    row = np.asarray(row, dtype=np.float64)
    azimuth_rad = wrap_azimuth_rad(np.pi * (1.0 - 2.0 * (col + 0.5) / width))
    elevation_rad = np.pi * (0.5 - (row + 0.5) / height)
    return azimuth_rad, elevation_rad


def direction_to_equirect_pixel(azimuth_rad, elevation_rad, width: int, height: int):
    """Continuous pixel position ``(col, row)`` of a direction (radians).

    Inverse of :func:`equirect_pixel_to_direction`. The column wraps across the seam into
    [0, width) (a value in (width - 0.5, width) lies between the last and the first column
    centre); the row is in [-0.5, height - 0.5] for elevations in [-pi/2, pi/2].
    """
    azimuth_rad = np.asarray(azimuth_rad, dtype=np.float64)
    elevation_rad = np.asarray(elevation_rad, dtype=np.float64)
    col = np.mod(0.5 * width * (1.0 - azimuth_rad / np.pi) - 0.5, width)
    row = height * (0.5 - elevation_rad / np.pi) - 0.5
    return col, row


def angular_distance_rad(azimuth1_rad, elevation1_rad, azimuth2_rad, elevation2_rad):
    """Great-circle angle (radians, in [0, pi]) between two directions; broadcasts.

    Uses ``atan2(|a x b|, a . b)``, accurate for both tiny and near-antipodal angles.
    """
    a = direction_vector(azimuth1_rad, elevation1_rad)
    b = direction_vector(azimuth2_rad, elevation2_rad)
    cross_norm = np.linalg.norm(np.cross(a, b), axis=-1)
    return np.arctan2(cross_norm, np.sum(a * b, axis=-1))


def view_basis(azimuth_rad, elevation_rad) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(forward, right, up)`` unit vectors ``(..., 3)`` of a viewpoint looking at
    ``(azimuth_rad, elevation_rad)`` (x front, y left, z up): ``forward = d(az, el)``,
    ``right = d(az - pi/2, 0)`` (toward decreasing azimuth, the image's right), ``up = right x
    forward`` (toward increasing elevation); a right-handed camera frame. Broadcasts."""
    az = np.asarray(azimuth_rad, dtype=np.float64)
    el = np.asarray(elevation_rad, dtype=np.float64)
    forward = direction_vector(az, el)
    right = np.stack([np.sin(az), -np.cos(az), np.zeros_like(az)], axis=-1)
    up = np.stack([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)], axis=-1)
    return forward, right, up
