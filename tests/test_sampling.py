"""Balanced sampling: per-clip probabilities equal w(x) ∝ 1/(N_d·|D_s|); draws are reproducible by (seed, epoch)."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.data.clip_index import ClipIndex, VideoRecord, clip_starts
from orchestrator.data.sampling import SamplingPlan, descriptors


def toy_index() -> ClipIndex:
    """2 specialties: 'lap' has datasets A (2 videos) and B (1 short video); 'eye' has dataset C (1 long video).
    With T=4 at 1 fps, stride 1 s, a video of n frames at 1 fps has n - 3 clip starts."""
    def v(path: str, source: str, spec: str, seconds: int) -> VideoRecord:
        return VideoRecord(path=path, source=source, specialty=spec, fps=1.0, num_frames=seconds, width=64,
                           height=48)
    videos = [v("a1.mp4", "A", "lap", 13), v("a2.mp4", "A", "lap", 23), v("b1.mp4", "B", "lap", 8),
              v("c1.mp4", "C", "eye", 103)]
    return ClipIndex(frames=4, sample_fps=1.0, clip_stride_s=1.0, videos=videos, skipped=[])


def test_clip_start_counts() -> None:
    assert clip_starts(13, 1.0, 4, 1.0, 1.0) == 10  # starts 0..9, last clip uses frames 9..12
    assert clip_starts(3, 1.0, 4, 1.0, 1.0) == 0
    assert clip_starts(250, 25.0, 4, 1.0, 1.0) == 7  # 10 s at 25 fps: last frame at 9.96 s → starts 0..6
    assert clip_starts(13, 1.0, 4, 1.0, 2.0) == 5


def test_probabilities_match_formula() -> None:
    plan = SamplingPlan.from_index(toy_index())
    n = {"A": 10 + 20, "B": 5, "C": 100}
    ds_in_spec = {"A": 2, "B": 2, "C": 1}
    w = {d: 1.0 / (n[d] * ds_in_spec[d]) for d in n}
    z = sum(w[d] * n[d] for d in n)  # normalise over all clips
    probs = plan.clip_probabilities()
    for d in n:
        assert probs[d] == pytest.approx(w[d] / z)
    # mass per specialty and per dataset is balanced whatever the sizes
    assert probs["A"] * n["A"] == pytest.approx(0.25) and probs["B"] * n["B"] == pytest.approx(0.25)
    assert probs["C"] * n["C"] == pytest.approx(0.5)


def test_empirical_frequencies_follow_weights() -> None:
    index = toy_index()
    plan = SamplingPlan.from_index(index)
    rows = descriptors(plan, seed=0, epoch_size=40_000, first=0, last=40_000, block=512)
    paths, counts = np.unique(rows["path"], return_counts=True)
    freq = dict(zip(paths, counts / counts.sum()))
    # per video: its clips × per-clip probability
    probs = plan.clip_probabilities()
    expected = {v.path: index.num_starts(v) * probs[v.source] for v in index.videos}
    for path, p in expected.items():
        assert abs(freq[path] - p) < 0.01, (path, freq[path], p)
    # clip starts stay inside each video
    for path, start in zip(rows["path"], rows["start"]):
        assert 0 <= start <= {"a1.mp4": 9, "a2.mp4": 19, "b1.mp4": 4, "c1.mp4": 99}[path]


def test_draws_reproducible_and_epoch_dependent() -> None:
    plan = SamplingPlan.from_index(toy_index())
    a = descriptors(plan, seed=3, epoch_size=50, first=0, last=100, block=16)
    b = descriptors(plan, seed=3, epoch_size=50, first=0, last=100, block=16)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert list(a["epoch"]) == [0] * 50 + [1] * 50
    assert not np.array_equal(a["start"][:50], a["start"][50:])  # epoch 1 is a new draw
    c = descriptors(plan, seed=4, epoch_size=50, first=0, last=100, block=16)
    assert not np.array_equal(a["start"], c["start"])


def test_any_position_regenerates_the_same_rows() -> None:
    plan = SamplingPlan.from_index(toy_index())
    full = descriptors(plan, seed=1, epoch_size=37, first=0, last=120, block=8)
    for first in (0, 5, 8, 36, 37, 99):
        part = descriptors(plan, seed=1, epoch_size=37, first=first, last=120, block=8)
        for k in full:
            assert np.array_equal(part[k], full[k][first:]), (first, k)
    assert list(full["index"]) == list(range(120))


def test_empty_corpus_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no readable video"):
        SamplingPlan.from_index(ClipIndex(frames=4, sample_fps=1.0, clip_stride_s=1.0, videos=[], skipped=[]))
