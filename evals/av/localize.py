"""Sound-source localisation maps from a trained audio-visual model.

    python -m evals.av.localize ckpt=runs/avsa/ckpt.pt              # N test-shard samples
    python -m evals.av.localize ckpt=runs/avsa/ckpt.pt clip=data/synthetic/test/x.mp4

For every direction ``d`` of a grid over the sphere (azimuth step, list of elevations), the
model scores how well the audio *turned toward d* matches the video *looking at d*:

    score(d) = cos( video_head(f_v(crop_d)), audio_head(f_a(features(R_d foa))) )

where ``crop_d`` is a gnomonic crop centred on ``d`` (:mod:`pipeline.crops`) and ``R_d foa`` the
sound field rotated so that ``d`` is at the front (the features of :mod:`pipeline.features`, so
the ``beamform`` input is a beam toward ``d``).

The map plots the *alignment* of each direction (``score = "alignment"``, the default): with
``S[i, j] = cos(video_d_i, audio_d_j) / tau`` over all grid pairs (tau: the model's training
temperature),

    alignment(d_i) = S[i, i] - (logsumexp_j S[i, j] + logsumexp_j S[j, i]) / 2,

the log-likelihood the contrastive loss gives the pair (crop d_i, audio d_i) among the clip's
other directions, in both directions (video -> audio, audio -> video). The raw cosine
``S[i, i]`` (``score = "cosine"``, also recorded) is not identified across crops: InfoNCE is
unchanged when a constant is added to one crop's similarities to every audio, so an empty sky
crop may score as high as the object (it matches "nothing in front" well). The scores are
spread over the equirectangular frame with a von Mises-Fisher kernel (width = the grid step)
and the map's maximum is the predicted source direction. It is a *hit* when it lies within
``hit_threshold_deg`` of a sounding ground-truth object; the hit rate is over the clips that
have one. Two references come with it: the peak of the intensity-vector energy map (a
non-learned method that only listens), and the same model scored with *another clip's video*
(``mismatched_video``: a map that uses the picture falls toward chance there, one that only
listens would not).

Clip sources: samples of the test shards (the equirectangular ``keyframe`` repeated over the T
frames, since shards keep only the keyframe; ground truth from ``gt/*``), or a raw synthetic
clip (T frames decoded around ``time_s``; ground truth from the ``<clip>.json`` beside it).
PNGs go to ``<out>/localize/``, the summary to ``<out>/eval_localize.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from pipeline.crops import crop_frames
from pipeline.features import stft
from pipeline.foa import ACN_W, ACN_X, ACN_Y, ACN_Z
from pipeline.manifest import file_name_of
from pipeline.shards import ShardIndex, open_shard, stored_crops
from pipeline.spatial import (angular_distance_rad, direction_to_equirect_pixel, direction_vector,
                              equirect_pixel_to_direction, vector_to_direction, wrap_azimuth_rad)
from evals.cli import EvalIO, require_ckpt, run_evaluator
from evals.frozen import (FrozenModel, describe_run, evaluation_shards, iter_shard_batches,
                          load_frozen, other_shards_dir, resolve_data_path, run_dir_of)

log = logging.getLogger(__name__)

RESULT_NAME = "eval_localize.json"
SCORES = ("alignment", "cosine")      # what a map may plot, see the module doc
FIGURE_DIR = "localize"


@dataclass(frozen=True)
class LocalizeConfig:
    """Grid, crops and scoring (degrees here, radians inside)."""

    # 15 deg grid: with 30 deg steps and elevations +-30 an object between grid points is often
    # > 20 deg from every one, so the 20 deg hit test measured the grid, not the model.
    azimuth_step_deg: float = 15.0
    elevations_deg: tuple[float, ...] = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)
    fov_deg: float = 45.0              # true horizontal angle of each crop
    hit_threshold_deg: float = 20.0
    map_width: int = 256               # painted maps, equirectangular, height = width / 2
    kernel_deg: float = 0.0            # vMF kernel width; 0 = the azimuth step
    n_clips: int = 40                  # test-shard samples to score
    seed: int = 0
    # Embedding space compared. avc: video_head(v_d) with audio_head(a_d), the cross-modal
    # pair AVC trains; avsa: video_head(v_d) with video_pred_head(g_a2v(a_d, a_d+90, a_d+180,
    # a_d+270)_d), the translated audio the AVSA phase trains (K = 4 tokens);
    # auto: avsa for models whose pretext is avsa, else avc.
    scoring: str = "auto"
    # What the map plots: alignment (contrastive log-likelihood, see the module doc) or cosine.
    score: str = "alignment"


@dataclass(frozen=True)
class LocalizeRun(EvalIO):
    """``configs/evals/localize.yaml``: what to localise and the protocol."""

    clip: str = ""                   # a raw 360° clip (ground truth <clip>.json beside it)
    time_s: float | None = None      # instant of the clip (default: its middle)
    shards_dir: str = ""             # default: the run's data.shards_dir (when no clip)
    split: str = "test"
    protocol: LocalizeConfig = field(default_factory=LocalizeConfig)


@dataclass
class ClipInput:
    """What one localisation needs: frames, audio window and ground truth.

    ``frames`` (T, H, W, 3) uint8 equirectangular; ``foa`` (4, n) ambiX at the model's rate;
    ``gt_azimuth_rad`` / ``gt_elevation_rad`` / ``gt_sounding`` (O,) for the objects.
    """

    name: str
    frames: np.ndarray
    foa: np.ndarray
    crop_size: int
    gt_azimuth_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_elevation_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_sounding: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


# ----------------------------------------------------------------------------- geometry

def direction_grid(azimuth_step_deg: float, elevations_deg: Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Grid directions ``(azimuth_rad, elevation_rad)``, each ``(G,)``: azimuths ``0, step, ...``
    (wrapped into [-pi, pi)) at every listed elevation."""
    if not 0 < azimuth_step_deg <= 360:
        raise ValueError(f"azimuth_step_deg must be in (0, 360], got {azimuth_step_deg}")
    azimuths = np.deg2rad(np.arange(0.0, 360.0 - 1e-9, azimuth_step_deg))
    az, el = np.meshgrid(azimuths, np.deg2rad(np.asarray(elevations_deg, dtype=np.float64)))
    return wrap_azimuth_rad(az.ravel()), el.ravel()


