"""Typed configuration: dataclasses loaded from YAML with dotted command-line overrides.

A YAML file may name a parent with ``base: other.yaml`` (a path relative to the file); the
child's keys are merged over the parent's, recursively. Overrides such as
``optim.lr=3e-4 data.batch_size=8`` are applied last; their values are parsed as YAML scalars
(``true``, ``1e-4``, ``[1, 2]``). Unknown keys and values of the wrong type raise
:class:`ConfigError` naming the dotted key, the expected type and what was given.

The resolved configuration is immutable (frozen dataclasses), printed at start by the entry
points and saved next to every output with :func:`save_config`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import sys
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")

BASE_KEY = "base"
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A configuration file or override does not match the typed schema."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        siblings = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (configs in {path.parent}: {', '.join(siblings)})" if siblings else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    with path.open("r", encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over ``parent``; nested mappings merge, everything else replaces."""
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml_with_bases(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving its ``base:`` chain (cycles are an error)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config base cycle: {chain}")
    data = _read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: '{BASE_KEY}' must be a relative path string, got {base!r}")
    parent = read_yaml_with_bases(path.parent / base, (*_seen, path))
    return deep_merge(parent, data)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested mapping; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        dotted, raw_value = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML (quote it, e.g. "
                              f"key='[a, b]')") from exc
        cursor = nested
        for key in keys[:-1]:
            cursor = cursor.setdefault(key, {})
            if not isinstance(cursor, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        cursor[keys[-1]] = value
    return nested


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; the only conversions are int -> float
    and list -> tuple. Anything else that does not match is a ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        # YAML 1.1 reads "3e-4" (no dot) as a string; accept it as the float it plainly is.
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _renamed(cls: type, data: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """``data`` with the keys ``cls.RENAMED_KEYS`` maps from a former name to the current one
    renamed (files written before the rename, saved configs and checkpoints, keep loading, with
    a warning once per key; typed overrides are refused earlier, by
    :func:`_refuse_former_names`); both names at once is a :class:`ConfigError`."""
    renames = getattr(cls, "RENAMED_KEYS", {})
    if not any(old in data for old in renames):
        return data
    data = dict(data)
    for old, new in renames.items():
        if old not in data:
            continue
        if new in data:
            raise ConfigError(f"{prefix}{old} is the former name of {prefix}{new}; give only "
                              f"{prefix}{new}")
        data[new] = data.pop(old)
        if (prefix + old) not in _WARNED_RENAMES:
            _WARNED_RENAMES.add(prefix + old)
            logging.getLogger(__name__).warning("%s%s is now called %s%s", prefix, old,
                                                prefix, new)
    return data


_WARNED_RENAMES: set[str] = set()


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    data = _renamed(cls, data, prefix)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known keys at "
                          f"'{prefix or '<top>'}': {known}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], prefix + name)
    # Nested dataclass fields absent from the YAML still get their defaults.
    try:
        instance = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build the dataclass ``cls`` from a plain mapping, strictly."""
    return _build(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value
    return convert(config)


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from ``path`` (with its ``base:`` chain) and apply dotted ``overrides``.
    A former key name (``RENAMED_KEYS``) typed as an override is refused with the current
    name; in a file (a saved config, an older YAML) it still loads, with a warning."""
    data = read_yaml_with_bases(path) if path is not None else {}
    typed = parse_overrides(overrides)
    _refuse_former_names(cls, typed, "")
    return from_dict(cls, deep_merge(data, typed))


def _refuse_former_names(cls: type, data: Mapping[str, Any], prefix: str) -> None:
    """A :class:`ConfigError` for a former key name (``RENAMED_KEYS``) among typed overrides."""
    renames = getattr(cls, "RENAMED_KEYS", {})
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key in renames:
            raise ConfigError(f"{prefix}{key} is now called {prefix}{renames[key]}; use "
                              f"{prefix}{renames[key]}={value}")
        hint = hints.get(key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(hint):
            _refuse_former_names(hint, value, f"{prefix}{key}.")


def config_hash(config: Any) -> str:
    """Short stable hash of the resolved config (sha1 of canonical JSON), for cache keys."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


def dump_config(config: Any) -> str:
    """The resolved config as YAML text (what is printed at start and saved)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_config(config), encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# one error path for every entry point

DEBUG_FLAG = "--debug"


def known_error_types() -> tuple[type[BaseException], ...]:
    """Errors that may have been raised on purpose, with a message that says what is wrong and
    how to fix it (:func:`is_user_error` decides for a plain ``ValueError``)."""
    from pipeline.errors import PipelineError

    return (PipelineError, ConfigError, ValueError, OSError)


#: The project's own packages: a plain ``ValueError`` raised in them is a message to the user.
PROJECT_PACKAGES = ("pipeline", "trainer", "evals", "baselines", "scripts", "bench")
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _in_project(filename: str) -> bool:
    try:
        relative = Path(filename).resolve().relative_to(_PROJECT_ROOT)
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] in PROJECT_PACKAGES


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is printed as one line (else it is a bug and keeps its traceback): the
    project's error types and their subclasses (``ConfigError``, ``PipelineError``,
    ``ShardFormatError``, ...), ``OSError`` (files, permissions, disks: the user's machine),
    and a plain ``ValueError`` only when raised by the project's own code. A plain
    ``ValueError`` from inside a library (numpy, torch, h5py) is a bug in how the project called
    it. A worker's re-raised error is judged by the last frame its message quotes."""
    if not isinstance(exc, known_error_types()):
        return False
    if type(exc) is not ValueError:
        return True
    quoted = re.findall(r'File "([^"]+)"', str(exc))
    frames = traceback.extract_tb(exc.__traceback__)
    raised_in = quoted[-1] if quoted else frames[-1].filename if frames else None
    return raised_in is not None and _in_project(raised_in)


def error_line(exc: BaseException) -> str:
    """``error: <what>`` on one line (continuation lines of a long message are indented)."""
    message = str(exc).strip() or type(exc).__name__
    if "Traceback (most recent call last)" in message:    # re-raised from a worker process
        last = message.splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    return "error: " + message.replace("\n", "\n  ")


def run_main(main, argv=None) -> int:
    """Call ``main(argv)`` (the entry point's real body) with the shared error path.

    A known error (:func:`known_error_types`) prints ``error: ...`` on stderr and returns 2;
    ``--debug`` anywhere in ``argv`` re-raises it with its traceback. ``main`` returns an exit
    code (``None`` counts as 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = main(argv)
    except known_error_types() as exc:
        if debug or not is_user_error(exc):
            raise
        print(error_line(exc) + "\n  (run again with --debug for the traceback)",
              file=sys.stderr, flush=True)
        return 2
    return 0 if code is None else int(code)


def run_command(main, argv=None) -> int:
    """:func:`run_main` for a ``main(argv)`` that returns a result rather than an exit code
    (the training loops): success is exit code 0."""
    def body(args):
        main(args)
        return 0

    return run_main(body, argv)
