"""The sweep plan, made once before Ray starts: every backbone spec checked, every benchmark resolved under its root,
the folds expanded, and every benchmark's samples read ONCE into one :class:`ProbeJob` per (backbone,
benchmark[, fold]). :func:`orchestrator.probe.sweep.run_job` consumes a job. Nothing here imports Ray."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from model.backbones.factory import check_spec
from orchestrator.benchmarks.registry import load_samples, with_fold
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample
from orchestrator.config import ConfigError
from orchestrator.probe.config import SweepConfig, few_shot, folds_for, resolve_benchmark

SPLITS = ("train", "val", "test")


class ProbeJob(BaseModel):
    """One sweep to run: a backbone on a benchmark (fold resolved), with its samples already read (few-shot
    applied to train)."""

    model_config = ConfigDict(frozen=True)

    backbone: str
    spec: BenchmarkSpec
    root: Path
    fold: int | None = None
    samples: dict[str, list[Sample]]

    @property
    def tag(self) -> str:
        """``<benchmark>`` or ``<benchmark>|fold<k>``: the sweep's name part."""
        return self.spec.name if self.fold is None else f"{self.spec.name}|fold{self.fold}"


class SweepPlan(BaseModel):
    """Every job of a config, backbones outer (one backbone's features at a time)."""

    jobs: list[ProbeJob] = Field(default_factory=list)

    def folds(self) -> dict[str, list[int | None]]:
        """The folds swept per benchmark (``[None]``: its default split)."""
        out: dict[str, list[int | None]] = {}
        for job in self.jobs:
            out.setdefault(job.spec.name, [])
            if job.fold not in out[job.spec.name]:
                out[job.spec.name].append(job.fold)
        return out


def read_samples(cfg: SweepConfig, spec: BenchmarkSpec, root: Path) -> dict[str, list[Sample]]:
    """The samples of every split (malformed annotations fail here, naming the file), few-shot on train."""
    samples = {split: load_samples(spec, root, split) for split in SPLITS}
    samples["train"] = few_shot(samples["train"], cfg.few_shot.fraction, cfg.few_shot.seed)
    return samples


def plan_job(cfg: SweepConfig, backbone: str, benchmark: str | BenchmarkSpec, root: str | Path | None = None,
             fold: int | None = None) -> ProbeJob:
    """One job: a benchmark given by name (resolved under its root) or as a spec, its samples read now."""
    name = benchmark if isinstance(benchmark, str) else benchmark.name
    root_path = Path(root) if root is not None else cfg.root_for(name)
    spec = resolve_benchmark(benchmark, root_path) if isinstance(benchmark, str) else benchmark
    spec = with_fold(spec, fold) if fold is not None else spec
    return ProbeJob(backbone=backbone, spec=spec, root=root_path, fold=fold,
                    samples=read_samples(cfg, spec, root_path))


def plan_sweeps(cfg: SweepConfig) -> SweepPlan:
    """Check the config and read every benchmark's samples once (nothing here starts Ray): malformed backbone
    specs, unknown benchmarks, missing data roots and annotation files, fold options that apply to no benchmark
    all fail here with one message."""
    if not cfg.backbones:
        raise ConfigError("backbones: empty; give at least one backbone spec (random:tiny, surgmotion:<dir>, ...)")
    for bb in cfg.backbones:
        check_spec(bb)
    for name in cfg.benchmarks:
        if not cfg.root_for(name).exists():
            raise BenchmarkError(f"{name}: data root {cfg.root_for(name)} does not exist")
    specs = {name: resolve_benchmark(name, cfg.root_for(name)) for name in cfg.benchmarks}
    folds = {name: folds_for(cfg, spec) for name, spec in specs.items()}
    if cfg.folds and all(f == [None] for f in folds.values()):
        raise ConfigError(f"folds: {cfg.folds!r} given but none of {cfg.benchmarks} has folds")
    read: dict[tuple[str, int | None], tuple[BenchmarkSpec, dict[str, list[Sample]]]] = {}
    for name, spec in specs.items():
        for fold in folds[name]:
            fspec = with_fold(spec, fold) if fold is not None else spec
            read[name, fold] = fspec, read_samples(cfg, fspec, cfg.root_for(name))
    return SweepPlan(jobs=[ProbeJob(backbone=bb, spec=read[name, fold][0], root=cfg.root_for(name), fold=fold,
                                    samples=read[name, fold][1])
                           for bb in cfg.backbones for name in cfg.benchmarks for fold in folds[name]])
