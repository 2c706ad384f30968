"""Frozen-probe sweeps: cached features → Ray Tune grid over (lr, wd) → best head on VAL → test once → MLflow.

For one (backbone, benchmark): :func:`orchestrator.features.ensure_features` for train/val/test (a cache hit
skips extraction) → a Ray Tune ``Tuner`` over ``tune.grid_search`` of lr × wd; every trial is
:func:`orchestrator.sweep_train.cached_trainable` with fractional resources (``tune.with_resources``) and the
train/val features in the object store (``tune.with_parameters``) → the trial with the best **val** primary
metric (mode from the metric name) → its head evaluated on test once, on the driver.

MLflow (driver only, after the Tuner finished, so sqlite has one writer): a parent run per (backbone,
benchmark) with the best setting, ``val_*`` + ``test_*`` metrics and ``predictions_test.npz`` (score.py
format); one child run per trial (tag ``mlflow.parentRunId``) with lr / wd and the per-epoch val curves.
``resume=True`` restores the Tuner (``Tuner.restore(..., resume_unfinished=True, resume_errored=True)``) and
re-opens the same parent / child runs, so the structure ends the same. Docs: docs/sweeps.md.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.backbones import BackboneError
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample
from orchestrator.config import CONFIG_DIR, ConfigError, work_dir
from orchestrator.features import FeatureConfig, backbone_info, ensure_features
from orchestrator.sweep_train import (
    ProbeTask,
    SplitArrays,
    cached_trainable,
    evaluate_head,
    label_array,
    load_head,
    metric_mode,
)

DEFAULT_CONFIG = CONFIG_DIR / "sweep" / "default.yaml"
SPLITS = ("train", "val", "test")


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: list[float] = Field(default_factory=lambda: [5e-3, 1e-3, 3e-4, 1e-4], min_length=1)
    wd: list[float] = Field(default_factory=lambda: [0.01, 0.1, 0.4, 0.8], min_length=1)


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, description="attentive probe blocks (depth-1 self-attention + 1 cross)")
    heads: int = Field(16, ge=1)


class FewShotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fraction: float | None = Field(None, gt=0, le=1, description="train on this seeded fraction of train VIDEOS")
    seed: int = 0


class SweepConfig(BaseModel):
    """Everything a probe sweep needs (experiments/configs/sweep/*.yaml; keys in docs/sweeps.md)."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] = Field(default_factory=lambda: ["synthetic-phase"], min_length=1)
    backbones: list[str] = Field(default_factory=list, description="backbone specs; empty: the CLI picks one")
    data_root: str | None = Field(None, description="root of every benchmark (null: the synthetic suite)")
    data_roots: dict[str, str] = Field(default_factory=dict, description="per-benchmark roots (win over data_root)")
    grid: GridConfig = Field(default_factory=GridConfig)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    checkpoint_every: int = Field(5, ge=1, description="head checkpoint every N epochs (and at the last)")
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.25, ge=0, le=1, description="used only when the cluster has GPUs")
    max_concurrent_trials: int | None = Field(None, ge=1)
    few_shot: FewShotConfig = Field(default_factory=FewShotConfig)
    seed: int = 0
    experiment: str = "probe-sweeps"
    tracking_uri: str | None = None
    cache_dir: str | None = Field(None, description="feature cache (null: <work dir>/feature_cache)")
    storage_dir: str | None = Field(None, description="Ray Tune storage (null: <work dir>/sweeps)")

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if self.features.crop > self.features.short_side:
            raise ValueError(f"features.crop {self.features.crop} > features.short_side {self.features.short_side}")
        return self

    def cache_path(self) -> Path:
        return Path(self.cache_dir or work_dir() / "feature_cache").expanduser().resolve()

    def storage_path(self) -> Path:
        return Path(self.storage_dir or work_dir() / "sweeps").expanduser().resolve()

    def root_for(self, benchmark: str) -> Path:
        root = self.data_roots.get(benchmark) or self.data_root
        if root is None:
            raise BenchmarkError(f"{benchmark}: no data root (set data_root or data_roots.{benchmark})")
        return Path(root).expanduser()


class TrialSummary(BaseModel):
    lr: float
    wd: float
    status: str
    val_primary: float | None
    epochs: int


class SweepResult(BaseModel):
    """Outcome of one (backbone, benchmark) sweep."""

    backbone: str
    benchmark: str
    primary_metric: str
    mode: str
    best_lr: float
    best_wd: float
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    parent_run_id: str
    trials: list[TrialSummary]
    seconds: float


def resolve_benchmark(name: str, root: Path | None = None) -> BenchmarkSpec:
    """A registered benchmark, a synthetic-suite one (``synthetic-*``) or a generic private-data template
    (``generic-phase-csv``, ``generic-clip-csv``, ``generic-image-mask``, ``generic-image-depth``)."""
    from orchestrator.benchmarks.registry import GENERIC_TEMPLATES, get_benchmark, resolve_spec
    from orchestrator.benchmarks.synthetic_suite import find_synthetic

    try:
        return get_benchmark(name, root)
    except BenchmarkError as err:
        spec = find_synthetic(name) or {t.name: t for t in GENERIC_TEMPLATES.values()}.get(name)
        if spec is None:
            raise err
        return resolve_spec(spec, root) if root is not None else spec


def few_shot(samples: list[Sample], fraction: float | None, seed: int) -> list[Sample]:
    """A seeded fraction (at least one) of the training VIDEOS, all their samples kept."""
    if fraction is None or fraction >= 1:
        return samples
    videos = sorted({s.video_id for s in samples})
    k = max(1, round(fraction * len(videos)))
    keep = set(np.random.default_rng(seed).permutation(videos)[:k].tolist())
    return [s for s in samples if s.video_id in keep]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120]


def backbone_label(spec: str) -> str:
    """Short display name of a backbone spec (``surgmotion:/a/b/checkpoint_04`` → ``surgmotion:checkpoint_04``)."""
    kind, _, arg = spec.partition(":")
    return f"{kind}:{Path(arg).name}" if kind == "surgmotion" and arg else spec


# --------------------------------------------------------------------------------------------- data + task
class SweepData(BaseModel):
    """Features + labels of the three splits of one (backbone, benchmark)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task: ProbeTask
    tokens: dict[str, np.ndarray]
    splits: dict[str, SplitArrays]
    cache_keys: dict[str, str]
    backbone_identity: str


def prepare(cfg: SweepConfig, backbone: str, spec: BenchmarkSpec, root: Path) -> SweepData:
    """Samples of every split (few-shot on train) → cached features (extracted on a miss) → the probe task."""
    from orchestrator.benchmarks.registry import load_samples

    info = backbone_info(backbone, cfg.features)
    samples = {split: load_samples(spec, root, split) for split in SPLITS}
    samples["train"] = few_shot(samples["train"], cfg.few_shot.fraction, cfg.few_shot.seed)
    feats = ensure_features(info, spec, samples, cfg.features, cfg.cache_path())
    tokens = {split: fs.tokens for split, fs in feats.items()}
    keys = {split: fs.index.key for split, fs in feats.items()}
    splits = {split: SplitArrays(labels=label_array(spec.task, fs.index.labels, spec.num_classes, fs.targets),
                                 video=np.asarray(fs.index.video_ids).astype(str)) for split, fs in feats.items()}
    pt = ProbeTask(benchmark=spec.name, task=spec.task, num_classes=spec.num_classes,
                   primary_metric=spec.primary_metric, relaxed=spec.relaxed_boundary,
                   sample_fps=cfg.features.sample_fps or spec.sample_fps, embed_dim=info.embed_dim, grid=info.grid,
                   crop=cfg.features.crop, probe_depth=cfg.probe.depth, probe_heads=cfg.probe.heads,
                   epochs=cfg.epochs, batch_size=cfg.batch_size, checkpoint_every=cfg.checkpoint_every,
                   seed=cfg.seed, threads=max(1, int(cfg.cpus_per_trial)))
    return SweepData(task=pt, tokens=tokens, splits=splits, cache_keys=keys, backbone_identity=info.identity)


# ------------------------------------------------------------------------------------------------ Ray Tune
def _trainable(cfg: SweepConfig, data: SweepData) -> Any:
    import ray
    from ray import tune

    payload = {"train": data.splits["train"], "val": data.splits["val"],
               "train_tokens": data.tokens["train"], "val_tokens": data.tokens["val"]}
    resources: dict[str, float] = {"cpu": cfg.cpus_per_trial}
    if ray.cluster_resources().get("GPU", 0) > 0 and cfg.gpus_per_trial > 0:
        resources["gpu"] = cfg.gpus_per_trial
    return tune.with_resources(tune.with_parameters(cached_trainable, pt=data.task, data=payload), resources)


def run_tuner(cfg: SweepConfig, data: SweepData, run_dir: Path, resume: bool, trainable: Any = None) -> Any:
    """Fit (or restore and finish) the grid; returns the ``ResultGrid``. ``trainable`` (already wrapped with its
    resources) replaces the cached-feature trainable (bench/bench_sweep.py's naive baseline)."""
    import os

    from ray import tune

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = trainable or _trainable(cfg, data)
    if resume and tune.Tuner.can_restore(str(run_dir)):
        print(f"[sweep] resuming {run_dir}", flush=True)
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        mode = metric_mode(data.task.primary_metric)
        tuner = tune.Tuner(
            trainable,
            param_space={"lr": tune.grid_search(cfg.grid.lr), "wd": tune.grid_search(cfg.grid.wd)},
            tune_config=tune.TuneConfig(metric="val_primary", mode=mode, reuse_actors=True,
                                        max_concurrent_trials=cfg.max_concurrent_trials),
            run_config=tune.RunConfig(
                name=run_dir.name, storage_path=str(run_dir.parent), verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=1)))
    return tuner.fit()


def _best(grid: Any, mode: str) -> Any:
    """The trial whose LAST reported val primary metric is best (ties: first in grid order)."""
    ok = [r for r in grid if r.error is None and r.metrics and "val_primary" in r.metrics]
    if not ok:
        raise RuntimeError(f"no trial finished: {[str(r.error)[:200] for r in grid]}")
    sign = -1.0 if mode == "min" else 1.0
    key = [sign * (r.metrics["val_primary"] if np.isfinite(r.metrics["val_primary"]) else -np.inf * sign)
           for r in ok]
    return ok[int(np.argmax(key))]


# ---------------------------------------------------------------------------------------------- MLflow
def _curves(result: Any) -> list[tuple[int, dict[str, float]]]:
    df = result.metrics_dataframe
    if df is None or df.empty:
        return []
    cols = [c for c in df.columns if c.startswith("val_") or c == "train_loss"]
    return [(int(row["epoch"]), {c: float(row[c]) for c in cols if np.isfinite(row[c])}) for _, row in df.iterrows()]


def log_trials(uri: str, parent: str, parent_name: str, experiment: str, grid: Any) -> None:
    """One child run per trial (idempotent: a re-opened child that already has metrics is left as is)."""
    from orchestrator.tracking import MetricLogger, client, end_run, log_params, start_or_resume_run

    for r in grid:
        lr, wd = float(r.config["lr"]), float(r.config["wd"])
        name = f"{parent_name}|lr={lr:g}|wd={wd:g}"
        run_id, resumed = start_or_resume_run(uri, experiment, name, parent_run_id=parent)
        if resumed and client(uri).get_run(run_id).data.metrics and r.error is None:
            end_run(uri, run_id)
            continue
        log_params(uri, run_id, {"lr": lr, "wd": wd})
        logger = MetricLogger(uri, run_id, flush_every=1000)
        for epoch, values in _curves(r):
            logger.log(values, step=epoch)
        logger.flush()
        end_run(uri, run_id, "FAILED" if r.error is not None else "FINISHED")


def log_parent(uri: str, parent: str, result: SweepResult, params: dict[str, Any], npz: Path) -> None:
    from orchestrator.tracking import MetricLogger, end_run, log_artifact, log_params

    log_params(uri, parent, {**params, "best_lr": result.best_lr, "best_wd": result.best_wd})
    logger = MetricLogger(uri, parent, flush_every=1000)
    logger.log({**{f"val_{k}": v for k, v in result.val_metrics.items() if np.isfinite(v)},
                **{f"test_{k}": v for k, v in result.test_metrics.items() if np.isfinite(v)}}, step=0)
    logger.flush()
    log_artifact(uri, parent, npz)
    end_run(uri, parent)


# ------------------------------------------------------------------------------------------------- driver
def _rows(tokens: np.ndarray) -> Any:
    import torch

    return lambda r: torch.from_numpy(np.asarray(tokens[r]))


def _backbone_dir(backbone: str) -> str:
    """Tune dir name of a backbone: its label, plus a hash of the full spec when the label shortened it."""
    label = backbone_label(backbone)
    suffix = "" if label == backbone else "-" + hashlib.sha1(backbone.encode()).hexdigest()[:8]
    return _slug(label) + suffix


def _parent_name(run_dir: Path, backbone: str, benchmark: str, resume: bool) -> str:
    """The parent run name: kept in ``<run dir>/sweep.json`` so a resumed sweep re-opens the same runs."""
    meta = run_dir / "sweep.json"
    if resume and meta.is_file():
        return str(json.loads(meta.read_text())["parent_run_name"])
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh (non-resumed) sweep starts from an empty Tune directory
    run_dir.mkdir(parents=True)
    name = f"{backbone_label(backbone)}|{benchmark}|{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    meta.write_text(json.dumps({"parent_run_name": name}))
    return name


def run_probe_sweep(cfg: SweepConfig, backbone: str, benchmark: str | BenchmarkSpec, *, resume: bool = False,
                    root: str | Path | None = None) -> SweepResult:
    """The whole sweep of one (backbone, benchmark); see the module docstring."""
    import ray

    from orchestrator.tracking import ensure_experiment, resolve_tracking_uri, start_or_resume_run

    t0 = time.time()
    if not ray.is_initialized():
        ray.init()
    name = benchmark if isinstance(benchmark, str) else benchmark.name
    root_path = Path(root) if root is not None else cfg.root_for(name)
    spec = resolve_benchmark(benchmark, root_path) if isinstance(benchmark, str) else benchmark
    data = prepare(cfg, backbone, spec, root_path)
    run_dir = cfg.storage_path() / _slug(cfg.experiment) / f"{_backbone_dir(backbone)}__{_slug(spec.name)}"
    parent_name = _parent_name(run_dir, backbone, spec.name, resume)
    uri = resolve_tracking_uri(cfg.tracking_uri)
    ensure_experiment(uri, cfg.experiment)  # on the driver, before anything else writes
    parent, _ = start_or_resume_run(uri, cfg.experiment, parent_name,
                                    tags={"surgmotion.benchmark": spec.name, "surgmotion.backbone": backbone})
    grid = run_tuner(cfg, data, run_dir, resume)
    mode = metric_mode(spec.primary_metric)
    best = _best(grid, mode)
    head, std = load_head(data.task, best.checkpoint.to_directory())
    tokens = data.tokens["test"]
    test, arrays = evaluate_head(data.task, head, _rows(tokens),
                                 data.splits["test"], std)
    npz = run_dir / "predictions_test.npz"
    np.savez(npz, **arrays)
    result = SweepResult(
        backbone=backbone, benchmark=spec.name, primary_metric=spec.primary_metric, mode=mode,
        best_lr=float(best.config["lr"]), best_wd=float(best.config["wd"]),
        val_metrics={k[4:]: float(v) for k, v in best.metrics.items() if k.startswith("val_") and k != "val_primary"},
        test_metrics={k: float(v) for k, v in test.items()}, parent_run_id=parent,
        trials=[TrialSummary(lr=float(r.config["lr"]), wd=float(r.config["wd"]),
                             status="ERROR" if r.error is not None else "TERMINATED",
                             val_primary=(r.metrics or {}).get("val_primary"),
                             epochs=int((r.metrics or {}).get("epoch", -1)) + 1) for r in grid],
        seconds=round(time.time() - t0, 2))
    log_trials(uri, parent, parent_name, cfg.experiment, grid)
    params = {"backbone": backbone, "backbone_identity": data.backbone_identity, "benchmark": spec.name,
              "epochs": cfg.epochs, "batch_size": cfg.batch_size, "probe": cfg.probe.model_dump(),
              "features": cfg.features.model_dump(), "few_shot": cfg.few_shot.model_dump(),
              "grid": {"lr": str(cfg.grid.lr), "wd": str(cfg.grid.wd)},
              "cache_keys": data.cache_keys, "primary_metric": spec.primary_metric}
    log_parent(uri, parent, result, params, npz)
    (run_dir / "result.json").write_text(result.model_dump_json(indent=1))
    return result


def validate(cfg: SweepConfig) -> None:
    """Fail fast (before Ray starts) on unknown benchmarks, missing data roots and malformed backbone specs."""
    if not cfg.backbones:
        raise ConfigError("backbones: empty; give at least one backbone spec (random:tiny, surgmotion:<dir>, ...)")
    for name in cfg.benchmarks:
        resolve_benchmark(name)
        root = cfg.root_for(name)
        if not root.exists():
            raise BenchmarkError(f"{name}: data root {root} does not exist")
    for bb in cfg.backbones:
        kind, _, arg = bb.partition(":")
        if kind not in ("random", "surgmotion", "timm"):
            raise ConfigError(f"backbone {bb!r}: use random[:size], surgmotion:<checkpoint>, timm:<name>[@<weights>]")
        path = arg if kind == "surgmotion" else arg.partition("@")[2] if kind == "timm" else ""
        if path and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"backbone {bb!r}: {path} does not exist")
        if kind == "timm":
            import timm

            name = arg.partition("@")[0]
            if not timm.is_model(name):
                raise BackboneError(f"backbone {bb!r}: timm has no model {name!r} (see timm.list_models())")


def run_sweeps(cfg: SweepConfig, *, resume: bool = False) -> list[SweepResult]:
    """Every (backbone, benchmark) of the config, backbones outer (one backbone's features at a time)."""
    validate(cfg)
    return [run_probe_sweep(cfg, bb, bench, resume=resume) for bb in cfg.backbones for bench in cfg.benchmarks]


def summary_table(results: list[SweepResult]) -> str:
    """benchmark × backbone → primary test metric and the best lr / wd."""
    rows = [("benchmark", "backbone", "metric", "test", "val", "best lr", "best wd")]
    for r in results:
        rows.append((r.benchmark, backbone_label(r.backbone), f"{r.primary_metric} ({r.mode})",
                     f"{r.test_metrics.get(r.primary_metric, float('nan')):.4f}",
                     f"{r.val_metrics.get(r.primary_metric, float('nan')):.4f}", f"{r.best_lr:g}", f"{r.best_wd:g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
