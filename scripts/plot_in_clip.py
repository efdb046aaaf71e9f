"""Plot the AVSA pretext's in-clip accuracy per epoch for several runs (validation rows of
each run's ``metrics.csv``; chance 1/K), to compare pretext recipes on held-out clips.

    python scripts/plot_in_clip.py runs/r25/A_base runs/r25/B_obj50_sameview \
        --out results/presets/direction-pretext-in-clip.png

Each run gets one colour: solid = translated audio picks the crop (a2v), dashed = translated
video picks the audio (v2a). Runs without validation rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def validation_curve(run_dir: Path) -> dict[str, list[float]]:
    """``{"epoch": [...], "a2v": [...], "v2a": [...]}`` of the run's validation rows that
    carry in-clip accuracies (the AVSA-type phases)."""
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle)
                if r.get("split") == "val" and r.get("acc_avsa_a2v_in_clip")]
    return {"epoch": [int(r["epoch"]) for r in rows],
            "a2v": [float(r["acc_avsa_a2v_in_clip"]) for r in rows],
            "v2a": [float(r["acc_avsa_v2a_in_clip"]) for r in rows]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with metrics.csv)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--chance", type=float, default=0.25, help="1/K, drawn as a line")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, run in enumerate(args.runs):
        curve = validation_curve(run)
        if not curve["epoch"]:
            print(f"{run}: no validation in-clip rows, skipped")
            continue
        colour = f"C{index % 10}"
        ax.plot(curve["epoch"], curve["a2v"], color=colour, label=f"{run.name} a2v")
        ax.plot(curve["epoch"], curve["v2a"], color=colour, linestyle="--", label=f"{run.name} v2a")
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