def spread_on_sphere(values: np.ndarray, azimuth_rad: np.ndarray, elevation_rad: np.ndarray,
                     width: int, kernel_rad: float) -> np.ndarray:
    """Kernel-weighted average of values at directions, painted on an equirectangular map.

    ``map(p) = sum_g w_g(p) v_g / sum_g w_g(p)`` with the von Mises-Fisher weight
    ``w = exp((cos angle(p, d_g) - 1) / kernel_rad^2)``. Returns float64 ``(width / 2, width)``.
    """
    height = width // 2
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    pixel_dirs = direction_vector(*equirect_pixel_to_direction(cols, rows, width, height))
    grid_dirs = direction_vector(azimuth_rad, elevation_rad)              # (G, 3)
    cosines = pixel_dirs @ grid_dirs.T                                     # (H, W, G)
    logits = (cosines - 1.0) / kernel_rad ** 2
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (weights * np.asarray(values, dtype=np.float64)).sum(-1) / weights.sum(-1)


def map_peak(values_map: np.ndarray) -> tuple[float, float]:
    """``(azimuth_rad, elevation_rad)`` of the largest pixel of an equirectangular map."""
    height, width = values_map.shape
    row, col = np.unravel_index(int(np.argmax(values_map)), values_map.shape)
    az, el = equirect_pixel_to_direction(col, row, width, height)
    return float(az), float(el)


