"""One clip -> its training samples (shard schema v1), the heart of the preprocessing stage.

:func:`clip_samples` decodes a clip with bounded memory and returns one dict per window whose
keys are the names of :data:`pipeline.shards.SAMPLE_FIELDS` and whose values lack the leading N
axis (the shard writer stacks them). It is a function of (clip, config, detector) only: the same
inputs give the same arrays in any process, in any order (all randomness comes from
``windows.clip_rng(seed, clip_id, window_index, stream)``).

Stages, each raising a named error that :class:`ClipError` wraps with the stage name:

``probe``   ffmpeg probe of the video (and separate audio file); 2:1 frame; an audio stream;
            the file's sample rate equals the manifest's ``sample_rate``
            (:class:`SampleRateMismatchError`). A file at another rate *than the pipeline's*
            (``audio.sample_rate``) is fine: ffmpeg resamples it, only a disagreement between
            manifest and file is rejected (a stale manifest or the wrong file).
``audio``   ambiX audio at ``audio.sample_rate`` in blocks of ``decode.audio_block_s`` (memory is
            bounded by one block whatever the clip length); channel count, NaN/inf checks.
``windows`` window plan (:mod:`pipeline.windows`): too short / all silent are errors.
``video``   one streaming pass; ffmpeg scales only the frames the windows need (one chunk in
            memory).
``detect``  seam-aware detection on the middle frame of each window (:mod:`pipeline.detect`).
``sample``  viewpoints, crops, FOA features of each window.
``gt``      ground truth of synthetic clips (``Clip.gt_path``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.crops import CropSampler, resize_keyframe, rgb_to_bgra
from pipeline.decode import (AMBIX_CHANNEL_ORDER, ambisonic_sanity, check_equirectangular,
                             decode_audio, iter_frames_at_indices, layout_contradictions)
from pipeline.detect import Detections, detect_equirect, pad_detections
from pipeline.errors import AmbisonicFormatError, DecodeError, PipelineError
from pipeline.features import foa_features
from pipeline.ffmpeg_bin import MediaInfo, probe
from pipeline.manifest import Clip
from pipeline.preprocess_config import PreprocessConfig
from pipeline.shards import (MAX_DETECTIONS, MAX_GT_OBJECTS, VIEWPOINT_SOURCES,
                             encode_sample_crops, encode_sample_feature)
from pipeline.viewpoints import Viewpoints, detection_viewpoints, random_viewpoints
from pipeline.windows import Window, candidate_starts_s, clip_rng, plan_windows, window_rms_db

__all__ = ["ClipError", "SampleRateMismatchError", "clip_samples", "window_sample", "STAGES"]

log = logging.getLogger(__name__)

STAGES = ("probe", "audio", "windows", "video", "detect", "sample", "gt")
# Sub-streams of clip_rng(seed, clip_id, window_index, stream).
RNG_RANDOM_VIEWS = 0
RNG_YOLO_FILL = 1
#: A ground-truth object "sounds in a window" when its envelope averages at least this over it.
SOUNDING_FRACTION = 0.25


class SampleRateMismatchError(PipelineError):
    """The audio file's sample rate differs from the one its manifest record declares."""


class ClipError(PipelineError):
    """A clip failed at one stage; ``cause`` is the named error that stopped it."""

    def __init__(self, clip_id: str, stage: str, cause: BaseException):
        self.clip_id, self.stage, self.cause = clip_id, stage, cause
        super().__init__(f"clip {clip_id}: {stage} failed: {type(cause).__name__}: {cause}")

    def __reduce__(self):  # picklable across Dask workers (args differ from the message)
        return (type(self), (self.clip_id, self.stage, self.cause))

    def failure_record(self) -> dict[str, str]:
        """The ``failures.jsonl`` entry (without run metadata)."""
        return {"clip_id": self.clip_id, "stage": self.stage,
                "error": type(self.cause).__name__, "reason": str(self.cause)}


