"""``vjepa2:<file>`` backbones and ``train.init_from`` with official V-JEPA 2 checkpoints.

The fixtures (``tests/fixtures/vjepa2_{rope,sincos}.pt`` + ``*_golden.pt``) were written by
``tests/fixtures/make_vjepa2_golden.py`` running the official code (facebookresearch/vjepa2 @ c2963a4): a small
official model (width 40, 2 heads, depth 2, patch 8) in the exact checkpoint layout and its outputs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.backbones.factory import BackboneError, backbone_label, build_backbone, check_spec, parse_spec
from model.backbones.vjepa2 import VJEPA2Backbone, infer_encoder, load_vjepa2_modules, read_checkpoint, section
from model.jepa import SurgMotion, SurgMotionConfig
from model.predictor import Predictor, PredictorConfig
from model.vit import EncoderConfig, VideoViT, normalize_clip, sincos_pos_embed_3d
from orchestrator.pretrain.checkpoint import load_init_weights

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOL = 1e-4


def fixture(variant: str) -> tuple[Path, dict[str, Any]]:
    return FIXTURES / f"vjepa2_{variant}.pt", torch.load(FIXTURES / f"vjepa2_{variant}_golden.pt", weights_only=True)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("variant", ["rope", "sincos"])
def test_tokens_equal_the_official_encoder(variant: str) -> None:
    """Default key (the EMA target encoder) on the clip the official model saw; fewer frames and a smaller crop
    exercise the sin-cos table's truncation and trilinear resizing."""
    path, gold = fixture(variant)
    bb = build_backbone(f"vjepa2:{path}#heads=2")
    assert isinstance(bb, VJEPA2Backbone) and bb.checkpoint_key == "target_encoder"
    assert bb.encoder.cfg.pos_embed == variant and bb.encoder.cfg.patch_size == 8 and bb.embed_dim == 40
    assert (bb.pos_table is None) == (variant == "rope")
    clip = gold["clip"]  # uint8: the backbone divides by 255 and normalises with ImageNet mean/std
    assert bb.token_grid(clip.shape) == (4, 8, 8)
    assert max_diff(bb(clip), gold["target_tokens"]) <= TOL
    assert max_diff(bb(clip[:, :, :4]), gold["target_tokens_4f"]) <= TOL
    assert max_diff(bb(clip[..., :32, :32]), gold["target_tokens_32px"]) <= TOL


def test_encoder_key_picks_the_context_encoder() -> None:
    path, gold = fixture("rope")
    enc = build_backbone(f"vjepa2:{path}#encoder,heads=2")
    tgt = build_backbone(f"vjepa2:{path}#heads=2")
    assert max_diff(enc(gold["clip"]), gold["encoder_tokens"]) <= TOL
    assert max_diff(enc(gold["clip"]), tgt(gold["clip"])) > 0.1
    assert enc.identity() != tgt.identity()
    assert build_backbone(f"vjepa2:{path}#target_encoder,heads=2").identity() == tgt.identity()


def test_masked_encoder_and_predictor_equal_the_official_ones() -> None:
    """The init_from loader on the official names: the context encoder on visible tokens (RoPE positions from the
    token indices) and the predictor (its first mask token as our query) reproduce the official outputs."""
    path, gold = fixture("rope")
    ckpt = read_checkpoint(path)
    cfg, arch = infer_encoder(section(ckpt, "encoder", "fixture"), 2, "fixture")
    enc, tgt = VideoViT(cfg, arch).eval(), VideoViT(cfg, arch).eval()
    pa = gold["predictor_arch"]
    pred = Predictor(40, PredictorConfig(depth=pa["depth"], embed_dim=pa["predictor_embed_dim"],
                                         num_heads=pa["num_heads"], mlp_ratio=pa["mlp_ratio"], pos_embed="rope")).eval()
    note = load_vjepa2_modules(ckpt, "fixture", enc, tgt, pred)
    assert "predictor" in note
    x = normalize_clip(gold["clip"].float().div(255.0))
    with torch.no_grad():
        ctx = enc(x, gold["visible"])
        assert max_diff(ctx, gold["encoder_visible_tokens"]) <= TOL
        assert max_diff(tgt(x), gold["target_tokens"]) <= TOL
        assert max_diff(pred(ctx, gold["visible"], gold["masked"], (4, 8, 8)), gold["predictor_out"]) <= TOL


