"""Crops stored as JPEG files (the preprocessing default) read back as the uint8 RGB arrays a
raw shard gives: colour order, error bound, every index pattern the readers use, the trainer's
reader on both codecs, and v1 shards (one file per frame) still read."""

import h5py
import numpy as np
import pytest

from pipeline.shards import (ShardIndex, decode_jpeg_frames, decode_jpeg_strips,
                             encode_jpeg_frames, encode_jpeg_strips, files_crc32, open_shard,
                             stored_crops)
from pipeline.synth.shard_factory import make_shards
from trainer.data import ShardReader


def test_jpeg_round_trip_keeps_the_colour_order_and_detail():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255                                               # RGB: pure red
    decoded = decode_jpeg_frames(encode_jpeg_frames(red[None], 95), (16, 16, 3))[0]
    assert decoded[..., 0].min() > 240 and decoded[..., 1:].max() < 15
    # Smooth content, like the crops of a natural scene (bench/preprocess.py measures 0.7 grey
    # levels of error on real crops at quality 95).
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (3, 2, 1, 1, 3))
    smooth = 128 + 60 * np.sin(2 * np.pi * (xx + 0.5 * yy)[None, None, :, :, None] + phases)
    frames = smooth.astype(np.uint8)
    encoded = encode_jpeg_frames(frames, 95)
    assert encoded.shape == (3, 2) and encoded.dtype == object
    back = decode_jpeg_frames(encoded, (32, 32, 3))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 2.0
    single = decode_jpeg_frames(encoded[1, 0], (32, 32, 3))      # one element, as h5py gives it
    np.testing.assert_array_equal(single, back[1, 0])


def test_jpeg_strips_round_trip_without_mixing_their_frames():
    """One file per viewpoint, frames stacked: each frame decodes as if alone. Frames of
    opposite colours side by side in time are the worst case for the decoder's chroma
    interpolation across a frame boundary (4:2:0 strips smeared each frame's edge rows)."""
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    smooth = 128 + 60 * np.sin(2 * np.pi * (xx + 0.5 * yy))[None, :, :, None]
    frames = np.repeat(np.repeat(smooth, 4, axis=0), 3, axis=3).astype(np.uint8)  # (4, 32, 32, 3)
    frames[0::2, ..., 0], frames[0::2, ..., 2] = 230, 20                  # red-ish, blue-ish,
    frames[1::2, ..., 0], frames[1::2, ..., 2] = 20, 230                  # alternating in time
    views = np.stack([frames, frames[::-1]])                              # (K=2, T, S, S, 3)
    encoded = encode_jpeg_strips(views, 95)
    assert encoded.shape == (2,) and encoded.dtype == object
    back = decode_jpeg_strips(encoded, (32, 32, 3), 4)
    assert back.shape == views.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - views.astype(int))
    assert error.mean() < 2.0
    edge_rows = error[:, :, [0, -1]].mean()          # each frame's top and bottom rows
    assert edge_rows < 3.0, edge_rows
    np.testing.assert_array_equal(decode_jpeg_strips(encoded[1], (32, 32, 3), 4), back[1])


def test_crops_of_bgra_frames_code_to_the_same_files_as_rgb():
    """Preprocessing cuts JPEG crops from BGRA frames (rgb_to_bgra): OpenCV's 4-channel remap
    gives each channel the values of the 3-channel one, and its encoder drops the alpha, so the
    strips are the same bytes as those of the RGB crops; raw crops stay RGB only."""
    from pipeline.crops import CropSampler, rgb_to_bgra
    from pipeline.shards import encode_sample_crops

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (4, 64, 128, 3), dtype=np.uint8)
    frames[:, :, :64] //= 4                                      # edges and flat parts
    sampler = CropSampler(rng.uniform(-np.pi, np.pi, 6), rng.uniform(-1.4, 1.4, 6),
                          rng.uniform(0.6, 2.0, 6), 32, 128, 64)
    scratch = np.zeros((4, 64, 128, 4), np.uint8)
    assert rgb_to_bgra(frames, scratch) is scratch
    np.testing.assert_array_equal(scratch, rgb_to_bgra(frames))
    with pytest.raises(ValueError, match="out"):
        rgb_to_bgra(frames, np.zeros((4, 64, 128, 3), np.uint8))
    rgb, bgra = sampler.crop(frames), sampler.crop(scratch)
    assert bgra.shape == (6, 4, 32, 32, 4)
    np.testing.assert_array_equal(bgra[..., 2::-1], rgb)
    assert np.all(bgra[..., 3] == 255)
    from_rgb = encode_jpeg_strips(rgb, 95)
    from_bgra = encode_jpeg_strips(bgra, 95, layout="bgra")
    for a, b in zip(from_rgb, from_bgra):
        np.testing.assert_array_equal(a, b)
    coded = encode_sample_crops(iter(bgra), "jpeg", 95, layout="bgra")
    assert coded.frame_shape == (32, 32, 3) and coded.n_frames == 4
    np.testing.assert_array_equal(decode_jpeg_strips(coded.files, (32, 32, 3), 4),
                                  decode_jpeg_strips(from_rgb, (32, 32, 3), 4))
    with pytest.raises(Exception, match="BGRA frames"):
        encode_jpeg_strips(rgb, 95, layout="bgra")
    with pytest.raises(ValueError, match="layout"):
        encode_jpeg_strips(rgb, 95, layout="bgr")
    with pytest.raises(ValueError, match="raw crops are stored as RGB"):
        encode_sample_crops(bgra, "raw", layout="bgra")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    for codec in ("raw", "jpeg"):
        make_shards(root / codec, n_clips=4, windows_per_clip=2, samples_per_shard=8,
                    crop_codec=codec)
    return root


