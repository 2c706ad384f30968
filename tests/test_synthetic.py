"""Synthetic surgical-like corpus: real H.264 files, deterministic, idempotent, with consistent ground truth."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import decord
import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from orchestrator.data.manifest import load_manifest
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import (
    MARKER,
    corpus_is_complete,
    dense_ground_truth,
    generate_corpus,
    iter_frames,
    load_ground_truth,
)
from orchestrator.synthetic.render import encode_h264
from orchestrator.synthetic.script import INSTRUMENTS, MOTIONS, TARGETS, VERBS, plan_video

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(seed=3, videos_per_source=1, seconds=2, width=160, height=128)


def _videos(manifest_path: Path) -> list[Path]:
    m = load_manifest(manifest_path)
    return [v for s in m.sources for v in m.resolve_videos(s)]


def _frames(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synth_a"), TINY)


def test_manifest_loads_and_resolves_to_written_files(corpus: Path) -> None:
    m = load_manifest(corpus)
    assert [s.name for s in m.sources] == list(TINY.sources)
    assert {s.specialty for s in m.sources} == {"laparoscopy", "endoscopy", "ophthalmology"}
    written = sorted(corpus.parent.glob("*/*.mp4"))
    assert sorted(_videos(corpus)) == written and len(written) == 3


def test_decoded_video_has_configured_size_fps_and_length(corpus: Path) -> None:
    for video in _videos(corpus):
        vr = decord.VideoReader(str(video))
        assert len(vr) == int(TINY.seconds * 25) == 50
        assert vr.get_avg_fps() == pytest.approx(25.0)
        assert vr[0].shape == (TINY.height, TINY.width, 3)


def test_ground_truth_shapes_and_dtypes_match_the_video(corpus: Path) -> None:
    t, h, w, ni = 50, TINY.height, TINY.width, len(INSTRUMENTS)
    for video in _videos(corpus):
        rec, a = load_ground_truth(video)
        assert (rec.n_frames, rec.fps, rec.width, rec.height, rec.video) == (t, 25, w, h, video.name)
        assert rec.vocabularies.verbs == list(VERBS) and rec.vocabularies.targets == list(TARGETS)
        assert rec.vocabularies.motion_types == list(MOTIONS) and len(rec.vocabularies.phases) == 7
        expect = {"phase": ((t,), np.int16), "action": ((t,), np.int16), "instruments": ((t, ni), np.uint8),
                  "verb": ((t, ni), np.int16), "target": ((t, ni), np.int16), "tip_xy": ((t, ni, 2), np.float32),
                  "smoke": ((t,), np.float32), "blob_visible": ((t,), np.bool_), "camera": ((t, 3), np.float32),
                  "gt_frames": ((2,), np.int32), "blob_mask": ((2, h, w), np.bool_),
                  "instrument_mask": ((2, h, w), np.bool_), "depth": ((2, h, w), np.float32)}
        assert set(a) == set(expect)
        for name, (shape, dtype) in expect.items():
            assert a[name].shape == shape and a[name].dtype == dtype, name
        present = a["instruments"].astype(bool)
        assert ((a["verb"] >= 0) == present).all() and ((a["target"] >= 0) == present).all()
        assert (np.isnan(a["tip_xy"][..., 0]) == ~present).all()
        assert a["verb"].max() < len(VERBS) and a["target"].max() < len(TARGETS) and a["action"].max() < len(MOTIONS)
        assert a["gt_frames"].tolist() == [0, 25] and (a["depth"] > 0).all()
        assert not (a["blob_mask"] & ~a["blob_visible"][a["gt_frames"]][:, None, None]).any()


def test_phases_are_contiguous_segments_covering_all_frames(corpus: Path) -> None:
    for video in _videos(corpus):
        rec, a = load_ground_truth(video)
        phase = a["phase"]
        starts = np.flatnonzero(np.diff(phase)) + 1
        runs = [int(phase[i]) for i in np.concatenate([[0], starts])]
        assert len(runs) == len(set(runs)) and 4 <= len(runs) <= 7     # each phase is one contiguous run
        assert runs == sorted(runs)                                     # workflow order
        segs = rec.segments
        assert segs[0].start == 0 and segs[-1].end == rec.n_frames
        assert all(p.end == q.start for p, q in zip(segs, segs[1:]))
        for s in segs:
            assert (phase[s.start:s.end] == s.phase).all() and (a["action"][s.start:s.end] == s.motion).all()
            assert sorted(np.flatnonzero(a["instruments"][s.start])) == sorted(s.instruments)


def test_same_seed_is_identical_and_other_seed_differs(corpus: Path, tmp_path: Path) -> None:
    again = generate_corpus(tmp_path / "b", TINY)
    for v1, v2 in zip(_videos(corpus), _videos(again)):
        r1, a1 = load_ground_truth(v1)
        r2, a2 = load_ground_truth(v2)
        assert r1 == r2 and a1.keys() == a2.keys()
        for k in a1:
            np.testing.assert_array_equal(a1[k], a2[k], err_msg=k)
        np.testing.assert_array_equal(_frames(v1), _frames(v2))
        for suffix in (".mp4", ".npz", ".json"):                          # byte-identical files
            assert v1.with_suffix(suffix).read_bytes() == v2.with_suffix(suffix).read_bytes()
    other = generate_corpus(tmp_path / "c", TINY.model_copy(update={"seed": 4, "sources": ("synth_laparoscopy",)}))
    (v_other,) = _videos(other)
    _, a_other = load_ground_truth(v_other)
    _, a_same = load_ground_truth(_videos(corpus)[0])
    assert not np.array_equal(_frames(v_other), _frames(_videos(corpus)[0]))
    assert not np.array_equal(a_other["depth"], a_same["depth"])


def test_encoder_is_reproducible_with_a_dirty_heap(tmp_path: Path) -> None:
    """x264 with mbtree reads uninitialised memory; recycled heap blocks full of junk expose it."""
    cfg = SyntheticConfig(seed=0, seconds=1, width=160, height=128)
    frames = [f for f, _ in iter_frames(plan_video(cfg, "synth_colonoscopy", 0))]
    rng, digests = np.random.default_rng(0), set()
    for _ in range(6):
        junk = [rng.integers(0, 256, int(n), dtype=np.uint8) for n in rng.integers(1_000, 120_000, 200)]
        del junk
        encode_h264(tmp_path / "v.mp4", frames, cfg.width, cfg.height, cfg.fps, cfg.crf, cfg.preset)
        digests.add(hashlib.sha256((tmp_path / "v.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_parallel_workers_write_the_same_bytes(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=1, videos_per_source=1, seconds=1, width=64, height=64,
                          sources=("synth_colonoscopy", "synth_cataract"))
    serial, parallel = generate_corpus(tmp_path / "s", cfg), generate_corpus(tmp_path / "p", cfg, workers=2)
    for v1, v2 in zip(_videos(serial), _videos(parallel)):
        for suffix in (".mp4", ".npz", ".json"):
            assert v1.with_suffix(suffix).read_bytes() == v2.with_suffix(suffix).read_bytes()


def test_instruments_move_more_than_the_background() -> None:
    plan = plan_video(TINY, "synth_laparoscopy", 0)
    frames, covers = zip(*iter_frames(plan))
    inside, outside = [], []
    for t in range(len(frames) - 1):
        diff = np.abs(frames[t + 1].astype(np.float32) - frames[t].astype(np.float32)).mean(-1)
        mask = ndimage.binary_dilation((covers[t] > 0.5) | (covers[t + 1] > 0.5), iterations=2)
        if mask.any():
            inside.append(diff[mask].mean())
            outside.append(diff[~mask].mean())
    assert len(inside) > 10
    assert np.mean(inside) > 4 * np.mean(outside) and np.mean(outside) > 0.05    # the camera drifts too


def test_blob_mask_and_depth_follow_the_rendered_bump() -> None:
    plan = next(p for p in (plan_video(TINY, "synth_colonoscopy", k) for k in range(20))
                if p.arrays["blob_visible"][p.arrays["gt_frames"]].any())
    dense = dense_ground_truth(plan)
    frames = [f for f, _ in iter_frames(plan)]
    checked = 0
    for i, t in enumerate(plan.arrays["gt_frames"]):
        mask = dense["blob_mask"][i]
        if mask.sum() < 20:
            continue
        ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
        assert frames[t][mask].mean() > frames[t][ring].mean()                 # bright bump
        assert dense["depth"][i][mask].mean() < dense["depth"][i][ring].mean()  # closer to the camera
        checked += 1
    assert checked > 0


def test_smoothness_is_minus_mean_tip_jerk(corpus: Path) -> None:
    for video in _videos(corpus):
        rec, a = load_ground_truth(video)
        tip = a["tip_xy"].astype(np.float64)
        jerk = np.linalg.norm(tip[3:] - 3 * tip[2:-1] + 3 * tip[1:-2] - tip[:-3], axis=-1)
        expected = -np.nanmean(jerk) * 320 / rec.width if np.isfinite(jerk).any() else 0.0
        assert rec.smoothness == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_second_call_is_a_noop(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = corpus.parent
    before = _mtimes(root)
    def no_render(*args: object, **kw: object) -> None:
        raise AssertionError("a complete corpus was generated again")

    monkeypatch.setattr("orchestrator.synthetic.corpus._run_jobs", no_render)
    assert generate_corpus(root, TINY) == corpus
    assert _mtimes(root) == before


def test_interrupted_or_changed_generation_is_redone(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=2, videos_per_source=2, seconds=1, width=64, height=64, sources=("synth_cataract",))
    manifest = generate_corpus(tmp_path, cfg)
    first = _videos(manifest)[0]
    (tmp_path / MARKER).unlink()                    # simulate a crash before the marker was written ...
    first.write_bytes(first.read_bytes()[:100])    # ... with a half-written file
    assert not corpus_is_complete(tmp_path, cfg)
    stamp = first.stat().st_mtime_ns
    generate_corpus(tmp_path, cfg)
    assert corpus_is_complete(tmp_path, cfg) and first.stat().st_mtime_ns != stamp
    assert len(decord.VideoReader(str(first))) == 25
    smaller = cfg.model_copy(update={"videos_per_source": 1})     # other config: rewritten, stale files removed
    generate_corpus(tmp_path, smaller)
    assert corpus_is_complete(tmp_path, smaller) and not corpus_is_complete(tmp_path, cfg)
    assert sorted(p.name for p in (tmp_path / "synth_cataract").iterdir()) == [
        "synth_cataract_000.json", "synth_cataract_000.mp4", "synth_cataract_000.npz"]


def test_cli_runs_from_anywhere(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "make_synthetic.py"), "--out", str(out),
                          "--seed", "5", "--videos-per-source", "1", "--seconds", "1", "--width", "64",
                          "--height", "48"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == str(out / "manifest.yaml")
    assert decord.VideoReader(str(_videos(Path(lines[-1]))[0]))[0].shape == (48, 64, 3)


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="even"):
        SyntheticConfig(width=161)
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_ground_truth(tmp_path / "nothing.mp4")
