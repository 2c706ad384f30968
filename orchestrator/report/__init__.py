"""Results people can see: paper-style tables, plots and one HTML page from the MLflow runs.

* :func:`orchestrator.report.plots.log_pretrain_plots` / :func:`~orchestrator.report.plots.log_sweep_plots` — PNGs
  logged to a run under ``plots`` (called at the end of pretraining / of a probe sweep, and by the report for runs
  that lack them); the figures themselves: :mod:`~orchestrator.report.figures`, :mod:`~orchestrator.report.plots_sweep`.
* :func:`orchestrator.report.build.build_report` — the report itself (``experiments/report.py``).

Docs: docs/report.md.
"""
