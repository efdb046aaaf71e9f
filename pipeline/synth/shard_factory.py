"""Tiny, schema-complete v1 shards whose crops and audio features share a learnable structure.

Used by the trainer tests, the trainer benchmark and the evaluation tests. Nothing is rendered
or decoded: features are written directly, but they obey the spatial conventions of
``docs/CONVENTIONS.md`` so that the relations a model must learn are the physical ones.

Each clip has one sound source at ``(azimuth_s, elevation_s)`` with a *hue* ``h``:
- AVC cue: crops are tinted with the clip's colour hsv(h); the audio spectrum is a bump centred
  on mel band ``M * (0.1 + 0.8 h)``. Matching colour to spectrum identifies the clip.
- AVSA cue: for viewpoint k the source direction in the viewpoint's frame is
  ``d' = R_y(el_k) R_z(-az_k) d_s`` (yaw, then pitch). The rotated FOA of a plane wave has
  channel gains ``W = 1, Y = d'_y, Z = d'_z, X = d'_x``, so the log-mel of Y/Z/X carries
  ``20 log10 |d'|`` offsets; the IV channels carry ``d'`` itself in the bands the source
  occupies; the cardioid beam has gain ``(1 + d'_x) / 2``. The crop is lit from the source:
  brightness ``0.45 + 0.3 d'_x`` with a left-right gradient ``+ d'_y`` (left brighter when the
  source is to the left) and an up-down gradient ``d'_z``, and a bright disc where the source
  projects into the (gnomonic, 90 degree) crop. A horizontally flipped crop therefore matches
  the mirrored audio (``I_y -> -I_y``), like real data.
- AVTS cue: every window has an event at a random time ``t0``; the audio envelope and the disc
  brightness over the T frames peak at ``t0``.

Samples are written clip by clip (windows of one clip stay in one shard), ``shards.jsonl`` is
appended through :func:`pipeline.shards.append_jsonl`, and ``norm_stats.json`` (training split
only) through :func:`pipeline.shards.write_norm_stats`.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.shards import (INDEX_NAME, MAX_DETECTIONS, MAX_GT_OBJECTS, NORM_STATS_NAME,
                             VIEWPOINT_SOURCES, append_jsonl, write_shard)
from pipeline.spatial import direction_vector, direction_to_equirect_pixel
from pipeline.shards import write_norm_stats

NOISE_FLOOR_DB = -60.0
FOV_RAD = np.deg2rad(90.0)


def _rotate_to_view(direction: np.ndarray, azimuth_rad: float, elevation_rad: float) -> np.ndarray:
    """Direction (3,) seen from a viewpoint: ``R_y(el) R_z(-az) d`` (CONVENTIONS.md)."""
    ca, sa = np.cos(-azimuth_rad), np.sin(-azimuth_rad)
    rz = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    cb, sb = np.cos(elevation_rad), np.sin(elevation_rad)
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    return ry @ rz @ direction


def _envelope(times: np.ndarray, event_time: float) -> np.ndarray:
    return 0.3 + 0.7 * np.exp(-((times - event_time) / 0.12) ** 2)


def _view_features(d_view: np.ndarray, spectrum_db: np.ndarray, envelope_db: np.ndarray,
                   band_weight: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Audio features of one viewpoint. spectrum_db (M,), envelope_db (F,), band_weight (M,)."""
    level_db = spectrum_db[:, None] + envelope_db[None, :]                        # (M, F)
    gains = np.array([1.0, d_view[1], d_view[2], d_view[0]])                      # W, Y, Z, X
    gain_db = 20.0 * np.log10(np.abs(gains) + 1e-3)
    logmel_foa = np.maximum(level_db[None] + gain_db[:, None, None], NOISE_FLOOR_DB)
    logmel_foa = logmel_foa + rng.normal(0.0, 0.5, logmel_foa.shape)
    iv = d_view[:, None, None] * band_weight[None, :, None] * np.ones_like(level_db)[None]
    iv = iv + rng.normal(0.0, 0.03, iv.shape)
    beam_db = 20.0 * np.log10(0.5 + 0.5 * d_view[0] + 1e-3)
    logmel_beam = np.maximum(level_db + beam_db, NOISE_FLOOR_DB)[None]
    logmel_beam = logmel_beam + rng.normal(0.0, 0.5, logmel_beam.shape)
    return {"logmel_foa": logmel_foa, "iv": iv, "logmel_beam": logmel_beam}


