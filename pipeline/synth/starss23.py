"""A synthetic stand-in for STARSS23: the real layout, file names, CSV format and 100 ms label
rate, written from exact ground truth, so the importer, pretraining and the SELD evaluation run
offline and in tests.

    python -m pipeline.synth.cli starss23 --out data/starss23_synth

Each recording is a synthetic scene of :mod:`pipeline.synth.scenes` (its six object classes, so
class indices are 0..5, not STARSS23's 13; the names are in ``SYNTHETIC.json``), with
``p_same_class`` > 0 so that some frames hold two or three simultaneous events of one class (the
case multi-ACCDOA exists for). Files, per recording ``<name>`` of split ``<split>``::

    foa_dev/<split>/<name>.wav        4-channel ambiX, PCM 16 bit, scene sample rate
    video_dev/<split>/<name>.mp4      equirectangular H.264 video without audio
    metadata_dev/<split>/<name>.csv   frame, class, source, azimuth, elevation (integer degrees)

A sounding object (visible or not) is labelled in 100 ms frame ``k`` when its event envelope
averaged over ``[0.1 k, 0.1 (k + 1))`` exceeds one half; its direction is the track at the
frame's centre. ``source`` is the object's id in the scene. The scene record of every
recording is kept in ``ground_truth/<split>/<name>.json``. Resumable: a recording whose three
files exist is skipped (the CSV is written last).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.ground_truth import envelope, object_track_at, write_synthetic_marker
from pipeline.importers.starss23 import (AUDIO_FOLDER, LABEL_FOLDER, LABEL_HOP_S, STARSS23_SPLITS,
                               VIDEO_FOLDER, LabelRow, write_label_csv)
from pipeline.synth.audio import scene_foa
from pipeline.synth.render import render_frames
from pipeline.synth.scenes import OBJECT_CLASSES, SceneConfig, sample_scene
from pipeline.synth.write import write_clip

#: Seed namespace of this generator (videos use 0-2 for their splits).
_SEED_NAMESPACE = 7
#: Samples of the envelope averaged per label frame.
_ENVELOPE_POINTS = 10


@dataclass(frozen=True)
class Starss23SynthConfig:
    """Sizes of the synthetic STARSS23 set: recordings per official split, seconds each."""

    # Many short recordings rather than 12 of 20 s: a SELD head trained on 12 recordings (25
    # sources) memorises their class-direction pairs (the DCASE-feature arm: train LE 2.8 deg,
    # dev-test LE 75 deg); 100 of 4 s hold ~230 sources (dev-test LE 34 -> 24 deg at 100 -> 300).
    n_train_per_split: int = 50          # dev-train-sony and dev-train-tau
    n_test_per_split: int = 12           # dev-test-sony and dev-test-tau
    duration_s: float = 4.0
    width: int = 256
    fps: int = 10
    sample_rate: int = 24000
    p_same_class: float = 0.3
    max_sources: int = 3

    def scene(self) -> SceneConfig:
        return SceneConfig(width=self.width, height=self.width // 2, fps=self.fps,
                           duration_s=self.duration_s, sample_rate=self.sample_rate,
                           p_same_class=self.p_same_class, max_sources=self.max_sources)


def recording_name(split: str, index: int) -> str:
    """STARSS23-style names: fold3 trains, fold4 tests; room 1 for Sony, room 2 for TAU."""
    fold = 3 if split.startswith("dev-train") else 4
    room = 1 if split.endswith("sony") else 2
    return f"fold{fold}_room{room}_mix{index + 1:03d}"


def recording_jobs(cfg: Starss23SynthConfig) -> list[tuple[str, int]]:
    """``(split, index)`` of every recording, in a fixed order."""
    counts = {split: cfg.n_train_per_split if split.startswith("dev-train")
              else cfg.n_test_per_split for split in STARSS23_SPLITS}
    return [(split, index) for split in STARSS23_SPLITS for index in range(counts[split])]


def label_rows(gt: dict, hop_s: float = LABEL_HOP_S) -> list[LabelRow]:
    """The 100 ms label rows of a scene record (see the module docstring); degrees."""
    n_frames = int(math.floor(gt["duration_s"] / hop_s + 1e-9))
    offsets = (np.arange(_ENVELOPE_POINTS) + 0.5) / _ENVELOPE_POINTS * hop_s
    frame_starts = np.arange(n_frames) * hop_s
    rows = []
    for obj in gt["objects"]:
        if not obj["sounding"]:
            continue
        level = envelope(obj["on_intervals_s"], frame_starts[:, None] + offsets[None, :])
        active = np.flatnonzero(level.mean(axis=1) > 0.5)
        azimuth, elevation = object_track_at(obj, gt["fps"], frame_starts[active] + hop_s / 2)
        for frame, az, el in zip(active, np.degrees(azimuth), np.degrees(elevation)):
            az = float(np.round(az))
            rows.append(LabelRow(int(frame), int(obj["class_id"]), int(obj["object_id"]),
                                 -180.0 if az >= 180.0 else az, float(np.round(el))))
    return rows


def write_recording(out_root: Path, split: str, index: int, seed: int,
                    cfg: Starss23SynthConfig) -> bool:
    """Write one recording's audio, video, labels and scene record unless all exist; returns
    whether it was written now."""
    name = recording_name(split, index)
    audio = out_root / AUDIO_FOLDER / split / f"{name}.wav"
    video = out_root / VIDEO_FOLDER / split / f"{name}.mp4"
    labels = out_root / LABEL_FOLDER / split / f"{name}.csv"
    if audio.is_file() and video.is_file() and labels.is_file():
        return False
    split_index = STARSS23_SPLITS.index(split)
    gt = sample_scene(cfg.scene(), (seed, _SEED_NAMESPACE, split_index, index), name)
    foa = scene_foa(gt)
    audio.parent.mkdir(parents=True, exist_ok=True)
    partial = audio.with_name(audio.stem + ".partial.wav")
    sf.write(partial, foa.T, gt["sample_rate"], subtype="PCM_16", format="WAV")
    partial.replace(audio)
    write_clip(video, render_frames(gt), None, fps=gt["fps"], sample_rate=gt["sample_rate"])
    record = out_root / "ground_truth" / split / f"{name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(gt, separators=(",", ":")), encoding="utf-8")
    write_label_csv(labels, label_rows(gt))
    return True


def write_marker(out_root: Path, seed: int, cfg: Starss23SynthConfig) -> Path:
    """``SYNTHETIC.json`` with the generator's settings and the class names by index."""
    return write_synthetic_marker(out_root, "pipeline.synth.starss23",
                                  settings={"seed": seed, "config": dataclasses.asdict(cfg)},
                                  class_names=[c.name for c in OBJECT_CLASSES],
                                  label_hop_s=LABEL_HOP_S)
