"""CholecT50 action-triplet recognition: video-wise average precision for I, V, T, IV, IT and IVT.

Follows ``ivtmetrics.Recognition.compute_video_AP`` (ivtmetrics >= 0.1.1): per video, scikit-learn
``average_precision_score`` per class, classes without a positive frame in that video are NaN; per class the
NaN-mean over videos; mAP = NaN-mean over classes. Component labels and scores are the max over the triplets
that share the component (ivtmetrics ``Disentangle``). The triplet -> (instrument, verb, target) map is an
argument; :func:`synthetic_triplet_maps` is a documented stand-in, NOT the CholecT50 ``label_mapping.txt``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from orchestrator.benchmarks.metrics_common import check_same_length, nanmean_axis, nanmean_or_nan, video_groups

Component = Literal["i", "v", "t", "iv", "it", "ivt"]
TRIPLET_COMPONENTS: tuple[Component, ...] = ("i", "v", "t", "iv", "it", "ivt")
_COMPONENT_COLUMNS: dict[str, tuple[int, ...]] = {"i": (0,), "v": (1,), "t": (2,), "iv": (0, 1), "it": (0, 2)}

CHOLECT50_NUM_TRIPLETS = 100
CHOLECT50_NUM_INSTRUMENTS, CHOLECT50_NUM_VERBS, CHOLECT50_NUM_TARGETS = 6, 10, 15
CHOLECT50_NULL_VERB, CHOLECT50_NULL_TARGET = 9, 14
CHOLECT50_NULL_TRIPLETS: tuple[int, ...] = tuple(range(94, 100))
"""Triplets 94-99 are ``<instrument_k, null_verb, null_target>``; ``ignore_null`` drops them (94 valid classes)."""


def synthetic_triplet_maps() -> NDArray[np.int64]:
    """A SYNTHETIC [100, 3] (instrument, verb, target) map with CholecT50's shape, for tests and demos only.

    Triplet j < 94 maps to (j % 6, j % 9, j % 14) (distinct for j < lcm(6, 9, 14) = 126, covering every
    non-null instrument, verb and target); triplet 94 + k maps to (k, null_verb=9, null_target=14). It is
    NOT the real CholecT50 ``label_mapping.txt``: component APs computed with it are meaningless on real data.
    """
    j = np.arange(CHOLECT50_NUM_TRIPLETS - len(CHOLECT50_NULL_TRIPLETS))
    valid = np.stack([j % CHOLECT50_NUM_INSTRUMENTS, j % 9, j % 14], axis=1)
    k = np.arange(len(CHOLECT50_NULL_TRIPLETS))
    null = np.stack([k, np.full_like(k, CHOLECT50_NULL_VERB), np.full_like(k, CHOLECT50_NULL_TARGET)], axis=1)
    return np.concatenate([valid, null]).astype(np.int64)


def check_triplet_maps(maps: ArrayLike, num_triplets: int) -> NDArray[np.int64]:
    """Validate a [num_triplets, 3] integer array of non-negative (instrument, verb, target) ids."""
    arr = np.asarray(maps)
    if arr.shape != (num_triplets, 3):
        raise ValueError(f"maps: expected shape ({num_triplets}, 3), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"maps: expected integer component ids, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError("maps: component ids must be >= 0")
    return arr.astype(np.int64)


def component_groups(maps: NDArray[np.int64], component: Component) -> list[NDArray[np.intp]]:
    """Triplet ids forming each class of ``component``; classes sorted by their (instrument, verb, target) key.

    ``iv`` and ``it`` classes are the distinct (instrument, verb) / (instrument, target) pairs in the map.
    """
    if component == "ivt":
        return [np.array([j]) for j in range(len(maps))]
    if component not in _COMPONENT_COLUMNS:
        raise ValueError(f"component must be one of {TRIPLET_COMPONENTS}, got {component!r}")
    keys = maps[:, list(_COMPONENT_COLUMNS[component])]
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == cls) for cls in range(int(inverse.max()) + 1)]


def component_values(values: NDArray, groups: Sequence[NDArray[np.intp]]) -> NDArray:
    """Per-frame component labels or scores: max over the triplets of each group, shape (N, len(groups))."""
    return np.stack([values[:, grp].max(axis=1) for grp in groups], axis=1)


def video_average_precision(video: ArrayLike, target: ArrayLike, score: ArrayLike) -> NDArray[np.float64]:
    """Per-class AP: per video (NaN where the class has no positive), then the NaN-mean over videos; shape (C,)."""
    from sklearn.metrics import average_precision_score  # deferred: scikit-learn (~2 s import), see metrics_clip

    y_true, y_score = np.asarray(target), np.asarray(score, dtype=np.float64)
    per_video = []
    for idx in video_groups(video):
        t, s = y_true[idx], y_score[idx]
        ap = np.full(t.shape[1], np.nan)
        cols = np.flatnonzero(t.any(axis=0))  # classes without a positive in this video stay NaN
        if cols.size == 1:
            ap[cols] = average_precision_score(t[:, cols[0]], s[:, cols[0]])
        elif cols.size > 1:  # one multilabel call, per-class APs (same values, less validation overhead)
            ap[cols] = average_precision_score(t[:, cols], s[:, cols], average=None)
        per_video.append(ap)
    return nanmean_axis(np.stack(per_video), axis=0)


def _check_triplet_inputs(
    video: ArrayLike, target: ArrayLike, score: ArrayLike
) -> tuple[NDArray, NDArray[np.int64], NDArray[np.float64]]:
    ids, y_true, y_score = np.asarray(video), np.asarray(target), np.asarray(score)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"target {y_true.shape} and score {y_score.shape} must both be (N, num_triplets)")
    check_same_length(video=ids, target=y_true, score=y_score)
    if y_true.dtype.kind not in "biuf" or not np.isin(y_true, (0, 1)).all():
        raise ValueError("target: expected binary {0, 1} labels")
    if y_score.dtype.kind not in "iuf" or not np.isfinite(y_score).all():
        raise ValueError("score: expected finite real-valued scores")
    return ids, y_true.astype(np.int64), y_score.astype(np.float64)


def triplet_metrics(
    video: ArrayLike,
    target: ArrayLike,
    score: ArrayLike,
    maps: ArrayLike,
    *,
    ignore_null: bool = False,
    null_triplets: Sequence[int] = CHOLECT50_NULL_TRIPLETS,
) -> dict[str, float]:
    """Video-wise mAP ``ap_i, ap_v, ap_t, ap_iv, ap_it, ap_ivt`` (fractions in [0, 1]).

    ``maps``: [num_triplets, 3] (instrument, verb, target) id per triplet. ``ignore_null`` drops
    ``null_triplets`` from the IVT class mean only, as ivtmetrics does; the components keep them.
    """
    ids, y_true, y_score = _check_triplet_inputs(video, target, score)
    table = check_triplet_maps(maps, y_true.shape[1])
    out: dict[str, float] = {}
    for component in TRIPLET_COMPONENTS:
        groups = component_groups(table, component)
        ap = video_average_precision(ids, component_values(y_true, groups), component_values(y_score, groups))
        if component == "ivt" and ignore_null:
            ap = np.delete(ap, list(null_triplets))
        out[f"ap_{component}"] = nanmean_or_nan(ap)
    return out
