"""UCF-101 and HMDB-51 as distributed: split files, a decoded-frame cache and clip sampling.

Layouts (``root`` is what the user passes as ``--root``; the first candidate that exists wins,
and ``videos_dir`` / ``splits_dir`` override the search):

UCF-101 (``UCF101.rar`` + ``UCF101TrainTestSplits-RecognitionTask.zip``)::

    root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi        (or root/<Class>/...)
    root/ucfTrainTestlist/classInd.txt                 "1 ApplyEyeMakeup"       (or root/...)
    root/ucfTrainTestlist/trainlist0N.txt              "ApplyEyeMakeup/v_..._g08_c01.avi 1"
    root/ucfTrainTestlist/testlist0N.txt               "ApplyEyeMakeup/v_..._g01_c01.avi"

    Labels are 0-based indices into ``classInd.txt``; a test video's label comes from its
    folder (matched case-insensitively: the official files spell ``HandstandPushups`` in the
    folder and ``HandStandPushups`` in the file names).

HMDB-51 (``hmdb51_org.rar`` with its 51 inner archives extracted + ``test_train_splits.rar``)::

    root/hmdb51_org/<class>/<name>.avi                 (or root/<class>/...)
    root/testTrainMulti_7030_splits/<class>_test_splitN.txt   "<name>.avi 1"  (or root/...)

    Tag 1 = train, 2 = test, 0 = unused in this split. Classes are the sorted names of the
    51 split files of split N; labels index that list.

Frames. Every video is decoded once, at :data:`CLIP_FPS` (16) frames/s by ffmpeg's ``fps``
filter (:func:`pipeline.decode.iter_video_frames`), scaled to a short side of
``DecodeSpec.short_side`` (128) pixels, and stored as JPEG frames in one ``.npz`` per video in a
cache folder. The cache key hashes the resolved path, the file's mtime (ns) and size and the
decode settings, so an edited or replaced video is decoded again and a stale entry is never
read. Epochs then read only the 8 JPEG frames of each clip. Expect roughly 1 MB per UCF-101
video at the defaults (~13 GB for its 13,320 videos; a smaller short side or JPEG quality
shrinks it). The cache is filled up front by :func:`build_frame_cache` (parallel, resumable):
the datasets never decode video.

Clips. :data:`CLIP_FRAMES` (8) consecutive frames of the 16 fps stream = 0.5 s, cropped to
:data:`CROP_SIZE` (112) pixels. Training: a random start per clip, a random square crop of
50-100 % of the short side (by side length) resized to 112, horizontal flip (Morgado et al.'s
multi-scale crop). Testing: :data:`TEST_CLIPS` (25) clips with uniformly spaced starts from the
first to the last possible start, centre crop of 112 from the 128 short side.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from pipeline.decode import iter_video_frames
from pipeline.ffmpeg_bin import probe

__all__ = [
    "CLIP_FRAMES", "CLIP_FPS", "CROP_SIZE", "TEST_CLIPS", "DATASETS",
    "ActionDatasetError", "SplitFileError", "SplitFormatError", "VideoFolderError",
    "MissingVideoError", "ActionVideo", "ActionSplit", "check_videos_exist", "chance_accuracy",
    "parse_ucf_class_index", "parse_ucf_split_list", "parse_hmdb_split_file",
    "hmdb_split_files", "load_ucf101", "load_hmdb51", "load_action_split",
    "DecodeSpec", "FrameCache", "CachedVideo", "scaled_size", "build_frame_cache",
    "uniform_clip_starts", "clip_frame_indices", "random_clip_start",
    "center_crop", "random_square_crop", "clip_to_tensor",
    "TrainClipDataset", "EvalVideoDataset",
]

log = logging.getLogger(__name__)

CLIP_FRAMES = 8          # frames per clip (0.5 s at 16 fps)
CLIP_FPS = 16.0          # frames per second of the decoded stream
CROP_SIZE = 112          # square crop side, pixels
TEST_CLIPS = 25          # uniformly spaced clips per test video
DATASETS = ("ucf101", "hmdb51")
CACHE_VERSION = 1        # bump when the cache file layout changes

UCF_VIDEO_DIRS = ("UCF-101", "UCF101", "videos", ".")
UCF_SPLIT_DIRS = ("ucfTrainTestlist", "splits", ".")
HMDB_VIDEO_DIRS = ("hmdb51_org", "hmdb51", "videos", ".")
HMDB_SPLIT_DIRS = ("testTrainMulti_7030_splits", "splits", ".")
HMDB_TAGS = {"unused": 0, "train": 1, "test": 2}


# ----------------------------------------------------------------------------- errors

class ActionDatasetError(FileNotFoundError):
    """A file or folder of an action data set is missing (the message names it)."""


class SplitFileError(ActionDatasetError):
    """An official split file (classInd.txt, trainlist0N.txt, <class>_test_splitN.txt) is
    missing."""


class VideoFolderError(ActionDatasetError):
    """The folder holding the videos cannot be found."""


class MissingVideoError(ActionDatasetError):
    """Videos named by a split file are not on disk."""


class SplitFormatError(ValueError):
    """A split file line does not have the official format (names file:line, expected vs got)."""


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class ActionVideo:
    """One labelled video. ``path`` absolute; ``video_id`` the name used in the split file."""

    path: Path
    label: int
    video_id: str


@dataclass(frozen=True)
class ActionSplit:
    """The train and test videos of one official split, with the class names (label order)."""

    dataset: str
    split: int
    class_names: tuple[str, ...]
    train: tuple[ActionVideo, ...]
    test: tuple[ActionVideo, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# ----------------------------------------------------------------------------- split parsing

def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers; SplitFileError when absent."""
    if not path.is_file():
        raise SplitFileError(f"{what}: expected the split file {path}, got no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def parse_ucf_class_index(path: str | Path) -> list[str]:
    """Class names of ``classInd.txt`` in label order (lines ``"<1-based index> <Name>"``)."""
    path = Path(path)
    names: dict[int, str] = {}
    for number, line in _read_lines(path, "UCF-101 class index"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitFormatError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        names[int(parts[0])] = parts[1]
    expected = list(range(1, len(names) + 1))
    if sorted(names) != expected:
        raise SplitFormatError(f"{path}: expected class indices 1..{len(names)}, got "
                               f"{sorted(names)[:5]}...")
    return [names[i] for i in expected]


def parse_ucf_split_list(path: str | Path, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """``(relative video path, 0-based label)`` of a ``trainlist0N.txt`` or ``testlist0N.txt``.

    Train lines carry a 1-based label (``"Class/v_....avi 12"``); test lines carry none and
    the label is that of the folder. A label disagreeing with the folder is an error.
    """
    path = Path(path)
    by_lower = {name.lower(): index for index, name in enumerate(class_names)}
    entries = []
    for number, line in _read_lines(path, "UCF-101 video list"):
        parts = line.split()
        relative = parts[0].replace("\\", "/")
        folder = relative.split("/")[0] if "/" in relative else None
        if len(parts) > 2 or folder is None:
            raise SplitFormatError(f"{path}:{number}: expected '<Class>/<video>[ <label>]', "
                                   f"got {line!r}")
        if folder.lower() not in by_lower:
            raise SplitFormatError(f"{path}:{number}: expected a class of classInd.txt as the "
                                   f"folder, got {folder!r}")
        label = by_lower[folder.lower()]
        if len(parts) == 2:
            if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                raise SplitFormatError(f"{path}:{number}: expected label {label + 1} "
                                       f"({class_names[label]}), got {parts[1]!r}")
        entries.append((relative, label))
    return entries


def parse_hmdb_split_file(path: str | Path) -> list[tuple[str, int]]:
    """``(video file name, tag)`` of one ``<class>_test_splitN.txt``; tag 0 unused, 1 train,
    2 test."""
    path = Path(path)
    entries = []
    for number, line in _read_lines(path, "HMDB-51 split"):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise SplitFormatError(f"{path}:{number}: expected '<video>.avi <0|1|2>', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    return entries


def hmdb_split_files(split_dir: str | Path, split: int) -> dict[str, Path]:
    """``{class name: split file}`` for split N, classes sorted by name."""
    split_dir = Path(split_dir)
    suffix = f"_test_split{split}.txt"
    files = {p.name[:-len(suffix)]: p for p in split_dir.glob(f"*{suffix}")}
    if not files:
        raise SplitFileError(f"HMDB-51 split {split}: expected files <class>{suffix} in "
                             f"{split_dir}, got none")
    return dict(sorted(files.items()))


# ----------------------------------------------------------------------------- layouts

def _first_dir(root: Path, candidates: Sequence[str], must_contain: str | None, what: str,
               error: type[ActionDatasetError]) -> Path:
    """The first ``root/candidate`` that is a folder (holding ``must_contain`` if given)."""
    tried = []
    for candidate in candidates:
        folder = (root / candidate).resolve()
        tried.append(str(folder))
        if folder.is_dir() and (must_contain is None or (folder / must_contain).exists()):
            return folder
    target = f" holding {must_contain}" if must_contain else ""
    raise error(f"{what}: expected a folder{target} under {root}; tried {tried}")


def _check_split(split: int, dataset: str) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"{dataset}: expected split 1, 2 or 3, got {split}")


def check_videos_exist(videos: Iterable[ActionVideo], videos_dir: Path, dataset: str) -> None:
    """MissingVideoError listing how many and which videos of the split files are absent."""
    missing = [v for v in videos if not v.path.is_file()]
    if missing:
        examples = ", ".join(v.video_id for v in missing[:5])
        raise MissingVideoError(f"{dataset}: expected every video of the split files under "
                                f"{videos_dir}, got {len(missing)} missing (e.g. {examples})")


def load_ucf101(root: str | Path, split: int, videos_dir: str | Path | None = None,
                splits_dir: str | Path | None = None, check_files: bool = True) -> ActionSplit:
    """The official UCF-101 split ``split`` (1-3) under ``root`` (layout in the module doc)."""
    _check_split(split, "ucf101")
    root = Path(root)
    if not root.is_dir():
        raise VideoFolderError(f"ucf101: expected the data set folder {root}, got no such folder")
    splits = Path(splits_dir) if splits_dir else _first_dir(
        root, UCF_SPLIT_DIRS, "classInd.txt", "ucf101 split files", SplitFileError)
    class_names = parse_ucf_class_index(splits / "classInd.txt")
    train = parse_ucf_split_list(splits / f"trainlist{split:02d}.txt", class_names)
    test = parse_ucf_split_list(splits / f"testlist{split:02d}.txt", class_names)
    first_folder = (train or test)[0][0].split("/")[0] if (train or test) else None
    videos = Path(videos_dir) if videos_dir else _first_dir(
        root, UCF_VIDEO_DIRS, first_folder, "ucf101 videos", VideoFolderError)
    if not videos.is_dir():
        raise VideoFolderError(f"ucf101: expected the video folder {videos}, got no such folder")

    def records(entries):
        return tuple(ActionVideo(videos / rel, label, rel) for rel, label in entries)

    result = ActionSplit("ucf101", split, tuple(class_names), records(train), records(test))
    if check_files:
        check_videos_exist(result.train + result.test, videos, "ucf101")
    return result


def load_hmdb51(root: str | Path, split: int, videos_dir: str | Path | None = None,
                splits_dir: str | Path | None = None, check_files: bool = True) -> ActionSplit:
    """The official HMDB-51 split ``split`` (1-3) under ``root`` (layout in the module doc)."""
    _check_split(split, "hmdb51")
    root = Path(root)
    if not root.is_dir():
        raise VideoFolderError(f"hmdb51: expected the data set folder {root}, got no such folder")
    if splits_dir is None:
        for candidate in HMDB_SPLIT_DIRS:
            folder = (root / candidate).resolve()
            if folder.is_dir() and any(folder.glob(f"*_test_split{split}.txt")):
                splits_dir = folder
                break
        else:
            tried = [str((root / c).resolve()) for c in HMDB_SPLIT_DIRS]
            raise SplitFileError(f"hmdb51 split {split}: expected files <class>_test_split{split}"
                                 f".txt in one of {tried}, got none")
    files = hmdb_split_files(splits_dir, split)
    class_names = tuple(files)
    videos = Path(videos_dir) if videos_dir else _first_dir(
        root, HMDB_VIDEO_DIRS, class_names[0], "hmdb51 videos", VideoFolderError)
    train, test = [], []
    for label, (name, split_file) in enumerate(files.items()):
        for video_name, tag in parse_hmdb_split_file(split_file):
            record = ActionVideo(videos / name / video_name, label, f"{name}/{video_name}")
            if tag == HMDB_TAGS["train"]:
                train.append(record)
            elif tag == HMDB_TAGS["test"]:
                test.append(record)
    result = ActionSplit("hmdb51", split, class_names, tuple(train), tuple(test))
    if check_files:
        check_videos_exist(result.train + result.test, videos, "hmdb51")
    return result


def load_action_split(dataset: str, root: str | Path, split: int, **kwargs) -> ActionSplit:
    """:func:`load_ucf101` or :func:`load_hmdb51` by name (``ucf101`` | ``hmdb51``)."""
    loaders = {"ucf101": load_ucf101, "hmdb51": load_hmdb51}
    if dataset not in loaders:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    return loaders[dataset](root, split, **kwargs)


# ----------------------------------------------------------------------------- frame cache

@dataclass(frozen=True)
class DecodeSpec:
    """How videos are decoded into the cache: frames/s, short side (pixels), JPEG quality."""

    fps: float = CLIP_FPS
    short_side: int = 128
    jpeg_quality: int = 90


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``short_side`` and the aspect ratio kept
    (the other side rounded to an even number of pixels)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"expected a positive frame size, got {width}x{height}")
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(2, 2 * round(height * scale / 2))
    return max(2, 2 * round(width * scale / 2)), short_side


class CachedVideo:
    """The decoded frames of one video, read from its cache file: JPEG bytes held in memory,
    frames decoded on demand. ``n_frames`` at ``fps``; frames are ``(h, w, 3)`` uint8 RGB."""

    def __init__(self, path: Path):
        with np.load(path) as data:
            self.jpeg = data["jpeg"]
            self.offsets = data["offsets"]
            self.n_frames, self.height, self.width = (int(v) for v in data["shape"])
            self.fps = float(data["fps"])

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """``(len(indices), h, w, 3)`` uint8 RGB."""
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        for position, index in enumerate(indices):
            if not 0 <= index < self.n_frames:
                raise IndexError(f"frame {index} out of range 0..{self.n_frames - 1}")
            blob = self.jpeg[self.offsets[index]:self.offsets[index + 1]]
            bgr = cv2.imdecode(blob, cv2.IMREAD_COLOR)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[position])
        return out


class FrameCache:
    """Decoded frames of videos under ``cache_dir``, one ``.npz`` per (video version, spec).

    File layout: ``jpeg`` (B,) uint8 concatenated JPEG files, ``offsets`` (n + 1,) int64 byte
    offsets of frame i in ``jpeg``, ``shape`` (3,) int64 (n_frames, height, width), ``fps``.
    """

    def __init__(self, cache_dir: str | Path, spec: DecodeSpec = DecodeSpec()):
        self.cache_dir = Path(cache_dir)
        self.spec = spec

    def key(self, video_path: str | Path) -> str:
        """sha1 of the resolved path, mtime (ns), size and the decode spec."""
        path = Path(video_path).resolve()
        stat = path.stat()
        text = (f"{path}|{stat.st_mtime_ns}|{stat.st_size}|fps={self.spec.fps:g}|"
                f"short={self.spec.short_side}|q={self.spec.jpeg_quality}|v{CACHE_VERSION}")
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]

    def path_for(self, video_path: str | Path) -> Path:
        key = self.key(video_path)
        return self.cache_dir / key[:2] / f"{key}.npz"

    def ensure(self, video_path: str | Path) -> int:
        """Decode ``video_path`` into the cache unless present; returns its frame count."""
        target = self.path_for(video_path)
        if target.is_file():
            with np.load(target) as data:
                return int(data["shape"][0])
        frames = decode_video(video_path, self.spec)
        write_cache_file(target, frames, self.spec)
        return len(frames)

    def load(self, video_path: str | Path) -> CachedVideo:
        target = self.path_for(video_path)
        if not target.is_file():
            raise FileNotFoundError(f"{video_path}: expected its decoded frames at {target}, got "
                                    "none; run build_frame_cache first")
        return CachedVideo(target)


