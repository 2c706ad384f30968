"""Action, triplet, skill, dense and generic adapters on tiny fixtures in each dataset's real format."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from benchmark_fixtures import BUILDERS, generic, load_all_splits
from benchmark_fixtures.other import AVOS_TEST, C3VD_DEPTH, CHOLECT50_FRAMES, fixture_triplet_map

from orchestrator.benchmarks.adapters.dense import c3vd_depth_to_mm, read_depth_mm
from orchestrator.benchmarks.adapters.triplet import triplet_component_map, triplet_names
from orchestrator.benchmarks.registry import (
    BENCHMARKS,
    C3VD_TEST_SEQUENCES,
    CHOLECT50_FOLDS,
    list_folds,
    load_samples,
    make_generic_spec,
    with_fold,
)
from orchestrator.benchmarks.spec import BenchmarkError

NAMES = ["SurgicalActions160", "AVOS", "PolypDiag", "CholecT50", "JIGSAWS", "Kvasir-SEG", "CVC-ClinicDB", "CVC-300",
         "CVC-ColonDB", "ETIS-LaribPolypDB", "C3VD"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("other_fixtures")
    out = {n: BUILDERS[n](base / n) for n in NAMES if BUILDERS[n] is not BUILDERS["Kvasir-SEG"]}
    pranet = BUILDERS["Kvasir-SEG"](base / "PraNet")
    out.update({n: pranet for n in NAMES if BENCHMARKS[n].adapter == "pranet_polyp"})
    return out


# -------------------------------------------------------------------------------------------------- action
def test_sa160_stratified_folds(roots: dict[str, Path]) -> None:
    root = roots["SurgicalActions160"]
    tests = []
    for fold in list_folds("SurgicalActions160")["stratified"]:
        splits = load_all_splits(with_fold("SurgicalActions160", fold), root)
        assert Counter(x.label for x in splits["test"]) == {c: 2 for c in range(16)}
        assert len(splits["train"]) == 96 and len(splits["val"]) == 32
        tests.append({x.video_id for x in splits["test"]})
    assert set().union(*tests) == {f"{c:02d}_{k:02d}" for c in range(1, 17) for k in range(1, 11)}
    assert sum(len(t) for t in tests) == 160  # every clip is tested exactly once
    x = load_samples("SurgicalActions160", root, "test")[0]
    assert x.time_s is None and x.label == int(x.video_id[:2]) - 1


def test_avos_segments_labels_and_video_split(roots: dict[str, Path]) -> None:
    splits = load_all_splits("AVOS", roots["AVOS"])
    assert {x.video_id for x in splits["test"]} == set(AVOS_TEST)
    assert len({x.video_id for x in splits["val"]}) == 1
    seg = [x for x in splits["test"] if x.video_id == "vidT1"]
    assert [x.label for x in seg] == [0, 2, 3]  # Cutting, suturing, background; none/abstain dropped
    assert (seg[1].meta["start_s"], seg[1].meta["end_s"], seg[1].meta["start_frame"]) == (2.0, 3.0, 60.0)


def test_avos_unknown_label_names_line(tmp_path: Path) -> None:
    root = BUILDERS["AVOS"](tmp_path / "avos")
    csv = root / "open_surgery_temporal_annotations_Jan16.csv"
    csv.write_text(csv.read_text() + "vidT2,4,5,120,150,stapling\n")
    with pytest.raises(BenchmarkError, match=f"{csv}:37.*stapling"):
        load_samples("AVOS", root, "test")


def test_polypdiag_val_file_is_test_and_val_is_stratified(roots: dict[str, Path]) -> None:
    splits = load_all_splits("PolypDiag", roots["PolypDiag"])
    assert {x.video_id for x in splits["test"]} == {"00011", "00012", "00013", "00014"}
    assert sorted(x.label for x in splits["val"]) == [0, 1]
    assert all(Path(x.source).is_file() for v in splits.values() for x in v)


# ------------------------------------------------------------------------------------------------- triplet
def test_cholect50_null_triplets_and_official_folds(roots: dict[str, Path]) -> None:
    root = roots["CholecT50"]
    splits = load_all_splits("CholecT50", root)
    assert {x.video_id for x in splits["test"]} == set(CHOLECT50_FOLDS["fold1"])
    assert {x.video_id for x in splits["val"]} == set(CHOLECT50_FOLDS["fold5"][-5:])
    frames = [x for x in splits["test"] if x.video_id == "VID79"]
    assert [x.label for x in frames] == [sorted(k for k in ks if k >= 0) for ks in CHOLECT50_FRAMES.values()]
    assert frames[1].label == [96] and frames[1].meta["verbs"] == [9] and frames[1].meta["targets"] == [14]
    assert frames[2].label == [] and frames[3].label == []  # empty frame and a -1 (null) instance
    assert frames[0].meta["instruments"] == sorted({1 % 6, 17 % 6}) and frames[0].time_s == 0.0
    assert frames[0].source.endswith("videos/VID79") and frames[0].meta["frame_file"] == "000000.png"
    f5 = load_samples(with_fold("CholecT50", 5), root, "val")
    assert {x.video_id for x in f5} == set(CHOLECT50_FOLDS["fold4"][-5:])


def test_cholect50_component_map_from_dataset_files(tmp_path: Path, roots: dict[str, Path]) -> None:
    table = triplet_component_map(roots["CholecT50"])
    assert table.shape == (100, 3) and table.dtype == np.int64
    assert np.array_equal(table, fixture_triplet_map())
    assert table[94:].tolist() == [[k, 9, 14] for k in range(6)]
    assert triplet_names(roots["CholecT50"])[96] == "hook,null_verb,null_target"
    root = BUILDERS["CholecT50"](tmp_path / "t50")
    (root / "label_mapping.txt").unlink()  # fallback: categories of the label JSON
    assert np.array_equal(triplet_component_map(root), table)


def test_cholect50_malformed_instance_and_mapping(tmp_path: Path) -> None:
    root = BUILDERS["CholecT50"](tmp_path / "t50")
    label = root / "labels" / "VID79.json"
    label.write_text(label.read_text().replace('"1": [[96', '"1": [[96, 1'))
    with pytest.raises(BenchmarkError, match=f"{label}: frame 1 instance 0: expected a 15-item"):
        load_samples("CholecT50", root, "test")
    mapping = root / "label_mapping.txt"
    lines = mapping.read_text().splitlines()
    lines[5] = "4,0,2,x,2,0"
    mapping.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkError, match=f"{mapping}:6"):
        triplet_component_map(root)


# --------------------------------------------------------------------------------------------------- skill
def test_jigsaws_meta_columns_and_grs(roots: dict[str, Path]) -> None:
    samples = {x.sample_id: x for s in ("train", "val", "test") for x in load_samples("JIGSAWS", roots["JIGSAWS"], s)}
    b1 = samples["Suturing_B001"]
    assert b1.label == 30.0 and b1.meta["skill_level"] == "E" and b1.meta["grs_items"]["flow_of_operation"] == 5
    c2 = samples["Knot_Tying_C002"]
    assert c2.label == 15.0 and c2.meta["task"] == "Knot_Tying" and c2.meta["subject"] == "C"
    assert c2.meta["super_trial"] == 2 and c2.meta["capture2"] is None
    assert samples["Knot_Tying_B002"].meta["capture2"].endswith("Knot_Tying_B002_capture2.avi")
    assert len(samples) == 49


def test_jigsaws_loso_and_louo_folds(roots: dict[str, Path]) -> None:
    root = roots["JIGSAWS"]
    folds = list_folds("JIGSAWS")
    for fold in folds["LOSO"]:
        s = load_all_splits(with_fold("JIGSAWS", fold), root)
        assert {x.meta["super_trial"] for x in s["test"]} == {fold + 1}
        assert len({x.meta["super_trial"] for x in s["val"]}) == 1
        assert fold + 1 not in {x.meta["super_trial"] for x in s["train"] + s["val"]}
    for fold, subject in zip(folds["LOUO"], "BCDEFGHI"):
        s = load_all_splits(with_fold("JIGSAWS", fold), root)
        assert {x.meta["subject"] for x in s["test"]} == {subject}
        assert len({x.meta["subject"] for x in s["val"]}) == 1
        assert subject not in {x.meta["subject"] for x in s["train"] + s["val"]}


def test_jigsaws_malformed_meta_line(tmp_path: Path) -> None:
    root = BUILDERS["JIGSAWS"](tmp_path / "jig")
    meta = root / "Knot_Tying" / "meta_file_Knot_Tying.txt"
    meta.write_text(meta.read_text() + "Knot_Tying_D004\t\tN\t15\t2\t3\n")
    with pytest.raises(BenchmarkError, match=f"{meta}:10: expected 9 non-empty fields"):
        load_samples("JIGSAWS", root, "train")


# --------------------------------------------------------------------------------------------------- dense
@pytest.mark.parametrize("name,folder", [("Kvasir-SEG", "Kvasir"), ("CVC-ClinicDB", "CVC-ClinicDB"),
                                         ("CVC-300", "CVC-300"), ("CVC-ColonDB", "CVC-ColonDB"),
                                         ("ETIS-LaribPolypDB", "ETIS-LaribPolypDB")])
def test_pranet_layout(roots: dict[str, Path], name: str, folder: str) -> None:
    splits = load_all_splits(name, roots[name])
    assert all(f"TestDataset/{folder}/images" in x.source for x in splits["test"])
    assert all(x.target_path and "/masks/" in x.target_path for v in splits.values() for x in v)
    assert len(splits["train"]) == 8 and len(splits["val"]) == 2


def test_pranet_missing_mask_is_named(tmp_path: Path) -> None:
    root = BUILDERS["CVC-300"](tmp_path / "pranet")
    (root / "TestDataset" / "CVC-300" / "masks" / "CVC-300_1.png").unlink()
    with pytest.raises(BenchmarkError, match="CVC-300_1"):
        load_samples("CVC-300", root, "test")


def test_c3vd_sequences_and_uint16_to_mm(roots: dict[str, Path]) -> None:
    splits = load_all_splits("C3VD", roots["C3VD"])
    assert {x.video_id for x in splits["test"]} == set(C3VD_TEST_SEQUENCES)
    x = splits["train"][0] if splits["train"][0].video_id != "desc_t4_a" else splits["train"][-1]
    depth = read_depth_mm(x.target_path, x.meta["depth_scale_mm"])
    expected = C3VD_DEPTH.astype(np.float64) / 65535.0 * 100.0
    assert depth.dtype == np.float32 and np.allclose(depth, expected, atol=1e-4)
    assert depth[0, 1] == pytest.approx(100.0) and depth[0, 0] == 0.0 and depth[0, 2] == pytest.approx(50.0008, 1e-5)
    assert np.allclose(c3vd_depth_to_mm(C3VD_DEPTH), expected, atol=1e-4)
    with pytest.raises(BenchmarkError):
        c3vd_depth_to_mm(C3VD_DEPTH.astype(np.float32))
    v2 = [s for v in splits.values() for s in v if s.video_id == "desc_t4_a"]
    assert v2 and v2[0].source.endswith("desc_t4_a/rgb/0000.png")


def test_c3vd_missing_test_sequence(tmp_path: Path) -> None:
    root = BUILDERS["C3VD"](tmp_path / "c3vd")
    import shutil

    shutil.rmtree(root / "trans_t3_a")
    with pytest.raises(BenchmarkError, match="trans_t3_a"):
        load_samples("C3VD", root, "train")


# ------------------------------------------------------------------------------------------------- generic
def test_generic_clip_csv(tmp_path: Path) -> None:
    root = generic.build_clip_csv(tmp_path / "clips")
    spec = make_generic_spec("clip_csv", "MyClips", generic.CLIP_CLASSES)
    splits = load_all_splits(spec, root)
    assert {x.video_id for x in splits["test"]} == {"v9"}
    assert [(x.label, x.meta["start_s"]) for x in splits["test"]] == [(0, 0.0), (2, 1.5)]
    bad = root / "splits" / "test.csv"
    bad.write_text(bad.read_text() + "clips/v9.mp4,jumping,v9,0,1\n")
    with pytest.raises(BenchmarkError, match=f"{bad}:4.*jumping"):
        load_samples(spec, root, "test")


def test_generic_image_mask_and_depth(tmp_path: Path) -> None:
    root = generic.build_image_mask(tmp_path / "seg")
    splits = load_all_splits(make_generic_spec("image_mask", "MySeg", ["lesion"]), root)
    assert len(splits["train"]) + len(splits["val"]) == 6 and len(splits["test"]) == 2
    root = generic.build_image_depth(tmp_path / "depth")
    splits = load_all_splits(make_generic_spec("image_depth", "MyDepth"), root)
    assert {x.video_id for x in splits["test"]} == {"seqT"} and len({x.video_id for x in splits["val"]}) == 1
    x = splits["test"][0]
    assert x.meta == {"depth_scale_mm": 0.01, "depth_max_mm": 200.0}
    assert np.allclose(read_depth_mm(x.target_path, x.meta["depth_scale_mm"]), 10.0)
