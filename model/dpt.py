"""Multi-level dense head (DPT-style): tokens from L encoder depths → a progressively upsampled map.

Input: tokens ``[B, L*N, D]``, level-major (``Backbone.forward_levels``: the outputs of L evenly spaced blocks,
shallowest first, the last one the encoder's output), each level on the token grid ``(Tt, Hp, Wp)``.

1. **Reassemble** (per level): LayerNorm, mean over the Tt token time steps → ``[B, D, Hp, Wp]``, 1×1 conv to
   ``hidden`` channels, then resampled by the level's factor — shallow levels to fine maps, the deepest to a coarse
   one, as DPT does (Ranftl et al. 2021, ×4 / ×2 / ×1 / ×½ for four levels; :func:`level_factors`) — and a 3×3 conv.
2. **Fuse** coarse to fine: the running map is upsampled (bilinear) to the next finer level's size and added to that
   level's map after a residual conv unit; another residual unit follows each fusion.
3. **Head**: 3×3 conv, ×2 bilinear upsampling, 3×3 conv + GELU, 1×1 conv to the outputs; finally resized to the
   requested output size. ``positive`` applies softplus (depth).

The finest map is 4× the token grid for four levels (16×16 for a 64 px crop with patch 16), then ×2 in the head.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn


def level_factors(levels: int) -> list[float]:
    """Resampling factor of each level, shallowest first: DPT's ×4, ×2, ×1, ×½ for four levels (the last ``levels``
    of that ladder extended upwards; one level stays at ×1)."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if levels == 1:
        return [1.0]
    return [2.0 ** (levels - 2 - i) for i in range(levels)]


def _resample(channels: int, factor: float) -> nn.Module:
    if factor >= 2:
        k = int(factor)
        return nn.ConvTranspose2d(channels, channels, kernel_size=k, stride=k)
    if factor == 1:
        return nn.Identity()
    if factor == 0.5:
        return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
    raise ValueError(f"unsupported resampling factor {factor} (4, 2, 1 or 0.5 per level; at most 4 levels)")


class ResidualConvUnit(nn.Module):
    """``x + conv(gelu(conv(gelu(x))))`` with 3×3 convs (DPT's residual unit)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class DPTProbe(nn.Module):
    """Dense head over ``levels`` token levels: ``[B, levels*Tt*Hp*Wp, D]`` → ``[B, out_channels, H, W]``.
    Arguments as :class:`model.probes.DenseProbe`, plus ``levels``. Architecture in the module docstring."""

    def __init__(self, embed_dim: int, out_channels: int, grid: Sequence[int], levels: int = 4,
                 image_size: int | Sequence[int] | None = None, hidden_dim: int = 128, positive: bool = False) -> None:
        super().__init__()
        if len(grid) != 3:
            raise ValueError(f"DPTProbe grid must be (Tt, Hp, Wp), got {grid}")
        if levels > 4:
            raise ValueError(f"DPTProbe takes at most 4 levels, got {levels}")
        self.embed_dim, self.out_channels, self.levels = embed_dim, out_channels, levels
        self.grid = tuple(int(g) for g in grid)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.positive = positive
        self.factors = level_factors(levels)
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim, eps=1e-6) for _ in range(levels))
        self.reassemble = nn.ModuleList(
            nn.Sequential(nn.Conv2d(embed_dim, hidden_dim, 1), _resample(hidden_dim, f),
                          nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1))
            for f in self.factors)
        self.skip_units = nn.ModuleList(ResidualConvUnit(hidden_dim) for _ in range(levels))
        self.fuse_units = nn.ModuleList(ResidualConvUnit(hidden_dim) for _ in range(levels))
        half = max(hidden_dim // 2, 1)
        self.head_in = nn.Conv2d(hidden_dim, half, 3, padding=1)
        self.head_out = nn.Sequential(nn.Conv2d(half, half, 3, padding=1), nn.GELU(), nn.Conv2d(half, out_channels, 1))

    def level_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The reassembled map of each level, shallowest first (``[B, hidden, h_i, w_i]``)."""
        tt, hp, wp = self.grid
        n = tt * hp * wp
        if x.ndim != 3 or x.shape[1] != self.levels * n or x.shape[2] != self.embed_dim:
            raise ValueError(f"DPTProbe expects tokens [B, {self.levels}*{n}, {self.embed_dim}] ({self.levels} levels "
                             f"of grid {self.grid}), got {tuple(x.shape)}")
        x = x.to(self.head_in.weight.dtype)
        maps = []
        for i in range(self.levels):
            tokens = self.norms[i](x[:, i * n:(i + 1) * n])
            fmap = reduce(tokens, "b (t h w) d -> b d h w", "mean", t=tt, h=hp, w=wp)
            maps.append(self.reassemble[i](fmap))
        return maps

    def forward(self, x: torch.Tensor, out_size: int | Sequence[int] | None = None) -> torch.Tensor:
        maps = self.level_maps(x)
        path = self.fuse_units[-1](self.skip_units[-1](maps[-1]))
        for i in range(self.levels - 2, -1, -1):
            path = F.interpolate(path, size=maps[i].shape[-2:], mode="bilinear", align_corners=False)
            path = self.fuse_units[i](path + self.skip_units[i](maps[i]))
        y = self.head_in(path)
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.head_out(y)
        size = out_size if out_size is not None else self.image_size
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return F.softplus(y) if self.positive else y

