"""The node-failure driver (tests/node_failure_driver.py) as a background subprocess: started by the session
fixture ``node_failure_run`` (tests/conftest.py), waited for by tests/test_node_failure.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("node_failure_driver.py")
STEPS, WORKERS = 6, 2
DRIVER_TIMEOUT_S = 420  # the driver gives up (and shuts its cluster down) after this
HARD_TIMEOUT_S = 540  # then the test kills the driver's whole process group


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class DriverRun:
    """The driver subprocess, started by :func:`node_failure_run` (in the background, from the session's start:
    tests/conftest.py ``_background_runs``) and waited for by the test."""

    def __init__(self, manifest: Path, work: Path) -> None:
        env = os.environ.copy()
        env.pop("RAY_ADDRESS", None)
        env.update(SURGMOTION_HOME=str(work), MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                   RAY_AUTH_MODE="disabled")
        self.out, self.log = work / "node_failure.json", work / "driver.log"
        cmd = [sys.executable, str(DRIVER), "--manifest", str(manifest), "--out", str(self.out), "--steps",
               str(STEPS), "--workers", str(WORKERS), "--timeout", str(DRIVER_TIMEOUT_S)]
        self.started = time.monotonic()
        with self.log.open("w") as f:
            self.proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> tuple[int, dict[str, Any]]:
        try:
            rc = self.proc.wait(timeout=max(1.0, HARD_TIMEOUT_S - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"node-failure driver still running after {HARD_TIMEOUT_S} s:\n{tail(self.log)}")
        return rc, json.loads(self.out.read_text()) if self.out.is_file() else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
            self.proc.wait()
