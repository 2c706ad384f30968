"""The run's driver-node actor: MLflow written from one place, and the data position held by Ray.

Train rank 0 sends the actor its buffered per-step metrics instead of opening the tracking store itself, and tells
it the data position of the checkpoint its worker group restored (0 for a fresh run); the ClipDatasource asks the
actor for that position when an execution starts, wherever Ray plans the read (no node-local position file).

Why: the default store is a sqlite file on the driver's disk. Rank 0 may run on another node, where that path is a
different (new, empty) file, so metrics written there would be lost without an error. The actor is pinned to the
driver's node (hard node affinity, no CPU), so whatever URI the driver can use is the one every metric reaches. Its
name carries the run id and a random suffix, so a re-run of the same MLflow run (resume) never meets a
half-reaped actor of the dead driver. It lives as long as the driver's job: killed after ``fit`` and with it.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import ray
from mlflow.entities import Metric
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.tracking import client

SINK_PREFIX = "surgmotion-metrics-"
BATCH = 1000  # MLflow's log_batch limit on metrics per call


class MetricSink:
    """The actor's body: writes metric batches to ``tracking_uri`` and counts them; holds the data position."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri, self.written, self.samples = tracking_uri, 0, 0

    def set_position(self, samples: int) -> int:
        self.samples = int(samples)
        return self.samples

    def position(self) -> int:
        return self.samples

    def log_batch(self, run_id: str, metrics: Sequence[Metric]) -> int:
        c = client(self.tracking_uri)
        for i in range(0, len(metrics), BATCH):
            c.log_batch(run_id, metrics=list(metrics[i:i + BATCH]))
        self.written += len(metrics)
        return self.written

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def start_sink(tracking_uri: str, run_id: str) -> tuple[str, Any]:
    """Start the sink on this (the driver's) node; returns (its name, its handle)."""
    name = f"{SINK_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}"
    here = ray.get_runtime_context().get_node_id()
    handle = ray.remote(MetricSink).options(
        name=name, num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote(tracking_uri)
    return name, handle


def sink_writer(name: str) -> Any:
    """For Train rank 0: a ``(run_id, metrics) -> None`` that writes through the named sink and waits for it (so
    the metrics are durable before the checkpoint that follows a flush commits)."""
    handle = ray.get_actor(name)

    def write(run_id: str, metrics: Sequence[Metric]) -> None:
        ray.get(handle.log_batch.remote(run_id, list(metrics)))

    return write


def set_position(name: str, samples: int) -> None:
    """For Train rank 0: the position the data stream must start from (returns once the actor holds it)."""
    ray.get(ray.get_actor(name).set_position.remote(samples))