class _Stage:
    """``with _Stage(clip_id, "audio"):`` turns any exception into ``ClipError(stage=...)``."""

    def __init__(self, clip_id: str, stage: str):
        self.clip_id, self.stage = clip_id, stage

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, ClipError) and isinstance(exc, Exception):
            raise ClipError(self.clip_id, self.stage, exc) from exc
        return False


# ---------------------------------------------------------------------------------------------
# audio in bounded blocks


def layout_contradiction_reason(foa_acn_sn3d: np.ndarray, declared_order: str | None,
                                contradictions: list[str], start_s: float) -> str:
    """Why a block's channel energies contradict its declared layout, with the file channel
    that most likely holds W (in SN3D, W carries at least the energy of any dipole) and what
    to do."""
    declared_order = declared_order or AMBIX_CHANNEL_ORDER
    energy = np.sum(np.asarray(foa_acn_sn3d, dtype=np.float64) ** 2, axis=1)    # W, Y, Z, X
    loudest = AMBIX_CHANNEL_ORDER[int(np.argmax(energy))]
    file_channel = declared_order.index(loudest)
    likely = ("" if loudest == "W" else
              f"; W is most likely the file's channel {file_channel} (declared {loudest}), as "
              f"the loudest channel")
    return (f"channel layout contradicted by the audio at {start_s:.1f} s (declared order "
            f"{declared_order}): {'; '.join(contradictions)}{likely}. Find the order with make "
            f"channel-order and re-import with --channel-order, or keep the clip with "
            f"on_layout_contradiction=accept")


class _BlockAudio:
    """Window audio of a clip, decoded in blocks of ``block_s`` (+ one window of overlap) and
    holding one block at a time. Times are seconds from the clip start."""

    def __init__(self, path: Path, info: MediaInfo, clip: Clip, cfg: PreprocessConfig):
        self.path, self.info, self.clip, self.cfg = path, info, clip, cfg
        self.sample_rate = cfg.audio.sample_rate
        self.window_samples = cfg.audio.n_samples
        self.block_s = cfg.decode.audio_block_s
        self._block_index: int | None = None
        self._block: np.ndarray | None = None

    def _block_bounds(self, index: int) -> tuple[float, float]:
        start = index * self.block_s
        stop = min(self.clip.duration_s, start + self.block_s + self.cfg.audio.window_s)
        return start, stop

    def _load(self, index: int) -> np.ndarray:
        if self._block_index != index:
            self._block = None  # free the previous block before decoding the next
            start, stop = self._block_bounds(index)
            self._block = decode_audio(
                self.path, self.sample_rate, self.clip.ambisonics, expected_duration_s=stop - start,
                start_s=self.clip.segment_start_s + start, duration_s=stop - start,
                accept_hoa=self.cfg.decode.accept_hoa, info=self.info,
                channel_order=self.clip.channel_order)
            self._block_index = index
            warnings = ambisonic_sanity(self._block)
            contradictions = layout_contradictions(warnings)
            reject = bool(contradictions) and self.cfg.on_layout_contradiction == "reject"
            for warning in warnings:       # a rejection's own reasons are in its failure record
                if not (reject and warning in contradictions):
                    log.warning("clip %s: audio block at %.1f s: %s", self.clip.clip_id, start,
                                warning)
            if reject:
                raise AmbisonicFormatError(layout_contradiction_reason(
                    self._block, self.clip.channel_order, contradictions, start))
        return self._block

    def window(self, audio_start_s: float) -> np.ndarray:
        """``(4, window_samples)`` float32 ambiX starting at ``audio_start_s``."""
        index = int(math.floor(audio_start_s / self.block_s + 1e-9))
        block = self._load(index)
        offset = int(round((audio_start_s - index * self.block_s) * self.sample_rate))
        segment = block[:, offset:offset + self.window_samples]
        if segment.shape[1] != self.window_samples:  # rounding at the very end of the clip
            segment = np.pad(segment, ((0, 0), (0, self.window_samples - segment.shape[1])))
        return segment


# ---------------------------------------------------------------------------------------------
# per-window sample (pure)


