"""Frozen-feature probe heads and their losses (pure PyTorch + timm layers + einops).

**AttentiveProbe** (V-JEPA 2 ``AttentiveClassifier`` with ``num_probe_blocks=4``): ``depth - 1`` pre-norm
self-attention blocks (timm ``Block`` via :func:`model.vit.make_blocks`, SDPA attention, no positional encoding)
over *all* feature tokens, then one cross-attention block in which a single learnable query ``[1, 1, D]``
(trunc_normal 0.02) attends to ``LN(x)``: ``q = q + xattn(q, LN(x)); q = q + MLP(LN(q))``. The cross-attention
has q and kv projections (with bias) and **no output projection**; there is **no final LayerNorm** before the
linear head. Init: trunc_normal(0.02) for every Linear, zero biases, unit LayerNorms, then the output
projections of block ``l`` (1-based; the cross block is ``l = depth``) are divided by ``sqrt(2 l)``.
Heads: 16 by default; when 16 does not divide ``D`` the probe uses the **largest divisor of D that is <= the
requested number** (e.g. D=200 → 10 heads, D=192 → 16 heads, D=1408 → 16 heads) — see :func:`resolve_num_heads`.
Without positional encoding the probe is invariant to the order of its input tokens.

**Dense heads** (segmentation / depth). The default is the multi-level DPT-style :class:`model.dpt.DPTProbe`
(tokens of 4 encoder depths, progressive upsampling; its module docstring). **DenseProbe** (``dense_head="conv"``,
last-layer tokens on the patch-token grid), architecture::

    tokens [B, Tt*Hp*Wp, D] → LayerNorm(D) → mean over the Tt time steps → [B, D, Hp, Wp]
      → Conv3x3(D → hidden) → GroupNorm(8) → GELU
      → Conv3x3(hidden → hidden) → GroupNorm(8) → GELU
      → Conv1x1(hidden → out_channels) → bilinear upsampling to the image size (H, W) → [B, out_channels, H, W]
      (→ softplus when ``positive=True``: depth maps are strictly positive)

Segmentation uses 1-channel logits (``positive=False``), depth a 1-channel positive output (``positive=True``).

Losses and outputs: :mod:`model.probe_losses`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from timm.layers import Mlp, trunc_normal_
from torch import nn

from model.dpt import DPTProbe
from model.tasks import CLASS_TASKS, DENSE_TASKS, check_task
from model.vit import init_vit_weights, make_blocks, run_blocks

DenseHead = Literal["dpt", "conv"]


def resolve_num_heads(embed_dim: int, num_heads: int = 16) -> int:
    """The largest divisor of ``embed_dim`` that is ``<= num_heads`` (so ``embed_dim % heads == 0``)."""
    if embed_dim <= 0 or num_heads <= 0:
        raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim}, {num_heads}")
    return max(h for h in range(1, min(num_heads, embed_dim) + 1) if embed_dim % h == 0)


class CrossAttention(nn.Module):
    """Multi-head cross-attention with q and kv projections and **no** output projection (V-JEPA's probe)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide dim {dim}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(q), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(x), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return rearrange(out, "b h n d -> b n (h d)")


class CrossAttentionBlock(nn.Module):
    """``q = q + xattn(q, LN(x)); q = q + MLP(LN(q))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.xattn = CrossAttention(dim, num_heads)
        self.norm2 = norm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentiveProbe(nn.Module):
    """Attentive probe: tokens ``[B, N, D]`` → logits ``[B, num_outputs]`` (see the module docstring).

    ``depth`` counts all blocks: ``depth - 1`` self-attention blocks + 1 cross-attention block (depth=1 is V-JEPA 1's
    probe). ``num_heads`` is resolved with :func:`resolve_num_heads`; the value used is ``self.num_heads``.
    Input tokens of another dtype (e.g. fp16 cached features) are cast to the probe's parameter dtype.
    """

    def __init__(self, embed_dim: int, num_outputs: int, depth: int = 4, num_heads: int = 16,
                 mlp_ratio: float = 4.0, activation_checkpointing: bool = False) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"AttentiveProbe depth must be >= 1 (the cross-attention block), got {depth}")
        if num_outputs < 1:
            raise ValueError(f"AttentiveProbe num_outputs must be >= 1, got {num_outputs}")
        self.embed_dim = embed_dim
        self.num_outputs = num_outputs
        self.depth = depth
        self.num_heads = resolve_num_heads(embed_dim, num_heads)
        self.activation_checkpointing = activation_checkpointing
        self.blocks = make_blocks(embed_dim, depth - 1, self.num_heads, mlp_ratio, 0.0)
        self.query = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.cross_block = CrossAttentionBlock(embed_dim, self.num_heads, mlp_ratio)
        self.head = nn.Linear(embed_dim, num_outputs)
        init_vit_weights(self, self.blocks)  # trunc_normal 0.02 everywhere + 1/sqrt(2l) rescale of the SA blocks
        self.cross_block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * depth))
        trunc_normal_(self.query, std=0.02)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, N, D]`` → pooled query ``[B, D]`` (before the linear head)."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"AttentiveProbe expects tokens [B, N, {self.embed_dim}], got {tuple(x.shape)}")
        x = x.to(self.query.dtype)
        x = run_blocks(self.blocks, x, self.activation_checkpointing and self.training)
        q = self.cross_block(self.query.expand(x.shape[0], -1, -1), x)
        return q[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))


class DenseProbe(nn.Module):
    """Dense head on the patch-token grid: ``[B, Tt*Hp*Wp, D]`` → ``[B, out_channels, H, W]``.

    ``grid`` is the backbone's token grid ``(Tt, Hp, Wp)`` (``Backbone.token_grid``); ``image_size`` ``(H, W)`` is the
    default output size (``forward(..., out_size=...)`` overrides it; with neither, the output stays at
    ``(Hp, Wp)``). ``positive=True`` applies softplus (depth). Architecture in the module docstring.
    """

    def __init__(self, embed_dim: int, out_channels: int, grid: Sequence[int],
                 image_size: int | Sequence[int] | None = None, hidden_dim: int = 128, positive: bool = False) -> None:
        super().__init__()
        if len(grid) != 3:
            raise ValueError(f"DenseProbe grid must be (Tt, Hp, Wp), got {grid}")
        self.embed_dim = embed_dim
        self.out_channels = out_channels
        self.grid = tuple(int(g) for g in grid)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.positive = positive
        groups = math.gcd(8, hidden_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder = nn.Sequential(
            nn.Conv2d(embed_dim, hidden_dim, 3, padding=1), nn.GroupNorm(groups, hidden_dim), nn.GELU(),
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1), nn.GroupNorm(groups, hidden_dim), nn.GELU(),
            nn.Conv2d(hidden_dim, out_channels, 1),
        )

    def forward(self, x: torch.Tensor, out_size: int | Sequence[int] | None = None) -> torch.Tensor:
        tt, hp, wp = self.grid
        if x.ndim != 3 or x.shape[1] != tt * hp * wp or x.shape[2] != self.embed_dim:
            raise ValueError(f"DenseProbe expects tokens [B, {tt * hp * wp}, {self.embed_dim}] for grid {self.grid}, "
                             f"got {tuple(x.shape)}")
        x = self.norm(x.to(self.norm.weight.dtype))
        fmap = reduce(x, "b (t h w) d -> b d h w", "mean", t=tt, h=hp, w=wp)
        y = self.decoder(fmap)
        size = out_size if out_size is not None else self.image_size
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return F.softplus(y) if self.positive else y


def head_outputs(task: str, num_classes: int) -> int:
    """Number of head outputs for a task: C for phase/action/triplet, 1 for skill/segmentation/depth."""
    if check_task(task, "probe task") in CLASS_TASKS:
        if num_classes < 1:
            raise ValueError(f"{task}: needs at least one class, got {num_classes}")
        return num_classes
    return 1


def build_probe(task: str, embed_dim: int, num_classes: int = 0, *, grid: Sequence[int] | None = None,
                image_size: int | Sequence[int] | None = None, depth: int = 4, num_heads: int = 16,
                mlp_ratio: float = 4.0, hidden_dim: int = 128, levels: int = 1,
                dense_head: DenseHead = "dpt") -> nn.Module:
    """The probe for a task: :class:`AttentiveProbe` for clip-level tasks; for dense ones the multi-level
    :class:`model.dpt.DPTProbe` over ``levels`` token levels (``dense_head="dpt"``) or the single-level
    :class:`DenseProbe` (``"conv"``, last-layer tokens and two convs)."""
    out = head_outputs(task, num_classes)
    if task in DENSE_TASKS:
        if grid is None:
            raise ValueError(f"{task}: a dense probe needs the backbone's token grid (Tt, Hp, Wp)")
        if dense_head == "dpt":
            return DPTProbe(embed_dim, out, grid, levels=levels, image_size=image_size, hidden_dim=hidden_dim,
                            positive=task == "depth")
        if dense_head != "conv" or levels != 1:
            raise ValueError(f"{task}: dense_head {dense_head!r} with {levels} levels (dpt: 1-4 levels; conv: 1)")
        return DenseProbe(embed_dim, out, grid, image_size=image_size, hidden_dim=hidden_dim,
                          positive=task == "depth")
    return AttentiveProbe(embed_dim, out, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
