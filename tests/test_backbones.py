"""Backbone adapters (model/backbones.py): checkpoint loading, identities, timm per-frame tokens, spec parsing."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import yaml
from einops import rearrange

from model.backbones.base import Backbone
from model.backbones.factory import build_backbone
from model.backbones.timm_frames import TimmFrameBackbone
from model.backbones.video_vit import RandomInitBackbone, SurgMotionBackbone
from model.jepa import SurgMotion, SurgMotionConfig
from model.vit import EncoderConfig, normalize_clip

# patch 8 (not the default 16): proves the encoder is built from the checkpoint's config
CFG = SurgMotionConfig(encoder=EncoderConfig(size="tiny", patch_size=8, tubelet_size=2))


def _clip(b: int = 2, t: int = 4, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))


def _write_checkpoint(directory: Path, model: SurgMotion, cfg: SurgMotionConfig = CFG) -> Path:
    """The layout of orchestrator/checkpointing.save_checkpoint: model.pt + config.yaml (full pretrain config)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"encoder": model.encoder.state_dict(), "predictor": model.predictor.state_dict(),
                "target_encoder": model.target_encoder.state_dict()}, directory / "model.pt")
    config = {"model": cfg.model_dump(mode="json"), "train": {"epochs": 1}, "data": {"frames": 4}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def surgmotion() -> SurgMotion:
    torch.manual_seed(0)
    model = SurgMotion(CFG)
    with torch.no_grad():  # make the EMA target differ from the online encoder
        for p in model.target_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def test_surgmotion_backbone_equals_target_encoder(tmp_path: Path, surgmotion: SurgMotion) -> None:
    ckpt = _write_checkpoint(tmp_path / "ckpt", surgmotion)
    bb = SurgMotionBackbone.from_checkpoint(ckpt)
    clip = _clip()
    tokens = bb(clip)
    with torch.no_grad():
        expected = surgmotion.target_encoder(normalize_clip(clip))
        online = surgmotion.encoder(normalize_clip(clip))
    assert tokens.shape == (2, 2 * 2 * 2, 192) and bb.embed_dim == 192
    assert bb.token_grid(clip.shape) == (2, 2, 2) and bb.num_tokens(clip.shape) == 8
    torch.testing.assert_close(tokens, expected)
    assert not torch.allclose(tokens, online)  # the EMA target, not the context encoder
    # frozen
    assert not tokens.requires_grad and not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.training and not bb.encoder.training
    # uint8 input in [0, 255] is accepted
    torch.testing.assert_close(bb((clip * 255).round().to(torch.uint8)),
                               bb((clip * 255).round() / 255))


def test_surgmotion_identity_stable_across_loads_and_changes_with_weights(tmp_path: Path,
                                                                           surgmotion: SurgMotion) -> None:
    a = _write_checkpoint(tmp_path / "a", surgmotion)
    id1 = SurgMotionBackbone.from_checkpoint(a).identity()
    assert SurgMotionBackbone.from_checkpoint(a / "model.pt").identity() == id1  # file path + sibling config
    assert build_backbone(f"surgmotion:{a}").identity() == id1
    # a copy elsewhere has the same identity; no config → encoder config inferred from the weight shapes
    b = tmp_path / "b"
    b.mkdir()
    (b / "model.pt").write_bytes((a / "model.pt").read_bytes())
    inferred = SurgMotionBackbone.from_checkpoint(b)
    assert inferred.encoder.cfg.patch_size == 8 and inferred.identity() == id1
    # changing the online encoder only (not the target) keeps the identity; changing the target changes it
    state = torch.load(a / "model.pt", weights_only=True)
    state["encoder"]["blocks.0.attn.qkv.weight"] += 1.0
    torch.save(state, b / "model.pt")
    assert SurgMotionBackbone.from_checkpoint(b).identity() == id1
    state["target_encoder"]["blocks.0.attn.qkv.weight"][0, 0] += 1e-3
    torch.save(state, b / "model.pt")
    assert SurgMotionBackbone.from_checkpoint(b).identity() != id1


def test_surgmotion_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.pt"):
        SurgMotionBackbone.from_checkpoint(tmp_path)
    torch.save({"encoder": {}}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="target_encoder"):
        SurgMotionBackbone.from_checkpoint(tmp_path)
    torch.save({"encoder": {}, "predictor": {}, "target_encoder": {}}, tmp_path / "model.pt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": {}}))
    with pytest.raises(ValueError, match="model.encoder"):
        SurgMotionBackbone.from_checkpoint(tmp_path)


def test_real_save_checkpoint_layout_loads(tmp_path: Path, surgmotion: SurgMotion) -> None:
    """Guard against drift from orchestrator/pretrain/checkpoint.py (the writer of real checkpoints)."""
    from orchestrator.pretrain.checkpoint import save_checkpoint
    from orchestrator.pretrain.config import PretrainConfig

    cfg = PretrainConfig(model=CFG).model_dump(mode="json")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    save_checkpoint(tmp_path / "ck", surgmotion, opt, {"step": 1}, cfg)
    bb = SurgMotionBackbone.from_checkpoint(tmp_path / "ck")
    clip = _clip(b=1)
    with torch.no_grad():
        torch.testing.assert_close(bb(clip), surgmotion.target_encoder(normalize_clip(clip)))


