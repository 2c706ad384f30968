"""Phase-recognition adapters on tiny fixtures in each dataset's real format."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_fixtures import BUILDERS, load_all_splits
from benchmark_fixtures.phase import ATLAS_CLASSES, CHOLEC80_V01_LABELS, PMLR50_SPLITS

from orchestrator.benchmarks.registry import BENCHMARKS, get_benchmark, load_samples
from orchestrator.benchmarks.spec import BenchmarkError, SplitSpec


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("phase_fixtures")
    names = ["Cholec80", "M2CAI16-workflow", "AutoLaparo", "EgoSurgery-Phase", "PitVis", "Atlas-Neurosurgical",
             "OphNet", "PmLR50"]
    return {n: BUILDERS[n](base / n) for n in names}


def _by_video(samples: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in samples:
        out.setdefault(s.video_id, []).append(s)
    return out


def test_cholec80_25fps_to_1fps_and_seeded_val(roots: dict[str, Path]) -> None:
    splits = load_all_splits("Cholec80", roots["Cholec80"])
    vids = {s: set(_by_video(v)) for s, v in splits.items()}
    assert vids["test"] == {f"video{i}" for i in range(41, 81)}
    assert len(vids["val"]) == 8 and len(vids["train"]) == 32
    assert vids["train"] | vids["val"] == {f"video{i:02d}" for i in range(1, 41)}
    every = {x.video_id: x for v in splits.values() for x in v}
    v01 = [x for v in splits.values() for x in v if x.video_id == "video01"]
    assert [(x.time_s, x.meta["frame"]) for x in v01] == [(0.0, 0), (1.0, 25), (2.0, 50)]
    assert [x.label for x in v01] == CHOLEC80_V01_LABELS  # 1 s -> row 25, not the last label of second 1
    assert every["video41"].source.endswith("videos/video41.mp4") and Path(every["video41"].source).is_file()


def test_m2cai16_official_test_and_sidecars_ignored(roots: dict[str, Path]) -> None:
    splits = load_all_splits("M2CAI16-workflow", roots["M2CAI16-workflow"])
    assert {x.video_id for x in splits["test"]} == {f"test_workflow_video_{i:02d}" for i in range(1, 15)}
    assert len({x.video_id for x in splits["val"]}) == 5
    x = splits["test"][0]
    assert [s.label for s in splits["test"] if s.video_id == x.video_id] == [0, 1, 2]  # TrocarPlacement first
    assert BENCHMARKS["M2CAI16-workflow"].classes[0] == "TrocarPlacement"


def test_autolaparo_official_split_and_one_based_phases(roots: dict[str, Path]) -> None:
    splits = load_all_splits("AutoLaparo", roots["AutoLaparo"])
    assert sorted({x.video_id for x in splits["val"]}) == ["11", "12", "13", "14"]
    v01 = [x for x in splits["train"] if x.video_id == "01"]
    assert [x.label for x in v01] == [1, 2, 3, 4]  # file phases 2..5 (1-based) -> ids 1..4
    assert [x.time_s for x in v01] == [0.0, 1.0, 2.0, 3.0]


def test_egosurgery_views_sparse_rows_and_frame_folders(roots: dict[str, Path]) -> None:
    splits = load_all_splits("EgoSurgery-Phase", roots["EgoSurgery-Phase"])
    train = _by_video(splits["train"])
    assert {"01_1", "01_2"} <= set(train) and train["01_2"][0].meta["case_id"] == "01"
    assert [x.label for x in train["01_1"]] == [0, 1, 2, 3]  # names matched case-insensitively
    val = _by_video(splits["val"])
    assert [x.time_s for x in val["05_1"]] == [0.0, 2.0]  # 0.5-fps annotations: 1 s has no label
    test = _by_video(splits["test"])
    assert test["06_1"][0].source.endswith("images/06_1") and test["06_1"][0].meta["frames_fps"] == 30.0
    assert [x.meta["frame_name"] for x in test["06_1"]][:2] == ["06_1_000000", "06_1_000030"]


def test_pitvis_drops_steps_and_keeps_val_apart_from_test(roots: dict[str, Path]) -> None:
    splits = load_all_splits("PitVis", roots["PitVis"])
    assert {x.video_id for x in splits["test"]} == {"02", "06", "12", "13", "24"}
    assert len({x.video_id for x in splits["val"]}) == 4
    v = [x for x in splits["test"] if x.video_id == "02"]
    assert [(x.time_s, x.label) for x in v] == [(0.0, 0), (1.0, 0), (3.0, 1), (5.0, 11)]
    assert BENCHMARKS["PitVis"].num_classes == 12


def test_atlas_reads_classes_from_root(roots: dict[str, Path]) -> None:
    root = roots["Atlas-Neurosurgical"]
    assert get_benchmark("Atlas-Neurosurgical", root).classes == ATLAS_CLASSES
    splits = load_all_splits("Atlas-Neurosurgical", root)
    assert {x.video_id for x in splits["test"]} == {"case101", "case113"}
    assert [x.label for x in splits["test"] if x.video_id == "case113"] == [0, 0, 1, 2]


def test_ophnet_intervals_split_column_and_ids(roots: dict[str, Path]) -> None:
    splits = load_all_splits("OphNet", roots["OphNet"])
    assert {x.video_id for x in splits["val"]} == {"case_0003"}
    train = _by_video(splits["train"])
    assert [(x.time_s, x.label) for x in train["case_0001"]] == [(0.0, 6), (1.0, 6), (2.0, 6), (3.0, 7)]
    assert [(x.time_s, x.label) for x in train["case_0002"]] == [(0.0, 3), (1.0, 3), (2.0, 1)]
    assert [x.label for x in splits["val"]] == [0, 0, 95]
    assert BENCHMARKS["OphNet"].num_classes == 96


def test_pmlr50_pickles(roots: dict[str, Path]) -> None:
    splits = load_all_splits("PmLR50", roots["PmLR50"])
    assert {s: sorted({x.video_id for x in v}) for s, v in splits.items()} == PMLR50_SPLITS
    assert [x.label for x in splits["val"]] == [0, 1, 2, 3, 4, 4]


def test_seeded_split_is_video_level_for_overridden_spec(roots: dict[str, Path]) -> None:
    tecno = BENCHMARKS["Cholec80"].model_copy(update={"splits": SplitSpec(kind="official", ids={
        "train": [f"video{i:02d}" for i in range(1, 41)], "val": [f"video{i}" for i in range(41, 49)],
        "test": [f"video{i}" for i in range(49, 81)]})})
    val = load_samples(tecno, roots["Cholec80"], "val")
    assert {x.video_id for x in val} == {f"video{i}" for i in range(41, 49)}


# ------------------------------------------------------------------------------------------------ errors
def test_malformed_cholec80_line_names_file_and_line(tmp_path: Path) -> None:
    root = BUILDERS["Cholec80"](tmp_path / "c80")
    ann = root / "phase_annotations" / "video45-phase.txt"
    lines = ann.read_text().splitlines()
    lines[3] = "2\tNotAPhase"
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkError) as err:
        load_samples("Cholec80", root, "test")
    assert f"{ann}:4" in str(err.value) and "NotAPhase" in str(err.value)


def test_missing_video_is_named(tmp_path: Path) -> None:
    root = BUILDERS["AutoLaparo"](tmp_path / "al")
    (root / "videos" / "17.mp4").unlink()
    with pytest.raises(BenchmarkError, match="17"):
        load_samples("AutoLaparo", root, "test")


def test_malformed_ophnet_and_pitvis_rows(tmp_path: Path) -> None:
    root = BUILDERS["OphNet"](tmp_path / "oph")
    csv = root / "annotation" / "OphNet2024_loca_challenge_phase.csv"
    csv.write_text(csv.read_text() + "case_0009,0,x,train,0,1\n")
    with pytest.raises(BenchmarkError) as err:
        load_samples("OphNet", root, "train")
    assert f"{csv}:9" in str(err.value) and "'end'" in str(err.value)
    root = BUILDERS["PitVis"](tmp_path / "pit")
    ann = root / "annotations_03.csv"
    ann.write_text(ann.read_text() + "3,6,99,0,0\n")
    with pytest.raises(BenchmarkError, match=f"{ann}:8.*int_step"):
        load_samples("PitVis", root, "train")


def test_pmlr50_refuses_unsafe_or_bad_pickles(tmp_path: Path) -> None:
    import pickle

    root = BUILDERS["PmLR50"](tmp_path / "pm")
    path = root / "labels" / "val" / "1fpsval.pickle"
    path.write_bytes(pickle.dumps({"P04": [{"frame_id": 0, "phase_gt": 9}]}))
    with pytest.raises(BenchmarkError, match="phase_gt 9"):
        load_samples("PmLR50", root, "val")
    path.write_bytes(pickle.dumps({"P04": [Path("x")]}))
    with pytest.raises(BenchmarkError, match="refusing to unpickle"):
        load_samples("PmLR50", root, "val")
