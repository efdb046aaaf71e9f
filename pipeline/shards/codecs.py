"""How crops and per-viewpoint features are coded in a shard and decoded on read: JPEG crops
(:class:`StoredCrops`), uint8-quantised or float16 features (:class:`StoredFeatures`), and the
exact moments of quantised codes that the normalisation statistics use."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import h5py
import numpy as np
from numba import njit

from pipeline.shards.schema import (CROP_CODECS, DB_FEATURES, FEATURE_CODECS,
                                    ShardFormatError, corrupt_shard)


def encode_jpeg_frames(frames_rgb: np.ndarray, quality: int = 95) -> np.ndarray:
    """``(..., S, S, 3)`` uint8 RGB frames -> object array ``(...)`` of 1-D uint8 JPEG files
    (OpenCV, baseline JPEG with 4:2:0 chroma, ``quality`` 1-100)."""
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.dtype != np.uint8 or frames_rgb.ndim < 3 or frames_rgb.shape[-1] != 3:
        raise ShardFormatError(f"expected uint8 frames shaped (..., S, S, 3), got "
                               f"{frames_rgb.dtype} {frames_rgb.shape}")
    flat = frames_rgb.reshape(-1, *frames_rgb.shape[-3:])
    return _encode_jpegs(flat, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]).reshape(
        frames_rgb.shape[:-3])


def _encode_jpegs(images: np.ndarray, params: list[int], layout: str = "rgb") -> np.ndarray:
    """``(n, H, W, C)`` uint8 images -> object array ``(n,)`` of 1-D uint8 JPEG files; ``layout``
    ``rgb`` (C = 3, each copied to BGR for OpenCV) or ``bgra`` (C = 4, coded as it is)."""
    out = np.empty(len(images), dtype=object)
    for index, image in enumerate(images):
        if layout == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", image, params)
        if not ok:
            raise ShardFormatError(f"JPEG encoding failed for a {image.shape} image")
        out[index] = encoded.reshape(-1)
    return out


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


#: Our JPEG files carry no EXIF, so the orientation tag is not looked for; OpenCV >= 4.10
#: decodes straight to RGB (4 % faster per crop than BGR + cvtColor, equal pixels).
_RGB_DIRECT = hasattr(cv2, "IMREAD_COLOR_RGB")
_DECODE_FLAGS = ((cv2.IMREAD_COLOR_RGB if _RGB_DIRECT else cv2.IMREAD_COLOR)
                 | cv2.IMREAD_IGNORE_ORIENTATION)


def _decode_jpeg(data: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    frame = cv2.imdecode(np.asarray(data, dtype=np.uint8), _DECODE_FLAGS)
    if frame is None or frame.shape != tuple(frame_shape):
        raise ShardFormatError(f"stored JPEG crop: expected a {tuple(frame_shape)} image, got "
                               f"{None if frame is None else frame.shape}")
    return frame if _RGB_DIRECT else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


#: Chroma subsampling of the strips (stored in the dataset's ``chroma`` attribute): 4:2:2 keeps
#: full vertical chroma resolution, so the decoder's chroma interpolation never mixes two frames
#: of a strip (4:2:0 strips did: 5.6 grey levels of error on each frame's top and bottom rows,
#: against 0.8 elsewhere).
STRIP_CHROMA = "4:2:2"
_STRIP_PARAMS = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422)


#: Pixel layouts :func:`encode_jpeg_strips` takes: ``rgb`` (3 channels), or ``bgra`` (4: the
#: crops of frames made BGRA once per window, :func:`pipeline.crops.rgb_to_bgra`), which OpenCV's
#: JPEG encoder reads as they are where RGB crops first need a BGR copy each. The files are the
#: same bytes (test); with the 4-channel remap, which OpenCV also runs faster, it saves 3 ms per
#: window of 32 viewpoints (docs/RESULTS.md, sixth round).
JPEG_INPUT_LAYOUTS = ("rgb", "bgra")


def encode_jpeg_strips(views: np.ndarray, quality: int = 95, layout: str = "rgb") -> np.ndarray:
    """``(..., T, S, S, C)`` uint8 frames -> object array ``(...)`` of 1-D uint8 JPEG files,
    one per viewpoint: its T frames stacked top to bottom (a ``T*S x S`` image; S a multiple of
    8 keeps every frame on whole JPEG blocks), baseline JPEG with 4:2:2 chroma, ``quality``
    1-100. ``layout``: the frames' channels, ``rgb`` (C = 3) or ``bgra`` (C = 4, alpha
    dropped); the files decode to RGB either way. Against one 4:2:0 file per frame (schema v1),
    on the crops of rendered scenes: 14 % fewer bytes and 0.67 against 0.76 grey levels of mean
    error against the raw crops (bench/preprocess.py); the loader decodes them as fast
    (docs/RESULTS.md, fifth round)."""
    if layout not in JPEG_INPUT_LAYOUTS:
        raise ValueError(f"layout must be one of {JPEG_INPUT_LAYOUTS}, got {layout!r}")
    channels = 3 if layout == "rgb" else 4
    views = np.asarray(views)
    if views.dtype != np.uint8 or views.ndim < 4 or views.shape[-1] != channels:
        raise ShardFormatError(f"expected uint8 {layout.upper()} frames shaped (..., T, S, S, "
                               f"{channels}), got {views.dtype} {views.shape}")
    n_frames, height, width = views.shape[-4:-1]
    strips = views.reshape(-1, n_frames * height, width, channels)
    return _encode_jpegs(strips, [cv2.IMWRITE_JPEG_QUALITY, int(quality), *_STRIP_PARAMS],
                         layout).reshape(views.shape[:-4])


def decode_jpeg_strips(encoded, frame_shape: tuple[int, ...], n_frames: int) -> np.ndarray:
    """Inverse of :func:`encode_jpeg_strips`: an object array ``(...)`` of strip files (or one
    file as a 1-D uint8 array) -> uint8 RGB ``(..., n_frames, *frame_shape)``."""
    height, width, channels = frame_shape
    strips = decode_jpeg_frames(encoded, (n_frames * height, width, channels))
    return strips.reshape(*strips.shape[:-3], n_frames, *frame_shape)


@dataclass(frozen=True)
class JpegCrops:
    """One sample's crops ``(K, T, S, S, 3)`` already coded as the ``jpeg`` crop codec stores
    them (:func:`encode_sample_crops`): an object array ``(K,)`` of JPEG strips, one per
    viewpoint (:func:`encode_jpeg_strips`). Preprocessing encodes each window as it is made, so a
    shard in the making holds 0.6 MB of crops per sample (16 + 16 viewpoints at 112 px) instead
    of 9.6 MB."""

    files: np.ndarray
    frame_shape: tuple[int, int, int]
    n_frames: int
    quality: int


@dataclass(frozen=True)
class QuantisedFeature:
    """One sample's feature ``(K, C, M, F)`` already coded as the ``uint8`` feature codec stores
    it (:func:`encode_sample_feature`): ``codes`` uint8 and, for dB features, ``max_db (K,)``."""

    codes: np.ndarray
    max_db: np.ndarray | None
    span_db: float


def encode_sample_crops(view_crops: Iterable[np.ndarray], crop_codec: str,
                        quality: int = 95, layout: str = "rgb") -> JpegCrops | np.ndarray:
    """One sample's crops in the form :func:`write_shard` stores with ``crop_codec``:
    :class:`JpegCrops` for ``jpeg``, a ``(K, T, S, S, 3)`` uint8 RGB array for ``raw``.

    ``view_crops``: a ``(K, T, S, S, C)`` uint8 array, or the K views' ``(T, S, S, C)`` crops
    one by one (each is coded or copied before the next is taken, so an iterator may reuse one
    buffer: :meth:`pipeline.crops.CropSampler.iter_crops`), in ``layout`` (``rgb``, C = 3, or
    for ``jpeg`` also ``bgra``, C = 4: :func:`encode_jpeg_strips`)."""
    if crop_codec not in CROP_CODECS:
        raise ValueError(f"crop_codec must be one of {CROP_CODECS}, got {crop_codec!r}")
    if crop_codec == "raw":
        if layout != "rgb":
            raise ValueError(f"raw crops are stored as RGB, got layout {layout!r}")
        return np.stack([np.array(view, dtype=np.uint8) for view in view_crops])
    files, shape = [], None
    for view in view_crops:
        files.append(encode_jpeg_strips(view, quality, layout))
        shape = tuple(int(v) for v in np.shape(view))
    if shape is None:
        raise ShardFormatError("expected the crops of at least one viewpoint, got none")
    return JpegCrops(np.stack(files), (*shape[1:3], 3), shape[0], int(quality))


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


def files_crc32(files: np.ndarray) -> np.ndarray:
    """CRC-32 of each viewpoint's JPEG files: an object array ``(..., T)`` of 1-D uint8 files ->
    uint32 ``(...)``, the CRC of the T files' bytes in order (a strip: ``(..., 1)``)."""
    files = np.asarray(files, dtype=object)
    out = np.empty(files.shape[:-1], dtype=np.uint32)
    for index in np.ndindex(out.shape):
        crc = 0
        for data in files[index]:
            crc = zlib.crc32(np.ascontiguousarray(data, dtype=np.uint8), crc)
        out[index] = crc
    return out


