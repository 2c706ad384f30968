"""Subprocess driver for ``tests/test_node_failure.py``: kill the worker node of a 2-node Ray cluster mid-run.

Builds a throwaway ``ray.cluster_utils.Cluster`` (a head node for the driver, the Train controller and the Ray Data
tasks, plus one worker node carrying the custom resource ``surgmotion_train_node``), runs ``run_pretraining`` on
it (in a thread) with every Train worker requesting that resource (``scaling.resources_per_worker``), and from the
main thread (Ray adds nodes only there) waits for the first committed checkpoint, SIGKILLs the worker node
(``remove_node(allow_graceful=False)``) and adds a replacement worker node with the same resource. Writes what
happened to the JSON file ``--out`` (exit code 1 if the run failed); the test checks the run, the worker placement and
the MLflow history. It runs in its own process because the pytest process already holds the session's Ray cluster.
The cluster is always shut down, and the driver gives up after ``--timeout`` seconds.

    python tests/node_failure_driver.py --manifest M --out result.json [--steps 6] [--workers 2] [--max-failures 1]

Needs ``SURGMOTION_HOME`` (and ``MLFLOW_TRACKING_URI``) pointing into a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray._private.node import Node
    from ray.cluster_utils import Cluster

    from orchestrator.pretrain.config import PretrainConfig

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # throwaway local cluster (docs: ray-notes §5.4)
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")

RESOURCE = "surgmotion_train_node"
# The GCS notices a dead raylet after ~1.5 s instead of the default ~15 s (period 3 s × threshold 5).
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
                 "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="node-failure")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-failures", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before the driver gives up on the run")
    return ap.parse_args()


def write_json(out: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``out`` atomically, so a killed driver leaves the last complete state."""
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out)


def start_head() -> Cluster:
    from ray.cluster_utils import Cluster

    return Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "_system_config": SYSTEM_CONFIG})


def add_worker_node(cluster: Cluster, workers: int) -> Node:
    """A node for the Train workers: its CPU is exactly what they take, so Ray Data tasks all run on the head."""
    return cluster.add_node(num_cpus=1, resources={RESOURCE: workers})


def make_config(args: argparse.Namespace, address: str) -> PretrainConfig:
    from conftest import tiny_overrides

    from orchestrator.config import load_config
    from orchestrator.pretrain.config import PretrainConfig

    over = tiny_overrides(Path(args.manifest), args.name, steps=args.steps, workers=args.workers) + [
        f"train.max_failures={args.max_failures}", f"ray.address={address}",
        f"scaling.cpus_per_worker={1 / args.workers}", f"scaling.resources_per_worker={{{RESOURCE}: 1}}"]
    return load_config(PretrainConfig, None, over)


