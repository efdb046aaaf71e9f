"""The shard schema (v1): what one HDF5 shard holds, its constants and its errors.

A shard holds N samples; one sample is one window (``audio.window_s``, 1 s by default) of one
clip with K viewpoints from each of two viewpoint sources (``random`` and ``yolo``), stored side
by side so that every experiment trains from the same shards. Every per-sample dataset has N as
its first axis. :data:`SAMPLE_FIELDS` is the single source of truth; ``docs/SHARDS.md`` is
generated from it (:mod:`pipeline.shards.doc`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

#: v2: JPEG crops as one strip per viewpoint (``(N, K)``, 4:2:2) instead of one file per frame.
SCHEMA_VERSION = 2
#: Versions this code reads: a v1 shard differs only in its JPEG crop layout (read as before).
READABLE_SCHEMA_VERSIONS = (1, 2)
VIEWPOINT_SOURCES = ("random", "yolo")
MAX_DETECTIONS = 16
MAX_GT_OBJECTS = 8
INDEX_NAME = "shards.jsonl"
FAILURES_NAME = "failures.jsonl"
NORM_STATS_NAME = "norm_stats.json"
NORM_STATS_SCHEMA_VERSION = 1
#: Root attribute ``checksums`` of shards whose every read is checked: numeric datasets carry
#: HDF5's Fletcher-32 filter (a chunk that fails it cannot be read), JPEG-coded crops a CRC-32
#: per viewpoint (``views/<set>/crops_crc32``). Shards without it are read unchecked (a warning).
CHECKSUMS = "fletcher32+crc32"
#: Group of the shard's own moments of its train features (``<group>/<key>/{count, mean, m2}``),
#: written with the shard so that the norm statistics pass does not read the features again.
NORM_MOMENTS_GROUP = "norm_moments"
#: ``make verify`` writes the shards it found corrupted here; a plain preprocessing rerun
#: rebuilds them and removes the file.
VERIFY_FAILURES_NAME = "verify_failures.jsonl"
#: How crops are stored: ``jpeg`` (one JPEG strip per viewpoint, variable-length uint8, the
#: default of preprocessing) or ``raw`` (uint8 arrays, gzip/lzf like the other fields). Readers go
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
                  "as one JPEG per viewpoint, its T frames stacked top to bottom (4:2:2 "
                  "chroma), a (N, K) variable-length uint8 dataset with attrs codec, quality, "
                  "chroma, frames_per_file, frame_shape (shards.crop_codec=jpeg, the default; "
                  "v1 shards: one JPEG per frame, (N, K, T)), or as this uint8 array (raw); "
                  "read with stored_crops()", True),
        FieldSpec(f"{prefix}/crops_crc32", "(N, K)", "uint32",
                  "jpeg crop codec only: CRC-32 of the viewpoint's JPEG bytes (v1: its T files "
                  "in order), checked on every read", optional=True),
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


class ShardCorruptError(ShardFormatError):
    """Stored bytes fail their checksum (or h5py cannot read them): the shard is corrupted."""


def rebuild_advice(path: str | Path) -> str:
    """What to do about a bad shard: the commands that find every bad shard of its folder and
    rebuild them."""
    folder = Path(path).parent
    return (f"run make verify SHARDS={folder} (it lists every bad shard of the folder), then "
            f"rerun the preprocessing that made it (make preprocess SHARDS={folder} with the "
            f"same settings), which rebuilds what verify flagged")


def corrupt_shard(path: str | Path, what: str, exc: BaseException | str) -> ShardCorruptError:
    """The error for stored bytes of ``path`` that cannot be trusted: a checksum that fails
    (HDF5's Fletcher-32, h5py's ``OSError``, or a crop CRC-32) or an unreadable file."""
    reason = " ".join(str(exc).split())[:160]
    return ShardCorruptError(f"{path}: {what} is corrupted or unreadable ({reason}); "
                             f"{rebuild_advice(path)}")


def schema_markdown() -> str:
    """The schema as a Markdown table (used in the README)."""
    lines = ["| dataset | shape | dtype | meaning |", "|---|---|---|---|"]
    for spec in SAMPLE_FIELDS:
        lines.append(f"| `{spec.name}` | {spec.shape} | {spec.dtype} | {spec.description} |")
    return "\n".join(lines)


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only and check its schema version."""
    h5 = h5py.File(path, "r")
    version = int(h5.attrs.get("schema_version", -1))
    if version not in READABLE_SCHEMA_VERSIONS:
        h5.close()
        raise ShardFormatError(f"{path}: schema version {version}, this code reads "
                               f"v{'/'.join(map(str, READABLE_SCHEMA_VERSIONS))}; re-run "
                               "preprocessing")
    folder = str(Path(path).resolve().parent)
    if h5.attrs.get("checksums") != CHECKSUMS and folder not in _WARNED_UNCHECKED:
        _WARNED_UNCHECKED.add(folder)
        log.warning("%s: shards written without checksums (before they existed): a corrupted "
                    "byte is read silently; make verify SHARDS=%s checks the whole files, and "
                    "rebuilding the folder (a new out_dir) checks every read", folder, folder)
    return h5


_WARNED_UNCHECKED: set[str] = set()             # folders warned about, once per process
