"""Benchmark specifications and labelled samples: the contract between adapters, metrics and probe sweeps.

Every benchmark (real or synthetic) is described by a :class:`BenchmarkSpec` and read by an adapter function
``load(root, split, spec) -> list[Sample]`` registered under ``spec.adapter``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.tasks import CLASS_TASKS, Task
from orchestrator.benchmarks.tasks import METRICS, PRIMARY_METRIC, RELAXED_METRICS

SplitName = Literal["train", "val", "test"]


class BenchmarkError(ValueError):
    """A benchmark root, annotation file or split is missing or malformed; the message names the file and field."""


class SplitSpec(BaseModel):
    """How a benchmark's train/val/test splits are formed.

    ``kind="official"``: the dataset's own split (``ids`` lists the video/case ids of each split, or the adapter
    reads the split from the dataset's own files when ``ids`` is empty).
    ``kind="seeded_val_from_train"``: the dataset has no val split; val is a documented, seeded, video-level
    fraction of train (never a copy of test).
    ``kind="folds"``: cross-validation (e.g. JIGSAWS LOSO/LOUO); ``fold`` picks the held-out group.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["official", "seeded_val_from_train", "folds"] = "official"
    ids: dict[str, list[str]] = Field(default_factory=dict)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    fold: int | None = None
    note: str = ""


class BenchmarkSpec(BaseModel):
    """One benchmark: task type, classes in canonical order, metrics, annotation fps, splits, clip length."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task: Task
    adapter: str  # key into the adapter registry
    classes: list[str] = Field(default_factory=list)  # canonical order; class id = index
    primary_metric: str = ""  # "" = the task's (orchestrator.benchmarks.tasks.PRIMARY_METRIC)
    metrics: list[str] = Field(default_factory=list)  # empty = the task's metric set (+ RELAXED_METRICS if relaxed)
    annotation_fps: float | None = None  # fps of the annotation files on disk (phase/triplet)
    sample_fps: float = 1.0  # predictions are made at this rate
    splits: SplitSpec = Field(default_factory=SplitSpec)
    clip_frames: int = 16  # T frames (at sample_fps) fed to the backbone per prediction
    relaxed_boundary: bool = False  # Cholec80 / M2CAI16: relaxed metrics (*_relaxed) logged beside the unrelaxed
    url: str = ""
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @model_validator(mode="after")
    def _check(self) -> BenchmarkSpec:
        if self.relaxed_boundary and self.task != "phase":
            raise ValueError(f"{self.name}: relaxed_boundary applies to phase benchmarks only, not {self.task!r}")
        if not self.metrics:
            self.metrics = list(METRICS[self.task]) + (list(RELAXED_METRICS) if self.relaxed_boundary else [])
        stray = [m for m in self.metrics if m in RELAXED_METRICS and not self.relaxed_boundary]
        if stray:
            raise ValueError(f"{self.name}: metrics {stray} need relaxed_boundary=True (they are not computed)")
        if not self.primary_metric:
            self.primary_metric = PRIMARY_METRIC[self.task]
        if self.primary_metric not in self.metrics:
            raise ValueError(f"{self.name}: primary_metric {self.primary_metric!r} not in metrics {self.metrics}")
        if self.task in CLASS_TASKS and not self.classes:
            raise ValueError(f"{self.name}: task {self.task!r} needs a non-empty class list")
        return self


class Sample(BaseModel):
    """One labelled prediction point.

    - phase / triplet: ``source`` is a video file (or a folder of frames), ``time_s`` the labelled 1-fps instant;
      the clip is the ``clip_frames`` frames at ``sample_fps`` ending at ``time_s``.
    - action / skill: ``source`` is a whole (short) video, ``time_s`` is None.
    - segmentation / depth: ``source`` is an image, ``target_path`` its mask / depth map.
    ``label``: class id (phase/action), list of active class ids (triplet), float (skill), None (dense).
    """

    model_config = ConfigDict(extra="forbid")

    sample_id: str
    video_id: str
    source: str
    time_s: float | None = None
    label: int | float | list[int] | None = None
    target_path: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


Adapter = Callable[[Path, SplitName, BenchmarkSpec], list[Sample]]
_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """Decorator: register ``fn(root, split, spec) -> list[Sample]`` under ``name``."""

    def deco(fn: Adapter) -> Adapter:
        if name in _ADAPTERS and _ADAPTERS[name] is not fn:
            raise ValueError(f"adapter {name!r} registered twice")
        _ADAPTERS[name] = fn
        return fn

    return deco


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise BenchmarkError(f"unknown adapter {name!r}; known: {sorted(_ADAPTERS)}") from None


def require_path(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise one clear error naming it."""
    if not path.exists():
        raise BenchmarkError(f"{what}: {path} does not exist")
    return path
