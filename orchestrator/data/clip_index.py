"""Clip index: per video, decord metadata (fps, frames, size); clips are T frames at ``sample_fps``.

Every video is probed once (open, read the frame count and fps, decode the first and last frame) and the result
is cached by (path, size, mtime), so re-indexing a corpus of 100k videos only probes new or changed files.
Unreadable, truncated, missing or too-short videos are recorded as skipped with a reason, never fatal.

Hostile but valid media is indexed and used (tests/test_hostile_media.py): any codec decord's ffmpeg decodes
(H.264, HEVC, ...), odd sizes, grayscale; rotated video with its size in display orientation (decord applies the
display matrix); variable-frame-rate video with ``fps`` = the average rate, so ``duration_s`` and clip starts are
in average-rate time (see orchestrator/data/decode.py for what that means for clip timestamps).
Open-GOP video (x265's default, x264 ``open-gop``) is skipped as "unsupported": decord 0.6.0 returns wrong
frames when it seeks in it (see :func:`open_gop_codec`).
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import decord
from pydantic import BaseModel

from orchestrator.data.manifest import Manifest


class VideoRecord(BaseModel):
    path: str
    source: str
    specialty: str
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


class SkipRecord(BaseModel):
    path: str
    source: str
    reason: str


class ClipIndex(BaseModel):
    """Readable videos with enough frames for one clip, plus every skipped file and why."""

    frames: int
    sample_fps: float
    clip_stride_s: float
    videos: list[VideoRecord]
    skipped: list[SkipRecord]

    def num_starts(self, v: VideoRecord) -> int:
        return clip_starts(v.num_frames, v.fps, self.frames, self.sample_fps, self.clip_stride_s)

    @property
    def total_seconds(self) -> float:
        return sum(v.duration_s for v in self.videos)


def clip_starts(num_frames: int, fps: float, frames: int, sample_fps: float, stride_s: float) -> int:
    """Number of clip start times s = k·stride_s whose T frames (s + j/sample_fps) all exist in the video."""
    last_t = (num_frames - 1) / fps  # time of the last decodable frame
    span = (frames - 1) / sample_fps
    if last_t + 1e-9 < span:
        return 0
    return int(math.floor((last_t - span) / stride_s + 1e-9)) + 1


PROBE_VERSION = 2  # part of the cache key: bump when probe_video changes, so older results are re-probed


def open_gop_codec(path: Path, keyframes: int = 5, max_packets: int = 10_000) -> str | None:
    """The codec name when the video has an open GOP, else None: a frame decoded after a keyframe but shown before
    it (HEVC RASL frames after a CRA keyframe, H.264 ``open-gop``). decord 0.6.0 counts frames from the keyframe it
    seeks to while ffmpeg drops those leading frames after a seek, so decord silently returns wrong or broken
    frames near every such keyframe (sequential reads are right). Demuxes (no decoding) the first ``keyframes``
    GOPs, at most ``max_packets`` packets: encoders keep one GOP structure per file. None when PyAV cannot read it."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            key_pts, seen = None, 0
            for i, packet in enumerate(container.demux(stream)):
                if i >= max_packets:
                    break
                if packet.pts is None or packet.size == 0:
                    continue
                if packet.is_keyframe:
                    seen += 1
                    if seen > keyframes:
                        break
                    key_pts = packet.pts
                elif key_pts is not None and packet.pts < key_pts:
                    return stream.codec_context.name
    except (av.FFmpegError, IndexError, OSError):  # IndexError: no video stream; decord decided it is readable
        return None
    return None


def probe_video(path: Path) -> dict:
    """decord metadata of one video, or ``{"error": reason}``. Decodes the first and last frame to catch
    truncated files whose container still claims the full length; rejects open-GOP files (:func:`open_gop_codec`)."""
    if not path.exists():
        return {"error": "missing: file does not exist"}
    if path.stat().st_size == 0:
        return {"error": "empty: zero-byte file"}
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n, fps = len(vr), float(vr.get_avg_fps())
        if n < 1 or not math.isfinite(fps) or fps <= 0:
            return {"error": f"unreadable: {n} frames at {fps} fps"}
        h, w = vr[0].shape[:2]
        vr[n - 1]
    except Exception as e:  # decord raises DECORDError / RuntimeError for corrupt, truncated, non-video files
        return {"error": f"unreadable: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    codec = open_gop_codec(path)
    if codec:
        return {"error": f"unsupported: open GOP ({codec}; frames shown before a keyframe are decoded after it), "
                         "decord decodes wrong frames after seeking in it: re-encode with closed GOPs "
                         "(x265 open-gop=0)"}
    return {"fps": fps, "num_frames": n, "width": int(w), "height": int(h)}


def _cache_key(path: Path) -> str:
    try:
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}|v{PROBE_VERSION}"
    except OSError:
        return f"{path}|missing"


def _load_cache(cache_file: Path | None) -> dict[str, dict]:
    if cache_file and cache_file.is_file():
        try:
            return json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a corrupt cache is only a cache: rebuild it
    return {}


def _save_cache(cache_file: Path | None, cache: dict[str, dict]) -> None:
    if cache_file is None:
        return
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cache))
    tmp.replace(cache_file)


def probe_all(paths: list[Path], cache_file: Path | None, workers: int = 4) -> dict[Path, dict]:
    """Probe every path (cached), printing a progress line every ~10 s on large corpora."""
    cache = _load_cache(cache_file)
    keys = {p: _cache_key(p) for p in paths}
    todo = [p for p in paths if keys[p] not in cache or keys[p].endswith("|missing")]
    t0 = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (p, meta) in enumerate(zip(todo, pool.map(probe_video, todo)), start=1):
            cache[keys[p]] = meta
            if time.monotonic() - last > 10:
                last = time.monotonic()
                print(f"[index] probed {i}/{len(todo)} videos ({time.monotonic() - t0:.0f} s)", flush=True)
    if todo:
        _save_cache(cache_file, {k: v for k, v in cache.items() if not k.endswith("|missing")})
    return {p: cache[keys[p]] for p in paths}


def build_clip_index(manifest: Manifest, frames: int, sample_fps: float = 1.0, clip_stride_s: float = 1.0,
                     cache_file: Path | None = None) -> ClipIndex:
    """Index every video of the manifest; skip (with reasons) what cannot give one clip."""
    entries = [(src, p) for src in manifest.sources for p in manifest.resolve_videos(src)]
    metas = probe_all(sorted({p for _, p in entries}), cache_file)
    videos: list[VideoRecord] = []
    skipped: list[SkipRecord] = []
    for src, p in entries:
        meta = dict(metas[p])
        if src.fps is not None and "error" not in meta:
            meta["fps"] = src.fps
        if "error" in meta:
            skipped.append(SkipRecord(path=str(p), source=src.name, reason=meta["error"]))
            continue
        rec = VideoRecord(path=str(p), source=src.name, specialty=src.specialty, **meta)
        if clip_starts(rec.num_frames, rec.fps, frames, sample_fps, clip_stride_s) < 1:
            need = (frames - 1) / sample_fps
            skipped.append(SkipRecord(path=str(p), source=src.name,
                                      reason=f"too short: {rec.duration_s:.1f} s, a clip needs > {need:.1f} s"))
            continue
        videos.append(rec)
    return ClipIndex(frames=frames, sample_fps=sample_fps, clip_stride_s=clip_stride_s, videos=videos,
                     skipped=skipped)
