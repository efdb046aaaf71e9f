"""A trained model, frozen, as the evaluators use it: from raw FOA or stored shard features to
encoder features, in batches, with exactly the audio input and normalisation of its training.

What a checkpoint does not hold, and where it comes from:

- The audio feature parameters (:class:`pipeline.features.AudioFeatureConfig`): read from the
  attributes of the training shards (``config.audio``, written by ``pipeline.preprocess``),
  falling back to their ``sample_rate`` / ``n_mels`` / ``n_frames`` attributes.
- The per-mel-band normalisation: ``<data.shards_dir>/norm_stats.json`` of the training shards
  (the file the trainer used), or an explicit path. A model trained with normalisation is
  useless without its statistics, so a missing file is an error (pass ``none`` to skip
  normalisation on purpose).

Audio inputs (``data.audio_input``): ``foa`` = 4 log-mel channels of the FOA rotated toward
each viewpoint, ``foa_iv`` = those plus the 3 intensity-vector channels, ``beamform`` = the
log-mel of a first-order beam toward the viewpoint; see :data:`trainer.config.AUDIO_FEATURES`.
Video inputs are crops ``(T, S, S, 3)`` uint8 RGB, fed as float ``[0, 1]`` (the video encoder
applies its own mean/std).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from pipeline.config import ConfigError
from pipeline.features import AudioFeatureConfig, audio_feature_config, foa_features
from pipeline.foa import AMBISONIC_CONVENTIONS, fuma_to_ambix, hoa_to_foa, n3d_to_sn3d
from pipeline.shards import (NORM_STATS_NAME, FeatureNorm, ShardIndex, corrupt_shard,
                             open_shard, read_norm_stats, shard_settings, stored_crops,
                             stored_features)
from pipeline.runtime import REPO_ROOT
from trainer.checkpoint import load_checkpoint, load_trained_model
from trainer.config import AUDIO_FEATURES, TrainConfig
from trainer.distributed import resolve_device
from trainer.models import AVSpatialModel, fuse_batchnorm

log = logging.getLogger(__name__)


__all__ = [
    "FrozenModel",
    "load_frozen",
    "resolve_device",
    "resolve_data_path",
    "feature_config_from_shards",
    "select_audio_input",
    "normalise_audio_input",
    "read_ambisonic_segment",
    "resample_foa",
    "window_starts",
    "iter_shard_batches",
    "run_dir_of",
    "describe_run",
]


# ----------------------------------------------------------------------------- small helpers

def resolve_data_path(path: str | Path) -> Path:
    """A relative data path as the trainer saw it: relative to the working directory when it
    exists there, else relative to the repository root (configs store repo-relative paths)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def feature_config_from_shards(shards_dir: str | Path) -> AudioFeatureConfig:
    """The audio feature parameters the shards under ``shards_dir`` were made with.

    Reads the first indexed shard (:func:`pipeline.features.audio_feature_config`). No shard at
    all gives the defaults, with a warning.
    """
    shards_dir = resolve_data_path(shards_dir)
    paths = ShardIndex.load(shards_dir).paths()
    if not paths:
        log.warning("no shards indexed under %s: using the default audio feature config",
                    shards_dir)
        return AudioFeatureConfig()
    with open_shard(paths[0]) as h5:
        return audio_feature_config(dict(h5.attrs))


def select_audio_input(features: Mapping[str, np.ndarray], audio_input: str) -> list[np.ndarray]:
    """The feature arrays ``(..., C_key, M, F)`` feeding ``audio_input``, in channel order."""
    return [np.asarray(features[key], dtype=np.float32) for key in AUDIO_FEATURES[audio_input]]


