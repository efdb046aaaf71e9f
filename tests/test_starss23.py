"""STARSS23 layout: label CSV reading (bad rows reported), pairing of the distributed folders
(unpaired files reported), and the synthetic stand-in, whose labels must agree with the physics
of its own audio (intensity-vector direction of single-event frames)."""

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from pipeline.features import AudioFeatureConfig, doa_from_intensity
from pipeline.spatial import angular_distance_rad
from pipeline.importers.starss23 import (LABEL_HOP_S, LabelRow, read_label_csv, scan_layout,
                               write_label_csv)
from pipeline.synth.cli import ResumeMismatchError, generate_starss23
from pipeline.synth.starss23 import Starss23SynthConfig, label_rows, recording_name

SMALL = Starss23SynthConfig(n_train_per_split=1, n_test_per_split=1, duration_s=4.0, width=64,
                            fps=8)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("starss23")
    generate_starss23(root, seed=3, cfg=SMALL, workers=1)
    return root


def test_label_csv_reads_both_releases_and_reports_each_bad_row(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("0,1,0,-30,10\n"          # 2023: five fields
                    "1,12,2,180,-90,250\n"     # 2024: distance in cm
                    "\n"
                    "2,13,0,0,0\n"             # class out of range (13 classes: 0..12)
                    "3,1,0,190,0\n"            # azimuth out of range
                    "x,1,0,0,0\n"              # not a number
                    "4,1,0,0\n"                # too few fields
                    "-1,1,0,0,0\n")            # negative frame
    rows, problems = read_label_csv(path, name="labels.csv")
    assert rows == [LabelRow(0, 1, 0, -30.0, 10.0), LabelRow(1, 12, 2, 180.0, -90.0, 250.0)]
    assert [p.item for p in problems] == [f"labels.csv:{n}" for n in (4, 5, 6, 7, 8)]
    assert "class expected an integer in 0..12" in problems[0].reason
    assert "azimuth" in problems[1].reason and "numbers" in problems[2].reason
    assert "5 or 6 fields" in problems[3].reason and "frame" in problems[4].reason


def test_label_csv_round_trip(tmp_path):
    rows = [LabelRow(3, 2, 1, -45.0, 12.0), LabelRow(0, 0, 0, 90.0, -5.0)]
    write_label_csv(tmp_path / "a.csv", rows)
    assert (tmp_path / "a.csv").read_text() == "0,0,0,90,-5\n3,2,1,-45,12\n"
    assert read_label_csv(tmp_path / "a.csv")[0] == sorted(rows, key=lambda r: r.frame)


def test_synthetic_set_has_the_distributed_layout(synth_root):
    recordings, problems = scan_layout(synth_root, require_video=True)
    assert problems == []
    assert sorted((r.split, r.name) for r in recordings) == sorted(
        (split, recording_name(split, 0)) for split in
        ("dev-train-sony", "dev-train-tau", "dev-test-sony", "dev-test-tau"))
    first = recordings[0]
    assert first.audio_path == f"foa_dev/{first.split}/{first.name}.wav"
    assert first.video_path == f"video_dev/{first.split}/{first.name}.mp4"
    info = sf.info(str(synth_root / first.audio_path))
    assert (info.channels, info.samplerate) == (4, 24000)
    marker = json.loads((synth_root / "SYNTHETIC.json").read_text())
    assert marker["class_names"][0] == "bell" and marker["label_hop_s"] == LABEL_HOP_S


def test_scan_reports_every_unpaired_file(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    recordings, _ = scan_layout(root)
    gone_video, gone_labels = recordings[0], recordings[1]
    (root / gone_video.video_path).unlink()
    (root / gone_labels.labels_path).unlink()
    (root / "foa_dev" / "dev-train-xyz").mkdir()
    (root / "foa_dev" / "dev-train-xyz" / "odd.wav").write_bytes(b"")
    found, problems = scan_layout(root)
    assert gone_video.name in {r.name for r in found}          # SELD needs no video
    assert gone_labels.name not in {r.name for r in found}
    reasons = {p.item: p.reason for p in problems}
    assert "no label file" in reasons[gone_labels.audio_path]
    assert "split" in reasons["foa_dev/dev-train-xyz/odd.wav"]
    _, strict = scan_layout(root, require_video=True)
    assert any("no video file" in p.reason and p.item == gone_video.audio_path for p in strict)


def test_labels_follow_the_audio_physics(synth_root):
    """In frames where exactly one event is labelled, the intensity-vector direction of the
    recording's FOA (diffuse ambience included) lies near the labelled direction."""
    cfg = AudioFeatureConfig(window_s=LABEL_HOP_S, n_frames=10)
    errors_deg = []
    for recording in scan_layout(synth_root)[0]:
        rows, _ = read_label_csv(synth_root / recording.labels_path, n_classes=6)
        foa, rate = sf.read(str(synth_root / recording.audio_path), dtype="float32")
        by_frame = {}
        for row in rows:
            by_frame.setdefault(row.frame, []).append(row)
        hop = int(round(LABEL_HOP_S * rate))
        for frame, events in by_frame.items():
            if len(events) != 1:
                continue
            window = foa[frame * hop:(frame + 1) * hop].T
            if window.shape[1] < hop:
                continue
            az, el = doa_from_intensity(window, cfg)
            errors_deg.append(math.degrees(angular_distance_rad(
                az, el, math.radians(events[0].azimuth_deg),
                math.radians(events[0].elevation_deg))))
    assert len(errors_deg) >= 20
    assert np.median(errors_deg) < 8.0, np.percentile(errors_deg, [50, 90])


def test_label_rows_use_the_envelope_and_the_track():
    gt = {"duration_s": 1.0, "fps": 10, "objects": [
        {"object_id": 0, "class_id": 4, "sounding": True, "on_intervals_s": [[0.25, 0.62]],
         "azimuth_rad": [math.radians(a) for a in np.linspace(0, 90, 10)],
         "elevation_rad": [0.2] * 10},
        {"object_id": 1, "class_id": 1, "sounding": False, "on_intervals_s": [[-1.0, 2.0]],
         "azimuth_rad": [0.0] * 10, "elevation_rad": [0.0] * 10}]}
    rows = label_rows(gt)
    # Frames 2 (0.2-0.3 s: 0.5 covered, ramps make it < 0.5) is out; 3, 4, 5 in; 6 (0.6-0.7:
    # 0.2 covered) out. The silent object is never labelled.
    assert [r.frame for r in rows] == [3, 4, 5]
    assert {r.class_index for r in rows} == {4}
    # Track: 10 deg per 0.1 s from 0 at t = 0; frame 3's centre is 0.35 s -> 35 deg.
    assert [r.azimuth_deg for r in rows] == [35.0, 45.0, 55.0]
    assert rows[0].elevation_deg == round(math.degrees(0.2))


def test_generator_resumes_and_refuses_other_settings(synth_root, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(synth_root, root)
    wav = next(root.glob("foa_dev/*/*.wav"))
    before = wav.stat().st_mtime_ns
    generate_starss23(root, seed=3, cfg=SMALL, workers=1)
    assert wav.stat().st_mtime_ns == before
    with pytest.raises(ResumeMismatchError, match="new --out"):
        generate_starss23(root, seed=4, cfg=SMALL, workers=1)


def test_importer_keeps_labels_maps_splits_and_reports_problems(synth_root, tmp_path):
    from pipeline.importers import import_starss23, main
    from pipeline.manifest import read_manifest

    clips, problems = import_starss23(synth_root, workers=1)
    assert problems == [] and len(clips) == 4
    assert {c.split for c in clips} == {"train", "test"}
    by_id = {c.clip_id: c for c in clips}
    clip = by_id[recording_name("dev-test-tau", 0)]
    assert (clip.split, clip.dataset, clip.ambisonics) == ("test", "starss23_synth", "ambix")
    assert clip.labels_path == f"metadata_dev/dev-test-tau/{clip.clip_id}.csv"
    assert clip.audio_path.startswith("foa_dev/dev-test-tau/") and clip.sample_rate == 24000
    assert (clip.width, clip.height) == (SMALL.width, SMALL.width // 2)

    root = tmp_path / "broken"
    shutil.copytree(synth_root, root)
    (root / clips[0].video_path).unlink()
    labels = root / clips[1].labels_path
    labels.write_text(labels.read_text() + "12,99,0,0,0\n")
    out = tmp_path / "manifests" / "starss23.jsonl"
    assert main(["starss23", "--root", str(root), "--out", str(out), "--workers", "1"]) == 0
    assert len(read_manifest(out)) == 3
    reported = [json.loads(line) for line in
                (tmp_path / "manifests" / "starss23.problems.jsonl").read_text().splitlines()]
    assert any("no video file" in p["reason"] for p in reported)
    assert any(p["item"].startswith(clips[1].labels_path + ":") and "class" in p["reason"]
               for p in reported)
