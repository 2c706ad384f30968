"""Paper-style result tables (Markdown, CSV), plots and one self-contained HTML page from the MLflow runs.

    python experiments/report.py                                   # probe-sweeps + surgmotion-pretrain
    python experiments/report.py --experiment probe-sweeps --out /tmp/report
    python experiments/report.py --tracking-uri sqlite:////data/mlflow.db --experiment my-sweeps my-pretrain

Writes <out>/report.html, report.md, tables/<family>.md|.csv and plots/, logs them to a new run of the
"surgmotion-report" experiment and prints the paths. Docs: docs/report.md.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import _cli

from orchestrator.config import ConfigError
from orchestrator.tracking import resolve_tracking_uri


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", action="extend", nargs="+", default=[], metavar="NAME",
                    help="MLflow experiment(s) to read (repeatable; default: probe-sweeps surgmotion-pretrain)")
    ap.add_argument("--out", metavar="DIR", help="output directory (default: <work dir>/reports/<timestamp>)")
    ap.add_argument("--tracking-uri", metavar="URI",
                    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<work dir>/mlflow.db)")
    ap.add_argument("--report-experiment", default="surgmotion-report", metavar="NAME",
                    help="experiment of the run the report is logged to (default: %(default)s)")
    ap.add_argument("--no-log", action="store_true", help="write the files only; log no report run")
    ap.add_argument("--pretrain-runs", type=int, default=3, metavar="N",
                    help="plot the newest N pretraining runs (default: %(default)s)")
    return ap


def main() -> int:
    args = build_parser().parse_args()

    if args.pretrain_runs < 0:
        raise ConfigError(f"--pretrain-runs must be >= 0, got {args.pretrain_runs}")
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    uri = resolve_tracking_uri(args.tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress lines only

    def progress(msg: str) -> None:
        print(f"[report] {msg}", flush=True)

    progress("loading (MLflow, torch, matplotlib) ...")
    from orchestrator.report.build import build_report  # deferred: MLflow, torch, matplotlib; bad options exit first

    result = build_report(uri, args.experiment or None, out,
                          report_experiment=None if args.no_log else args.report_experiment,
                          pretrain_runs=args.pretrain_runs, progress=progress)
    for note in result.notes:
        progress(f"note: {note}")
    print(f"[report] wrote {len(result.files)} file(s) under {result.out_dir}:")
    for path in result.files:
        if path.suffix != ".png":
            print(f"  {path}")
    print(f"  {result.out_dir / 'plots'}/ ({sum(p.suffix == '.png' for p in result.files)} PNG(s))")
    print(f"[report] open: file://{result.html}")
    if result.report_run_id:
        print(f"[report] logged to MLflow run {result.report_run_id} (experiment {args.report_experiment!r})")
    return 0


if __name__ == "__main__":
    _cli.run_cli(main)
