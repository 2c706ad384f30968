"""Surgical phase-recognition metrics (Cholec80, M2CAI16, AutoLaparo, ...): video-wise and phase-wise
accuracy / precision / recall / Jaccard / F1, the relaxed-boundary variant and the segmental edit score.

Conventions (see docs/metrics.md for sources and the comparison with other implementations):

* Frames of one video are the rows with the same ``video`` id, **in their input order** (temporal order).
* Per video, a phase that is absent from that video's ground truth is NaN for precision / recall / Jaccard / F1
  and is excluded by NaN-means (the MATLAB ``Evaluate.m`` convention, "skip-absent"). A phase present in the
  ground truth but never predicted has precision 0 (scikit-learn's ``zero_division=0``).
* :func:`union_phase_metrics` is the other convention (SurgMotion's released harness, hence the UniSurg paper's
  tables): per video, the macro mean over the phases in its ground truth **or** its prediction, so a phase
  predicted but absent from the ground truth counts with F1 = Jaccard = 0; then the mean over videos.
* All values are fractions in [0, 1], the edit score included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.benchmarks.metrics_common import (
    as_label_vector,
    check_same_length,
    nanmean_axis,
    nanmean_or_nan,
    resolve_num_classes,
    runs,
    video_groups,
)

RelaxedProtocol = Literal["cholec80", "m2cai16"]
Aggregation = Literal["video", "phase"]

RELAXED_WINDOW_S = 10.0
"""Relaxed-boundary window in seconds (``oriT = 10 * fps`` frames in ``Evaluate.m``)."""

_Rule = tuple[tuple[int, ...], tuple[int, ...]]  # (forgiven pred-gt at segment head, forgiven pred-gt at tail)
_DEFAULT_RULE: _Rule = ((-1,), (1,))
_RELAXED_RULES: dict[str, dict[int, _Rule]] = {
    # 0-based phase ids. Cholec80: 3 GallbladderDissection, 4 GallbladderPackaging,
    # 5 CleaningCoagulation, 6 GallbladderRetraction.
    "cholec80": {3: ((-1,), (1, 2)), 4: ((-1,), (1, 2)), 5: ((-1, -2), (1, 2)), 6: ((-1, -2), (1, 2))},
    # M2CAI16 has TrocarPlacement first, so the same phases sit one id later.
    "m2cai16": {4: ((-1,), (1, 2)), 5: ((-1,), (1, 2)), 6: ((-1, -2), (1, 2)), 7: ((-1, -2), (1, 2))},
}
RELAXED_NUM_PHASES: dict[str, int] = {"cholec80": 7, "m2cai16": 8}


@dataclass(frozen=True)
class PhaseTable:
    """Per-video phase scores before aggregation.

    ``accuracy`` and ``edit`` have shape (V,); ``precision``, ``recall``, ``jaccard`` and ``f1`` have shape
    (V, C) with NaN where the phase is absent from that video's ground truth.
    """

    videos: tuple[str, ...]
    accuracy: NDArray[np.float64]
    edit: NDArray[np.float64]
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    jaccard: NDArray[np.float64]
    f1: NDArray[np.float64]


def levenshtein(a: ArrayLike, b: ArrayLike) -> int:
    """Edit distance (unit-cost insert / delete / substitute) between two 1-D sequences."""
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    cols = np.arange(b_arr.size + 1)
    row = cols.copy()
    for i, item in enumerate(a_arr, start=1):
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (b_arr != item))
        # Insertions chain along the row: new[j] = min_k<=j (best[k] + j - k).
        row = np.minimum.accumulate(best - cols) + cols
    return int(row[-1])


def edit_score(target: ArrayLike, pred: ArrayLike) -> float:
    """Segmental edit score of one video (Lea et al. 2016) as a fraction in [0, 1].

    ``1 - levenshtein(segments(pred), segments(target)) / max(#segments)``, where ``segments`` is the
    run-length-compressed label sequence.
    """
    seg_target = runs(as_label_vector("target", target))[2]
    seg_pred = runs(as_label_vector("pred", pred))[2]
    longest = max(seg_target.size, seg_pred.size)
    if longest == 0:
        raise ValueError("edit_score: empty sequences")
    return 1.0 - levenshtein(seg_pred, seg_target) / longest


def relaxed_window_frames(fps: float) -> int:
    """Half-width of the relaxed boundary in frames at the evaluation sampling rate: round(10 s * fps)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number (the evaluation sampling rate), got {fps!r}")
    frames = int(round(RELAXED_WINDOW_S * fps))
    if frames < 1:
        raise ValueError(f"fps={fps} gives a relaxed window of {frames} frames; need >= 1")
    return frames


def relaxed_correct(
    target: NDArray[np.int64], pred: NDArray[np.int64], fps: float, protocol: RelaxedProtocol = "cholec80"
) -> NDArray[np.bool_]:
    """Per-frame correctness of one video under the relaxed boundary (``updatedDiff == 0`` in ``Evaluate.m``).

    For every ground-truth segment of phase p with t = min(10*fps, segment length): in its first t frames a
    late transition (pred - gt in the head set of p) is forgiven, in its **last** t frames an early transition
    (pred - gt in the tail set of p) is forgiven. The MATLAB code applies the tail rule to the first t frames
    (an indexing bug); this function does not reproduce that bug.
    """
    rules = _RELAXED_RULES[protocol]
    limit = RELAXED_NUM_PHASES[protocol]
    if max(int(target.max()), int(pred.max())) >= limit:
        raise ValueError(f"relaxed {protocol} metric expects phase ids 0..{limit - 1} in canonical order")
    window = relaxed_window_frames(fps)
    diff = pred - target
    correct = diff == 0
    for start, end, phase in zip(*runs(target)):
        head_ok, tail_ok = rules.get(int(phase), _DEFAULT_RULE)
        t = min(window, int(end - start))
        head, tail = slice(start, start + t), slice(end - t, end)
        correct[head] |= np.isin(diff[head], head_ok)
        correct[tail] |= np.isin(diff[tail], tail_ok)
    return correct


def _per_phase_scores(
    target: NDArray[np.int64], pred: NDArray[np.int64], correct: NDArray[np.bool_], num_classes: int
) -> tuple[NDArray[np.float64], ...]:
    """Precision, recall, Jaccard and F1 per phase of one video (NaN for phases absent from the GT).

    TP of phase c counts the ``correct`` frames in ``(gt == c) | (pred == c)``; with exact correctness this is
    the usual ``pred == gt == c``. Relaxed TP can exceed #pred or #gt, so precision and recall are clipped to 1.
    """
    n_gt = np.bincount(target, minlength=num_classes).astype(np.float64)
    n_pred = np.bincount(pred, minlength=num_classes).astype(np.float64)
    exact = target == pred
    n_both = np.bincount(target[exact], minlength=num_classes)
    forgiven = correct & ~exact  # relaxed only: counts for the GT phase and for the predicted phase
    tp = (n_both + np.bincount(target[forgiven], minlength=num_classes)
          + np.bincount(pred[forgiven], minlength=num_classes)).astype(np.float64)
    present = n_gt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, np.minimum(tp / n_pred, 1.0), 0.0)
        recall = np.minimum(tp / n_gt, 1.0)
        jaccard = tp / (n_gt + n_pred - n_both)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return tuple(np.where(present, score, np.nan) for score in (precision, recall, jaccard, f1))


