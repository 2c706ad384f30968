"""Operator-facing guarantees of the CLIs: user errors exit with code 2 and ONE line naming the file (and line /
field), without a traceback and without touching what an earlier run wrote; and every HTTP endpoint we start
(Ray dashboard, MLflow UI) binds to 127.0.0.1 only.

The sweep cases also check that the error comes before Ray starts (``orchestrator.probe.sweep.validate`` parses every
split's annotations).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import REPO_ROOT

RAY_STARTED = "Started a local Ray instance"


def run_script(script: str, args: list[str], home: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """``python experiments/<script> ARGS`` with ``SURGMOTION_HOME=home`` and a fresh local Ray if one starts."""
    env = dict(os.environ, SURGMOTION_HOME=str(home), RAY_ADDRESS="local", RAY_AUTH_MODE="disabled")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def earlier_run(home: Path) -> dict[str, tuple[int, int, str]]:
    """Populate ``home`` like a previous run did (MLflow db, checkpoint, caches); return its snapshot."""
    home.mkdir(parents=True)
    with sqlite3.connect(home / "mlflow.db") as db:
        db.execute("CREATE TABLE runs (run_uuid TEXT, status TEXT)")
        db.execute("INSERT INTO runs VALUES ('abc', 'FINISHED')")
    ckpt = home / "ray_results" / "demo" / "checkpoint_000002"
    ckpt.mkdir(parents=True)
    (ckpt / "model.pt").write_bytes(b"weights" * 100)
    (home / "ray_results" / "demo" / "data_position.json").write_text('{"samples": 8}')
    (home / "cache").mkdir()
    (home / "cache" / "video_probe.json").write_text("{}")
    return snapshot(home)


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """relative path → (size, mtime ns, sha256) of every file, '' for directories."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, digest)
    return out


def assert_one_clear_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-4000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-4000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


# ------------------------------------------------------------------------------ malformed annotations: sweeps
def replace_line(path: Path, line: int, new: str) -> Path:
    lines = path.read_text().splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")
    return path


def bad_cholec80(root: Path) -> list[str]:
    from benchmark_fixtures import phase

    ann = replace_line(phase.build_cholec80(root) / "phase_annotations" / "video45-phase.txt", 4, "2\tNotAPhase")
    return [f"{ann}:4", "'Phase'", "NotAPhase"]


def bad_generic_phase_csv(root: Path) -> list[str]:
    from benchmark_fixtures import phase

    ann = replace_line(phase.build_atlas(root) / "annotations" / "case003.csv", 3, "1.5,approach")
    return [f"{ann}:3", "'frame'", "1.5"]


def bad_generic_clip_csv(root: Path) -> list[str]:
    from benchmark_fixtures import generic

    generic.build_clip_csv(root)
    (root / "classes.txt").write_text("\n".join(generic.CLIP_CLASSES) + "\n")
    csv = replace_line(root / "splits" / "train.csv", 3, "clips/v1.mp4,2,v1,soon,3")
    return [f"{csv}:3", "'start_s'", "soon"]


@pytest.mark.slow
@pytest.mark.parametrize("benchmark,build", [("Cholec80", bad_cholec80), ("generic-phase-csv", bad_generic_phase_csv),
                                             ("generic-clip-csv", bad_generic_clip_csv)],
                         ids=["cholec80", "generic_phase_csv", "generic_clip_csv"])
def test_sweep_malformed_annotation_exits_2_naming_file_line_and_field(
        tmp_path: Path, benchmark: str, build: Callable[[Path], list[str]]) -> None:
    needles = build(tmp_path / "data")
    before = earlier_run(tmp_path / "home")
    proc = run_script("sweep_probes.py", ["--benchmark", benchmark, "--data-root", str(tmp_path / "data"),
                                          "--backbone", "random:tiny", "--set", "epochs=1"], tmp_path / "home")
    assert_one_clear_error(proc, *needles)
    assert snapshot(tmp_path / "home") == before, "a failed sweep changed what an earlier run wrote"
    assert RAY_STARTED not in proc.stderr, "annotations must be validated before Ray starts"


# ------------------------------------------------------------------------------------- bad configs: pretrain
@pytest.mark.parametrize("text,needle", [("train: [1, 2\n", "malformed YAML"),
                                         ("train:\n  max_stepz: 3\n", "train.max_stepz: unknown key")],
                         ids=["malformed_yaml", "unknown_key"])  # wrong type: tests/test_config.py
