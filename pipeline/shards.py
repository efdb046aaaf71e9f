"""HDF5 shard format (schema v1): the contract between preprocessing and the trainer.

A shard holds N samples; one sample is one window (``audio.window_s``, 1 s by default) of one
clip with K viewpoints from each of two viewpoint sources (``random`` and ``yolo``), stored side
by side so that every experiment trains from the same shards. Every per-sample dataset has N as its first axis.
The table :data:`SAMPLE_FIELDS` is the single source of truth; ``docs/SHARDS.md`` is generated
from it (``python -m pipeline.shards --write docs/SHARDS.md``). This module also owns the
``norm_stats.json`` format (:func:`read_norm_stats`, :func:`write_norm_stats`).

Shards are written to ``<name>.h5.tmp`` and renamed atomically, so a shard that is visible is
complete. Alongside the shards, ``shards.jsonl`` indexes them (counts, bytes, sha256, config
hash) and ``failures.jsonl`` records every rejected clip with its stage and reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import cv2
import h5py
import numpy as np
from numba import njit

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
VIEWPOINT_SOURCES = ("random", "yolo")
MAX_DETECTIONS = 16
MAX_GT_OBJECTS = 8
INDEX_NAME = "shards.jsonl"
FAILURES_NAME = "failures.jsonl"
NORM_STATS_NAME = "norm_stats.json"
NORM_STATS_SCHEMA_VERSION = 1
#: How crops are stored: ``jpeg`` (one JPEG file per frame, variable-length uint8, the default
#: of preprocessing) or ``raw`` (uint8 arrays, gzip/lzf like the other fields). Readers go
#: through :func:`stored_crops` and get uint8 RGB either way.
CROP_CODECS = ("jpeg", "raw")
#: How the per-viewpoint audio features are stored: ``uint8`` (quantised: dB features as steps
#: of top_db / 255 below their viewpoint's maximum, stored beside them as ``<key>_max_db``;
#: intensity vectors as steps of 2 / 255 over [-1, 1]; the default of preprocessing) or
#: ``float16``. Readers go through :func:`stored_features` and get float32 either way.
FEATURE_CODECS = ("uint8", "float16")
#: Features in dB, floored at top_db below the maximum of each viewpoint (``pipeline.features``).
DB_FEATURES = ("logmel_foa", "logmel_beam")
#: Channels of each per-viewpoint audio feature stored in a shard (``audio/<set>/<key>``).
FEATURE_CHANNELS = {"logmel_foa": 4, "iv": 3, "logmel_beam": 1}

# Symbols used in shapes: N samples, K viewpoints, T frames, S crop size (pixels), M mel bands,
# F STFT frames, A audio samples per window, D max detections, O max ground-truth objects,
# h x w keyframe size.


@dataclass(frozen=True)
class FieldSpec:
    name: str
    shape: str
    dtype: str
    description: str
    compressed: bool = False
    optional: bool = False


def _view_fields(source: str) -> list[FieldSpec]:
    prefix = f"views/{source}"
    return [
        FieldSpec(f"{prefix}/azimuth_rad", "(N, K)", "float32",
                  "viewpoint azimuth, rad, CCW from front (+ = left)"),
        FieldSpec(f"{prefix}/elevation_rad", "(N, K)", "float32",
                  "viewpoint elevation, rad, + = up"),
        FieldSpec(f"{prefix}/fov_rad", "(N, K)", "float32",
                  "horizontal field of view of the crop, a true angle, rad"),
        FieldSpec(f"{prefix}/from_detection", "(N, K)", "bool",
                  "true when the viewpoint is centred on a detection (else random fill)"),
        FieldSpec(f"{prefix}/crops", "(N, K, T, S, S, 3)", "uint8",
                  "gnomonic RGB crops of the T video frames, looking at the viewpoint; stored "
                  "as one JPEG per frame, a (N, K, T) variable-length uint8 dataset with "
                  "attrs codec, quality, frame_shape (shards.crop_codec=jpeg, the default), or "
                  "as this uint8 array (raw); read with stored_crops()", True),
        FieldSpec(f"{prefix}/logmel_foa", "(N, K, 4, M, F)", "float16",
                  "log-mel (dB) of the FOA rotated to the viewpoint, channels W, Y, Z, X", True),
        FieldSpec(f"{prefix}/iv", "(N, K, 3, M, F)", "float16",
                  "normalised active intensity of the rotated FOA, mel-binned, I_x, I_y, I_z",
                  True),
        FieldSpec(f"{prefix}/logmel_beam", "(N, K, 1, M, F)", "float16",
                  "log-mel (dB) of the first-order beam toward the viewpoint", True),
        *[FieldSpec(f"{prefix}/{key}_max_db", "(N, K)", "float32",
                    f"uint8 feature codec only: the maximum (dB) of {key} per viewpoint; the "
                    f"stored uint8 q means max_db - q * span_db / 255 (attrs codec, span_db)",
                    optional=True) for key in DB_FEATURES],
    ]


SAMPLE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("clip_id", "(N,)", "str", "clip identifier from the manifest"),
    FieldSpec("split", "(N,)", "str", "train / val / test"),
    FieldSpec("window_index", "(N,)", "int32", "index of the window within its clip"),
    FieldSpec("audio_start_s", "(N,)", "float64",
              "start of the audio window (audio.window_s, 1 s by default) in the clip, s"),
    FieldSpec("video_start_s", "(N,)", "float64",
              "time of the first of the T video frames, s (window centred in the audio)"),
    FieldSpec("foa_acn_sn3d", "(N, 4, A)", "float16",
              "unrotated FOA audio window, ambiX (ACN W, Y, Z, X; SN3D)", True),
    FieldSpec("keyframe", "(N, h, w, 3)", "uint8",
              "equirectangular keyframe (middle video frame), downscaled", True),
    FieldSpec("detections/count", "(N,)", "int16", "number of valid detections"),
    FieldSpec("detections/boxes_xyxy", "(N, D, 4)", "float32",
              "boxes in keyframe pixels of the decoded frame; x2 > width for a box that "
              "wraps across the right edge"),
    FieldSpec("detections/class_id", "(N, D)", "int16", "detector class id, -1 = padding"),
    FieldSpec("detections/confidence", "(N, D)", "float32", "detector confidence, 0 = padding"),
    FieldSpec("detections/azimuth_rad", "(N, D)", "float32", "box centre azimuth, rad"),
    FieldSpec("detections/elevation_rad", "(N, D)", "float32", "box centre elevation, rad"),
    *[spec for source in VIEWPOINT_SOURCES for spec in _view_fields(source)],
    FieldSpec("gt/count", "(N,)", "int16", "synthetic only: number of ground-truth objects",
              optional=True),
    FieldSpec("gt/class_id", "(N, O)", "int16", "synthetic only: object class, -1 = padding",
              optional=True),
    FieldSpec("gt/azimuth_rad", "(N, O)", "float32",
              "synthetic only: object azimuth at the window centre, rad", optional=True),
    FieldSpec("gt/elevation_rad", "(N, O)", "float32",
              "synthetic only: object elevation at the window centre, rad", optional=True),
    FieldSpec("gt/sounding", "(N, O)", "bool",
              "synthetic only: object emits sound in this window", optional=True),
    FieldSpec("gt/visible", "(N, O)", "bool", "synthetic only: object is drawn", optional=True),
)

FIELDS_BY_NAME = {spec.name: spec for spec in SAMPLE_FIELDS}


class ShardFormatError(ValueError):
    """A shard does not match the schema (wrong version, missing field, wrong shape)."""


def schema_markdown() -> str:
    """The schema as a Markdown table (used in the README)."""
    lines = ["| dataset | shape | dtype | meaning |", "|---|---|---|---|"]
    for spec in SAMPLE_FIELDS:
        lines.append(f"| `{spec.name}` | {spec.shape} | {spec.dtype} | {spec.description} |")
    return "\n".join(lines)


def _dataset_kwargs(spec: FieldSpec, shape: tuple[int, ...], compression: str | None,
                    level: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if spec.compressed and compression and len(shape) >= 2 and all(shape):
        kwargs["compression"] = compression
        if compression == "gzip":
            kwargs["compression_opts"] = level
        kwargs["shuffle"] = True
        # One chunk per sample (and per viewpoint for view data) so random access is cheap.
        chunk = list(shape)
        chunk[0] = 1
        if spec.name.startswith("views/") and len(shape) >= 3:
            chunk[1] = 1
        kwargs["chunks"] = tuple(chunk)
    return kwargs


def encode_jpeg_frames(frames_rgb: np.ndarray, quality: int = 95) -> np.ndarray:
    """``(..., S, S, 3)`` uint8 RGB frames -> object array ``(...)`` of 1-D uint8 JPEG files
    (OpenCV, baseline JPEG with 4:2:0 chroma, ``quality`` 1-100)."""
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.dtype != np.uint8 or frames_rgb.ndim < 3 or frames_rgb.shape[-1] != 3:
        raise ShardFormatError(f"expected uint8 frames shaped (..., S, S, 3), got "
                               f"{frames_rgb.dtype} {frames_rgb.shape}")
    lead = frames_rgb.shape[:-3]
    flat = frames_rgb.reshape(-1, *frames_rgb.shape[-3:])
    out = np.empty(len(flat), dtype=object)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for index, frame in enumerate(flat):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ShardFormatError(f"JPEG encoding failed for a {frame.shape} frame")
        out[index] = encoded.reshape(-1)
    return out.reshape(lead)


def decode_jpeg_frames(encoded, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_jpeg_frames`: an object array ``(...)`` of JPEG files (or one
    file as a 1-D uint8 array) -> uint8 RGB ``(..., *frame_shape)``."""
    if isinstance(encoded, np.ndarray) and encoded.dtype != object:
        return _decode_jpeg(encoded, frame_shape)                    # a single element
    encoded = np.asarray(encoded, dtype=object)
    out = np.empty((encoded.size, *frame_shape), dtype=np.uint8)
    for index, data in enumerate(encoded.reshape(-1)):
        out[index] = _decode_jpeg(data, frame_shape)
    return out.reshape(*encoded.shape, *frame_shape)