def intensity_energy_map(foa: np.ndarray, width: int, kernel_rad: float, n_fft: int = 512,
                         hop_length: int = 240) -> np.ndarray:
    """Where the active intensity comes from: an equirectangular histogram of the per-bin IV
    directions weighted by ``|I|``, smoothed by ``kernel_rad``.

    Args:
        foa: ``(4, n)`` ambiX (ACN W, Y, Z, X; SN3D).
    Returns:
        float64 ``(width / 2, width)`` map, max-normalised to 1 (zeros for silence).
    """
    height = width // 2
    spec = stft(np.asarray(foa, dtype=np.float32), n_fft, hop_length)    # (4, F, T)
    w = spec[ACN_W]
    intensity = np.stack([w.real * spec[c].real + w.imag * spec[c].imag
                          for c in (ACN_X, ACN_Y, ACN_Z)], axis=-1).reshape(-1, 3)
    magnitude = np.linalg.norm(intensity, axis=-1)
    keep = magnitude > 0
    az, el = vector_to_direction(intensity[keep])
    col, row = direction_to_equirect_pixel(az, el, width, height)
    histogram = np.zeros((height, width))
    np.add.at(histogram, (np.clip(np.rint(row).astype(int), 0, height - 1),
                          np.rint(col).astype(int) % width), magnitude[keep])
    sigma_px = kernel_rad / np.pi * height
    smoothed = gaussian_filter(histogram, sigma=sigma_px, mode=("nearest", "wrap"))
    return smoothed / smoothed.max() if smoothed.max() > 0 else smoothed


def nearest_sounding_deg(azimuth_rad: float, elevation_rad: float, clip: ClipInput) -> float:
    """Angle in degrees from a direction to the nearest sounding object (inf when none)."""
    if not np.any(clip.gt_sounding):
        return float("inf")
    distances = angular_distance_rad(azimuth_rad, elevation_rad,
                                     clip.gt_azimuth_rad[clip.gt_sounding],
                                     clip.gt_elevation_rad[clip.gt_sounding])
    return float(np.rad2deg(np.min(distances)))


# ----------------------------------------------------------------------------- scoring

def context_indices(azimuth_rad: np.ndarray, elevation_rad: np.ndarray) -> np.ndarray:
    """``(G, 4)`` grid indices: each direction, then the grid directions nearest to it turned
    by +90, +180 and +270 degrees of azimuth (same elevation)."""
    grid = direction_vector(azimuth_rad, elevation_rad)                       # (G, 3)
    columns = []
    for turn_rad in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2):
        turned = direction_vector(azimuth_rad + turn_rad, elevation_rad)     # (G, 3)
        columns.append(np.argmax(turned @ grid.T, axis=1))
    return np.stack(columns, axis=1)


def resolve_scoring(frozen: FrozenModel, scoring: str) -> str:
    """``auto`` -> ``avsa`` for an AVSA-pretext model, else ``avc``."""
    if scoring == "auto":
        return "avsa" if frozen.config.curriculum.pretext == "avsa" else "avc"
    if scoring not in ("avc", "avsa"):
        raise ValueError(f"scoring must be auto, avc or avsa, got {scoring!r}")
    return scoring


