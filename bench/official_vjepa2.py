"""V-JEPA 2's own pretraining step, run from a checkout of facebookresearch/vjepa2, for side-by-side timing.

Nothing of the official code is copied here: :func:`load_official` imports it from the directory the user names
(``--official-src``; a ``git clone`` of facebookresearch/vjepa2, or ``git archive HEAD src app`` of it) and builds
the encoder and predictor through its own ``app.vjepa.utils.init_video_model``. The step below follows the order
of ``app/vjepa/train.py``'s ``train_step``: the target encoder on the full clip (no grad) and a parameter-free
LayerNorm; the context encoder on the kept tokens of each mask set; the predictor on each set; the L1 loss
averaged over the sets; backward; AdamW; EMA with ``torch._foreach`` ops. Masks are V-JEPA's reference tube
(the same kept spatial positions in every time step), 85 % masked, drawn once per step for the whole batch size
with ``torch.randperm`` (one sorted index list per sample, as the official collator returns).
"""
from __future__ import annotations

import copy
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class OfficialModel:
    encoder: Any           # MultiSeqWrapper(VisionTransformer)
    predictor: Any         # PredictorMultiSeqWrapper(VisionTransformerPredictor)
    target_encoder: Any
    optimizer: torch.optim.Optimizer
    apply_masks: Any       # src.masks.utils.apply_masks
    grid: tuple[int, int, int]


def load_official(src: Path, device: torch.device, frames: int, px: int, model_name: str = "vit_tiny",
                  pred: tuple[int, int, int] = (12, 384, 12)) -> OfficialModel:
    """Build V-JEPA 2's encoder + predictor (sin-cos positions, SDPA, mask tokens: its pretraining settings
    apart from RoPE, so the FLOPs match our sin-cos model) from the checkout at ``src``."""
    root = Path(src).expanduser().resolve()
    if not (root / "app" / "vjepa" / "utils.py").is_file() or not (root / "src" / "models").is_dir():
        raise FileNotFoundError(f"--official-src {root}: not a facebookresearch/vjepa2 checkout "
                                "(needs app/vjepa/utils.py and src/models/)")
    sys.path.insert(0, str(root))
    from app.vjepa.utils import init_video_model  # deferred: the official code, from the user's checkout
    from src.masks.utils import apply_masks  # deferred: the official code, from the user's checkout

    depth, width, heads = pred
    encoder, predictor = init_video_model(
        device, patch_size=16, max_num_frames=frames, tubelet_size=2, model_name=model_name, crop_size=px,
        pred_depth=depth, pred_num_heads=heads, pred_embed_dim=width, uniform_power=True, use_mask_tokens=True,
        num_mask_tokens=2, zero_init_mask_tokens=True, use_sdpa=True, use_rope=False)
    target = copy.deepcopy(encoder)
    for p in target.parameters():
        p.requires_grad = False
    params = list(encoder.parameters()) + list(predictor.parameters())
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.04},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=5e-4, fused=device.type == "cuda")
    return OfficialModel(encoder, predictor, target, opt, apply_masks, (frames // 2, px // 16, px // 16))


def tube_masks(grid: tuple[int, int, int], batch: int, masked: float, gen: torch.Generator,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target token indices ``[B, K]`` (sorted, time-major) of a tube mask: the same
    ``round(HW·(1 − masked))`` kept positions in every time step."""
    tt, hp, wp = grid
    hw = hp * wp
    keep = round(hw * (1 - masked))
    ctx, tgt = [], []
    for _ in range(batch):
        perm = torch.randperm(hw, generator=gen)
        kept = torch.zeros(hw, dtype=torch.bool)
        kept[perm[:keep]] = True
        full = kept.repeat(tt)
        ctx.append(full.nonzero().squeeze(1))
        tgt.append((~full).nonzero().squeeze(1))
    return torch.stack(ctx).to(device), torch.stack(tgt).to(device)


def official_step(m: OfficialModel, clip: torch.Tensor, gen: torch.Generator, masked: float = 0.85,
                  momentum: float = 0.99925) -> float:
    """One pretraining step in the official code's order (one fpc group, one mask set)."""
    ctx, tgt = tube_masks(m.grid, clip.shape[0], masked, gen, clip.device)
    masks_enc, masks_pred = [[ctx]], [[tgt]]
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if clip.is_cuda else nullcontext()
    with amp:
        with torch.no_grad():
            h = [F.layer_norm(hi, (hi.size(-1),)) for hi in m.target_encoder([clip])]
        z = m.predictor(m.encoder([clip], masks_enc), masks_enc, masks_pred)
        h = [m.apply_masks(hi, mi, concat=False) for hi, mi in zip(h, masks_pred, strict=True)]
        terms = [torch.mean(torch.abs(zij - hij)) for zi, hi in zip(z, h, strict=True)
                 for zij, hij in zip(zi, hi, strict=True)]
        loss = sum(terms) / len(terms)
    loss.backward()
    m.optimizer.step()
    m.optimizer.zero_grad()
    with torch.no_grad():
        tgt_params = list(m.target_encoder.parameters())
        torch._foreach_mul_(tgt_params, momentum)
        torch._foreach_add_(tgt_params, list(m.encoder.parameters()), alpha=1 - momentum)
    return float(loss.detach())