def test_pretrain_bad_config_exits_2_and_loses_nothing(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "my-config.yaml"
    cfg.write_text(text)
    before = earlier_run(tmp_path / "home")
    proc = run_script("pretrain.py", ["--config", str(cfg), "--name", "demo"], tmp_path / "home", timeout=120)
    assert_one_clear_error(proc, str(cfg), needle)
    assert RAY_STARTED not in proc.stderr
    assert snapshot(tmp_path / "home") == before, "a failed start changed what an earlier run wrote"


# ---------------------------------------------------------------------------------------------- safe bind
def test_init_ray_starts_local_clusters_with_a_loopback_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """init_ray passes no dashboard_host: the guarantee is Ray's default, which must stay 127.0.0.1."""
    import ray

    from orchestrator.config import load_config
    from orchestrator.pretrain.config import PretrainConfig
    from orchestrator.pretrain.driver import init_ray

    default = inspect.signature(ray.init).parameters["dashboard_host"].default
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init_ray(load_config(PretrainConfig, None, ["ray.num_cpus=1"]))
    assert len(calls) == 1 and "address" not in calls[0]  # a local cluster
    assert calls[0].get("dashboard_host", default) == "127.0.0.1"


LISTEN_PROBE = """
import json, socket, ray
from orchestrator.config import load_config
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.driver import init_ray

def reachable(host, port):
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False

init_ray(load_config(PretrainConfig, None, ["ray.num_cpus=1"]))
info = ray._private.worker.global_worker.node.address_info
url, node_ip = info["webui_url"], info["node_ip_address"]
port = int(url.rsplit(":", 1)[1])
print("LISTEN " + json.dumps({"url": url, "node_ip": node_ip, "loopback": reachable("127.0.0.1", port),
                              "node": reachable(node_ip, port)}))
ray.shutdown()
"""


@pytest.mark.slow
def test_local_cluster_from_init_ray_serves_its_dashboard_on_loopback_only(tmp_path: Path) -> None:
    """The real thing, in a subprocess (the session cluster runs without a dashboard): the dashboard of a cluster
    started by init_ray answers on 127.0.0.1 and refuses connections on the node's own (non-loopback) address."""
    env = dict(os.environ, RAY_ADDRESS="local", RAY_AUTH_MODE="disabled", SURGMOTION_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", LISTEN_PROBE], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LISTEN ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    found = json.loads(lines[0][len("LISTEN "):])
    assert found["url"].startswith("127.0.0.1:") and found["loopback"], found
    if not found["node_ip"].startswith("127."):
        assert not found["node"], f"the dashboard answers on {found['node_ip']}: {found}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_sh_starts_the_head_with_a_loopback_dashboard(tmp_path: Path) -> None:
    """cluster/local.sh up with a stub ``ray`` that records its arguments (head starts, worker fails: the script
    then cleans up): the head gets --dashboard-host=127.0.0.1 and both nodes --node-ip-address=127.0.0.1
    (the nodes' dashboard agents bind the node address)."""
    log = tmp_path / "ray_args"
    stub = tmp_path / "bin" / "ray"
    stub.parent.mkdir()
    stub.write_text(f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(log))}\n[[ "$*" == *--head* ]]\n')
    stub.chmod(0o755)
    port = free_port()
    env = dict(os.environ, RAY=str(stub), SURGMOTION_RAY_PORT=str(port), SURGMOTION_RAY_DASHBOARD_PORT=str(free_port()),
               SURGMOTION_RAY_TEMP_DIR=str(tmp_path / "ray"), SURGMOTION_RAY_STATE=str(tmp_path / "state"))
    proc = subprocess.run(["bash", str(REPO_ROOT / "cluster" / "local.sh"), "up"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "worker failed to start" in proc.stderr, proc.stderr
    head, worker = [shlex.split(ln) for ln in log.read_text().splitlines()]
    assert head[:2] == ["start", "--head"] and worker[0] == "start" and "--head" not in worker
    assert [a for a in head if a.startswith("--dashboard-host")] == ["--dashboard-host=127.0.0.1"]
    for args in (head, worker):
        assert "--node-ip-address=127.0.0.1" in args and not any("0.0.0.0" in a for a in args)


def test_mlflow_dashboard_command_binds_loopback_only() -> None:
    from orchestrator.tracking import dashboard_command

    args = shlex.split(dashboard_command("sqlite:////x/mlflow.db"))
    assert args[:2] == ["mlflow", "ui"]
    hosts = [args[i + 1] for i, a in enumerate(args) if a in ("--host", "-h")] + \
        [a.split("=", 1)[1] for a in args if a.startswith("--host=")]
    assert hosts == ["127.0.0.1"], args
