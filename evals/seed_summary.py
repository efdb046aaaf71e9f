"""What a recipe gives over pretraining seeds: every evaluation of two groups of runs (e.g. the
demo's AVC -> AVSA model and its AVC-only model, seeds 0, 1, 2), side by side, with paired
differences.

    python -m evals.seed_summary avsa=runs/demo_avsa,runs/demo_avsa_s1,runs/demo_avsa_s2 \\
        avc=runs/demo_avc,runs/demo_avc_s1,runs/demo_avc_s2 --out runs/demo_seeds.md
    make demo-seeds          # trains seeds 1 and 2, evaluates all six runs, writes this report

The i-th run of each group shares pretraining seed i. Read from each run folder:
the binary evaluation on uniform viewpoints (:mod:`evals.audio.binary`), ``eval_direction.json``
(:mod:`evals.audio.direction`) and ``eval_seld.json`` (:mod:`evals.audio.seld`; per run the mean
over its head seeds). A missing evaluation leaves its cells "–".

Every table gives, per group, the mean ± sd over the pretraining seeds with the per-seed values
in brackets; every difference is paired by pretraining seed (mean, sd and the 95 % t interval of
the per-seed differences, :func:`evals.reproduction.paired_difference`). The binary tasks also
get the pair-level difference between the groups (the same test pairs scored by both models,
pooled over seeds, standard error clustered over test clips,
:func:`evals.reproduction.pair_level_difference`) and each run's own standard error. Within a
group, the encoder is compared with the same network's random weights and with the hand-made
inputs; between groups, encoder with encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from evals.reproduction import (mean_sd, pair_level_difference, paired_difference,
                                summarise_binary, summarise_pairs)

#: Where a run's binary evaluation on uniform viewpoints is, in order of preference.
UNIFORM_BINARY_JSONS = ("eval_binary_random.json", "eval_binary.json")
DIRECTION_JSON, SELD_JSON = "eval_direction.json", "eval_seld.json"
#: (label, task, view count) of the binary rows.
BINARY_ROWS = (("AVC-bin, 4 views", "avc", "4"), ("AVSA-bin, 4 views", "avsa", "4"),
               ("AVSA-bin, 1 view", "avsa", "1"))
DIRECTION_VARIANTS = (("single_source", "one source"), ("two_sources", "two sources"))
#: (key, label, scale, decimals) of the SELD scores.
SELD_SCORES = (("f_score", "F20 %", 100.0, 1), ("localization_error_deg", "LE °", 1.0, 1),
               ("error_rate", "ER20", 1.0, 2), ("localization_recall", "LR %", 100.0, 1),
               ("seld_score", "SELD", 1.0, 3))


def _read(run: Path, name: str) -> dict[str, Any] | None:
    path = run / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def binary_record(run: Path) -> dict[str, Any] | None:
    """The grid record's view of a run's binary evaluation on uniform viewpoints (accuracies,
    SEs, controls and, where its pair file exists, the per-pair correctness):
    ``eval_binary_random.json``, or ``eval_binary.json`` of a run trained on random ones."""
    binary = next((b for name in UNIFORM_BINARY_JSONS if (b := _read(run, name)) is not None
                   and b.get("pair_viewpoints", "random") == "random"), None)
    if binary is None:
        return None
    record = summarise_binary(binary)
    pair_file = run / (binary.get("pairs_file") or "-")      # stored beside the JSON
    if binary.get("pair_keys_digest") and pair_file.is_file():
        record.update(summarise_pairs(pair_file, binary["pair_keys_digest"]))
    return record


def direction_scores(run: Path) -> dict[str, dict[str, dict[str, float]]] | None:
    """``{arm: {variant: {median_error_deg, within_pct}}}`` of a run's direction probe: the
    checkpoint's own arms and the hand-made features."""
    result = _read(run, DIRECTION_JSON)
    if result is None or not result.get("per_checkpoint"):
        return None
    arms = {arm: scores for arm, scores in result["per_checkpoint"][0].items()
            if isinstance(scores, Mapping)}
    return {**result.get("hand_features", {}), **arms}


