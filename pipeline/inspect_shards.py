"""Look at preprocessed samples: one PNG per sample, to check that sound and picture line up.

    python -m pipeline.inspect_shards --shards data/shards/synthetic --out outputs/inspect --n 4

Each PNG shows, for one sample:

- the equirectangular keyframe with the detections (boxes, class:confidence), the ground-truth
  objects of synthetic clips (``+``, red when sounding in the window), and the K viewpoints of both sources
  with the outline of their crops (random: cyan circles; yolo: magenta squares, filled when
  centred on a detection);
- an acoustic map over the sphere in the *same* layout: steered response power (dB) of a
  first-order cardioid beam ``0.5 W + 0.5 u.(X, Y, Z)`` scanned over an azimuth/elevation grid,
  computed from the stored unrotated FOA, with the direction of the time-frequency-averaged
  intensity vector (IV DOA, white star) and the same markers;
- per viewpoint and source: the middle crop, the log-mel of the beam toward it, and ``I_x`` of the
  rotated IV (red: sound arriving from the viewpoint's front, blue: from behind).

A sound source should appear as a hot spot of the acoustic map on top of its object in the
keyframe, and viewpoints looking at it should show a red ``I_x`` and a louder beam.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.crops import perspective_rays
from pipeline.features import audio_feature_config
from pipeline.manifest import file_name_of
from pipeline.shards import (VIEWPOINT_SOURCES, ShardIndex, open_shard, stored_crops,
                             stored_features)
from pipeline.spatial import direction_to_equirect_pixel, direction_vector, vector_to_direction

__all__ = ["steered_response_power_db", "intensity_doa", "render_sample", "main"]

log = logging.getLogger("pipeline.inspect_shards")

SOURCE_STYLE = {"random": dict(color="cyan", marker="o"), "yolo": dict(color="magenta", marker="s")}



#: Viewpoints drawn as crop / beam / IV panels per set (a bank may hold 16).
MAX_VIEW_PANELS = 6

def steered_response_power_db(foa: np.ndarray, width: int = 128, height: int = 64) -> np.ndarray:
    """Cardioid SRP map ``(height, width)`` in dB (max 0) on the equirectangular pixel grid.

    Args:
        foa: ``(4, n)`` ambiX (ACN W, Y, Z, X; SN3D).
    Returns:
        float32 map whose pixel (r, c) is the beam power toward the direction of that pixel
        centre (docs/CONVENTIONS.md mapping), so it overlays the keyframe directly.
    """
    from pipeline.spatial import equirect_pixel_to_direction

    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    az, el = equirect_pixel_to_direction(cols, rows, width, height)
    u = direction_vector(az, el).reshape(-1, 3)                       # (P, 3) x, y, z
    x = np.asarray(foa, dtype=np.float64)[[0, 3, 1, 2]]               # W, X, Y, Z
    covariance = x @ x.T / x.shape[1]                                 # (4, 4)
    weights = np.concatenate([np.full((len(u), 1), 0.5), 0.5 * u], axis=1)   # beam weights
    power = np.einsum("pi,ij,pj->p", weights, covariance, weights).reshape(height, width)
    return (10.0 * np.log10(np.maximum(power, 1e-20) / max(power.max(), 1e-20))).astype(np.float32)


def intensity_doa(foa: np.ndarray, feature_cfg) -> tuple[float, float]:
    """Direction (radians) of the energy-weighted active intensity of an ambiX window
    (:func:`pipeline.features.doa_from_intensity`, with the shard's STFT settings)."""
    from pipeline.features import doa_from_intensity

    return doa_from_intensity(np.asarray(foa, np.float32), feature_cfg)


def _crop_outline(az: float, el: float, fov: float, width: int, height: int, n: int = 24):
    """Pixel positions (col, row) of the border of a crop on the equirectangular image."""
    rays = perspective_rays([az], [el], [fov], n)[0]
    border = np.concatenate([rays[0], rays[:, -1], rays[-1, ::-1], rays[::-1, 0]])
    ray_az, ray_el = vector_to_direction(border)
    return direction_to_equirect_pixel(ray_az, ray_el, width, height)


def _mark_views(ax, h5, row: int, width: int, height: int, outlines: bool) -> None:
    for source in VIEWPOINT_SOURCES:
        style = SOURCE_STYLE[source]
        prefix = f"views/{source}"
        az, el = h5[f"{prefix}/azimuth_rad"][row], h5[f"{prefix}/elevation_rad"][row]
        fov, from_det = h5[f"{prefix}/fov_rad"][row], h5[f"{prefix}/from_detection"][row]
        for k in range(len(az)):
            col, r = direction_to_equirect_pixel(az[k], el[k], width, height)
            ax.plot(col, r, style["marker"], ms=9, mec=style["color"], mew=2,
                    mfc=style["color"] if from_det[k] else "none")
            ax.text(col + 3, r - 3, f"{source[0]}{k}", color=style["color"], fontsize=8)
            if outlines:
                cols, rows = _crop_outline(az[k], el[k], fov[k], width, height)
                ax.plot(cols, rows, ".", ms=1.5, color=style["color"])


def _mark_gt(ax, h5, row: int, width: int, height: int) -> None:
    if "gt/count" not in h5:
        return
    for i in range(int(h5["gt/count"][row])):
        col, r = direction_to_equirect_pixel(h5["gt/azimuth_rad"][row, i],
                                             h5["gt/elevation_rad"][row, i], width, height)
        sounding = bool(h5["gt/sounding"][row, i])
        ax.plot(col, r, "+", ms=14, mew=2, color="red" if sounding else "white")


def render_sample(h5, row: int, out_path: Path) -> Path:
    """Write the PNG of sample ``row`` of an open shard (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = json.loads(h5.attrs["config"]) if "config" in h5.attrs else {}
    decode_width = config.get("decode", {}).get("width")
    keyframe = h5["keyframe"][row]
    kf_h, kf_w = keyframe.shape[:2]
    scale = kf_w / decode_width if decode_width else 1.0
    # Crops, beams and IV panels for the first MAX_VIEW_PANELS viewpoints of the bank; the
    # keyframe and sound map mark all of them.
    k = min(h5["views/random/azimuth_rad"].shape[1], MAX_VIEW_PANELS)
    foa = h5["foa_acn_sn3d"][row].astype(np.float32)

    fig = plt.figure(figsize=(3.2 * max(k, 4), 19), dpi=80)
    grid = fig.add_gridspec(2 + 3 * len(VIEWPOINT_SOURCES), max(k, 4),
                            height_ratios=[3.6, 3.6] + [1.0, 0.7, 0.7] * len(VIEWPOINT_SOURCES))
    ax_key = fig.add_subplot(grid[0, :])
    ax_key.imshow(keyframe, extent=(-0.5, kf_w - 0.5, kf_h - 0.5, -0.5), aspect="auto")
    n_det = int(h5["detections/count"][row])
    for i in range(n_det):
        x1, y1, x2, y2 = h5["detections/boxes_xyxy"][row, i] * scale
        for shift in (0.0, -kf_w):      # a box wrapping the right edge is drawn on both sides
            ax_key.add_patch(plt.Rectangle((x1 + shift - 0.5, y1 - 0.5), x2 - x1, y2 - y1,
                                           fill=False, ec="yellow", lw=1.5))
        ax_key.text(x1, y1 - 2, f"{int(h5['detections/class_id'][row, i])}:"
                    f"{h5['detections/confidence'][row, i]:.2f}", color="yellow", fontsize=8)
    _mark_gt(ax_key, h5, row, kf_w, kf_h)
    _mark_views(ax_key, h5, row, kf_w, kf_h, outlines=True)
    ax_key.set_xlim(-0.5, kf_w - 0.5)
    ax_key.set_ylim(kf_h - 0.5, -0.5)
    clip_id = h5["clip_id"].asstr()[row]
    ax_key.set_title(f"{clip_id}  window {int(h5['window_index'][row])}  "
                     f"(audio {h5['audio_start_s'][row]:.2f} s, video {h5['video_start_s'][row]:.2f} s)"
                     "  keyframe: detections (yellow), gt (+, red = sounding), "
                     "random (cyan o), yolo (magenta s, filled = detection)", fontsize=9)
    ax_key.set_xticks([0, kf_w / 4, kf_w / 2, 3 * kf_w / 4, kf_w - 1],
                      ["180", "90 (left)", "0 (front)", "-90 (right)", "-180"])

    ax_srp = fig.add_subplot(grid[1, :])
    srp = steered_response_power_db(foa, kf_w // 2, kf_h // 2)
    ax_srp.imshow(srp, cmap="inferno", vmin=-9, vmax=0, aspect="auto",
                  extent=(-0.5, kf_w - 0.5, kf_h - 0.5, -0.5))
    doa_az, doa_el = intensity_doa(foa, audio_feature_config(h5.attrs))
    col, r = direction_to_equirect_pixel(doa_az, doa_el, kf_w, kf_h)
    ax_srp.plot(col, r, "*", ms=18, mec="black", mfc="white")
    _mark_gt(ax_srp, h5, row, kf_w, kf_h)
    _mark_views(ax_srp, h5, row, kf_w, kf_h, outlines=False)
    ax_srp.set_xlim(-0.5, kf_w - 0.5)
    ax_srp.set_ylim(kf_h - 0.5, -0.5)
    ax_srp.set_title(f"acoustic map from the stored FOA: cardioid SRP, 0 to -9 dB; "
                     f"IV DOA (white star) az "
                     f"{math.degrees(doa_az):.0f} deg, el {math.degrees(doa_el):.0f} deg",
                     fontsize=9)
    ax_srp.set_xticks(ax_key.get_xticks(), [t.get_text() for t in ax_key.get_xticklabels()])

    for s, source in enumerate(VIEWPOINT_SOURCES):
        prefix = f"views/{source}"
        crops = stored_crops(h5, f"{prefix}/crops")[row]     # (K, T, S, S, 3)
        beam = stored_features(h5, f"{prefix}/logmel_beam")[row]
        iv = stored_features(h5, f"{prefix}/iv")[row]
        for view in range(k):
            az = math.degrees(h5[f"{prefix}/azimuth_rad"][row, view])
            el = math.degrees(h5[f"{prefix}/elevation_rad"][row, view])
            fov = math.degrees(h5[f"{prefix}/fov_rad"][row, view])
            det = " det" if h5[f"{prefix}/from_detection"][row, view] else ""
            ax = fig.add_subplot(grid[2 + 3 * s, view])
            ax.imshow(crops[view, crops.shape[1] // 2])
            ax.set_title(f"{source}{view}{det}: az {az:.0f} el {el:.0f} fov {fov:.0f}",
                         fontsize=8, color=SOURCE_STYLE[source]["color"])
            ax.axis("off")
            ax = fig.add_subplot(grid[3 + 3 * s, view])
            ax.imshow(beam[view, 0], origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"beam log-mel (mean {beam[view, 0].mean():.1f} dB)", fontsize=7)
            ax.axis("off")
            ax = fig.add_subplot(grid[4 + 3 * s, view])
            ax.imshow(iv[view, 0], origin="lower", aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"IV I_x (mean {iv[view, 0].mean():+.2f})", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def pick_samples(clip_ids_per_shard: Sequence[Sequence[str]], n: int) -> list[tuple[int, int]]:
    """``(shard index, row)`` of up to ``n`` samples from different clips: the first window of
    each clip in index order, spread evenly over all clips (a clip's windows are consecutive,
    so taking the first ``n`` rows would show one or two clips only)."""
    firsts: list[tuple[int, int]] = []
    seen: set[str] = set()
    for shard, clip_ids in enumerate(clip_ids_per_shard):
        for row, clip_id in enumerate(clip_ids):
            if clip_id not in seen:
                seen.add(clip_id)
                firsts.append((shard, row))
    if len(firsts) <= n:
        return firsts
    picks = np.linspace(0, len(firsts) - 1, n).round().astype(int)
    return [firsts[i] for i in picks]


def inspect_shards(shards_dir: str | Path, out_dir: str | Path, n: int = 4,
                   split: str | None = None) -> list[Path]:
    """Render ``n`` samples of ``shards_dir``, each from a different clip (spread over the
    index); returns the PNG paths."""
    paths = ShardIndex.load(shards_dir).paths(split)
    clip_ids = []
    for path in paths:
        with open_shard(path) as h5:
            clip_ids.append(list(h5["clip_id"].asstr()[()]))
    written: list[Path] = []
    for shard, row in pick_samples(clip_ids, n):
        with open_shard(paths[shard]) as h5:
            clip_id = h5["clip_id"].asstr()[row]
            name = f"{file_name_of(clip_id)}_w{int(h5['window_index'][row]):03d}.png"
            written.append(render_sample(h5, row, Path(out_dir) / name))
            log.info("wrote %s", written[-1])
    return written


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config import run_main

    return run_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from pipeline.runtime import setup_entry_point

    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect_shards",
                                     description="PNG per sample: keyframe, viewpoints, "
                                                 "acoustic map, crops and features.")
    parser.add_argument("--shards", required=True, help="folder with shards.jsonl")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--n", type=int, default=4, help="number of samples")
    parser.add_argument("--split", default=None, help="train / val / test (default: all)")
    parser.add_argument("--debug", action="store_true", help="traceback of an error")
    args = parser.parse_args(argv)
    setup_entry_point()
    written = inspect_shards(args.shards, args.out, args.n, args.split)
    if not written:
        raise FileNotFoundError(f"{args.shards}: no samples listed in its shards.jsonl; run "
                                f"make preprocess first (SHARDS=<folder>)")
    print("\n".join(str(p) for p in written))
    print(f"==> {len(written)} PNGs of different clips in {args.out}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
