"""One self-contained HTML page: inline CSS, PNGs embedded as base64 ``data:`` URIs, no external CSS / JS."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.report.tables import Table, legend_html, table_html

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1f2328;
       background: #ffffff; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: 6px; }
h2 { margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { margin-top: 22px; }
table { border-collapse: collapse; margin: 10px 0 18px 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; }
thead th { background: #f0f3f6; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.text, th.row { text-align: left; }
tbody tr:nth-child(even) { background: #f8f9fa; }
b { color: #0b3d91; }
.meta td { text-align: left; }
.note { color: #6e4c00; background: #fff8e1; border-left: 4px solid #f0b429; padding: 4px 10px; margin: 4px 0; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; border: 1px solid #d0d7de; padding: 6px; background: #ffffff; }
figure img { max-width: 760px; height: auto; display: block; }
figcaption { font-size: 12px; color: #57606a; margin-top: 4px; }
code { background: #f0f3f6; padding: 1px 4px; border-radius: 3px; }
.legend { font-size: 13px; color: #57606a; }
.legend ul { margin: 2px 0 4px 0; }
"""


@dataclass
class PlotGroup:
    """The plots of one run, shown under a heading."""

    title: str
    subtitle: str
    pngs: list[Path] = field(default_factory=list)


def esc(text: object) -> str:
    return html.escape(str(text))


def png_data_uri(path: Path) -> str:
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_html(path: Path) -> str:
    return (f"<figure><img src='{png_data_uri(path)}' alt='{esc(path.stem)}'>"
            f"<figcaption>{esc(path.name)}</figcaption></figure>")


def plot_group_html(group: PlotGroup) -> str:
    figs = "".join(figure_html(p) for p in group.pngs) or "<p><i>no plots</i></p>"
    return f"<h3>{esc(group.title)}</h3><p class='sub'>{esc(group.subtitle)}</p><div class='plots'>{figs}</div>"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def simple_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain HTML table (cells escaped; numbers right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{'' if _is_number(c) else ' class=text'}>{esc(c)}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(title: str, meta: list[tuple[str, str]], notes: list[str], tables: list[Table],
                details: tuple[list[str], list[list[str]]], pretrain: tuple[list[str], list[list[str]]],
                groups: dict[str, list[PlotGroup]]) -> str:
    """The report page: run info, one results table per family, sweep details, pretraining runs, then the plots
    (``groups``: section title → plot groups)."""
    parts = [f"<h1>{esc(title)}</h1>",
             "<table class='meta'>" + "".join(f"<tr><th class='row'>{esc(k)}</th><td>{esc(v)}</td></tr>"
                                               for k, v in meta) + "</table>"]
    parts += [f"<div class='note'>{esc(n)}</div>" for n in notes]
    parts.append("<h2>Results (test set, val-selected heads)</h2>")
    parts.append("<p>Best value per column in <b>bold</b>, second <u>underlined</u>; ↑ higher is better, "
                 "↓ lower is better; – = not run.</p>")
    if not tables:
        parts.append("<p><i>No finished probe sweeps found.</i></p>")
    for t in tables:
        parts.append(f"<h3>{esc(t.title)}</h3>{legend_html(t)}{table_html(t)}")
    if details[1]:
        parts.append("<h2>Sweep details</h2>" + simple_table(*details))
    if pretrain[1]:
        parts.append("<h2>Pretraining runs</h2>" + simple_table(*pretrain))
    for section, plot_groups in groups.items():
        if plot_groups:
            parts.append(f"<h2>{esc(section)}</h2>" + "".join(plot_group_html(g) for g in plot_groups))
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
