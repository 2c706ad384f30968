"""The metric vocabulary per task: which metrics each task reports, its primary metric, and which metrics are
lower-is-better. The task names themselves: :mod:`model.tasks`. Every benchmark spec, metric function, trial,
sweep record and report table reads these; nothing spells a metric set a second time.
"""
from __future__ import annotations

from typing import Literal

from model.tasks import Task

Mode = Literal["min", "max"]

METRICS: dict[Task, tuple[str, ...]] = {
    "phase": ("accuracy", "precision", "recall", "jaccard", "f1", "edit"),
    "action": ("accuracy", "f1"),
    "triplet": ("ap_i", "ap_v", "ap_t", "ap_iv", "ap_it", "ap_ivt"),
    "skill": ("mae", "spearman"),
    "segmentation": ("dice", "mean_dice", "mae"),
    "depth": ("rmse", "abs_rel", "sq_rel", "delta_1_1", "delta_1_25"),
}
"""The metrics each task reports, in table order."""

PRIMARY_METRIC: dict[Task, str] = {"phase": "f1", "action": "f1", "triplet": "ap_ivt", "skill": "spearman",
                                   "segmentation": "dice", "depth": "rmse"}
"""The default primary metric of each task (head selection on val; a benchmark spec may pick another)."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "abs_rel", "sq_rel"})

FAMILY_TITLES: dict[Task, str] = {"phase": "Phase recognition", "action": "Action recognition",
                                  "triplet": "Triplet recognition", "skill": "Skill assessment",
                                  "segmentation": "Segmentation", "depth": "Depth estimation"}

def metric_mode(metric: str) -> Mode:
    """``min`` for error metrics (:data:`LOWER_IS_BETTER`), else ``max``."""
    return "min" if metric in LOWER_IS_BETTER else "max"
