"""3D rotary position embedding (RoPE) for the video ViT and the predictor, as V-JEPA 2 runs it.

Each attention head's ``head_dim`` channels are split into three chunks of ``a = 2 * ((head_dim // 3) // 2)``
channels — frame, row and column — and the remaining ``head_dim - 3a`` channels are left unrotated (head dim 64:
20 + 20 + 20 + 4; head dim 32: 10 + 10 + 10 + 2). A token's position comes from its time-major index ``i`` in the
``(Tt, Hp, Wp)`` grid: ``t = i // (Hp*Wp)``, ``h = (i % (Hp*Wp)) // Wp``, ``w = i % Wp`` (integers, no rescaling:
V-JEPA 2's encoder and predictor ``RoPEAttention`` use them as they are). Within a chunk of ``a`` channels the
frequencies are ``ω_j = 1 / 10000^(j / (a/2))``, ``j < a/2``, and channel pairs ``(2m, 2m+1)`` are mixed as::

    out[2m]   = x[2m]   cos(p ω_{f(2m)})   - x[2m+1] sin(p ω_{f(2m)})
    out[2m+1] = x[2m+1] cos(p ω_{f(2m+1)}) + x[2m]   sin(p ω_{f(2m+1)})

Pairings (``f``):

- ``vjepa2`` — ``f(c) = c mod (a/2)``: the frequency vector is *repeated* (``[ω, ω]``) rather than interleaved, so
  the two channels of a pair carry different frequencies. This is V-JEPA 2's code (its PR #15, left unfixed to stay
  compatible with the released checkpoints) and what ``pos_embed: rope`` uses. It is not an exact rotation: the
  attention logit of two tokens depends on their absolute positions, not only on their difference.
- ``interleaved`` — ``f(c) = c // 2``: each pair is a true 2-D rotation by ``p ω_m`` (textbook RoPE, the fix of
  PR #15): logits depend only on position differences. ``pos_embed: rope_interleaved``; no official checkpoint
  uses it.

RoPE rotates queries and keys (after the qkv split, per head), never values; there is no absolute position
embedding. Angles are computed in float32 whatever the activations' dtype.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from einops import rearrange
from torch import nn

RopePairing = Literal["vjepa2", "interleaved"]
RopeTables = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each [..., N, head_dim], broadcast over heads


def rope_axis_dim(head_dim: int) -> int:
    """Channels rotated per axis (frame, row, column): ``2 * ((head_dim // 3) // 2)``."""
    return 2 * ((head_dim // 3) // 2)


def token_positions(idx: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time-major token indices (any shape) in a ``(Tt, Hp, Wp)`` grid → frame, row and column positions."""
    _, hp, wp = (int(g) for g in grid)
    per_frame = hp * wp
    return idx // per_frame, (idx % per_frame) // wp, idx % wp


def axis_angles(pos: torch.Tensor, axis_dim: int, pairing: RopePairing = "vjepa2") -> torch.Tensor:
    """Angles ``[..., axis_dim]`` of one axis for positions ``[...]`` (float32), laid out per the pairing."""
    omega = torch.arange(axis_dim // 2, dtype=torch.float32, device=pos.device)
    omega = 1.0 / 10000 ** (omega / (axis_dim / 2.0))
    ang = pos.to(torch.float32)[..., None] * omega
    if pairing == "vjepa2":
        return torch.cat([ang, ang], dim=-1)
    return torch.repeat_interleave(ang, 2, dim=-1)


def rope_tables(idx: torch.Tensor, grid: Sequence[int], head_dim: int, pairing: RopePairing = "vjepa2",
                dtype: torch.dtype = torch.float32) -> RopeTables:
    """cos / sin tables ``[..., N, head_dim]`` for token indices ``idx`` ``[..., N]``: the frame, row and column
    chunks, then zero angles (cos 1, sin 0: unrotated) for the remaining channels."""
    a = rope_axis_dim(head_dim)
    parts = [axis_angles(p, a, pairing) for p in token_positions(idx, grid)]
    rest = head_dim - 3 * a
    if rest:
        parts.append(torch.zeros(*idx.shape, rest, dtype=torch.float32, device=idx.device))
    ang = torch.cat(parts, dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...)`` → ``(-x1, x0, -x3, x2, ...)`` over the last dimension."""
    pairs = rearrange(x, "... (d two) -> ... d two", two=2)
    return rearrange(torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1), "... d two -> ... (d two)")


def apply_rope(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate queries or keys ``[B, heads, N, head_dim]`` with tables ``[N | B x 1, N, head_dim]``."""
    cos, sin = tables
    return x * cos + rotate_pairs(x) * sin


class Rope3D(nn.Module):
    """Builds the RoPE tables for a token grid; no parameters or buffers (a model runs at any T, H, W as built).

    ``tables(grid, idx)``: ``idx`` ``[B, K]`` (the tokens actually present, e.g. the visible ones) or ``None`` (the
    whole grid in order; cached per grid and device) → tables that broadcast over heads (``[B, 1, K, hd]`` or
    ``[1, 1, N, hd]``)."""

    def __init__(self, head_dim: int, pairing: RopePairing = "vjepa2") -> None:
        super().__init__()
        if head_dim < 6:
            raise ValueError(f"RoPE needs a head dim of at least 6 (3 axes x 2 channels), got {head_dim}")
        self.head_dim = head_dim
        self.pairing: RopePairing = pairing
        self._cache: dict[tuple[int, int, int, str], RopeTables] = {}

    def tables(self, grid: Sequence[int], idx: torch.Tensor | None, device: torch.device,
               dtype: torch.dtype) -> RopeTables:
        if idx is not None:
            cos, sin = rope_tables(idx.to(device), grid, self.head_dim, self.pairing, dtype)
            return cos.unsqueeze(1), sin.unsqueeze(1)
        tt, hp, wp = (int(g) for g in grid)
        key = (tt, hp, wp, str(device))
        full = self._cache.get(key)
        if full is None:
            full = rope_tables(torch.arange(tt * hp * wp, device=device), grid, self.head_dim, self.pairing)
            self._cache[key] = full
        return full[0].to(dtype)[None, None], full[1].to(dtype)[None, None]

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, axis_dim={rope_axis_dim(self.head_dim)}, pairing={self.pairing}"


__all__ = ["Rope3D", "RopePairing", "RopeTables", "apply_rope", "axis_angles", "rope_axis_dim", "rope_tables",
           "rotate_pairs", "token_positions"]
