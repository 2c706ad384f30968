"""Results people can see: paper-style tables, plots and one HTML page from the MLflow runs.

* :func:`log_pretrain_plots` / :func:`log_sweep_plots` — PNGs logged to a run under ``plots`` (called at the end
  of pretraining / of a probe sweep, and by the report for runs that lack them).
* :func:`orchestrator.report.build.build_report` — the report itself (``experiments/report.py``).

Docs: docs/report.md.
"""
from orchestrator.report.plots import (
    has_plots,
    log_pretrain_plots,
    log_sweep_plots,
    render_pretrain_plots,
    render_sweep_plots,
)

__all__ = ["has_plots", "log_pretrain_plots", "log_sweep_plots", "render_pretrain_plots", "render_sweep_plots"]
