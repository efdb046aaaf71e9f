"""The preprocessing driver end to end on tiny synthetic clips (128 x 64, 2.5 s, 32 px crops).

Serial run (schema, ground truth, norm stats, stub detector), Dask LocalCluster run equal to the
serial one, a worker killed mid-task, resume after a lost shard or a crash, config-hash guard.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import cloudpickle
import h5py
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import DetectorWeightsError
from pipeline.features import NormStats, foa_features
from pipeline.preprocess import (
    CONFIG_NAME,
    _open_executor,
    PreprocessStateError,
    main,
    plan_shards,
    run_preprocess,
)
from pipeline.preprocess_config import PreprocessConfig
from pipeline.shards import (
    FAILURES_NAME,
    INDEX_NAME,
    NORM_STATS_NAME,
    SAMPLE_FIELDS,
    ShardFormatError,
    ShardIndex,
    open_shard,
    read_jsonl,
    stored_crops,
    stored_features,
)
from pipeline.synth.cli import generate_videos
from pipeline.synth.scenes import SceneConfig

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 4, 2

# Stubs below run inside Dask workers: pickle them by value (workers need not import this file).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class BrightestSpotDetector:
    """Stub detector (no YOLO weights in tests): one 8 x 6 box around the brightest pixel, class 3.

    It follows the image, so the seam-aware second pass on the rolled frame finds the same
    object and the merge keeps one detection, as with a real detector.
    """

    def __call__(self, image):
        luminance = image.astype(np.float32).sum(axis=-1)
        row, col = np.unravel_index(int(np.argmax(luminance)), luminance.shape)
        box = [col + 0.5 - 4, row + 0.5 - 3, col + 0.5 + 4, row + 0.5 + 3]
        return np.array([box]), np.array([0.9]), np.array([3])


class StubDetectorFactory:
    def __call__(self, detector_cfg):
        return BrightestSpotDetector()


class DieOnceFactory:
    """Kills its worker process (os._exit) the first time any task asks for a detector."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, detector_cfg):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return BrightestSpotDetector()
        os.close(fd)
        os._exit(13)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    scene = SceneConfig(width=128, height=64, duration_s=2.5)
    generate_videos(root, n_train=N_TRAIN, n_test=N_TEST, seed=0, scene=scene, workers=1)
    return root


def tiny_config(synth_root: Path, out_dir: Path, *overrides: str) -> PreprocessConfig:
    return load_config(PreprocessConfig, REPO / "configs" / "preprocess.yaml", [
        f"paths.data_root={synth_root}", f"paths.manifest={synth_root / 'manifest.jsonl'}",
        f"paths.out_dir={out_dir}", "decode.width=128", "decode.height=64",
        "viewpoints.crop_size=32", "viewpoints.bank_size=4", "audio.n_mels=32",
        "shards.clips_per_shard=2",
        "shards.keyframe_width=64", "shards.keyframe_height=32", "windows.max_per_clip=2",
        "detector.enabled=false", "dask.scheduler=serial", "dask.n_workers=2", *overrides])


@pytest.fixture(scope="module")
def serial_run(synth_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("serial")
    cfg = tiny_config(synth_root, out_dir)
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    return cfg, out_dir, summary


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, _comparable(obj))
                      if isinstance(obj, h5py.Dataset) else None)
        out["@attrs"] = {k: v for k, v in h5.attrs.items() if k != "created_utc"}
    return out


def _comparable(dataset: h5py.Dataset) -> np.ndarray:
    """A dataset's values; variable-length ones (JPEG crops) as an object array of bytes."""
    values = dataset[()]
    if h5py.check_vlen_dtype(dataset.dtype) is None or not isinstance(values, np.ndarray):
        return values
    return np.array([bytes(v) for v in values.reshape(-1)] + [None],
                    dtype=object)[:-1].reshape(values.shape)


