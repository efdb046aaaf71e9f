"""Action recognition protocols: clip@1 / video@1 on hand-made logits, the frozen (linear)
and fine-tuned classifiers, the command line, and a quick synthetic action set learned well
above chance by fine-tuning the tiny video encoder from a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.checkpoint_factory import random_checkpoint
from evals.video.action import (ActionClassifier, ActionEvalConfig, clip_top1, main,
                                run_action_eval, video_predictions, video_top1)
from pipeline.synth.actions import SyntheticActionConfig, generate_action_tree
from trainer.models import VideoEncoder




# ----------------------------------------------------------------------------- metrics

def test_clip_and_video_top1_on_hand_made_logits():
    # Video 0 (label 0): two clips lean weakly to class 1, one is very sure of class 0.
    # Video 1 (label 2): all three clips right.
    logits = np.array([[0.0, 0.2, -5.0],
                       [0.0, 0.2, -5.0],
                       [9.0, 0.0, -5.0],
                       [0.0, 0.0, 3.0],
                       [1.0, 0.0, 2.0],
                       [0.0, 0.0, 1.0]])
    labels = np.array([0, 0, 0, 2, 2, 2])
    videos = np.array([7, 7, 7, 3, 3, 3])
    assert clip_top1(logits, labels) == pytest.approx(4 / 6)
    # Mean softmax of video 0: class 0 gets ~(0.45 + 0.45 + 1.0) / 3 > class 1's ~0.55 / 3,
    # although a majority vote of its clips would say class 1.
    assert video_top1(logits, labels, videos) == 1.0
    predicted, video_labels = video_predictions(logits, labels, videos)
    assert predicted.tolist() == [2, 0] and video_labels.tolist() == [2, 0]   # sorted by id
    assert video_top1(logits[:2], labels[:2], videos[:2]) == 0.0
    with pytest.raises(ValueError, match="different labels"):
        video_top1(logits, np.array([0, 1, 0, 2, 2, 2]), videos)


def test_linear_protocol_freezes_the_encoder_and_finetune_does_not(one_thread):
    clips, labels = torch.rand(4, 3, 8, 16, 16), torch.tensor([0, 1, 0, 1])
    for protocol in ("linear", "finetune"):
        torch.manual_seed(0)
        model = ActionClassifier(VideoEncoder(16, "tiny"), 16, 2, dropout=0.0,
                                 freeze_encoder=protocol == "linear")
        before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
        model.train()
        torch.nn.functional.cross_entropy(model(clips), labels).backward()
        optimizer.step()
        changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before[k])]
        if protocol == "linear":
            assert changed == [] and not model.encoder.training     # weights and BN stats kept
            assert len(model.trainable_parameters()) == 2           # classifier weight + bias
        else:
            assert any("running_mean" in k for k in changed) and any("weight" in k for k in changed)


# ----------------------------------------------------------------------------- command line

def test_cli_reports_the_missing_split_file(tmp_path, capsys):
    (tmp_path / "ucfTrainTestlist").mkdir(parents=True)
    (tmp_path / "ucfTrainTestlist" / "classInd.txt").write_text("1 YoYo\n")
    code = main(["dataset=ucf101", f"root={tmp_path}", "split=1", "ckpt=scratch",
                 "protocol=linear", f"out={tmp_path / 'o'}"])
    assert code == 2
    assert "trainlist01.txt, got no such file" in capsys.readouterr().err


def test_linear_protocol_runs_end_to_end_on_an_hmdb_tree(tmp_path, one_thread):
    cfg = SyntheticActionConfig(width=48, height=36, duration_s=0.75, train_per_class=2,
                                test_per_class=1, unused_per_class=1,
                                classes=("up_down", "static_blinking"))
    root = generate_action_tree(tmp_path / "hmdb", cfg, "hmdb")
    code = main(["dataset=hmdb51", f"root={root}", "split=1", "protocol=linear",
                 f"ckpt={random_checkpoint(tmp_path / 'ckpt.pt')}", "epochs=2",
                 "batch_size=4", "crop_size=24", "short_side=28",
                 "test_clips=3", "workers=0", f"cache_dir={tmp_path / 'cache'}",
                 f"out={tmp_path / 'out'}"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["encoder"]["preset"] == "tiny" and results["n_classes"] == 2
    assert results["synthetic"] is True                  # the generated tree's SYNTHETIC.json
    assert (tmp_path / "out" / "results.config.yaml").is_file()   # resolved config beside it
    assert (results["n_train_videos"], results["n_test_videos"]) == (4, 2)   # tag-0 videos unused
    assert 0.0 <= results["clip_top1"] <= 1.0 and results["chance_top1"] == 0.5
    assert len(results["history"]) == 2 and results["history"][0]["lr"] == pytest.approx(1e-3)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["protocol"] == "linear" and saved["dropout"] == 0.0


# ----------------------------------------------------------------------------- learning

@pytest.mark.slow
def test_finetuning_learns_synthetic_actions_well_above_chance(tmp_path, one_thread):
    """Quick variant of the benchmark (bench/downstream.py: 6 classes at 48 px, 97 % clip@1):
    four motion classes, 40 training videos each with large objects, 32 px crops, 16 epochs
    from a random tiny checkpoint. Dropout 0 and lr 3e-3 suit a 32-d feature and 160 clips per
    epoch. Seeds 0 / 1 / 2 of the data gave video@1 88 / 56 / 81 % (seed 0 here)."""
    classes = ("left_to_right", "up_down", "expanding", "static_blinking")
    data = SyntheticActionConfig(width=64, height=48, duration_s=1.5, train_per_class=40,
                                 test_per_class=4, classes=classes, object_size=(0.2, 0.3))
    root = generate_action_tree(tmp_path / "ucf", data, "ucf", workers=2)
    cfg = ActionEvalConfig("ucf101", str(root), 1, random_checkpoint(tmp_path / "ckpt.pt"),
                           "finetune", str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                           epochs=16, batch_size=8, lr=3e-3, lr_milestones=(12,), dropout=0.0,
                           clips_per_video=1, test_clips=5, crop_size=32, short_side=40,
                           min_crop_scale=0.8, workers=0)
    results = run_action_eval(cfg)
    chance = results["chance_top1"]
    assert chance == 0.25
    assert results["video_top1"] >= 2 * chance, results
    assert results["clip_top1"] >= 1.8 * chance, results
