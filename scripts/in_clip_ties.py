"""A reference for the AVSA pretext's in-clip accuracy on a synthetic shard folder: top-1 among
each window's first K stored uniform viewpoints for a model that sees, in each crop, exactly
which sounding objects it shows, and nothing else (``evals.av.ceiling.in_clip_sounding_ties``).
Also prints the share of views that show a sounding object and of windows with one in some
view. Not a bound: other cues (sky or ground, silent objects, elevation) can do better.

    python scripts/in_clip_ties.py data/shards/direction [--split val] [--k 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.av.ceiling import in_clip_sounding_ties, objects_in_view  # noqa: E402
from evals.frozen import GT_FIELDS  # noqa: E402
from pipeline.shards import open_shard  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", type=Path, help="a synthetic shard folder (with gt/*)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--k", type=int, default=4, help="viewpoints per window (the first K)")
    args = parser.parse_args()
    paths = sorted(args.shards.glob(f"{args.split}-*.h5"))
    if not paths:
        raise SystemExit(f"error: no {args.split}-*.h5 shards in {args.shards}")
    scores, shown, windows_with_one = [], [], []
    for path in paths:
        with open_shard(path) as h5:
            if "gt/count" not in h5:
                raise SystemExit(f"error: {path} has no ground truth (gt/*): synthetic shards only")
            view = {key: h5[f"views/random/{key}"][:, :args.k]
                    for key in ("azimuth_rad", "elevation_rad", "fov_rad")}
            gt = {key: h5[key][:] for key in GT_FIELDS}
        for i in range(len(gt["gt/count"])):
            window = {key: value[i] for key, value in gt.items()}
            count = int(window["gt/count"])
            _, inside = objects_in_view(window, view["azimuth_rad"][i],
                                        view["elevation_rad"][i], view["fov_rad"][i])
            sounding = window["gt/sounding"][:count] & window["gt/visible"][:count]
            shows = inside & sounding[None]
            scores.append(in_clip_sounding_ties(shows))
            shown.append(shows.any(axis=1).mean())
            windows_with_one.append(shows.any())
    print(f"{args.split}: {len(scores)} windows, K = {args.k}: in-clip top-1 with the sounding "
          f"objects as the only cue {np.mean(scores):.3f} (chance {1 / args.k:.3f}); views "
          f"showing a sounding object {np.mean(shown):.3f}; windows with one in some view "
          f"{np.mean(windows_with_one):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
