"""``norm_stats.json``: per-channel, per-mel-band statistics of the training shards' features."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from pipeline.shards.schema import FEATURE_CHANNELS, NORM_STATS_SCHEMA_VERSION, ShardFormatError


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
