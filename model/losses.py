"""SurgMotion loss terms, as pure functions on per-tube latents.

``pred`` and ``target`` are ``[B, M, D]`` latents of the M masked tubes of each clip; ``motion`` is ``[B, M]``.
All terms are computed in float32 whatever the autocast dtype of the inputs.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

MotionMode = Literal["topk", "topk_only", "dense", "none"]


def _topk_weights(motion: torch.Tensor, k: int, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the k largest motion scores per clip and their softmax(γ·g) weights over those k."""
    top_g, top_idx = motion.topk(min(k, motion.shape[1]), dim=1)
    return top_idx, torch.softmax(gamma * top_g, dim=1)


def motion_guided_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    motion: torch.Tensor,
    k: int = 3,
    gamma: float = 2.0,
    mode: MotionMode = "topk",
    alpha: float = 1.0,
) -> torch.Tensor:
    """Motion-weighted L1 between predicted and target latents of the masked tubes (paper §3.4.1).

    l_i = mean_D |pred_i - target_i|. Per clip:
      - ``topk``:      Σ_i c_i l_i / M with c_i = 1 + w_i for the k tubes of largest motion (w = softmax(γ g) over
                       them) and c_i = 1 otherwise;
      - ``topk_only``: Σ_{i in top-k} (1 + w_i) l_i / k (the printed formula, normalised);
      - ``dense``:     Σ_i (1 + α g_i / max_j g_j) l_i / M;
      - ``none``:      mean_i l_i (plain V-JEPA L1).
    The result is the mean over clips. Motion weights carry no gradient.
    """
    if pred.shape != target.shape or pred.shape[:2] != motion.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"motion {tuple(motion.shape)}")
    err = (pred.float() - target.float()).abs().mean(-1)  # [B, M]: l_i
    g = motion.detach().float()
    m = err.shape[1]
    if mode == "none":
        return err.mean()
    if mode == "dense":
        g_max = g.max(dim=1, keepdim=True).values
        c = 1.0 + alpha * torch.where(g_max > 0, g / g_max.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
        return ((c * err).sum(1) / m).mean()
    top_idx, w = _topk_weights(g, k, gamma)
    if mode == "topk":
        c = torch.ones_like(err).scatter(1, top_idx, 1.0 + w)
        return ((c * err).sum(1) / m).mean()
    if mode == "topk_only":
        return ((1.0 + w) * err.gather(1, top_idx)).sum(1).div(top_idx.shape[1]).mean()
    raise ValueError(f"unknown motion weighting mode {mode!r}; choose topk, topk_only, dense or none")


def affinity_distillation_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1,
                               eps: float = 1e-8) -> torch.Tensor:
    """Spatiotemporal affinity self-distillation (paper §3.4.2): mean over clips of (1/M) Σ_i KL(a^E_i ‖ â_i).

    u = x / max(‖x‖₂, eps); affinity rows a_ij = softmax_j(u_i·u_j / τ) over all masked tubes (diagonal included).
    The target side carries no gradient.
    """
    u_hat = F.normalize(pred.float(), dim=-1, eps=eps)
    u_tgt = F.normalize(target.detach().float(), dim=-1, eps=eps)
    log_a_hat = torch.log_softmax(u_hat @ u_hat.transpose(1, 2) / tau, dim=-1)
    log_a_tgt = torch.log_softmax(u_tgt @ u_tgt.transpose(1, 2) / tau, dim=-1)
    kl = F.kl_div(log_a_hat, log_a_tgt, reduction="none", log_target=True).sum(-1)  # [B, M]
    return kl.mean()


def variance_loss(pred: torch.Tensor, sigma0: float = 1.0) -> torch.Tensor:
    """Variance hinge over the batch's predicted masked latents (paper §3.4.3).

    Flatten to ``[B·M, D]``; σ_d = sqrt(unbiased var_d + 1e-4); mean over d of max(0, σ0 − σ_d).
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
