"""Eval views of benchmark samples: :class:`ClipReader` decodes one sample into a uint8 clip ``[T, crop, crop, 3]``
(short side resized, centre crop) and its dense target with the same geometry, as :class:`Preprocessing` says.

Which frames each kind of sample reads:

- an instant of a longer video (phase / triplet; ``time_s`` given): the ``frames`` frames at ``sample_fps``
  *ending* at ``time_s`` (frames before the video start repeat the first frame); a frame-folder source is read as
  frames at ``frames_fps``;
- a short video (action / skill; no ``time_s``): ``frames`` frames evenly spaced over the video, or over the
  segment ``start_s``/``end_s`` or ``start_frame``/``end_frame`` when given (AVOS);
- an image (segmentation / depth): the image **repeated** ``frames`` times (the video backbones need a clip; every
  tubelet then sees the same picture); its mask / depth map is resized (nearest) and cropped with the same
  geometry as the image (masks as 0/1, depth in mm with 0 = invalid).

Augmented train views (``view="augmented"``: random-resized crop, flip, photometric RandAugment, seeded by the
sample id and the view index) replace the centre crop for clip-level tasks only: :mod:`orchestrator.data.augment`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import decord
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.tasks import DENSE_TASKS
from orchestrator.data.augment import AugmentConfig, augment_view, view_seed
from orchestrator.data.decode import crop_box, frame_indices, resize_frames, resized_size

NAN = float("nan")
Span = tuple[float, float, float, float]  # start_s, end_s, start_frame, end_frame (NaN = not given)


class Preprocessing(BaseModel):
    """What turns a sample into the backbone's input clip: the cache-key input of the feature cache and the
    reader's settings. The centre view leaves ``augment`` / ``view_index`` None, and :meth:`key_dict` drops them,
    so its cache keys are those of the code before augmented views existed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(gt=0, description="T frames per clip")
    sample_fps: float = Field(gt=0, description="clip frame rate of instant samples")
    short_side: int = Field(gt=0)
    crop: int = Field(gt=0)
    view: Literal["center", "augmented"] = "center"
    augment: AugmentConfig | None = Field(None, description="settings of an augmented view")
    view_index: int | None = Field(None, ge=1, description="which augmented view (1..K)")

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if (self.view == "augmented") != (self.augment is not None and self.view_index is not None):
            raise ValueError("an augmented view needs augment and view_index, the centre view neither")
        return self

    def key_dict(self) -> dict[str, Any]:
        """What enters the feature cache key (None fields left out: centre views hash as they always did)."""
        return self.model_dump(exclude_none=True)


def read_image_array(path: str | Path) -> np.ndarray:
    """An image (any mode PIL reads: 8/16-bit, float TIFF, RGB, palette) or an ``.npy`` array, as stored."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    with Image.open(p) as im:
        return np.array(im)


def _center(frames: np.ndarray, short_side: int, crop: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` → short side resized, centre-cropped ``[T, crop, crop, 3]``."""
    w, h = resized_size(frames.shape[2], frames.shape[1], short_side)
    if (h, w) != frames.shape[1:3]:
        frames = resize_frames(frames, h, w)
    top, left = crop_box(h, w, crop, None)
    return np.ascontiguousarray(frames[:, top:top + crop, left:left + crop])


def _target_view(target: np.ndarray, short_side: int, crop: int) -> np.ndarray:
    """A ``[H, W]`` mask / depth map resized (nearest) and centre-cropped like its image."""
    import torch  # deferred: torch (~2 s import), only dense targets are resized with it
    import torch.nn.functional as F  # deferred: torch, as above

    w, h = resized_size(target.shape[1], target.shape[0], short_side)
    t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None, None]
    resized = F.interpolate(t, size=(h, w), mode="nearest")[0, 0].numpy()
    top, left = crop_box(h, w, crop, None)
    return np.ascontiguousarray(resized[top:top + crop, left:left + crop])


