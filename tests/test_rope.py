"""3D RoPE (model/rope.py) and its use in the encoder and predictor: hand-computed rotations, V-JEPA 2's pairing vs
the interleaved one, relative positions, length generalisation, and the sin-cos default left as it was."""
from __future__ import annotations

import math

import pytest
import torch
from timm.models.vision_transformer import Block

from model.backbones.base import state_dict_sha256
from model.backbones.video_vit import RandomInitBackbone
from model.jepa import SurgMotion, SurgMotionConfig
from model.predictor import Predictor, PredictorConfig
from model.rope import apply_rope, rope_axis_dim, rope_tables, token_positions
from model.vit import IMAGENET_MEAN, IMAGENET_STD, EncoderConfig, RoPEBlock, VideoViT, ViTSize, sincos_pos_embed_3d

# cos / sin of the angles below, written out (ω = 1 / 10000^(j / 2) for a 4-channel axis chunk: 1 and 0.01)
COS1, SIN1 = 0.5403023058681398, 0.8414709848078965      # p = 1, ω = 1
COS2, SIN2 = -0.4161468365471424, 0.9092974268256817     # p = 2, ω = 1
COS001, SIN001 = 0.9999500004166653, 0.009999833334166664  # p = 1, ω = 0.01
COS002, SIN002 = 0.9998000066665778, 0.01999866669333308   # p = 2, ω = 0.01
X = torch.arange(1.0, 15.0, dtype=torch.float64)  # one head of dim 14: chunks of 4 (t, h, w) + 2 unrotated


def test_axis_split_follows_vjepa2() -> None:
    assert [rope_axis_dim(d) for d in (64, 32, 20, 14, 6)] == [20, 10, 6, 4, 2]
    t, h, w = token_positions(torch.tensor([0, 5, 11, 23]), (4, 2, 3))  # 6 tokens per frame, 3 per row
    assert t.tolist() == [0, 0, 1, 3] and h.tolist() == [0, 1, 1, 1] and w.tolist() == [0, 2, 2, 2]


def rotate(x: torch.Tensor, idx: list[int], grid: tuple[int, int, int], pairing: str) -> torch.Tensor:
    tables = rope_tables(torch.tensor(idx), grid, x.shape[-1], pairing, torch.float64)  # type: ignore[arg-type]
    return apply_rope(x.expand(1, 1, len(idx), -1), tables)[0, 0]


def test_hand_computed_rotation_vjepa2_pairing() -> None:
    """Token 11 of a (2, 2, 3) grid sits at t=1, h=1, w=2. V-JEPA 2 repeats the frequency vector, so in each chunk
    channel 2m uses ω_{2m mod 2} and channel 2m+1 uses ω_{(2m+1) mod 2}: the pair (0, 1) mixes ω=1 and ω=0.01."""
    first, tok = rotate(X, [0, 11], (2, 2, 3), "vjepa2")
    assert torch.equal(first, X)  # position (0, 0, 0): every angle is 0
    x = X.tolist()

    def chunk(c: int, cos_a: float, sin_a: float, cos_b: float, sin_b: float) -> list[float]:
        x0, x1, x2, x3 = x[c:c + 4]
        return [x0 * cos_a - x1 * sin_a, x1 * cos_b + x0 * sin_b, x2 * cos_a - x3 * sin_a, x3 * cos_b + x2 * sin_b]

    expected = (chunk(0, COS1, SIN1, COS001, SIN001) + chunk(4, COS1, SIN1, COS001, SIN001)
                + chunk(8, COS2, SIN2, COS002, SIN002) + [x[12], x[13]])
    torch.testing.assert_close(tok, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)


def test_hand_computed_rotation_interleaved_pairing() -> None:
    """Interleaved: each pair is a rotation by one angle — (0, 1) by p·1, (2, 3) by p·0.01."""
    tok = rotate(X, [11], (2, 2, 3), "interleaved")[0]
    x = X.tolist()

    def chunk(c: int, cos_a: float, sin_a: float, cos_b: float, sin_b: float) -> list[float]:
        x0, x1, x2, x3 = x[c:c + 4]
        return [x0 * cos_a - x1 * sin_a, x1 * cos_a + x0 * sin_a, x2 * cos_b - x3 * sin_b, x3 * cos_b + x2 * sin_b]

    expected = (chunk(0, COS1, SIN1, COS001, SIN001) + chunk(4, COS1, SIN1, COS001, SIN001)
                + chunk(8, COS2, SIN2, COS002, SIN002) + [x[12], x[13]])
    torch.testing.assert_close(tok, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)
    assert tok.norm().item() == pytest.approx(X.norm().item(), rel=1e-6)  # a rotation keeps the norm (angles: fp32)


