"""Per-tube motion score g_i from pixels (paper §3.4.1).

    g_i = mean_t mean|x_{t+1,i} - x_{t,i}|  +  mean_t mean_{j in N4(i)} mean|x_{t,i} - x_{t,j}|

where x_{t,i} is the C·p·p pixel patch of tube i at frame t (values in [0, 1]) and every inner mean is over
the patch's values, so the score does not depend on the patch size. Edge tubes average over fewer neighbours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def tube_motion_scores(clip: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """``clip`` float ``[B, C, T, H, W]`` in [0, 1] → motion scores ``[B, N]``, tubes row-major over the patch grid."""
    if clip.ndim != 5:
        raise ValueError(f"clip must be [B, C, T, H, W], got shape {tuple(clip.shape)}")
    b, _, t, h, w = clip.shape
    if h % patch or w % patch:
        raise ValueError(f"H×W = {h}×{w} must be divisible by patch {patch}")
    x = rearrange(clip.float(), "b c t (h p) (w q) -> b t h w (c p q)", p=patch, q=patch)
    hp, wp = h // patch, w // patch

    if t > 1:
        temporal = (x[:, 1:] - x[:, :-1]).abs().mean(-1).mean(1)  # [B, hp, wp]
    else:
        temporal = x.new_zeros(b, hp, wp)

    # Mean |x_i - x_j| for horizontal and vertical neighbour pairs: [B, T, hp, wp-1] and [B, T, hp-1, wp].
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(-1)
    dv = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(-1)
    # Each pair contributes to both of its tubes: pad on either side and sum.
    total = F.pad(dh, (0, 1)) + F.pad(dh, (1, 0)) + F.pad(dv, (0, 0, 0, 1)) + F.pad(dv, (0, 0, 1, 0))
    ones_h = x.new_ones(1, 1, hp, max(wp - 1, 0))
    ones_v = x.new_ones(1, 1, max(hp - 1, 0), wp)
    count = F.pad(ones_h, (0, 1)) + F.pad(ones_h, (1, 0)) + F.pad(ones_v, (0, 0, 0, 1)) + F.pad(ones_v, (0, 0, 1, 0))
    spatial = (total / count.clamp_min(1)).mean(1)  # mean over t of the neighbour mean
    return (temporal + spatial).reshape(b, hp * wp)