class ClipReader:
    """Decodes sample descriptors into uint8 clips ``[T, crop, crop, 3]`` (keeps the last video open)."""

    def __init__(self, task: str, pre: Preprocessing) -> None:
        self.task, self.pre = task, pre
        self._path: str | None = None
        self._vr: Any = None

    def _video(self, path: str) -> Any:
        if path != self._path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"video {path} does not exist")
            self._vr, self._path = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1), path
        return self._vr

    def _indices(self, n: int, fps: float, time_s: float, span: Span) -> np.ndarray:
        """Frame numbers: T at sample_fps ending at ``time_s``; else T evenly spaced over the segment
        (``start_s``/``end_s`` or ``start_frame``/``end_frame``; NaN = the whole video)."""
        t, sfps = self.pre.frames, self.pre.sample_fps
        if not np.isnan(time_s):
            return frame_indices(time_s - (t - 1) / sfps, t, sfps, fps, n)
        start_s, end_s, start_f, end_f = span
        first = start_f if not np.isnan(start_f) else (start_s * fps if not np.isnan(start_s) else 0)
        last = end_f if not np.isnan(end_f) else (end_s * fps if not np.isnan(end_s) else n - 1)
        return np.clip(np.rint(np.linspace(first, last, t)), 0, n - 1).astype(np.int64)

    def clip(self, source: str, time_s: float | None, frames_fps: float = NAN, span: Span = (NAN,) * 4,
             sample_id: str | None = None, pre: Preprocessing | None = None) -> np.ndarray:
        """uint8 ``[T, crop, crop, 3]`` of one sample (video file, frame folder at ``frames_fps``, or image) in the
        reader's view, or in ``pre``'s (same frames / fps / sizes; an augmented view needs the ``sample_id``)."""
        pre = pre or self.pre
        if (pre.frames, pre.sample_fps, pre.short_side, pre.crop) != (
                self.pre.frames, self.pre.sample_fps, self.pre.short_side, self.pre.crop):
            raise ValueError("ClipReader.clip: pre may change only the view, not frames / fps / sizes")
        if pre.augment is not None and (sample_id is None or self.task in DENSE_TASKS):
            raise ValueError(f"augmented view of {source}: needs a sample_id and a clip-level task, got "
                             f"{sample_id!r}, {self.task}")
        frames = self._frames(source, NAN if time_s is None else float(time_s), frames_fps, span)
        if pre.augment is None or pre.view_index is None or sample_id is None:
            return _center(frames, self.pre.short_side, self.pre.crop)
        w, h = resized_size(frames.shape[2], frames.shape[1], pre.short_side)
        if (h, w) != frames.shape[1:3]:
            frames = resize_frames(frames, h, w)
        return augment_view(frames, pre.crop, pre.augment, view_seed(sample_id, pre.view_index, pre.augment.seed))

    def _frames(self, source: str, time_s: float, frames_fps: float, span: Span) -> np.ndarray:
        """The sample's decoded frames, native size."""
        if self.task in DENSE_TASKS:
            with Image.open(source) as im:
                img = np.asarray(im.convert("RGB"))
            frames = np.repeat(img[None], self.pre.frames, axis=0)
        elif Path(source).is_dir():  # frame folder: sorted files are frames at frames_fps
            files = sorted(p for p in Path(source).iterdir() if p.is_file())
            fps = frames_fps if not np.isnan(frames_fps) else self.pre.sample_fps
            frames = np.stack([np.asarray(Image.open(files[i]).convert("RGB"))
                               for i in self._indices(len(files), fps, time_s, span)])
        else:
            vr = self._video(source)
            frames = vr.get_batch(self._indices(len(vr), float(vr.get_avg_fps()), time_s, span).tolist()).asnumpy()
        return frames

    def target(self, path: str, scale: float, threshold: float) -> np.ndarray:
        """The sample's mask (0/1) or depth map (× ``scale``) in the clip's geometry."""
        raw = read_image_array(path).astype(np.float32)
        if raw.ndim != 2:
            raw = raw[..., 0]
        if self.task == "depth":
            arr = raw * scale
        else:  # 0/255 masks use the sample's threshold (128), 0/1 masks 0.5
            arr = (raw >= (threshold if raw.max() > 1 else 0.5)).astype(np.float32)
        return _target_view(arr, self.pre.short_side, self.pre.crop)
