"""Node failure: the worker node of a local 2-node Ray cluster is SIGKILLed during pretraining.

``tests/node_failure_driver.py`` plays it in a subprocess (this process already holds the session's Ray cluster):
both Train workers are pinned to the worker node by a custom resource (``scaling.resources_per_worker``); after
the first committed checkpoint the node is killed and a replacement node with the same resource is added. With
``train.max_failures=1`` the run must finish on the replacement node, restored from its last committed checkpoint,
and MLflow must show one continuous run: every step once, except at most ``checkpoint_every`` steps after the
restored checkpoint that the killed workers had already logged.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from conftest import metric_history

from orchestrator.tracking import RUN_NAME_TAG

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("node_failure_driver.py")
STEPS, WORKERS = 6, 2
DRIVER_TIMEOUT_S = 300  # the driver gives up (and shuts its cluster down) after this
HARD_TIMEOUT_S = 420  # then the test kills the driver's whole process group


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def run_driver(manifest: Path, work: Path) -> tuple[int, dict[str, Any], Path]:
    env = os.environ.copy()
    env.pop("RAY_ADDRESS", None)
    env.update(SURGMOTION_HOME=str(work), MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
               RAY_AUTH_MODE="disabled")
    out, log = work / "node_failure.json", work / "driver.log"
    cmd = [sys.executable, str(DRIVER), "--manifest", str(manifest), "--out", str(out), "--steps", str(STEPS),
           "--workers", str(WORKERS), "--timeout", str(DRIVER_TIMEOUT_S)]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=HARD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
            proc.wait()
            pytest.fail(f"node-failure driver still running after {HARD_TIMEOUT_S} s:\n{tail(log)}")
    info = json.loads(out.read_text()) if out.is_file() else {}
    return rc, info, log


def test_killed_worker_node_run_resumes_on_a_new_node_as_one_mlflow_run(tiny_corpus: Path, tmp_path: Path) -> None:
    rc, info, log = run_driver(tiny_corpus, tmp_path)
    assert rc == 0 and info.get("error") is None and info.get("kill_error") is None, (
        f"driver rc={rc} error={info.get('error')} kill_error={info.get('kill_error')}\n{tail(log)}")

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
