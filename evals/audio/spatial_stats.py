"""Hand-made baseline features for acoustic scene classification of FOA recordings.

Two segment-level descriptors, each a fixed-length vector per (typically 30 s) segment, fed to
the same linear classifier as the learned embeddings (:mod:`evals.audio.scenes`):

- :func:`logmel_stats`: mean and standard deviation over time of the log-mel energies (dB) of
  the omnidirectional channel W, per mel band -> ``2 * n_mels`` values.
- :func:`dirac_stats`: directional-audio-coding (DirAC, Pulkki 2007) parameters per band:
  the mean unit direction of the active intensity and the diffuseness
  ``psi = 1 - |<I>| / <E>`` -> ``4 * n_bands`` values.

Conventions (docs/CONVENTIONS.md): FOA is ambiX (ACN ``W, Y, Z, X``; SN3D); directions use
the (x front, y left, z up) frame. Per STFT bin the active intensity is
``I = Re{conj(W) [X, Y, Z]}`` and the SN3D energy ``E = (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2``,
so that one plane wave gives ``|I| = E`` (``psi = 0``) and an ideal diffuse field gives
``<I> -> 0`` (``psi -> 1``); these are the quantities of :mod:`pipeline.features`, kept
unnormalised here so that they can be summed over bins, bands and time blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.features import AudioFeatureConfig, logmel, mel_filterbank, stft
from pipeline.foa import ACN_W, ACN_X, ACN_Y, ACN_Z

__all__ = [
    "SpatialStatsConfig",
    "band_intensity_energy",
    "block_sums",
    "diffuseness",
    "dirac_stats",
    "logmel_stats",
]


@dataclass(frozen=True)
class SpatialStatsConfig:
    """Parameters of the baseline descriptors.

    ``n_bands`` mel bands (Slaney, 0 .. ``fmax_hz``) group the STFT bins for the DirAC
    parameters; ``block_frames`` STFT frames (``block_frames * hop_length / sample_rate``
    seconds, 0.2 s by default) form the short-time expectation ``<.>`` of the diffuseness.
    """

    sample_rate: int = 24000
    n_fft: int = 512
    hop_length: int = 240
    n_mels: int = 128          # bands of the log-mel statistics
    n_bands: int = 32          # bands of the DirAC statistics
    fmax_hz: float = 12000.0
    block_frames: int = 20

    def logmel_config(self) -> AudioFeatureConfig:
        return AudioFeatureConfig(sample_rate=self.sample_rate, n_fft=self.n_fft,
                                  hop_length=self.hop_length, n_mels=self.n_mels,
                                  fmax_hz=self.fmax_hz)

    def band_config(self) -> AudioFeatureConfig:
        return AudioFeatureConfig(sample_rate=self.sample_rate, n_fft=self.n_fft,
                                  hop_length=self.hop_length, n_mels=self.n_bands,
                                  fmax_hz=self.fmax_hz)


def _require_foa_2d(foa) -> np.ndarray:
    foa = np.asarray(foa, dtype=np.float32)
    if foa.ndim != 2 or foa.shape[0] != 4:
        raise ValueError(f"expected FOA shaped (4, n_samples) in ambiX, got {foa.shape}")
    return foa


def band_intensity_energy(foa, cfg: SpatialStatsConfig = SpatialStatsConfig()
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Active intensity and SN3D energy summed over the STFT bins of each band.

    Args:
        foa: ``(4, n)`` ambiX window at ``cfg.sample_rate``.
    Returns:
        ``intensity`` float64 ``(3, n_bands, T)`` (components x, y, z; squared STFT amplitude
        units) and ``energy`` float64 ``(n_bands, T)``, with ``T = 1 + n // hop_length``
        frames. Bins are weighted by the (non-negative) mel filterbank of ``cfg.n_bands`` bands.
    """
    foa = _require_foa_2d(foa)
    spec = stft(foa, cfg.n_fft, cfg.hop_length)  # (4, F, T) complex64
    w = spec[ACN_W]
    dipoles = spec[[ACN_X, ACN_Y, ACN_Z]]
    intensity_bins = (w.real * dipoles.real + w.imag * dipoles.imag).astype(np.float64)
    energy_bins = 0.5 * (spec.real.astype(np.float64) ** 2
                         + spec.imag.astype(np.float64) ** 2).sum(axis=0)
    weights = np.asarray(mel_filterbank(cfg.band_config()), dtype=np.float64)  # (B, F)
    intensity = np.einsum("bf,cft->cbt", weights, intensity_bins)
    energy = weights @ energy_bins
    return intensity, energy


