"""MLflow glue: tracking URI resolution, artifact location, params without secrets, resumable runs."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from orchestrator.tracking import (
    MetricLogger,
    artifact_root,
    dashboard_command,
    ensure_experiment,
    log_params,
    resolve_tracking_uri,
    safe_params,
    start_or_resume_run,
)


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert "--host 127.0.0.1" in dashboard_command("sqlite:////x/y.db")


def test_secret_looking_keys_are_never_params() -> None:
    cfg = {"tracking": {"api_key": "s3cr3t", "token": "t", "experiment": "e"},
           "db": {"PASSWORD": "p", "aws_secret_access_key": "k", "host": "h"}, "optim": {"lr": 0.1}}
    params = safe_params(cfg)
    assert params == {"tracking.experiment": "e", "db.host": "h", "optim.lr": "0.1"}
    assert not any(v in params.values() for v in ("s3cr3t", "t", "p", "k"))


def test_runs_resume_by_name_and_artifacts_beside_db(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_root(uri) == (tmp_path / "mlartifacts").resolve().as_uri()
    assert artifact_root("http://127.0.0.1:5000") is None
    run_id, resumed = start_or_resume_run(uri, "exp", "alpha")
    assert not resumed
    log_params(uri, run_id, {"a": 1, "b": {"c": 2}})
    again, resumed = start_or_resume_run(uri, "exp", "alpha")
    assert (again, resumed) == (run_id, True)
    log_params(uri, run_id, {"a": 1, "b": {"c": 3}, "d": 4})  # logged keys are immutable: only new ones added
    params = mlflow.MlflowClient(uri).get_run(run_id).data.params
    assert params == {"a": "1", "b.c": "2", "d": "4"}
    assert start_or_resume_run(uri, "exp", "beta")[0] != run_id
    exp = mlflow.MlflowClient(uri).get_experiment(ensure_experiment(uri, "exp"))
    assert exp.artifact_location.startswith((tmp_path / "mlartifacts").resolve().as_uri())


def test_metric_logger_buffers_and_flushes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = start_or_resume_run(uri, "exp", "m")
    log = MetricLogger(uri, run_id, flush_every=3)
    for step in range(1, 5):
        log.log({"loss": 1.0 / step}, step)
    client = mlflow.MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3]  # flushed after 3 calls
    log.flush()
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [1, 2, 3, 4]


def test_register_checkpoint_reuses_the_version_of_the_same_run_and_tags(tmp_path: Path) -> None:
    from orchestrator.tracking import register_checkpoint

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = start_or_resume_run(uri, "exp", "pre")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.pt").write_bytes(b"weights")
    mlflow.MlflowClient(uri).log_artifacts(run_id, str(tmp_path / "ckpt"), "checkpoint")
    first = register_checkpoint(uri, run_id, "enc", "checkpoint", {"steps": "40"})
    assert register_checkpoint(uri, run_id, "enc", "checkpoint", {"steps": "40"}) == first == "1"  # re-run
    assert register_checkpoint(uri, run_id, "enc", "checkpoint", {"steps": "80"}) == "2"  # trained further
    other, _ = start_or_resume_run(uri, "exp", "other")
    mlflow.MlflowClient(uri).log_artifacts(other, str(tmp_path / "ckpt"), "checkpoint")
    assert register_checkpoint(uri, other, "enc", "checkpoint", {"steps": "40"}) == "3"      # another run
    versions = mlflow.MlflowClient(uri).search_model_versions("name = 'enc'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