def assert_same_shards(dir_a: Path, dir_b: Path) -> None:
    """Every shard of the two indexes equal dataset by dataset (timestamps excluded)."""
    names_a = sorted(r["shard"] for r in read_jsonl(dir_a / INDEX_NAME))
    names_b = sorted(r["shard"] for r in read_jsonl(dir_b / INDEX_NAME))
    assert names_a == names_b and names_a
    for name in names_a:
        a, b = _datasets(dir_a / name), _datasets(dir_b / name)
        assert sorted(a) == sorted(b), name
        for key in a:
            if key == "@attrs":
                assert {k: str(v) for k, v in a[key].items()} == {k: str(v) for k, v in b[key].items()}
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


# ---------------------------------------------------------------------------------------------


def test_serial_run_writes_complete_schema_v1_shards(serial_run):
    cfg, out_dir, summary = serial_run
    assert summary.clips_ok == N_TRAIN + N_TEST and summary.clips_failed == 0
    assert summary.shards_written == 3 and summary.samples == 2 * (N_TRAIN + N_TEST)
    index = ShardIndex.load(out_dir)
    assert [p.name for p in index.paths("train")] == ["train-00000.h5", "train-00001.h5"]
    assert index.n_samples("test") == 2 * N_TEST
    assert (out_dir / FAILURES_NAME).read_text() == ""
    assert load_config(PreprocessConfig, out_dir / CONFIG_NAME) == cfg
    k, a = cfg.viewpoints.bank_size, cfg.audio.n_samples
    with open_shard(out_dir / "train-00000.h5") as h5:
        n = int(h5.attrs["n_samples"])
        assert h5.attrs["config_hash"] == cfg.content_hash()
        for spec in SAMPLE_FIELDS:                 # synthetic: gt/* present as well
            assert spec.name in h5, spec.name
            assert h5[spec.name].shape[0] == n
        crops = stored_crops(h5, "views/random/crops")
        assert crops.codec == "jpeg" and crops.shape == (n, k, 8, 32, 32, 3)
        assert crops[0].shape == (k, 8, 32, 32, 3) and crops[0].dtype == np.uint8
        assert h5["views/yolo/logmel_foa"].shape == (n, k, 4, 32, 100)
        assert h5["views/yolo/iv"].shape == (n, k, 3, 32, 100)
        assert h5["views/random/logmel_beam"].shape == (n, k, 1, 32, 100)
        assert h5["foa_acn_sn3d"].shape == (n, 4, a) and h5["foa_acn_sn3d"].dtype == np.float16
        assert h5["keyframe"].shape == (n, 32, 64, 3)
        assert h5["video_start_s"][0] - h5["audio_start_s"][0] == pytest.approx(0.25)
        assert (h5["gt/count"][()] > 0).all()
        # stub detector: one object -> the first yolo view looks at it, the rest are random fill
        assert (h5["detections/count"][()] == 1).all()
        assert h5["views/yolo/from_detection"][()].tolist() == [[True, False, False, False]] * n
        det_el = np.clip(h5["detections/elevation_rad"][:, 0], -math.radians(60), math.radians(60))
        np.testing.assert_allclose(h5["views/yolo/azimuth_rad"][:, 0], h5["detections/azimuth_rad"][:, 0])
        np.testing.assert_allclose(h5["views/yolo/elevation_rad"][:, 0], det_el, atol=1e-6)
        assert h5["detections/class_id"][:, 0].tolist() == [3] * n
        assert not h5["views/random/from_detection"][()].any()
        fov = np.degrees(h5["views/random/fov_rad"][()])
        assert fov.min() >= 25 and fov.max() <= 90
        # the stored features are those of the stored FOA rotated to the stored viewpoints
        # (up to the float16 storage of the FOA and the uint8 codes of the features: 0.2 dB)
        assert h5["views/random/logmel_foa"].dtype == np.uint8
        foa = h5["foa_acn_sn3d"][0].astype(np.float32)
        az, el = h5["views/random/azimuth_rad"][0], h5["views/random/elevation_rad"][0]
        expected = foa_features(foa, az, el, cfg.audio)
        stored = stored_features(h5, "views/random/logmel_foa")[0]
        error_db = np.abs(stored - expected["logmel_foa"])
        assert error_db.mean() < 0.12 and error_db.max() < 1.0
        iv_error = np.abs(stored_features(h5, "views/random/iv")[0] - expected["iv"])
        assert iv_error.max() < 0.02