def _viewpoint_limits_rad(cfg: PreprocessConfig) -> dict[str, float]:
    vp = cfg.viewpoints
    return {"max_elevation_rad": math.radians(vp.max_elevation_deg),
            "min_separation_rad": math.radians(vp.min_separation_deg),
            "fov_min_rad": math.radians(vp.fov_deg_min),
            "fov_max_rad": math.radians(vp.fov_deg_max)}


def window_sample(clip_id: str, split: str, window: Window, foa_window: np.ndarray,
                  frames: np.ndarray, detections: Detections, cfg: PreprocessConfig,
                  bgra_frames: np.ndarray | None = None) -> dict[str, Any]:
    """Build one sample dict (schema v1 keys, no N axis) from decoded window data. Pure.

    Crops and features come coded as the shard stores them (``cfg.shards.crop_codec`` /
    ``feature_codec``: :class:`pipeline.shards.JpegCrops`, :class:`QuantisedFeature`), so that
    a shard in the making holds 4.2 MB per sample (its stored size) instead of 16 MB.

    Args:
        foa_window: ``(4, A)`` float32 ambiX of the audio window (A = ``cfg.audio.n_samples``).
        frames: ``(T, H, W, 3)`` uint8 equirectangular frames of the video window.
        detections: on the keyframe ``frames[T // 2]`` (empty when the detector is off).
        bgra_frames: optional ``(T, H, W, 4)`` uint8 scratch array for the BGRA copy of the
            frames that JPEG crops are cut from (:func:`pipeline.crops.rgb_to_bgra`);
            :func:`clip_samples` reuses one across a clip's windows.
    """
    k = cfg.viewpoints.bank_size
    band = _viewpoint_limits_rad(cfg)
    views = {
        "random": random_viewpoints(clip_rng(cfg.seed, clip_id, window.window_index, RNG_RANDOM_VIEWS),
                                    k, **band),
        "yolo": detection_viewpoints(clip_rng(cfg.seed, clip_id, window.window_index, RNG_YOLO_FILL),
                                     k, detections.azimuth_rad, detections.elevation_rad,
                                     detections.confidence, **band),
    }
    all_az = np.concatenate([views[s].azimuth_rad for s in VIEWPOINT_SOURCES])
    all_el = np.concatenate([views[s].elevation_rad for s in VIEWPOINT_SOURCES])
    all_fov = np.concatenate([views[s].fov_rad for s in VIEWPOINT_SOURCES])

    # One sampler (grids built once) and one STFT for both viewpoint sources.
    height, width = frames.shape[1:3]
    sampler = CropSampler(all_az, all_el, all_fov, cfg.viewpoints.crop_size, width, height)
    features = foa_features(foa_window, all_az, all_el, cfg.audio)

    keyframe = frames[len(frames) // 2]
    sample: dict[str, Any] = {
        "clip_id": clip_id,
        "split": split,
        "window_index": np.int32(window.window_index),
        "audio_start_s": np.float64(window.audio_start_s),
        "video_start_s": np.float64(window.video_start_s),
        "foa_acn_sn3d": foa_window.astype(np.float16),
        "keyframe": resize_keyframe(keyframe, cfg.shards.keyframe_width, cfg.shards.keyframe_height),
        **pad_detections(detections, MAX_DETECTIONS),
    }
    # JPEG crops are cut from BGRA frames (pipeline.crops.rgb_to_bgra: a faster remap, no BGR
    # copy per crop for the encoder; the same files); raw crops are stored as RGB.
    crop_layout = "bgra" if cfg.shards.crop_codec == "jpeg" else "rgb"
    crop_source = rgb_to_bgra(frames, bgra_frames) if crop_layout == "bgra" else frames
    for position, source in enumerate(VIEWPOINT_SOURCES):
        view: Viewpoints = views[source]
        part = slice(position * k, (position + 1) * k)
        prefix = f"views/{source}"
        sample[f"{prefix}/azimuth_rad"] = view.azimuth_rad
        sample[f"{prefix}/elevation_rad"] = view.elevation_rad
        sample[f"{prefix}/fov_rad"] = view.fov_rad
        sample[f"{prefix}/from_detection"] = view.from_detection
        sample[f"{prefix}/crops"] = encode_sample_crops(
            sampler.iter_crops(crop_source, range(part.start, part.stop)),
            cfg.shards.crop_codec, cfg.shards.jpeg_quality, crop_layout)
        for name in ("logmel_foa", "iv", "logmel_beam"):
            sample[f"{prefix}/{name}"] = encode_sample_feature(
                name, features[name][part], cfg.shards.feature_codec, cfg.audio.top_db)
    return sample


# ---------------------------------------------------------------------------------------------
# ground truth (synthetic clips)


def gt_fields(gt: dict, window_start_s: float, window_s: float) -> dict[str, np.ndarray]:
    """``gt/*`` fields of the window ``[start, start + window_s]`` (seconds in the gt's clip),
    padded to MAX_GT_OBJECTS.

    Directions are those at the window centre. ``gt/sounding`` is true for a sound-emitting object
    whose event envelope averages at least :data:`SOUNDING_FRACTION` over the audio window (it is
    on for at least about that share of the second); ``gt/visible`` for an object that is drawn.
    """
    from pipeline.ground_truth import envelope, object_directions_at  # synthetic clips only

    centre_s = window_start_s + window_s / 2.0
    times_s = np.linspace(window_start_s, window_start_s + window_s, 41)
    objects = {obj["object_id"]: obj for obj in gt["objects"]}
    states = object_directions_at(gt, centre_s)[:MAX_GT_OBJECTS]
    n = len(states)
    out = {
        "gt/count": np.int16(n),
        "gt/class_id": np.full(MAX_GT_OBJECTS, -1, np.int16),
        "gt/azimuth_rad": np.zeros(MAX_GT_OBJECTS, np.float32),
        "gt/elevation_rad": np.zeros(MAX_GT_OBJECTS, np.float32),
        "gt/sounding": np.zeros(MAX_GT_OBJECTS, bool),
        "gt/visible": np.zeros(MAX_GT_OBJECTS, bool),
    }
    for i, state in enumerate(states):
        activity = float(np.mean(envelope(objects[state.object_id]["on_intervals_s"], times_s)))
        out["gt/class_id"][i] = state.class_id
        out["gt/azimuth_rad"][i] = state.azimuth_rad
        out["gt/elevation_rad"][i] = state.elevation_rad
        out["gt/sounding"][i] = bool(state.sounding and activity >= SOUNDING_FRACTION)
        out["gt/visible"][i] = bool(state.visible)
    return out


# ---------------------------------------------------------------------------------------------
# driver for one clip


def _probe_clip(clip: Clip, data_root: Path, cfg: PreprocessConfig) -> tuple[Path, MediaInfo, Path, MediaInfo]:
    video_path = clip.resolve(data_root, "video_path")
    video_info = probe(video_path)
    check_equirectangular(video_info)
    if clip.audio_path is not None:
        audio_path = clip.resolve(data_root, "audio_path")
        audio_info = probe(audio_path)
    else:
        audio_path, audio_info = video_path, video_info
    if audio_info.audio is None:
        streams = ", ".join(f"{s.kind} {s.codec}" for s in audio_info.streams) or "none"
        raise DecodeError(f"clip {clip.clip_id}: expected an ambisonic audio stream in "
                          f"{audio_path.name}, got none (streams: {streams})")
    if audio_info.audio.sample_rate != clip.sample_rate:
        raise SampleRateMismatchError(
            f"clip {clip.clip_id}: manifest declares {clip.sample_rate} Hz audio, expected the "
            f"file to match, got {audio_info.audio.sample_rate} Hz in {audio_path.name} (stale "
            "manifest or wrong file; any rate is resampled once the manifest agrees)")
    return video_path, video_info, audio_path, audio_info


def _frames_by_window(video_path: Path, video_info: MediaInfo, clip: Clip, windows: list[Window],
                      cfg: PreprocessConfig) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, frames (T, H, W, 3))`` in time order from one streaming decode of the
    frames the windows use (ffmpeg drops the others before scaling them)."""
    needed: dict[int, list[Window]] = {}
    for window in windows:
        for index in window.frame_indices:
            needed.setdefault(int(index), []).append(window)
    collected: dict[int, dict[int, np.ndarray]] = {w.window_index: {} for w in windows}
    for index, frame in iter_frames_at_indices(video_path, cfg.decode.fps, cfg.decode.width,
                                               cfg.decode.height, sorted(needed),
                                               start_s=clip.segment_start_s, info=video_info):
        for window in needed[index]:
            got = collected[window.window_index]
            got[index] = frame
            if len(got) == window.n_frames:
                yield window, np.stack([got[i] for i in window.frame_indices])
                del collected[window.window_index]


def clip_samples(clip: Clip, cfg: PreprocessConfig,
                 detector: Callable[[np.ndarray], Any] | None = None,
                 data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """All samples of one clip (schema v1 dicts without the N axis), in window order.

    Args:
        clip: manifest record; media paths are relative to ``data_root``.
        cfg: resolved preprocessing config.
        detector: callable on an RGB equirectangular frame (see :mod:`pipeline.detect`), or None
            (yolo viewpoints are then random fill, ``from_detection`` false).
        data_root: defaults to ``cfg.paths.data_root``.
    Raises:
        ClipError: naming the clip and the stage, wrapping the named cause.
    """
    data_root = Path(data_root if data_root is not None else cfg.paths.data_root)
    clip_id = clip.clip_id
    with _Stage(clip_id, "probe"):
        video_path, video_info, audio_path, audio_info = _probe_clip(clip, data_root, cfg)

    window_s, fps, n_frames = cfg.audio.window_s, cfg.decode.fps, cfg.windows.video_frames
    audio = _BlockAudio(audio_path, audio_info, clip, cfg)
    with _Stage(clip_id, "windows"):
        candidates = candidate_starts_s(clip.duration_s, window_s, cfg.windows.hop_s, fps, n_frames,
                                        n_video_frames=int(math.floor(clip.duration_s * fps + 1e-6)))
    with _Stage(clip_id, "audio"):
        omni_rms_db = [window_rms_db(audio.window(start)[0], 0, cfg.audio.n_samples)
                       for _, start, _ in candidates]
    with _Stage(clip_id, "windows"):
        windows = plan_windows(candidates, omni_rms_db, n_frames=n_frames, fps=fps,
                               max_per_clip=cfg.windows.max_per_clip,
                               min_rms_db=cfg.windows.min_rms_db,
                               placement=cfg.windows.placement, rng=clip_rng(cfg.seed, clip_id),
                               clip_id=clip_id, duration_s=clip.duration_s, window_s=window_s)
    gt = None
    if clip.gt_path is not None:
        with _Stage(clip_id, "gt"):
            gt = json.loads(clip.resolve(data_root, "gt_path").read_text(encoding="utf-8"))

    samples = []
    bgra_frames = None                  # scratch for window_sample, reused across the windows
    frames_iter = _frames_by_window(video_path, video_info, clip, windows, cfg)
    while True:
        with _Stage(clip_id, "video"):
            item = next(frames_iter, None)
        if item is None:
            break
        window, frames = item
        with _Stage(clip_id, "detect"):
            detections = (detect_equirect(frames[len(frames) // 2], detector,
                                          iou_threshold=cfg.detector.iou,
                                          max_detections=cfg.detector.max_detections)
                          if detector is not None else Detections.empty())
        with _Stage(clip_id, "audio"):
            foa_window = audio.window(window.audio_start_s)
        if cfg.shards.crop_codec == "jpeg" and (bgra_frames is None
                                                 or bgra_frames.shape[:3] != frames.shape[:3]):
            bgra_frames = np.empty((*frames.shape[:3], 4), dtype=np.uint8)
        with _Stage(clip_id, "sample"):
            sample = window_sample(clip_id, clip.split, window, foa_window, frames, detections, cfg,
                                   bgra_frames)
        if gt is not None:
            with _Stage(clip_id, "gt"):
                sample.update(gt_fields(gt, clip.segment_start_s + window.audio_start_s, window_s))
        samples.append(sample)
    return samples
