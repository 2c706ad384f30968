"""The report: table marks (direction, ties, missing cells), CSV round trip, every plot on hand-made predictions
logged to a real sqlite MLflow store, the CLI (in-process and its exit code 2), a headless-Chromium screenshot of
the HTML page, and (slow) a report built from a tiny real pretraining run + probe sweep."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from conftest import tiny_config, tiny_overrides, tiny_phase_benchmark
from mlflow.entities import Metric, Param

from orchestrator.benchmarks.registry import get_benchmark
from orchestrator.report.collect import BenchmarkInfo, ReportError, SweepEntry, benchmark_info, collect
from orchestrator.report.plots import has_plots, log_pretrain_plots, log_sweep_plots, metric_series
from orchestrator.report.tables import (
    build_tables,
    convention_legend,
    legend_html,
    legend_markdown,
    marks,
    read_csv,
    table_csv,
    table_html,
    table_markdown,
)
from orchestrator.tracking import ensure_experiment

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "report.py"
SURG = "surgmotion:/runs/demo/checkpoint_000004"
PRETRAIN_KEYS = ["loss", "loss_motion", "loss_st", "loss_var", "loss_cov", "lr", "clips_per_s"]


def assert_png_ok(path: Path, min_std: float = 0.05) -> None:
    """Decodes as an image, has contrast and is not (almost) all white."""
    import matplotlib.image as mpimg

    rgb = mpimg.imread(path)[..., :3]
    assert rgb.ndim == 3 and min(rgb.shape[:2]) > 50, (path, rgb.shape)
    assert rgb.std() > min_std, (path, rgb.std())
    assert (rgb > 0.97).all(axis=-1).mean() < 0.97, f"{path} is almost all white"


def artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id, path)}


def entry(backbone: str, bench: str, task: str, metrics: list[str], test: dict[str, float]) -> SweepEntry:
    return SweepEntry(run_id=f"{backbone}|{bench}", experiment="x", backbone=backbone,
                      benchmark=BenchmarkInfo(bench, task, metrics, metrics[0]), test=test, val={}, best_lr="0.001",
                      best_wd="0.01", start_time=0)


# --------------------------------------------------------------------------------------------- tables
def test_marks_follow_the_metric_direction_and_share_ties() -> None:
    assert marks([0.5, 0.9, None, 0.7], "max") == ["", "best", "", "second"]
    assert marks([0.5, 0.9, None, 0.7], "min") == ["best", "", "", "second"]
    assert marks([0.8, 0.8, 0.6, 0.5], "max") == ["best", "best", "second", ""]
    assert marks([0.3, 0.3, 0.5], "min") == ["best", "best", "second"]
    assert marks([0.80001, 0.80004, 0.7], "max") == ["best", "best", "second"]  # equal as displayed
    assert marks([0.3], "max") == ["best"] and marks([None, math.nan], "max") == ["", ""]
    with pytest.raises(ValueError, match="mode"):
        marks([1.0], "up")


@pytest.fixture
def two_family_entries() -> list[SweepEntry]:
    phase, depth = ["f1", "accuracy"], ["rmse", "delta_1_25"]
    return [entry("random:tiny", "Cholec80", "phase", phase, {"f1": 0.5, "accuracy": 0.6}),
            entry(SURG, "Cholec80", "phase", phase, {"f1": 0.8, "accuracy": 0.7}),
            entry("timm:vit_small", "Cholec80", "phase", phase, {"f1": 0.7}),
            entry("random:tiny", "C3VD", "depth", depth, {"rmse": 9.0, "delta_1_25": 0.5}),
            entry(SURG, "C3VD", "depth", depth, {"rmse": 5.0, "delta_1_25": 0.7})]


def test_tables_bold_best_underline_second_missing_dash(two_family_entries: list[SweepEntry]) -> None:
    phase, depth = build_tables(two_family_entries)
    assert (phase.family, depth.family) == ("phase", "depth")
    assert phase.rows == ["random:tiny", "surgmotion:checkpoint_000004", "timm:vit_small"]
    md = table_markdown(phase).splitlines()
    assert md[0] == "| backbone | Cholec80 · f1 ↑ | Cholec80 · accuracy ↑ |"
    assert "| random:tiny | 0.5000 | <u>0.6000</u> |" in md
    assert "| surgmotion:checkpoint_000004 | **0.8000** | **0.7000** |" in md
    assert "| timm:vit_small | <u>0.7000</u> | – |" in md
    md = table_markdown(depth).splitlines()  # rmse: lower is better
    assert md[0] == "| backbone | C3VD · rmse ↓ | C3VD · delta_1_25 ↑ |"
    assert "| random:tiny | <u>9.0000</u> | <u>0.5000</u> |" in md
    assert "| surgmotion:checkpoint_000004 | **5.0000** | **0.7000** |" in md
    page = table_html(depth)
    assert "<th colspan=\"2\">C3VD</th>" in page and "<b>5.0000</b>" in page and "<u>9.0000</u>" in page


def test_csv_round_trip(two_family_entries: list[SweepEntry], tmp_path: Path) -> None:
    two_family_entries[0].test["f1"] = 0.123456789012345  # full precision survives
    for table in build_tables(two_family_entries):
        path = tmp_path / f"{table.family}.csv"
        path.write_text(table_csv(table))
        back = read_csv(path)
        assert (back.family, back.rows, back.columns, back.values) == (table.family, table.rows, table.columns,
                                                                       table.values)
    assert read_csv(tmp_path / "phase.csv").cell("timm:vit_small", "Cholec80", "accuracy") is None
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a report table"):
        read_csv(tmp_path / "bad.csv")


def test_benchmark_family_from_registry_or_the_sweeps_task_tag() -> None:
    assert benchmark_info("cholec80", None).task == "phase"
    assert benchmark_info("Cholec80", None).metrics[0] == "accuracy"
    assert benchmark_info("synthetic-depth", "depth").task == "depth"
    tiny = benchmark_info("tiny-phase", "phase", "f1")
    assert (tiny.task, tiny.registered, tiny.primary_metric) == ("phase", False, "f1")
    assert tiny.metrics == ["accuracy", "precision", "recall", "jaccard", "f1", "edit", "f1_union",
                            "jaccard_union"]  # the task's metric set
    with pytest.raises(ReportError, match="mystery"):
        benchmark_info("mystery", None)  # no task tag: the report never guesses a task from metric names
    with pytest.raises(ReportError, match="mystery"):
        benchmark_info("mystery", "not-a-task")


def test_phase_table_legend_names_each_columns_convention() -> None:
    metrics = ["f1", "f1_union", "f1_relaxed", "jaccard_relaxed"]
    entries = [entry("random:tiny", "Cholec80", "phase", metrics,
                     {"f1": 0.6, "f1_union": 0.5, "f1_relaxed": 0.7, "jaccard_relaxed": 0.55}),
               entry("random:tiny", "AutoLaparo", "phase", ["f1"], {"f1": 0.4}),
               entry("random:tiny", "C3VD", "depth", ["rmse"], {"rmse": 3.0})]
    phase, depth = build_tables(entries)
    legend = convention_legend(phase)
    assert [line.split(" — ")[0] for line in legend] == ["f1", "f1_union", "f1_relaxed, jaccard_relaxed"]
    assert legend[0].split(" — ")[1].startswith("unrelaxed video-wise")
    assert legend[1].split(" — ")[1].startswith("union")
    assert legend[2].split(" — ")[1].startswith("relaxed (±10 s, Cholec80 protocol")
    md = legend_markdown(phase)
    assert md.startswith("Column conventions:") and all(f"- {line}" in md for line in legend)
    assert "<li>union: unrelaxed, per video" in legend_html(phase).replace("f1_union — ", "")
    assert convention_legend(depth) == [] and legend_markdown(depth) == "" and legend_html(depth) == ""
    only_unrelaxed = build_tables([entries[1]])[0]
    assert [line.split(" — ")[0] for line in convention_legend(only_unrelaxed)] == ["f1"]  # only what is shown


# ---------------------------------------------------------------------------------------------- plots
def predictions(task: str, extras: bool, tmp: Path) -> dict[str, np.ndarray]:
    """Hand-made predictions in sweep_train.prediction_arrays format (+ sample_id / source / time_s)."""
    rng = np.random.default_rng(0)
    n = 24
    video = np.repeat(["v06", "v07", "v08"], n // 3)
    a: dict[str, np.ndarray]
    if task in ("phase", "action"):
        target = np.tile(np.repeat([0, 1, 2, 3], 2), 3)
        a = {"video": video, "target": target, "pred": np.where(rng.random(n) < 0.7, target, rng.integers(0, 4, n))}
    elif task == "triplet":
        target = (rng.random((n, 12)) < 0.3).astype(np.int64)
        target[:, 5] = 0  # a class without positives
        a = {"video": video, "target": target, "score": np.clip(0.5 * target + rng.random((n, 12)), 0, 1)}
    elif task == "skill":
        y = rng.uniform(6, 30, n)
        a = {"target": y.astype(np.float32), "pred": (y + rng.normal(0, 3, n)).astype(np.float32)}
    else:
        yy, xx = np.mgrid[:40, :48]
        blob = np.stack([(yy - 20) ** 2 + (xx - 16 - 2 * i) ** 2 < 90 for i in range(n)])
        if task == "segmentation":
            a = {"target": blob, "score": np.clip(0.8 * blob + 0.3 * rng.random(blob.shape), 0, 1).astype(np.float32)}
        else:
            depth = np.broadcast_to(20.0 + xx + yy, blob.shape).astype(np.float32) * np.where(blob, 1, 0)
            a = {"target": depth, "pred": (20.0 + xx + yy + rng.normal(0, 2, blob.shape)).astype(np.float32)}
    if extras:
        a["sample_id"] = np.array([f"s{i}" for i in range(n)])
        a["time_s"] = np.tile(np.arange(n // 3, dtype=float)[::-1], 3)  # reversed: ribbons must sort
        image = tmp / "frame.png"
        import matplotlib.image as mpimg

        mpimg.imsave(image, rng.random((60, 80, 3)))
        a["source"] = np.array([str(image)] * n)
    return a


EXPECTED = {"phase": ["confusion_matrix.png", "phase_ribbons.png"], "action": ["confusion_matrix.png"],
            "triplet": ["per_class_ap.png"], "skill": ["skill_scatter.png"],
            "segmentation": ["segmentation_overlays.png"], "depth": ["depth_maps.png"]}


@pytest.mark.parametrize("task,extras", [("phase", False), ("phase", True), ("action", False), ("triplet", True),
                                         ("skill", False), ("segmentation", False), ("segmentation", True),
                                         ("depth", True)])
def test_sweep_plots_are_drawn_and_logged(task: str, extras: bool, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = mlflow.MlflowClient(uri).create_run(ensure_experiment(uri, "probe-sweeps")).info.run_id
    np.savez(tmp_path / "predictions_test.npz", **predictions(task, extras, tmp_path))
    assert not has_plots(uri, run_id)
    classes = ["prep", "dissect", "clip", "close"] if task in ("phase", "action") else None
    paths = log_sweep_plots(uri, run_id, tmp_path / "predictions_test.npz", task, classes, out_dir=tmp_path / "png")
    assert sorted(p.name for p in paths) == EXPECTED[task]
    for p in paths:
        assert_png_ok(p)
    assert artifacts(uri, run_id, "plots") == {f"plots/{n}" for n in EXPECTED[task]} and has_plots(uri, run_id)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        log_sweep_plots(uri, run_id, tmp_path / "missing.npz", task, None)


def test_sweep_plots_reject_a_file_of_another_task(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", **predictions("skill", False, tmp_path))
    with pytest.raises(ValueError, match=r"no \['video'\] array\(s\) for task 'phase'"):
        log_sweep_plots(f"sqlite:///{tmp_path}/mlflow.db", "unused", tmp_path / "p.npz", "phase", None)
    with pytest.raises(ValueError, match="unknown task 'phase_x'"):
        log_sweep_plots(f"sqlite:///{tmp_path}/mlflow.db", "unused", tmp_path / "p.npz", "phase_x", None)


def log_pretrain_history(uri: str, run_id: str, steps: int = 8, keys: list[str] = PRETRAIN_KEYS) -> None:
    s = np.arange(1, steps + 1)
    values = {"loss": 2.0 / s, "loss_motion": 1.0 / s, "loss_st": 0.5 / np.sqrt(s), "loss_var": 0.3 * 0.8 ** s,
              "loss_cov": 0.1 + 0.01 * np.sin(s), "lr": 1e-3 * np.minimum(1.0, s / 3.0), "clips_per_s": 4 + s % 3}
    batch = [Metric(k, float(values[k][i]), 1000 + i, int(s[i])) for k in keys for i in range(steps)]
    mlflow.MlflowClient(uri).log_batch(run_id, metrics=batch)


def test_pretrain_plots_are_drawn_and_logged(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = mlflow.MlflowClient(uri)
    exp = ensure_experiment(uri, "surgmotion-pretrain")
    run_id = c.create_run(exp, tags={"surgmotion.job": "pretrain"}).info.run_id
    log_pretrain_history(uri, run_id)
    c.log_batch(run_id, metrics=[Metric("loss", 0.25, 5000, 3)])  # step 3 logged again after a resume
    steps, values = metric_series(uri, run_id, "loss")
    assert steps.tolist() == list(range(1, 9)) and values[2] == 0.25
    paths = log_pretrain_plots(uri, run_id, out_dir=tmp_path / "png")
    names = ["pretrain_losses.png", "pretrain_lr.png", "pretrain_throughput.png"]
    assert sorted(p.name for p in paths) == names
    for p in paths:
        assert_png_ok(p)
    assert artifacts(uri, run_id, "plots") == {f"plots/{n}" for n in names}
    only_loss = c.create_run(exp).info.run_id  # metrics never logged are left out
    log_pretrain_history(uri, only_loss, keys=["loss"])
    assert [p.name for p in log_pretrain_plots(uri, only_loss, out_dir=tmp_path / "png2")] == ["pretrain_losses.png"]


# ------------------------------------------------------------------------------------ report + CLI
def log_parent(uri: str, exp: str, backbone: str, bench: str, test: dict[str, float], start: int,
               status: str = "FINISHED", npz: Path | None = None, parent: str | None = None,
               fold: int | None = None, task: str | None = "registry") -> str:
    """A sweep parent run as orchestrator.probe.sweep logs it (tags, params, val_/test_ metrics, predictions);
    ``task`` "registry": the registered benchmark's task, None: no task tag."""
    c = mlflow.MlflowClient(uri)
    task = get_benchmark(bench).task if task == "registry" else task
    tags = {"surgmotion.benchmark": bench, "surgmotion.backbone": backbone,
            **({"surgmotion.task": task} if task else {}),
            **({"mlflow.parentRunId": parent} if parent else {}), **({"surgmotion.fold": str(fold)} if fold is not None
                                                                     else {})}
    run_id = c.create_run(ensure_experiment(uri, exp), start_time=start, tags=tags).info.run_id
    params = {"benchmark": bench, "backbone": backbone, "best_lr": "0.001", "best_wd": "0.1", "primary_metric": "x"}
    c.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                metrics=[Metric(f"{s}_{k}", v, start, 0) for k, v in test.items() for s in ("val", "test")])
    if npz is not None:
        c.log_artifact(run_id, str(npz))
    if status != "RUNNING":
        c.set_terminated(run_id, status)
    return run_id


