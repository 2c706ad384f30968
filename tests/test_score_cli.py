"""Round trips through ``python experiments/score.py`` in a subprocess (one per task): the JSON on stdout must
equal the library function's result, and bad inputs must exit with code 2 and a message naming the file and key.

Further error cases call the script's ``main()`` in-process: a subprocess that imports scikit-learn costs seconds
on a loaded machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.benchmarks.metrics_clip import action_metrics, skill_metrics
from orchestrator.benchmarks.metrics_dense import depth_metrics, segmentation_metrics
from orchestrator.benchmarks.metrics_phase import phase_metrics, union_phase_metrics
from orchestrator.benchmarks.metrics_triplet import cholect50_triplet_maps, triplet_metrics

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "score.py"


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd outside the repo: the script must find the `orchestrator` package on its own
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def score(tmp_path: Path, task: str, arrays: dict[str, np.ndarray], *extra: str) -> dict[str, Any]:
    path = tmp_path / f"{task}.npz"
    np.savez(path, **arrays)
    proc = run_cli(tmp_path, "--task", task, "--input", str(path), *extra)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    return json.loads(proc.stdout)


def load_script_main() -> Any:
    from conftest import load_script_main as load

    return load(SCRIPT, "score_cli")


@pytest.fixture(scope="module")
def cli_main() -> Any:
    return load_script_main()


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def phase_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    video = np.repeat(np.array(["video41", "video42", "video43"]), 60)
    target = np.sort(rng.integers(0, 7, (3, 60)), axis=1).ravel()
    noise = rng.integers(-2, 3, target.size) * (rng.random(target.size) < 0.3)
    return {"video": video, "target": target, "pred": np.clip(target + noise, 0, 6)}


def test_phase_round_trip(tmp_path: Path, phase_arrays: dict[str, np.ndarray]) -> None:
    a = phase_arrays
    out = score(tmp_path, "phase", a, "--num-classes", "7")
    assert list(out) == ["accuracy", "precision", "recall", "jaccard", "f1", "edit", "f1_union", "jaccard_union"]
    expected = phase_metrics(a["video"], a["target"], a["pred"], 7) | union_phase_metrics(
        a["video"], a["target"], a["pred"], 7)
    assert out == pytest.approx(expected)


def test_phase_relaxed_round_trip(tmp_path: Path, phase_arrays: dict[str, np.ndarray]) -> None:
    # --relaxed adds <name>_relaxed beside the unrelaxed metrics, which keep their plain names
    a = phase_arrays
    out = score(tmp_path, "phase", a, "--relaxed", "--fps", "0.5")
    relaxed = phase_metrics(a["video"], a["target"], a["pred"], relaxed=True, fps=0.5, protocol="cholec80")
    unrelaxed = phase_metrics(a["video"], a["target"], a["pred"]) | union_phase_metrics(a["video"], a["target"],
                                                                                         a["pred"])
    assert {k: out[k] for k in unrelaxed} == pytest.approx(unrelaxed)
    names = ["accuracy", "precision", "recall", "jaccard", "f1"]
    assert [k for k in out if k not in unrelaxed] == [f"{k}_relaxed" for k in names]
    assert {k: out[f"{k}_relaxed"] for k in names} == pytest.approx({k: relaxed[k] for k in names})
    assert out["f1_relaxed"] != pytest.approx(out["f1"])


def test_action_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    target = rng.integers(0, 16, 64)
    pred = np.where(rng.random(64) < 0.5, target, rng.integers(0, 16, 64))
    out = score(tmp_path, "action", {"video": np.arange(64).astype(str), "target": target, "pred": pred})
    assert out == pytest.approx(action_metrics(target, pred))


def test_triplet_round_trip_with_maps_file(tmp_path: Path, rng: np.random.Generator) -> None:
    video = np.repeat(np.array(["VID92", "VID96"]), 20)
    target = (rng.random((40, 100)) < 0.1).astype(np.uint8)
    prob = np.clip(target * 0.5 + rng.random((40, 100)) * 0.6, 0, 1)
    maps = cholect50_triplet_maps()[rng.permutation(100)]  # any valid map, passed explicitly
    np.savez(tmp_path / "maps.npz", maps=maps)
    out = score(tmp_path, "triplet", {"video": video, "target": target, "score": prob},
                "--maps", str(tmp_path / "maps.npz"), "--ignore-null")
    assert list(out) == ["ap_i", "ap_v", "ap_t", "ap_iv", "ap_it", "ap_ivt"]
    assert out == pytest.approx(triplet_metrics(video, target, prob, maps, ignore_null=True))


# Hand-made: 1 video, 3 frames; official map: 0 = (grasper, dissect, cystic_plate), 8 = (grasper, grasp, gut),
# 22 = (bipolar, coagulate, abdominal_wall_cavity). Frame 0: triplet 22 (score .9); frame 1: triplet 0 (.8);
# frame 2: nothing, triplet 8 scored .85. grasper: scores [0, .8, .85] labels [0, 1, 0] -> AP 1/2;
# bipolar [.9, 0, 0] / [1, 0, 0] -> 1 => ap_i = 3/4. (A map putting 8 under another instrument gives 1.)
HAND_VIDEO = np.array(["VID92"] * 3)
HAND_TARGET = np.zeros((3, 100), dtype=np.uint8)
HAND_TARGET[0, 22] = HAND_TARGET[1, 0] = 1
HAND_SCORE = np.zeros((3, 100))
HAND_SCORE[0, 22], HAND_SCORE[1, 0], HAND_SCORE[2, 8] = 0.9, 0.8, 0.85


def test_triplet_without_maps_uses_the_official_cholect50_map(
    tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, video=HAND_VIDEO, target=HAND_TARGET, score=HAND_SCORE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official table is the default: nothing to warn about
        assert cli_main(["--task", "triplet", "--input", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ap_i"] == pytest.approx(3 / 4) and out["ap_ivt"] == pytest.approx(1.0)


def test_triplet_maps_text_file_overrides_the_default(
    tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, video=HAND_VIDEO, target=HAND_TARGET, score=HAND_SCORE)
    maps = cholect50_triplet_maps()
    maps[8, 0] = 3  # triplet 8 moved from grasper to scissors: grasper [0, .8, 0] -> AP 1 => ap_i = 1
    rows = [f"{k},{i},{v},{t},{i * 10 + v},{i * 15 + t}" for k, (i, v, t) in enumerate(maps)]
    (tmp_path / "label_mapping.txt").write_text("# IVT, I, V, T, IV, IT\n" + "\n".join(rows) + "\n")
    assert cli_main(["--task", "triplet", "--input", str(path), "--maps", str(tmp_path / "label_mapping.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["ap_i"] == pytest.approx(1.0)
    (tmp_path / "bad.txt").write_text("0,0,2\n")
    assert cli_main(["--task", "triplet", "--input", str(path), "--maps", str(tmp_path / "bad.txt")]) == 2
    assert "bad.txt:1" in capsys.readouterr().err


def test_skill_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    target = rng.integers(6, 31, 30)  # JIGSAWS GRS 6-30
    pred = target + rng.normal(0, 3, 30)
    assert score(tmp_path, "skill", {"target": target, "pred": pred}) == pytest.approx(skill_metrics(target, pred))


def test_undefined_value_is_json_null(tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skill.npz"
    np.savez(path, target=np.array([10, 20, 30]), pred=np.full(3, 18.0))  # constant prediction: rho undefined
    assert cli_main(["--task", "skill", "--input", str(path)]) == 0
    # MAE = (8 + 2 + 12)/3 = 22/3
    assert json.loads(capsys.readouterr().out) == {"mae": pytest.approx(22 / 3), "spearman": None}


def test_segmentation_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    target = (rng.random((3, 24, 24)) < 0.3).astype(np.uint8)
    prob = np.clip(target * 0.6 + rng.random((3, 24, 24)) * 0.5, 0, 1)
    out = score(tmp_path, "segmentation", {"target": target, "score": prob})
    assert out == pytest.approx(segmentation_metrics(target, prob))


def test_depth_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    target = rng.uniform(1, 100, (2, 16, 16))
    pred = target * rng.uniform(0.7, 1.3, target.shape)
    valid = rng.random(target.shape) < 0.8
    out = score(tmp_path, "depth", {"target": target, "pred": pred, "valid": valid})
    assert list(out) == ["rmse", "abs_rel", "sq_rel", "delta_1_1", "delta_1_25"]
    assert out == pytest.approx(depth_metrics(target, pred, valid))


def test_missing_key_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, video=np.array(["a", "b"]), target=np.array([0, 1]))
    proc = run_cli(tmp_path, "--task", "phase", "--input", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "bad.npz" in proc.stderr and "'pred'" in proc.stderr


GOOD = {"video": np.array(["a", "b"]), "target": np.array([0, 1]), "pred": np.array([0, 1])}


@pytest.mark.parametrize(
    ("task", "arrays", "extra", "needles"),
    [
        ("phase", GOOD | {"pred": np.array([0])}, [], ["bad.npz", "'pred'", "shape"]),
        ("phase", GOOD | {"target": np.array([0.0, 1.0])}, [], ["bad.npz", "'target'", "dtype"]),
        ("phase", GOOD | {"video": np.array([{"a": 1}, None], dtype=object)}, [], ["bad.npz", "'video'"]),
        ("phase", GOOD | {"target": np.array([0, 9])}, ["--num-classes", "3"], ["bad.npz", "num_classes"]),
        ("phase", GOOD, ["--relaxed"], ["--fps"]),
        ("phase", GOOD, ["--fps", "1"], ["--relaxed"]),
        ("segmentation", {"target": np.zeros((1, 2, 2)), "score": np.full((1, 2, 2), 2.0)}, [], ["bad.npz", "score"]),
        ("depth", {"target": np.ones((1, 2, 2)), "pred": np.ones((1, 2, 2)), "valid": np.ones((1, 2, 2))}, [],
         ["bad.npz", "'valid'", "dtype"]),
    ],
    ids=["shape-mismatch", "wrong-dtype", "object-array", "label-out-of-range", "relaxed-without-fps",
         "fps-without-relaxed", "score-out-of-range", "valid-not-bool"],
)
def test_input_errors_exit_2(
    tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str],
    task: str, arrays: dict[str, np.ndarray], extra: list[str], needles: list[str],
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert cli_main(["--task", task, "--input", str(path), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for needle in needles:
        assert needle in captured.err


def test_missing_file_exits_2(tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--task", "depth", "--input", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err
    assert "nope.npz" in err and "not found" in err


def test_unreadable_file_exits_2(tmp_path: Path, cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "garbage.npz"
    path.write_text("not an npz archive")
    assert cli_main(["--task", "phase", "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert "garbage.npz" in err and "not a readable .npz" in err
