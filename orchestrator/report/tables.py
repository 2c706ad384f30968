"""Paper-style result tables: one per task family, backbones as rows, benchmark × metric as columns.

In every column the best value is **bold** and the second best underlined, in the metric's direction
(:func:`orchestrator.benchmarks.tasks.metric_mode`: rmse / mae / abs_rel / sq_rel are lower-is-better). Values are
compared as displayed (:func:`format_value`), so equal-looking values tie: every tied best value is bold and
the next distinct value is underlined. A missing cell is shown as "–" (and left empty in the CSV). A phase table
carries a legend naming the convention of each column (:func:`convention_legend`).
"""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from model.tasks import TASKS
from orchestrator.benchmarks.tasks import CONVENTION_LABELS, FAMILY_TITLES, metric_convention, metric_mode
from orchestrator.report.collect import SweepEntry, backbone_labels

MISSING = "–"
Cell = float | None


@dataclass
class Column:
    benchmark: str
    metric: str
    mode: str  # "max" | "min"

    @property
    def arrow(self) -> str:
        return "↑" if self.mode == "max" else "↓"


@dataclass
class Table:
    family: str
    rows: list[str]            # backbone labels
    columns: list[Column]
    values: list[list[Cell]]   # [row][column]

    @property
    def title(self) -> str:
        return FAMILY_TITLES.get(self.family, self.family)  # type: ignore[call-overload]

    def column(self, j: int) -> list[Cell]:
        return [row[j] for row in self.values]

    def cell(self, row: str, benchmark: str, metric: str) -> Cell:
        j = next(k for k, c in enumerate(self.columns) if (c.benchmark, c.metric) == (benchmark, metric))
        return self.values[self.rows.index(row)][j]


def _present(v: Cell) -> bool:
    return v is not None and math.isfinite(v)


def format_value(v: Cell) -> str:
    """4 decimals (1 from 1000 up); "–" for a missing / non-finite value."""
    if not _present(v):
        return MISSING
    assert v is not None
    return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4f}"


