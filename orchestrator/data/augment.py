"""Augmented TRAIN views of probe samples (the feature cache's ``train_views``; docs/sweeps.md "Probe augmentation").

One augmented view of a clip is fully determined by ``(sample id, view index, augment.seed)``
(:func:`view_seed`), so extraction is deterministic and its features can be cached like the centre view:

1. **random-resized crop** (:func:`orchestrator.data.decode.rrc_box`, torchvision's / V-JEPA 2's rule): area
   U(``scale``) of the (short-side-resized) frame, width / height log-uniform in ``aspect``; ONE box for every frame
   of the clip, resized (bilinear, antialiased) to ``crop`` × ``crop``;
2. **horizontal flip** with probability 0.5 (when ``flip``);
3. **photometric RandAugment**: ``color_ops`` distinct ops drawn from :data:`COLOR_OPS` (applied in the drawn
   order) at magnitude ``color_magnitude`` ∈ [0, 1], the same parameters for every frame. Factor ops (brightness,
   contrast, saturation, sharpness) use factor 1 ± 0.9·m (random sign, torchvision's RandAugment range),
   posterize keeps 8 − round(4·m) bits, solarize inverts pixels ≥ 255·(1 − m); autocontrast and equalize have no
   magnitude. RandAugment's geometric ops (rotate, shear, translate) are left out: the crop is the geometry.

The ops are torchvision.transforms.v2.functional's, on uint8 ``[T, 3, H, W]``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.data.decode import resize_frames, rrc_box

ColorOp = Literal["brightness", "contrast", "saturation", "sharpness", "posterize", "solarize", "autocontrast",
                  "equalize"]
COLOR_OPS: tuple[ColorOp, ...] = ("brightness", "contrast", "saturation", "sharpness", "posterize", "solarize",
                                  "autocontrast", "equalize")
FACTOR_OPS = ("brightness", "contrast", "saturation", "sharpness")


class AugmentConfig(BaseModel):
    """Settings of the augmented train views (all of them enter the cache key of those views)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: tuple[float, float] = Field((0.3, 1.0), description="crop area as a fraction of the frame: [min, max]")
    aspect: tuple[float, float] = Field((0.75, 1.35), description="crop width / height, log-uniform: [min, max]")
    flip: bool = Field(True, description="horizontal flip with probability 0.5")
    color_ops: int = Field(2, ge=0, le=len(COLOR_OPS), description="photometric RandAugment ops per view (0: none)")
    color_magnitude: float = Field(0.5, ge=0, le=1, description="RandAugment magnitude m of those ops")
    seed: int = Field(0, description="with (sample id, view index): the seed of every draw")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"augment.scale {list(self.scale)}: need 0 < min <= max <= 1")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"augment.aspect {list(self.aspect)}: need 0 < min <= max")
        return self


class ViewGeometry(NamedTuple):
    """The draws of one augmented view: crop box (on the resized frame), flip, colour ops (name, parameter)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    color: tuple[tuple[ColorOp, float], ...]


def view_seed(sample_id: str, view_index: int, seed: int) -> int:
    """A 64-bit seed from ``(sample id, view index, seed)`` (sha256: stable across processes and machines)."""
    digest = hashlib.sha256(json.dumps([sample_id, int(view_index), int(seed)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _color_param(op: ColorOp, m: float, rng: np.random.Generator) -> float:
    if op in FACTOR_OPS:
        return 1.0 + (0.9 * m if rng.random() < 0.5 else -0.9 * m)
    if op == "posterize":
        return float(8 - round(4 * m))
    if op == "solarize":
        return 255.0 * (1.0 - m)
    return 0.0


def view_geometry(height: int, width: int, aug: AugmentConfig, seed: int) -> ViewGeometry:
    """All draws of one view of a ``height`` × ``width`` frame, from ``seed`` only (see the module docstring)."""
    rng = np.random.default_rng(seed)
    top, left, h, w = rrc_box(height, width, aug.scale, aug.aspect, rng)
    flip = bool(aug.flip and rng.random() < 0.5)
    ops = [COLOR_OPS[i] for i in rng.permutation(len(COLOR_OPS))[:aug.color_ops]]
    color = tuple((op, _color_param(op, aug.color_magnitude, rng)) for op in ops)
    return ViewGeometry(top, left, h, w, flip, color)


def apply_color(frames: np.ndarray, color: tuple[tuple[ColorOp, float], ...]) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` through the colour ops in order (torchvision.transforms.v2.functional)."""
    if not color:
        return frames
    import torch  # deferred: torch (~2 s import), only augmented views need it
    import torchvision.transforms.v2.functional as TF  # deferred: torchvision, as above

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    for op, p in color:
        if op == "brightness":
            x = TF.adjust_brightness(x, p)
        elif op == "contrast":
            x = TF.adjust_contrast(x, p)
        elif op == "saturation":
            x = TF.adjust_saturation(x, p)
        elif op == "sharpness":
            x = TF.adjust_sharpness(x, p)
        elif op == "posterize":
            x = TF.posterize(x, int(p))
        elif op == "solarize":
            x = TF.solarize(x, p)
        elif op == "autocontrast":
            x = TF.autocontrast(x)
        else:
            x = TF.equalize(x)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def augment_view(frames: np.ndarray, crop: int, aug: AugmentConfig, seed: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` (short side already resized) → the augmented view ``[T, crop, crop, 3]``."""
    g = view_geometry(frames.shape[1], frames.shape[2], aug, seed)
    box = np.ascontiguousarray(frames[:, g.top:g.top + g.height, g.left:g.left + g.width])
    out = resize_frames(box, crop, crop) if box.shape[1:3] != (crop, crop) else box
    if g.flip:
        out = out[:, :, ::-1]
    return apply_color(np.ascontiguousarray(out), g.color)