def decode_video(video_path: str | Path, spec: DecodeSpec) -> np.ndarray:
    """All frames of a video at ``spec.fps``, short side ``spec.short_side``: (n, h, w, 3) uint8."""
    info = probe(video_path)
    if info.video is None:
        raise ActionDatasetError(f"{video_path}: expected a video stream, got none")
    width, height = scaled_size(info.video.width, info.video.height, spec.short_side)
    chunks = list(iter_video_frames(video_path, spec.fps, width, height, info=info))
    return np.concatenate(chunks)


def write_cache_file(target: Path, frames: np.ndarray, spec: DecodeSpec) -> None:
    """JPEG-encode ``frames`` (n, h, w, 3) RGB into ``target`` atomically."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)]
    blobs = []
    for frame in frames:
        ok, blob = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"{target}: JPEG encoding failed")
        blobs.append(blob.reshape(-1))
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, jpeg=np.concatenate(blobs), offsets=offsets,
             shape=np.array(frames.shape[:3], dtype=np.int64), fps=np.float64(spec.fps))
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)


def _ensure_job(job: tuple[str, str, DecodeSpec]) -> int:
    cache_dir, video_path, spec = job
    return FrameCache(cache_dir, spec).ensure(video_path)


def build_frame_cache(videos: Sequence[ActionVideo], cache: FrameCache, workers: int = 2,
                      progress: bool = True) -> list[int]:
    """Decode every video not yet cached (``workers`` processes); frame counts in video order.

    Resumable: cached videos cost one small read. A decode error re-raises, naming the video.
    """
    jobs = [(str(cache.cache_dir), str(v.path), cache.spec) for v in videos]
    bar = tqdm(total=len(jobs), desc="decode videos", unit="video", disable=not progress)
    counts: list[int] = []
    try:
        if workers <= 1:
            for job in jobs:
                counts.append(_ensure_job(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for count in pool.map(_ensure_job, jobs, chunksize=4):
                    counts.append(count)
                    bar.update()
    finally:
        bar.close()
    return counts


# ----------------------------------------------------------------------------- clip sampling

def uniform_clip_starts(n_frames: int, clip_frames: int = CLIP_FRAMES,
                        n_clips: int = TEST_CLIPS) -> np.ndarray:
    """``(n_clips,)`` int64 first-frame indices spaced uniformly from 0 to the last full clip's
    start ``n_frames - clip_frames`` (all 0 when the video is shorter than one clip)."""
    if n_frames < 1 or clip_frames < 1 or n_clips < 1:
        raise ValueError(f"expected n_frames, clip_frames, n_clips >= 1, got {n_frames}, "
                         f"{clip_frames}, {n_clips}")
    last_start = max(n_frames - clip_frames, 0)
    return np.round(np.linspace(0.0, last_start, n_clips)).astype(np.int64)


def clip_frame_indices(start: int, clip_frames: int, n_frames: int) -> np.ndarray:
    """``(clip_frames,)`` consecutive indices from ``start``, clamped to the last frame (a
    video shorter than a clip repeats its last frame)."""
    return np.minimum(start + np.arange(clip_frames), n_frames - 1).astype(np.int64)


def random_clip_start(n_frames: int, clip_frames: int, rng: np.random.Generator) -> int:
    """A uniformly random start among the full clips (0 for a video shorter than a clip)."""
    return int(rng.integers(0, max(n_frames - clip_frames, 0) + 1))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` crop of ``(T, H, W, 3)`` frames (upscaled first when the short
    side is below ``size``)."""
    height, width = frames.shape[1:3]
    if min(height, width) < size:
        new_w, new_h = scaled_size(width, height, size)
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
                           for f in frames])
        height, width = new_h, new_w
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(frames[:, top:top + size, left:left + size])