def phase_table(
    video: ArrayLike,
    target: ArrayLike,
    pred: ArrayLike,
    num_classes: int | None = None,
    *,
    relaxed: bool = False,
    fps: float | None = None,
    protocol: RelaxedProtocol = "cholec80",
) -> PhaseTable:
    """Score every video separately (see :class:`PhaseTable`); ``relaxed=True`` needs ``fps``."""
    y_true, y_pred = as_label_vector("target", target), as_label_vector("pred", pred)
    ids = np.asarray(video)
    check_same_length(video=ids, target=y_true, pred=y_pred)
    n_cls = resolve_num_classes(num_classes, y_true, y_pred)
    if relaxed and fps is None:
        raise ValueError("relaxed phase metrics need fps (the evaluation sampling rate, e.g. 1 for 1-fps labels)")
    rows: list[tuple[float, ...]] = []
    per_phase: list[tuple[NDArray[np.float64], ...]] = []
    names: list[str] = []
    for idx in video_groups(ids):
        t, p = y_true[idx], y_pred[idx]
        correct = relaxed_correct(t, p, float(fps or 0.0), protocol) if relaxed else t == p
        names.append(str(ids[idx[0]]))
        rows.append((float(correct.mean()), edit_score(t, p)))
        per_phase.append(_per_phase_scores(t, p, correct, n_cls))
    acc, edit = (np.array(col) for col in zip(*rows))
    prec, rec, jac, f1 = (np.stack(col) for col in zip(*per_phase))
    return PhaseTable(tuple(names), acc, edit, prec, rec, jac, f1)