def logit(q: torch.Tensor, k: torch.Tensor, i: int, j: int, grid: tuple[int, int, int], pairing: str) -> float:
    return float((rotate(q, [i], grid, pairing)[0] * rotate(k, [j], grid, pairing)[0]).sum())


def test_logits_depend_only_on_position_difference_with_interleaved_pairing() -> None:
    """q·k after RoPE is a function of (Δt, Δh, Δw) alone for the interleaved pairing; V-JEPA 2's repeated
    frequencies (their PR #15, kept for their checkpoints) break this, by a wide margin."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(32, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    grid = (16, 8, 8)
    tok = lambda t, h, w: t * 64 + h * 8 + w
    pairs = [((0, 0, 0), (1, 2, 3)), ((5, 3, 1), (6, 5, 4)), ((9, 4, 4), (10, 6, 7))]  # same difference (1, 2, 3)
    inter = [logit(q, k, tok(*a), tok(*b), grid, "interleaved") for a, b in pairs]
    assert max(inter) - min(inter) < 1e-5  # angles are float32
    vj = [logit(q, k, tok(*a), tok(*b), grid, "vjepa2") for a, b in pairs]
    assert max(vj) - min(vj) > 0.1


def sharpen(module: torch.nn.Module, gain: float = 8.0) -> None:
    """Scale every qkv projection so that attention is far from uniform (positions then matter)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("attn.qkv.weight"):
                p.mul_(gain)


def tiny_encoder(pos: str, seed: int = 0) -> VideoViT:
    torch.manual_seed(seed)
    enc = VideoViT(EncoderConfig(size="tiny", patch_size=8, pos_embed=pos)).eval()  # type: ignore[arg-type]
    enc.blocks = enc.blocks[:2]
    sharpen(enc)
    return enc


def shifted(clip: torch.Tensor, frames: int, total: int) -> torch.Tensor:
    """``clip`` placed at frame ``frames`` of a longer noise clip of ``total`` frames."""
    out = torch.randn(clip.shape[0], clip.shape[1], total, *clip.shape[3:], generator=torch.Generator().manual_seed(9))
    out[:, :, frames:frames + clip.shape[2]] = clip
    return out


