"""The official CholecT50 triplet -> (instrument, verb, target) map shipped as package data: its rows against the
published sources, its use as the default of the metric dispatcher, the CLI override, the package-data declaration,
and a hand-made prediction whose component AP is wrong under any synthetic stand-in map."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import numpy as np
import pytest

from orchestrator.benchmarks.adapters.triplet import triplet_component_map
from orchestrator.benchmarks.metrics import score_arrays
from orchestrator.benchmarks.metrics_triplet import (
    CHOLECT50_MAPS_FILE,
    cholect50_triplet_maps,
    read_triplet_maps,
    triplet_metrics,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "orchestrator" / "benchmarks"
TABLE = PACKAGE / "data" / CHOLECT50_MAPS_FILE


def raw_rows() -> np.ndarray:
    """The packaged file's six columns IVT, I, V, T, IV, IT, read without the project's parser."""
    return np.loadtxt(TABLE, delimiter=",", comments="#", dtype=np.int64)


def test_packaged_table_has_100_rows_with_ids_in_range() -> None:
    rows = raw_rows()
    assert rows.shape == (100, 6)
    assert rows[:, 0].tolist() == list(range(100))  # IVT ids 0..99, in order, each once
    for col, n in ((1, 6), (2, 10), (3, 15)):  # 6 instruments, 10 verbs, 15 targets, every one used
        assert sorted(set(rows[:, col].tolist())) == list(range(n))
    # the pair columns are the instrument-major pair ids of ivtmetrics' maps.txt
    assert (rows[:, 4] == 10 * rows[:, 1] + rows[:, 2]).all() and (rows[:, 5] == 15 * rows[:, 1] + rows[:, 3]).all()
    assert len({tuple(r) for r in rows[:, 1:4].tolist()}) == 100  # no two triplets share (I, V, T)
    assert np.array_equal(cholect50_triplet_maps(), rows[:, 1:4])


def test_rows_checked_against_the_published_sources() -> None:
    maps = cholect50_triplet_maps()
    # CAMMA-public/cholect50 docs/README-Format.md: "1,0,2,0,2,0" = triplet 1 -> <grasper, dissect, gallbladder>
    assert maps[1].tolist() == [0, 2, 0]
    # rows of CAMMA-public/ivtmetrics ivtmetrics/maps.txt @a89cf659 (read there, one per instrument + the nulls)
    assert maps[0].tolist() == [0, 2, 1]     # grasper, dissect, cystic_plate
    assert maps[22].tolist() == [1, 3, 7]    # bipolar, coagulate, abdominal_wall_cavity
    assert maps[46].tolist() == [2, 3, 5]    # hook, coagulate, blood_vessel
    assert maps[68].tolist() == [3, 5, 3]    # scissors, cut, cystic_artery
    assert maps[77].tolist() == [4, 4, 5]    # clipper, clip, blood_vessel
    assert maps[82].tolist() == [5, 6, 6]    # irrigator, aspirate, fluid
    assert maps[94:].tolist() == [[k, 9, 14] for k in range(6)]  # <instrument k, null_verb, null_target>


def test_every_call_returns_a_fresh_copy() -> None:
    maps = cholect50_triplet_maps()
    maps[:] = 0
    assert cholect50_triplet_maps()[1].tolist() == [0, 2, 0]


def test_pyproject_ships_the_table_as_package_data() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["orchestrator.benchmarks"]
    rel = TABLE.relative_to(PACKAGE).as_posix()
    assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), (rel, patterns)
    assert "orchestrator*" in cfg["tool"]["setuptools"]["packages"]["find"]["include"]


# The old CholecT50-shaped stand-in (triplet j < 94 -> (j % 6, j % 9, j % 14)) that the dispatcher used to fall back on.
def stand_in_map() -> np.ndarray:
    j = np.arange(94)
    null = np.stack([np.arange(6), np.full(6, 9), np.full(6, 14)], axis=1)
    return np.concatenate([np.stack([j % 6, j % 9, j % 14], axis=1), null])


# One video, 3 frames. Real map: triplet 0 = (0 grasper, 2, 1), 8 = (0 grasper, 0, 12), 22 = (1 bipolar, 3, 7).
#   frame 0: triplet 22 present, score s22 = .9;  frame 1: triplet 0 present, s0 = .8;  frame 2: nothing, s8 = .85
# Real I:  grasper = max over triplets 0-21, 94 -> scores [0, .8, .85], labels [0, 1, 0] -> AP 1/2 (ranked 2nd)
#          bipolar = 22-45, 95 -> [.9, 0, 0] / [1, 0, 0] -> AP 1;  others have no positive -> NaN
#          ap_i = (1/2 + 1)/2 = 3/4
# Stand-in: 8 -> instrument 2 (no positive, NaN); 0 -> 0 with [0, .8, 0] -> 1; 22 -> 4 with [.9, 0, 0] -> 1: ap_i 1
# IVT does not depend on the map: triplet 22 [.9, 0, 0] -> 1, triplet 0 [0, .8, 0] -> 1, ap_ivt = 1.
VIDEO = np.array(["VID92"] * 3)
TARGET = np.zeros((3, 100), dtype=np.int64)
TARGET[0, 22] = TARGET[1, 0] = 1
SCORE = np.zeros((3, 100))
SCORE[0, 22], SCORE[1, 0], SCORE[2, 8] = 0.9, 0.8, 0.85


def test_default_map_gives_the_hand_computed_component_ap() -> None:
    out = score_arrays("triplet", {"video": VIDEO, "target": TARGET, "score": SCORE})  # no 'maps': the default
    assert out["ap_i"] == pytest.approx(3 / 4)
    assert out["ap_ivt"] == pytest.approx(1.0)
    assert triplet_metrics(VIDEO, TARGET, SCORE, stand_in_map())["ap_i"] == pytest.approx(1.0)  # the test discriminates


def test_maps_in_the_arrays_override_the_default() -> None:
    out = score_arrays("triplet", {"video": VIDEO, "target": TARGET, "score": SCORE, "maps": stand_in_map()})
    assert out["ap_i"] == pytest.approx(1.0)


def test_read_triplet_maps_text_errors_name_file_and_line(tmp_path: Path) -> None:
    rows = TABLE.read_text().splitlines()
    path = tmp_path / "label_mapping.txt"
    path.write_text("\n".join(rows))
    assert np.array_equal(read_triplet_maps(path, 100, (6, 10, 15)), cholect50_triplet_maps())
    first = next(i for i, r in enumerate(rows) if r and not r.startswith("#"))
    path.write_text("IVT\tI\tV\tT\tIV\tIT\n" + "\n".join(r.replace(",", "\t") for r in rows[first:]))
    assert np.array_equal(read_triplet_maps(path), cholect50_triplet_maps())  # header line, tab-separated
    bad = rows.copy()
    bad[first + 3] = "3,0,0,15,0,15"  # target 15 out of range
    path.write_text("\n".join(bad))
    with pytest.raises(ValueError, match=f"{path}:{first + 4}: fields 'I,V,T'"):
        read_triplet_maps(path, 100, (6, 10, 15))
    path.write_text("\n".join(rows[:first] + rows[first + 1:]))  # triplet 0 missing
    with pytest.raises(ValueError, match=r"no row for triplet id\(s\) \[0\]"):
        read_triplet_maps(path, 100)
    path.write_text("\n".join(rows + [rows[-1]]))  # triplet 99 twice
    with pytest.raises(ValueError, match="duplicate"):
        read_triplet_maps(path)


def test_the_dataset_adapter_reads_the_same_format(tmp_path: Path) -> None:
    (tmp_path / "label_mapping.txt").write_text(TABLE.read_text())
    assert np.array_equal(triplet_component_map(tmp_path), cholect50_triplet_maps())


def test_real_cholect50_sweeps_score_with_the_official_map() -> None:
    from orchestrator.probe.trial import triplet_maps  # imports Ray + torch: only here

    assert np.array_equal(triplet_maps("CholecT50"), cholect50_triplet_maps())
    assert triplet_maps("synthetic-triplet").shape[0] != 100  # the synthetic suite keeps its own map
