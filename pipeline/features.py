"""Audio features of FOA windows: log-mel spectrograms, FOA intensity vectors (IV), beam log-mel,
and per-mel-band normalisation statistics.

Conventions (docs/CONVENTIONS.md): FOA is ambiX (ACN W, Y, Z, X; SN3D); angles are radians.

- STFT: periodic Hann window of ``n_fft`` samples, hop ``hop_length``, centred frames with
  reflect padding of ``n_fft // 2`` on both sides; equal to ``librosa.stft(..., center=True,
  pad_mode="reflect")``. A 1 s window at 24 kHz gives ``1 + 24000 // 240 = 101`` frames; features
  keep the first ``n_frames = 100`` (the dropped frame is centred on the last sample and half
  made of reflected padding). Shorter inputs are padded with frames of silence.
- Log-mel: magnitude (power 1) spectrogram, Slaney mel filterbank (equal to
  ``librosa.filters.mel(htk=False, norm="slaney")``, computed here without librosa), then ``20 log10(max(amin, mel))`` with ``amin = 1e-5`` and
  ``ref = 1`` (dB relative to full-scale amplitude), floored at ``max - top_db`` where the maximum
  is taken over a group (one signal by default; the four FOA channels of one viewpoint together
  in :func:`foa_features`, so that level differences between channels survive).
- IV: per bin ``I = Re{conj(W) [X, Y, Z]} / (E + eps)`` with ``E = (|W|^2 + |X|^2 + |Y|^2 +
  |Z|^2) / 2`` (SN3D energy, |I| = 1 for one plane wave), components ordered X, Y, Z; then
  averaged over each mel band with the filterbank weights normalised to sum to 1 per band.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.foa import (
    ACN_W,
    ACN_X,
    ACN_Y,
    ACN_Z,
    BEAM_PATTERNS,
    beam_weights,
    dipole_rotation_matrix,
    rotation_matrix_to_front,
    _require_angles,
    _require_foa,
)
from pipeline.shards.norm import read_norm_stats, write_norm_stats
from pipeline.spatial import vector_to_direction

__all__ = [
    "AudioFeatureConfig",
    "audio_feature_config",
    "AMIN",
    "IV_EPSILON",
    "stft",
    "mel_filterbank",
    "mel_average_weights",
    "logmel",
    "intensity_vector_mel",
    "foa_features",
    "doa_from_intensity",
    "intensity_directness",
    "NormStats",
    "NormStatsAccumulator",
]

AMIN = 1e-5  # amplitude floor before the log: -100 dB re full scale
IV_EPSILON = 1e-10  # added to the per-bin energy E (squared STFT amplitude units)
_IV_ACN_XYZ = (ACN_X, ACN_Y, ACN_Z)


@dataclass(frozen=True)
class AudioFeatureConfig:
    """Feature parameters (frozen, hashable); defaults are the reference implementation's.

    Units are in the names: Hz, seconds, dB; ``n_frames`` STFT frames of ``hop_length`` samples
    per window; ``beam_pattern`` is a key of :data:`pipeline.foa.BEAM_PATTERNS`.
    """

    sample_rate: int = 24000
    window_s: float = 1.0
    n_fft: int = 512
    hop_length: int = 240
    n_mels: int = 128
    fmin_hz: float = 0.0
    fmax_hz: float = 12000.0
    top_db: float = 100.0
    n_frames: int = 100
    beam_pattern: str = "cardioid"

    def __post_init__(self):
        if self.beam_pattern not in BEAM_PATTERNS:
            raise ValueError(
                f"beam_pattern must be one of {sorted(BEAM_PATTERNS)}, got {self.beam_pattern!r}"
            )
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate / 2:
            raise ValueError(
                "expected 0 <= fmin_hz < fmax_hz <= sample_rate / 2, "
                f"got {self.fmin_hz}, {self.fmax_hz}"
            )
        if self.n_fft < 2 or self.hop_length < 1 or self.n_frames < 1 or self.n_mels < 1:
            raise ValueError(f"invalid STFT/mel sizes in {self}")

    @property
    def n_samples(self) -> int:
        """Samples per window (``sample_rate * window_s``)."""
        return round(self.sample_rate * self.window_s)

    @property
    def n_bins(self) -> int:
        """STFT frequency bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


