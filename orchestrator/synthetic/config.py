"""What a synthetic corpus is: :class:`SyntheticConfig` and the generator version, which together determine every
output byte (the corpus digest)."""
from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SourceName = Literal["synth_laparoscopy", "synth_colonoscopy", "synth_cataract"]
GENERATOR_VERSION = 2
"""Part of every corpus digest: bump it when the bytes a config produces change."""


class SyntheticConfig(BaseModel):
    """What to generate. Everything here (and GENERATOR_VERSION) determines the output bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    sources: tuple[SourceName, ...] = ("synth_laparoscopy", "synth_colonoscopy", "synth_cataract")
    videos_per_source: int = Field(2, ge=1, le=10_000)
    seconds: float = Field(30.0, gt=0, le=3600)
    width: int = Field(320, ge=32, le=4096)
    height: int = Field(256, ge=32, le=4096)
    fps: int = Field(25, ge=1, le=120)
    crf: int = Field(23, ge=0, le=51)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "veryfast"

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even for yuv420p, got {self.width}x{self.height}")
        if self.n_frames < 4:
            raise ValueError(f"seconds * fps must give at least 4 frames, got {self.n_frames}")
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise ValueError(f"sources must be non-empty and distinct, got {self.sources}")
        return self

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    def digest(self) -> str:
        return hashlib.sha256(f"v{GENERATOR_VERSION}:{self.model_dump_json()}".encode()).hexdigest()[:16]
