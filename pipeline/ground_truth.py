"""Readers of the synthetic ground-truth record (format ``spatial-avsa-synth-gt`` v1).

The generator (:mod:`pipeline.synth`) writes one JSON record beside each clip
(``docs/synthetic.md``); stages (``pipeline/clip_samples.py``) and evaluators (localisation,
segmentation) read it through this module only, never through the generator. Everything here is
a pure function of the record: object directions and activity at a time, and label maps drawn
with the same footprints (and painting order) as the rendered frames.

Conventions (``docs/CONVENTIONS.md``): azimuth counter-clockwise from the front (+90° = left),
elevation up from the horizon, radians. Tracks are sampled at ``t_k = k / fps`` and interpolated
linearly in between (azimuth unwrapped).
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from pipeline.spatial import (direction_vector, equirect_pixel_to_direction, view_basis,
                              wrap_azimuth_rad)

GT_FORMAT = "spatial-avsa-synth-gt"
GT_VERSION = 1
#: Attack / release of the on/off event envelope, in seconds (shared by audio and video).
ENVELOPE_RAMP_S = 0.02
#: File at the root of every generated data set (EigenScape layout, action trees): evaluators
#: label what they measured on such a folder as synthetic, never as the real corpus.
SYNTHETIC_MARKER_NAME = "SYNTHETIC.json"


def is_synthetic_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` was written by :mod:`pipeline.synth` (it holds the marker file)."""
    return (Path(folder) / SYNTHETIC_MARKER_NAME).is_file()


def write_synthetic_marker(folder: str | Path, generator: str, **details) -> Path:
    """Write the marker naming the generator (and its settings) into ``folder``."""
    path = Path(folder) / SYNTHETIC_MARKER_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"synthetic": True, "generator": generator, **details}
    # Written whole and renamed into place: a reader beside a resuming generator (the demo
    # runs two evaluators on one set) never sees a half-written marker.
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def class_names(gt: dict) -> list[str]:
    """Class names by ``class_id`` (label maps store ``1 + class_id``; 0 is background)."""
    return [c["name"] for c in sorted(gt["classes"], key=lambda c: c["class_id"])]


def class_shapes(gt: dict) -> dict[str, str]:
    """Outline (``disk`` or ``square``) of each class, by name, from the record's header."""
    try:
        return {c["name"]: c["shape"] for c in gt["classes"]}
    except KeyError as exc:
        raise ValueError(f"ground truth of {gt.get('clip_id', '?')}: expected class shapes in its "
                         f"header (written since the layout move), got none; regenerate it with "
                         f"`make data`") from exc


class ObjectDirection(NamedTuple):
    """State of one ground-truth object at a time ``t_s`` (angles in radians)."""

    object_id: int
    class_id: int
    class_name: str
    azimuth_rad: float
    elevation_rad: float
    radius_rad: float
    visible: bool
    sounding: bool
    active: bool  # its event envelope is above one half at t_s


def envelope(on_intervals_s: Sequence[Sequence[float]], t_s: np.ndarray | float) -> np.ndarray:
    """Event envelope in [0, 1] at times ``t_s`` (seconds): 1 inside an interval, linear ramps
    of :data:`ENVELOPE_RAMP_S` at both ends, 0 outside. Shared by the sound and the visual pulse.
    """
    t = np.asarray(t_s, dtype=np.float64)
    value = np.zeros_like(t)
    for start_s, end_s in on_intervals_s:
        rise = np.clip((t - start_s) / ENVELOPE_RAMP_S, 0.0, 1.0)
        fall = np.clip((end_s - t) / ENVELOPE_RAMP_S, 0.0, 1.0)
        value = np.maximum(value, np.minimum(rise, fall))
    return value


def frame_times_s(n_frames: int, fps: float) -> np.ndarray:
    """Display time of each frame, ``t_k = k / fps`` (seconds)."""
    return np.arange(n_frames, dtype=np.float64) / fps