def test_norm_stats_come_from_the_train_random_views(serial_run):
    cfg, out_dir, _ = serial_run
    stats = NormStats.from_json(out_dir / NORM_STATS_NAME)
    assert stats.mean["logmel_foa"].shape == (4, 32) and stats.std["iv"].shape == (3, 32)
    assert stats.mean["logmel_beam"].shape == (1, 32)
    values = []
    for path in ShardIndex.load(out_dir).paths("train"):
        with open_shard(path) as h5:
            values.append(stored_features(h5, "views/random/logmel_foa")[:].astype(np.float64))
    values = np.concatenate(values)                       # (N, K, 4, M, F)
    expected_mean = values.mean(axis=(0, 1, 4))
    np.testing.assert_allclose(stats.mean["logmel_foa"], expected_mean, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("feature_codec", ["uint8", "float16"])
def test_train_shards_carry_the_moments_the_norm_pass_would_read_back(serial_run, synth_root,
                                                                      tmp_path, feature_codec):
    """The moments stored with a train shard equal those computed from its written features
    (the pass for shards without them), so the final pass need not read the features again."""

    from pipeline.preprocess import NORM_FEATURES, shard_norm_moments
    from pipeline.shards import NORM_MOMENTS_GROUP

    out_dir = serial_run[1]
    if feature_codec != "uint8":
        out_dir = tmp_path / "float16"
        run_preprocess(tiny_config(synth_root, out_dir, "shards.feature_codec=float16"),
                       progress=False, detector_factory=StubDetectorFactory())
    index = ShardIndex.load(out_dir)
    for path in index.paths("test"):
        with open_shard(path) as h5:
            assert NORM_MOMENTS_GROUP not in h5
    for path in index.paths("train"):
        stored = shard_norm_moments(str(path))
        bare = tmp_path / f"bare-{path.name}"
        shutil.copy(path, bare)
        with h5py.File(bare, "r+") as h5:
            del h5[NORM_MOMENTS_GROUP]
        recomputed = shard_norm_moments(str(bare))
        for key in NORM_FEATURES:
            assert stored.count[key] == recomputed.count[key] > 0
            np.testing.assert_allclose(stored.mean[key], recomputed.mean[key], rtol=1e-12)
            np.testing.assert_allclose(stored.m2[key], recomputed.m2[key], rtol=1e-10)
    # Every stored moment is checksummed, and a group missing a feature names the shard.
    train_path = index.paths("train")[0]
    with h5py.File(train_path, "r") as h5:
        assert all(h5[f"{NORM_MOMENTS_GROUP}/{key}/{name}"].fletcher32
                   for key in NORM_FEATURES for name in ("count", "mean", "m2"))
    partial = tmp_path / "partial.h5"
    shutil.copy(train_path, partial)
    with h5py.File(partial, "r+") as h5:
        del h5[f"{NORM_MOMENTS_GROUP}/iv"]
    with pytest.raises(ShardFormatError, match="partial.h5.*norm_moments holds no iv"):
        shard_norm_moments(str(partial))


def test_dask_local_cluster_run_equals_serial_run(serial_run, synth_root, tmp_path):
    _, serial_dir, _ = serial_run
    cfg = tiny_config(synth_root, tmp_path / "parallel", "dask.scheduler=", "dask.n_workers=2")
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert summary.clips_ok == N_TRAIN + N_TEST
    assert_same_shards(serial_dir, tmp_path / "parallel")
    serial_stats = json.loads((serial_dir / NORM_STATS_NAME).read_text())
    parallel_stats = json.loads((tmp_path / "parallel" / NORM_STATS_NAME).read_text())
    for key in ("logmel_foa", "iv", "logmel_beam"):
        np.testing.assert_allclose(parallel_stats["keys"][key]["mean"],
                                   serial_stats["keys"][key]["mean"], rtol=1e-6, atol=1e-6)


def test_a_killed_worker_does_not_stop_the_run(serial_run, synth_root, tmp_path):
    from dask.distributed import LocalCluster

    _, serial_dir, _ = serial_run
    marker = tmp_path / "died-once"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        # an existing cluster, used as it is (dask.scheduler = its address)
        cfg = tiny_config(synth_root, tmp_path / "out", f"dask.scheduler={cluster.scheduler_address}")
        summary = run_preprocess(cfg, progress=False, detector_factory=DieOnceFactory(str(marker)))
        # the same cluster through a scheduler file (dask-scheduler --scheduler-file ...)
        scheduler_file = tmp_path / "scheduler.json"
        scheduler_file.write_text(json.dumps({"type": "Scheduler",
                                              "address": cluster.scheduler_address}))
        executor = _open_executor(tiny_config(synth_root, tmp_path / "unused",
                                              f"dask.scheduler={scheduler_file}"))
        assert executor.n_threads() == 2
        executor.close()
    assert marker.exists()                              # a worker did die mid-task
    assert summary.clips_ok == N_TRAIN + N_TEST and summary.clips_failed == 0
    assert_same_shards(serial_dir, tmp_path / "out")


def test_resume_rebuilds_only_what_is_missing(serial_run, tmp_path):
    cfg_serial, serial_dir, _ = serial_run
    out_dir = tmp_path / "resume"
    shutil.copytree(serial_dir, out_dir)
    cfg = load_config(PreprocessConfig, out_dir / CONFIG_NAME, [f"paths.out_dir={out_dir}"])
    # 1. a shard lost from disk and index; 2. a crash mid-write left a .tmp; 3. a shard in the
    # index but gone from disk (deleted after the index was written)
    records = list(read_jsonl(out_dir / INDEX_NAME))
    kept = [r for r in records if r["shard"] != "train-00001.h5"]
    (out_dir / INDEX_NAME).write_text("".join(json.dumps(r) + "\n" for r in kept))
    (out_dir / "train-00001.h5").unlink()
    (out_dir / "train-00001.h5.tmp").write_bytes(b"half a shard")
    (out_dir / "test-00000.h5").unlink()
    untouched = (out_dir / "train-00000.h5").stat().st_mtime_ns
    summary = run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    assert summary.shards_written == 2 and summary.shards_skipped == 1
    assert not list(out_dir.glob("*.tmp"))
    assert (out_dir / "train-00000.h5").stat().st_mtime_ns == untouched
    assert_same_shards(serial_dir, out_dir)
    again = run_preprocess(cfg, progress=False, verify_sha=True,
                           detector_factory=StubDetectorFactory())
    assert again.shards_written == 0 and again.shards_skipped == 3


def test_a_changed_config_is_refused_unless_forced(serial_run, tmp_path):
    _, serial_dir, _ = serial_run
    out_dir = tmp_path / "changed"
    shutil.copytree(serial_dir, out_dir)
    cfg = load_config(PreprocessConfig, out_dir / CONFIG_NAME,
                      [f"paths.out_dir={out_dir}", "seed=1", "windows.max_per_clip=1"])
    with pytest.raises(PreprocessStateError, match="new paths.out_dir or --force"):
        run_preprocess(cfg, progress=False, detector_factory=StubDetectorFactory())
    # execution-only settings do not count
    same = load_config(PreprocessConfig, out_dir / CONFIG_NAME,
                       [f"paths.out_dir={out_dir}", "dask.n_workers=7", "detector.device=cuda:0"])
    assert same.content_hash() == load_config(PreprocessConfig, out_dir / CONFIG_NAME).content_hash()
    assert same.content_hash() != cfg.content_hash()
    summary = run_preprocess(cfg, force=True, progress=False, detector_factory=StubDetectorFactory())
    assert summary.shards_written == 3 and summary.samples == N_TRAIN + N_TEST


def test_enabled_detector_without_weights_fails_before_any_work(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path / "out", "detector.enabled=true",
                      f"detector.weights={tmp_path / 'missing.pt'}")
    with pytest.raises(DetectorWeightsError, match="detector.enabled=false"):
        run_preprocess(cfg, progress=False)
    assert not list((tmp_path / "out").glob("*.h5"))


def test_a_shards_folder_being_written_is_refused(synth_root, tmp_path):
    """Two preprocessing runs into one folder: the second is refused before it writes (the
    first's lock, here from another host, names its holder); no shard, no index line."""
    import json

    from pipeline.locks import LOCK_NAME, FolderLockedError

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere",
                                             "what": "preprocessing", "command": "make preprocess"}))
    with pytest.raises(FolderLockedError, match="preprocessing is writing it .pid 1 on elsewhere"):
        run_preprocess(tiny_config(synth_root, out), progress=False,
                       detector_factory=StubDetectorFactory())
    assert not list(out.glob("*.h5")) and not (out / "shards.jsonl").exists()


