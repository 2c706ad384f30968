"""Probe heads and losses (model/probes.py): shapes, attention behaviour, learnability, losses vs hand values."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.probe_losses import class_weights_from_labels, probe_loss, probe_outputs, silog_loss
from model.probes import AttentiveProbe, DenseProbe, build_probe, head_outputs, resolve_num_heads
from orchestrator.benchmarks.metrics_dense import segmentation_metrics


def dice_at_half(logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Dice of sigmoid(logits) >= 0.5 as the benchmark metrics compute it (metrics_dense, per image, mean)."""
    score = torch.sigmoid(logits.float()).reshape(-1, *mask.shape[-2:]).numpy().astype(np.float64)
    return segmentation_metrics(mask.reshape(score.shape).numpy() > 0.5, score)["dice"]


def test_attentive_probe_shapes_and_structure() -> None:
    probe = AttentiveProbe(32, 7, depth=4, num_heads=4)
    assert len(probe.blocks) == 3 and probe.num_heads == 4
    assert probe(torch.randn(3, 10, 32)).shape == (3, 7)
    assert probe(torch.randn(3, 10, 32, dtype=torch.float16)).dtype == torch.float32  # fp16 cached features
    assert AttentiveProbe(32, 1, depth=1, num_heads=4)(torch.randn(2, 5, 32)).shape == (2, 1)
    assert not hasattr(probe.cross_block.xattn, "proj")  # no output projection in the cross attention
    with pytest.raises(ValueError):
        probe(torch.randn(3, 10, 16))
    with pytest.raises(ValueError):
        AttentiveProbe(32, 3, depth=0)


def test_num_heads_fallback_to_largest_divisor() -> None:
    assert resolve_num_heads(1024) == 16
    assert resolve_num_heads(192) == 16
    assert resolve_num_heads(200) == 10
    assert resolve_num_heads(30) == 15
    assert resolve_num_heads(7) == 7
    assert resolve_num_heads(32, 4) == 4
    assert AttentiveProbe(200, 2, depth=2).num_heads == 10


def test_init_std_and_depth_rescale() -> None:
    torch.manual_seed(0)
    probe = AttentiveProbe(256, 3, depth=4, num_heads=4)
    assert probe.query.std().item() == pytest.approx(0.02, rel=0.3)
    assert probe.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert probe.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2), rel=0.05)
    assert probe.cross_block.mlp.fc2.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)


def test_probe_is_permutation_invariant_but_sensitive_to_values() -> None:
    torch.manual_seed(0)
    probe = AttentiveProbe(32, 5, depth=4, num_heads=4).double().eval()
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    out = probe(x)
    perm = torch.randperm(12)
    torch.testing.assert_close(probe(x[:, perm]), out)
    x2 = x.clone()
    x2[0, 3] += torch.randn(32, dtype=torch.float64)  # (a constant shift would vanish in LayerNorm)
    out2 = probe(x2)
    assert (out2[0] - out[0]).abs().max() > 1e-4  # changing a token changes that sample's output
    torch.testing.assert_close(out2[1], out[1])  # and nothing else


def test_attentive_probe_learns_a_token_function() -> None:
    torch.manual_seed(0)
    x = torch.randn(384, 8, 32)
    y = (x[:, :, 0].mean(1) > 0).long()  # label = sign of the mean of channel 0 over the tokens
    probe = AttentiveProbe(32, 2, depth=4, num_heads=4)
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(100):
        loss = probe_loss("phase", probe(x[:256]), y[:256])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        correct = (probe(x).argmax(-1) == y).float()
    assert correct[:256].mean().item() > 0.9, correct[:256].mean()
    assert correct[256:].mean().item() > 0.7, correct[256:].mean()  # it learnt the rule, not only the samples


def test_cross_entropy_with_class_weights_matches_torch_and_hand_value() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([0, 1, 2, 1])
    w = torch.tensor([0.5, 2.0, 1.0])
    got = probe_loss("phase", logits, target, w)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, weight=w))
    nll = [-(logits[i].log_softmax(0)[target[i]]).item() for i in range(4)]
    hand = (0.5 * nll[0] + 2.0 * nll[1] + 1.0 * nll[2] + 2.0 * nll[3]) / (0.5 + 2.0 + 1.0 + 2.0)
    assert got.item() == pytest.approx(hand, rel=1e-6)
    torch.testing.assert_close(probe_loss("action", logits, target), F.cross_entropy(logits, target))
    # ignored targets are skipped; a batch of only zero-weight classes gives 0, not NaN
    ign = torch.tensor([0, -100, 2, 1])
    torch.testing.assert_close(probe_loss("phase", logits, ign, w), F.cross_entropy(logits, ign, weight=w))
    zero = probe_loss("phase", logits[:1], target[:1], torch.tensor([0.0, 1.0, 1.0]))
    assert zero.item() == 0.0


def test_multilabel_bce_hand_value() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731  softplus: -log sigmoid(-z)
    hand = (sp(-0.0) + sp(2.0) + sp(-1.0) + sp(-1.0)) / 4
    assert probe_loss("triplet", logits, target).item() == pytest.approx(hand, rel=1e-6)
    w = torch.tensor([1.0, 3.0])  # normalised to mean 1: [0.5, 1.5]
    hand_w = (0.5 * sp(0.0) + 1.5 * sp(2.0) + 0.5 * sp(-1.0) + 1.5 * sp(-1.0)) / 4
    assert probe_loss("triplet", logits, target, w).item() == pytest.approx(hand_w, rel=1e-6)


