"""HDF5 shards: the contract between preprocessing and the trainer (schema v1).

A shard holds N samples, one per window of one clip, with the viewpoints of every viewpoint
source side by side (:mod:`~pipeline.shards.schema`, the single source of truth;
``docs/SHARDS.md`` is generated from it by ``python -m pipeline.shards --write
docs/SHARDS.md``). Shards are written to ``<name>.h5.tmp`` and renamed atomically, so a shard
that is visible is complete (:mod:`~pipeline.shards.writer`). Beside them, ``shards.jsonl``
indexes them (counts, bytes, sha256, config hash) and ``failures.jsonl`` records every rejected
clip with its stage and reason (:mod:`~pipeline.shards.index`); ``norm_stats.json`` holds the
features' normalisation statistics (:mod:`~pipeline.shards.norm`). Crops and features are read
through :func:`stored_crops` and :func:`stored_features`, which decode their codecs
(:mod:`~pipeline.shards.codecs`).

What a reader needs, in the order a newcomer meets it:

- the schema: :data:`SAMPLE_FIELDS`, :func:`open_shard`, :class:`ShardFormatError`;
- the folder: :class:`ShardIndex` (``shards.jsonl``), :func:`read_jsonl`;
- the stored arrays: :func:`stored_crops`, :func:`stored_features`;
- normalisation: :func:`read_norm_stats`, :class:`FeatureNorm`.
"""

from pipeline.shards.codecs import (FeatureCodes, JpegCrops, QuantisedFeature, StoredCrops,
                                    StoredFeatures, decode_jpeg_frames, decode_jpeg_strips,
                                    dequantise_feature, encode_jpeg_frames,
                                    encode_jpeg_strips, encode_sample_crops,
                                    encode_sample_feature, feature_code_moments, files_crc32,
                                    quantise_feature, read_checked, stored_crops,
                                    stored_features)
from pipeline.shards.doc import shards_document
from pipeline.shards.index import (ShardIndex, append_jsonl, flagged_by_verify, read_jsonl,
                                   record_as_dict, shard_settings, verify_shards)
from pipeline.shards.norm import FeatureNorm, read_norm_stats, write_norm_stats
from pipeline.shards.schema import (CHECKSUMS, CROP_CODECS, DB_FEATURES, FAILURES_NAME,
                                    FEATURE_CHANNELS, FEATURE_CODECS, FIELDS_BY_NAME, INDEX_NAME,
                                    MAX_DETECTIONS, MAX_GT_OBJECTS, NORM_MOMENTS_GROUP,
                                    NORM_STATS_NAME, NORM_STATS_SCHEMA_VERSION, SAMPLE_FIELDS,
                                    SCHEMA_VERSION, VERIFY_FAILURES_NAME, VIEWPOINT_SOURCES,
                                    FieldSpec,
                                    ShardCorruptError, ShardFormatError, corrupt_shard,
                                    open_shard, rebuild_advice, schema_markdown)
from pipeline.shards.writer import file_sha256, write_shard

__all__ = [
    "CHECKSUMS", "VERIFY_FAILURES_NAME", "ShardCorruptError", "corrupt_shard", "files_crc32",
    "flagged_by_verify", "read_checked", "rebuild_advice", "shard_settings",
    "CROP_CODECS", "DB_FEATURES", "FAILURES_NAME", "FEATURE_CHANNELS", "FEATURE_CODECS",
    "FIELDS_BY_NAME", "INDEX_NAME", "MAX_DETECTIONS", "MAX_GT_OBJECTS", "NORM_MOMENTS_GROUP",
    "NORM_STATS_NAME", "NORM_STATS_SCHEMA_VERSION", "SAMPLE_FIELDS", "SCHEMA_VERSION",
    "VIEWPOINT_SOURCES",
    "FeatureCodes", "FeatureNorm", "FieldSpec", "JpegCrops", "QuantisedFeature", "ShardFormatError",
    "ShardIndex", "StoredCrops", "StoredFeatures", "append_jsonl", "decode_jpeg_frames",
    "decode_jpeg_strips", "dequantise_feature", "encode_jpeg_frames", "encode_jpeg_strips",
    "encode_sample_crops", "encode_sample_feature",
    "feature_code_moments", "file_sha256", "open_shard", "quantise_feature", "read_jsonl",
    "read_norm_stats", "record_as_dict", "schema_markdown", "shards_document", "stored_crops",
    "stored_features", "verify_shards", "write_norm_stats", "write_shard",
]
