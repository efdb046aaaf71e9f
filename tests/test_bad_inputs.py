"""Bad inputs: each rejected clip gives exactly one failures.jsonl entry with a clear reason,
the run goes on, and every good clip still lands in a shard.

Media are generated with the ffmpeg binary: 128 x 64 test-pattern video and 4-channel noise
audio (ambiX-like), a few tens of KB each; two real synthetic clips complete the set.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.clip_samples import ClipError
from pipeline.config import load_config
from pipeline.ffmpeg_bin import ffmpeg_exe
from pipeline.manifest import Clip, read_manifest, write_manifest
from pipeline.preprocess import run_preprocess
from pipeline.preprocess_config import PreprocessConfig
from pipeline.shards import FAILURES_NAME, INDEX_NAME, read_jsonl
from pipeline.synth.cli import generate_videos
from pipeline.synth.scenes import SceneConfig

REPO = Path(__file__).resolve().parents[1]
SR = 24_000


def noise_audio(channels: int, duration_s: float, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """(n, channels) float32: noise in W, scaled copies in the dipoles (a plane wave)."""
    rng = np.random.default_rng(seed)
    w = 0.1 * rng.standard_normal(int(round(duration_s * sample_rate)))
    gains = [1.0, 0.5, 0.2, 0.8] + [0.1] * max(0, channels - 4)
    return np.stack([g * w for g in gains[:channels]], axis=1).astype(np.float32)


def write_media(path: Path, audio: np.ndarray | None, *, size=(128, 64), duration_s=2.5,
                sample_rate=SR, video=True) -> Path:
    """Video (mpeg4 test pattern) and/or PCM float audio ``(n, channels)`` into an .mkv."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate=16:duration={duration_s}"]
    stdin = None
    if audio is not None:
        stdin = np.ascontiguousarray(audio, dtype="<f4").tobytes()
        cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(audio.shape[1]), "-i", "pipe:"]
    if video:
        cmd += ["-c:v", "mpeg4"]
    if audio is not None:
        cmd += ["-c:a", "pcm_f32le"]
    subprocess.run([*cmd, str(path)], input=stdin, check=True, capture_output=True)
    return path


def clip_record(clip_id: str, video_path: str, **changes) -> Clip:
    fields = dict(clip_id=clip_id, video_path=video_path, audio_path=None, duration_s=2.5, fps=16.0,
                  width=128, height=64, sample_rate=SR, audio_channels=4, ambisonics="ambix",
                  split="train", dataset="bad-inputs")
    fields.update(changes)
    return Clip(**fields)


# clip id -> (stage, error type, words the reason must contain)
EXPECTED_FAILURES = {
    "bad-zero-bytes": ("probe", "DecodeError", ["empty file", "0 bytes"]),
    "bad-truncated-mp4": (None, None, []),   # probe or decode, depending on where the cut falls
    "bad-truncated-mkv": ("audio", "ClipTooShortError", ["expected 2.500 s of audio", "got 1."]),
    "bad-no-audio": ("probe", "DecodeError", ["expected an ambisonic audio stream", "got none"]),
    "bad-stereo": ("audio", "AmbisonicFormatError", ["expected 4-channel", "got 2 channels"]),
    "bad-mono": ("audio", "AmbisonicFormatError", ["expected 4-channel", "got 1 channel"]),
    "bad-9-channels": ("audio", "AmbisonicFormatError", ["got 9 channels", "accept_hoa"]),
    "bad-sample-rate": ("probe", "SampleRateMismatchError", ["24000 Hz", "44100 Hz"]),
    "bad-not-2to1": ("probe", "NotEquirectangularError", ["2:1", "128x96"]),
    "bad-too-short": ("windows", "ClipTooShortError", ["1.0 s window", "0.5 s"]),
    "bad-nan-audio": ("audio", "AmbisonicFormatError", ["NaN"]),
    "bad-not-video": ("probe", "DecodeError", ["expected a readable media file"]),
    "bad-missing-file": ("probe", "MissingMediaError", ["no such file"]),
}


