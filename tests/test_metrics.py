"""Metric library tests: hand-computed cases (arithmetic in the comments), agreement with scikit-learn / scipy,
and edge cases. Fast: small arrays only."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from orchestrator.benchmarks.metrics_clip import action_metrics, skill_metrics
from orchestrator.benchmarks.metrics_dense import depth_metrics, dice_curve, segmentation_metrics
from orchestrator.benchmarks.metrics_phase import (
    edit_score,
    levenshtein,
    phase_metrics,
    phase_table,
    relaxed_correct,
    relaxed_window_frames,
    video_accuracy,
    video_edit_score,
)
from orchestrator.benchmarks.metrics_triplet import cholect50_triplet_maps, component_groups, triplet_metrics

approx = pytest.approx


# --------------------------------------------------------------------------------------------------- phase
# Video A: gt [0,0,1,1,1,2], pred [0,1,1,1,2,2] -> 4/6 frames right.
#   phase 0: #gt 2, #pred 1, tp 1 -> P 1,   R 1/2, J 1/(2+1-1)=1/2, F1 2/3
#   phase 1: #gt 3, #pred 3, tp 2 -> P 2/3, R 2/3, J 2/4=1/2,       F1 2/3
#   phase 2: #gt 1, #pred 2, tp 1 -> P 1/2, R 1,   J 1/2,           F1 2/3
#   macro: P = R = (1 + 2/3 + 1/2)/3 = 13/18, J 1/2, F1 2/3; segments [0,1,2] vs [0,1,2] -> edit 1
# Video B: gt [3,3,3], pred [3,0,3] -> 2/3 right; phase 0 is absent from B's GT -> NaN, excluded.
#   phase 3: #gt 3, #pred 2, tp 2 -> P 1, R 2/3, J 2/3, F1 (4/3)/(5/3) = 4/5
#   segments [3] vs [3,0,3]: 2 deletions -> edit 1 - 2/3 = 1/3
VIDEO = np.array(["A"] * 6 + ["B"] * 3)
GT = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3])
PRED = np.array([0, 1, 1, 1, 2, 2, 3, 0, 3])


def test_phase_video_wise_hand_computed() -> None:
    out = phase_metrics(VIDEO, GT, PRED)
    assert out == approx({
        "accuracy": (4 / 6 + 2 / 3) / 2,
        "precision": (13 / 18 + 1) / 2,  # 31/36
        "recall": (13 / 18 + 2 / 3) / 2,  # 25/36
        "jaccard": (1 / 2 + 2 / 3) / 2,  # 7/12
        "f1": (2 / 3 + 4 / 5) / 2,  # 11/15
        "edit": (1 + 1 / 3) / 2,
    })
    assert all(type(v) is float for v in out.values())


def test_phase_wise_matlab_aggregation_hand_computed() -> None:
    # Per phase, NaN-mean over videos (phases 0-2 only in A, phase 3 only in B), then mean over the 4 phases:
    #   P: (1 + 2/3 + 1/2 + 1)/4 = 19/24   R: (1/2 + 2/3 + 1 + 2/3)/4 = 17/24
    #   J: (1/2 + 1/2 + 1/2 + 2/3)/4 = 13/24   F1: (2/3 + 2/3 + 2/3 + 4/5)/4 = 7/10
    out = phase_metrics(VIDEO, GT, PRED, aggregation="phase")
    assert out["precision"] == approx(19 / 24)
    assert out["recall"] == approx(17 / 24)
    assert out["jaccard"] == approx(13 / 24)
    assert out["f1"] == approx(7 / 10)
    assert out["accuracy"] == approx(2 / 3)  # accuracy stays a mean over videos


def test_phase_table_marks_phases_absent_from_gt_as_nan() -> None:
    table = phase_table(VIDEO, GT, PRED)
    assert table.videos == ("A", "B")
    assert np.isnan(table.f1[1, 0])  # phase 0 predicted in B but absent from B's GT
    assert np.isnan(table.f1[0, 3]) and table.f1[1, 3] == approx(0.8)


def test_phase_matches_sklearn_with_labels_restricted_to_gt() -> None:
    rng = np.random.default_rng(0)
    video = np.repeat(np.array(["v1", "v2", "v3", "v4"]), 40)
    gt = rng.integers(0, 5, size=video.size)
    gt[:40] = np.minimum(gt[:40], 2)  # v1 lacks phases 3 and 4
    pred = np.where(rng.random(video.size) < 0.6, gt, rng.integers(0, 5, size=video.size))
    expected: dict[str, list[float]] = {k: [] for k in ("accuracy", "precision", "recall", "jaccard", "f1")}
    for vid in np.unique(video):
        t, p = gt[video == vid], pred[video == vid]
        kw = {"labels": np.unique(t), "average": "macro", "zero_division": 0}
        expected["accuracy"].append(accuracy_score(t, p))
        expected["precision"].append(precision_score(t, p, **kw))
        expected["recall"].append(recall_score(t, p, **kw))
        expected["jaccard"].append(jaccard_score(t, p, **kw))
        expected["f1"].append(f1_score(t, p, **kw))
    out = phase_metrics(video, gt, pred, num_classes=5)
    for name, values in expected.items():
        assert out[name] == approx(np.mean(values)), name
    assert video_accuracy(video, gt, pred) == approx(out["accuracy"])


def test_sklearn_union_macro_differs_when_phase_absent_from_gt() -> None:
    # Video B alone: sklearn's macro over gt ∪ pred = {0, 3} gives F1 (0 + 4/5)/2 = 2/5; we exclude phase 0.
    t, p = GT[6:], PRED[6:]
    assert f1_score(t, p, average="macro") == approx(0.4)
    assert phase_metrics(VIDEO[6:], t, p)["f1"] == approx(0.8)


def test_phase_one_frame_video() -> None:
    right = phase_metrics(np.array(["x"]), np.array([2]), np.array([2]))
    assert right == approx(dict.fromkeys(("accuracy", "precision", "recall", "jaccard", "f1", "edit"), 1.0))
    # gt [2], pred [1]: phase 2 never predicted -> P 0 (zero_division), R 0, J 0, F1 0; segments [1] vs [2] -> edit 0
    wrong = phase_metrics(np.array(["x"]), np.array([2]), np.array([1]))
    assert wrong == approx(dict.fromkeys(("accuracy", "precision", "recall", "jaccard", "f1", "edit"), 0.0))


def test_phase_all_wrong_and_perfect() -> None:
    video = np.array(["a"] * 4 + ["b"] * 3)
    gt = np.array([0, 0, 1, 1, 2, 2, 0])
    # all wrong: every score 0; segments [0,1]/[1,0] and [2,0]/[0,2] need 2 substitutions each -> edit 0
    out = phase_metrics(video, gt, np.array([1, 1, 0, 0, 0, 0, 2]))
    assert out == approx(dict.fromkeys(out, 0.0))
    assert phase_metrics(video, gt, gt.copy()) == approx(dict.fromkeys(out, 1.0))


def test_phase_rows_of_a_video_need_not_be_contiguous() -> None:
    order = np.array([0, 6, 1, 7, 2, 8, 3, 4, 5])  # interleave A and B, keeping each video's frame order
    assert phase_metrics(VIDEO[order], GT[order], PRED[order]) == approx(phase_metrics(VIDEO, GT, PRED))


def test_phase_input_errors() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        phase_metrics(VIDEO, GT, PRED, num_classes=3)
    with pytest.raises(ValueError, match="length mismatch"):
        phase_metrics(VIDEO, GT, PRED[:-1])
    with pytest.raises(ValueError, match="integer"):
        phase_metrics(VIDEO, GT.astype(float), PRED)


# ---------------------------------------------------------------------------------------- relaxed boundary
def test_relaxed_window_is_ten_seconds_of_frames() -> None:
    assert relaxed_window_frames(1) == 10
    assert relaxed_window_frames(25) == 250
    with pytest.raises(ValueError):
        relaxed_window_frames(0)


def test_relaxed_boundary_hand_computed() -> None:
    # fps 0.2 -> window t = 2 frames. diff = pred - gt.
    # frame:  0 1 2 3 4 | 5  6 7 8 9
    # gt:     0 0 0 0 0 | 1  1 1 1 1
    # pred:   0 0 1 0 1 | 0  1 1 2 2
    # diff:   0 0 1 0 1 |-1  0 0 1 1
    # phase 0 segment: tail frames 3-4 forgive +1 -> frame 4 ok; frame 2 (+1, not in the tail) stays wrong.
    # phase 1 segment: head frames 5-6 forgive -1 -> frame 5 ok; tail frames 8-9 forgive +1 -> both ok.
    # (MATLAB's bug applies the tail mask [F, T] of segment 0 to its FIRST two frames, so frame 4 would stay wrong.)
    gt = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 0, 1, 0, 1, 1, 2, 2])
    ok = relaxed_correct(gt, pred, fps=0.2)
    assert ok.tolist() == [True, True, False, True, True, True, True, True, True, True]
    # Phase 0: #gt 5, #pred 4 (0,1,3,5), union {0..5} = 6, relaxed TP = 5 (all but frame 2)
    #   -> P min(5/4, 1) = 1 (clipped), R 5/5 = 1, J 5/6, F1 1
    # Phase 1: #gt 5, #pred 4 (2,4,6,7), union {2,4,5,...,9} = 7, TP = 6 (all but frame 2)
    #   -> P min(6/4, 1) = 1, R min(6/5, 1) = 1 (clipped), J 6/7, F1 1
    # Edit is not relaxed: segments [0,1] vs [0,1,0,1,0,1,2] -> 5 deletions -> 1 - 5/7 = 2/7
    out = phase_metrics(np.array(["v"] * 10), gt, pred, relaxed=True, fps=0.2)
    assert out == approx({"accuracy": 0.9, "precision": 1.0, "recall": 1.0, "jaccard": (5 / 6 + 6 / 7) / 2,
                          "f1": 1.0, "edit": 2 / 7})
    assert phase_metrics(np.array(["v"] * 10), gt, pred)["accuracy"] == approx(0.5)  # unrelaxed: 0,1,3,6,7


def test_relaxed_phase_specific_rules_cholec80_vs_m2cai16() -> None:
    # fps 0.1 -> t = 1 frame. gt [3,3,3,5,5,5], pred [3,3,5,3,5,5]: diff at frame 2 is +2 (tail of a phase-3
    # segment), at frame 3 is -2 (head of a phase-5 segment).
    # Cholec80: phase 3 (GallbladderDissection) forgives +2 at its tail, phase 5 (CleaningCoagulation) -2 at its
    # head -> all frames ok. M2CAI16: phase 3 is ClippingCutting (+1 only), phase 5 GallbladderPackaging (-1 at
    # head only) -> frames 2 and 3 stay wrong -> 4/6.
    gt = np.array([3, 3, 3, 5, 5, 5])
    pred = np.array([3, 3, 5, 3, 5, 5])
    assert relaxed_correct(gt, pred, fps=0.1, protocol="cholec80").all()
    assert relaxed_correct(gt, pred, fps=0.1, protocol="m2cai16").mean() == approx(4 / 6)


def test_relaxed_window_limits_forgiveness() -> None:
    # gt [0]*4 + [1]*4, pred switches to 1 two frames early (frames 2, 3: diff +1).
    # fps 0.1 (t = 1): only frame 3 forgiven -> 7/8. fps 0.2 (t = 2): both -> 8/8.
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert relaxed_correct(gt, pred, fps=0.1).mean() == approx(7 / 8)
    assert relaxed_correct(gt, pred, fps=0.2).all()


def test_relaxed_requires_fps_and_canonical_ids() -> None:
    with pytest.raises(ValueError, match="fps"):
        phase_metrics(VIDEO, GT, PRED, relaxed=True)
    with pytest.raises(ValueError, match="0..6"):
        relaxed_correct(np.array([7, 7]), np.array([7, 7]), fps=1)


# -------------------------------------------------------------------------------------------- edit score
def test_levenshtein_and_edit_score_hand_made() -> None:
    assert levenshtein(list("kitten"), list("sitting")) == 3
    assert levenshtein([], [1, 2]) == 2
    # same segment order, shifted boundaries -> 1
    assert edit_score([0, 0, 1, 1, 2], [0, 1, 1, 2, 2]) == 1.0
    # gt segments [0,1]; pred [0,1,0,1,0,1] -> 4 deletions -> 1 - 4/6 = 1/3
    assert edit_score([0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 0, 1]) == approx(1 / 3)
    # [0,1,2] vs [0,2,1] -> 2 substitutions -> 1 - 2/3
    assert edit_score([0, 1, 2], [0, 2, 1]) == approx(1 / 3)
    # per-video mean: video a -> 1, video b -> 1/3
    video = np.array(["a"] * 5 + ["b"] * 3)
    assert video_edit_score(video, [0, 0, 1, 1, 2, 0, 1, 2], [0, 1, 1, 2, 2, 0, 2, 1]) == approx(2 / 3)


# ----------------------------------------------------------------------------------------- action / skill
def test_action_hand_computed_and_sklearn() -> None:
    # target [0,0,1,1,2,2], pred [0,1,1,1,2,0]: 4/6 right.
    # class 0: tp 1, #pred 2, #gt 2 -> F1 1/2; class 1: tp 2, #pred 3, #gt 2 -> 2*2/(3+2) = 4/5;
    # class 2: tp 1, #pred 1, #gt 2 -> 2/3. macro F1 = (1/2 + 4/5 + 2/3)/3 = 59/90
    out = action_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]))
    assert out == approx({"accuracy": 4 / 6, "f1": 59 / 90})
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    assert action_metrics(t, p, num_classes=6) == approx(
        {"accuracy": accuracy_score(t, p), "f1": f1_score(t, p, average="macro")})


def test_skill_hand_computed() -> None:
    # |err| = 2, 2, 5, 0 -> MAE 9/4; same order -> rho 1
    assert skill_metrics(np.array([10, 20, 30, 40]), np.array([12.0, 18, 35, 40])) == approx(
        {"mae": 2.25, "spearman": 1.0})
    # rank differences d = [-1, 1, -1, 1, 0] -> rho = 1 - 6*4/(5*(25-1)) = 0.8
    assert skill_metrics([1.0, 2, 3, 4, 5], [2.0, 1, 4, 3, 5])["spearman"] == approx(0.8)
    rng = np.random.default_rng(2)
    t, p = rng.integers(6, 31, 40), rng.normal(18, 5, 40)  # GRS 6-30 with ties
    assert skill_metrics(t, p)["spearman"] == approx(spearmanr(t, p).statistic)
    assert math.isnan(skill_metrics([1.0, 2, 3], [5.0, 5, 5])["spearman"])  # constant prediction


# ----------------------------------------------------------------------------------------------- triplet
# 4 triplets -> (instrument, verb, target): i groups {0,1},{2,3}; v groups {0,2},{1,3}; t groups {0,3},{1,2};
# every (i, v) and (i, t) pair is distinct, so IV and IT have one triplet per class, like IVT.
MAPS4 = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])
TRIP_VIDEO = np.array(["v1"] * 3 + ["v2"] * 2)
TRIP_TARGET = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
TRIP_SCORE = np.array([[0.9, 0.2, 0.1, 0.3], [0.4, 0.8, 0.2, 0.1], [0.5, 0.3, 0.6, 0.2],
                       [0.3, 0.5, 0.7, 0.1], [0.6, 0.4, 0.2, 0.9]])


def test_triplet_video_ap_hand_computed() -> None:
    # IVT. v1: c0 labels [1,0,0] scores [.9,.4,.5] -> positive ranked first -> AP 1; c1 [0,1,0]/[.2,.8,.3] -> 1;
    #      c2, c3 have no positive in v1 -> NaN (skipped, not 0).
    #      v2: c0 [1,0]/[.3,.6] -> the negative is ranked first -> AP 1/2; c2 [1,0]/[.7,.2] -> 1; c1, c3 NaN.
    #      per class over videos: c0 3/4, c1 1, c2 1, c3 NaN -> ap_ivt = (3/4 + 1 + 1)/3 = 11/12
    # I (max over {0,1} and {2,3}). v1: i0 labels [1,1,0], scores [.9,.8,.5] -> 1; i1 no positive.
    #      v2: i0 [1,0]/[.5,.6] -> 1/2; i1 [1,0]/[.7,.9] -> 1/2 -> ap_i = ((1 + 1/2)/2 + 1/2)/2 = 5/8
    # V ({0,2}, {1,3}). v1: v0 [1,0,0]/[.9,.4,.6] -> 1; v1 [0,1,0]/[.3,.8,.3] -> 1. v2: v0 [1,0]/[.7,.6] -> 1
    #      -> ap_v = 1
    # T ({0,3}, {1,2}). v1: t0 [1,0,0]/[.9,.4,.5] -> 1; t1 [0,1,0]/[.2,.8,.6] -> 1.
    #      v2: t0 [1,0]/[.3,.9] -> 1/2; t1 [1,0]/[.7,.4] -> 1 -> ap_t = (3/4 + 1)/2 = 7/8
    out = triplet_metrics(TRIP_VIDEO, TRIP_TARGET, TRIP_SCORE, MAPS4)
    assert out == approx({"ap_i": 5 / 8, "ap_v": 1.0, "ap_t": 7 / 8, "ap_iv": 11 / 12, "ap_it": 11 / 12,
                          "ap_ivt": 11 / 12})


def test_triplet_ignore_null_drops_given_triplets_from_ivt_only() -> None:
    # dropping triplet 0 (AP 3/4) leaves c1 = c2 = 1 -> ap_ivt 1; the components are unchanged
    out = triplet_metrics(TRIP_VIDEO, TRIP_TARGET, TRIP_SCORE, MAPS4, ignore_null=True, null_triplets=[0])
    assert out["ap_ivt"] == 1.0
    assert out["ap_i"] == approx(5 / 8)


def test_triplet_class_without_positives_matches_per_video_sklearn() -> None:
    rng = np.random.default_rng(3)
    video = np.repeat(["a", "b", "c"], 30)
    target = (rng.random((90, 100)) < 0.08).astype(int)
    score = rng.random((90, 100))
    expected = []
    for vid in "abc":
        t, s = target[video == vid], score[video == vid]
        expected.append([average_precision_score(t[:, c], s[:, c]) if t[:, c].any() else np.nan
                         for c in range(100)])
    per_class = np.nanmean(np.array(expected), axis=0)  # no class is positive-free in all 3 videos here
    assert triplet_metrics(video, target, score, cholect50_triplet_maps())["ap_ivt"] == approx(np.nanmean(per_class))


def test_triplet_perfect_scores_and_cholect50_null_triplets() -> None:
    rng = np.random.default_rng(4)
    video = np.repeat(["a", "b"], 25)
    target = (rng.random((50, 100)) < 0.1).astype(np.int8)
    perfect = triplet_metrics(video, target, target + 0.1 * rng.random((50, 100)), cholect50_triplet_maps())
    assert perfect == approx(dict.fromkeys(perfect, 1.0))
    score = target.astype(float)
    score[:, 94:] = 1.0 - target[:, 94:]  # null triplets 94-99 ranked backwards
    target[:5, 94:] = 1  # make sure every null triplet has positives
    score[:5, 94:] = 0.0
    assert triplet_metrics(video, target, score, cholect50_triplet_maps())["ap_ivt"] < 1.0
    assert triplet_metrics(video, target, score, cholect50_triplet_maps(), ignore_null=True)["ap_ivt"] == 1.0


def test_cholect50_map_component_classes() -> None:
    maps = cholect50_triplet_maps()
    assert maps.shape == (100, 3) and len(np.unique(maps, axis=0)) == 100
    assert [len(component_groups(maps, c)) for c in ("i", "v", "t")] == [6, 10, 15]
    assert (maps[94:] == np.array([[k, 9, 14] for k in range(6)])).all()
    with pytest.raises(ValueError, match="maps"):
        triplet_metrics(TRIP_VIDEO, TRIP_TARGET, TRIP_SCORE, maps)  # 4 triplet columns vs a 100-row map


# ---------------------------------------------------------------------------------------------- segmentation
def test_segmentation_hand_computed() -> None:
    # Scores sit between thresholds k/255 (255*s is never an integer), so each band count is exact.
    # Image 1: gt [[1,1],[0,0]], score [[.95,.45],[.65,.05]]
    #   t=0.5: pred {.95,.65}, TP 1 -> Dice 2/(2+2) = 1/2
    #   bands: k 0-12 (13): all 4 pred, TP 2 -> 4/6;  k 13-114 (102): 3 pred, TP 2 -> 4/5
    #          k 115-165 (51): TP 1, 2 pred -> 1/2;   k 166-242 (77): TP 1, 1 pred -> 2/3;  k 243-255 (13): 0
    # Image 2: gt [[0,1],[0,0]], score [[.25,.75],[.35,.15]]
    #   t=0.5: pred {.75} = gt -> Dice 1
    #   bands: k 0-38 (39): 2/5;  k 39-63 (25): 2/4;  k 64-89 (26): 2/3;  k 90-191 (102): 1;  k 192-255 (64): 0
    # MAE: image 1 (.05+.55+.65+.05)/4 = .325, image 2 (.25+.25+.35+.15)/4 = .25 -> .2875
    gt = np.array([[[1, 1], [0, 0]], [[0, 1], [0, 0]]])
    score = np.array([[[0.95, 0.45], [0.65, 0.05]], [[0.25, 0.75], [0.35, 0.15]]])
    curve1 = (13 * 4 / 6 + 102 * 4 / 5 + 51 / 2 + 77 * 2 / 3) / 256
    curve2 = (39 * 2 / 5 + 25 / 2 + 26 * 2 / 3 + 102) / 256
    out = segmentation_metrics(gt, score)
    assert out == approx({"dice": 0.75, "mean_dice": (curve1 + curve2) / 2, "mae": 0.2875})


def test_segmentation_edges() -> None:
    # perfect binary map: Dice 1 at every threshold but 0, where all 4 pixels are predicted -> 2/(1+4)
    gt = np.array([[[0, 1], [0, 0]]])
    out = segmentation_metrics(gt, gt.astype(float))
    assert out == approx({"dice": 1.0, "mean_dice": (0.4 + 255) / 256, "mae": 0.0})
    # empty GT and empty prediction: TP = 0 -> Dice 0 (PraNet toolbox convention)
    assert segmentation_metrics(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2)))["dice"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segmentation_metrics(gt, gt * 2.0)


def test_dice_curve_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    gt, score = rng.random((16, 16)) < 0.3, rng.random((16, 16))
    thresholds = np.arange(256) / 255
    brute = []
    for th in thresholds:
        pred = score >= th
        tp = (pred & gt).sum()
        brute.append(2 * tp / (gt.sum() + pred.sum()) if tp else 0.0)
    assert dice_curve(gt, score, thresholds) == approx(np.array(brute))


# ------------------------------------------------------------------------------------------------------ depth
def test_depth_hand_computed_with_valid_mask() -> None:
    # Frame 1: target 0 is invalid -> pixels (t, p) = (1, 1), (2, 2.4), (4, 3); err 0, .4, -1
    #   RMSE sqrt((0 + .16 + 1)/3); AbsRel (0 + .2 + .25)/3 = .15; SqRel (0 + .16/2 + 1/4)/3 = .11
    #   ratios 1, 1.2, 4/3 -> delta<1.1 1/3, delta<1.25 2/3
    # Frame 2: valid mask keeps two exact pixels -> 0, 0, 0, 1, 1
    target = np.array([[[1.0, 2.0], [4.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]])
    pred = np.array([[[1.0, 2.4], [3.0, 7.0]], [[2.0, 2.0], [9.0, 9.0]]])
    valid = np.array([[[True, True], [True, True]], [[True, True], [False, False]]])
    out = depth_metrics(target, pred, valid)
    assert out == approx({"rmse": math.sqrt(1.16 / 3) / 2, "abs_rel": 0.075, "sq_rel": 0.055,
                          "delta_1_1": (1 / 3 + 1) / 2, "delta_1_25": (2 / 3 + 1) / 2})
    # a frame without valid pixels is skipped
    empty = np.zeros((1, 2, 2), bool)
    assert depth_metrics(np.concatenate([target, target[:1]]), np.concatenate([pred, pred[:1]]),
                         np.concatenate([valid, empty])) == approx(out)


def test_depth_median_scaling_invariance() -> None:
    rng = np.random.default_rng(6)
    target = rng.uniform(1, 100, (3, 8, 8))
    pred = target * rng.uniform(0.8, 1.2, target.shape)
    scaled = depth_metrics(target, pred, median_scaling=True)
    assert depth_metrics(target, 3 * pred, median_scaling=True) == approx(scaled)
    assert depth_metrics(target, 3 * pred)["abs_rel"] > 1.5  # without scaling the factor 3 shows
    assert depth_metrics(target, target / 3, median_scaling=True) == approx(
        {"rmse": 0.0, "abs_rel": 0.0, "sq_rel": 0.0, "delta_1_1": 1.0, "delta_1_25": 1.0}, abs=1e-12)
    with pytest.raises(ValueError, match="valid"):
        depth_metrics(target, pred, np.zeros(target.shape, bool))