def start_training(cfg: PretrainConfig, info: dict[str, Any], done: threading.Event) -> threading.Thread:
    """Run ``run_pretraining(cfg)`` in a daemon thread that records its outcome in ``info`` and sets ``done``.

    Ray starts nodes only from the main thread (signal handlers), so training runs in a thread and the main
    thread plays the node failure. init_ray connects to the existing cluster through ray.address; the
    call inside run_pretraining then sees Ray initialised and returns.
    """
    from orchestrator.pretrain.driver import init_ray, run_pretraining

    def train() -> None:
        t0 = time.monotonic()
        try:
            result = run_pretraining(cfg)
            info["result"] = {"run_id": result.run_id, "tracking_uri": result.tracking_uri,
                              "steps": result.steps, "checkpoint_dir": result.checkpoint_dir}
        except BaseException as e:  # noqa: BLE001 - reported in the JSON, the test fails on it
            info["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            info["fit_s"] = round(time.monotonic() - t0, 1)
            done.set()

    import ray

    # Actors of this job (Train's controller and placement-group cleaner among them) look the cluster up through
    # Ray's state API; with another local cluster alive (the test session's) an unset RAY_ADDRESS makes them pick
    # "the latest" one. Pin it for every process of the job.
    ray.init(address=cfg.ray.address, runtime_env={"env_vars": {"RAY_ADDRESS": str(cfg.ray.address)}})
    init_ray(cfg)  # sees Ray initialised and returns
    trainer = threading.Thread(target=train, name="pretrain", daemon=True)
    trainer.start()
    return trainer


def kill_node_workers(node: Node) -> int:
    """SIGKILL every worker process of ``node`` (the descendants of its Ray system processes) and wait until they
    are gone. ``Cluster.remove_node`` kills only the system processes; the workers would notice the dead raylet
    and exit a moment later, still logging steps meanwhile, which a lost machine never does. Returns how many."""
    import psutil  # Ray's vendored copy (on sys.path once ray is imported)

    procs = []
    for _, proc in node.live_processes():
        try:
            procs += psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    for child in procs:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    if alive:
        raise RuntimeError(f"worker processes {[p.pid for p in alive]} of node {node.node_id} survived SIGKILL")
    return len(procs)


def kill_and_replace_worker(cluster: Cluster, worker: Node, workers: int, run_dir: Path, done: threading.Event,
                            deadline: float, info: dict[str, Any]) -> None:
    """After the first committed checkpoint, SIGKILL ``worker`` and add a replacement node (recorded in ``info``)."""
    from conftest import committed_step

    while (step := committed_step(run_dir)) is None and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    if step is None:
        info["kill_error"] = "the run ended or timed out before its first committed checkpoint"
        return
    info["committed_before_kill"] = step
    info["t_kill_ms"] = now_ms()
    info["killed_workers"] = kill_node_workers(worker)
    cluster.remove_node(worker, allow_graceful=False)
    info["t_dead_ms"] = now_ms()  # every process of the node is gone: later metrics are the retry's
    info["committed_at_death"] = committed_step(run_dir)
    print(f"[node-failure] killed worker node {worker.node_id} after committed step {step}", flush=True)
    replacement = add_worker_node(cluster, workers)
    info["replacement_node"] = replacement.node_id
    print(f"[node-failure] added replacement node {replacement.node_id}", flush=True)


def record_placement(cluster: Cluster, info: dict[str, Any]) -> None:
    """Record the driver's node and every actor of the cluster (class, node, state), in start order."""
    import ray

    info["driver_node"] = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    actors = cluster.global_state.actor_table(None)
    info["actors"] = sorted(({"class": a["ActorClassName"], "node": a["Address"]["NodeID"], "state": a["State"],
                              "start_ms": a["StartTime"]} for a in actors.values()), key=lambda a: a["start_ms"])


def main() -> int:
    args = parse_args()
    deadline = time.monotonic() + args.timeout

    # Everything Ray writes (sessions, sockets, the "current cluster" address file) goes to a private short dir, so
    # this cluster never touches /tmp/ray of the pytest session cluster or of anyone else on the machine.
    ray_tmp = tempfile.mkdtemp(prefix="smnf-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp

    # Import Ray and the project only now (after RAY_TMPDIR is set) and before any cluster starts, so an import
    # error aborts here; the helpers import what they use from these already-loaded modules.
    import conftest  # noqa: F401
    import ray
    import ray.cluster_utils  # noqa: F401

    import orchestrator.pretrain.driver  # noqa: F401
    from orchestrator.config import work_dir

    info: dict[str, Any] = {"name": args.name, "steps": args.steps, "workers": args.workers,
                            "max_failures": args.max_failures, "error": None, "kill_error": None}
    out = Path(args.out)
    cluster = None
    done = threading.Event()
    try:
        cluster = start_head()
        worker = add_worker_node(cluster, args.workers)
        info["head_node"], info["worker_node"] = cluster.head_node.node_id, worker.node_id
        cfg = make_config(args, cluster.address)
        info["checkpoint_every"] = cfg.train.checkpoint_every
        run_dir = work_dir() / "ray_results" / cfg.name
        trainer = start_training(cfg, info, done)
        kill_and_replace_worker(cluster, worker, args.workers, run_dir, done, deadline, info)
        write_json(out, info)
        trainer.join(timeout=max(1.0, deadline - time.monotonic()))
        if trainer.is_alive():  # e.g. a worker group that never starts again; the cluster shutdown ends it
            info["error"] = info["error"] or f"training did not finish within {args.timeout:.0f} s"
        record_placement(cluster, info)
    except BaseException as e:  # noqa: BLE001
        info["error"] = info["error"] or f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        write_json(out, info)
        try:
            ray.shutdown()
        finally:
            if cluster is not None:
                cluster.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return 0 if info["error"] is None and info["kill_error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
