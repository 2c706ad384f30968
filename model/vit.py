"""Video ViT encoder: tubelet patch embedding, fixed 3D sin-cos positions for any (T, H, W) grid, SDPA blocks.

Token order is time-major: token ``t * (Hp * Wp) + h * Wp + w`` is tubelet ``t`` at patch row ``h``, column ``w``.
A *tube* is one spatial patch position ``s = h * Wp + w`` across all ``Tt = T / tubelet`` time steps.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import partial

import torch
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ViTSize(BaseModel):
    """Encoder width/depth/heads plus the default (narrow) predictor that goes with it."""

    model_config = ConfigDict(frozen=True)

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    pred_dim: int = 384
    pred_depth: int = 12
    pred_heads: int = 12


VIT_SIZES: dict[str, ViTSize] = {
    # Small encoders get a narrow predictor with head dim 64 (CPU SDPA runs head dim 32 at under half the
    # FLOP rate of 64); ViT-L and larger use V-JEPA's predictor (depth 12, width 384, 12 heads).
    "tiny": ViTSize(embed_dim=192, depth=12, num_heads=3, pred_dim=128, pred_depth=6, pred_heads=2),
    "small": ViTSize(embed_dim=384, depth=12, num_heads=6, pred_dim=192, pred_depth=6, pred_heads=3),
    "base": ViTSize(embed_dim=768, depth=12, num_heads=12, pred_dim=384, pred_depth=12, pred_heads=6),
    "large": ViTSize(embed_dim=1024, depth=24, num_heads=16),
    "huge": ViTSize(embed_dim=1280, depth=32, num_heads=16),
    "giant": ViTSize(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),
}


class EncoderConfig(BaseModel):
    """Video ViT encoder settings (sizes: tiny/small/base/large/huge/giant, see ``VIT_SIZES``)."""

    model_config = ConfigDict(extra="forbid")

    size: str = Field("tiny", description="one of VIT_SIZES")
    patch_size: int = Field(16, gt=0)
    tubelet_size: int = Field(2, gt=0)
    in_chans: int = 3
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)
    activation_checkpointing: bool = False

    def resolved(self) -> ViTSize:
        if self.size not in VIT_SIZES:
            raise ValueError(f"encoder.size: unknown size {self.size!r}; choose from {sorted(VIT_SIZES)}")
        return VIT_SIZES[self.size]


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[len(pos), dim] table: first half sin, second half cos, frequencies 1 / 10000^(i / (dim/2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos.to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_pos_embed_3d(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """Fixed 3D sin-cos positions for a (Tt, Hp, Wp) token grid → float32 ``[Tt*Hp*Wp, dim]`` (time-major).

    Each axis gets ``2*ceil(dim/6)`` channels (equal frequency budget per axis); the concatenation
    [t, h, w] is truncated to ``dim``.
    """
    tt, hp, wp = grid
    axis_dim = 2 * math.ceil(dim / 6)
    if axis_dim % 2:
        axis_dim += 1
    gt, gh, gw = torch.meshgrid(torch.arange(tt), torch.arange(hp), torch.arange(wp), indexing="ij")
    table = torch.cat(
        [_sincos_1d(axis_dim, g.reshape(-1)) for g in (gt, gh, gw)], dim=1
    )
    return table[:, :dim].to(torch.float32)


class PosEmbedCache(nn.Module):
    """Regenerates (and caches) the sin-cos table for whatever grid the input has, so T=16 and T=64 share weights."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self._cache: dict[tuple[int, int, int], torch.Tensor] = {}

    def forward(self, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (int(grid[0]), int(grid[1]), int(grid[2]))
        table = self._cache.get(key)
        if table is None or table.device != device:
            table = sincos_pos_embed_3d(self.dim, key).to(device)
            self._cache[key] = table
        return table.to(dtype)


def init_vit_weights(module: nn.Module, blocks: Iterable[nn.Module]) -> None:
    """trunc_normal(0.02) for Linear/Conv, zero bias, unit LayerNorm; then rescale each block's output projections
    by 1/sqrt(2*layer) (depth-scaled init as in V-JEPA)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for layer, blk in enumerate(blocks, start=1):
        assert isinstance(blk, Block)
        for proj in (blk.attn.proj, blk.mlp.fc2):
            assert isinstance(proj, nn.Linear)
            proj.weight.data.div_(math.sqrt(2.0 * layer))


def make_blocks(dim: int, depth: int, heads: int, mlp_ratio: float, drop_path: float) -> nn.ModuleList:
    """Pre-norm transformer blocks (timm ``Block``: fused SDPA attention, GELU MLP, qkv bias, LN eps 1e-6)."""
    rates = torch.linspace(0, drop_path, depth).tolist()
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList(
        Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r,
              norm_layer=norm)  # type: ignore[arg-type]  # timm calls it as a factory; a partial is one
        for r in rates
    )


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    for blk in blocks:
        if use_checkpoint and x.requires_grad:
            x = checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


class VideoViT(nn.Module):
    """Video ViT: ``[B, C, T, H, W]`` → tokens ``[B, N, D]`` (after the final LayerNorm).

    ``token_idx`` (``[B, K]``, time-major token indices) keeps only those tokens after adding positions, so the
    context encoder runs on visible tokens only.
    """

    def __init__(self, cfg: EncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EncoderConfig()
        size = self.cfg.resolved()
        self.embed_dim = size.embed_dim
        self.num_heads = size.num_heads
        self.patch_size = self.cfg.patch_size
        self.tubelet_size = self.cfg.tubelet_size
        kernel = (self.tubelet_size, self.patch_size, self.patch_size)
        self.patch_embed = nn.Conv3d(self.cfg.in_chans, size.embed_dim, kernel_size=kernel, stride=kernel)
        self.pos_embed = PosEmbedCache(size.embed_dim)
        self.blocks = make_blocks(size.embed_dim, size.depth, size.num_heads, size.mlp_ratio, self.cfg.drop_path)
        self.norm = nn.LayerNorm(size.embed_dim, eps=1e-6)
        init_vit_weights(self, self.blocks)

    def grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (Tt, Hp, Wp) for a clip of shape ``[B, C, T, H, W]``."""
        t, h, w = clip_shape[-3:]
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"clip T×H×W = {t}×{h}×{w} must be divisible by tubelet {self.tubelet_size} and patch {self.patch_size}"
            )
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """Patch-embed and add positions: ``[B, C, T, H, W]`` → ``[B, N, D]``."""
        grid = self.grid(clip.shape)
        x = rearrange(self.patch_embed(clip), "b d t h w -> b (t h w) d")
        return x + self.pos_embed(grid, x.device, x.dtype)

    def forward(self, clip: torch.Tensor, token_idx: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(clip)
        if token_idx is not None:
            x = gather_tokens(x, token_idx)
        x = run_blocks(self.blocks, x, self.cfg.activation_checkpointing and self.training)
        return self.norm(x)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b, k]]`` for ``x`` ``[B, N, D]`` and ``idx`` ``[B, K]`` → ``[B, K, D]``."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def normalize_clip(clip01: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Per-channel normalisation of a ``[B, C, T, H, W]`` clip with values in [0, 1]."""
    m = torch.tensor(mean, device=clip01.device, dtype=clip01.dtype).view(1, -1, 1, 1, 1)
    s = torch.tensor(std, device=clip01.device, dtype=clip01.dtype).view(1, -1, 1, 1, 1)
    return (clip01 - m) / s


def uint8_clip_to_float(frames: torch.Tensor) -> torch.Tensor:
    """``[B, T, H, W, C]`` uint8 (the data pipeline's layout) → ``[B, C, T, H, W]`` float in [0, 1]."""
    return rearrange(frames, "b t h w c -> b c t h w").float().div_(255.0)


__all__ = [
    "EncoderConfig", "VIT_SIZES", "ViTSize", "VideoViT", "gather_tokens", "normalize_clip", "sincos_pos_embed_3d",
    "uint8_clip_to_float", "make_blocks", "run_blocks", "init_vit_weights", "PosEmbedCache",
]
