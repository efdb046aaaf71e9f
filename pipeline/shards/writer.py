"""Writing one shard atomically (``<name>.h5.tmp``, fsynced, renamed), with its index record."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from pipeline.shards.codecs import (STRIP_CHROMA, JpegCrops, QuantisedFeature,
                                    encode_sample_crops, encode_sample_feature, files_crc32)
from pipeline.shards.schema import (CHECKSUMS, CROP_CODECS, DB_FEATURES, FEATURE_CHANNELS,
                                    FEATURE_CODECS, FIELDS_BY_NAME, NORM_MOMENTS_GROUP,
                                    SAMPLE_FIELDS, SCHEMA_VERSION, FieldSpec, ShardFormatError)


def _checked(shape: tuple[int, ...]) -> dict[str, Any]:
    """A small dataset stored as one chunk with HDF5's Fletcher-32 checksum (an empty one, which
    cannot be chunked, stays contiguous: no bytes to check)."""
    return {"chunks": tuple(shape), "fletcher32": True} if shape and all(shape) else {}


def _dataset_kwargs(spec: FieldSpec, shape: tuple[int, ...], compression: str | None,
                    level: int) -> dict[str, Any]:
    """Layout of a numeric dataset: every one carries a Fletcher-32 checksum per chunk, which
    HDF5 checks on each read. Bulk fields (``spec.compressed``: audio, keyframes, raw crops,
    features) are chunked per sample, and per viewpoint for view data, so random access reads
    one chunk; ``compression`` applies to them; small fields are one chunk."""
    if not spec.compressed or len(shape) < 2:
        return _checked(shape)
    kwargs = _checked(shape)
    if not kwargs:
        return kwargs
    chunk = list(shape)
    chunk[0] = 1
    if spec.name.startswith("views/") and len(shape) >= 3:
        chunk[1] = 1
    kwargs["chunks"] = tuple(chunk)
    if compression:
        kwargs["compression"] = compression
        if compression == "gzip":
            kwargs["compression_opts"] = level
        kwargs["shuffle"] = True
    return kwargs

def write_shard(path: str | Path, samples: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any], compression: str | None = "gzip",
                level: int = 4, crop_codec: str = "raw", jpeg_quality: int = 95,
                feature_codec: str = "float16", feature_span_db: float = 100.0,
                norm_moments: Mapping[str, tuple[int, np.ndarray, np.ndarray]] | None = None
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
    ``norm_moments``: ``{key: (count, mean (C, M), m2 (C, M))}`` of the shard's train features,
    stored under ``norm_moments/<key>/`` (float64) for the norm statistics pass.
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
        h5.attrs["checksums"] = CHECKSUMS
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
        for key, (count, mean, m2) in (norm_moments or {}).items():
            group = h5.create_group(f"{NORM_MOMENTS_GROUP}/{key}")
            # count as a (1,) array: a scalar dataset cannot be chunked, so it would carry no
            # Fletcher-32 checksum
            for name, value in (("count", np.array([count], dtype=np.int64)),
                                ("mean", np.asarray(mean, dtype=np.float64)),
                                ("m2", np.asarray(m2, dtype=np.float64))):
                group.create_dataset(name, data=value, **_checked(value.shape))
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
        max_db = np.stack([row.max_db for row in coded])
        h5.create_dataset(f"{spec.name}_max_db", data=max_db, **_checked(max_db.shape))


def _write_jpeg_crops(h5: h5py.File, name: str, crops, quality: int) -> None:
    """``(N, K, T, S, S, 3)`` crops (an array, or N per-sample arrays or :class:`JpegCrops`) as
    a ``(N, K)`` dataset of JPEG strips, one per viewpoint (one chunk per sample; the files are
    already compressed), with its ``(N, K)`` CRC-32 beside it."""
    coded = [row if isinstance(row, JpegCrops)
             else encode_sample_crops(np.asarray(row, dtype=np.uint8), "jpeg", quality)
             for row in crops]
    if any(row.quality != quality for row in coded):
        raise ShardFormatError(f"{name}: expected JPEG quality {quality}, got "
                               f"{sorted({row.quality for row in coded})}")
    shapes = {(row.n_frames, row.frame_shape) for row in coded}
    if len(shapes) > 1:
        raise ShardFormatError(f"{name}: expected every sample's crops of one shape, got "
                               f"{sorted(shapes)}")
    encoded = (np.stack([row.files for row in coded]) if coded else np.empty((0, 0), object))
    chunks = (1, *encoded.shape[1:]) if all(encoded.shape) else None
    dataset = h5.create_dataset(name, shape=encoded.shape, dtype=h5py.vlen_dtype(np.uint8),
                                chunks=chunks)
    if encoded.size:
        dataset[...] = encoded
    dataset.attrs["codec"] = "jpeg"
    dataset.attrs["quality"] = int(quality)
    dataset.attrs["chroma"] = STRIP_CHROMA
    n_frames, frame_shape = shapes.pop() if shapes else (0, (0, 0, 3))
    dataset.attrs["frames_per_file"] = int(n_frames)
    dataset.attrs["frame_shape"] = np.asarray(frame_shape, dtype=np.int64)
    crc32 = (files_crc32(encoded[..., None]) if encoded.size
             else np.zeros(encoded.shape, np.uint32))
    h5.create_dataset(f"{name}_crc32", data=crc32, **_checked(crc32.shape))


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