def _aggregate(table: PhaseTable, axis: int) -> dict[str, float]:
    out = {"accuracy": float(table.accuracy.mean())}
    for name in ("precision", "recall", "jaccard", "f1"):
        out[name] = nanmean_or_nan(nanmean_axis(getattr(table, name), axis=axis))
    out["edit"] = float(table.edit.mean())
    return out


def aggregate_video_wise(table: PhaseTable) -> dict[str, float]:
    """Per video: accuracy, edit, and the NaN-mean over its GT phases of P/R/J/F1; then the mean over videos."""
    return _aggregate(table, axis=1)


def aggregate_phase_wise(table: PhaseTable) -> dict[str, float]:
    """MATLAB ``Main.m`` aggregation: per phase, the NaN-mean over videos; then the mean over phases.

    Phases absent from every video's GT are skipped. Accuracy and edit stay means over videos.
    """
    return _aggregate(table, axis=0)


def phase_metrics(
    video: ArrayLike,
    target: ArrayLike,
    pred: ArrayLike,
    num_classes: int | None = None,
    *,
    relaxed: bool = False,
    fps: float | None = None,
    protocol: RelaxedProtocol = "cholec80",
    aggregation: Aggregation = "video",
) -> dict[str, float]:
    """Phase metrics ``accuracy, precision, recall, jaccard, f1, edit`` (fractions in [0, 1]).

    ``aggregation="video"``: mean over videos of per-video macro scores (CAMMA's recommended video-wise F1).
    ``aggregation="phase"``: the MATLAB phase-wise aggregation. ``relaxed=True``: Cholec80 / M2CAI16 relaxed
    boundary (``protocol`` picks the phase rules) with the window ``10 * fps`` frames; edit is never relaxed.
    """
    table = phase_table(video, target, pred, num_classes, relaxed=relaxed, fps=fps, protocol=protocol)
    if aggregation == "video":
        return aggregate_video_wise(table)
    if aggregation == "phase":
        return aggregate_phase_wise(table)
    raise ValueError(f"aggregation must be 'video' or 'phase', got {aggregation!r}")


def union_phase_metrics(
    video: ArrayLike, target: ArrayLike, pred: ArrayLike, num_classes: int | None = None
) -> dict[str, float]:
    """``f1_union`` and ``jaccard_union`` (unrelaxed): per video, scikit-learn's macro F1 / Jaccard over
    ``labels`` = the phases of that video's ground truth ∪ prediction (``zero_division=0``), then the mean over
    videos. This is SurgMotion's ``evaluate_per_video`` (sklearn ``average="macro"`` without ``labels``)."""
    from sklearn.metrics import f1_score, jaccard_score  # deferred: scikit-learn (~2 s import), see metrics_clip

    y_true, y_pred = as_label_vector("target", target), as_label_vector("pred", pred)
    ids = np.asarray(video)
    check_same_length(video=ids, target=y_true, pred=y_pred)
    resolve_num_classes(num_classes, y_true, y_pred)  # label-range check only
    f1, jaccard = [], []
    for idx in video_groups(ids):
        t, p = y_true[idx], y_pred[idx]
        kw: dict[str, Any] = {"labels": np.union1d(t, p), "average": "macro", "zero_division": 0}
        f1.append(float(f1_score(t, p, **kw)))
        jaccard.append(float(jaccard_score(t, p, **kw)))
    return {"f1_union": float(np.mean(f1)), "jaccard_union": float(np.mean(jaccard))}


def video_accuracy(video: ArrayLike, target: ArrayLike, pred: ArrayLike) -> float:
    """Accuracy per video, then the mean over videos."""
    y_true, y_pred = as_label_vector("target", target), as_label_vector("pred", pred)
    ids = np.asarray(video)
    check_same_length(video=ids, target=y_true, pred=y_pred)
    return float(np.mean([np.mean(y_true[idx] == y_pred[idx]) for idx in video_groups(ids)]))


def video_edit_score(video: ArrayLike, target: ArrayLike, pred: ArrayLike) -> float:
    """Segmental edit score per video (fraction), then the mean over videos."""
    y_true, y_pred = as_label_vector("target", target), as_label_vector("pred", pred)
    ids = np.asarray(video)
    check_same_length(video=ids, target=y_true, pred=y_pred)
    return float(np.mean([edit_score(y_true[idx], y_pred[idx]) for idx in video_groups(ids)]))
