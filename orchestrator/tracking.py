"""MLflow setup: tracking URI, experiments, (resumable) runs, params, buffered metrics, artifacts.

Only the driver writes: pretraining's rank 0 sends its metrics through an actor on the driver's node
(:mod:`orchestrator.pretrain.metric_sink`), sweeps log after the Tuner. Default store:
``sqlite:///<work dir>/mlflow.db``; ``MLFLOW_TRACKING_URI`` or an explicit URI wins. MLflow 3 refuses
``./mlruns`` file stores, so we never default to one.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param

from orchestrator.config import flatten, work_dir

# One vocabulary of tags and artifact names: every writer and reader uses these constants.
RUN_NAME_TAG = "surgmotion.run_name"      # our run name (resume looks runs up by it)
MLFLOW_RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"         # a sweep trial's parent run
JOB_TAG = "surgmotion.job"                # JOB_PRETRAIN | JOB_REPORT (sweep parents carry BENCHMARK_TAG instead)
JOB_PRETRAIN, JOB_REPORT = "pretrain", "report"
BENCHMARK_TAG = "surgmotion.benchmark"
BACKBONE_TAG = "surgmotion.backbone"      # the backbone spec string
TASK_TAG = "surgmotion.task"              # the benchmark's task (model.tasks.Task)
FOLD_TAG = "surgmotion.fold"
CHECKPOINT_ARTIFACT = "checkpoint"        # folder: model.pt + config.yaml (pretraining)
PLOTS_ARTIFACT = "plots"                  # folder of PNGs (pretraining runs, sweep parents)
PREDICTIONS_ARTIFACT = "predictions_test.npz"   # sweep parent: test predictions of the val-selected head
SKIPPED_ARTIFACT = "skipped_videos.json"  # pretraining: every skipped video and why
SECRET_PATTERN = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def resolve_tracking_uri(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    home = work_dir()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def dashboard_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"


def client(tracking_uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def artifact_root(tracking_uri: str) -> str | None:
    """For a local sqlite store, artifacts live beside the database (``<db dir>/mlartifacts``), not in ./mlruns of
    whatever directory the job happened to start in. Servers and other stores keep their own default."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(tracking_uri: str, name: str) -> str:
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp:
        return exp.experiment_id
    root = artifact_root(tracking_uri)
    return c.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def find_run(tracking_uri: str, experiment: str, run_name: str) -> str | None:
    """The newest run of ``experiment`` tagged with ``run_name`` (for resume), or None."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    safe = run_name.replace("'", "")
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{safe}'",
                         order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def start_or_resume_run(tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str] | None = None,
                        parent_run_id: str | None = None) -> tuple[str, bool]:
    """Return (run id, resumed). A run with the same name tag in the experiment is re-opened."""
    existing = find_run(tracking_uri, experiment, run_name)
    c = client(tracking_uri)
    if existing:
        c.update_run(existing, status="RUNNING")
        return existing, True
    exp_id = ensure_experiment(tracking_uri, experiment)
    all_tags = {RUN_NAME_TAG: run_name, MLFLOW_RUN_NAME_TAG: run_name, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = c.create_run(exp_id, run_name=run_name, tags=all_tags)
    return run.info.run_id, False


def safe_params(config: dict[str, Any]) -> dict[str, str]:
    """Flattened config as MLflow params, never including values of keys that look like secrets."""
    out = {}
    for key, value in flatten(config).items():
        if SECRET_PATTERN.search(key.split(".")[-1]):
            continue
        out[key] = str(value)[:5000]
    return out


def log_params(tracking_uri: str, run_id: str, config: dict[str, Any]) -> None:
    """Log params; on a resumed run only keys not logged before (MLflow params are immutable)."""
    c = client(tracking_uri)
    existing = c.get_run(run_id).data.params
    params = [Param(k, v) for k, v in safe_params(config).items() if k not in existing]
    for i in range(0, len(params), 100):
        c.log_batch(run_id, params=params[i:i + 100])


MetricWriter = Callable[[str, Sequence[Metric]], None]  # (run_id, metrics) → written


class MetricLogger:
    """Buffered per-step metrics for one run (``log_batch`` every ``flush_every`` calls). ``writer`` replaces the
    direct write to ``tracking_uri`` (Train rank 0: :func:`orchestrator.pretrain.metric_sink.sink_writer`)."""

    def __init__(self, tracking_uri: str, run_id: str, flush_every: int = 10,
                 writer: MetricWriter | None = None) -> None:
        self.tracking_uri, self.run_id, self.flush_every = tracking_uri, run_id, flush_every
        self.writer = writer
        self._buf: list[Any] = []
        self._calls = 0

    def log(self, metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self._buf.extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
        self._calls += 1
        if self._calls % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        if self.writer is not None:
            self.writer(self.run_id, self._buf)
            self._buf = []
            return
        c = client(self.tracking_uri)
        for i in range(0, len(self._buf), 1000):
            c.log_batch(self.run_id, metrics=self._buf[i:i + 1000])
        self._buf = []


def log_artifact(tracking_uri: str, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    p = Path(path)
    c = client(tracking_uri)
    if p.is_dir():
        c.log_artifacts(run_id, str(p), artifact_path)
    else:
        c.log_artifact(run_id, str(p), artifact_path)


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(tracking_uri).set_terminated(run_id, status=status)


def register_checkpoint(tracking_uri: str, run_id: str, model_name: str, artifact_path: str,
                        tags: dict[str, str]) -> str:
    """Register ``runs:/<run_id>/<artifact_path>`` (a logged checkpoint: model.pt + config.yaml) as a new version
    of ``model_name`` (created on first use); the version carries ``tags`` and the config as its description.
    Returns the version number. A version of this run's same artifact with the same tags is reused, so re-running
    a finished pretraining name does not register a duplicate."""
    c = client(tracking_uri)
    quoted = model_name.replace("'", "")  # for MLflow's filter strings
    if not c.search_registered_models(filter_string=f"name = '{quoted}'"):
        c.create_registered_model(model_name, description="SurgMotion encoders (EMA target) from "
                                  "experiments/pretrain.py; load with `--backbone surgmotion:<downloaded dir>`")
    run = c.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    for existing in c.search_model_versions(f"name = '{quoted}' and run_id = '{run_id}'"):
        if existing.source == source and all(existing.tags.get(k) == v for k, v in tags.items()):
            return str(existing.version)
    config = {k: v for k, v in run.data.params.items() if not SECRET_PATTERN.search(k)}
    desc = "\n".join(f"{k}: {v}" for k, v in sorted(config.items()))[:5000]
    version = c.create_model_version(model_name, source=source, run_id=run_id, tags=tags, description=desc)
    return str(version.version)
