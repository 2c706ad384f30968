"""Loss terms against numbers worked out by hand (2 clips x 4 tubes x 3 dims)."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from model.losses import (
    affinity_distillation_loss,
    covariance_loss,
    motion_guided_loss,
    motion_share,
    top_k,
    tube_errors,
    variance_loss,
)

# target = 0, pred rows constant → l_i = |value| exactly.
L0 = [1.0, 2.0, 3.0, 4.0]
L1 = [0.5, 1.5, 2.5, 0.5]
G0 = [0.0, 1.0, 2.0, 3.0]  # top-3: tubes 1, 2, 3
G1 = [3.0, 0.0, 0.5, 1.0]  # top-3: tubes 0, 3, 2


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.tensor([[[v] * 3 for v in L0], [[-v] * 3 for v in L1]])
    return pred, torch.zeros_like(pred), torch.tensor([G0, G1])


def _softmax(xs: list[float]) -> list[float]:
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_topk_mode_by_hand() -> None:
    pred, target, g = _inputs()
    w0 = _softmax([2 * 1.0, 2 * 2.0, 2 * 3.0])  # γ = 2 over tubes 1, 2, 3
    clip0 = (1 * L0[0] + (1 + w0[0]) * L0[1] + (1 + w0[1]) * L0[2] + (1 + w0[2]) * L0[3]) / 4
    w1 = _softmax([2 * 3.0, 2 * 1.0, 2 * 0.5])  # tubes 0, 3, 2
    clip1 = ((1 + w1[0]) * L1[0] + 1 * L1[1] + (1 + w1[2]) * L1[2] + (1 + w1[1]) * L1[3]) / 4
    got = motion_guided_loss(pred, target, g, k=3, gamma=2.0, mode="topk")
    assert got.item() == pytest.approx((clip0 + clip1) / 2, rel=1e-6)


def test_topk_only_mode_by_hand() -> None:
    pred, target, g = _inputs()
    w0 = _softmax([2.0, 4.0, 6.0])
    clip0 = ((1 + w0[0]) * 2.0 + (1 + w0[1]) * 3.0 + (1 + w0[2]) * 4.0) / 3
    w1 = _softmax([6.0, 2.0, 1.0])
    clip1 = ((1 + w1[0]) * 0.5 + (1 + w1[1]) * 0.5 + (1 + w1[2]) * 2.5) / 3
    got = motion_guided_loss(pred, target, g, mode="topk_only")
    assert got.item() == pytest.approx((clip0 + clip1) / 2, rel=1e-6)


def test_dense_mode_by_hand() -> None:
    pred, target, g = _inputs()
    alpha = 0.5
    clip0 = sum((1 + alpha * gi / 3.0) * li for gi, li in zip(G0, L0)) / 4
    clip1 = sum((1 + alpha * gi / 3.0) * li for gi, li in zip(G1, L1)) / 4
    got = motion_guided_loss(pred, target, g, mode="dense", alpha=alpha)
    assert got.item() == pytest.approx((clip0 + clip1) / 2, rel=1e-6)


def test_none_mode_is_plain_l1() -> None:
    pred, target, g = _inputs()
    got = motion_guided_loss(pred, target, g, mode="none")
    assert got.item() == pytest.approx((sum(L0) + sum(L1)) / 8, rel=1e-6)


def test_dense_mode_with_zero_motion_is_plain_l1() -> None:
    pred, target, _ = _inputs()
    got = motion_guided_loss(pred, target, torch.zeros(2, 4), mode="dense")
    assert got.item() == pytest.approx((sum(L0) + sum(L1)) / 8, rel=1e-6)


def test_l1_uses_mean_over_dims() -> None:
    pred = torch.tensor([[[1.0, 2.0, 6.0]]])  # l = (1 + 2 + 6) / 3 = 3
    got = motion_guided_loss(pred, torch.zeros_like(pred), torch.zeros(1, 1), mode="none")
    assert got.item() == pytest.approx(3.0)


def test_k_larger_than_masked_count_uses_all() -> None:
    pred, target, g = _inputs()
    full = motion_guided_loss(pred, target, g, k=10, mode="topk_only")
    w0 = _softmax([0.0, 2.0, 4.0, 6.0])
    clip0 = sum((1 + w) * err for w, err in zip(w0, L0)) / 4
    w1 = _softmax([6.0, 0.0, 1.0, 2.0])
    clip1 = sum((1 + w) * err for w, err in zip(w1, L1)) / 4
    assert full.item() == pytest.approx((clip0 + clip1) / 2, rel=1e-6)


def test_unknown_mode_and_bad_shapes_raise() -> None:
    pred, target, g = _inputs()
    with pytest.raises(ValueError, match="unknown motion weighting"):
        motion_guided_loss(pred, target, g, mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shapes differ"):
        motion_guided_loss(pred, target[:, :3], g)


def test_affinity_kl_zero_when_prediction_equals_target() -> None:
    x = torch.randn(2, 4, 3)
    assert affinity_distillation_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # scale-invariant: cosine affinities ignore the norm
    assert affinity_distillation_loss(3.0 * x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_affinity_kl_by_hand() -> None:
    # clip 0: prediction has orthogonal unit tubes, target has 4 identical tubes.
    pred0 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    tgt0 = [[2.0, 0.0, 0.0]] * 4
    # clip 1: identical → KL 0
    pred1 = [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    pred = torch.tensor([pred0, pred1])
    target = torch.tensor([tgt0, pred1])
    tau = 0.1
    # clip 0, target rows: all cosines = 1 → uniform 1/4.
    # pred rows: tube 0 and 3 are identical (cos 1 with each other and themselves), else 0.
    def row(cos: list[float]) -> list[float]:
        return _softmax([c / tau for c in cos])
    rows = [row([1, 0, 0, 1]), row([0, 1, 0, 0]), row([0, 0, 1, 0]), row([1, 0, 0, 1])]
    kl0 = sum(sum(0.25 * math.log(0.25 / p) for p in r) for r in rows) / 4
    got = affinity_distillation_loss(pred, target, tau=tau)
    assert got.item() == pytest.approx((kl0 + 0.0) / 2, rel=1e-5)


def test_affinity_no_gradient_to_target() -> None:
    pred = torch.randn(2, 4, 3, requires_grad=True)
    target = torch.randn(2, 4, 3, requires_grad=True)
    affinity_distillation_loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None


def test_variance_loss_by_hand() -> None:
    pred = torch.tensor([[[0.0, 1.0, 5.0], [0.0, 2.0, -5.0], [0.0, 1.0, 5.0], [0.0, 2.0, -5.0]],
                         [[0.0, 1.0, 5.0], [0.0, 2.0, -5.0], [0.0, 1.0, 5.0], [0.0, 2.0, -5.0]]])
    cols = pred.reshape(8, 3).T.tolist()
    expected = sum(max(0.0, 1.0 - math.sqrt(statistics.variance(c) + 1e-4)) for c in cols) / 3
    # dim 0: std 0.01 → hinge 0.99; dim 1: var 2/7; dim 2: std ≈ 5.35 → hinge 0
    assert variance_loss(pred, sigma0=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert variance_loss(pred, sigma0=0.0).item() == 0.0


def test_covariance_loss_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3)).astype(np.float64)
    c = np.cov(x.reshape(8, 3), rowvar=False)  # unbiased, centred
    expected = (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / 3
    got = covariance_loss(torch.tensor(x, dtype=torch.float32))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_covariance_zero_for_decorrelated_dims() -> None:
    x = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    assert covariance_loss(x).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------------------------- per-token prediction loss
def test_per_token_errors_by_hand() -> None:
    """Tt = 2 tokens per tube: l_i = mean over the tube's tokens and dims of |pred − target|."""
    pred = torch.tensor([[[[1.0, 1.0], [4.0, 0.0]], [[3.0, 3.0], [0.0, 2.0]]]])  # [B=1, Tt=2, M=2, D=2]
    target = torch.zeros_like(pred)
    # tube 0: tokens |1,1| and |3,3| → (1 + 3) / 2 = 2;  tube 1: |4,0| → 2 and |0,2| → 1 → 1.5
    assert tube_errors(pred, target).tolist() == [[2.0, 1.5]]
    got = motion_guided_loss(pred, target, torch.tensor([[0.0, 1.0]]), k=1, gamma=2.0, mode="topk")
    assert got.item() == pytest.approx((1 * 2.0 + 2 * 1.5) / 2)  # top-1 is tube 1, w = softmax over one = 1


