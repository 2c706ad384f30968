"""Dense heads: which blocks the multi-level tokens come from, that the last level is the backbone's output, the
DPT-style head's shapes and that every level reaches the output, how the sweep config / cache key carry it, and the
depth target scaling."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from model.backbones.base import Backbone, level_blocks
from model.backbones.factory import build_backbone
from model.dpt import DPTProbe, level_factors
from model.probes import DenseProbe, build_probe
from model.vit import normalize_clip
from orchestrator.config import ConfigError, load_config
from orchestrator.probe.config import DEFAULT_CONFIG, BackboneInfo, FeatureConfig, SweepConfig
from orchestrator.probe.features import cache_key
from orchestrator.probe.trial import ProbeTask, Standardizer
from orchestrator.synthetic.specs import SYNTHETIC_BENCHMARKS


def test_level_blocks_and_factors_by_hand() -> None:
    assert level_blocks(12, 4) == [2, 5, 8, 11]  # DPT's hooks on a ViT-B
    assert level_blocks(40, 4) == [9, 19, 29, 39]  # ViT-g
    assert level_blocks(24, 4) == [5, 11, 17, 23] and level_blocks(12, 1) == [11] and level_blocks(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"levels must be in \[1, 2\]"):
        level_blocks(2, 4)
    assert level_factors(4) == [4.0, 2.0, 1.0, 0.5] and level_factors(2) == [1.0, 0.5] and level_factors(1) == [1.0]


def test_levels_are_normed_block_outputs_and_the_last_is_forward() -> None:
    torch.manual_seed(0)
    bb = build_backbone("random:tiny")
    clip = torch.rand(2, 3, 4, 32, 32)
    tokens = bb(clip)
    levels = bb.forward_levels(clip, 4)
    n = tokens.shape[1]
    assert levels.shape == (2, 4 * n, bb.embed_dim)
    assert torch.equal(levels[:, 3 * n:], tokens)
    enc = bb.encoder  # level 0 by hand: embed, blocks 0..2, the final norm
    x = enc.embed(normalize_clip(clip, bb.pixel_mean, bb.pixel_std))
    for blk in enc.blocks[:3]:
        x = blk(x)
    torch.testing.assert_close(levels[:, :n], enc.norm(x))
    assert not torch.allclose(levels[:, :n], levels[:, n:2 * n])
    assert torch.equal(bb.forward_levels(clip, 1), tokens)
    with pytest.raises(ValueError, match="blocks must be increasing"):
        enc.forward_levels(x, enc.grid(clip.shape), [5, 2])


class _LastLayerOnly(Backbone):
    kind = "last-layer"

    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 8
        self._finalize({})

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        return (1, 1, 1)

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.mean(dim=(2, 3, 4)).repeat(1, 3)[:, None, :8]


def test_a_backbone_without_blocks_gives_one_level_only() -> None:
    bb, clip = _LastLayerOnly(), torch.rand(1, 3, 2, 4, 4)
    assert bb.num_blocks() is None and torch.equal(bb.forward_levels(clip, 1), bb(clip))
    with pytest.raises(ValueError, match="features.dense_levels=1"):
        bb.forward_levels(clip, 4)
    seg = SYNTHETIC_BENCHMARKS["synthetic-segmentation"]
    info = BackboneInfo(spec="x", identity="i", grid=[1, 1, 1], embed_dim=8)
    assert FeatureConfig().levels(seg, info) == 1
    assert FeatureConfig().levels(seg, info.model_copy(update={"blocks": 12})) == 4
    assert FeatureConfig(dense_levels=2).levels(seg, info.model_copy(update={"blocks": 12})) == 2
    assert FeatureConfig().levels(SYNTHETIC_BENCHMARKS["synthetic-phase"], info.model_copy(update={"blocks": 12})) == 1


def test_dpt_head_shapes_and_every_level_reaches_the_output() -> None:
    torch.manual_seed(0)
    grid, d = (2, 4, 4), 16
    head = DPTProbe(d, 1, grid, levels=4, image_size=64, hidden_dim=16)
    x = torch.randn(3, 4 * 32, d, requires_grad=True)
    y = head(x)
    assert y.shape == (3, 1, 64, 64)
    assert [tuple(m.shape[-2:]) for m in head.level_maps(x)] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    y.sum().backward()
    assert x.grad is not None
    per_level = x.grad.abs().reshape(3, 4, 32, d).sum(dim=(0, 2, 3))
    assert (per_level > 0).all(), per_level
    assert head(x, out_size=(20, 30)).shape == (3, 1, 20, 30)
    depth = build_probe("depth", d, grid=grid, image_size=48, hidden_dim=16, levels=4)
    assert isinstance(depth, DPTProbe) and (depth(x.detach()) > 0).all()  # softplus
    with pytest.raises(ValueError, match=r"4\*32"):
        head(torch.randn(3, 32, d))  # one level where four are expected


def test_conv_head_and_config_guard() -> None:
    grid = (1, 2, 2)
    assert isinstance(build_probe("segmentation", 8, grid=grid, hidden_dim=8, dense_head="conv"), DenseProbe)
    with pytest.raises(ValueError, match="conv"):
        build_probe("segmentation", 8, grid=grid, hidden_dim=8, dense_head="conv", levels=4)
    cfg = load_config(SweepConfig, DEFAULT_CONFIG)  # the CPU suite: conv, 1 level; the paper protocol: dpt, 4
    assert (cfg.probe.dense_head, cfg.features.dense_levels) == ("conv", 1)
    paper = load_config(SweepConfig, DEFAULT_CONFIG.with_name("paper.yaml"))
    assert (paper.probe.dense_head, paper.features.dense_levels) == ("dpt", 4)
    assert (SweepConfig().probe.dense_head, SweepConfig().features.dense_levels) == ("dpt", 4)
    with pytest.raises(ConfigError, match="features.dense_levels=1"):
        load_config(SweepConfig, DEFAULT_CONFIG, ["features.dense_levels=4"])


def test_levels_enter_the_cache_key_only_when_multi_level() -> None:
    spec, cfg = SYNTHETIC_BENCHMARKS["synthetic-segmentation"], FeatureConfig()
    one = cache_key("identity-abc", spec, "train", [], cfg)
    assert cache_key("identity-abc", spec, "train", [], cfg, 0, 1) == one
    assert cache_key("identity-abc", spec, "train", [], cfg, 0, 4) != one


def test_depth_targets_are_scaled_by_the_mean_valid_train_depth() -> None:
    pt = ProbeTask(benchmark="synthetic-depth", task="depth", num_classes=0, primary_metric="rmse", embed_dim=8,
                   grid=[1, 1, 1], crop=4)
    train = np.zeros((2, 4, 4), dtype=np.float32)
    train[0, :2] = 40.0   # 8 valid pixels at 40 mm, 8 at 100 mm, 16 invalid (0)
    train[1, 2:] = 100.0
    std = Standardizer.fit(pt, train)
    assert (std.mean, std.std) == (0.0, 70.0)
    scaled = std.fwd(torch.from_numpy(train))
    assert torch.equal(scaled == 0, torch.from_numpy(train == 0))  # invalid stays 0 (masked by the loss)
    assert float(scaled.max()) == pytest.approx(100 / 70)
    np.testing.assert_allclose(std.inv(scaled.numpy()), train, rtol=1e-6)
    skill = pt.model_copy(update={"task": "skill"})
    labels = np.array([1.0, 3.0], dtype=np.float32)
    assert (Standardizer.fit(skill, labels).mean, Standardizer.fit(skill, labels).std) == (2.0, 1.0)
    seg = pt.model_copy(update={"task": "segmentation"})
    assert (Standardizer.fit(seg, train).mean, Standardizer.fit(seg, train).std) == (0.0, 1.0)
