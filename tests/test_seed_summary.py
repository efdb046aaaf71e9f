"""evals.seed_summary: spreads over pretraining seeds and differences paired by seed, from
hand-made evaluation JSONs whose answers are worked out here."""

import json
import math

import pytest

from evals import seed_summary


def _binary(avsa_4: float, control: float) -> dict:
    views = {"single_view": avsa_4 - 5.0, "multi_view": avsa_4}
    return {"accuracy_pct": {"avc": dict(views), "avsa": dict(views)},
            "se_pct": {"avc": {"multi_view": 1.5}, "avsa": {"multi_view": 1.5}},
            "controls_pct": {task: {"plain": {"audio_only": {"single_view": 50.0,
                                                             "multi_view": control},
                                              "video_only": {"single_view": 50.0,
                                                             "multi_view": 50.0}}}
                             for task in ("avc", "avsa")}}


def _direction(encoder_median: float, random_median: float) -> dict:
    def arm(median):
        return {v: {"median_error_deg": median, "within_pct": 100.0 - median}
                for v in ("single_source", "two_sources")}
    return {"per_checkpoint": [{"checkpoint": "x", "random_encoder_seed": 1000,
                                "encoder": arm(encoder_median),
                                "random_encoder": arm(random_median)}],
            "hand_features": {"foa_iv": arm(3.0)}}


def _seld(f_encoder: float, f_random: float) -> dict:
    return {"summary": {"encoder": {"f_score": {"mean": f_encoder, "sd": 0.0}},
                        "random_encoder": {"f_score": {"mean": f_random, "sd": 0.0}},
                        "encoder_minus_random_encoder": {"f_score": {"mean": 0.0, "sd": 0.0}}}}


def _runs(tmp_path, name, avsa, encoder_median, f_scores):
    runs = []
    for seed, (acc, median, f) in enumerate(zip(avsa, encoder_median, f_scores)):
        run = tmp_path / f"{name}_{seed}"
        run.mkdir()
        (run / "eval_binary_random.json").write_text(json.dumps(_binary(acc, 52.0)))
        (run / "eval_direction.json").write_text(json.dumps(_direction(median, 40.0)))
        (run / "eval_seld.json").write_text(json.dumps(_seld(f, 0.10)))
        runs.append(run)
    return runs


def test_spread_and_paired_cells_follow_the_t_interval():
    # values 60, 70, 65: mean 65, sd 5
    assert seed_summary.spread_cell([60.0, 70.0, 65.0]) == "65.0 ± 5.0 (60.0, 70.0, 65.0)"
    assert seed_summary.spread_cell([None, None]) == "–"
    # differences 4, 6, 8: mean 6, sd 2, half-width 4.303 * 2 / sqrt(3)
    half = 4.303 * 2.0 / math.sqrt(3.0)
    cell = seed_summary.difference_cell([64.0, 66.0, 68.0], [60.0, 60.0, 60.0])
    assert cell == f"+6.0 ± 2.0 [{6.0 - half:+.1f}, {6.0 + half:+.1f}]"
    assert seed_summary.difference_cell([1.0], [None]) == "–"


def test_report_pairs_groups_by_seed(tmp_path):
    groups = {"avsa": _runs(tmp_path, "avsa", [70.0, 66.0, 68.0], [10.0, 12.0, 14.0],
                            [0.30, 0.20, 0.25]),
              "avc": _runs(tmp_path, "avc", [60.0, 62.0, 58.0], [20.0, 20.0, 20.0],
                           [0.10, 0.10, 0.10])}
    text = seed_summary.report(groups)
    lines = text.splitlines()
    avsa_row = next(line for line in lines if line.startswith("| AVSA-bin, 4 views"))
    assert "68.0 ± 2.0 (70.0, 66.0, 68.0)" in avsa_row and "60.0 ± 2.0" in avsa_row
    assert "52.0 ± 0.0" in avsa_row                     # best control: audio only, 52
    assert "+8.0 ± 3.5" in avsa_row                    # differences 10, 4, 10: sd sqrt(12)
    direction = [line for line in lines if "encoder − random_encoder" in line]
    assert direction and "-28.0 ± 2.0" in direction[0]   # 10-40, 12-40, 14-40
    between = [line for line in lines if "encoder − encoder" in line]
    assert "-8.0 ± 2.0" in between[0]                  # direction: 10-20, 12-20, 14-20
    assert "+15.0 ± 5.0" in between[1]                 # SELD F20 %: 20, 10, 15 points
    assert "| avsa | foa_iv | 3.0 ± 0.0" in text


def test_missing_evaluations_leave_dashes_and_bad_groups_are_refused(tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    text = seed_summary.report({"only": [empty]})
    assert "| AVSA-bin, 4 views | – |" in text
    with pytest.raises(SystemExit, match="no run folder"):
        seed_summary.parse_groups([f"x={tmp_path / 'nope'}"])
    with pytest.raises(SystemExit, match="NAME=RUN_DIR"):
        seed_summary.parse_groups(["just_a_path"])
