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
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model.backbones import BackboneError
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample
from orchestrator.config import ConfigError, slug
from orchestrator.features import backbone_info, ensure_features
from orchestrator.sweep_config import (  # noqa: F401  (re-exported)
    DEFAULT_CONFIG, FewShotConfig, GridConfig, ProbeConfig, SweepConfig, SweepResult, TrialSummary, few_shot,
    folds_for, resolve_benchmark,
)
from orchestrator.sweep_mlflow import log_parent, log_plots, log_trials
from orchestrator.sweep_train import (
    ProbeTask,
    SplitArrays,
    cached_trainable,
    evaluate_head,
    label_array,
    load_head,
    metric_mode,
)

SPLITS = ("train", "val", "test")


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
    test_samples: list[Sample] = Field(default_factory=list)  # row order of tokens["test"] (predictions file)


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
    return SweepData(task=pt, tokens=tokens, splits=splits, cache_keys=keys, backbone_identity=info.identity,
                     test_samples=samples["test"])


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


def progress_callback(label: str, every_s: float = 10.0, mode: str = "max") -> Any:
    """A Tune callback printing one line at most every ``every_s`` seconds while trials run (Tune itself runs
    with verbose=0): trials done / running / pending and the best val primary metric so far."""
    from ray import tune

    class SweepProgress(tune.Callback):
        def __init__(self) -> None:
            self.t0 = self.last = time.monotonic()

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            now = time.monotonic()
            if now - self.last < every_s:
                return
            self.last = now
            print(f"[sweep] {label}: {progress_line(trials, mode)} ({now - self.t0:.0f} s)", flush=True)

    return SweepProgress()


def progress_line(trials: list[Any], mode: str) -> str:
    """``"3/16 trials done, 2 running, 11 pending; best val 0.4123"`` from Tune trials."""
    status = [str(t.status) for t in trials]
    vals = [float(t.last_result["val_primary"]) for t in trials
            if (t.last_result or {}).get("val_primary") is not None and np.isfinite(t.last_result["val_primary"])]
    best = (min(vals) if mode == "min" else max(vals)) if vals else float("nan")
    return (f"{sum(s in ('TERMINATED', 'ERROR') for s in status)}/{len(trials)} trials done, "
            f"{status.count('RUNNING')} running, {status.count('PENDING')} pending; best val {best:.4f}")


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
                callbacks=[progress_callback(f"{data.task.benchmark} {len(cfg.grid.lr) * len(cfg.grid.wd)} settings",
                                             cfg.features.progress_every_s, mode)],
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


# ------------------------------------------------------------------------------------------------- driver
def _rows(tokens: np.ndarray) -> Any:
    import torch

    return lambda r: torch.from_numpy(np.asarray(tokens[r]))


def _backbone_dir(backbone: str) -> str:
    """Tune dir name of a backbone: its label, plus a hash of the full spec when the label shortened it."""
    label = backbone_label(backbone)
    suffix = "" if label == backbone else "-" + hashlib.sha1(backbone.encode()).hexdigest()[:8]
    return slug(label) + suffix


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


def _sample_arrays(samples: list[Sample]) -> dict[str, np.ndarray]:
    """Which sample each prediction row is (for plots and error analysis): id, source file, time when set."""
    out = {"sample_id": np.asarray([s.sample_id for s in samples]).astype(str),
           "source": np.asarray([s.source for s in samples]).astype(str)}
    if samples and all(s.time_s is not None for s in samples):
        out["time_s"] = np.asarray([s.time_s for s in samples], dtype=np.float64)
    return out


def select_and_test(data: SweepData, spec: BenchmarkSpec, grid: Any, run_dir: Path) -> tuple[Any, dict[str, float],
                                                                                              Path]:
    """The best trial by VAL primary metric, its head evaluated once on test → (trial, test metrics, npz path)."""
    best = _best(grid, metric_mode(spec.primary_metric))
    with best.checkpoint.as_directory() as ckpt_dir:   # local storage: no copy (to_directory() leaked /tmp copies)
        head, std = load_head(data.task, ckpt_dir)
    test, arrays = evaluate_head(data.task, head, _rows(data.tokens["test"]), data.splits["test"], std)
    if len(data.test_samples) == len(data.splits["test"].labels):
        arrays = {**arrays, **_sample_arrays(data.test_samples)}
    npz = run_dir / "predictions_test.npz"
    np.savez(npz, **arrays)
    return best, test, npz


def _summaries(grid: Any) -> list[TrialSummary]:
    return [TrialSummary(lr=float(r.config["lr"]), wd=float(r.config["wd"]),
                         status="ERROR" if r.error is not None else "TERMINATED",
                         val_primary=(r.metrics or {}).get("val_primary"),
                         epochs=int((r.metrics or {}).get("epoch", -1)) + 1) for r in grid]


def _spec_for(cfg: SweepConfig, benchmark: str | BenchmarkSpec, root: str | Path | None,
              fold: int | None) -> tuple[BenchmarkSpec, Path]:
    from orchestrator.benchmarks.registry import with_fold

    name = benchmark if isinstance(benchmark, str) else benchmark.name
    root_path = Path(root) if root is not None else cfg.root_for(name)
    spec = resolve_benchmark(benchmark, root_path) if isinstance(benchmark, str) else benchmark
    return (with_fold(spec, fold) if fold is not None else spec), root_path