def interpolate_track(
    azimuth_rad: Sequence[float],
    elevation_rad: Sequence[float],
    fps: float,
    t_s: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """Direction of a frame-rate track at arbitrary times (s), linear in unwrapped azimuth.

    Times outside the track hold its first / last value. Returns (azimuth_rad, elevation_rad)
    with azimuth wrapped to [-π, π).
    """
    az = np.unwrap(np.asarray(azimuth_rad, dtype=np.float64))
    el = np.asarray(elevation_rad, dtype=np.float64)
    times = frame_times_s(len(az), fps)
    t = np.asarray(t_s, dtype=np.float64)
    return wrap_azimuth_rad(np.interp(t, times, az)), np.interp(t, times, el)


def object_track_at(obj: dict, fps: float, t_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth_rad, elevation_rad) of a ground-truth object at times ``t_s`` (s)."""
    return interpolate_track(obj["azimuth_rad"], obj["elevation_rad"], fps, t_s)


def object_directions_at(gt: dict, t_s: float) -> list[ObjectDirection]:
    """Directions and flags of every ground-truth object (visible or not) at time ``t_s``."""
    states = []
    for obj in gt["objects"]:
        az, el = object_track_at(obj, gt["fps"], t_s)
        active = float(envelope(obj["on_intervals_s"], t_s)) > 0.5
        states.append(
            ObjectDirection(
                object_id=obj["object_id"],
                class_id=obj["class_id"],
                class_name=obj["class_name"],
                azimuth_rad=float(az),
                elevation_rad=float(el),
                radius_rad=obj["radius_rad"],
                visible=obj["visible"],
                sounding=obj["sounding"],
                active=active,
            )
        )
    return states


# --------------------------------------------------------------------------- label maps


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


def visual_state(obj: dict, fps: float, t_s: float, pulse: bool = True
                 ) -> tuple[float, float, float, float]:
    """(azimuth_rad, elevation_rad, rendered_radius_rad, brightness) of an object at ``t_s``;
    without ``pulse`` (the record's ``render.visual_pulse`` false) it is drawn as when on."""
    az, el = object_track_at(obj, fps, t_s)
    pulse = float(envelope(obj["on_intervals_s"], t_s)) if pulse else 1.0
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

    forward, right, up = view_basis(azimuth_rad, elevation_rad)
    centre = forward.astype(np.float32)
    east = (-right).astype(np.float32)         # toward +azimuth (image left)
    north = up.astype(np.float32)
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


def visible_footprints(
    gt: dict, t_s: float, width: int, height: int
) -> Iterator[tuple[dict, Footprint, float]]:
    """(object record, footprint, brightness) of each visible object at ``t_s`` (s), in painting
    order (by ``object_id``; later objects are drawn on top)."""
    shapes = class_shapes(gt)
    pulse = gt.get("render", {}).get("visual_pulse", True)
    for obj in sorted(gt["objects"], key=lambda o: o["object_id"]):
        if not obj["visible"]:
            continue
        az, el, radius, brightness = visual_state(obj, gt["fps"], t_s, pulse)
        shape = shapes[obj["class_name"]]
        yield (
            obj,
            object_footprint(shape, az, el, radius, obj["pattern_angle_rad"], width, height),
            brightness,
        )


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
    for obj, fp, _ in visible_footprints(gt, t_s, width, height):
        labels[fp.row_start : fp.row_stop][fp.mask] = 1 + obj["class_id"]
    return labels


def object_masks_at(
    gt: dict, t_s: float, width: int | None = None, height: int | None = None
) -> list[tuple[dict, np.ndarray]]:
    """(object record, full-frame bool mask before occlusion) for each visible object at ``t_s``."""
    width = gt["width"] if width is None else width
    height = gt["height"] if height is None else height
    masks = []
    for obj, fp, _ in visible_footprints(gt, t_s, width, height):
        mask = np.zeros((height, width), dtype=bool)
        mask[fp.row_start : fp.row_stop] = fp.mask
        masks.append((obj, mask))
    return masks
