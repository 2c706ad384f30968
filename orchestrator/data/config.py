"""The pretraining data section: corpus, clip sampling, decoding and the Ray Data pipeline's resources."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.config import Strict


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
    short_side: int = Field(256, gt=0, description="frames are decoded with this short side")
    crop: int = Field(224, gt=0, description="side of the square training clip")
    augment: Literal["rrc", "crop"] = Field(
        "rrc", description="rrc: random-resized crop (V-JEPA 2), resized to crop x crop; crop: a plain random crop")
    rrc_scale: tuple[float, float] = Field((0.3, 1.0), description="rrc: box area / frame area, uniform")
    rrc_aspect: tuple[float, float] = Field((0.75, 1.35), description="rrc: box width / height, log-uniform")
    hflip: bool = Field(True, description="flip the whole clip horizontally with probability 0.5")
    samples_per_epoch: int | None = Field(None, gt=0, description="null = total seconds of video / (T / fps)")
    decode_tasks: int = Field(2, gt=0, description="parallel decode tasks in the Ray Data pipeline")
    decode_cpus: float = Field(0.5, gt=0, description="CPUs reserved per decode task")
    decode_batch: int = Field(4, gt=0, description="clips per map_batches call")
    max_decode_failure_rate: float = Field(0.05, ge=0, le=1, description="abort the run when more than this share "
                                           "of a worker's last decode_failure_window clips failed to decode (1: never)")
    decode_failure_window: int = Field(200, gt=0, description="clips per worker in that window")
    prefetch_batches: int = Field(2, ge=0)
    read_block_rows: int = Field(64, gt=0, description="clip descriptors per read task")

    @model_validator(mode="after")
    def _crop_fits(self) -> DataConfig:
        if self.crop > self.short_side:
            raise ValueError(f"data.crop ({self.crop}) must be <= data.short_side ({self.short_side})")
        for name, (lo, hi) in (("rrc_scale", self.rrc_scale), ("rrc_aspect", self.rrc_aspect)):
            if not 0.0 < lo <= hi:
                raise ValueError(f"data.{name} must satisfy 0 < lo <= hi, got {(lo, hi)}")
        if self.rrc_scale[1] > 1.0:
            raise ValueError(f"data.rrc_scale must not exceed 1, got {self.rrc_scale}")
        return self
