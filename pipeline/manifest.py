"""Typed manifest records stored as JSONL (one record per line), in the style of lhotse.

Two record types:

- ``Clip``: one 360° video clip with its ambisonic track (YT-360, a user's own folder).
- ``Recording``: one audio-only ambisonic recording with a scene label and a cross-validation
  fold, cut into fixed-length segments (EigenScape).

Media paths are POSIX paths relative to a data root that the manifest does not store (the
config or the command line names it), so a manifest stays valid when the data moves. Reading
and writing validate every record; errors are ``ManifestError`` naming ``file:line`` and the id.
See docs/manifests.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Iterable, Iterator, Mapping

from pipeline.errors import ManifestError, MissingMediaError

__all__ = [
    "SPLITS",
    "AMBISONICS",
    "Clip",
    "Recording",
    "RecordingSegment",
    "write_manifest",
    "read_manifest",
    "iter_manifest",
    "stable_split",
    "check_relative_path",
]

SPLITS = ("train", "val", "test")
AMBISONICS = ("ambix", "fuma", "acn_n3d", "hoa_ambix")
FIRST_ORDER = ("ambix", "fuma", "acn_n3d")


class _Record:
    """Shared behaviour of manifest records: type checks, dict round trip, path checks."""

    ID_FIELD: ClassVar[str]
    PATH_FIELDS: ClassVar[tuple[str, ...]]

    @property
    def record_id(self) -> str:
        return getattr(self, self.ID_FIELD)

    def _label(self) -> str:
        return f"{type(self).__name__.lower()} {self.record_id!r}"

    def __post_init__(self) -> None:
        _check_and_coerce_types(self)
        self._check_values()

    def _check_values(self) -> None:  # pragma: no cover - overridden
        pass

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build a record; unknown or missing keys and wrong types raise ``ManifestError``."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"expected a JSON object for a {cls.__name__}, "
                                f"got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        record_id = data.get(cls.ID_FIELD, "?")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ManifestError(f"{cls.__name__.lower()} {record_id!r}: unknown key(s) {unknown}; "
                                f"expected keys from {names}{_other_type_hint(cls, data)}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ManifestError(f"{cls.__name__.lower()} {record_id!r}: missing key(s) {missing}"
                                f"{_other_type_hint(cls, data)}")
        return cls(**data)

    def validate(self, data_root: str | os.PathLike | None = None, check_exists: bool = False) -> None:
        """Check media paths: relative POSIX paths that stay inside ``data_root``.

        With ``check_exists`` (needs ``data_root``) every named file must exist, else
        ``MissingMediaError``.
        """
        for field in self.PATH_FIELDS:
            value = getattr(self, field)
            if value is None:
                continue
            check_relative_path(value, f"{self._label()}: {field}")
            if check_exists:
                if data_root is None:
                    raise ValueError("check_exists=True needs a data_root")
                full = Path(data_root) / value
                if not full.is_file():
                    raise MissingMediaError(f"{self._label()}: {field} expected an existing file, "
                                            f"got no file at {full}")

    def resolve(self, data_root: str | os.PathLike, field: str) -> Path:
        """Path of a media field under ``data_root``. Symbolic links are followed only while
        they stay inside the data root: a link that leads out of it is a
        :class:`ManifestError` (the file read would not be the dataset's)."""
        if field not in self.PATH_FIELDS:
            raise ValueError(f"field must be one of {self.PATH_FIELDS}, got {field!r}")
        value = getattr(self, field)
        if value is None:
            raise ManifestError(f"{self._label()}: {field} is not set")
        path = Path(data_root) / value
        real, root = path.resolve(), Path(data_root).resolve()
        if not real.is_relative_to(root):
            raise ManifestError(f"{self._label()}: {field} {value} is a link to {real}, outside "
                                f"the data root {root}; copy the file into the data root, or "
                                f"point paths.data_root at a folder that holds it")
        return path


@dataclass(frozen=True)
class Clip(_Record):
    """One 360° clip: equirectangular video plus a first-order (or higher) ambisonic track.

    Attributes:
        clip_id: unique id (YT-360: ``{youtube_id}-{start}``).
        video_path: video file relative to the data root.
        audio_path: separate audio file relative to the data root, None when the audio track is
            inside ``video_path``.
        duration_s: usable length in seconds (from ``segment_start_s``).
        fps, width, height: source frame rate (Hz) and frame size (pixels; 2:1 equirectangular).
        sample_rate, audio_channels: source audio rate (Hz) and channel count.
        ambisonics: encoding of the audio: "ambix" (ACN/SN3D), "fuma", "acn_n3d" (4 channels
            each) or "hoa_ambix" ((N+1)² >= 9 channels ACN/SN3D).
        split: "train", "val" or "test".
        segment_start_s: where the clip starts inside its files, seconds.
        dataset: corpus name ("yt360", "folder", ...).
        gt_path: optional ground-truth file (synthetic scenes), relative to the data root.
        channel_order: what the first four audio channels hold, as the letters W, X, Y, Z
            (e.g. "WYZX" for ambiX as released, "XYWZ" for the switch a public note reports
            for YT-360; docs/channel_order.md); undone on decoding. None (manifests written
            before this field) means the order of ``ambisonics`` itself.
        labels_path: optional frame-wise event labels (STARSS23 metadata CSV, 100 ms frames;
            :mod:`pipeline.importers.starss23`), relative to the data root, kept for downstream tasks.
    """

    ID_FIELD: ClassVar[str] = "clip_id"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("video_path", "audio_path", "gt_path",
                                              "labels_path")

    clip_id: str
    video_path: str
    audio_path: str | None
    duration_s: float
    fps: float
    width: int
    height: int
    sample_rate: int
    audio_channels: int
    ambisonics: str
    split: str
    segment_start_s: float = 0.0
    dataset: str = ""
    gt_path: str | None = None
    channel_order: str | None = None
    labels_path: str | None = None

    @property
    def audio_source(self) -> str:
        """Relative path of the file that holds the audio (``audio_path`` or ``video_path``)."""
        return self.audio_path if self.audio_path is not None else self.video_path

    def _check_values(self) -> None:
        label = self._label()
        _require(bool(self.clip_id.strip()), f"{label}: clip_id expected non-empty, got ''")
        _require(".." not in PurePosixPath(self.clip_id).parts
                 and not PurePosixPath(self.clip_id).is_absolute() and "\\" not in self.clip_id,
                 f"{label}: clip_id expected a name or relative path without '..', got "
                 f"{self.clip_id!r} (outputs are named after it)")
        _require_positive(self, ("duration_s", "fps", "width", "height", "sample_rate",
                                 "audio_channels"))
        _require(math.isfinite(self.segment_start_s) and self.segment_start_s >= 0,
                 f"{label}: segment_start_s expected >= 0, got {self.segment_start_s}")
        _require(self.split in SPLITS, f"{label}: split expected one of {SPLITS}, got {self.split!r}")
        _check_ambisonics(label, self.ambisonics, self.audio_channels)
        _require(self.channel_order is None or (len(self.channel_order) == 4
                                                and sorted(self.channel_order) == list("WXYZ")),
                 f"{label}: channel_order expected the letters W, X, Y, Z each once (e.g. "
                 f"'WYZX'), got {self.channel_order!r}")


@dataclass(frozen=True)
class RecordingSegment:
    """A fixed-length piece of a ``Recording`` (not stored; derived by ``Recording.segments``)."""

    segment_id: str
    recording_id: str
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class Recording(_Record):
    """One audio-only ambisonic recording with a scene label (EigenScape).

    Attributes:
        recording_id: unique id ("Beach-01").
        audio_path: audio file relative to the data root.
        scene_class: label ("Beach").
        recording_index: 1-based index of the recording within its class.
        sample_rate, channels, duration_s: as stored in the file (Hz, count, seconds).
        fold: 0-based cross-validation fold whose test set holds this recording.
        ambisonics: encoding ("hoa_ambix" for EigenScape's 4th-order ACN/SN3D).
        segment_duration_s: length of each segment, seconds.
        segment_starts_s: start of each full-length segment, seconds.
        dataset: corpus name.
    """

    ID_FIELD: ClassVar[str] = "recording_id"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("audio_path",)

    recording_id: str
    audio_path: str
    scene_class: str
    recording_index: int
    sample_rate: int
    channels: int
    duration_s: float
    fold: int
    ambisonics: str = "hoa_ambix"
    segment_duration_s: float = 30.0
    segment_starts_s: tuple[float, ...] = ()
    dataset: str = "eigenscape"

    def segments(self) -> list[RecordingSegment]:
        """The segments as records with ids ``{recording_id}/{k:03d}``."""
        return [RecordingSegment(f"{self.recording_id}/{k:03d}", self.recording_id, start,
                                 self.segment_duration_s)
                for k, start in enumerate(self.segment_starts_s)]

    def _check_values(self) -> None:
        label = self._label()
        _require(bool(self.recording_id.strip()), f"{label}: recording_id expected non-empty")
        _require(bool(self.scene_class), f"{label}: scene_class expected non-empty, got ''")
        _require_positive(self, ("recording_index", "sample_rate", "channels", "duration_s",
                                 "segment_duration_s"))
        _require(self.fold >= 0, f"{label}: fold expected >= 0, got {self.fold}")
        _check_ambisonics(label, self.ambisonics, self.channels, accept_hoa=True)
        for start in self.segment_starts_s:
            end = start + self.segment_duration_s
            _require(start >= 0 and end <= self.duration_s + 1e-6,
                     f"{label}: segment [{start}, {end}] s expected inside [0, {self.duration_s}] s")


RECORD_TYPES: dict[str, type[_Record]] = {"Clip": Clip, "Recording": Recording}


# ---------------------------------------------------------------------------------------------
# JSONL files


def write_manifest(path: str | os.PathLike, records: Iterable[_Record]) -> Path:
    """Write records as JSONL atomically (temporary file in the same folder, then rename).

    Every record is validated and ids must be unique; nothing is written on error.
    """
    path = Path(path)
    records = list(records)
    seen: dict[str, int] = {}
    for position, record in enumerate(records):
        if not isinstance(record, _Record):
            raise ManifestError(f"{path}: record {position} expected a Clip or Recording, "
                                f"got {type(record).__name__}")
        record.validate()
        if record.record_id in seen:
            raise ManifestError(f"{path}: duplicate id {record.record_id!r} (records "
                                f"{seen[record.record_id]} and {position})")
        seen[record.record_id] = position
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def iter_manifest(path: str | os.PathLike, record_type: type[_Record] = Clip) -> Iterator[_Record]:
    """Lazily yield validated records; errors name ``file:line`` and the id.

    Blank lines are skipped. Duplicate ids raise when the second one is reached.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingMediaError(f"{path}: expected a manifest file, got no such file")
    first_line_of: dict[str, int] = {}
    with path.open("r", encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: expected a JSON object, got invalid JSON ({exc})") from exc
            try:
                record = record_type.from_dict(data)
                record.validate()
            except ManifestError as exc:
                raise ManifestError(f"{where}: {exc}") from exc
            if record.record_id in first_line_of:
                raise ManifestError(f"{where}: duplicate id {record.record_id!r} (first on line "
                                    f"{first_line_of[record.record_id]})")
            first_line_of[record.record_id] = line_number
            yield record


def read_manifest(path: str | os.PathLike, record_type: type[_Record] = Clip) -> list:
    """All records of a JSONL manifest (see ``iter_manifest``)."""
    return list(iter_manifest(path, record_type))


# ---------------------------------------------------------------------------------------------
# splits and paths


def stable_split(key: str, fractions: Mapping[str, float]) -> str:
    """Split name for ``key`` from a SHA-1 hash: the same on every machine and every run.

    ``fractions`` maps split names (from SPLITS) to shares summing to 1, in the order they
    partition [0, 1); adding clips never moves existing ones.
    """
    _check_fractions(fractions)
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    cumulative = 0.0
    for name, share in fractions.items():
        cumulative += share
        if position < cumulative:
            return name
    return [name for name, share in fractions.items() if share > 0][-1]


def file_name_of(text: str, max_length: int = 120) -> str:
    """A file name made from ``text`` (a clip id, an item name): every run of characters
    other than letters, digits, ``_``, ``.`` and ``-`` becomes ``_``, so no separator or
    ``..`` component can lead outside the output folder; a name of dots only becomes ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:max_length]
    return "_" if not name.strip(".") else name


