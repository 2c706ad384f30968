"""Build a report: MLflow runs → tables (Markdown, CSV), plots, one self-contained HTML page → a new MLflow run.

Output directory layout::

    report.html               everything on one page (PNGs embedded)
    report.md                 all tables + sweep details + pretraining runs + links to the PNGs
    tables/<family>.md|.csv   one table per task family (phase, action, triplet, skill, segmentation, depth)
    plots/<run>/*.png         the plots of every sweep parent and of the newest pretraining runs

Runs without ``plots`` artifacts get them here (drawn and logged to the run, so the next report only downloads
them); a RUNNING pretraining run is drawn for the report only. Docs: docs/report.md.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.benchmarks.tasks import metric_mode
from orchestrator.config import slug, work_dir
from orchestrator.report.collect import Collected, PretrainEntry, ReportError, SweepEntry, backbone_labels, collect
from orchestrator.report.html import PlotGroup, render_page
from orchestrator.report.plots import PLOTS_DIR, has_plots, log_pretrain_plots, log_sweep_plots, render_pretrain_plots
from orchestrator.report.tables import (
    Table,
    build_tables,
    format_value,
    legend_markdown,
    md_table,
    table_csv,
    table_markdown,
)
from orchestrator.tracking import (
    JOB_REPORT,
    JOB_TAG,
    MLFLOW_RUN_NAME_TAG,
    PREDICTIONS_ARTIFACT,
    client,
    dashboard_command,
    ensure_experiment,
)

DEFAULT_EXPERIMENTS = ("probe-sweeps", "surgmotion-pretrain")
REPORT_EXPERIMENT = "surgmotion-report"
PREDICTIONS = PREDICTIONS_ARTIFACT
Progress = Callable[[str], None]
DETAILS_HEADER = ["family", "benchmark", "backbone", "primary", "val", "test", "best lr", "best wd", "run id"]
PRETRAIN_HEADER = ["run", "status", "steps", "loss", "clips/s", "started", "experiment", "run id"]


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    markdown: Path
    files: list[Path]
    tables: list[Table]
    collected: Collected
    report_run_id: str | None = None
    notes: list[str] = field(default_factory=list)


def _plot_dir_name(text: str) -> str:
    return slug(text, 100) or "run"


def download_plots(uri: str, run_id: str, dest: Path) -> list[Path]:
    """The run's ``plots/*.png`` artifacts, downloaded into ``dest`` (one download of the folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for png in Path(client(uri).download_artifacts(run_id, PLOTS_DIR, tmp)).glob("*.png"):
            target = dest / png.name
            target.write_bytes(png.read_bytes())
            out.append(target)
    return sorted(out)


def sweep_plots(uri: str, entry: SweepEntry, dest: Path, notes: list[str]) -> tuple[list[Path], str]:
    """(PNGs, how they were obtained) of one sweep parent: downloaded, or drawn from its predictions + logged."""
    if has_plots(uri, entry.run_id):
        return download_plots(uri, entry.run_id, dest), "downloaded"
    c = client(uri)
    if not any(a.path == PREDICTIONS for a in c.list_artifacts(entry.run_id)):
        notes.append(f"sweep run {entry.run_id} ({entry.benchmark.name}): no {PREDICTIONS}, no plots")
        return [], "no predictions"
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(c.download_artifacts(entry.run_id, PREDICTIONS, tmp))
        try:
            pngs = log_sweep_plots(uri, entry.run_id, npz, entry.benchmark.task, entry.benchmark.classes or None,
                                   out_dir=dest)
        except (ValueError, KeyError, IndexError) as e:  # a malformed predictions file must not sink the report
            notes.append(f"sweep run {entry.run_id} ({entry.benchmark.name}): plots failed: {e}")
            return [], "failed (see notes)"
    return pngs, "drawn + logged to the run"


def pretrain_plots(uri: str, entry: PretrainEntry, dest: Path) -> tuple[list[Path], str]:
    if has_plots(uri, entry.run_id):
        return download_plots(uri, entry.run_id, dest), "downloaded"
    if entry.status == "RUNNING":
        return render_pretrain_plots(uri, entry.run_id, dest), "drawn (run still RUNNING: not logged)"
    return log_pretrain_plots(uri, entry.run_id, out_dir=dest), "drawn + logged to the run"


