"""Phase-metric conventions side by side: relaxed, unrelaxed video-wise (skip-absent), MATLAB phase-wise and union
on one hand-computed 2-video example; the union metrics against SurgMotion's scikit-learn call; what the registry
selects on and what a phase benchmark's scoring returns."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from orchestrator.benchmarks.metrics import ScoreOptions, score_arrays
from orchestrator.benchmarks.metrics_phase import union_phase_metrics
from orchestrator.benchmarks.registry import BENCHMARKS, list_benchmarks
from orchestrator.benchmarks.spec import BenchmarkSpec
from orchestrator.benchmarks.tasks import PHASE_UNION_METRICS, RELAXED_METRICS, metric_convention

approx = pytest.approx

# Cholec80 phase ids; fps 0.1 -> relaxed window round(10 s * 0.1) = 1 frame at each end of a GT segment.
# Video A: gt [0,0,0,1,1,1], pred [0,0,1,1,1,2]; diff = pred - gt = [0,0,1,0,0,1].
#   unrelaxed: phase 0: tp 2, #gt 3, #pred 2 -> F1 2*2/(3+2) = 4/5, J 2/(3+2-2) = 2/3
#              phase 1: tp 2, #gt 3, #pred 3 -> F1 4/6 = 2/3,       J 2/(3+3-2) = 1/2
#              phase 2: predicted once, absent from A's GT -> skipped (skip-absent) / F1 = J = 0 (union)
#   relaxed:   phase 0's last frame (2) and phase 1's last frame (5) have diff +1 = an early transition, forgiven
#              -> every frame correct; TP 0 = 3 (frames 0-2), TP 1 = 4 (frames 2-5), P and R clipped to 1
#              -> F1 1, J 3/(3+2-2) = 1 and 4/(3+3-2) = 1; accuracy 1 (unrelaxed 4/6)
# Video B: gt [1,1,1,1], pred [1,1,1,0]; diff at frame 3 = -1 is a late transition at a segment's END: not forgiven
#   phase 1: tp 3, #gt 4, #pred 3 -> F1 6/7, J 3/4 (relaxed the same); phase 0 predicted, absent from B's GT
# F1:  relaxed (video-wise)          (1 + 6/7)/2                             = 13/14
#      unrelaxed video-wise          (11/15 + 6/7)/2  [A: (4/5 + 2/3)/2]     = 167/210
#      unrelaxed phase-wise (MATLAB) phase 0: 4/5 (A only); phase 1: (2/3 + 6/7)/2 = 16/21 -> (4/5 + 16/21)/2 = 82/105
#      union (video-wise)            A (4/5 + 2/3 + 0)/3 = 22/45, B (6/7 + 0)/2 = 3/7 -> (22/45 + 3/7)/2 = 289/630
# Jaccard: relaxed (1 + 3/4)/2 = 7/8; unrelaxed ((2/3 + 1/2)/2 + 3/4)/2 = 2/3;
#      phase-wise (2/3 + (1/2 + 3/4)/2)/2 = 31/48; union ((2/3 + 1/2 + 0)/3 + (3/4 + 0)/2)/2 = 55/144
VIDEO = np.array(["video41"] * 6 + ["video42"] * 4)
GT = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
PRED = np.array([0, 0, 1, 1, 1, 2, 1, 1, 1, 0])
ARRAYS = {"video": VIDEO, "target": GT, "pred": PRED}
RELAXED = ScoreOptions(num_classes=7, relaxed=True, fps=0.1)  # 7 classes -> the Cholec80 rule set


def test_four_conventions_give_four_hand_computed_numbers() -> None:
    out = score_arrays("phase", ARRAYS, RELAXED)
    phase_wise = score_arrays("phase", ARRAYS, RELAXED.model_copy(update={"aggregation": "phase"}))
    f1 = {"relaxed": out["f1_relaxed"], "unrelaxed": out["f1"], "phase-wise": phase_wise["f1"],
          "union": out["f1_union"]}
    assert f1 == approx({"relaxed": 13 / 14, "unrelaxed": 167 / 210, "phase-wise": 82 / 105, "union": 289 / 630})
    assert len({round(v, 9) for v in f1.values()}) == 4
    jaccard = (out["jaccard_relaxed"], out["jaccard"], phase_wise["jaccard"], out["jaccard_union"])
    assert jaccard == approx((7 / 8, 2 / 3, 31 / 48, 55 / 144))
    assert (out["accuracy"], out["accuracy_relaxed"]) == approx(((4 / 6 + 3 / 4) / 2, (1 + 3 / 4) / 2))
    # union stays video-wise under the phase-wise aggregation; the edit score is never relaxed
    assert phase_wise["f1_union"] == approx(289 / 630)
    assert "edit_relaxed" not in out


def test_without_relaxed_no_relaxed_metrics() -> None:
    out = score_arrays("phase", ARRAYS, ScoreOptions(num_classes=7))
    assert not set(out) & set(RELAXED_METRICS)
    assert out["f1"] == approx(167 / 210) and out["f1_union"] == approx(289 / 630)


def test_union_matches_surgmotions_sklearn_macro() -> None:
    # SurgMotion's evaluate_per_video: sklearn average="macro" with the default label set (gt ∪ pred), per video
    rng = np.random.default_rng(11)
    video = np.repeat(np.array(["a", "b", "c"]), 30)
    gt = np.sort(rng.integers(0, 6, (3, 30)), axis=1).ravel()
    pred = np.where(rng.random(gt.size) < 0.7, gt, rng.integers(0, 7, gt.size))  # also phases absent from the GT
    f1 = [f1_score(gt[video == v], pred[video == v], average="macro", zero_division=0) for v in "abc"]
    jac = [jaccard_score(gt[video == v], pred[video == v], average="macro", zero_division=0) for v in "abc"]
    assert union_phase_metrics(video, gt, pred) == approx({"f1_union": np.mean(f1), "jaccard_union": np.mean(jac)})
    with pytest.raises(ValueError, match="num_classes"):
        union_phase_metrics(video, gt, pred, num_classes=3)


def test_cholec80_and_m2cai16_select_on_the_unrelaxed_metric() -> None:
    for name in ("Cholec80", "M2CAI16-workflow"):
        spec = BENCHMARKS[name]
        assert spec.relaxed_boundary and spec.primary_metric == "f1"
        assert metric_convention("phase", spec.primary_metric) == "unrelaxed"
        assert set(RELAXED_METRICS) <= set(spec.metrics)  # relaxed logged beside, under their own names
    assert not set(RELAXED_METRICS) & set(BENCHMARKS["AutoLaparo"].metrics)


@pytest.mark.parametrize("name", list_benchmarks("phase"))
def test_a_phase_benchmarks_scores_are_exactly_its_declared_metrics(name: str) -> None:
    spec = BENCHMARKS[name]
    n = max(spec.num_classes, 3)  # labels go up to 2; Atlas-Neurosurgical reads its classes from disk
    options = ScoreOptions(num_classes=n, relaxed=spec.relaxed_boundary, fps=1.0 if spec.relaxed_boundary else None)
    arrays = {"video": VIDEO, "target": GT, "pred": PRED}
    out = score_arrays("phase", arrays, options)
    assert set(PHASE_UNION_METRICS) <= set(out)
    assert set(out) == set(spec.metrics)


def test_relaxed_metrics_need_a_relaxed_spec() -> None:
    with pytest.raises(ValueError, match="relaxed_boundary"):
        BenchmarkSpec(name="x", task="phase", adapter="a", classes=["p"], metrics=["f1", "f1_relaxed"])
    with pytest.raises(ValueError, match="phase benchmarks only"):
        BenchmarkSpec(name="x", task="action", adapter="a", classes=["p"], relaxed_boundary=True)
