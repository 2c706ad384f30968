"""Shared helpers for the metric modules: input checks, grouping by video, run-length encoding, NaN-aware means.

Every public metric takes numpy arrays and returns plain Python floats. These helpers are internal to
``orchestrator.benchmarks.metrics*``; import the public API from :mod:`orchestrator.benchmarks.metrics`.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray


def nanmean_or_nan(values: ArrayLike) -> float:
    """Mean over the non-NaN entries as a Python float; NaN (without a RuntimeWarning) when all are NaN or empty."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[~np.isnan(arr)]
    return float(finite.mean()) if finite.size else float("nan")


def nanmean_axis(values: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """``np.nanmean`` along ``axis`` without the 'Mean of empty slice' warning (all-NaN slices give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=axis)


def as_label_vector(name: str, values: ArrayLike) -> NDArray[np.int64]:
    """A 1-D array of non-negative integer class ids (bool and integer dtypes accepted, floats refused)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: expected integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: class ids must be >= 0, found {int(arr.min())}")
    return arr


def check_same_length(**arrays: NDArray) -> int:
    """Check that all arrays share their first dimension, which must be non-zero; return it."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"length mismatch: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"empty input: {sorted(lengths)} have no rows")
    return n


def resolve_num_classes(num_classes: int | None, *labels: NDArray[np.int64]) -> int:
    """The label-space size: ``num_classes`` if given (checked against the labels), else max label + 1."""
    top = max(int(lab.max()) for lab in labels) + 1
    if num_classes is None:
        return top
    if num_classes < top:
        raise ValueError(f"num_classes={num_classes} but labels go up to {top - 1}")
    return int(num_classes)


def video_groups(video: ArrayLike) -> Iterator[NDArray[np.intp]]:
    """Row indices of each video, videos in order of first appearance, rows in their input (temporal) order."""
    ids = np.asarray(video)
    if ids.ndim != 1:
        raise ValueError(f"video: expected a 1-D array of video ids, got shape {ids.shape}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    for group in np.argsort(first, kind="stable"):
        yield np.flatnonzero(inverse == group)


def runs(labels: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64]]:
    """Run-length encoding of a 1-D label sequence: (start, end-exclusive, label) of each maximal constant run."""
    if labels.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, labels[:0]
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [labels.size]))
    return starts, ends, labels[starts]
