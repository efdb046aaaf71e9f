"""DCASE SELD metrics against the official evaluation code.

The expected values marked "official" are facts: the outputs of the unmodified official code
(DCASE 2023: sharathadavanne/seld-dcase2023 at 24d14c9, ``cls_compute_seld_results`` /
``SELD_evaluation_metrics``; DCASE 2024: partha2409/DCASE2024_seld_baseline at 0b07887,
frame-level with ``evaluate_distance=True``, ``lad_reldist_thresh`` as given) run on these very
tables written as the official CSVs (references polar, 2023 predictions in the baseline's
Cartesian output format, 2024 reference distances in cm). Rows are
``(frame, class, source, azimuth_deg, elevation_deg[, distance_m])``; frames of 100 ms.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from evals.audio.seld_metrics import (Event, SELDMetrics, angular_distance_deg,
                                      regularised_angle_deg, score_segment_class)

FIXTURES = Path(__file__).parent / "fixtures" / "seld_metrics"
KEYS = ("error_rate", "f_score", "localization_error_deg", "localization_recall", "seld_score")
KEYS_2024 = KEYS + ("relative_distance_error", "distance_error_m")


def events(rows):
    """Rows in degrees (and metres) -> Events in radians."""
    return [Event(int(r[0]), int(r[1]), int(r[2]), math.radians(r[3]), math.radians(r[4]),
                  r[5] if len(r) > 5 else None) for r in rows]


def seg(frames, class_id, azimuth_deg, elevation_deg=0.0, distance_m=None):
    """One source (id 0) held still over ``frames``."""
    return [(f, class_id, 0, azimuth_deg, elevation_deg)
            + (() if distance_m is None else (distance_m,)) for f in frames]


def two(frames, class_id, first_deg, second_deg, distances_m=None):
    """Two simultaneous same-class sources, both source id 0, listed first then second."""
    rows = []
    for f in frames:
        for azimuth_deg, k in ((first_deg, 0), (second_deg, 1)):
            rows.append((f, class_id, 0, azimuth_deg, 0.0)
                        + (() if distances_m is None else (distances_m[k],)))
    return rows


def scored(reference, predicted, n_classes=1, recordings=None, **kwargs):
    metrics = SELDMetrics(n_classes, **kwargs)
    for ref, pred in recordings or [(reference, predicted)]:
        metrics.update(events(ref), events(pred))
    return metrics.scores()


def assert_official(ours, official, keys=KEYS):
    """Equal to the official values to float precision; a localisation error near 0 degrees
    carries the official code's own rounding (arccos near 1: ~1e-6 degrees)."""
    for key, expected in zip(keys, official):
        if expected is None:
            assert math.isnan(ours[key]), key
            continue
        tolerance = 1e-6 if key == "localization_error_deg" else 1e-9
        assert ours[key] == pytest.approx(expected, rel=1e-9, abs=tolerance), key


# ----------------------------------------------------------------------------- sanity

def test_angular_distance():
    assert angular_distance_deg(0.0, 0.0, math.radians(90), 0.0) == pytest.approx(90.0)
    assert angular_distance_deg(math.radians(170), 0.0, math.radians(-170), 0.0) == \
        pytest.approx(20.0)                                                      # across ±180
    assert angular_distance_deg(0.0, math.radians(89), math.pi, math.radians(89)) == \
        pytest.approx(2.0)                                                       # over the pole
    # The 2024 official normalisation floors the angle of equal directions at 8.1e-4 deg.
    same = np.array([[0.3, 0.2]])
    assert regularised_angle_deg(same, same)[0, 0] == pytest.approx(
        math.degrees(math.acos(1 / (1 + 1e-10))), rel=1e-3)
    assert regularised_angle_deg(np.array([[0.0, 0.0]]), np.array([[math.pi / 2, 0.0]]))[0, 0] \
        == pytest.approx(90.0)


