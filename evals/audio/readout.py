"""Frame-wise read-outs of a frozen audio encoder that keep direction, shared by the SELD
evaluation (:mod:`evals.audio.seld`) and the direction probe (:mod:`evals.audio.direction`).

A read-out turns one FOA recording (ambiX: ACN W, Y, Z, X, SN3D, at the model's sample rate)
into one fixed-length vector per 100 ms label frame (``pipeline.importers.starss23.LABEL_HOP_S``).

- :func:`multiview_frames` (the ``encoder`` / ``random_encoder`` arms): the sound field of each
  1 s window (non-overlapping, the last zero-padded) is rotated toward K viewpoints spread over
  the sphere (:class:`ReadoutConfig`; default the 8 azimuths 0, 45, ..., 315 deg on the
  horizon) with the training input (:meth:`evals.frozen.FrozenModel.audio_input_from_foa`, i.e.
  :func:`pipeline.features.foa_features`: yaw then pitch, ``docs/CONVENTIONS.md``), as the
  AVSA pretext asked "what comes from the direction I look at". The encoder's map before global
  pooling ``(D, M', F')`` keeps its mel axis (average-pooled to at most ``max_mel_bins`` bands)
  and its time axis is linearly resampled to the 10 label frames of the window. Per label frame:
  ``(K, D, M'')`` flattened viewpoint-major to ``K * D * M''`` float32.
- :func:`front_view_frames` (the ``front_view`` arm, the earlier SELD read-out): the front
  viewpoint only (az = el = 0), max over the mel axis: ``D`` per frame.
- :func:`hand_feature_frames`: log-mel of W, Y, Z, X and the intensity vector (I_x, I_y, I_z),
  no network, averaged over the STFT frames of each label frame: ``(7, n_mels)`` per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evals.frozen import FrozenModel
from pipeline.features import AudioFeatureConfig, foa_features
from pipeline.importers.starss23 import LABEL_HOP_S

#: Hand-made feature settings: 64 mel bands, 20 ms hop (n_fft 1024), 24 kHz, 1 s windows of 50
#: STFT frames, 5 per label frame.
HAND_FEATURES = AudioFeatureConfig(sample_rate=24000, window_s=1.0, n_fft=1024, hop_length=480,
                                   n_mels=64, fmin_hz=0.0, fmax_hz=12000.0, top_db=100.0,
                                   n_frames=50)


@dataclass(frozen=True)
class ReadoutConfig:
    """Viewpoints (degrees: azimuth counter-clockwise from the front, elevation up; paired
    element-wise, K >= 1) and the mel bands kept of the encoder map (0 = all)."""

    view_azimuths_deg: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0)
    view_elevations_deg: tuple[float, ...] = (0.0,) * 8
    max_mel_bins: int = 8

    def validate(self) -> None:
        if not self.view_azimuths_deg or len(self.view_azimuths_deg) != len(
                self.view_elevations_deg):
            raise ValueError(f"readout: expected as many view_elevations_deg as "
                             f"view_azimuths_deg (at least one), got "
                             f"{len(self.view_elevations_deg)} and {len(self.view_azimuths_deg)}")
        if any(abs(e) > 90.0 for e in self.view_elevations_deg):
            raise ValueError(f"readout.view_elevations_deg: expected values in [-90, 90], got "
                             f"{list(self.view_elevations_deg)}")
        if self.max_mel_bins < 0:
            raise ValueError(f"readout.max_mel_bins: expected >= 0, got {self.max_mel_bins}")

    @property
    def azimuth_rad(self) -> np.ndarray:
        return np.radians(np.asarray(self.view_azimuths_deg, dtype=np.float64))

    @property
    def elevation_rad(self) -> np.ndarray:
        return np.radians(np.asarray(self.view_elevations_deg, dtype=np.float64))


def frames_per_window(window_s: float) -> int:
    """Label frames in one window of ``window_s`` seconds (ValueError if not whole)."""
    frames = window_s / LABEL_HOP_S
    if abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"audio window of {window_s} s is not a whole number of "
                         f"{LABEL_HOP_S} s label frames")
    return int(round(frames))


def split_windows(foa: np.ndarray, n_samples: int, n_label_frames: int,
                  label_frames_per_window: int) -> np.ndarray:
    """Non-overlapping windows ``(W, 4, n_samples)`` of ``(4, n)`` covering ``n_label_frames``
    frames (the last zero-padded)."""
    n_windows = max(1, math.ceil(n_label_frames / label_frames_per_window))
    padded = np.zeros((4, n_windows * n_samples), np.float32)
    length = min(foa.shape[1], padded.shape[1])
    padded[:, :length] = foa[:, :length]
    return padded.reshape(4, n_windows, n_samples).transpose(1, 0, 2)


def readout_dim(frozen: FrozenModel, cfg: ReadoutConfig) -> int:
    """Length ``K * D * M''`` of one :func:`multiview_frames` vector."""
    probe = np.zeros((1, *_input_shape(frozen)), np.float32)
    with torch.no_grad():
        mel = frozen.model.audio_encoder.feature_map(
            torch.from_numpy(probe).to(frozen.device)).shape[2]
    kept = mel if cfg.max_mel_bins == 0 else min(mel, cfg.max_mel_bins)
    return len(cfg.view_azimuths_deg) * frozen.feature_dim * kept


def _input_shape(frozen: FrozenModel) -> tuple[int, int, int]:
    window = np.zeros((4, frozen.feature_cfg.n_samples), np.float32)
    return frozen.audio_input_from_foa(window, [0.0], [0.0]).shape[1:]


@torch.no_grad()
def multiview_frames(frozen: FrozenModel, foa: np.ndarray, n_label_frames: int,
                     cfg: ReadoutConfig = ReadoutConfig(), batch_size: int = 64) -> np.ndarray:
    """The multi-viewpoint read-out of one recording.

    Args:
        frozen: the frozen model (its feature config gives the window and sample rate).
        foa: ``(4, n)`` ambiX at ``frozen.feature_cfg.sample_rate``.
        n_label_frames: 100 ms frames wanted (the recording is cut or zero-padded to them).
    Returns:
        float32 ``(n_label_frames, K * D * M'')``: per frame the encoder map of each viewpoint
        (K, in ``cfg`` order), channel (D) and kept mel band (M'', low to high), in that order.
    """
    cfg.validate()
    per_window = frames_per_window(frozen.feature_cfg.window_s)
    windows = split_windows(foa, frozen.feature_cfg.n_samples, n_label_frames, per_window)
    n_views = len(cfg.view_azimuths_deg)
    windows_per_batch = max(1, batch_size // n_views)
    outputs = []
    for start in range(0, len(windows), windows_per_batch):
        inputs = np.concatenate([frozen.audio_input_from_foa(w, cfg.azimuth_rad,
                                                             cfg.elevation_rad)
                                 for w in windows[start:start + windows_per_batch]])
        batch = torch.from_numpy(inputs).to(frozen.device)               # (w * K, C, M, F)
        fmap = frozen.model.audio_encoder.feature_map(batch).float()     # (N, D, M', F')
        if cfg.max_mel_bins and fmap.shape[2] > cfg.max_mel_bins:
            fmap = torch.nn.functional.adaptive_avg_pool2d(fmap, (cfg.max_mel_bins,
                                                                  fmap.shape[3]))
        n, d, m, f = fmap.shape
        timed = torch.nn.functional.interpolate(fmap.reshape(n, d * m, f), size=per_window,
                                                mode="linear", align_corners=False)
        outputs.append(timed.reshape(n, d, m, per_window).cpu().numpy())
    maps = np.concatenate(outputs)                                       # (W * K, D, M'', 10)
    n_windows = len(windows)
    maps = maps.reshape(n_windows, n_views, *maps.shape[1:])             # (W, K, D, M'', 10)
    frames = maps.transpose(0, 4, 1, 2, 3).reshape(n_windows * per_window, -1)
    return np.ascontiguousarray(frames[:n_label_frames], dtype=np.float32)


def front_view_frames(frozen: FrozenModel, foa: np.ndarray, n_label_frames: int) -> np.ndarray:
    """The earlier read-out: ``(n_label_frames, D)`` float32 of the front viewpoint only
    (az = el = 0), max over the encoder map's mel axis, resampled to the label frames."""
    per_window = frames_per_window(frozen.feature_cfg.window_s)
    windows = split_windows(foa, frozen.feature_cfg.n_samples, n_label_frames, per_window)
    inputs = np.concatenate([frozen.audio_input_from_foa(w, [0.0], [0.0]) for w in windows])
    frames = frozen.encode_audio_frames(inputs, per_window)                       # (W, 10, D)
    return frames.reshape(-1, frames.shape[-1])[:n_label_frames]


