"""Video ViT encoder: tubelet patch embedding, 3D sin-cos positions or 3D RoPE for any (T, H, W) grid, SDPA blocks.

Token order is time-major: token ``t * (Hp * Wp) + h * Wp + w`` is tubelet ``t`` at patch row ``h``, column ``w``.
A *tube* is one spatial patch position ``s = h * Wp + w`` across all ``Tt = T / tubelet`` time steps.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention, Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.rope import Rope3D, RopePairing, RopeTables, apply_rope

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PosEmbedKind = Literal["sincos", "rope", "rope_interleaved"]
ROPE_PAIRING: dict[str, RopePairing] = {"rope": "vjepa2", "rope_interleaved": "interleaved"}


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
    pos_embed: PosEmbedKind = "sincos"  # the encoder's position scheme, which its predictor follows


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
    pos_embed: PosEmbedKind = Field(
        "sincos", description="sincos: fixed 3D sin-cos table added to the tokens; rope: V-JEPA 2's 3D RoPE in "
        "every attention (their checkpoints); rope_interleaved: textbook-paired 3D RoPE (model/rope.py)")

    def resolved(self) -> ViTSize:
        """The size's dims, with this encoder's ``pos_embed`` (the predictor follows it)."""
        if self.size not in VIT_SIZES:
            raise ValueError(f"encoder.size: unknown size {self.size!r}; choose from {sorted(VIT_SIZES)}")
        return VIT_SIZES[self.size].model_copy(update={"pos_embed": self.pos_embed})


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[len(pos), dim] table: first half sin, second half cos, frequencies 1 / 10000^(i / (dim/2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos.to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_pos_embed_3d(dim: int, grid: Sequence[int], uniform_power: bool = True) -> torch.Tensor:
    """Fixed 3D sin-cos positions for a (Tt, Hp, Wp) token grid → float32 ``[Tt*Hp*Wp, dim]`` (time-major).

    Each axis gets ``2*ceil(dim/6)`` channels (equal frequency budget per axis; V-JEPA's ``uniform_power: true``,
    the table this encoder uses); the concatenation [t, h, w] is truncated to ``dim``. ``uniform_power=False``
    gives V-JEPA's other table (t: ``dim // 2``, h and w: ``dim // 4`` channels each), used only to recognise
    official checkpoints.
    """
    tt, hp, wp = grid
    axis_dim = 2 * math.ceil(dim / 6)
    if axis_dim % 2:
        axis_dim += 1
    dims = (axis_dim,) * 3 if uniform_power else (dim // 2, dim // 4, dim // 4)
    gt, gh, gw = torch.meshgrid(torch.arange(tt), torch.arange(hp), torch.arange(wp), indexing="ij")
    table = torch.cat(
        [_sincos_1d(d, g.reshape(-1)) for d, g in zip(dims, (gt, gh, gw))], dim=1
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


class RoPEAttention(Attention):
    """timm ``Attention`` (same parameters: ``qkv``, ``proj``) whose queries and keys are rotated by RoPE tables
    after the qkv split; SDPA."""

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None,  # type: ignore[override]
                attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads).unbind(0)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                             dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(rearrange(out, "b h n d -> b n (h d)")))


class RoPEBlock(Block):
    """timm ``Block`` with :class:`RoPEAttention`: the same parameter names, ``forward(x, rope)``."""

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None,  # type: ignore[override]
                attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask,
                                                   is_causal=is_causal)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def make_blocks(dim: int, depth: int, heads: int, mlp_ratio: float, drop_path: float,
                rope: bool = False) -> nn.ModuleList:
    """Pre-norm transformer blocks (timm ``Block``: fused SDPA attention, GELU MLP, qkv bias, LN eps 1e-6);
    ``rope``: :class:`RoPEBlock` (same parameters; positions enter every attention as RoPE tables)."""
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # also under a meta-device context
    norm = partial(nn.LayerNorm, eps=1e-6)
    cls = RoPEBlock if rope else Block
    extra = {"attn_layer": RoPEAttention} if rope else {}
    return nn.ModuleList(
        cls(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r,
            norm_layer=norm, **extra)  # type: ignore[arg-type]  # timm calls it as a factory; a partial is one
        for r in rates
    )


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, use_checkpoint: bool,
               rope: RopeTables | None = None) -> torch.Tensor:
    """The blocks in order (``rope``: the RoPE tables every block's attention uses)."""
    args = () if rope is None else (rope,)
    for blk in blocks:
        if use_checkpoint and x.requires_grad:
            x = checkpoint(blk, x, *args, use_reentrant=False)
        else:
            x = blk(x, *args)
    return x


def make_rope(pos_embed: PosEmbedKind, dim: int, heads: int) -> Rope3D | None:
    """The RoPE table builder for ``pos_embed`` ``rope`` / ``rope_interleaved`` (head dim ``dim // heads``)."""
    return Rope3D(dim // heads, ROPE_PAIRING[pos_embed]) if pos_embed in ROPE_PAIRING else None


class VideoViT(nn.Module):
    """Video ViT: ``[B, C, T, H, W]`` → tokens ``[B, N, D]`` (after the final LayerNorm).

    ``token_idx`` (``[B, K]``, time-major token indices) keeps only those tokens after the patch embedding (and the
    sin-cos positions), so the context encoder runs on visible tokens only; with RoPE the kept tokens' positions come
    from ``token_idx``. ``arch`` gives the dims explicitly (an official checkpoint of any size) instead of
    ``cfg.size``; ``cfg.pos_embed`` still chooses the position scheme.
    """

    def __init__(self, cfg: EncoderConfig | None = None, arch: ViTSize | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EncoderConfig()
        size = (arch or self.cfg.resolved()).model_copy(update={"pos_embed": self.cfg.pos_embed})
        self.arch = size
        self.embed_dim = size.embed_dim
        self.num_heads = size.num_heads
        self.patch_size = self.cfg.patch_size
        self.tubelet_size = self.cfg.tubelet_size
        kernel = (self.tubelet_size, self.patch_size, self.patch_size)
        self.patch_embed = nn.Conv3d(self.cfg.in_chans, size.embed_dim, kernel_size=kernel, stride=kernel)
        self.rope = make_rope(self.cfg.pos_embed, size.embed_dim, size.num_heads)
        self.pos_embed = None if self.rope is not None else PosEmbedCache(size.embed_dim)
        self.blocks = make_blocks(size.embed_dim, size.depth, size.num_heads, size.mlp_ratio, self.cfg.drop_path,
                                  rope=self.rope is not None)
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

    def patch_tokens(self, clip: torch.Tensor) -> torch.Tensor:
        """Patch embedding only: ``[B, C, T, H, W]`` → ``[B, N, D]`` (time-major)."""
        return rearrange(self.patch_embed(clip), "b d t h w -> b (t h w) d")

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """Patch-embed and add the sin-cos positions (none with RoPE): ``[B, C, T, H, W]`` → ``[B, N, D]``."""
        x = self.patch_tokens(clip)
        if self.pos_embed is None:
            return x
        return x + self.pos_embed(self.grid(clip.shape), x.device, x.dtype)

    def forward(self, clip: torch.Tensor, token_idx: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_tokens(self.embed(clip), self.grid(clip.shape), token_idx)

    def forward_tokens(self, x: torch.Tensor, grid: tuple[int, int, int],
                       token_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks + final norm on embedded tokens ``[B, N, D]`` of ``grid`` (``token_idx``: keep only those)."""
        if token_idx is not None:
            x = gather_tokens(x, token_idx)
        rope = None if self.rope is None else self.rope.tables(grid, token_idx, x.device, x.dtype)
        x = run_blocks(self.blocks, x, self.cfg.activation_checkpointing and self.training, rope)
        return self.norm(x)

    def forward_levels(self, x: torch.Tensor, grid: tuple[int, int, int], blocks: Sequence[int]) -> list[torch.Tensor]:
        """Embedded tokens ``[B, N, D]`` of ``grid`` → the final-normed tokens after each block in ``blocks``
        (0-based, increasing; the last block's equals :meth:`forward_tokens`), as DINOv2's intermediate layers."""
        if list(blocks) != sorted(set(blocks)) or not blocks or blocks[-1] >= len(self.blocks) or blocks[0] < 0:
            raise ValueError(f"blocks must be increasing indices in [0, {len(self.blocks)}), got {list(blocks)}")
        rope = None if self.rope is None else self.rope.tables(grid, None, x.device, x.dtype)
        args = () if rope is None else (rope,)
        out = []
        for i, blk in enumerate(self.blocks[:blocks[-1] + 1]):
            x = blk(x, *args)
            if i in blocks:
                out.append(self.norm(x))
        return out


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
    "uint8_clip_to_float", "make_blocks", "run_blocks", "init_vit_weights", "PosEmbedCache", "PosEmbedKind",
    "RoPEAttention", "RoPEBlock", "make_rope",
]