def random_square_crop(frames: np.ndarray, size: int, rng: np.random.Generator,
                       min_scale: float = 0.5) -> np.ndarray:
    """A random square of side ``U(min_scale, 1) * short side`` at a random position, resized
    to ``size`` x ``size``, the same for all T frames: ``(T, H, W, 3)`` -> ``(T, S, S, 3)``."""
    height, width = frames.shape[1:3]
    side = max(1, int(round(min(height, width) * rng.uniform(min_scale, 1.0))))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    patch = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(patch)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in patch])


def clip_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``(T, S, S, 3)`` uint8 -> ``(3, T, S, S)`` float32 in [0, 1] (the video encoder's input)."""
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2))).float().div_(255.0)


# ----------------------------------------------------------------------------- datasets

class _VideoMemo:
    """The last ``capacity`` :class:`CachedVideo` objects read (JPEG bytes, ~0.5 MB per UCF
    video), so that small data sets are read from disk once per worker."""

    def __init__(self, cache: FrameCache, capacity: int = 256):
        self.cache, self.capacity = cache, capacity
        self._videos: OrderedDict[Path, CachedVideo] = OrderedDict()

    def __call__(self, path: Path) -> CachedVideo:
        if path in self._videos:
            self._videos.move_to_end(path)
            return self._videos[path]
        video = self.cache.load(path)
        if self.capacity > 0:
            self._videos[path] = video
            while len(self._videos) > self.capacity:
                self._videos.popitem(last=False)
        return video


