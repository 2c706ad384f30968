"""Pretraining driver: corpus → clip index → Ray Data pipeline → Ray Train ``TorchTrainer`` → MLflow.

Re-running with the same ``name`` (and storage path) resumes: Ray Train restores the latest checkpoint and the
ClipDatasource starts streaming at the recorded data position; the MLflow run with that name is re-opened.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.checkpointing import CONFIG_FILE, MODEL_FILE, resolve_init
from orchestrator.config import PretrainConfig, work_dir
from orchestrator.data.clip_index import ClipIndex, build_clip_index
from orchestrator.data.manifest import Manifest, load_manifest
from orchestrator.data.pipeline import clip_dataset
from orchestrator.data.sampling import SamplingPlan
from orchestrator.tracking import (dashboard_command, end_run, log_artifact, log_params, register_checkpoint,
                                   resolve_tracking_uri, start_or_resume_run)
from orchestrator.train_loop import train_loop_per_worker


@dataclass
class PretrainResult:
    run_id: str
    tracking_uri: str
    checkpoint_dir: str | None
    steps: int
    skipped: int


def synthetic_manifest(cfg: PretrainConfig) -> Path:
    """Generate (once) the embedded synthetic corpus and return its manifest path."""
    from orchestrator.data.synthetic import SyntheticConfig, generate_corpus

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
    import ray

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


def use_gpu(cfg: PretrainConfig) -> bool:
    import ray

    if cfg.scaling.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(cfg.scaling.use_gpu)


def make_trainer(cfg: PretrainConfig, dataset: Any, ctx: dict[str, Any], storage: Path) -> Any:
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    gpu = use_gpu(cfg)
    resources: dict[str, float] = {"CPU": cfg.scaling.cpus_per_worker}
    if gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    resources.update(cfg.scaling.resources_per_worker)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "ctx": ctx},
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=gpu, resources_per_worker=resources),
        run_config=RunConfig(name=cfg.name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=cfg.train.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints)),
        datasets={"train": dataset},
        dataset_config=DataConfig(datasets_to_split=["train"],
                                  execution_options=ExecutionOptions(preserve_order=True)),
    )


def plan_steps(cfg: PretrainConfig, plan: SamplingPlan) -> tuple[int, int]:
    """(epoch size in samples, total optimiser steps)."""
    epoch_size = cfg.data.samples_per_epoch or plan.default_epoch_size()
    total = cfg.train.max_steps or math.ceil(cfg.train.epochs * epoch_size / cfg.train.global_batch)
    return epoch_size, total


def finish_tracking(cfg: PretrainConfig, uri: str, run_id: str, finished: bool, steps: int) -> None:
    """Loss / lr / throughput plots on the run; a finished run's checkpoint registered as a model version.
    Neither may fail a run whose training already succeeded: problems are printed."""
    from orchestrator.report import log_pretrain_plots

    try:
        log_pretrain_plots(uri, run_id)
    except Exception as err:  # noqa: BLE001
        print(f"[pretrain] plots not drawn: {err}", flush=True)
    if not finished or not cfg.tracking.registered_model:
        return
    try:
        version = register_checkpoint(uri, run_id, cfg.tracking.registered_model, "checkpoint",
                                      {"run_name": cfg.name, "frames": str(cfg.data.frames), "steps": str(steps),
                                       "model_size": cfg.model.encoder.size})
        print(f"[pretrain] registered model {cfg.tracking.registered_model!r} version {version}", flush=True)
    except Exception as err:  # noqa: BLE001
        print(f"[pretrain] model not registered: {err}", flush=True)


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) one pretraining job end to end and log it to MLflow."""
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    manifest = load_corpus(cfg)  # input errors (manifest, videos) surface before Ray starts
    index = index_corpus(cfg, manifest)
    init_ray(cfg)
    plan = SamplingPlan.from_index(index)
    epoch_size, total_steps = plan_steps(cfg, plan)
    storage = Path(cfg.ray.storage_path or work_dir() / "ray_results").expanduser().resolve()
    run_dir = storage / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    position_file = str(run_dir / "data_position.json")
    run_id, resumed = start_or_resume_run(uri, cfg.tracking.experiment, cfg.name, tags={"surgmotion.job": "pretrain"})
    print(f"[pretrain] MLflow run {run_id} ({'resumed' if resumed else 'new'}) at {uri}", flush=True)
    log_params(uri, run_id, cfg.model_dump(mode="json"))
    skipped_file = run_dir / "skipped_videos.json"
    skipped_file.write_text(json.dumps([s.model_dump() for s in index.skipped], indent=2))
    log_artifact(uri, run_id, skipped_file)
    init_model = None
    if cfg.train.init_from:
        init_model = str(resolve_init(cfg.train.init_from, uri, run_dir / "init"))
    ctx = {"tracking_uri": uri, "run_id": run_id, "total_steps": total_steps, "epoch_size": epoch_size,
           "position_file": position_file, "skipped_index": len(index.skipped), "init_model": init_model,
           "config": cfg.model_dump(mode="json")}
    d = cfg.data
    dataset = clip_dataset(plan, seed=cfg.train.seed, epoch_size=epoch_size,
                           total=total_steps * cfg.train.global_batch, frames=d.frames, sample_fps=d.sample_fps,
                           short_side=d.short_side, crop=d.crop, decode_tasks=d.decode_tasks,
                           decode_cpus=d.decode_cpus, decode_batch_size=d.decode_batch,
                           position_file=position_file,
                           block_rows=d.read_block_rows)
    print(f"[pretrain] {total_steps} steps × {cfg.train.global_batch} clips (epoch = {epoch_size} clips, "
          f"{cfg.scaling.num_workers} worker(s), accumulation {cfg.accum_steps})", flush=True)
    try:
        result = make_trainer(cfg, dataset, ctx, storage).fit()
    except BaseException:
        end_run(uri, run_id, status="FAILED")
        raise
    ckpt_dir = None
    if result.checkpoint is not None:
        ckpt_dir = result.checkpoint.path
        with result.checkpoint.as_directory() as local:
            for name in (MODEL_FILE, CONFIG_FILE):
                log_artifact(uri, run_id, Path(local) / name, "checkpoint")
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
