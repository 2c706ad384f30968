"""Clip decoding with decord: T frames at the clip's timestamps, short side resized, crop, uint8 ``[T, H, W, C]``.

Timestamps → frames. decord addresses frames by index, so a clip time t becomes frame round(t · fps) with the
video's *average* fps from the clip index (decord's ``get_avg_fps``). For constant-frame-rate video that is exact.
For variable-frame-rate video (irregular pts) it is an approximation: clip frames are evenly spaced in frame
index, so their real times can drift from ``start + k / sample_fps`` by the local deviation from the average rate;
indices are always clipped to ``[0, num_frames - 1]`` and a clip needing a frame past the end raises, so VFR video
never reads past its last frame (tests/test_hostile_media.py).

Rotation. decord 0.6.0 applies the container's display matrix (e.g. phone video stored landscape with a 90°
rotation) when it decodes, with or without resizing, so frames, and the index's width/height, are in display
orientation; we apply no rotation of our own. (decord also reads the legacy ``rotate`` metadata tag; current ffmpeg
muxers no longer write it, so only the display matrix is tested.)
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import decord
import numpy as np

from orchestrator.data.config import DataConfig


class VideoMeta(Protocol):
    """What decoding needs to know of a video (from the clip index): average fps, frame count, native size."""

    @property
    def fps(self) -> float: ...
    @property
    def num_frames(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


class VideoInfo(NamedTuple):
    """A :class:`VideoMeta` built from a descriptor row."""

    fps: float
    num_frames: int
    width: int
    height: int


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short_side`` (aspect kept, rounded, at least 1)."""
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def frame_indices(start_s: float, frames: int, sample_fps: float, video_fps: float, num_frames: int) -> np.ndarray:
    """Frame numbers of the clip: frame round((start + k / sample_fps) · fps) for k < T, clipped to the video.
    ``video_fps`` is the average rate, so for variable-frame-rate video these are approximate times (module doc)."""
    t = start_s + np.arange(frames) / sample_fps
    return np.clip(np.rint(t * video_fps).astype(np.int64), 0, num_frames - 1)


def crop_box(height: int, width: int, crop: int, seed: int | None) -> tuple[int, int]:
    """Top-left of a ``crop``×``crop`` window: uniform random with ``seed`` (train) or centred (``seed=None``)."""
    if seed is None:
        return (height - crop) // 2, (width - crop) // 2
    rng = np.random.default_rng(seed)
    return int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))


