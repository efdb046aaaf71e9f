"""Sounds of synthetic scenes: class signatures, diffuse ambience and the FOA (ambiX) mix.

Every object class has a sound signature (harmonic tone, noise band, click train, chirps,
amplitude-modulated siren, engine buzz) whose parameters are drawn from the object's
``sound_seed``. A source is ``signature · envelope · 10^(level_db / 20)``, encoded as a plane wave
from its (interpolated, per-sample) track with :func:`pipeline.foa.encode_plane_wave`
(ACN order W, Y, Z, X; SN3D). The diffuse ambience is a sum of decorrelated coloured-noise plane
waves from near-uniform directions on the sphere, which gives the diffuse-field statistics of
SN3D (each dipole channel carries one third of the W energy, no net intensity).

Signals are float32, shaped ``(n_samples,)`` (mono) or ``(4, n_samples)`` (FOA).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import signal as sps

from pipeline.foa import encode_plane_wave
from pipeline.synth.scenes import CLASS_BY_NAME, envelope, object_track_at

#: Peak amplitude of a mixed clip (all channels), leaving headroom for AAC.
MIX_PEAK = 0.5


def unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x)))
    return x / rms if rms > 0 else x


def bandpass(x: np.ndarray, low_hz: float, high_hz: float, sr: int, order: int = 4) -> np.ndarray:
    sos = sps.butter(order, [low_hz, min(high_hz, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    return sps.sosfilt(sos, x)


def lowpass(x: np.ndarray, cutoff_hz: float, sr: int, order: int = 4) -> np.ndarray:
    return sps.sosfilt(sps.butter(order, cutoff_hz, btype="lowpass", fs=sr, output="sos"), x)


# --------------------------------------------------------------------------- signatures


def harmonic_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Bell-like harmonic tone: f0 250-600 Hz, 6 partials (1/k), 5 Hz vibrato, re-struck decays."""
    t = np.arange(n) / sr
    f0 = rng.uniform(250.0, 600.0)
    vibrato = 1.0 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.0, 6.0) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / sr
    tone = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    strike_period_s = rng.uniform(0.4, 0.9)
    decay = np.exp(-(t % strike_period_s) / (0.4 * strike_period_s))
    return unit_rms(tone * (0.35 + 0.65 * decay))


def noise_band(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Fountain-like noise band (centre 1.5-4 kHz, about an octave wide) with slow flutter."""
    centre = rng.uniform(1500.0, 4000.0)
    band = bandpass(rng.standard_normal(n), centre / 1.4, centre * 1.4, sr)
    flutter = lowpass(rng.standard_normal(n), 6.0, sr, order=2)
    flutter = 1.0 + 0.5 * flutter / (np.abs(flutter).max() + 1e-12)
    return unit_rms(band * flutter)


def click_train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Drum-like rhythm: 3-8 hits per second, each a decaying low resonance plus a noise burst."""
    rate_hz = rng.uniform(3.0, 8.0)
    hits = np.zeros(n)
    period = int(sr / rate_hz)
    start = int(rng.integers(period))
    hits[start::period] = rng.uniform(0.6, 1.0, size=len(hits[start::period]))
    k = np.arange(int(0.12 * sr)) / sr
    kernel = np.exp(-k / 0.03) * (
        np.sin(2 * np.pi * rng.uniform(100.0, 300.0) * k)
        + 0.5 * rng.standard_normal(len(k)) * np.exp(-k / 0.005)
    )
    return unit_rms(sps.fftconvolve(hits, kernel)[:n])


def chirps(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Bird-like upward chirps (2-5 per second, 60-150 ms, 2-3 kHz up to 4-6 kHz)."""
    out = np.zeros(n)
    rate_hz = rng.uniform(2.0, 5.0)
    length = int(rng.uniform(0.06, 0.15) * sr)
    f_start, f_end = rng.uniform(2000.0, 3000.0), rng.uniform(4000.0, 6000.0)
    t = np.arange(length) / sr
    chirp = sps.chirp(t, f0=f_start, t1=t[-1], f1=f_end, method="quadratic") * np.hanning(length)
    for start in range(int(rng.integers(int(sr / rate_hz))), n - length, int(sr / rate_hz)):
        out[start : start + length] += chirp
    return unit_rms(out)


def am_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Siren: carrier 500-1000 Hz swept ±20 % at 0.3-0.7 Hz, amplitude-modulated at 6-14 Hz."""
    t = np.arange(n) / sr
    carrier = rng.uniform(500.0, 1000.0) * (1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 0.7) * t))
    tone = np.sin(2 * np.pi * np.cumsum(carrier) / sr)
    am = 1.0 - 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(6.0, 14.0) * t))
    return unit_rms(tone * am)


