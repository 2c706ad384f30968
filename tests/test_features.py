"""Feature cache: keys, Ray Data extraction, hits without extraction, partial entries never served."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_FEATURES, load_tiny_phase, tiny_phase_benchmark

from orchestrator.benchmarks.spec import Sample
from orchestrator.probe.features import (
    EXTRACTION_COUNTER,
    INDEX_FILE,
    backbone_info,
    cache_key,
    ensure_features,
    entry_dir,
    load_features,
    read_index,
)


# ------------------------------------------------------------------------------------------- fast tests
def _samples(root: Path, split: str = "train") -> list[Sample]:
    return load_tiny_phase(root, split, tiny_phase_benchmark())  # type: ignore[arg-type]


def test_cache_key_covers_everything(tmp_path: Path) -> None:
    from model.backbones.video_vit import RandomInitBackbone

    spec, samples = tiny_phase_benchmark(), _samples(tmp_path)
    a, b = RandomInitBackbone(seed=0).identity(), RandomInitBackbone(seed=1).identity()
    base = cache_key(a, spec, "train", samples, TINY_FEATURES)
    assert base == cache_key(a, spec, "train", list(samples), TINY_FEATURES.model_copy())
    assert cache_key(b, spec, "train", samples, TINY_FEATURES) != base  # other weights
    assert cache_key(a, spec, "val", samples, TINY_FEATURES) != base
    assert cache_key(a, spec, "train", samples[:-1], TINY_FEATURES) != base
    moved = [samples[0].model_copy(update={"time_s": 5.0})] + samples[1:]
    assert cache_key(a, spec, "train", moved, TINY_FEATURES) != base
    assert cache_key(a, spec, "train", samples, TINY_FEATURES.model_copy(update={"crop": 16})) != base
    assert cache_key(a, spec.model_copy(update={"name": "other"}), "train", samples, TINY_FEATURES) != base
    # extraction resources are not part of the key
    assert cache_key(a, spec, "train", samples, TINY_FEATURES.model_copy(update={"actors": 2})) == base


def test_partial_entry_is_not_served(tmp_path: Path) -> None:
    entry = tmp_path / "deadbeef"
    entry.mkdir()
    np.save(entry / "shard_00000.npy", np.zeros((2, 3, 4), np.float16))
    assert read_index(entry) is None
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_features(entry)
    (entry / INDEX_FILE).write_text("{not json")
    assert read_index(entry) is None


# ------------------------------------------------------------------------------------------- Ray tests
@pytest.mark.slow
def test_extract_then_hit(ray_cluster: str, tiny_root: Path, tmp_path: Path) -> None:
    spec = tiny_phase_benchmark()
    samples = _samples(tiny_root, "val")
    info = backbone_info("random:tiny", TINY_FEATURES)
    before = EXTRACTION_COUNTER["extractions"]
    fs = ensure_features(info, spec, {"val": samples}, TINY_FEATURES, tmp_path)["val"]
    assert EXTRACTION_COUNTER["extractions"] == before + 1
    assert fs.tokens.dtype == np.float16 and fs.tokens.shape == (len(samples), 8, 192)
    assert fs.index.sample_ids == [s.sample_id for s in samples]
    assert [p.name for p in tmp_path.iterdir()] == [fs.index.key]  # no temp dir left behind
    entry = entry_dir(tmp_path, fs.index.key)
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    again = ensure_features(info, spec, {"val": samples}, TINY_FEATURES, tmp_path)["val"]
    assert EXTRACTION_COUNTER["extractions"] == before + 1  # hit: no extraction
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes
    np.testing.assert_array_equal(again.tokens, fs.tokens)
    # rows come back in sample order although shards arrive in any order: same clip → same tokens
    import torch

    from model.backbones.factory import build_backbone
    from orchestrator.data.views import ClipReader

    reader = ClipReader("phase", TINY_FEATURES.preprocessing(spec))
    clip = torch.from_numpy(reader.clip(samples[5].source, samples[5].time_s)).permute(3, 0, 1, 2)[None]
    ref = build_backbone("random:tiny")(clip).to(torch.float16).numpy()[0]
    np.testing.assert_allclose(fs.tokens[5].astype(np.float32), ref.astype(np.float32), atol=2e-2)
    # a removed index makes the entry partial: it is re-extracted, not served
    (entry / INDEX_FILE).unlink()
    ensure_features(info, spec, {"val": samples}, TINY_FEATURES, tmp_path)
    assert EXTRACTION_COUNTER["extractions"] == before + 2
    assert read_index(entry) is not None


def test_clip_reader_views(tiny_root: Path) -> None:
    from orchestrator.data.views import ClipReader, Preprocessing

    reader = ClipReader("phase", Preprocessing(frames=4, sample_fps=1.0, short_side=32, crop=32))
    clip = reader.clip(str(tiny_root / "v0.mp4"), 0.0)  # before the start: the first frame repeated
    assert clip.shape == (4, 32, 32, 3) and clip.dtype == np.uint8
    assert np.abs(clip.astype(int) - clip[:1].astype(int)).mean() < 1e-6
    end = reader.clip(str(tiny_root / "v0.mp4"), 15.0)  # ends in phase 2 (blue)
    assert end[-1, ..., 2].mean() > end[-1, ..., 0].mean() + 50
    whole = ClipReader("action", Preprocessing(frames=4, sample_fps=1.0, short_side=32, crop=32))
    w = whole.clip(str(tiny_root / "v0.mp4"), None)  # spans the video: red first, blue last
    assert w[0, ..., 0].mean() > w[0, ..., 2].mean() + 50 and w[-1, ..., 2].mean() > w[-1, ..., 0].mean() + 50
