"""A synthetic stand-in for EigenScape: 8 acoustic scene classes, 4th-order ambiX recordings.

Layout (as the real corpus): ``<out>/<Class>.<k>.wav`` for k = 1..8, 25 channels in ACN order
with SN3D normalisation (orders 0-4, every order correctly encoded with real spherical
harmonics), plus ``<out>/ground_truth.json`` describing every source of every recording.

A class is a recipe: which kinds of sources (voices, traffic, birds, waves, ...), how many, how
loud, where (near the horizon in front, all around, overhead) and whether they move, plus the
level and spectral tilt of its diffuse ambience. Counts, levels, directions, signature
parameters, activity and ambience are drawn per recording, so classes overlap and scene
classification is learnable but not trivial.

The same fixed output gain is used for every recording (no per-file normalisation), so the
overall level is part of what characterises a class, as in a real calibrated recording.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy import signal as sps
from scipy.special import factorial, lpmv

from pipeline.synth import audio
from pipeline.synth.scenes import SceneConfig, envelope, sample_on_intervals, sample_track

HOA_ORDER = 4
N_HOA_CHANNELS = (HOA_ORDER + 1) ** 2
RECORDINGS_PER_CLASS = 8
OUTPUT_GAIN = 0.03  # fixed for every recording, see the module docstring
_TRACK_RATE_HZ = 16.0  # directions of moving sources are sampled at this rate, then interpolated


# --------------------------------------------------------------------------- spherical harmonics


def acn_degree_order(acn: int) -> tuple[int, int]:
    """(degree l, order m) of an ACN channel index: ``acn = l² + l + m``."""
    degree = int(math.isqrt(acn))
    return degree, acn - degree * degree - degree


def real_sh_sn3d(max_degree: int, azimuth_rad, elevation_rad) -> np.ndarray:
    """Real spherical harmonics, ACN order, SN3D, no Condon-Shortley phase (ambiX).

    ``Y_lm = N_lm · P_l^|m|(sin el) · (cos(m az) if m >= 0 else sin(|m| az))`` with
    ``N_lm = sqrt((2 - δ_m0) (l - |m|)! / (l + |m|)!)``. For l = 1 this gives the ambiX dipoles
    ``[Y, Z, X] = [cos el sin az, sin el, cos el cos az]``.

    Args:
        azimuth_rad, elevation_rad: broadcastable arrays (radians).
    Returns:
        float64 ``((max_degree + 1)², *shape)``.
    """
    az, el = np.broadcast_arrays(
        np.asarray(azimuth_rad, dtype=np.float64), np.asarray(elevation_rad, dtype=np.float64)
    )
    sin_el = np.sin(el)
    out = np.empty(((max_degree + 1) ** 2, *az.shape))
    for acn in range(out.shape[0]):
        degree, order = acn_degree_order(acn)
        m = abs(order)
        norm = math.sqrt((1.0 if m == 0 else 2.0) * factorial(degree - m) / factorial(degree + m))
        legendre = (-1.0) ** m * lpmv(m, degree, sin_el)  # scipy includes the Condon-Shortley phase
        trig = np.cos(m * az) if order >= 0 else np.sin(m * az)
        out[acn] = norm * legendre * trig
    return out


# --------------------------------------------------------------------------- source signatures


def voices(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Speech-like babble of one talker: glottal buzz (f0 100-250 Hz) through a moving formant
    band, chopped into 3-5 Hz syllables with pauses."""
    t = np.arange(n) / sr
    f0 = rng.uniform(100.0, 250.0) * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    buzz = sps.sawtooth(2 * np.pi * np.cumsum(f0) / sr)
    formant = audio.bandpass(buzz, rng.uniform(400.0, 700.0), rng.uniform(1800.0, 3000.0), sr, order=2)
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 6.3)), 0.0, None)
    phrases = audio.lowpass(rng.standard_normal(n), 0.7, sr, order=1) > 0  # talk / pause
    return audio.unit_rms(formant * syllables * phrases)


