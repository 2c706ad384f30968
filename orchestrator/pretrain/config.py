"""``PretrainConfig``: everything ``experiments/pretrain.py`` needs (every key in docs/configs.md)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from model.jepa import SurgMotionConfig
from orchestrator.config import Strict
from orchestrator.data.config import DataConfig


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
    iterations_per_epoch: int | None = Field(
        None, gt=0, description="an epoch is this many optimiser steps (V-JEPA's 'ipe', 300 in its and the authors' "
        "configs); null = one pass over data.samples_per_epoch clips")
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
    storage_path: str | None = Field(None, description="checkpoints and Train results: a local path, file://, "
                                     "s3://bucket/prefix or gs://bucket/prefix (null = <work dir>/ray_results; on "
                                     "clusters a bucket or a shared mount)")


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
    def _batches(self) -> PretrainConfig:
        per_step = self.train.batch_per_worker * self.scaling.num_workers
        if self.train.global_batch % per_step:
            raise ValueError(
                f"train.global_batch ({self.train.global_batch}) must be a multiple of train.batch_per_worker × "
                f"scaling.num_workers ({per_step}) so gradient accumulation reaches it exactly")
        return self

    @property
    def accum_steps(self) -> int:
        return self.train.global_batch // (self.train.batch_per_worker * self.scaling.num_workers)