def _decode_jpeg(data: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    frame = cv2.imdecode(np.asarray(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.shape != tuple(frame_shape):
        raise ShardFormatError(f"stored JPEG crop: expected a {tuple(frame_shape)} image, got "
                               f"{None if frame is None else frame.shape}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class JpegCrops:
    """One sample's crops ``(K, T, S, S, 3)`` already coded as the ``jpeg`` crop codec stores
    them (:func:`encode_sample_crops`): an object array ``(K, T)`` of JPEG files. Preprocessing
    encodes each window as it is made, so a shard in the making holds 0.6 MB of crops per sample
    (16 + 16 viewpoints at 112 px) instead of 9.6 MB."""

    files: np.ndarray
    frame_shape: tuple[int, int, int]
    quality: int


@dataclass(frozen=True)
class QuantisedFeature:
    """One sample's feature ``(K, C, M, F)`` already coded as the ``uint8`` feature codec stores
    it (:func:`encode_sample_feature`): ``codes`` uint8 and, for dB features, ``max_db (K,)``."""

    codes: np.ndarray
    max_db: np.ndarray | None
    span_db: float


def encode_sample_crops(view_crops: Iterable[np.ndarray], crop_codec: str,
                        quality: int = 95) -> JpegCrops | np.ndarray:
    """One sample's crops in the form :func:`write_shard` stores with ``crop_codec``:
    :class:`JpegCrops` for ``jpeg``, a ``(K, T, S, S, 3)`` uint8 array for ``raw``.

    ``view_crops``: a ``(K, T, S, S, 3)`` uint8 array, or the K views' ``(T, S, S, 3)`` crops
    one by one (each is coded or copied before the next is taken, so an iterator may reuse one
    buffer: :meth:`pipeline.crops.CropSampler.iter_crops`)."""
    if crop_codec not in CROP_CODECS:
        raise ValueError(f"crop_codec must be one of {CROP_CODECS}, got {crop_codec!r}")
    if crop_codec == "raw":
        return np.stack([np.array(view, dtype=np.uint8) for view in view_crops])
    files, frame_shape = [], None
    for view in view_crops:
        files.append(encode_jpeg_frames(view, quality))
        frame_shape = tuple(int(v) for v in np.shape(view)[1:])
    if frame_shape is None:
        raise ShardFormatError("expected the crops of at least one viewpoint, got none")
    return JpegCrops(np.stack(files), frame_shape, int(quality))


def encode_sample_feature(key: str, values: np.ndarray, feature_codec: str,
                          span_db: float) -> QuantisedFeature | np.ndarray:
    """One sample's feature ``key`` ``(K, C, M, F)`` in the form :func:`write_shard` stores with
    ``feature_codec``: :class:`QuantisedFeature` for ``uint8``, float16 for ``float16``."""
    if feature_codec not in FEATURE_CODECS:
        raise ValueError(f"feature_codec must be one of {FEATURE_CODECS}, got "
                         f"{feature_codec!r}")
    if feature_codec == "float16":
        return np.asarray(values).astype(np.float16)
    codes, max_db = quantise_feature(key, np.asarray(values, dtype=np.float32)[None], span_db)
    return QuantisedFeature(codes[0], None if max_db is None else max_db[0], float(span_db))


class StoredCrops:
    """A shard's crops dataset read as uint8 RGB ``(N, K, T, S, S, 3)`` whatever its codec:
    ``shape`` and ``[...]`` index the ``(N, K, T)`` axes as an h5py dataset does (indices,
    slices, increasing index lists) and decode JPEG-coded frames."""

    def __init__(self, dataset: h5py.Dataset):
        self.dataset = dataset
        self.codec = str(dataset.attrs.get("codec", "raw"))
        if self.codec not in CROP_CODECS:
            raise ShardFormatError(f"{dataset.name}: unknown crop codec {self.codec!r}, expected "
                                   f"one of {CROP_CODECS}")
        self.frame_shape = (tuple(int(v) for v in dataset.attrs["frame_shape"])
                            if self.codec == "jpeg" else tuple(dataset.shape[3:]))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape[:3]) + self.frame_shape

    def __len__(self) -> int:
        return int(self.dataset.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        if self.codec == "raw":
            return self.dataset[key]
        return decode_jpeg_frames(self.dataset[key], self.frame_shape)


def quantise_feature(key: str, values: np.ndarray, span_db: float
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Float features ``(N, K, C, M, F)`` -> ``(uint8 codes, max_db (N, K) float32 or None)``.

    dB features (:data:`DB_FEATURES`): ``q = round((max - x) / span_db * 255)`` with ``max``
    per viewpoint; every value lies within ``span_db`` (top_db) of it, so the error is at most
    ``span_db / 510`` (0.2 dB at 100 dB). Intensity vectors: ``q = round((x + 1) * 127.5)``,
    error at most 1/255 (their components lie in [-1, 1])."""
    values = np.asarray(values, dtype=np.float32)
    if key in DB_FEATURES:
        max_db = values.max(axis=(2, 3, 4)).astype(np.float32)
        scaled = np.subtract(max_db[:, :, None, None, None], values)
        scaled *= np.float32(255.0 / span_db)
        scaled += np.float32(0.5)                  # round half up; values are >= 0 here
        np.clip(scaled, 0.0, 255.0, out=scaled)
        return scaled.astype(np.uint8), max_db
    scaled = np.clip(values, -1.0, 1.0)
    scaled += np.float32(1.0)
    scaled *= np.float32(127.5)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint8), None


def dequantise_feature(codes: np.ndarray, max_db: np.ndarray | None,
                       span_db: float) -> np.ndarray:
    """Inverse of :func:`quantise_feature`: codes ``(..., C, M, F)`` and, for dB features,
    ``max_db`` of shape ``codes.shape[:-3]`` -> float32."""
    codes = np.asarray(codes, dtype=np.float32)
    if max_db is None:
        return codes * np.float32(1.0 / 127.5) - np.float32(1.0)
    return (np.asarray(max_db, dtype=np.float32)[..., None, None, None]
            - codes * np.float32(span_db / 255.0))


def feature_code_moments(codes: np.ndarray, max_db: np.ndarray | None, span_db: float
                         ) -> tuple[int, np.ndarray, np.ndarray]:
    """Moments of the values :func:`dequantise_feature` gives for uint8 codes ``(N, K, C, M, F)``
    (and ``max_db (N, K)`` for dB features), over N, K and F: ``(count, mean (C, M), m2 (C, M))``
    float64, ``m2`` the sum of squared deviations (the terms of a Chan et al. merge).

    Computed from exact integer sums of the codes and of their squares per viewpoint, channel
    and band (one pass, no float copy): within a viewpoint the values are affine in the codes,
    ``max_db - q span_db / 255`` or ``q / 127.5 - 1``; viewpoints are then merged. Equal to the
    moments of the dequantised float32 values up to their float32 rounding (tested)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 5:
        raise ValueError(f"expected codes shaped (N, K, C, M, F), got {codes.shape}")
    n_samples, n_views, n_channels, n_bands, n_frames = codes.shape
    sums = np.empty(codes.shape[:4], dtype=np.int64)
    squares = np.empty(codes.shape[:4], dtype=np.int64)
    _code_sums_kernel(codes.reshape(-1, n_frames), sums.reshape(-1), squares.reshape(-1))
    if max_db is None:
        offset, step = np.full((n_samples, n_views), -1.0), 1.0 / 127.5
    else:
        offset, step = np.asarray(max_db, dtype=np.float64), -float(span_db) / 255.0
    if offset.shape != (n_samples, n_views):
        raise ValueError(f"expected max_db shaped {(n_samples, n_views)}, got {offset.shape}")
    view_mean = offset[:, :, None, None] + step * (sums / n_frames)               # (N, K, C, M)
    view_m2 = step**2 * ((n_frames * squares - sums**2) / n_frames)                  # exact ints
    group_mean = view_mean.reshape(-1, n_channels, n_bands)
    mean = group_mean.mean(axis=0)
    m2 = view_m2.reshape(-1, n_channels, n_bands).sum(axis=0) + n_frames * np.square(
        group_mean - mean).sum(axis=0)
    return n_samples * n_views * n_frames, mean, m2


@njit(cache=True, nogil=True)
def _code_sums_kernel(codes, sums, squares):  # pragma: no cover - numba
    """Per row of ``codes (G, F)`` uint8: the sum and the sum of squares, int64."""
    for row in range(codes.shape[0]):
        total = 0
        total_squares = 0
        for frame in range(codes.shape[1]):
            value = np.int64(codes[row, frame])
            total += value
            total_squares += value * value
        sums[row] = total
        squares[row] = total_squares


class StoredFeatures:
    """A shard's per-viewpoint feature dataset read as float32 ``(N, K, C, M, F)`` whatever its
    codec; ``[...]`` indexes the ``(N, K)`` axes as h5py does (indices, slices, increasing
    index lists)."""

    def __init__(self, h5: h5py.File | h5py.Group, name: str):
        self.dataset = h5[name]
        self.codec = str(self.dataset.attrs.get("codec", "float16"))
        if self.codec not in FEATURE_CODECS:
            raise ShardFormatError(f"{name}: unknown feature codec {self.codec!r}, expected one "
                                   f"of {FEATURE_CODECS}")
        self.span_db = float(self.dataset.attrs.get("span_db", 0.0))
        self.max_db = (h5[f"{name}_max_db"] if self.codec == "uint8"
                       and name.rsplit("/", 1)[-1] in DB_FEATURES else None)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def __len__(self) -> int:
        return int(self.dataset.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple) and len(key) > 2:
            raise IndexError(f"{self.dataset.name}: index the (N, K) axes only, got {key}")
        values = self._read(self.dataset, key)
        if self.codec == "float16":
            return values.astype(np.float32)
        return dequantise_feature(values, None if self.max_db is None else self.max_db[key],
                                  self.span_db)

    @staticmethod
    def _read(dataset: h5py.Dataset, key) -> np.ndarray:
        """``dataset[key]``, with a list of viewpoints of one sample read view by view: h5py's
        point selection on a chunked, compressed dataset took 9.5 ms for 4 views of a bank of 16,
        four plain reads 0.06 ms (bench/train.py)."""
        if (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], (int, np.integer))
                and isinstance(key[1], (list, np.ndarray))):
            row, views = key
            return np.stack([dataset[row, int(view)] for view in views])
        return dataset[key]


def stored_features(h5: h5py.File | h5py.Group, name: str) -> StoredFeatures:
    """The feature dataset ``name`` (``views/<set>/<key>``) of an open shard, as float32."""
    return StoredFeatures(h5, name)


def stored_crops(h5: h5py.File | h5py.Group, name: str) -> StoredCrops:
    """The crops dataset ``name`` (``views/<set>/crops``) of an open shard, decoded on read."""
    return StoredCrops(h5[name])


def write_shard(path: str | Path, samples: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any], compression: str | None = "gzip",
                level: int = 4, crop_codec: str = "raw", jpeg_quality: int = 95,
                feature_codec: str = "float16", feature_span_db: float = 100.0
                ) -> dict[str, Any]:
    """Write one shard atomically and return its index record.

    ``samples`` maps schema names to arrays stacked over N samples, or to lists of N per-sample
    arrays (written row by row, so a shard is never copied whole; strings as lists or object
    arrays); crops and features may come coded already (:class:`JpegCrops`,
    :class:`QuantisedFeature`, from :func:`encode_sample_crops` / :func:`encode_sample_feature`).
    ``attrs`` are stored on the root group (config hash, audio parameters, ...).
    ``crop_codec`` (``CROP_CODECS``) says how the ``views/*/crops`` arrays are stored,
    ``feature_codec`` (``FEATURE_CODECS``) the per-viewpoint audio features (``feature_span_db``:
    the features' top_db); ``compression`` / ``level`` apply to the other array fields.
    """
    if crop_codec not in CROP_CODECS:
        raise ValueError(f"crop_codec must be one of {CROP_CODECS}, got {crop_codec!r}")
    if feature_codec not in FEATURE_CODECS:
        raise ValueError(f"feature_codec must be one of {FEATURE_CODECS}, got "
                         f"{feature_codec!r}")
    path = Path(path)
    missing = [s.name for s in SAMPLE_FIELDS if not s.optional and s.name not in samples]
    if missing:
        raise ShardFormatError(f"{path.name}: missing required fields {missing}")
    unknown = sorted(set(samples) - set(FIELDS_BY_NAME))
    if unknown:
        raise ShardFormatError(f"{path.name}: fields not in schema v{SCHEMA_VERSION}: {unknown}")
    n_samples = len(samples["clip_id"])
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["n_samples"] = n_samples
        for key, value in attrs.items():
            h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        for spec in SAMPLE_FIELDS:
            if spec.name not in samples:
                continue
            value = samples[spec.name]
            if spec.dtype == "str":
                data = np.asarray([str(v) for v in value], dtype=object)
                h5.create_dataset(spec.name, data=data, dtype=h5py.string_dtype("utf-8"))
                continue
            rows = list(value) if isinstance(value, (list, tuple)) else None
            if len(value) != n_samples:
                raise ShardFormatError(f"{path.name}: {spec.name} has {len(value)} samples, "
                                       f"expected {n_samples}")
            feature_key = spec.name.rsplit("/", 1)[-1]
            _check_pre_encoded(spec.name, rows, crop_codec, feature_codec)
            if (feature_codec == "uint8" and spec.name.startswith("views/")
                    and feature_key in FEATURE_CHANNELS):
                _write_uint8_feature(h5, spec, feature_key, value, feature_span_db)
            elif spec.name.endswith("/crops") and crop_codec == "jpeg":
                _write_jpeg_crops(h5, spec.name, value, jpeg_quality)
            elif rows is not None and n_samples > 0:
                _write_rows(h5, spec, [np.asarray(row, dtype=spec.dtype) for row in rows],
                            compression, level)
            else:
                array = np.asarray(value, dtype=spec.dtype)
                h5.create_dataset(spec.name, data=array,
                                  **_dataset_kwargs(spec, array.shape, compression, level))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return {
        "shard": path.name,
        "n_samples": n_samples,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "clip_ids": sorted(set(str(c) for c in samples["clip_id"])),
        "split": sorted(set(str(s) for s in samples["split"])),
        "schema_version": SCHEMA_VERSION,
        "config_hash": attrs.get("config_hash", ""),
    }


def _check_pre_encoded(name: str, rows: list | None, crop_codec: str, feature_codec: str) -> None:
    """A row coded already must be coded as this shard stores the field."""
    kinds = {type(row) for row in rows or ()} & {JpegCrops, QuantisedFeature}
    if JpegCrops in kinds and crop_codec != "jpeg":
        raise ShardFormatError(f"{name}: got crops coded as JPEG for a shard with crop codec "
                               f"{crop_codec!r}")
    if QuantisedFeature in kinds and feature_codec != "uint8":
        raise ShardFormatError(f"{name}: got uint8-quantised features for a shard with feature "
                               f"codec {feature_codec!r}")


def _write_rows(h5: h5py.File, spec: FieldSpec, rows: list[np.ndarray],
                compression: str | None, level: int) -> h5py.Dataset:
    """A ``(N, ...)`` dataset written one sample at a time from equally shaped rows."""
    shape = (len(rows), *rows[0].shape)
    if any(row.shape != rows[0].shape for row in rows):
        raise ShardFormatError(f"{spec.name}: expected every sample shaped {rows[0].shape}, got "
                               f"{sorted({row.shape for row in rows})}")
    dataset = h5.create_dataset(spec.name, shape=shape, dtype=rows[0].dtype,
                                **_dataset_kwargs(spec, shape, compression, level))
    for index, row in enumerate(rows):
        dataset[index] = row
    return dataset


def _write_uint8_feature(h5: h5py.File, spec: FieldSpec, key: str, value,
                         span_db: float) -> None:
    """One feature field quantised sample by sample (:func:`quantise_feature`; rows may come
    quantised already, as :class:`QuantisedFeature`), stored without compression, with its
    codec in attrs and, for dB features, ``<name>_max_db`` beside it."""
    coded = [row if isinstance(row, QuantisedFeature)
             else encode_sample_feature(key, row, "uint8", span_db) for row in value]
    is_db = key in DB_FEATURES
    if is_db and any(row.span_db != float(span_db) for row in coded):
        raise ShardFormatError(f"{spec.name}: expected features quantised over {span_db} dB, got "
                               f"{sorted({row.span_db for row in coded})}")
    # No compression: lzf saved 3% of these bytes (none on the dB features) and cost more CPU
    # than every other field of a shard together (bench/preprocess.py).
    dataset = _write_rows(h5, spec, [row.codes for row in coded], None, 0)
    dataset.attrs["codec"] = "uint8"
    dataset.attrs["span_db"] = float(span_db) if is_db else 0.0
    if is_db:
        h5.create_dataset(f"{spec.name}_max_db",
                          data=np.stack([row.max_db for row in coded]))


def _write_jpeg_crops(h5: h5py.File, name: str, crops, quality: int) -> None:
    """``(N, K, T, S, S, 3)`` crops (an array, or N per-sample arrays or :class:`JpegCrops`) as
    a ``(N, K, T)`` dataset of JPEG files (one chunk per sample; the files are already
    compressed)."""
    coded = [row if isinstance(row, JpegCrops)
             else encode_sample_crops(np.asarray(row, dtype=np.uint8), "jpeg", quality)
             for row in crops]
    if any(row.quality != quality for row in coded):
        raise ShardFormatError(f"{name}: expected JPEG quality {quality}, got "
                               f"{sorted({row.quality for row in coded})}")
    encoded = (np.stack([row.files for row in coded]) if coded
               else np.empty((0, 0, 0), object))
    chunks = (1, *encoded.shape[1:]) if all(encoded.shape) else None
    dataset = h5.create_dataset(name, shape=encoded.shape, dtype=h5py.vlen_dtype(np.uint8),
                                chunks=chunks)
    if encoded.size:
        dataset[...] = encoded
    dataset.attrs["codec"] = "jpeg"
    dataset.attrs["quality"] = int(quality)
    dataset.attrs["frame_shape"] = np.asarray(coded[0].frame_shape if coded else (0, 0, 3),
                                              dtype=np.int64)


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only and check its schema version."""
    h5 = h5py.File(path, "r")
    version = int(h5.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        h5.close()
        raise ShardFormatError(f"{path}: schema version {version}, this code reads "
                               f"v{SCHEMA_VERSION}; re-run preprocessing")
    return h5


@dataclass
class ShardIndex:
    """The ``shards.jsonl`` index of a shard folder (one record per finished shard).

    Records are held sorted by shard name: the file lists shards in the order parallel workers
    finished them, which changes from run to run, and every reader (training plan, evaluation
    sampling, normalisation statistics) must see the same order for seeds to reproduce."""

    root: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, check_sizes: bool = True,
             must_exist: bool = True) -> "ShardIndex":
        """Read ``shards.jsonl``; with ``check_sizes`` every listed shard must exist with the
        size the index records (a cheap check of each file; :func:`verify_shards` also
        compares sha256 digests). A folder without an index is a :class:`ShardFormatError`
        (every reader: the trainer, evaluators, ``make verify``), or an empty index with
        ``must_exist=False`` (preprocessing reading its own folder before any shard landed)."""
        root = Path(root)
        if must_exist and not (root / INDEX_NAME).is_file():
            raise ShardFormatError(f"{root}: no shards ({INDEX_NAME} missing); make them with "
                                   f"make preprocess (or make demo for the synthetic set), or "
                                   f"point to a shards folder")
        records = sorted(read_jsonl(root / INDEX_NAME), key=lambda record: record["shard"])
        index = cls(root, records)
        if check_sizes:
            for record in records:
                problem = index.problem(record)
                if problem:
                    raise ShardFormatError(problem)
        return index

    def problem(self, record: Mapping[str, Any], sha256: bool = False) -> str:
        """Why the shard of ``record`` does not match the index ("" when it does), with the
        command that rebuilds it."""
        path = self.root / record["shard"]
        rebuild = (f"rebuild it with the preprocessing run that made this folder (make "
                   f"preprocess SHARDS={self.root} with the same settings; a rerun rebuilds "
                   f"shards that differ from the index)")
        if not path.is_file():
            return f"{path}: listed in {INDEX_NAME} but missing; {rebuild}"
        size = path.stat().st_size
        if "bytes" in record and size != record["bytes"]:
            return (f"{path}: expected {record['bytes']} bytes as listed in {INDEX_NAME}, got "
                    f"{size} (truncated or replaced); {rebuild}")
        if sha256 and record.get("sha256") and file_sha256(path) != record["sha256"]:
            return f"{path}: sha256 differs from {INDEX_NAME} (corrupted); {rebuild}"
        return ""

    def paths(self, split: str | None = None) -> list[Path]:
        """Shard paths, optionally for one split, sorted by shard name."""
        return [self.root / r["shard"] for r in self.records
                if split is None or split in r["split"]]

    def n_samples(self, split: str | None = None) -> int:
        return sum(r["n_samples"] for r in self.records if split is None or split in r["split"])


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records to a JSONL file, flushed and fsynced (used for the index/failures). A
    torn last line left by a killed writer is cut off first, so no record is glued to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _cut_torn_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Truncate ``path`` after its last newline when it does not end with one."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":            # the usual case: one byte read, not the file
            return
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        log.warning("%s: cutting a torn last line (a writer was interrupted): %.60r", path,
                    data[keep:])
        handle.truncate(keep)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of an append-only JSONL file. A torn last line (a writer killed mid-line: no
    final newline) is dropped with a warning naming the file; any other unreadable line is a
    :class:`ShardFormatError` naming ``file:line``."""
    path = Path(path)
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if line_no == len(lines) and not text.endswith("\n"):
                log.warning("%s: dropping a torn last line (a writer was interrupted): %.60s",
                            path, line)
                return
            raise ShardFormatError(f"{path}:{line_no}: not a JSON record ({exc})") from exc
        yield record


def record_as_dict(record: Any) -> dict[str, Any]:
    return asdict(record) if hasattr(record, "__dataclass_fields__") else dict(record)




# ---------------------------------------------------------------------------------------------
# norm_stats.json: per-channel, per-mel-band statistics of the training shards' features


@dataclass(frozen=True)
class FeatureNorm:
    """Per-channel, per-mel-band statistics of one feature: ``mean``, ``std`` (C, M) float32."""

    mean: np.ndarray
    std: np.ndarray


def read_norm_stats(path: str | Path) -> dict[str, FeatureNorm]:
    """Read ``norm_stats.json``.

    Accepted layouts (the first as written by :func:`write_norm_stats`, or flat)::

        {"schema_version": 1, "keys": {"logmel_foa": {"mean": [[...M] x 4], "std": [[...]],
                                                       "count": 123}, "iv": ..., ...}}
        {"logmel_foa": {"mean": [[...M] x 4], "std": [[...M] x 4]}, "logmel_beam": {...}}

    ``mean``/``std`` are nested lists shaped (C, M) with C = 4 (logmel_foa), 3 (iv) or 1
    (logmel_beam); any feature may be missing (it is then not normalised) and other keys are
    ignored. Values of ``std`` are floored at 1e-5.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("keys", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ShardFormatError(f"{path}: expected a JSON object of features, got {type(data)}")
    stats = {}
    for key, channels in FEATURE_CHANNELS.items():
        if key not in entries:
            continue
        mean = np.asarray(entries[key]["mean"], dtype=np.float32)
        std = np.maximum(np.asarray(entries[key]["std"], dtype=np.float32), 1e-5)
        if mean.ndim != 2 or mean.shape[0] != channels or std.shape != mean.shape:
            raise ShardFormatError(f"{path}: {key} mean/std must be ({channels}, M), got "
                                   f"{mean.shape} and {std.shape}")
        stats[key] = FeatureNorm(mean, std)
    return stats


def write_norm_stats(path: str | Path, stats: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     counts: Mapping[str, int] | None = None) -> Path:
    """Write ``{feature: (mean (C, M), std (C, M))}`` in the ``NormStats`` layout, atomically."""
    path = Path(path)
    keys = {key: {"mean": np.asarray(mean).tolist(), "std": np.asarray(std).tolist(),
                  "count": int((counts or {}).get(key, 0))}
            for key, (mean, std) in stats.items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"schema_version": NORM_STATS_SCHEMA_VERSION, "keys": keys}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def audio_feature_config(attrs: Mapping[str, Any]):
    """The :class:`pipeline.features.AudioFeatureConfig` a shard was made with, from its
    attributes: the ``config`` attribute's ``audio`` section; shards without it (test
    factories) give the defaults with their ``sample_rate``, ``n_mels`` and ``n_frames``."""
    import dataclasses

    from pipeline.features import AudioFeatureConfig

    config = attrs.get("config")
    if isinstance(config, (str, bytes)):
        config = json.loads(config)
    known = {f.name for f in dataclasses.fields(AudioFeatureConfig)}
    if isinstance(config, Mapping) and isinstance(config.get("audio"), Mapping):
        return AudioFeatureConfig(**{k: v for k, v in config["audio"].items() if k in known})
    overrides = {key: type(getattr(AudioFeatureConfig, key))(attrs[key])
                 for key in ("sample_rate", "n_mels", "n_frames") if key in attrs}
    return AudioFeatureConfig(**overrides)


# ---------------------------------------------------------------------------------------------
# docs/SHARDS.md


def shards_document() -> str:
    """The text of ``docs/SHARDS.md``, generated from :data:`SAMPLE_FIELDS` and the constants
    above (a test checks that the committed file equals it)."""
    return f"""# Shard format (HDF5, schema v{SCHEMA_VERSION})

Generated by `python -m pipeline.shards --write docs/SHARDS.md` from `pipeline/shards.py`
(the single source of truth; `tests/test_shards_doc.py` fails when this file is stale).

One shard holds N samples, one per window (`audio.window_s`, 1 s by default) of one clip, with
K viewpoints from each viewpoint source ({", ".join(f"`{s}`" for s in VIEWPOINT_SOURCES)}),
stored side by side so every experiment trains from the same shards. Symbols: `T` video frames,
`S` crop size (pixels), `M` mel bands, `F` STFT frames, `A` audio samples per window,
`D` = {MAX_DETECTIONS} max detections, `O` = {MAX_GT_OBJECTS} max ground-truth objects,
`h x w` keyframe size. Root attributes: `schema_version`, `n_samples`, `config_hash`, `config`
(the resolved preprocessing config as JSON; its `audio` section gives the STFT and mel
settings the evaluators reuse), `sample_rate`, `n_mels`, `n_frames`, `fps`, `crop_size` and
`created_utc`. Compressed datasets (`shards.compression`: lzf by default, or gzip; with byte
shuffle) are chunked per sample, and per viewpoint for view data, so random access reads one
chunk; JPEG-coded crops are chunked per sample and decoded by `stored_crops`; uint8 feature
codes (`shards.feature_codec`) are stored uncompressed (lzf saved 3 % of their bytes) and
dequantised by `stored_features`.

{schema_markdown()}

Beside the shards, in the same folder:

- `{INDEX_NAME}`: one JSON record per finished shard (name, split, n_samples, bytes, sha256,
  config_hash, clip ids), appended when the shard is renamed into place.
- `{FAILURES_NAME}`: one record per rejected clip (clip_id, stage, error, reason).
- `{NORM_STATS_NAME}`: per-channel, per-mel-band mean and std of the train split's random-view
  features, `{{"schema_version": {NORM_STATS_SCHEMA_VERSION}, "keys": {{"logmel_foa": {{"mean":
  [[M] x 4], "std": [[M] x 4], "count": n}}, "iv": ..., "logmel_beam": ...}}}}`
  (`read_norm_stats` / `write_norm_stats`).
- `preprocess_config.yaml`: the resolved preprocessing config of the run.

Shards are written to `<name>.h5.tmp` and renamed atomically: a visible shard is complete.
"""


def verify_shards(root: str | Path) -> list[str]:
    """Every shard of a folder against its index (presence, size, sha256): the problems found
    (empty when all match)."""
    index = ShardIndex.load(root, check_sizes=False)
    return [problem for record in index.records if (problem := index.problem(record, True))]


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="The shard format document, or verify a shard "
                                                 "folder against its index.")
    parser.add_argument("--markdown", action="store_true", help="print the dataset table only")
    parser.add_argument("--write", metavar="PATH", help="write the whole document (docs/SHARDS.md)")
    parser.add_argument("--verify", metavar="SHARDS_DIR",
                        help="check every shard's size and sha256 against shards.jsonl")
    args = parser.parse_args()
    if args.verify:
        from pipeline.config import run_main

        def verify_command(_argv) -> int:
            found = verify_shards(args.verify)
            n_shards = len(ShardIndex.load(args.verify, check_sizes=False).records)
            for problem in found:
                print(f"error: {problem}", file=sys.stderr)
            print(f"==> {args.verify}: {n_shards - len(found)} of {n_shards} shards match "
                  f"{INDEX_NAME}")
            return 2 if found else 0

        sys.exit(run_main(verify_command, []))    # a folder without an index: one error line
    if args.write:
        Path(args.write).write_text(shards_document(), encoding="utf-8")
        print(f"wrote {args.write}")
    else:
        print(schema_markdown() if args.markdown else shards_document())