def _view_crops(d_view: np.ndarray, colour: np.ndarray, frame_gain: np.ndarray, crop_size: int,
                rng: np.random.Generator) -> np.ndarray:
    """Crops (T, S, S, 3) uint8 of one viewpoint, lit from the source direction."""
    coords = (np.arange(crop_size) + 0.5) / crop_size * 2.0 - 1.0                # -1 .. 1
    col, row = np.meshgrid(coords, coords)                                         # (S, S)
    # Image left (col < 0) looks toward +y (left); image top (row < 0) toward +z (up).
    light = 0.45 + 0.3 * d_view[0] - 0.25 * d_view[1] * col - 0.25 * d_view[2] * row
    frames = np.repeat(light[None, :, :, None] * colour[None, None, None, :],
                       len(frame_gain), axis=0)
    if d_view[0] > 0.2:
        half_width = np.tan(FOV_RAD / 2.0)
        centre_col = -d_view[1] / d_view[0] / half_width
        centre_row = -d_view[2] / d_view[0] / half_width
        disc = np.exp(-((col - centre_col) ** 2 + (row - centre_row) ** 2) / 0.08)
        frames = frames + disc[None, :, :, None] * frame_gain[:, None, None, None] * 0.6
    frames = frames + rng.normal(0.0, 0.03, frames.shape)
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _viewpoints(source: str, azimuth_s: float, elevation_s: float, k: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K viewpoints spread around the sphere; for ``yolo`` the first looks at the source."""
    azimuth = rng.uniform(-np.pi, np.pi) + 2.0 * np.pi * np.arange(k) / k
    azimuth = azimuth + rng.uniform(-0.3, 0.3, k)
    elevation = rng.uniform(np.deg2rad(-30.0), np.deg2rad(30.0), k)
    from_detection = np.zeros(k, dtype=bool)
    if source == "yolo":
        azimuth[0] = azimuth_s + rng.uniform(-0.1, 0.1)
        elevation[0] = elevation_s + rng.uniform(-0.1, 0.1)
        from_detection[0] = True
    azimuth = np.mod(azimuth + np.pi, 2.0 * np.pi) - np.pi
    return azimuth, elevation, from_detection


def make_sample(clip_hue: float, azimuth_s: float, elevation_s: float, event_time: float, *,
                k: int, crop_size: int, n_frames: int, n_mels: int, n_frames_audio: int,
                n_audio_samples: int, keyframe_hw: tuple[int, int],
                rng: np.random.Generator) -> dict[str, Any]:
    """All schema fields of one sample (no leading N axis)."""
    colour = np.array(colorsys.hsv_to_rgb(clip_hue, 0.8, 1.0))
    bands = np.arange(n_mels)
    centre_band = n_mels * (0.1 + 0.8 * clip_hue)
    bump = np.exp(-0.5 * ((bands - centre_band) / (0.06 * n_mels)) ** 2)        # (M,)
    spectrum_db = -40.0 + 35.0 * bump
    band_weight = bump / (bump + 0.1)
    audio_times = (np.arange(n_frames_audio) + 0.5) / n_frames_audio
    video_times = 0.25 + 0.5 * (np.arange(n_frames) + 0.5) / n_frames               # middle 0.5 s
    envelope_db = 20.0 * np.log10(_envelope(audio_times, event_time))
    frame_gain = _envelope(video_times, event_time)
    d_source = direction_vector(azimuth_s, elevation_s)

    sample: dict[str, Any] = {}
    for source in VIEWPOINT_SOURCES:
        azimuth, elevation, from_detection = _viewpoints(source, azimuth_s, elevation_s, k, rng)
        features = {"logmel_foa": [], "iv": [], "logmel_beam": []}
        crops = []
        for view in range(k):
            d_view = _rotate_to_view(d_source, azimuth[view], elevation[view])
            for key, value in _view_features(d_view, spectrum_db, envelope_db, band_weight,
                                             rng).items():
                features[key].append(value)
            crops.append(_view_crops(d_view, colour, frame_gain, crop_size, rng))
        prefix = f"views/{source}"
        sample[f"{prefix}/azimuth_rad"] = azimuth
        sample[f"{prefix}/elevation_rad"] = elevation
        sample[f"{prefix}/fov_rad"] = np.full(k, FOV_RAD)
        sample[f"{prefix}/from_detection"] = from_detection
        sample[f"{prefix}/crops"] = np.stack(crops)
        for key, values in features.items():
            sample[f"{prefix}/{key}"] = np.stack(values)

    # Unrotated FOA: a plane wave of noise with the event envelope (ambiX, SN3D).
    times = (np.arange(n_audio_samples) + 0.5) / n_audio_samples
    signal = rng.normal(0.0, 0.1, n_audio_samples) * _envelope(times, event_time)
    gains = np.array([1.0, d_source[1], d_source[2], d_source[0]])
    sample["foa_acn_sn3d"] = gains[:, None] * signal[None, :]

    height, width = keyframe_hw
    keyframe = np.tile(colour * 0.4, (height, width, 1))
    col, row = direction_to_equirect_pixel(azimuth_s, elevation_s, width, height)
    col, row = float(col), float(row)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    keyframe[(np.abs(cols - col) <= 1.5) & (np.abs(rows - row) <= 1.5)] = 1.0
    sample["keyframe"] = (keyframe * 255).astype(np.uint8)

    class_id = int(clip_hue * 8)
    box = np.full((MAX_DETECTIONS, 4), 0.0)
    box[0] = [col - 2, row - 2, col + 2, row + 2]
    sample["detections/count"] = 1
    sample["detections/boxes_xyxy"] = box
    sample["detections/class_id"] = np.r_[class_id, -np.ones(MAX_DETECTIONS - 1)]
    sample["detections/confidence"] = np.r_[0.9, np.zeros(MAX_DETECTIONS - 1)]
    sample["detections/azimuth_rad"] = np.r_[azimuth_s, np.zeros(MAX_DETECTIONS - 1)]
    sample["detections/elevation_rad"] = np.r_[elevation_s, np.zeros(MAX_DETECTIONS - 1)]
    sample["gt/count"] = 1
    sample["gt/class_id"] = np.r_[class_id, -np.ones(MAX_GT_OBJECTS - 1)]
    sample["gt/azimuth_rad"] = np.r_[azimuth_s, np.zeros(MAX_GT_OBJECTS - 1)]
    sample["gt/elevation_rad"] = np.r_[elevation_s, np.zeros(MAX_GT_OBJECTS - 1)]
    sample["gt/sounding"] = np.r_[True, np.zeros(MAX_GT_OBJECTS - 1, dtype=bool)]
    sample["gt/visible"] = np.r_[True, np.zeros(MAX_GT_OBJECTS - 1, dtype=bool)]
    return sample


def make_shards(out_dir: str | Path, n_clips: int = 16, windows_per_clip: int = 2, k: int = 4,
                crop_size: int = 32, n_frames: int = 4, n_mels: int = 32,
                n_frames_audio: int = 25, samples_per_shard: int = 8, seed: int = 0, *,
                split: str = "train", n_audio_samples: int = 240,
                keyframe_hw: tuple[int, int] = (16, 32),
                compression: str | None = "gzip", crop_codec: str = "raw",
                feature_codec: str = "float16") -> dict[str, Any]:
    """Write ``n_clips * windows_per_clip`` samples of ``split`` into shards under ``out_dir``.

    Shards hold ``samples_per_shard // windows_per_clip`` whole clips each (at least one); they
    are named ``<split>-00000.h5``... and appended to ``shards.jsonl``, so calling this again
    with ``split="val"`` adds a validation split to the same folder. For ``split="train"`` the
    per-mel-band statistics of the written features are saved to ``norm_stats.json``.

    Returns ``{"paths": [...], "n_samples": int, "records": [...]}``.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, sum(map(ord, split))])
    clips_per_shard = max(1, samples_per_shard // windows_per_clip)
    sizes = dict(k=k, crop_size=crop_size, n_frames=n_frames, n_mels=n_mels,
                 n_frames_audio=n_frames_audio, n_audio_samples=n_audio_samples,
                 keyframe_hw=keyframe_hw)
    records, paths = [], []
    feature_sums: dict[str, list[np.ndarray]] = {"logmel_foa": [], "iv": [], "logmel_beam": []}
    for shard_index, first_clip in enumerate(range(0, n_clips, clips_per_shard)):
        rows: list[dict[str, Any]] = []
        for clip in range(first_clip, min(first_clip + clips_per_shard, n_clips)):
            clip_hue = rng.uniform(0.0, 1.0)
            azimuth_s = rng.uniform(-np.pi, np.pi)
            elevation_s = rng.uniform(np.deg2rad(-20.0), np.deg2rad(20.0))
            for window in range(windows_per_clip):
                sample = make_sample(clip_hue, azimuth_s, elevation_s, rng.uniform(0.2, 0.8),
                                     rng=rng, **sizes)
                sample.update({"clip_id": f"{split}-clip{clip:04d}", "split": split,
                               "window_index": window, "audio_start_s": float(window),
                               "video_start_s": window + 0.25})
                rows.append(sample)
        samples = {name: [row[name] for row in rows] for name in rows[0]}
        samples = {name: (values if name in ("clip_id", "split") else np.stack(values))
                   for name, values in samples.items()}
        for key in feature_sums:
            for source in VIEWPOINT_SOURCES:
                feature_sums[key].append(samples[f"views/{source}/{key}"])
        path = out_dir / f"{split}-{shard_index:05d}.h5"
        attrs = {"config_hash": f"factory-{seed}", "sample_rate": 24000, "n_mels": n_mels,
                 "n_frames": n_frames_audio, "fps": 16, "generator": "pipeline/synth/shard_factory.py"}
        records.append(write_shard(path, samples, attrs, compression=compression,
                                   crop_codec=crop_codec, feature_codec=feature_codec))
        paths.append(path)
    append_jsonl(out_dir / INDEX_NAME, records)
    if split == "train":
        stats = {}
        for key, arrays in feature_sums.items():
            values = np.concatenate(arrays).astype(np.float64)            # (N, K, C, M, F)
            values = np.moveaxis(values, 2, 0).reshape(values.shape[2], -1, n_mels,
                                                       n_frames_audio)   # (C, *, M, F)
            stats[key] = (values.mean(axis=(1, 3)), values.std(axis=(1, 3)))
        write_norm_stats(out_dir / NORM_STATS_NAME, stats)
    return {"paths": paths, "n_samples": n_clips * windows_per_clip, "records": records}
