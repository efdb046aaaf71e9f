"""UCF-101 / HMDB-51 loaders: official split formats, clear errors for missing files, the
decoded-frame cache and clip sampling (25 uniformly spaced clips, 8 frames at 16 fps)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from evals.video.action_data import (
    CLIP_FRAMES, TEST_CLIPS, ActionVideo, DecodeSpec, FrameCache, MissingVideoError, SplitFileError,
    SplitFormatError, EvalVideoDataset, TrainClipDataset, VideoFolderError, build_frame_cache,
    clip_frame_indices, load_hmdb51, load_ucf101, parse_hmdb_split_file, parse_ucf_class_index,
    parse_ucf_split_list, scaled_size, uniform_clip_starts)
from pipeline.synth.actions import (SyntheticActionConfig, generate_action_tree,
                                    write_video_mp4)

UCF_CLASSES = ("ApplyEyeMakeup", "HandstandPushups", "YoYo")


def make_ucf_tree(root, videos_dir="UCF-101", with_videos=True):
    """A fake UCF-101 tree in the official layout (CRLF lines, like the distributed files)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    train = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
             # the official files spell the folder HandstandPushups, the file HandStandPushups
             "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
             "YoYo/v_YoYo_g09_c02.avi 3"]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]
    (lists / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (lists / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    if with_videos:
        for line in train + test:
            path = root / videos_dir / line.split()[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not decoded by the parser")
    return root


def make_hmdb_tree(root):
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    content = {"brush_hair": [("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 1),
                              ("Blonde_brush_hair_f_nm_np2_le_goo_1.avi", 2),
                              ("Brush_my_hair_h_nm_np1_fr_med_2.avi", 0)],
               "cartwheel": [("Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi", 2),
                             ("Cartwheel_cartwheel_f_cm_np1_ri_med_1.avi", 1)]}
    for name, entries in content.items():
        (splits / f"{name}_test_split1.txt").write_text("".join(f"{v} {t} \n" for v, t in entries))
        for video, _ in entries:
            path = root / "hmdb51_org" / name / video
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


# ----------------------------------------------------------------------------- split parsing

def test_ucf_split_files_parse_to_zero_based_labels(tmp_path):
    split = load_ucf101(make_ucf_tree(tmp_path), 1)
    assert split.class_names == UCF_CLASSES
    assert [(v.video_id, v.label) for v in split.train] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", 1),
        ("YoYo/v_YoYo_g09_c02.avi", 2)]
    assert [v.label for v in split.test] == [0, 2]          # from the folder: no label column
    assert split.train[0].path == (tmp_path / "UCF-101" / split.train[0].video_id).resolve()


def test_ucf_parser_names_file_and_line_of_bad_entries(tmp_path):
    index = tmp_path / "classInd.txt"
    index.write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    names = parse_ucf_class_index(index)
    bad_label = tmp_path / "trainlist01.txt"
    bad_label.write_text("ApplyEyeMakeup/v_a.avi 1\nYoYo/v_b.avi 1\n")
    with pytest.raises(SplitFormatError, match=r"trainlist01.txt:2: expected label 2 \(YoYo\), got '1'"):
        parse_ucf_split_list(bad_label, names)
    unknown = tmp_path / "testlist01.txt"
    unknown.write_text("Juggling/v_c.avi\n")
    with pytest.raises(SplitFormatError, match="testlist01.txt:1: expected a class of classInd.txt"):
        parse_ucf_split_list(unknown, names)


def test_hmdb_split_tags_select_train_and_test(tmp_path):
    split = load_hmdb51(make_hmdb_tree(tmp_path), 1)
    assert split.class_names == ("brush_hair", "cartwheel")
    assert sorted((v.video_id, v.label) for v in split.train) == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0),
        ("cartwheel/Cartwheel_cartwheel_f_cm_np1_ri_med_1.avi", 1)]
    assert sorted(v.label for v in split.test) == [0, 1]    # tag 0 videos are unused
    bad = tmp_path / "x_test_split1.txt"
    bad.write_text("a.avi 1\nb.avi 3\n")
    with pytest.raises(SplitFormatError, match=r"x_test_split1.txt:2: expected '<video>.avi <0\|1\|2>'"):
        parse_hmdb_split_file(bad)


def test_missing_split_files_and_folders_raise_named_errors(tmp_path):
    with pytest.raises(VideoFolderError, match="expected the data set folder"):
        load_ucf101(tmp_path / "nowhere", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitFileError, match="holding classInd.txt"):
        load_ucf101(tmp_path / "empty", 1)
    root = make_ucf_tree(tmp_path / "ucf")
    with pytest.raises(SplitFileError, match="trainlist02.txt, got no such file"):
        load_ucf101(root, 2)
    no_videos = make_ucf_tree(tmp_path / "ucf_no_videos", with_videos=False)
    with pytest.raises(VideoFolderError, match="ucf101 videos: expected a folder holding ApplyEyeMakeup"):
        load_ucf101(no_videos, 1)
    os.remove(root / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi")
    with pytest.raises(MissingVideoError, match=r"got 1 missing \(e.g. YoYo/v_YoYo_g01_c01.avi\)"):
        load_ucf101(root, 1)
    with pytest.raises(SplitFileError, match="_test_split2.txt"):
        load_hmdb51(make_hmdb_tree(tmp_path / "hmdb"), 2)
    with pytest.raises(ValueError, match="expected split 1, 2 or 3"):
        load_hmdb51(tmp_path / "hmdb", 4)


def test_synthetic_trees_load_in_both_layouts(tmp_path):
    cfg = SyntheticActionConfig(width=32, height=24, duration_s=0.5, train_per_class=2,
                                test_per_class=1, classes=("up_down", "rotating"))
    ucf = load_ucf101(generate_action_tree(tmp_path / "ucf", cfg, "ucf"), 1)
    hmdb = load_hmdb51(generate_action_tree(tmp_path / "hmdb", cfg, "hmdb"), 1)
    assert ucf.class_names == ("UpDown", "Rotating")
    assert hmdb.class_names == ("rotating", "up_down")       # HMDB: sorted split-file names
    for split in (ucf, hmdb):
        assert (len(split.train), len(split.test)) == (4, 2)
        assert all(v.path.is_file() for v in split.train + split.test)


# ----------------------------------------------------------------------------- clip sampling

def test_uniform_clip_starts_cover_the_video():
    starts = uniform_clip_starts(100, CLIP_FRAMES, TEST_CLIPS)
    assert starts.shape == (25,) and starts[0] == 0 and starts[-1] == 100 - 8
    assert np.all(np.diff(starts) >= 3) and np.all(np.diff(starts) <= 4)   # 92 / 24 = 3.83
    for start in starts:
        indices = clip_frame_indices(start, CLIP_FRAMES, 100)
        assert indices.tolist() == list(range(start, start + 8))
        assert indices.min() >= 0 and indices.max() <= 99
    short = uniform_clip_starts(5, CLIP_FRAMES, TEST_CLIPS)       # shorter than one clip
    assert np.all(short == 0)
    assert clip_frame_indices(0, CLIP_FRAMES, 5).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert scaled_size(320, 240, 128) == (170, 128) and scaled_size(240, 320, 128) == (128, 170)


def test_clips_are_eight_frames_at_16_fps_from_the_decoded_cache(tmp_path):
    # 2 s at 32 fps; the grey level of source frame i encodes its time: 4 * i = 128 * t.
    levels = 4 * np.arange(64)
    frames = np.repeat(levels[:, None, None, None], 48 * 64 * 3, axis=1).reshape(64, 48, 64, 3)
    video = write_video_mp4(tmp_path / "ramp.mp4", frames.astype(np.uint8), fps=32)
    cache = FrameCache(tmp_path / "cache", DecodeSpec(short_side=48))
    record = ActionVideo(video, 0, "ramp.mp4")
    assert build_frame_cache([record], cache, workers=1, progress=False) == [32]  # 16 fps
    item = EvalVideoDataset([record], cache, crop_size=32)[0]
    clips = item["video"]                                       # (25, 3, 8, S, S) in [0, 1]
    assert clips.shape == (TEST_CLIPS, 3, CLIP_FRAMES, 32, 32)
    grey = clips.mean(dim=(1, 3, 4)).numpy() * 255              # (25, 8)
    starts = uniform_clip_starts(32, CLIP_FRAMES, TEST_CLIPS)
    # Frame k of the 16 fps stream shows source frame 2k, level 8k: consecutive clip frames are
    # 1/16 s apart and clip j starts at frame starts[j].
    expected = 8.0 * (starts[:, None] + np.arange(CLIP_FRAMES)[None, :])
    np.testing.assert_allclose(grey, expected, atol=3.0)

    train = TrainClipDataset([record], cache, crop_size=32, clips_per_video=3, seed=1)
    first = train[2]["video"]
    assert first.shape == (3, CLIP_FRAMES, 32, 32) and 0.0 <= float(first.min()) <= float(first.max()) <= 1.0
    step = np.diff(first.mean(dim=(0, 2, 3)).numpy() * 255)
    np.testing.assert_allclose(step, 8.0, atol=3.0)             # 8 consecutive 16 fps frames
    assert (train[2]["video"] == first).all()                   # a pure function of (seed, epoch, index)
    train.set_epoch(1)
    assert not (train[2]["video"] == first).all()


def test_frame_cache_is_keyed_by_path_and_mtime(tmp_path):
    frames = np.full((8, 24, 32, 3), 100, dtype=np.uint8)
    video = write_video_mp4(tmp_path / "v.mp4", frames, fps=16)
    cache = FrameCache(tmp_path / "cache", DecodeSpec(short_side=24))
    first = cache.path_for(video)
    assert cache.ensure(video) == 8 and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert cache.ensure(video) == 8 and first.stat().st_mtime_ns == stamp   # not decoded again
    os.utime(video, ns=(stamp + 10**9, stamp + 10**9))                      # the video changed
    assert cache.path_for(video) != first
    assert FrameCache(tmp_path / "cache", DecodeSpec(short_side=32)).path_for(video) != first
    with pytest.raises(FileNotFoundError, match="run build_frame_cache first"):
        cache.load(video)
