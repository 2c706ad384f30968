"""Hostile but valid media through the real clip index and decoder: HEVC, variable frame rate, rotation metadata.

Decisions (documented in orchestrator/data/decode.py and clip_index.py):
  * HEVC with closed GOPs: used, decord's ffmpeg decodes it like H.264.
  * Open GOP (x265's default, so most HEVC; also H.264 ``open-gop``): skipped at index time, reason
    "unsupported: open GOP ...": decord 0.6.0 returns wrong frames after seeking in it (shown below).
  * VFR: indexed at decord's average fps; clip frame k is frame round((start + k / sample_fps) · avg_fps), clipped
    to the video, so a clip never reads past the last frame; its real time is approximate.
  * Rotation (display matrix, 90°): decord applies it, so the index size and the frames are in display
    orientation; the crop is the configured size. PyAV 18 writes rotation only as a display matrix
    (``VideoStream.set_display_rotation``); current muxers no longer write the legacy ``rotate`` tag.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from benchmark_fixtures.hostile import (
    ALTERNATING_MS,
    CLOSED_GOP_X265,
    HEVC_ENCODER,
    NO_HEVC,
    OPEN_GOP_REASON,
    OPEN_GOP_X264,
    TWO_RATE_MS,
    H,
    N,
    W,
    counter_frames,
    encode,
    rotated_frames,
    write_hostile_media,
)

from orchestrator.data import clip_index
from orchestrator.data.clip_index import VideoRecord, build_clip_index, clip_starts, probe_all
from orchestrator.data.config import DataConfig
from orchestrator.data.decode import decode_batch, decode_clip, frame_indices
from orchestrator.data.manifest import Manifest, Source


def index_one(path: Path, frames: int = 4) -> VideoRecord:
    m = Manifest(name="h", root=str(path.parent), sources=[Source(name="h", specialty="x", videos=[path.name])])
    index = build_clip_index(m, frames=frames)
    assert not index.skipped, index.skipped
    return index.videos[0]


def decode(v: VideoRecord, start: float, short_side: int = 48, crop: int = 40, seed: int | None = None
           ) -> np.ndarray:
    return decode_clip(v.path, start, v, DataConfig(frames=4, sample_fps=1.0, short_side=short_side, crop=crop), seed)


def frame_means(clip: np.ndarray) -> np.ndarray:
    return clip.reshape(len(clip), -1).mean(1)


@pytest.mark.skipif(not HEVC_ENCODER, reason=NO_HEVC)
def test_closed_gop_hevc_video_is_indexed_and_every_clip_decoded(tmp_path: Path) -> None:
    path = encode(tmp_path / "hevc.mp4", counter_frames(), codec="libx265", params=CLOSED_GOP_X265)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    v = index_one(path)
    assert (v.fps, v.num_frames, v.width, v.height) == (10.0, N, W, H)
    for start in range(3):  # 6 s at 10 fps: clips start at 0, 1, 2 s
        clip = decode(v, float(start), seed=3)
        assert clip.shape == (4, 40, 40, 3) and clip.dtype == np.uint8
        assert np.allclose(frame_means(clip), 40 * (start + np.arange(4)), atol=6), start  # frames 10·(s + k)


def seek_errors(path: Path) -> list[int]:
    """Frames that decord returns wrongly when it seeks straight to them (fresh reader each)."""
    import decord

    return [i for i in range(N)
            if abs(decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch([i]).asnumpy().mean() - 4 * i) > 3]


@pytest.mark.parametrize("codec,params", [("libx265", ""), ("libx264", OPEN_GOP_X264)], ids=["hevc", "h264"])
def test_open_gop_video_is_skipped_with_reason_because_decord_misreads_it(tmp_path: Path, codec: str,
                                                                          params: str) -> None:
    if codec == "libx265" and not HEVC_ENCODER:
        pytest.skip(NO_HEVC)
    path = encode(tmp_path / "open_gop.mp4", counter_frames(), codec=codec, params=params)
    assert seek_errors(path), "decord now seeks open-GOP video correctly: the open-GOP skip can be lifted"
    m = Manifest(name="h", root=str(tmp_path), sources=[Source(name="h", specialty="x", videos=[path.name])])
    index = build_clip_index(m, frames=4)
    assert not index.videos and len(index.skipped) == 1
    assert index.skipped[0].reason.startswith(OPEN_GOP_REASON), index.skipped[0].reason
    assert ("hevc" if codec == "libx265" else "h264") in index.skipped[0].reason


def test_probe_cache_of_an_older_probe_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache written before the open-GOP check said "fine" for such files: it must be re-probed. And a file
    whose name contains "missing" is served from the cache like any other."""
    path = encode(tmp_path / "missing_gop.mp4", counter_frames(), params=OPEN_GOP_X264)
    st, cache = path.stat(), tmp_path / "cache.json"
    old_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"  # key format of the previous probe version
    cache.write_text(json.dumps({old_key: {"fps": 10.0, "num_frames": N, "width": W, "height": H}}))
    assert probe_all([path], cache)[path]["error"].startswith(OPEN_GOP_REASON)
    monkeypatch.setattr(clip_index, "probe_video", lambda p: pytest.fail(f"{p} probed again"))
    assert probe_all([path], cache)[path]["error"].startswith(OPEN_GOP_REASON)


