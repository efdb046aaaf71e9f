"""Sound-source localisation with class activation maps (Owens & Efros 2018, Sec. 5.1).

The fused network's logit is the mean over space-time patches ``x`` of ``w . f_x + b``
(:meth:`FusedNet.patch_logits`); the magnitude ``|w . f_x + b|`` of a patch's own prediction
is its CAM value, averaged over time here -> an (h, w) grid over the crop.

Geometry (docs/CONVENTIONS.md, the gnomonic crops of :mod:`pipeline.crops`): a viewpoint
looking along ``f = d(az, el)`` has right ``r = d(az - pi/2, 0)`` and up ``u = r x f``;
crop pixel (row i, column j) of an S x S crop looks along
``f + tan(fov / 2) * (s_j r - s_i u)`` with ``s_k = -1 + 2 k / (S - 1)`` (pixel centres at
integers, ``fov`` the true horizontal angle between the outer pixel centres). CAM cell
``(a, b)`` of an (h, w) grid covers the crop evenly, so its centre is crop pixel
``((a + 0.5) S / h - 0.5, (b + 0.5) S / w - 0.5)``. Angles in radians throughout.

Scoring on the synthetic set: a clip is a *hit* when the CAM peak lies within
``threshold`` (20 degrees) of a sounding ground-truth object. Scores are given over the clips
with a sounding object inside the crop (others cannot be hit), next to two references
computed on the same clips: the crop centre as the guess (detection-centred crops make it
strong) and chance (the fraction of the crop's pixels within the threshold of a sounding
object, i.e. the expected score of a uniformly random peak).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.ndimage import map_coordinates

from pipeline.shards import open_shard
from pipeline.spatial import (angular_distance_rad, direction_vector, equirect_pixel_to_direction,
                              vector_to_direction, view_basis)
from baselines.multisensory.model import FusedNet, sync_labels

__all__ = [
    "cam_from_patch_logits",
    "cell_to_crop_pixel",
    "crop_pixel_to_direction",
    "direction_to_crop_pixel",
    "refined_peak_cell",
    "cam_peak_direction",
    "paint_cam_on_equirect",
    "upsample_cam",
    "nearest_sounding_distance",
    "localise_clip",
    "localisation_summary",
    "evaluate_sync_and_cam",
    "save_cam_figure",
]


def cam_from_patch_logits(patch_logits: torch.Tensor) -> torch.Tensor:
    """(N, T, h, w) per-patch logits -> (N, h, w) CAM: magnitude, averaged over time."""
    return patch_logits.abs().mean(dim=1)


def cell_to_crop_pixel(cell_row, cell_col, grid_shape: tuple[int, int],
                       crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre of CAM cell (cell_row, cell_col) of an (h, w) grid, in crop pixels (row, col)."""
    h, w = grid_shape
    row = (np.asarray(cell_row, dtype=np.float64) + 0.5) * crop_size / h - 0.5
    col = (np.asarray(cell_col, dtype=np.float64) + 0.5) * crop_size / w - 0.5
    return row, col


def crop_pixel_to_direction(row, col, azimuth_rad: float, elevation_rad: float, fov_rad: float,
                            crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Direction (azimuth_rad, elevation_rad) seen at (fractional) crop pixel (row, col)."""
    forward, right, up = view_basis(azimuth_rad, elevation_rad)
    half = np.tan(fov_rad / 2.0)
    s_col = -1.0 + 2.0 * np.asarray(col, dtype=np.float64) / (crop_size - 1)
    s_row = -1.0 + 2.0 * np.asarray(row, dtype=np.float64) / (crop_size - 1)
    ray = forward + half * (s_col[..., None] * right - s_row[..., None] * up)
    return vector_to_direction(ray)


def direction_to_crop_pixel(azimuth_rad, elevation_rad, view_azimuth_rad: float,
                            view_elevation_rad: float, fov_rad: float,
                            crop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop pixel (row, col) where a direction appears, and whether it lies inside the crop
    (in front of the viewer and within the crop's outer pixel edges). Inverse of
    :func:`crop_pixel_to_direction`."""
    forward, right, up = view_basis(view_azimuth_rad, view_elevation_rad)
    d = direction_vector(azimuth_rad, elevation_rad)
    depth = d @ forward
    half = np.tan(fov_rad / 2.0)
    safe = np.where(depth > 1e-9, depth, 1.0)
    s_col = (d @ right) / (safe * half)
    s_row = -(d @ up) / (safe * half)
    row = (s_row + 1.0) * (crop_size - 1) / 2.0
    col = (s_col + 1.0) * (crop_size - 1) / 2.0
    edge = 1.0 + 1.0 / (crop_size - 1)        # half a pixel beyond the outer pixel centres
    inside = (depth > 1e-9) & (np.abs(s_col) <= edge) & (np.abs(s_row) <= edge)
    return row, col, inside


def refined_peak_cell(cam: np.ndarray) -> tuple[float, float]:
    """Fractional (row, col) cell position of the CAM's maximum, cam (h, w).

    The highest cell, moved along each axis by the vertex of the parabola through it and its
    two neighbours (at most half a cell; no move at the border or on a flat neighbourhood).
    A coarse grid otherwise quantises the peak: with an even grid a source at the crop centre
    sits between four cells, and the best cell centre is already half a cell away.
    """
    cam = np.asarray(cam, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    position = []
    for axis, index in enumerate(peak):
        line = cam[:, peak[1]] if axis == 0 else cam[peak[0], :]
        offset = 0.0
        if 0 < index < len(line) - 1:
            before, centre, after = line[index - 1], line[index], line[index + 1]
            curvature = before - 2.0 * centre + after
            if curvature < 0:
                offset = float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))
        position.append(index + offset)
    return position[0], position[1]