def gather_plots(uri: str, collected: Collected, plots_dir: Path, pretrain_runs: int,
                 progress: Progress) -> dict[str, list[PlotGroup]]:
    """Plot groups per HTML section: the newest ``pretrain_runs`` pretraining runs, then every sweep parent."""
    labels = backbone_labels([e.backbone for e in collected.sweeps])
    groups: dict[str, list[PlotGroup]] = {"Pretraining plots": [], "Probe sweep plots": []}
    chosen = collected.pretrain[:pretrain_runs]
    for k, p in enumerate(chosen, 1):
        pngs, how = pretrain_plots(uri, p, plots_dir / _plot_dir_name(f"pretrain__{p.name}__{p.run_id[:8]}"))
        progress(f"plots {k}/{len(chosen)} pretraining {p.name}: {len(pngs)} PNG(s), {how}")
        groups["Pretraining plots"].append(PlotGroup(f"Pretraining: {p.name}", f"run {p.run_id} ({p.status})", pngs))
    for k, e in enumerate(collected.sweeps, 1):
        label = labels[e.backbone]
        pngs, how = sweep_plots(uri, e, plots_dir / _plot_dir_name(f"{e.benchmark.name}__{label}__{e.run_id[:8]}"),
                                collected.notes)
        progress(f"plots {k}/{len(collected.sweeps)} {e.benchmark.name} × {label}: {len(pngs)} PNG(s), {how}")
        groups["Probe sweep plots"].append(PlotGroup(f"{e.benchmark.name} ({e.benchmark.task}) — {label}",
                                                     f"test predictions of the val-selected head; run {e.run_id}",
                                                     pngs))
    return groups


# ------------------------------------------------------------------------------------------------ rows
def detail_rows(sweeps: list[SweepEntry]) -> list[list[str]]:
    labels = backbone_labels([e.backbone for e in sweeps])
    rows = []
    for e in sweeps:
        m = e.benchmark.primary_metric
        arrow = "↑" if metric_mode(m) == "max" else "↓"
        rows.append([e.benchmark.task, e.benchmark.name, labels[e.backbone], f"{m} {arrow}",
                     format_value(e.val.get(m)), format_value(e.test.get(m)), e.best_lr, e.best_wd, e.run_id])
    return rows


def pretrain_rows(runs: list[PretrainEntry]) -> list[list[str]]:
    return [[p.name, p.status, str(p.steps), format_value(p.last.get("loss")), format_value(p.last.get("clips_per_s")),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(p.start_time / 1000)), p.experiment, p.run_id]
            for p in runs]