class TrainClipDataset(Dataset):
    """Random training clips: ``clips_per_video`` per video per epoch.

    Item: ``{"video": (3, T, S, S) float32 in [0, 1], "label": int, "video_index": int}``.
    Randomness is a pure function of ``(seed, epoch, index)``; call :meth:`set_epoch`.
    """

    def __init__(self, videos: Sequence[ActionVideo], cache: FrameCache, *,
                 clip_frames: int = CLIP_FRAMES, crop_size: int = CROP_SIZE,
                 clips_per_video: int = 5, min_crop_scale: float = 0.5, flip: bool = True,
                 seed: int = 0):
        self.videos, self.cache = list(videos), cache
        self.clip_frames, self.crop_size = clip_frames, crop_size
        self.clips_per_video, self.min_crop_scale, self.flip = clips_per_video, min_crop_scale, flip
        self.seed, self.epoch = seed, 0
        self._load = _VideoMemo(cache)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def __getitem__(self, index: int) -> dict:
        video_index = index % len(self.videos)
        record = self.videos[video_index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        cached = self._load(record.path)
        start = random_clip_start(cached.n_frames, self.clip_frames, rng)
        frames = cached.frames(clip_frame_indices(start, self.clip_frames, cached.n_frames))
        frames = random_square_crop(frames, self.crop_size, rng, self.min_crop_scale)
        if self.flip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        return {"video": clip_to_tensor(frames), "label": record.label, "video_index": video_index}


class EvalVideoDataset(Dataset):
    """All ``n_clips`` uniformly spaced, centre-cropped clips of one video per item.

    Item: ``{"video": (n_clips, 3, T, S, S) float32 in [0, 1], "label": int,
    "video_index": int}``.
    """

    def __init__(self, videos: Sequence[ActionVideo], cache: FrameCache, *,
                 clip_frames: int = CLIP_FRAMES, crop_size: int = CROP_SIZE,
                 n_clips: int = TEST_CLIPS):
        self.videos, self.cache = list(videos), cache
        self.clip_frames, self.crop_size, self.n_clips = clip_frames, crop_size, n_clips

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, video_index: int) -> dict:
        record = self.videos[video_index]
        cached = self.cache.load(record.path)
        starts = uniform_clip_starts(cached.n_frames, self.clip_frames, self.n_clips)
        # Decode each needed frame once: overlapping clips share frames.
        needed = np.unique(np.concatenate([clip_frame_indices(s, self.clip_frames, cached.n_frames)
                                           for s in starts]))
        decoded = dict(zip(needed.tolist(), center_crop(cached.frames(needed.tolist()),
                                                        self.crop_size)))
        clips = []
        for start in starts:
            indices = clip_frame_indices(start, self.clip_frames, cached.n_frames)
            clips.append(clip_to_tensor(np.stack([decoded[int(i)] for i in indices])))
        return {"video": torch.stack(clips), "label": record.label, "video_index": video_index}


def chance_accuracy(n_classes: int) -> float:
    """Accuracy of a uniform random guess, for reports."""
    return 1.0 / n_classes if n_classes else math.nan