DEFAULT_CONFIG = AudioFeatureConfig()


def audio_feature_config(attrs: Mapping[str, Any]) -> AudioFeatureConfig:
    """The :class:`AudioFeatureConfig` a shard was made with, from its
    attributes: the ``config`` attribute's ``audio`` section; shards without it (test
    factories) give the defaults with their ``sample_rate``, ``n_mels`` and ``n_frames``."""
    config = attrs.get("config")
    if isinstance(config, (str, bytes)):
        config = json.loads(config)
    known = {f.name for f in dataclasses.fields(AudioFeatureConfig)}
    if isinstance(config, Mapping) and isinstance(config.get("audio"), Mapping):
        return AudioFeatureConfig(**{k: v for k, v in config["audio"].items() if k in known})
    overrides = {key: type(getattr(AudioFeatureConfig, key))(attrs[key])
                 for key in ("sample_rate", "n_mels", "n_frames") if key in attrs}
    return AudioFeatureConfig(**overrides)


# --------------------------------------------------------------------------- STFT, mel


@lru_cache(maxsize=8)
def _hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (scipy/librosa ``"hann"`` with ``fftbins=True``), float32."""
    n = np.arange(n_fft)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


def _stft_frames(
    signals: np.ndarray, n_fft: int, hop_length: int, max_frames: int | None = None
) -> np.ndarray:
    """Centred STFT laid out frames-major: ``(..., n_frames, n_fft // 2 + 1)``.

    float32 input gives complex64, float64 gives complex128. ``max_frames`` skips later frames.
    """
    signals = np.asarray(signals)
    if not np.issubdtype(signals.dtype, np.floating):
        signals = signals.astype(np.float32)
    if signals.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"reflect padding needs more than {n_fft // 2} samples, got {signals.shape[-1]}"
        )
    pad = [(0, 0)] * (signals.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(signals, pad, mode="reflect")
    frames = sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    if max_frames is not None:
        frames = frames[..., :max_frames, :]
    windowed = frames * _hann_window(n_fft).astype(signals.dtype)
    return scipy.fft.rfft(windowed, axis=-1)


def stft(signals, n_fft: int = 512, hop_length: int = 240) -> np.ndarray:
    """Centred Hann STFT, ``(..., n) -> (..., n_fft // 2 + 1, 1 + n // hop_length)`` complex.

    Equal to ``librosa.stft(signals, n_fft=n_fft, hop_length=hop_length, center=True,
    pad_mode="reflect")``; keeps float32 -> complex64 and float64 -> complex128.
    """
    return np.swapaxes(_stft_frames(signals, n_fft, hop_length), -1, -2)


def _window_spectrum(signals: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    """STFT ``(..., cfg.n_frames, n_bins)``: later frames dropped, missing ones silent (zeros)."""
    spec_tf = _stft_frames(signals, cfg.n_fft, cfg.hop_length, max_frames=cfg.n_frames)
    missing = cfg.n_frames - spec_tf.shape[-2]
    if missing > 0:
        pad = [(0, 0)] * (spec_tf.ndim - 2) + [(0, missing), (0, 0)]
        spec_tf = np.pad(spec_tf, pad)
    return spec_tf


# Slaney's mel scale (Auditory Toolbox): linear below 1 kHz (200/3 Hz per mel), logarithmic
# above (27 mels per factor 6.4).
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(frequency_hz) -> np.ndarray:
    """Frequencies (Hz) on Slaney's mel scale (float64)."""
    hz = np.asarray(frequency_hz, dtype=np.float64)
    linear = hz / _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ)
                                             / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz_slaney(mel) -> np.ndarray:
    """Slaney mels back to Hz (float64)."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (np.maximum(mel, _SLANEY_BREAK_MEL)
                                                                - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, logarithmic, linear)


@lru_cache(maxsize=8)
def _mel_filterbank_cached(
    sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Triangles between ``n_mels + 2`` Slaney-mel-spaced edges, each scaled to unit area in Hz
    (``2 / (upper - lower)``): the same filters as ``librosa.filters.mel(htk=False,
    norm="slaney")`` (tested), computed here so that no worker imports librosa (and scipy's
    signal module) for one matrix (0.9 s of CPU per process, measured)."""
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges_hz = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin_hz),
                                            hz_to_mel_slaney(fmax_hz), n_mels + 2))
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / widths_hz[:-1, None]
    falling = ramps[2:] / widths_hz[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    fb *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    fb.flags.writeable = False
    return fb


def mel_filterbank(cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Slaney mel filterbank ``(n_mels, n_fft // 2 + 1)`` float32 (read-only, cached per config)."""
    return _mel_filterbank_cached(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)


@lru_cache(maxsize=8)
def _mel_average_cached(
    sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    fb = _mel_filterbank_cached(sample_rate, n_fft, n_mels, fmin_hz, fmax_hz).astype(np.float64)
    band_sums = fb.sum(axis=1, keepdims=True)
    weights = np.divide(fb, band_sums, out=np.zeros_like(fb), where=band_sums > 0).astype(
        np.float32
    )
    weights.flags.writeable = False
    return weights


def mel_average_weights(cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Mel filterbank rows normalised to sum to 1: each band is a weighted mean of its bins.

    ``(n_mels, n_fft // 2 + 1)`` float32, read-only; an empty band (no bins) is all zeros.
    """
    return _mel_average_cached(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)


@lru_cache(maxsize=8)
def _mel_band_ranges_cached(
    sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    fb = _mel_filterbank_cached(sample_rate, n_fft, n_mels, fmin_hz, fmax_hz)
    nonzero = fb > 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    stop = np.where(nonzero.any(axis=1), fb.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    for band, (a, b) in enumerate(zip(first, stop)):   # triangles: one run of bins per band
        if not nonzero[band, a:b].all():
            raise AssertionError(f"mel band {band}: expected contiguous bins, got a gap")
    return first.astype(np.int64), stop.astype(np.int64)


@njit(cache=True, nogil=True, fastmath=True)
def _mixed_mel_magnitude_kernel(mixing, spec_real_ft, spec_imag_ft, filterbank, band_first,
                                band_stop, out):  # pragma: no cover - numba
    """``out[r, m, t] = sum_f fb[m, f] |sum_c mixing[r, c] spec[c, f, t]|`` (4 channels) over
    each band's bins only (a mel band spans a few bins: 504 weights of 128 x 257 are non-zero).
    One row of magnitudes ``(F, T)`` at a time stays in cache; the inner loops run along T."""
    n_bins, n_frames = spec_real_ft.shape[1], spec_real_ft.shape[2]
    magnitude = np.empty((n_bins, n_frames), np.float32)
    re, im = spec_real_ft, spec_imag_ft
    for r in range(mixing.shape[0]):
        m0, m1, m2, m3 = mixing[r, 0], mixing[r, 1], mixing[r, 2], mixing[r, 3]  # 4 FOA channels
        for f in range(n_bins):
            for t in range(n_frames):
                real = m0 * re[0, f, t] + m1 * re[1, f, t] + m2 * re[2, f, t] + m3 * re[3, f, t]
                imag = m0 * im[0, f, t] + m1 * im[1, f, t] + m2 * im[2, f, t] + m3 * im[3, f, t]
                magnitude[f, t] = np.sqrt(real * real + imag * imag)
        for m in range(filterbank.shape[0]):
            for t in range(n_frames):
                out[r, m, t] = 0.0
            for f in range(band_first[m], band_stop[m]):
                weight = filterbank[m, f]
                for t in range(n_frames):
                    out[r, m, t] += weight * magnitude[f, t]


def _mixed_mel_magnitude(mixing: np.ndarray, spec_tf: np.ndarray,
                         cfg: AudioFeatureConfig) -> np.ndarray:
    """Mel magnitudes ``(R, M, T)`` float32 of the spectra ``mixing (R, 4) @ spec_tf (4, T, F)``
    (real mixing coefficients), without forming the ``(R, T, F)`` complex mixtures: 1.6 ms
    instead of 13 ms for 160 mixtures of a 1 s window (one core)."""
    spec_ft = np.swapaxes(spec_tf, -1, -2)
    real = np.ascontiguousarray(spec_ft.real, dtype=np.float32)
    imag = np.ascontiguousarray(spec_ft.imag, dtype=np.float32)
    first, stop = _mel_band_ranges_cached(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz,
                                          cfg.fmax_hz)
    out = np.empty((mixing.shape[0], cfg.n_mels, spec_tf.shape[-2]), dtype=np.float32)
    _mixed_mel_magnitude_kernel(np.ascontiguousarray(mixing, dtype=np.float32), real, imag,
                                mel_filterbank(cfg), first, stop, out)
    return out


def _mel_project(values_tf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(..., T, F)`` values -> ``(..., M, T)`` by ``weights`` ``(M, F)`` (one BLAS call)."""
    lead, (n_frames, n_bins) = values_tf.shape[:-2], values_tf.shape[-2:]
    projected = values_tf.reshape(-1, n_bins) @ weights.T  # (lead * T, M)
    return np.swapaxes(projected.reshape(*lead, n_frames, weights.shape[0]), -1, -2)


def _amplitude_to_db(mel_magnitude: np.ndarray, top_db: float, axes: tuple[int, ...]) -> np.ndarray:
    """``20 log10(max(AMIN, x))`` floored at (max over ``axes``) - ``top_db``; float32.

    Works in place on float32 input, which callers pass freshly computed (a view of it is fine):
    fresh arrays for each step cost as much in page faults as the logarithm itself."""
    db = mel_magnitude.astype(np.float32, copy=False)
    np.maximum(db, np.float32(AMIN), out=db)
    np.log10(db, out=db)
    db *= np.float32(20.0)
    floor = db.max(axis=axes, keepdims=True)
    floor -= np.float32(top_db)
    return np.maximum(db, floor, out=db)


def _logmel_from_spec(spec_tf: np.ndarray, cfg: AudioFeatureConfig, top_db_axes) -> np.ndarray:
    mel_mag = _mel_project(np.abs(spec_tf), mel_filterbank(cfg))
    return _amplitude_to_db(mel_mag, cfg.top_db, tuple(top_db_axes)).astype(np.float32, copy=False)


def logmel(
    signals, cfg: AudioFeatureConfig = DEFAULT_CONFIG, *, top_db_axes=(-2, -1)
) -> np.ndarray:
    """Log-mel magnitude spectrogram: ``20 log10(max(AMIN, mel))`` dB re amplitude 1.

    Args:
        signals: ``(..., n)`` time-domain signals at ``cfg.sample_rate``.
        top_db_axes: output axes sharing one ``max - top_db`` floor; default: each signal alone.
    Returns:
        float32 ``(..., n_mels, n_frames)``, exactly ``cfg.n_frames`` frames.
    """
    return _logmel_from_spec(_window_spectrum(signals, cfg), cfg, top_db_axes)


# --------------------------------------------------------------------------- intensity vectors


def _intensity_and_energy(spec_tf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Active intensity ``(3, T, F)`` (X, Y, Z) and SN3D energy ``(T, F)`` of a (4, T, F) STFT."""
    w = spec_tf[ACN_W]
    dipoles = spec_tf[list(_IV_ACN_XYZ)]
    intensity = w.real * dipoles.real + w.imag * dipoles.imag  # Re{conj(W) v}
    power = spec_tf.real**2 + spec_tf.imag**2
    energy = 0.5 * power.sum(axis=0)
    return intensity, energy


def _intensity_mel_from_spec(spec_tf: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    """Normalised, mel-averaged IV ``(3, M, T)`` from an FOA STFT ``(4, T, F)``."""
    intensity, energy = _intensity_and_energy(spec_tf)
    normalised = intensity / (energy + IV_EPSILON)
    return _mel_project(normalised.astype(np.float32, copy=False), mel_average_weights(cfg))


def _require_window(foa, cfg: AudioFeatureConfig, exact_length: bool) -> np.ndarray:
    foa = _require_foa(foa, "FOA window")
    if foa.ndim != 2:
        raise ValueError(f"FOA window: expected shape (4, n_samples), got {foa.shape}")
    if exact_length and foa.shape[1] != cfg.n_samples:
        raise ValueError(
            f"FOA window: expected {cfg.n_samples} samples ({cfg.window_s} s at "
            f"{cfg.sample_rate} Hz), got {foa.shape[1]}"
        )
    return np.asarray(foa, dtype=np.float32)


def intensity_vector_mel(foa, cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Energy-normalised active intensity per mel band and frame.

    Args:
        foa: ``(4, n)`` ambiX (ACN W, Y, Z, X; SN3D).
    Returns:
        float32 ``(3, n_mels, n_frames)``, components ``(I_x, I_y, I_z)`` in the (front, left,
        up) frame; ``|I| = 1`` for a single plane wave, about 0 for a diffuse field.
    """
    foa = _require_window(foa, cfg, exact_length=False)
    return _intensity_mel_from_spec(_window_spectrum(foa, cfg), cfg)


def foa_features(
    foa, azimuth_rad, elevation_rad, cfg: AudioFeatureConfig = DEFAULT_CONFIG
) -> dict[str, np.ndarray]:
    """Features of one FOA window for K viewpoints.

    The STFT is computed once for the 4 channels: rotation and beamforming are linear with real
    coefficients, so they are applied to the spectra. This equals
    :func:`pipeline.foa.rotate_to_viewpoints` and :func:`pipeline.foa.beamform` followed by
    :func:`logmel` up to float32 rounding (tested). The IV of the rotated field is the rotated IV,
    as W and the energy are rotation invariant.

    Args:
        foa: ``(4, cfg.n_samples)`` ambiX window.
        azimuth_rad, elevation_rad: ``(K,)`` viewpoints in radians.
    Returns:
        dict of float32 arrays: ``logmel_foa`` ``(K, 4, M, F)`` (rotated W, Y, Z, X, one dB floor
        per viewpoint), ``iv`` ``(K, 3, M, F)`` (IV of the rotated field, X, Y, Z) and
        ``logmel_beam`` ``(K, 1, M, F)`` (``cfg.beam_pattern`` beam toward each viewpoint of the
        unrotated field), with ``M = cfg.n_mels`` and ``F = cfg.n_frames``.
    """
    foa = _require_window(foa, cfg, exact_length=True)
    azimuth_rad, elevation_rad = _require_angles(azimuth_rad, elevation_rad)
    num_viewpoints = azimuth_rad.shape[0]
    spec_tf = _window_spectrum(foa, cfg)  # (4, F, n_bins) complex64
    n_frames = spec_tf.shape[1]

    # Rows 4k..4k+3 rotate the ACN channels toward viewpoint k and row 4K + k is its beam; one
    # kernel mixes the spectra and projects their magnitudes on the mel bands. In this order
    # both outputs are contiguous slices of the kernel's (no 7 MB copies per window).
    mixing = np.concatenate(
        [rotation_matrix_to_front(azimuth_rad, elevation_rad).reshape(4 * num_viewpoints, 4),
         beam_weights(azimuth_rad, elevation_rad, cfg.beam_pattern)]).astype(np.float32)
    mel_magnitude = _mixed_mel_magnitude(mixing, spec_tf, cfg)
    rotated = mel_magnitude[:4 * num_viewpoints].reshape(num_viewpoints, 4, cfg.n_mels, n_frames)
    beams = mel_magnitude[4 * num_viewpoints:].reshape(num_viewpoints, 1, cfg.n_mels, n_frames)
    logmel_foa = _amplitude_to_db(rotated, cfg.top_db, axes=(1, 2, 3))
    logmel_beam = _amplitude_to_db(beams, cfg.top_db, axes=(1, 2, 3))

    iv_unrotated = _intensity_mel_from_spec(spec_tf, cfg)  # (3, M, F)
    rot_xyz = dipole_rotation_matrix(azimuth_rad, elevation_rad).astype(np.float32)  # (K, 3, 3)
    iv = (rot_xyz @ iv_unrotated.reshape(3, -1)).reshape(num_viewpoints, 3, cfg.n_mels, n_frames)
    return {
        "logmel_foa": np.ascontiguousarray(logmel_foa, dtype=np.float32),
        "iv": np.ascontiguousarray(iv, dtype=np.float32),
        "logmel_beam": np.ascontiguousarray(logmel_beam, dtype=np.float32),
    }


def _summed_intensity(foa, cfg: AudioFeatureConfig) -> tuple[np.ndarray, float]:
    foa = _require_window(foa, cfg, exact_length=False)
    spec_tf = _stft_frames(foa.astype(np.float64), cfg.n_fft, cfg.hop_length)
    intensity, energy = _intensity_and_energy(spec_tf)
    return intensity.sum(axis=(1, 2)), float(energy.sum())


def doa_from_intensity(foa, cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> tuple[float, float]:
    """Direction of arrival ``(azimuth_rad, elevation_rad)`` of the summed active intensity.

    The sum of the unnormalised ``Re{conj(W) [X, Y, Z]}`` over all STFT bins (``cfg.n_fft``,
    ``cfg.hop_length``) is the energy-weighted mean of the per-bin normalised IV.
    """
    intensity_sum, _ = _summed_intensity(foa, cfg)
    azimuth_rad, elevation_rad = vector_to_direction(intensity_sum)
    return float(azimuth_rad), float(elevation_rad)


def intensity_directness(foa, cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> float:
    """``|sum I| / sum E`` over all STFT bins: 1 for one plane wave, about 0 when diffuse.

    This is one minus the diffuseness estimate of directional audio coding (SN3D energy).
    """
    intensity_sum, energy_sum = _summed_intensity(foa, cfg)
    return float(np.linalg.norm(intensity_sum) / (energy_sum + IV_EPSILON))


# --------------------------------------------------------------------------- normalisation


@dataclass
class NormStatsAccumulator:
    """Streaming per-key, per-(channel, mel band) mean and variance (Chan et al. merge of
    batch moments, float64), mergeable across workers.

    Feed feature arrays shaped ``(..., C, M, F)``; statistics are over all leading axes and F.
    """

    count: dict[str, int] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    m2: dict[str, np.ndarray] = field(default_factory=dict)  # sum of squared deviations

    def add_moments(self, key: str, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Fold in the moments of ``count`` values per (C, M) entry: their ``mean`` and the sum of
        squared deviations ``m2`` (float64, shaped (C, M))."""
        if key not in self.count:
            self.count[key], self.mean[key], self.m2[key] = count, mean, m2
            return
        if mean.shape != self.mean[key].shape:
            raise ValueError(f"{key}: expected (C, M) = {self.mean[key].shape}, got {mean.shape}")
        total = self.count[key] + count
        delta = mean - self.mean[key]
        self.mean[key] = self.mean[key] + delta * (count / total)
        self.m2[key] = self.m2[key] + m2 + delta**2 * (self.count[key] * count / total)
        self.count[key] = total

    def update(self, features: Mapping[str, np.ndarray], keys: Iterable[str] | None = None) -> None:
        """Add one batch: ``features[key]`` shaped ``(..., C, M, F)`` per key (default: all)."""
        for key in features if keys is None else keys:
            x = np.array(features[key], dtype=np.float64)        # a copy: modified below
            if x.ndim < 3:
                raise ValueError(f"{key}: expected features shaped (..., C, M, F), got {x.shape}")
            # Reduce over the leading axes and F in place of a (N, C, M) transposed copy.
            axes = (*range(x.ndim - 3), x.ndim - 1)
            count = x.size // (x.shape[-3] * x.shape[-2])
            mean = x.sum(axis=axes) / count                                   # (C, M)
            x -= mean[..., None]
            np.square(x, out=x)
            self.add_moments(key, count, mean, x.sum(axis=axes))

    def merge(self, other: NormStatsAccumulator) -> None:
        """Fold another accumulator (e.g. from another worker) into this one."""
        for key in other.count:
            self.add_moments(key, other.count[key], other.mean[key].copy(), other.m2[key].copy())

    def finalize(self, min_std: float = 1e-5) -> NormStats:
        """Population mean/std per key (std floored at ``min_std``) as :class:`NormStats`."""
        return NormStats(
            mean={k: self.mean[k].astype(np.float32) for k in self.count},
            std={
                k: np.maximum(np.sqrt(self.m2[k] / self.count[k]), min_std).astype(np.float32)
                for k in self.count
            },
            count=dict(self.count),
        )


@dataclass
class NormStats:
    """Per-key, per-channel, per-mel-band standardisation statistics.

    ``mean[key]`` and ``std[key]`` are float32 ``(C, M)``; ``count[key]`` is the number of
    (example, frame) values each entry summarises. Computed on the training split only.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    count: dict[str, int] = field(default_factory=dict)


    @classmethod
    def accumulate(
        cls,
        batches: Iterable[Mapping[str, np.ndarray]],
        keys: Iterable[str] | None = None,
        min_std: float = 1e-5,
    ) -> NormStats:
        """Stream over feature dicts (arrays ``(..., C, M, F)``) and return their statistics."""
        accumulator = NormStatsAccumulator()
        keys = None if keys is None else list(keys)
        for batch in batches:
            accumulator.update(batch, keys)
        if not accumulator.count:
            raise ValueError("NormStats.accumulate: no feature batches were given")
        return accumulator.finalize(min_std)

    def apply(self, key: str, x: np.ndarray) -> np.ndarray:
        """Standardise ``x`` ``(..., C, M, F)`` with the statistics of ``key``; float32."""
        if key not in self.mean:
            raise KeyError(f"no normalisation statistics for {key!r}; have {sorted(self.mean)}")
        mean, std = self.mean[key], self.std[key]
        if x.shape[-3:-1] != mean.shape:
            raise ValueError(
                f"{key}: expected (..., C, M, F) with (C, M) = {mean.shape}, got {x.shape}"
            )
        return ((x - mean[:, :, None]) / std[:, :, None]).astype(np.float32, copy=False)

    def to_json(self, path) -> None:
        """Write ``norm_stats.json`` (the format of :func:`pipeline.shards.write_norm_stats`)."""
        write_norm_stats(path, {key: (self.mean[key], self.std[key]) for key in self.mean},
                         self.count)

    @classmethod
    def from_json(cls, path) -> NormStats:
        """Read ``norm_stats.json`` (:func:`pipeline.shards.read_norm_stats`)."""
        counts = json.loads(Path(path).read_text()).get("keys", {})
        stats = read_norm_stats(path)
        return cls(mean={k: v.mean for k, v in stats.items()},
                   std={k: v.std for k, v in stats.items()},
                   count={k: int(counts.get(k, {}).get("count", 0)) for k in stats})
