"""Shard streaming: coverage per epoch across ranks and workers, deterministic shuffling,
equal steps per rank, AVTS clip groups, channel selection, flip/mirror consistency, norm."""

from collections import Counter
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from pipeline.shards import ShardFormatError, read_norm_stats, write_norm_stats
from pipeline.synth.shard_factory import make_shards
from trainer.config import DataConfig
from trainer.data import (ShardStream, assign_parts, choose_mixed_views, choose_views,
                          make_loader, make_parts, split_steps)

torch.set_num_threads(1)
# Window epochs (every stored window once): the plan tests below check that exactly.
PLAIN = DataConfig(batch_size=3, views_per_step=1, flip_prob=0.0, color_jitter=0.0,
                   volume_jitter_db=0.0, normalize_audio=False, samples_per_clip=0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 training shards x 6 samples (3 clips x 2 windows), K = 4 viewpoints."""
    root = tmp_path_factory.mktemp("shards")
    make_shards(root, n_clips=24, windows_per_clip=2, samples_per_shard=6, seed=1,
                crop_size=16, n_frames=2, n_mels=16, n_frames_audio=10)
    return root


def sample_ids(batches):
    return [(cid, int(w)) for b in batches for cid, w in zip(b["clip_id"], b["window_index"])]


def test_every_sample_once_per_epoch_across_two_ranks_and_two_workers(shards):
    seen, steps = [], {}
    for rank in range(2):
        steps[rank] = 0
        for worker in range(2):
            ds = ShardStream(shards, "train", PLAIN, rank=rank, world_size=2, seed=3)
            ds.set_epoch(5)
            batches = list(ds.iter_worker(worker, 2))
            steps[rank] += len(batches)
            assert all(len(b["clip_id"]) == 3 for b in batches)
            seen += sample_ids(batches)
    assert steps == {0: 8, 1: 8}                       # 48 samples / (2 ranks x 3)
    assert len(seen) == 48 and len(set(seen)) == 48


def test_ranks_take_equal_steps_with_uneven_shards():
    sizes = [5, 7, 3, 9, 4, 11]
    parts = make_parts([f"s{i}" for i in range(6)], sizes, min_parts=4)
    assert sum(p.n_samples for p in parts) == sum(sizes)
    steps = sum(sizes) // (2 * 4)
    for rank in range(2):
        per_worker = [sum(parts[i].n_samples for i in assign_parts(len(parts), 0, 1, rank, 2, w, 2))
                      for w in range(2)]
        assert sum(split_steps(steps, per_worker)) == steps
    # Fewer shards than ranks x workers: shards are cut so every worker gets data.
    parts = make_parts(["only"], [10], min_parts=4)
    assert [(p.start, p.stop) for p in parts] == [(0, 2), (2, 5), (5, 8), (8, 10)]


def test_short_rank_cycles_its_own_samples_without_repeats_in_a_batch(tmp_path):
    make_shards(tmp_path, n_clips=8, windows_per_clip=1, samples_per_shard=6, seed=2,
                crop_size=8, n_frames=2, n_mels=8, n_frames_audio=4)      # shards of 6 and 2
    cfg = replace(PLAIN, batch_size=2)
    per_rank = []
    for rank in range(2):
        ds = ShardStream(tmp_path, "train", cfg, rank=rank, world_size=2)
        batches = list(ds.iter_worker(0, 1))
        assert len(batches) == ds.steps_per_epoch == 2                 # 8 // (2 x 2)
        assert all(len(set(b["clip_id"])) == 2 for b in batches)     # no repeat in a batch
        per_rank.append(len(set(sample_ids(batches))))
    assert sorted(per_rank) == [2, 4]          # the 2-sample rank cycles, the other drops 2


def test_shuffling_is_deterministic_per_epoch(shards):
    def order(epoch, seed=0):
        ds = ShardStream(shards, "train", PLAIN, seed=seed)
        ds.set_epoch(epoch)
        return sample_ids(ds.iter_worker(0, 1))

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != order(1, seed=7)
    assert sorted(order(1)) == sorted(order(2))


def test_dataloader_workers_cover_the_epoch(shards):
    ds = ShardStream(shards, "train", replace(PLAIN, batch_size=4))
    ds.set_epoch(0)
    batches = list(make_loader(ds, num_workers=2))
    assert len(batches) == ds.steps_per_epoch == 12
    ids = sample_ids(batches)
    assert len(set(ids)) == 48



def test_batches_are_written_in_place_alike_in_workers_and_in_the_main_process(shards):
    """The loader writes each sample into its batch's row (shared memory in a DataLoader
    worker) instead of stacking per-sample arrays: with augmentation on, a worker's batches
    equal the main process's for the same worker plan, and every row equals that sample
    loaded alone with the same random stream."""
    from trainer.data import ShardReader, epoch_rng

    cfg = DataConfig(batch_size=4, views_per_step=2, normalize_audio=False)   # jitter, flip on
    ds = ShardStream(shards, "train", cfg)
    ds.set_epoch(3)
    in_workers = list(make_loader(ds, num_workers=2))
    in_main = [batch for worker in range(2) for batch in ds.iter_worker(worker, 2)]
    key = lambda batch: tuple(batch["clip_id"]) + tuple(batch["window_index"].tolist())
    in_main = {key(batch): batch for batch in in_main}
    assert len(in_workers) == len(in_main) == ds.steps_per_epoch
    for batch in in_workers:
        expected = in_main[key(batch)]
        for name in ("video", "audio", "azimuth_rad", "flipped"):
            torch.testing.assert_close(batch[name], expected[name], rtol=0, atol=0)

    reader = ShardReader("train", cfg.viewpoints, ds.feature_keys)
    units = [(str(sorted(shards.glob("train-*.h5"))[0]), (row,)) for row in range(4)]
    batch = ds._load_batch(reader, units, 0, 5)
    for index, (path, (row,)) in enumerate(units):
        alone = ds._load_sample(reader, path, row, epoch_rng(ds.seed, ds.epoch, 2, ds.rank, 0,
                                                             5, index))
        np.testing.assert_array_equal(batch["video"][index].numpy(), alone["video"])
        np.testing.assert_array_equal(batch["audio"][index].numpy(), alone["audio"])
    reader.close()

def test_avts_batches_hold_clip_groups(shards):
    ds = ShardStream(shards, "train", replace(PLAIN, batch_size=4), windows_per_clip=2)
    batch = next(iter(ds))
    counts = Counter(batch["clip_index"].tolist())
    assert sorted(counts.values()) == [2, 2]
    for group in counts:
        members = [cid for cid, g in zip(batch["clip_id"], batch["clip_index"]) if g == group]
        assert len(set(members)) == 1
    windows = [int(w) for g, w in zip(batch["clip_index"], batch["window_index"]) if g == 0]
    assert sorted(windows) == [0, 1]


@pytest.mark.parametrize("audio_input, channels", [("foa", 4), ("foa_iv", 7), ("beamform", 1)])
def test_audio_channels_and_batch_layout(shards, audio_input, channels):
    cfg = replace(PLAIN, audio_input=audio_input, views_per_step=4, batch_size=2)
    batch = next(iter(ShardStream(shards, "train", cfg)))
    assert batch["video"].shape == (2, 4, 3, 2, 16, 16) and batch["video"].dtype == torch.float32
    assert 0.0 <= batch["video"].min() and batch["video"].max() <= 1.0
    assert batch["audio"].shape == (2, 4, channels, 16, 10)
    assert batch["azimuth_rad"].shape == batch["elevation_rad"].shape == (2, 4)


def _stored(shards, clip_id, window, source="random"):
    for path in sorted(shards.glob("train-*.h5")):
        with h5py.File(path, "r") as h5:
            ids = h5["clip_id"].asstr()[()]
            rows = np.flatnonzero((ids == clip_id) & (h5["window_index"][()] == window))
            if len(rows):
                group = h5[f"views/{source}"]
                return {name: group[name][rows[0]] for name in group}
    raise KeyError(clip_id)


@pytest.mark.parametrize("source", ["random", "yolo"])
def test_flip_mirrors_crops_and_intensity_consistently(shards, source):
    cfg = replace(PLAIN, audio_input="foa_iv", viewpoints=source, flip_prob=1.0, batch_size=2)
    batch = next(iter(ShardStream(shards, "train", cfg)))
    assert batch["flipped"].all()
    for i, (clip_id, window) in enumerate(zip(batch["clip_id"], batch["window_index"])):
        stored = _stored(shards, clip_id, int(window), source)
        view = int(np.argmin(np.abs(stored["azimuth_rad"] + batch["azimuth_rad"][i, 0].numpy())))
        assert batch["azimuth_rad"][i, 0].item() == pytest.approx(-stored["azimuth_rad"][view])
        crops = stored["crops"][view].astype(np.float32) / 255.0            # (T, S, S, 3)
        expected_video = crops[:, :, ::-1].transpose(3, 0, 1, 2)
        np.testing.assert_allclose(batch["video"][i, 0].numpy(), expected_video)
        audio = batch["audio"][i, 0].numpy()
        np.testing.assert_allclose(audio[:4], stored["logmel_foa"][view].astype(np.float32))
        iv = stored["iv"][view].astype(np.float32)
        np.testing.assert_allclose(audio[4:], iv * np.array([1, -1, 1])[:, None, None])


def test_volume_jitter_is_one_offset_on_log_mel_only(shards):
    base = replace(PLAIN, audio_input="foa_iv", views_per_step=4, batch_size=2)
    plain = next(iter(ShardStream(shards, "train", base)))
    jittered = next(iter(ShardStream(shards, "train", replace(base, volume_jitter_db=6.0))))
    assert plain["clip_id"] == jittered["clip_id"]
    for i in range(2):   # same views: the viewpoint draw comes before the augmentation draws
        offset = (jittered["audio"][i, :, :4] - plain["audio"][i, :, :4]).numpy()
        assert np.ptp(offset) < 1e-4 and 0 < abs(offset.mean()) <= 6.0
        torch.testing.assert_close(jittered["audio"][i, :, 4:], plain["audio"][i, :, 4:])


def test_normalisation_uses_norm_stats(shards):
    cfg = replace(PLAIN, views_per_step=4, batch_size=2)
    raw = next(iter(ShardStream(shards, "train", cfg)))
    normed = next(iter(ShardStream(shards, "train", replace(cfg, normalize_audio=True))))
    stats = read_norm_stats(shards / "norm_stats.json")["logmel_foa"]
    expected = (raw["audio"].numpy() - stats.mean[:, :, None]) / stats.std[:, :, None]
    np.testing.assert_allclose(normed["audio"].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert abs(float(normed["audio"].mean())) < 1.0


def test_norm_stats_of_another_band_count_are_refused_naming_the_shard(shards, tmp_path):
    import shutil

    folder = tmp_path / "shards"
    shutil.copytree(shards, folder)
    write_norm_stats(folder / "norm_stats.json",
                     {"logmel_foa": (np.zeros((4, 8)), np.ones((4, 8)))})   # shards: 16 bands
    cfg = replace(PLAIN, views_per_step=4, batch_size=2, normalize_audio=True)
    with pytest.raises(ShardFormatError, match=r"train-\d+\.h5: norm_stats.json: logmel_foa"):
        next(iter(ShardStream(folder, "train", cfg)))


@pytest.mark.parametrize("flip", [False, True])
def test_audio_from_uint8_codes_equals_the_float_path(flip):
    """features_to_audio folds dequantisation, gain, the I_y sign and normalisation into one
    map per band: equal to doing them one by one on float32 values (uint8 codes of both kinds,
    the float16 codec, statistics for two of the three keys)."""
    from pipeline.shards import FeatureCodes, FeatureNorm, dequantise_feature, quantise_feature
    from trainer.data import features_to_audio

    rng = np.random.default_rng(3)
    k, bands, frames = 3, 6, 5
    logmel = rng.uniform(-80.0, 0.0, (1, k, 4, bands, frames)).astype(np.float32)
    iv = rng.uniform(-1.0, 1.0, (1, k, 3, bands, frames)).astype(np.float32)
    beam = rng.uniform(-60.0, 0.0, (k, 1, bands, frames)).astype(np.float16)
    logmel_codes, max_db = quantise_feature("logmel_foa", logmel, 100.0)
    iv_codes, _ = quantise_feature("iv", iv, 100.0)
    features = {"logmel_foa": FeatureCodes(logmel_codes[0], max_db[0], -100.0 / 255.0),
                "iv": FeatureCodes(iv_codes[0], np.full(k, -1.0, np.float32), 1.0 / 127.5),
                "logmel_beam": FeatureCodes(beam, np.zeros(k, np.float32), 1.0)}
    norm = {"logmel_foa": FeatureNorm(rng.normal(-40, 5, (4, bands)).astype(np.float32),
                                      rng.uniform(5, 15, (4, bands)).astype(np.float32)),
            "iv": FeatureNorm(rng.normal(0, 0.1, (3, bands)).astype(np.float32),
                              rng.uniform(0.2, 0.6, (3, bands)).astype(np.float32))}
    keys, gain_db = ("logmel_foa", "iv", "logmel_beam"), 4.5

    got = features_to_audio(features, keys, norm, gain_db, flip)
    values = {"logmel_foa": dequantise_feature(logmel_codes, max_db, 100.0)[0] + gain_db,
              "iv": dequantise_feature(iv_codes, None, 100.0)[0],
              "logmel_beam": beam.astype(np.float32) + gain_db}
    if flip:
        values["iv"][:, 1] *= -1.0
    for key, stats in norm.items():
        values[key] = (values[key] - stats.mean[:, :, None]) / stats.std[:, :, None]
    expected = np.concatenate([values[key] for key in keys], axis=1)
    assert got.shape == (k, 8, bands, frames) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features["iv"].values(),
                                  dequantise_feature(iv_codes, None, 100.0)[0])
    np.testing.assert_array_equal(features["logmel_foa"].values(),
                                  dequantise_feature(logmel_codes, max_db, 100.0)[0])


def test_norm_stats_formats(tmp_path):
    mean, std = np.zeros((4, 3)), np.ones((4, 3))
    write_norm_stats(tmp_path / "a.json", {"logmel_foa": (mean, std)})
    assert read_norm_stats(tmp_path / "a.json")["logmel_foa"].mean.shape == (4, 3)
    (tmp_path / "b.json").write_text('{"logmel_beam": {"mean": [[1, 2]], "std": [[0, 2]]}}')
    flat = read_norm_stats(tmp_path / "b.json")["logmel_beam"]
    assert flat.std.min() > 0                                  # floored, no division by zero
    (tmp_path / "c.json").write_text('{"iv": {"mean": [[1, 2]], "std": [[1, 2]]}}')
    with pytest.raises(ShardFormatError, match=r"iv mean/std must be \(3, M\)"):
        read_norm_stats(tmp_path / "c.json")


def test_too_many_viewpoints_is_a_clear_error(shards):
    with pytest.raises(ShardFormatError, match="4 viewpoints stored, 5 requested"):
        next(iter(ShardStream(shards, "train", replace(PLAIN, views_per_step=5))))


def test_a_bank_smaller_than_k_is_refused_before_any_batch(shards):
    stream = ShardStream(shards, "train", replace(PLAIN, views_per_step=12))
    stream.check_viewpoints(4)                                      # fits: no error
    with pytest.raises(ShardFormatError, match=r"4 viewpoints stored per window in the "
                       r"'random' set, 12 requested.*viewpoints.bank_size>=12"):
        stream.check_viewpoints(12)


def test_view_choice_takes_detections_before_fill():
    rng = np.random.default_rng(0)
    detected = np.array([False, True, False, True])
    singles = Counter(int(choose_views(4, 1, rng, detected)[0]) for _ in range(200))
    assert set(singles) == {1, 3} and min(singles.values()) > 60         # both, roughly evenly
    for _ in range(20):
        three = choose_views(4, 3, rng, detected)
        assert {1, 3} <= set(three.tolist()) and len(set(three.tolist())) == 3
    # No detections, or every viewpoint read: a uniform draw over all of them.
    assert set(int(choose_views(4, 1, rng, np.zeros(4, bool))[0]) for _ in range(100)) == {0, 1, 2, 3}
    assert sorted(choose_views(4, 4, rng, detected).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("prefer", [True, False])
def test_single_view_phase_reads_the_detected_viewpoint(shards, prefer):
    cfg = replace(PLAIN, viewpoints="yolo", prefer_detected_views=prefer)
    stream = ShardStream(shards, "train", cfg, viewpoints_per_sample=1, seed=3)
    stored = {}
    for path in sorted(shards.glob("*.h5")):
        with h5py.File(path, "r") as h5:
            for cid, w, az, det in zip(h5["clip_id"].asstr()[:], h5["window_index"][:],
                                       h5["views/yolo/azimuth_rad"][:],
                                       h5["views/yolo/from_detection"][:]):
                stored[(cid, int(w))] = az[det.astype(bool)]
    read = [(key, float(az[0])) for batch in stream
            for key, az in zip(zip(batch["clip_id"], batch["window_index"].tolist()),
                               batch["azimuth_rad"])]
    on_detection = [np.isclose(stored[key], az).any() for key, az in read]
    assert len(read) == 48
    if prefer:
        assert all(on_detection)
    else:                                   # 1 of 4 stored viewpoints is the detection
        assert 0.05 < np.mean(on_detection) < 0.6


def test_mixed_views_take_the_object_share_and_keep_bank_views_apart():
    rng = np.random.default_rng(0)
    flags = np.array([True, True, False, False, True, False])
    object_angles = (np.deg2rad([0.0, 90.0, 10.0, 20.0, -90.0, 30.0]), np.zeros(6))
    bank_az = np.deg2rad(np.arange(-180.0, 180.0, 22.5))                   # 16, 22.5 deg apart
    bank_angles = (bank_az, np.zeros(16))
    counts = Counter()
    for _ in range(400):
        objects, bank = choose_mixed_views(4, 0.3, rng, flags, object_angles, bank_angles)
        counts[len(objects)] += 1
        assert len(objects) + len(bank) == 4 and len(set(bank.tolist())) == len(bank)
        assert set(objects.tolist()) <= {0, 1, 4}                  # only detected viewpoints
        for view in bank:                    # 16 bank views leave room: all >= 30 deg away
            gaps = np.abs(np.angle(np.exp(1j * (bank_az[view] - object_angles[0][objects]))))
            assert np.all(gaps >= np.deg2rad(30.0) - 1e-9)
    # 0.3 x 4 = 1.2 object views: 1 or 2, with mean 1.2 (stochastic rounding).
    assert set(counts) == {1, 2} and abs((counts[1] + 2 * counts[2]) / 400 - 1.2) < 0.08
    none, bank = choose_mixed_views(4, 1.0, rng, np.zeros(6, bool), object_angles, bank_angles)
    assert len(none) == 0 and len(bank) == 4                       # nothing detected: bank only


def test_object_view_share_mixes_detected_viewpoints_into_training_samples(shards):
    """The factory's yolo set holds one detection (view 0) per sample; with a share of 0.5
    and K = 2, every sample gets exactly that view plus one random view, in random order,
    with the crops and features read from the matching set."""
    cfg = replace(PLAIN, views_per_step=2, object_view_share=0.5)
    stored = {}
    for path in sorted(shards.glob("*.h5")):
        with h5py.File(path, "r") as h5:
            for row, (cid, w) in enumerate(zip(h5["clip_id"].asstr()[:], h5["window_index"][:])):
                stored[(cid, int(w))] = {
                    source: (h5[f"views/{source}/azimuth_rad"][row],
                             h5[f"views/{source}/crops"][row])
                    for source in ("random", "yolo")}
    stream = ShardStream(shards, "train", cfg, seed=2)
    stream.set_epoch(0, 2, object_view_share=0.5)
    positions = Counter()
    for batch in stream:
        for i, key in enumerate(zip(batch["clip_id"], batch["window_index"].tolist())):
            yolo_az, yolo_crops = stored[key]["yolo"]
            random_az, random_crops = stored[key]["random"]
            azimuths = batch["azimuth_rad"][i].numpy()
            on_object = np.isclose(azimuths, yolo_az[0])
            assert on_object.sum() == 1
            assert np.isclose(azimuths[~on_object][0], random_az).any()
            view = int(np.flatnonzero(on_object)[0])
            expected = yolo_crops[0].transpose(3, 0, 1, 2).astype(np.float32) / 255.0
            np.testing.assert_allclose(batch["video"][i, view].numpy(), expected, atol=1e-6)
            positions[view] += 1
    assert set(positions) == {0, 1}
    # Evaluation streams and single-view phases ignore the share.
    plain = ShardStream(shards, "train", cfg, training=False)
    plain.set_epoch(0, 2, object_view_share=0.5)
    first = next(iter(plain))
    key = (first["clip_id"][0], int(first["window_index"][0]))
    np.testing.assert_allclose(first["azimuth_rad"][0].numpy(), stored[key]["random"][0][:2])


def test_batches_do_not_depend_on_the_order_shards_finished_in(shards, tmp_path):
    # Parallel preprocessing appends index records in completion order, which varies between
    # runs; the same shards listed in another order must give the same training stream.
    import shutil

    shuffled = tmp_path / "shuffled"
    shutil.copytree(shards, shuffled)
    lines = (shuffled / "shards.jsonl").read_text().splitlines()
    (shuffled / "shards.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    cfg = replace(PLAIN, views_per_step=2)
    first = sample_ids(ShardStream(shards, "train", cfg, seed=5))
    second = sample_ids(ShardStream(shuffled, "train", cfg, seed=5))
    assert len(first) == 48 and first == second


def test_clip_based_epochs_visit_every_clip_samples_per_clip_times(shards):
    """The authors' epoch: every clip twice, a random stored window per visit; steps per
    epoch = clips x samples_per_clip / batch; another epoch draws other windows, the same seed
    the same ones."""
    from collections import Counter
    from dataclasses import replace

    cfg = replace(PLAIN, samples_per_clip=2, batch_size=4)
    stream = ShardStream(shards, "train", cfg, seed=3)
    assert (stream.n_clips, stream.n_samples, stream.n_units) == (24, 48, 48)
    assert stream.steps_per_epoch == 24 * 2 // 4

    def epoch(seed, number):
        s = ShardStream(shards, "train", cfg, seed=seed)
        s.set_epoch(number)
        return [(c, int(w)) for b in s.iter_worker(0, 1)
                for c, w in zip(b["clip_id"], b["window_index"])]

    first = epoch(3, 0)
    assert len(first) == 48 and set(Counter(c for c, _ in first).values()) == {2}
    assert epoch(3, 0) == first                                   # seeded, reproducible
    assert sorted(epoch(3, 1)) != sorted(first)                   # other windows next epoch
    validation = ShardStream(shards, "train", cfg, training=False, equal_steps=False)
    assert validation.n_units == 48 and validation.samples_per_clip == 0   # every window


def test_crops_to_video_is_brightness_then_contrast_then_saturation():
    """The one-pass channel-first jitter equals the three operations applied in order on
    float crops (then clipped), with the same draws."""
    from trainer.data import crops_to_video

    rng_data = np.random.default_rng(5)
    crops = rng_data.integers(0, 256, size=(3, 2, 6, 6, 3), dtype=np.uint8)
    video = crops_to_video(crops, 0.3, np.random.default_rng(9))
    assert video.shape == (3, 3, 2, 6, 6) and video.dtype == np.float32
    b, c, s = np.random.default_rng(9).uniform(0.7, 1.3, size=(3, 3, 1, 1, 1))
    x = crops.astype(np.float64) / 255.0                                   # (K, T, S, S, 3)
    weights = np.array([0.299, 0.587, 0.114])
    x = x * b[..., None]                                                   # brightness
    x = (x - (x @ weights).mean(axis=(1, 2, 3), keepdims=True)[..., None]) * c[..., None] \
        + (x @ weights).mean(axis=(1, 2, 3), keepdims=True)[..., None]     # contrast
    gray = (x @ weights)[..., None]
    x = (x - gray) * s[..., None] + gray                                   # saturation
    expected = np.clip(x, 0.0, 1.0).transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(video, expected, atol=2e-6)
    plain = crops_to_video(crops)
    np.testing.assert_allclose(plain, crops.transpose(0, 4, 1, 2, 3) / 255.0, atol=1e-7)
    # the flip inside the kernel is the jitter of the mirrored crops, bit for bit
    mirrored = np.ascontiguousarray(crops[:, :, :, ::-1])
    for strength in (0.0, 0.3):
        np.testing.assert_array_equal(
            crops_to_video(crops, strength, np.random.default_rng(9), flip=True),
            crops_to_video(mirrored, strength, np.random.default_rng(9)))


def test_each_step_draws_k_of_the_stored_bank_reproducibly(tmp_path):
    """A bank of 8 stored viewpoints, K = 4 drawn per sample and step: different subsets for a
    window across epochs, the same ones for the same seed and epoch (a resumed run restarts
    its epoch with the same draws), also when two DDP ranks share the epoch."""
    make_shards(tmp_path, n_clips=6, windows_per_clip=2, samples_per_shard=4, seed=4, k=8,
                crop_size=8, n_frames=2, n_mels=8, n_frames_audio=4)
    cfg = replace(PLAIN, views_per_step=4, batch_size=2)

    def draws(epoch, seed=0, world_size=1):
        out = {}
        for rank in range(world_size):
            ds = ShardStream(tmp_path, "train", cfg, seed=seed, rank=rank,
                             world_size=world_size)
            ds.set_epoch(epoch)
            for batch in ds.iter_worker(0, 1):
                for cid, w, az in zip(batch["clip_id"], batch["window_index"],
                                      batch["azimuth_rad"].numpy()):
                    out[(cid, int(w))] = tuple(np.round(np.sort(az), 5))
        return out

    first, again, later = draws(3), draws(3), draws(4)
    assert first == again and len(first) == 12
    assert all(len(set(views)) == 4 for views in first.values())
    assert sum(first[key] != later[key] for key in first) >= 10       # C(8, 4) = 70 subsets
    assert draws(3, world_size=2) == draws(3, world_size=2)
    assert draws(3, seed=1) != first


def test_every_drawn_subset_keeps_the_banks_spacing():
    """A stored bank keeps every pair >= the minimum spacing, so any K of it does too."""
    from pipeline.spatial import angular_distance_rad
    from pipeline.viewpoints import random_viewpoints

    rng = np.random.default_rng(0)
    bank = random_viewpoints(rng, 16, max_elevation_rad=np.radians(60.0),
                             min_separation_rad=np.radians(30.0), fov_min_rad=np.radians(25.0),
                             fov_max_rad=np.radians(90.0))
    for _ in range(200):
        views = choose_views(16, 4, rng)
        az, el = bank.azimuth_rad[views], bank.elevation_rad[views]
        gaps = angular_distance_rad(az[:, None], el[:, None], az[None, :], el[None, :])
        assert np.degrees(gaps[~np.eye(4, dtype=bool)]).min() >= 30.0 - 1e-3
