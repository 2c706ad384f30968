"""Pydantic configs for every job, YAML loading and ``--set key=value`` overrides.

Errors a user can cause (missing file, malformed YAML, unknown key, wrong type) raise :class:`ConfigError` with
one message naming the file and the dotted key; the CLIs turn it into exit code 2.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.jepa import SurgMotionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


def work_dir() -> Path:
    """Where runs, caches and the MLflow database live: ``$SURGMOTION_HOME`` or ``~/.surgmotion``.

    Absolute on purpose: ``ray job submit`` runs the driver in a temporary copy of the working dir."""
    return Path(os.environ.get("SURGMOTION_HOME", Path.home() / ".surgmotion")).expanduser().resolve()


def slug(text: str, max_len: int = 120) -> str:
    """``text`` as a file/folder-name part: runs of characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:max_len]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticCorpusConfig(Strict):
    """The embedded default corpus, generated on first use into ``<work dir>/synthetic/``."""

    seed: int = 0
    videos_per_source: int = Field(2, gt=0)
    seconds: float = Field(30.0, gt=0)
    width: int = Field(320, gt=0)
    height: int = Field(256, gt=0)


class DataConfig(Strict):
    """Corpus, clip sampling and decoding."""

    manifest: str | None = Field(None, description="corpus manifest YAML; null = the synthetic corpus")
    synthetic: SyntheticCorpusConfig = Field(default_factory=SyntheticCorpusConfig)
    frames: int = Field(16, gt=0, description="T: frames per clip")
    sample_fps: float = Field(1.0, gt=0, description="clip frames are 1/sample_fps seconds apart")
    clip_stride_s: float = Field(1.0, gt=0, description="spacing of candidate clip starts within a video")
    short_side: int = Field(256, gt=0)
    crop: int = Field(224, gt=0)
    samples_per_epoch: int | None = Field(None, gt=0, description="null = total seconds of video / (T / fps)")
    decode_tasks: int = Field(2, gt=0, description="parallel decode tasks in the Ray Data pipeline")
    decode_cpus: float = Field(0.5, gt=0, description="CPUs reserved per decode task")
    decode_batch: int = Field(4, gt=0, description="clips per map_batches call")
    prefetch_batches: int = Field(2, ge=0)
    read_block_rows: int = Field(64, gt=0, description="clip descriptors per read task")

    @model_validator(mode="after")
    def _crop_fits(self) -> "DataConfig":
        if self.crop > self.short_side:
            raise ValueError(f"data.crop ({self.crop}) must be <= data.short_side ({self.short_side})")
        return self


class OptimConfig(Strict):
    """AdamW with per-step linear warm-up then cosine decay (paper §4.1 defaults)."""

    lr: float = Field(5e-4, gt=0)
    final_lr: float = Field(1e-6, ge=0)
    weight_decay: float = Field(0.04, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = Field(None, ge=0, description="null = warmup_fraction of the total steps")
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    grad_clip: float | None = Field(10.0, gt=0, description="max grad norm; null = no clipping")
    fused: bool | None = Field(None, description="fused AdamW; null = on CUDA only")


class ScalingSection(Strict):
    """Ray Train resources: fractional CPUs let Ray Data decode on small machines."""

    num_workers: int = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"
    cpus_per_worker: float = Field(0.5, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)
    torch_threads: int | None = Field(None, gt=0, description="torch intra-op threads per worker (CPU)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="extra Ray resources per worker, e.g. a custom node resource that pins "
        "workers to labelled nodes; merged over the CPU/GPU amounts above")


class TrainConfig(Strict):
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimiser steps (overrides epochs)")
    global_batch: int = Field(4, gt=0, description="clips per optimiser step over all workers")
    batch_per_worker: int = Field(2, gt=0, description="clips per forward pass on one worker")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    checkpoint_every: int = Field(50, gt=0, description="optimiser steps between checkpoints")
    keep_checkpoints: int = Field(2, gt=0)
    max_failures: int = Field(0, ge=0)
    log_every: int = Field(1, gt=0)
    init_from: str | None = Field(None, description="stage-1 checkpoint dir / model.pt path, or an MLflow run id")
    stop_after_step: int | None = Field(None, gt=0, description="checkpoint and stop at this step as if interrupted "
                                        "(the schedule still spans the whole run); re-run to continue")


class TrackingConfig(Strict):
    experiment: str = "surgmotion-pretrain"
    tracking_uri: str | None = Field(None, description="null = $MLFLOW_TRACKING_URI or sqlite:///<work dir>/mlflow.db")
    registered_model: str | None = Field("surgmotion-encoder", description="MLflow registered model that gets a new "
                                         "version per finished run (its checkpoint + config); null = none")


class RayConfig(Strict):
    address: str | None = Field(None, description="null = connect to RAY_ADDRESS / the job's cluster, else start one")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a locally started Ray (null = all)")
    storage_path: str | None = Field(None, description="null = <work dir>/ray_results (use shared storage on clusters)")


class PretrainConfig(Strict):
    """Everything ``experiments/pretrain.py`` needs."""

    name: str = "surgmotion-demo"
    model: SurgMotionConfig = Field(default_factory=SurgMotionConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _batches(self) -> "PretrainConfig":
        per_step = self.train.batch_per_worker * self.scaling.num_workers
        if self.train.global_batch % per_step:
            raise ValueError(
                f"train.global_batch ({self.train.global_batch}) must be a multiple of train.batch_per_worker × "
                f"scaling.num_workers ({per_step}) so gradient accumulation reaches it exactly")
        return self

    @property
    def accum_steps(self) -> int:
        return self.train.global_batch // (self.train.batch_per_worker * self.scaling.num_workers)


M = TypeVar("M", bound=BaseModel)


def parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars/lists: ``3`` → int, ``1e-3`` → float, ``[1, 2]`` → list, ``null``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply ``a.b.c=value`` to nested dict ``data`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"{source}: expected key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = parse_value(value)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after")) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Load ``path`` (or defaults), apply ``key=value`` overrides, validate with ``model``."""
    source = str(path) if path else "<defaults>"
    data = read_yaml(Path(path)) if path else {}
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source + (" (with --set overrides)" if overrides else ""))
                          ) from None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → {"a.b.c": value} (lists and tuples kept as values)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
