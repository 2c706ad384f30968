"""Masks over tubes: a masked tube is one spatial patch position masked in every frame.

Two generators (``MaskConfig.mode``):

- ``multiblock`` (default; V-JEPA 2's setting, as the authors' code runs it): per mask set, ``num_blocks``
  rectangles on the patch grid, each spanning the whole clip, are unioned into the masked set. One block size is
  drawn per batch and set (area ``int(S · scale)`` patches, aspect ratio h/w ~ U(aspect_ratio), so
  ``h = min(round(sqrt(area · ar)), Hp)``, ``w = min(round(sqrt(area / ar)), Wp)``); every clip draws its own block
  positions. A draw that masks every tube is drawn again. V-JEPA 2 trains with two sets per clip: 8 blocks of scale
  0.15 and 2 blocks of scale 0.7.
- ``tube`` (ablation): one ratio ρ ~ U(tube_ratio) per batch, ``round(ρ · S)`` random tubes per clip.

Batching without dropping clips: clips of a batch must share the numbers of visible and masked tubes. Where they
differ (multiblock), every clip keeps a **random** subset of the batch-minimum count of its visible tubes and of its
masked tubes (the dropped tubes are neither seen nor predicted). V-JEPA's collator keeps the first tokens in
time-major order instead, which always drops the latest frames; with tubes spanning the clip no time is favoured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator


class BlockSet(BaseModel):
    """One multi-block mask set: ``num_blocks`` rectangles of ``spatial_scale`` of the patch grid each."""

    model_config = ConfigDict(extra="forbid")

    num_blocks: int = Field(gt=0)
    spatial_scale: tuple[float, float] = Field(description="block area as a fraction of the patch grid, (lo, hi)")
    aspect_ratio: tuple[float, float] = Field((0.75, 1.5), description="block height / width, (lo, hi)")

    @model_validator(mode="after")
    def _check(self) -> BlockSet:
        lo, hi = self.spatial_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"spatial_scale must satisfy 0 < lo <= hi <= 1, got {self.spatial_scale}")
        if not 0.0 < self.aspect_ratio[0] <= self.aspect_ratio[1]:
            raise ValueError(f"aspect_ratio must satisfy 0 < lo <= hi, got {self.aspect_ratio}")
        return self


def vjepa2_sets() -> list[BlockSet]:
    """V-JEPA 2's two mask sets (every pretraining config of facebookresearch/vjepa2 and of SurgMotion)."""
    return [BlockSet(num_blocks=8, spatial_scale=(0.15, 0.15)), BlockSet(num_blocks=2, spatial_scale=(0.7, 0.7))]


class MaskConfig(BaseModel):
    """Which tubes a clip hides from the context encoder and predicts (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["multiblock", "tube"] = "multiblock"
    sets: list[BlockSet] = Field(default_factory=vjepa2_sets, min_length=1,
                                 description="multiblock: one predictor pass per set, losses averaged")
    tube_ratio: tuple[float, float] = Field((0.75, 0.95), description="tube: masked fraction ρ ~ U(lo, hi)")

    @model_validator(mode="after")
    def _check(self) -> MaskConfig:
        lo, hi = self.tube_ratio
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"tube_ratio must satisfy 0 < lo <= hi < 1, got {self.tube_ratio}")
        return self

    @property
    def num_sets(self) -> int:
        return len(self.sets) if self.mode == "multiblock" else 1


@dataclass(frozen=True)
class TubeMask:
    """Visible/masked tube indices and the matching time-major tubelet-token indices.

    ``visible_tubes`` ``[B, Nv]`` and ``masked_tubes`` ``[B, Nm]`` are sorted and disjoint (with ``tube`` masks they
    cover ``range(S)``, S = Hp·Wp). ``visible_tokens`` ``[B, Tt·Nv]`` lists token ``t·S + s`` for t in 0..Tt-1
    (outer) and s in ``visible_tubes`` (inner), likewise ``masked_tokens`` ``[B, Tt·Nm]``, so
    ``rearrange(x, "b (t m) d -> b t m d", t=Tt)`` recovers per-tube token stacks.
    """

    visible_tubes: torch.Tensor
    masked_tubes: torch.Tensor
    visible_tokens: torch.Tensor
    masked_tokens: torch.Tensor
    num_time: int
    num_tubes: int  # S, the tubes of the grid

    @property
    def masked_fraction(self) -> float:
        """Share of the grid's tubes that are predicted."""
        return self.masked_tubes.shape[1] / self.num_tubes

    @property
    def context_fraction(self) -> float:
        """Share of the grid's tubes the context encoder sees."""
        return self.visible_tubes.shape[1] / self.num_tubes

    def to(self, device: torch.device | str) -> TubeMask:
        return TubeMask(self.visible_tubes.to(device), self.masked_tubes.to(device), self.visible_tokens.to(device),
                        self.masked_tokens.to(device), self.num_time, self.num_tubes)