def test_stored_crops_index_like_the_raw_dataset(both):
    raw_path = ShardIndex.load(both / "raw").paths()[0]
    jpeg_path = ShardIndex.load(both / "jpeg").paths()[0]
    with open_shard(raw_path) as raw_h5, open_shard(jpeg_path) as jpeg_h5:
        raw = stored_crops(raw_h5, "views/random/crops")
        jpeg = stored_crops(jpeg_h5, "views/random/crops")
        assert (raw.codec, jpeg.codec) == ("raw", "jpeg")
        assert jpeg.shape == raw.shape and len(jpeg) == len(raw)
        for key in (1, (slice(0, 3), slice(0, 2)), (2, [0, 3]), (1, 2, slice(1, 3)),
                    (0, 1, 0)):
            expected, got = raw[key], jpeg[key]
            assert got.shape == expected.shape and got.dtype == np.uint8, key
            # exactly the JPEG round trip of the raw crops (the factory's crops are noisy, so
            # the round trip itself is several grey levels off)
            np.testing.assert_array_equal(got, strip_round_trip(raw[:])[key], err_msg=str(key))
        for views in ([3, 0, 2], [1], [2, 3]):           # take: one sample, any order
            for stored, expected in ((raw, raw[:]), (jpeg, strip_round_trip(raw[:]))):
                np.testing.assert_array_equal(stored.take(1, views), expected[1, views])


def strip_round_trip(crops: np.ndarray) -> np.ndarray:
    """``(..., T, S, S, 3)`` crops through the JPEG strips the writer stores."""
    return decode_jpeg_strips(encode_jpeg_strips(crops), crops.shape[-3:], crops.shape[-4])


def test_v1_shards_with_one_jpeg_per_frame_still_read(both, tmp_path):
    """A schema v1 shard (before the strips): the same crops as an (N, K, T) dataset of
    per-frame files, its CRC over each viewpoint's T files; read through the same path."""
    import shutil

    raw_path = ShardIndex.load(both / "raw").paths()[0]
    v1_path = tmp_path / "v1.h5"
    shutil.copy(ShardIndex.load(both / "jpeg").paths()[0], v1_path)
    with open_shard(raw_path) as raw_h5:
        raw = stored_crops(raw_h5, "views/random/crops")[:]
    files = encode_jpeg_frames(raw, 95)                                  # (N, K, T)
    with h5py.File(v1_path, "r+") as h5:
        h5.attrs["schema_version"] = 1
        del h5["views/random/crops"], h5["views/random/crops_crc32"]
        dataset = h5.create_dataset("views/random/crops", shape=files.shape,
                                    dtype=h5py.vlen_dtype(np.uint8), chunks=(1, *files.shape[1:]))
        dataset[...] = files
        dataset.attrs.update({"codec": "jpeg", "quality": 95,
                              "frame_shape": np.asarray(raw.shape[-3:], np.int64)})
        h5.create_dataset("views/random/crops_crc32", data=files_crc32(files))
    expected = decode_jpeg_frames(files, raw.shape[-3:])
    with open_shard(v1_path) as h5:
        crops = stored_crops(h5, "views/random/crops")
        assert crops.frames_per_file is None and crops.shape == raw.shape
        for key in (1, (2, [0, 3]), (1, 2, slice(1, 3)), (0, 1, 0)):
            np.testing.assert_array_equal(crops[key], expected[key], err_msg=str(key))
        np.testing.assert_array_equal(crops.take(2, [3, 1]), expected[2, [3, 1]])


