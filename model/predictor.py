"""Narrow ViT predictor: context tokens + mask tokens m_i = q + e_i → predicted latents of the masked tokens."""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from model.vit import PosEmbedCache, ViTSize, init_vit_weights, make_blocks, run_blocks

DEFAULT_DEPTH, DEFAULT_DIM, DEFAULT_HEADS = 12, 384, 12  # V-JEPA's narrow predictor


class PredictorConfig(BaseModel):
    """Predictor width/depth/heads. ``None`` takes the default paired with the encoder size when one is given
    (``VIT_SIZES``: ViT-L and larger depth 12, width 384, 12 heads; smaller encoders a proportionally narrower
    predictor with head dim 64), otherwise depth 12, width 384, 12 heads."""

    model_config = ConfigDict(extra="forbid")

    depth: int | None = Field(None, gt=0)
    embed_dim: int | None = Field(None, gt=0)
    num_heads: int | None = Field(None, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)
    activation_checkpointing: bool = False


class Predictor(nn.Module):
    """``forward(ctx [B, Kv, D], visible_tokens [B, Kv], masked_tokens [B, Km], grid)`` → ``[B, Km, D]``.

    Context tokens are projected to the predictor width and get the predictor's sin-cos position of their token;
    each masked token starts as the shared learnable query q plus its position e_i. Only the masked outputs are
    returned, projected back to the encoder width.
    """

    def __init__(self, encoder_dim: int, cfg: PredictorConfig | None = None, size: ViTSize | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PredictorConfig()
        dim = self.cfg.embed_dim or (size.pred_dim if size else DEFAULT_DIM)
        depth = self.cfg.depth or (size.pred_depth if size else DEFAULT_DEPTH)
        heads = self.cfg.num_heads or (size.pred_heads if size else DEFAULT_HEADS)
        if dim % heads:
            raise ValueError(f"predictor.embed_dim {dim} must be divisible by predictor.num_heads {heads}")
        self.embed_dim = dim
        self.embed = nn.Linear(encoder_dim, dim)
        self.query = nn.Parameter(torch.zeros(dim))
        self.pos_embed = PosEmbedCache(dim)
        self.blocks = make_blocks(dim, depth, heads, self.cfg.mlp_ratio, self.cfg.drop_path)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, encoder_dim)
        init_vit_weights(self, self.blocks)

    def forward(self, ctx: torch.Tensor, visible_tokens: torch.Tensor, masked_tokens: torch.Tensor,
                grid: tuple[int, int, int]) -> torch.Tensor:
        x = self.embed(ctx)
        pos = self.pos_embed(grid, x.device, x.dtype)  # [N, Dp]
        x = x + pos[visible_tokens]
        m = self.query.to(x.dtype) + pos[masked_tokens]
        z = torch.cat([x, m], dim=1)
        z = run_blocks(self.blocks, z, self.cfg.activation_checkpointing and self.training)
        z = self.norm(z[:, x.shape[1]:])
        return self.proj(z)
