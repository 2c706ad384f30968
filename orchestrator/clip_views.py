"""Eval views of benchmark samples for feature extraction: :class:`ClipReader` decodes a sample descriptor into a
uint8 clip ``[T, crop, crop, 3]`` (short side resized, centre crop) and its dense target with the same geometry.
Which frames each task reads: :mod:`orchestrator.features` ("Views")."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.benchmarks.spec import BenchmarkError
from orchestrator.data.decode import crop_box, frame_indices, resize_frames, resized_size

DENSE = ("segmentation", "depth")


def _center(frames: np.ndarray, short_side: int, crop: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` → short side resized, centre-cropped ``[T, crop, crop, 3]``."""
    w, h = resized_size(frames.shape[2], frames.shape[1], short_side)
    if (h, w) != frames.shape[1:3]:
        frames = resize_frames(frames, h, w)
    top, left = crop_box(h, w, crop, None)
    return np.ascontiguousarray(frames[:, top:top + crop, left:left + crop])


def _target_view(target: np.ndarray, short_side: int, crop: int) -> np.ndarray:
    """A ``[H, W]`` mask / depth map resized (nearest) and centre-cropped like its image."""
    import torch
    import torch.nn.functional as F

    w, h = resized_size(target.shape[1], target.shape[0], short_side)
    t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None, None]
    t = F.interpolate(t, size=(h, w), mode="nearest")[0, 0].numpy()
    top, left = crop_box(h, w, crop, None)
    return np.ascontiguousarray(t[top:top + crop, left:left + crop])


class ClipReader:
    """Decodes sample descriptors into uint8 clips ``[T, crop, crop, 3]`` (keeps the last video open)."""

    def __init__(self, task: str, pre: dict[str, Any]) -> None:
        self.task, self.pre = task, pre
        self._path: str | None = None
        self._vr: Any = None

    def _video(self, path: str) -> Any:
        import decord

        if path != self._path:
            if not Path(path).is_file():
                raise BenchmarkError(f"video {path} does not exist")
            self._vr, self._path = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1), path
        return self._vr

    def _indices(self, n: int, fps: float, time_s: float, span: tuple[float, float, float, float]) -> np.ndarray:
        """Frame numbers: T at sample_fps ending at ``time_s``; else T evenly spaced over the segment
        (``start_s``/``end_s`` or ``start_frame``/``end_frame``; NaN = the whole video)."""
        t, sfps = int(self.pre["frames"]), float(self.pre["sample_fps"])
        if not np.isnan(time_s):
            return frame_indices(time_s - (t - 1) / sfps, t, sfps, fps, n)
        start_s, end_s, start_f, end_f = span
        first = start_f if not np.isnan(start_f) else (start_s * fps if not np.isnan(start_s) else 0)
        last = end_f if not np.isnan(end_f) else (end_s * fps if not np.isnan(end_s) else n - 1)
        return np.clip(np.rint(np.linspace(first, last, t)), 0, n - 1).astype(np.int64)

    def clip(self, source: str, time_s: float | None, frames_fps: float = float("nan"),
             span: tuple[float, float, float, float] = (float("nan"),) * 4) -> np.ndarray:
        """uint8 ``[T, crop, crop, 3]`` of one sample (video file, frame folder at ``frames_fps``, or image)."""
        from PIL import Image

        time_s = float("nan") if time_s is None else float(time_s)
        if self.task in DENSE:
            with Image.open(source) as im:
                img = np.asarray(im.convert("RGB"))
            frames = np.repeat(img[None], int(self.pre["frames"]), axis=0)
        elif Path(source).is_dir():  # frame folder: sorted files are frames at frames_fps
            files = sorted(p for p in Path(source).iterdir() if p.is_file())
            fps = frames_fps if not np.isnan(frames_fps) else float(self.pre["sample_fps"])
            frames = np.stack([np.asarray(Image.open(files[i]).convert("RGB"))
                               for i in self._indices(len(files), fps, time_s, span)])
        else:
            vr = self._video(source)
            frames = vr.get_batch(self._indices(len(vr), float(vr.get_avg_fps()), time_s, span).tolist()).asnumpy()
        return _center(frames, self.pre["short_side"], self.pre["crop"])

    def target(self, path: str, scale: float, threshold: float) -> np.ndarray:
        from orchestrator.benchmarks.adapters.dense import read_depth_mm

        raw = read_depth_mm(path, 1.0)  # any single-channel image → float32
        if raw.ndim != 2:
            raw = raw[..., 0]
        if self.task == "depth":
            arr = raw * scale
        else:  # 0/255 masks use the sample's threshold (128), 0/1 masks 0.5
            arr = (raw >= (threshold if raw.max() > 1 else 0.5)).astype(np.float32)
        return _target_view(arr, self.pre["short_side"], self.pre["crop"])
