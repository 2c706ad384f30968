"""A local S3-compatible server (moto's standalone server) for the cluster-storage tests.

tests/conftest.py picks a free port at import time and points the AWS SDK environment there
(``AWS_ENDPOINT_URL``, dummy credentials) before any Ray process starts, so every Ray worker of the session sees the
same endpoint; the session fixture ``s3_bucket`` starts the server on that port on first use and creates a bucket.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def point_aws_env_at(port: int) -> None:
    os.environ.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_REGION", "us-east-1")


@contextmanager
def moto_server(port: int, bucket: str, timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``moto.server`` on 127.0.0.1:``port`` with ``bucket`` created; yields ``s3://<bucket>``."""
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                                  access_key="testing", secret_key="testing", allow_bucket_creation=True)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.create_dir(bucket)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server on port {port} did not come up") from None
                time.sleep(0.3)
        yield f"s3://{bucket}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
