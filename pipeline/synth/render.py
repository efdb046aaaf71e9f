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

import functools
import math
from typing import Iterator, NamedTuple

import numpy as np

from pipeline.spatial import direction_vector, equirect_pixel_to_direction
from pipeline.synth.scenes import CLASS_BY_NAME, envelope, frame_times_s, object_track_at

#: Side half-length of a square relative to the radius of a disk of the same area (√π / 2).
_SQUARE_HALF_SIDE = math.sqrt(math.pi) / 2.0


@functools.lru_cache(maxsize=8)
def pixel_directions(width: int, height: int) -> np.ndarray:
    """Unit direction of every equirectangular pixel centre, ``(height, width, 3)`` float32,
    read-only, in the (x front, y left, z up) frame of CONVENTIONS.md."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    az, el = equirect_pixel_to_direction(cols, rows, width, height)
    dirs = direction_vector(az, el).astype(np.float32)
    dirs.flags.writeable = False
    return dirs


def _row_of_elevation(elevation_rad: float, height: int) -> float:
    return height * (0.5 - elevation_rad / math.pi) - 0.5


class Footprint(NamedTuple):
    """Pixels covered by one object at one instant, within a band of rows.

    ``mask`` is ``(row_stop - row_start, width)`` bool; ``u``, ``v`` are the local
    azimuthal-equidistant coordinates (divided by the rendered radius, rotated by the object's
    pattern angle) and ``rho`` the angular distance from the centre over the rendered radius.
    """

    row_start: int
    row_stop: int
    mask: np.ndarray
    u: np.ndarray
    v: np.ndarray
    rho: np.ndarray


def visual_state(obj: dict, fps: float, t_s: float) -> tuple[float, float, float, float]:
    """(azimuth_rad, elevation_rad, rendered_radius_rad, brightness) of an object at ``t_s``."""
    az, el = object_track_at(obj, fps, t_s)
    pulse = float(envelope(obj["on_intervals_s"], t_s))
    return float(az), float(el), obj["radius_rad"] * (0.85 + 0.15 * pulse), 0.55 + 0.45 * pulse


def object_footprint(
    shape: str,
    azimuth_rad: float,
    elevation_rad: float,
    radius_rad: float,
    pattern_angle_rad: float,
    width: int,
    height: int,
) -> Footprint:
    """Footprint of a disk (spherical cap of angular radius ``radius_rad``) or a square (in the
    object's tangent plane, same area) centred at (azimuth_rad, elevation_rad) on a W × H frame.
    """
    extent_rad = radius_rad * (_SQUARE_HALF_SIDE * math.sqrt(2.0) if shape == "square" else 1.0)
    top_el = min(elevation_rad + extent_rad, math.pi / 2)
    bottom_el = max(elevation_rad - extent_rad, -math.pi / 2)
    row_start = max(int(math.floor(_row_of_elevation(top_el, height))) - 1, 0)
    row_stop = min(int(math.ceil(_row_of_elevation(bottom_el, height))) + 2, height)
    dirs = pixel_directions(width, height)[row_start:row_stop]

    sin_az, cos_az = math.sin(azimuth_rad), math.cos(azimuth_rad)
    sin_el, cos_el = math.sin(elevation_rad), math.cos(elevation_rad)
    centre = np.array([cos_el * cos_az, cos_el * sin_az, sin_el], dtype=np.float32)
    east = np.array([-sin_az, cos_az, 0.0], dtype=np.float32)  # toward +azimuth (image left)
    north = np.array([-sin_el * cos_az, -sin_el * sin_az, cos_el], dtype=np.float32)
    along = dirs @ centre
    x, y = dirs @ east, dirs @ north
    tangent_norm = np.hypot(x, y)
    angle = np.arctan2(tangent_norm, along)  # angular distance from the centre, radians
    scale = angle / np.maximum(tangent_norm, 1e-12) / radius_rad
    c, s = math.cos(pattern_angle_rad), math.sin(pattern_angle_rad)
    u = (c * x + s * y) * scale
    v = (-s * x + c * y) * scale
    rho = angle / radius_rad
    if shape == "square":
        half = _SQUARE_HALF_SIDE
        mask = (np.abs(x * scale) <= half) & (np.abs(y * scale) <= half) & (along > 0)
    else:
        mask = rho <= 1.0
    return Footprint(row_start, row_stop, mask, u, v, rho)


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


def _visible_footprints(
    gt: dict, t_s: float, width: int, height: int
) -> Iterator[tuple[dict, Footprint, float]]:
    for obj in sorted(gt["objects"], key=lambda o: o["object_id"]):
        if not obj["visible"]:
            continue
        az, el, radius, brightness = visual_state(obj, gt["fps"], t_s)
        shape = CLASS_BY_NAME[obj["class_name"]].shape
        yield (
            obj,
            object_footprint(shape, az, el, radius, obj["pattern_angle_rad"], width, height),
            brightness,
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
    for obj, fp, brightness in _visible_footprints(gt, t_s, width, height):
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


def render_label_map(
    gt: dict, t_s: float, width: int | None = None, height: int | None = None
) -> np.ndarray:
    """Per-pixel class labels at ``t_s`` (s): ``(height, width)`` uint8, 0 background,
    ``1 + class_id`` for objects. Width and height default to the clip's; any 2:1 size works
    (the geometry is defined on the sphere, not in pixels).
    """
    width = gt["width"] if width is None else width
    height = gt["height"] if height is None else height
    labels = np.zeros((height, width), dtype=np.uint8)
    for obj, fp, _ in _visible_footprints(gt, t_s, width, height):
        labels[fp.row_start : fp.row_stop][fp.mask] = 1 + obj["class_id"]
    return labels


def object_masks_at(
    gt: dict, t_s: float, width: int | None = None, height: int | None = None
) -> list[tuple[dict, np.ndarray]]:
    """(object record, full-frame bool mask before occlusion) for each visible object at ``t_s``."""
    width = gt["width"] if width is None else width
    height = gt["height"] if height is None else height
    masks = []
    for obj, fp, _ in _visible_footprints(gt, t_s, width, height):
        mask = np.zeros((height, width), dtype=bool)
        mask[fp.row_start : fp.row_stop] = fp.mask
        masks.append((obj, mask))
    return masks
