"""Markdown tables of every run's scores next to the published numbers.

``python -m evals.results_table runs=runs out=results.md`` scans ``runs/*/`` and
writes three tables, each run row followed by the published anchor row of its experiment:

- Results: the JSON files the evaluators write (``eval_binary.json``, ``eval_eigenscape.json``,
  ``eval_localize.json``) and the resolved training config (anchors: :data:`PUBLISHED`).
- Downstream tasks: ``runs/*/*/results.json`` of :mod:`evals.video.action` (UCF-101 /
  HMDB-51) and :mod:`evals.video.segmentation`, recognised by their keys (anchors: the
  action-recognition rows of :data:`PUBLISHED_REFERENCE`).
- Multisensory baseline: ``eval_sync.json``, ``eval_localize.json`` and
  ``eval_separation.json`` of :mod:`baselines.multisensory.train` (anchor:
  :data:`MULTISENSORY_PUBLISHED`).

Rows of runs evaluated on synthetic data say ``(synthetic)`` once, after the run's name
(cells marked ``*`` in a row that mixes synthetic and other scores). Every number is an
accuracy, hit rate, mIoU or pixel accuracy in percent, except the separation scores (SI-SDR
improvements in dB, in columns labelled so).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from evals.cli import config_path_of, run_evaluator
from pipeline.runtime import REPO_ROOT

log = logging.getLogger(__name__)


BINARY_JSON = "eval_binary.json"
EIGENSCAPE_JSON = "eval_eigenscape.json"
LOCALIZE_JSON = "eval_localize.json"
SYNC_JSON = "eval_sync.json"
SEPARATION_JSON = "eval_separation.json"
DOWNSTREAM_RESULTS_JSON = "results.json"     # in runs/<name>/<task folder>/
DOWNSTREAM_CONFIG_JSON = "config.json"       # written next to it
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
#   stated; Table 1: action recognition (shown under the matching rows of the downstream
#   table, from PUBLISHED_REFERENCE).
# ----------------------------------------------------------------------------------------------
MORGADO_2020 = "Morgado et al. 2020, Table 1 (YT-360 test)"
WANG_2022_T2 = "Wang et al. 2022, Table 2 (EigenScape, frozen)"
WANG_2022_TXT = "Wang et al. 2022, Sec. 3 (in-domain AVSA, crops unstated)"

PUBLISHED: dict[str, dict[str, tuple[float, str]]] = {
    # The "transf." rows of Table 1 are other models: AVC / AVTS pretrained with 4 crops and the
    # translation networks (avc_transf, avts_transf); an AVC or AVTS model has no "4 + T".
    "avc": {
        "avc_bin_1": (79.82, MORGADO_2020), "avc_bin_4": (82.68, MORGADO_2020),
        "avsa_bin_1": (59.48, MORGADO_2020), "avsa_bin_4": (59.25, MORGADO_2020),
        "eigenscape": (82.5, WANG_2022_T2),
    },
    "avc_transf": {"avc_bin_4t": (83.87, MORGADO_2020), "avsa_bin_4t": (61.20, MORGADO_2020)},
    "avts": {
        "avc_bin_1": (80.08, MORGADO_2020), "avc_bin_4": (82.77, MORGADO_2020),
        "avsa_bin_1": (59.78, MORGADO_2020), "avsa_bin_4": (60.37, MORGADO_2020),
    },
    "avts_transf": {"avc_bin_4t": (83.77, MORGADO_2020), "avsa_bin_4t": (60.73, MORGADO_2020)},
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

# Reference text (action recognition, shown in the downstream table; systems that are not
# experiments here):
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

# Owens & Efros (2018), "Audio-Visual Scene Analysis with Self-Supervised Multisensory
# Features", as summarised in shared/papers/owens_efros2018_multisensory_blog.txt ("Task
# Performance"): 59.9 % sync accuracy on held-out videos (chance 50 %), model trained on
# ~750k AudioSet videos. Shown under both sync experiments (same pretext; ours mono or FOA).
OWENS_2018 = "Owens & Efros 2018 (held-out videos, trained on AudioSet)"
MULTISENSORY_PUBLISHED: dict[str, dict[str, tuple[float, str]]] = {
    "multisensory": {"sync": (59.9, OWENS_2018)},
    "multisensory_foa": {"sync": (59.9, OWENS_2018)},
}

# Experiment order of the table: Wang et al.'s six, then Morgado et al.'s Table 1 pretexts.
EXPERIMENT_ORDER = ("baseline", "foa_yolo", "foa_iv", "foa_iv_yolo", "beamform", "beamform_yolo",
                    "avc", "avc_transf", "avts", "avts_transf", "avsa")

# (column key, header) in table order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("avc_bin_1", "AVC-bin 1"), ("avc_bin_4", "AVC-bin 4"), ("avc_bin_4t", "AVC-bin 4+T"),
    ("avc_bin_4_control", "AVC-bin 4: best control"),
    ("avsa_bin_1", "AVSA-bin 1"), ("avsa_bin_4", "AVSA-bin 4"), ("avsa_bin_4t", "AVSA-bin 4+T"),
    ("avsa_bin_4_control", "AVSA-bin 4: best control"),
    ("eigenscape", "EigenScape"), ("eigenscape_baselines", "EigenScape log-mel / DirAC"),
    ("localization", "Loc. hit"), ("localization_mismatched", "Loc. hit, other clip's video"),
)

ACTION_METRIC = "action recognition"

# Downstream table: (column key, header), percent.
DOWNSTREAM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clip_top1", "clip@1"), ("video_top1", "video@1"), ("chance_top1", "chance"),
    ("mean_iou", "mIoU"), ("pixel_accuracy", "pixel acc."),
    ("majority", "majority class mIoU / pixel acc."),
)
ACTION_DATASET_NAMES = {"ucf101": "UCF-101", "hmdb51": "HMDB-51"}
SEGMENTATION_TASK = "360° segmentation"
DOWNSTREAM_TASK_ORDER = (*(f"{name} {ACTION_METRIC}" for name in ACTION_DATASET_NAMES.values()),
                         SEGMENTATION_TASK)

# Multisensory table: (column key, header); percent unless the header says dB.
MULTISENSORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sync", "sync acc. (chance 50)"), ("sync_mismatched", "sync acc., mismatched video"),
    ("cam_hit", "CAM hit (in view)"), ("cam_hit_all", "CAM hit (all sounding)"),
    ("si_sdri_av", "SI-SDRi audio-visual [dB]"), ("si_sdri_audio_only", "SI-SDRi audio-only [dB]"),
    ("si_sdri_gain", "AV − audio-only [dB]"), ("si_sdri_on", "SI-SDRi on-screen output, AV [dB]"),
)


@dataclass
class RunScores:
    """Scores found in one run folder (percent; None = not evaluated)."""

    run_dir: Path
    experiment: str
    config_path: str
    scores: dict[str, float | str | None]   # str: several numbers in one cell
    synthetic: dict[str, bool]
    label: str = ""                          # row name; default: the run folder's name
    # Scores measured on another protocol than the paper's: no published number beside them.
    not_comparable: frozenset[str] = frozenset()
    eval_configs: tuple[str, ...] = ()       # resolved evaluator configs beside the JSONs

    @property
    def name(self) -> str:
        return self.label or self.run_dir.name


@dataclass
class DownstreamScores:
    """One downstream result folder ``runs/<run>/<out>/`` (percent; None = not reported)."""

    run_dir: Path                            # runs/<run>/
    results_path: Path
    experiment: str
    task: str                                # "UCF-101 action recognition", "360° segmentation"
    split: str
    setting: str                             # action: protocol; segmentation: features
    scores: dict[str, float | str | None]    # keys of DOWNSTREAM_COLUMNS
    synthetic: bool


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


CONTROL_NAMES = {"audio_only": "audio only", "video_only": "video only",
                 "other_clip_video": "other clip's video"}


def _binary_scores(binary: Mapping[str, Any]) -> dict[str, float | str | None]:
    acc = binary.get("accuracy_pct", {})
    controls = binary.get("controls_pct", {})
    out: dict[str, float | str | None] = {}
    for task in ("avc", "avsa"):
        task_acc = acc.get(task, {})
        out[f"{task}_bin_1"] = task_acc.get("single_view")
        out[f"{task}_bin_4"] = task_acc.get("multi_view")
        out[f"{task}_bin_4t"] = task_acc.get("multi_view_transformer")
        plain = controls.get(task, {}).get("plain")
        out[f"{task}_bin_4_control"] = None
        if plain:       # the shortcut that scores best with 4 views, by name
            name, best = max(((n, c["multi_view"]) for n, c in plain.items()),
                             key=lambda item: item[1])
            out[f"{task}_bin_4_control"] = f"{best:.2f} ({CONTROL_NAMES.get(name, name)})"
    return out


def collect_run(run_dir: Path, repo_root: Path | None = None) -> RunScores | None:
    """Scores of one run folder, or None when it holds no evaluation JSON."""
    binary = _read_json(run_dir / BINARY_JSON)
    eigen = _read_json(run_dir / EIGENSCAPE_JSON)
    local = _read_json(run_dir / LOCALIZE_JSON)
    evaluated = [r for r in (binary, eigen, local) if r is not None]
    other_sets = [r for path in sorted(run_dir.glob(BINARY_JSON.replace(".json", "_*.json")))
                  if (r := _read_json(path)) is not None]
    if not evaluated and not other_sets:
        return None
    evaluated = evaluated or other_sets
    config, config_file = _run_config(run_dir)
    experiment = (next((r["experiment"] for r in evaluated if r.get("experiment")), None)
                  or config.get("experiment") or run_dir.name)
    scores: dict[str, float | str | None] = {key: None for key, _ in COLUMNS}
    synthetic: dict[str, bool] = {key: False for key, _ in COLUMNS}
    not_comparable: set[str] = set()
    if binary is not None:
        binary_scores = _binary_scores(binary)
        scores.update(binary_scores)
        for key, value in binary_scores.items():
            synthetic[key] = bool(binary.get("synthetic", False)) and value is not None
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
        if not eigen.get("authors_protocol", False):
            not_comparable |= {"eigenscape", "eigenscape_baselines"}
            if not synthetic["eigenscape"] and scores["eigenscape"] is not None:
                scores["eigenscape"] = f"{scores['eigenscape']:.2f} (subset)"
    if local is not None:
        scores["localization"] = local.get("hit_rate_pct")
        scores["localization_mismatched"] = local.get("mismatched_video_hit_rate_pct")
        synthetic["localization"] = synthetic["localization_mismatched"] = bool(
            local.get("synthetic", True))
    eval_configs = tuple(str(config_path_of(run_dir / name)) for name in
                         (BINARY_JSON, EIGENSCAPE_JSON, LOCALIZE_JSON)
                         if config_path_of(run_dir / name).is_file())
    return RunScores(run_dir, str(experiment), _config_path(str(experiment), config_file,
                                                            repo_root, evaluated),
                     scores, synthetic, not_comparable=frozenset(not_comparable),
                     eval_configs=eval_configs)


def _run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []


def _experiment_rank(experiment: str) -> int:
    return (EXPERIMENT_ORDER.index(experiment) if experiment in EXPERIMENT_ORDER
            else len(EXPERIMENT_ORDER))


def _run_order(run: RunScores) -> tuple[int, str, str]:
    return _experiment_rank(run.experiment), run.experiment, run.run_dir.name


def collect_other_viewpoints(run: RunScores) -> list[RunScores]:
    """Rows of the binary tasks scored on another viewpoint set than the run trained on
    (``eval_binary_<set>.json``), labelled ``<run> · <set> viewpoints``."""
    rows = []
    for path in sorted(run.run_dir.glob(BINARY_JSON.replace(".json", "_*.json"))):
        binary = _read_json(path)
        if binary is None:
            continue
        viewpoints = binary.get("pair_viewpoints") or path.stem.rsplit("_", 1)[-1]
        scores: dict[str, float | str | None] = {key: None for key, _ in COLUMNS}
        scores.update(_binary_scores(binary))
        synthetic = {key: bool(binary.get("synthetic", False)) and scores[key] is not None
                     for key, _ in COLUMNS}
        rows.append(RunScores(run.run_dir, run.experiment, run.config_path, scores, synthetic,
                              label=f"{run.run_dir.name} · {viewpoints} viewpoints"))
    return rows


def collect_runs(runs_dir: Path, repo_root: Path | None = None) -> list[RunScores]:
    """Every evaluated run under ``runs_dir`` (one level deep), in :data:`EXPERIMENT_ORDER`,
    each followed by its rows on other viewpoint sets."""
    runs = [r for d in _run_dirs(runs_dir) if (r := collect_run(d, repo_root)) is not None]
    return [row for run in sorted(runs, key=_run_order)
            for row in (run, *collect_other_viewpoints(run))]


# ----------------------------------------------------------------------------- downstream tasks

def _percent(fraction: Any) -> float | None:
    """A fraction in [0, 1] as percent; None for missing or NaN."""
    if fraction is None or fraction != fraction:
        return None
    return 100.0 * float(fraction)


def _action_scores(results: Mapping[str, Any], run_dir: Path, results_path: Path,
                   parent_experiment: str) -> DownstreamScores:
    """A ``evals.video.action`` results.json (accuracies as fractions)."""
    encoder = results.get("encoder") or {}
    experiment = encoder.get("experiment") or (
        "scratch" if encoder.get("ckpt") == "scratch" else parent_experiment)
    dataset = str(results.get("dataset", "?"))
    scores: dict[str, float | str | None] = {key: None for key, _ in DOWNSTREAM_COLUMNS}
    for key in ("clip_top1", "video_top1", "chance_top1"):
        scores[key] = _percent(results.get(key))
    synthetic = bool(results.get("synthetic", False))     # evals.video.action records it
    return DownstreamScores(run_dir, results_path, str(experiment),
                            f"{ACTION_DATASET_NAMES.get(dataset, dataset)} {ACTION_METRIC}",
                            str(results.get("split", "?")), str(results.get("protocol", "?")),
                            scores, synthetic)


def _segmentation_scores(results: Mapping[str, Any], config: Mapping[str, Any], run_dir: Path,
                         results_path: Path, parent_experiment: str) -> DownstreamScores:
    """A ``evals.video.segmentation`` results.json (fractions); its config.json tells
    synthetic ground truth (``manifest``) from user label maps (``labels_dir``)."""
    head, majority = results.get("head") or {}, results.get("majority_baseline") or {}
    scores: dict[str, float | str | None] = {key: None for key, _ in DOWNSTREAM_COLUMNS}
    scores["mean_iou"] = _percent(head.get("mean_iou"))
    scores["pixel_accuracy"] = _percent(head.get("pixel_accuracy"))
    majority_pct = [_percent(majority.get(k)) for k in ("mean_iou", "pixel_accuracy")]
    if any(v is not None for v in majority_pct):
        scores["majority"] = (" / ".join("–" if v is None else f"{v:.2f}" for v in majority_pct)
                              + (f" ({majority['class']})" if majority.get("class") else ""))
    synthetic = bool(results.get("synthetic", bool(config.get("manifest"))))
    return DownstreamScores(run_dir, results_path, parent_experiment, SEGMENTATION_TASK,
                            str(config.get("test_split", "–")),
                            str(results.get("features", config.get("features", "?"))),
                            scores, synthetic)


def collect_downstream(runs_dir: Path) -> list[DownstreamScores]:
    """Every action-recognition and segmentation ``results.json`` in ``runs_dir/*/*/``; the
    experiment is the encoder's (action) or the run folder's (its config.yaml, else its name)."""
    found = []
    for run_dir in _run_dirs(runs_dir):
        config, _ = _run_config(run_dir)
        parent_experiment = str(config.get("experiment") or run_dir.name)
        for out in sorted(p for p in run_dir.iterdir() if p.is_dir()):
            results = _read_json(out / DOWNSTREAM_RESULTS_JSON)
            if results is None:
                continue
            results_path = out / DOWNSTREAM_RESULTS_JSON
            if "clip_top1" in results:
                found.append(_action_scores(results, run_dir, results_path, parent_experiment))
            elif isinstance(results.get("head"), dict) and "mean_iou" in results["head"]:
                found.append(_segmentation_scores(
                    results, _read_json(out / DOWNSTREAM_CONFIG_JSON) or {}, run_dir,
                    results_path, parent_experiment))

    def order(row: DownstreamScores) -> tuple[int, str, str, int, str, str, str]:
        task_rank = (DOWNSTREAM_TASK_ORDER.index(row.task) if row.task in DOWNSTREAM_TASK_ORDER
                     else len(DOWNSTREAM_TASK_ORDER))
        return (_experiment_rank(row.experiment), row.experiment, row.run_dir.name, task_rank,
                row.task, row.split, row.setting)
    return sorted(found, key=order)


# ----------------------------------------------------------------------------- multisensory

def collect_multisensory_run(run_dir: Path, repo_root: Path | None = None) -> RunScores | None:
    """Scores of one :mod:`baselines.multisensory.train` run folder (sync, CAM localisation,
    separation), or None when it holds neither ``eval_sync.json`` nor ``eval_separation.json``."""
    sync = _read_json(run_dir / SYNC_JSON)
    separation = _read_json(run_dir / SEPARATION_JSON)
    if sync is None and separation is None:
        return None
    local = _read_json(run_dir / LOCALIZE_JSON) if sync is not None else None
    evaluated = [r for r in (sync, local, separation) if r is not None]
    config, config_file = _run_config(run_dir)
    experiment = str(next((r["experiment"] for r in evaluated if r.get("experiment")), None)
                     or config.get("experiment") or run_dir.name)
    scores: dict[str, float | str | None] = {key: None for key, _ in MULTISENSORY_COLUMNS}
    synthetic: dict[str, bool] = {key: False for key, _ in MULTISENSORY_COLUMNS}
    for source, keys in ((sync, {"sync": "accuracy_pct",
                                 "sync_mismatched": "accuracy_mismatched_video_pct"}),
                         (local, {"cam_hit": "hit_rate_pct", "cam_hit_all": "hit_rate_all_pct"})):
        for key, json_key in keys.items():
            if source is not None:
                scores[key] = source.get(json_key)
                synthetic[key] = bool(source.get("synthetic", False))
    if separation is not None:
        audio_visual = separation.get("audio_visual") or {}
        scores["si_sdri_av"] = audio_visual.get("si_sdri_pit")
        scores["si_sdri_on"] = audio_visual.get("si_sdri_on")
        scores["si_sdri_audio_only"] = (separation.get("audio_only") or {}).get("si_sdri_pit")
        scores["si_sdri_gain"] = (separation.get("improvement_over_audio_only_db")
                                  or {}).get("si_sdri_pit")
        for key in ("si_sdri_av", "si_sdri_on", "si_sdri_audio_only", "si_sdri_gain"):
            synthetic[key] = bool(separation.get("synthetic", False))
    return RunScores(run_dir, experiment,
                     _config_path(experiment, config_file, repo_root, evaluated),
                     scores, synthetic)


def collect_multisensory(runs_dir: Path, repo_root: Path | None = None) -> list[RunScores]:
    """Every multisensory run under ``runs_dir`` (one level deep)."""
    runs = [r for d in _run_dirs(runs_dir)
            if (r := collect_multisensory_run(d, repo_root)) is not None]
    return sorted(runs, key=_run_order)


def _cell(value: float | str | None, synthetic: bool = False) -> str:
    """A score as a cell; ``synthetic`` marks it ``*`` (used where its row mixes synthetic and
    other scores: :func:`_row_cells`)."""
    if value is None:
        return "–"
    text = value if isinstance(value, str) else f"{value:.2f}"
    return text + ("*" if synthetic else "")


def _row_cells(values: Sequence, synthetic: Sequence[bool]) -> tuple[list[str], str]:
    """A row's cells and the mark for its label: a row whose scores are all synthetic says so
    once, as `` (synthetic)`` after its label; a row that mixes marks its synthetic cells
    ``*``."""
    scored = [flag for value, flag in zip(values, synthetic) if value is not None]
    if scored and all(scored):
        return [_cell(value) for value in values], " (synthetic)"
    return [_cell(value, flag) for value, flag in zip(values, synthetic)], ""


def _runs_markdown(runs: Sequence[RunScores], columns: Sequence[tuple[str, str]],
                   published: dict[str, dict[str, tuple[float, str]]],
                   anchor_needs: str | None = None) -> str:
    """One row per run, then its published anchor row (if any; with ``anchor_needs``, only
    when the run has that score)."""
    header = ["run", "experiment", *[h for _, h in columns], "config"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, run in enumerate(runs):
        cells, mark = _row_cells([run.scores[key] for key, _ in columns],
                                 [run.synthetic[key] for key, _ in columns])
        configs = ", ".join(f"`{path}`" for path in (run.config_path, *run.eval_configs))
        lines.append(f"| {run.name}{mark} | {run.experiment} | " + " | ".join(cells)
                     + f" | {configs} |")
        anchors = published.get(run.experiment)
        last_of_run = index + 1 == len(runs) or runs[index + 1].run_dir != run.run_dir
        if anchors and last_of_run and (anchor_needs is None
                                        or run.scores[anchor_needs] is not None):
            cells = [_cell(anchors[key][0]) if key in anchors and key not in run.not_comparable
                     else "" for key, _ in columns]
            sources = sorted({source for _, source in anchors.values()})
            lines.append(f"| ↳ published | {run.experiment} | " + " | ".join(cells)
                         + f" | {'; '.join(sources)} |")
    return "\n".join(lines)


def markdown_table(runs: Sequence[RunScores]) -> str:
    """The results table: one row per run, then its published anchor row (if any)."""
    return _runs_markdown(runs, COLUMNS, PUBLISHED)


def downstream_markdown(rows: Sequence[DownstreamScores]) -> str:
    """One row per (run, task); under the last action-recognition row of each run, the
    published action-recognition numbers of its experiment (:data:`PUBLISHED_REFERENCE`)."""
    published = {experiment: (text, source) for experiment, metric, text, source
                 in PUBLISHED_REFERENCE if metric == ACTION_METRIC}
    header = ["run", "experiment", "task", "split", "protocol / features",
              *[h for _, h in DOWNSTREAM_COLUMNS], "results"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        cells, mark = _row_cells([row.scores[key] for key, _ in DOWNSTREAM_COLUMNS],
                                 [row.synthetic for _ in DOWNSTREAM_COLUMNS])
        lines.append(f"| {row.run_dir.name}{mark} | {row.experiment} | {row.task} | {row.split} | "
                     f"{row.setting} | " + " | ".join(cells) + f" | `{row.results_path}` |")
        def is_action_of_this_run(other: DownstreamScores) -> bool:
            return (other.task.endswith(ACTION_METRIC) and other.run_dir == row.run_dir
                    and other.experiment == row.experiment)
        last_action_row = is_action_of_this_run(row) and not (
            i + 1 < len(rows) and is_action_of_this_run(rows[i + 1]))
        if last_action_row and row.experiment in published:
            text, source = published[row.experiment]
            lines.append(f"| ↳ published | {row.experiment} | {ACTION_METRIC} | | | {text} |"
                         + " |" * (len(DOWNSTREAM_COLUMNS) - 1) + f" {source} |")
    return "\n".join(lines)


def multisensory_markdown(runs: Sequence[RunScores]) -> str:
    """One row per multisensory run, then its published anchor row (sync runs only)."""
    return _runs_markdown(runs, MULTISENSORY_COLUMNS, MULTISENSORY_PUBLISHED, anchor_needs="sync")


def anchors_markdown() -> str:
    """Every published anchor with its source (binary, EigenScape, and reference-only rows)."""
    lines = ["| experiment | metric | published | source |", "|---|---|---|---|"]
    headers = dict(COLUMNS)
    for experiment, anchors in PUBLISHED.items():
        for key, (value, source) in anchors.items():
            lines.append(f"| {experiment} | {headers[key]} | {value:.2f} | {source} |")
    multisensory_headers = dict(MULTISENSORY_COLUMNS)
    for experiment, anchors in MULTISENSORY_PUBLISHED.items():
        for key, (value, source) in anchors.items():
            lines.append(f"| {experiment} | {multisensory_headers[key]} | {value:.2f} | "
                         f"{source} |")
    for experiment, metric, text, source in PUBLISHED_REFERENCE:
        status = "see Downstream tasks" if metric == ACTION_METRIC else "not run here"
        lines.append(f"| {experiment} | {metric} (reference, {status}) | {text} | {source} |")
    return "\n".join(lines)


SELD_JSON = "eval_seld.json"
SELD_ARM_LABELS = {"encoder": "frozen encoder, K viewpoints",
                   "random_encoder": "random encoder, K viewpoints (control)",
                   "front_view": "frozen encoder, front view only, mel max-pooled",
                   "dcase_features": "DCASE baseline features (log-mel + IV)",
                   "no_input": "no input: label priors only (control)"}
DIRECTION_JSON = "eval_direction.json"
DIRECTION_ARM_LABELS = {"encoder": "frozen encoder, K viewpoints",
                        "random_encoder": "random encoder, K viewpoints (control)",
                        "front_view": "frozen encoder, front view only",
                        "foa_iv": "FOA intensity vectors (hand-made)",
                        "log_mel": "FOA log-mel (hand-made)"}


def collect_task(runs_dir: Path, name: str, task: str) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, result)`` of every ``<run>/<name>`` under ``runs_dir`` whose ``task`` is
    ``task`` (``eval_seld.json``: seld, ``eval_direction.json``: direction)."""
    found = []
    for path in sorted(runs_dir.glob(f"*/{name}")):
        result = _read_json(path)
        if result is not None and result.get("task") == task:
            found.append((path, result))
    return found


