"""Clip- and trial-level metrics: action classification (pooled accuracy and macro F1) and skill regression
(MAE and Spearman's rho, e.g. JIGSAWS GRS).

scikit-learn and scipy are imported inside the functions: they take about a second to import, which the
scoring CLI should not pay for tasks that do not use them.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.benchmarks.metrics_common import as_label_vector, check_same_length, resolve_num_classes


def action_metrics(target: ArrayLike, pred: ArrayLike, num_classes: int | None = None) -> dict[str, float]:
    """``accuracy`` and macro ``f1`` over all samples pooled (SurgMotion ``evaluate_global``).

    Macro F1 averages over the labels present in ``target`` or ``pred`` (scikit-learn's default label set);
    ``num_classes`` only bounds the ids. A class with no predicted sample has F1 0.
    """
    from sklearn.metrics import accuracy_score, f1_score  # deferred: scikit-learn (~2 s import), action only

    y_true, y_pred = as_label_vector("target", target), as_label_vector("pred", pred)
    check_same_length(target=y_true, pred=y_pred)
    resolve_num_classes(num_classes, y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _as_float_vector(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a 1-D numeric array, got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def skill_metrics(target: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """``mae`` (mean absolute error, in the target's unit) and ``spearman`` (``scipy.stats.spearmanr`` rho).

    Spearman is NaN when either input is constant (rank correlation undefined) or with fewer than 2 samples.
    """
    from scipy.stats import spearmanr  # deferred: scipy.stats (~1 s import), only skill scoring uses it

    y_true, y_pred = _as_float_vector("target", target), _as_float_vector("pred", pred)
    check_same_length(target=y_true, pred=y_pred)
    mae = float(np.mean(np.abs(y_pred - y_true)))
    if y_true.size < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        rho = float("nan")
    else:
        rho = float(spearmanr(y_true, y_pred).statistic)
    return {"mae": mae, "spearman": rho}
