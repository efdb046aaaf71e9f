"""The results table: fake run folders in, Markdown with published anchors out."""

import json
import re

import pytest
import yaml

from evals import results_table
from evals.results_table import (MULTISENSORY_PUBLISHED, OWENS_2018, PUBLISHED,
                                 collect_downstream, collect_multisensory,
                                 collect_runs, write_results)


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
                                                         "mismatched_video_hit_rate_pct": 12.5,
                                                         "synthetic": True}))
    (avsa / "eval_binary_random.json").write_text(json.dumps(
        {**binary_json(55.0, 60.0, 61.0), "pair_viewpoints": "random"}))
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
    assert [(r.name, r.experiment) for r in runs] == [
        ("foa_iv", "foa_iv"), ("avc_seed1", "avc"), ("avsa", "avsa"),
        ("avsa · random viewpoints", "avsa")]
    assert runs[-1].scores["avc_bin_1"] == 55.0 and runs[-1].scores["localization"] is None
    avsa = runs[-2]
    assert avsa.scores["avc_bin_1"] == 81.5 and avsa.scores["avsa_bin_4t"] == 70.0
    assert avsa.scores["eigenscape"] == 61.0 and avsa.synthetic["eigenscape"]
    assert avsa.scores["localization"] == 37.5
    assert avsa.scores["localization_mismatched"] == 12.5
    assert avsa.config_path.startswith("configs/experiments/avsa.yaml")
    assert runs[0].scores["avc_bin_1"] is None and not runs[0].synthetic["eigenscape"]


def test_markdown_puts_published_numbers_under_each_run(tmp_path):
    out = write_results(make_runs(tmp_path), tmp_path / "results.md")
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # A row of synthetic scores says so once, after the run's name, not in every cell.
    avsa_row = next(i for i, line in enumerate(rows)
                    if line.startswith("| avsa (synthetic) | avsa |"))
    assert "| 81.50 |" in rows[avsa_row] and "| 61.00 |" in rows[avsa_row]
    assert "37.50 | 12.50" in rows[avsa_row] and "– / 40.00" in rows[avsa_row]
    assert rows[avsa_row].count("synthetic") == 1
    # The run's row on random viewpoints follows it; the published anchors come once, last.
    assert rows[avsa_row + 1].startswith("| avsa · random viewpoints (synthetic) | avsa | 55.00 |")
    published = rows[avsa_row + 2]
    assert published.startswith("| ↳ published | avsa |")
    assert sum(line.startswith("| ↳ published | avsa |") for line in rows) == 1
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


def test_published_constants_cover_table_1():
    """Morgado et al.'s Table 1: 1 and 4 views for AVC, AVTS and AVSA; "4 + T" only for the
    models pretrained with translation networks (AVSA, AVC transf., AVTS transf.)."""
    for experiment in ("avc", "avts", "avsa"):
        assert {"avc_bin_1", "avc_bin_4", "avsa_bin_1", "avsa_bin_4"} <= set(PUBLISHED[experiment])
    for experiment in ("avc_transf", "avts_transf", "avsa"):
        assert {"avc_bin_4t", "avsa_bin_4t"} <= set(PUBLISHED[experiment])
    assert "avc_bin_4t" not in PUBLISHED["avc"] and "avsa_bin_4t" not in PUBLISHED["avts"]
    assert PUBLISHED["avsa"]["eigenscape"][0] == 89.4 and PUBLISHED["avc"]["eigenscape"][0] == 82.5