def check_relative_path(value: str, label: str) -> None:
    """Raise ``ManifestError`` unless ``value`` is a relative POSIX path without ``..``."""
    if not value or value.strip() != value:
        raise ManifestError(f"{label}: expected a relative path, got {value!r}")
    if "\\" in value or PurePosixPath(value).is_absolute() or re.match(r"[A-Za-z]:", value):
        raise ManifestError(f"{label}: expected a path relative to the data root, got {value!r}")
    if ".." in PurePosixPath(value).parts:
        raise ManifestError(f"{label}: expected a path inside the data root, got {value!r} "
                            "(contains '..')")


# ---------------------------------------------------------------------------------------------
# helpers


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise ValueError("fractions expected at least one split, got none")
    unknown = [name for name in fractions if name not in SPLITS]
    if unknown:
        raise ValueError(f"fractions expected split names from {SPLITS}, got {unknown}")
    shares = list(fractions.values())
    if any(not math.isfinite(s) or s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise ValueError(f"fractions expected non-negative shares summing to 1, got {dict(fractions)}")


def _check_ambisonics(label: str, ambisonics: str, channels: int, accept_hoa: bool = False) -> None:
    _require(ambisonics in AMBISONICS,
             f"{label}: ambisonics expected one of {AMBISONICS}, got {ambisonics!r}")
    order = math.isqrt(channels) - 1
    is_full_order = (order + 1) ** 2 == channels
    if ambisonics in FIRST_ORDER:
        ok = channels == 4 or (accept_hoa and is_full_order and order >= 2)
        _require(ok, f"{label}: {ambisonics} expected 4 audio channels, got {channels}")
    else:
        _require(is_full_order and order >= 2,
                 f"{label}: hoa_ambix expected (N+1)^2 >= 9 audio channels, got {channels}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


def _require_positive(record: _Record, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(record, name)
        _require(math.isfinite(value) and value > 0,
                 f"{record._label()}: {name} expected > 0, got {value}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_and_coerce_types(record: _Record) -> None:
    """Raise ``ManifestError`` for a field of the wrong type; int -> float, list -> tuple."""
    hints = _field_types(type(record))
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        ok, coerced = _coerce(value, hints[field.name])
        if not ok:
            raise ManifestError(
                f"{type(record).__name__.lower()} {getattr(record, record.ID_FIELD, '?')!r}: "
                f"{field.name} expected {_type_name(hints[field.name])}, "
                f"got {type(value).__name__} {value!r}")
        if coerced is not value:
            object.__setattr__(record, field.name, coerced)


def _coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            ok, coerced = _coerce(value, option)
            if ok:
                return True, coerced
        return False, value
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_coerce(item, item_type) for item in value]
        if not all(ok for ok, _ in items):
            return False, value
        return True, tuple(item for _, item in items)
    if annotation is type(None):
        return value is None, value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, value if isinstance(value, float) else float(value)
        return False, value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported field annotation {annotation!r}")  # pragma: no cover


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    return "null" if annotation is type(None) else annotation.__name__


def _other_type_hint(cls: type, data: Mapping[str, Any]) -> str:
    for name, other in RECORD_TYPES.items():
        if other is not cls and other.ID_FIELD in data:
            return f" (this looks like a {name} manifest: pass record_type={name})"
    return ""