def rrc_box(height: int, width: int, scale: tuple[float, float], aspect: tuple[float, float],
            rng: np.random.Generator, tries: int = 10) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized-crop box (torchvision's / V-JEPA 2's rule): area = U(scale) of the
    frame, width / height log-uniform in ``aspect``; ``tries`` draws, then the centre box of the frame with its
    aspect ratio clamped to ``aspect``."""
    area = height * width
    log_lo, log_hi = np.log(aspect[0]), np.log(aspect[1])
    for _ in range(tries):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = float(np.exp(rng.uniform(log_lo, log_hi)))
        w, h = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    frame_ratio = width / height
    if frame_ratio < aspect[0]:
        w, h = width, int(round(width / aspect[0]))
    elif frame_ratio > aspect[1]:
        h, w = height, int(round(height * aspect[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def augment_clip(clip: np.ndarray, cfg: DataConfig, seed: int) -> np.ndarray:
    """Training view of a decoded clip ``[T, H, W, 3]`` → ``[T, crop, crop, 3]``: one box for every frame
    (random-resized crop, or a plain random crop), then a horizontal flip with probability 0.5; all draws from
    ``seed``, so a clip descriptor always gives the same view."""
    rng = np.random.default_rng(seed)
    if cfg.augment == "rrc":
        top, left, h, w = rrc_box(clip.shape[1], clip.shape[2], cfg.rrc_scale, cfg.rrc_aspect, rng)
        out = resize_frames(np.ascontiguousarray(clip[:, top:top + h, left:left + w]), cfg.crop, cfg.crop)
    else:
        top = int(rng.integers(0, clip.shape[1] - cfg.crop + 1))
        left = int(rng.integers(0, clip.shape[2] - cfg.crop + 1))
        out = clip[:, top:top + cfg.crop, left:left + cfg.crop]
    if cfg.hflip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def decode_clip(path: str, start_s: float, video: VideoMeta, cfg: DataConfig, crop_seed: int | None,
                threads: int = 1) -> np.ndarray:
    """Decode one clip of ``cfg.frames`` frames at ``cfg.sample_fps`` from ``start_s`` → uint8 ``[T, crop, crop, 3]``
    (decord resizes the short side to ``cfg.short_side`` while decoding; the training view of
    :func:`augment_clip` with ``crop_seed``, the centre crop with None). ``video`` comes from the clip index;
    ``threads`` is decord's decoder threads (0 = auto; the pipeline uses 1 per task and gets its parallelism from
    Ray). Raises on unreadable data or a clip past the end."""
    frames, sample_fps, fps, crop = cfg.frames, cfg.sample_fps, video.fps, cfg.crop
    rw, rh = resized_size(video.width, video.height, cfg.short_side)
    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=rw, height=rh, num_threads=threads)
    n = min(video.num_frames, len(vr))
    idx = frame_indices(start_s, frames, sample_fps, fps, n)
    if (start_s + (frames - 1) / sample_fps) * fps > n - 1 + 0.5:
        raise ValueError(f"{path}: clip at {start_s:.1f} s needs frame {int(idx[-1])}, video has {n}")
    try:
        clip = vr.get_batch(idx.tolist()).asnumpy()
        if clip.shape[1:] != (rh, rw, 3):  # the resize bug can also yield a 4-channel buffer of garbage
            raise ValueError(f"decord returned {clip.shape[1:]} for a {rh}x{rw}x3 resize")
    except Exception:  # decord 0.6.0 fails for some size pairs (e.g. 96x64 -> 72x48): resize ourselves
        del vr
        native = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        clip = resize_frames(native.get_batch(idx.tolist()).asnumpy(), rh, rw)
    if crop_seed is not None:
        return augment_clip(clip, cfg, crop_seed)
    top, left = crop_box(clip.shape[1], clip.shape[2], crop, None)
    return np.ascontiguousarray(clip[:, top:top + crop, left:left + crop])


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[T, H, W, C]`` → ``[T, height, width, C]`` (bilinear, antialiased)."""
    import torch  # deferred: torch (~2 s import); Ray Data decode tasks need it only when decord cannot resize
    import torch.nn.functional as F  # deferred: torch, as above

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode_batch(batch: dict[str, np.ndarray], cfg: DataConfig, train: bool = True) -> dict[str, np.ndarray]:
    """``map_batches`` UDF: descriptor rows → ``clip`` uint8 ``[B, T, crop, crop, 3]`` plus ``index`` and ``ok``.

    A clip that fails to decode becomes an all-zero clip with ``ok = 0`` (the trainer drops and counts it), so one
    bad file never stops the run and the skip count reaches the metrics."""
    n = len(batch["index"])
    clips = np.zeros((n, cfg.frames, cfg.crop, cfg.crop, 3), dtype=np.uint8)
    failed = np.full(n, "", dtype=object)  # "<path> @ <start> s on node <id>: <error>" of each failed clip
    ok = np.ones(n, dtype=np.uint8)
    for i in range(n):
        try:
            video = VideoInfo(float(batch["fps"][i]), int(batch["num_frames"][i]), int(batch["width"][i]),
                              int(batch["height"][i]))
            clips[i] = decode_clip(str(batch["path"][i]), float(batch["start"][i]), video, cfg,
                                   int(batch["crop_seed"][i]) if train else None)
        except Exception as e:  # corrupt / truncated data found only at decode time
            ok[i] = 0
            failed[i] = (f"{batch['path'][i]} @ {float(batch['start'][i]):.1f} s on node {node_id()}: "
                         f"{type(e).__name__}: {str(e)[:160]}")
            print(f"[decode] skipped {failed[i]}", flush=True)
    return {"index": np.asarray(batch["index"], dtype=np.int64), "ok": ok, "clip": clips, "failed": failed}


def node_id() -> str:
    """The Ray node this runs on (short id), or "local" outside Ray."""
    try:
        import ray  # deferred: ray (decode runs outside Ray too)

        return ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else "local"
    except Exception:  # noqa: BLE001 - only for an error message
        return "unknown"


class DecodeFailureError(RuntimeError):
    """Too many clips of the recent window failed to decode (e.g. the corpus is not visible on a node)."""


class DecodeFailureMonitor:
    """Per worker: the ok flags of the last ``window`` clips; :meth:`update` raises :class:`DecodeFailureError`
    (naming the failure rate and a few failed clips with their node) once the window is full and more than
    ``max_rate`` of it failed. ``max_rate`` 1 never aborts."""

    def __init__(self, max_rate: float, window: int) -> None:
        self.max_rate, self.window = max_rate, window
        self.flags: deque[bool] = deque(maxlen=window)
        self.recent: deque[str] = deque(maxlen=5)

    def update(self, ok: np.ndarray, failed: Sequence[str]) -> None:
        for flag, why in zip(np.asarray(ok).tolist(), failed):
            self.flags.append(bool(flag))
            if not flag:
                self.recent.append(str(why))
        bad = self.flags.count(False)
        if self.max_rate < 1 and len(self.flags) == self.window and bad > self.max_rate * self.window:
            raise DecodeFailureError(
                f"{bad} of the last {self.window} clips failed to decode (> data.max_decode_failure_rate="
                f"{self.max_rate}); is the corpus readable on every node? Last failures:\n  "
                + "\n  ".join(self.recent))
