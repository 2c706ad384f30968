"""Sweep configuration and results (experiments/configs/sweep/*.yaml; every key in docs/sweeps.md), what the driver
keeps of a backbone (:class:`BackboneInfo`), benchmark name resolution and the few-shot subset. The sweep itself:
:mod:`orchestrator.probe.sweep`."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.probes import DenseHead
from model.tasks import DENSE_TASKS
from orchestrator.benchmarks.registry import GENERIC_TEMPLATES, get_benchmark, list_folds, resolve_spec
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample
from orchestrator.config import CONFIG_DIR, work_dir
from orchestrator.data.augment import AugmentConfig
from orchestrator.data.views import Preprocessing
from orchestrator.storage import StoragePath, resolve_storage
from orchestrator.synthetic.specs import find_synthetic

DEFAULT_CONFIG = CONFIG_DIR / "sweep" / "default.yaml"


class FeatureConfig(BaseModel):
    """Preprocessing + extraction resources (only the preprocessing part enters the cache key) + the augmented
    train views (``train_views`` > 0; docs/sweeps.md "Probe augmentation")."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(8, gt=0, description="T frames per clip")
    sample_fps: float | None = Field(None, gt=0, description="clip frame rate; null = the benchmark's sample_fps")
    short_side: int = Field(72, gt=0)
    crop: int = Field(64, gt=0)
    view: Literal["center"] = "center"
    batch_size: int = Field(8, gt=0, description="clips per map_batches call")
    actors: int = Field(1, gt=0, description="extraction actor pool size")
    cpus_per_actor: float = Field(1.0, gt=0)
    progress_every_s: float = Field(10.0, gt=0)
    train_views: int = Field(0, ge=0, description="augmented views of every TRAIN sample cached besides the centre "
                             "one (0: none, clip-level tasks only)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="settings of those views")
    dense_levels: int = Field(4, ge=1, le=4, description="segmentation / depth: tokens of this many evenly spaced "
                              "encoder blocks for the multi-level head (1: the last layer only; backbones without "
                              "block access give 1)")

    def levels(self, spec: BenchmarkSpec, info: BackboneInfo) -> int:
        """Token levels cached for ``spec``: ``dense_levels`` for dense tasks where the backbone exposes its blocks
        (``info.blocks``), else 1 (clip-level tasks always: the attentive probe reads the last layer)."""
        if spec.task not in DENSE_TASKS or info.blocks is None:
            return 1
        return min(self.dense_levels, info.blocks)

    def preprocessing(self, spec: BenchmarkSpec, view_index: int = 0) -> Preprocessing:
        """The preprocessing of ``spec``'s samples (``sample_fps`` null: the benchmark's): the centre view (0) or
        augmented view ``view_index`` (1..``train_views``)."""
        fps = self.sample_fps or spec.sample_fps
        if not view_index:
            return Preprocessing(frames=self.frames, sample_fps=fps, short_side=self.short_side, crop=self.crop,
                                 view=self.view)
        if not 1 <= view_index <= self.train_views:
            raise ValueError(f"view {view_index}: features.train_views is {self.train_views}")
        return Preprocessing(frames=self.frames, sample_fps=fps, short_side=self.short_side, crop=self.crop,
                             view="augmented", augment=self.augment, view_index=view_index)

    def views(self, spec: BenchmarkSpec, split: str) -> list[int]:
        """The view indices cached for ``split``: 0 (centre) and, for TRAIN of clip-level tasks, 1..train_views.
        Dense tasks (segmentation / depth) keep the centre view only (their targets are not augmented)."""
        if split != "train" or spec.task in DENSE_TASKS:
            return [0]
        return list(range(self.train_views + 1))


class BackboneInfo(BaseModel):
    """What the driver needs from a backbone without keeping it: identity, token grid, width."""

    spec: str
    identity: str
    grid: list[int]
    embed_dim: int
    blocks: int | None = None   # encoder blocks multi-level features can read (None: last layer only)


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: list[float] = Field(default_factory=lambda: [5e-3, 1e-3, 3e-4, 1e-4], min_length=1)
    wd: list[float] = Field(default_factory=lambda: [0.01, 0.1, 0.4, 0.8], min_length=1)


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, description="attentive probe blocks (depth-1 self-attention + 1 cross)")
    heads: int = Field(16, ge=1)
    dense_head: DenseHead = Field("dpt", description="segmentation / depth head: dpt (multi-level, progressive "
                                  "upsampling) or conv (last-layer tokens, two convs)")
    dense_hidden: int = Field(128, ge=8, description="channels of the dense head")


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
    folds: list[int] | Literal["all"] = Field(
        default_factory=list, description="folds of fold-split benchmarks (JIGSAWS, CholecT50, SA160); 'all' = every "
        "fold; empty = the benchmark's default fold. Benchmarks without folds run once")
    seed: int = 0
    experiment: str = "probe-sweeps"
    tracking_uri: str | None = None
    cache_dir: str | None = Field(None, description="feature cache: a local path or shared mount, or s3:// / gs:// "
                                  "(mirrored into <work dir>/feature_cache_mirror; null: <work dir>/feature_cache)")
    storage_dir: str | None = Field(None, description="Ray Tune storage and sweep outputs: a local path, s3:// or "
                                    "gs:// (null: <work dir>/sweeps)")

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if self.features.crop > self.features.short_side:
            raise ValueError(f"features.crop {self.features.crop} > features.short_side {self.features.short_side}")
        if self.probe.dense_head == "conv" and self.features.dense_levels != 1:
            raise ValueError(f"probe.dense_head 'conv' reads the last layer only: set features.dense_levels=1 (it is "
                             f"{self.features.dense_levels})")
        return self

    def cache_path(self) -> StoragePath:
        return resolve_storage(self.cache_dir or work_dir() / "feature_cache")

    def storage_path(self) -> StoragePath:
        return resolve_storage(self.storage_dir or work_dir() / "sweeps")

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
    """Outcome of one (backbone, benchmark[, fold]) sweep."""

    backbone: str
    benchmark: str
    fold: int | None = None
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


def folds_for(cfg: SweepConfig, spec: BenchmarkSpec) -> list[int | None]:
    """The folds to sweep for ``spec``: ``[None]`` (its default split) unless it is a fold benchmark and
    ``cfg.folds`` names some."""
    available = [f for fs in list_folds(spec).values() for f in fs]
    if not available or cfg.folds == []:
        return [None]
    if cfg.folds == "all":
        return list(available)
    bad = [f for f in cfg.folds if f not in available]
    if bad:
        raise BenchmarkError(f"folds: {bad} not folds of {spec.name} (folds: {list_folds(spec)})")
    return list(cfg.folds)