def test_cli_writes_the_file_and_handles_no_runs(tmp_path, capsys):
    assert results_table.main([f"runs={tmp_path / 'none'}", f"out={tmp_path / 'r.md'}"]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "No evaluated runs" in text and re.search(r"\| avsa \| AVC-bin 1 \| 86.19 \|", text)


# ----------------------------------------------------------------------------- downstream tasks

def action_results(dataset, split, protocol, clip, video, n_classes, class_names, experiment,
                   synthetic=False):
    """evals.video.action results.json: accuracies as fractions; ``synthetic`` is what the
    evaluator records for a generated tree (its SYNTHETIC.json marker)."""
    return {"dataset": dataset, "split": split, "protocol": protocol, "synthetic": synthetic,
            "encoder": {"ckpt": f"runs/{experiment}/ckpt.pt", "experiment": experiment},
            "n_classes": n_classes, "chance_top1": 1.0 / n_classes, "clip_top1": clip,
            "video_top1": video, "class_names": class_names, "history": []}


def make_downstream_and_multisensory_runs(root):
    """avsa: real UCF-101 finetune, synthetic HMDB-51 linear, synthetic segmentation, a folder
    without results; scratch: UCF-101 only, segmentation config.json missing;
    multisensory: sync + CAM; multisensory_foa: sync only; separation: separation only."""
    runs = make_runs(root)
    avsa = runs / "avsa"
    for name, data in (
            ("ucf101-split1-finetune", action_results(
                "ucf101", 1, "finetune", 0.6, 0.655, 101, ["ApplyEyeMakeup", "Archery"], "avsa")),
            ("hmdb51-split1-linear", action_results(
                "hmdb51", 1, "linear", 0.5, 0.75, 6, ["left_to_right", "up_down"], "avsa",
                synthetic=True))):
        (avsa / name).mkdir()
        (avsa / name / "results.json").write_text(json.dumps(data))
    (avsa / "segmentation").mkdir()
    (avsa / "segmentation" / "config.json").write_text(json.dumps(
        {"manifest": "data_manifests/synthetic.jsonl", "labels_dir": "", "test_split": "test",
         "features": "video+audio"}))
    (avsa / "segmentation" / "results.json").write_text(json.dumps(
        {"features": "video+audio", "head": {"mean_iou": 0.4, "pixel_accuracy": 0.8},
         "majority_baseline": {"class": "background", "mean_iou": 0.1,
                               "pixel_accuracy": 0.7}}))
    (avsa / "ucf101-split2-finetune").mkdir()                 # interrupted: no results.json
    scratch = runs / "scratch_tiny"
    (scratch / "ucf101-split1-finetune").mkdir(parents=True)
    data = action_results("ucf101", 1, "finetune", 0.3, 0.35, 101, ["ApplyEyeMakeup"], "x")
    data["encoder"] = {"ckpt": "scratch", "preset": "tiny"}
    (scratch / "ucf101-split1-finetune" / "results.json").write_text(json.dumps(data))
    (scratch / "segmentation").mkdir()
    (scratch / "segmentation" / "results.json").write_text(json.dumps(
        {"head": {"mean_iou": 0.2, "pixel_accuracy": 0.5}}))
    (scratch / "other").mkdir()
    (scratch / "other" / "results.json").write_text(json.dumps({"something": "else"}))

    common = {"synthetic": True, "split": "test", "train_steps": 10}
    multi = runs / "multisensory"
    multi.mkdir()
    (multi / "config.yaml").write_text(yaml.safe_dump({"experiment": "multisensory"}))
    (multi / "eval_sync.json").write_text(json.dumps(
        {**common, "experiment": "multisensory", "accuracy_pct": 71.25, "chance_pct": 50.0,
         "accuracy_mismatched_video_pct": 50.5,
         "config_path": "configs/baselines/multisensory.yaml"}))
    (multi / "eval_localize.json").write_text(json.dumps(
        {**common, "experiment": "multisensory", "method": "cam", "hit_rate_pct": 40.0,
         "hit_rate_all_pct": 30.0}))
    foa = runs / "multisensory_foa"
    foa.mkdir()
    (foa / "eval_sync.json").write_text(json.dumps(
        {**common, "experiment": "multisensory_foa", "synthetic": False, "accuracy_pct": 66.0,
         "accuracy_mismatched_video_pct": 49.0}))
    separation = runs / "separation"
    separation.mkdir()
    (separation / "eval_separation.json").write_text(json.dumps(
        {**common, "experiment": "separation", "units": "dB",
         "audio_visual": {"si_sdri_pit": 5.5, "si_sdri_on": 3.25},
         "audio_only": {"si_sdri_pit": 4.0},
         "improvement_over_audio_only_db": {"si_sdri_pit": 1.5}, "n_mixtures": 8}))
    return runs


def test_downstream_results_are_collected_in_percent(tmp_path):
    rows = collect_downstream(make_downstream_and_multisensory_runs(tmp_path))
    assert [(r.run_dir.name, r.experiment, r.task, r.setting) for r in rows] == [
        ("avsa", "avsa", "UCF-101 action recognition", "finetune"),
        ("avsa", "avsa", "HMDB-51 action recognition", "linear"),
        ("avsa", "avsa", "360° segmentation", "video+audio"),
        ("scratch_tiny", "scratch", "UCF-101 action recognition", "finetune"),
        ("scratch_tiny", "scratch_tiny", "360° segmentation", "?")]
    ucf, hmdb, segmentation = rows[:3]
    assert ucf.scores["clip_top1"] == 60.0 and ucf.scores["video_top1"] == 65.5
    assert abs(ucf.scores["chance_top1"] - 100 / 101) < 1e-9 and not ucf.synthetic
    assert hmdb.scores["video_top1"] == 75.0 and hmdb.synthetic and hmdb.split == "1"
    assert segmentation.scores["mean_iou"] == 40.0 and segmentation.scores["pixel_accuracy"] == 80.0
    assert segmentation.scores["majority"] == "10.00 / 70.00 (background)"
    assert segmentation.synthetic and segmentation.split == "test"
    assert not rows[-1].synthetic and rows[-1].scores["majority"] is None


def test_multisensory_runs_are_collected(tmp_path):
    runs = collect_multisensory(make_downstream_and_multisensory_runs(tmp_path))
    by_name = {r.run_dir.name: r for r in runs}
    assert set(by_name) == {"multisensory", "multisensory_foa", "separation"}
    multi = by_name["multisensory"]
    assert multi.scores["sync"] == 71.25 and multi.scores["sync_mismatched"] == 50.5
    assert multi.scores["cam_hit"] == 40.0 and multi.scores["cam_hit_all"] == 30.0
    assert multi.synthetic["sync"] and multi.scores["si_sdri_av"] is None
    assert multi.config_path.startswith("configs/baselines/multisensory.yaml")
    foa = by_name["multisensory_foa"]
    assert foa.scores["cam_hit"] is None and not foa.synthetic["sync"]
    separation = by_name["separation"]
    assert (separation.scores["si_sdri_av"], separation.scores["si_sdri_audio_only"],
            separation.scores["si_sdri_gain"], separation.scores["si_sdri_on"]) == (
        5.5, 4.0, 1.5, 3.25)
    assert separation.scores["sync"] is None and separation.synthetic["si_sdri_gain"]


def section(text, title):
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_markdown_reports_downstream_and_multisensory_tables(tmp_path):
    text = write_results(make_downstream_and_multisensory_runs(tmp_path),
                         tmp_path / "results.md").read_text()
    rows = [line for line in section(text, "Downstream tasks").splitlines()
            if line.startswith("| ")]
    ucf = next(i for i, line in enumerate(rows) if "| UCF-101 action recognition | 1 | finetune"
               in line and line.startswith("| avsa |"))
    assert "| 60.00 | 65.50 | 0.99 |" in rows[ucf]
    hmdb = next(line for line in rows if "HMDB-51" in line)
    assert "(synthetic) |" in hmdb and "| 50.00 | 75.00 | 16.67 |" in hmdb
    seg = next(line for line in rows
               if line.startswith("| avsa (synthetic) | avsa | 360° segmentation"))
    assert "| 40.00 | 80.00 | 10.00 / 70.00 (background) |" in seg
    # The published action-recognition numbers follow each run's action rows.
    published = [line for line in rows if line.startswith("| ↳ published |")]
    assert len(published) == 2
    assert "| avsa |" in published[0] and "68.52 / 73.80" in published[0]
    assert "Morgado et al. 2020" in published[0] and rows.index(published[0]) == ucf + 2
    assert rows[ucf + 3].startswith("| avsa (synthetic) | avsa | 360° segmentation")
    assert "| scratch |" in published[1] and "54.85 / 59.95" in published[1]
    assert all(line.count("|") == rows[0].count("|") for line in rows)

    rows = [line for line in section(text, "Multisensory baseline (Owens & Efros 2018)")
            .splitlines() if line.startswith("| ")]
    assert "[dB]" in rows[0] and "chance 50" in rows[0]
    multi = next(i for i, line in enumerate(rows) if line.startswith("| multisensory (synthetic) |"))
    assert "| 71.25 | 50.50 | 40.00 | 30.00 |" in rows[multi]
    assert rows[multi + 1].startswith("| ↳ published | multisensory | 59.90 |")
    assert OWENS_2018 in rows[multi + 1]
    foa = next(i for i, line in enumerate(rows) if line.startswith("| multisensory_foa |"))
    assert "| 66.00 | 49.00 | – |" in rows[foa] and "59.90" in rows[foa + 1]
    separation = next(line for line in rows if line.startswith("| separation (synthetic) |"))
    assert "| 5.50 | 4.00 | 1.50 | 3.25 |" in separation
    assert not any(line.startswith("| ↳ published | separation") for line in rows)
    assert all(line.count("|") == rows[0].count("|") for line in rows)
    assert "| multisensory | sync acc. (chance 50) | 59.90 |" in section(text,
                                                                       "Published anchors")


def test_published_sync_anchor_is_in_the_paper_text():
    candidates = [root / "shared" / "papers" / "owens_efros2018_multisensory_blog.txt"
                  for root in (results_table.REPO_ROOT, results_table.REPO_ROOT.parent)]
    paper = next((path for path in candidates if path.is_file()), None)
    if paper is None:
        pytest.skip("shared/papers/owens_efros2018_multisensory_blog.txt not available")
    value = MULTISENSORY_PUBLISHED["multisensory"]["sync"][0]
    assert f"{value}% accuracy on held-out videos" in paper.read_text(encoding="utf-8")


def test_missing_downstream_and_multisensory_files_are_skipped(tmp_path):
    runs = make_runs(tmp_path)                         # no downstream or multisensory results
    assert collect_downstream(runs) == [] and collect_multisensory(runs) == []
    assert collect_downstream(tmp_path / "absent") == []
    text = write_results(runs, tmp_path / "results.md").read_text()
    assert "_No downstream results found" in section(text, "Downstream tasks")
    assert "_No multisensory runs found" in section(text, "Multisensory baseline (Owens & Efros "
                                                          "2018)")
    assert "| avsa (synthetic) | avsa |" in text.split("## Downstream tasks")[0]


def test_seld_results_get_one_row_per_arm_with_mean_and_sd(tmp_path):
    runs = tmp_path / "runs"
    (runs / "demo_avsa").mkdir(parents=True)
    scores = {"error_rate": 0.5, "f_score": 0.4, "localization_error_deg": 20.0,
              "localization_recall": 0.6, "seld_score": 0.38}
    summary = {arm: {key: {"mean": value, "sd": 0.01} for key, value in scores.items()}
               for arm in ("encoder", "dcase_features")}
    (runs / "demo_avsa" / "eval_seld.json").write_text(json.dumps(
        {"task": "seld", "synthetic": True, "arms": ["encoder", "dcase_features"],
         "seeds": [0, 1, 2], "summary": summary}))
    out = results_table.write_results(runs, tmp_path / "results.md")
    text = out.read_text()
    section = text.split("## Sound event localisation and detection (STARSS23)")[1]
    section = section.split("## Direction probe")[0]
    rows = [line for line in section.splitlines() if line.startswith("| demo_avsa")]
    assert len(rows) == 2
    assert rows[0].split(" | ")[1:8] == ["SYNTHETIC STARSS23-layout",
                                         "frozen encoder, K viewpoints",
                                         "0.50 ± 0.01", "40.0 ± 1.0", "20.0 ± 0.0",
                                         "60.0 ± 1.0", "0.38 ± 0.01"]
    assert "DCASE baseline features" in rows[1]


def test_direction_probe_results_get_one_row_per_arm(tmp_path):
    runs = tmp_path / "runs"
    (runs / "demo_avsa").mkdir(parents=True)

    def scores(single, two):
        return {"single_source": {"median_error_deg": {"mean": single, "sd": 0.0},
                                  "within_pct": {"mean": 100.0 - single, "sd": 0.0}},
                "two_sources": {"median_error_deg": {"mean": two, "sd": 0.0},
                                "within_pct": {"mean": None, "sd": None}}}
    (runs / "demo_avsa" / "eval_direction.json").write_text(json.dumps(
        {"task": "direction", "synthetic": True, "arms": ["encoder", "foa_iv"],
         "summary": {"encoder": scores(30.0, 45.5), "foa_iv": scores(5.25, 20.0)}}))
    text = results_table.write_results(runs, tmp_path / "results.md").read_text()
    section = text.split("## Direction probe")[1].split("## Multisensory")[0]
    rows = [line for line in section.splitlines() if line.startswith("| demo_avsa")]
    assert [row.split(" | ")[2:7] for row in rows] == [
        ["frozen encoder, K viewpoints", "30.0", "70.0", "45.5", "–"],
        ["FOA intensity vectors (hand-made)", "5.2", "94.8", "20.0", "–"]]