def render_markdown(title: str, meta: list[tuple[str, str]], notes: list[str], tables: list[Table],
                    collected: Collected, groups: dict[str, list[PlotGroup]], out_dir: Path) -> str:
    parts = [f"# {title}\n", "\n".join(f"- **{k}**: {v}" for k, v in meta) + "\n"]
    parts += [f"> note: {n}\n" for n in notes]
    parts.append("## Results (test set, val-selected heads)\n\nBest per column in **bold**, second "
                 "<u>underlined</u>; ↑ higher is better, ↓ lower is better; – = not run.\n")
    parts += [f"### {t.title}\n\n{legend_markdown(t)}{table_markdown(t)}" for t in tables] or [
        "_No finished probe sweeps found._\n"]
    if collected.sweeps:
        parts.append("## Sweep details\n\n" + md_table(DETAILS_HEADER, detail_rows(collected.sweeps)))
    if collected.pretrain:
        parts.append("## Pretraining runs\n\n" + md_table(PRETRAIN_HEADER, pretrain_rows(collected.pretrain)))
    for section, plot_groups in groups.items():
        if any(g.pngs for g in plot_groups):
            parts.append(f"## {section}\n")
            for g in plot_groups:
                links = "\n".join(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in g.pngs)
                parts.append(f"### {g.title}\n\n{g.subtitle}\n\n{links}\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------- driver
def write_outputs(out_dir: Path, title: str, meta: list[tuple[str, str]], tables: list[Table],
                  collected: Collected, groups: dict[str, list[PlotGroup]]) -> list[Path]:
    """tables/<family>.md|.csv, report.md, report.html; returns the files written (PNGs are already there)."""
    files = []
    for t in tables:
        md_text = f"# {t.title}\n\n{legend_markdown(t)}{table_markdown(t)}"
        for suffix, text in ((".md", md_text), (".csv", table_csv(t))):
            path = out_dir / "tables" / f"{t.family}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files.append(path)
    md = out_dir / "report.md"
    md.write_text(render_markdown(title, meta, collected.notes, tables, collected, groups, out_dir), encoding="utf-8")
    page = render_page(title, meta, collected.notes, tables, (DETAILS_HEADER, detail_rows(collected.sweeps)),
                       (PRETRAIN_HEADER, pretrain_rows(collected.pretrain)), groups)
    html = out_dir / "report.html"
    html.write_text(page, encoding="utf-8")
    return files + [md, html]


def log_report_run(uri: str, experiment: str, out_dir: Path, experiments: list[str], counts: dict[str, int]) -> str:
    """A new run in ``experiment`` holding every output file as an artifact."""
    c = client(uri)
    name = f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    run = c.create_run(ensure_experiment(uri, experiment), run_name=name,
                       tags={JOB_TAG: JOB_REPORT, MLFLOW_RUN_NAME_TAG: name})
    run_id = run.info.run_id
    try:
        c.log_param(run_id, "experiments", ",".join(experiments))
        c.log_param(run_id, "out_dir", str(out_dir))
        for key, value in counts.items():
            c.log_metric(run_id, key, value)
        c.log_artifacts(run_id, str(out_dir))
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    c.set_terminated(run_id, "FINISHED")
    return run_id


def build_report(tracking_uri: str, experiments: list[str] | None = None, out_dir: Path | None = None, *,
                 report_experiment: str | None = REPORT_EXPERIMENT, pretrain_runs: int = 3,
                 progress: Progress = print) -> ReportResult:
    """Read ``experiments`` (default: probe-sweeps + surgmotion-pretrain), write the report into ``out_dir``
    (default ``<work dir>/reports/<timestamp>``) and log it as a new run of ``report_experiment`` (None: don't)."""
    names = list(experiments or DEFAULT_EXPERIMENTS)
    out = Path(out_dir or work_dir() / "reports" / time.strftime("%Y%m%d-%H%M%S")).expanduser().resolve()
    progress(f"reading MLflow runs of {names} at {tracking_uri}")
    collected = collect(tracking_uri, names, required=experiments is not None)
    if not collected.sweeps and not collected.pretrain:
        raise ReportError(f"nothing to report: experiments {names} hold no finished sweep parent run and no "
                          f"pretraining run")
    progress(f"found {len(collected.sweeps)} sweep result(s), {len(collected.pretrain)} pretraining run(s)")
    out.mkdir(parents=True, exist_ok=True)
    groups = gather_plots(tracking_uri, collected, out / "plots", pretrain_runs, progress)
    tables = build_tables(collected.sweeps)
    meta = [("generated", time.strftime("%Y-%m-%d %H:%M:%S")), ("tracking URI", tracking_uri),
            ("experiments", ", ".join(names)), ("dashboard", dashboard_command(tracking_uri))]
    progress(f"writing {len(tables)} table(s) and report.html into {out}")
    files = write_outputs(out, "SurgMotion results", meta, tables, collected, groups)
    files += sorted((out / "plots").rglob("*.png"))
    run_id = None
    if report_experiment:
        progress(f"logging {len(files)} file(s) to a new run of MLflow experiment {report_experiment!r}")
        counts = {"sweeps": len(collected.sweeps), "pretrain_runs": len(collected.pretrain), "tables": len(tables)}
        run_id = log_report_run(tracking_uri, report_experiment, out, names, counts)
    return ReportResult(out, out / "report.html", out / "report.md", files, tables, collected, run_id,
                        collected.notes)