def marks(values: list[Cell], mode: str) -> list[str]:
    """Per cell "best", "second" or "" for one column (``mode`` "max" or "min"; ties share the mark)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    shown = [float(format_value(v)) if _present(v) else None for v in values]
    distinct = sorted({v for v in shown if v is not None}, reverse=(mode == "max"))
    rank = {v: ("best" if i == 0 else "second" if i == 1 else "") for i, v in enumerate(distinct)}
    return [rank[v] if v is not None else "" for v in shown]


def build_table(family: str, entries: list[SweepEntry], labels: dict[str, str]) -> Table:
    """The table of one family from its sweep entries (already one per backbone × benchmark)."""
    columns: list[Column] = []
    for e in entries:
        for m in e.benchmark.metrics:
            col = Column(e.benchmark.name, m, metric_mode(m))
            if col not in columns and any(x.benchmark.name == col.benchmark and _present(x.test.get(m))
                                          for x in entries):
                columns.append(col)
    rows = sorted({labels[e.backbone] for e in entries})
    values: list[list[Cell]] = [[None] * len(columns) for _ in rows]
    for e in entries:
        i = rows.index(labels[e.backbone])
        for j, c in enumerate(columns):
            if c.benchmark == e.benchmark.name and _present(e.test.get(c.metric)):
                values[i][j] = e.test[c.metric]
    return Table(family, rows, columns, values)


def build_tables(entries: list[SweepEntry]) -> list[Table]:
    """One table per task family that has results, in task order (:data:`model.tasks.TASKS`)."""
    labels = backbone_labels(sorted({e.backbone for e in entries}))
    out = []
    for family in TASKS:
        mine = [e for e in entries if e.benchmark.task == family]
        if mine:
            out.append(build_table(family, mine, labels))
    return out


def convention_legend(table: Table) -> list[str]:
    """One line per metric convention among the table's columns (phase: unrelaxed video-wise, union, relaxed),
    each naming its metrics: ``"f1, jaccard — unrelaxed video-wise: ..."``; empty for the other families."""
    names: dict[str, list[str]] = {}
    for c in table.columns:
        key = metric_convention(table.family, c.metric)
        if key is not None and c.metric not in names.setdefault(key, []):
            names[key].append(c.metric)
    return [f"{', '.join(names[key])} — {label}" for key, label in CONVENTION_LABELS.items() if names.get(key)]


def legend_markdown(table: Table) -> str:
    """The convention legend as a Markdown list printed above the table (``""`` when the table has none)."""
    lines = convention_legend(table)
    return "Column conventions:\n\n" + "".join(f"- {line}\n" for line in lines) + "\n" if lines else ""


def legend_html(table: Table) -> str:
    """The convention legend as an HTML list (``""`` when the table has none)."""
    lines = convention_legend(table)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<div class='legend'>Column conventions:<ul>{items}</ul></div>" if lines else ""


# ----------------------------------------------------------------------------------------------- output
def _marked_cells(table: Table, bold: str, under: str) -> list[list[str]]:
    """Formatted cells with ``bold`` / ``under`` format strings (``{}`` = the value) applied."""
    cells = [[format_value(v) for v in row] for row in table.values]
    for j, col in enumerate(table.columns):
        for i, mark in enumerate(marks(table.column(j), col.mode)):
            if mark:
                cells[i][j] = (bold if mark == "best" else under).format(cells[i][j])
    return cells


def md_table(header: list[str], rows: list[list[str]], right_from: int | None = None) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped); columns from ``right_from`` on right-aligned."""
    sep = ["---:" if right_from is not None and j >= right_from else "---" for j in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: **best**, <u>second</u>."""
    head = ["backbone"] + [f"{c.benchmark} · {c.metric} {c.arrow}" for c in table.columns]
    cells = _marked_cells(table, "**{}**", "<u>{}</u>")
    return md_table(head, [[label, *row] for label, row in zip(table.rows, cells)], right_from=1)


def table_html(table: Table) -> str:
    """An HTML table with a two-level header (benchmark, then metric): <b>best</b>, <u>second</u>."""
    groups: list[tuple[str, int]] = []
    for c in table.columns:
        if groups and groups[-1][0] == c.benchmark:
            groups[-1] = (c.benchmark, groups[-1][1] + 1)
        else:
            groups.append((c.benchmark, 1))
    top = "".join(f'<th colspan="{n}">{html.escape(b)}</th>' for b, n in groups)
    sub = "".join(f"<th>{html.escape(c.metric)} {c.arrow}</th>" for c in table.columns)
    body = []
    for label, cells in zip(table.rows, _marked_cells(table, "<b>{}</b>", "<u>{}</u>")):
        tds = "".join(f"<td>{c}</td>" for c in cells)
        body.append(f"<tr><th class='row'>{html.escape(label)}</th>{tds}</tr>")
    return (f"<table class='results'><thead><tr><th rowspan='2'>backbone</th>{top}</tr><tr>{sub}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def table_csv(table: Table) -> str:
    """Three header rows (benchmark, metric, mode), then one row per backbone; full-precision values, empty =
    missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["backbone"] + [c.benchmark for c in table.columns])
    w.writerow(["metric"] + [c.metric for c in table.columns])
    w.writerow(["mode"] + [c.mode for c in table.columns])
    for label, row in zip(table.rows, table.values):
        w.writerow([label] + [repr(float(v)) if v is not None and _present(v) else "" for v in row])
    return buf.getvalue()


def read_csv(path: Path, family: str | None = None) -> Table:
    """Parse a file written by :func:`table_csv` (family: the file stem unless given)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3 or [r[0] for r in rows[:3]] != ["backbone", "metric", "mode"]:
        raise ValueError(f"{path}: not a report table (expected header rows backbone / metric / mode)")
    columns = [Column(b, m, mode) for b, m, mode in zip(rows[0][1:], rows[1][1:], rows[2][1:])]
    values: list[list[Cell]] = [[float(x) if x else None for x in r[1:]] for r in rows[3:]]
    return Table(family or Path(path).stem, [r[0] for r in rows[3:]], columns, values)
