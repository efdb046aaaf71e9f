"""Nothing lost, nothing stuck: each fault a new user met, reproduced, with the behaviour that
replaced it. Every command refusal is checked for its exit code, its one ``error:`` line and
that no file outside the expected outputs changed (the folder is hashed before and after)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.config import ConfigError, error_line, load_config, run_main
from pipeline.errors import DetectorWeightsError, ManifestError
from pipeline.manifest import read_manifest, write_manifest
from pipeline.preprocess import main as preprocess_main
from pipeline.preprocess import run_preprocess
from pipeline.shards import (FAILURES_NAME, INDEX_NAME, ShardFormatError, ShardIndex,
                             append_jsonl, read_jsonl, verify_shards)
from pipeline.synth.shard_factory import make_shards
from tests.test_preprocess import StubDetectorFactory, tiny_config
from trainer import train

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
AVSA = str(ROOT / "configs" / "experiments" / "avsa.yaml")
TINY = ["data.avc_batch_size=0", "model.preset=tiny", "model.feature_dim=16", "model.embed_dim=8",
        "data.batch_size=4",
        "data.num_workers=0", "curriculum.epochs=1", "curriculum.switch_epoch=1",
        "run.max_steps_per_epoch=1", "run.val_max_steps=0"]

torch.set_num_threads(1)


def tree_hash(folder: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under ``folder`` (empty when it does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(captured: str) -> str:
    """The single ``error:`` line of a command's stderr, which shows no traceback. (Logging
    errors that pytest's closed capture streams cause in handlers left by earlier tests print
    their own traceback after "--- Logging error ---"; they are not the command's.)"""
    lines = captured.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback")
                  and (i == 0 or lines[i - 1] != "--- Logging error ---")]
    assert len(errors) == 1 and not tracebacks, captured
    return errors[0]


# ----------------------------------------------------------------------------- training (1, 2, 8)

@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault_shards")
    make_shards(root, n_clips=8, windows_per_clip=1, samples_per_shard=8, seed=0)
    return root


def train_cli(shards, out_dir, *overrides):
    return train.cli(["--config", AVSA, *TINY, f"data.shards_dir={shards}",
                      f"run.out_dir={out_dir}", "run.name=mine", *overrides])


def test_a_run_folder_with_run_files_is_refused_unless_overwrite(tmp_path):
    """The shared check of the trainer and the Owens & Efros baseline."""
    train.refuse_to_replace_run(tmp_path, overwrite=False)          # empty folder: fine
    (tmp_path / "metrics.csv").write_text("epoch\n")
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics.csv\); replace it"):
        train.refuse_to_replace_run(tmp_path, overwrite=False)
    train.refuse_to_replace_run(tmp_path, overwrite=True)


def test_training_never_replaces_a_run_silently(shards, tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO):
        assert train_cli(shards, tmp_path) == 0
    assert "step 1 took" in caplog.text and "the run (1 steps) in" in caplog.text  # progress
    run_dir = tmp_path / "mine"
    before = tree_hash(run_dir)
    capsys.readouterr()
    assert train_cli(shards, tmp_path) == 2                          # same name, no resume
    line = one_error_line(capsys.readouterr().err)
    assert "already holds a run" in line and "run.overwrite=true" in line
    assert tree_hash(run_dir) == before
    # A refused resume (a changed key) leaves config.yaml as it was, agreeing with ckpt.pt.
    assert train_cli(shards, tmp_path, "run.init_from=resume", "optim.lr=0.5") == 2
    assert "cannot resume with a different config" in one_error_line(capsys.readouterr().err)
    assert tree_hash(run_dir) == before
    assert train_cli(shards, tmp_path, "run.overwrite=true") == 0     # on purpose: replaced


def test_a_second_trainer_on_a_run_folder_is_refused(shards, tmp_path, capsys):
    """Two trainings of one run name at once (both with run.overwrite=true) would write one
    checkpoint: the second is refused in one line naming the holder; the folder is untouched."""
    import json
    import socket

    from pipeline.locks import LOCK_NAME

    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / LOCK_NAME).write_text(json.dumps({
            "pid": holder.pid, "host": socket.gethostname(), "what": "training",
            "command": "python -m trainer.train"}))
        assert train_cli(shards, tmp_path, "run.overwrite=true") == 2
        line = one_error_line(capsys.readouterr().err)
        assert "training is writing it" in line and f"pid {holder.pid}" in line
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
    assert train_cli(shards, tmp_path, "run.overwrite=true") == 0     # holder gone: stale lock
    assert not (run_dir / LOCK_NAME).exists()