def seld_scores(run: Path) -> dict[str, dict[str, float]] | None:
    """``{arm: {score: mean over head seeds}}`` of a run's SELD evaluation."""
    result = _read(run, SELD_JSON)
    if result is None:
        return None
    summary = result.get("summary", {})
    return {arm: {key: value["mean"] for key, value in scores.items()
                  if isinstance(value, Mapping) and "mean" in value}
            for arm, scores in summary.items() if not arm.startswith("encoder_minus_")}


def _fmt(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def spread_cell(values: Sequence[float | None], decimals: int = 1) -> str:
    """``mean ± sd (v0, v1, ...)`` over the seeds that have a value."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    mean, sd = mean_sd(present)
    spread = f" ± {sd:.{decimals}f}" if len(present) > 1 else ""
    return (f"{mean:.{decimals}f}{spread} ("
            + ", ".join(_fmt(v, decimals) for v in values) + ")")


def difference_cell(first: Sequence[float | None], second: Sequence[float | None],
                    decimals: int = 1) -> str:
    """The difference first − second paired by seed: ``mean ± sd [low, high]``."""
    diff = paired_difference(dict(enumerate(first)), dict(enumerate(second)))
    if diff is None:
        return "–"
    if diff["n"] < 2:
        return f"{diff['mean']:+.{decimals}f} (1 seed)"
    return (f"{diff['mean']:+.{decimals}f} ± {diff['sd']:.{decimals}f} "
            f"[{diff['low']:+.{decimals}f}, {diff['high']:+.{decimals}f}]")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def binary_section(groups: Mapping[str, Sequence[Path]]) -> list[str]:
    records = {name: [binary_record(run) for run in runs] for name, runs in groups.items()}

    def values(name: str, field: str, task: str, views: str) -> list[float | None]:
        return [None if r is None else (r.get(field, {}).get(task) or {}).get(views)
                for r in records[name]]

    def best_control(name: str, task: str, views: str) -> list[float | None]:
        out = []
        for r in records[name]:
            controls = None if r is None else r["controls_pct"][task].get(views)
            out.append(max(controls.values()) if controls else None)
        return out

    names = list(groups)
    header = ["task", *(f"{n}: accuracy %" for n in names), *(f"{n}: best control" for n in names),
              *(f"{n}: per-run SE" for n in names)]
    if len(names) == 2:
        header += [f"{names[0]} − {names[1]}, by seed", "pair by pair [95 %]"]
    rows = []
    for label, task, views in BINARY_ROWS:
        row = [label]
        row += [spread_cell(values(n, "accuracy_pct", task, views)) for n in names]
        row += [spread_cell(best_control(n, task, views)) for n in names]
        row += [spread_cell(values(n, "se_pct", task, views)) for n in names]
        if len(names) == 2:
            first, second = names
            row.append(difference_cell(values(first, "accuracy_pct", task, views),
                                       values(second, "accuracy_pct", task, views)))
            pairs = pair_level_difference(
                {i: r for i, r in enumerate(records[first]) if r is not None},
                {i: r for i, r in enumerate(records[second]) if r is not None}, task, views)
            row.append("–" if pairs is None else
                       f"{pairs['mean']:+.1f} ± {pairs['se']:.1f} [{pairs['low']:+.1f}, "
                       f"{pairs['high']:+.1f}] ({pairs['seeds']} seeds, "
                       f"{pairs['n_pairs']} pairs)")
        rows.append(row)
    return ["## Binary tasks (uniform viewpoints, `make eval-avsa`)", "",
            "Accuracy and the best of its shortcut controls (audio only, video only, another "
            "clip's video) of the same view count; per-run SE: the standard error of one run's "
            "score over its test pairs, clustered by test clip.", "",
            *_table(header, rows), ""]


def _arm_rows(groups: Mapping[str, Sequence[Path]], read: Callable[[Path], Any],
              arms: Sequence[str], metrics: Sequence[tuple[str, Callable, int]],
              within_pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Rows ``(group, arm)`` of mean ± sd per metric, then rows of paired differences: within
    each group ``encoder − arm`` for ``within_pairs``, and between two groups encoder −
    encoder. ``metrics``: (label, getter(scores of a run, arm) -> value or None, decimals)."""
    data = {name: [read(run) for run in runs] for name, runs in groups.items()}

    def series(name: str, arm: str, get: Callable) -> list[float | None]:
        return [None if d is None or arm not in d else get(d, arm) for d in data[name]]

    header = ["group", "input", *(label for label, _, _ in metrics)]
    rows = []
    for name in groups:
        for arm in arms:
            cells = [spread_cell(series(name, arm, get), decimals) for _, get, decimals in metrics]
            if any(c != "–" for c in cells):
                rows.append([name, arm, *cells])
    for name in groups:
        for first, second in within_pairs:
            cells = [difference_cell(series(name, first, get), series(name, second, get),
                                     decimals) for _, get, decimals in metrics]
            if any(c != "–" for c in cells):
                rows.append([name, f"{first} − {second}", *cells])
    names = list(groups)
    if len(names) == 2:
        cells = [difference_cell(series(names[0], "encoder", get),
                                 series(names[1], "encoder", get), decimals)
                 for _, get, decimals in metrics]
        rows.append([f"{names[0]} − {names[1]}", "encoder − encoder", *cells])
    return _table(header, rows)


def direction_section(groups: Mapping[str, Sequence[Path]]) -> list[str]:
    metrics = []
    for variant, label in DIRECTION_VARIANTS:
        metrics.append((f"{label}: median error °",
                        lambda d, arm, v=variant: d[arm][v]["median_error_deg"], 1))
        metrics.append((f"{label}: within 20° %",
                        lambda d, arm, v=variant: d[arm][v]["within_pct"], 1))
    arms = ("encoder", "random_encoder", "front_view", "foa_iv", "log_mel")
    within = (("encoder", "random_encoder"), ("encoder", "foa_iv"), ("encoder", "front_view"))
    return ["## Direction probe (`make eval-direction`)", "",
            "Linear (ridge) probe from each input to the source direction on the test frames; "
            "hand-made inputs (foa_iv, log_mel) do not depend on the checkpoint.", "",
            *_arm_rows(groups, direction_scores, arms, metrics, within), ""]


def seld_section(groups: Mapping[str, Sequence[Path]]) -> list[str]:
    metrics = [(label, lambda d, arm, k=key, s=scale: (None if d[arm].get(k) is None
                                                        else d[arm][k] * s), decimals)
               for key, label, scale, decimals in SELD_SCORES]
    first = next((s for runs in groups.values() for run in runs
                  if (s := seld_scores(run)) is not None), {})
    arms = [arm for arm in ("encoder", "random_encoder", "front_view") if arm in first] + \
        [arm for arm in first if arm not in ("encoder", "random_encoder", "front_view")]
    within = [("encoder", arm) for arm in arms if arm != "encoder"]
    return ["## SELD (`make eval-seld`, official DCASE 2023 metrics)", "",
            "Each run's figure is the mean over its head seeds; lower is better for LE, ER and "
            "SELD.", "", *_arm_rows(groups, seld_scores, arms, metrics, within), ""]


def report(groups: Mapping[str, Sequence[Path]]) -> str:
    """The markdown report of every evaluation found for the groups' runs."""
    lines = ["# Pretraining seeds", "",
             "Groups (the i-th run of each shares pretraining seed i): "
             + "; ".join(f"`{name}` = " + ", ".join(f"`{run}`" for run in runs)
                         for name, runs in groups.items()) + ".",
             "Cells: mean ± sd over pretraining seeds (per-seed values); differences paired by "
             "seed: mean ± sd [95 % t interval].", ""]
    lines += binary_section(groups) + direction_section(groups) + seld_section(groups)
    return "\n".join(lines)


def parse_groups(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``name=run_a,run_b,...`` arguments as ``{name: [paths]}``; a clear error otherwise."""
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, runs = spec.partition("=")
        if not sep or not name or not runs:
            raise SystemExit(f"error: expected NAME=RUN_DIR,RUN_DIR,..., got {spec!r}")
        paths = [Path(r) for r in runs.split(",") if r]
        missing = [str(p) for p in paths if not p.is_dir()]
        if missing:
            raise SystemExit(f"error: group {name}: no run folder at {', '.join(missing)}")
        groups[name] = paths
    if not groups:
        raise SystemExit("error: give at least one group NAME=RUN_DIR,...")
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", help="NAME=RUN_DIR,RUN_DIR,... (seed order)")
    parser.add_argument("--out", type=Path, help="markdown file (default: print only)")
    args = parser.parse_args(argv)
    text = report(parse_groups(args.groups))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
