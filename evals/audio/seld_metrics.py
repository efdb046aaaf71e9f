"""The DCASE sound event localisation and detection (SELD) metrics, written from their
definition (Mesaros et al., WASPAA 2019; Politis et al., TASLP 2020; the DCASE 2022/2023 task 3
evaluation rules), for the STARSS23 downstream task.

Inputs are frame-wise events at the label resolution (100 ms for STARSS23): a reference event
is (frame, class, track, azimuth, elevation), where ``track`` tells apart simultaneous
instances of one class (the CSVs' source number); predictions have the same form (their
``track`` is ignored). Frames are grouped into segments of ``frames_per_segment`` (10 = 1 s).
In each segment, for each class:

- present in the reference only: a false negative (and a localisation miss);
- in the predictions only: a false positive;
- in both: in every frame where both have it, the predicted directions are assigned to the
  reference directions by the Hungarian algorithm on the angular distance; each reference track
  then has the mean distance over its assigned frames. Every such track counts once towards the
  localisation (a localisation true positive, its mean distance summed into the error) and is a
  detection true positive when that distance is within ``doa_threshold_deg`` (20 degrees), else a
  false positive. If no frame has the class on both sides it is a false negative (and a miss).
- ``N_ref`` grows by the largest number of simultaneous reference tracks of the class in the
  segment.

Per class: substitutions ``S = min(FN, FP)``, deletions ``D = max(0, FN - FP)``, insertions
``I = max(0, FP - FN)``; error rate ``ER = (S + D + I) / N_ref``; F-score
``F = TP / (TP + (FP + FN) / 2)``; localisation error ``LE = sum of distances / localisation TP``
(degrees); localisation recall ``LR = localisation TP / (localisation TP + misses)``. The scores
are macro-averaged over classes (the DCASE default; a small epsilon keeps empty classes finite,
so a class never present and never predicted scores ER 0, F 0, LE 0, LR 0, as in the official
code), and ``SELD = mean(ER, 1 - F, LE / 180, 1 - LR)``.

Distance-aware variant (the DCASE 2024 idea, for labels with distances; ``distance_threshold``):
a matched track must also have a mean relative distance error ``|d_pred - d_ref| / d_ref``
within the threshold to be a detection true positive, and the mean relative distance error over
localisation true positives is reported per class and macro-averaged. It keeps the 2023
segment and averaging rules above; the 2024 official evaluation code was not available to check
its remaining rules against, so scores of this variant are not claimed equal to the official.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Event:
    """One active class instance in one frame. Angles in radians (CONVENTIONS.md: azimuth
    counter-clockwise from the front, elevation up)."""

    frame: int
    class_id: int
    track: int
    azimuth_rad: float
    elevation_rad: float
    distance_m: float | None = None    # source distance (STARSS23 2024 labels), None if unknown


def angular_distance_deg(az1, el1, az2, el2) -> np.ndarray:
    """Great-circle distance in degrees between directions given in radians (broadcasts)."""
    cosine = (np.sin(el1) * np.sin(el2)
              + np.cos(el1) * np.cos(el2) * np.cos(np.asarray(az1) - np.asarray(az2)))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def assign(reference: Sequence[Event], predicted: Sequence[Event]
           ) -> list[tuple[Event, Event, float]]:
    """Minimum-total-distance assignment of predicted to reference directions of one class in
    one frame: ``(reference, prediction, distance_deg)`` for each assigned pair."""
    if not reference or not predicted:
        return []
    ref_az = np.array([[r.azimuth_rad] for r in reference])              # (R, 1)
    ref_el = np.array([[r.elevation_rad] for r in reference])
    pred_az = np.array([[p.azimuth_rad for p in predicted]])             # (1, P)
    pred_el = np.array([[p.elevation_rad for p in predicted]])
    cost = angular_distance_deg(ref_az, ref_el, pred_az, pred_el)        # (R, P)
    rows, cols = linear_sum_assignment(cost)
    return [(reference[r], predicted[c], float(cost[r, c])) for r, c in zip(rows, cols)]


class SELDMetrics:
    """Accumulates the counts of any number of recordings, then :meth:`scores`."""

    def __init__(self, n_classes: int, doa_threshold_deg: float = 20.0,
                 frames_per_segment: int = 10, distance_threshold: float | None = None):
        """``distance_threshold`` (relative, e.g. 1.0) turns on the distance-aware variant:
        every event then needs ``distance_m``; a matched track is a detection true positive only
        when its mean angular error is within ``doa_threshold_deg`` *and* its mean relative
        distance error ``|d_pred - d_ref| / d_ref`` within this threshold, and the scores gain
        ``relative_distance_error`` (mean over localisation true positives, macro)."""
        self.n_classes, self.threshold = n_classes, doa_threshold_deg
        self.frames_per_segment = frames_per_segment
        self.distance_threshold = distance_threshold
        names = ("tp", "fp", "fn", "n_ref", "loc_error", "loc_tp", "loc_fn", "loc_fp",
                 "distance_error")
        self.counts = {name: np.zeros(n_classes) for name in names}

    def update(self, reference: Iterable[Event], predicted: Iterable[Event]) -> None:
        """Add one recording (all its frames)."""
        by_segment: dict[tuple[int, int], dict[str, dict[int, list[Event]]]] = defaultdict(
            lambda: {"ref": defaultdict(list), "pred": defaultdict(list)})
        for side, events in (("ref", reference), ("pred", predicted)):
            for event in events:
                if not 0 <= event.class_id < self.n_classes:
                    raise ValueError(f"class {event.class_id} of {event}: expected 0..."
                                     f"{self.n_classes - 1}")
                if self.distance_threshold is not None and not (event.distance_m or 0.0) > 0.0:
                    raise ValueError(f"{event}: the distance-aware metrics need a distance > 0 "
                                     f"on every event")
                key = (event.frame // self.frames_per_segment, event.class_id)
                by_segment[key][side][event.frame].append(event)
        c = self.counts
        for (_, class_id), sides in by_segment.items():
            ref, pred = sides["ref"], sides["pred"]
            if ref:
                c["n_ref"][class_id] += max(len(events) for events in ref.values())
            if ref and not pred:
                c["fn"][class_id] += 1
                c["loc_fn"][class_id] += 1
                continue
            if pred and not ref:
                c["fp"][class_id] += 1
                c["loc_fp"][class_id] += 1
                continue
            distances: dict[int, list[float]] = defaultdict(list)     # reference track -> deg
            relative: dict[int, list[float]] = defaultdict(list)      # reference track -> |Δd|/d
            for frame in sorted(set(ref) & set(pred)):
                for reference_event, predicted_event, distance in assign(ref[frame], pred[frame]):
                    distances[reference_event.track].append(distance)
                    if self.distance_threshold is not None:
                        relative[reference_event.track].append(
                            abs(predicted_event.distance_m - reference_event.distance_m)
                            / reference_event.distance_m)
            if not distances:                  # the class never shares a frame on both sides
                c["fn"][class_id] += 1
                c["loc_fn"][class_id] += 1
                continue
            for track, track_distances in distances.items():
                mean_distance = float(np.mean(track_distances))
                c["loc_error"][class_id] += mean_distance
                c["loc_tp"][class_id] += 1
                close = mean_distance <= self.threshold
                if self.distance_threshold is not None:
                    mean_relative = float(np.mean(relative[track]))
                    c["distance_error"][class_id] += mean_relative
                    close = close and mean_relative <= self.distance_threshold
                c["tp" if close else "fp"][class_id] += 1

    def scores(self, classes: Sequence[int] | None = None) -> dict:
        """Macro-averaged error rate, F-score, localisation error (deg) and recall, the SELD
        score, and the same per class. ``classes`` restricts the macro average to those class
        indices (default: all, as the official code; a class absent from the reference but
        predicted then has an error rate of insertions / eps)."""
        c = self.counts
        substitutions = np.minimum(c["fn"], c["fp"])
        deletions = np.maximum(0.0, c["fn"] - c["fp"])
        insertions = np.maximum(0.0, c["fp"] - c["fn"])
        per_class = {
            "error_rate": (substitutions + deletions + insertions) / (c["n_ref"] + EPS),
            "f_score": c["tp"] / (EPS + c["tp"] + 0.5 * (c["fp"] + c["fn"])),
            "localization_error_deg": c["loc_error"] / (c["loc_tp"] + EPS),
            "localization_recall": c["loc_tp"] / (EPS + c["loc_tp"] + c["loc_fn"]),
        }
        if self.distance_threshold is not None:
            per_class["relative_distance_error"] = c["distance_error"] / (c["loc_tp"] + EPS)
        chosen = np.arange(self.n_classes) if classes is None else np.asarray(classes, int)
        if chosen.size == 0:
            raise ValueError("classes: expected at least one class index, got none")
        macro = {name: float(values[chosen].mean()) for name, values in per_class.items()}
        macro["seld_score"] = float(np.mean([macro["error_rate"], 1.0 - macro["f_score"],
                                             macro["localization_error_deg"] / 180.0,
                                             1.0 - macro["localization_recall"]]))
        return {**macro, "per_class": {name: values.tolist() for name, values in per_class.items()}}
