"""Frozen-probe sweeps: plan → cached features → Ray Tune grid over (lr, wd) → best head on VAL → test once → MLflow.

:func:`orchestrator.probe.plan.plan_sweeps` checks the whole config before Ray starts (backbone specs, benchmark
names, data roots, folds) and reads every benchmark's samples ONCE into a ``ProbeJob`` per (backbone,
benchmark[, fold]). :func:`run_job` consumes one job: :func:`orchestrator.probe.features.ensure_features` for
train/val/test (a cache hit skips extraction) → a Ray Tune ``Tuner`` over ``tune.grid_search`` of lr × wd; every
trial is :func:`orchestrator.probe.trial.cached_trainable` with fractional resources (``tune.with_resources``) and
the train/val features in the object store (``tune.with_parameters``) → Tune's ``ResultGrid.get_best_result`` by
the LAST reported **val** primary metric (mode from the metric, NaN trials never chosen) → its head evaluated on
test once, on the driver.

MLflow (driver only, after the Tuner finished, so sqlite has one writer; :mod:`orchestrator.probe.records`): a
parent run per (backbone, benchmark) with the best setting, ``val_*`` + ``test_*`` metrics and
``predictions_test.npz`` (score.py format); one child run per trial with lr / wd and the per-epoch val curves.
``resume=True`` restores the Tuner (``Tuner.restore(..., resume_unfinished=True, resume_errored=True)``) and
re-opens the same parent / child runs, so the structure ends the same. Docs: docs/sweeps.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from pydantic import BaseModel, ConfigDict, Field
from ray import tune

from model.backbones.factory import backbone_label
from orchestrator.benchmarks.spec import BenchmarkSpec, Sample
from orchestrator.benchmarks.tasks import metric_mode
from orchestrator.config import slug
from orchestrator.probe.config import SweepConfig, SweepResult, TrialSummary
from orchestrator.probe.features import backbone_info, ensure_features
from orchestrator.probe.plan import ProbeJob, SweepPlan, plan_job, plan_sweeps
from orchestrator.probe.records import log_parent, log_plots, log_trials
from orchestrator.probe.trial import ProbeTask, SplitArrays, cached_trainable, evaluate_head, label_array, load_head
from orchestrator.storage import StoragePath
from orchestrator.tracking import (
    BACKBONE_TAG,
    BENCHMARK_TAG,
    FOLD_TAG,
    PREDICTIONS_ARTIFACT,
    TASK_TAG,
    ensure_experiment,
    resolve_tracking_uri,
    start_or_resume_run,
)


# --------------------------------------------------------------------------------------------- data + task
class SweepData(BaseModel):
    """Features + labels of the three splits of one job."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task: ProbeTask
    tokens: dict[str, np.ndarray]
    splits: dict[str, SplitArrays]
    cache_keys: dict[str, str]
    backbone_identity: str
    test_samples: list[Sample] = Field(default_factory=list)  # row order of tokens["test"] (predictions file)
    train_views: list[np.ndarray] = Field(default_factory=list)  # augmented train views 1..K (features.train_views)


def prepare(cfg: SweepConfig, job: ProbeJob) -> SweepData:
    """Cached features of the job's samples (extracted on a miss) → labels, video ids and the probe task."""
    spec = job.spec
    info = backbone_info(job.backbone, cfg.features)
    feats = ensure_features(info, spec, job.samples, cfg.features, cfg.cache_path().uri)
    splits = {split: SplitArrays(labels=label_array(spec.task, fs.index.labels, spec.num_classes, fs.targets),
                                 video=np.asarray(fs.index.video_ids).astype(str)) for split, fs in feats.items()}
    keys = {s: fs.index.key for s, fs in feats.items()}
    keys.update({f"train_view{i}": k for i, k in enumerate(feats["train"].view_keys, 1)})  # MLflow: no "@"
    return SweepData(task=ProbeTask.from_config(cfg, spec, info), tokens={s: fs.tokens for s, fs in feats.items()},
                     splits=splits, cache_keys=keys, backbone_identity=info.identity, test_samples=job.samples["test"],
                     train_views=feats["train"].views)


