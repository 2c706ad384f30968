"""Node failure: the worker node of a local 2-node Ray cluster is SIGKILLed during pretraining.

``tests/node_failure_driver.py`` plays it in a subprocess (this process already holds the session's Ray cluster):
both Train workers are pinned to the worker node by a custom resource (``scaling.resources_per_worker``); after
the first committed checkpoint the node is killed and a replacement node with the same resource is added. With
``train.max_failures=1`` the run must finish on the replacement node, restored from its last committed checkpoint,
and MLflow must show one continuous run: every step once, except at most ``checkpoint_every`` steps after the
restored checkpoint that the killed workers had already logged.

The driver mostly waits on Ray (node start-up, death detection, a new worker group), so when this test is selected
it starts at the beginning of the session (tests/conftest.py ``_background_runs``) and runs beside the other tests;
the test itself only waits for it and checks what it recorded.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import metric_history
from node_failure_run import STEPS, WORKERS, DriverRun, tail

from orchestrator.tracking import RUN_NAME_TAG

pytestmark = pytest.mark.slow


def test_killed_worker_node_run_resumes_on_a_new_node_as_one_mlflow_run(node_failure_run: DriverRun) -> None:
    rc, info = node_failure_run.wait()
    assert rc == 0 and info.get("error") is None and info.get("kill_error") is None, (
        f"driver rc={rc} error={info.get('error')} kill_error={info.get('kill_error')}\n{tail(node_failure_run.log)}")

    # The failure really happened: the worker node died after a committed checkpoint and before the end.
    k, every = info["committed_before_kill"], info["checkpoint_every"]
    assert every <= k < STEPS and info["replacement_node"]
    assert info["killed_workers"] >= WORKERS  # the node's Train workers died with it, not after it
    assert info["driver_node"] == info["head_node"]

    # Placement: the first worker group ran on the killed node, the retry (exactly one) on its replacement.
    def nodes_of(cls: str) -> list[str]:
        return [a["node"] for a in info["actors"] if a["class"] == cls]  # in start order

    workers = nodes_of("RayTrainWorker")
    assert workers == [info["worker_node"]] * WORKERS + [info["replacement_node"]] * WORKERS, workers
    assert set(nodes_of("TrainController")) == {info["head_node"]}

    # The run completed every step.
    result = info["result"]
    assert result["steps"] == STEPS
    state = torch.load(Path(result["checkpoint_dir"]) / "train_state.pt", weights_only=True)
    assert state["step"] == STEPS and state["samples"] == STEPS * 4

    # One MLflow run for the name, finished.
    uri, run_id = result["tracking_uri"], result["run_id"]
    client = mlflow.MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string=f"tags.`{RUN_NAME_TAG}` = '{info['name']}'")
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "FINISHED"

    # One continuous loss history. Metrics stamped after the node's death come from the retry; the first of them
    # tells which checkpoint it restored.
    history = metric_history(uri, run_id, "loss")
    counts = Counter(m.step for m in history)
    before = sorted(m.step for m in history if m.timestamp < info["t_dead_ms"])
    after = sorted(m.step for m in history if m.timestamp >= info["t_dead_ms"])
    assert after, "nothing was logged after the worker node died"
    restored = after[0] - 1
    assert restored >= k and restored % every == 0, f"retry started at step {after[0]}, committed was {k}"
    assert after == list(range(restored + 1, STEPS + 1)), after
    assert before == list(range(1, len(before) + 1)), before
    assert sorted(counts) == list(range(1, STEPS + 1))
    assert all(counts[s] == 1 for s in range(1, restored + 1)), counts
    relogged = sorted(s for s, n in counts.items() if n > 1)
    assert all(restored < s <= restored + every and counts[s] == 2 for s in relogged), (restored, counts)
    print(f"node failure: committed step {k} at kill, restored {restored}, logged before the kill {before}, "
          f"re-logged {relogged}, driver fit {info['fit_s']} s")