def cam_peak_direction(cam: np.ndarray, azimuth_rad: float, elevation_rad: float,
                       fov_rad: float, crop_size: int) -> tuple[float, float]:
    """Direction (radians) of the CAM's maximum, cam (h, w) (:func:`refined_peak_cell`)."""
    cam = np.asarray(cam)
    cell_row, cell_col = refined_peak_cell(cam)
    row, col = cell_to_crop_pixel(cell_row, cell_col, cam.shape, crop_size)
    az, el = crop_pixel_to_direction(row, col, azimuth_rad, elevation_rad, fov_rad, crop_size)
    return float(az), float(el)


def paint_cam_on_equirect(cam: np.ndarray, azimuth_rad: float, elevation_rad: float,
                          fov_rad: float, crop_size: int, width: int, height: int) -> np.ndarray:
    """The CAM (h, w) of a crop drawn on an equirectangular frame: (height, width) float32,
    bilinear between cell centres, NaN where the crop does not look."""
    cam = np.asarray(cam, dtype=np.float64)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    az, el = equirect_pixel_to_direction(cols, rows, width, height)
    row, col, inside = direction_to_crop_pixel(az, el, azimuth_rad, elevation_rad, fov_rad,
                                               crop_size)
    cell_row = (row + 0.5) * cam.shape[0] / crop_size - 0.5
    cell_col = (col + 0.5) * cam.shape[1] / crop_size - 0.5
    values = map_coordinates(cam, [cell_row[inside], cell_col[inside]], order=1, mode="nearest")
    painted = np.full((height, width), np.nan, dtype=np.float32)
    painted[inside] = values
    return painted


def upsample_cam(cam: np.ndarray, crop_size: int) -> np.ndarray:
    """CAM (h, w) -> (S, S), bilinear between cell centres (same mapping as above)."""
    cam = np.asarray(cam, dtype=np.float64)
    pixels = np.arange(crop_size)
    cell_row = (pixels + 0.5) * cam.shape[0] / crop_size - 0.5
    cell_col = (pixels + 0.5) * cam.shape[1] / crop_size - 0.5
    rr, cc = np.meshgrid(cell_row, cell_col, indexing="ij")
    return map_coordinates(cam, [rr, cc], order=1, mode="nearest").astype(np.float32)


def nearest_sounding_distance(azimuth_rad, elevation_rad, gt_azimuth_rad: np.ndarray,
                              gt_elevation_rad: np.ndarray, gt_sounding: np.ndarray) -> np.ndarray:
    """Angle (rad) from direction(s) to the nearest sounding object; inf when none sounds.

    ``azimuth_rad``/``elevation_rad`` broadcast against a trailing object axis of the
    ground-truth arrays (O,); ``gt_sounding`` (O,) masks padding and silent objects."""
    gt_sounding = np.asarray(gt_sounding, dtype=bool)
    if not gt_sounding.any():
        return np.full(np.shape(azimuth_rad), np.inf)
    distance = angular_distance_rad(np.asarray(azimuth_rad)[..., None],
                                    np.asarray(elevation_rad)[..., None],
                                    np.asarray(gt_azimuth_rad)[gt_sounding],
                                    np.asarray(gt_elevation_rad)[gt_sounding])
    return distance.min(axis=-1)


