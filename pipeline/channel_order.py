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
    (those with at least one source and non-silent audio). ``w_spread_db[c]``: the physical W
    test of channel c (:func:`w_energy_spread_db`), lower = more W-like; ``w_channel``: the
    channel it names W when it is decisive (its spread below every other channel's by the
    factor ``W_TEST_RATIO`` and by ``W_TEST_GAP_DB``), else None. ``orders`` put the orders
    whose W is ``w_channel`` first, each group by mean cosine: a direction test with
    detections a few degrees off cannot tell W from a dipole (a swap of W and X scored within
    0.002 of the truth), the energy test can.
    """

    orders: tuple[str, ...]
    mean_cosine: tuple[float, ...]
    median_error_deg: tuple[float, ...]
    n_windows: int
    w_spread_db: tuple[float, ...] = ()
    w_channel: int | None = None

    @property
    def best(self) -> str:
        return self.orders[0]

    @property
    def best_by_direction(self) -> str:
        """The order of highest mean cosine, whatever the energy test says."""
        return self.orders[int(np.argmax(self.mean_cosine))]

    @property
    def margin(self) -> float:
        """Mean cosine of the best order minus that of the runner-up of the same W channel
        (0 with one candidate)."""
        same_w = [c for o, c in zip(self.orders[1:], self.mean_cosine[1:])
                  if o.index("W") == self.orders[0].index("W")]
        return self.mean_cosine[0] - same_w[0] if same_w else 0.0

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


#: The W test is decisive when one channel's spread is below every other's by this factor and
#: by at least this many dB.
W_TEST_RATIO, W_TEST_GAP_DB = 1.5, 0.3


def w_energy_spread_db(power: np.ndarray) -> np.ndarray:
    """The physical W test, per channel c of ``power`` ``(n_windows, 4, 4)``: the spread
    (interquartile range over windows, dB) of ``10 log10(sum of the other channels' energy /
    channel c's energy)``.

    For a plane wave in ACN/SN3D the dipoles' energy together equals W's, whatever the
    direction, and for uncorrelated sources (or a diffuse field) it does on average; in N3D or
    FuMa the ratio is another constant. So with W in channel c the ratio is nearly constant over
    windows; with a dipole taken for W it swings with the direction of the sound (a dipole's
    energy goes to 0 across its null). Windows with sources in several directions make the
    spread of a wrong W large."""
    energy = np.maximum(np.einsum("naa->na", power), 1e-30)                  # (n, 4)
    others = energy.sum(axis=1, keepdims=True) - energy
    ratio_db = 10.0 * np.log10(np.maximum(others, 1e-30) / energy)
    q75, q25 = np.percentile(ratio_db, [75, 25], axis=0)
    return q75 - q25


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
    spread = w_energy_spread_db(power[keep])
    ranked = np.sort(spread)
    decisive = (len(keep) >= 4 and ranked[1] >= W_TEST_RATIO * ranked[0]
                and ranked[1] - ranked[0] >= W_TEST_GAP_DB)
    w_channel = int(np.argmin(spread)) if decisive else None
    rows.sort(key=lambda row: (w_channel is not None and row[2].index("W") != w_channel,
                               -row[0], candidates.index(row[2])))
    return ChannelOrderScores(orders=tuple(r[2] for r in rows),
                              mean_cosine=tuple(r[0] for r in rows),
                              median_error_deg=tuple(r[1] for r in rows), n_windows=len(keep),
                              w_spread_db=tuple(float(v) for v in spread), w_channel=w_channel)


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
    """``(foa_windows, source_directions, feature_cfg, clip_ids)`` of up to ``max_windows``
    windows of a shard folder, spread evenly over its samples. ``directions``: "detections" (box
    centres with confidence >= ``min_confidence``) or "gt" (sounding ground-truth objects,
    synthetic data only)."""
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
    foa, sources, cfg, clip_ids = [], [], None, []
    for shard, path in enumerate(paths):
        rows = [int(p - starts[shard]) for p in picks if starts[shard] <= p < starts[shard + 1]]
        if not rows:
            continue
        with open_shard(path) as h5:
            cfg = cfg or audio_feature_config(h5.attrs)
            if directions == "gt" and "gt/count" not in h5:
                raise ValueError(f"{path}: --directions gt needs ground truth (synthetic "
                                 "shards); this shard has none: use detections")
            ids = h5["clip_id"].asstr()[()]
            for row in rows:
                clip_ids.append(str(ids[row]))
                foa.append(np.asarray(h5["foa_acn_sn3d"][row], dtype=np.float32))
                sources.append(_row_directions(h5, row, directions, min_confidence))
    return np.stack(foa), sources, cfg, clip_ids


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


def declared_order_of(shards_dir: str | Path, clip_ids: Sequence[str]) -> tuple[str, str]:
    """The ``channel_order`` the shards' clips were imported with, read from the manifest of
    the preprocessing run (``preprocess_config.yaml``'s ``paths.manifest``), and where it came
    from. Clips of several orders: the most common, said so. No readable manifest: ambiX
    (WYZX), said so."""
    from pipeline.config import load_config
    from pipeline.manifest import read_manifest
    from pipeline.preprocess_config import PreprocessConfig

    config_path = Path(shards_dir) / "preprocess_config.yaml"
    try:
        manifest = Path(load_config(PreprocessConfig, config_path).paths.manifest)
        records = {clip.clip_id: clip.channel_order or AMBIX_CHANNEL_ORDER
                   for clip in read_manifest(manifest)}
    except (OSError, ValueError) as exc:        # ConfigError and ManifestError are ValueErrors
        return AMBIX_CHANNEL_ORDER, (f"assumed: no readable manifest via {config_path} ({exc}); "
                                     f"pass --declared")
    counts: dict[str, int] = {}
    for clip_id in clip_ids:
        if clip_id in records:
            counts[records[clip_id]] = counts.get(records[clip_id], 0) + 1
    if not counts:
        return AMBIX_CHANNEL_ORDER, f"assumed: none of the windows' clips is in {manifest}"
    order = max(counts, key=counts.get)
    mixed = f" ({len(counts)} orders among the clips: {counts}; use --split or --declared)" \
        if len(counts) > 1 else ""
    return order, f"from {manifest}{mixed}"


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
    if scores.w_spread_db:
        spreads = ", ".join(f"{c}: {v:.2f}" for c, v in enumerate(scores.w_spread_db))
        lines.append(
            f"W test (spread over windows of the other channels' energy over channel c's, dB; "
            f"steady only for the true W): {spreads} -> "
            + (f"W is channel {scores.w_channel}" if scores.w_channel is not None else
               "not decisive (sources in too few directions): W cannot be told from a dipole "
               "here, and the best order by direction may be a W-dipole swap"))
    lines.append(f"best: {scores.best}, margin {scores.margin:.3f} in mean cosine over the "
                 f"next order with the same W")
    if scores.best_by_direction != scores.best:
        lines.append(f"(by direction alone {scores.best_by_direction} would win; the W test "
                     f"rules out its W)")
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
    parser.add_argument("--declared", default=None,
                        help="--channel-order the clips were imported with (default: read from "
                             "the manifest of the preprocessing run)")
    parser.add_argument("--max-windows", type=int, default=400, help="windows to score")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="ignore detections below this confidence")
    parser.add_argument("--split", default=None, help="train / val / test (default: all)")
    parser.add_argument("--debug", action="store_true", help="traceback of an error")
    args = parser.parse_args(argv)
    setup_entry_point()
    if args.max_windows < 1:
        raise ValueError(f"--max-windows expected >= 1, got {args.max_windows}")
    foa, sources, cfg, clip_ids = read_shard_windows(args.shards, args.directions,
                                                     args.max_windows, args.split,
                                                     args.min_confidence)
    if args.declared:
        declared, source = check_channel_order(args.declared.upper()), "--declared"
    else:
        declared, source = declared_order_of(args.shards, clip_ids)
    scores = score_channel_orders(foa, sources, cfg=cfg)
    print(f"channel order check of {args.shards} ({args.directions}); the clips were decoded "
          f"with {declared} ({source}):")
    print(format_report(scores, declared, len(foa)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
