"""Manifest records: round trips, validation errors naming file:line and id, stable splits."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from pipeline.errors import ManifestError, MissingMediaError
from pipeline.manifest import (
    Clip,
    Recording,
    iter_manifest,
    read_manifest,
    stable_split,
    write_manifest,
)


def make_clip(clip_id: str = "abc-10", **changes) -> Clip:
    fields = dict(clip_id=clip_id, video_path=f"video/{clip_id}.mp4",
                  audio_path=f"audio/{clip_id}.m4a", duration_s=10.0, fps=16.0, width=512,
                  height=256, sample_rate=24_000, audio_channels=4, ambisonics="ambix",
                  split="train", dataset="yt360")
    fields.update(changes)
    return Clip(**fields)


def make_recording(recording_id: str = "Beach-01", **changes) -> Recording:
    fields = dict(recording_id=recording_id, audio_path=f"{recording_id}.wav", scene_class="Beach",
                  recording_index=1, sample_rate=48_000, channels=25, duration_s=600.0, fold=0,
                  segment_starts_s=(0.0, 30.0))
    fields.update(changes)
    return Recording(**fields)


def write_lines(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------
# round trips


def test_clip_dict_round_trip():
    clip = make_clip(audio_path=None, gt_path="gt/abc-10.json", segment_start_s=2.5)
    assert Clip.from_dict(clip.to_dict()) == clip
    assert clip.audio_source == clip.video_path


def test_recording_round_trip_and_segments():
    recording = make_recording()
    data = json.loads(json.dumps(recording.to_dict()))
    assert data["segment_starts_s"] == [0.0, 30.0]
    assert Recording.from_dict(data) == recording
    segments = recording.segments()
    assert [(s.segment_id, s.start_s, s.duration_s) for s in segments] == [
        ("Beach-01/000", 0.0, 30.0), ("Beach-01/001", 30.0, 30.0)]


def test_manifest_file_round_trip(tmp_path):
    clips = [make_clip(f"id{k}-{10 * k}") for k in range(5)]
    path = write_manifest(tmp_path / "sub" / "clips.jsonl", clips)
    assert read_manifest(path) == clips
    assert list(iter_manifest(path)) == clips
    assert [p.name for p in path.parent.iterdir()] == ["clips.jsonl"]  # no temporary left
    recordings = [make_recording(f"Beach-0{k}", recording_index=k) for k in (1, 2)]
    write_manifest(tmp_path / "rec.jsonl", recordings)
    assert read_manifest(tmp_path / "rec.jsonl", Recording) == recordings


def test_int_is_accepted_for_float_fields():
    clip = Clip.from_dict({**make_clip().to_dict(), "duration_s": 10, "fps": 30})
    assert isinstance(clip.duration_s, float) and clip.fps == 30.0


def test_iter_manifest_is_lazy(tmp_path):
    path = tmp_path / "m.jsonl"
    write_lines(path, [make_clip("a-0").to_dict(), "not json"])
    records = iter_manifest(path)
    assert next(records).clip_id == "a-0"
    with pytest.raises(ManifestError, match=r"m.jsonl:2: expected a JSON object"):
        next(records)


# ---------------------------------------------------------------------------------------------
# validation


def test_unknown_key_names_line_and_clip(tmp_path):
    path = tmp_path / "m.jsonl"
    write_lines(path, [make_clip("a-0").to_dict(), {**make_clip("b-0").to_dict(), "colour": 1}])
    with pytest.raises(ManifestError) as excinfo:
        read_manifest(path)
    message = str(excinfo.value)
    assert f"{path}:2" in message and "'b-0'" in message and "colour" in message


def test_missing_key(tmp_path):
    row = make_clip().to_dict()
    del row["fps"]
    with pytest.raises(ManifestError, match=r"missing key\(s\) \['fps'\]"):
        Clip.from_dict(row)


@pytest.mark.parametrize("field, value, expected", [
    ("width", "512", "width expected int, got str '512'"),
    ("width", 512.0, "width expected int, got float"),
    ("audio_channels", True, "audio_channels expected int, got bool"),
    ("duration_s", None, "duration_s expected float, got NoneType"),
    ("audio_path", 3, "audio_path expected str or null, got int"),
])
def test_wrong_types(field, value, expected):
    with pytest.raises(ManifestError) as excinfo:
        Clip.from_dict({**make_clip().to_dict(), field: value})
    assert expected in str(excinfo.value) and "'abc-10'" in str(excinfo.value)


@pytest.mark.parametrize("changes, expected", [
    ({"split": "dev"}, "split expected one of"),
    ({"ambisonics": "bformat"}, "ambisonics expected one of"),
    ({"audio_channels": 2}, "ambix expected 4 audio channels, got 2"),
    ({"ambisonics": "hoa_ambix", "audio_channels": 4}, "expected (N+1)^2 >= 9"),
    ({"duration_s": 0.0}, "duration_s expected > 0, got 0.0"),
    ({"segment_start_s": -1.0}, "segment_start_s expected >= 0"),
    ({"clip_id": "../../.."}, "clip_id expected a name or relative path without '..'"),
    ({"clip_id": "/tmp/x"}, "clip_id expected a name or relative path without '..'"),
])
def test_wrong_values(changes, expected):
    with pytest.raises(ManifestError) as excinfo:
        make_clip(**changes)
    assert expected in str(excinfo.value)


@pytest.mark.parametrize("bad_path", ["../outside.mp4", "video/../../x.mp4", "/abs/x.mp4",
                                      "C:/x.mp4", "video\\x.mp4", ""])
def test_paths_must_stay_in_data_root(tmp_path, bad_path):
    clip = make_clip(video_path=bad_path)
    with pytest.raises(ManifestError) as excinfo:
        clip.validate()
    assert "'abc-10'" in str(excinfo.value) and "video_path" in str(excinfo.value)
    with pytest.raises(ManifestError):
        write_manifest(tmp_path / "m.jsonl", [clip])
    assert not (tmp_path / "m.jsonl").exists()


def test_bad_path_in_file_names_line(tmp_path):
    path = tmp_path / "m.jsonl"
    write_lines(path, ["", make_clip("a-0", gt_path="../gt.json").to_dict()])
    with pytest.raises(ManifestError, match=r"m.jsonl:2: clip 'a-0': gt_path"):
        read_manifest(path)


def test_existence_check(tmp_path):
    clip = make_clip(audio_path=None)
    with pytest.raises(MissingMediaError, match="video_path expected an existing file"):
        clip.validate(tmp_path, check_exists=True)
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "abc-10.mp4").write_bytes(b"x")
    clip.validate(tmp_path, check_exists=True)
    assert clip.resolve(tmp_path, "video_path") == tmp_path / "video" / "abc-10.mp4"


def test_duplicate_ids(tmp_path):
    with pytest.raises(ManifestError, match="duplicate id 'a-0'"):
        write_manifest(tmp_path / "w.jsonl", [make_clip("a-0"), make_clip("a-0")])
    path = tmp_path / "r.jsonl"
    write_lines(path, [make_clip("a-0").to_dict(), make_clip("b-0").to_dict(),
                       make_clip("a-0").to_dict()])
    with pytest.raises(ManifestError, match=r"r.jsonl:3: duplicate id 'a-0' \(first on line 1\)"):
        read_manifest(path)


def test_wrong_record_type_gets_a_hint(tmp_path):
    path = write_manifest(tmp_path / "rec.jsonl", [make_recording()])
    with pytest.raises(ManifestError, match="pass record_type=Recording"):
        read_manifest(path)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [make_clip("a-0")])
    with pytest.raises(ManifestError):
        write_manifest(path, [make_clip("b-0"), "not a record"])
    assert read_manifest(path) == [make_clip("a-0")]


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_clip().split = "test"


# ---------------------------------------------------------------------------------------------
# stable splits


def test_stable_split_is_deterministic_and_proportional():
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    ids = [f"clip{k:05d}" for k in range(5000)]
    splits = [stable_split(i, fractions) for i in ids]
    assert splits == [stable_split(i, dict(fractions)) for i in ids]
    counts = Counter(splits)
    assert abs(counts["train"] / 5000 - 0.8) < 0.03 and abs(counts["test"] / 5000 - 0.1) < 0.02
    assert stable_split("clip00000", fractions) == splits[0]  # independent of the other ids
    assert {stable_split(i, {"train": 0.0, "test": 1.0}) for i in ids[:50]} == {"test"}


@pytest.mark.parametrize("fractions", [{}, {"train": 0.5}, {"train": 0.9, "dev": 0.1},
                                       {"train": 1.2, "test": -0.2}])
def test_stable_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError):
        stable_split("x", fractions)


@pytest.mark.parametrize("text, name", [
    ("synth-train-00001", "synth-train-00001"), ("walk/a b", "walk_a_b"),
    ("../../..", ".._.._.."), ("..", "_"), ("a/../../b", "a_.._.._b"), ("x" * 300, "x" * 120)])
def test_file_names_made_from_ids_stay_in_their_folder(text, name):
    from pipeline.manifest import file_name_of

    assert file_name_of(text) == name
    assert "/" not in file_name_of(text) and file_name_of(text) not in (".", "..")