@pytest.mark.parametrize("codec,params", [("libx265", CLOSED_GOP_X265), ("libx264", "")], ids=["hevc", "h264"])
def test_closed_gop_video_with_b_frames_is_read_correctly_after_seeking(tmp_path: Path, codec: str,
                                                                        params: str) -> None:
    if codec == "libx265" and not HEVC_ENCODER:
        pytest.skip(NO_HEVC)
    assert seek_errors(encode(tmp_path / "v.mp4", counter_frames(), codec=codec, params=params)) == []


def vfr_pts_s(durations_ms: list[int]) -> np.ndarray:
    """Presentation time of every frame of a VFR test file (seconds)."""
    d = np.array([durations_ms[i % len(durations_ms)] for i in range(N)])
    return np.concatenate([[0], np.cumsum(d)[:-1]]) / 1000


@pytest.mark.parametrize("durations_ms", [ALTERNATING_MS, TWO_RATE_MS], ids=["alternating", "two_rate"])
def test_vfr_every_clip_decodes_the_indexed_frames_without_reading_past_the_end(
        tmp_path: Path, durations_ms: list[int]) -> None:
    path = encode(tmp_path / "vfr.mp4", counter_frames(), durations_ms=durations_ms)
    v = index_one(path)
    assert v.num_frames == N and (v.width, v.height) == (W, H)
    assert 1000 / max(durations_ms) < v.fps < 1000 / min(durations_ms)  # decord's average rate
    starts = clip_starts(v.num_frames, v.fps, 4, 1.0, 1.0)
    assert starts >= 1
    for s in range(starts):
        idx = frame_indices(float(s), 4, 1.0, v.fps, v.num_frames)
        assert idx.max() <= N - 1 and np.all(np.diff(idx) > 0)
        assert np.allclose(frame_means(decode(v, float(s))), 4 * idx, atol=6), (s, idx)
    with pytest.raises(ValueError, match="needs frame"):  # the first start the index does not offer
        decode(v, float(starts))


def test_vfr_alternating_rate_clip_times_within_one_frame(tmp_path: Path) -> None:
    """With a locally regular rate the average-fps mapping lands within one (long) frame of the requested time."""
    v = index_one(encode(tmp_path / "vfr.mp4", counter_frames(), durations_ms=ALTERNATING_MS))
    pts = vfr_pts_s(ALTERNATING_MS)
    for start in (0.0, 1.0):
        idx = frame_indices(start, 4, 1.0, v.fps, v.num_frames)
        assert np.all(np.abs(pts[idx] - (start + np.arange(4))) <= max(ALTERNATING_MS) / 1000), (start, pts[idx])


def test_rotated_video_is_used_in_display_orientation(tmp_path: Path) -> None:
    path = encode(tmp_path / "rotated.mp4", rotated_frames(), rotation=90)
    with av.open(str(path)) as c:
        assert next(c.decode(video=0)).rotation == 90  # the file really carries the display matrix
    v = index_one(path)
    assert (v.width, v.height) == (H, W)  # portrait: display orientation
    clip = decode(v, 0.0, short_side=48, crop=48)  # resized to 48x64 (w x h), centre crop rows 8..56
    assert clip.shape == (4, 48, 48, 3)
    top, bottom = clip[:, 4:20], clip[:, 28:44]  # away from the (chroma-blurred) edge at row 24
    assert frame_means(top).max() < 8
    assert np.allclose(frame_means(bottom), 100 + 2 * np.array([0, 10, 20, 30]), atol=8)
    assert abs(clip[:, :, :24].mean() - clip[:, :, 24:].mean()) < 4  # no left/right split: it was rotated
    for seed in range(3):
        assert decode(v, 1.0, crop=32, seed=seed).shape == (4, 32, 32, 3)


def test_hostile_media_corpus_used_by_decode_batch_or_skipped(tmp_path: Path) -> None:
    media = write_hostile_media(tmp_path / "media")
    m = Manifest(name="h", root=str(tmp_path / "media"),
                 sources=[Source(name="h", specialty="x", videos=[p.name for p in media])])
    index = build_clip_index(m, frames=4)
    assert sorted(v.path for v in index.videos) == sorted(str(p) for p, why in media.items() if why is None)
    assert {s.path: s.reason.split(" (")[0] for s in index.skipped} == {
        str(p): why for p, why in media.items() if why is not None}
    rows = [(v, float(s)) for v in index.videos for s in range(index.num_starts(v))]
    batch = {"index": np.arange(len(rows)), "path": np.array([v.path for v, _ in rows]),
             "start": np.array([s for _, s in rows]), "crop_seed": np.arange(len(rows)) + 11,
             "fps": np.array([v.fps for v, _ in rows]), "num_frames": np.array([v.num_frames for v, _ in rows]),
             "width": np.array([v.width for v, _ in rows]), "height": np.array([v.height for v, _ in rows])}
    out = decode_batch(batch, DataConfig(frames=4, sample_fps=1.0, short_side=48, crop=32))
    assert out["ok"].tolist() == [1] * len(rows)
    assert out["clip"].shape == (len(rows), 4, 32, 32, 3)
    assert all(out["clip"][i].max() > 0 for i in range(len(rows)))