@pytest.mark.parametrize("distance_threshold", [None, 1.0])
def test_a_perfect_prediction(distance_threshold):
    """ER 0, F 1, LE 0, LR 1, SELD 0, over two recordings and three classes (one with two
    simultaneous sources)."""
    d = None if distance_threshold is None else 2.0
    first = seg(range(0, 23), 0, 30.0, 10.0, d) + seg(range(5, 15), 1, -120.0, -20.0, d)
    second = two(range(0, 17), 2, 45.0, -45.0, None if d is None else (2.0, 3.0))
    s = scored(None, None, 3, recordings=[(first, first), (second, second)],
               distance_threshold=distance_threshold)
    assert (s["error_rate"], s["f_score"], s["localization_recall"]) == pytest.approx(
        (0.0, 1.0, 1.0), abs=1e-12)
    assert s["localization_error_deg"] == pytest.approx(0.0, abs=1e-3)     # 2024: 8.1e-4 deg
    assert s["seld_score"] == pytest.approx(0.0, abs=1e-5)
    if distance_threshold is not None:
        assert s["relative_distance_error"] == pytest.approx(0.0, abs=1e-12)


def test_track_counts_of_one_segment():
    """Rules 3-4 on the counts of one class in one segment."""
    ref = {f: events(two([f], 0, 0.0, 90.0)) for f in range(10)}
    one_far = {f: events(seg([f], 0, 120.0)) for f in range(10)}
    assert score_segment_class(ref, {}, 20.0)["fn"] == 2                 # reference only: 2
    assert score_segment_class({}, ref, 20.0)["fp"] == 2                 # prediction only: 2
    counts = score_segment_class(ref, one_far, 20.0)
    # 120 deg lands on the 90-deg source (30 deg off): a spatial FP, and one track fewer: FN 1.
    assert (counts["tp"], counts["fp_spatial"], counts["fp"], counts["fn"]) == (0, 1, 0, 1)
    assert counts["loc_error"] == pytest.approx(30.0) and counts["n_ref"] == 2
    # Both present but never in the same frame: FN grows by the *predicted* track count.
    early = {f: ref[f] for f in range(5)}
    late = {f: events(seg([f], 0, 0.0)) for f in range(5, 10)}
    assert score_segment_class(early, late, 20.0)["fn"] == 1


# ----------------------------------------------------------------------------- DCASE 2023

