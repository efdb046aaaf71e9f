"""Metric rows for the training loop: a CSV file, TensorBoard when installed, a curves PNG.

Each row is a flat dict (step, epoch, phase, split, loss, one column per loss term and
accuracy, timings). The CSV header is the union of the fixed columns and every term the
curriculum can produce, so rows of different phases share one file.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

TERMS = ("avc_v2a", "avc_a2v", "avsa_a2v", "avsa_v2a", "avts_v2a", "avts_a2v")
COLUMNS = ("step", "epoch", "phase", "split", "loss",
           *TERMS, *(f"acc_{t}" for t in TERMS), "acc_avsa_a2v_in_clip", "acc_avsa_v2a_in_clip",
           "lr", "grad_norm", "step_ms", "clips_per_s", "data_wait_pct")


class MetricsLog:
    """Rows in ``<run_dir>/metrics.csv`` (and TensorBoard if it is installed).

    The file is rewritten at start with ``rows`` (a resumed run passes the checkpoint's
    history, so rows logged after the last checkpoint of an interrupted run disappear).
    """

    def __init__(self, run_dir: str | Path, rows: Sequence[dict[str, Any]] = (),
                 tensorboard: bool = True, columns: Sequence[str] = COLUMNS):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = tuple(columns)                 # the trainer's, or a baseline's own
        self.rows: list[dict[str, Any]] = list(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tensorboard = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                log.debug("tensorboard is not installed; writing metrics.csv only")

    def write(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"metric columns not in the log's columns: {sorted(unknown)}")
        self.rows.append(row)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, float) and key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.csv with numbers parsed (empty cells dropped)."""
    rows = []
    with Path(path).open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    continue
                try:
                    row[key] = float(value) if key not in ("phase", "split") else value
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def validation_in_clip(rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """The AVSA pretext's held-out score per epoch: ``{"epoch", "a2v", "v2a"}`` of every
    validation row (of :func:`read_metrics`) that carries in-clip accuracies (top-1 among a
    clip's K viewpoints, chance 1/K); empty without a validation split or translation."""
    return [{"epoch": row["epoch"], "a2v": row["acc_avsa_a2v_in_clip"],
             "v2a": row["acc_avsa_v2a_in_clip"]}
            for row in rows if row.get("split") == "val" and "acc_avsa_a2v_in_clip" in row]


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Loss terms and accuracies against the step (train rows as lines, val rows as dots of
    the same colour);
    a dashed line marks each change of curriculum phase."""
    train = [r for r in rows if r.get("split") == "train"]
    if not train:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, prefix in ((ax_loss, ""), (ax_acc, "acc_")):
        names = [c for c in COLUMNS if c.startswith(prefix) and
                 c.removeprefix(prefix).startswith(("avc", "avsa", "avts"))]
        for name in names:
            points = [(r["step"], r[name]) for r in train if name in r]
            val = [(r["step"], r[name]) for r in rows if r.get("split") == "val" and name in r]
            if points:
                (line,) = ax.plot(*zip(*points), label=name)
                if val:                              # validation dots in the line's colour
                    ax.plot(*zip(*val), "o", markersize=4, color=line.get_color())
        for previous, current in zip(train, train[1:]):
            if previous["phase"] != current["phase"]:
                ax.axvline(current["step"], color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel("step")
        ax.set_ylabel("InfoNCE loss" if not prefix else "top-1 accuracy in batch")
        ax.legend(fontsize=7)
    figure.suptitle(f"{title} (lines: train, dots: validation)")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