def test_each_fold_of_a_fold_sweep_is_its_own_column(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for fold, rho in ((0, 0.5), (1, 0.25)):
        log_parent(uri, "probe-sweeps", "random:tiny", "JIGSAWS", {"spearman": rho}, 1000 + fold, fold=fold)
    log_parent(uri, "probe-sweeps", "random:tiny", "JIGSAWS", {"spearman": 0.75}, 900, "RUNNING", fold=2)
    got = collect(uri, ["probe-sweeps"])
    assert sorted(e.benchmark.name for e in got.sweeps) == ["JIGSAWS fold 0", "JIGSAWS fold 1"]
    assert {e.benchmark.task for e in got.sweeps} == {"skill"}
    (table,) = build_tables(got.sweeps)
    assert table.cell("random:tiny", "JIGSAWS fold 0", "spearman") == 0.5
    assert table.cell("random:tiny", "JIGSAWS fold 1", "spearman") == 0.25
    assert got.notes == ["sweep random:tiny × JIGSAWS fold 2: no FINISHED parent run (newest is RUNNING); "
                         "not in tables"]


def test_parent_without_task_tag_is_left_out_with_a_note(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    log_parent(uri, "probe-sweeps", "random:tiny", "my-private-set", {"f1": 0.5, "accuracy": 0.6}, 1000, task=None)
    log_parent(uri, "probe-sweeps", "random:tiny", "my-tagged-set", {"f1": 0.25}, 1000, task="action")
    got = collect(uri, ["probe-sweeps"])
    assert [(e.benchmark.name, e.benchmark.task) for e in got.sweeps] == [("my-tagged-set", "action")]
    assert len(got.notes) == 1 and "my-private-set" in got.notes[0] and "surgmotion.task" in got.notes[0]


def load_cli_main() -> Any:
    from conftest import load_script_main as load

    return load(SCRIPT, "report_cli")


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with sweep parents (older / newer / RUNNING duplicates, a child) and a pretraining run, reported
    through the CLI's main() in-process."""
    tmp = tmp_path_factory.mktemp("handmade")
    uri = f"sqlite:///{tmp}/mlflow.db"
    for task, extras in (("phase", True), ("depth", False)):
        (tmp / task).mkdir()
        np.savez(tmp / task / "predictions_test.npz", **predictions(task, extras, tmp))
    ids = {"old": log_parent(uri, "probe-sweeps", "random:tiny", "Cholec80", {"f1": 0.95}, 1000),
           "new": log_parent(uri, "probe-sweeps", "random:tiny", "Cholec80", {"f1": 0.40, "accuracy": 0.55}, 2000,
                             npz=tmp / "phase" / "predictions_test.npz"),
           "running": log_parent(uri, "probe-sweeps", "random:tiny", "Cholec80", {"f1": 0.99}, 3000, "RUNNING"),
           "surg": log_parent(uri, "probe-sweeps", SURG, "Cholec80", {"f1": 0.62, "accuracy": 0.71}, 2500,
                              npz=tmp / "phase" / "predictions_test.npz"),
           "d_rand": log_parent(uri, "probe-sweeps", "random:tiny", "C3VD", {"rmse": 12.5}, 2000,
                                npz=tmp / "depth" / "predictions_test.npz"),
           "d_surg": log_parent(uri, "probe-sweeps", SURG, "C3VD", {"rmse": 8.25}, 2000,
                                npz=tmp / "depth" / "predictions_test.npz")}
    ids["child"] = log_parent(uri, "probe-sweeps", "random:tiny", "Cholec80", {"f1": 0.999}, 4000, parent=ids["new"])
    c = mlflow.MlflowClient(uri)
    ids["pretrain"] = c.create_run(ensure_experiment(uri, "surgmotion-pretrain"), run_name="demo",
                                   tags={"surgmotion.job": "pretrain"}).info.run_id
    log_pretrain_history(uri, ids["pretrain"])
    c.set_terminated(ids["pretrain"], "FINISHED")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "experiments"))
        mp.setattr(sys, "argv", ["report.py", "--tracking-uri", uri, "--out", str(tmp / "report")])
        main = load_cli_main()
        assert main() == 0
    return {"uri": uri, "ids": ids, "out": tmp / "report", "main": main, "tmp": tmp}


