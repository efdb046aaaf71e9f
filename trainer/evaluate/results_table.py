"""One Markdown table of every run's scores next to the published numbers.

``python -m trainer.evaluate.results_table --runs runs --out results.md`` scans ``runs/*/`` for
the JSON files the evaluators write (``eval_binary.json``, ``eval_eigenscape.json``,
``eval_localize.json``) and the resolved training config, and writes one row per run and, under
it, the published anchor row for the same experiment (from :data:`PUBLISHED`, each number with
its source). Cells of runs evaluated on synthetic data are marked ``(synthetic)``.

Every number is an accuracy or hit rate in percent.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

BINARY_JSON = "eval_binary.json"
EIGENSCAPE_JSON = "eval_eigenscape.json"
LOCALIZE_JSON = "eval_localize.json"
# The trainer saves the resolved config under one of these names (first match wins).
RUN_CONFIG_NAMES = ("config.yaml", "resolved_config.yaml", "train_config.yaml")

# ----------------------------------------------------------------------------------------------
# Published anchors (percent). Keep this table the single place these numbers live.
#   Morgado, Li, Vasconcelos (2020), "Learning Representations from Audio-Visual Spatial
#   Alignment", NeurIPS, Table 1: binary AVC / AVSA accuracy on the YT-360 test set,
#   1 viewpoint / 4 viewpoints / 4 viewpoints with the transformer.
#   Wang, Politis, Mesaros, Virtanen (2022), "Self-supervised learning of audio representations
#   from audio-visual data using spatial alignment", Table 2: EigenScape scene accuracy with
#   frozen audio embeddings (AVC / AVSA pretext x log-mel "Baseline" / FOA-IV input); text of
#   section 3: in-domain AVSA accuracy 71 % (log-mel) -> 81 % (FOA-IV), number of crops not
#   stated; Table 1: action recognition (not evaluated by this tool, listed for reference).
# ----------------------------------------------------------------------------------------------
MORGADO_2020 = "Morgado et al. 2020, Table 1 (YT-360 test)"
WANG_2022_T2 = "Wang et al. 2022, Table 2 (EigenScape, frozen)"
WANG_2022_TXT = "Wang et al. 2022, Sec. 3 (in-domain AVSA, crops unstated)"

PUBLISHED: dict[str, dict[str, tuple[float, str]]] = {
    "avc": {
        "avc_bin_1": (79.82, MORGADO_2020), "avc_bin_4": (82.68, MORGADO_2020),
        "avc_bin_4t": (83.87, MORGADO_2020),
        "avsa_bin_1": (59.48, MORGADO_2020), "avsa_bin_4": (59.25, MORGADO_2020),
        "avsa_bin_4t": (61.20, MORGADO_2020),
        "eigenscape": (82.5, WANG_2022_T2),
    },
    "avts": {
        "avc_bin_1": (80.08, MORGADO_2020), "avc_bin_4": (82.77, MORGADO_2020),
        "avc_bin_4t": (83.77, MORGADO_2020),
        "avsa_bin_1": (59.78, MORGADO_2020), "avsa_bin_4": (60.37, MORGADO_2020),
        "avsa_bin_4t": (60.73, MORGADO_2020),
    },
    "avsa": {
        "avc_bin_1": (86.19, MORGADO_2020), "avc_bin_4": (91.67, MORGADO_2020),
        "avc_bin_4t": (89.83, MORGADO_2020),
        "avsa_bin_1": (64.97, MORGADO_2020), "avsa_bin_4": (68.87, MORGADO_2020),
        "avsa_bin_4t": (69.97, MORGADO_2020),
        "eigenscape": (89.4, WANG_2022_T2),
    },
    # Wang et al.'s "Baseline" is Morgado's AVSA on FOA log-mel.
    "baseline": {"avsa_bin_1": (71.0, WANG_2022_TXT), "eigenscape": (89.4, WANG_2022_T2)},
    "foa_iv": {"avsa_bin_1": (81.0, WANG_2022_TXT), "eigenscape": (74.1, WANG_2022_T2)},
}

# Reference only (tasks this tool does not run, or systems that are not experiments here):
# (experiment, metric, published values, source), listed in the anchors section.
PUBLISHED_REFERENCE: tuple[tuple[str, str, str, str], ...] = (
    ("avsa", "action recognition", "UCF-101 clip@1 / video@1 68.52 / 73.80, HMDB-51 "
     "32.96 / 37.66", "Morgado et al. 2020"),
    ("avc", "action recognition", "UCF-101 clip@1 / video@1 64.63 / 69.68",
     "Morgado et al. 2020"),
    ("scratch", "action recognition", "UCF-101 clip@1 / video@1 54.85 / 59.95",
     "Morgado et al. 2020"),
    ("baseline", "action recognition", "UCF / HMDB without fine-tuning 36.3 / 23.1, with "
     "65.9 / 32.0", "Wang et al. 2022, Table 1"),
    ("foa_yolo", "action recognition", "UCF / HMDB without fine-tuning 35.7 / 23.0, with "
     "65.0 / 32.9", "Wang et al. 2022, Table 1"),
    ("foa_iv", "action recognition", "UCF / HMDB without fine-tuning 36.9 / 22.7, with "
     "67.6 / 33.3", "Wang et al. 2022, Table 1"),
    ("foa_iv_yolo", "action recognition", "UCF / HMDB without fine-tuning 37.5 / 24.0, with "
     "66.2 / 32.4", "Wang et al. 2022, Table 1"),
    ("beamform", "action recognition", "UCF / HMDB without fine-tuning 37.1 / 22.1, with "
     "65.9 / 31.8", "Wang et al. 2022, Table 1"),
    ("beamform_yolo", "action recognition", "UCF / HMDB without fine-tuning 40.4 / 24.2, "
     "with 66.9 / 34.2", "Wang et al. 2022, Table 1"),
    ("earlier systems", "EigenScape", "69 (dataset baseline, Green & Murphy 2017), 82 (CNN, "
     "Green et al. 2019)", "Wang et al. 2022, Sec. 3"),
)

# Experiment order of the table: Wang et al.'s six, then Morgado et al.'s three.
EXPERIMENT_ORDER = ("baseline", "foa_yolo", "foa_iv", "foa_iv_yolo", "beamform", "beamform_yolo",
                    "avc", "avts", "avsa")

# (column key, header) in table order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("avc_bin_1", "AVC-bin 1"), ("avc_bin_4", "AVC-bin 4"), ("avc_bin_4t", "AVC-bin 4+T"),
    ("avsa_bin_1", "AVSA-bin 1"), ("avsa_bin_4", "AVSA-bin 4"), ("avsa_bin_4t", "AVSA-bin 4+T"),
    ("eigenscape", "EigenScape"), ("eigenscape_baselines", "EigenScape log-mel / DirAC"),
    ("localization", "Loc. hit"),
)


@dataclass
class RunScores:
    """Scores found in one run folder (percent; None = not evaluated)."""

    run_dir: Path
    experiment: str
    config_path: str
    scores: dict[str, float | str | None]   # str: several numbers in one cell
    synthetic: dict[str, bool]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _run_config(run_dir: Path) -> tuple[dict[str, Any], Path | None]:
    for name in RUN_CONFIG_NAMES:
        path = run_dir / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return (data if isinstance(data, dict) else {}), path
    return {}, None


def _config_path(experiment: str, run_config_path: Path | None, repo_root: Path | None,
                 evaluated: Sequence[Mapping[str, Any]]) -> str:
    """The experiment config that produced the run (``configs/experiments/<exp>.yaml``) and,
    when present, the resolved copy saved in the run folder."""
    parts = []
    recorded = next((str(r["config_path"]) for r in evaluated if r.get("config_path")), None)
    candidate = Path("configs") / "experiments" / f"{experiment}.yaml"
    if recorded:
        parts.append(recorded)
    elif ((repo_root or REPO_ROOT) / candidate).is_file():
        parts.append(str(candidate))
    if run_config_path is not None:
        parts.append(str(run_config_path))
    return " + ".join(parts) if parts else "?"


def _binary_scores(binary: Mapping[str, Any]) -> dict[str, float | str | None]:
    acc = binary.get("accuracy_pct", {})
    out: dict[str, float | str | None] = {}
    for task in ("avc", "avsa"):
        task_acc = acc.get(task, {})
        out[f"{task}_bin_1"] = task_acc.get("single_view")
        out[f"{task}_bin_4"] = task_acc.get("multi_view")
        out[f"{task}_bin_4t"] = task_acc.get("multi_view_transformer")
    return out


def collect_run(run_dir: Path, repo_root: Path | None = None) -> RunScores | None:
    """Scores of one run folder, or None when it holds no evaluation JSON."""
    binary = _read_json(run_dir / BINARY_JSON)
    eigen = _read_json(run_dir / EIGENSCAPE_JSON)
    local = _read_json(run_dir / LOCALIZE_JSON)
    evaluated = [r for r in (binary, eigen, local) if r is not None]
    if not evaluated:
        return None
    config, config_file = _run_config(run_dir)
    experiment = (next((r["experiment"] for r in evaluated if r.get("experiment")), None)
                  or config.get("experiment") or run_dir.name)
    scores: dict[str, float | str | None] = {key: None for key, _ in COLUMNS}
    synthetic: dict[str, bool] = {key: False for key, _ in COLUMNS}
    if binary is not None:
        scores.update(_binary_scores(binary))
        for key in ("avc_bin_1", "avc_bin_4", "avc_bin_4t", "avsa_bin_1", "avsa_bin_4",
                    "avsa_bin_4t"):
            synthetic[key] = bool(binary.get("synthetic", False))
    if eigen is not None:
        methods = eigen.get("methods", {})
        model = methods.get("model")
        scores["eigenscape"] = model.get("mean_accuracy_pct") if model else None
        baselines = [methods.get(name, {}).get("mean_accuracy_pct")
                     for name in ("logmel_stats", "dirac_stats")]
        scores["eigenscape_baselines"] = (" / ".join("–" if b is None else f"{b:.2f}"
                                                     for b in baselines)
                                          if any(b is not None for b in baselines) else None)
        synthetic["eigenscape"] = synthetic["eigenscape_baselines"] = (
            eigen.get("data_source") != "eigenscape")
    if local is not None:
        scores["localization"] = local.get("hit_rate_pct")
        synthetic["localization"] = bool(local.get("synthetic", True))
    return RunScores(run_dir, str(experiment), _config_path(str(experiment), config_file,
                                                            repo_root, evaluated),
                     scores, synthetic)


def collect_runs(runs_dir: Path, repo_root: Path | None = None) -> list[RunScores]:
    """Every evaluated run under ``runs_dir`` (one level deep), in :data:`EXPERIMENT_ORDER`."""
    runs = [r for d in sorted(p for p in runs_dir.iterdir() if p.is_dir())
            if (r := collect_run(d, repo_root)) is not None] if runs_dir.is_dir() else []

    def order(run: RunScores) -> tuple[int, str, str]:
        rank = (EXPERIMENT_ORDER.index(run.experiment) if run.experiment in EXPERIMENT_ORDER
                else len(EXPERIMENT_ORDER))
        return rank, run.experiment, run.run_dir.name
    return sorted(runs, key=order)


def _cell(value: float | str | None, synthetic: bool = False) -> str:
    if value is None:
        return "–"
    text = value if isinstance(value, str) else f"{value:.2f}"
    return text + (" (synthetic)" if synthetic else "")


def markdown_table(runs: Sequence[RunScores]) -> str:
    """The results table: one row per run, then its published anchor row (if any)."""
    header = ["run", "experiment", *[h for _, h in COLUMNS], "config"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [_cell(run.scores[key], run.synthetic[key]) for key, _ in COLUMNS]
        lines.append(f"| {run.run_dir.name} | {run.experiment} | " + " | ".join(cells)
                     + f" | `{run.config_path}` |")
        anchors = PUBLISHED.get(run.experiment)
        if anchors:
            cells = [_cell(anchors[key][0]) if key in anchors else "" for key, _ in COLUMNS]
            sources = sorted({source for _, source in anchors.values()})
            lines.append(f"| ↳ published | {run.experiment} | " + " | ".join(cells)
                         + f" | {'; '.join(sources)} |")
    return "\n".join(lines)


def anchors_markdown() -> str:
    """Every published anchor with its source (binary, EigenScape, and reference-only rows)."""
    lines = ["| experiment | metric | published | source |", "|---|---|---|---|"]
    headers = dict(COLUMNS)
    for experiment, anchors in PUBLISHED.items():
        for key, (value, source) in anchors.items():
            lines.append(f"| {experiment} | {headers[key]} | {value:.2f} | {source} |")
    for experiment, metric, text, source in PUBLISHED_REFERENCE:
        lines.append(f"| {experiment} | {metric} (reference, not run here) | {text} | {source} |")
    return "\n".join(lines)


def render_report(runs: Sequence[RunScores], runs_dir: Path) -> str:
    legend = ("Accuracies and hit rates in percent. AVC-bin / AVSA-bin: binary classification on "
              "frozen features with 1 viewpoint, averaged over 4 viewpoints, and over 4 with the "
              "translation transformer (Morgado et al. 2020). EigenScape: mean accuracy over the "
              "4 folds with frozen audio embeddings and a linear classifier; log-mel / DirAC: the "
              "hand-made baselines with the same classifier, same run. Loc. hit: fraction "
              "of clips whose localisation-map peak lies within the threshold of a sounding "
              "object. `(synthetic)`: measured on the synthetic data set, not comparable with "
              "the published number below it.")
    body = markdown_table(runs) if runs else f"_No evaluated runs found under `{runs_dir}`._"
    return "\n\n".join([
        "# Results", legend, body, "## Published anchors", anchors_markdown(),
    ]) + "\n"


def write_results(runs_dir: str | Path, out_path: str | Path,
                  repo_root: str | Path | None = None) -> Path:
    """Collect the runs under ``runs_dir`` and write the Markdown report to ``out_path``."""
    runs_dir, out_path = Path(runs_dir), Path(out_path)
    runs = collect_runs(runs_dir, Path(repo_root) if repo_root else None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(render_report(runs, runs_dir), encoding="utf-8")
    tmp.replace(out_path)
    log.info("wrote %s (%d evaluated runs)", out_path, len(runs))
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.runtime import setup_entry_point

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs", help="folder holding one sub-folder per run")
    parser.add_argument("--out", default="results.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    setup_entry_point()
    write_results(args.runs, args.out)
    print(Path(args.out).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