def block_sums(values: np.ndarray, block_frames: int) -> np.ndarray:
    """Sum ``values (..., T)`` over consecutive blocks of ``block_frames`` frames.

    A final partial block is kept when it holds at least half a block (else dropped, unless it
    is the only one). Returns ``(..., n_blocks)``.
    """
    n_frames = values.shape[-1]
    n_full, rest = divmod(n_frames, block_frames)
    blocks = [values[..., :n_full * block_frames].reshape(*values.shape[:-1], n_full, block_frames)
              .sum(axis=-1)] if n_full else []
    if rest and (2 * rest >= block_frames or n_full == 0):
        blocks.append(values[..., n_full * block_frames:].sum(axis=-1, keepdims=True))
    return np.concatenate(blocks, axis=-1)


def diffuseness(intensity: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """DirAC diffuseness ``psi = 1 - |I| / E`` in [0, 1] from summed ``I (3, ...)``, ``E (...)``.

    Silent cells (``E == 0``) are reported as fully diffuse (1).
    """
    norm = np.linalg.norm(intensity, axis=0)
    ratio = np.divide(norm, energy, out=np.zeros_like(norm), where=energy > 0)
    return np.clip(1.0 - ratio, 0.0, 1.0)


def dirac_stats(foa, cfg: SpatialStatsConfig = SpatialStatsConfig()) -> np.ndarray:
    """DirAC statistics of one segment: per band the mean direction and the diffuseness.

    Within each block of ``cfg.block_frames`` frames and each band the intensity and energy are
    summed (the DirAC expectation); per block this gives a unit direction ``u = <I> / |<I>|``
    and ``psi = 1 - |<I>| / <E>``. Over the blocks of the segment, both are averaged with the
    block energies as weights (so that silent blocks do not vote).

    Args:
        foa: ``(4, n)`` ambiX segment at ``cfg.sample_rate``.
    Returns:
        float32 ``(4 * n_bands,)``: ``[u_x (B), u_y (B), u_z (B), psi (B)]``; the mean unit
        vector is not renormalised, its length says how steady the direction is.
    """
    intensity, energy = band_intensity_energy(foa, cfg)
    intensity_blocks = block_sums(intensity, cfg.block_frames)  # (3, B, nb)
    energy_blocks = block_sums(energy, cfg.block_frames)        # (B, nb)
    norm = np.linalg.norm(intensity_blocks, axis=0)
    unit = np.divide(intensity_blocks, norm, out=np.zeros_like(intensity_blocks), where=norm > 0)
    psi = diffuseness(intensity_blocks, energy_blocks)
    total = energy_blocks.sum(axis=-1)
    weights = np.divide(energy_blocks, total[:, None], out=np.full_like(energy_blocks,
                        1.0 / energy_blocks.shape[-1]), where=total[:, None] > 0)
    mean_unit = (unit * weights).sum(axis=-1)  # (3, B)
    mean_psi = (psi * weights).sum(axis=-1)    # (B,)
    return np.concatenate([mean_unit.reshape(-1), mean_psi]).astype(np.float32)


def logmel_stats(foa, cfg: SpatialStatsConfig = SpatialStatsConfig()) -> np.ndarray:
    """Mean and standard deviation over time of the W-channel log-mel (dB), per band.

    Args:
        foa: ``(4, n)`` ambiX segment (only W, ACN 0, is used) at ``cfg.sample_rate``.
    Returns:
        float32 ``(2 * n_mels,)``: ``[mean (M), std (M)]`` in dB re full scale.
    """
    foa = _require_foa_2d(foa)
    n_frames = 1 + foa.shape[1] // cfg.hop_length
    feature_cfg = replace(cfg.logmel_config(), n_frames=n_frames)
    db = logmel(foa[ACN_W], feature_cfg)  # (M, T)
    return np.concatenate([db.mean(axis=-1), db.std(axis=-1)]).astype(np.float32)
