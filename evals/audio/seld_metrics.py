"""The DCASE sound event localisation and detection (SELD) metrics with the semantics of the
official evaluation code, for the STARSS23 downstream task.

Default: the DCASE 2023 task 3 metrics, as ``sharathadavanne/seld-dcase2023`` (commit 24d14c9,
``SELD_evaluation_metrics.SELDMetrics``, fed by ``cls_compute_seld_results`` through
``cls_feature_class.segment_labels``). With ``distance_threshold``: the DCASE 2024 task 3
metrics, as ``partha2409/DCASE2024_seld_baseline`` (commit 0b07887, ``SELDMetrics`` with
``evaluate_distance=True, segment_based_metrics=False`` and ``organize_labels``). Both were run
on hand-made and random tables; ``tests/test_seld_metrics.py`` holds their outputs, which these
scores equal to float precision.

Inputs are frame-wise events at the label resolution (100 ms for STARSS23), one recording per
:meth:`SELDMetrics.update`: ``(frame, class, track, azimuth, elevation[, distance])``. As in
the official code, ``track`` (the CSVs' source number) is ignored: STARSS23 gives every
non-actor source id 0, so the official code tells simultaneous instances of one class apart by
their position in the frame's list (``gt_ids = np.arange(...)``; the ``TODO`` there). Events
keep the order they are given in.

DCASE 2023 rules (segments of ``frames_per_segment`` = 10 frames = 1 s; the official
``update_seld_scores`` unless named otherwise):

1. Scored span (``cls_compute_seld_results``: ``nb_ref_frames = max(gt_dict.keys())``, then
   ``segment_labels``): ``ceil(L / 10)`` segments, L the last reference frame index; frames at or
   after ``10 * ceil(L / 10)`` are ignored on both sides (predictions after the last reference
   segment; also a last reference frame that is a multiple of 10, and a recording whose only
   reference frame is 0). A recording without reference events scores nothing (the official
   code cannot read it).
2. Per segment and class, a side's track count is its largest number of simultaneous
   instances in one frame; ``N_ref`` grows by the reference's count.
3. Reference only: ``FN`` grows by the reference track count; prediction only: ``FP`` by the
   predicted track count (not by 1).
4. Both present: in each frame where both have the class, predicted directions are assigned to
   reference directions by the Hungarian algorithm on the great-circle distance; a reference
   track (its position in the frame) gets the mean distance over its assigned frames. Each such
   track is a localisation true positive (its mean distance added to the error) and a detection
   true positive when within ``doa_threshold_deg`` (20), else a spatial false positive
   (``FP_spatial``, full weight in F). Then the instance counts are compared: more predicted
   tracks than reference tracks add the difference to ``FP``, fewer add it to ``FN``.
   If no frame has the class on both sides, ``FN`` grows by the *predicted* track count (sic).
5. Error rate, one global figure: per segment, ``fn`` and ``fp`` (``FP + FP_spatial``) are
   pooled over classes, ``S = min(fp, fn)``, ``D = max(0, fn - fp)``, ``I = max(0, fp - fn)``
   are summed over segments, ``ER = (S + D + I) / sum N_ref``.
6. ``F = TP / (TP + FP_spatial + (FP + FN) / 2)``; ``LE = error / localisation TP`` (degrees),
   180 for a class without localisation true positive; ``LR = localisation TP /
   (localisation TP + FN)``. ``average="macro"`` (default): per class, averaged over classes;
   the per-class SELD is ``mean(ER, 1 - F, LE / 180, 1 - LR)`` and the SELD score its mean.
   ``"micro"``: counts summed over classes first.

DCASE 2024 rules (``distance_threshold`` set; frame level, ``frames_per_segment`` unused):

1. Scored span: frames ``0 ... L - 1`` (``organize_labels(gt, max(gt.keys()))``: the last
   reference frame itself is not scored).
2. Per frame and class with R reference and P predicted instances: ``N_ref += R``; both
   present: Hungarian assignment on the angle between unit vectors, which the official code
   normalises as ``v / sqrt(|v|^2 + 1e-10)`` (mirrored here: an exact direction scores
   8.1e-4 degrees); ``K = min(R, P)`` pairs are localisation true positives, of which those with
   angle > ``doa_threshold_deg`` or absolute distance error > ``absolute_distance_threshold_m``
   or relative distance error ``|d_pred - d_ref| / d_ref`` > ``distance_threshold`` are spatial
   false positives and the rest true positives; ``FP += max(0, P - R)``, ``FN += max(0, R - P)``.
   One side only: ``FN += R`` or ``FP += P``.
3. ``ER`` pooled per frame as rule 5 above; F and LR as above; LE, the mean absolute distance
   error (m) and the relative distance error (RDE) per class over its localisation true
   positives, NaN for a class without any, and averaged with ``nanmean``; the per-class SELD is
   ``nanmean(1 - F, LE / 180, RDE)`` and the SELD score its mean over classes.
4. Distances are in metres on both sides (the official code reads the reference CSVs in cm
   and divides by 100).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

EPS = float(np.finfo(np.float64).eps)
#: Added to the squared norm before normalising direction vectors in the 2024 official code.
OFFICIAL_2024_NORM_REGULARISER = 1e-10
AVERAGES = ("macro", "micro")
COUNT_NAMES = ("n_ref", "tp", "fp", "fp_spatial", "fn", "loc_tp", "loc_error",
               "distance_error", "relative_distance_error")


@dataclass(frozen=True)
class Event:
    """One active class instance in one frame. Angles in radians (CONVENTIONS.md: azimuth
    counter-clockwise from the front, elevation up); ``track`` is the source number (kept for
    the caller, ignored by the scores, as in the official code)."""

    frame: int
    class_id: int
    track: int
    azimuth_rad: float
    elevation_rad: float
    distance_m: float | None = None    # source distance (STARSS23 2024 labels), None if unknown


# ----------------------------------------------------------------------------- geometry

def angular_distance_deg(az1, el1, az2, el2) -> np.ndarray:
    """Great-circle distance in degrees between directions given in radians (broadcasts)."""
    cosine = (np.sin(el1) * np.sin(el2)
              + np.cos(el1) * np.cos(el2) * np.cos(np.asarray(az1) - np.asarray(az2)))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def regularised_angle_deg(reference_directions: np.ndarray, predicted_directions: np.ndarray
                          ) -> np.ndarray:
    """``(R, P)`` angles in degrees between ``(R, 2)`` and ``(P, 2)`` (azimuth, elevation) in
    radians, as the 2024 official code: unit vectors divided by ``sqrt(1 + 1e-10)``, so equal
    directions give 8.1e-4 degrees, not 0."""
    def vectors(directions: np.ndarray) -> np.ndarray:
        azimuth_rad, elevation_rad = directions[:, 0], directions[:, 1]
        xyz = np.stack([np.cos(elevation_rad) * np.cos(azimuth_rad),
                        np.cos(elevation_rad) * np.sin(azimuth_rad), np.sin(elevation_rad)], 1)
        norm = np.sqrt((xyz ** 2).sum(axis=1, keepdims=True) + OFFICIAL_2024_NORM_REGULARISER)
        return xyz / norm
    cosine = vectors(reference_directions) @ vectors(predicted_directions).T
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def assign(reference: Sequence[Event], predicted: Sequence[Event]
           ) -> list[tuple[Event, Event, float]]:
    """Minimum-total-distance assignment of predicted to reference directions of one class in
    one frame: ``(reference, prediction, distance_deg)`` for each assigned pair."""
    if not reference or not predicted:
        return []
    cost = _great_circle_matrix(_directions(reference), _directions(predicted))
    rows, cols = linear_sum_assignment(cost)
    return [(reference[r], predicted[c], float(cost[r, c])) for r, c in zip(rows, cols)]


def _directions(events: Sequence[Event]) -> np.ndarray:
    """``(N, 2)`` azimuth, elevation in radians."""
    return np.array([[e.azimuth_rad, e.elevation_rad] for e in events], dtype=np.float64)


def _great_circle_matrix(reference_directions: np.ndarray, predicted_directions: np.ndarray
                         ) -> np.ndarray:
    """``(R, P)`` great-circle distances in degrees (the 2023 official polar formula)."""
    return angular_distance_deg(reference_directions[:, 0:1], reference_directions[:, 1:2],
                                predicted_directions[None, :, 0], predicted_directions[None, :, 1])


# ----------------------------------------------------------------------------- one unit

def score_segment_class(reference_frames: dict[int, Sequence[Event]],
                        predicted_frames: dict[int, Sequence[Event]],
                        doa_threshold_deg: float) -> dict[str, float]:
    """2023 counts of one class in one segment (rules 2-4 of the module docstring), from its
    events by frame on each side (either may be empty). Keys: :data:`COUNT_NAMES`."""
    counts = dict.fromkeys(COUNT_NAMES, 0.0)
    n_reference = max((len(v) for v in reference_frames.values()), default=0)
    n_predicted = max((len(v) for v in predicted_frames.values()), default=0)
    counts["n_ref"] = n_reference
    if not predicted_frames:
        counts["fn"] = n_reference
        return counts
    if not reference_frames:
        counts["fp"] = n_predicted
        return counts
    track_distances: dict[int, list[float]] = defaultdict(list)   # position in frame -> deg
    for frame in sorted(set(reference_frames) & set(predicted_frames)):
        cost = _great_circle_matrix(_directions(reference_frames[frame]),
                                    _directions(predicted_frames[frame]))
        rows, cols = linear_sum_assignment(cost)
        for row, col in zip(rows, cols):
            track_distances[int(row)].append(float(cost[row, col]))
    if not track_distances:                          # never in the same frame on both sides
        counts["fn"] = n_predicted
        return counts
    for distances in track_distances.values():
        mean_distance = sum(distances) / len(distances)
        counts["loc_error"] += mean_distance
        counts["loc_tp"] += 1
        counts["tp" if mean_distance <= doa_threshold_deg else "fp_spatial"] += 1
    counts["fp"] = max(0, n_predicted - n_reference)
    counts["fn"] = max(0, n_reference - n_predicted)
    return counts


def score_frame_class(reference: Sequence[Event], predicted: Sequence[Event],
                      doa_threshold_deg: float, relative_distance_threshold: float,
                      absolute_distance_threshold_m: float = math.inf) -> dict[str, float]:
    """2024 counts of one class in one frame (rule 2 of the 2024 list in the module
    docstring). Keys: :data:`COUNT_NAMES`; ``distance_error`` in metres."""
    counts = dict.fromkeys(COUNT_NAMES, 0.0)
    n_reference, n_predicted = len(reference), len(predicted)
    counts["n_ref"] = n_reference
    if not predicted or not reference:
        counts["fn"], counts["fp"] = n_reference, n_predicted
        return counts
    cost = regularised_angle_deg(_directions(reference), _directions(predicted))
    rows, cols = linear_sum_assignment(cost)
    angle_deg = cost[rows, cols]
    reference_m = np.array([reference[r].distance_m for r in rows], dtype=np.float64)
    predicted_m = np.array([predicted[c].distance_m for c in cols], dtype=np.float64)
    error_m = np.abs(reference_m - predicted_m)
    relative_error = error_m / (reference_m + EPS)
    spatial_misses = int(np.sum((angle_deg > doa_threshold_deg)
                                | (error_m > absolute_distance_threshold_m)
                                | (relative_error > relative_distance_threshold)))
    counts.update(tp=len(rows) - spatial_misses, fp_spatial=spatial_misses, loc_tp=len(rows),
                  fp=max(0, n_predicted - n_reference), fn=max(0, n_reference - n_predicted),
                  loc_error=float(angle_deg.sum()), distance_error=float(error_m.sum()),
                  relative_distance_error=float(relative_error.sum()))
    return counts


# ----------------------------------------------------------------------------- accumulator

class SELDMetrics:
    """Accumulates the counts of any number of recordings, then :meth:`scores`."""

    def __init__(self, n_classes: int, doa_threshold_deg: float = 20.0,
                 frames_per_segment: int = 10, distance_threshold: float | None = None,
                 average: str = "macro", absolute_distance_threshold_m: float = math.inf):
        """``distance_threshold`` (relative, the official 2024 value is 1.0) switches to the
        DCASE 2024 frame-level metrics: every event then needs ``distance_m`` (reference > 0),
        and the scores gain ``relative_distance_error`` and ``distance_error_m``.
        ``average``: ``"macro"`` (the DCASE default) or ``"micro"``."""
        if n_classes < 1:
            raise ValueError(f"n_classes: expected at least 1, got {n_classes}")
        if frames_per_segment < 1:
            raise ValueError(f"frames_per_segment: expected at least 1, got {frames_per_segment}")
        if average not in AVERAGES:
            raise ValueError(f"average: expected one of {AVERAGES}, got {average!r}")
        self.n_classes, self.threshold = n_classes, doa_threshold_deg
        self.frames_per_segment = frames_per_segment
        self.distance_threshold = distance_threshold
        self.absolute_distance_threshold_m = absolute_distance_threshold_m
        self.average = average
        self.counts = {name: np.zeros(n_classes) for name in COUNT_NAMES}
        # Per scored unit (2023: segment, 2024: frame) and class, the false negatives and
        # false positives (FP + FP_spatial) that the error rate pools over classes.
        self._unit_fn: list[np.ndarray] = []
        self._unit_fp: list[np.ndarray] = []

    @property
    def frame_level(self) -> bool:
        """True for the DCASE 2024 (distance-aware, frame-level) metrics."""
        return self.distance_threshold is not None

    def _check(self, event: Event, is_reference: bool) -> None:
        if not 0 <= event.class_id < self.n_classes:
            raise ValueError(f"class {event.class_id} of {event}: expected 0..."
                             f"{self.n_classes - 1}")
        if event.frame < 0:
            raise ValueError(f"frame {event.frame} of {event}: expected >= 0")
        if self.frame_level:
            distance = event.distance_m
            if distance is None or not (distance > 0.0 if is_reference else distance >= 0.0):
                raise ValueError(f"{event}: the distance-aware metrics need a distance "
                                 f"{'> 0' if is_reference else '>= 0'} on every event")

    def update(self, reference: Iterable[Event], predicted: Iterable[Event]) -> None:
        """Add one recording (all its frames; events of one frame in their listed order)."""
        reference, predicted = list(reference), list(predicted)
        for events, is_reference in ((reference, True), (predicted, False)):
            for event in events:
                self._check(event, is_reference)
        if not reference:
            return
        last_reference_frame = max(e.frame for e in reference)
        if self.frame_level:
            n_units, unit_frames = last_reference_frame, 1
        else:
            unit_frames = self.frames_per_segment
            n_units = math.ceil(last_reference_frame / unit_frames)
        # (unit, class) -> frame -> events in listed order; frames past the span dropped.
        sides: list[dict[tuple[int, int], dict[int, list[Event]]]] = []
        for events in (reference, predicted):
            grouped: dict[tuple[int, int], dict[int, list[Event]]] = defaultdict(
                lambda: defaultdict(list))
            for event in events:
                if event.frame < n_units * unit_frames:
                    grouped[(event.frame // unit_frames, event.class_id)][event.frame].append(event)
            sides.append(grouped)
        unit_fn, unit_fp = np.zeros((n_units, self.n_classes)), np.zeros((n_units, self.n_classes))
        for unit, class_id in sorted(set(sides[0]) | set(sides[1])):
            reference_frames = sides[0].get((unit, class_id), {})
            predicted_frames = sides[1].get((unit, class_id), {})
            if self.frame_level:
                frame = unit
                counts = score_frame_class(reference_frames.get(frame, []),
                                           predicted_frames.get(frame, []), self.threshold,
                                           self.distance_threshold,
                                           self.absolute_distance_threshold_m)
            else:
                counts = score_segment_class(reference_frames, predicted_frames, self.threshold)
            for name, value in counts.items():
                self.counts[name][class_id] += value
            unit_fn[unit, class_id] = counts["fn"]
            unit_fp[unit, class_id] = counts["fp"] + counts["fp_spatial"]
        self._unit_fn.append(unit_fn)
        self._unit_fp.append(unit_fp)

    def error_rate(self, classes: Sequence[int] | None = None) -> float:
        """The global location-dependent error rate over ``classes`` (default all): S, D, I
        of the false negatives and positives pooled over classes per unit, over ``N_ref``."""
        chosen = self._chosen(classes)
        if not self._unit_fn:
            return 0.0
        fn = np.concatenate(self._unit_fn)[:, chosen].sum(axis=1)
        fp = np.concatenate(self._unit_fp)[:, chosen].sum(axis=1)
        substitutions = np.minimum(fp, fn).sum()
        deletions = np.maximum(0.0, fn - fp).sum()
        insertions = np.maximum(0.0, fp - fn).sum()
        return float((substitutions + deletions + insertions)
                     / (self.counts["n_ref"][chosen].sum() + EPS))

    def _chosen(self, classes: Sequence[int] | None) -> np.ndarray:
        chosen = np.arange(self.n_classes) if classes is None else np.asarray(classes, int)
        if chosen.size == 0:
            raise ValueError("classes: expected at least one class index, got none")
        if chosen.min() < 0 or chosen.max() >= self.n_classes:
            raise ValueError(f"classes: expected indices in 0...{self.n_classes - 1}, "
                             f"got {chosen.tolist()}")
        return chosen

    def scores(self, classes: Sequence[int] | None = None) -> dict:
        """Error rate, F-score, localisation error (deg) and recall, the SELD score (and in the
        2024 variant the distance errors), averaged as ``average``, and ``per_class`` (its
        ``error_rate`` is the global figure, repeated as in the official code). ``classes``
        restricts everything to those class indices (default: all, as the official code)."""
        chosen = self._chosen(classes)
        c = {name: values[chosen] for name, values in self.counts.items()}
        error_rate = self.error_rate(classes)
        n = chosen.size
        missing = np.nan if self.frame_level else 180.0    # LE of a class without a loc. TP
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = {
                "error_rate": np.repeat(error_rate, n),
                "f_score": c["tp"] / (EPS + c["tp"] + c["fp_spatial"] + 0.5 * (c["fp"] + c["fn"])),
                "localization_error_deg": np.where(c["loc_tp"] == 0, missing,
                                                   c["loc_error"] / (c["loc_tp"] + EPS)),
                "localization_recall": c["loc_tp"] / (EPS + c["loc_tp"] + c["fn"]),
            }
            if self.frame_level:
                for name, key in (("distance_error_m", "distance_error"),
                                  ("relative_distance_error", "relative_distance_error")):
                    per_class[name] = np.where(c["loc_tp"] == 0, np.nan,
                                               c[key] / (c["loc_tp"] + EPS))
        per_class["seld_score"] = self._seld(per_class)
        if self.average == "macro":
            overall = {name: float(_nanmean(values) if self.frame_level else values.mean())
                       for name, values in per_class.items()}
            overall["error_rate"] = error_rate            # the global figure, not a mean
        else:
            overall = self._micro(c, error_rate)
        return {**overall, "per_class": {name: values.tolist()
                                         for name, values in per_class.items()}}

    def _seld(self, s: dict) -> np.ndarray:
        """The SELD score of arrays (per class) or scalars (micro), official formulas."""
        if self.frame_level:
            return _nanmean(np.array([1.0 - np.asarray(s["f_score"]),
                                      np.asarray(s["localization_error_deg"]) / 180.0,
                                      np.asarray(s["relative_distance_error"])]), axis=0)
        return np.mean([s["error_rate"], 1.0 - np.asarray(s["f_score"]),
                        np.asarray(s["localization_error_deg"]) / 180.0,
                        1.0 - np.asarray(s["localization_recall"])], axis=0)

    def _micro(self, c: dict[str, np.ndarray], error_rate: float) -> dict[str, float]:
        """Scores of the counts summed over the chosen classes (``average="micro"``)."""
        total = {name: float(values.sum()) for name, values in c.items()}
        loc_tp = total["loc_tp"]
        missing = math.nan if self.frame_level else 180.0

        def per_localisation(key: str) -> float:
            return total[key] / (loc_tp + EPS) if loc_tp else missing

        overall = {
            "error_rate": error_rate,
            "f_score": total["tp"] / (EPS + total["tp"] + total["fp_spatial"]
                                      + 0.5 * (total["fp"] + total["fn"])),
            "localization_error_deg": per_localisation("loc_error"),
            "localization_recall": loc_tp / (EPS + loc_tp + total["fn"]),
        }
        if self.frame_level:
            overall["distance_error_m"] = (per_localisation("distance_error") if loc_tp
                                           else math.nan)
            overall["relative_distance_error"] = (per_localisation("relative_distance_error")
                                                  if loc_tp else math.nan)
        overall["seld_score"] = float(self._seld(overall))
        return overall


def _nanmean(values: np.ndarray, axis: int | None = None):
    """``np.nanmean`` without the warning for all-NaN slices (they stay NaN)."""
    values = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    total = np.where(present, values, 0.0).sum(axis=axis)
    count = present.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count
