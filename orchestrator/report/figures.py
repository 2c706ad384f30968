"""matplotlib figures on their own Agg canvas (no pyplot state, no global backend switch), saved as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 100


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib (~1 s import), at draw time
    from matplotlib.figure import Figure  # deferred: matplotlib, as above

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, facecolor="white", bbox_inches="tight")  # legends never clipped
    return path
