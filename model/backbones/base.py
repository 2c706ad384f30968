"""The frozen backbone interface every probed encoder implements, and the helpers they share.

``Backbone.forward(clip)`` takes a clip ``[B, C, T, H, W]``, float in [0, 1] (uint8 in [0, 255] is accepted and
divided by 255), normalises it the way the backbone expects and returns tokens ``[B, N, D]`` (no gradient, eval
mode always). ``token_grid(clip_shape)`` gives the ``(Tt, Hp, Wp)`` layout of those N tokens (time-major:
token ``t*Hp*Wp + h*Wp + w``), which dense probes use. ``identity()`` is a stable sha256 string that identifies
the weights and everything else that determines the tokens (model kind, architecture config, input size,
normalisation); it is computed once at construction from the weights **as loaded** (CPU, their stored dtype),
so moving or casting the module later does not change it. It is the feature-cache key.

Implementations: :mod:`model.backbones.video_vit` (SurgMotion checkpoints, random init),
:mod:`model.backbones.timm_frames` (timm image models per frame); spec strings: :mod:`model.backbones.factory`.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

STRIP_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def state_dict_sha256(state: Mapping[str, torch.Tensor], extra: Mapping[str, Any] | None = None) -> str:
    """sha256 over ``extra`` (as sorted JSON) and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(extra or {}), sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"\n{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()



@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's CPU RNG forked and seeded: weight init is reproducible and the caller's RNG stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Backbone(nn.Module):
    """Frozen encoder: ``[B, C, T, H, W]`` in [0, 1] → tokens ``[B, N, D]``. Subclasses implement ``encode`` (on
    the [0, 1] float clip) and ``token_grid``, set ``embed_dim`` and call ``_finalize(identity_extra)``."""

    embed_dim: int
    kind: str = "backbone"

    def _finalize(self, extra: Mapping[str, Any], modules: Iterable[nn.Module] | None = None) -> None:
        self.requires_grad_(False)
        self.eval()
        state: dict[str, torch.Tensor] = {}
        for i, m in enumerate(modules if modules is not None else [self]):
            state.update({f"{i}.{k}": v for k, v in m.state_dict().items()})
        self._identity = f"{self.kind}-{state_dict_sha256(state, {'kind': self.kind, **extra})}"

    def train(self, mode: bool = True) -> Backbone:
        return super().train(False)  # frozen: always eval mode (no dropout / drop-path)

    def identity(self) -> str:
        """Stable string identifying weights + everything else that determines the tokens (feature-cache key)."""
        return self._identity

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        raise NotImplementedError

    def num_tokens(self, clip_shape: Sequence[int]) -> int:
        tt, hp, wp = self.token_grid(clip_shape)
        return tt * hp * wp

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def num_blocks(self) -> int | None:
        """Transformer blocks :meth:`encode_levels` can read from; None: the last layer's tokens only."""
        return None

    def encode_levels(self, clip: torch.Tensor, levels: int) -> list[torch.Tensor]:
        """Tokens after ``levels`` evenly spaced blocks (:func:`level_blocks`), shallowest first."""
        raise NotImplementedError

    def _clip01(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects a clip [B, C, T, H, W], got shape {tuple(clip.shape)}")
        return clip.float().div_(255.0) if clip.dtype == torch.uint8 else clip

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode(self._clip01(clip))

    def forward_levels(self, clip: torch.Tensor, levels: int) -> torch.Tensor:
        """Multi-level tokens ``[B, levels*N, D]``, level-major, shallowest first; the last level equals
        :meth:`forward`'s tokens. ``levels=1`` is :meth:`forward` for every backbone; more need :meth:`num_blocks`."""
        if levels == 1:
            return self.forward(clip)
        depth = self.num_blocks()
        if depth is None:
            raise ValueError(f"{type(self).__name__} gives last-layer tokens only: use features.dense_levels=1")
        with torch.no_grad():
            return torch.cat(self.encode_levels(self._clip01(clip), levels), dim=1)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, identity={self._identity[:24]}..."



def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def level_blocks(depth: int, levels: int) -> list[int]:
    """Indices of ``levels`` evenly spaced blocks of a ``depth``-block encoder, the last block included
    (12 blocks, 4 levels: 2, 5, 8, 11 — the blocks DPT reads from a ViT-B)."""
    if not 1 <= levels <= depth:
        raise ValueError(f"levels must be in [1, {depth}] for a {depth}-block encoder, got {levels}")
    return [math.ceil((i + 1) * depth / levels) - 1 for i in range(levels)]
