"""The synthetic benchmark suite: six benchmarks derived from the generator's ground truth, video-level splits,
labels that match the ground truth and the pixels, idempotent builds, clear errors."""
from __future__ import annotations

import functools
import hashlib
import shutil
from pathlib import Path

import decord
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from scipy import ndimage

from orchestrator.benchmarks.adapters.dense import read_depth_mm
from orchestrator.benchmarks.adapters.synthetic import INDEX_FILE, SUITE_MARKER, read_suite_index
from orchestrator.benchmarks.registry import BENCHMARKS, get_benchmark, load_samples
from orchestrator.benchmarks.spec import BenchmarkError, Sample, get_adapter
from orchestrator.benchmarks.tasks import RELAXED_METRICS
from orchestrator.probe.config import resolve_benchmark
from orchestrator.synthetic.corpus import load_ground_truth
from orchestrator.synthetic.script import INSTRUMENTS, MOTIONS, TARGETS, VERBS, VideoRecord
from orchestrator.synthetic.specs import (
    PHASE_CLASSES,
    PHASE_OFFSET,
    SYNTHETIC_BENCHMARKS,
    TRIPLET_NAMES,
    suite_triplet_map,
)
from orchestrator.synthetic.suite import SuiteConfig, build_synthetic_suite, suite_is_complete

# Reduced suite (about 5 s on 2 idle CPUs): 2 sources x 3 videos x 10 s, 1-s action clips, 2 x 3 skill videos of
# 1 s. Seed 4: 16 action clips, 7 of them still.
TINY = SuiteConfig(seed=4, sources=("synth_laparoscopy", "synth_colonoscopy"), videos_per_source=3, seconds=10,
                   skill_videos_per_source=3, skill_seconds=1.0, clip_seconds=1.0, clip_margin_s=0.1,
                   clips_per_segment=4, split_candidates=32)
NAMES = ["synthetic-phase", "synthetic-action", "synthetic-triplet", "synthetic-skill", "synthetic-segmentation",
         "synthetic-depth"]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_suite(tmp_path_factory.mktemp("synthetic_suite") / "suite", config=TINY, workers=1)


def _all(name: str, root: Path) -> list[Sample]:
    return [s for split in SPLITS for s in load_samples(resolve_benchmark(name), root, split)]


@functools.cache
def _gt(video: str) -> tuple[VideoRecord, dict[str, np.ndarray]]:
    return load_ground_truth(video)


