"""Tube masking: a masked tube is one spatial patch position masked in every frame.

The mask ratio ρ ~ U(lo, hi) is drawn once per batch, so every clip has the same number of masked tubes
``Nm = round(ρ · S)`` (clamped to [1, S-1]) and no truncation is needed to batch the indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TubeMask:
    """Visible/masked tube indices and the matching time-major tubelet-token indices.

    ``visible_tubes`` ``[B, Nv]`` and ``masked_tubes`` ``[B, Nm]`` are sorted, disjoint and together cover
    ``range(S)`` (S = Hp·Wp). ``visible_tokens`` ``[B, Tt·Nv]`` lists token ``t·S + s`` for t in 0..Tt-1 (outer)
    and s in ``visible_tubes`` (inner), likewise ``masked_tokens`` ``[B, Tt·Nm]``, so
    ``rearrange(x, "b (t m) d -> b t m d", t=Tt)`` recovers per-tube token stacks.
    """

    visible_tubes: torch.Tensor
    masked_tubes: torch.Tensor
    visible_tokens: torch.Tensor
    masked_tokens: torch.Tensor
    num_time: int
    ratio: float

    @property
    def num_tubes(self) -> int:
        return self.visible_tubes.shape[1] + self.masked_tubes.shape[1]

    def to(self, device: torch.device | str) -> TubeMask:
        return TubeMask(self.visible_tubes.to(device), self.masked_tubes.to(device), self.visible_tokens.to(device),
                        self.masked_tokens.to(device), self.num_time, self.ratio)


def tubes_to_tokens(tubes: torch.Tensor, num_tubes: int, num_time: int) -> torch.Tensor:
    """Tube indices ``[B, K]`` → token indices ``[B, num_time·K]`` (time-major, tubes inner)."""
    offsets = torch.arange(num_time, device=tubes.device).view(1, num_time, 1) * num_tubes
    return (offsets + tubes.unsqueeze(1)).reshape(tubes.shape[0], -1)


def sample_tube_mask(
    batch_size: int,
    grid: tuple[int, int, int],
    ratio_range: tuple[float, float] = (0.75, 0.95),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> TubeMask:
    """Draw one tube mask per clip with a single ratio ρ ~ U(ratio_range) for the whole batch.

    ``grid`` is the token grid (Tt, Hp, Wp). Sampling happens on CPU with ``generator`` (reproducible), then the
    indices move to ``device``.
    """
    lo, hi = ratio_range
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"mask ratio range must satisfy 0 < lo <= hi < 1, got {ratio_range}")
    tt, hp, wp = grid
    s = hp * wp
    if s < 2:
        raise ValueError(f"need at least 2 tubes to mask, grid {grid} has {s}")
    ratio = lo + (hi - lo) * torch.rand((), generator=generator).item()
    n_masked = min(max(int(round(ratio * s)), 1), s - 1)
    perm = torch.argsort(torch.rand(batch_size, s, generator=generator), dim=1)
    masked = perm[:, :n_masked].sort(dim=1).values
    visible = perm[:, n_masked:].sort(dim=1).values
    masked, visible = masked.to(device), visible.to(device)
    return TubeMask(
        visible_tubes=visible,
        masked_tubes=masked,
        visible_tokens=tubes_to_tokens(visible, s, tt),
        masked_tokens=tubes_to_tokens(masked, s, tt),
        num_time=tt,
        ratio=ratio,
    )
