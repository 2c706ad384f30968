"""Two Ray nodes that share no disk where it matters: the worker node runs in its own mount namespace
(``unshare --mount``) with a tmpfs over the driver's work dir (``SURGMOTION_HOME``: MLflow's SQLite file, Ray
results, caches), so nothing the head writes there is visible to it and nothing it writes there reaches the
head. The Train workers are pinned to that node (a custom resource); storage is a bucket on the local S3 server.
The corpus stays on a path both nodes see, as a dataset mount would (corpus on object storage: issue 16, part 5).

Checked: pretraining completes with every step's metrics in the head's MLflow database; after the worker node is
killed and a fresh one (new empty tmpfs) joins, the re-run resumes from the bucket's checkpoint at the right step.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3_server
from conftest import metric_history, tiny_overrides

from orchestrator.config import REPO_ROOT

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")
NODE_RESOURCE = "nodisk"


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True).returncode == 0


class TwoNodes:
    """A head (1 CPU) and a worker node in its own mount namespace, started and stopped by pid."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.port = s3_server.free_port()
        self.temp = Path(f"/tmp/smnd-{uuid.uuid4().hex[:6]}")  # short: Ray's socket paths have a length limit
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self) -> None:
        subprocess.run([RAY, "start", "--head", f"--port={self.port}", "--num-cpus=1", f"--temp-dir={self.temp}",
                        "--include-dashboard=false", "--object-store-memory=200000000"],
                       env=self.env, check=True, capture_output=True)

    def start_worker(self) -> None:
        """A worker node whose view of ``home`` is a fresh, empty tmpfs."""
        ray = (f"exec {RAY} start --address={self.address} --num-cpus=1 --resources='{{\"{NODE_RESOURCE}\": 2}}' "
               f"--object-store-memory=200000000 --block")
        self.worker = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                        f"mount -t tmpfs tmpfs {self.home} && {ray}"],
                                       env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.wait_for_nodes(2)

    def kill_worker(self) -> None:
        """SIGKILL the worker node's whole process group (raylet, its workers) and wait until the head sees it gone."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(30)
        self.wait_for_nodes(1)

    def wait_for_nodes(self, n: int, timeout: float = 90) -> None:
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                "print(sum(x['Alive'] for x in ray.nodes()))")
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                 text=True)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(2)
        raise AssertionError(f"{n} alive nodes expected at {self.address}")

    def listing_on_worker_node(self, path: Path) -> list[str]:
        """``os.listdir(path)`` as a task pinned to the worker node sees it."""
        code = ("import os,ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                f"f = ray.remote(num_cpus=0, resources={{'{NODE_RESOURCE}': 0.01}})(lambda p: sorted(os.listdir(p))); "
                "print(ray.get(f.remote(sys.argv[2])))")
        out = subprocess.run([sys.executable, "-c", code, self.address, str(path)], env=self.env,
                             capture_output=True, text=True, check=True)
        return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
        pids = subprocess.run(["pgrep", "-f", str(self.temp)], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[TwoNodes]:
    if not can_unshare():
        pytest.skip("unshare --mount is not permitted here (needs root or user namespaces)")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(SURGMOTION_HOME=str(home), RAY_AUTH_MODE="disabled")
    nodes = TwoNodes(home, env)
    try:
        nodes.start_head()
        nodes.start_worker()
        yield nodes
    finally:
        nodes.stop()


def pretrain(nodes: TwoNodes, overrides: list[str]) -> subprocess.CompletedProcess[str]:
    demo = REPO_ROOT / "experiments" / "configs" / "pretrain" / "demo.yaml"
    cmd = [sys.executable, str(REPO_ROOT / "experiments" / "pretrain.py"), "--config", str(demo),
           f"--set=ray.address={nodes.address}", *[f"--set={o}" for o in overrides]]
    out = subprocess.run(cmd, env=nodes.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_worker_node_without_the_heads_disk_trains_logs_and_resumes(two_nodes: TwoNodes, s3_bucket: str,
                                                                    tiny_corpus: Path) -> None:
    storage = f"{s3_bucket}/nodisk-{uuid.uuid4().hex[:8]}"
    over = tiny_overrides(tiny_corpus, "nodisk", steps=6, workers=1) + [
        f"ray.storage_path={storage}", f"scaling.resources_per_worker={{{NODE_RESOURCE}: 1}}",
        "scaling.cpus_per_worker=0.5"]
    pretrain(two_nodes, over + ["train.stop_after_step=4"])
    assert (two_nodes.home / "mlflow.db").is_file()
    assert two_nodes.listing_on_worker_node(two_nodes.home) == []  # the Train worker's node saw none of it
    uri = f"sqlite:///{two_nodes.home / 'mlflow.db'}"
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
             if r.info.run_name == "nodisk"]
    assert len(found) == 1, found
    run_id = found[0].info.run_id
    assert sorted(m.step for m in metric_history(uri, run_id, "loss")) == [1, 2, 3, 4]
    two_nodes.kill_worker()
    two_nodes.start_worker()  # a fresh node: a new, empty tmpfs over the work dir
    t_restart = int(time.time() * 1000)
    pretrain(two_nodes, over)
    history = metric_history(uri, run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 7))  # every step once, all on the head's database
    assert sorted(m.step for m in history if m.timestamp >= t_restart) == [5, 6]
    epoch = {m.step: m.value for m in metric_history(uri, run_id, "epoch")}  # samples seen / epoch size
    assert epoch[5] == pytest.approx(epoch[4] * 5 / 4) and epoch[6] == pytest.approx(epoch[4] * 6 / 4)