def test_loss_sees_a_change_over_time_inside_a_masked_tube() -> None:
    """Target tokens go 0 → 2 over time, the prediction is their time mean (1) at every step: the tube-averaged
    loss is blind to it (0), the per-token loss is not (|1−0| and |1−2| → 1)."""
    target = torch.tensor([[[[0.0]], [[2.0]]]])            # [1, Tt=2, M=1, D=1]
    pred = torch.ones_like(target)
    g = torch.zeros(1, 1)
    per_token = motion_guided_loss(pred, target, g, mode="none")
    per_tube = motion_guided_loss(pred.mean(1), target.mean(1), g, mode="none")
    assert per_token.item() == pytest.approx(1.0) and per_tube.item() == pytest.approx(0.0)


def test_motion_share_and_top_k_fraction_by_hand() -> None:
    err = torch.tensor([L0])                          # l = 1, 2, 3, 4
    g = torch.tensor([G0])                            # top-3: tubes 1, 2, 3
    w = _softmax([2.0, 4.0, 6.0])
    extra = w[0] * 2 + w[1] * 3 + w[2] * 4
    assert motion_share(err, g, 3).item() == pytest.approx(extra / (sum(L0) + extra), rel=1e-6)
    assert motion_share(torch.zeros(1, 4), g, 3).item() == 0.0  # no error, no share (no division by zero)
    assert top_k(torch.zeros(1, 157), 3) == 3 and top_k(torch.zeros(1, 157), 3, 0.25) == 40
    assert top_k(torch.zeros(1, 2), 3) == 2 and top_k(torch.zeros(1, 5), 3, 0.01) == 1
