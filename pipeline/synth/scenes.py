"""Scene sampling and ground-truth records for synthetic 360° clips.

A scene is fully described by its ground-truth dict (``gt``), a JSON-able record written next to
each clip (format in ``docs/synthetic.md``). The renderer (:mod:`pipeline.synth.render`) and the
audio mixer (:mod:`pipeline.synth.audio`) are pure functions of it, so re-rendering a frame or a
label map from the JSON gives exactly what the video shows (before compression).

Conventions (``docs/CONVENTIONS.md``): azimuth counter-clockwise from the front (+90° = left),
elevation up from the horizon, both in radians in the record. Tracks are sampled at the frame
times ``t_k = k / fps``; between frames, directions are interpolated linearly (azimuth
unwrapped), which is also how the audio moves its plane waves sample by sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.ground_truth import (  # noqa: F401  (the record's readers, re-exported here)
    ENVELOPE_RAMP_S, GT_FORMAT, GT_VERSION, ObjectDirection, envelope, frame_times_s,
    interpolate_track, object_directions_at, object_track_at)
from pipeline.spatial import angular_distance_rad, wrap_azimuth_rad

#: Decimal places kept for angles (rad) and envelopes in the record, so that the in-memory
#: record and its JSON round trip are bit-identical.
_ANGLE_DECIMALS = 6
_ENVELOPE_DECIMALS = 4


@dataclass(frozen=True)
class ObjectClass:
    """One synthetic object class: look (colour, texture, outline) and sound signature.

    ``class_id`` is 0-based (YOLO class index); label maps store ``1 + class_id``.
    """

    class_id: int
    name: str
    colour_rgb: tuple[int, int, int]
    accent_rgb: tuple[int, int, int]
    pattern: str  # stripes | rings | checker | dots | sectors | cross (see render.py)
    shape: str  # disk | square, defined in the object's tangent plane
    sound: str  # signature name in audio.SIGNATURES


OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass(0, "bell", (240, 205, 40), (110, 60, 0), "rings", "disk", "harmonic"),
    ObjectClass(1, "fountain", (40, 195, 235), (250, 250, 255), "dots", "disk", "noise_band"),
    ObjectClass(2, "drum", (215, 35, 35), (250, 235, 210), "checker", "square", "clicks"),
    ObjectClass(3, "bird", (55, 185, 55), (15, 45, 15), "stripes", "disk", "chirps"),
    ObjectClass(4, "siren", (205, 50, 215), (255, 255, 255), "sectors", "disk", "am_tone"),
    ObjectClass(5, "engine", (250, 135, 25), (35, 30, 30), "cross", "square", "buzz"),
)
CLASS_BY_NAME: dict[str, ObjectClass] = {c.name: c for c in OBJECT_CLASSES}


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene sampler. Angles in degrees here (config), radians in the record."""

    width: int = 512
    height: int = 256
    fps: int = 16
    duration_s: float = 10.0
    sample_rate: int = 24000
    min_sources: int = 1  # visible sound-emitting objects per clip
    max_sources: int = 4
    radius_deg: tuple[float, float] = (8.0, 20.0)
    elevation_sd_deg: float = 25.0
    max_abs_elevation_deg: float = 60.0
    p_high_elevation: float = 0.1  # an object may then sit anywhere within ±80°
    p_silent_object: float = 0.3  # one extra visible object that makes no sound
    p_offscreen_sound: float = 0.25  # one extra sound source with no visible object
    p_static: float = 0.3
    max_speed_deg_s: float = 8.0
    p_continuous: float = 0.2  # a source that never pauses
    on_s: tuple[float, float] = (0.6, 2.5)
    off_s: tuple[float, float] = (0.3, 1.5)
    source_level_db: tuple[float, float] = (-6.0, 0.0)
    ambience_db: tuple[float, float] = (-32.0, -20.0)  # W-channel RMS re a 0 dB source
    ambience_plane_waves: int = 32
    # The `spatial` preset (docs/synthetic.md): clips where class and synchrony cannot tell
    # which object sounds. With probability p_same_class a clip's visible objects are all of
    # one class: 2-3 of them sound at once, continuously, >= min_source_separation_deg apart,
    # and one more of the same class is silent. visual_pulse=False draws objects without the
    # envelope pulse; reverb=True puts every clip in a room (image-source early reflections
    # and a diffuse exponential tail in FOA). Defaults leave the demo preset's draws unchanged.
    p_same_class: float = 0.0
    same_class_sounding: tuple[int, int] = (2, 3)
    min_source_separation_deg: float = 60.0
    visual_pulse: bool = True
    reverb: bool = False
    rt60_s: tuple[float, float] = (0.3, 0.8)
    drr_db: tuple[float, float] = (0.0, 6.0)       # direct-to-reverberant ratio of each source
    room_size_m: tuple[float, float] = (5.0, 12.0)
    source_distance_m: tuple[float, float] = (1.5, 4.0)
    # The `direction` preset: p_silent_twin < 1 leaves out a same-class clip's silent twin with
    # probability 1 - p_silent_twin (drawn only when below 1, so `spatial` keeps its draws).
    p_silent_twin: float = 1.0

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))