@pytest.mark.parametrize("pos,equal", [("rope_interleaved", True), ("rope", False), ("sincos", False)])
def test_encoder_is_time_shift_equivariant_only_with_relative_positions(pos: str, equal: bool) -> None:
    """A model built for nothing in particular runs at T=16 and T=64. With interleaved RoPE the visible tokens of a
    16-frame clip encode identically when the clip sits at frames 48-63 of a 64-frame clip (positions shifted by 24
    tubelets: only differences matter); V-JEPA 2's pairing and sin-cos tables see absolute positions."""
    enc = tiny_encoder(pos)
    clip = torch.randn(1, 3, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    per_frame = 4  # 2 x 2 patches
    idx = torch.arange(8 * per_frame)[None]  # every token of the 16-frame clip
    with torch.no_grad():
        short = enc(clip, idx)
        long = enc(shifted(clip, 48, 64), idx + 24 * per_frame)
    diff = (short - long).abs().max().item()
    assert (diff < 1e-4) if equal else (diff > 1e-2), diff


def test_rope_has_no_state_and_serves_any_length() -> None:
    """Nothing depends on T: the RoPE encoder has exactly the sin-cos encoder's parameters (no position buffer), its
    tables for T=64 start with the T=16 ones, and a forward at T=64 changes no state."""
    rope, sincos = tiny_encoder("rope"), tiny_encoder("sincos")
    assert {k: v.shape for k, v in rope.state_dict().items()} == {k: v.shape for k, v in sincos.state_dict().items()}
    assert rope.rope is not None and rope.pos_embed is None and isinstance(rope.blocks[0], RoPEBlock)
    t16 = rope.rope.tables((8, 2, 2), None, torch.device("cpu"), torch.float32)
    t64 = rope.rope.tables((32, 2, 2), None, torch.device("cpu"), torch.float32)
    assert torch.equal(t64[0][..., :32, :], t16[0]) and torch.equal(t64[1][..., :32, :], t16[1])
    before = {k: v.clone() for k, v in rope.state_dict().items()}
    with torch.no_grad():
        out = rope(torch.randn(1, 3, 64, 16, 16))
    assert out.shape == (1, 32 * 4, 192) and torch.isfinite(out).all()
    assert all(torch.equal(before[k], v) for k, v in rope.state_dict().items())


def tubelet_slices(i: int, grid: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """Frames, rows, columns of token ``i`` (tubelet 2, patch 8)."""
    t, h, w = (int(p) for p in token_positions(torch.tensor(i), grid))
    return slice(2 * t, 2 * t + 2), slice(8 * h, 8 * h + 8), slice(8 * w, 8 * w + 8)


def test_visible_token_positions_come_from_token_idx() -> None:
    """``enc(clip, token_idx)`` sees only the kept tubelets (the rest of the clip may be anything) and places them by
    their indices: the same tubelets moved to tokens 0..3 and encoded there give other tokens."""
    enc = tiny_encoder("rope")
    grid = (4, 2, 2)
    gen = torch.Generator().manual_seed(2)
    clip = torch.randn(1, 3, 8, 16, 16, generator=gen)
    keep = [1, 6, 9, 14]
    other = torch.randn(clip.shape, generator=gen)
    moved = torch.randn(clip.shape, generator=gen)
    for new, i in enumerate(keep):
        ft, fh, fw = tubelet_slices(i, grid)
        other[:, :, ft, fh, fw] = clip[:, :, ft, fh, fw]
        nt, nh, nw = tubelet_slices(new, grid)
        moved[:, :, nt, nh, nw] = clip[:, :, ft, fh, fw]
    with torch.no_grad():
        sub = enc(clip, torch.tensor([keep]))
        same = enc(other, torch.tensor([keep]))
        elsewhere = enc(moved, torch.arange(4)[None])
    torch.testing.assert_close(sub, same, rtol=0, atol=0)
    assert (sub - elsewhere).abs().max() > 1e-2


def test_predictor_follows_the_encoder_and_carries_positions() -> None:
    """SurgMotion with ``encoder.pos_embed: rope`` gets a RoPE predictor; permuting the visible tokens (with their
    indices) leaves the predictions unchanged, and the loss trains."""
    torch.manual_seed(0)
    cfg = SurgMotionConfig(encoder=EncoderConfig(size="tiny", patch_size=8, pos_embed="rope"),
                           predictor=PredictorConfig(depth=1, embed_dim=64, num_heads=2))
    model = SurgMotion(cfg)
    model.encoder.blocks, model.target_encoder.blocks = model.encoder.blocks[:1], model.target_encoder.blocks[:1]
    assert isinstance(model.target_encoder.blocks[0], RoPEBlock)
    assert model.predictor.rope is not None and model.predictor.pos_embed is None
    assert model.predictor.rope.head_dim == 32
    pred = model.predictor.eval()
    sharpen(pred)
    with torch.no_grad():
        pred.query.normal_()
    ctx = torch.randn(1, 5, 192)
    vis, msk = torch.tensor([[0, 3, 7, 12, 15]]), torch.tensor([[1, 2, 9]])
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        a = pred(ctx, vis, msk, (4, 2, 2))
        b = pred(ctx[:, perm], vis[:, perm], msk, (4, 2, 2))
        c = pred(ctx, vis, torch.tensor([[1, 2, 10]]), (4, 2, 2))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (a[:, 2] - c[:, 2]).abs().max() > 1e-3  # the same query at another position predicts something else
    model.train()
    out = model(torch.rand(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.encoder.blocks[0].attn.qkv.weight.grad is not None
    assert Predictor(192, size=ViTSize(embed_dim=192, depth=1, num_heads=3)).rope is None  # sincos by default


def test_sincos_default_is_unchanged() -> None:
    """Default encoder: plain timm Blocks and tokens = blocks(patches + sin-cos table), exactly; the backbone
    identity (feature-cache key) has the same recipe as before ``pos_embed`` existed."""
    assert EncoderConfig().pos_embed == "sincos" and PredictorConfig().pos_embed is None
    enc = tiny_encoder("sincos")
    assert all(type(b) is Block for b in enc.blocks) and enc.rope is None
    clip = torch.randn(2, 3, 4, 16, 24)
    with torch.no_grad():
        x = enc.patch_embed(clip).flatten(2).transpose(1, 2) + sincos_pos_embed_3d(192, (2, 2, 3))
        for blk in enc.blocks:
            x = blk(x)
        assert torch.equal(enc(clip), enc.norm(x))
    bb = RandomInitBackbone("tiny")
    cfg = {"size": "tiny", "patch_size": 16, "tubelet_size": 2, "in_chans": 3}
    state = {f"0.{k}": v for k, v in bb.encoder.state_dict().items()}
    extra = {"kind": "random", "encoder": cfg, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    assert bb.identity() == f"random-{state_dict_sha256(state, extra)}"
    assert not math.isnan(float(bb.encoder.patch_embed.weight.sum()))
