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
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from orchestrator.data import clip_index
from orchestrator.data.clip_index import VideoRecord, build_clip_index, clip_starts, probe_all
from orchestrator.data.decode import decode_batch, decode_clip, frame_indices
from orchestrator.data.manifest import Manifest, Source

HEVC_ENCODER = "libx265" in av.codecs_available
NO_HEVC = "PyAV's ffmpeg has no libx265 encoder, so no HEVC test file can be written"
N, W, H = 60, 80, 60  # frames and coded size of every test video
ALTERNATING_MS = [40, 100]  # VFR frame durations: 1/25 s and 1/10 s, alternating
TWO_RATE_MS = [40] * 30 + [200] * 30  # VFR: 1.2 s at 25 fps, then 6 s at 5 fps
OPEN_GOP_X264 = "open-gop=1:bframes=3:keyint=10:min-keyint=10"
CLOSED_GOP_X265 = "open-gop=0"
OPEN_GOP_REASON = "unsupported: open GOP"


def encode(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 10, params: str = "",
           durations_ms: list[int] | None = None, rotation: int | None = None) -> Path:
    """Write uint8 RGB frames ``[N, H, W, 3]``; ``params``: x264/x265 params (x265 defaults: open GOP, B-frames),
    ``durations_ms``: per-frame durations (time base 1/1000, VFR), ``rotation``: display-matrix degrees (CCW)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if durations_ms is not None:  # the codec's 1/rate time base must resolve the shortest frame
        fps = round(1000 / min(durations_ms))
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"g": str(fps), "crf": "10"}
        if codec == "libx265":
            stream.options = {**stream.options, "x265-params": ":".join(filter(None, ["log-level=error", params]))}
        elif params:
            stream.options = {**stream.options, "x264-params": params}
        if durations_ms is not None:
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        pts = 0
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if durations_ms is not None:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += durations_ms[i % len(durations_ms)]
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def counter_frames() -> np.ndarray:
    """Frame i is uniformly grey with value 4·i: the decoded brightness gives the frame number."""
    return np.ascontiguousarray(np.broadcast_to((4 * np.arange(N, dtype=np.uint8))[:, None, None, None], (N, H, W, 3)))


def rotated_frames() -> np.ndarray:
    """Coded landscape: left half bright (100 + 2·i), right half black; 90° CCW in display puts it at the bottom."""
    frames = np.zeros((N, H, W, 3), dtype=np.uint8)
    frames[:, :, : W // 2] = (100 + 2 * np.arange(N, dtype=np.uint8))[:, None, None, None]
    return frames


def write_hostile_media(root: Path) -> dict[Path, str | None]:
    """Video → expected skip-reason prefix (None: used): alternating VFR, rotated, closed-GOP HEVC (when
    encodable) are used; one open-GOP file (x265 default HEVC, or H.264 open-gop without libx265) is skipped."""
    media: dict[Path, str | None] = {
        encode(root / "vfr.mp4", counter_frames(), durations_ms=ALTERNATING_MS): None,
        encode(root / "rotated.mp4", rotated_frames(), rotation=90): None}
    if HEVC_ENCODER:
        media[encode(root / "hevc.mp4", counter_frames(), codec="libx265", params=CLOSED_GOP_X265)] = None
        media[encode(root / "open_gop.mp4", counter_frames(), codec="libx265")] = OPEN_GOP_REASON
    else:
        media[encode(root / "open_gop.mp4", counter_frames(), params=OPEN_GOP_X264)] = OPEN_GOP_REASON
    return media


def index_one(path: Path, frames: int = 4) -> VideoRecord:
    m = Manifest(name="h", root=str(path.parent), sources=[Source(name="h", specialty="x", videos=[path.name])])
    index = build_clip_index(m, frames=frames)
    assert not index.skipped, index.skipped
    return index.videos[0]


def decode(v: VideoRecord, start: float, short_side: int = 48, crop: int = 40, seed: int | None = None
           ) -> np.ndarray:
    return decode_clip(v.path, start, 4, 1.0, short_side, crop, seed, v.fps, v.num_frames, v.width, v.height)


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
    out = decode_batch(batch, frames=4, sample_fps=1.0, short_side=48, crop=32)
    assert out["ok"].tolist() == [1] * len(rows)
    assert out["clip"].shape == (len(rows), 4, 32, 32, 3)
    assert all(out["clip"][i].max() > 0 for i in range(len(rows)))