def waves(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Surf: broadband noise in slow swells (period 5-10 s)."""
    t = np.arange(n) / sr
    swell = (
        0.25
        + 0.75 * (0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(5.0, 10.0) + rng.uniform(0, 6.3))) ** 2
    )
    return audio.unit_rms(audio.coloured_noise(rng, n, sr, -1.5) * swell)


def wind(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Wind in leaves: high-passed hiss with random gusts."""
    hiss = sps.sosfilt(
        sps.butter(2, 2000.0, btype="highpass", fs=sr, output="sos"), rng.standard_normal(n)
    )
    gusts = audio.lowpass(rng.standard_normal(n), 0.5, sr, order=2)
    gusts = 0.3 + np.abs(gusts) / (np.abs(gusts).max() + 1e-12)
    return audio.unit_rms(hiss * gusts)


def traffic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A car: engine buzz over brown tyre noise, swelling as it passes (one pass per 4-10 s)."""
    t = np.arange(n) / sr
    period = rng.uniform(4.0, 10.0)
    passing = 0.15 + np.exp(
        -(((t + rng.uniform(0, period)) % period - period / 2) ** 2) / (2 * (period / 6) ** 2)
    )
    body = audio.unit_rms(audio.coloured_noise(rng, n, sr, -6.0)) + 0.5 * audio.engine_buzz(rng, n, sr)
    return audio.unit_rms(body * passing)


def footsteps(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Footsteps: short bright clicks at 1.6-2.4 steps per second with timing jitter."""
    out = np.zeros(n)
    step = sr / rng.uniform(1.6, 2.4)
    position = rng.uniform(0, step)
    kernel_t = np.arange(int(0.03 * sr)) / sr
    while position < n - len(kernel_t):
        start = int(position)
        out[start : start + len(kernel_t)] += rng.standard_normal(len(kernel_t)) * np.exp(
            -kernel_t / 0.006
        )
        position += step * rng.uniform(0.9, 1.1)
    return audio.unit_rms(audio.bandpass(out, 300.0, 6000.0, sr, order=2))


def announcement(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Public address: band-limited (300-3400 Hz) speech after a two-tone chime, every 6-15 s."""
    speech = audio.bandpass(voices(rng, n, sr), 300.0, 3400.0, sr)
    t = np.arange(n) / sr
    period = rng.uniform(6.0, 15.0)
    phase = (t + rng.uniform(0, period)) % period
    chime = np.where(
        phase < 0.4, np.sin(2 * np.pi * 660 * t), np.where(phase < 0.8, np.sin(2 * np.pi * 523 * t), 0.0)
    )
    talking = (phase > 1.0) & (phase < 0.7 * period)
    return audio.unit_rms(0.7 * chime * np.exp(-(phase % 0.4) / 0.3) + audio.unit_rms(speech) * talking)


def music(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Background music: a chord progression of harmonic tones, one chord per 1-2 s."""
    t = np.arange(n) / sr
    root_hz = rng.uniform(110.0, 220.0)
    chord_s = rng.uniform(1.0, 2.0)
    progression = rng.choice([0, 3, 5, 7, 8, 10], size=int(n / sr / chord_s) + 2)
    semitone = progression[(t / chord_s).astype(int)]
    out = np.zeros(n)
    for interval in (0, 4, 7):
        freq = root_hz * 2.0 ** ((semitone + interval) / 12.0)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        out += sum(np.sin(k * phase) / k**1.5 for k in range(1, 5))
    return audio.unit_rms(out)


def train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Train: low rumble with rail clicks in pairs (bogies) at a slowly changing rate."""
    rumble = audio.unit_rms(audio.lowpass(rng.standard_normal(n), 150.0, sr))
    clicks = np.zeros(n)
    gap = int(sr * rng.uniform(0.5, 1.0))
    for start in range(int(rng.integers(gap)), n - 2, gap):
        clicks[start] = 1.0
        clicks[min(start + int(0.12 * sr), n - 1)] = 0.8
    kernel_t = np.arange(int(0.05 * sr)) / sr
    clack = sps.fftconvolve(clicks, np.sin(2 * np.pi * 900 * kernel_t) * np.exp(-kernel_t / 0.01))[:n]
    return audio.unit_rms(rumble + 0.7 * audio.unit_rms(clack))


SOURCE_SIGNATURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "voices": voices,
    "waves": waves,
    "wind": wind,
    "traffic": traffic,
    "footsteps": footsteps,
    "announcement": announcement,
    "music": music,
    "train": train,
    "birds": audio.chirps,
    "horn": audio.am_tone,
    "dog": audio.click_train,
}
#: Sources that never pause (the others follow on/off events).
CONTINUOUS_SOURCES = frozenset({"waves", "wind", "traffic", "train", "music", "announcement"})


# --------------------------------------------------------------------------- scene classes


@dataclass(frozen=True)
class SourceMix:
    """One kind of source in a scene class. Angles in degrees (config)."""

    sound: str
    count: tuple[int, int]  # inclusive range
    level_db: tuple[float, float]
    elevation_deg: tuple[float, float]  # mean, standard deviation
    azimuth: str  # "front" (within about ±60°), "all" (uniform)
    moving: bool = False


@dataclass(frozen=True)
class SceneClass:
    name: str
    sources: tuple[SourceMix, ...]
    ambience_db: tuple[float, float]
    ambience_tilt_db_per_octave: tuple[float, float]


SCENE_CLASSES: tuple[SceneClass, ...] = (
    SceneClass("Beach", (
        SourceMix("waves", (2, 3), (-4, 0), (-5, 4), "front"),
        SourceMix("wind", (1, 1), (-14, -8), (10, 20), "all"),
        SourceMix("voices", (0, 2), (-22, -14), (0, 5), "all", moving=True),
        SourceMix("birds", (0, 1), (-20, -12), (40, 15), "all"),
    ), (-20, -14), (-2.0, -0.5)),
    SceneClass("BusyStreet", (
        SourceMix("traffic", (3, 5), (-6, 0), (-4, 4), "all", moving=True),
        SourceMix("voices", (1, 3), (-16, -8), (0, 5), "all", moving=True),
        SourceMix("horn", (0, 1), (-14, -6), (0, 5), "all"),
    ), (-16, -10), (-6.0, -4.0)),
    SceneClass("Park", (
        SourceMix("birds", (2, 4), (-12, -4), (35, 20), "all"),
        SourceMix("voices", (1, 2), (-16, -8), (0, 5), "front", moving=True),
        SourceMix("dog", (0, 1), (-16, -8), (-5, 5), "all"),
    ), (-30, -24), (-3.5, -2.0)),
    SceneClass("PedestrianZone", (
        SourceMix("voices", (4, 7), (-10, -4), (0, 8), "all", moving=True),
        SourceMix("footsteps", (2, 3), (-16, -10), (-20, 10), "all", moving=True),
        SourceMix("music", (0, 1), (-16, -10), (5, 10), "all"),
    ), (-22, -16), (-4.0, -3.0)),
    SceneClass("QuietStreet", (
        SourceMix("traffic", (0, 1), (-12, -4), (-4, 4), "all", moving=True),
        SourceMix("birds", (0, 2), (-20, -12), (30, 15), "all"),
        SourceMix("footsteps", (0, 1), (-18, -12), (-20, 10), "all", moving=True),
    ), (-34, -28), (-5.0, -3.0)),
    SceneClass("ShoppingCentre", (
        SourceMix("voices", (3, 6), (-14, -8), (0, 8), "all", moving=True),
        SourceMix("music", (1, 1), (-14, -8), (45, 10), "all"),
        SourceMix("announcement", (0, 1), (-12, -6), (55, 10), "all"),
        SourceMix("footsteps", (1, 3), (-18, -12), (-20, 10), "all", moving=True),
    ), (-16, -12), (-3.0, -2.0)),
    SceneClass("TrainStation", (
        SourceMix("train", (1, 1), (-4, 0), (-5, 4), "front", moving=True),
        SourceMix("announcement", (1, 1), (-10, -4), (50, 15), "all"),
        SourceMix("footsteps", (2, 4), (-16, -10), (-20, 10), "all", moving=True),
        SourceMix("voices", (1, 3), (-16, -10), (0, 8), "all", moving=True),
    ), (-18, -12), (-5.0, -3.0)),
    SceneClass("Woodland", (
        SourceMix("birds", (3, 6), (-14, -4), (40, 25), "all"),
        SourceMix("wind", (1, 2), (-14, -8), (20, 25), "all"),
    ), (-36, -28), (-1.0, 0.0)),
)  # fmt: skip
SCENE_CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in SCENE_CLASSES)


@dataclass(frozen=True)
class EigenscapeConfig:
    duration_s: float = 10.0
    sample_rate: int = 24000
    recordings_per_class: int = RECORDINGS_PER_CLASS
    ambience_plane_waves: int = 64  # enough for a diffuse field up to order 4 (> 2 (N+1)²)
    subtype: str = "PCM_16"  # soundfile subtype: PCM_16, PCM_24, FLOAT


def recording_name(class_name: str, index: int) -> str:
    """EigenScape file name of recording ``index`` (1-based) of a class, e.g. ``Beach.1.wav``."""
    return f"{class_name}.{index}.wav"


def _sample_direction(rng: np.random.Generator, mix: SourceMix) -> tuple[float, float]:
    mean, sd = mix.elevation_deg
    elevation = math.radians(float(np.clip(rng.normal(mean, sd), -80.0, 80.0)))
    if mix.azimuth == "front":
        azimuth = math.radians(float(np.clip(rng.normal(0.0, 30.0), -60.0, 60.0)))
    else:
        azimuth = float(rng.uniform(-np.pi, np.pi))
    return azimuth, elevation


def sample_recording(scene_class: SceneClass, seed: list[int], cfg: EigenscapeConfig) -> dict:
    """Ground truth of one recording: its sources (sound, level, track, on/off events) and
    ambience; a JSON-able dict, input of :func:`render_recording`."""
    rng = np.random.default_rng(seed)
    track_cfg = SceneConfig(
        duration_s=cfg.duration_s, fps=int(_TRACK_RATE_HZ), p_static=0.0, max_speed_deg_s=15.0
    )
    n_track = int(round(cfg.duration_s * _TRACK_RATE_HZ))
    sources = []
    for mix in scene_class.sources:
        for _ in range(int(rng.integers(mix.count[0], mix.count[1] + 1))):
            az0, el0 = _sample_direction(rng, mix)
            if mix.moving:
                az, el = sample_track(rng, az0, el0, n_track, _TRACK_RATE_HZ, track_cfg)
            else:
                az, el = np.full(n_track, az0), np.full(n_track, el0)
            if mix.sound in CONTINUOUS_SOURCES:
                on_intervals_s = [[-1.0, cfg.duration_s + 1.0]]
            else:
                on_intervals_s = sample_on_intervals(rng, cfg.duration_s, track_cfg)
            sources.append(
                {
                    "sound": mix.sound,
                    "level_db": round(float(rng.uniform(*mix.level_db)), 3),
                    "sound_seed": int(rng.integers(2**31)),
                    "on_intervals_s": on_intervals_s,
                    "azimuth_rad": [round(float(a), 6) for a in az],
                    "elevation_rad": [round(float(e), 6) for e in el],
                }
            )
    return {
        "scene_class": scene_class.name,
        "seed": list(seed),
        "duration_s": cfg.duration_s,
        "sample_rate": cfg.sample_rate,
        "track_rate_hz": _TRACK_RATE_HZ,
        "ambience": {
            "level_db": round(float(rng.uniform(*scene_class.ambience_db)), 3),
            "tilt_db_per_octave": round(float(rng.uniform(*scene_class.ambience_tilt_db_per_octave)), 3),
            "seed": int(rng.integers(2**31)),
            "n_plane_waves": cfg.ambience_plane_waves,
        },
        "sources": sources,
    }


def _sh_gains_per_sample(source: dict, track_rate_hz: float, n: int, sr: int) -> np.ndarray:
    """SH gains ``(25, n)`` float32 of a source, evaluated at its track points and linearly
    interpolated between them (tracks move at most ~1° between points at 16 Hz)."""
    gains = real_sh_sn3d(
        HOA_ORDER, np.asarray(source["azimuth_rad"]), np.asarray(source["elevation_rad"])
    )
    track_t = np.arange(gains.shape[1]) / track_rate_hz
    t_s = np.arange(n) / sr
    return np.stack([np.interp(t_s, track_t, g) for g in gains]).astype(np.float32)


def render_recording(recording: dict) -> np.ndarray:
    """25-channel ACN/SN3D signal ``(25, n)`` float32 of a recording's ground truth, times the
    fixed :data:`OUTPUT_GAIN`."""
    sr = recording["sample_rate"]
    n = int(round(recording["duration_s"] * sr))
    t_s = np.arange(n) / sr
    hoa = np.zeros((N_HOA_CHANNELS, n), dtype=np.float32)
    for source in recording["sources"]:
        rng = np.random.default_rng(source["sound_seed"])
        mono = SOURCE_SIGNATURES[source["sound"]](rng, n, sr) * envelope(source["on_intervals_s"], t_s)
        mono = (mono * 10.0 ** (source["level_db"] / 20.0)).astype(np.float32)
        if np.ptp(source["azimuth_rad"]) == 0 and np.ptp(source["elevation_rad"]) == 0:
            gains = real_sh_sn3d(HOA_ORDER, source["azimuth_rad"][0], source["elevation_rad"][0])
            hoa += gains.astype(np.float32)[:, None] * mono[None, :]
        else:
            hoa += _sh_gains_per_sample(source, recording["track_rate_hz"], n, sr) * mono[None, :]
    hoa += _diffuse_hoa(recording["ambience"], n, sr)
    return hoa * np.float32(OUTPUT_GAIN)


def _diffuse_hoa(ambience: dict, n: int, sr: int) -> np.ndarray:
    """Diffuse ambience ``(25, n)``: decorrelated coloured noises from near-uniform directions,
    W RMS = ``10^(level_db / 20)``."""
    rng = np.random.default_rng(ambience["seed"])
    azimuth, elevation = audio.fibonacci_sphere(ambience["n_plane_waves"], rng)
    per_wave = 10.0 ** (ambience["level_db"] / 20.0) / math.sqrt(ambience["n_plane_waves"])
    tilt = ambience["tilt_db_per_octave"]
    noises = np.stack([audio.coloured_noise(rng, n, sr, tilt) for _ in range(ambience["n_plane_waves"])])
    noises = noises.astype(np.float32)
    gains = (real_sh_sn3d(HOA_ORDER, azimuth, elevation) * per_wave).astype(np.float32)  # (25, n_waves)
    return gains @ noises


def write_recording(path: Path, recording: dict, subtype: str) -> None:
    """Render and write one recording atomically (``.partial`` file then rename).

    Raises ``ValueError`` rather than clip: the fixed gain leaves ample headroom for the class
    recipes above, so a clipping recording means a recipe was changed and the gain must be too.
    """
    hoa = render_recording(recording)
    peak = float(np.abs(hoa).max())
    if peak >= 1.0:
        raise ValueError(
            f"{path.name}: expected peak < 1.0 at gain {OUTPUT_GAIN}, got {peak:.3f}; lower OUTPUT_GAIN"
        )
    partial = path.with_name(path.name + ".partial")
    sf.write(partial, hoa.T, recording["sample_rate"], subtype=subtype, format="WAV")
    os.replace(partial, path)


def recording_jobs(cfg: EigenscapeConfig, seed: int) -> list[tuple[str, SceneClass, list[int]]]:
    """(file name, scene class, per-recording seed) for every recording of the set."""
    jobs = []
    for class_index, scene_class in enumerate(SCENE_CLASSES):
        for k in range(1, cfg.recordings_per_class + 1):
            jobs.append((recording_name(scene_class.name, k), scene_class, [seed, class_index, k]))
    return jobs


def write_ground_truth(out_dir: Path, recordings: dict[str, dict], cfg: EigenscapeConfig) -> Path:
    """``ground_truth.json``: per file its class and sources; classes and layout at the top."""
    path = out_dir / "ground_truth.json"
    record = {
        "format": "spatial-avsa-eigenscape-synth",
        "version": 1,
        "ambisonics": {
            "order": HOA_ORDER,
            "channel_order": "ACN",
            "normalisation": "SN3D",
            "channels": N_HOA_CHANNELS,
        },
        "sample_rate": cfg.sample_rate,
        "duration_s": cfg.duration_s,
        "classes": list(SCENE_CLASS_NAMES),
        "recordings": {name: recordings[name] for name in sorted(recordings)},
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)
    return path