@dataclass(frozen=True)
class ObjectSpec:
    """A hand-placed static object, for tests and seam-free detector frames.

    ``on_intervals_s=None`` means the object acts during the whole clip.
    """

    class_name: str
    azimuth_rad: float
    elevation_rad: float
    radius_rad: float = math.radians(12.0)
    visible: bool = True
    sounding: bool = True
    level_db: float = 0.0
    on_intervals_s: tuple[tuple[float, float], ...] | None = None


# --------------------------------------------------------------------------- envelopes, tracks


# --------------------------------------------------------------------------- sampling


def _round_list(values: np.ndarray, decimals: int) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), decimals)]


def sample_on_intervals(
    rng: np.random.Generator, duration_s: float, cfg: SceneConfig
) -> list[list[float]]:
    """Alternating on/off events covering [0, duration_s]; the clip may start mid-event."""
    if rng.random() < cfg.p_continuous:
        return [[-1.0, round(duration_s + 1.0, 4)]]
    intervals = []
    t = -float(rng.uniform(0.0, cfg.on_s[1]))  # start somewhere inside an on or off phase
    is_on = bool(rng.random() < 0.6)
    while t < duration_s:
        length = rng.uniform(*(cfg.on_s if is_on else cfg.off_s))
        if is_on:
            intervals.append([round(t, 4), round(t + length, 4)])
        t += length
        is_on = not is_on
    return [iv for iv in intervals if iv[1] > 0.0]


def _sample_elevation_rad(rng: np.random.Generator, cfg: SceneConfig) -> float:
    if rng.random() < cfg.p_high_elevation:
        return math.radians(rng.uniform(-80.0, 80.0))
    limit = cfg.max_abs_elevation_deg
    return math.radians(float(np.clip(rng.normal(0.0, cfg.elevation_sd_deg), -limit, limit)))


