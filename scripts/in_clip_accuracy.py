"""In-clip accuracy of a checkpoint's AVSA pretext on one split: top-1 among each clip's K
uniform stored viewpoints (chance 1/K), translated audio -> crop (a2v) and translated video ->
audio (v2a). The trainer's validation rows compute the same; this scores a finished run on a
split it never validated on.

    python scripts/in_clip_accuracy.py runs/r25/A_base/ckpt.pt [--split val] [--k 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.checkpoint import load_trained_model  # noqa: E402
from trainer.data import ShardStream  # noqa: E402
from trainer.losses import in_clip_accuracy  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--split", default="val")
    parser.add_argument("--k", type=int, default=4, help="viewpoints per clip (the first K stored)")
    parser.add_argument("--shards", help="shard folder (default: the run's data.shards_dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, cfg = load_trained_model(args.ckpt)
    data = dataclasses.replace(cfg.data, num_workers=0)
    stream = ShardStream(args.shards or cfg.data.shards_dir, args.split, data, training=False,
                         equal_steps=False, viewpoints_per_sample=args.k, batch_size=16)
    totals = {"a2v": 0.0, "v2a": 0.0}
    count = 0
    with torch.no_grad():
        for batch in stream:
            out = model(batch["video"], batch["audio"], batch["azimuth_rad"],
                        batch["elevation_rad"], translate=True)
            n = batch["video"].shape[0]
            totals["a2v"] += n * in_clip_accuracy(out["video_from_audio"], out["video"]).item()
            totals["v2a"] += n * in_clip_accuracy(out["audio_from_video"], out["audio"]).item()
            count += n
    scores = {key: round(value / max(count, 1), 3) for key, value in totals.items()}
    print(f"{args.ckpt} {args.split} ({count} windows, K={args.k}, chance {1 / args.k:.2f}): "
          f"a2v {scores['a2v']} v2a {scores['v2a']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
