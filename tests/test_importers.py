"""Importers on fake corpora in tmp_path: YT-360 with missing files, EigenScape folds, a folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.errors import ManifestError
from pipeline.ffmpeg_bin import ffmpeg_exe
from pipeline.importers import (
    eigenscape_fold_split,
    import_eigenscape,
    import_video_folder,
    import_yt360,
    main,
    parse_eigenscape_name,
    parse_yt360_clip_list,
)
from pipeline.manifest import Recording, read_manifest

EIGENSCAPE_CLASSES = ("Beach", "BusyStreet", "Park", "PedestrianZone", "QuietStreet",
                      "ShoppingCentre", "TrainStation", "Woodland")


def make_clip_file(path: Path, *, size=(64, 32), channels: int | None = 4, duration_s=0.5,
                   acodec="aac") -> Path:
    """A tiny testsrc video with a sine on ``channels`` audio channels (None: no audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if size is not None:
        cmd += ["-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate=16:duration={duration_s}"]
    stdin = None
    if channels:
        n = int(24_000 * duration_s)
        audio = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 24_000)
        stdin = np.repeat(audio[:, None], channels, axis=1).astype("<f4").tobytes()
        cmd += ["-f", "f32le", "-ar", "24000", "-ac", str(channels), "-i", "pipe:", "-c:a", acodec]
    if size is not None:
        cmd += ["-c:v", "mpeg4"]
    subprocess.run(cmd + [str(path)], input=stdin, check=True, capture_output=True)
    return path


# ---------------------------------------------------------------------------------------------
# YT-360


@pytest.fixture(scope="module")
def yt360_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("yt360")
    (root / "clips.txt").write_text("vidA 0,10\nvid_B-x 20\n\n# comment\nvidC 5\nvidD 0\n")
    (root / "train.txt").write_text("vidA\nvid_B-x\n")
    (root / "test.txt").write_text("vidC\n")
    video = make_clip_file(root / "video" / "vidA-0.mp4", channels=None)
    audio = make_clip_file(root / "audio" / "vidA-0.m4a", size=None)
    for clip_id in ("vidA-10", "vid_B-x-20", "vidD-0"):
        (root / "video" / f"{clip_id}.mp4").write_bytes(video.read_bytes())
        (root / "audio" / f"{clip_id}.m4a").write_bytes(audio.read_bytes())
    (root / "video" / "vidC-5.mp4").write_bytes(video.read_bytes())  # its audio is missing
    (root / "audio" / "vid_B-x-20.m4a").write_text("not audio")      # unreadable
    return root


def test_parse_yt360_clip_list(tmp_path):
    path = tmp_path / "clips.txt"
    path.write_text("abc 0,10,20\n\nxyz 5.5\n")
    assert parse_yt360_clip_list(path) == [("abc", "0"), ("abc", "10"), ("abc", "20"), ("xyz", "5.5")]
    path.write_text("abc 0,10\nbroken line here\n")
    with pytest.raises(ManifestError, match=r"clips.txt:2: expected 'YOUTUBE_ID start1"):
        parse_yt360_clip_list(path)


def test_import_yt360_reports_every_skip(yt360_tree):
    root = yt360_tree
    clips, problems = import_yt360(root, root / "clips.txt", root / "train.txt", root / "test.txt",
                                   workers=2)
    assert [c.clip_id for c in clips] == ["vidA-0", "vidA-10"]
    clip = clips[0]
    assert (clip.video_path, clip.audio_path) == ("video/vidA-0.mp4", "audio/vidA-0.m4a")
    assert (clip.split, clip.width, clip.height, clip.fps) == ("train", 64, 32, 16.0)
    assert (clip.sample_rate, clip.audio_channels, clip.ambisonics) == (24_000, 4, "ambix")
    assert clip.duration_s == pytest.approx(0.5, abs=0.05)
    reasons = {p.item: p.reason for p in problems}
    assert set(reasons) == {"vid_B-x-20", "vidC-5", "vidD-0"}
    assert reasons["vidC-5"] == "missing audio/vidC-5.m4a"
    assert "readable media file" in reasons["vid_B-x-20"]
    assert "neither the train nor the test" in reasons["vidD-0"]


def test_import_yt360_rejects_overlapping_lists(yt360_tree, tmp_path):
    (tmp_path / "test.txt").write_text("vidC\nvidA\n")
    with pytest.raises(ManifestError, match="1 ids in both"):
        import_yt360(yt360_tree, yt360_tree / "clips.txt", yt360_tree / "train.txt",
                     tmp_path / "test.txt")


def test_cli_writes_manifest_and_problems(yt360_tree, tmp_path):
    out = tmp_path / "data_manifests" / "yt360.jsonl"
    root = yt360_tree
    assert main(["yt360", "--root", str(root), "--clip-list", str(root / "clips.txt"),
                 "--train-ids", str(root / "train.txt"), "--test-ids", str(root / "test.txt"),
                 "--workers", "2", "--out", str(out)]) == 0
    assert [c.clip_id for c in read_manifest(out)] == ["vidA-0", "vidA-10"]
    problems = [json.loads(line) for line in (out.parent / "yt360.problems.jsonl").open()]
    assert len(problems) == 3 and set(problems[0]) == {"item", "reason"}


# ---------------------------------------------------------------------------------------------
# EigenScape