def sample_track(
    rng: np.random.Generator,
    azimuth0_rad: float,
    elevation0_rad: float,
    n_frames: int,
    fps: float,
    cfg: SceneConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth (azimuth_rad, elevation_rad) track at frame times: static, or a slow drift in
    azimuth (angular speed up to ``max_speed_deg_s`` on the sphere) plus gentle sinusoidal wobble.
    """
    t = frame_times_s(n_frames, fps)
    if rng.random() < cfg.p_static:
        return np.full(n_frames, azimuth0_rad), np.full(n_frames, elevation0_rad)
    speed_rad_s = math.radians(rng.uniform(1.0, cfg.max_speed_deg_s)) * rng.choice([-1.0, 1.0])
    # Azimuth rate for that great-circle speed, capped so tracks near the poles stay slow.
    az_rate = speed_rad_s / max(math.cos(elevation0_rad), 0.5)
    wobble_az = math.radians(rng.uniform(0.0, 5.0))
    wobble_el = math.radians(rng.uniform(0.0, 8.0))
    f_az, f_el = rng.uniform(0.05, 0.2, size=2)
    ph_az, ph_el = rng.uniform(0.0, 2.0 * np.pi, size=2)
    az = azimuth0_rad + az_rate * t + wobble_az * np.sin(2.0 * np.pi * f_az * t + ph_az)
    el = elevation0_rad + wobble_el * np.sin(2.0 * np.pi * f_el * t + ph_el)
    return wrap_azimuth_rad(az), np.clip(el, math.radians(-85.0), math.radians(85.0))


def _sample_background(rng: np.random.Generator) -> dict:
    """Per-clip sky/ground look (colours 0-255, angles in radians); see render.background_image."""

    def jitter(rgb: Sequence[float], amount: float) -> list[int]:
        return [int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in rgb]

    return {
        "seed": int(rng.integers(2**31)),
        "sky_zenith_rgb": jitter((70, 110, 175), 30),
        "sky_horizon_rgb": jitter((185, 200, 215), 25),
        "ground_horizon_rgb": jitter((120, 115, 95), 30),
        "ground_nadir_rgb": jitter((65, 60, 50), 20),
        "horizon_elevation_rad": round(math.radians(rng.uniform(-6.0, 6.0)), _ANGLE_DECIMALS),
        "texture_strength": round(float(rng.uniform(0.08, 0.2)), 4),
    }


def _object_record(
    object_id: int,
    object_class: ObjectClass,
    radius_rad: float,
    azimuth_rad: np.ndarray,
    elevation_rad: np.ndarray,
    on_intervals_s: list[list[float]],
    *,
    visible: bool,
    sounding: bool,
    level_db: float,
    sound_seed: int,
    pattern_angle_rad: float,
    fps: float,
) -> dict:
    env = envelope(on_intervals_s, frame_times_s(len(azimuth_rad), fps))
    return {
        "object_id": object_id,
        "class_id": object_class.class_id,
        "class_name": object_class.name,
        "visible": visible,
        "sounding": sounding,
        "radius_rad": round(float(radius_rad), _ANGLE_DECIMALS),
        "level_db": round(float(level_db), 3),
        "sound_seed": int(sound_seed),
        "pattern_angle_rad": round(float(pattern_angle_rad), _ANGLE_DECIMALS),
        "on_intervals_s": on_intervals_s,
        "azimuth_rad": _round_list(azimuth_rad, _ANGLE_DECIMALS),
        "elevation_rad": _round_list(elevation_rad, _ANGLE_DECIMALS),
        "activity": _round_list(env if sounding else np.zeros_like(env), _ENVELOPE_DECIMALS),
        "visual_pulse": _round_list(env if visible else np.zeros_like(env), _ENVELOPE_DECIMALS),
    }


def _gt_header(cfg: SceneConfig, clip_id: str, seed: Sequence[int]) -> dict:
    return {
        "format": GT_FORMAT,
        "version": GT_VERSION,
        "clip_id": clip_id,
        "seed": [int(s) for s in seed],
        "fps": cfg.fps,
        "n_frames": cfg.n_frames,
        "duration_s": cfg.duration_s,
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "classes": [{"class_id": c.class_id, "name": c.name, "shape": c.shape}
                    for c in OBJECT_CLASSES],
    }


def _place_apart(
    rng: np.random.Generator,
    radius_rad: float,
    placed: list[tuple[float, float, float]],
    cfg: SceneConfig,
    min_separation_rad: float = 0.0,
) -> tuple[float, float]:
    """A starting direction at least 1.1 × (sum of radii), and ``min_separation_rad``, away from
    the visible objects placed."""
    for _ in range(100 if min_separation_rad == 0.0 else 400):
        az = float(rng.uniform(-np.pi, np.pi))
        el = _sample_elevation_rad(rng, cfg)
        if all(angular_distance_rad(az, el, a, e) >= max(1.1 * (radius_rad + r),
                                                          min_separation_rad)
               for a, e, r in placed):
            return az, el
    return az, el  # a crowded scene: accept an overlap (later objects are drawn on top)


def sample_scene(cfg: SceneConfig, seed: Sequence[int], clip_id: str) -> dict:
    """Sample one scene's ground truth from ``seed`` (a sequence of ints fed to
    ``np.random.default_rng``; the CLI uses ``(seed, split_index, clip_index)``).

    Objects, in order: 1..4 visible sound sources, optionally one silent visible object and one
    off-screen (invisible) sound source. Deterministic: same config and seed, same record.
    """
    rng = np.random.default_rng(list(seed))
    n_frames, fps = cfg.n_frames, cfg.fps
    # Drawn only when the preset asks for it, so the default presets' draws are unchanged.
    same_class = cfg.p_same_class > 0.0 and rng.random() < cfg.p_same_class
    if same_class:
        shared_class = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
        low, high = cfg.same_class_sounding
        roles = [(True, True)] * int(rng.integers(low, high + 1))
        if cfg.p_silent_twin >= 1.0 or rng.random() < cfg.p_silent_twin:
            roles.append((True, False))
    else:
        roles = [(True, True)] * int(rng.integers(cfg.min_sources, cfg.max_sources + 1))
        if rng.random() < cfg.p_silent_object:
            roles.append((True, False))
    if rng.random() < cfg.p_offscreen_sound:
        roles.append((False, True))

    objects, placed = [], []
    separation_rad = math.radians(cfg.min_source_separation_deg) if same_class else 0.0
    for object_id, (visible, sounding) in enumerate(roles):
        object_class = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
        if same_class and visible:
            object_class = shared_class
        radius_rad = math.radians(rng.uniform(*cfg.radius_deg))
        if visible:
            az0, el0 = _place_apart(rng, radius_rad, placed, cfg, separation_rad)
            placed.append((az0, el0, radius_rad))
        else:  # an off-screen sound may come from anywhere on the sphere
            az0 = float(rng.uniform(-np.pi, np.pi))
            el0 = float(np.arcsin(rng.uniform(-1.0, 1.0)))
        az, el = sample_track(rng, az0, el0, n_frames, fps, cfg)
        intervals = sample_on_intervals(rng, cfg.duration_s, cfg)
        if same_class and visible:     # the twins sound at once: only direction tells them apart
            intervals = [[-1.0, round(cfg.duration_s + 1.0, 4)]]
        objects.append(
            _object_record(
                object_id,
                object_class,
                radius_rad,
                az,
                el,
                intervals,
                visible=visible,
                sounding=sounding,
                level_db=rng.uniform(*cfg.source_level_db),
                sound_seed=int(rng.integers(2**31)),
                pattern_angle_rad=rng.uniform(0.0, np.pi),
                fps=fps,
            )
        )
    gt = _gt_header(cfg, clip_id, seed)
    gt["background"] = _sample_background(rng)
    gt["ambience"] = {
        "level_db": round(float(rng.uniform(*cfg.ambience_db)), 3),
        "seed": int(rng.integers(2**31)),
        "n_plane_waves": cfg.ambience_plane_waves,
    }
    gt["objects"] = objects
    if same_class:
        gt["same_class"] = shared_class.name
    if not cfg.visual_pulse:
        gt["render"] = {"visual_pulse": False}
        for obj in objects:
            if obj["visible"]:
                obj["visual_pulse"] = [1.0] * len(obj["visual_pulse"])
    if cfg.reverb:
        gt["room"] = sample_room(rng, cfg)
    return gt


def sample_room(rng: np.random.Generator, cfg: SceneConfig) -> dict:
    """A shoebox room around the listener: sizes (m), the listener's position in it, each
    source's distance, RT60 and direct-to-reverberant ratio; ``seed`` for the diffuse tail."""
    size = [round(float(rng.uniform(*cfg.room_size_m)) * f, 3) for f in (1.0, 0.8, 0.35)]
    listener = [round(float(rng.uniform(0.3, 0.7)) * side, 3) for side in size]
    return {
        "size_m": size,
        "listener_m": listener,
        "source_distance_m": round(float(rng.uniform(*cfg.source_distance_m)), 3),
        "rt60_s": round(float(rng.uniform(*cfg.rt60_s)), 3),
        "drr_db": round(float(rng.uniform(*cfg.drr_db)), 3),
        "wall_gain": 0.8,
        "seed": int(rng.integers(2**31)),
    }


