"""Decoding (sizes, 1-fps timestamps) and the clip index on a hostile corpus (every bad file skipped with a reason)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import counter_video, write_video

from orchestrator.data.clip_index import build_clip_index, probe_all
from orchestrator.data.config import DataConfig
from orchestrator.data.decode import (
    DecodeFailureError,
    DecodeFailureMonitor,
    VideoInfo,
    augment_clip,
    crop_box,
    decode_batch,
    decode_clip,
    frame_indices,
    resized_size,
    rrc_box,
)
from orchestrator.data.manifest import Manifest, ManifestError, Source, load_manifest
from orchestrator.data.pipeline import ClipCollate


def test_frame_indices_at_1fps() -> None:
    assert frame_indices(2.0, 4, 1.0, 25.0, 1000).tolist() == [50, 75, 100, 125]
    assert frame_indices(0.0, 3, 2.0, 10.0, 1000).tolist() == [0, 5, 10]
    assert frame_indices(0.0, 3, 1.0, 10.0, 15).tolist() == [0, 10, 14]  # clipped to the last frame


def test_resize_and_crop_geometry() -> None:
    assert resized_size(320, 256, 128) == (160, 128)
    assert resized_size(256, 320, 128) == (128, 160)
    assert crop_box(128, 160, 112, None) == (8, 24)
    top, left = crop_box(128, 160, 112, seed=7)
    assert 0 <= top <= 16 and 0 <= left <= 48 and crop_box(128, 160, 112, seed=7) == (top, left)


def test_decode_gives_sizes_and_1fps_timestamps(tmp_path: Path) -> None:
    path = counter_video(tmp_path / "c.mp4", seconds=6, fps=10, width=80, height=60)
    clip = decode_clip(str(path), 1.0, VideoInfo(fps=10.0, num_frames=60, width=80, height=60),
                       DataConfig(frames=4, sample_fps=1.0, short_side=48, crop=40), crop_seed=3)
    assert clip.shape == (4, 40, 40, 3) and clip.dtype == np.uint8
    # frames 10, 20, 30, 40 have grey values 40, 80, 120, 160
    assert np.allclose(clip.reshape(4, -1).mean(1), [40, 80, 120, 160], atol=6)


def test_decode_survives_decord_resize_bug(tmp_path: Path) -> None:
    # decord 0.6.0 raises for a 96x64 -> 72x48 resize; the fallback resizes the native frames instead
    path = counter_video(tmp_path / "c.mp4", seconds=6, fps=10, width=96, height=64)
    clip = decode_clip(str(path), 1.0, VideoInfo(fps=10.0, num_frames=60, width=96, height=64),
                       DataConfig(frames=4, sample_fps=1.0, short_side=48, crop=40), crop_seed=None)
    assert clip.shape == (4, 40, 40, 3)
    assert np.allclose(clip.reshape(4, -1).mean(1), [40, 80, 120, 160], atol=6)


def test_decode_batch_marks_failures_without_raising(tmp_path: Path) -> None:
    good = counter_video(tmp_path / "good.mp4", seconds=6)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    batch = {"index": np.array([0, 1]), "path": np.array([str(good), str(bad)]), "start": np.array([0.0, 0.0]),
             "crop_seed": np.array([1, 2]), "fps": np.array([10.0, 10.0]), "num_frames": np.array([60, 60]),
             "width": np.array([80, 80]), "height": np.array([60, 60])}
    out = decode_batch(batch, DataConfig(frames=4, sample_fps=1.0, short_side=48, crop=32))
    assert out["ok"].tolist() == [1, 0]
    assert out["clip"].shape == (2, 4, 32, 32, 3) and out["clip"][1].max() == 0
    assert out["failed"][0] == "" and re.match(rf"{re.escape(str(bad))} @ 0\.0 s on node \S+: \w+", out["failed"][1])
    collated = ClipCollate()(out)
    assert collated["failed"] == list(out["failed"]) and torch.equal(collated["ok"], torch.tensor([1, 0],
                                                                                                  dtype=torch.uint8))


def test_decode_failure_monitor_aborts_above_the_rate_of_a_full_window() -> None:
    mon = DecodeFailureMonitor(max_rate=0.25, window=8)
    mon.update(np.zeros(7, dtype=np.uint8), [f"clip{i} on node n1" for i in range(7)])  # window not full yet
    with pytest.raises(DecodeFailureError, match=r"8 of the last 8 clips failed .*max_decode_failure_rate=0.25"):
        mon.update(np.zeros(1, dtype=np.uint8), ["clip7 on node n1"])
    mon = DecodeFailureMonitor(max_rate=0.25, window=8)
    mon.update(np.array([1, 0, 1, 0, 1, 1, 1, 1]), ["", "a", "", "b", "", "", "", ""])  # 2 of 8 = the limit: goes on
    with pytest.raises(DecodeFailureError, match="clip9 on node n2") as err:
        mon.update(np.array([0]), ["clip9 on node n2"])  # window 0,1,0,1,1,1,1,0: 3 of 8
    assert "a\n" in str(err.value) and str(err.value).rstrip().endswith("clip9 on node n2")
    mon = DecodeFailureMonitor(max_rate=1.0, window=2)
    mon.update(np.zeros(10, dtype=np.uint8), [""] * 10)  # 1 = never abort
    mon = DecodeFailureMonitor(max_rate=0.5, window=4)
    for _ in range(10):
        mon.update(np.array([1, 0]), ["", "x"])  # a steady 50 % is at the limit, not above it


def hostile_corpus(root: Path) -> Manifest:
    good = [counter_video(root / f"good{i}.mp4", seconds=8) for i in range(2)]
    (root / "empty.mp4").write_bytes(b"")
    data = good[0].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    counter_video(root / "short.mp4", seconds=2)
    shutil.copy(good[1], root / "good_copy.mp4")
    return Manifest(name="hostile", root=str(root), sources=[
        Source(name="s1", specialty="lap", videos=["good*.mp4", "empty.mp4", "truncated.mp4"]),
        Source(name="s2", specialty="eye", videos=["text.mp4", "short.mp4", "missing.mp4"]),
    ])


def test_hostile_corpus_skips_and_counts(tmp_path: Path) -> None:
    manifest = hostile_corpus(tmp_path)
    index = build_clip_index(manifest, frames=4, cache_file=tmp_path / "cache.json")
    assert sorted(Path(v.path).name for v in index.videos) == ["good0.mp4", "good1.mp4", "good_copy.mp4"]
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert set(reasons) == {"empty.mp4", "truncated.mp4", "text.mp4", "short.mp4", "missing.mp4"}
    assert reasons["empty.mp4"].startswith("empty") and reasons["missing.mp4"].startswith("missing")
    assert reasons["short.mp4"].startswith("too short")
    assert reasons["text.mp4"].startswith("unreadable") and reasons["truncated.mp4"].startswith("unreadable")


def test_probe_cache_reused_and_invalidated(tmp_path: Path) -> None:
    p = counter_video(tmp_path / "v.mp4", seconds=3)
    cache = tmp_path / "cache.json"
    first = probe_all([p], cache)[p]
    assert first["num_frames"] == 30 and first["fps"] == pytest.approx(10.0)
    assert probe_all([p], cache)[p] == first  # served from the cache
    counter_video(p, seconds=5)  # rewritten: size/mtime change → re-probed
    assert probe_all([p], cache)[p]["num_frames"] == 50


@pytest.mark.parametrize("width,height,pix_fmt", [(334, 198, "gray"), (333, 197, "yuv444p")])
def test_grayscale_and_odd_size_video_decode(tmp_path: Path, width: int, height: int, pix_fmt: str) -> None:
    ramp = np.tile(np.arange(0, 200, 4, dtype=np.uint8)[:, None, None], (1, height, width))
    frames = ramp if pix_fmt == "gray" else np.repeat(ramp[..., None], 3, axis=-1)
    write_video(tmp_path / "v.mp4", frames, fps=10, pix_fmt=pix_fmt)
    m = Manifest(name="g", root=str(tmp_path), sources=[Source(name="g", specialty="x", videos=["v.mp4"])])
    v = build_clip_index(m, frames=4).videos[0]
    assert (v.width, v.height) == (width, height)
    clip = decode_clip(v.path, 0.0, v, DataConfig(frames=4, sample_fps=1.0, short_side=64, crop=48), 0)
    assert clip.shape == (4, 48, 48, 3)
    means = clip.reshape(4, -1).mean(1)
    if pix_fmt == "gray":  # the writer maps full-range grey to limited-range YUV: only the order survives exactly
        assert np.all(np.diff(means) > 20)
    else:
        assert np.allclose(means, [0, 40, 80, 120], atol=8)


def test_manifest_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("sources:\n  - name: a\n    specialty: lap\n    vids: [x.mp4]\n")
    with pytest.raises(ManifestError, match=r"m\.yaml.*sources\.0\.(videos|vids)"):
        load_manifest(bad)
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ManifestError, match="malformed YAML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.yaml")


def test_random_resized_crop_boxes_follow_scale_and_aspect() -> None:
    """V-JEPA 2's rule: area U(0.3, 1.0) of the frame, width/height log-uniform in (0.75, 1.35), inside the frame."""
    rng = np.random.default_rng(0)
    boxes = [rrc_box(256, 455, (0.3, 1.0), (0.75, 1.35), rng) for _ in range(500)]
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= 256 and 0 <= left and left + w <= 455
    areas = np.array([h * w / (256 * 455) for _, _, h, w in boxes])
    ratios = np.array([w / h for _, _, h, w in boxes])
    assert areas.min() >= 0.29 and areas.max() <= 0.761  # the largest box that fits: 256 x 346 = 0.76 of the frame
    assert ratios.min() >= 0.74 and ratios.max() <= 1.36
    assert 0.95 <= np.median(ratios) <= 1.2  # log-uniform around sqrt(0.75 · 1.35) = 1.0; tall big boxes do not fit
    # no box fits (aspect range far from the frame's): the centre box with the ratio clamped
    assert rrc_box(10, 100, (0.9, 1.0), (0.75, 1.35), np.random.default_rng(0)) == (0, 43, 10, 14)


