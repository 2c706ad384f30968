"""SurgMotion loss terms, as pure functions.

``pred`` and ``target`` are the latents of the M masked tubes of each clip, either per token ``[B, Tt, M, D]``
(every tubelet token of every masked tube: the default) or one per tube ``[B, M, D]`` (the Tt = 1 case).
``motion`` is ``[B, M]``, one score per tube. All terms are computed in float32 whatever the autocast dtype.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

MotionMode = Literal["topk", "topk_only", "dense", "none"]


def _per_token(x: torch.Tensor) -> torch.Tensor:
    """``[B, M, D]`` → ``[B, 1, M, D]``; ``[B, Tt, M, D]`` unchanged."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected latents [B, Tt, M, D] or [B, M, D], got shape {tuple(x.shape)}")
    return x


def tube_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """l_i = mean over the tube's tokens t and the D dims of |pred_{t,i} − target_{t,i}| → ``[B, M]`` (float32).
    Every token is compared with its own target, so a change over time inside a masked tube is supervised."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}")
    p, t = _per_token(pred).float(), _per_token(target).float()
    return (p - t).abs().mean(-1).mean(1)


def top_k(motion: torch.Tensor, k: int, fraction: float | None = None) -> int:
    """How many tubes get the motion weight: ``ceil(fraction · M)`` when a fraction is set, else ``k`` (≤ M)."""
    m = motion.shape[1]
    n = max(1, math.ceil(fraction * m - 1e-9)) if fraction else k
    return min(n, m)


def motion_weights(motion: torch.Tensor, mode: MotionMode, k: int = 3, gamma: float = 2.0, alpha: float = 2.0
                   ) -> torch.Tensor:
    """Per-tube loss weights c_i ``[B, M]`` (no gradient; see :func:`motion_guided_loss`). ``topk_only`` returns the
    top-k weights with 0 elsewhere."""
    g = motion.detach().float()
    if mode == "none":
        return torch.ones_like(g)
    if mode == "dense":
        g_max = g.max(dim=1, keepdim=True).values
        rel = torch.where(g_max > 0, g / g_max.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
        return 1.0 + alpha * rel
    if mode not in ("topk", "topk_only"):
        raise ValueError(f"unknown motion weighting mode {mode!r}; choose topk, topk_only, dense or none")
    top_g, top_idx = g.topk(min(k, g.shape[1]), dim=1)
    w = torch.softmax(gamma * top_g, dim=1)
    base = torch.ones_like(g) if mode == "topk" else torch.zeros_like(g)
    return base.scatter(1, top_idx, 1.0 + w)


def motion_guided_loss(pred: torch.Tensor, target: torch.Tensor, motion: torch.Tensor, k: int = 3,
                       gamma: float = 2.0, mode: MotionMode = "topk", alpha: float = 2.0) -> torch.Tensor:
    """Motion-weighted L1 between predicted and target latents of the masked tubes (paper §3.4.1).

    l_i = :func:`tube_errors` (mean |·| over the tube's tokens and dims). Per clip:
      - ``topk``:      Σ_i c_i l_i / M with c_i = 1 + w_i for the k tubes of largest motion (w = softmax(γ g) over
                       them) and c_i = 1 otherwise;
      - ``topk_only``: Σ_{i in top-k} (1 + w_i) l_i / k (the printed formula, normalised);
      - ``dense``:     Σ_i (1 + α g_i / max_j g_j) l_i / M (the form of the authors' released weighting: every masked
                       token weighted 1 + α·m with α = 2, m a motion map in [0, 1]);
      - ``none``:      mean_i l_i (plain V-JEPA L1).
    The result is the mean over clips. Motion weights carry no gradient.
    """
    if pred.shape[0] != motion.shape[0] or pred.shape[-2] != motion.shape[1]:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"motion {tuple(motion.shape)}")
    err = tube_errors(pred, target)
    c = motion_weights(motion, mode, k, gamma, alpha)
    denom = float(min(k, err.shape[1])) if mode == "topk_only" else float(err.shape[1])
    return ((c * err).sum(1) / denom).mean()


def motion_share(err: torch.Tensor, motion: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the weighted loss carried by the extra weight of the k highest-motion tubes under ``topk``:
    Σ_{top-k} w_i l_i / Σ_i c_i l_i, mean over clips (0: the weighting changes nothing; a diagnostic, no gradient)."""
    g, e = motion.detach().float(), err.detach().float()
    c = motion_weights(g, "topk", k)
    extra = (c - 1.0) * e
    return (extra.sum(1) / (c * e).sum(1).clamp_min(1e-12)).mean()


def affinity_distillation_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1,
                               eps: float = 1e-8) -> torch.Tensor:
    """Spatiotemporal affinity self-distillation (paper §3.4.2): mean over clips of (1/M) Σ_i KL(a^E_i ‖ â_i).

    Inputs ``[B, M, D]``: one latent per masked tube. u = x / max(‖x‖₂, eps); affinity rows
    a_ij = softmax_j(u_i·u_j / τ) over all masked tubes (diagonal included). The target side carries no gradient.
    """
    u_hat = F.normalize(pred.float(), dim=-1, eps=eps)
    u_tgt = F.normalize(target.detach().float(), dim=-1, eps=eps)
    log_a_hat = torch.log_softmax(u_hat @ u_hat.transpose(1, 2) / tau, dim=-1)
    log_a_tgt = torch.log_softmax(u_tgt @ u_tgt.transpose(1, 2) / tau, dim=-1)
    kl = F.kl_div(log_a_hat, log_a_tgt, reduction="none", log_target=True).sum(-1)  # [B, M]
    return kl.mean()


def variance_loss(pred: torch.Tensor, sigma0: float = 1.0) -> torch.Tensor:
    """Variance hinge over the batch's predicted masked latents (paper §3.4.3).

    Flatten every latent (token or tube) to ``[n, D]``; σ_d = sqrt(unbiased var_d + 1e-4); mean over d of
    max(0, σ0 − σ_d).
    """
    x = pred.float().reshape(-1, pred.shape[-1])
    std = torch.sqrt(x.var(dim=0, unbiased=True) + 1e-4)
    return F.relu(sigma0 - std).mean()


def covariance_loss(pred: torch.Tensor) -> torch.Tensor:
    """Off-diagonal covariance penalty: flatten to ``[n, D]``, centre, C = XᵀX/(n−1); Σ_{i≠j} C_ij² / D."""
    x = pred.float().reshape(-1, pred.shape[-1])
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / (x.shape[0] - 1)
    off = cov - torch.diag_embed(torch.diagonal(cov))
    return off.pow(2).sum() / x.shape[1]
