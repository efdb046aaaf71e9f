"""Configuration of the preprocessing stage (``configs/preprocess.yaml``).

Frozen dataclasses loaded with :func:`pipeline.config.load_config` (strict keys and types,
dotted overrides such as ``dask.n_workers=8 windows.max_per_clip=4``). Degrees appear only here
(``*_deg``); everything downstream uses radians. Relative paths are resolved against the
working directory (the repository root under ``make``).

Two hashes matter:
- :meth:`PreprocessConfig.content_hash` covers every field that changes the *content* of a shard
  (seed, decode, windows, viewpoints, detector model and thresholds, audio features, shard
  grouping and compression). It is stored in every shard and in ``shards.jsonl``; a rerun into an
  ``out_dir`` written with a different content hash is refused (use a new ``out_dir`` or
  ``--force``).
- Fields that only change *how* the run executes are excluded: ``paths.*`` (data may move; the
  clip ids of each shard and the source folder it was read from are checked instead, so a
  shard made from another ``paths.data_root`` is rebuilt), ``dask.*``, ``on_error`` and
  ``detector.device``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pipeline.config import ConfigError, config_hash, to_dict
from pipeline.features import AudioFeatureConfig
from pipeline.shards import MAX_DETECTIONS

__all__ = [
    "PathsConfig",
    "DecodeConfig",
    "WindowsConfig",
    "ViewpointsConfig",
    "DetectorConfig",
    "ShardsConfig",
    "DaskConfig",
    "PreprocessConfig",
]


@dataclass(frozen=True)
class PathsConfig:
    data_root: str = "data/synthetic"               # media paths in the manifest are relative to it
    manifest: str = "data_manifests/synthetic.jsonl"  # make data (pipeline.synth.cli videos)
    out_dir: str = "data/shards/synthetic"          # shards, shards.jsonl, failures.jsonl, ...
    max_clips: int = 0                              # > 0: the first N clips of each split (a trial)


@dataclass(frozen=True)
class DecodeConfig:
    width: int = 512           # equirectangular frames are scaled to width x height (2:1)
    height: int = 256
    fps: float = 16.0          # video is resampled to this rate (frames/s)
    audio_block_s: float = 60.0  # audio is decoded in blocks of this length: memory per worker
    accept_hoa: bool = False   # keep the first 4 ACN channels of higher-order ambiX files

    def validate(self) -> None:
        if self.width != 2 * self.height or self.height < 2:
            raise ConfigError(f"decode: expected width == 2 x height (equirectangular), got "
                              f"{self.width}x{self.height}")
        if self.fps <= 0 or self.audio_block_s <= 0:
            raise ConfigError(f"decode: expected fps > 0 and audio_block_s > 0, got fps="
                              f"{self.fps}, audio_block_s={self.audio_block_s}")


@dataclass(frozen=True)
class WindowsConfig:
    """Sample windows; their length is ``audio.window_s`` (one source of truth)."""

    max_per_clip: int = 10     # 0 = every non-silent window
    hop_s: float = 1.0         # spacing of candidate windows (= window length: no overlap)
    video_frames: int = 8      # T frames at decode.fps, centred in the audio window
    min_rms_db: float = -60.0  # W-channel RMS (dB re full scale) below which a window is silent
    placement: Literal["random", "even"] = "random"  # which windows when more than max_per_clip

    def validate(self) -> None:
        if self.max_per_clip < 0 or self.hop_s <= 0 or self.video_frames < 1:
            raise ConfigError(f"windows: expected max_per_clip >= 0, hop_s > 0, video_frames >= 1, "
                              f"got {self.max_per_clip}, {self.hop_s}, {self.video_frames}")


@dataclass(frozen=True)
class ViewpointsConfig:
    #: Former names of keys, still read (configs and shard attributes written before).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"num_viewpoints": "bank_size"}

    # The bank of V viewpoints stored per window and source (random, yolo); the trainer draws
    # its K (data.views_per_step) of them per sample and step. YOLO: every distinct detection
    # up to V, then random fill (flagged).
    bank_size: int = 16
    max_elevation_deg: float = 60.0
    min_separation_deg: float = 30.0  # great-circle angle between any two viewpoints of a sample
    fov_deg_min: float = 25.0      # horizontal FOV of a crop, a true angle, uniform per crop
    fov_deg_max: float = 90.0
    crop_size: int = 112           # square crops, pixels

    def validate(self) -> None:
        if self.bank_size < 1 or self.crop_size < 2:
            raise ConfigError(f"viewpoints: expected bank_size >= 1 and crop_size >= 2, got "
                              f"bank_size={self.bank_size}, crop_size={self.crop_size}")
        if not 0 < self.fov_deg_min <= self.fov_deg_max < 180:
            raise ConfigError(f"viewpoints: expected 0 < fov_deg_min <= fov_deg_max < 180, got "
                              f"{self.fov_deg_min}, {self.fov_deg_max}")
        if not 0 <= self.max_elevation_deg <= 90:
            raise ConfigError(f"viewpoints: expected 0 <= max_elevation_deg <= 90, got "
                              f"{self.max_elevation_deg}")
        # A spherical cap of angular radius s/2 around each viewpoint must fit K times into the
        # band (widened by s/2): a necessary condition, so rejection sampling can succeed.
        half = math.radians(self.min_separation_deg) / 2.0
        band = math.radians(min(90.0, self.max_elevation_deg + self.min_separation_deg / 2.0))
        caps_sr = self.bank_size * 2 * math.pi * (1 - math.cos(half))
        if self.min_separation_deg < 0 or caps_sr > 4 * math.pi * math.sin(band):
            raise ConfigError(f"viewpoints: min_separation_deg={self.min_separation_deg} leaves no "
                              f"room for bank_size={self.bank_size} viewpoints within "
                              f"+-{self.max_elevation_deg} deg")


@dataclass(frozen=True)
class DetectorConfig:
    enabled: bool = True           # false: the yolo viewpoints are all random fill (flagged)
    weights: str = "assets/detector/synthetic_yolo.pt"
    conf: float = 0.25
    iou: float = 0.5               # NMS IoU, also for merging duplicates across the seam
    imgsz: int = 256               # inference size; the committed offline detector's training size
    device: str = "cpu"            # "cpu", "cuda:0"; not part of the content hash
    max_detections: int = MAX_DETECTIONS

    def validate(self) -> None:
        if not 1 <= self.max_detections <= MAX_DETECTIONS:
            raise ConfigError(f"detector.max_detections: expected 1..{MAX_DETECTIONS} (shard "
                              f"schema), got {self.max_detections}")
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            raise ConfigError(f"detector: expected conf and iou in [0, 1], got {self.conf}, "
                              f"{self.iou}")


@dataclass(frozen=True)
class ShardsConfig:
    # Clips of one split per shard = one Dask task. A task holds its shard in memory before the
    # atomic write, coded as stored: about clips_per_shard x windows.max_per_clip x 4.2 MB at the
    # defaults (a bank of 16 + 16 viewpoints at 112 px); measured peak of a 4-clip task: 0.41 GB.
    clips_per_shard: int = 4
    # Every field but the crops and the uint8 feature codes (stored raw). lzf: ~3x faster to
    # write and to read than gzip 1, ~15 % larger shards (with JPEG crops); gzip level 4 is ~5 %
    # smaller than level 1, ~20 % slower.
    compression: Literal["gzip", "lzf", "none"] = "lzf"
    compression_level: int = 1     # gzip only
    # Crops: one JPEG per viewpoint, its frames stacked (OpenCV, 4:2:2; at quality 95 ~0.65 grey
    # levels of mean absolute error, ~7x smaller and ~10x cheaper to write than gzip;
    # bench/preprocess.py) or raw uint8 with `compression` (lossless). Readers decode either
    # (pipeline.shards.stored_crops).
    crop_codec: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = 95
    # Per-viewpoint audio features: uint8 (dB features within 0.2 dB, intensity vectors within
    # 1/255; ~half the bytes of float16) or float16. Readers decode either
    # (pipeline.shards.stored_features).
    feature_codec: Literal["uint8", "float16"] = "uint8"
    keyframe_width: int = 256      # stored equirectangular keyframe (2:1)
    keyframe_height: int = 128

    def validate(self) -> None:
        if self.clips_per_shard < 1:
            raise ConfigError(f"shards.clips_per_shard: expected >= 1, got {self.clips_per_shard}")
        if self.keyframe_width != 2 * self.keyframe_height:
            raise ConfigError(f"shards: expected keyframe_width == 2 x keyframe_height, got "
                              f"{self.keyframe_width}x{self.keyframe_height}")
        if not 0 <= self.compression_level <= 9:
            raise ConfigError(f"shards.compression_level: expected 0..9, got "
                              f"{self.compression_level}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"shards.jpeg_quality: expected 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class DaskConfig:
    # "" = a LocalCluster started for this run; "serial" = no Dask (in-process loop);
    # "tcp://host:8786" = an existing scheduler; anything else = a scheduler file path.
    scheduler: str = ""
    n_workers: int = 2             # LocalCluster only
    threads_per_worker: int = 1    # LocalCluster only (numba/OpenCV/BLAS are pinned to 1 thread)
    memory_limit: str = "auto"     # LocalCluster only, per worker ("4GiB", "auto")
    max_in_flight: int = 0         # shard tasks submitted at once; 0 = 2 x workers
    retries: int = 2               # extra attempts of a failed shard task


@dataclass(frozen=True)
class PreprocessConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    viewpoints: ViewpointsConfig = field(default_factory=ViewpointsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    # "skip": a rejected clip is recorded in failures.jsonl and the run goes on; "raise": stop.
    on_error: Literal["skip", "raise"] = "skip"
    # A clip whose channel energies contradict its declared layout (a dipole louder than W,
    # dipoles together far above W: a wrong channel order, FuMa or N3D read as ambiX):
    # "reject" records it in failures.jsonl with the likely W channel; "accept" keeps it with a
    # warning (a recording you have checked, e.g. with make channel-order).
    on_layout_contradiction: Literal["reject", "accept"] = "reject"

    def validate(self) -> None:
        video_s = self.windows.video_frames / self.decode.fps
        if video_s > self.audio.window_s + 1e-9:
            raise ConfigError(f"windows.video_frames: {self.windows.video_frames} frames at "
                              f"{self.decode.fps:g} fps = {video_s:g} s, expected <= "
                              f"audio.window_s = {self.audio.window_s:g} s")

    def content_dict(self) -> dict:
        """The fields that determine shard content, as a plain dict (see the module docstring)."""
        content = to_dict(self)
        # Hashed under its former name: shard folders made before the rename stay valid.
        content["viewpoints"]["num_viewpoints"] = content["viewpoints"].pop("bank_size")
        for key in ("paths", "dask", "on_error", "on_layout_contradiction"):
            content.pop(key)
        content["detector"].pop("device")
        return content

    def content_hash(self) -> str:
        """Short hash of :meth:`content_dict` (stored in shards and the index)."""
        return config_hash(self.content_dict())