def localise_clip(cam: np.ndarray, view: Sequence[float], crop_size: int,
                  gt: dict[str, np.ndarray], threshold_rad: float,
                  chance_grid: int = 16) -> dict[str, Any]:
    """Score one clip. ``view`` = (azimuth_rad, elevation_rad, fov_rad); ``gt`` holds
    ``count``, ``azimuth_rad``, ``elevation_rad``, ``sounding`` (O,). Returns the peak
    direction, its error, hits of the CAM peak and of the crop centre, the chance level (on a
    ``chance_grid``^2 grid of crop pixels) and whether a sounding object is in the crop."""
    azimuth, elevation, fov = (float(v) for v in view)
    sounding = np.asarray(gt["sounding"], dtype=bool) & (np.arange(len(gt["sounding"]))
                                                         < int(gt["count"]))
    peak_az, peak_el = cam_peak_direction(cam, azimuth, elevation, fov, crop_size)
    args = (gt["azimuth_rad"], gt["elevation_rad"], sounding)
    error = float(nearest_sounding_distance(peak_az, peak_el, *args))
    centre_error = float(nearest_sounding_distance(azimuth, elevation, *args))
    pixels = np.linspace(0, crop_size - 1, chance_grid)
    rows, cols = np.meshgrid(pixels, pixels, indexing="ij")
    grid_az, grid_el = crop_pixel_to_direction(rows, cols, azimuth, elevation, fov, crop_size)
    chance = float(np.mean(nearest_sounding_distance(grid_az, grid_el, *args) <= threshold_rad))
    _, _, inside = direction_to_crop_pixel(np.asarray(gt["azimuth_rad"])[sounding],
                                           np.asarray(gt["elevation_rad"])[sounding],
                                           azimuth, elevation, fov, crop_size)
    return {"peak_azimuth_rad": peak_az, "peak_elevation_rad": peak_el, "error_rad": error,
            "has_sounding": bool(sounding.any()), "in_view": bool(np.any(inside)),
            "hit": error <= threshold_rad, "centre_hit": centre_error <= threshold_rad,
            "chance": chance}


def localisation_summary(records: Sequence[dict[str, Any]], threshold_rad: float) -> dict[str, Any]:
    """Hit rates (percent) over the clips with a sounding object in view, and over all clips
    with a sounding object; centre and chance references on the in-view clips."""
    in_view = [r for r in records if r["in_view"]]
    sounding = [r for r in records if r["has_sounding"]]

    def pct(values) -> float | None:
        values = list(values)
        return 100.0 * float(np.mean(values)) if values else None

    errors = [np.degrees(r["error_rad"]) for r in in_view]
    return {
        "threshold_deg": float(np.degrees(threshold_rad)),
        "n_clips": len(records), "n_with_sounding_object": len(sounding),
        "n_in_view": len(in_view),
        "hit_rate_pct": pct(r["hit"] for r in in_view),
        "hit_rate_all_pct": pct(r["hit"] for r in sounding),
        "centre_hit_rate_pct": pct(r["centre_hit"] for r in in_view),
        "chance_hit_rate_pct": pct(r["chance"] for r in in_view),
        "median_error_deg": float(np.median(errors)) if errors else None,
    }