def _arm_summaries(results: Sequence[tuple[Path, dict[str, Any]]]
                   ) -> Iterator[tuple[str, str, str, dict[str, Any], str]]:
    """``(run, data, arm, summary of the arm, config file name)`` of every arm of every result
    of a STARSS23(-layout) evaluation (SELD, direction), in order."""
    for path, result in results:
        data = ("SYNTHETIC STARSS23-layout" if result.get("synthetic")
                else "STARSS23 dev-test")
        config = config_path_of(path)
        for arm in result.get("arms", []):
            yield (path.parent.name, data, arm, result["summary"][arm],
                   config.name if config.is_file() else "–")


def direction_markdown(results: Sequence[tuple[Path, dict[str, Any]]]) -> str:
    """One row per run and arm: median angular error and % within 20°, one and two sources."""
    header = ("| run | data | input to the probe | one source: median error ° | within 20° % "
              "| two sources: median error ° | within 20° % | config |\n"
              "|---|---|---|---|---|---|---|---|")
    rows = []
    for run, data, arm, summary, config in _arm_summaries(results):
        def cell(variant: str, key: str) -> str:
            value = summary[variant][key]["mean"]
            return "–" if value is None else f"{value:.1f}"
        rows.append(f"| {run} | {data} | {DIRECTION_ARM_LABELS.get(arm, arm)} "
                    f"| {cell('single_source', 'median_error_deg')} "
                    f"| {cell('single_source', 'within_pct')} "
                    f"| {cell('two_sources', 'median_error_deg')} "
                    f"| {cell('two_sources', 'within_pct')} | {config} |")
    return "\n".join([header, *rows])


