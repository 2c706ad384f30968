"""MLflow records of a probe sweep (driver only, after the Tuner finished, so sqlite has one writer): one child run
per trial under the (backbone, benchmark) parent, the parent's best setting, metrics, predictions file and plots."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.benchmarks.spec import BenchmarkSpec
from orchestrator.probe.config import SweepResult
from orchestrator.report.plots import log_sweep_plots
from orchestrator.tracking import MetricLogger, client, end_run, log_artifact, log_params, start_or_resume_run

log = logging.getLogger("surgmotion.sweep")


def curves(result: Any) -> list[tuple[int, dict[str, float]]]:
    df = result.metrics_dataframe
    if df is None or df.empty:
        return []
    cols = [c for c in df.columns if c.startswith("val_") or c == "train_loss"]
    return [(int(row["epoch"]), {c: float(row[c]) for c in cols if np.isfinite(row[c])}) for _, row in df.iterrows()]


def log_trials(uri: str, parent: str, parent_name: str, experiment: str, grid: Any) -> None:
    """One child run per trial (idempotent: a re-opened child that already has metrics is left as is)."""
    for r in grid:
        lr, wd = float(r.config["lr"]), float(r.config["wd"])
        name = f"{parent_name}|lr={lr:g}|wd={wd:g}"
        run_id, resumed = start_or_resume_run(uri, experiment, name, parent_run_id=parent)
        if resumed and client(uri).get_run(run_id).data.metrics and r.error is None:
            end_run(uri, run_id)
            continue
        log_params(uri, run_id, {"lr": lr, "wd": wd})
        logger = MetricLogger(uri, run_id, flush_every=1000)
        for epoch, values in curves(r):
            logger.log(values, step=epoch)
        logger.flush()
        end_run(uri, run_id, "FAILED" if r.error is not None else "FINISHED")


def log_parent(uri: str, parent: str, result: SweepResult, params: dict[str, Any], npz: Path) -> None:
    """The parent's params (with the best setting), val and test metrics (step 0) and predictions file."""
    log_params(uri, parent, {**params, "best_lr": result.best_lr, "best_wd": result.best_wd})
    logger = MetricLogger(uri, parent, flush_every=1000)
    logger.log({**{f"val_{k}": v for k, v in result.val_metrics.items() if np.isfinite(v)},
                **{f"test_{k}": v for k, v in result.test_metrics.items() if np.isfinite(v)}}, step=0)
    logger.flush()
    log_artifact(uri, parent, npz)
    end_run(uri, parent)


def log_plots(uri: str, parent: str, npz: Path, spec: BenchmarkSpec) -> None:
    """Plots of the selected head's test predictions on the parent run (a plotting failure never fails a sweep)."""
    try:
        log_sweep_plots(uri, parent, npz, spec.task, spec.classes or None)
    except Exception as err:  # noqa: BLE001 — plots are a convenience; the metrics are already logged
        log.warning("[sweep] plots for %s not drawn: %s", spec.name, err)
