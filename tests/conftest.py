"""Shared fixtures: tiny videos written with PyAV, and ONE local Ray cluster for every Ray test (session scope)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

# Throwaway local test clusters: no token auth, so subprocesses can join with an explicit address.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")


def write_video(path: Path, frames: np.ndarray, fps: int = 10, codec: str = "libx264",
                pix_fmt: str = "yuv420p") -> Path:
    """Write uint8 frames ``[N, H, W, 3]`` (or ``[N, H, W]`` gray) as a video with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = {"g": str(fps), "crf": "10"}
        for f in frames:
            fmt = "gray" if f.ndim == 2 else "rgb24"
            frame = av.VideoFrame.from_ndarray(f, format=fmt)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def counter_video(path: Path, seconds: int = 6, fps: int = 10, width: int = 80, height: int = 60) -> Path:
    """Frame i is uniformly grey with value 4·i (mod 256): decoded brightness reveals the frame number."""
    n = seconds * fps
    values = (4 * np.arange(n)) % 256
    frames = np.broadcast_to(values[:, None, None, None], (n, height, width, 3)).astype(np.uint8)
    return write_video(path, np.ascontiguousarray(frames), fps=fps)


@pytest.fixture
def make_counter_video(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "counter.mp4", **kw: int) -> Path:
        return counter_video(tmp_path / name, **kw)
    return make


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """Start one local Ray instance (2 CPUs) for the whole session; yields its GCS address."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
