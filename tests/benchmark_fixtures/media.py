"""Tiny synthetic media files for benchmark fixtures: a valid H.264 MP4 (encoded once per session with PyAV and
copied), small PNG/JPEG images and uint16 TIFF depth maps written with Pillow."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import av
import numpy as np
from PIL import Image


@functools.cache
def tiny_mp4_bytes(width: int = 64, height: int = 48, fps: int = 25, seconds: int = 3) -> bytes:
    """A real MP4 (libx264, yuv420p) of moving synthetic pixels."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(fps * seconds):
            rgb = np.stack([(xx * 4 + i * 3) % 256, (yy * 5 + i * 2) % 256, np.full_like(xx, 90 + i % 60)], axis=-1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write_video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_mp4_bytes())
    return path


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (8, 6)) -> Path:
    """A small RGB image (PNG or JPEG by suffix) of seeded noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (8, 6)) -> Path:
    """A binary 0/255 single-channel PNG mask with a square blob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[1:4, 2:5] = 255
    Image.fromarray(mask).save(path)
    return path


def write_depth_u16(path: Path, values: np.ndarray) -> Path:
    """A single-channel uint16 TIFF/PNG depth map (C3VD stores depth as uint16 TIFF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
