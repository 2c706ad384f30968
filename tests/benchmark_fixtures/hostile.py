"""Hostile but valid media for the clip-index / decoder tests and the hostile pretraining corpus: HEVC (closed and
open GOP), variable frame rate, a display-matrix rotation, written with PyAV (the decisions they test: the module
docstring of tests/test_hostile_media.py)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

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
