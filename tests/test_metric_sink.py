"""MLflow from one place: Train rank 0's metrics go through an actor on the driver's node (metric_sink.py)."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import ray
from mlflow.entities import Metric

from orchestrator.pretrain.metric_sink import SINK_PREFIX, sink_writer, start_sink
from orchestrator.tracking import MetricLogger, start_or_resume_run


@ray.remote(num_cpus=0)
def _log_from_a_task(name: str, run_id: str) -> None:
    """What rank 0 does, from another process: a logger whose writes go through the named sink."""
    logger = MetricLogger("sqlite:////nonexistent/never-opened.db", run_id, flush_every=2, writer=sink_writer(name))
    for step in range(1, 6):
        logger.log({"loss": 1.0 / step}, step=step)
    logger.flush()


def test_rank0_metrics_reach_the_drivers_store_through_the_sink(ray_cluster: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = start_or_resume_run(uri, "sink-test", "sink-run")
    name, sink = start_sink(uri, run_id)
    other_name, other = start_sink(uri, run_id)  # a re-run of the same MLflow run never collides with a live one
    assert name.startswith(SINK_PREFIX + run_id) and other_name != name
    try:
        assert ray.get(sink.node_id.remote()) == ray.get_runtime_context().get_node_id()
        ray.get(_log_from_a_task.remote(name, run_id))  # its own URI cannot be opened: only the sink writes
        history = mlflow.MlflowClient(uri).get_metric_history(run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / s) for s in range(1, 6)]
        assert ray.get(sink.log_batch.remote(run_id, [Metric("x", float(i), 0, i) for i in range(1500)])) == 1505
        assert len(mlflow.MlflowClient(uri).get_metric_history(run_id, "x")) == 1500  # split into <= 1000 a call
    finally:
        ray.kill(sink)
        ray.kill(other)
    with pytest.raises(ValueError, match="Failed to look up actor"):
        sink_writer(name)