def seld_markdown(results: Sequence[tuple[Path, dict[str, Any]]]) -> str:
    """One row per run and arm: DCASE scores, mean ± sd over the seeds."""
    header = ("| run | data | input to the head | ER20 | F20 % | LE deg | LR % | SELD | seeds "
              "| config |\n|---|---|---|---|---|---|---|---|---|---|")
    seeds = {path.parent.name: len(result.get("seeds", [])) for path, result in results}
    rows = []
    for run, data, arm, summary, config in _arm_summaries(results):
        def cell(key: str, scale: float = 1.0, digits: int = 2) -> str:
            mean, sd = summary[key]["mean"] * scale, summary[key]["sd"] * scale
            return f"{mean:.{digits}f} ± {sd:.{digits}f}"
        rows.append(f"| {run} | {data} | {SELD_ARM_LABELS.get(arm, arm)} | "
                    f"{cell('error_rate')} | {cell('f_score', 100, 1)} | "
                    f"{cell('localization_error_deg', 1, 1)} | "
                    f"{cell('localization_recall', 100, 1)} | {cell('seld_score')} | "
                    f"{seeds[run]} | {config} |")
    return "\n".join([header, *rows])


def render_report(runs: Sequence[RunScores], runs_dir: Path,
                  downstream: Sequence[DownstreamScores] = (),
                  multisensory: Sequence[RunScores] = (),
                  seld: Sequence[tuple[Path, dict[str, Any]]] = (),
                  direction: Sequence[tuple[Path, dict[str, Any]]] = ()) -> str:
    legend = ("Accuracies and hit rates in percent. AVC-bin / AVSA-bin: binary classification on "
              "frozen features with 1 viewpoint, averaged over 4 viewpoints, and over 4 with the "
              "translation transformer (Morgado et al. 2020). EigenScape: mean accuracy over the "
              "4 folds with frozen audio embeddings and a linear classifier; log-mel / DirAC: the "
              "hand-made baselines with the same classifier, same run. Loc. hit: fraction "
              "of clips whose localisation-map peak (contrastive alignment score) lies within "
              "the threshold of a sounding object; other clip's video: the same audio scored "
              "against another clip's crops (a map that uses the picture falls there). "
              "`<run> · random viewpoints`: the binary tasks of a run trained on other "
              "viewpoints (YOLO) scored on uniformly drawn ones, Morgado et al.'s protocol. "
              "`(synthetic)` after a run: its scores were measured on the synthetic data set, not "
              "comparable with the published numbers below them; `*`: that cell only, in a row "
              "that mixes.")
    body = markdown_table(runs) if runs else f"_No evaluated runs found under `{runs_dir}`._"
    downstream_legend = (
        "Percent. Action recognition (evals.video.action): top-1 accuracy of single "
        "clips (clip@1) and of videos from the mean softmax of 25 clips (video@1) on the test "
        "list of the split; chance = 1 / classes; protocol `finetune` (Morgado et al. 2020) or "
        "`linear` (frozen encoder, Wang et al. 2022 \"without fine-tuning\"). 360° segmentation "
        "(evals.video.segmentation): mIoU and pixel accuracy of the FPN head on frozen "
        "features (protocol column: input features) vs labelling every pixel with the most "
        "frequent training class. `(synthetic)` after a run: synthetic action set or synthetic "
        "ground truth, not comparable with the published numbers.")
    multisensory_legend = (
        "Sync accuracy, CAM hit rates in percent; separation columns in dB. Sync acc.: held-out "
        "synchronised vs shifted audio (chance 50 %); mismatched video: the same pairs scored "
        "with another clip's video (a model using the video should fall towards chance). CAM "
        "hit: the class-activation-map peak within the threshold of a sounding object, over "
        "clips with one in view / over all clips with one. SI-SDRi: SI-SDR improvement over the "
        "mixture, best source assignment (PIT), of the audio-visual and the audio-only u-net "
        "on the same mixtures, their difference, and the audio-visual on-screen output alone.")
    downstream_body = (downstream_markdown(downstream) if downstream
                       else f"_No downstream results found under `{runs_dir}/*/`._")
    multisensory_body = (multisensory_markdown(multisensory) if multisensory
                         else f"_No multisensory runs found under `{runs_dir}`._")
    seld_legend = (
        "SELD (evals.audio.seld): the DCASE 2023 task 3 metrics with the official code's "
        "semantics on the test recordings: one location-dependent error rate pooled over "
        "classes per 1 s segment (ER20, lower is better), F-score within 20°, class-dependent "
        "localisation error (LE, 180° for a class never localised) and recall (LR) macro over "
        "classes, and SELD = mean(ER, 1 − F, LE/180, 1 − LR). Every row trains the same "
        "temporal-convolution multi-ACCDOA head, the same number of optimizer steps and seeds, "
        "on a different input: the run's frozen audio encoder read out at K viewpoints with "
        "the mel axis kept, the same network with random weights, the encoder's front view "
        "alone (mel max-pooled), the DCASE baseline's exact input features, or a constant "
        "(what the label priors alone score). "
        "For comparison, the DCASE 2023 FOA baseline (its own CRNN, trained end to end on "
        "STARSS23 plus synthetic data) reports ER 0.57, F 29.9 %, LE 21.6°, LR 47.7 % on the "
        "real dev-test split.")
    seld_body = (seld_markdown(seld) if seld
                 else f"_No SELD results found under `{runs_dir}/*/{SELD_JSON}`._")
    direction_legend = (
        "Direction probe (evals.audio.direction): a ridge regression from each input to the "
        "unit direction of the source, fitted on the training recordings' frames with one "
        "active source (penalty chosen on a validation part of them) and scored on the test "
        "recordings: median angular error and share within 20°; two sources: the same probe "
        "scored against the nearer source. The hand-made inputs do not depend on the run.")
    direction_body = (direction_markdown(direction) if direction
                      else f"_No direction probes found under `{runs_dir}/*/{DIRECTION_JSON}`._")
    return "\n\n".join([
        "# Results", legend, body,
        "## Downstream tasks", downstream_legend, downstream_body,
        "## Sound event localisation and detection (STARSS23)", seld_legend, seld_body,
        "## Direction probe", direction_legend, direction_body,
        "## Multisensory baseline (Owens & Efros 2018)", multisensory_legend, multisensory_body,
        "## Published anchors", anchors_markdown(),
    ]) + "\n"