def run_probe_sweep(cfg: SweepConfig, backbone: str, benchmark: str | BenchmarkSpec, *, resume: bool = False,
                    root: str | Path | None = None, fold: int | None = None) -> SweepResult:
    """The whole sweep of one (backbone, benchmark[, fold]); see the module docstring."""
    import ray

    from orchestrator.tracking import ensure_experiment, resolve_tracking_uri, start_or_resume_run

    t0 = time.time()
    if not ray.is_initialized():
        ray.init()
    spec, root_path = _spec_for(cfg, benchmark, root, fold)
    data = prepare(cfg, backbone, spec, root_path)
    tag = spec.name if fold is None else f"{spec.name}|fold{fold}"
    run_dir = cfg.storage_path() / slug(cfg.experiment) / f"{_backbone_dir(backbone)}__{slug(tag)}"
    parent_name = _parent_name(run_dir, backbone, tag, resume)
    uri = resolve_tracking_uri(cfg.tracking_uri)
    ensure_experiment(uri, cfg.experiment)  # on the driver, before anything else writes
    tags = {"surgmotion.benchmark": spec.name, "surgmotion.backbone": backbone, "surgmotion.task": spec.task}
    parent, _ = start_or_resume_run(uri, cfg.experiment, parent_name,
                                    tags={**tags, **({"surgmotion.fold": str(fold)} if fold is not None else {})})
    grid = run_tuner(cfg, data, run_dir, resume)
    best, test, npz = select_and_test(data, spec, grid, run_dir)
    result = SweepResult(
        backbone=backbone, benchmark=spec.name, fold=fold, primary_metric=spec.primary_metric,
        mode=metric_mode(spec.primary_metric), best_lr=float(best.config["lr"]), best_wd=float(best.config["wd"]),
        val_metrics={k[4:]: float(v) for k, v in best.metrics.items() if k.startswith("val_") and k != "val_primary"},
        test_metrics={k: float(v) for k, v in test.items()}, parent_run_id=parent, trials=_summaries(grid),
        seconds=round(time.time() - t0, 2))
    log_trials(uri, parent, parent_name, cfg.experiment, grid)
    params = {"backbone": backbone, "backbone_identity": data.backbone_identity, "benchmark": spec.name,
              "data_root": str(root_path), "fold": fold, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
              "probe": cfg.probe.model_dump(), "features": cfg.features.model_dump(),
              "few_shot": cfg.few_shot.model_dump(), "grid": {"lr": str(cfg.grid.lr), "wd": str(cfg.grid.wd)},
              "cache_keys": data.cache_keys, "primary_metric": spec.primary_metric}
    log_parent(uri, parent, result, params, npz)
    log_plots(uri, parent, npz, spec)
    (run_dir / "result.json").write_text(result.model_dump_json(indent=1))
    return result


def _validate_benchmarks(cfg: SweepConfig) -> dict[str, list[int | None]]:
    """Every benchmark resolves, its root exists, and its annotations parse (malformed files fail here, naming
    the file, before Ray starts); fold options apply to at least one benchmark. Returns each benchmark's folds."""
    from orchestrator.benchmarks.registry import load_samples, with_fold

    for name in cfg.benchmarks:
        if not cfg.root_for(name).exists():
            raise BenchmarkError(f"{name}: data root {cfg.root_for(name)} does not exist")
    specs = {name: resolve_benchmark(name, cfg.root_for(name)) for name in cfg.benchmarks}
    folds = {name: folds_for(cfg, spec) for name, spec in specs.items()}
    if cfg.folds and all(f == [None] for f in folds.values()):
        raise ConfigError(f"folds: {cfg.folds!r} given but none of {cfg.benchmarks} has folds")
    for name, spec in specs.items():
        for split in SPLITS:
            load_samples(spec if folds[name][0] is None else with_fold(spec, folds[name][0]), cfg.root_for(name), split)
    return folds


def validate(cfg: SweepConfig) -> dict[str, list[int | None]]:
    """Fail fast (before Ray starts) on malformed backbone specs, unknown benchmarks, missing data roots and
    malformed annotation files. Returns the folds to sweep per benchmark (``[None]``: its default split)."""
    if not cfg.backbones:
        raise ConfigError("backbones: empty; give at least one backbone spec (random:tiny, surgmotion:<dir>, ...)")
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
    return _validate_benchmarks(cfg)  # last: it parses every annotation file


def run_sweeps(cfg: SweepConfig, *, resume: bool = False) -> list[SweepResult]:
    """Every (backbone, benchmark, fold) of the config, backbones outer (one backbone's features at a time).
    Validates the config first (nothing starts Ray before that), then starts a local Ray without the dashboard
    if none is running."""
    import ray

    folds = validate(cfg)
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the sweep prints its own progress lines
    jobs = [(bb, bench, fold) for bb in cfg.backbones for bench in cfg.benchmarks for fold in folds[bench]]
    results = []
    for i, (bb, bench, fold) in enumerate(jobs, 1):
        where = "" if fold is None else f" fold {fold}"
        print(f"[sweep] {i}/{len(jobs)}: {backbone_label(bb)} on {bench}{where}", flush=True)
        results.append(run_probe_sweep(cfg, bb, bench, resume=resume, fold=fold))
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