def read_checked(dataset: h5py.Dataset, key=()) -> np.ndarray:
    """``dataset[key]``; a chunk that fails its Fletcher-32 checksum (or any h5py read error)
    becomes a :class:`~pipeline.shards.schema.ShardCorruptError` naming the shard and the
    commands that rebuild it."""
    try:
        return dataset[key]
    except OSError as exc:
        raise corrupt_shard(dataset.file.filename, dataset.name, exc) from exc


class StoredCrops:
    """A shard's crops dataset read as uint8 RGB ``(N, K, T, S, S, 3)`` whatever its codec and
    layout: ``shape`` and ``[...]`` index the ``(N, K, T)`` axes as an h5py dataset does
    (indices, slices, increasing index lists) and decode JPEG-coded frames. JPEG crops are an
    ``(N, K)`` dataset of strips (attr ``frames_per_file`` = T; schema v2) or, in v1 shards, an
    ``(N, K, T)`` dataset of one file per frame. They are checked against their viewpoint's
    stored CRC-32 (``<name>_crc32``) where the shard has one."""

    def __init__(self, dataset: h5py.Dataset, crc32: h5py.Dataset | None = None):
        self.dataset = dataset
        self.crc32 = crc32
        self._expected_crc32: np.ndarray | None = None          # (N, K), read on first use
        self.codec = str(dataset.attrs.get("codec", "raw"))
        if self.codec not in CROP_CODECS:
            raise ShardFormatError(f"{dataset.name}: unknown crop codec {self.codec!r}, expected "
                                   f"one of {CROP_CODECS}")
        self.frame_shape = (tuple(int(v) for v in dataset.attrs["frame_shape"])
                            if self.codec == "jpeg" else tuple(dataset.shape[3:]))
        #: T frames per JPEG file (strips) or None (raw arrays, v1 files of one frame)
        self.frames_per_file = (int(dataset.attrs["frames_per_file"])
                                if "frames_per_file" in dataset.attrs else None)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.frames_per_file is not None:
            return tuple(self.dataset.shape[:2]) + (self.frames_per_file,) + self.frame_shape
        return tuple(self.dataset.shape[:3]) + self.frame_shape

    def __len__(self) -> int:
        return int(self.dataset.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        if self.codec == "raw":
            return read_checked(self.dataset, key)
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3:
            raise IndexError(f"{self.dataset.name}: index the (N, K, T) axes only, got {key}")
        files = self._checked_files(key[:2])
        if self.frames_per_file is None:
            return decode_jpeg_frames(files if len(key) < 3 else files[..., key[2]],
                                      self.frame_shape)
        frames = decode_jpeg_strips(files, self.frame_shape, self.frames_per_file)
        if len(key) < 3:
            return frames
        return frames[(slice(None),) * files.ndim + (key[2],)]

    def take(self, row: int, views: Sequence[int]) -> np.ndarray:
        """One sample's crops at ``views`` (viewpoint indices in any order, no repeats), in that
        order: ``(len(views), T, S, S, 3)`` uint8 RGB. h5py reads the viewpoints in increasing
        order; the JPEG files are put in the asked order before they are decoded, so the decoded
        crops are not copied once more to reorder them (1.2 MB per paper-size sample)."""
        views = np.asarray(views, dtype=np.int64)
        order = np.argsort(views)
        restore = np.argsort(order)
        key = (int(row), views[order].tolist())
        if self.codec == "raw":
            return read_checked(self.dataset, key)[restore]
        files = self._checked_files(key)[restore]
        if self.frames_per_file is None:
            return decode_jpeg_frames(files, self.frame_shape)
        return decode_jpeg_strips(files, self.frame_shape, self.frames_per_file)

    def _checked_files(self, key) -> np.ndarray:
        """The JPEG files of whole viewpoints at ``key`` (an index of the ``(N, K)`` axes) as an
        object array, checked against their stored CRC-32 where the shard has one."""
        files = read_checked(self.dataset, key)
        strips = self.frames_per_file is not None
        if strips and not (isinstance(files, np.ndarray) and files.dtype == object):
            single = np.empty((), dtype=object)              # h5py gives one file bare
            single[()] = files
            files = single
        if self.crc32 is not None:
            if self._expected_crc32 is None:             # one small read instead of one per key
                self._expected_crc32 = read_checked(self.crc32)
            got = files_crc32(files[..., None] if strips else files)
            bad = np.argwhere(got != self._expected_crc32[key])
            if bad.size:
                raise corrupt_shard(self.dataset.file.filename, self.dataset.name,
                                    f"CRC-32 of {len(bad)} viewpoint(s) at {key} differs")
        return files


def quantise_feature(key: str, values: np.ndarray, span_db: float
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Float features ``(N, K, C, M, F)`` -> ``(uint8 codes, max_db (N, K) float32 or None)``.

    dB features (:data:`DB_FEATURES`): ``q = round((max - x) / span_db * 255)`` with ``max``
    per viewpoint; every value lies within ``span_db`` (top_db) of it, so the error is at most
    ``span_db / 510`` (0.2 dB at 100 dB). Intensity vectors: ``q = round((x + 1) * 127.5)``,
    error at most 1/255 (their components lie in [-1, 1])."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 5:
        raise ValueError(f"expected features shaped (N, K, C, M, F), got {values.shape}")
    rows = values.reshape(values.shape[0] * values.shape[1], -1)      # one row per viewpoint
    codes = np.empty(rows.shape, dtype=np.uint8)
    if key in DB_FEATURES:
        max_db = rows.max(axis=1)                       # numpy's max is SIMD; numba's is not
        _quantise_db_kernel(rows, max_db, np.float32(255.0 / span_db), codes)
        return codes.reshape(values.shape), max_db.reshape(values.shape[:2])
    _quantise_unit_kernel(rows, codes)
    return codes.reshape(values.shape), None


# The kernels do numpy's float32 steps in its order (max - x, * scale, + 0.5, clip, truncate),
# so the codes are those of the array formulas bit for bit (tested), in one pass instead of five
# over float32 temporaries: 0.03 CPU-s per clip less in preprocessing.
@njit(cache=True, nogil=True)
def _quantise_db_kernel(rows, max_db, scale, codes):  # pragma: no cover - numba
    """Per row of ``rows (G, L)`` float32 with its max ``max_db[g]``: the codes
    ``clip((max - x) * scale + 0.5, 0, 255)`` truncated to uint8."""
    half, low, high = np.float32(0.5), np.float32(0.0), np.float32(255.0)
    for g in range(rows.shape[0]):
        top = max_db[g]
        for i in range(rows.shape[1]):
            scaled = (top - rows[g, i]) * scale + half
            codes[g, i] = np.uint8(min(max(scaled, low), high))


@njit(cache=True, nogil=True)
def _quantise_unit_kernel(rows, codes):  # pragma: no cover - numba
    """``clip(x, -1, 1)``, ``+ 1``, ``* 127.5``, ``+ 0.5``, truncated to uint8 (float32)."""
    one, step, half = np.float32(1.0), np.float32(127.5), np.float32(0.5)
    for g in range(rows.shape[0]):
        for i in range(rows.shape[1]):
            codes[g, i] = np.uint8((min(max(rows[g, i], -one), one) + one) * step + half)


def dequantise_feature(codes: np.ndarray, max_db: np.ndarray | None,
                       span_db: float) -> np.ndarray:
    """Inverse of :func:`quantise_feature`: codes ``(..., C, M, F)`` and, for dB features,
    ``max_db`` of shape ``codes.shape[:-3]`` -> float32."""
    return FeatureCodes.from_uint8(codes, max_db, span_db).values()


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
    affine = FeatureCodes.from_uint8(codes, max_db, span_db)
    offset, step = affine.offset.astype(np.float64), affine.step
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


@dataclass(frozen=True)
class FeatureCodes:
    """Stored feature values as codes and the affine map back to float32:
    ``value = offset[..., None, None, None] + float32(step) * codes`` in float32 arithmetic.

    uint8 codes of dB features: ``offset = max_db`` per viewpoint, ``step = -span_db / 255``;
    of intensity vectors: ``offset = -1``, ``step = 1 / 127.5`` (the inverse of
    :func:`quantise_feature`, equal to :func:`dequantise_feature` bit for bit); float16 values:
    ``offset = 0``, ``step = 1``. ``codes`` is ``(..., C, M, F)``, ``offset`` ``codes.shape[:-3]``
    float32."""

    codes: np.ndarray
    offset: np.ndarray
    step: float

    @classmethod
    def from_uint8(cls, codes: np.ndarray, max_db: np.ndarray | None,
                   span_db: float) -> FeatureCodes:
        """The map of :func:`quantise_feature`'s uint8 codes ``(..., C, M, F)``: dB features
        with their ``max_db`` (shape ``codes.shape[:-3]``), intensity vectors with None. The one
        place that states the codec's constants (:func:`dequantise_feature`,
        :func:`feature_code_moments` and :class:`StoredFeatures` read them here)."""
        if max_db is None:
            return cls(codes, np.full(np.shape(codes)[:-3], -1.0, dtype=np.float32), 1.0 / 127.5)
        return cls(codes, np.asarray(max_db, dtype=np.float32), -float(span_db) / 255.0)

    def values(self) -> np.ndarray:
        """float32 values ``(..., C, M, F)``."""
        return (self.offset[..., None, None, None]
                + np.float32(self.step) * np.asarray(self.codes, dtype=np.float32))

    def take(self, index) -> FeatureCodes:
        """The viewpoints ``index`` of the first axis (an index array), in its order."""
        return FeatureCodes(self.codes[index], self.offset[index], self.step)

    @staticmethod
    def concatenate(parts: Sequence[FeatureCodes]) -> FeatureCodes:
        """The parts' viewpoints one after another (parts of one feature share ``step``)."""
        if len({part.step for part in parts}) > 1:
            raise ValueError(f"parts with different steps: {[part.step for part in parts]}")
        return FeatureCodes(np.concatenate([part.codes for part in parts]),
                            np.concatenate([part.offset for part in parts]), parts[0].step)


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
        self._all_max_db: np.ndarray | None = None     # (N, K), read whole on first use

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def __len__(self) -> int:
        return int(self.dataset.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        return self.codes(key).values()

    def codes(self, key) -> FeatureCodes:
        """The stored values at ``key`` (an index of the ``(N, K)`` axes, as for ``[...]``) as
        :class:`FeatureCodes`, not yet turned into float32: a reader that scales them anyway
        (the trainer's normalisation) folds the codec's affine map into its own."""
        if isinstance(key, tuple) and len(key) > 2:
            raise IndexError(f"{self.dataset.name}: index the (N, K) axes only, got {key}")
        values = self._read(self.dataset, key)
        if self.codec == "float16":
            return FeatureCodes(values, np.zeros(values.shape[:-3], dtype=np.float32), 1.0)
        if self.max_db is None:
            return FeatureCodes.from_uint8(values, None, self.span_db)
        if self._all_max_db is None:          # one small read instead of one per sample read
            self._all_max_db = read_checked(self.max_db)
        return FeatureCodes.from_uint8(values, self._all_max_db[key], self.span_db)

    @staticmethod
    def _read(dataset: h5py.Dataset, key) -> np.ndarray:
        """``dataset[key]``, with a list of viewpoints of one sample read view by view: h5py's
        point selection on a chunked, compressed dataset took 9.5 ms for 4 views of a bank of 16,
        four plain reads 0.06 ms (bench/train.py)."""
        if (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], (int, np.integer))
                and isinstance(key[1], (list, np.ndarray))):
            row, views = key
            return np.stack([read_checked(dataset, (row, int(view))) for view in views])
        return read_checked(dataset, key)


def stored_features(h5: h5py.File | h5py.Group, name: str) -> StoredFeatures:
    """The feature dataset ``name`` (``views/<set>/<key>``) of an open shard, as float32."""
    return StoredFeatures(h5, name)


def stored_crops(h5: h5py.File | h5py.Group, name: str) -> StoredCrops:
    """The crops dataset ``name`` (``views/<set>/crops``) of an open shard, decoded (and its JPEG
    files checked) on read."""
    crc32 = h5[f"{name}_crc32"] if f"{name}_crc32" in h5 else None
    return StoredCrops(h5[name], crc32)