def embed_directions(frozen: FrozenModel, clip: ClipInput, azimuth_rad: np.ndarray,
                     elevation_rad: np.ndarray, fov_rad: float, scoring: str = "avc"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings ``(video, audio)``, each ``(G, E)``: the crop toward each grid
    direction and the FOA rotated toward it, in the space named by ``scoring`` (see
    :class:`LocalizeConfig`)."""
    n = frozen.feature_cfg.n_samples
    if clip.foa.shape[1] < n:
        raise ValueError(f"{clip.name}: audio window of {clip.foa.shape[1]} samples, the model "
                         f"needs {n}")
    start = (clip.foa.shape[1] - n) // 2
    crops = crop_frames(clip.frames, azimuth_rad, elevation_rad, fov_rad, clip.crop_size)
    video = frozen.project(frozen.encode_video(crops), "video")
    audio_input = frozen.audio_input_from_foa(clip.foa[:, start:start + n], azimuth_rad,
                                              elevation_rad)
    audio_features = frozen.encode_audio(audio_input)                       # (G, D)
    if scoring == "avsa":
        # K = 4 tokens as in training: direction d and the grid directions nearest to d turned
        # by 90, 180 and 270 degrees of azimuth; output token 0 is the prediction at d.
        tokens = context_indices(azimuth_rad, elevation_rad)                  # (G, 4)
        translated = frozen.translate(audio_features[tokens], "a2v", azimuth_rad[tokens],
                                      elevation_rad[tokens])[:, 0]
        audio = frozen.project(translated, "video_pred")
    else:
        audio = frozen.project(audio_features, "audio")
    video /= np.maximum(np.linalg.norm(video, axis=-1, keepdims=True), 1e-12)
    audio /= np.maximum(np.linalg.norm(audio, axis=-1, keepdims=True), 1e-12)
    return video, audio


def direction_scores(video: np.ndarray, audio: np.ndarray, score: str, temperature: float
                     ) -> np.ndarray:
    """``(G,)`` map values from unit embeddings ``(G, E)``: ``cosine`` = ``cos(v_i, a_i)``;
    ``alignment`` = ``S_ii - (logsumexp_j S_ij + logsumexp_j S_ji) / 2`` with
    ``S = v a^T / temperature`` (nats; the contrastive log-likelihood of the pair ``i``)."""
    if score == "cosine":
        return (video * audio).sum(-1)
    if score not in SCORES:
        raise ValueError(f"score must be alignment or cosine, got {score!r}")
    similarity = video @ audio.T / temperature
    return np.diag(similarity) - 0.5 * (logsumexp(similarity, 1) + logsumexp(similarity, 0))


def peak_record(values_map: np.ndarray, clip: ClipInput, threshold_deg: float
                ) -> dict[str, Any]:
    """``peak_deg`` [azimuth, elevation], ``error_deg`` to the nearest sounding object (None
    without one) and ``hit`` (error within the threshold) of a map."""
    az, el = map_peak(values_map)
    error = nearest_sounding_deg(az, el, clip)
    return {"peak_deg": [round(float(np.rad2deg(az)), 2), round(float(np.rad2deg(el)), 2)],
            "error_deg": round(error, 2) if np.isfinite(error) else None,
            "hit": bool(error <= threshold_deg)}


def localize_clip(frozen: FrozenModel, clip: ClipInput, cfg: LocalizeConfig,
                  mismatched_video: np.ndarray | None = None
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Scores, maps, peaks and hits of one clip: ``(record, maps, video_embeddings)``.

    ``mismatched_video``: another clip's crop embeddings on the same grid (from an earlier
    call's return value); the clip's audio is then also scored against them (the
    ``mismatched_*`` fields)."""
    grid_az, grid_el = direction_grid(cfg.azimuth_step_deg, cfg.elevations_deg)
    kernel_rad = np.deg2rad(cfg.kernel_deg or cfg.azimuth_step_deg)
    temperature = frozen.config.loss.temperature
    video, audio = embed_directions(frozen, clip, grid_az, grid_el, np.deg2rad(cfg.fov_deg),
                                    resolve_scoring(frozen, cfg.scoring))
    if cfg.score not in SCORES:
        raise ValueError(f"score must be alignment or cosine, got {cfg.score!r}")
    spread = lambda values: spread_on_sphere(values, grid_az, grid_el, cfg.map_width, kernel_rad)
    scores = {name: direction_scores(video, audio, name, temperature) for name in SCORES}
    score_maps = {name: spread(values) for name, values in scores.items()}
    if mismatched_video is not None:
        score_maps["mismatched"] = spread(direction_scores(mismatched_video, audio, cfg.score,
                                                           temperature))
    maps = {"model": score_maps[cfg.score],
            "iv": intensity_energy_map(clip.foa, cfg.map_width, kernel_rad / 2,
                                       frozen.feature_cfg.n_fft, frozen.feature_cfg.hop_length)}
    record: dict[str, Any] = {"clip": clip.name, "n_sounding": int(np.sum(clip.gt_sounding)),
                              "score": cfg.score}
    for name, values in {**maps, **score_maps}.items():
        for key, value in peak_record(values, clip, cfg.hit_threshold_deg).items():
            record[f"{name}_{key}"] = value
    record["scores"] = [round(float(s), 4) for s in scores[cfg.score]]
    return record, maps, video


def plot_localization(clip: ClipInput, maps: dict[str, np.ndarray], record: dict[str, Any],
                      path: Path, threshold_deg: float) -> Path:
    """Keyframe with the model's similarity overlaid, and the IV energy map, each with the
    ground-truth objects (filled: sounding, hollow: silent) and the map's peak (star)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keyframe = clip.frames[len(clip.frames) // 2]
    height, width = keyframe.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    model_label = {"alignment": "audio-visual alignment",
                   "cosine": "audio-visual cosine"}.get(record.get("score"), "audio-visual score")
    panels = (("model", model_label, "magma"), ("iv", "intensity-vector energy", "viridis"))
    for ax, (name, label, cmap) in zip(axes, panels):
        ax.imshow(keyframe, extent=(0, width, height, 0))
        shown = ax.imshow(maps[name], cmap=cmap, alpha=0.55, extent=(0, width, height, 0))
        fig.colorbar(shown, ax=ax, fraction=0.025)
        gt_col, gt_row = direction_to_equirect_pixel(clip.gt_azimuth_rad, clip.gt_elevation_rad,
                                                     width, height)
        for c, r, sounding in zip(np.atleast_1d(gt_col), np.atleast_1d(gt_row), clip.gt_sounding):
            ax.scatter([c], [r], s=90, facecolors="cyan" if sounding else "none",
                       edgecolors="cyan", linewidths=1.5)
        peak_az, peak_el = np.deg2rad(record[f"{name}_peak_deg"])
        p_col, p_row = direction_to_equirect_pixel(peak_az, peak_el, width, height)
        ax.scatter([p_col], [p_row], marker="*", s=200, c="red")
        verdict = ("hit" if record[f"{name}_hit"] else "miss") if record["n_sounding"] else "no gt"
        error = record[f"{name}_error_deg"]
        ax.set_title(f"{label}: peak {record[f'{name}_peak_deg']} deg, {verdict}"
                     + (f" ({error:.0f} deg, threshold {threshold_deg:g})" if error is not None
                        else ""), fontsize=8)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_xticks([0, width / 4, width / 2, 3 * width / 4, width], ["180", "90", "0", "-90",
                                                                          "-180"])
        ax.set_yticks([0, height / 2, height], ["90", "0", "-90"])
        ax.set_xlabel("azimuth (deg, + = left)")
        ax.set_ylabel("elevation (deg)")
    fig.suptitle(clip.name, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- clip sources

def video_geometry_from_shards(shards_dir: str | Path) -> tuple[int, int, float]:
    """``(T, S, fps)``: frames per crop clip, crop size and frame rate of the training shards
    (a raw clip is cut and cropped as the model saw its training data)."""
    shards_dir = resolve_data_path(shards_dir)
    paths = ShardIndex.load(shards_dir).paths()
    if not paths:
        raise FileNotFoundError(f"{shards_dir}: no shards listed; a raw clip is cut like the "
                                f"model's training shards, so they must be there (make "
                                f"preprocess, or shards_dir=<folder>)")
    with open_shard(paths[0]) as h5:
        shape = stored_crops(h5, "views/random/crops").shape   # (N, K, T, S, S, 3)
        fps = float(h5.attrs["fps"])
    return int(shape[2]), int(shape[3]), fps


def clips_from_shards(shards_dir: str | Path, split: str, n_clips: int, seed: int
                      ) -> Iterator[ClipInput]:
    """Up to ``n_clips`` samples of a split as :class:`ClipInput` (keyframe repeated T times)."""
    extra = ("keyframe", "gt/count", "gt/azimuth_rad", "gt/elevation_rad", "gt/sounding")
    for batch in iter_shard_batches(shards_dir, split, "random", 1, (), 16, n_clips, seed,
                                    extra_fields=extra):
        n_frames, crop_size = batch["crops"].shape[2], batch["crops"].shape[3]
        for i in range(len(batch["clip_id"])):
            count = int(batch["gt/count"][i]) if "gt/count" in batch else 0
            sounding = (np.asarray(batch["gt/sounding"][i][:count], dtype=bool) if count
                        else np.zeros(0, dtype=bool))
            yield ClipInput(
                name=f"{batch['clip_id'][i]}@{batch['shard']}:{int(batch['row'][i])}",
                frames=np.repeat(batch["keyframe"][i][None], n_frames, axis=0),
                foa=batch["foa"][i], crop_size=crop_size,
                gt_azimuth_rad=np.asarray(batch["gt/azimuth_rad"][i][:count], np.float64)
                if count else np.zeros(0),
                gt_elevation_rad=np.asarray(batch["gt/elevation_rad"][i][:count], np.float64)
                if count else np.zeros(0),
                gt_sounding=sounding)


def clip_from_video(path: str | Path, time_s: float | None, frozen: FrozenModel,
                    n_frames: int, crop_size: int, fps: float) -> ClipInput:
    """A raw 360° clip: ``n_frames`` frames at ``fps`` centred on ``time_s`` (default: the
    middle), 1 s of FOA around it, and the ground truth of ``<clip>.json`` when present
    (objects sounding *and* active at ``time_s``)."""
    from pipeline.decode import decode_audio, decode_frames_at
    from pipeline.ffmpeg_bin import probe

    path = Path(path)
    info = probe(path)
    gt_path = path.with_suffix(".json")
    gt = json.loads(gt_path.read_text()) if gt_path.is_file() else None
    duration_s = float(info.duration_s or (gt or {}).get("duration_s", 0.0))
    window_s = frozen.feature_cfg.window_s
    if time_s is None:
        time_s = duration_s / 2.0
    if not window_s / 2 <= time_s <= duration_s - window_s / 2:
        raise ValueError(f"{path.name}: time_s must leave {window_s / 2:g} s on both sides of a "
                         f"{duration_s:g} s clip, got {time_s}")
    times = time_s + (np.arange(n_frames) - n_frames / 2 + 0.5) / fps
    width, height = info.video.width, info.video.height
    frames = decode_frames_at(path, np.maximum(times, 0.0), fps, width, height, info=info)
    foa = decode_audio(path, frozen.feature_cfg.sample_rate, "ambix",
                       start_s=time_s - window_s / 2, duration_s=window_s, info=info)
    clip = ClipInput(f"{path.stem}@{time_s:.2f}s", frames, foa, crop_size)
    if gt is not None:
        from pipeline.ground_truth import object_directions_at

        states = object_directions_at(gt, time_s)
        clip.gt_azimuth_rad = np.array([s.azimuth_rad for s in states])
        clip.gt_elevation_rad = np.array([s.elevation_rad for s in states])
        clip.gt_sounding = np.array([s.sounding and s.active for s in states], dtype=bool)
    else:
        log.warning("%s: no ground truth %s beside the clip: hits are not scored", path, gt_path)
    return clip


# ----------------------------------------------------------------------------- driver

def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Hit rates (percent) over the records that have a sounding object."""
    scored = [r for r in records if r["n_sounding"] > 0]

    def rate(key: str) -> float | None:
        values = [r[key] for r in scored if key in r]
        return round(100.0 * float(np.mean(values)), 2) if values else None

    return {"n_clips": len(records), "n_scored": len(scored), "hit_rate_pct": rate("model_hit"),
            "alignment_hit_rate_pct": rate("alignment_hit"),
            "cosine_hit_rate_pct": rate("cosine_hit"),
            "mismatched_video_hit_rate_pct": rate("mismatched_hit"),
            "iv_hit_rate_pct": rate("iv_hit")}


def evaluate_localization(ckpt_path: str | Path, cfg: LocalizeConfig = LocalizeConfig(), *,
                          clip: str | Path | None = None, time_s: float | None = None,
                          shards_dir: str | Path | None = None, split: str = "test",
                          out_dir: str | Path | None = None, device: str = "auto",
                          norm_stats: str | None = None) -> dict[str, Any]:
    """Localise ``clip`` (a raw video) or ``cfg.n_clips`` test-shard samples; write PNGs and
    the summary JSON; return the summary."""
    started = time.perf_counter()
    frozen = load_frozen(ckpt_path, device, norm_stats)
    explicit_out = bool(out_dir)
    out_dir = Path(out_dir) if out_dir else run_dir_of(ckpt_path)
    train_shards = frozen.config.data.shards_dir
    if clip is not None:
        n_frames, crop_size, fps = video_geometry_from_shards(shards_dir or train_shards)
        clips: Any = [clip_from_video(clip, time_s, frozen, n_frames, crop_size, fps)]
        source, synthetic = str(clip), Path(clip).with_suffix(".json").is_file()
    else:
        shards = evaluation_shards(frozen, shards_dir)    # refused if made otherwise
        if not explicit_out:
            out_dir = other_shards_dir(out_dir, frozen, shards)
        clips = clips_from_shards(shards, split, cfg.n_clips, cfg.seed)
        source, synthetic = str(shards), True
    records = []
    # The mismatched-video reference pairs each clip's audio with the crops of the latest
    # sample of the previous clip (shard samples of one clip are consecutive); the first
    # clip's samples have none.
    current: tuple[str, np.ndarray] | None = None
    previous: tuple[str, np.ndarray] | None = None
    for item in clips:
        clip_id = item.name.split("@")[0]
        if current is not None and current[0] != clip_id:
            previous = current
        record, maps, video = localize_clip(frozen, item, cfg,
                                            previous[1] if previous is not None else None)
        current = (clip_id, video)
        figure = plot_localization(item, maps, record,
                                   out_dir / FIGURE_DIR / f"{file_name_of(item.name)}.png",
                                   cfg.hit_threshold_deg)
        record["png"] = str(figure)
        records.append(record)
        log.info("%s: model peak %s deg (%s), cosine peak %s, mismatched video %s, "
                 "IV peak %s deg (%s)", item.name, record["model_peak_deg"],
                 "hit" if record["model_hit"] else "miss",
                 "hit" if record["cosine_hit"] else "miss",
                 {True: "hit", False: "miss"}.get(record.get("mismatched_hit"), "-"),
                 record["iv_peak_deg"], "hit" if record["iv_hit"] else "miss")
    summary = {
        **describe_run(frozen, ckpt_path),
        "task": "localization",
        "source": source,
        "synthetic": synthetic,
        **summarise(records),
        "threshold_deg": cfg.hit_threshold_deg,
        "settings": asdict(cfg),
        "clips": records,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = out_dir / RESULT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    tmp.replace(path)
    log.info("hit rate %s %% (%s score; cosine %s %%, mismatched video %s %%, IV reference "
             "%s %%) over %d clips with a sounding object; wrote %s", summary["hit_rate_pct"],
             cfg.score, summary["cosine_hit_rate_pct"], summary["mismatched_video_hit_rate_pct"],
             summary["iv_hit_rate_pct"], summary["n_scored"], path)
    summary["json_path"] = str(path)
    return summary


def run(cfg: LocalizeRun) -> Path:
    summary = evaluate_localization(require_ckpt(cfg), cfg.protocol, clip=cfg.clip or None,
                                    time_s=cfg.time_s, shards_dir=cfg.shards_dir or None,
                                    split=cfg.split, out_dir=cfg.out or None, device=cfg.device,
                                    norm_stats=cfg.norm_stats or None)
    print(json.dumps({k: summary[k] for k in ("n_clips", "n_scored", "hit_rate_pct",
                                              "cosine_hit_rate_pct",
                                              "mismatched_video_hit_rate_pct",
                                              "iv_hit_rate_pct")}, indent=2))
    return Path(summary["json_path"])


def main(argv: Sequence[str] | None = None) -> int:
    return run_evaluator(LocalizeRun, run, argv, name="localize", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
