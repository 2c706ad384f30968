"""Read what the report shows from MLflow: sweep parent runs (one per backbone × benchmark, the newest FINISHED
one wins) and pretraining runs (tag ``surgmotion.job = pretrain``).

A sweep parent carries its benchmark's task (tag ``surgmotion.task``, written by the sweep): that is its table.
A registered benchmark's metric list, primary metric, class names and table order come from the registry; any
other (a synthetic-suite or private benchmark) gets its task's metric set (:mod:`orchestrator.benchmarks.tasks`)
and the logged ``primary_metric``. A parent run without the task tag is left out with a note; the report never
guesses a task from metric names.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from model.backbones.factory import backbone_label
from model.tasks import TASKS
from orchestrator.benchmarks.adapters.generic import CLASSES_FROM_ROOT
from orchestrator.benchmarks.registry import get_benchmark, list_benchmarks
from orchestrator.benchmarks.spec import BenchmarkError
from orchestrator.benchmarks.tasks import METRICS, PRIMARY_METRIC
from orchestrator.config import ConfigError
from orchestrator.tracking import (
    BACKBONE_TAG,
    BENCHMARK_TAG,
    FOLD_TAG,
    JOB_PRETRAIN,
    JOB_TAG,
    MLFLOW_RUN_NAME_TAG,
    PARENT_TAG,
    TASK_TAG,
    client,
)


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
def benchmark_info(name: str, task: str | None, primary_metric: str | None = None) -> BenchmarkInfo:
    """What the tables need about benchmark ``name`` whose sweep logged ``task`` (module docstring)."""
    try:
        spec = get_benchmark(name)
    except BenchmarkError:
        spec = None
    if spec is not None:
        classes = [] if spec.classes == [CLASSES_FROM_ROOT] else list(spec.classes)  # names live beside the data
        return BenchmarkInfo(spec.name, spec.task, list(spec.metrics), spec.primary_metric, classes,
                             list_benchmarks().index(spec.name))
    if task not in TASKS:
        raise ReportError(f"benchmark {name!r}: its sweep run has no valid {TASK_TAG} tag ({task!r}); expected one "
                          f"of {list(TASKS)}")
    metrics = list(METRICS[task])
    primary = primary_metric if primary_metric in metrics else PRIMARY_METRIC[task]
    order = len(list_benchmarks()) + (0 if name.startswith("synthetic-") else 100)
    return BenchmarkInfo(name, task, metrics, primary, [], order, registered=False)


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
        infos[bench] = benchmark_info(bench, tags.get(TASK_TAG), params.get("primary_metric"))
    info = replace(infos[bench], name=f"{infos[bench].name} fold {fold}") if fold else infos[bench]
    return SweepEntry(run_id=run.info.run_id, experiment=experiment,
                      backbone=backbone, benchmark=info,
                      test=test, val=_prefixed(metrics, "val_"), best_lr=params.get("best_lr", ""),
                      best_wd=params.get("best_wd", ""), start_time=int(run.info.start_time or 0))


def pretrain_entry(run: Any, experiment: str, tracking_uri: str) -> PretrainEntry:
    history = client(tracking_uri).get_metric_history(run.info.run_id, "loss")
    return PretrainEntry(run_id=run.info.run_id, experiment=experiment,
                         name=run.data.tags.get(MLFLOW_RUN_NAME_TAG) or run.info.run_name or run.info.run_id,
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
            if run.data.tags.get(JOB_TAG) == JOB_PRETRAIN:
                pretrain.append(pretrain_entry(run, name, tracking_uri))
            elif is_sweep_parent(run):
                key = run_key(run)
                if run.info.status != "FINISHED":
                    unfinished.setdefault(key, run.info.status)
                elif key not in sweeps or sweeps[key].start_time < int(run.info.start_time or 0):
                    try:
                        sweeps[key] = sweep_entry(run, name, infos)
                    except ReportError as err:  # a run this report cannot place: left out, said why
                        notes.append(f"sweep run {run.info.run_id}: {err}; not in tables")
    for key, status in unfinished.items():
        if key not in sweeps:
            where = f" fold {key[2]}" if key[2] else ""
            notes.append(f"sweep {key[0]} × {key[1]}{where}: no FINISHED parent run (newest is {status}); "
                         "not in tables")
    ordered = sorted(sweeps.values(), key=lambda e: (TASKS.index(e.benchmark.task), e.benchmark.order,
                                                      e.benchmark.name, e.backbone))
    pretrain.sort(key=lambda p: -p.start_time)
    return Collected(ordered, pretrain, notes)


def backbone_labels(backbones: list[str]) -> dict[str, str]:
    """Backbone spec → row label (:func:`model.backbones.factory.backbone_label`); the full spec where labels
    collide."""
    short = {b: backbone_label(b) for b in backbones}
    counts: dict[str, int] = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {b: (lab if counts[lab] == 1 else b) for b, lab in short.items()}