@pytest.fixture(scope="module")
def eigenscape_tree(tmp_path_factory) -> Path:
    """8 classes x 8 recordings of 0.25 s, 9 channels at 8 kHz; both naming styles."""
    folder = tmp_path_factory.mktemp("eigenscape")
    data = np.zeros((2000, 9), dtype=np.float32)
    for c, scene in enumerate(EIGENSCAPE_CLASSES):
        for index in range(1, 9):
            name = f"{scene}-{index:02d}.wav" if c % 2 == 0 else f"{scene}.{index}.wav"
            soundfile.write(folder / name, data, 8000, subtype="FLOAT")
    return folder


def test_parse_eigenscape_name():
    assert parse_eigenscape_name("Beach-01.wav") == ("Beach", 1)
    assert parse_eigenscape_name("TrainStation.8.wav") == ("TrainStation", 8)
    assert parse_eigenscape_name("eigenscape_Beach.1_excerpt.wav") is None


def test_import_eigenscape_folds(eigenscape_tree):
    recordings, problems = import_eigenscape(eigenscape_tree, segment_s=0.1)
    assert problems == []
    assert len(recordings) == 64
    first = recordings[0]
    assert (first.channels, first.sample_rate, first.ambisonics) == (9, 8000, "hoa_ambix")
    assert first.duration_s == pytest.approx(0.25)
    assert first.segment_starts_s == pytest.approx((0.0, 0.1))  # full segments only
    assert {r.recording_id for r in recordings} >= {"Beach-01", "BusyStreet-08"}
    tested = []
    for fold in range(4):
        train, test = eigenscape_fold_split(recordings, fold)
        train_ids, test_ids = {r.recording_id for r in train}, {r.recording_id for r in test}
        assert not train_ids & test_ids
        assert len(train) == 48 and len(test) == 16
        assert {r.recording_index for r in test} == {2 * fold + 1, 2 * fold + 2}
        assert all(sum(r.scene_class == s for r in test) == 2 for s in EIGENSCAPE_CLASSES)
        tested += test_ids
    assert sorted(tested) == sorted(r.recording_id for r in recordings)  # each tested once


def test_import_eigenscape_reports_bad_files(tmp_path, eigenscape_tree):
    for name in ("Beach-01.wav", "Beach-02.wav", "Park.3.wav"):
        (tmp_path / name).write_bytes((eigenscape_tree / name if name != "Park.3.wav"
                                       else eigenscape_tree / "Park-03.wav").read_bytes())
    (tmp_path / "Beach.1.wav").write_bytes((eigenscape_tree / "Beach-01.wav").read_bytes())
    (tmp_path / "Beach-09.wav").write_bytes((eigenscape_tree / "Beach-01.wav").read_bytes())
    (tmp_path / "notes.wav").write_text("x")
    (tmp_path / "Park-04.wav").write_text("not a wav")
    recordings, problems = import_eigenscape(tmp_path, segment_s=0.1)
    assert sorted(r.recording_id for r in recordings) == ["Beach-01", "Beach-02", "Park-03"]
    reasons = {p.item: p.reason for p in problems}
    assert "duplicate of Beach-01.wav" in reasons["Beach.1.wav"]
    assert "expected in 1..8" in reasons["Beach-09.wav"]
    assert "name not like" in reasons["notes.wav"]
    assert "unreadable audio" in reasons["Park-04.wav"]
    assert "fold(s) [1, 2, 3]" in reasons["Beach"]


def test_eigenscape_cli(eigenscape_tree, tmp_path):
    out = tmp_path / "eigenscape.jsonl"
    assert main(["eigenscape", "--folder", str(eigenscape_tree), "--segment-s", "0.1",
                 "--out", str(out)]) == 0
    assert len(read_manifest(out, Recording)) == 64
    assert not (tmp_path / "eigenscape.problems.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# a user's folder


def test_import_video_folder(tmp_path):
    good = make_clip_file(tmp_path / "trip" / "day1.mp4")
    make_clip_file(tmp_path / "trip" / "day2.mkv", acodec="pcm_f32le")
    make_clip_file(tmp_path / "stereo.mp4", channels=2)
    make_clip_file(tmp_path / "flat.mp4", size=(64, 48))
    make_clip_file(tmp_path / "mute.mp4", channels=None)
    (tmp_path / "broken.mp4").write_bytes(good.read_bytes()[:500])
    (tmp_path / "trip" / "day1.webm").write_bytes(good.read_bytes())
    (tmp_path / "readme.txt").write_text("ignored: not a video suffix")

    clips, problems = import_video_folder(tmp_path, split_by="folder", workers=2)
    assert [c.clip_id for c in clips] == ["trip/day1", "trip/day2"]
    assert clips[0].audio_path is None and clips[0].video_path == "trip/day1.mp4"
    assert clips[0].split == clips[1].split  # same folder, same split
    reasons = {p.item: p.reason for p in problems}
    assert set(reasons) == {"stereo.mp4", "flat.mp4", "mute.mp4", "broken.mp4", "trip/day1.webm"}
    assert "ambix expected 4 audio channels, got 2" in reasons["stereo.mp4"]
    assert "expected a 2:1 equirectangular frame, got 64x48" in reasons["flat.mp4"]
    assert "expected an audio stream" in reasons["mute.mp4"]
    assert "already taken" in reasons["trip/day1.webm"]
