"""Codecs for a viewpoint bank: bytes per sample and decode cost against today's storage.

    python bench/codecs.py --shards data/shards/demo [--samples 32]

Today a shard stores crops as uint8 and the per-viewpoint audio features as float16, both with
gzip level 1 (+ shuffle), chunked per sample and viewpoint. A bank of 16 viewpoints per set
multiplies both (issue 14: 5.1 MB instead of 1.4 MB per sample at 56 px). This measures, on
samples of a shard folder, in the same run:

- crops: gzip 1 (today) against JPEG at several qualities (OpenCV, per frame), with the mean
  absolute grey-level error against the stored crops and the decode time per sample;
- features: float16 + gzip 1 (today) against float16 with the two bytes of each value stored
  apart (byte shuffle) + gzip 1, and against a uint8 quantisation over each feature's dB / unit
  range + gzip 1, with its largest error.

Ratios are against today's bytes; nothing here changes how shards are written.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.shards import ShardIndex, open_shard, stored_crops, stored_features  # noqa: E402


def gzip1(array: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(array).tobytes(), 1)


def byte_shuffled(array: np.ndarray) -> np.ndarray:
    """The bytes of a float16 array regrouped: all low bytes, then all high bytes."""
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1, 2)
    return np.concatenate([raw[:, 0], raw[:, 1]])


def jpeg_roundtrip(crops: np.ndarray, quality: int) -> tuple[int, np.ndarray, float]:
    """Bytes, decoded crops and decode seconds of ``crops`` (..., S, S, 3) uint8 RGB as JPEG."""
    frames = crops.reshape(-1, *crops.shape[-3:])
    encoded = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
               for f in frames]
    started = time.perf_counter()
    decoded = np.stack([cv2.imdecode(e, cv2.IMREAD_COLOR)[..., ::-1] for e in encoded])
    seconds = time.perf_counter() - started
    return sum(len(e) for e in encoded), decoded.reshape(crops.shape), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="data/shards/demo")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--qualities", type=int, nargs="+", default=[75, 90, 95])
    args = parser.parse_args()
    paths = ShardIndex.load(args.shards).paths("train")
    if not paths:
        print(f"error: no train shards in {args.shards} (make preprocess first)", file=sys.stderr)
        return 2
    with open_shard(paths[0]) as h5:
        n = min(args.samples, int(h5.attrs["n_samples"]))
        crops = stored_crops(h5, "views/random/crops")[:n]         # (N, K, T, S, S, 3)
        features = {key: stored_features(h5, f"views/random/{key}")[:n].astype(np.float16)
                    for key in ("logmel_foa", "iv", "logmel_beam")}
    per = lambda total: total / n / 1e3                            # kB per sample
    print(f"# {n} samples of {paths[0].name}: crops {crops.shape[1:]} uint8, features float16")
    base = len(gzip1(crops))
    started = time.perf_counter()
    for _ in range(3):
        np.frombuffer(zlib.decompress(gzip1(crops)), dtype=np.uint8)
    gzip_decode = (time.perf_counter() - started) / 3 / n
    print("\n| crops | kB/sample | ratio | mean abs error (grey levels) | decode ms/sample |")
    print("|---|---|---|---|---|")
    print(f"| uint8 + gzip 1 (today) | {per(base):.0f} | 1.00 | 0 | {1e3 * gzip_decode:.2f} |")
    for quality in args.qualities:
        size, decoded, seconds = jpeg_roundtrip(crops, quality)
        error = float(np.mean(np.abs(decoded.astype(np.int16) - crops.astype(np.int16))))
        print(f"| JPEG q{quality} | {per(size):.0f} | {size / base:.2f} | {error:.2f} | "
              f"{1e3 * seconds / n:.2f} |")
    print("\n| features | kB/sample | ratio | largest error |")
    print("|---|---|---|---|")
    today = sum(len(gzip1(v)) for v in features.values())
    shuffled = sum(len(gzip1(byte_shuffled(v))) for v in features.values())
    quantised, worst = 0, {}
    for key, value in features.items():
        x = value.astype(np.float32)
        low, high = float(x.min()), float(x.max())
        step = (high - low) / 255.0 or 1.0
        q = np.round((x - low) / step).astype(np.uint8)
        quantised += len(gzip1(q))
        worst[key] = float(np.max(np.abs(q * step + low - x)))
    print(f"| float16 + gzip 1 (today) | {per(today):.0f} | 1.00 | 0 |")
    print(f"| float16, byte shuffle + gzip 1 | {per(shuffled):.0f} | {shuffled / today:.2f} | 0 |")
    print(f"| uint8 over each feature's range + gzip 1 | {per(quantised):.0f} | "
          f"{quantised / today:.2f} | " + ", ".join(f"{k} {v:.3g}" for k, v in worst.items())
          + " (dB for log-mel, unit for IV) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
