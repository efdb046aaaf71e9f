"""DCASE SELD metrics on hand-made reference / prediction tables whose scores are worked out
here, including two instances of one class and the assignment of predictions to them."""

import math

import pytest

from evals.audio.seld_metrics import Event, SELDMetrics, angular_distance_deg

D = math.radians


def events(rows):
    """(frame, class, track, azimuth_deg, elevation_deg) -> Events."""
    return [Event(f, c, t, D(az), D(el)) for f, c, t, az, el in rows]


def scores(reference, predicted, n_classes=1, **kwargs):
    metrics = SELDMetrics(n_classes, **kwargs)
    metrics.update(events(reference), events(predicted))
    return metrics.scores()


def test_angular_distance():
    assert angular_distance_deg(0.0, 0.0, D(90), 0.0) == pytest.approx(90.0)
    assert angular_distance_deg(D(170), 0.0, D(-170), 0.0) == pytest.approx(20.0)   # across ±180
    assert angular_distance_deg(0.0, D(89), D(180), D(89)) == pytest.approx(2.0)     # near the pole


def test_a_perfect_prediction():
    ref = [(f, 0, 0, 30.0, 10.0) for f in range(10)]
    s = scores(ref, ref)
    assert (s["error_rate"], s["f_score"], s["localization_error_deg"],
            s["localization_recall"]) == pytest.approx((0.0, 1.0, 0.0, 1.0), abs=1e-5)
    assert s["seld_score"] == pytest.approx(0.0, abs=1e-7)


def test_a_detection_too_far_away_is_a_false_positive_but_localised():
    # One segment: the reference at 0 deg, the prediction 30 deg away in every frame.
    s = scores([(f, 0, 0, 0.0, 0.0) for f in range(10)], [(f, 0, 0, 30.0, 0.0) for f in range(10)])
    # TP 0, FP 1, FN 0, N_ref 1: S 0, D 0, I 1 -> ER 1; F = 0; LE 30; LR = 1 / (1 + 0) = 1.
    assert s["error_rate"] == pytest.approx(1.0) and s["f_score"] == pytest.approx(0.0)
    assert s["localization_error_deg"] == pytest.approx(30.0)
    assert s["localization_recall"] == pytest.approx(1.0)
    assert s["seld_score"] == pytest.approx((1.0 + 1.0 + 30.0 / 180.0 + 0.0) / 4)
    assert scores([(0, 0, 0, 0.0, 0.0)], [(0, 0, 0, 15.0, 0.0)])["f_score"] == pytest.approx(1.0)


def test_two_instances_of_one_class_are_assigned_by_least_distance():
    # Frame 0: references at 0 and 90 deg; predictions listed as 85 and 5 deg. In order they
    # would be 85 and 85 deg off; the assignment pairs 0-5 and 90-85: 5 deg each, both TP.
    ref = [(0, 0, 0, 0.0, 0.0), (0, 0, 1, 90.0, 0.0)]
    pred = [(0, 0, 0, 85.0, 0.0), (0, 0, 1, 5.0, 0.0)]
    s = scores(ref, pred)
    # N_ref 2 (two simultaneous tracks), TP 2: ER 0, F 1; LE = (5 + 5) / 2 = 5; LR 1.
    assert (s["error_rate"], s["f_score"]) == pytest.approx((0.0, 1.0), abs=1e-9)
    assert s["localization_error_deg"] == pytest.approx(5.0)
    # One of the two predicted: the second reference track has no partner in any frame.
    s = scores(ref, [(0, 0, 0, 88.0, 0.0)])
    # Track 1 (90 deg) matched at 2 deg: TP 1; track 0 unmatched contributes nothing (the
    # segment's class counts once as found): N_ref 2, TP 1, FP 0, FN 0 -> ER 0, F 1.
    assert s["f_score"] == pytest.approx(1.0) and s["localization_error_deg"] == pytest.approx(2.0)


def test_a_track_is_scored_by_its_mean_distance_over_its_frames():
    ref = [(f, 0, 7, 0.0, 0.0) for f in range(4)]
    pred = [(0, 0, 0, 10.0, 0.0), (1, 0, 0, 10.0, 0.0), (2, 0, 0, 30.0, 0.0), (3, 0, 0, 30.0, 0.0)]
    s = scores(ref, pred)                                  # mean 20 deg: within the threshold
    assert s["localization_error_deg"] == pytest.approx(20.0) and s["f_score"] == pytest.approx(1.0)
    assert scores(ref, pred, doa_threshold_deg=19.0)["f_score"] == pytest.approx(0.0)


def test_misses_false_alarms_segments_and_macro_averaging():
    # Class 0: present in segment 0 (frames 0-9) and missed; class 1: predicted in segment 1
    # where it is absent, and also predicted and present in segment 0 but never in the same
    # frame (a miss by the frame rule).
    ref = [(2, 0, 0, 0.0, 0.0), (3, 1, 0, 45.0, 0.0)]
    pred = [(12, 1, 0, 45.0, 0.0), (4, 1, 0, 45.0, 0.0)]
    s = scores(ref, pred, n_classes=3)
    er, f = s["per_class"]["error_rate"], s["per_class"]["f_score"]
    # class 0: FN 1, N_ref 1 -> ER 1, F 0, LR 0. class 1: FN 1 (segment 0) and FP 1 (segment 1),
    # N_ref 1 -> S 1 -> ER 1, F 0. class 2: nothing -> ER 0, F 0 (empty classes lower F).
    assert er == pytest.approx([1.0, 1.0, 0.0]) and f == pytest.approx([0.0, 0.0, 0.0])
    assert s["error_rate"] == pytest.approx(2 / 3)
    assert s["per_class"]["localization_recall"] == pytest.approx([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="expected 0"):
        scores([(0, 5, 0, 0.0, 0.0)], [], n_classes=3)


def test_distance_aware_variant_needs_both_direction_and_distance():
    """Two segments of one class, reference at 2 m. Segment 0: direction exact, distance 2.5 m
    (relative error 0.25): a true positive at threshold 0.5. Segment 1: direction exact,
    distance 4 m in 5 frames and 2 m in 5 (mean relative error 0.5): a true positive at
    threshold 0.5, a false positive at 0.4. RDE = (0.25 + 0.5) / 2 = 0.375."""
    reference = [Event(f, 0, 0, 0.0, 0.0, 2.0) for f in range(20)]
    predicted = ([Event(f, 0, 0, 0.0, 0.0, 2.5) for f in range(10)]
                 + [Event(f, 0, 0, 0.0, 0.0, 4.0 if f < 15 else 2.0) for f in range(10, 20)])
    for threshold, expected_tp in ((0.5, 2), (0.4, 1)):
        metrics = SELDMetrics(1, distance_threshold=threshold)
        metrics.update(reference, predicted)
        s = metrics.scores()
        assert metrics.counts["tp"][0] == expected_tp
        assert metrics.counts["fp"][0] == 2 - expected_tp
        assert s["relative_distance_error"] == pytest.approx(0.375)
        assert s["localization_error_deg"] == pytest.approx(0.0, abs=1e-6)
    # Without the variant, distances are ignored and both segments are true positives.
    plain = SELDMetrics(1)
    plain.update(reference, predicted)
    assert plain.counts["tp"][0] == 2 and "relative_distance_error" not in plain.scores()
    with pytest.raises(ValueError, match="distance"):
        SELDMetrics(1, distance_threshold=1.0).update(events([(0, 0, 0, 0.0, 0.0)]), [])
