"""``hf:<dir>`` backbones (model/backbones/hf_video.py): tiny random transformers video models saved with
``save_pretrained``, loaded through the spec, checked against the models' own outputs and token layouts."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from model.backbones.factory import BackboneError, build_backbone, check_spec, parse_spec
from model.vit import IMAGENET_MEAN, IMAGENET_STD, normalize_clip

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _clip(b: int = 2, t: int = 4, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))


def _save(model: Any, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


def _videomae(directory: Path, seed: int = 0, **overrides: Any) -> Path:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2,
                                      **{**TINY, **overrides})
    torch.manual_seed(seed)
    return _save(transformers.VideoMAEModel(cfg), directory)


def _family(model_type: str, directory: Path, layers: int = 1) -> Path:
    """A tiny random model of each family: 32 px, patch 8, 4 frames."""
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = {**TINY, "num_hidden_layers": layers}
    if model_type == "videomae":
        model = tf.VideoMAEModel(tf.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, **small))
    elif model_type == "vivit":
        model = tf.VivitModel(tf.VivitConfig(image_size=32, num_frames=4, tubelet_size=[2, 8, 8], **small))
    elif model_type == "timesformer":
        model = tf.TimesformerModel(tf.TimesformerConfig(image_size=32, patch_size=8, num_frames=4, **small))
    else:
        small.pop("intermediate_size")
        model = tf.VJEPA2Model(tf.VJEPA2Config(crop_size=32, patch_size=8, frames_per_clip=4, tubelet_size=2,
                                               mlp_ratio=2.0, pred_hidden_size=16, pred_num_attention_heads=2,
                                               pred_num_hidden_layers=1, **small))
    return _save(model, directory)


def _direct(directory: Path, cls_name: str, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    tf = pytest.importorskip("transformers")
    model = getattr(tf, cls_name).from_pretrained(str(directory)).eval()
    with torch.no_grad():
        out: torch.Tensor = model(pixel_values, **kwargs).last_hidden_state
    return out


def _btchw(clip: torch.Tensor, mean: Any = IMAGENET_MEAN, std: Any = IMAGENET_STD) -> torch.Tensor:
    return normalize_clip(clip, mean, std).permute(0, 2, 1, 3, 4)


def test_hf_spec_syntax_and_label() -> None:
    spec = parse_spec("hf:/ckpts/videomae-large/")
    assert (spec.kind, spec.path, spec.label) == ("hf", "/ckpts/videomae-large/", "hf:videomae-large")
    with pytest.raises(BackboneError, match=r"'hf:'.*missing checkpoint directory"):
        parse_spec("hf:")


def test_videomae_tokens_are_the_models_last_hidden_state(tmp_path: Path) -> None:
    directory = _videomae(tmp_path / "vmae")
    bb = build_backbone(f"hf:{directory}")
    clip = _clip()
    tokens = bb(clip)
    expected = _direct(directory, "VideoMAEModel", _btchw(clip))
    assert tokens.shape == (2, 2 * 4 * 4, 32) and bb.embed_dim == 32
    assert bb.token_grid(clip.shape) == (2, 4, 4)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bb((clip * 255).round().to(torch.uint8)), bb((clip * 255).round() / 255))


def test_other_clip_sizes_are_resampled_to_the_models_input(tmp_path: Path) -> None:
    """The sweep's default features (8 frames, 64 px) into a 4-frame 32 px VideoMAE: frames 0, 2, 5, 7 (first and
    last kept), resized bilinearly with antialiasing; the grid is the model's."""
    directory = _videomae(tmp_path / "vmae")
    bb = build_backbone(f"hf:{directory}")
    clip = _clip(t=8, h=64, w=64, seed=1)
    picked = clip[:, :, [0, 2, 5, 7]]
    frames = picked.permute(0, 2, 1, 3, 4).reshape(-1, 3, 64, 64)
    small = F.interpolate(frames, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    expected = _direct(directory, "VideoMAEModel", _btchw(small.reshape(2, 4, 3, 32, 32).permute(0, 2, 1, 3, 4)))
    torch.testing.assert_close(bb(clip), expected, atol=1e-5, rtol=1e-5)
    assert bb.token_grid((1, 3, 8, 64, 64)) == (2, 4, 4) and bb(clip[:, :, :1]).shape == (2, 32, 32)


def test_processor_config_sets_the_normalisation(tmp_path: Path) -> None:
    """ViViT's processor: pixels / 127.5 - 1 (offset), then (x - 0.5) / 0.5; the identity follows it."""
    directory = _videomae(tmp_path / "vmae")
    plain = build_backbone(f"hf:{directory}")
    (directory / "preprocessor_config.json").write_text(json.dumps(
        {"do_rescale": True, "rescale_factor": 1 / 127.5, "offset": True, "do_normalize": True,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    bb = build_backbone(f"hf:{directory}")
    clip = _clip(seed=2)
    expected = _direct(directory, "VideoMAEModel", ((clip * 2 - 1 - 0.5) / 0.5).permute(0, 2, 1, 3, 4))
    torch.testing.assert_close(bb(clip), expected, atol=1e-5, rtol=1e-5)
    assert bb.identity() != plain.identity()


def test_identity_follows_the_weights(tmp_path: Path) -> None:
    a = build_backbone(f"hf:{_videomae(tmp_path / 'a', seed=0)}")
    a_again = build_backbone(f"hf:{tmp_path / 'a'}")
    b = build_backbone(f"hf:{_videomae(tmp_path / 'b', seed=1)}")
    assert a.identity() == a_again.identity() != b.identity()
    assert a.identity().startswith("hf-")
    assert a.to(torch.float64).identity() == a_again.identity()  # hashed as loaded


def test_a_pretraining_checkpoint_yields_its_encoder(tmp_path: Path) -> None:
    """VideoMAEForPreTraining (what MCG-NJU/videomae-* hold): the encoder loads, the decoder is left over."""
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = tf.VideoMAEForPreTraining(tf.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2,
                                                        decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                                        decoder_num_attention_heads=2, decoder_intermediate_size=32,
                                                        **TINY)).eval()
    directory = _save(model, tmp_path / "pre")
    clip = _clip(seed=3)
    with torch.no_grad():
        expected = model.videomae(_btchw(clip)).last_hidden_state
    torch.testing.assert_close(build_backbone(f"hf:{directory}")(clip), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type, cls_name, kwargs, cls_tokens", [
    ("vivit", "VivitModel", {}, 1),
    ("vjepa2", "VJEPA2Model", {"skip_predictor": True}, 0),
])
def test_other_families_match_their_models(tmp_path: Path, model_type: str, cls_name: str,
                                           kwargs: dict[str, Any], cls_tokens: int) -> None:
    directory = _family(model_type, tmp_path / model_type)
    bb = build_backbone(f"hf:{directory}")
    clip = _clip(seed=4)
    expected = _direct(directory, cls_name, _btchw(clip), **kwargs)[:, cls_tokens:]
    torch.testing.assert_close(bb(clip), expected, atol=1e-5, rtol=1e-5)
    assert bb.token_grid(clip.shape) == (2, 4, 4)


def test_timesformer_tokens_are_reordered_time_major(tmp_path: Path) -> None:
    directory = _family("timesformer", tmp_path / "tsf")
    bb = build_backbone(f"hf:{directory}")
    clip = _clip(seed=5)
    patch_major = _direct(directory, "TimesformerModel", _btchw(clip))[:, 1:]  # [B, (n t), D]
    expected = patch_major.reshape(2, 16, 4, 32).transpose(1, 2).reshape(2, 64, 32)
    torch.testing.assert_close(bb(clip), expected, atol=1e-5, rtol=1e-5)
    assert bb.token_grid(clip.shape) == (4, 4, 4)


@pytest.mark.parametrize("model_type", ["videomae", "vivit", "timesformer", "vjepa2"])
def test_token_layout_is_time_major(tmp_path: Path, model_type: str) -> None:
    """With no transformer blocks a token sees only its own tubelet: changing the patch at (row, col) of frame t
    changes exactly token ``(t // tubelet) * Hp * Wp + row * Wp + col`` (time-major; patch-major would differ)."""
    bb = build_backbone(f"hf:{_family(model_type, tmp_path / model_type, layers=0)}")
    clip = _clip(seed=6)
    base = bb(clip)
    tt, hp, wp = bb.token_grid(clip.shape)
    for t, row, col in ((3, 0, 0), (0, 3, 3), (2, 1, 2)):
        moved = clip.clone()
        ys, xs = slice(8 * row, 8 * row + 8), slice(8 * col, 8 * col + 8)
        moved[:, :, t, ys, xs] = 1 - moved[:, :, t, ys, xs]
        changed = ((bb(moved) - base).abs().amax(dim=(0, 2)) > 1e-6).nonzero().flatten().tolist()
        assert changed == [(t // (4 // tt)) * hp * wp + row * wp + col], (model_type, t, row, col, changed)


def test_missing_or_unfit_directories_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"'hf:.*nowhere'.*does not exist"):
        check_spec(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(BackboneError, match=r"does not exist.*checkpoint directory"):
        build_backbone(f"hf:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="no config.json"):
        build_backbone(f"hf:{tmp_path / 'empty'}")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackboneError, match=r"model_type 'bert' is not supported.*videomae"):
        check_spec(f"hf:{bert}")
    (bert / "config.json").write_text(json.dumps({"model_type": "VideoMAEv2_Giant", "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(BackboneError, match=r"custom code, which is never run"):
        build_backbone(f"hf:{bert}")
    (bert / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    with pytest.raises(BackboneError, match=r"no weights file"):
        check_spec(f"hf:{bert}")


def test_weights_that_do_not_fit_the_config_fail(tmp_path: Path) -> None:
    directory = _videomae(tmp_path / "vmae")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    check_spec(f"hf:{directory}")  # cheap checks pass: the weights are not read
    with pytest.raises(BackboneError, match=r"do not fit VideoMAEModel.*encoder\.layer\.1\."):
        build_backbone(f"hf:{directory}")


def test_without_transformers_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    directory = tmp_path / "vmae"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    (directory / "model.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers → ImportError
    for call in (check_spec, build_backbone):
        with pytest.raises(BackboneError, match=r"transformers.*not installed.*\.\[video-baselines\]"):
            call(f"hf:{directory}")