def test_training_view_is_seeded_flipped_half_the_time_and_sized(tmp_path: Path) -> None:
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, None, :, None] * 4, (3, 48, 64, 3)).copy()
    cfg = DataConfig(frames=3, short_side=48, crop=32, augment="rrc", hflip=True)
    views = [augment_clip(ramp, cfg, seed) for seed in range(40)]
    assert all(v.shape == (3, 32, 32, 3) and v.dtype == np.uint8 for v in views)
    assert np.array_equal(augment_clip(ramp, cfg, 5), views[5])              # a descriptor always gives one view
    flipped = [v[0, 0, 0, 0] > v[0, 0, -1, 0] for v in views]               # the ramp runs right-to-left
    assert 10 <= sum(flipped) <= 30
    plain = augment_clip(ramp, cfg.model_copy(update={"augment": "crop", "hflip": False}), 3)
    rng = np.random.default_rng(3)
    top, left = int(rng.integers(0, 48 - 32 + 1)), int(rng.integers(0, 64 - 32 + 1))
    assert np.array_equal(plain, ramp[:, top:top + 32, left:left + 32])    # the plain random crop, unchanged


def test_decode_with_augmentation_keeps_the_clip_timestamps(tmp_path: Path) -> None:
    path = counter_video(tmp_path / "c.mp4", seconds=6, fps=10, width=80, height=60)
    cfg = DataConfig(frames=4, sample_fps=1.0, short_side=48, crop=40)   # rrc + flip by default
    clip = decode_clip(str(path), 1.0, VideoInfo(fps=10.0, num_frames=60, width=80, height=60), cfg, crop_seed=11)
    assert clip.shape == (4, 40, 40, 3)
    assert np.allclose(clip.reshape(4, -1).mean(1), [40, 80, 120, 160], atol=6)  # same frames, uniform grey