def test_skill_regression_loss() -> None:
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    tgt = torch.tensor([1.5, 2.0, 1.0])
    assert probe_loss("skill", pred, tgt).item() == pytest.approx((0.25 + 0 + 9) / 3)
    assert probe_loss("skill", pred, tgt, regression="smooth_l1").item() == pytest.approx((0.5 * 0.25 + 0 + 2.5) / 3)
    with pytest.raises(ValueError):
        probe_loss("skill", torch.zeros(3, 2), tgt)


def test_class_weights_inverse_frequency_with_zero_count_class() -> None:
    labels = torch.tensor([0, 0, 0, 1, 3, 3])  # class 2 absent
    w = class_weights_from_labels(labels, 4)
    assert torch.isfinite(w).all()
    # N / (K * n_c) with N=6, K=3 present classes
    torch.testing.assert_close(w, torch.tensor([6 / 9, 6 / 3, 0.0, 6 / 6]))
    assert (w[labels].mean().item()) == pytest.approx(1.0)
    loss = probe_loss("phase", torch.randn(6, 4), labels, w)
    assert torch.isfinite(loss)
    assert class_weights_from_labels(torch.tensor([], dtype=torch.long), 3).tolist() == [0.0, 0.0, 0.0]
    multi = class_weights_from_labels(torch.tensor([[1, 0, 1], [1, 0, 0]]), 3)
    torch.testing.assert_close(multi, torch.tensor([3 / 4, 0.0, 3 / 2]))


def test_dense_probe_output_size_and_positive_depth() -> None:
    grid = (2, 4, 5)
    x = torch.randn(3, 40, 32)
    seg = DenseProbe(32, 1, grid, image_size=(64, 80), hidden_dim=16)
    assert seg(x).shape == (3, 1, 64, 80)
    assert seg(x, out_size=33).shape == (3, 1, 33, 33)
    depth = build_probe("depth", 32, grid=grid, image_size=48, hidden_dim=16)
    out = depth(x)
    assert out.shape == (3, 1, 48, 48) and (out > 0).all()
    with pytest.raises(ValueError):
        seg(torch.randn(3, 39, 32))


def test_dense_probe_overfits_one_mask() -> None:
    torch.manual_seed(0)
    grid, size = (2, 8, 8), 32
    x = torch.randn(1, 128, 32)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = (((yy - 13) ** 2 + (xx - 18) ** 2) < 64).float()[None, None]
    probe = DenseProbe(32, 1, grid, image_size=size, hidden_dim=16)
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    for _ in range(150):
        loss = probe_loss("segmentation", probe(x), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert dice_at_half(probe(x), mask) > 0.8


def test_dense_losses() -> None:
    logits = torch.tensor([[[[3.0, -3.0], [3.0, -3.0]]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # [B, H, W] target is accepted
    bce = F.binary_cross_entropy_with_logits(logits, mask[:, None])
    p = torch.sigmoid(logits).flatten()
    dice = 1 - (2 * (p * mask.flatten()).sum() + 1) / (p.sum() + 2 + 1)
    assert probe_loss("segmentation", logits, mask, segmentation="bce").item() == pytest.approx(bce.item())
    assert probe_loss("segmentation", logits, mask).item() == pytest.approx((bce + dice).item(), rel=1e-6)
    assert dice_at_half(logits, mask) == pytest.approx(1.0)
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]])  # 0 = invalid pixel
    scaled = 3 * gt.clamp_min(1e-3)  # λ = 1 is fully scale-invariant; the default λ = 0.5 keeps half the scale error
    assert silog_loss(scaled, gt, lam=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert probe_loss("depth", scaled, gt).item() == pytest.approx(0.5 * math.log(3) ** 2, rel=1e-5)
    pred = torch.tensor([[[[2.0, 2.0], [2.0, 9.0]]]])
    d = torch.log(torch.tensor([2.0, 1.0, 0.5]))
    assert probe_loss("depth", pred, gt).item() == pytest.approx((d.pow(2).mean() - 0.5 * d.mean() ** 2).item(),
                                                               rel=1e-5)
    assert probe_loss("depth", pred, gt, depth="l1").item() == pytest.approx((1 + 0 + 2) / 3)


def test_task_helpers_and_errors() -> None:
    assert head_outputs("phase", 7) == 7 and head_outputs("triplet", 100) == 100 and head_outputs("skill", 0) == 1
    assert probe_outputs("phase", torch.zeros(2, 4)).sum(-1).tolist() == [1.0, 1.0]
    assert isinstance(build_probe("skill", 32, num_heads=4), AttentiveProbe)
    with pytest.raises(ValueError, match="unknown probe task"):
        probe_loss("nope", torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError):
        build_probe("segmentation", 32)  # needs a grid


def test_probes_and_backbones_do_not_import_ray_or_mlflow() -> None:
    code = ("import sys, model.probes, model.probe_losses, model.backbones.factory, model.jepa\n"
            "bad = [n for n in ('ray', 'mlflow', 'orchestrator') if n in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