def _png(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def _files(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (SUITE_MARKER, ".lock")}


# ---------------------------------------------------------------------------------------------- registry, splits
def test_specs_are_resolved_by_name_but_not_in_the_19() -> None:
    assert len(BENCHMARKS) == 19 and not set(SYNTHETIC_BENCHMARKS) & set(BENCHMARKS)
    assert sorted(SYNTHETIC_BENCHMARKS) == sorted(NAMES)
    tasks = {resolve_benchmark(n).task for n in NAMES}
    assert tasks == {"phase", "action", "triplet", "skill", "segmentation", "depth"}
    assert resolve_benchmark("Synthetic-Phase") is SYNTHETIC_BENCHMARKS["synthetic-phase"]
    assert resolve_benchmark("synthetic-phase").primary_metric == BENCHMARKS["Cholec80"].primary_metric == "f1"
    # the synthetic phase task scores as Cholec80 does, without Cholec80's relaxed-boundary extras (7-phase rules)
    cholec80_unrelaxed = [m for m in BENCHMARKS["Cholec80"].metrics if m not in RELAXED_METRICS]
    assert resolve_benchmark("synthetic-phase").metrics == cholec80_unrelaxed
    assert set(BENCHMARKS["Cholec80"].metrics) - set(cholec80_unrelaxed) == set(RELAXED_METRICS)
    assert resolve_benchmark("synthetic-triplet").primary_metric == "ap_ivt"
    assert callable(get_adapter("synthetic_suite"))
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        resolve_benchmark("synthetic-nothing")
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        get_benchmark("synthetic-phase")  # the registry holds the 19 real benchmarks only


def test_every_benchmark_has_nonempty_video_disjoint_splits(suite: Path) -> None:
    index = read_suite_index(suite)
    for name in NAMES:
        spec = resolve_benchmark(name)
        videos = {split: {s.video_id for s in load_samples(spec, suite, split)} for split in SPLITS}
        assert all(videos.values()), (name, videos)
        for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
            assert not videos[a] & videos[b], (name, a, b)
        assert all(videos[s] <= set(index.splits[s]) for s in SPLITS)
        for s in _all(name, suite):
            assert Path(s.source).is_file() and (s.target_path is None or Path(s.target_path).is_file())
            if spec.task in ("phase", "action"):
                assert isinstance(s.label, int) and 0 <= s.label < spec.num_classes
            if spec.task == "triplet":
                assert all(0 <= k < spec.num_classes for k in s.label) and s.label == sorted(set(s.label))
    main_videos = {s.video_id for s in _all("synthetic-phase", suite)}   # one split for all main-video benchmarks
    for split in SPLITS:
        ids = {s.video_id for s in load_samples(resolve_benchmark("synthetic-phase"), suite, split)}
        for name in ("synthetic-action", "synthetic-triplet", "synthetic-segmentation", "synthetic-depth"):
            assert {s.video_id for s in load_samples(resolve_benchmark(name), suite, split)} <= ids
    assert len(main_videos) == 3 * len(TINY.sources)


def test_splits_are_per_source_and_cover_the_labels(suite: Path) -> None:
    for split in SPLITS:
        phase = load_samples(resolve_benchmark("synthetic-phase"), suite, split)
        assert {s.meta["source_name"] for s in phase} == set(TINY.sources)    # every source in every split
        seg = load_samples(resolve_benchmark("synthetic-segmentation"), suite, split)
        assert any(s.meta["positive"] for s in seg) and any(not s.meta["positive"] for s in seg)
    train = {s.label for s in load_samples(resolve_benchmark("synthetic-phase"), suite, "train")}
    every = {s.label for s in _all("synthetic-phase", suite)}
    assert len(train) >= 0.75 * len(every)


# ------------------------------------------------------------------------------------- labels = ground truth
def test_phase_labels_match_the_ground_truth(suite: Path) -> None:
    samples = _all("synthetic-phase", suite)
    for s in samples:
        rec, gt = _gt(s.source)
        frame = round(s.time_s * rec.fps)
        assert frame == s.meta["frame"] and s.time_s == int(s.time_s)
        assert s.label == PHASE_OFFSET[rec.source] + int(gt["phase"][frame])
        assert PHASE_CLASSES[s.label] == f"{rec.source}/{rec.vocabularies.phases[gt['phase'][frame]]}"
    rec, gt = _gt(samples[0].source)
    per_video = [s for s in samples if s.video_id == samples[0].video_id]
    assert [s.time_s for s in per_video] == [float(k) for k in range(len(gt["gt_frames"]))]


def test_triplet_labels_match_the_ground_truth_and_the_component_map(suite: Path) -> None:
    maps = suite_triplet_map()
    assert maps.shape == (len(TRIPLET_NAMES), 3) and maps.dtype == np.int64
    assert len({tuple(r) for r in maps.tolist()}) == len(maps)
    assert [f"{INSTRUMENTS[i]},{VERBS[v]},{TARGETS[t]}" for i, v, t in maps] == TRIPLET_NAMES
    assert resolve_benchmark("synthetic-triplet").classes == TRIPLET_NAMES
    nonempty = 0
    for s in _all("synthetic-triplet", suite):
        _, gt = _gt(s.source)
        f = round(s.time_s * s.meta["fps"])
        present = np.flatnonzero(gt["instruments"][f])
        expect = {(int(i), int(gt["verb"][f, i]), int(gt["target"][f, i])) for i in present}
        assert {tuple(maps[k]) for k in s.label} == expect
        nonempty += bool(s.label)
    assert nonempty > 0


def test_action_clips_are_short_videos_inside_one_phase(suite: Path) -> None:
    spec = resolve_benchmark("synthetic-action")
    assert spec.classes == list(MOTIONS)
    samples = _all("synthetic-action", suite)
    assert len({s.label for s in samples}) >= 3
    for s in samples:
        vr = decord.VideoReader(s.source)
        n = round(TINY.clip_seconds * 25)
        assert s.time_s is None and len(vr) == n and vr.get_avg_fps() == pytest.approx(25.0)
        assert vr[0].shape == (TINY.height, TINY.width, 3)
        _, gt = _gt(str(suite / s.meta["video"]))
        a, b = s.meta["start_frame"], s.meta["end_frame"]
        assert b - a == n and s.meta["start_s"] == a / 25
        assert (gt["action"][a:b] == s.label).all() and len(set(gt["phase"][a:b].tolist())) == 1
        assert gt["instruments"][a:b].any(1).all()
        parent = decord.VideoReader(str(suite / s.meta["video"]))      # cut without re-encoding: same pixels
        np.testing.assert_array_equal(vr.get_batch([0, n - 1]).asnumpy(), parent.get_batch([a, b - 1]).asnumpy())


def test_segmentation_masks_line_up_with_the_images(suite: Path) -> None:
    samples = _all("synthetic-segmentation", suite)
    assert resolve_benchmark("synthetic-segmentation").classes == ["blob"]
    for s in samples:
        img, mask = _png(s.source), _png(s.target_path)
        assert img.shape == (TINY.height, TINY.width, 3) and mask.shape == img.shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        _, gt = _gt(str(suite / "videos" / s.meta["source_name"] / f"{s.video_id}.mp4"))
        k = int(s.meta["time_s"])
        np.testing.assert_array_equal(mask > 128, gt["blob_mask"][k])
        if s.meta["positive"]:
            assert (mask > 128).mean() >= TINY.min_blob_fraction
        else:
            assert not mask.any()


def test_depth_maps_are_positive_millimetres_except_instruments(suite: Path) -> None:
    samples = _all("synthetic-depth", suite)
    assert len(samples) == len(_all("synthetic-phase", suite))       # every 1-fps frame
    for s in samples[::3]:
        depth = read_depth_mm(s.target_path, s.meta["depth_scale_mm"])
        assert depth.shape == _png(s.source).shape[:2] and depth.dtype == np.float32
        _, gt = _gt(str(suite / "videos" / s.meta["source_name"] / f"{s.video_id}.mp4"))
        k = int(s.meta["time_s"])
        inst = gt["instrument_mask"][k]
        assert (depth[inst] == 0).all() and (depth[~inst] > 0).all()
        assert 1.0 < depth[~inst].min() and depth[~inst].max() < 500.0        # a working distance in mm
        np.testing.assert_array_equal(depth[~inst], gt["depth"][k][~inst])     # lossless at 1/32 mm


def test_skill_targets_equal_the_ground_truth_smoothness(suite: Path) -> None:
    samples = _all("synthetic-skill", suite)
    assert len(samples) == 3 * len(TINY.sources)
    for s in samples:
        rec = VideoRecord.model_validate_json(Path(s.source).with_suffix(".json").read_text())
        assert s.label == rec.smoothness and s.time_s is None and s.video_id.startswith("skill_")
        assert len(decord.VideoReader(s.source)) == round(TINY.skill_seconds * 25)
    assert np.std([s.label for s in samples]) > 0


# ----------------------------------------------------------------------------------- labels are in the pixels
def test_action_labels_are_visible_as_frame_difference_energy(suite: Path) -> None:
    """The fraction of pixels that change by > 30 grey levels between frames separates still clips from moving
    ones (AUC well above chance 0.5)."""
    energy, still = [], []
    for s in _all("synthetic-action", suite):
        frames = decord.VideoReader(s.source).get_batch(list(range(25))).asnumpy().astype(np.float32).mean(-1)
        energy.append((np.abs(np.diff(frames, axis=0)) > 30).mean())
        still.append(s.label == MOTIONS.index("still"))
    energy, still = np.array(energy), np.array(still)
    assert still.sum() >= 3 and (~still).sum() >= 3
    auc = (energy[~still][:, None] > energy[still][None]).mean()
    assert auc >= 0.7, auc


def test_phase_labels_are_visible_as_scene_changes(suite: Path) -> None:
    """Each phase leaves its own marks on the field (synthetic_marks): from one 1-fps instant to the next, the
    colour histogram of the frame's centre changes more across a phase boundary than within a phase (AUC)."""
    jumps, boundary = [], []
    for video in sorted({s.source for s in _all("synthetic-phase", suite)}):
        rec, gt = _gt(video)
        frames = decord.VideoReader(video).get_batch([int(f) for f in gt["gt_frames"]]).asnumpy()
        h, w = frames.shape[1:3]
        centre = frames[:, h // 4:3 * h // 4, w // 4:3 * w // 4] // 32         # 8 levels per channel
        hists = np.stack([np.bincount((c[..., 0] * 64 + c[..., 1] * 8 + c[..., 2]).ravel(), minlength=512)
                          for c in centre.astype(np.int64)]) / centre[0, ..., 0].size
        jumps += list(np.abs(np.diff(hists, axis=0)).sum(1))
        boundary += list(np.diff(gt["phase"][gt["gt_frames"]]) != 0)
    jumps_a, boundary_a = np.array(jumps), np.array(boundary)
    assert boundary_a.sum() >= 5 and (~boundary_a).sum() >= 5
    auc = (jumps_a[boundary_a][:, None] > jumps_a[~boundary_a][None]).mean()
    assert auc >= 0.75, auc


def test_segmentation_labels_are_visible_as_brightness(suite: Path) -> None:
    """The bump is brighter than the tissue around it in (nearly) every positive frame."""
    wins = []
    for s in _all("synthetic-segmentation", suite):
        if s.meta["positive"]:
            grey, mask = _png(s.source).astype(np.float32).mean(-1), _png(s.target_path) > 128
            ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
            wins.append(grey[mask].mean() > grey[ring].mean())
    assert len(wins) >= 5 and np.mean(wins) >= 0.9


# --------------------------------------------------------------------------------------- build and errors
def test_second_build_is_a_noop(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _files(suite)
    def no_derive(*args: object, **kw: object) -> None:
        raise AssertionError("a complete suite was derived again")

    monkeypatch.setattr("orchestrator.synthetic.suite._derive", no_derive)
    assert build_synthetic_suite(suite, config=TINY) == suite
    assert _files(suite) == before and suite_is_complete(suite, TINY)
    assert not suite_is_complete(suite, TINY.model_copy(update={"seed": 5}))


def test_interrupted_build_is_detected_and_redone_identically(suite: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(suite, copy)
    (copy / SUITE_MARKER).unlink()                          # crash before the marker ...
    frame = next((copy / "frames").rglob("*.png"))
    frame.write_bytes(b"half")                              # ... with a half-written file
    with pytest.raises(BenchmarkError, match="incomplete"):
        load_samples(resolve_benchmark("synthetic-depth"), copy, "train")
    assert not suite_is_complete(copy, TINY)
    build_synthetic_suite(copy, config=TINY, workers=1)
    assert suite_is_complete(copy, TINY)
    assert {k: v[0] for k, v in _files(copy).items()} == {k: v[0] for k, v in _files(suite).items()}  # same bytes


def test_missing_root_or_files_raise_clear_errors(suite: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_samples(resolve_benchmark("synthetic-phase"), tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match=r"incomplete.*build_synthetic_suite"):
        load_samples(resolve_benchmark("synthetic-phase"), tmp_path / "empty", "train")
    broken = tmp_path / "broken"
    shutil.copytree(suite, broken, ignore=shutil.ignore_patterns("masks"))
    with pytest.raises(BenchmarkError, match="masks.*does not exist"):
        load_samples(resolve_benchmark("synthetic-segmentation"), broken, "train")
    (broken / INDEX_FILE).write_text("{}")
    with pytest.raises(BenchmarkError, match="index.json is not a valid suite index"):
        load_samples(resolve_benchmark("synthetic-phase"), broken, "train")


def test_bad_configs_raise() -> None:
    with pytest.raises(ValidationError):
        SuiteConfig(videos_per_source=2)          # too few videos for three video-level splits
    with pytest.raises(ValidationError, match="even"):
        SuiteConfig(width=161)
    with pytest.raises(ValidationError, match="whole number"):
        SuiteConfig(clip_seconds=1.5)             # clips are cut at the 1-s keyframes
    with pytest.raises(ValueError, match="conflicts"):
        build_synthetic_suite("/nonexistent", seed=3, config=TINY)
