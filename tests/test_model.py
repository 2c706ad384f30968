"""Masking, motion scores, encoder/predictor shapes, gradients, EMA and a tiny overfit run."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from model.jepa import (
    DIAGNOSTIC_KEYS,
    LOSS_KEYS,
    SurgMotion,
    SurgMotionConfig,
    ema_momentum_at,
    surgmotion_param_groups,
    tube_latents,
)
from model.masking import sample_tube_mask
from model.motion import tube_motion_scores
from model.predictor import PredictorConfig
from model.vit import EncoderConfig, VideoViT, sincos_pos_embed_3d


def tiny_cfg(**loss: object) -> SurgMotionConfig:
    return SurgMotionConfig(
        encoder=EncoderConfig(size="tiny", patch_size=8),
        predictor=PredictorConfig(depth=2, embed_dim=48, num_heads=3),
        loss=loss,
    )


def small_model(depth: int = 2) -> SurgMotion:
    torch.manual_seed(0)
    m = SurgMotion(tiny_cfg())
    # shrink the encoder for test speed: keep the first `depth` blocks in both encoders
    m.encoder.blocks = m.encoder.blocks[:depth]
    m.target_encoder.blocks = m.target_encoder.blocks[:depth]
    m.target_encoder.load_state_dict(m.encoder.state_dict())
    return m


# ---------------------------------------------------------------- masking
@pytest.mark.parametrize("seed", range(5))
def test_masks_disjoint_covering_same_count(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    grid = (8, 14, 14)
    m = sample_tube_mask(6, grid, (0.75, 0.95), generator=g)
    s = 14 * 14
    nm = m.masked_tubes.shape[1]
    assert 0.75 * s - 1 <= nm <= 0.95 * s + 1 and m.num_tubes == s and m.masked_fraction == nm / s
    for b in range(6):
        vis, msk = set(m.visible_tubes[b].tolist()), set(m.masked_tubes[b].tolist())
        assert vis.isdisjoint(msk) and vis | msk == set(range(s))
    # token indices: tube s at time t is token t*S + s; a masked tube is masked in every frame
    tok = m.masked_tokens.view(6, 8, nm)
    assert torch.equal(tok % s, m.masked_tubes.unsqueeze(1).expand(-1, 8, -1))
    assert torch.equal(tok // s, torch.arange(8).view(1, 8, 1).expand(6, -1, nm))
    all_tok = torch.cat([m.visible_tokens, m.masked_tokens], 1).sort(1).values
    assert torch.equal(all_tok, torch.arange(8 * s).expand(6, -1))


def test_mask_ratio_varies_between_batches_and_is_reproducible() -> None:
    ratios = {sample_tube_mask(2, (2, 8, 8), generator=torch.Generator().manual_seed(i)).masked_tubes.shape[1]
              for i in range(10)}
    assert len(ratios) > 5
    a = sample_tube_mask(2, (2, 8, 8), generator=torch.Generator().manual_seed(3))
    b = sample_tube_mask(2, (2, 8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.masked_tubes, b.masked_tubes)


def test_mask_rejects_bad_ratio() -> None:
    with pytest.raises(ValueError):
        sample_tube_mask(1, (2, 4, 4), (0.9, 0.5))
    with pytest.raises(ValueError):
        SurgMotionConfig(mask={"mode": "tube", "tube_ratio": (0.5, 1.0)})


# ---------------------------------------------------------------- motion
def test_motion_scores_rank_moving_square_highest() -> None:
    t, h, w, p = 8, 64, 64, 16
    clip = torch.full((1, 3, t, h, w), 0.3)
    for i in range(t):  # bright square moving right along patch row 1, inside patch column 1 → 2
        x0 = 16 + 2 * i
        clip[0, :, i, 20:28, x0:x0 + 8] = 1.0
    g = tube_motion_scores(clip, patch=p)
    assert g.shape == (1, 16)
    top = set(g[0].topk(2).indices.tolist())
    assert top == {1 * 4 + 1, 1 * 4 + 2}
    static = tube_motion_scores(torch.full((1, 3, t, h, w), 0.3), patch=p)
    assert torch.allclose(static, torch.zeros_like(static))


def test_motion_score_by_hand() -> None:
    # 1 channel, 2 frames, 2x2 grid of 1-pixel patches: value per (t, h, w)
    clip = torch.tensor([[[[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.5]]]]])  # [1,1,2,2,2]
    g = tube_motion_scores(clip, patch=1)
    # tube 0 (0,0): temporal |0-0| = 0; spatial t0: nbrs (0,1)=1,(1,0)=0 → 0.5; t1: nbrs 0,0 → 0; mean 0.25
    # tube 1 (0,1): temporal 1; t0: nbrs (0,0)=0,(1,1)=0 → |1-0|,|1-0| → 1; t1: nbrs 0, 0.5 → 0.25; mean 0.625
    # tube 2 (1,0): temporal 0; t0: nbrs (0,0)=0,(1,1)=0 → 0; t1: nbrs 0, 0.5 → 0.25; mean 0.125
    # tube 3 (1,1): temporal 0.5; t0: nbrs (0,1)=1,(1,0)=0 → 0.5; t1: nbrs 0,0 → 0.5; mean 0.5
    expected = torch.tensor([[0.25, 1.0 + 0.625, 0.125, 0.5 + 0.5]])
    assert torch.allclose(g, expected)


def test_motion_independent_of_patch_size_for_uniform_patches() -> None:
    base = torch.rand(1, 3, 4, 2, 2)
    a = tube_motion_scores(base, patch=1)
    b = tube_motion_scores(base.repeat_interleave(16, -1).repeat_interleave(16, -2), patch=16)
    assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- encoder
def test_sincos_table_shape_and_uniqueness() -> None:
    table = sincos_pos_embed_3d(192, (8, 14, 14))
    assert table.shape == (8 * 14 * 14, 192)
    assert torch.unique(table, dim=0).shape[0] == table.shape[0]


def test_encoder_token_order_and_gather() -> None:
    enc = VideoViT(EncoderConfig(size="tiny", patch_size=8)).eval()
    clip = torch.randn(2, 3, 4, 16, 24)
    assert enc.grid(clip.shape) == (2, 2, 3)
    full = enc.embed(clip)
    assert full.shape == (2, 12, 192)
    with pytest.raises(ValueError, match="divisible"):
        enc.grid((1, 3, 5, 16, 16))


def test_forward_t16_and_t64_same_weights() -> None:
    m = small_model()
    for t in (16, 64):
        out = m(torch.rand(2, 3, t, 32, 32), generator=torch.Generator().manual_seed(0))
        assert set(out) == set(LOSS_KEYS) | set(DIAGNOSTIC_KEYS)
        assert torch.isfinite(out["loss"])


def test_total_is_weighted_sum() -> None:
    m = SurgMotion(tiny_cfg(lambda_cov=0.5))
    m.encoder.blocks = m.encoder.blocks[:1]
    m.target_encoder.blocks = m.target_encoder.blocks[:1]
    out = m(torch.rand(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    expected = out["loss_motion"] + 0.1 * out["loss_st"] + 0.3 * out["loss_var"] + 0.5 * out["loss_cov"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["loss_cov"].item() > 0


def test_gradients_reach_encoder_and_predictor_not_target() -> None:
    m = small_model()
    out = m(torch.rand(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert m.encoder.patch_embed.weight.grad is not None and m.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert m.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert m.predictor.query.grad is not None and m.predictor.query.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(not p.requires_grad for p in m.target_encoder.parameters())


def test_ema_arithmetic() -> None:
    m = small_model()
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.fill_(1.0)
        for p in m.target_encoder.parameters():
            p.fill_(0.0)
    m.update_target(0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.1)) for p in m.target_encoder.parameters())
    m.update_target(0.9)  # 0.9 * 0.1 + 0.1 * 1 = 0.19
    assert all(torch.allclose(p, torch.full_like(p, 0.19)) for p in m.target_encoder.parameters())
    m.update_target()  # default momentum from config: 0.99925 * 0.19 + 0.00075
    v = 0.99925 * 0.19 + 0.00075
    assert all(torch.allclose(p, torch.full_like(p, v)) for p in m.target_encoder.parameters())


def test_ema_ramp_is_linear_from_start_to_final_and_constant_without_final() -> None:
    assert ema_momentum_at(0, 40, 0.99925, None) == ema_momentum_at(40, 40, 0.99925, None) == 0.99925
    # V-JEPA 1's ramp 0.998 -> 1.0 over 100 steps: a quarter of the way at step 25, clamped after the end
    assert ema_momentum_at(0, 100, 0.998, 1.0) == 0.998
    assert abs(ema_momentum_at(25, 100, 0.998, 1.0) - 0.9985) < 1e-12
    assert ema_momentum_at(100, 100, 0.998, 1.0) == ema_momentum_at(150, 100, 0.998, 1.0) == 1.0


def test_param_groups_exclude_biases_norms_and_target() -> None:
    m = small_model()
    decay, no_decay = surgmotion_param_groups(m, 0.04)
    ids = {id(p) for p in decay["params"]} | {id(p) for p in no_decay["params"]}
    assert not ids & {id(p) for p in m.target_encoder.parameters()}
    assert ids == {id(p) for p in m.online_parameters()}
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert id(m.encoder.norm.weight) in {id(p) for p in no_decay["params"]}


def test_predictor_defaults_and_output_shape() -> None:
    from model.predictor import Predictor
    from model.vit import VIT_SIZES

    p = Predictor(encoder_dim=192)  # no size given: V-JEPA's depth 12, width 384
    assert len(p.blocks) == 12 and p.embed_dim == 384
    large = Predictor(1024, size=VIT_SIZES["large"])
    assert len(large.blocks) == 12 and large.embed_dim == 384
    tiny = Predictor(192, size=VIT_SIZES["tiny"], cfg=PredictorConfig(depth=1))
    vis = torch.tensor([[0, 1, 4, 5]])
    msk = torch.tensor([[2, 3, 6, 7]])  # grid (2, 2, 2): tubes 2, 3 masked at both time steps
    out = tiny(torch.randn(1, 4, 192), vis, msk, (2, 2, 2))
    assert out.shape == (1, 4, 192)


def test_tube_latents_mean_over_time() -> None:
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).view(1, 6, 2)  # Tt=3, K=2
    out = tube_latents(x, 3)
    assert torch.equal(out, torch.stack([x[0, [0, 2, 4]].mean(0), x[0, [1, 3, 5]].mean(0)])[None])


def test_tiny_model_overfits_one_batch() -> None:
    m = small_model()
    clip = torch.rand(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = m.sample_masks(clip, torch.Generator().manual_seed(2))
    opt = torch.optim.AdamW(surgmotion_param_groups(m, 0.0), lr=3e-3)
    total, pred = [], []
    for _ in range(30):
        out = m(clip, masks=masks)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.update_target()
        total.append(out["loss"].item())
        pred.append(out["loss_motion"].item())
    assert total[-1] < 0.7 * total[0], total
    assert pred[-1] < 0.7 * pred[0], pred


def test_model_package_never_imports_ray_or_mlflow() -> None:
    code = ("import pkgutil, importlib, sys, model\n"
            "for m in pkgutil.iter_modules(model.__path__): importlib.import_module('model.' + m.name)\n"
            "bad = [n for n in ('ray', 'mlflow') if n in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
