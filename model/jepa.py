"""The SurgMotion module: context encoder + predictor + EMA target encoder; one forward → dict of loss terms.

Per-tube latents are the mean of a tube's tubelet tokens over time. Targets are the layer-normed (no affine)
outputs of the EMA target encoder on the full clip, computed without gradient.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from einops import reduce
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from model.losses import MotionMode, affinity_distillation_loss, covariance_loss, motion_guided_loss, variance_loss
from model.masking import TubeMask, sample_tube_mask
from model.motion import tube_motion_scores
from model.predictor import Predictor, PredictorConfig
from model.vit import IMAGENET_MEAN, IMAGENET_STD, EncoderConfig, VideoViT, gather_tokens, normalize_clip

LOSS_KEYS = ("loss", "loss_motion", "loss_st", "loss_var", "loss_cov")
"""The loss terms :meth:`SurgMotion.forward` returns (``loss`` is the weighted total), in logging order."""


class LossConfig(BaseModel):
    """Loss weights and hyper-parameters (paper §3.4; defaults are the paper's)."""

    model_config = ConfigDict(extra="forbid")

    motion_weighting: MotionMode = "topk"
    top_k: int = Field(3, gt=0)
    gamma: float = 2.0
    alpha: float = Field(1.0, ge=0.0, description="dense mode: c_i = 1 + alpha * g_i / max g")
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
    mask_ratio: tuple[float, float] = (0.75, 0.95)
    ema_momentum: float = Field(0.99925, ge=0.0, le=1.0)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _check_ratio(self) -> SurgMotionConfig:
        lo, hi = self.mask_ratio
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"mask_ratio must satisfy 0 < lo <= hi < 1, got {self.mask_ratio}")
        return self


def tube_latents(tokens: torch.Tensor, num_time: int) -> torch.Tensor:
    """``[B, Tt·K, D]`` time-major tokens of K tubes → ``[B, K, D]`` mean over time."""
    return reduce(tokens, "b (t k) d -> b k d", "mean", t=num_time)


class SurgMotion(nn.Module):
    """``forward(clip)`` with ``clip`` float ``[B, C, T, H, W]`` in [0, 1] (normalised inside) → loss dict with
    the :data:`LOSS_KEYS`: ``loss`` (total), ``loss_motion``, ``loss_st``, ``loss_var``, ``loss_cov``."""

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

    def sample_mask(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> TubeMask:
        return sample_tube_mask(clip.shape[0], self.encoder.grid(clip.shape), self.cfg.mask_ratio,
                                generator=generator, device=clip.device)

    @torch.no_grad()
    def targets(self, x: torch.Tensor, mask: TubeMask) -> torch.Tensor:
        """Layer-normed EMA-target tokens of the masked tubes, averaged over time → ``[B, Nm, D]``."""
        h = self.target_encoder(x)
        h = F.layer_norm(h, (h.shape[-1],))
        return tube_latents(gather_tokens(h, mask.masked_tokens), mask.num_time)

    def predict(self, x: torch.Tensor, mask: TubeMask) -> torch.Tensor:
        """Predicted latents of the masked tubes → ``[B, Nm, D]``."""
        grid = self.encoder.grid(x.shape)
        ctx = self.encoder(x, mask.visible_tokens)
        pred = self.predictor(ctx, mask.visible_tokens, mask.masked_tokens, grid)
        return tube_latents(pred, mask.num_time)

    def forward(self, clip: torch.Tensor, mask: TubeMask | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if mask is None:
            mask = self.sample_mask(clip, generator)
        x = normalize_clip(clip, self.cfg.pixel_mean, self.cfg.pixel_std)
        target = self.targets(x, mask)
        pred = self.predict(x, mask)
        motion = tube_motion_scores(clip, self.cfg.encoder.patch_size).gather(1, mask.masked_tubes)
        return self.loss_terms(pred, target, motion)

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor, motion: torch.Tensor) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        out = {
            "loss_motion": motion_guided_loss(pred, target, motion, lc.top_k, lc.gamma, lc.motion_weighting, lc.alpha),
            "loss_st": affinity_distillation_loss(pred, target, lc.tau),
            "loss_var": variance_loss(pred, lc.sigma0),
        }
        out["loss_cov"] = covariance_loss(pred) if lc.lambda_cov > 0 else pred.new_zeros((), dtype=torch.float32)
        out["loss"] = (out["loss_motion"] + lc.lambda_st * out["loss_st"] + lc.lambda_var * out["loss_var"]
                       + lc.lambda_cov * out["loss_cov"])
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