R = range
OFFICIAL_2023 = {
    # name: (reference, prediction, n_classes, options, official ER, F, LE, LR, SELD)
    "far_match": (seg(R(10), 0, 0.0), seg(R(10), 0, 30.0), 1, {},
                  (0.9999999999999998, 0.0, 29.999999999999986, 0.9999999999999998,
                   0.5416666666666667)),
    "two_sources_id0": (two(R(10), 0, 0.0, 90.0), two(R(10), 0, 85.0, 5.0), 1, {},
                        (0.0, 1.0, 4.999999999999992, 1.0, 0.006944444444444434)),
    # The two sources swap listing order after frame 4: tracks are positions, so the one
    # prediction (10 deg from the 0-deg source) makes two tracks of 10 deg.
    "tracks_by_position": (
        [(f, 0, s, az, 0.0) for f in R(10)
         for s, az in (((1, 0.0), (2, 90.0)) if f < 5 else ((2, 90.0), (1, 0.0)))],
        seg(R(10), 0, 10.0), 1, {},
        (0.5, 0.8, 10.000000000000012, 0.6666666666666666, 0.27222222222222225)),
    "reference_only_two_tracks": (
        seg(R(10), 0, 0.0) + two(R(10, 20), 0, 40.0, -40.0), seg(R(10), 0, 5.0), 1, {},
        (0.6666666666666666, 0.5, 4.999999999999991, 0.3333333333333333, 0.46527777777777773)),
    # Prediction-only segments 1 (two tracks) and 2; class 1's reference frame 25 makes three
    # segments, so predictions from frame 30 on are not scored.
    "prediction_only_and_after_end": (
        seg(R(10), 0, 0.0) + seg([25], 1, 0.0),
        seg(R(10), 0, 5.0) + two(R(10, 20), 0, 40.0, -40.0) + seg(R(20, 30), 0, 0.0)
        + seg(R(30, 60), 0, 0.0) + seg(R(30, 60), 1, 0.0), 2, {},
        (1.5, 0.2, 92.5, 0.4999999999999999, 0.8284722222222223)),
    # Last reference frame 20: ceil(20 / 10) = 2 segments; frame 20 itself is not scored.
    "last_frame_multiple_of_ten": (
        seg(R(10), 0, 0.0) + seg([20], 0, 0.0),
        seg(R(10), 0, 0.0) + seg([20], 0, 0.0) + seg([21], 0, 100.0), 1, {},
        (0.0, 0.9999999999999998, 0.0, 0.9999999999999998, 1.1102230246251565e-16)),
    # Class 2 never predicted, class 1 never present: both LE 180.
    "class_never_predicted": (
        seg(R(10), 0, 0.0) + seg(R(10, 20), 2, 45.0, 20.0),
        seg(R(10), 0, 10.0) + seg(R(10, 20), 1, 45.0, 20.0), 3, {},
        (0.5, 0.33333333333333326, 123.33333333333333, 0.33333333333333326, 0.6296296296296297)),
    "instance_count_mismatch": (
        seg(R(10), 0, 0.0) + two(R(10, 20), 0, 0.0, 120.0),
        two(R(10), 0, 3.0, 150.0) + seg(R(10, 20), 0, 118.0), 1, {},
        (0.6666666666666666, 0.6666666666666666, 2.4999999999999964, 0.6666666666666666,
         0.3368055555555556)),
    "no_common_frame": (
        two(R(5), 0, 0.0, 60.0) + seg(R(10), 1, 0.0), seg(R(5, 10), 0, 0.0) + seg(R(10), 1, 0.0),
        2, {}, (0.3333333333333333, 0.4999999999999999, 90.0, 0.4999999999999999,
                0.45833333333333337)),
    # Segment 0: class 0 missed, class 1 inserted: one substitution, not a deletion and an
    # insertion.
    "pooled_error_rate": (
        seg(R(10), 0, 0.0) + seg(R(10, 20), 1, 0.0), seg(R(10), 1, 0.0) + seg(R(10, 20), 1, 10.0),
        2, {}, (0.5, 0.33333333333333326, 95.0, 0.4999999999999999, 0.5486111111111112)),
    "pooled_error_rate_micro": (
        seg(R(10), 0, 0.0) + seg(R(10, 20), 1, 0.0), seg(R(10), 1, 0.0) + seg(R(10, 20), 1, 10.0),
        2, {"average": "micro"}, (0.5, 0.5, 10.00000000000001, 0.5, 0.3888888888888889)),
    # A track's error is its mean over frames: 10 deg in 5 frames, 28 in 5 -> 19 deg.
    "mean_over_frames": (
        seg(R(10), 0, 0.0), seg(R(5), 0, 10.0) + seg(R(5, 10), 0, 28.0), 1, {},
        (0.0, 0.9999999999999998, 19.000000000000004, 0.9999999999999998, 0.026388888888889003)),
    "mean_over_frames_threshold_18": (
        seg(R(10), 0, 0.0), seg(R(5), 0, 10.0) + seg(R(5, 10), 0, 28.0), 1,
        {"doa_threshold_deg": 18.0},
        (0.9999999999999998, 0.0, 19.000000000000004, 0.9999999999999998, 0.5263888888888888)),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_2023))
def test_equals_the_official_2023_code(name):
    reference, predicted, n_classes, options, official = OFFICIAL_2023[name]
    assert_official(scored(reference, predicted, n_classes, **options), official)