# ------------------------------------------------------------------------------------------------ Ray Tune
def _trainable(cfg: SweepConfig, data: SweepData) -> Any:
    payload = {"train": data.splits["train"], "val": data.splits["val"], "train_tokens": data.tokens["train"],
               "val_tokens": data.tokens["val"], "train_views": data.train_views}
    resources: dict[str, float] = {"cpu": cfg.cpus_per_trial}
    if ray.cluster_resources().get("GPU", 0) > 0 and cfg.gpus_per_trial > 0:
        resources["gpu"] = cfg.gpus_per_trial
    return tune.with_resources(tune.with_parameters(cached_trainable, pt=data.task, data=payload), resources)


class SweepProgress(tune.Callback):
    """Prints one line at most every ``every_s`` seconds while trials run (Tune itself runs with verbose=0)."""

    def __init__(self, label: str, every_s: float = 10.0, mode: str = "max") -> None:
        self.label, self.every_s, self.mode = label, every_s, mode
        self.t0 = self.last = time.monotonic()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        print(f"[sweep] {self.label}: {progress_line(trials, self.mode)} ({now - self.t0:.0f} s)", flush=True)


def progress_line(trials: list[Any], mode: str) -> str:
    """``"3/16 trials done, 2 running, 11 pending; best val 0.4123"`` from Tune trials."""
    status = [str(t.status) for t in trials]
    vals = [float(t.last_result["val_primary"]) for t in trials
            if (t.last_result or {}).get("val_primary") is not None and np.isfinite(t.last_result["val_primary"])]
    best = (min(vals) if mode == "min" else max(vals)) if vals else float("nan")
    return (f"{sum(s in ('TERMINATED', 'ERROR') for s in status)}/{len(trials)} trials done, "
            f"{status.count('RUNNING')} running, {status.count('PENDING')} pending; best val {best:.4f}")