def make_scene(
    cfg: SceneConfig,
    specs: Sequence[ObjectSpec],
    clip_id: str,
    seed: Sequence[int] = (0,),
    ambience_db: float | None = None,
) -> dict:
    """Ground truth for hand-placed static objects (tests, seam-free detector frames).

    ``ambience_db=None`` leaves the scene without diffuse ambience.
    """
    rng = np.random.default_rng(list(seed))
    n_frames = cfg.n_frames
    objects = []
    for object_id, spec in enumerate(specs):
        intervals = spec.on_intervals_s
        if intervals is None:
            intervals = ((-1.0, cfg.duration_s + 1.0),)
        objects.append(
            _object_record(
                object_id,
                CLASS_BY_NAME[spec.class_name],
                spec.radius_rad,
                np.full(n_frames, spec.azimuth_rad),
                np.full(n_frames, spec.elevation_rad),
                [list(map(float, iv)) for iv in intervals],
                visible=spec.visible,
                sounding=spec.sounding,
                level_db=spec.level_db,
                sound_seed=int(rng.integers(2**31)),
                pattern_angle_rad=0.0,
                fps=cfg.fps,
            )
        )
    gt = _gt_header(cfg, clip_id, seed)
    gt["background"] = _sample_background(rng)
    gt["ambience"] = {
        "level_db": None if ambience_db is None else float(ambience_db),
        "seed": int(rng.integers(2**31)),
        "n_plane_waves": cfg.ambience_plane_waves,
    }
    gt["objects"] = objects
    return gt