def test_an_overwritten_run_keeps_no_evaluation_of_the_old_model(shards, tmp_path):
    """run.overwrite=true retrains; the old model's evaluations (JSONs, caches, maps) must not
    stay beside the new checkpoint, where make results would report them as the new one's."""
    assert train_cli(shards, tmp_path) == 0
    run_dir = tmp_path / "mine"
    for stale in ("eval_binary.json", "eval_cache/features.npz", "localize/clip/map.png"):
        (run_dir / stale).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / stale).write_text("the old model's")
    assert train_cli(shards, tmp_path, "run.overwrite=true") == 0
    left = {p.name for p in run_dir.iterdir()}
    assert set(train.RUN_FILES) <= left <= {*train.RUN_FILES, "curves.png"}, left


def test_evaluations_are_bound_to_the_training_shards(tmp_path, capsys):
    """The checkpoint records the training shards' feature settings; an evaluation on shards
    made otherwise is refused in one line, and one on other shards made alike writes beside
    the run's own results, never over them."""
    from evals.audio.binary import main as binary_main
    from evals.frozen import evaluation_shards, load_frozen, other_shards_dir
    from trainer.checkpoint import load_checkpoint

    shards = tmp_path / "shards"
    make_shards(shards, n_clips=8, windows_per_clip=1, samples_per_shard=8, seed=0)
    assert train_cli(shards, tmp_path) == 0
    ckpt = tmp_path / "mine" / "ckpt.pt"
    recorded = load_checkpoint(ckpt)["shards"]
    assert recorded["audio"]["n_mels"] == 32 and recorded["bank"] == {"random": 4, "yolo": 4}
    assert recorded["folder"] == str(shards.resolve())

    other_mels = tmp_path / "other_mels"
    make_shards(other_mels, n_clips=4, windows_per_clip=1, n_mels=16, split="test")
    capsys.readouterr()
    assert binary_main([f"ckpt={ckpt}", f"shards_dir={other_mels}"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "other audio feature settings" in line and "n_mels 32 -> 16" in line

    frozen = load_frozen(ckpt, "cpu")
    alike = tmp_path / "alike"
    make_shards(alike, n_clips=4, windows_per_clip=1, seed=5, split="test")
    assert evaluation_shards(frozen, alike) == alike.resolve()
    assert other_shards_dir(ckpt.parent, frozen, alike) == ckpt.parent / "on_alike"
    assert other_shards_dir(ckpt.parent, frozen, shards) == ckpt.parent


def test_resuming_on_rebuilt_shards_is_refused(tmp_path):
    shards = tmp_path / "shards"
    make_shards(shards, n_clips=8, windows_per_clip=1, samples_per_shard=8, seed=0)
    assert train_cli(shards, tmp_path) == 0
    shutil.rmtree(shards)
    make_shards(shards, n_clips=8, windows_per_clip=1, samples_per_shard=8, seed=0, n_mels=16)
    with pytest.raises(ConfigError, match="rebuilt with other settings"):
        train.main(["--config", AVSA, *TINY, f"data.shards_dir={shards}",
                    f"run.out_dir={tmp_path}", "run.name=mine", "run.init_from=resume"])


def test_the_paper_preset_on_a_cpu_says_so_and_projects_the_run(shards, tmp_path, caplog):
    argv = ["--config", AVSA, f"data.shards_dir={shards}", f"run.out_dir={tmp_path}",
            "data.batch_size=2", "data.avc_batch_size=4", "data.num_workers=0",
            "run.max_steps_per_epoch=1",
            "run.val_max_steps=0", "curriculum.epochs=1", "curriculum.switch_epoch=1"]
    with caplog.at_level(logging.INFO):
        assert train.cli(argv) == 0                      # R(2+1)D-18 + the authors' audio CNN
    assert "the paper preset (R(2+1)D-18" in caplog.text and "model.preset=tiny" in caplog.text
    assert "step 1 took" in caplog.text and "the run (1 steps) in" in caplog.text


def test_a_failed_start_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "no_shards"
    empty.mkdir()
    assert train_cli(empty, tmp_path / "runs") == 2
    assert "no shards (shards.jsonl missing)" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    assert train_cli(tmp_path / "missing", tmp_path / "runs", "run.init_from=resume") == 2
    assert "no checkpoint to resume from" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_config_mistakes_are_one_line(shards, tmp_path, capsys):
    assert train_cli(shards, tmp_path, "data.batch_size=[1,") == 2           # YAML syntax
    assert "not valid YAML" in one_error_line(capsys.readouterr().err)
    assert train_cli(shards, tmp_path, "data.bach_size=4") == 2              # unknown key
    assert "unknown config key" in one_error_line(capsys.readouterr().err)
    broken = tmp_path / "broken.yaml"
    broken.write_text("base: avsa.yaml\ndata: {batch_size: 4\n")
    assert train.cli(["--config", str(broken)]) == 2
    assert "not valid YAML" in one_error_line(capsys.readouterr().err)
    with pytest.raises(ConfigError):                                          # --debug: raised
        train.cli(["--config", AVSA, "data.bach_size=4", "--debug"])
    assert not any(tmp_path.glob("runs*"))


def test_a_worker_traceback_becomes_its_last_line():
    exc = ShardFormatError("Caught ShardFormatError in DataLoader worker process 0.\nOriginal "
                           "Traceback (most recent call last):\n  File x\npipeline.shards."
                           "ShardFormatError: /d/s.h5: unreadable shard (truncated)")
    assert error_line(exc) == "error: /d/s.h5: unreadable shard (truncated)"


# ----------------------------------------------------------------------------- shards (7)

def test_a_truncated_shard_is_named_with_the_command_that_rebuilds_it(tmp_path, shards):
    folder = tmp_path / "copy"
    shutil.copytree(shards, folder)
    victim = sorted(folder.glob("*.h5"))[0]
    victim.write_bytes(victim.read_bytes()[:2000])
    expected = f"{victim.name}: expected .* bytes.*make preprocess"
    with pytest.raises(ShardFormatError, match=expected):
        ShardIndex.load(folder)
    assert len(verify_shards(folder)) == 1
    with pytest.raises(ShardFormatError, match="truncated or replaced"):
        train.main(["--config", AVSA, *TINY, f"data.shards_dir={folder}",
                    f"run.out_dir={tmp_path}"])


def test_a_same_size_corruption_is_found_by_verify(tmp_path, shards):
    folder = tmp_path / "copy"
    shutil.copytree(shards, folder)
    victim = sorted(folder.glob("*.h5"))[0]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    ShardIndex.load(folder)                                    # same size: the cheap check passes
    (problem,) = verify_shards(folder)
    assert victim.name in problem and "sha256 differs" in problem


# ----------------------------------------------------------------------------- corruption (1)

def _coded_shards(root: Path, split: str = "train", n_audio_samples: int = 240) -> Path:
    """Shards coded as preprocessing codes them (JPEG crops, uint8 features, lzf)."""
    make_shards(root, n_clips=8, windows_per_clip=1, samples_per_shard=8, seed=0, split=split,
                n_audio_samples=n_audio_samples, compression="lzf", crop_codec="jpeg",
                feature_codec="uint8")
    return root


def _flip(path: Path, offset: int, n_bytes: int = 16) -> None:
    """Invert ``n_bytes`` bytes of ``path`` from ``offset``: the file keeps its size."""
    data = bytearray(path.read_bytes())
    for index in range(offset, offset + n_bytes):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt(path: Path, field: str) -> None:
    """Flip bytes inside every sample's stored ``field`` in the shard file: the first
    viewpoint's chunk of ``audio`` (FOA) or ``features`` (uint8 log-mel), or each viewpoint's
    JPEG strip of ``crops`` (variable-length bytes outside the chunks)."""
    import h5py

    offsets = []
    with h5py.File(path, "r") as h5:
        if field == "crops":
            files = h5["views/random/crops"][()]                   # (N, K) JPEG strips
            raw = path.read_bytes()
            offsets = [raw.index(files[row, view].tobytes()) + 200
                       for row in range(files.shape[0]) for view in range(files.shape[1])]
        else:
            name = "foa_acn_sn3d" if field == "audio" else "views/random/logmel_foa"
            dataset = h5[name]
            for row in range(dataset.shape[0]):
                coord = (row, *([0] * (dataset.ndim - 1)))
                info = dataset.id.get_chunk_info_by_coord(coord)
                offsets.append(info.byte_offset + info.size // 2)
    for offset in offsets:
        _flip(path, offset)


@pytest.mark.parametrize("field", ["features", "crops"])
def test_flipped_bytes_stop_training_with_the_shard_named(tmp_path, field):
    """Same-size flips in stored features or JPEG crops (not caught by the index's size check)
    fail their checksum on read: training stops naming the shard and the rebuild commands."""
    from pipeline.shards import ShardCorruptError

    folder = _coded_shards(tmp_path / "shards")
    victim = sorted(folder.glob("*.h5"))[0]
    _corrupt(victim, field)
    ShardIndex.load(folder)                                    # same size: the cheap check passes
    with pytest.raises(ShardCorruptError, match=f"{victim.name}.*make verify.*make preprocess"):
        train.main(["--config", AVSA, *TINY, f"data.shards_dir={folder}",
                    f"run.out_dir={tmp_path / 'runs'}", "data.views_per_step=4"])


@pytest.mark.parametrize("field", ["audio", "features", "crops"])
def test_flipped_bytes_stop_an_evaluator_with_the_shard_named(tmp_path, field):
    """The AVSA-bin evaluator reads FOA audio, features and crops of every test sample."""
    from evals.audio.binary import BinaryEvalConfig, extract_features
    from evals.frozen import load_frozen
    from pipeline.shards import ShardCorruptError
    from tests.test_eval_binary import make_tiny_run

    ckpt, shards = make_tiny_run(tmp_path)
    folder = tmp_path / "coded"
    _coded_shards(folder, split="test", n_audio_samples=24000)
    shutil.copy(shards / "norm_stats.json", folder / "norm_stats.json")
    _corrupt(sorted(folder.glob("test-*.h5"))[0], field)
    frozen = load_frozen(ckpt, "cpu")
    with pytest.raises(ShardCorruptError, match="test-00000.h5.*make verify"):
        extract_features(frozen, folder, "test", BinaryEvalConfig(), 0)


def test_verify_flags_and_a_plain_rerun_rebuilds(tmp_path, clips_root):
    """make verify records the bad shard; the next plain preprocessing run rebuilds it (and
    only it), after which verify passes and the record is gone."""
    from pipeline.shards import VERIFY_FAILURES_NAME

    cfg = tiny_config(clips_root, tmp_path / "out")
    run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    out = Path(cfg.paths.out_dir)
    victim = sorted(out.glob("*.h5"))[0]
    _corrupt(victim, "features")
    (problem,) = verify_shards(out)
    assert victim.name in problem and (out / VERIFY_FAILURES_NAME).is_file()
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert summary.shards_written == 1
    assert verify_shards(out) == [] and not (out / VERIFY_FAILURES_NAME).exists()


def test_shards_without_checksums_warn_once(tmp_path, caplog):
    import h5py

    from pipeline.shards import open_shard

    folder = _coded_shards(tmp_path / "old")
    for path in folder.glob("*.h5"):
        with h5py.File(path, "a") as h5:
            del h5.attrs["checksums"]                  # as written before checksums existed
    with caplog.at_level(logging.WARNING):
        for path in list(folder.glob("*.h5")) * 2:
            open_shard(path).close()
    assert caplog.text.count("without checksums") == 1


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / INDEX_NAME
    append_jsonl(path, [{"shard": "a.h5"}, {"shard": "b.h5"}])
    with path.open("a") as handle:
        handle.write('{"shard": "c.h')                           # killed mid-line
    with caplog.at_level(logging.WARNING):
        assert [r["shard"] for r in read_jsonl(path)] == ["a.h5", "b.h5"]
    assert str(path) in caplog.text and "torn last line" in caplog.text
    append_jsonl(path, [{"shard": "d.h5"}])                      # the torn tail is cut first
    assert [r["shard"] for r in read_jsonl(path)] == ["a.h5", "b.h5", "d.h5"]
    path.write_text('{"shard": "a.h5"}\nnot json\n{"shard": "b.h5"}\n')
    with pytest.raises(ShardFormatError, match=f"{INDEX_NAME}:2"):
        list(read_jsonl(path))                                   # not the last line: an error


# ----------------------------------------------------------------------------- preprocessing (3, 4)

@pytest.fixture(scope="module")
def clips_root(tmp_path_factory):
    from pipeline.synth.cli import generate_videos
    from pipeline.synth.scenes import SceneConfig

    root = tmp_path_factory.mktemp("fault_clips")
    generate_videos(root, n_train=3, n_test=1, seed=3,
                    scene=SceneConfig(width=128, height=64, duration_s=2.5), workers=1)
    return root


def test_a_failed_preprocessing_start_leaves_the_folder_usable(clips_root, tmp_path):
    out_dir = tmp_path / "shards"
    cfg = tiny_config(clips_root, out_dir, "detector.enabled=true",
                      f"detector.weights={tmp_path / 'no_such_weights.pt'}")
    with pytest.raises(DetectorWeightsError, match="make detector"):
        run_preprocess(cfg, progress=False)
    assert not out_dir.exists()                                 # nothing written before checks
    # A config left beside no shard (an older failed start) is no claim on the folder either.
    out_dir.mkdir()
    (out_dir / "preprocess_config.yaml").write_text("seed: 123\n")
    summary = run_preprocess(tiny_config(clips_root, out_dir), progress=False,
                             detector_factory=StubDetectorFactory())
    assert summary.clips_ok == 4 and summary.clips_failed == 0


def test_two_preprocessing_runs_into_one_folder_at_once(clips_root, tmp_path):
    """A second `make preprocess` into a folder another one is writing is refused (one line
    naming the holder); the first finishes and leaves a consistent folder: every shard listed
    once and matching its checksum."""
    import time

    from pipeline.locks import LOCK_NAME, FolderLockedError, read_lock

    out = tmp_path / "shards"
    args = ["--config", str(ROOT / "configs" / "preprocess.yaml"), "--no-progress",
            f"paths.data_root={clips_root}", f"paths.manifest={clips_root / 'manifest.jsonl'}",
            f"paths.out_dir={out}", "decode.width=128", "decode.height=64",
            "viewpoints.crop_size=32", "viewpoints.bank_size=4", "audio.n_mels=32",
            "shards.clips_per_shard=1", "detector.enabled=false", "dask.scheduler=serial"]
    first = subprocess.Popen([sys.executable, "-m", "pipeline.preprocess", *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while read_lock(out) is None and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = read_lock(out)
        assert holder and holder["pid"] == first.pid, "the first run never took the lock"
        with pytest.raises(FolderLockedError, match=f"preprocessing is writing it .pid {first.pid}"):
            run_preprocess(tiny_config(clips_root, out), progress=False,
                           detector_factory=StubDetectorFactory())
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    names = [record["shard"] for record in read_jsonl(out / INDEX_NAME)]
    assert len(names) == len(set(names)) == len(read_manifest(clips_root / "manifest.jsonl"))
    assert verify_shards(out) == [] and not (out / LOCK_NAME).exists()


def test_a_link_out_of_the_data_root_is_refused_and_recorded(clips_root, tmp_path):
    """A clip whose file is a symbolic link leading outside the data root is not read: it
    lands in failures.jsonl with the reason, and every other clip lands."""
    root = tmp_path / "data"
    shutil.copytree(clips_root, root)
    clips = read_manifest(root / "manifest.jsonl")
    linked = root / clips[0].video_path
    outside = tmp_path / "elsewhere.mp4"
    shutil.move(linked, outside)
    linked.symlink_to(outside)
    out_dir = tmp_path / "shards"
    cfg = tiny_config(root, out_dir, f"paths.manifest={root / 'manifest.jsonl'}")
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert summary.clips_failed == 1 and summary.clips_ok == len(clips) - 1
    (failure,) = read_jsonl(out_dir / FAILURES_NAME)
    assert failure["clip_id"] == clips[0].clip_id and "outside the data root" in failure["reason"]


def test_a_clip_whose_energies_contradict_its_channel_order_is_rejected(clips_root, tmp_path):
    """A file whose W sits in channel 3 (W and X swapped, read as ambiX) lands in failures.jsonl
    by default with the likely W channel; on_layout_contradiction=accept keeps it."""
    from pipeline.decode import decode_audio

    root = tmp_path / "data"
    shutil.copytree(clips_root, root)
    clips = read_manifest(root / "manifest.jsonl")
    foa = decode_audio(root / clips[0].video_path, 24000)             # (4, n) ambiX W, Y, Z, X
    sf.write(root / "swapped.wav", foa[[3, 1, 2, 0]].T, 24000, subtype="FLOAT")
    clips[0] = dataclasses.replace(clips[0], audio_path="swapped.wav")
    write_manifest(root / "manifest.jsonl", clips)
    cfg = tiny_config(root, tmp_path / "shards", f"paths.manifest={root / 'manifest.jsonl'}")
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert summary.clips_failed == 1 and summary.clips_ok == len(clips) - 1
    (failure,) = read_jsonl(tmp_path / "shards" / FAILURES_NAME)
    assert failure["clip_id"] == clips[0].clip_id
    assert "W is most likely the file's channel 3" in failure["reason"], failure["reason"]
    accepted = tiny_config(root, tmp_path / "accepted", f"paths.manifest={root / 'manifest.jsonl'}",
                           "on_layout_contradiction=accept")
    summary = run_preprocess(accepted, progress=False, detector_factory=StubDetectorFactory())
    assert summary.clips_failed == 0


def test_a_raw_element_order_file_is_refused_then_fixed_with_the_recommended_order(
        tmp_path, capsys):
    """An encoder that writes W, Y, Z, X into AAC's elements in input order gives files that
    ffmpeg decodes as Y, Z, W, X (docs/channel_order.md). Such clips are refused by default
    (W most likely in the file's channel 2); accepted, `make channel-order` recommends YZWX
    (7 clips x 3 windows: with 8 windows a Z/X swap scored higher); imported with it, they
    preprocess and the tool finds ambiX."""
    from pipeline.channel_order import main as channel_order_main
    from pipeline.decode import decode_audio
    from pipeline.synth.cli import generate_videos
    from pipeline.synth.scenes import SceneConfig

    root = tmp_path / "data"
    generate_videos(root, n_train=6, n_test=1, seed=3,
                    scene=SceneConfig(width=128, height=64, duration_s=4.0), workers=1)
    clips = read_manifest(root / "manifest.jsonl")
    for index, clip in enumerate(clips):
        foa = decode_audio(root / clip.video_path, 24000)             # ambiX W, Y, Z, X
        sf.write(root / f"raw{index}.wav", foa[[1, 2, 0, 3]].T, 24000, subtype="FLOAT")
        clips[index] = dataclasses.replace(clip, audio_path=f"raw{index}.wav")
    write_manifest(root / "manifest.jsonl", clips)
    manifest = (f"paths.manifest={root / 'manifest.jsonl'}", "windows.max_per_clip=3")

    refused = run_preprocess(tiny_config(root, tmp_path / "refused", *manifest), progress=False,
                             detector_factory=StubDetectorFactory())
    failures = list(read_jsonl(tmp_path / "refused" / FAILURES_NAME))
    # Read as ambiX, W's slot holds the file's Y: a clip whose sound comes mostly from the side
    # has Y nearly as loud as W and passes the energy check (docs/channel_order.md); here 1 of 7.
    assert refused.clips_failed == len(clips) - 1 and refused.clips_ok == 1
    assert all("W is most likely the file's channel 2" in f["reason"] for f in failures)

    run_preprocess(tiny_config(root, tmp_path / "accepted", *manifest,
                               "on_layout_contradiction=accept"),
                   progress=False, detector_factory=StubDetectorFactory())
    capsys.readouterr()
    assert channel_order_main(["--shards", str(tmp_path / "accepted"), "--directions", "gt"]) == 0
    assert "re-import with --channel-order YZWX" in capsys.readouterr().out

    write_manifest(root / "manifest.jsonl",
                   [dataclasses.replace(c, channel_order="YZWX") for c in clips])
    fixed = run_preprocess(tiny_config(root, tmp_path / "fixed", *manifest), progress=False,
                           detector_factory=StubDetectorFactory())
    assert fixed.clips_failed == 0 and fixed.clips_ok == len(clips)
    assert channel_order_main(["--shards", str(tmp_path / "fixed"), "--directions", "gt"]) == 0
    out = capsys.readouterr().out
    assert "decoded with YZWX" in out and "best: WYZX" in out and "keep --channel-order YZWX" in out


def test_failed_clips_are_retried_and_a_new_data_root_rebuilds(clips_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(clips_root, root)
    clips = read_manifest(root / "manifest.jsonl")
    broken = root / clips[0].video_path
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"")                                     # zero bytes: a probe failure
    out_dir = tmp_path / "shards"
    cfg = tiny_config(root, out_dir, f"paths.manifest={root / 'manifest.jsonl'}")
    first = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert first.clips_failed == 1
    assert [f["clip_id"] for f in read_jsonl(out_dir / FAILURES_NAME)] == [clips[0].clip_id]
    broken.write_bytes(good_bytes)                              # the user fixes the file
    second = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert second.clips_failed == 0 and list(read_jsonl(out_dir / FAILURES_NAME)) == []
    stored = {c for r in read_jsonl(out_dir / INDEX_NAME) for c in r["clip_ids"]}
    assert clips[0].clip_id in stored and second.shards_skipped >= 1   # other shards kept
    # Another data root (same content hash: paths are not hashed) rebuilds every shard.
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    third = run_preprocess(tiny_config(moved, out_dir), progress=False,
                           detector_factory=StubDetectorFactory())
    assert third.shards_skipped == 0 and third.clips_ok == 4
    assert {r["source_root"] for r in read_jsonl(out_dir / INDEX_NAME)} == {str(moved.resolve())}


def test_max_clips_takes_the_first_clips_of_each_split(clips_root, tmp_path):
    out_dir = tmp_path / "trial"
    summary = run_preprocess(tiny_config(clips_root, out_dir, "paths.max_clips=1"),
                             progress=False, detector_factory=StubDetectorFactory())
    splits = sorted({s for r in read_jsonl(out_dir / INDEX_NAME) for s in r["split"]})
    assert summary.clips_total == 2 and splits == ["test", "train"]


def test_preprocessing_commands_fail_in_one_line(clips_root, tmp_path, capsys, monkeypatch):
    import pipeline.preprocess as preprocess

    base = [f"paths.data_root={clips_root}", f"paths.out_dir={tmp_path / 'out'}",
            "detector.enabled=false"]
    empty = tmp_path / "empty.jsonl"
    write_manifest(empty, [])
    assert preprocess_main(["--no-progress", *base, f"paths.manifest={empty}",
                            "dask.scheduler=serial"]) == 2
    assert "empty manifest" in one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(preprocess, "CONNECT_TIMEOUT_S", 1)
    manifest = clips_root / "manifest.jsonl"
    assert preprocess_main(["--no-progress", *base, f"paths.manifest={manifest}",
                            "dask.scheduler=tcp://127.0.0.1:9"]) == 2
    assert "no scheduler answered" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ManifestError):
        preprocess_main(["--debug", *base, f"paths.manifest={empty}"])


# ----------------------------------------------------------------------------- embed (5)

needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata absent")


@needs_realdata
@pytest.mark.slow
def test_embed_takes_each_files_convention_and_refuses_contradictions(tmp_path, capsys):
    from evals.audio.embed import CONVENTION_SIDECAR
    from evals.audio.embed import main as embed_main
    from tests.test_eval_binary import make_tiny_run

    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa")
    folder = tmp_path / "recordings"
    folder.mkdir()
    x, rate = sf.read(REALDATA / "jsambisonics_BF_rec2.ogg", dtype="float32")
    sf.write(folder / "rec2.wav", x[: 3 * rate], rate)           # FuMa W, X, Y, Z: 3 s
    sf.write(folder / "short.wav", np.zeros((2400, 4), np.float32), 24000)
    out = tmp_path / "emb.h5"
    common = [f"in_dir={folder}", f"ckpt={ckpt}", "device=cpu"]
    # Read as ambiX (the default), rec2's channels contradict the layout: refused, not embedded;
    # the short file is skipped too; no file could be embedded, so no .h5 is left behind.
    assert embed_main([*common, f"out={out}"]) == 2
    assert "none of 2 files could be embedded" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
    problems = [json.loads(line) for line in out.with_name("emb.problems.jsonl").read_text()
                .splitlines()]
    assert {p["path"]: p["error"] for p in problems} == {"rec2.wav": "AmbisonicFormatError",
                                                          "short.wav": "ValueError"}
    # Declared FuMa in a sidecar: embedded; the short file is still listed, the run goes on.
    (folder / CONVENTION_SIDECAR).write_text(json.dumps({"files": {"rec2.wav": "fuma"}}))
    assert embed_main([*common, f"out={out}"]) == 0
    import h5py

    with h5py.File(out, "r") as h5:
        (group,) = [h5["files"][g] for g in h5["files"]]
        assert (group.attrs["path"], group.attrs["convention"]) == ("rec2.wav", "fuma")
        assert group["embedding"].shape == (3, 32)                  # 3 windows, tiny D = 32
    assert [p["path"] for p in map(json.loads, out.with_name("emb.problems.jsonl")
                                   .read_text().splitlines())] == ["short.wav"]


# ----------------------------------------------------------------------------- detector (6)

class NotAModel:
    """Any class outside ultralytics' allow-list: unpickling it could run its code."""


def test_unsafe_detector_weights_are_refused(tmp_path):
    from pipeline.detect import load_detector

    weights = tmp_path / "suspicious.pt"
    torch.save({"model": NotAModel(), "train_args": {}}, weights)
    with pytest.raises(DetectorWeightsError, match="refused by the safe loader"):
        load_detector(weights)


# ----------------------------------------------------------------------------- evaluators (8, 9)

def test_evaluators_report_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    from evals.audio.binary import main as binary_main
    from evals.av.localize import main as localize_main

    for entry in (binary_main, localize_main):
        assert entry([f"ckpt={tmp_path / 'nope.pt'}"]) == 2
        assert "no such checkpoint" in one_error_line(capsys.readouterr().err)
    assert not any(p.name.endswith(".config.yaml") for p in tmp_path.rglob("*"))


def test_scene_folder_with_short_files_says_what_to_change(tmp_path, capsys):
    from evals.audio.scenes import main as scenes_main

    folder = tmp_path / "EigenScape"
    folder.mkdir()
    for name in ("Beach.1.wav", "Park.1.wav"):
        sf.write(folder / name, np.zeros((2400, 4), np.float32), 24000)
    assert scenes_main([f"data_dir={folder}", f"out={tmp_path / 'out'}"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "protocol.segment_s" in line and "synthetic" not in line.lower()


def test_run_main_passes_unknown_errors_through():
    def buggy(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_main(buggy, [])


def test_a_library_value_error_keeps_its_traceback(capsys):
    """A plain ValueError raised inside numpy is a bug in how we called it, not a message to
    the user: it is not flattened into one error line. Ours still is."""
    def library_bug(argv):
        np.zeros(3).reshape(2, 2)                     # ValueError from numpy

    def our_message(argv):
        from pipeline.shards import encode_sample_crops

        encode_sample_crops(np.zeros((1, 1, 2, 2, 3), np.uint8), "bmp")   # ours: a message

    with pytest.raises(ValueError, match="reshape"):
        run_main(library_bug, [])
    assert run_main(our_message, []) == 2
    assert "crop_codec must be one of" in one_error_line(capsys.readouterr().err)


def test_yaml_errors_in_config_files_name_the_file(tmp_path):
    from trainer.config import TrainConfig

    path = tmp_path / "x.yaml"
    path.write_text("data:\n  batch_size: [1,\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        load_config(TrainConfig, path)


def test_a_changed_manifest_record_rebuilds_only_its_shard(clips_root, tmp_path):
    """A corrected record (here the channel order of one clip) rebuilds the shard holding it;
    the other shards are kept."""
    from pipeline.manifest import write_manifest

    root = tmp_path / "data"
    shutil.copytree(clips_root, root)
    manifest = root / "manifest.jsonl"
    out_dir = tmp_path / "shards"
    cfg = tiny_config(root, out_dir, f"paths.manifest={manifest}")
    first = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert first.clips_failed == 0
    clips = read_manifest(manifest)
    changed = dataclasses.replace(clips[0], channel_order="WXYZ")
    write_manifest(manifest, [changed, *clips[1:]])
    second = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    holding = [r["shard"] for r in read_jsonl(out_dir / INDEX_NAME)
               if changed.clip_id in r["clip_ids"]]
    assert second.shards_written == 1 and second.shards_skipped == first.shards_written - 1
    assert len(holding) == 1


def test_a_folder_without_an_index_is_no_shards_for_every_reader(tmp_path):
    """The trainer, the evaluators and make verify read through ShardIndex.load: a folder
    without shards.jsonl is named as holding no shards, not read as an empty set."""
    with pytest.raises(ShardFormatError, match=r"no shards \(shards.jsonl missing\)"):
        ShardIndex.load(tmp_path / "nowhere")
    with pytest.raises(ShardFormatError, match=r"no shards"):
        verify_shards(tmp_path)
    assert ShardIndex.load(tmp_path, must_exist=False).records == []   # preprocessing's own


def test_the_paper_preset_is_refused_where_its_steps_do_not_fit_in_memory(shards, tmp_path,
                                                                           capsys):
    """The authors' 112-clip AVC step holds about 21 GiB on the CPU: a machine with less is
    told before the first step how much it needs and what fits; nothing is written."""
    from trainer.distributed import available_memory_gib

    need, crops = train.paper_cpu_memory_gib(
        load_config(train.TrainConfig, AVSA, []), ["avc", "avsa"])
    assert crops == 112 and 20 < need < 22
    assert available_memory_gib("MemTotal: 25000000 kB\nMemAvailable: 8388608 kB\n") == 8.0
    cfg = load_config(train.TrainConfig, AVSA, ["data.avc_batch_size=112"])
    with pytest.raises(ConfigError, match=r"112 crops\) needs about 21 GiB.*8.0 GiB available"
                                          r".*at most 35 crops"):
        train.check_cpu_memory(cfg, ["avc", "avsa"], 8.0)
    train.check_cpu_memory(cfg, ["avc", "avsa"], 64.0)                 # room: no refusal
    train.check_cpu_memory(load_config(train.TrainConfig, AVSA, ["model.preset=tiny",
                                                                  "model.feature_dim=64"]),
                           ["avc"], 1.0)                               # tiny: not estimated
