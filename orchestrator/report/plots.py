"""PNG plots logged to MLflow runs under the artifact path ``plots`` (matplotlib, Agg canvas, no pyplot state).

* :func:`log_pretrain_plots` — a pretraining run's loss terms, learning rate and throughput vs step.
* :func:`log_sweep_plots` — a sweep parent's test predictions (``predictions_test.npz`` of the val-selected
  head): phase ribbons + confusion matrix, action confusion matrix, triplet per-class AP, skill scatter,
  segmentation overlays, depth maps (drawings in :mod:`orchestrator.report.plots_sweep`).

Both (re)write every file, so calling them again (e.g. after a resumed run) replaces the plots; the report
CLI calls them only for runs without ``plots`` artifacts (:func:`has_plots`). PNGs are written to ``out_dir``
(default ``<work dir>/plots/<run id>/``) and the paths returned.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.jepa import LOSS_KEYS
from orchestrator.benchmarks.metrics_io import load_npz_arrays
from orchestrator.config import work_dir
from orchestrator.report import plots_sweep as S
from orchestrator.report.figures import new_figure, save
from orchestrator.tracking import PLOTS_ARTIFACT, client

PLOTS_DIR = PLOTS_ARTIFACT
REQUIRED = {"phase": ("video", "target", "pred"), "action": ("target", "pred"), "triplet": ("target", "score"),
            "skill": ("target", "pred"), "segmentation": ("target", "score"), "depth": ("target", "pred")}


# ---------------------------------------------------------------------------------------------- helpers
def default_out_dir(run_id: str) -> Path:
    return work_dir() / PLOTS_DIR / run_id


def has_plots(tracking_uri: str, run_id: str) -> bool:
    """Whether the run already has artifacts under ``plots``."""
    return bool(client(tracking_uri).list_artifacts(run_id, PLOTS_DIR))


def log_pngs(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    c = client(tracking_uri)
    for p in paths:
        c.log_artifact(run_id, str(p), PLOTS_DIR)


# ---------------------------------------------------------------------------------------------- pretrain
def metric_series(tracking_uri: str, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric, sorted by step; a step logged twice (resumed run) keeps its latest value."""
    latest: dict[int, tuple[int, float]] = {}
    for m in client(tracking_uri).get_metric_history(run_id, key):
        if m.step not in latest or m.timestamp >= latest[m.step][0]:
            latest[m.step] = (m.timestamp, m.value)
    steps = np.array(sorted(latest), dtype=np.int64)
    return steps, np.array([latest[s][1] for s in steps], dtype=np.float64)


def _line(ax: Any, steps: np.ndarray, values: np.ndarray, title: str, ylabel: str) -> None:
    ax.plot(steps, values, marker="o" if len(steps) <= 30 else None, markersize=3, linewidth=1.5)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot_losses(series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path | None:
    keys = [k for k in LOSS_KEYS if k in series]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = new_figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        _line(ax, *series[key], key, "value")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Pretraining loss terms")
    return save(fig, path)


def plot_single(series: dict[str, tuple[np.ndarray, np.ndarray]], key: str, title: str, ylabel: str,
                path: Path) -> Path | None:
    if key not in series:
        return None
    fig = new_figure(6.0, 3.4)
    _line(fig.subplots(), *series[key], title, ylabel)
    return save(fig, path)


def render_pretrain_plots(tracking_uri: str, run_id: str, out_dir: Path) -> list[Path]:
    """Draw the pretraining curves of ``run_id`` into ``out_dir`` (nothing logged); metrics never logged are
    left out, so a run without history gives []."""
    series = {}
    for key in (*LOSS_KEYS, "lr", "clips_per_s"):
        steps, values = metric_series(tracking_uri, run_id, key)
        if len(steps):
            series[key] = (steps, values)
    made = [plot_losses(series, out_dir / "pretrain_losses.png"),
            plot_single(series, "lr", "Learning rate", "lr", out_dir / "pretrain_lr.png"),
            plot_single(series, "clips_per_s", "Throughput", "clips / s", out_dir / "pretrain_throughput.png")]
    return [p for p in made if p is not None]


def log_pretrain_plots(tracking_uri: str, run_id: str, out_dir: Path | None = None) -> list[Path]:
    """Plot a pretraining run's loss terms (``loss, loss_motion, loss_st, loss_var, loss_cov``), ``lr`` and
    ``clips_per_s`` vs step and log the PNGs to the run under ``plots``; returns the local PNG paths."""
    paths = render_pretrain_plots(tracking_uri, run_id, Path(out_dir) if out_dir else default_out_dir(run_id))
    log_pngs(tracking_uri, run_id, paths)
    return paths


# ------------------------------------------------------------------------------------------------ sweeps
def load_predictions(npz_path: Path) -> dict[str, np.ndarray]:
    if not Path(npz_path).is_file():
        raise FileNotFoundError(f"predictions file {npz_path} does not exist")
    return load_npz_arrays(Path(npz_path))  # score.py's reader: no pickles, clear errors


def _drawers() -> dict[str, list[tuple[str, Callable[..., Any]]]]:
    return {"phase": [("phase_ribbons.png", S.phase_ribbons), ("confusion_matrix.png", S.confusion)],
            "action": [("confusion_matrix.png", S.confusion)],
            "triplet": [("per_class_ap.png", S.per_class_ap)],
            "skill": [("skill_scatter.png", S.skill_scatter)],
            "segmentation": [("segmentation_overlays.png", S.segmentation_overlays)],
            "depth": [("depth_maps.png", S.depth_maps)]}


def render_sweep_plots(npz_path: Path, task: str, classes: list[str] | None, out_dir: Path) -> list[Path]:
    """Draw the plots of one predictions file into ``out_dir`` (nothing logged)."""
    drawers = _drawers()
    if task not in drawers:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(drawers)}")
    arrays = load_predictions(Path(npz_path))
    missing = [k for k in REQUIRED[task] if k not in arrays]
    if missing:
        raise ValueError(f"{npz_path}: no {missing} array(s) for task {task!r} (keys: {sorted(arrays)})")
    if len(arrays["target"]) == 0:
        return []  # no test samples: nothing to draw
    if not classes and "classes" in arrays:  # the sweep stores the benchmark's class names in the file
        classes = [str(c) for c in arrays["classes"]]
    out = []
    for name, draw in drawers[task]:
        fig = draw(arrays, classes or [])
        if fig is not None:
            out.append(save(fig, out_dir / name))
    return out


def log_sweep_plots(tracking_uri: str, parent_run_id: str, npz_path: Path, task: str, classes: list[str] | None,
                    out_dir: Path | None = None) -> list[Path]:
    """Plot the test predictions of the val-selected head (``predictions_test.npz``) for ``task`` and log the
    PNGs to the sweep parent run under ``plots``; returns the local PNG paths."""
    out = Path(out_dir) if out_dir else default_out_dir(parent_run_id)
    paths = render_sweep_plots(npz_path, task, classes, out)
    log_pngs(tracking_uri, parent_run_id, paths)
    return paths