def normalise_audio_input(features: Mapping[str, np.ndarray], audio_input: str,
                          norm: Mapping[str, FeatureNorm]) -> np.ndarray:
    """Standardise and stack the features of ``audio_input`` as the trainer does.

    Args:
        features: ``{key: (..., C_key, M, F)}`` (``logmel_foa`` dB, ``iv``, ``logmel_beam`` dB).
        norm: per-key statistics (:func:`pipeline.shards.read_norm_stats`); keys without
            statistics pass through unchanged.
    Returns:
        float32 ``(..., C, M, F)`` with C = 4 (foa), 7 (foa_iv) or 1 (beamform).
    """
    channels = []
    for key, value in zip(AUDIO_FEATURES[audio_input], select_audio_input(features, audio_input)):
        if key in norm:
            stats = norm[key]
            if stats.mean.shape != value.shape[-3:-1]:
                raise ValueError(f"{key}: normalisation statistics are (C, M) = "
                                 f"{stats.mean.shape}, features are {value.shape[-3:-1]}; "
                                 f"the feature config differs from the training shards'")
            value = (value - stats.mean[..., None]) / stats.std[..., None]
        channels.append(value)
    return np.ascontiguousarray(np.concatenate(channels, axis=-3), dtype=np.float32)


def read_ambisonic_segment(path: str | Path, start_s: float = 0.0,
                           duration_s: float | None = None, convention: str = "ambix"
                           ) -> tuple[np.ndarray, int]:
    """Read ``[start_s, start_s + duration_s)`` of an ambisonic file as first-order ambiX.

    Only that segment is read (a 10-minute 25-channel EigenScape file would not fit in memory
    whole). Same conversions as :func:`pipeline.foa.load_ambisonic_wav`.

    Args:
        path: any file soundfile reads (wav, flac, ogg).
        start_s, duration_s: segment in seconds; ``duration_s=None`` reads to the end.
        convention: ``ambix`` (ACN/SN3D, any order >= 1), ``fuma`` (first order W, X, Y, Z with
            W at -3 dB) or ``acn_n3d`` (ACN/N3D, any order >= 1).
    Returns:
        ``(foa, sample_rate)``: float32 ``(4, n)`` ambiX (ACN W, Y, Z, X; SN3D), higher orders
        dropped; ``n`` is shorter than asked when the file ends first.
    """
    if convention not in AMBISONIC_CONVENTIONS:
        raise ValueError(f"convention must be one of {AMBISONIC_CONVENTIONS}, got {convention!r}")
    info = sf.info(str(path))
    start = int(round(start_s * info.samplerate))
    frames = -1 if duration_s is None else int(round(duration_s * info.samplerate))
    data, sample_rate = sf.read(str(path), start=start, frames=frames, dtype="float32",
                                always_2d=True)
    signal = np.ascontiguousarray(data.T)
    if convention == "fuma":
        return np.ascontiguousarray(fuma_to_ambix(signal)), sample_rate
    foa = hoa_to_foa(signal)
    if convention == "acn_n3d":
        foa = n3d_to_sn3d(foa)
    return np.ascontiguousarray(foa, dtype=np.float32), sample_rate


