"""Balanced clip sampling across specialties and datasets (paper §4.1): w(x) ∝ 1 / (N_d · |D_s|).

Drawing a specialty uniformly, then a dataset of that specialty uniformly, then a clip of that dataset uniformly
gives every clip x of dataset d in specialty s the probability 1 / (S · |D_s| · N_d) — exactly the paper's
weights, normalised. Each specialty gets mass 1/S and each dataset 1/(S·|D_s|) whatever its size.

Samples are drawn with replacement, in blocks: sample i of epoch e depends only on (seed, e, i // block), so any
position of any epoch can be regenerated without drawing the samples before it (cheap exact resume).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orchestrator.data.clip_index import ClipIndex


@dataclass
class DatasetClips:
    """The clips of one dataset: video ids and cumulative clip-start counts for uniform clip draws."""

    name: str
    specialty: str
    videos: np.ndarray  # indices into ClipIndex.videos
    cum_starts: np.ndarray  # cum_starts[k] = clips in videos[:k+1]

    @property
    def num_clips(self) -> int:
        return int(self.cum_starts[-1])


@dataclass
class SamplingPlan:
    index: ClipIndex
    datasets: list[DatasetClips]
    specialties: list[str]
    by_specialty: list[np.ndarray] = field(default_factory=list)  # dataset ids per specialty

    @classmethod
    def from_index(cls, index: ClipIndex) -> SamplingPlan:
        if not index.videos:
            raise ValueError("the corpus has no readable video long enough for one clip "
                             f"({len(index.skipped)} skipped); see the skip list")
        groups: dict[str, list[int]] = {}
        for i, v in enumerate(index.videos):
            groups.setdefault(v.source, []).append(i)
        datasets = []
        for name, vids in groups.items():
            starts = np.array([index.num_starts(index.videos[i]) for i in vids], dtype=np.int64)
            datasets.append(DatasetClips(name, index.videos[vids[0]].specialty, np.array(vids), np.cumsum(starts)))
        specialties = sorted({d.specialty for d in datasets})
        by_spec = [np.array([k for k, d in enumerate(datasets) if d.specialty == s]) for s in specialties]
        return cls(index, datasets, specialties, by_spec)

    def clip_probabilities(self) -> dict[str, float]:
        """Per-clip probability in each dataset: 1 / (S · |D_s| · N_d)."""
        s = len(self.specialties)
        n_in_spec = {sp: len(ids) for sp, ids in zip(self.specialties, self.by_specialty)}
        return {d.name: 1.0 / (s * n_in_spec[d.specialty] * d.num_clips) for d in self.datasets}

    def default_epoch_size(self) -> int:
        """One epoch ≈ the corpus' video time cut into non-overlapping clips."""
        span = self.index.frames / self.index.sample_fps
        return max(1, int(self.index.total_seconds // span))

    def draw(self, seed: int, epoch: int, block: int, n: int) -> dict[str, np.ndarray]:
        """``n`` samples of block ``block`` of epoch ``epoch``: video index, clip start (s), crop seed."""
        rng = np.random.default_rng([seed, epoch, block])
        spec = rng.integers(0, len(self.specialties), size=n)
        video = np.empty(n, dtype=np.int64)
        start = np.empty(n, dtype=np.float64)
        for k in range(n):
            ds_ids = self.by_specialty[spec[k]]
            d = self.datasets[ds_ids[rng.integers(0, len(ds_ids))]]
            clip = int(rng.integers(0, d.num_clips))
            j = int(np.searchsorted(d.cum_starts, clip, side="right"))
            before = int(d.cum_starts[j - 1]) if j else 0
            video[k] = d.videos[j]
            start[k] = (clip - before) * self.index.clip_stride_s
        crop_seed = rng.integers(0, 2**31 - 1, size=n, dtype=np.int64)
        return {"video": video, "start": start, "crop_seed": crop_seed}


def descriptors(plan: SamplingPlan, seed: int, epoch_size: int, first: int, last: int, block: int
                ) -> dict[str, np.ndarray]:
    """Clip descriptors for global sample indices [first, last): index, epoch, video path, start, crop seed, and
    the video's fps / frame count / size (so decoding needs no extra probe)."""
    rows: dict[str, list] = {k: [] for k in ("index", "epoch", "video", "start", "crop_seed")}
    i = first
    while i < last:
        epoch, pos = divmod(i, epoch_size)
        b = pos // block
        lo = b * block
        n = min(block, epoch_size - lo)
        drawn = plan.draw(seed, epoch, b, n)
        take = slice(pos - lo, min(n, pos - lo + (last - i)))
        count = take.stop - take.start
        rows["index"].extend(range(i, i + count))
        rows["epoch"].extend([epoch] * count)
        rows["video"].extend(drawn["video"][take].tolist())
        rows["start"].extend(drawn["start"][take].tolist())
        rows["crop_seed"].extend(drawn["crop_seed"][take].tolist())
        i += count
    videos = [plan.index.videos[v] for v in rows["video"]]
    return {"index": np.array(rows["index"], dtype=np.int64), "epoch": np.array(rows["epoch"], dtype=np.int64),
            "path": np.array([v.path for v in videos], dtype=object),
            "start": np.array(rows["start"], dtype=np.float64),
            "crop_seed": np.array(rows["crop_seed"], dtype=np.int64),
            "fps": np.array([v.fps for v in videos], dtype=np.float64),
            "num_frames": np.array([v.num_frames for v in videos], dtype=np.int64),
            "width": np.array([v.width for v in videos], dtype=np.int64),
            "height": np.array([v.height for v in videos], dtype=np.int64)}