def test_trainer_reader_gives_the_same_sample_for_both_codecs(both):
    views = np.array([3, 0, 2])
    samples = {}
    for codec in ("raw", "jpeg"):
        reader = ShardReader("train", "random", ("logmel_foa",))
        path = str(ShardIndex.load(both / codec).paths()[0])
        samples[codec] = reader.read(path, 1, views)
        reader.close()
    raw, jpeg = samples["raw"], samples["jpeg"]
    assert jpeg["crops"].shape == raw["crops"].shape == (3, 4, 32, 32, 3)
    np.testing.assert_array_equal(jpeg["crops"], strip_round_trip(raw["crops"]))
    np.testing.assert_array_equal(jpeg["features"]["logmel_foa"].values(),
                                  raw["features"]["logmel_foa"].values())
    np.testing.assert_array_equal(jpeg["azimuth_rad"], raw["azimuth_rad"])


# ----------------------------------------------------------------------------- features

def test_quantised_features_stay_within_their_stated_error():
    from pipeline.features import foa_features
    from pipeline.foa import encode_plane_wave
    from pipeline.shards import dequantise_feature, quantise_feature

    rng = np.random.default_rng(2)
    foa = encode_plane_wave(0.1 * rng.standard_normal(24000).astype(np.float32), 1.0, 0.3)
    foa += 0.01 * rng.standard_normal(foa.shape).astype(np.float32)         # some diffuse noise
    features = foa_features(foa, np.array([0.0, 2.0]), np.array([0.0, -0.4]))
    for key, bound in (("logmel_foa", 100.0 / 510), ("logmel_beam", 100.0 / 510),
                       ("iv", 1.0 / 255)):
        values = features[key][None]                                       # (1, K, C, M, F)
        codes, max_db = quantise_feature(key, values, span_db=100.0)
        assert codes.dtype == np.uint8 and codes.shape == values.shape
        back = dequantise_feature(codes, max_db, 100.0)
        assert np.abs(back - values).max() <= bound * 1.001, key
    # The direction survives: the mean IV of the first view still points at the source.
    iv = dequantise_feature(*quantise_feature("iv", features["iv"][None], 100.0), 100.0)[0, 0]
    assert iv[0].mean() > 0.3 and iv[1].mean() > 0.5


def test_quantisation_kernels_give_the_codes_of_the_array_formulas():
    """The stated map, ``round half up`` of ``(max - x) * 255 / span`` (dB) and of
    ``(clip(x, -1, 1) + 1) * 127.5`` (IV), written as float32 numpy steps; values on the rounding
    edges and outside the ranges included."""
    from pipeline.shards import quantise_feature

    rng = np.random.default_rng(7)
    f32 = np.float32
    db = (rng.uniform(-100, 0, (2, 3, 4, 8, 50)) + rng.uniform(-20, 20, (2, 3, 1, 1, 1))
          ).astype(f32)
    db[0, 0].flat[:400] = -np.arange(400, dtype=f32) * f32(100 / 255 / 2)   # half-steps
    db[1, 2].flat[:10] = -150.0                                             # below the span
    iv = rng.uniform(-1.3, 1.3, (2, 3, 3, 8, 50)).astype(f32)
    iv[0, 0].flat[:400] = (np.arange(400, dtype=f32) / f32(127.5) - 1) / 2
    max_db = db.max(axis=(2, 3, 4))
    expected_db = np.clip((max_db[..., None, None, None] - db) * f32(255 / 100) + f32(0.5),
                          0, 255).astype(np.uint8)
    expected_iv = ((np.clip(iv, -1, 1) + f32(1)) * f32(127.5) + f32(0.5)).astype(np.uint8)
    codes, got_max = quantise_feature("logmel_foa", db, 100.0)
    np.testing.assert_array_equal(codes, expected_db)
    np.testing.assert_array_equal(got_max, max_db)
    codes, none = quantise_feature("iv", iv, 100.0)
    np.testing.assert_array_equal(codes, expected_iv)
    assert none is None
    with pytest.raises(ValueError, match="N, K, C, M, F"):
        quantise_feature("iv", iv[0], 100.0)


def test_stored_features_read_both_codecs_alike(tmp_path):
    from pipeline.shards import stored_features

    for codec in ("float16", "uint8"):
        make_shards(tmp_path / codec, n_clips=2, windows_per_clip=2, samples_per_shard=4,
                    feature_codec=codec)
    paths = {codec: ShardIndex.load(tmp_path / codec).paths()[0] for codec in ("float16",
                                                                              "uint8")}
    with open_shard(paths["float16"]) as h5f, open_shard(paths["uint8"]) as h5q:
        for key, bound in (("logmel_foa", 0.2 + 0.05), ("iv", 1 / 255 + 1e-3)):
            exact = stored_features(h5f, f"views/random/{key}")
            quantised = stored_features(h5q, f"views/random/{key}")
            assert quantised.codec == "uint8" and h5q[f"views/random/{key}"].dtype == np.uint8
            for index in (1, (slice(0, 3), slice(0, 2)), (2, [0, 3]), slice(None)):
                a, b = exact[index], quantised[index]
                assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, index
                # float16 storage itself rounds dB values by up to ~0.03 dB
                assert np.abs(a - b).max() <= bound, (key, index)


