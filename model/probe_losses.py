"""Probe training losses and head outputs, one entry point per benchmark task (pure PyTorch).

- ``phase`` / ``action``: cross-entropy over ``[B, C]`` logits with integer targets ``[B]``; optional per-class
  weights (weighted mean ``Σ w_y·nll / Σ w_y``, identical to torch's weighted CE, but 0 instead of NaN when a batch
  only holds zero-weight classes); targets equal to ``ignore_index`` (-100) are skipped.
- ``triplet``: multi-label binary cross-entropy with logits over the C classes, multi-hot targets ``[B, C]``,
  mean over batch and classes; optional class weights multiply each class's term (normalised by their mean).
- ``skill``: regression on a scalar output (``[B, 1]`` or ``[B]``): **MSE** by default (``regression="smooth_l1"``
  gives Huber/smooth-L1 with beta 1). Targets should be standardised by the caller (e.g. z-scored on train).
- ``segmentation``: BCE-with-logits + soft Dice (``segmentation="bce_dice"``, default; also ``"bce"``, ``"dice"``).
- ``depth``: scale-invariant log loss (Eigen et al. 2014, ``mean(d²) − λ·mean(d)²`` with ``d = log ŷ − log y``,
  default) or ``"l1"``; pixels whose target is not > 0 (or not finite) are ignored. λ = 0.5 (Eigen's choice):
  λ = 1 would be fully scale-invariant and leave the absolute scale unlearnt, while the depth metrics (RMSE,
  AbsRel) need metric depth; λ = 0.5 penalises half of the global log-scale error.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from model.tasks import CLASSIFICATION_TASKS, REGRESSION_TASKS, Task, check_task


def class_weights_from_labels(labels: torch.Tensor | Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``w_c = N / (K · n_c)`` (float32 ``[num_classes]``).

    ``labels``: integer class ids ``[N]`` (negative ids, e.g. ignore labels, are not counted), or a multi-hot
    ``[N, C]`` matrix (``n_c`` = positives of class c). ``K`` is the number of classes that occur, so the weights
    average to 1 over the samples. Classes with no sample get weight **0** (never NaN/inf).
    """
    t = torch.as_tensor(labels)
    if t.ndim == 2:
        if t.shape[1] != num_classes:
            raise ValueError(f"multi-hot labels have {t.shape[1]} columns, expected {num_classes}")
        counts = (t > 0).sum(0).to(torch.float64)
        total = counts.sum()
    else:
        t = t.reshape(-1).long()
        t = t[t >= 0]
        if t.numel() and int(t.max()) >= num_classes:
            raise ValueError(f"label {int(t.max())} out of range for {num_classes} classes")
        counts = torch.bincount(t, minlength=num_classes).to(torch.float64)
        total = counts.sum()
    present = counts > 0
    k = int(present.sum())
    weights = torch.zeros(num_classes, dtype=torch.float64)
    if k:
        weights[present] = total / (k * counts[present])
    return weights.to(torch.float32)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
                           ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy ``Σ w_y·nll / Σ w_y`` over non-ignored samples (torch's weighted mean; 0 if the sum is 0)."""
    target = target.long()
    nll = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=ignore_index)
    valid = (target != ignore_index).float()
    if class_weights is None:
        w = valid
    else:
        cw = class_weights.to(device=logits.device, dtype=torch.float32)
        w = cw[target.clamp_min(0)] * valid
    return (w * nll).sum() / w.sum().clamp_min(1e-12)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 − (2|p·y| + eps) / (|p| + |y| + eps)`` per image, averaged over the batch."""
    p = torch.sigmoid(logits.float()).flatten(1)
    y = target.float().flatten(1)
    dice = (2 * (p * y).sum(1) + eps) / (p.sum(1) + y.sum(1) + eps)
    return (1 - dice).mean()


def silog_loss(pred: torch.Tensor, target: torch.Tensor, lam: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss over valid pixels (target > 0 and finite): ``mean(d²) − λ·mean(d)²``."""
    pred, target = pred.float(), target.float()
    valid = torch.isfinite(target) & (target > 0)
    if not valid.any():
        return pred.sum() * 0.0
    d = torch.log(pred[valid].clamp_min(eps)) - torch.log(target[valid])
    return (d.pow(2).mean() - lam * d.mean().pow(2)).clamp_min(0.0)


