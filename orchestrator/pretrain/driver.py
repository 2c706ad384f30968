"""Pretraining driver: corpus → clip index → Ray Data pipeline → Ray Train ``TorchTrainer`` → MLflow.

Re-running with the same ``name`` (and storage path) resumes: Ray Train restores the latest checkpoint and the
ClipDatasource starts streaming at the recorded data position; the MLflow run with that name is re-opened.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from orchestrator.config import work_dir
from orchestrator.data.clip_index import ClipIndex, build_clip_index
from orchestrator.data.manifest import Manifest, load_manifest
from orchestrator.data.pipeline import clip_dataset
from orchestrator.data.sampling import SamplingPlan
from orchestrator.pretrain.checkpoint import CONFIG_FILE, MODEL_FILE, resolve_init
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.metric_sink import start_sink
from orchestrator.pretrain.worker import RunContext, WorkerConfig, train_loop_per_worker
from orchestrator.report.plots import log_pretrain_plots
from orchestrator.storage import StoragePath, resolve_storage
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import generate_corpus
from orchestrator.tracking import (
    CHECKPOINT_ARTIFACT,
    JOB_PRETRAIN,
    JOB_TAG,
    SKIPPED_ARTIFACT,
    dashboard_command,
    end_run,
    log_artifact,
    log_params,
    register_checkpoint,
    resolve_tracking_uri,
    start_or_resume_run,
)


@dataclass
class PretrainResult:
    run_id: str
    tracking_uri: str
    checkpoint_dir: str | None
    steps: int
    skipped: int


def synthetic_manifest(cfg: PretrainConfig) -> Path:
    """Generate (once) the embedded synthetic corpus and return its manifest path."""
    s = cfg.data.synthetic
    scfg = SyntheticConfig(seed=s.seed, videos_per_source=s.videos_per_source, seconds=s.seconds, width=s.width,
                           height=s.height)
    out = work_dir() / "synthetic" / scfg.digest()
    print(f"[pretrain] synthetic corpus: {out}", flush=True)
    return generate_corpus(out, scfg, workers=max(1, min(4, (os.cpu_count() or 1))),
                           progress=lambda msg: print(f"[synthetic] {msg}", flush=True))


def load_corpus(cfg: PretrainConfig) -> Manifest:
    return load_manifest(cfg.data.manifest if cfg.data.manifest else synthetic_manifest(cfg))


def index_corpus(cfg: PretrainConfig, manifest: Manifest) -> ClipIndex:
    d = cfg.data
    index = build_clip_index(manifest, d.frames, d.sample_fps, d.clip_stride_s,
                             cache_file=work_dir() / "cache" / "video_probe.json")
    print(f"[pretrain] corpus {manifest.name!r}: {len(index.videos)} videos ({index.total_seconds / 60:.1f} min), "
          f"{len(index.skipped)} skipped", flush=True)
    for s in index.skipped:
        print(f"[pretrain]   skipped {s.path}: {s.reason}", flush=True)
    return index


def init_ray(cfg: PretrainConfig) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if cfg.ray.address:
        kwargs["address"] = cfg.ray.address
    elif not os.environ.get("RAY_ADDRESS"):
        kwargs["dashboard_host"] = "127.0.0.1"  # a local cluster's dashboard is never exposed beyond this machine
        if cfg.ray.num_cpus:
            kwargs["num_cpus"] = cfg.ray.num_cpus
    ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the train loop prints its own progress lines


def warn_local_storage(storage: StoragePath) -> None:
    """A local storage path on a cluster of several nodes works only when it is the same shared mount (NFS)
    everywhere: say so once (a bucket URI needs no such care)."""
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if storage.is_local and nodes > 1:
        print(f"[pretrain] ray.storage_path {storage.uri} is a local path and the cluster has {nodes} nodes: it "
              "must be a shared mount (NFS) on every node, or use s3:// / gs:// (docs/cluster.md)", flush=True)


def use_gpu(cfg: PretrainConfig) -> bool:
    if cfg.scaling.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(cfg.scaling.use_gpu)


def make_trainer(cfg: PretrainConfig, dataset: Any, ctx: RunContext, storage: StoragePath) -> Any:
    """The ``TorchTrainer`` of the run (fractional CPUs per worker by default, so Ray Data can decode)."""
    from ray.data import ExecutionOptions  # deferred: ray.train / ray.data (~2 s import), only to launch a run
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig  # deferred: same
    from ray.train.torch import TorchTrainer  # deferred: same

    gpu = use_gpu(cfg)
    resources: dict[str, float] = {"CPU": cfg.scaling.cpus_per_worker}
    if gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    resources.update(cfg.scaling.resources_per_worker)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=WorkerConfig(cfg=cfg, ctx=ctx).model_dump(mode="json"),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=gpu, resources_per_worker=resources),
        run_config=RunConfig(name=cfg.name, **storage.ray_storage(),
                             failure_config=FailureConfig(max_failures=cfg.train.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints)),
        datasets={"train": dataset},
        dataset_config=DataConfig(datasets_to_split=["train"],
                                  execution_options=ExecutionOptions(preserve_order=True)),
    )


def plan_steps(cfg: PretrainConfig, plan: SamplingPlan) -> tuple[int, int]:
    """(epoch size in samples, total optimiser steps). With ``train.iterations_per_epoch`` an epoch is that many
    optimiser steps of ``global_batch`` clips; otherwise one pass over ``samples_per_epoch`` (default: the corpus'
    video time cut into clips). ``train.max_steps`` wins over both."""
    t = cfg.train
    if t.iterations_per_epoch:
        epoch_size = t.iterations_per_epoch * t.global_batch
    else:
        epoch_size = cfg.data.samples_per_epoch or plan.default_epoch_size()
    total = t.max_steps or math.ceil(t.epochs * epoch_size / t.global_batch)
    return epoch_size, total


def finish_tracking(cfg: PretrainConfig, uri: str, run_id: str, finished: bool, steps: int) -> None:
    """Loss / lr / throughput plots on the run; a finished run's checkpoint registered as a model version.
    Neither may fail a run whose training already succeeded: problems are printed."""
    try:
        log_pretrain_plots(uri, run_id)
    except Exception as err:  # noqa: BLE001
        print(f"[pretrain] plots not drawn: {err}", flush=True)
    if not finished or not cfg.tracking.registered_model:
        return
    try:
        version = register_checkpoint(uri, run_id, cfg.tracking.registered_model, CHECKPOINT_ARTIFACT,
                                      {"run_name": cfg.name, "frames": str(cfg.data.frames), "steps": str(steps),
                                       "model_size": cfg.model.encoder.size})
        print(f"[pretrain] registered model {cfg.tracking.registered_model!r} version {version}", flush=True)
    except Exception as err:  # noqa: BLE001
        print(f"[pretrain] model not registered: {err}", flush=True)


def open_run(cfg: PretrainConfig, uri: str, run_dir: StoragePath, index: ClipIndex, total_steps: int,
             epoch_size: int) -> RunContext:
    """Open (or re-open) the MLflow run, log params and the skip list, resolve ``train.init_from``: the
    :class:`RunContext` the workers get."""
    run_id, resumed = start_or_resume_run(uri, cfg.tracking.experiment, cfg.name, tags={JOB_TAG: JOB_PRETRAIN})
    print(f"[pretrain] MLflow run {run_id} ({'resumed' if resumed else 'new'}) at {uri}", flush=True)
    log_params(uri, run_id, {**cfg.model_dump(mode="json"), "plan": {"total_steps": total_steps,
                                                                     "epoch_size_clips": epoch_size}})
    skipped = json.dumps([s.model_dump() for s in index.skipped], indent=2)
    (run_dir / SKIPPED_ARTIFACT).write_text(skipped)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SKIPPED_ARTIFACT).write_text(skipped)
        log_artifact(uri, run_id, Path(tmp) / SKIPPED_ARTIFACT)
    init_model = None
    if cfg.train.init_from:
        init_model = resolve_init(cfg.train.init_from, uri, run_dir / "init")
    return RunContext(tracking_uri=uri, run_id=run_id, total_steps=total_steps, epoch_size=epoch_size,
                      skipped_index=len(index.skipped), init_model=init_model)


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) one pretraining job end to end and log it to MLflow."""
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    manifest = load_corpus(cfg)  # input errors (manifest, videos) surface before Ray starts
    index = index_corpus(cfg, manifest)
    init_ray(cfg)
    plan = SamplingPlan.from_index(index)
    epoch_size, total_steps = plan_steps(cfg, plan)
    print(f"[pretrain] plan: {total_steps} optimiser steps × {cfg.train.global_batch} clips (epoch = {epoch_size} "
          f"clips, {cfg.scaling.num_workers} worker(s), accumulation {cfg.accum_steps}, "
          f"{cfg.model.mask.num_sets} mask set(s) per clip)", flush=True)
    storage = resolve_storage(cfg.ray.storage_path or work_dir() / "ray_results")  # once, here on the driver
    warn_local_storage(storage)
    run_dir = storage / cfg.name
    run_dir.mkdir()
    ctx = open_run(cfg, uri, run_dir, index, total_steps, epoch_size)
    run_id = ctx.run_id
    sink_name, sink = start_sink(uri, run_id)  # rank 0's metrics reach `uri` from this node (metric_sink.py)
    ctx = ctx.model_copy(update={"metric_sink": sink_name})
    dataset = clip_dataset(plan, cfg.data, seed=cfg.train.seed, epoch_size=epoch_size,
                           total=total_steps * cfg.train.global_batch, position_actor=sink_name)
    try:
        result = make_trainer(cfg, dataset, ctx, storage).fit()
    except BaseException:
        end_run(uri, run_id, status="FAILED")
        raise
    finally:
        ray.kill(sink)
    ckpt_dir = None
    if result.checkpoint is not None:
        ckpt_dir = result.checkpoint.path if storage.is_local else f"{storage.scheme}://{result.checkpoint.path}"
        with result.checkpoint.as_directory() as local:
            for name in (MODEL_FILE, CONFIG_FILE):
                log_artifact(uri, run_id, Path(local) / name, CHECKPOINT_ARTIFACT)
    reached = int((result.metrics or {}).get("step", total_steps))
    finish_tracking(cfg, uri, run_id, ckpt_dir is not None and reached >= total_steps, reached)
    if reached < total_steps:
        end_run(uri, run_id, status="KILLED")
        print(f"[pretrain] stopped after step {reached} of {total_steps} (train.stop_after_step); re-run with "
              f"--name {cfg.name} to continue", flush=True)
    else:
        end_run(uri, run_id)
    print(f"[pretrain] done. MLflow run id: {run_id}", flush=True)
    print(f"[pretrain] checkpoint: {ckpt_dir}", flush=True)
    print(f"[pretrain] dashboard: {dashboard_command(uri)}", flush=True)
    return PretrainResult(run_id, uri, ckpt_dir, reached, len(index.skipped))
