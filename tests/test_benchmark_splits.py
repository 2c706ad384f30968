"""Split logic and time subsampling (orchestrator.benchmarks.splits)."""
from __future__ import annotations

import pytest

from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, SplitSpec
from orchestrator.benchmarks.splits import (
    cholect50_fold_groups,
    fold_groups,
    fold_index,
    intervals_at_sample_fps,
    labels_at_sample_fps,
    leave_group_out,
    scheme_fold,
    seeded_val_split,
    select_split,
    split_groups,
    stratified_folds,
)

VIDS = [f"video{i:02d}" for i in range(1, 41)]


def _spec(**split: object) -> BenchmarkSpec:
    return BenchmarkSpec(name="t", task="phase", adapter="x", classes=["a"], primary_metric="f1", metrics=["f1"],
                         splits=SplitSpec(**split))


def test_seeded_val_split_is_deterministic_video_level_and_order_free() -> None:
    train, val = seeded_val_split(VIDS, 0.2, seed=0)
    assert len(val) == 8 and len(train) == 32 and not set(train) & set(val)
    assert sorted(train + val) == VIDS
    assert seeded_val_split(list(reversed(VIDS)), 0.2, seed=0) == (train, val)
    assert seeded_val_split(VIDS, 0.2, seed=1)[1] != val
    # stable: dropping a non-val video does not move the others
    assert seeded_val_split([v for v in VIDS if v != train[0]], 0.2, seed=0)[1] == val


def test_seeded_val_split_stratified_and_minimum() -> None:
    strata = {v: i % 2 for i, v in enumerate(VIDS)}
    _, val = seeded_val_split(VIDS, 0.2, 0, strata)
    assert sorted(strata[v] for v in val) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len(seeded_val_split(["a", "b"], 0.01, 0)[1]) == 1
    with pytest.raises(BenchmarkError):
        seeded_val_split(["only"], 0.2, 0)


def test_split_kinds() -> None:
    official = {"train": VIDS[:30], "test": VIDS[30:]}
    groups = split_groups(_spec(kind="seeded_val_from_train"), official)
    assert groups["test"] == VIDS[30:] and len(groups["val"]) == 6 and not set(groups["val"]) & set(groups["test"])
    with pytest.raises(BenchmarkError, match="seeded_val_from_train"):
        split_groups(_spec(kind="official"), official)
    with pytest.raises(BenchmarkError, match="share videos"):
        split_groups(_spec(kind="official"), {"train": VIDS[:3], "val": VIDS[3:5], "test": VIDS[4:6]})
    with pytest.raises(BenchmarkError, match="unknown split"):
        select_split(_spec(), "dev", official)


def test_stratified_and_cyclic_folds() -> None:
    labels = {f"{c:02d}_{k:02d}": c for c in range(16) for k in range(10)}
    folds = stratified_folds(labels, 5, seed=0)
    assert [len(f) for f in folds] == [32] * 5
    assert all(sorted(labels[v] for v in f) == sorted(list(range(16)) * 2) for f in folds)
    assert stratified_folds(labels, 5, seed=0) == folds
    g = fold_groups(folds, 4)
    assert g["test"] == folds[4] and g["val"] == folds[0] and len(g["train"]) == 96


def test_cholect50_official_crossval_val_is_last_five() -> None:
    folds = {f"fold{k}": [f"V{k}{j}" for j in range(10)] for k in range(1, 6)}
    g = cholect50_fold_groups(folds, 1)
    assert g["test"] == folds["fold1"] and g["val"] == folds["fold5"][-5:] and len(g["train"]) == 35
    assert cholect50_fold_groups(folds, 5)["val"] == folds["fold4"][-5:]


def test_scheme_folds_and_leave_group_out() -> None:
    groups = {"LOSO": ["1", "2", "3"], "LOUO": ["B", "C"]}
    assert scheme_fold(groups, 0) == ("LOSO", "1") and scheme_fold(groups, 4) == ("LOUO", "C")
    assert fold_index(groups, "LOUO", "B") == 3
    members = {f"{s}{r}": s for s in "BCD" for r in range(3)}
    out = leave_group_out(members, "B", ["B", "C", "D"], seed=0, salt="LOUO")
    assert out["test"] == ["B0", "B1", "B2"] and len(out["val"]) == 3 and len(out["train"]) == 3
    assert out == leave_group_out(members, "B", ["B", "C", "D"], seed=0, salt="LOUO")


def test_labels_at_sample_fps_25_to_1() -> None:
    frames = [(f, 0 if f <= 25 else 1) for f in range(75)]  # change between frame 25 and 26
    pts = labels_at_sample_fps(frames, 25.0)
    assert [(t, lab, f) for t, lab, f in pts] == [(0.0, 0, 0), (1.0, 0, 25), (2.0, 1, 50)]


def test_labels_at_sample_fps_sparse_rows() -> None:
    # rows every 2 s at 1 fps: instants with no annotation in the previous second are skipped
    assert [t for t, _, _ in labels_at_sample_fps([(0, 1), (2, 2), (4, 3)], 1.0)] == [0.0, 2.0, 4.0]
    # 30-fps rows every 15 frames: every second is covered by an exact row
    assert [lab for _, lab, _ in labels_at_sample_fps([(f, f) for f in range(0, 100, 15)], 30.0)] == [0, 30, 60, 90]
    assert labels_at_sample_fps([], 25.0) == []


def test_intervals_at_sample_fps() -> None:
    pts = intervals_at_sample_fps([(0.0, 1.2, "a"), (2.0, 3.0, "b"), (2.5, 4.0, "c")])
    assert pts == [(0.0, "a"), (1.0, "a"), (2.0, "b"), (3.0, "c")]