def test_force_never_wipes_a_folder_another_run_is_writing(synth_root, tmp_path):
    """The lock is taken before --force's wipe: the other writer's shards stay."""
    import json

    from pipeline.locks import LOCK_NAME, FolderLockedError

    out = tmp_path / "out"
    run_preprocess(tiny_config(synth_root, out), progress=False,
                   detector_factory=StubDetectorFactory())
    shards_before = sorted(p.name for p in out.glob("*.h5"))
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere",
                                             "what": "preprocessing"}))
    other = tiny_config(synth_root, out, "windows.max_per_clip=1")
    with pytest.raises(FolderLockedError, match="preprocessing is writing it"):
        run_preprocess(other, force=True, progress=False, detector_factory=StubDetectorFactory())
    assert sorted(p.name for p in out.glob("*.h5")) == shards_before and shards_before


def test_a_task_runs_blas_opencv_and_ffmpeg_on_one_thread_and_restores_them():
    """The serial mode runs tasks in the caller's process: without the pin, numpy's OpenBLAS
    worker spun after each matmul and cost 0.4-0.7 CPU-s per clip (docs/RESULTS.md)."""
    import cv2
    from threadpoolctl import threadpool_info

    from pipeline.preprocess import _single_threaded

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    from pipeline.decode import _segment_options

    before, cv2_before = blas_threads(), cv2.getNumThreads()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    with _single_threaded():
        assert blas_threads() == [1] * len(before)
        assert cv2.getNumThreads() == 1
        assert _segment_options(0.0, None) == {"threads": "1"}         # ffmpeg's decoder too
    assert blas_threads() == before and cv2.getNumThreads() == cv2_before
    assert "threads" not in _segment_options(0.0, None)


