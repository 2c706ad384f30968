"""The benchmark registry: exactly the 19 benchmarks, adapters registered, metric sets, look-up errors,
fold enumeration, generic specs, and load_samples' root/split errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_fixtures import BUILDERS

from orchestrator.benchmarks.registry import (
    BENCHMARKS,
    GENERIC_TEMPLATES,
    get_benchmark,
    list_benchmarks,
    list_folds,
    load_samples,
    make_generic_spec,
    with_fold,
)
from orchestrator.benchmarks.spec import BenchmarkError, SplitSpec, get_adapter

EXPECTED = [
    "Cholec80", "M2CAI16-workflow", "AutoLaparo", "EgoSurgery-Phase", "PitVis", "Atlas-Neurosurgical", "OphNet",
    "PmLR50", "SurgicalActions160", "AVOS", "PolypDiag", "CholecT50", "JIGSAWS", "Kvasir-SEG", "CVC-ClinicDB",
    "CVC-300", "CVC-ColonDB", "ETIS-LaribPolypDB", "C3VD",
]
PRIMARY = {"phase": "f1", "action": "f1", "triplet": "ap_ivt", "skill": "spearman", "segmentation": "dice",
           "depth": "rmse"}


def test_registry_has_exactly_the_19_benchmarks() -> None:
    assert sorted(BENCHMARKS) == sorted(EXPECTED)
    assert len(BENCHMARKS) == 19
    assert sorted(BUILDERS) == sorted(EXPECTED)  # one fixture per registry entry


@pytest.mark.parametrize("name", EXPECTED)
def test_every_spec_is_consistent(name: str) -> None:
    spec = BENCHMARKS[name]
    assert spec.name == name
    assert callable(get_adapter(spec.adapter))
    assert spec.primary_metric == PRIMARY[spec.task]
    assert spec.notes and spec.splits.note
    if spec.task in ("phase", "triplet"):
        assert spec.sample_fps == 1.0
    if spec.splits.kind == "folds":
        assert list_folds(spec)


def test_task_counts_and_relaxed_boundary() -> None:
    assert len(list_benchmarks("phase")) == 8
    assert len(list_benchmarks("segmentation")) == 5
    assert {n for n, s in BENCHMARKS.items() if s.relaxed_boundary} == {"Cholec80", "M2CAI16-workflow"}
    assert BENCHMARKS["Cholec80"].annotation_fps == 25.0
    assert BENCHMARKS["CholecT50"].num_classes == 100


def test_get_benchmark_lookup_and_error() -> None:
    assert get_benchmark("cholec80") is BENCHMARKS["Cholec80"]
    with pytest.raises(BenchmarkError) as err:
        get_benchmark("Cholec81")
    assert "Cholec81" in str(err.value) and "JIGSAWS" in str(err.value)


def test_folds_enumeration_and_with_fold() -> None:
    assert list_folds("JIGSAWS") == {"LOSO": [0, 1, 2, 3, 4], "LOUO": [5, 6, 7, 8, 9, 10, 11, 12]}
    assert list_folds("CholecT50") == {"crossval": [1, 2, 3, 4, 5]}
    assert list_folds("SurgicalActions160") == {"stratified": [0, 1, 2, 3, 4]}
    assert list_folds("Cholec80") == {}
    assert with_fold("JIGSAWS", 7).splits.fold == 7
    assert BENCHMARKS["JIGSAWS"].splits.fold == 0  # the registry entry is not mutated
    with pytest.raises(BenchmarkError):
        with_fold("CholecT50", 0)


def test_load_samples_missing_root_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "Cholec80"
    with pytest.raises(BenchmarkError) as err:
        load_samples("Cholec80", missing, "train")
    assert str(missing) in str(err.value)


def test_load_samples_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="unknown split"):
        load_samples("Cholec80", tmp_path, "validation")


def test_empty_root_gives_one_clear_error_for_every_benchmark(tmp_path: Path) -> None:
    for name in EXPECTED:
        with pytest.raises(BenchmarkError) as err:
            load_samples(name, tmp_path, "test")
        assert str(tmp_path) in str(err.value), (name, str(err.value))


def test_make_generic_spec_and_templates() -> None:
    spec = make_generic_spec("phase_csv", "MyHospital-Phase", ["a", "b"], annotation_fps=25.0)
    assert (spec.task, spec.adapter, spec.primary_metric, spec.num_classes) == ("phase", "generic_phase_csv", "f1", 2)
    assert spec.splits.kind == "seeded_val_from_train"
    official = make_generic_spec("image_depth", "d", splits=SplitSpec(kind="official"))
    assert official.splits.kind == "official" and official.primary_metric == "rmse"
    assert set(GENERIC_TEMPLATES) == {"phase_csv", "clip_csv", "image_mask", "image_depth"}
    for template in GENERIC_TEMPLATES.values():
        assert callable(get_adapter(template.adapter))
    with pytest.raises(BenchmarkError):
        make_generic_spec("video_qa", "x")  # type: ignore[arg-type]
