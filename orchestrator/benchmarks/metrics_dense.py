"""Dense-prediction metrics: binary segmentation (polyp, PraNet protocol) and monocular depth (C3VD style).

Inputs are stacks of N images of shape (N, H, W). Every metric is computed per image and then averaged over
images (see docs/metrics.md).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.benchmarks.tasks import METRICS

PRANET_THRESHOLDS: NDArray[np.float64] = np.arange(256) / 255.0
"""The 256 thresholds {0, 1/255, ..., 1} of the PraNet MATLAB toolbox (``1:-1/255:0``); order is irrelevant."""



def _check_stack(name: str, arr: NDArray, kinds: str) -> None:
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected an (N, H, W) stack, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no images")
    if arr.dtype.kind not in kinds:
        raise ValueError(f"{name}: unexpected dtype {arr.dtype}")


def _check_pair(target: NDArray, other: NDArray, other_name: str) -> None:
    if target.shape != other.shape:
        raise ValueError(f"target {target.shape} and {other_name} {other.shape} must have the same shape")


def dice_curve(target: NDArray[np.bool_], score: NDArray[np.float64], thresholds: ArrayLike) -> NDArray[np.float64]:
    """Dice of one image at every threshold (prediction = ``score >= threshold``, as in the toolbox).

    Dice = 2 TP / (|GT| + |Pred|), and 0 whenever TP = 0 (PraNet toolbox convention, also for an empty GT
    with an empty prediction).
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    scores = np.sort(score.ravel())
    positives = np.sort(score[target])
    n_pred = scores.size - np.searchsorted(scores, thr, side="left")
    tp = positives.size - np.searchsorted(positives, thr, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tp > 0, 2.0 * tp / (positives.size + n_pred), 0.0)


def _minmax(score: NDArray[np.float64]) -> NDArray[np.float64]:
    span = score.max() - score.min()
    return (score - score.min()) / span if span > 0 else np.zeros_like(score)


def segmentation_metrics(
    target: ArrayLike, score: ArrayLike, *, threshold: float = 0.5, minmax_normalize: bool = False
) -> dict[str, float]:
    """``dice`` at ``threshold``, PraNet ``mean_dice`` over 256 thresholds, and ``mae``; all per image, then mean.

    ``mean_dice``: for each threshold the mean Dice over images, then the mean over the 256 thresholds.
    ``mae``: mean |score - target| per image, then the mean over images. ``minmax_normalize`` rescales each
    score map to [0, 1] first, as PraNet's test script and toolbox do.
    """
    gt, prob = np.asarray(target), np.asarray(score)
    _check_stack("target", gt, "biuf")
    _check_stack("score", prob, "f")
    _check_pair(gt, prob, "score")
    if not np.isin(gt, (0, 1)).all():
        raise ValueError("target: expected binary {0, 1} masks")
    prob = prob.astype(np.float64)
    if minmax_normalize:
        prob = np.stack([_minmax(img) for img in prob])
    if not (np.isfinite(prob).all() and prob.min() >= 0.0 and prob.max() <= 1.0):
        raise ValueError("score: expected probabilities in [0, 1] (or pass minmax_normalize=True)")
    masks = gt.astype(bool)
    grid = np.append(PRANET_THRESHOLDS, threshold)
    curves = np.stack([dice_curve(m, s, grid) for m, s in zip(masks, prob)])  # (N, 257)
    mae = np.abs(prob - masks).reshape(len(prob), -1).mean(axis=1)
    return {
        "dice": float(curves[:, -1].mean()),
        "mean_dice": float(curves[:, :-1].mean(axis=0).mean()),
        "mae": float(mae.mean()),
    }


def _frame_depth_errors(target: NDArray[np.float64], pred: NDArray[np.float64]) -> NDArray[np.float64]:
    """RMSE, AbsRel, SqRel, delta<1.1, delta<1.25 of one frame's valid pixels (1-D arrays, target > 0)."""
    err = pred - target
    ratio = np.maximum(pred / target, target / pred)
    return np.array([
        np.sqrt(np.mean(err**2)),
        np.mean(np.abs(err) / target),
        np.mean(err**2 / target),
        np.mean(ratio < 1.1),
        np.mean(ratio < 1.25),
    ])


def depth_metrics(
    target: ArrayLike,
    pred: ArrayLike,
    valid: ArrayLike | None = None,
    *,
    median_scaling: bool = False,
    min_pred: float = 1e-6,
) -> dict[str, float]:
    """``rmse, abs_rel, sq_rel, delta_1_1, delta_1_25`` per frame over valid pixels, then the mean over frames.

    Valid pixels: ``valid`` (if given) and a finite, positive target and a finite prediction. Predictions are
    clamped to ``>= min_pred``; then, with ``median_scaling``, each frame's prediction is multiplied by
    median(target) / median(pred) over its valid pixels. Frames without valid pixels are skipped. RMSE and
    SqRel are in the target's unit (mm for C3VD); the deltas are fractions in [0, 1].
    """
    gt, est = np.asarray(target), np.asarray(pred)
    _check_stack("target", gt, "f")
    _check_stack("pred", est, "f")
    _check_pair(gt, est, "pred")
    mask = np.isfinite(gt) & (np.nan_to_num(gt) > 0) & np.isfinite(est)
    if valid is not None:
        vmask = np.asarray(valid)
        _check_pair(gt, vmask, "valid")
        if vmask.dtype.kind != "b":
            raise ValueError(f"valid: expected a boolean mask, got dtype {vmask.dtype}")
        mask &= vmask
    rows = []
    for t, p, m in zip(gt.astype(np.float64), est.astype(np.float64), mask):
        if not m.any():
            continue
        t_v, p_v = t[m], np.maximum(p[m], min_pred)
        if median_scaling:
            p_v = p_v * (np.median(t_v) / np.median(p_v))
        rows.append(_frame_depth_errors(t_v, p_v))
    if not rows:
        raise ValueError("depth: no frame has a valid pixel (finite target > 0 inside the valid mask)")
    return dict(zip(METRICS["depth"], (float(v) for v in np.mean(rows, axis=0))))