def test_random_init_backbone_is_seeded() -> None:
    rng_before = torch.get_rng_state()
    a, b, c = RandomInitBackbone("tiny", seed=0), RandomInitBackbone("tiny", seed=0), RandomInitBackbone("tiny", 1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG stream is untouched
    assert a.identity() == b.identity() != c.identity()
    clip = _clip(b=1, t=2, h=32, w=32)
    torch.testing.assert_close(a(clip), b(clip))
    assert a(clip).shape == (1, 4, 192) and a.token_grid(clip.shape) == (1, 2, 2)
    assert isinstance(build_backbone("random"), RandomInitBackbone)
    assert build_backbone("random:tiny").identity() == a.identity()


def _timm_reference(name: str, img_size: int, frames: torch.Tensor, **kw) -> torch.Tensor:
    """forward_features of a freshly created model (seed 0) on ImageNet-normalised frames, prefix tokens dropped."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, **kw).eval()
    cfg = timm.data.resolve_model_data_config(m)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return m.forward_features((frames - mean) / std)[:, m.num_prefix_tokens:]


def test_timm_frame_backbone_tokens_and_local_weights(tmp_path: Path) -> None:
    bb = TimmFrameBackbone("vit_tiny_patch16_224", img_size=32)
    clip = _clip(b=2, t=3, h=32, w=32)
    tokens = bb(clip)
    assert bb.embed_dim == 192 and bb.num_prefix_tokens == 1 and bb.input_size == (32, 32)
    assert tokens.shape == (2, 3 * 4, 192) and bb.token_grid(clip.shape) == (3, 2, 2)
    frames = rearrange(clip, "b c t h w -> (b t) c h w")
    ref = rearrange(_timm_reference("vit_tiny_patch16_224", 32, frames), "(b t) n d -> b (t n) d", b=2)
    torch.testing.assert_close(tokens, ref)  # per-frame patch tokens concatenated over time
    assert TimmFrameBackbone("vit_tiny_patch16_224", img_size=32).identity() == bb.identity()
    # chunked frames give the same tokens; other frame sizes are resized to the input size
    chunked = TimmFrameBackbone("vit_tiny_patch16_224", img_size=32, frame_chunk=2)
    torch.testing.assert_close(chunked(clip), tokens)
    assert bb(_clip(b=1, t=2, h=48, w=40)).shape == (1, 8, 192)

    # local weights (torch and safetensors): different seed, same loaded weights → same tokens and identity
    from safetensors.torch import save_file

    state = bb.model.state_dict()
    torch.save(state, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for f in ("w.pt", "w.safetensors"):
        loaded = TimmFrameBackbone("vit_tiny_patch16_224", weights_path=tmp_path / f, img_size=32, seed=123)
        torch.testing.assert_close(loaded(clip), tokens)
        assert loaded.identity() == bb.identity()
    other = TimmFrameBackbone("vit_tiny_patch16_224", img_size=32, seed=123)
    assert other.identity() != bb.identity() and not torch.allclose(other(clip), tokens)
    # a file that does not fit the model is a clear error
    torch.save({"foo": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        TimmFrameBackbone("vit_tiny_patch16_224", weights_path=tmp_path / "bad.pt", img_size=32)


def test_timm_register_tokens_are_dropped() -> None:
    bb = TimmFrameBackbone("vit_small_patch14_reg4_dinov2", img_size=28)
    assert bb.num_prefix_tokens == 5 and bb.pixel_mean == pytest.approx((0.485, 0.456, 0.406))
    clip = _clip(b=1, t=2, h=28, w=28)
    assert bb(clip).shape == (1, 2 * 4, 384) and bb.token_grid(clip.shape) == (2, 2, 2)


def test_build_backbone_specs(tmp_path: Path, surgmotion: SurgMotion) -> None:
    ckpt = _write_checkpoint(tmp_path / "ck", surgmotion)
    assert isinstance(build_backbone(f"surgmotion:{ckpt}"), SurgMotionBackbone)
    assert isinstance(build_backbone(f"surgmotion:{ckpt / 'model.pt'}"), SurgMotionBackbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)  # head is skipped
    torch.save(ref.state_dict(), tmp_path / "vit.pt")
    bb = build_backbone(f"timm:vit_tiny_patch16_224@{tmp_path / 'vit.pt'}")
    assert isinstance(bb, TimmFrameBackbone) and isinstance(bb, Backbone)
    assert bb.weights_path == str(tmp_path / "vit.pt") and bb.input_size == (224, 224)
    torch.testing.assert_close(bb.model.pos_embed, ref.pos_embed)
    assert build_backbone("timm:vit_tiny_patch16_224").model_name == "vit_tiny_patch16_224"
    bad = ["", "   ", "foo:bar", "random:", "random:enormous", "surgmotion:", f"surgmotion:{tmp_path / 'nope'}",
           "timm:", "timm:vit_tiny_patch16_224@", "timm:not_a_real_model_xyz", "timm:bad name",
           f"timm:vit_tiny_patch16_224@{tmp_path / 'missing.pt'}"]
    for spec in bad:
        with pytest.raises(ValueError, match="backbone spec"):
            build_backbone(spec)