def engine_buzz(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Engine: 60-140 Hz sawtooth low-passed at 1.5 kHz over low rumble noise."""
    t = np.arange(n) / sr
    f0 = rng.uniform(60.0, 140.0) * (1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    saw = sps.sawtooth(2 * np.pi * np.cumsum(f0) / sr)
    rumble = lowpass(rng.standard_normal(n), 300.0, sr)
    return unit_rms(unit_rms(lowpass(saw, 1500.0, sr)) + 0.3 * unit_rms(rumble))


SIGNATURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "harmonic": harmonic_tone,
    "noise_band": noise_band,
    "clicks": click_train,
    "chirps": chirps,
    "am_tone": am_tone,
    "buzz": engine_buzz,
}


def coloured_noise(
    rng: np.random.Generator, n: int, sr: int, tilt_db_per_octave: float = -3.0
) -> np.ndarray:
    """Unit-RMS noise with a spectral slope (dB per octave; -3 = pink, -6 = brown), no energy
    below 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    gain = np.zeros_like(freqs)
    audible = freqs >= 20.0
    gain[audible] = (freqs[audible] / 1000.0) ** (tilt_db_per_octave / (20.0 * math.log10(2.0)))
    return unit_rms(np.fft.irfft(spectrum * gain, n))


def fibonacci_sphere(n: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` near-uniform directions (azimuth_rad, elevation_rad), optionally randomly rotated
    in azimuth."""
    k = np.arange(n) + 0.5
    elevation = np.arcsin(1.0 - 2.0 * k / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * k
    if rng is not None:
        azimuth = azimuth + rng.uniform(0.0, 2.0 * np.pi)
    return np.mod(azimuth + np.pi, 2.0 * np.pi) - np.pi, elevation


# --------------------------------------------------------------------------- scene mix


def source_signal(obj: dict, n_samples: int, sample_rate: int) -> np.ndarray:
    """Mono signal of one sounding object: signature × event envelope × level, float32 (n,)."""
    sound = CLASS_BY_NAME[obj["class_name"]].sound
    rng = np.random.default_rng(obj["sound_seed"])
    signature = SIGNATURES[sound](rng, n_samples, sample_rate)
    gate = envelope(obj["on_intervals_s"], np.arange(n_samples) / sample_rate)
    return (signature * gate * 10.0 ** (obj["level_db"] / 20.0)).astype(np.float32)


def diffuse_ambience(
    n_samples: int,
    sample_rate: int,
    level_db: float,
    seed: int,
    n_plane_waves: int = 32,
    tilt_db_per_octave: float = -3.0,
) -> np.ndarray:
    """Diffuse FOA ambience ``(4, n)``: ``n_plane_waves`` decorrelated coloured noises from
    near-uniform directions, W RMS = ``10^(level_db / 20)``."""
    rng = np.random.default_rng(seed)
    azimuth, elevation = fibonacci_sphere(n_plane_waves, rng)
    per_wave = 10.0 ** (level_db / 20.0) / math.sqrt(n_plane_waves)
    foa = np.zeros((4, n_samples), dtype=np.float32)
    for az, el in zip(azimuth, elevation):
        noise = (coloured_noise(rng, n_samples, sample_rate, tilt_db_per_octave) * per_wave).astype(
            np.float32
        )
        foa += encode_plane_wave(noise, float(az), float(el))
    return foa


SPEED_OF_SOUND_M_S = 343.0


def image_sources(room: dict, azimuth_rad: float, elevation_rad: float
                  ) -> list[tuple[float, float, float, float]]:
    """First-order reflections of a source at ``room["source_distance_m"]`` in direction
    (azimuth_rad, elevation_rad) from the listener, in a shoebox: for each of the 6 walls,
    ``(azimuth_rad, elevation_rad, delay_s, gain)`` relative to the direct sound (gain = wall
    gain x direct distance / image distance). The source is kept inside the room."""
    size = np.asarray(room["size_m"], dtype=np.float64)
    listener = np.asarray(room["listener_m"], dtype=np.float64)
    direction = np.array([math.cos(elevation_rad) * math.cos(azimuth_rad),
                          math.cos(elevation_rad) * math.sin(azimuth_rad),
                          math.sin(elevation_rad)])
    source = np.clip(listener + room["source_distance_m"] * direction, 0.05 * size, 0.95 * size)
    direct = float(np.linalg.norm(source - listener))
    out = []
    for axis in range(3):
        for wall in (0.0, size[axis]):
            image = source.copy()
            image[axis] = 2.0 * wall - source[axis]
            vector = image - listener
            distance = float(np.linalg.norm(vector))
            out.append((math.atan2(vector[1], vector[0]), math.asin(vector[2] / distance),
                        (distance - direct) / SPEED_OF_SOUND_M_S,
                        room["wall_gain"] * direct / distance))
    return out


def diffuse_tail_ir(room: dict, sample_rate: int, start_s: float, object_id: int,
                    n_directions: int = 12) -> np.ndarray:
    """FOA impulse response ``(4, L)`` of a diffuse reverberant tail: decorrelated noises from
    near-uniform directions, decaying by 60 dB in ``rt60_s``, starting at ``start_s``, scaled
    so its energy is ``drr_db`` below a unit direct sound."""
    rng = np.random.default_rng([room["seed"], object_id])
    rt60 = room["rt60_s"]
    length = int(round((start_s + rt60) * sample_rate))
    t = np.arange(length) / sample_rate
    decay = np.where(t >= start_s, 10.0 ** (-3.0 * (t - start_s) / rt60), 0.0)
    azimuth, elevation = fibonacci_sphere(n_directions, rng)
    ir = np.zeros((4, length), dtype=np.float64)
    for az, el in zip(azimuth, elevation):
        ir += encode_plane_wave(rng.standard_normal(length) * decay, float(az), float(el))
    energy = float(np.sum(ir[0] ** 2))
    return (ir * math.sqrt(10.0 ** (-room["drr_db"] / 10.0) / energy)).astype(np.float32)


def reverberant_foa(obj: dict, signal: np.ndarray, room: dict, sample_rate: int) -> np.ndarray:
    """What the room adds to one source's direct sound, ``(4, n)``: its first-order image
    sources (from its mean direction over the clip) and the diffuse tail."""
    from scipy.signal import fftconvolve

    n = len(signal)
    az = float(np.angle(np.mean(np.exp(1j * np.asarray(obj["azimuth_rad"])))))
    el = float(np.mean(obj["elevation_rad"]))
    out = np.zeros((4, n), dtype=np.float32)
    last_delay = 0.0
    for image_az, image_el, delay_s, gain in image_sources(room, az, el):
        shift = int(round(delay_s * sample_rate))
        if 0 < shift < n:
            delayed = np.concatenate([np.zeros(shift, np.float32), signal[:n - shift]]) * gain
            out += encode_plane_wave(delayed.astype(np.float32), image_az, image_el)
        last_delay = max(last_delay, delay_s)
    tail = diffuse_tail_ir(room, sample_rate, last_delay, obj["object_id"])
    for channel in range(4):
        out[channel] += fftconvolve(signal, tail[channel])[:n].astype(np.float32)
    return out


def scene_foa(gt: dict) -> np.ndarray:
    """The clip's FOA track ``(4, n_samples)`` float32 (ambiX: W, Y, Z, X; SN3D), peak-normalised
    to :data:`MIX_PEAK`. Moving sources follow their tracks sample by sample; in a record with a
    ``room`` each source also gets its reflections and reverberant tail
    (:func:`reverberant_foa`), while the ground-truth direction stays the direct sound's."""
    sr = gt["sample_rate"]
    n = int(round(gt["duration_s"] * sr))
    t_s = np.arange(n) / sr
    foa = np.zeros((4, n), dtype=np.float32)
    room = gt.get("room")
    for obj in gt["objects"]:
        if not obj["sounding"]:
            continue
        az, el = object_track_at(obj, gt["fps"], t_s)
        signal = source_signal(obj, n, sr)
        foa += encode_plane_wave(signal, az, el)
        if room is not None:
            foa += reverberant_foa(obj, signal, room, sr)
    ambience = gt["ambience"]
    if ambience["level_db"] is not None:
        foa += diffuse_ambience(n, sr, ambience["level_db"], ambience["seed"], ambience["n_plane_waves"])
    peak = float(np.abs(foa).max())
    return foa * (MIX_PEAK / peak) if peak > 0 else foa
