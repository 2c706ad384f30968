"""Scene progression (orchestrator.synthetic.marks): each phase's marks, their persistence, and that they are
paint only (the latent script and its ground truth do not depend on them)."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.synthetic import marks as M
from orchestrator.synthetic import render as R
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.script import PROFILES, plan_video

W, H = 160, 128
CFG = SyntheticConfig(seed=5, videos_per_source=1, seconds=8, width=W, height=H)


def _scene(blob: tuple[float, float] | None = None) -> R.Scene:
    return R.build_scene(np.random.default_rng(0), R.LOOKS["laparoscopy"], H, W, blob)


def test_every_phase_of_every_source_has_marks() -> None:
    assert M.PHASE_MARKS.keys() == PROFILES.keys()
    for source, prof in PROFILES.items():
        marks = M.PHASE_MARKS[source]
        assert len(marks) == len(prof.phases) and all(len(m) >= 1 for m in marks), source
        # no two phases of a source look alike: their mark lists differ
        assert len({tuple(m) for m in marks}) == len(marks), source


def test_stages_composite_current_and_earlier_persistent_marks() -> None:
    scene = _scene()
    marks = ((M.Mark("patch", (0.0, 0.0, 1.0), 0.15),),
             (M.Mark("clips", (0.9, 0.9, 0.9), 0.1, count=2, persist=True),),
             (M.Mark("tint", (0.5, 0.25, 1.0)),))
    stages = M.stage_canvases(np.random.default_rng(1), marks, [0, 1, 2], scene)
    layers = M.place_marks(np.random.default_rng(1), marks, [0, 1, 2], scene)   # same seed: same geometry
    base = scene.colour
    s0, s1, s2 = (s[0] for s in stages)
    np.testing.assert_allclose(s0, layers[0][0].apply(base), atol=1e-6)
    np.testing.assert_allclose(s1, layers[1][0].apply(base), atol=1e-6)     # the patch is gone, clips appear
    # the tint multiplies the canvas that still holds the (persistent) clips
    np.testing.assert_allclose(s2, s1 * np.array([0.5, 0.25, 1.0], np.float32)[:, None, None], atol=1e-6)
    # the patch is blue and local: it changes the middle of the canvas, not the corners
    hc, wc = base.shape[1:]
    changed = np.abs(s0 - base).max(0) > 1e-4
    assert changed[hc // 2 - 5:hc // 2 + 5, wc // 2 - 5:wc // 2 + 5].all()
    assert not changed[:10, :10].any() and not changed[-10:, -10:].any()
    assert s0[2][changed].mean() > base[2][changed].mean() + 0.2
    assert stages[0][1] is stages[0][0]                                     # no blob: one canvas serves both


def test_blob_marks_sit_on_the_bump() -> None:
    scene = _scene(blob=(12.0, 5.0))
    assert scene.has_blob and not _scene().has_blob
    stage = M.stage_canvases(np.random.default_rng(2), ((M.Mark("patch", (0, 0, 1), 0.05, at_blob=True),),),
                             [0], scene)[0]
    changed = np.abs(stage[1] - scene.colour_blob).max(0) > 1e-4
    ys, xs = np.nonzero(changed)
    cx, cy = scene.blob_centre
    assert np.hypot(xs.mean() - cx, ys.mean() - cy) < 3.0


def test_marks_are_paint_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans with and without marks share every record field and ground-truth array: the marks draw from their
    own generator, so the latent script is unchanged."""
    with_marks = plan_video(CFG, "synth_laparoscopy", 0)
    bare = {src: tuple(() for _ in marks) for src, marks in M.PHASE_MARKS.items()}
    monkeypatch.setattr(M, "PHASE_MARKS", bare)
    without = plan_video(CFG, "synth_laparoscopy", 0)
    assert with_marks.record == without.record
    assert with_marks.arrays.keys() == without.arrays.keys()
    for key in with_marks.arrays:
        np.testing.assert_array_equal(with_marks.arrays[key], without.arrays[key], err_msg=key)
    segs = with_marks.record.segments
    assert [with_marks.states[s.start].stage for s in segs] == list(range(len(segs)))
    first, _ = R.render_frame(with_marks.scene, with_marks.states[segs[0].start])
    plain, _ = R.render_frame(without.scene, without.states[segs[0].start])
    assert np.abs(first.astype(int) - plain).max() > 50                    # the marks are visible
