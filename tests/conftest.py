"""Shared fixtures: tiny videos written with PyAV, and ONE local Ray cluster for every Ray test (session scope)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Iterator

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


def load_script_main(script: Path, module_name: str) -> Any:
    """``main`` of a CLI script under experiments/ (not a package), imported in-process."""
    spec = importlib.util.spec_from_file_location(module_name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus (3 sources × 1 video × 8 s, 96×64) shared by the pretraining e2e tests."""
    from orchestrator.data.synthetic import SyntheticConfig, generate_corpus

    out = tmp_path_factory.mktemp("corpus")
    return generate_corpus(out, SyntheticConfig(videos_per_source=1, seconds=8, width=96, height=64))


def tiny_overrides(manifest: Path, name: str, steps: int, workers: int = 2) -> list[str]:
    """--set overrides for a seconds-long pretraining run of a tiny model on ``manifest``."""
    return [f"name={name}", f"data.manifest={manifest}", "data.frames=4", "data.short_side=48", "data.crop=32",
            "data.decode_batch=2", "data.decode_cpus=0.25", f"train.max_steps={steps}", "train.global_batch=4",
            f"train.batch_per_worker={4 // workers}", "train.checkpoint_every=2", f"scaling.num_workers={workers}",
            "scaling.cpus_per_worker=0.25", "scaling.torch_threads=1", "optim.warmup_steps=1",
            "model.encoder.size=tiny", "model.predictor.depth=2"]