def test_feature_code_moments_equal_the_moments_of_the_dequantised_values():
    from pipeline.features import NormStatsAccumulator
    from pipeline.shards import dequantise_feature, feature_code_moments, quantise_feature

    rng = np.random.default_rng(4)
    db = rng.normal(-40.0, 15.0, (3, 5, 4, 16, 30)).astype(np.float32)
    db = np.maximum(db, db.max(axis=(2, 3, 4), keepdims=True) - 100.0)
    iv = rng.uniform(-1.0, 1.0, (3, 5, 3, 16, 30)).astype(np.float32)
    for key, values in (("logmel_foa", db), ("iv", iv)):
        codes, max_db = quantise_feature(key, values, 100.0)
        reference = NormStatsAccumulator()
        reference.update({key: dequantise_feature(codes, max_db, 100.0)})
        count, mean, m2 = feature_code_moments(codes, max_db, 100.0)
        assert count == reference.count[key] == 3 * 5 * 30
        # equal up to the float32 rounding of the dequantised values
        np.testing.assert_allclose(mean, reference.mean[key], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(m2, reference.m2[key], rtol=1e-5)
    with pytest.raises(ValueError, match="max_db shaped"):
        feature_code_moments(codes, np.zeros((2, 5)), 100.0)


def test_rows_coded_before_writing_give_the_shard_the_writer_would_make(tmp_path):
    from pipeline.shards import (FIELDS_BY_NAME, ShardFormatError, encode_sample_crops,
                                 encode_sample_feature, write_shard)
    from pipeline.synth.shard_factory import make_sample

    rng = np.random.default_rng(5)
    samples = [make_sample(0.3 * i, 0.5, 0.1, 0.5, k=2, crop_size=16, n_frames=2, n_mels=8,
                           n_frames_audio=10, n_audio_samples=64, keyframe_hw=(8, 16), rng=rng)
               for i in range(3)]
    for i, sample in enumerate(samples):
        sample.update({"clip_id": f"c{i}", "split": "train", "window_index": 0,
                       "audio_start_s": 0.0, "video_start_s": 0.25})
    fields = {name: [s[name] for s in samples] for name in samples[0]}
    codecs = dict(crop_codec="jpeg", jpeg_quality=90, feature_codec="uint8", feature_span_db=80.0)
    coded = dict(fields)
    for name, rows in fields.items():
        key = name.rsplit("/", 1)[-1]
        if name.endswith("/crops"):
            coded[name] = [encode_sample_crops(row, "jpeg", 90) for row in rows]
        elif name.startswith("views/") and key in ("logmel_foa", "iv", "logmel_beam"):
            coded[name] = [encode_sample_feature(key, row, "uint8", 80.0) for row in rows]
    write_shard(tmp_path / "a.h5", fields, {}, compression="lzf", **codecs)
    write_shard(tmp_path / "b.h5", coded, {}, compression="lzf", **codecs)
    with open_shard(tmp_path / "a.h5") as a, open_shard(tmp_path / "b.h5") as b:
        names = [name for name in FIELDS_BY_NAME if name in a]
        names += [f"{n}_max_db" for n in names if n.endswith(("logmel_foa", "logmel_beam"))]
        for name in names:
            x, y = a[name][()], b[name][()]
            if name.endswith("/crops"):                       # (N, K, T) JPEG files
                x, y = [bytes(v) for v in x.reshape(-1)], [bytes(v) for v in y.reshape(-1)]
                assert x == y, name
            else:
                np.testing.assert_array_equal(x, y, err_msg=name)
        assert b["views/random/iv"].compression is None          # codes are stored raw
        assert b["views/random/crops"].attrs["quality"] == 90
    with pytest.raises(ShardFormatError, match="crop codec 'raw'"):
        write_shard(tmp_path / "c.h5", coded, {}, crop_codec="raw", feature_codec="uint8")
    with pytest.raises(ShardFormatError, match="feature codec 'float16'"):
        write_shard(tmp_path / "d.h5", coded, {}, crop_codec="jpeg", jpeg_quality=90,
                    feature_codec="float16")
    with pytest.raises(ShardFormatError, match="JPEG quality 95"):
        write_shard(tmp_path / "e.h5", coded, {}, crop_codec="jpeg", jpeg_quality=95,
                    feature_codec="uint8", feature_span_db=80.0)