def test_plan_shards_groups_each_split_by_sorted_id(synth_root):
    from pipeline.manifest import read_manifest

    plans = plan_shards(read_manifest(synth_root / "manifest.jsonl"), 3)
    assert [p.name for p in plans] == ["train-00000.h5", "train-00001.h5", "test-00000.h5"]
    assert plans[0].clip_ids == sorted(plans[0].clip_ids)
    assert {c.split for c in plans[2].clips} == {"test"}


def test_command_line(synth_root, tmp_path):
    out_dir = tmp_path / "cli"
    args = ["--config", str(REPO / "configs" / "preprocess.yaml"), "--no-progress",
            f"paths.data_root={synth_root}", f"paths.manifest={synth_root / 'manifest.jsonl'}",
            f"paths.out_dir={out_dir}", "decode.width=128", "decode.height=64",
            "viewpoints.crop_size=32", "audio.n_mels=32", "windows.max_per_clip=1",
            "detector.enabled=false", "dask.scheduler=serial"]
    assert main(args) == 0
    assert len(list(read_jsonl(out_dir / INDEX_NAME))) == 2
    assert main(args + ["seed=3"]) == 2                  # refused: other config in out_dir
    assert main(args + ["viewpoints.unknown=1"]) == 2    # unknown key
    assert math.isfinite(json.loads((out_dir / NORM_STATS_NAME).read_text())["keys"]["iv"]["count"])