def run_tuner(cfg: SweepConfig, data: SweepData, run_dir: StoragePath, resume: bool, trainable: Any = None) -> Any:
    """Fit (or restore and finish) the grid; returns the ``ResultGrid``. ``trainable`` (already wrapped with its
    resources) replaces the cached-feature trainable (bench/bench_sweep.py's naive baseline)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = trainable or _trainable(cfg, data)
    fs = None if run_dir.is_local else run_dir.fs
    if resume and tune.Tuner.can_restore(run_dir.path, storage_filesystem=fs):
        print(f"[sweep] resuming {run_dir}", flush=True)
        tuner = tune.Tuner.restore(run_dir.path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
        return tuner.fit()
    mode = metric_mode(data.task.primary_metric)
    label = f"{data.task.benchmark} {len(cfg.grid.lr) * len(cfg.grid.wd)} settings"
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search(cfg.grid.lr), "wd": tune.grid_search(cfg.grid.wd)},
        tune_config=tune.TuneConfig(metric="val_primary", mode=mode, reuse_actors=True,
                                    max_concurrent_trials=cfg.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=run_dir.name, **run_dir.parent().ray_storage(), verbose=0,
            callbacks=[SweepProgress(label, cfg.features.progress_every_s, mode)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1)))
    return tuner.fit()


def best_result(grid: Any, primary_metric: str) -> Any:
    """The trial whose LAST reported val primary metric is best: Tune's ``get_best_result`` (scope "last"; NaN /
    inf values are never chosen; ties go to the first trial in grid order). Raises when that trial has no head to
    test (it errored, or no trial reported a finite value)."""
    errors = [str(r.error)[:200] for r in grid if r.error is not None]
    try:
        best = grid.get_best_result(metric="val_primary", mode=metric_mode(primary_metric), scope="last")
    except RuntimeError as e:
        raise RuntimeError(f"no trial finished with a finite val {primary_metric}: {errors}") from e
    val = (best.metrics or {}).get("val_primary")
    if best.error is not None or best.checkpoint is None or val is None or not np.isfinite(val):
        raise RuntimeError(f"no trial finished with a finite val {primary_metric} and a head checkpoint: {errors}")
    return best


# ------------------------------------------------------------------------------------------------- driver
def _backbone_dir(backbone: str) -> str:
    """Tune dir name of a backbone: its label, plus a hash of the full spec when the label shortened it."""
    label = backbone_label(backbone)
    suffix = "" if label == backbone else "-" + hashlib.sha1(backbone.encode()).hexdigest()[:8]
    return slug(label) + suffix


def _parent_name(run_dir: StoragePath, backbone: str, tag: str, resume: bool) -> str:
    """The parent run name: kept in ``<run dir>/sweep.json`` so a resumed sweep re-opens the same runs."""
    meta = run_dir / "sweep.json"
    if resume and meta.is_file():
        return str(json.loads(meta.read_text())["parent_run_name"])
    run_dir.rmtree()  # a fresh (non-resumed) sweep starts from an empty Tune directory
    run_dir.mkdir()
    name = f"{backbone_label(backbone)}|{tag}|{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    meta.write_text(json.dumps({"parent_run_name": name}))
    return name


def _sample_arrays(samples: list[Sample]) -> dict[str, np.ndarray]:
    """Which sample each prediction row is (for plots and error analysis): id, source file, time when set."""
    out = {"sample_id": np.asarray([s.sample_id for s in samples]).astype(str),
           "source": np.asarray([s.source for s in samples]).astype(str)}
    if samples and all(s.time_s is not None for s in samples):
        out["time_s"] = np.asarray([s.time_s for s in samples], dtype=np.float64)
    return out


def select_and_test(data: SweepData, spec: BenchmarkSpec, grid: Any, run_dir: StoragePath,
                    local_dir: Path) -> tuple[Any, dict[str, float], Path]:
    """The best trial by VAL primary metric, its head evaluated once on test → (trial, test metrics, npz path).
    The npz also holds the benchmark's class names (``classes``), so plots drawn from it later can name them. It is
    written in ``local_dir`` and copied to ``run_dir`` when that is a bucket."""
    best = best_result(grid, spec.primary_metric)
    with best.checkpoint.as_directory() as ckpt_dir:   # local storage: no copy (to_directory() leaked /tmp copies)
        head, std = load_head(data.task, ckpt_dir)
    tokens = data.tokens["test"]
    test, arrays = evaluate_head(data.task, head, lambda r: torch.from_numpy(np.asarray(tokens[r])),
                                 data.splits["test"], std)
    if len(data.test_samples) == len(data.splits["test"].labels):
        arrays = {**arrays, **_sample_arrays(data.test_samples)}
    if spec.classes:
        arrays["classes"] = np.asarray(spec.classes).astype(str)
    npz = local_dir / PREDICTIONS_ARTIFACT
    np.savez(npz, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as its allow_pickle flag
    if not run_dir.is_local:
        (run_dir / PREDICTIONS_ARTIFACT).upload(npz)
    return best, test, npz


def _summaries(grid: Any) -> list[TrialSummary]:
    return [TrialSummary(lr=float(r.config["lr"]), wd=float(r.config["wd"]),
                         status="ERROR" if r.error is not None else "TERMINATED",
                         val_primary=(r.metrics or {}).get("val_primary"),
                         epochs=int((r.metrics or {}).get("epoch", -1)) + 1) for r in grid]


def _params(cfg: SweepConfig, job: ProbeJob, data: SweepData) -> dict[str, Any]:
    return {"backbone": job.backbone, "backbone_identity": data.backbone_identity, "benchmark": job.spec.name,
            "data_root": str(job.root), "fold": job.fold, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "probe": cfg.probe.model_dump(), "features": cfg.features.model_dump(),
            "few_shot": cfg.few_shot.model_dump(), "grid": {"lr": str(cfg.grid.lr), "wd": str(cfg.grid.wd)},
            "cache_keys": data.cache_keys, "primary_metric": job.spec.primary_metric}


def run_job(cfg: SweepConfig, job: ProbeJob, *, resume: bool = False) -> SweepResult:
    """The whole sweep of one planned job (module docstring). Starts a local Ray if none is running."""
    t0 = time.time()
    if not ray.is_initialized():
        ray.init()
    spec = job.spec
    data = prepare(cfg, job)
    run_dir = cfg.storage_path() / slug(cfg.experiment) / f"{_backbone_dir(job.backbone)}__{slug(job.tag)}"
    parent_name = _parent_name(run_dir, job.backbone, job.tag, resume)
    uri = resolve_tracking_uri(cfg.tracking_uri)
    ensure_experiment(uri, cfg.experiment)  # on the driver, before anything else writes
    tags = {BENCHMARK_TAG: spec.name, BACKBONE_TAG: job.backbone, TASK_TAG: spec.task,
            **({FOLD_TAG: str(job.fold)} if job.fold is not None else {})}
    parent, _ = start_or_resume_run(uri, cfg.experiment, parent_name, tags=tags)
    grid = run_tuner(cfg, data, run_dir, resume)
    local_dir = run_dir.local_path() if run_dir.is_local else Path(tempfile.mkdtemp(prefix="surgmotion-sweep-"))
    best, test, npz = select_and_test(data, spec, grid, run_dir, local_dir)
    result = SweepResult(
        backbone=job.backbone, benchmark=spec.name, fold=job.fold, primary_metric=spec.primary_metric,
        mode=metric_mode(spec.primary_metric), best_lr=float(best.config["lr"]), best_wd=float(best.config["wd"]),
        val_metrics={k[4:]: float(v) for k, v in best.metrics.items() if k.startswith("val_") and k != "val_primary"},
        test_metrics={k: float(v) for k, v in test.items()}, parent_run_id=parent, trials=_summaries(grid),
        seconds=round(time.time() - t0, 2))
    log_trials(uri, parent, parent_name, cfg.experiment, grid)
    log_parent(uri, parent, result, _params(cfg, job, data), npz)
    log_plots(uri, parent, npz, spec)
    (run_dir / "result.json").write_text(result.model_dump_json(indent=1))
    if not run_dir.is_local:
        shutil.rmtree(local_dir, ignore_errors=True)
    return result


def run_probe_sweep(cfg: SweepConfig, backbone: str, benchmark: str | BenchmarkSpec, *, resume: bool = False,
                    root: str | Path | None = None, fold: int | None = None) -> SweepResult:
    """One (backbone, benchmark[, fold]) sweep without a whole config plan: ``plan_job`` + :func:`run_job`."""
    return run_job(cfg, plan_job(cfg, backbone, benchmark, root, fold), resume=resume)


def run_sweeps(cfg: SweepConfig, *, resume: bool = False, plan: SweepPlan | None = None) -> list[SweepResult]:
    """Every job of the config's plan (:func:`orchestrator.probe.plan.plan_sweeps`; made here unless given). The plan
    is made first (nothing starts Ray before it succeeds), then a local Ray without the dashboard starts if none is
    running."""
    plan = plan or plan_sweeps(cfg)
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the sweep prints its own progress lines
    results = []
    for i, job in enumerate(plan.jobs, 1):
        where = "" if job.fold is None else f" fold {job.fold}"
        print(f"[sweep] {i}/{len(plan.jobs)}: {backbone_label(job.backbone)} on {job.spec.name}{where}", flush=True)
        results.append(run_job(cfg, job, resume=resume))
    return results


def summary_table(results: list[SweepResult]) -> str:
    """benchmark × backbone → primary test metric and the best lr / wd."""
    rows = [("benchmark", "backbone", "metric", "test", "val", "best lr", "best wd")]
    for r in results:
        bench = r.benchmark + ("" if r.fold is None else f" (fold {r.fold})")
        rows.append((bench, backbone_label(r.backbone), f"{r.primary_metric} ({r.mode})",
                     f"{r.test_metrics.get(r.primary_metric, float('nan')):.4f}",
                     f"{r.val_metrics.get(r.primary_metric, float('nan')):.4f}", f"{r.best_lr:g}", f"{r.best_wd:g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
