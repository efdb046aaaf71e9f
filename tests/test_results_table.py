"""The results table: fake run folders in, Markdown with published anchors out."""

import json
import re

import yaml

from trainer.evaluate import results_table
from trainer.evaluate.results_table import PUBLISHED, collect_runs, write_results


def binary_json(single, multi, multi_t, experiment=None):
    scores = {"single_view": single, "multi_view": multi, "multi_view_transformer": multi_t}
    data = {"accuracy_pct": {"avc": scores, "avsa": {k: v - 20 for k, v in scores.items()}},
            "synthetic": True}
    if experiment:
        data["experiment"] = experiment
    return data


def make_runs(root):
    """avsa: every evaluation (EigenScape on synthetic data); foa_iv: EigenScape on the real
    data only; avc_seed1: named differently from its experiment; notes: no evaluation."""
    runs = root / "runs"
    avsa = runs / "avsa"
    avsa.mkdir(parents=True)
    (avsa / "config.yaml").write_text(yaml.safe_dump({"experiment": "avsa"}))
    (avsa / "eval_binary.json").write_text(json.dumps(binary_json(81.5, 88.25, 90.0)))
    (avsa / "eval_eigenscape.json").write_text(json.dumps(
        {"data_source": "synthetic", "methods": {"model": {"mean_accuracy_pct": 61.0},
                                                 "dirac_stats": {"mean_accuracy_pct": 40.0}}}))
    (avsa / "eval_localize.json").write_text(json.dumps({"hit_rate_pct": 37.5,
                                                         "synthetic": True}))
    foa_iv = runs / "foa_iv"
    foa_iv.mkdir()
    (foa_iv / "config.yaml").write_text(yaml.safe_dump({"experiment": "foa_iv"}))
    (foa_iv / "eval_eigenscape.json").write_text(json.dumps(
        {"experiment": "foa_iv", "data_source": "eigenscape",
         "methods": {"model": {"mean_accuracy_pct": 77.7}}}))
    other = runs / "avc_seed1"
    other.mkdir()
    (other / "eval_binary.json").write_text(json.dumps(binary_json(70.0, 75.0, 76.0, "avc")))
    (runs / "notes").mkdir()
    (runs / "notes" / "readme.txt").write_text("not a run")
    return runs


def test_runs_are_collected_in_experiment_order(tmp_path):
    runs = collect_runs(make_runs(tmp_path))
    assert [(r.run_dir.name, r.experiment) for r in runs] == [
        ("foa_iv", "foa_iv"), ("avc_seed1", "avc"), ("avsa", "avsa")]
    avsa = runs[-1]
    assert avsa.scores["avc_bin_1"] == 81.5 and avsa.scores["avsa_bin_4t"] == 70.0
    assert avsa.scores["eigenscape"] == 61.0 and avsa.synthetic["eigenscape"]
    assert avsa.scores["localization"] == 37.5
    assert avsa.config_path.startswith("configs/experiments/avsa.yaml")
    assert runs[0].scores["avc_bin_1"] is None and not runs[0].synthetic["eigenscape"]


def test_markdown_puts_published_numbers_under_each_run(tmp_path):
    out = write_results(make_runs(tmp_path), tmp_path / "results.md")
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    avsa_row = next(i for i, line in enumerate(rows) if line.startswith("| avsa | avsa |"))
    assert "81.50 (synthetic)" in rows[avsa_row] and "61.00 (synthetic)" in rows[avsa_row]
    assert "37.50 (synthetic)" in rows[avsa_row] and "– / 40.00 (synthetic)" in rows[avsa_row]
    published = rows[avsa_row + 1]
    assert published.startswith("| ↳ published | avsa |")
    for value in ("86.19", "91.67", "89.83", "64.97", "68.87", "69.97", "89.40"):
        assert value in published
    foa_iv_row = next(line for line in rows if line.startswith("| foa_iv | foa_iv |"))
    assert "77.70" in foa_iv_row and "(synthetic)" not in foa_iv_row
    assert "notes" not in text.split("## Published anchors")[0]
    # Every anchor of MISSION.md is listed with its source.
    anchors = text.split("## Published anchors")[1]
    for value in ("79.82", "82.68", "83.87", "80.08", "82.77", "83.77", "59.48", "61.20",
                  "82.50", "74.10"):
        assert value in anchors
    assert "Morgado et al. 2020" in anchors and "Wang et al. 2022" in anchors
    assert "| earlier systems | EigenScape (reference, not run here) |" in anchors


def test_published_constants_cover_the_three_pretexts():
    for experiment in ("avc", "avts", "avsa"):
        assert {"avc_bin_1", "avc_bin_4", "avc_bin_4t", "avsa_bin_1", "avsa_bin_4",
                "avsa_bin_4t"} <= set(PUBLISHED[experiment])
    assert PUBLISHED["avsa"]["eigenscape"][0] == 89.4 and PUBLISHED["avc"]["eigenscape"][0] == 82.5


def test_cli_writes_the_file_and_handles_no_runs(tmp_path, capsys):
    assert results_table.main(["--runs", str(tmp_path / "none"),
                               "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "No evaluated runs" in text and re.search(r"\| avsa \| AVC-bin 1 \| 86.19 \|", text)