def test_per_class_scores_equal_the_official_2023_code():
    reference, predicted, n_classes, _, _ = OFFICIAL_2023["class_never_predicted"]
    per_class = scored(reference, predicted, n_classes)["per_class"]
    assert per_class["f_score"] == pytest.approx([1.0, 0.0, 0.0])                    # official
    assert per_class["localization_error_deg"] == pytest.approx([10.0, 180.0, 180.0])
    assert per_class["error_rate"] == pytest.approx([0.5] * 3)        # the global ER, repeated
    reference, predicted, n_classes, _, _ = OFFICIAL_2023["pooled_error_rate"]
    per_class = scored(reference, predicted, n_classes)["per_class"]
    assert per_class["seld_score"] == pytest.approx([0.875, 0.22222222222222232])    # official


def read_fixture(folder):
    """The recordings of a fixture folder: ``(reference rows, predicted rows)`` each."""
    def rows(path):
        with open(path, newline="") as f:
            return [tuple(float(x) for x in row) for row in csv.reader(f)]
    return [(rows(FIXTURES / folder / f"rec{i}_ref.csv"),
             rows(FIXTURES / folder / f"rec{i}_pred.csv")) for i in range(3)]


def test_equals_the_official_2023_code_on_a_random_set():
    """13 classes, 3 recordings of 30 s (classes 0-1 with actor ids 1-2, others id 0), every
    event's predictions with 25-deg azimuth / 10-deg elevation noise, onsets shifted by up to
    3 frames, 15 % of events dropped, 10 % of frames dropped, 2-5 false events added (some past
    the end)."""
    s = scored(None, None, 13, recordings=read_fixture("random13_2023"))
    assert_official(s, (0.7219251336898396, 0.34174799905058256, 21.10250172309473,
                        0.8565742703751754, 0.41020974623698536))
    assert s["per_class"]["f_score"] == pytest.approx(                                # official
        [0.23529411764705882, 0.3076923076923077, 0.5454545454545454, 0.3225806451612903,
         0.23076923076923078, 0.2857142857142857, 0.5333333333333333, 0.30303030303030304,
         0.4, 0.18181818181818182, 0.56, 0.3888888888888889, 0.14814814814814814], abs=1e-12)
    assert s["per_class"]["localization_error_deg"] == pytest.approx(                 # official
        [20.745041411357995, 22.377947878371952, 19.229308260884327, 22.330570659174818,
         21.580106031390017, 21.185546466122265, 18.827332580067054, 24.317353492773236,
         14.983903642537703, 21.25325677549966, 20.587498413265344, 21.702027792298086,
         25.212628996489023], abs=1e-9)


def test_classes_restrict_every_score_including_the_pooled_error_rate():
    reference, predicted, n_classes, _, _ = OFFICIAL_2023["pooled_error_rate"]
    metrics = SELDMetrics(n_classes)
    metrics.update(events(reference), events(predicted))
    only_0 = metrics.scores(classes=[0])
    # Class 0 alone: missed in segment 0 (a deletion, class 1's insertion left out): ER 1.
    assert only_0["error_rate"] == pytest.approx(1.0)
    assert (only_0["f_score"], only_0["localization_error_deg"]) == pytest.approx((0.0, 180.0))
    assert only_0["seld_score"] == pytest.approx(1.0)
    assert metrics.scores(classes=[0, 1])["seld_score"] == pytest.approx(0.5486111111111112)


# ----------------------------------------------------------------------------- DCASE 2024

# Class 0: 2 m then a second source at 90 deg / 4 m; class 1: predicted at 1.6 m for 1 m
# (relative error 0.6 > 0.5: spatial FPs), partly outside the reference; class 2: exact but
# runs past the last reference frame 11; class 3 never present.
D24_REFERENCE = (seg(R(6), 0, 0.0, 0.0, 2.0) + two(R(6, 10), 0, 0.0, 90.0, (2.0, 4.0))
                 + seg(R(4), 1, 45.0, 10.0, 1.0) + seg(R(4, 12), 2, -60.0, 0.0, 3.0))
