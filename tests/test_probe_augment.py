"""Probe augmentation: seeded augmented train views (geometry, flip, colour), their cache keys and entries, and the
trial's per-epoch view sampling (docs/sweeps.md "Probe augmentation")."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FEATURES, load_tiny_phase, tiny_phase_benchmark

from model.backbones.factory import build_backbone
from orchestrator.benchmarks.spec import Sample
from orchestrator.data.augment import AugmentConfig, apply_color, augment_view, view_geometry, view_seed
from orchestrator.data.views import ClipReader, Preprocessing
from orchestrator.probe.features import EXTRACTION_COUNTER, backbone_info, cache_key, ensure_features, read_index
from orchestrator.probe.trial import ViewTokens, epoch_views

AUG = AugmentConfig()
K2 = TINY_FEATURES.model_copy(update={"train_views": 2})


# ------------------------------------------------------------------------------------------------ geometry
def test_view_seed_is_sha256_of_id_view_seed() -> None:
    expected = int.from_bytes(hashlib.sha256(json.dumps(["v0@3", 1, 0]).encode()).digest()[:8], "little")
    assert view_seed("v0@3", 1, 0) == expected
    assert len({view_seed("v0@3", 1, 0), view_seed("v0@3", 2, 0), view_seed("v0@4", 1, 0),
                view_seed("v0@3", 1, 1)}) == 4


def test_geometry_is_deterministic_and_differs_across_views() -> None:
    geoms = [view_geometry(72, 96, AUG, view_seed("v0@3", k, 0)) for k in range(1, 7)]
    assert geoms == [view_geometry(72, 96, AUG, view_seed("v0@3", k, 0)) for k in range(1, 7)]
    assert len({g[:4] for g in geoms}) == 6           # six views, six crop boxes
    assert view_geometry(72, 96, AUG, view_seed("v0@3", 1, 1)) != geoms[0]  # augment.seed matters


def test_crop_box_obeys_scale_and_aspect() -> None:
    height, width, flips = 72, 96, 0
    aug = AugmentConfig(scale=(0.3, 0.8), aspect=(0.75, 1.35), color_ops=3)
    for seed in range(400):
        g = view_geometry(height, width, aug, seed)
        assert 0 <= g.top and g.top + g.height <= height and 0 <= g.left and g.left + g.width <= width
        # w, h are rounded to pixels: allow half a pixel on each side
        lo_area, hi_area = (g.width - 0.5) * (g.height - 0.5), (g.width + 0.5) * (g.height + 0.5)
        assert lo_area <= 0.8 * height * width and hi_area >= 0.3 * height * width
        assert (g.width - 0.5) / (g.height + 0.5) <= 1.35 and (g.width + 0.5) / (g.height - 0.5) >= 0.75
        assert len(g.color) == 3 and len({op for op, _ in g.color}) == 3
        flips += g.flip
    assert 160 < flips < 240                           # p = 0.5 over 400 draws
    assert not any(view_geometry(height, width, aug.model_copy(update={"flip": False}), s).flip for s in range(50))


def test_flip_flips_and_full_box_is_identity() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    aug = AugmentConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), color_ops=0)
    flipped = [s for s in range(20) if view_geometry(16, 16, aug, s).flip]
    kept = [s for s in range(20) if not view_geometry(16, 16, aug, s).flip]
    assert flipped and kept
    np.testing.assert_array_equal(augment_view(frames, 16, aug, kept[0]), frames)
    np.testing.assert_array_equal(augment_view(frames, 16, aug, flipped[0]), frames[:, :, ::-1])


def test_color_ops_hand_computed() -> None:
    px = np.array([100, 191, 200], dtype=np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=3)  # [T, H, W, 3]
    assert apply_color(px, (("brightness", 1.5),))[0, 0, :, 0].tolist() == [150, 255, 255]
    assert apply_color(px, (("posterize", 4.0),))[0, 0, :, 0].tolist() == [96, 176, 192]  # top 4 bits kept
    assert apply_color(px, (("solarize", 150.0),))[0, 0, :, 0].tolist() == [100, 64, 55]  # >= 150 inverted
    assert apply_color(px, ()) is px


def test_augment_config_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(0.8, 0.3))
    with pytest.raises(ValueError, match="aspect"):
        AugmentConfig(aspect=(0.0, 1.0))
    with pytest.raises(ValueError, match="augment and view_index"):
        Preprocessing(frames=4, sample_fps=1.0, short_side=32, crop=32, view="augmented")


# --------------------------------------------------------------------------------------------- cache keys
GOLDEN_SAMPLES = [Sample(sample_id=f"v{i}@{t}", video_id=f"v{i}", source=f"/data/v{i}.mp4", time_s=float(t),
                         label=t % 3) for i in range(2) for t in range(3)]


def test_centre_view_keys_unchanged() -> None:
    """Digests computed with the code BEFORE augmented views existed (same identity, spec, samples, config)."""
    spec = tiny_phase_benchmark()
    old_train = "15badac85602093d95745e6f8fc9fa0a59112f47e866fa21c10ae3351c0508b1"
    old_val = "e06bcde00aa25d012947007efab5a4de76ebbcb004899a7ffba8d417a34ea4eb"
    assert cache_key("identity-abc", spec, "train", GOLDEN_SAMPLES, TINY_FEATURES) == old_train
    assert cache_key("identity-abc", spec, "val", GOLDEN_SAMPLES, TINY_FEATURES) == old_val
    other = K2.model_copy(update={"augment": AugmentConfig(scale=(0.5, 1.0), seed=3)})
    assert cache_key("identity-abc", spec, "train", GOLDEN_SAMPLES, other) == old_train  # view 0 ignores augment


def test_augmented_view_keys() -> None:
    spec = tiny_phase_benchmark()
    keys = [cache_key("identity-abc", spec, "train", GOLDEN_SAMPLES, K2, v) for v in range(3)]
    assert len(set(keys)) == 3
    moved = K2.model_copy(update={"augment": AugmentConfig(color_magnitude=0.9)})
    assert cache_key("identity-abc", spec, "train", GOLDEN_SAMPLES, moved, 1) != keys[1]
    assert cache_key("identity-abc", spec, "train", GOLDEN_SAMPLES, K2.model_copy(update={"train_views": 5}),
                     1) == keys[1]  # view 1 is the same view whatever K is
    with pytest.raises(ValueError, match="train_views is 2"):
        K2.preprocessing(spec, 3)


def test_views_per_split_and_task() -> None:
    spec = tiny_phase_benchmark()
    assert K2.views(spec, "train") == [0, 1, 2]
    assert K2.views(spec, "val") == [0] and K2.views(spec, "test") == [0]
    assert TINY_FEATURES.views(spec, "train") == [0]
    assert K2.views(spec.model_copy(update={"task": "segmentation"}), "train") == [0]


def test_clip_reader_augmented_view(tiny_root: Path) -> None:
    spec = tiny_phase_benchmark()
    reader = ClipReader("phase", K2.preprocessing(spec))
    src = str(tiny_root / "v0.mp4")
    centre = reader.clip(src, 6.0)
    v1 = reader.clip(src, 6.0, sample_id="v0@6", pre=K2.preprocessing(spec, 1))
    assert v1.shape == centre.shape == (4, 32, 32, 3) and v1.dtype == np.uint8
    np.testing.assert_array_equal(v1, reader.clip(src, 6.0, sample_id="v0@6", pre=K2.preprocessing(spec, 1)))
    assert not np.array_equal(v1, centre)
    assert not np.array_equal(v1, reader.clip(src, 6.0, sample_id="v0@6", pre=K2.preprocessing(spec, 2)))
    with pytest.raises(ValueError, match="sample_id"):
        reader.clip(src, 6.0, pre=K2.preprocessing(spec, 1))
    with pytest.raises(ValueError, match="clip-level"):
        ClipReader("segmentation", K2.preprocessing(spec)).clip(src, None, sample_id="x", pre=K2.preprocessing(spec, 1))


# ----------------------------------------------------------------------------------------- trial sampling
def test_epoch_views_deterministic_and_cover_all_views() -> None:
    n, views = 20, 3
    first = epoch_views(n, views, seed=0, epoch=0)
    np.testing.assert_array_equal(first, epoch_views(n, views, seed=0, epoch=0))
    assert not np.array_equal(first, epoch_views(n, views, seed=0, epoch=1))
    assert not np.array_equal(first, epoch_views(n, views, seed=1, epoch=0))
    seen = np.stack([epoch_views(n, views, 0, e) for e in range(30)])  # [epoch, sample]
    assert seen.min() == 0 and seen.max() == views - 1
    assert all(set(seen[:, i].tolist()) == {0, 1, 2} for i in range(n))  # every sample meets every view
    np.testing.assert_array_equal(epoch_views(n, 1, 0, 5), np.zeros(n, dtype=np.int64))


def test_view_tokens_serve_the_epochs_view() -> None:
    n = 10
    views = [np.full((n, 2, 3), v, dtype=np.float16) + np.arange(n, dtype=np.float16)[:, None, None] * 10
             for v in range(3)]
    vt = ViewTokens(views, seed=4)
    rows = np.array([1, 4, 7, 9])
    torch.testing.assert_close(vt(rows), torch.from_numpy(views[0][rows]))  # direct call: the centre view
    for epoch in range(3):
        got = vt.for_epoch(epoch)(rows).numpy()
        choice = epoch_views(n, 3, 4, epoch)[rows]
        np.testing.assert_array_equal(got[:, 0, 0], rows * 10 + choice)


# ------------------------------------------------------------------------------------------------ Ray test
@pytest.mark.slow
def test_train_views_are_extra_train_entries(ray_cluster: str, tiny_root: Path, tmp_path: Path) -> None:
    spec = tiny_phase_benchmark()
    train = load_tiny_phase(tiny_root, "train", spec)[:12]
    val = load_tiny_phase(tiny_root, "val", spec)[:6]
    info = backbone_info("random:tiny", K2)
    before = EXTRACTION_COUNTER["extractions"]
    feats = ensure_features(info, spec, {"train": train, "val": val}, K2, tmp_path)
    assert EXTRACTION_COUNTER["extractions"] == before + 1  # one pass for the 2 splits + 2 views
    entries = {p.name: read_index(p) for p in tmp_path.iterdir()}
    assert len(entries) == 4 and all(ix is not None for ix in entries.values())
    by_view = {(ix.split, ix.preprocessing.view_index) for ix in entries.values() if ix is not None}
    assert by_view == {("train", None), ("train", 1), ("train", 2), ("val", None)}
    assert feats["val"].views == [] and len(feats["train"].views) == 2
    assert feats["train"].view_keys == [cache_key(info.identity, spec, "train", train, K2, v) for v in (1, 2)]
    tokens = [feats["train"].tokens, *feats["train"].views]
    assert all(t.shape == tokens[0].shape for t in tokens)
    assert not np.array_equal(tokens[0], tokens[1]) and not np.array_equal(tokens[1], tokens[2])
    # the stored view is the backbone's output on that view of the clip
    reader = ClipReader("phase", K2.preprocessing(spec))
    clip = reader.clip(train[5].source, train[5].time_s, sample_id=train[5].sample_id, pre=K2.preprocessing(spec, 2))
    ref = build_backbone("random:tiny")(torch.from_numpy(clip).permute(3, 0, 1, 2)[None]).to(torch.float16)
    np.testing.assert_allclose(tokens[2][5].astype(np.float32), ref.numpy()[0].astype(np.float32), atol=2e-2)
    # the K=0 config hits the same centre entries; K=2 again is all hits
    again = ensure_features(info, spec, {"train": train, "val": val}, TINY_FEATURES, tmp_path)
    ensure_features(info, spec, {"train": train, "val": val}, K2, tmp_path)
    assert EXTRACTION_COUNTER["extractions"] == before + 1
    np.testing.assert_array_equal(again["train"].tokens, tokens[0])
    assert again["train"].views == []