def masked_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 over valid pixels (target > 0 and finite)."""
    pred, target = pred.float(), target.float()
    valid = torch.isfinite(target) & (target > 0)
    if not valid.any():
        return pred.sum() * 0.0
    return (pred[valid] - target[valid]).abs().mean()


def _dense_target(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring a ``[B, H, W]`` / ``[B, 1, H, W]`` target and ``[B, 1, h, w]`` output to the same shape (the output is
    bilinearly resized to the target's size when they differ)."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if logits.shape != target.shape:
        raise ValueError(f"dense output {tuple(logits.shape)} does not match target {tuple(target.shape)}")
    return logits, target


RegressionLoss = Literal["mse", "smooth_l1"]
SegmentationLoss = Literal["bce_dice", "bce", "dice"]
DepthLoss = Literal["silog", "l1"]


def _classification(task: str, logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None,
                    ignore_index: int) -> torch.Tensor:
    if logits.ndim != 2 or target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"{task}: expected logits [B, C] and integer targets [B], got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    return weighted_cross_entropy(logits, target, class_weights, ignore_index)


def _multilabel(task: str, logits: torch.Tensor, target: torch.Tensor,
                class_weights: torch.Tensor | None) -> torch.Tensor:
    if logits.shape != target.shape:
        raise ValueError(f"{task}: logits {tuple(logits.shape)} and multi-hot targets {tuple(target.shape)} differ")
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if class_weights is not None:
        cw = class_weights.to(device=logits.device, dtype=torch.float32)
        loss = loss * (cw / cw.mean().clamp_min(1e-12))
    return loss.mean()


def _regression(task: str, logits: torch.Tensor, target: torch.Tensor, kind: RegressionLoss) -> torch.Tensor:
    pred = logits.float().reshape(logits.shape[0], -1)
    if pred.shape[1] != 1:
        raise ValueError(f"{task}: expected a scalar output per sample, got logits {tuple(logits.shape)}")
    pred, tgt = pred[:, 0], target.float().reshape(-1)
    if kind == "mse":
        return F.mse_loss(pred, tgt)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, tgt, beta=1.0)
    raise ValueError(f"{task}: unknown regression loss {kind!r} (mse, smooth_l1)")


def _segmentation(task: str, logits: torch.Tensor, target: torch.Tensor, kind: SegmentationLoss) -> torch.Tensor:
    if kind not in ("bce_dice", "bce", "dice"):
        raise ValueError(f"{task}: unknown loss {kind!r} (bce_dice, bce, dice)")
    logits, target = _dense_target(logits, target)
    loss = logits.new_zeros((), dtype=torch.float32)
    if "bce" in kind:
        loss = loss + F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if "dice" in kind:
        loss = loss + dice_loss(logits, target)
    return loss


def _depth(task: str, logits: torch.Tensor, target: torch.Tensor, kind: DepthLoss) -> torch.Tensor:
    pred, target = _dense_target(logits, target)
    if kind == "silog":
        return silog_loss(pred, target)
    if kind == "l1":
        return masked_l1_loss(pred, target)
    raise ValueError(f"{task}: unknown loss {kind!r} (silog, l1)")


def probe_loss(task: str, logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None, *,
               regression: RegressionLoss = "mse", segmentation: SegmentationLoss = "bce_dice",
               depth: DepthLoss = "silog", ignore_index: int = -100) -> torch.Tensor:
    """Training loss of a probe head for one benchmark ``task`` (see the module docstring for each task)."""
    terms: dict[Task, Callable[[], torch.Tensor]] = {
        "phase": lambda: _classification(task, logits, target, class_weights, ignore_index),
        "action": lambda: _classification(task, logits, target, class_weights, ignore_index),
        "triplet": lambda: _multilabel(task, logits, target, class_weights),
        "skill": lambda: _regression(task, logits, target, regression),
        "segmentation": lambda: _segmentation(task, logits, target, segmentation),
        "depth": lambda: _depth(task, logits, target, depth),
    }
    return terms[check_task(task, "probe task")]()


def probe_outputs(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Head output → prediction: class probabilities (phase/action: softmax; triplet/segmentation: sigmoid),
    the scalar score ``[B]`` (skill) or the depth map unchanged (depth)."""
    task = check_task(task, "probe task")
    if task in CLASSIFICATION_TASKS:
        return logits.float().softmax(-1)
    if task in REGRESSION_TASKS:
        return logits.float().reshape(-1)
    if task == "depth":
        return logits.float()
    return torch.sigmoid(logits.float())  # multi-label classes, segmentation masks
