"""Audio embeddings of your own ambisonic recordings with a trained audio encoder.

    python -m evals.audio.embed in_dir=recordings/ out=emb.h5 ckpt=runs/avsa/ckpt.pt
    python -m evals.audio.embed ... directions_az_step_deg=90 "directions_el_deg=[0]"

Every audio file under ``in_dir`` (``.wav .flac .ogg``, any depth; first-order or higher-order
ambiX by default; higher orders are reduced to their first-order part) is read with its own
channel convention: an ``ambisonics.json`` sidecar in its folder (or above) declares it,
``{"convention": "fuma"}`` for the folder or ``{"files": {"rec1.ogg": "fuma"}}`` per file, and
``convention=`` (ambix, fuma, acn_n3d) covers files no sidecar names. A file whose channel
energies contradict its declared convention (W not the loudest channel, dipoles far above W:
the check of :func:`pipeline.decode.ambisonic_sanity`) is refused, not embedded. It is read in
blocks, resampled to the model's rate, cut into
windows of the model's length (1 s) with hop ``hop_s``, turned into the experiment's audio
input looking at the front (azimuth 0, elevation 0) and encoded. Optionally the sound field is
also turned toward every direction of a grid (per-direction embeddings, as the model saw its
viewpoints during training).

Output HDF5 (``format = spatial-avsa-embeddings``, version 1)::

    /                       attrs: checkpoint, experiment, audio_input, feature_dim, sample_rate,
                                   window_s, hop_s, created_utc, skipped (JSON list)
    /directions/azimuth_rad, /directions/elevation_rad   (G,) rad   (only with a grid)
    /files/<00000>          attrs: path (relative to in_dir), convention, sample_rate_in,
                                   channels, duration_s, sanity_warnings, complete
        window_start_s      (W,) float64, seconds from the start of the file
        embedding           (W, D) float32, encoder features looking at the front
        embedding_directions (W, G, D) float32 (only with a grid)

Interrupted runs resume: files already complete in the output are skipped (the settings must
match), an incomplete group is rewritten. Files that cannot be embedded (unreadable, shorter
than a window, refused) are skipped and listed with their reason in the root attribute
``skipped`` and in ``<out stem>.problems.jsonl`` (``on_error=skip``, the default), or stop the
run (``on_error=raise``). No output file is created until a file has been embedded.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import h5py
import numpy as np
import soundfile as sf
from tqdm import tqdm

from pipeline.config import ConfigError
from pipeline.decode import ambisonic_sanity, layout_contradictions
from pipeline.errors import AmbisonicFormatError
from evals.cli import EvalIO, require_ckpt, run_evaluator
from evals.frozen import (FrozenModel, load_frozen, read_ambisonic_segment,
                          resample_foa, window_starts)
from evals.av.localize import direction_grid

log = logging.getLogger(__name__)

FORMAT = "spatial-avsa-embeddings"
FORMAT_VERSION = 1
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
RESAMPLE_MARGIN_S = 0.05
# Root attributes that must agree for a resumed run to append to an existing file.
SETTINGS_KEYS = ("checkpoint", "audio_input", "feature_dim", "sample_rate", "window_s", "hop_s",
                 "directions")


CONVENTION_SIDECAR = "ambisonics.json"
CONVENTIONS = ("ambix", "fuma", "acn_n3d")


def file_conventions(in_dir: Path, files: Sequence[Path], default: str) -> dict[Path, str]:
    """The channel convention of each file: from the nearest ``ambisonics.json`` sidecar in its
    folder or above (up to ``in_dir``), else ``default``. A sidecar reads
    ``{"convention": "fuma"}`` (the folder's files) and may name single files:
    ``{"convention": "ambix", "files": {"rec1.ogg": "fuma"}}`` (names relative to the sidecar's
    folder)."""
    sidecars: dict[Path, dict[str, Any]] = {}
    for path in in_dir.rglob(CONVENTION_SIDECAR):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        named = [data.get("convention"), *dict(data.get("files", {})).values()]
        bad = [c for c in named if c is not None and c not in CONVENTIONS]
        if bad or not isinstance(data, dict):
            raise ValueError(f"{path}: expected conventions among {CONVENTIONS}, got {bad}")
        sidecars[path.parent] = data
    out = {}
    for file in files:
        convention = default
        for folder in (file.parent, *file.parent.parents):
            if folder in sidecars:
                data = sidecars[folder]
                relative = file.relative_to(folder).as_posix()
                convention = data.get("files", {}).get(relative, data.get("convention", default))
                break
            if folder == in_dir:
                break
        out[file] = convention
    return out


def find_audio_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (any depth), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {folder}")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def embed_foa(frozen: FrozenModel, foa: np.ndarray, hop_samples: int,
              directions: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Window embeddings of one FOA signal at the model's rate.

    Args:
        foa: ``(4, n)`` ambiX at ``frozen.feature_cfg.sample_rate``.
        hop_samples: samples between window starts.
        directions: optional ``(azimuth_rad (G,), elevation_rad (G,))``.
    Returns:
        ``starts`` (W,) samples, ``front`` (W, D) float32, ``per_direction`` (W, G, D) or None.
    """
    n = frozen.feature_cfg.n_samples
    starts = window_starts(foa.shape[1], n, hop_samples)
    front_inputs, direction_inputs = [], []
    for start in starts:
        window = foa[:, start:start + n]
        front_inputs.append(frozen.audio_input_from_foa(window, [0.0], [0.0]))
        if directions is not None:
            direction_inputs.append(frozen.audio_input_from_foa(window, *directions))
    if len(starts) == 0:
        return starts, np.zeros((0, frozen.feature_dim), np.float32), None
    front = frozen.encode_audio(np.concatenate(front_inputs))
    per_direction = None
    if directions is not None:
        stacked = np.stack(direction_inputs)                                # (W, G, C, M, F)
        per_direction = frozen.encode_audio(stacked.reshape(-1, *stacked.shape[2:]))
        per_direction = per_direction.reshape(len(starts), stacked.shape[1], -1)
    return starts, front, per_direction


def embed_file(frozen: FrozenModel, path: Path, convention: str, hop_s: float,
               directions: tuple[np.ndarray, np.ndarray] | None, block_s: float = 60.0
               ) -> dict[str, Any]:
    """Embeddings of one file, read ``block_s`` seconds at a time (plus one window of overlap,
    so windows are exactly those of the whole file)."""
    info = sf.info(str(path))
    rate = frozen.feature_cfg.sample_rate
    window_s = frozen.feature_cfg.n_samples / rate
    hop_samples = max(1, round(hop_s * rate))
    block_windows = max(1, int(block_s // hop_s))
    duration_s = info.frames / info.samplerate
    # Resampling a block alone would disturb its first and last samples (filter edges): read a
    # margin on both sides and cut it off after resampling.
    margin_s = RESAMPLE_MARGIN_S if info.samplerate != rate else 0.0
    starts, fronts, per_dirs = [], [], []
    block_start_s = 0.0
    while block_start_s + window_s <= duration_s + 1e-9:
        span_s = (block_windows - 1) * hop_s + window_s
        read_start_s = max(0.0, block_start_s - margin_s)
        foa, rate_in = read_ambisonic_segment(path, read_start_s,
                                              span_s + block_start_s - read_start_s + margin_s,
                                              convention)
        offset = round((block_start_s - read_start_s) * rate)
        foa = resample_foa(foa, rate_in, rate)[:, offset:offset + round(span_s * rate)]
        if block_start_s == 0.0:
            sanity = ambisonic_sanity(foa)
            contradictions = layout_contradictions(sanity)
            if contradictions:   # the channel energies contradict the declared layout: refuse
                raise AmbisonicFormatError(
                    f"{path.name}: read as {convention}, its channels contradict that layout "
                    f"({'; '.join(contradictions)}); declare its convention in an "
                    f"{CONVENTION_SIDECAR} sidecar or with convention=...")
            for warning in sanity:
                log.warning("%s (read as %s): %s", path, convention, warning)
        block_starts, front, per_dir = embed_foa(frozen, foa, hop_samples, directions)
        starts.append(block_start_s + block_starts / rate)
        fronts.append(front)
        if per_dir is not None:
            per_dirs.append(per_dir)
        block_start_s += block_windows * hop_s
    if not starts or sum(len(s) for s in starts) == 0:
        raise ValueError(f"{path.name}: {duration_s:.3f} s is shorter than one {window_s:g} s "
                         f"window")
    return {
        "window_start_s": np.concatenate(starts),
        "embedding": np.concatenate(fronts),
        "embedding_directions": np.concatenate(per_dirs) if per_dirs else None,
        "sample_rate_in": int(info.samplerate), "channels": int(info.channels),
        "sanity_warnings": sanity,
        "duration_s": float(duration_s),
    }


def _settings(frozen: FrozenModel, ckpt_path: str | Path, hop_s: float,
              directions) -> dict[str, Any]:
    return {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "audio_input": frozen.audio_input,
        "feature_dim": int(frozen.feature_dim),
        "sample_rate": int(frozen.feature_cfg.sample_rate),
        "window_s": float(frozen.feature_cfg.n_samples / frozen.feature_cfg.sample_rate),
        "hop_s": float(hop_s),
        "directions": (json.dumps([np.round(d, 6).tolist() for d in directions])
                       if directions is not None else ""),
    }


def _open_output(out_path: Path, settings: dict[str, Any], frozen: FrozenModel,
                 directions) -> tuple[h5py.File, dict[str, str]]:
    """Open (or create) the output; returns it and ``{relative path: group name}`` of the files
    already complete. Incomplete groups are deleted; mismatching settings are an error."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    h5 = h5py.File(out_path, "a")
    if "format" not in h5.attrs:
        h5.attrs.update({"format": FORMAT, "version": FORMAT_VERSION,
                         "experiment": frozen.config.experiment, "skipped": "[]",
                         "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(
                             timespec="seconds"), **settings})
        if directions is not None:
            h5["directions/azimuth_rad"] = directions[0]
            h5["directions/elevation_rad"] = directions[1]
        h5.require_group("files")
    else:
        differing = {key: (h5.attrs.get(key), settings[key]) for key in SETTINGS_KEYS
                     if h5.attrs.get(key) != settings[key]}
        if h5.attrs.get("format") != FORMAT or differing:
            h5.close()
            raise ValueError(f"{out_path}: exists with other settings {differing} (stored, "
                             f"requested); choose another out= to start afresh")
    done = {}
    for name in list(h5["files"]):
        group = h5["files"][name]
        if group.attrs.get("complete", False):
            done[str(group.attrs["path"])] = name
        else:
            del h5["files"][name]
    return h5, done


def embed_folder(ckpt_path: str | Path, in_dir: str | Path, out_path: str | Path, *,
                 convention: str = "ambix", hop_s: float = 1.0,
                 directions: tuple[np.ndarray, np.ndarray] | None = None,
                 on_error: str = "skip", device: str = "auto",
                 norm_stats: str | None = None) -> dict[str, Any]:
    """Embed every audio file of ``in_dir`` into ``out_path``; returns a summary.

    Each file is read with its own convention (:func:`file_conventions`; ``convention`` where
    no sidecar says otherwise). A file that cannot be embedded (unreadable, too short, channels
    that contradict its convention) is skipped and listed, with its reason, in the root
    attribute ``skipped`` and in ``<out>.problems.jsonl`` (``on_error="skip"``, the default),
    or stops the run (``"raise"``). The output file is created only once a file is embedded:
    a run in which every file fails leaves none.
    """
    frozen = load_frozen(ckpt_path, device, norm_stats)
    in_dir, out_path = Path(in_dir), Path(out_path)
    files = find_audio_files(in_dir)
    conventions = file_conventions(in_dir, files, convention)
    settings = _settings(frozen, ckpt_path, hop_s, directions)
    existed = out_path.exists()
    h5, done = _open_output(out_path, settings, frozen, directions) if existed else (None, {})
    skipped = json.loads(h5.attrs.get("skipped", "[]")) if h5 is not None else []
    problems_path = out_path.with_name(out_path.stem + ".problems.jsonl")
    written = 0
    try:
        for path in tqdm(files, desc="embedding", unit="file"):
            relative = path.relative_to(in_dir).as_posix()
            if relative in done:
                continue
            try:
                result = embed_file(frozen, path, conventions[path], hop_s, directions)
            except (ValueError, RuntimeError, OSError) as exc:   # format, length, unreadable
                if on_error == "raise":
                    raise ValueError(f"{path}: {exc}") from exc
                log.warning("skipping %s: %s", path, exc)
                skipped = [s for s in skipped if s["path"] != relative]
                skipped.append({"path": relative, "convention": conventions[path],
                                "error": type(exc).__name__, "reason": str(exc)})
                continue
            if h5 is None:
                h5, done = _open_output(out_path, settings, frozen, directions)
            group_name = f"{1 + max((int(n) for n in h5['files']), default=-1):05d}"
            group = h5["files"].create_group(group_name)
            group.attrs.update({"path": relative, "convention": conventions[path],
                                "sample_rate_in": result["sample_rate_in"],
                                "channels": result["channels"],
                                "duration_s": result["duration_s"],
                                "sanity_warnings": json.dumps(result["sanity_warnings"])})
            group["window_start_s"] = result["window_start_s"]
            group.create_dataset("embedding", data=result["embedding"], compression="gzip")
            if result["embedding_directions"] is not None:
                group.create_dataset("embedding_directions", data=result["embedding_directions"],
                                     compression="gzip")
            group.attrs["complete"] = True      # last: a group without it is rewritten
            h5.attrs["skipped"] = json.dumps(skipped)
            h5.flush()
            written += 1
    finally:
        if h5 is not None:
            h5.attrs["skipped"] = json.dumps(skipped)
            h5.close()
    if skipped:
        problems_path.write_text("".join(json.dumps(s) + "\n" for s in skipped),
                                 encoding="utf-8")
    else:
        problems_path.unlink(missing_ok=True)
    summary = {"out": str(out_path) if h5 is not None else "", "files_found": len(files),
               "written": written, "already_done": len(done), "skipped": len(skipped),
               "problems": str(problems_path) if skipped else ""}
    if h5 is None:
        log.error("no file could be embedded: no %s written; reasons in %s", out_path,
                  problems_path)
    log.info("embeddings: %s", summary)
    return summary


@dataclass(frozen=True)
class EmbedRun(EvalIO):
    """``configs/evals/embed.yaml``: ``out`` is the HDF5 file written."""

    in_dir: str = ""                          # folder of ambisonic audio files
    convention: Literal["ambix", "fuma", "acn_n3d"] = "ambix"   # channel layout of the files
    hop_s: float = 1.0                        # seconds between windows
    directions_az_step_deg: float = 0.0       # also embed toward a grid (0 = off)
    directions_el_deg: tuple[float, ...] = (0.0,)
    on_error: Literal["raise", "skip"] = "skip"   # skip: list the file in <out>.problems.jsonl


def run(cfg: EmbedRun) -> Path:
    if not cfg.in_dir or not cfg.out:
        raise ConfigError(f"in_dir and out: expected a folder of recordings and an output .h5 "
                          f"(IN=... OUT=... with make), got in_dir={cfg.in_dir!r}, "
                          f"out={cfg.out!r}")
    directions = (direction_grid(cfg.directions_az_step_deg, list(cfg.directions_el_deg))
                  if cfg.directions_az_step_deg > 0 else None)
    summary = embed_folder(require_ckpt(cfg), cfg.in_dir, cfg.out, convention=cfg.convention,
                           hop_s=cfg.hop_s, directions=directions, on_error=cfg.on_error,
                           device=cfg.device, norm_stats=cfg.norm_stats or None)
    print(json.dumps(summary, indent=2))
    if not summary["out"]:
        raise AmbisonicFormatError(f"{cfg.in_dir}: none of {summary['files_found']} files could "
                                   f"be embedded; reasons in {summary['problems']}")
    return Path(cfg.out)


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(EmbedRun, run, argv, name="embed", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
