"""Shared helpers and fixtures: tiny videos written with PyAV, ONE local Ray cluster for every Ray test (session
scope), the tiny learnable phase benchmark and the sweep config the probe tests share, MLflow / Ray Train
read-backs. No test module imports another test module; what they share lives here (media writers for
benchmark fixtures: the ``benchmark_fixtures`` package)."""
from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import s3_server

from orchestrator.benchmarks.spec import BenchmarkSpec, Sample, SplitSpec, register_adapter
from orchestrator.probe.config import FeatureConfig, SweepConfig
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import generate_corpus

# Throwaway local test clusters: no token auth, so subprocesses can join with an explicit address.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
# Test-only Ray Train latencies (inherited by the subprocess drivers): the controller polls its workers every 0.5 s
# instead of 2 s, and no spot-preemption watcher actor is started; together ~7 s less per pretraining run (26 vs 33 s
# for an 8-step tiny run). Users keep Ray's defaults.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
S3_PORT = s3_server.free_port()
s3_server.point_aws_env_at(S3_PORT)  # before any Ray process starts: every worker sees the test S3 endpoint


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
def node_failure_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The node-failure driver started in the background (a :class:`node_failure_run.DriverRun`)."""
    from node_failure_run import DriverRun

    run = DriverRun(tiny_corpus, tmp_path_factory.mktemp("node_failure"))
    yield run
    run.kill()


BACKGROUND_TESTS = {"test_node_failure.py::test_killed_worker_node_run_resumes_on_a_new_node_as_one_mlflow_run":
                    "node_failure_run"}


@pytest.fixture(scope="session", autouse=True)
def _background_runs(request: pytest.FixtureRequest) -> None:
    """Start the subprocess runs of the selected BACKGROUND_TESTS (their session fixtures) before the first test,
    so that they run beside the rest of the suite; each test then waits for its own."""
    for item in request.session.items:
        fixture = next((f for t, f in BACKGROUND_TESTS.items() if item.nodeid.endswith(t)), None)
        if fixture is not None:
            request.getfixturevalue(fixture)


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
def s3_bucket() -> Iterator[str]:
    """``s3://surgmotion-test`` on a local moto server (tests/s3_server.py), for the whole session."""
    with s3_server.moto_server(S3_PORT, "surgmotion-test") as bucket:
        yield bucket


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus (3 sources × 1 video × 8 s, 96×64) shared by the pretraining e2e tests."""

    out = tmp_path_factory.mktemp("corpus")
    return generate_corpus(out, SyntheticConfig(videos_per_source=1, seconds=8, width=96, height=64))


def tiny_overrides(manifest: Path, name: str, steps: int, workers: int = 2) -> list[str]:
    """--set overrides for a seconds-long pretraining run of a tiny model on ``manifest``."""
    return [f"name={name}", f"data.manifest={manifest}", "data.frames=4", "data.short_side=48", "data.crop=32",
            "data.decode_batch=2", "data.decode_cpus=0.25", f"train.max_steps={steps}", "train.global_batch=4",
            f"train.batch_per_worker={4 // workers}", "train.checkpoint_every=2", f"scaling.num_workers={workers}",
            "scaling.cpus_per_worker=0.25", "scaling.torch_threads=1", "optim.warmup_steps=1",
            "model.encoder.size=tiny", "model.predictor.depth=2"]


# ------------------------------------------------------------------------------- the tiny phase benchmark
SPLIT_VIDEOS = {"train": ["v0", "v1", "v2", "v3"], "val": ["v4", "v5"], "test": ["v6", "v7"]}
SECONDS, FPS = 16, 4
COLORS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32)
SWAP = {0: 1, 1: 2, 2: 0}  # a derangement: a correct head scores 0 on swapped val labels


def phase_of(video: int, t: int) -> int:
    """Unequal phases (majority class is phase 2): 0 for the first 3-4 s, 1 for the next 4-5 s, then 2."""
    a, b = 3 + video % 2, 8 + video % 2
    return 0 if t < a else 1 if t < b else 2


def write_tiny_videos(root: Path) -> None:
    rng = np.random.default_rng(0)
    for vids in SPLIT_VIDEOS.values():
        for vid in vids:
            v = int(vid[1:])
            labels = np.array([phase_of(v, f // FPS) for f in range(SECONDS * FPS)])
            frames = COLORS[labels][:, None, None, :] + rng.normal(0, 25, (len(labels), 48, 64, 3))
            write_video(root / f"{vid}.mp4", np.clip(frames, 0, 255).astype(np.uint8), fps=FPS)


@register_adapter("test_tiny_phase")
def load_tiny_phase(root: Path, split: str, spec: BenchmarkSpec) -> list[Sample]:
    """One sample per second; ``*-swapped`` benchmarks permute the VAL labels (val and test disagree)."""
    out = []
    for vid in SPLIT_VIDEOS[split]:
        for t in range(SECONDS):
            lab = phase_of(int(vid[1:]), t)
            if split == "val" and spec.name.endswith("swapped"):
                lab = SWAP[lab]
            out.append(Sample(sample_id=f"{vid}@{t}", video_id=vid, source=str(root / f"{vid}.mp4"),
                              time_s=float(t), label=lab))
    return out


def tiny_phase_benchmark(name: str = "tiny-phase") -> BenchmarkSpec:
    """A learnable 3-phase benchmark on the videos of the ``tiny_root`` fixture (task defaults: metrics, f1)."""
    return BenchmarkSpec(name=name, task="phase", adapter="test_tiny_phase", classes=["a", "b", "c"],
                         splits=SplitSpec(kind="official"), clip_frames=4)


TINY_FEATURES = FeatureConfig(frames=4, short_side=32, crop=32, batch_size=16)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_phase")
    write_tiny_videos(root)
    return root


def tiny_config(tmp: Path, lr: list[float], wd: list[float], epochs: int = 6) -> SweepConfig:
    """A sweep of the tiny phase benchmark with a small probe, everything under ``tmp``."""
    return SweepConfig(benchmarks=["tiny-phase"], backbones=["random:tiny"], grid={"lr": lr, "wd": wd},
                       epochs=epochs, batch_size=16, probe={"depth": 1, "heads": 4}, features=TINY_FEATURES,
                       cpus_per_trial=0.5, experiment="test-sweeps", tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                       cache_dir=str(tmp / "cache"), storage_dir=str(tmp / "sweeps"))


# ------------------------------------------------------------------------------------------- read-backs
def committed_step(run_dir: Path) -> int | None:
    """Step of the latest checkpoint Ray Train has committed (what a re-run restores), or None."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snap.read_text()).get("latest_checkpoint_result")
    except (OSError, ValueError):
        return None
    return int(latest["metrics"]["step"]) if latest else None


def metric_history(uri: str, run_id: str, key: str) -> list[mlflow.entities.Metric]:
    return mlflow.MlflowClient(uri).get_metric_history(run_id, key)