@torch.no_grad()
def evaluate_sync_and_cam(model: FusedNet, batches, device: torch.device, threshold_rad: float,
                          n_figures: int = 0) -> dict[str, Any]:
    """One pass over held-out batches: sync accuracy / BCE on the pairs, and CAM localisation
    of the aligned (positive) examples.

    Control ``accuracy_mismatched_video_pct``: the same pairs and labels scored with the video
    of another clip of the batch. A model that reads synchronisation drops toward 50 %; one
    that stays near its plain accuracy found a cue in the audio alone (e.g. where events
    fall in the window). Returns ``{"sync": {...}, "localisation": {...},
    "figures": [...]}`` (figure examples for :func:`save_cam_figure`)."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    correct_pos = correct_neg = correct_mismatched = total_mismatched = 0
    records, figures = [], []
    for batch in batches:
        video = batch["video"].to(device)
        audio = torch.cat([batch["audio_pos"], batch["audio_neg"]]).to(device)
        size = video.shape[0]
        video_features = model.encode_video(video)
        last = model.fuse(torch.cat([video_features] * 2), audio)[-1]
        logits = model.classify(last)
        labels = sync_labels(size, device)
        loss_sum += float(torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels, reduction="sum"))
        hits = (logits > 0).float() == labels
        correct += int(hits.sum())
        correct_pos += int(hits[:size].sum())
        correct_neg += int(hits[size:].sum())
        total += 2 * size
        if size > 1:     # control: the same audio pairs under another clip's video
            other = torch.roll(video_features, 1, dims=0)
            mismatched = model.classify(model.fuse(torch.cat([other] * 2), audio)[-1])
            correct_mismatched += int(((mismatched > 0).float() == labels).sum())
            total_mismatched += 2 * size
        cams = cam_from_patch_logits(model.patch_logits(last[:size])).cpu().numpy()
        crop_size = video.shape[-1]
        for i in range(size):
            if int(batch["gt_count"][i]) == 0:
                continue
            view = (batch["azimuth_rad"][i], batch["elevation_rad"][i], batch["fov_rad"][i])
            gt = {"count": batch["gt_count"][i].numpy(),
                  **{k: batch[f"gt_{k}"][i].numpy()
                     for k in ("azimuth_rad", "elevation_rad", "sounding")}}
            record = localise_clip(cams[i], view, crop_size, gt, threshold_rad)
            records.append(record)
            if len(figures) < n_figures and record["in_view"]:
                frames = batch["video"][i]
                figures.append({"crop": (frames[:, frames.shape[1] // 2].permute(1, 2, 0)
                                         .numpy() * 255).astype(np.uint8),
                                "cam": cams[i], "view": tuple(float(v) for v in view),
                                "gt": gt, "record": record, "source": batch["source"][i],
                                "clip_id": batch["clip_id"][i]})
    sync = {"accuracy_pct": 100.0 * correct / max(total, 1),
            "positive_accuracy_pct": 100.0 * correct_pos / max(total // 2, 1),
            "negative_accuracy_pct": 100.0 * correct_neg / max(total // 2, 1),
            "bce": loss_sum / max(total, 1), "n_pairs": total // 2, "chance_pct": 50.0,
            "accuracy_mismatched_video_pct": 100.0 * correct_mismatched / max(total_mismatched, 1)}
    return {"sync": sync, "localisation": localisation_summary(records, threshold_rad),
            "figures": figures}


def save_cam_figure(path: str | Path, examples: Sequence[dict[str, Any]]) -> Path | None:
    """One row per example: the middle crop frame with its CAM, and the shard's keyframe with
    the CAM painted through the gnomonic geometry (x = sounding objects, o = CAM peak)."""
    if not examples:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.spatial import direction_to_equirect_pixel

    figure, axes = plt.subplots(len(examples), 2, figsize=(10, 2.8 * len(examples)),
                                squeeze=False, gridspec_kw={"width_ratios": [1, 2]})
    for (ax_crop, ax_frame), example in zip(axes, examples):
        crop, cam = example["crop"], example["cam"]
        azimuth, elevation, fov = example["view"]
        ax_crop.imshow(crop)
        ax_crop.imshow(upsample_cam(cam, crop.shape[0]), cmap="jet", alpha=0.45)
        ax_crop.set_title(f"{example['clip_id']} crop + CAM", fontsize=8)
        path_h5, row = example["source"]
        with open_shard(path_h5) as h5:
            keyframe = h5["keyframe"][row]
        height, width = keyframe.shape[:2]
        painted = paint_cam_on_equirect(cam, azimuth, elevation, fov, crop.shape[0], width,
                                        height)
        ax_frame.imshow(keyframe)
        ax_frame.imshow(np.ma.masked_invalid(painted), cmap="jet", alpha=0.45)
        gt = example["gt"]
        sounding = np.asarray(gt["sounding"], bool) & (np.arange(len(gt["sounding"]))
                                                       < int(gt["count"]))
        cols, rows = direction_to_equirect_pixel(np.asarray(gt["azimuth_rad"])[sounding],
                                                 np.asarray(gt["elevation_rad"])[sounding],
                                                 width, height)
        ax_frame.plot(cols, rows, "wx", markersize=9, markeredgewidth=2)
        record = example["record"]
        col, row_px = direction_to_equirect_pixel(record["peak_azimuth_rad"],
                                                  record["peak_elevation_rad"], width, height)
        ax_frame.plot([col], [row_px], "o", markerfacecolor="none", markeredgecolor="white",
                      markersize=10)
        ax_frame.set_title(f"error {np.degrees(record['error_rad']):.1f} deg "
                           f"({'hit' if record['hit'] else 'miss'})", fontsize=8)
        for ax in (ax_crop, ax_frame):
            ax.axis("off")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