def write_results(runs_dir: str | Path, out_path: str | Path,
                  repo_root: str | Path | None = None) -> Path:
    """Collect the runs under ``runs_dir`` and write the Markdown report to ``out_path``."""
    runs_dir, out_path = Path(runs_dir), Path(out_path)
    root = Path(repo_root) if repo_root else None
    runs = collect_runs(runs_dir, root)
    downstream = collect_downstream(runs_dir)
    multisensory = collect_multisensory(runs_dir, root)
    seld = collect_task(runs_dir, SELD_JSON, "seld")
    direction = collect_task(runs_dir, DIRECTION_JSON, "direction")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(render_report(runs, runs_dir, downstream, multisensory, seld, direction),
                   encoding="utf-8")
    tmp.replace(out_path)
    log.info("wrote %s (%d evaluated runs in %d rows, %d downstream results, %d multisensory "
             "runs)", out_path, len({run.run_dir for run in runs}), len(runs), len(downstream),
             len(multisensory))
    return out_path


@dataclass(frozen=True)
class ResultsTableConfig:
    """``configs/evals/results_table.yaml``."""

    runs: str = "runs"               # folder holding one sub-folder per run
    out: str = "results.md"          # Markdown file to write


def run(cfg: ResultsTableConfig) -> None:
    write_results(cfg.runs, cfg.out)
    print(Path(cfg.out).read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(ResultsTableConfig, run, argv, name="results_table",
                         description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