def resample_foa(foa: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of ``(4, n)`` (any ``(..., n)``) from ``rate_in`` to ``rate_out`` Hz;
    float32. Channels are resampled identically, so the spatial image is unchanged."""
    if rate_in == rate_out:
        return np.asarray(foa, dtype=np.float32)
    common = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(foa, rate_out // common, rate_in // common, axis=-1).astype(np.float32)


def window_starts(n_samples: int, window: int, hop_samples: int) -> np.ndarray:
    """Start indices of every full ``window``-sample window, ``hop_samples`` apart, in
    ``n_samples``."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop_samples, dtype=np.int64)


# ----------------------------------------------------------------------------- the model

@dataclass
class FrozenModel:
    """A trained :class:`AVSpatialModel` in eval mode with what its inputs need.

    Attributes:
        model: the network (no gradients).
        config: the training config (``data.audio_input`` picks the audio channels).
        feature_cfg: audio feature parameters of the training shards.
        norm: per-feature normalisation statistics (empty = none).
        device: where the network runs.
        trained_on: the training shards' settings recorded in the checkpoint
            (:func:`pipeline.shards.shard_settings`; empty for older checkpoints).
    """

    model: AVSpatialModel
    config: TrainConfig
    feature_cfg: AudioFeatureConfig
    norm: dict[str, FeatureNorm]
    device: torch.device
    trained_on: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_input(self) -> str:
        return self.config.data.audio_input

    @property
    def feature_dim(self) -> int:
        return self.config.model.feature_dim

    # -- audio ---------------------------------------------------------------------------
    def audio_input_from_features(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Stored or computed features ``{key: (..., C_key, M, F)}`` -> model input
        ``(..., C, M, F)``, standardised and stacked."""
        return normalise_audio_input(features, self.audio_input, self.norm)

    def audio_input_from_foa(self, foa_window: np.ndarray, azimuth_rad,
                             elevation_rad) -> np.ndarray:
        """Model input ``(K, C, M, F)`` of one FOA window ``(4, n)`` (ambiX, ``feature_cfg``
        sample rate and length) rotated toward each of K directions (radians)."""
        features = foa_features(foa_window, azimuth_rad, elevation_rad, self.feature_cfg)
        return self.audio_input_from_features(features)

    @torch.no_grad()
    def encode_audio(self, audio: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Audio encoder features: ``(N, C, M, F)`` normalised input -> float32 ``(N, D)``."""
        return self._batched(self.model.audio_encoder, np.asarray(audio, dtype=np.float32),
                             batch_size)

    @torch.no_grad()
    def encode_audio_frames(self, audio: np.ndarray, n_frames: int,
                            batch_size: int = 64) -> np.ndarray:
        """Frame-wise audio features: ``(N, C, M, F)`` normalised input -> float32
        ``(N, n_frames, D)``: the encoder's map before global pooling, max over its mel axis,
        then linearly resampled along time to ``n_frames`` evenly spaced frames per window."""
        def frames(batch: torch.Tensor) -> torch.Tensor:
            per_time = self.model.audio_encoder.feature_map(batch).amax(dim=2)     # (N, D, F')
            resampled = torch.nn.functional.interpolate(per_time.float(), size=n_frames,
                                                        mode="linear", align_corners=False)
            return resampled.transpose(1, 2)                                      # (N, T, D)
        out = self._batched(frames, np.asarray(audio, dtype=np.float32), batch_size)
        return out.reshape(len(audio), n_frames, self.feature_dim)

    @torch.no_grad()
    def encode_video(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Video encoder features: crops ``(N, T, S, S, 3)`` uint8 RGB -> float32 ``(N, D)``."""
        crops = np.asarray(crops)
        if crops.ndim != 5 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops shaped (N, T, S, S, 3), got {crops.shape}")

        def encoder(batch_uint8: torch.Tensor) -> torch.Tensor:
            video = batch_uint8.permute(0, 4, 1, 2, 3).float().div_(255.0)   # (N, 3, T, S, S)
            return self.model.video_encoder(video)
        return self._batched(encoder, crops, batch_size)

    @torch.no_grad()
    def translate(self, features: np.ndarray, direction: str, azimuth_rad: np.ndarray,
                  elevation_rad: np.ndarray) -> np.ndarray:
        """Translation network over the K viewpoints of each clip.

        Args:
            features: ``(B, K, D)`` encoder features of one modality.
            direction: ``v2a`` (g_v2a: video features -> predicted audio features) or ``a2v``.
            azimuth_rad, elevation_rad: ``(B, K)`` viewpoints (used only by models trained
                with ``model.viewpoint_encoding``).
        Returns:
            float32 ``(B, K, D)``.
        """
        network = {"v2a": self.model.video_to_audio, "a2v": self.model.audio_to_video}[direction]
        tokens = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        az = torch.from_numpy(np.asarray(azimuth_rad, dtype=np.float32)).to(self.device)
        el = torch.from_numpy(np.asarray(elevation_rad, dtype=np.float32)).to(self.device)
        return network(tokens, az, el).float().cpu().numpy()

    @torch.no_grad()
    def project(self, features: np.ndarray, head: str) -> np.ndarray:
        """Projection head of ``(..., D)`` features -> ``(..., E)``: ``video`` / ``audio`` for
        encoder features, ``video_pred`` / ``audio_pred`` for translated ones."""
        layer = {"video": self.model.video_head, "audio": self.model.audio_head,
                 "video_pred": self.model.video_pred_head,
                 "audio_pred": self.model.audio_pred_head}[head]
        x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        return layer(x).float().cpu().numpy()

    def _batched(self, fn, array: np.ndarray, batch_size: int) -> np.ndarray:
        outputs = []
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")
        with autocast:
            for start in range(0, len(array), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(array[start:start + batch_size]))
                outputs.append(fn(batch.to(self.device, non_blocking=True)).float().cpu().numpy())
        if not outputs:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)


def _norm_stats(config: TrainConfig, norm_stats: str | Path | None) -> dict[str, FeatureNorm]:
    if norm_stats is not None and str(norm_stats).lower() == "none":
        log.warning("audio normalisation disabled on request (norm_stats=none)")
        return {}
    if norm_stats is None and not config.data.normalize_audio:
        return {}
    path = (Path(norm_stats) if norm_stats is not None
            else resolve_data_path(config.data.shards_dir) / NORM_STATS_NAME)
    if not path.is_file():
        raise FileNotFoundError(
            f"normalisation statistics not found: {path} (the training shards' {NORM_STATS_NAME}"
            f"); pass norm_stats=PATH, or norm_stats=none to evaluate unnormalised inputs")
    return read_norm_stats(path)


def load_frozen(ckpt_path: str | Path, device: str | torch.device = "auto",
                norm_stats: str | Path | None = None,
                feature_cfg: AudioFeatureConfig | None = None) -> FrozenModel:
    """Load a checkpoint written by ``trainer.train`` as a :class:`FrozenModel`.

    Args:
        ckpt_path: ``runs/<name>/ckpt.pt``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        norm_stats: path of ``norm_stats.json``; default: the training shards'; ``"none"``: off.
        feature_cfg: audio feature parameters; default: read from the training shards.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    checkpoint = load_checkpoint(ckpt_path, map_location="cpu")
    model, config = load_trained_model(ckpt_path, device, checkpoint)
    fuse_batchnorm(model.eval().requires_grad_(False))
    norm = _norm_stats(config, norm_stats)
    trained_on = checkpoint.get("shards") or {}
    if feature_cfg is None and trained_on.get("audio"):   # as trained, whatever the folder holds now
        feature_cfg = audio_feature_config({"config": {"audio": trained_on["audio"]}})
    feature_cfg = feature_cfg or feature_config_from_shards(config.data.shards_dir)
    log.info("loaded %s: experiment %s, audio input %s (%d channels), features %d mels x %d "
             "frames at %d Hz, normalisation %s, device %s", ckpt_path, config.experiment,
             config.data.audio_input, config.data.audio_channels, feature_cfg.n_mels,
             feature_cfg.n_frames, feature_cfg.sample_rate, sorted(norm) or "off", device)
    return FrozenModel(model, config, feature_cfg, norm, device, trained_on)


def evaluation_shards(frozen: FrozenModel, shards_dir: str | Path | None = None) -> Path:
    """The shard folder an evaluation reads (default: the model's training shards), refused
    with a :class:`ConfigError` when its audio feature settings differ from those the model was
    trained on (recorded in the checkpoint): features made otherwise would be scored silently
    (other ``fmax_hz``/``top_db`` shift every value, other ``n_mels`` breaks the shapes)."""
    path = resolve_data_path(shards_dir or frozen.config.data.shards_dir)
    trained = frozen.trained_on.get("audio")
    if trained:
        now = shard_settings(path).get("audio") or {}
        differ = [f"{key} {trained.get(key)} -> {now.get(key)}"
                  for key in sorted(set(trained) | set(now)) if trained.get(key) != now.get(key)]
        if differ:
            raise ConfigError(
                f"{path}: made with other audio feature settings than the shards the model was "
                f"trained on ({frozen.trained_on.get('folder')}): {', '.join(differ)}; evaluate "
                f"on shards made with the training settings, or retrain on these")
    return path


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of a checkpoint (``runs/<name>/ckpt.pt`` -> ``runs/<name>``)."""
    return Path(ckpt_path).resolve().parent


def describe_run(frozen: FrozenModel, ckpt_path: str | Path) -> dict[str, Any]:
    """Identification fields every evaluation JSON carries."""
    experiment = frozen.config.experiment
    config_path = Path("configs") / "experiments" / f"{experiment}.yaml"
    return {
        "experiment": experiment,
        "checkpoint": str(ckpt_path),
        "config_path": str(config_path) if (REPO_ROOT / config_path).is_file() else "",
        "run_config": str(run_dir_of(ckpt_path) / "config.yaml"),
        "audio_input": frozen.audio_input,
        "viewpoints": frozen.config.data.viewpoints,
    }


# ----------------------------------------------------------------------------- shard reading

GT_FIELDS = ("gt/count", "gt/azimuth_rad", "gt/elevation_rad", "gt/sounding", "gt/visible")


def iter_shard_batches(shards_dir: str | Path, split: str, view_set: str,
                       num_viewpoints: int, feature_keys: tuple[str, ...] = (),
                       batch_size: int = 32, max_samples: int = 0, seed: int = 0,
                       extra_fields: tuple[str, ...] = ()):
    """Read the samples of one split in contiguous row slices, without augmentation.

    Shards are visited in a seeded random order and read front to back, until ``max_samples``
    samples (0 = all). Yields dicts of arrays over the B rows of a slice:
    ``crops`` (B, K, T, S, S, 3) uint8, ``features`` {key: (B, K, C, M, F) float32},
    ``azimuth_rad`` / ``elevation_rad`` (B, K) float32 (the first K stored viewpoints of
    ``view_set``), ``foa`` (B, 4, A) float32 (unrotated ambiX), ``clip_id`` (B,) str,
    ``window_index`` (B,) int, ``shard`` (name) and ``row`` (B,) int, plus the requested ``extra_fields`` present in the
    shard (e.g. ``keyframe``, ``gt/azimuth_rad``), keyed by their schema names.
    """
    shards_dir = resolve_data_path(shards_dir)
    paths = ShardIndex.load(shards_dir).paths(split)
    if not paths:
        raise FileNotFoundError(f"no shards of split '{split}' indexed in "
                                f"{shards_dir / 'shards.jsonl'}")
    order = np.random.default_rng(seed).permutation(len(paths))
    prefix = f"views/{view_set}"
    remaining = max_samples if max_samples > 0 else None
    for index in order:
        path = paths[index]
        with open_shard(path) as h5:
            n_rows = int(h5["clip_id"].shape[0])
            stored_k = int(h5[f"{prefix}/azimuth_rad"].shape[1])
            if num_viewpoints > stored_k:
                raise ValueError(f"{path}: {stored_k} viewpoints stored in {prefix}, "
                                 f"{num_viewpoints} requested")
            k = num_viewpoints
            for start in range(0, n_rows, batch_size):
                stop = min(start + batch_size, n_rows)
                if remaining is not None:
                    stop = min(stop, start + remaining)
                rows = slice(start, stop)
                try:
                    batch = _read_rows(h5, prefix, rows, k, feature_keys, extra_fields)
                except OSError as exc:                 # a chunk failing its checksum
                    raise corrupt_shard(path, f"rows {start}-{stop - 1}", exc) from exc
                batch.update(shard=Path(path).name, row=np.arange(start, stop))
                yield batch
                if remaining is not None:
                    remaining -= stop - start
                    if remaining <= 0:
                        return


def other_shards_dir(run_dir: Path, frozen: FrozenModel, shards_dir: Path) -> Path:
    """Where an evaluation's default output goes: the run folder for the model's own training
    shards, ``<run>/on_<folder name>/`` for any other folder, so that an evaluation on other
    shards never replaces the run's own."""
    own = resolve_data_path(frozen.config.data.shards_dir).resolve()
    return run_dir if Path(shards_dir).resolve() == own else run_dir / f"on_{Path(shards_dir).name}"


def _read_rows(h5, prefix: str, rows: slice, k: int, feature_keys: Sequence[str],
               extra_fields: Sequence[str]) -> dict[str, Any]:
    """Rows ``rows`` of an open shard at its first ``k`` viewpoints of ``prefix``."""
    batch = {
        "crops": stored_crops(h5, f"{prefix}/crops")[rows, :k],
        "features": {key: stored_features(h5, f"{prefix}/{key}")[rows, :k]
                     for key in feature_keys},
        "azimuth_rad": h5[f"{prefix}/azimuth_rad"][rows, :k].astype(np.float32),
        "elevation_rad": h5[f"{prefix}/elevation_rad"][rows, :k].astype(np.float32),
        "foa": h5["foa_acn_sn3d"][rows].astype(np.float32),
        "clip_id": np.asarray(h5["clip_id"].asstr()[rows]),
        "window_index": h5["window_index"][rows].astype(np.int64),
    }
    for name in extra_fields:
        if name in h5:
            batch[name] = h5[name][rows]
    return batch