def test_spec_syntax_and_labels() -> None:
    s = parse_spec("vjepa2:/ckpts/vitg.pt#encoder,heads=22")
    assert (s.kind, s.path, s.checkpoint_key, s.heads) == ("vjepa2", "/ckpts/vitg.pt", "encoder", 22)
    assert s.label == "vjepa2:vitg.pt#encoder,heads=22"
    d = parse_spec("vjepa2:/ckpts/vitg.pt")
    assert (d.checkpoint_key, d.heads, d.label) == ("target_encoder", None, "vjepa2:vitg.pt")
    assert backbone_label("vjepa2:/a/b/SurgMotion-vitg-xformer.pt") == "vjepa2:SurgMotion-vitg-xformer.pt"
    for bad in ("vjepa2:", "vjepa2:#encoder", "vjepa2:a.pt#predictor", "vjepa2:a.pt#heads=0"):
        with pytest.raises(BackboneError, match="vjepa2"):
            parse_spec(bad)
    with pytest.raises(BackboneError, match="does not exist"):
        check_spec("vjepa2:/no/such/vitg.pt")
    assert check_spec(f"vjepa2:{FIXTURES / 'vjepa2_rope.pt'}#heads=2").kind == "vjepa2"


def edited(tmp_path: Path, edit: Any) -> Path:
    ckpt = torch.load(FIXTURES / "vjepa2_rope.pt", weights_only=True)
    edit(ckpt)
    out = tmp_path / "edited.pt"
    torch.save(ckpt, out)
    return out


def test_layout_errors_name_the_keys(tmp_path: Path) -> None:
    no_target = edited(tmp_path, lambda c: c.pop("target_encoder"))
    with pytest.raises(BackboneError, match=r"no 'target_encoder'.*'#encoder'"):
        build_backbone(f"vjepa2:{no_target}#heads=2")
    assert build_backbone(f"vjepa2:{no_target}#encoder,heads=2").embed_dim == 40

    no_encoder = edited(tmp_path, lambda c: c.pop("encoder"))
    with pytest.raises(BackboneError, match=r"no 'encoder'"):
        build_backbone(f"vjepa2:{no_encoder}#encoder,heads=2")

    def blocks(c: dict) -> None:
        enc = c["target_encoder"]
        enc.pop("module.backbone.blocks.1.mlp.fc2.weight")
        enc["module.backbone.blocks.0.attn.q_bias"] = torch.zeros(40)
    with pytest.raises(BackboneError) as err:
        build_backbone(f"vjepa2:{edited(tmp_path, blocks)}#heads=2")
    msg = str(err.value)
    assert "missing keys ['blocks.1.mlp.fc2.weight']" in msg and "unexpected keys ['blocks.0.attn.q_bias']" in msg

    with pytest.raises(BackboneError, match=r"heads of width 40.*#heads=<n>"):
        build_backbone(f"vjepa2:{FIXTURES / 'vjepa2_rope.pt'}")
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(BackboneError, match="not a V-JEPA 2 checkpoint"):
        build_backbone(f"vjepa2:{not_a_dict}")


# ------------------------------------------------------------------------------------------------ init_from
OFFICIAL_PREDICTOR = (("embed.", "predictor_embed."), ("blocks.", "predictor_blocks."), ("norm.", "predictor_norm."),
                      ("proj.", "predictor_proj."))


def official_names(state: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...]) -> dict[str, torch.Tensor]:
    """Our names → V-JEPA 2's, with the DDP + wrapper prefix its checkpoints carry."""
    out = {}
    for k, v in state.items():
        for ours, theirs in renames:
            if k.startswith(ours):
                k = theirs + k[len(ours):]
                break
        out[f"module.backbone.{k}"] = v
    return out


def official_file(model: SurgMotion, path: Path, target: bool = True) -> Path:
    """``model``'s weights written as V-JEPA 2's ``save_checkpoint`` lays them out (two mask tokens)."""
    pred = {k: v for k, v in model.predictor.state_dict().items() if k != "query"}
    pred = official_names(pred, OFFICIAL_PREDICTOR)
    pred["module.backbone.mask_tokens.0"] = model.predictor.query.detach().view(1, 1, -1).clone()
    pred["module.backbone.mask_tokens.1"] = torch.randn(1, 1, model.predictor.embed_dim)
    ckpt: dict[str, Any] = {
        "encoder": official_names(model.encoder.state_dict(), (("patch_embed.", "patch_embed.proj."),)),
        "predictor": pred, "opt": {"state": {}, "param_groups": []}, "scaler": None, "epoch": 3, "loss": 0.4,
        "batch_size": 2, "world_size": 1, "lr": 1e-4}
    if target:
        ckpt["target_encoder"] = official_names(model.target_encoder.state_dict(), (("patch_embed.",
                                                                                      "patch_embed.proj."),))
    torch.save(ckpt, path)
    return path


