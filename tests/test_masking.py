"""Multi-block masks (V-JEPA 2's setting): block geometry, the masked-fraction distribution on the 14x14x8 grid of
a 224-px, 16-frame clip, equal counts per batch without dropping clips, determinism under a seed; the SurgMotion
module runs one predictor pass per mask set."""
from __future__ import annotations

import statistics

import pytest
import torch

from model.jepa import SurgMotion, SurgMotionConfig
from model.masking import BlockSet, MaskConfig, block_size, block_union, sample_block_mask, sample_masks, vjepa2_sets
from model.vit import EncoderConfig

GRID = (8, 14, 14)   # 16 frames / tubelet 2, 224 / 16
S = 14 * 14


def test_block_size_follows_scale_and_aspect() -> None:
    """area = int(196 · 0.15) = 29 patches; h = round(sqrt(29·ar)), w = round(sqrt(29/ar)), ar in [0.75, 1.5]."""
    bs = BlockSet(num_blocks=8, spatial_scale=(0.15, 0.15))
    g = torch.Generator().manual_seed(0)
    sizes = {block_size(bs, 14, 14, g) for _ in range(200)}
    assert sizes <= {(5, 5), (5, 6), (6, 4), (6, 5), (7, 4)} and len(sizes) >= 3
    for h, w in sizes:
        assert 0.75 - 0.35 <= h / w <= 1.5 + 0.45 and abs(h * w - 29) <= 6
    big = {block_size(BlockSet(num_blocks=2, spatial_scale=(0.7, 0.7)), 14, 14, g) for _ in range(200)}
    assert all(10 <= h <= 14 and 10 <= w <= 14 for h, w in big)


def test_union_of_blocks_is_exactly_the_drawn_rectangles() -> None:
    bs = BlockSet(num_blocks=1, spatial_scale=(0.15, 0.15))
    g = torch.Generator().manual_seed(3)
    union = block_union(bs, (5, 6), 14, 14, g)
    rows, cols = union.nonzero(as_tuple=True)
    assert union.sum() == 30 and rows.max() - rows.min() == 4 and cols.max() - cols.min() == 5  # one 5 x 6 block


def test_masked_tubes_span_the_whole_clip_and_counts_are_equal_per_batch() -> None:
    g = torch.Generator().manual_seed(1)
    for m in sample_masks(MaskConfig(), 6, GRID, g):
        nm, nv = m.masked_tubes.shape[1], m.visible_tubes.shape[1]
        assert m.masked_tubes.shape[0] == m.visible_tubes.shape[0] == 6  # no clip dropped
        tok = m.masked_tokens.view(6, 8, nm)  # every time step of every masked tube is a predicted token
        assert torch.equal(tok % S, m.masked_tubes.unsqueeze(1).expand(-1, 8, -1))
        assert torch.equal(tok // S, torch.arange(8).view(1, 8, 1).expand(6, -1, nm))
        for b in range(6):
            vis, msk = set(m.visible_tubes[b].tolist()), set(m.masked_tubes[b].tolist())
            assert vis.isdisjoint(msk) and len(vis) == nv and len(msk) == nm and vis | msk <= set(range(S))
            assert m.visible_tubes[b].tolist() == sorted(vis)


def test_masked_fraction_distribution_on_the_224px_16_frame_grid() -> None:
    """300 batches of 4 clips (the numbers docs/method.md states): predicted fraction ~0.55 (8 x 0.15) and ~0.75
    (2 x 0.7); unseen by the context encoder ~0.70 and ~0.88."""
    g = torch.Generator().manual_seed(0)
    pred: list[list[float]] = [[], []]
    unseen: list[list[float]] = [[], []]
    for _ in range(300):
        for k, m in enumerate(sample_masks(MaskConfig(), 4, GRID, g)):
            pred[k].append(m.masked_fraction)
            unseen[k].append(1 - m.context_fraction)
    means = [statistics.mean(p) for p in pred]
    assert 0.50 <= means[0] <= 0.60 and 0.70 <= means[1] <= 0.80, means
    assert 0.65 <= statistics.mean(unseen[0]) <= 0.75 and 0.84 <= statistics.mean(unseen[1]) <= 0.92
    assert all(0.02 <= statistics.stdev(p) <= 0.10 for p in pred)
    assert min(min(u) for u in unseen) > 0.4 and max(max(u) for u in unseen) < 1.0  # never all or nothing


def test_masks_are_reproducible_under_a_seed() -> None:
    a = sample_masks(MaskConfig(), 3, GRID, torch.Generator().manual_seed(7))
    b = sample_masks(MaskConfig(), 3, GRID, torch.Generator().manual_seed(7))
    c = sample_masks(MaskConfig(), 3, GRID, torch.Generator().manual_seed(8))
    assert all(torch.equal(x.masked_tubes, y.masked_tubes) for x, y in zip(a, b))
    assert not all(torch.equal(x.masked_tubes, y.masked_tubes) for x, y in zip(a, c))


def test_configs_and_errors() -> None:
    assert [s.num_blocks for s in vjepa2_sets()] == [8, 2] and MaskConfig().num_sets == 2
    assert MaskConfig(mode="tube").num_sets == 1
    with pytest.raises(ValueError, match="spatial_scale"):
        BlockSet(num_blocks=1, spatial_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="whole"):  # a block set that always masks everything
        sample_block_mask(1, (1, 2, 2), BlockSet(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0)))


def test_one_predictor_pass_per_mask_set() -> None:
    cfg = SurgMotionConfig(encoder=EncoderConfig(size="tiny"), predictor={"depth": 1})
    model = SurgMotion(cfg)
    model.encoder.blocks = model.encoder.blocks[:1]
    model.target_encoder.blocks = model.target_encoder.blocks[:1]
    calls: list[int] = []
    model.predictor.register_forward_hook(lambda mod, args, out: calls.append(out.shape[1]))
    clip = torch.rand(2, 3, 4, 64, 64)
    masks = model.sample_masks(clip, torch.Generator().manual_seed(0))
    out = model(clip, masks=masks)
    assert calls == [m.masked_tokens.shape[1] for m in masks] and len(calls) == 2
    per_set = [model(clip, masks=[m]) for m in masks]  # the totals are the mean over the sets
    assert out["loss"].item() == pytest.approx(sum(p["loss"].item() for p in per_set) / 2, rel=1e-5)
