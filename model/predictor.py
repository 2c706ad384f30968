"""Narrow ViT predictor: context tokens + mask tokens m_i = q + e_i → predicted latents of the masked tokens."""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from model.vit import PosEmbedCache, PosEmbedKind, ViTSize, init_vit_weights, make_blocks, make_rope, run_blocks

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
    pos_embed: PosEmbedKind | None = Field(None, description="null = the encoder's (model.encoder.pos_embed)")


class Predictor(nn.Module):
    """``forward(ctx [B, Kv, D], visible_tokens [B, Kv], masked_tokens [B, Km], grid)`` → ``[B, Km, D]``.

    Context tokens are projected to the predictor width and get the predictor's sin-cos position of their token;
    each masked token starts as the shared learnable query q plus its position e_i. With RoPE (``pos_embed`` rope /
    rope_interleaved, V-JEPA 2's predictor) nothing is added: every attention rotates queries and keys by the
    tokens' grid positions (``visible_tokens`` then ``masked_tokens``). Only the masked outputs are returned,
    projected back to the encoder width.
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
        self.pos_kind: PosEmbedKind = self.cfg.pos_embed or (size.pos_embed if size else "sincos")
        self.rope = make_rope(self.pos_kind, dim, heads)
        self.pos_embed = None if self.rope is not None else PosEmbedCache(dim)
        self.blocks = make_blocks(dim, depth, heads, self.cfg.mlp_ratio, self.cfg.drop_path, rope=self.rope is not None)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, encoder_dim)
        init_vit_weights(self, self.blocks)

    def forward(self, ctx: torch.Tensor, visible_tokens: torch.Tensor, masked_tokens: torch.Tensor,
                grid: tuple[int, int, int]) -> torch.Tensor:
        x = self.embed(ctx)
        m = self.query.to(x.dtype).expand(x.shape[0], masked_tokens.shape[1], -1)
        rope = None
        if self.pos_embed is not None:
            pos = self.pos_embed(grid, x.device, x.dtype)  # [N, Dp]
            x, m = x + pos[visible_tokens], m + pos[masked_tokens]
        elif self.rope is not None:
            rope = self.rope.tables(grid, torch.cat([visible_tokens, masked_tokens], dim=1), x.device, x.dtype)
        z = torch.cat([x, m], dim=1)
        z = run_blocks(self.blocks, z, self.cfg.activation_checkpointing and self.training, rope)
        z = self.norm(z[:, x.shape[1]:])
        return self.proj(z)