def tiny(pos: str = "rope", seed: int = 0, pred_depth: int = 1) -> SurgMotion:
    """A tiny SurgMotion cut to 2 encoder blocks, seeded normal weights (built on the meta device for test speed;
    the loaders compare against the module as it is)."""
    cfg = SurgMotionConfig(encoder=EncoderConfig(size="tiny", pos_embed=pos),  # type: ignore[arg-type]
                           predictor=PredictorConfig(depth=pred_depth))
    with torch.device("meta"):
        model = SurgMotion(cfg)
    model.encoder.blocks, model.target_encoder.blocks = model.encoder.blocks[:2], model.target_encoder.blocks[:2]
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return model


def test_init_from_an_official_file_loads_every_module(tmp_path: Path) -> None:
    source = tiny(seed=1)
    with torch.no_grad():
        for p in source.target_encoder.parameters():
            p.add_(0.1)  # the EMA target differs from the context encoder
        source.predictor.query.normal_()
    file = official_file(source, tmp_path / "vitt.pt")
    fresh = tiny(seed=2)
    note = load_init_weights(fresh, file)
    assert note.startswith("V-JEPA 2 layout") and "predictor" in note
    for a, b in ((fresh.encoder, source.encoder), (fresh.target_encoder, source.target_encoder),
                 (fresh.predictor, source.predictor)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(fresh.encoder.norm.weight, fresh.target_encoder.norm.weight)

    no_target = official_file(source, tmp_path / "enc_only.pt", target=False)
    other = tiny(seed=3)
    assert "target_encoder <- encoder" in load_init_weights(other, no_target)
    assert torch.equal(other.target_encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)


def test_init_from_an_official_file_that_does_not_fit_is_one_clear_error(tmp_path: Path) -> None:
    file = official_file(tiny(), tmp_path / "vitt.pt")
    with pytest.raises(ValueError, match=r"\[encoder\].*rope positions.*pos_embed: rope"):
        load_init_weights(tiny(pos="sincos"), file)
    with pytest.raises(ValueError, match=r"\[predictor\].*does not fit.*missing keys \['predictor_blocks\.1\."):
        load_init_weights(tiny(pred_depth=2), file)
    with torch.device("meta"):
        patch8 = SurgMotion(SurgMotionConfig(encoder=EncoderConfig(size="tiny", patch_size=8, pos_embed="rope"),
                                             predictor=PredictorConfig(depth=1)))
    patch8.to_empty(device="cpu")
    with pytest.raises(ValueError, match=r"\[encoder\].*shape mismatches \['patch_embed\.proj\.weight: file "
                                         r"\(192, 3, 2, 16, 16\) vs model \(192, 3, 2, 8, 8\)'\]"):
        load_init_weights(patch8, file)
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_init_weights(tiny(), tmp_path / "missing.pt")


def test_init_from_a_sincos_file_needs_the_table_we_regenerate(tmp_path: Path) -> None:
    """A sin-cos checkpoint continues here only if its stored table is the one our encoder regenerates (V-JEPA's
    uniform_power: true); the fixture's uniform_power: false table is refused by name."""
    source = tiny(pos="sincos", seed=1)
    ckpt = torch.load(official_file(source, tmp_path / "sincos.pt"), weights_only=True)
    for key in ("encoder", "target_encoder"):
        ckpt[key]["module.backbone.pos_embed"] = sincos_pos_embed_3d(192, (8, 14, 14))[None]
    ckpt["predictor"]["module.backbone.predictor_pos_embed"] = sincos_pos_embed_3d(128, (8, 14, 14))[None]
    torch.save(ckpt, tmp_path / "sincos.pt")
    fresh = tiny(pos="sincos", seed=2)
    load_init_weights(fresh, tmp_path / "sincos.pt")
    assert torch.equal(fresh.encoder.blocks[1].mlp.fc2.weight, source.encoder.blocks[1].mlp.fc2.weight)
    with pytest.raises(ValueError, match=r"pos_embed is not the 3D sin-cos table this encoder regenerates"):
        load_init_weights(tiny(pos="sincos"), FIXTURES / "vjepa2_sincos.pt")