def test_report_tables_use_newest_finished_parents(handmade: dict[str, Any], capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    out, ids, uri = handmade["out"], handmade["ids"], handmade["uri"]
    phase = read_csv(out / "tables" / "phase.csv")
    assert phase.rows == ["random:tiny", "surgmotion:checkpoint_000004"]
    assert phase.cell("random:tiny", "Cholec80", "f1") == 0.40  # not the older 0.95, the RUNNING 0.99, the child
    md = (out / "report.md").read_text()
    assert "| backbone | Cholec80 · accuracy ↑ | Cholec80 · f1 ↑ |" in md  # registry metric order
    assert "| surgmotion:checkpoint_000004 | **0.7100** | **0.6200** |" in md
    assert "| random:tiny | <u>0.5500</u> | <u>0.4000</u> |" in md
    assert "| surgmotion:checkpoint_000004 | **8.2500** |" in md and "| random:tiny | <u>12.5000</u> |" in md
    assert all(v not in md for v in ("0.9500", "0.9900", "0.9990")) and "no FINISHED" not in md
    assert "Column conventions:\n\n- accuracy, f1 — unrelaxed video-wise" in md  # phase legend, none for depth
    assert md.count("Column conventions:") == 1
    assert "Column conventions:" in (out / "tables" / "phase.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count("<div class='legend'>") == 1 and "<li>accuracy, f1 — unrelaxed video-wise" in page
    assert page.count("data:image/png;base64,") == 2 * 2 + 2 + 3 and "<b>8.2500</b>" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page and "<link" not in page
    for key, n in (("new", 2), ("surg", 2), ("d_rand", 1), ("pretrain", 3)):
        assert len(artifacts(uri, ids[key], "plots")) == n, key  # drawn and logged to the runs
    assert not has_plots(uri, ids["old"]) and not has_plots(uri, ids["child"])
    report_exp = mlflow.MlflowClient(uri).get_experiment_by_name("surgmotion-report")
    (run,) = mlflow.MlflowClient(uri).search_runs([report_exp.experiment_id])
    assert {"report.html", "report.md", "tables", "plots"} <= artifacts(uri, run.info.run_id)
    assert artifacts(uri, run.info.run_id, "tables") == {"tables/phase.csv", "tables/phase.md", "tables/depth.csv",
                                                         "tables/depth.md"}


def test_second_report_downloads_existing_plots(handmade: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out2 = handmade["tmp"] / "report2"
    monkeypatch.setattr(sys, "argv", ["report.py", "--tracking-uri", handmade["uri"], "--out", str(out2),
                                      "--experiment", "probe-sweeps", "--no-log"])
    assert handmade["main"]() == 0
    text = capsys.readouterr().out
    assert "drawn" not in text and text.count("downloaded") == 4 and f"file://{out2 / 'report.html'}" in text
    assert str(out2 / "tables" / "phase.csv") in text
    assert len(artifacts(handmade["uri"], handmade["ids"]["new"], "plots")) == 2
    assert (out2 / "report.html").read_text().count("data:image/png;base64,") == 2 * 2 + 2


def test_cli_unknown_experiment_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                           "--experiment", "nope", "--out", str(tmp_path / "r")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: no MLflow experiment named 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert "[report]" in proc.stdout and not (tmp_path / "r").exists()


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not installed, and CI=true: the HTML rendering check must run in CI")
        pytest.skip("chromium not installed: apt-get install chromium (CI installs it)")
    return found


def test_html_report_renders_in_headless_chromium(handmade: dict[str, Any], tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", f"--screenshot={shot}",
           (handmade["out"] / "report.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert_png_ok(shot, min_std=0.08)


# ------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_report_from_real_pretrain_and_sweep(ray_cluster: str, tiny_corpus: Path, tiny_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-step pretraining run → a probe sweep of its checkpoint (1 trial) → the report of both."""
    from orchestrator.config import load_config
    from orchestrator.pretrain.config import PretrainConfig
    from orchestrator.pretrain.driver import run_pretraining
    from orchestrator.probe.sweep import run_probe_sweep
    from orchestrator.report.build import build_report
    from orchestrator.report.tables import format_value

    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    pre = run_pretraining(load_config(PretrainConfig, None, tiny_overrides(tiny_corpus, "report-e2e", 2, workers=1)))
    cfg = tiny_config(tmp_path, lr=[1e-2], wd=[0.01], epochs=2).model_copy(update={"experiment": "probe-sweeps"})
    assert cfg.tracking_uri == pre.tracking_uri
    backbone = f"surgmotion:{pre.checkpoint_dir}"
    res = run_probe_sweep(cfg, backbone, tiny_phase_benchmark(), root=tiny_root)
    lines: list[str] = []
    result = build_report(pre.tracking_uri, progress=lines.append)  # defaults: both experiments, <work dir>/reports
    assert result.out_dir.parent == tmp_path / "reports" and result.report_run_id
    (table,) = result.tables
    label = f"surgmotion:{Path(pre.checkpoint_dir).name}"
    assert table.family == "phase" and table.rows == [label]  # tiny-phase: family inferred from its metrics
    assert table.cell(label, "tiny-phase", "f1") == pytest.approx(res.test_metrics["f1"])
    md = (result.out_dir / "tables" / "phase.md").read_text()
    assert f"**{format_value(res.test_metrics['f1'])}**" in md.splitlines()[-1]  # the only row: bold
    page = result.html.read_text()
    assert page.count("data:image/png;base64,") == 2 + 3  # ribbons + confusion, 3 pretraining plots
    assert any("pretraining report-e2e" in m for m in lines) and any("tiny-phase" in m for m in lines)
    assert {"plots/phase_ribbons.png", "plots/confusion_matrix.png"} == artifacts(pre.tracking_uri,
                                                                                  res.parent_run_id, "plots")
    assert "report.html" in artifacts(pre.tracking_uri, result.report_run_id)