D24_PREDICTED = (seg(R(3), 0, 10.0, 0.0, 2.5) + seg(R(3, 6), 0, 30.0, 0.0, 2.0)
                 + seg(R(6, 10), 0, 88.0, 0.0, 1.0) + seg(R(2, 8), 1, 45.0, 10.0, 1.6)
                 + seg(R(8, 14), 2, -60.0, 0.0, 3.0))
OFFICIAL_2024 = {
    # name: (options, official ER, F, LE, LR, SELD, RDE, distance error m)
    "macro": ({}, (0.6, 0.2125, 4.267206882746932, 0.41071428571428575, 0.516343342892704,
                   0.325, 0.65)),
    "micro": ({"average": "micro"},
              (0.6, 0.2727272727272727, 8.533603480505917, 0.6, 0.3682272118325867, 0.33, 0.98)),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_2024))
def test_equals_the_official_2024_code(name):
    options, official = OFFICIAL_2024[name]
    s = scored(D24_REFERENCE, D24_PREDICTED, 4, distance_threshold=0.5, **options)
    assert_official(s, official, KEYS_2024)


def test_per_class_2024_scores_equal_the_official_code():
    per_class = scored(D24_REFERENCE, D24_PREDICTED, 4, distance_threshold=0.5)["per_class"]
    assert per_class["f_score"] == pytest.approx([0.25, 0.0, 0.6, 0.0])               # official
    assert per_class["relative_distance_error"][:3] == pytest.approx([0.375, 0.6, 0.0])
    assert per_class["localization_error_deg"][:3] == pytest.approx(
        [12.800000078354861, 0.0008102856176659516, 0.0008102842682713119], abs=1e-6)
    assert math.isnan(per_class["localization_error_deg"][3])      # no localisation TP: NaN
    assert per_class["seld_score"] == pytest.approx(
        [0.39870370384880527, 0.5333348338622549, 0.13333483385975606, 1.0], abs=1e-8)


def test_equals_the_official_2024_code_on_a_random_set():
    """As the 2023 random set (another seed), with reference distances of 1-4 m and each
    predicted event's distance off by a log-normal factor (sigma 0.3); threshold 1.0."""
    s = scored(None, None, 13, recordings=read_fixture("random13_2024"), distance_threshold=1.0)
    assert_official(s, (0.618006993006993, 0.3570183706748563, 21.755031915500552,
                        0.6496894047962862, 0.42872044730512293, 0.27562382645990974,
                        0.6731078934207265), KEYS_2024)
    assert [math.isnan(x) for x in s["per_class"]["relative_distance_error"]] == \
        [True, False, False, False, True] + [False] * 8                                # official


def test_the_distance_threshold_decides_true_positives():
    reference = seg(R(11), 0, 0.0, 0.0, 2.0)                 # frames 0-9 scored (10 is last)
    predicted = seg(R(11), 0, 0.0, 0.0, 2.8)                 # relative error 0.4
    assert scored(reference, predicted, distance_threshold=0.5)["f_score"] == pytest.approx(1.0)
    assert scored(reference, predicted, distance_threshold=0.3)["f_score"] == pytest.approx(0.0)
    assert scored(reference, predicted, distance_threshold=0.5,
                  absolute_distance_threshold_m=0.5)["f_score"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- errors

def test_user_mistakes_are_one_line_errors():
    with pytest.raises(ValueError, match="expected 0"):
        scored(seg([0], 5, 0.0), [], n_classes=3)
    with pytest.raises(ValueError, match="distance"):
        scored(seg([0], 0, 0.0), [], distance_threshold=1.0)
    with pytest.raises(ValueError, match="average"):
        SELDMetrics(3, average="weighted")
    with pytest.raises(ValueError, match="classes"):
        SELDMetrics(3).scores(classes=[])
    with pytest.raises(ValueError, match="classes"):
        SELDMetrics(3).scores(classes=[3])
