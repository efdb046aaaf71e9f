"""Which channel holds which ambisonic component? Score channel orders against seen sources.

A first-order recording whose channels are permuted still looks like plausible audio; only its
directions are wrong. This module tests each hypothesis "channel k holds letter k of ORDER"
(ORDER a permutation of W, X, Y, Z) by computing the intensity-vector direction of arrival of
many windows under that hypothesis and measuring how well it points at the sources seen in the
picture (detections) or known from ground truth. The right order points at them; a wrong one
points elsewhere.

    python -m pipeline.channel_order --shards data/shards/demo [--directions detections|gt] \\
        [--declared WYZX] [--max-windows 400] [--split train]

reads the stored FOA windows (``foa_acn_sn3d``, already decoded with the manifest's
``channel_order``) and the detection directions from a shard folder, prints every order's
score and the best one with its margin over the runner-up, and the ``--channel-order`` to give
the importer so that the decoded audio becomes ambiX. See docs/channel_order.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.decode import AMBIX_CHANNEL_ORDER, check_channel_order
from pipeline.features import DEFAULT_CONFIG, AudioFeatureConfig, audio_feature_config, stft
from pipeline.shards import ShardIndex, open_shard
from pipeline.spatial import direction_vector

__all__ = [
    "ALL_CHANNEL_ORDERS",
    "ChannelOrderScores",
    "cross_power",
    "intensity_for_order",
    "score_channel_orders",
    "compose_channel_orders",
    "main",
]

# All 24 permutations of the letters, ambiX (ACN) first.
ALL_CHANNEL_ORDERS = tuple(sorted({"".join(p) for p in itertools.permutations(AMBIX_CHANNEL_ORDER)},
                                  key=lambda order: (order != AMBIX_CHANNEL_ORDER, order)))
_SILENT_POWER = 1e-12  # cross-power trace (squared STFT units) below which a window is skipped


@dataclass(frozen=True)
class ChannelOrderScores:
    """Channel orders ranked by agreement with known source directions, best first.

    ``mean_cosine[i]``: mean over windows of cos(angle between the intensity DOA under
    ``orders[i]`` and the nearest source), in [-1, 1] (1 = every DOA on a source).
    ``median_error_deg[i]``: median of that angle, degrees. ``n_windows``: windows scored
    (those with at least one source and non-silent audio).
    """

    orders: tuple[str, ...]
    mean_cosine: tuple[float, ...]
    median_error_deg: tuple[float, ...]
    n_windows: int

    @property
    def best(self) -> str:
        return self.orders[0]

    @property
    def margin(self) -> float:
        """Mean cosine of the best order minus that of the runner-up (0 with one candidate)."""
        return self.mean_cosine[0] - self.mean_cosine[1] if len(self.orders) > 1 else 0.0

    def score_of(self, order: str) -> float:
        return self.mean_cosine[self.orders.index(order)]


def cross_power(foa_windows, cfg: AudioFeatureConfig = DEFAULT_CONFIG) -> np.ndarray:
    """``(n_windows, 4, 4)`` real cross-power ``P[a, b] = sum_{t, f} Re{conj(S_a) S_b}`` of the
    channels' STFTs (``cfg.n_fft``, ``cfg.hop_length``; squared STFT units), in channel order as
    stored. Any channel order's summed intensity is read from it (:func:`intensity_for_order`).

    Args:
        foa_windows: ``(n_windows, 4, n_samples)`` or ``(4, n_samples)`` audio.
    """
    x = np.asarray(foa_windows, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"expected FOA windows shaped (n_windows, 4, n_samples), got {x.shape}")
    spectra = stft(x, cfg.n_fft, cfg.hop_length).reshape(x.shape[0], 4, -1)   # (N, 4, F*T)
    return np.einsum("nai,nbi->nab", spectra.conj(), spectra).real


def intensity_for_order(power: np.ndarray, order: str) -> np.ndarray:
    """Summed active intensity ``(..., 3)`` (components x, y, z; front, left, up) if channel k
    holds ``order[k]``: ``sum Re{conj(W) [X, Y, Z]}``, i.e. what
    :func:`pipeline.features.doa_from_intensity` sums after reordering the channels to ambiX."""
    check_channel_order(order)
    w = order.index("W")
    return np.stack([power[..., w, order.index(axis)] for axis in "XYZ"], axis=-1)


def score_channel_orders(
    foa_windows,
    source_directions: Sequence,
    candidates: Sequence[str] = ALL_CHANNEL_ORDERS,
    cfg: AudioFeatureConfig = DEFAULT_CONFIG,
) -> ChannelOrderScores:
    """Rank channel-order hypotheses by how well the intensity DOA agrees with seen sources.

    Args:
        foa_windows: ``(n_windows, 4, n_samples)`` first-order audio at ``cfg.sample_rate``, in
            the channel order to test (as decoded; SN3D or N3D alike: only directions count).
        source_directions: one entry per window, an ``(m, 2)`` array of ``(azimuth_rad,
            elevation_rad)`` of the sources seen in it (docs/CONVENTIONS.md: azimuth
            counter-clockwise from the front, +pi/2 = left; elevation up from the horizon);
            ``m = 0`` leaves the window out.
        candidates: orders to score, each the letters W, X, Y, Z: channel k holds letter k
            (default all 24; "WYZX" = the audio is ambiX as it is).
        cfg: STFT settings (``n_fft``, ``hop_length``).

    Returns:
        :class:`ChannelOrderScores`, best first: per order the mean over windows of the cosine
        between its DOA and the nearest source, and the median angle (degrees). Raises
        ``ValueError`` when no window has both a source and sound.
    """
    candidates = [check_channel_order(order) for order in candidates]
    if not candidates:
        raise ValueError("expected at least one candidate channel order, got none")
    power = cross_power(foa_windows, cfg)
    if len(source_directions) != len(power):
        raise ValueError(f"expected one list of source directions per window ({len(power)}), "
                         f"got {len(source_directions)}")
    keep = [i for i, dirs in enumerate(source_directions)
            if np.asarray(dirs).size and np.trace(power[i]) > _SILENT_POWER]
    if not keep:
        raise ValueError("no window has both a source direction and sound: nothing to score")
    sources = [_unit_vectors(source_directions[i]) for i in keep]
    rows = []
    for order in candidates:
        doa = intensity_for_order(power[keep], order)
        doa /= np.maximum(np.linalg.norm(doa, axis=-1, keepdims=True), 1e-30)
        cosines = np.array([float(np.max(units @ d)) for units, d in zip(sources, doa)])
        errors_deg = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
        rows.append((float(cosines.mean()), float(np.median(errors_deg)), order))
    rows.sort(key=lambda row: (-row[0], candidates.index(row[2])))
    return ChannelOrderScores(orders=tuple(r[2] for r in rows),
                              mean_cosine=tuple(r[0] for r in rows),
                              median_error_deg=tuple(r[1] for r in rows), n_windows=len(keep))


def compose_channel_orders(declared: str, found: str) -> str:
    """The file's channel order when audio decoded with ``declared`` (e.g. a manifest's
    ``channel_order``) turns out to hold ``found`` (letter j: what decoded ambiX channel j
    really holds): the ``--channel-order`` that makes the decoded audio ambiX."""
    check_channel_order(declared)
    check_channel_order(found)
    return "".join(found[AMBIX_CHANNEL_ORDER.index(letter)] for letter in declared)


def _unit_vectors(directions) -> np.ndarray:
    """``(m, 3)`` unit vectors of ``(m, 2)`` (azimuth_rad, elevation_rad) pairs."""
    pairs = np.asarray(directions, dtype=np.float64).reshape(-1, 2)
    return np.asarray(direction_vector(pairs[:, 0], pairs[:, 1])).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# shards -> report


def read_shard_windows(shards_dir: str | Path, directions: str = "detections",
                       max_windows: int = 400, split: str | None = None,
                       min_confidence: float = 0.0):
    """``(foa_windows, source_directions, feature_cfg)`` of up to ``max_windows`` windows of a
    shard folder, spread evenly over its samples. ``directions``: "detections" (box centres
    with confidence >= ``min_confidence``) or "gt" (sounding ground-truth objects, synthetic
    data only)."""
    if directions not in ("detections", "gt"):
        raise ValueError(f"directions must be 'detections' or 'gt', got {directions!r}")
    paths = ShardIndex.load(shards_dir).paths(split)
    counts = []
    for path in paths:
        with open_shard(path) as h5:
            counts.append(int(h5["foa_acn_sn3d"].shape[0]))
    total = sum(counts)
    if total == 0:
        raise FileNotFoundError(f"{shards_dir}: no samples listed in its shards.jsonl; run make "
                                f"preprocess first (SHARDS=<folder>)")
    picks = np.unique(np.linspace(0, total - 1, min(max_windows, total)).round().astype(int))
    starts = np.cumsum([0] + counts)
    foa, sources, cfg = [], [], None
    for shard, path in enumerate(paths):
        rows = [int(p - starts[shard]) for p in picks if starts[shard] <= p < starts[shard + 1]]
        if not rows:
            continue
        with open_shard(path) as h5:
            cfg = cfg or audio_feature_config(h5.attrs)
            if directions == "gt" and "gt/count" not in h5:
                raise ValueError(f"{path}: --directions gt needs ground truth (synthetic "
                                 "shards); this shard has none: use detections")
            for row in rows:
                foa.append(np.asarray(h5["foa_acn_sn3d"][row], dtype=np.float32))
                sources.append(_row_directions(h5, row, directions, min_confidence))
    return np.stack(foa), sources, cfg


def _row_directions(h5, row: int, directions: str, min_confidence: float) -> np.ndarray:
    if directions == "gt":
        n = int(h5["gt/count"][row])
        mask = np.asarray(h5["gt/sounding"][row][:n], dtype=bool)
        az, el = h5["gt/azimuth_rad"][row][:n][mask], h5["gt/elevation_rad"][row][:n][mask]
    else:
        n = int(h5["detections/count"][row])
        mask = np.asarray(h5["detections/confidence"][row][:n]) >= min_confidence
        az = h5["detections/azimuth_rad"][row][:n][mask]
        el = h5["detections/elevation_rad"][row][:n][mask]
    return np.stack([az, el], axis=-1).astype(np.float64)


def format_report(scores: ChannelOrderScores, declared: str, n_read: int, top: int = 6) -> str:
    """Lines for the terminal: the top orders, the best with its margin, the order to import."""
    lines = [f"{scores.n_windows} of {n_read} windows have sources and sound; channel k of the "
             "decoded audio holds letter k of ORDER (WYZX = ambiX as decoded):",
             "  ORDER  mean cos  median error (deg)"]
    for order, cosine, error in list(zip(scores.orders, scores.mean_cosine,
                                         scores.median_error_deg))[:top]:
        lines.append(f"  {order}   {cosine:+.3f}    {error:6.1f}")
    if AMBIX_CHANNEL_ORDER not in scores.orders[:top]:
        lines.append(f"  {AMBIX_CHANNEL_ORDER}   {scores.score_of(AMBIX_CHANNEL_ORDER):+.3f}    "
                     f"{scores.median_error_deg[scores.orders.index(AMBIX_CHANNEL_ORDER)]:6.1f}")
    lines.append(f"best: {scores.best}, margin {scores.margin:.3f} in mean cosine over "
                 f"{scores.orders[1] if len(scores.orders) > 1 else '-'}")
    if scores.best == AMBIX_CHANNEL_ORDER:
        lines.append(f"the decoded audio agrees with ambiX: keep --channel-order {declared}")
    else:
        lines.append(f"the decoded audio looks permuted: re-import with --channel-order "
                     f"{compose_channel_orders(declared, scores.best)} (files decoded with "
                     f"{declared}) and preprocess into a new SHARDS folder")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config import run_main

    return run_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from pipeline.runtime import setup_entry_point

    parser = argparse.ArgumentParser(prog="python -m pipeline.channel_order",
                                     description="Score every channel order of the stored FOA "
                                                 "by how well its intensity DOA points at the "
                                                 "detected (or ground-truth) sources.")
    parser.add_argument("--shards", required=True, help="folder with shards.jsonl")
    parser.add_argument("--directions", choices=["detections", "gt"], default="detections",
                        help="source directions: detector boxes, or synthetic ground truth")
    parser.add_argument("--declared", default=AMBIX_CHANNEL_ORDER,
                        help="--channel-order the manifest was imported with (default WYZX)")
    parser.add_argument("--max-windows", type=int, default=400, help="windows to score")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="ignore detections below this confidence")
    parser.add_argument("--split", default=None, help="train / val / test (default: all)")
    parser.add_argument("--debug", action="store_true", help="traceback of an error")
    args = parser.parse_args(argv)
    setup_entry_point()
    declared = check_channel_order(args.declared.upper())
    if args.max_windows < 1:
        raise ValueError(f"--max-windows expected >= 1, got {args.max_windows}")
    foa, sources, cfg = read_shard_windows(args.shards, args.directions, args.max_windows,
                                           args.split, args.min_confidence)
    scores = score_channel_orders(foa, sources, cfg=cfg)
    print(f"channel order check of {args.shards} ({args.directions}):")
    print(format_report(scores, declared, len(foa)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