def tubes_to_tokens(tubes: torch.Tensor, num_tubes: int, num_time: int) -> torch.Tensor:
    """Tube indices ``[B, K]`` → token indices ``[B, num_time·K]`` (time-major, tubes inner)."""
    offsets = torch.arange(num_time, device=tubes.device).view(1, num_time, 1) * num_tubes
    return (offsets + tubes.unsqueeze(1)).reshape(tubes.shape[0], -1)


def _make_mask(visible: torch.Tensor, masked: torch.Tensor, grid: tuple[int, int, int],
               device: torch.device | str) -> TubeMask:
    tt, hp, wp = grid
    s = hp * wp
    visible, masked = visible.sort(dim=1).values.to(device), masked.sort(dim=1).values.to(device)
    return TubeMask(visible, masked, tubes_to_tokens(visible, s, tt), tubes_to_tokens(masked, s, tt), tt, s)


def _check_grid(grid: tuple[int, int, int]) -> int:
    s = grid[1] * grid[2]
    if s < 2:
        raise ValueError(f"need at least 2 tubes to mask, grid {grid} has {s}")
    return s


def sample_tube_mask(batch_size: int, grid: tuple[int, int, int], ratio_range: tuple[float, float] = (0.75, 0.95),
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> TubeMask:
    """Random tubes: one ratio ρ ~ U(ratio_range) for the whole batch, ``round(ρ·S)`` (clamped to [1, S-1]) tubes
    per clip. ``grid`` is the token grid (Tt, Hp, Wp); sampling runs on CPU with ``generator``."""
    lo, hi = ratio_range
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"mask ratio range must satisfy 0 < lo <= hi < 1, got {ratio_range}")
    s = _check_grid(grid)
    ratio = lo + (hi - lo) * torch.rand((), generator=generator).item()
    n_masked = min(max(int(round(ratio * s)), 1), s - 1)
    perm = torch.argsort(torch.rand(batch_size, s, generator=generator), dim=1)
    return _make_mask(perm[:, n_masked:], perm[:, :n_masked], grid, device)


def block_size(bs: BlockSet, hp: int, wp: int, generator: torch.Generator | None) -> tuple[int, int]:
    """(h, w) of this batch's blocks of set ``bs`` on an ``hp × wp`` patch grid (module docstring)."""
    u = torch.rand(2, generator=generator).tolist()
    scale = bs.spatial_scale[0] + (bs.spatial_scale[1] - bs.spatial_scale[0]) * u[0]
    ar = bs.aspect_ratio[0] + (bs.aspect_ratio[1] - bs.aspect_ratio[0]) * u[1]
    area = max(1, int(hp * wp * scale))
    h = max(1, min(round(math.sqrt(area * ar)), hp))
    w = max(1, min(round(math.sqrt(area / ar)), wp))
    return h, w


def block_union(bs: BlockSet, size: tuple[int, int], hp: int, wp: int, generator: torch.Generator | None,
                max_tries: int = 20) -> torch.Tensor:
    """Boolean ``[hp, wp]``: the union of ``bs.num_blocks`` blocks of ``size`` at random positions (redrawn while it
    would mask every tube)."""
    h, w = size
    for _ in range(max_tries):
        masked = torch.zeros(hp, wp, dtype=torch.bool)
        top = torch.randint(0, hp - h + 1, (bs.num_blocks,), generator=generator)
        left = torch.randint(0, wp - w + 1, (bs.num_blocks,), generator=generator)
        for t, lf in zip(top.tolist(), left.tolist()):
            masked[t:t + h, lf:lf + w] = True
        if not masked.all():
            return masked
    raise ValueError(f"{bs.num_blocks} blocks of {h}x{w} always cover the whole {hp}x{wp} grid: lower spatial_scale")


def _random_subset(idx: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    return idx[torch.randperm(len(idx), generator=generator)[:k]]


def sample_block_mask(batch_size: int, grid: tuple[int, int, int], bs: BlockSet,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> TubeMask:
    """One multi-block mask set for a batch: blocks unioned per clip, then equal counts by random subsets."""
    _, hp, wp = grid
    _check_grid(grid)
    size = block_size(bs, hp, wp, generator)
    unions = [block_union(bs, size, hp, wp, generator).flatten() for _ in range(batch_size)]
    n_masked = min(int(u.sum()) for u in unions)
    n_visible = min(int((~u).sum()) for u in unions)
    masked = torch.stack([_random_subset(u.nonzero().flatten(), n_masked, generator) for u in unions])
    visible = torch.stack([_random_subset((~u).nonzero().flatten(), n_visible, generator) for u in unions])
    return _make_mask(visible, masked, grid, device)


def sample_masks(cfg: MaskConfig, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> list[TubeMask]:
    """The batch's masks: one per multi-block set, or the single tube mask."""
    if cfg.mode == "tube":
        return [sample_tube_mask(batch_size, grid, cfg.tube_ratio, generator, device)]
    return [sample_block_mask(batch_size, grid, bs, generator, device) for bs in cfg.sets]
