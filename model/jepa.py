"""The SurgMotion module: context encoder + predictor + EMA target encoder; one forward → dict of loss terms.

Targets are the layer-normed (no affine) outputs of the EMA target encoder on the full clip, computed once per batch
without gradient. Every masked tubelet token is predicted and compared with its own target (``granularity: token``);
a tube's latent (its tokens' mean over time) serves the affinity term and the ``tube`` ablation.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from model.losses import (
    MotionMode,
    affinity_distillation_loss,
    covariance_loss,
    motion_guided_loss,
    motion_share,
    top_k,
    tube_errors,
    variance_loss,
)
from model.masking import MaskConfig, TubeMask, sample_masks
from model.motion import tube_motion_scores
from model.predictor import Predictor, PredictorConfig
from model.vit import IMAGENET_MEAN, IMAGENET_STD, EncoderConfig, VideoViT, gather_tokens, normalize_clip

LOSS_KEYS = ("loss", "loss_motion", "loss_st", "loss_var", "loss_cov")
"""The loss terms :meth:`SurgMotion.forward` returns (``loss`` is the weighted total), in logging order."""
DIAGNOSTIC_KEYS = ("motion_share", "mask_fraction", "context_fraction")
"""Logged beside the losses, never optimised: the share of the prediction loss carried by the top-k motion weight,
and the predicted / seen fraction of the grid's tubes (mean over mask sets)."""


class LossConfig(BaseModel):
    """Loss weights and hyper-parameters (paper §3.4; defaults are the paper's; docs/method.md)."""

    model_config = ConfigDict(extra="forbid")

    granularity: Literal["token", "tube"] = Field(
        "token", description="token: L1 per tubelet token (the tube's motion weight on each of its tokens); tube: "
        "L1 of time-averaged tube latents (ablation)")
    motion_weighting: MotionMode = "topk"
    top_k: int = Field(3, gt=0)
    top_k_fraction: float | None = Field(None, gt=0.0, le=1.0,
                                         description="topk / topk_only: K = ceil(fraction · masked tubes) instead")
    gamma: float = 2.0
    alpha: float = Field(2.0, ge=0.0, description="dense mode: c_i = 1 + alpha * g_i / max g (authors' code: 2)")
    lambda_st: float = Field(0.1, ge=0.0)
    tau: float = Field(0.1, gt=0.0)
    lambda_var: float = Field(0.3, ge=0.0)
    sigma0: float = Field(1.0, ge=0.0)
    lambda_cov: float = Field(0.0, ge=0.0)


class SurgMotionConfig(BaseModel):
    """Everything that defines the SurgMotion model and objective."""

    model_config = ConfigDict(extra="forbid")

    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    ema_momentum: float = Field(0.99925, ge=0.0, le=1.0, description="EMA momentum of the target encoder "
                                "(V-JEPA 2: 0.99925, constant); the start of the ramp when ema_final is set")
    ema_final: float | None = Field(None, ge=0.0, le=1.0, description="null = constant ema_momentum; else a linear "
                                    "ramp from ema_momentum to this over the run's steps (V-JEPA 1: 0.998 -> 1.0)")
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD


def ema_momentum_at(step: int, total: int, start: float, final: float | None) -> float:
    """Momentum for optimiser step ``step`` of ``total``: ``start`` when ``final`` is None, else linear from
    ``start`` (step 0) to ``final`` (step ``total``)."""
    if final is None:
        return start
    return start + (final - start) * min(1.0, step / max(1, total))


def tube_latents(tokens: torch.Tensor, num_time: int) -> torch.Tensor:
    """``[B, Tt·K, D]`` time-major tokens of K tubes → ``[B, K, D]`` mean over time."""
    return reduce(tokens, "b (t k) d -> b k d", "mean", t=num_time)


def token_grid(tokens: torch.Tensor, num_time: int) -> torch.Tensor:
    """``[B, Tt·K, D]`` time-major tokens of K tubes → ``[B, Tt, K, D]``."""
    return rearrange(tokens, "b (t k) d -> b t k d", t=num_time)


