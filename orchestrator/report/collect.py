"""Read what the report shows from MLflow: sweep parent runs (one per backbone × benchmark, the newest FINISHED
one wins) and pretraining runs (tag ``surgmotion.job = pretrain``).

A benchmark's task family and metric list come from the registry (``resolve_benchmark``: registered,
``synthetic-*`` and ``generic-*`` names). A benchmark the registry does not know (e.g. a spec built in code) is
placed by its logged ``test_*`` metric names (:func:`infer_task`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from orchestrator.config import ConfigError
from orchestrator.tracking import client

FAMILIES = ("phase", "action", "triplet", "skill", "segmentation", "depth")
PARENT_TAG = "mlflow.parentRunId"
BENCHMARK_TAG = "surgmotion.benchmark"
BACKBONE_TAG = "surgmotion.backbone"
JOB_TAG = "surgmotion.job"
TASK_TAG = "surgmotion.task"
FOLD_TAG = "surgmotion.fold"
PRETRAIN_CURVES = ("loss", "loss_motion", "loss_st", "loss_var", "loss_cov", "lr", "clips_per_s")


class ReportError(ConfigError):
    """Bad report input (unknown experiment, nothing to report); the CLI exits with code 2."""


@dataclass
class BenchmarkInfo:
    """What the tables need to know about one benchmark."""

    name: str
    task: str
    metrics: list[str]
    primary_metric: str
    classes: list[str] = field(default_factory=list)
    order: int = 10_000  # registry position (tables list benchmarks in registry order)
    registered: bool = True


@dataclass
class SweepEntry:
    """One sweep parent run (the newest FINISHED one of its backbone × benchmark)."""

    run_id: str
    experiment: str
    backbone: str
    benchmark: BenchmarkInfo
    test: dict[str, float]
    val: dict[str, float]
    best_lr: str
    best_wd: str
    start_time: int
    has_predictions: bool = True


@dataclass
class PretrainEntry:
    """One pretraining run."""

    run_id: str
    experiment: str
    name: str
    status: str
    start_time: int
    last: dict[str, float]  # latest value of each logged metric
    steps: int = 0          # highest step with a logged ``loss``


@dataclass
class Collected:
    sweeps: list[SweepEntry]
    pretrain: list[PretrainEntry]
    notes: list[str]  # things skipped, printed and shown in the report


# ------------------------------------------------------------------------------------------- benchmarks
def _metric_sets() -> dict[str, list[str]]:
    from orchestrator.benchmarks import registry as R

    return {"phase": R.PHASE_METRICS, "action": R.ACTION_METRICS, "triplet": R.TRIPLET_METRICS,
            "skill": R.SKILL_METRICS, "segmentation": R.SEGMENTATION_METRICS, "depth": R.DEPTH_METRICS}


def infer_task(metric_names: list[str] | set[str]) -> str | None:
    """The task family whose metric set best overlaps ``metric_names`` (ties: the smaller set), or None."""
    names = set(metric_names)
    best, best_score = None, 0.0
    for task, metrics in _metric_sets().items():
        common = len(names & set(metrics))
        score = common / len(names | set(metrics)) if common else 0.0
        if score > best_score:
            best, best_score = task, score
    return best


def benchmark_info(name: str, metric_names: list[str], task_hint: str | None = None) -> BenchmarkInfo:
    """Registry spec of ``name``; for an unknown name, the family from ``task_hint`` or the metric names."""
    from orchestrator.benchmarks.registry import list_benchmarks
    from orchestrator.benchmarks.spec import BenchmarkError
    from orchestrator.sweep import resolve_benchmark

    try:
        spec = resolve_benchmark(name)
    except BenchmarkError:
        spec = None
    if spec is not None:
        from orchestrator.benchmarks.adapters.generic import CLASSES_FROM_ROOT

        classes = [] if spec.classes == [CLASSES_FROM_ROOT] else list(spec.classes)  # names live beside the data
        order = list_benchmarks()
        pos = order.index(spec.name) if spec.name in order else len(order) + (0 if "synthetic" in name else 100)
        return BenchmarkInfo(spec.name, spec.task, list(spec.metrics), spec.primary_metric, classes, pos)
    task = task_hint if task_hint in FAMILIES else infer_task(metric_names)
    if task is None:
        raise ReportError(f"benchmark {name!r}: not in the registry and its metrics {sorted(metric_names)} match "
                          f"no task family")
    canonical = _metric_sets()[task]
    metrics = [m for m in canonical if m in metric_names] + sorted(set(metric_names) - set(canonical))
    return BenchmarkInfo(name, task, metrics, metrics[0] if metrics else "", [], 20_000, registered=False)


# ------------------------------------------------------------------------------------------------- runs

def experiment_ids(tracking_uri: str, names: list[str], required: bool) -> dict[str, str]:
    """name → experiment id. A missing experiment is an error when ``required`` (the user named it), else it is
    left out; no experiment at all is always an error."""
    c = client(tracking_uri)
    found: dict[str, str] = {}
    missing = []
    for name in names:
        exp = c.get_experiment_by_name(name)
        if exp is None:
            missing.append(name)
        else:
            found[name] = exp.experiment_id
    if missing and (required or not found):
        known = sorted(e.name for e in c.search_experiments())
        raise ReportError(f"no MLflow experiment named {', '.join(map(repr, missing))} at {tracking_uri} "
                          f"(known: {known or 'none'}); run a pretraining or a probe sweep first, or pass "
                          f"--experiment / --tracking-uri")
    return found


def iter_runs(tracking_uri: str, experiment_id: str) -> Iterator[Any]:
    """Every run of the experiment, newest first (all pages)."""
    c = client(tracking_uri)
    token = None
    while True:
        page = c.search_runs([experiment_id], max_results=1000, order_by=["attributes.start_time DESC"],
                             page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix) and k != prefix + "primary"}


def sweep_entry(run: Any, experiment: str, infos: dict[str, BenchmarkInfo]) -> SweepEntry:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    backbone, bench, fold = run_key(run)
    test = _prefixed(metrics, "test_")
    if bench not in infos:
        infos[bench] = benchmark_info(bench, list(test), tags.get(TASK_TAG))
    info = replace(infos[bench], name=f"{infos[bench].name} fold {fold}") if fold else infos[bench]
    return SweepEntry(run_id=run.info.run_id, experiment=experiment,
                      backbone=backbone, benchmark=info,
                      test=test, val=_prefixed(metrics, "val_"), best_lr=params.get("best_lr", ""),
                      best_wd=params.get("best_wd", ""), start_time=int(run.info.start_time or 0))


def pretrain_entry(run: Any, experiment: str, tracking_uri: str) -> PretrainEntry:
    history = client(tracking_uri).get_metric_history(run.info.run_id, "loss")
    return PretrainEntry(run_id=run.info.run_id, experiment=experiment,
                         name=run.data.tags.get("mlflow.runName") or run.info.run_name or run.info.run_id,
                         status=run.info.status, start_time=int(run.info.start_time or 0),
                         last={k: float(v) for k, v in run.data.metrics.items()},
                         steps=max((m.step for m in history), default=0))


def run_key(run: Any) -> tuple[str, str, str]:
    """(backbone spec, benchmark name, fold; "" = the benchmark's default split) of a sweep parent run: each fold
    of a ``--fold`` sweep is its own table column."""
    tags, params = run.data.tags, run.data.params
    backbone = tags.get(BACKBONE_TAG) or params.get("backbone", "?")
    return backbone, tags.get(BENCHMARK_TAG) or params.get("benchmark", "?"), tags.get(FOLD_TAG, "")


def is_sweep_parent(run: Any) -> bool:
    tags = run.data.tags
    return PARENT_TAG not in tags and (BENCHMARK_TAG in tags or "benchmark" in run.data.params)


def collect(tracking_uri: str, experiments: list[str], required: bool = True) -> Collected:
    """Sweep parents (newest FINISHED per backbone × benchmark) and pretraining runs of ``experiments``."""
    ids = experiment_ids(tracking_uri, experiments, required)
    notes = [f"experiment {n!r} not found (skipped)" for n in experiments if n not in ids]
    sweeps: dict[tuple[str, str, str], SweepEntry] = {}
    unfinished: dict[tuple[str, str, str], str] = {}
    pretrain: list[PretrainEntry] = []
    infos: dict[str, BenchmarkInfo] = {}
    for name, exp_id in ids.items():
        for run in iter_runs(tracking_uri, exp_id):
            if run.data.tags.get(JOB_TAG) == "pretrain":
                pretrain.append(pretrain_entry(run, name, tracking_uri))
            elif is_sweep_parent(run):
                key = run_key(run)
                if run.info.status != "FINISHED":
                    unfinished.setdefault(key, run.info.status)
                elif key not in sweeps or sweeps[key].start_time < int(run.info.start_time or 0):
                    sweeps[key] = sweep_entry(run, name, infos)
    for key, status in unfinished.items():
        if key not in sweeps:
            where = f" fold {key[2]}" if key[2] else ""
            notes.append(f"sweep {key[0]} × {key[1]}{where}: no FINISHED parent run (newest is {status}); "
                         "not in tables")
    ordered = sorted(sweeps.values(), key=lambda e: (FAMILIES.index(e.benchmark.task), e.benchmark.order,
                                                      e.benchmark.name, e.backbone))
    pretrain.sort(key=lambda p: -p.start_time)
    return Collected(ordered, pretrain, notes)


def backbone_labels(backbones: list[str]) -> dict[str, str]:
    """Backbone spec → row label (``orchestrator.sweep.backbone_label``); the full spec where labels collide."""
    from orchestrator.sweep import backbone_label

    short = {b: backbone_label(b) for b in backbones}
    counts: dict[str, int] = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {b: (lab if counts[lab] == 1 else b) for b, lab in short.items()}