def hand_feature_frames(foa: np.ndarray, n_label_frames: int,
                        cfg: AudioFeatureConfig = HAND_FEATURES) -> np.ndarray:
    """``(n_label_frames, 7, n_mels)`` float32: log-mel (dB) of W, Y, Z, X, then the
    intensity vector (I_x, I_y, I_z; x front, y left, z up, SN3D energy normalisation, linear
    mel weights, :func:`pipeline.features.foa_features`), each averaged over the STFT frames of
    a label frame. ``foa``: ``(4, n)`` ambiX at ``cfg.sample_rate``, unrotated."""
    per_window = frames_per_window(cfg.window_s)
    if cfg.n_frames % per_window:
        raise ValueError(f"{cfg.n_frames} STFT frames per window do not split into "
                         f"{per_window} label frames")
    out = []
    for window in split_windows(foa, cfg.n_samples, n_label_frames, per_window):
        features = foa_features(window, [0.0], [0.0], cfg)
        stacked = np.concatenate([features["logmel_foa"][0], features["iv"][0]])  # (7, M, F)
        pooled = stacked.reshape(7, cfg.n_mels, per_window, -1).mean(axis=-1)    # (7, M, 10)
        out.append(pooled.transpose(2, 0, 1))
    return np.concatenate(out)[:n_label_frames].astype(np.float32)