class SurgMotion(nn.Module):
    """``forward(clip)`` with ``clip`` float ``[B, C, T, H, W]`` in [0, 1] (normalised inside) → a dict with the
    :data:`LOSS_KEYS` (``loss`` is the total; every term is the mean over the mask sets) and the
    :data:`DIAGNOSTIC_KEYS`. The EMA target encodes the full clip once; each mask set gets its own context-encoder
    and predictor pass (V-JEPA 2's multi-mask training)."""

    def __init__(self, cfg: SurgMotionConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SurgMotionConfig()
        self.encoder = VideoViT(self.cfg.encoder)
        self.predictor = Predictor(self.encoder.embed_dim, self.cfg.predictor, self.cfg.encoder.resolved())
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_encoder.requires_grad_(False)
        self.target_encoder.eval()

    def train(self, mode: bool = True) -> SurgMotion:
        super().train(mode)
        self.target_encoder.eval()  # the EMA target never uses dropout / drop-path
        return self

    def sample_masks(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> list[TubeMask]:
        """The batch's masks (one per multi-block set, or one tube mask): :func:`model.masking.sample_masks`."""
        return sample_masks(self.cfg.mask, clip.shape[0], self.encoder.grid(clip.shape), generator, clip.device)

    @torch.no_grad()
    def target_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Layer-normed (no affine) EMA-target tokens of the full clip ``[B, N, D]``, no gradient."""
        h = self.target_encoder(x)
        return F.layer_norm(h, (h.shape[-1],))

    def predict(self, x: torch.Tensor, mask: TubeMask) -> torch.Tensor:
        """Predicted tokens of the masked tubes ``[B, Tt·Nm, D]`` (time-major)."""
        ctx = self.encoder(x, mask.visible_tokens)
        return self.predictor(ctx, mask.visible_tokens, mask.masked_tokens, self.encoder.grid(x.shape))

    def forward(self, clip: torch.Tensor, masks: TubeMask | list[TubeMask] | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        masks = self.sample_masks(clip, generator) if masks is None else masks
        masks = [masks] if isinstance(masks, TubeMask) else masks
        x = normalize_clip(clip, self.cfg.pixel_mean, self.cfg.pixel_std)
        target = self.target_tokens(x)
        motion = tube_motion_scores(clip, self.cfg.encoder.patch_size)
        terms = [self.loss_terms(self.predict(x, m), gather_tokens(target, m.masked_tokens),
                                 motion.gather(1, m.masked_tubes), m.num_time) for m in masks]
        out = {k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]}
        out["mask_fraction"] = clip.new_tensor(sum(m.masked_fraction for m in masks) / len(masks))
        out["context_fraction"] = clip.new_tensor(sum(m.context_fraction for m in masks) / len(masks))
        return out

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor, motion: torch.Tensor, num_time: int
                   ) -> dict[str, torch.Tensor]:
        """The terms for one mask set from time-major masked tokens ``[B, Tt·M, D]`` and tube motion ``[B, M]``:
        prediction L1 per token (or per tube), affinity distillation on the tubes' time-averaged latents, variance
        (and covariance) over every predicted latent."""
        lc = self.cfg.loss
        tubes_p, tubes_t = tube_latents(pred, num_time), tube_latents(target, num_time)
        if lc.granularity == "token":
            p, t = token_grid(pred, num_time), token_grid(target, num_time)
        else:
            p, t = tubes_p, tubes_t
        k = top_k(motion, lc.top_k, lc.top_k_fraction)
        out = {
            "loss_motion": motion_guided_loss(p, t, motion, k, lc.gamma, lc.motion_weighting, lc.alpha),
            "loss_st": affinity_distillation_loss(tubes_p, tubes_t, lc.tau),
            "loss_var": variance_loss(p, lc.sigma0),
        }
        out["loss_cov"] = covariance_loss(p) if lc.lambda_cov > 0 else pred.new_zeros((), dtype=torch.float32)
        out["loss"] = (out["loss_motion"] + lc.lambda_st * out["loss_st"] + lc.lambda_var * out["loss_var"]
                       + lc.lambda_cov * out["loss_cov"])
        out["motion_share"] = motion_share(tube_errors(p, t), motion, k)
        return out

    @torch.no_grad()
    def update_target(self, momentum: float | None = None) -> None:
        """EMA: θ̄ ← m·θ̄ + (1 − m)·θ, for every parameter, with foreach ops."""
        m = self.cfg.ema_momentum if momentum is None else momentum
        tgt: list[torch.Tensor] = list(self.target_encoder.parameters())
        src = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(tgt, m)
        torch._foreach_add_(tgt, src, alpha=1.0 - m)

    def online_parameters(self) -> Iterable[nn.Parameter]:
        """Trainable parameters: context encoder + predictor (never the target encoder)."""
        yield from self.encoder.parameters()
        yield from self.predictor.parameters()


def param_groups(module: nn.Module, weight_decay: float, params: Iterable[tuple[str, nn.Parameter]] | None = None
                 ) -> list[dict]:
    """AdamW groups: weight decay on matrices/kernels; none on biases, norms and other 1-D parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in (params if params is not None else module.named_parameters()):
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def surgmotion_param_groups(model: SurgMotion, weight_decay: float) -> list[dict]:
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("target_encoder.")]
    return param_groups(model, weight_decay, named)