def test_kill_minus_9_mid_run_leaves_no_partial_shard_and_resumes(synth_root, tmp_path):
    import signal
    import subprocess
    import time

    out_dir = tmp_path / "killed"
    overrides = [f"paths.data_root={synth_root}", f"paths.manifest={synth_root / 'manifest.jsonl'}",
                 f"paths.out_dir={out_dir}", "decode.width=128", "decode.height=64",
                 "viewpoints.crop_size=32", "audio.n_mels=32", "shards.clips_per_shard=1",
                 "detector.enabled=false", "dask.scheduler=serial"]
    command = [sys.executable, "-m", "pipeline.preprocess", "--config",
               str(REPO / "configs" / "preprocess.yaml"), "--no-progress", *overrides]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(read_jsonl(out_dir / INDEX_NAME))) >= 1:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    finished = {r["shard"] for r in read_jsonl(out_dir / INDEX_NAME)}
    assert 1 <= len(finished) < N_TRAIN + N_TEST
    visible = {p.name for p in out_dir.glob("*.h5")}
    for name in visible:                        # whatever is visible opens as a complete shard
        with open_shard(out_dir / name) as h5:
            assert int(h5.attrs["n_samples"]) == h5["clip_id"].shape[0]
    cfg = load_config(PreprocessConfig, out_dir / CONFIG_NAME)   # the config that ran
    summary = run_preprocess(cfg, progress=False)
    assert summary.shards_skipped == len(finished)
    assert summary.shards_written == N_TRAIN + N_TEST - len(finished)
    assert not list(out_dir.glob("*.tmp"))
    fresh = tmp_path / "fresh"
    run_preprocess(load_config(PreprocessConfig, out_dir / CONFIG_NAME, [f"paths.out_dir={fresh}"]),
                   progress=False)
    assert_same_shards(fresh, out_dir)


def test_production_detector_path_with_ultralytics_weights(synth_root, tmp_path):
    """detector.enabled=true end to end: weights file -> pipeline.detect.load_detector ->
    ultralytics YOLO on the keyframes (an untrained network: only the plumbing is checked)."""
    ultralytics = pytest.importorskip("ultralytics")
    weights = tmp_path / "untrained_yolo.pt"
    ultralytics.YOLO("yolov8n.yaml").save(str(weights))
    cfg = tiny_config(synth_root, tmp_path / "out", "detector.enabled=true",
                      f"detector.weights={weights}", "detector.imgsz=128", "detector.conf=0.0",
                      "windows.max_per_clip=1", "shards.clips_per_shard=8")
    summary = run_preprocess(cfg, progress=False)
    assert summary.clips_ok == N_TRAIN + N_TEST and summary.clips_failed == 0
    for path in ShardIndex.load(tmp_path / "out").paths():
        with open_shard(path) as h5:
            count = h5["detections/count"][()]
            from_detection = h5["views/yolo/from_detection"][()]
            assert (from_detection.sum(axis=1) <= np.minimum(count, cfg.viewpoints.bank_size)).all()
            assert (h5["detections/confidence"][()][count[:, None] <= np.arange(16)] == 0).all()
