"""CholecT50 action-triplet recognition: video-wise average precision for I, V, T, IV, IT and IVT.

Follows ``ivtmetrics.Recognition.compute_video_AP`` (ivtmetrics >= 0.1.1): per video, scikit-learn
``average_precision_score`` per class, classes without a positive frame in that video are NaN; per class the
NaN-mean over videos; mAP = NaN-mean over classes. Component labels and scores are the max over the triplets
that share the component (ivtmetrics ``Disentangle``). The triplet -> (instrument, verb, target) map is an
argument; :func:`cholect50_triplet_maps` is the official CholecT50 table shipped as package data
(``data/cholect50_maps.txt``, ivtmetrics' ``maps.txt``), :func:`read_triplet_maps` reads any table in that format.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
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


CHOLECT50_COMPONENT_SIZES: tuple[int, int, int] = (CHOLECT50_NUM_INSTRUMENTS, CHOLECT50_NUM_VERBS,
                                                  CHOLECT50_NUM_TARGETS)
CHOLECT50_MAPS_FILE = "cholect50_maps.txt"
"""Package data (``orchestrator/benchmarks/data/``): CAMMA-public/ivtmetrics ``ivtmetrics/maps.txt`` @a89cf659."""


def _map_row(path: Path, line: int, text: str) -> tuple[int, int, int, int]:
    fields = [f.strip() for f in text.replace("\t", ",").split(",") if f.strip()]
    try:
        ivt, i, v, t = (int(x) for x in fields[:4])
    except ValueError:
        raise ValueError(f"{path}:{line}: expected integers 'IVT,I,V,T[,IV,IT]', got {text!r}") from None
    return ivt, i, v, t


def read_triplet_maps(path: str | Path, num_triplets: int | None = None,
                      sizes: tuple[int, int, int] | None = None) -> NDArray[np.int64]:
    """A triplet map table (CholecT50 ``label_mapping.txt`` / ivtmetrics ``maps.txt``: rows ``IVT, I, V, T, IV,
    IT``, comma- or tab-separated, ``#`` lines and a header are skipped; IV, IT not read) → [n, 3] int64 (instrument,
    verb, target) per triplet id. The IVT ids must be 0..n-1, each once (n = ``num_triplets`` if given); ``sizes``
    bounds the I, V, T ids. Errors are ``ValueError("<file>:<line>: ...")``."""
    path = Path(path)
    rows: dict[int, tuple[int, int, int]] = {}
    for line, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = raw.strip()
        header = not rows and not text.replace("\t", ",").split(",")[0].strip().isdigit()
        if not text or text.startswith("#") or header:
            continue  # comments, and a header line such as "IVT, I, V, T, IV, IT" before the first row
        ivt, i, v, t = _map_row(path, line, text)
        parts = (i, v, t)
        if ivt < 0 or (num_triplets is not None and ivt >= num_triplets) or ivt in rows:
            raise ValueError(f"{path}:{line}: field 'IVT': bad or duplicate triplet id in {text!r}")
        if min(parts) < 0 or (sizes is not None and not all(c < n for c, n in zip(parts, sizes))):
            raise ValueError(f"{path}:{line}: fields 'I,V,T': {parts} out of range {sizes or '(>= 0)'}")
        rows[ivt] = parts
    n = num_triplets if num_triplets is not None else len(rows)
    missing = [k for k in range(n) if k not in rows]
    if missing or not rows:
        raise ValueError(f"{path}: no row for triplet id(s) {missing[:10] or 'any'}")
    return np.array([rows[k] for k in range(n)], dtype=np.int64)


@functools.cache
def _cholect50_table() -> NDArray[np.int64]:
    with resources.as_file(resources.files("orchestrator.benchmarks") / "data" / CHOLECT50_MAPS_FILE) as path:
        return read_triplet_maps(path, CHOLECT50_NUM_TRIPLETS, CHOLECT50_COMPONENT_SIZES)


def cholect50_triplet_maps() -> NDArray[np.int64]:
    """The official CholecT50 [100, 3] (instrument, verb, target) map (package data ``data/cholect50_maps.txt``,
    copied from CAMMA-public/ivtmetrics ``maps.txt``); a fresh copy on every call."""
    return _cholect50_table().copy()


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
