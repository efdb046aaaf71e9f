"""Plot the AVSA pretext's in-clip accuracy per epoch for several runs (validation rows of
each run's ``metrics.csv``; chance 1/K), to compare pretext recipes on held-out clips.

    python scripts/plot_in_clip.py runs/r25/A_base runs/r25/B_obj50_sameview \
        --out results/presets/direction-pretext-in-clip.png

Each run gets one colour: solid = translated audio picks the crop (a2v), dashed = translated
video picks the audio (v2a). Runs without validation rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.metrics import read_metrics, validation_in_clip  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with metrics.csv)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--chance", type=float, default=0.25, help="1/K, drawn as a line")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, run in enumerate(args.runs):
        curve = validation_in_clip(read_metrics(run / "metrics.csv"))
        if not curve:
            print(f"{run}: no validation in-clip rows, skipped")
            continue
        colour = f"C{index % 10}"
        epochs = [point["epoch"] for point in curve]
        ax.plot(epochs, [p["a2v"] for p in curve], color=colour, label=f"{run.name} a2v")
        ax.plot(epochs, [p["v2a"] for p in curve], color=colour, linestyle="--",
                label=f"{run.name} v2a")
    ax.axhline(args.chance, color="grey", linewidth=0.8, label="chance")
    ax.set_ylim(bottom=args.chance - 0.03)
    ax.set_xlabel("epoch")
    ax.set_ylabel("in-clip accuracy (validation)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"==> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
