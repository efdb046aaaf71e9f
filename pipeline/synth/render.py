"""Equirectangular frames and label maps rendered from a scene's ground truth.

Objects are shapes defined *on the sphere*: for every pixel we take its unit direction
(precomputed once per frame size) and express it in the object's local azimuthal-equidistant
coordinates (angle from the object's centre, and bearing in its tangent plane). Shapes and
textures are drawn in those coordinates, so an object near a pole or across the seam is a clean
disk or square again when cropped gnomonically around its centre.

Visual pulse: an object's angular size and brightness follow its event envelope
(``scenes.envelope``), the same one that gates its sound, so onsets are visible:
``radius(t) = radius_rad · (0.85 + 0.15 · env)``, ``brightness(t) = 0.55 + 0.45 · env``.

Label maps (``uint8``, 0 = background, ``1 + class_id`` for objects) use the same footprints and
the same painting order (by ``object_id``, later objects on top) as the frames.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from pipeline.ground_truth import (  # noqa: F401  (label maps live with the record's readers)
    Footprint, object_footprint, object_masks_at, pixel_directions, render_label_map,
    visible_footprints, visual_state)
from pipeline.spatial import equirect_pixel_to_direction
from pipeline.synth.scenes import CLASS_BY_NAME, frame_times_s

def pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Where the accent colour goes, for local coordinates normalised by the radius."""
    if pattern == "stripes":
        return np.sin(3.0 * np.pi * u) > 0
    if pattern == "rings":
        return np.sin(5.0 * np.pi * rho) > 0
    if pattern == "checker":
        return (np.floor(2.0 * u + 2.0) + np.floor(2.0 * v + 2.0)) % 2 == 1
    if pattern == "dots":
        du, dv = 2.5 * u - np.round(2.5 * u), 2.5 * v - np.round(2.5 * v)
        return du * du + dv * dv < 0.09
    if pattern == "sectors":
        return np.sin(4.0 * np.arctan2(v, u)) > 0
    if pattern == "cross":
        return (np.abs(u) < 0.22) | (np.abs(v) < 0.22)
    raise ValueError(
        f"unknown pattern {pattern!r}: expected stripes, rings, checker, dots, sectors or cross"
    )


# --------------------------------------------------------------------------- background


def _direction_noise(
    dirs: np.ndarray, rng: np.random.Generator, n_waves: int, freq: tuple[float, float]
) -> np.ndarray:
    """Seam-free, pole-smooth texture in [-1, 1]: a sum of sinusoids of the 3-D direction."""
    noise = np.zeros(dirs.shape[:-1], dtype=np.float32)
    for _ in range(n_waves):
        k = rng.normal(size=3)
        k *= rng.uniform(*freq) / np.linalg.norm(k)
        noise += np.sin(dirs @ k.astype(np.float32) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return noise / math.sqrt(n_waves / 2.0) / 2.0


def background_image(background: dict, width: int, height: int) -> np.ndarray:
    """Sky / ground backdrop of a clip, ``(height, width, 3)`` uint8.

    Sky gradient with soft clouds above a hilly horizon (a few integer harmonics in azimuth, so
    the seam is continuous), ground gradient with a brightness texture below.
    """
    rng = np.random.default_rng(background["seed"])
    dirs = pixel_directions(width, height)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    az, el = equirect_pixel_to_direction(cols, rows, width, height)
    horizon = np.full_like(az, background["horizon_elevation_rad"])
    for n in range(1, 5):
        horizon += math.radians(rng.uniform(0.5, 3.0)) * np.sin(n * az + rng.uniform(0, 2 * np.pi))

    above = el >= horizon
    sky_t = np.clip((el - horizon) / (np.pi / 2 - horizon), 0.0, 1.0) ** 0.6
    ground_t = np.clip((horizon - el) / (horizon + np.pi / 2), 0.0, 1.0) ** 0.7
    sky = _mix(background["sky_horizon_rgb"], background["sky_zenith_rgb"], sky_t)
    ground = _mix(background["ground_horizon_rgb"], background["ground_nadir_rgb"], ground_t)

    clouds = np.clip(_direction_noise(dirs, rng, 8, (2.0, 6.0)) * 1.5, 0.0, 1.0)[..., None]
    sky = sky * (1.0 - 0.6 * clouds) + 235.0 * 0.6 * clouds
    texture = _direction_noise(dirs, rng, 12, (6.0, 20.0))[..., None]
    ground = ground * (1.0 + 2.0 * background["texture_strength"] * texture)
    image = np.where(above[..., None], sky, ground)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _mix(rgb_a, rgb_b, t: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb_a, dtype=np.float32)
    b = np.asarray(rgb_b, dtype=np.float32)
    return a + (b - a) * t[..., None].astype(np.float32)


# --------------------------------------------------------------------------- frames, label maps


def render_frame(gt: dict, t_s: float, background: np.ndarray | None = None) -> np.ndarray:
    """The equirectangular frame at time ``t_s`` (s), ``(gt height, gt width, 3)`` uint8 RGB.

    Pass ``background`` (from :func:`background_image`) to avoid recomputing it per frame.
    """
    width, height = gt["width"], gt["height"]
    if background is None:
        background = background_image(gt["background"], width, height)
    frame = background.copy()
    for obj, fp, brightness in visible_footprints(gt, t_s, width, height):
        object_class = CLASS_BY_NAME[obj["class_name"]]
        accent = pattern_mask(object_class.pattern, fp.u, fp.v, fp.rho)
        base = np.asarray(object_class.colour_rgb, dtype=np.float32) * brightness
        accent_rgb = np.asarray(object_class.accent_rgb, dtype=np.float32) * brightness
        colours = np.where(accent[..., None], accent_rgb, base)
        band = frame[fp.row_start : fp.row_stop]
        band[fp.mask] = np.round(colours[fp.mask]).astype(np.uint8)
    return frame


def render_frames(gt: dict) -> Iterator[np.ndarray]:
    """All frames of a clip, at ``t_k = k / fps`` for k in [0, n_frames)."""
    background = background_image(gt["background"], gt["width"], gt["height"])
    for t_s in frame_times_s(gt["n_frames"], gt["fps"]):
        yield render_frame(gt, float(t_s), background)