@pytest.fixture(scope="module")
def bad_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    synth = root / "synth"
    generate_videos(synth, n_train=2, n_test=0, seed=0,
                    scene=SceneConfig(width=128, height=64, duration_s=2.5), workers=1)
    good = read_manifest(synth / "manifest.jsonl")
    media = root / "media"
    media.mkdir()
    (media / "zero.mp4").write_bytes(b"")
    data = (synth / good[0].video_path).read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 3])
    mkv = write_media(media / "whole.mkv", noise_audio(4, 2.5)).read_bytes()
    (media / "truncated.mkv").write_bytes(mkv[: int(len(mkv) * 0.6)])
    write_media(media / "no_audio.mkv", None)
    write_media(media / "stereo.mkv", noise_audio(2, 2.5))
    write_media(media / "mono.mkv", noise_audio(1, 2.5))
    write_media(media / "nine.mkv", noise_audio(9, 2.5))
    write_media(media / "rate44k.mkv", noise_audio(4, 2.5, 44_100), sample_rate=44_100)
    write_media(media / "rate48k.mkv", noise_audio(4, 2.5, 48_000), sample_rate=48_000)
    write_media(media / "not2to1.mkv", noise_audio(4, 2.5), size=(128, 96))
    write_media(media / "short.mkv", noise_audio(4, 0.5), duration_s=0.5)
    nan_audio = noise_audio(4, 2.5)
    nan_audio[1000:1010] = np.nan
    write_media(media / "nan.mkv", nan_audio)
    (media / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    synth_rel = {c.clip_id: c for c in good}
    records = [
        *[clip_record(f"good-{c.clip_id}", f"synth/{c.video_path}", gt_path=f"synth/{c.gt_path}")
          for c in synth_rel.values()],
        clip_record("good-48k-resampled", "media/rate48k.mkv", sample_rate=48_000),
        clip_record("bad-zero-bytes", "media/zero.mp4"),
        clip_record("bad-truncated-mp4", "media/truncated.mp4"),
        clip_record("bad-truncated-mkv", "media/truncated.mkv"),
        clip_record("bad-no-audio", "media/no_audio.mkv"),
        clip_record("bad-stereo", "media/stereo.mkv"),
        clip_record("bad-mono", "media/mono.mkv"),
        clip_record("bad-9-channels", "media/nine.mkv"),
        clip_record("bad-sample-rate", "media/rate44k.mkv"),
        clip_record("bad-not-2to1", "media/not2to1.mkv", height=96),
        clip_record("bad-too-short", "media/short.mkv", duration_s=0.5),
        clip_record("bad-nan-audio", "media/nan.mkv"),
        clip_record("bad-not-video", "media/notes.mp4"),
        clip_record("bad-missing-file", "media/does_not_exist.mp4"),
    ]
    write_manifest(root / "manifest.jsonl", records)
    return root


def tiny_config(root: Path, out_dir: Path, *overrides: str) -> PreprocessConfig:
    return load_config(PreprocessConfig, REPO / "configs" / "preprocess.yaml", [
        f"paths.data_root={root}", f"paths.manifest={root / 'manifest.jsonl'}",
        f"paths.out_dir={out_dir}", "decode.width=128", "decode.height=64",
        "viewpoints.crop_size=32", "audio.n_mels=32", "shards.clips_per_shard=4",
        "windows.max_per_clip=1", "detector.enabled=false", "dask.scheduler=serial", *overrides])


def test_each_bad_input_is_one_failure_and_good_clips_land(bad_set, tmp_path):
    out_dir = tmp_path / "out"
    summary = run_preprocess(tiny_config(bad_set, out_dir), progress=False)
    failures = list(read_jsonl(out_dir / FAILURES_NAME))
    by_clip = {}
    for failure in failures:
        assert failure["clip_id"] not in by_clip, f"two failures for {failure['clip_id']}"
        by_clip[failure["clip_id"]] = failure
    assert sorted(by_clip) == sorted(EXPECTED_FAILURES)
    for clip_id, (stage, error, words) in EXPECTED_FAILURES.items():
        failure = by_clip[clip_id]
        assert set(failure) >= {"clip_id", "stage", "error", "reason", "shard", "config_hash"}
        if stage is not None:
            assert (failure["stage"], failure["error"]) == (stage, error), failure
        for word in words:
            assert word in failure["reason"], failure
    truncated = by_clip["bad-truncated-mp4"]          # moov atom lost or data cut
    assert truncated["stage"] in ("probe", "audio", "video") and truncated["reason"]
    landed = {c for r in read_jsonl(out_dir / INDEX_NAME) for c in r["clip_ids"]}
    assert landed == {"good-synth-train-00000", "good-synth-train-00001", "good-48k-resampled"}
    assert summary.clips_ok == 3 and summary.clips_failed == len(EXPECTED_FAILURES)
    # a rerun retries every failed clip (a fixed file would land): they fail again, each is
    # recorded once, and the good clips of the rebuilt shard land again
    again = run_preprocess(tiny_config(bad_set, out_dir), progress=False)
    assert again.clips_failed == len(EXPECTED_FAILURES) and again.clips_ok == summary.clips_ok
    assert sorted(f["clip_id"] for f in read_jsonl(out_dir / FAILURES_NAME)) == sorted(by_clip)
    assert {c for r in read_jsonl(out_dir / INDEX_NAME) for c in r["clip_ids"]} == landed


def test_on_error_raise_stops_at_the_first_bad_clip(bad_set, tmp_path):
    records = [c for c in read_manifest(bad_set / "manifest.jsonl") if c.clip_id == "bad-mono"]
    write_manifest(tmp_path / "one.jsonl", records)
    cfg = tiny_config(bad_set, tmp_path / "out", "on_error=raise",
                      f"paths.manifest={tmp_path / 'one.jsonl'}")
    with pytest.raises(ClipError, match="bad-mono: audio failed: AmbisonicFormatError"):
        run_preprocess(cfg, progress=False)
