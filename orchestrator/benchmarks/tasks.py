"""The metric vocabulary per task: which metrics each task reports, its primary metric, and which metrics are
lower-is-better. The task names themselves: :mod:`model.tasks`. Every benchmark spec, metric function, trial,
sweep record and report table reads these; nothing spells a metric set a second time.
"""
from __future__ import annotations

from typing import Literal

from model.tasks import Task

Mode = Literal["min", "max"]

PHASE_UNION_METRICS: tuple[str, ...] = ("f1_union", "jaccard_union")
"""Phase F1 / Jaccard in the union convention (SurgMotion's harness, the paper's tables): every phase benchmark."""

RELAXED_SUFFIX = "_relaxed"
RELAXED_BASE_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "jaccard", "f1")
RELAXED_METRICS: tuple[str, ...] = tuple(m + RELAXED_SUFFIX for m in RELAXED_BASE_METRICS)
"""Relaxed-boundary phase metrics, logged beside the unrelaxed ones for ``relaxed_boundary`` benchmarks
(Cholec80, M2CAI16); the edit score is never relaxed."""

METRICS: dict[Task, tuple[str, ...]] = {
    "phase": ("accuracy", "precision", "recall", "jaccard", "f1", "edit", *PHASE_UNION_METRICS),
    "action": ("accuracy", "f1"),
    "triplet": ("ap_i", "ap_v", "ap_t", "ap_iv", "ap_it", "ap_ivt"),
    "skill": ("mae", "spearman"),
    "segmentation": ("dice", "mean_dice", "mae"),
    "depth": ("rmse", "abs_rel", "sq_rel", "delta_1_1", "delta_1_25"),
}
"""The metrics each task reports, in table order."""

PRIMARY_METRIC: dict[Task, str] = {"phase": "f1", "action": "f1", "triplet": "ap_ivt", "skill": "spearman",
                                   "segmentation": "dice", "depth": "rmse"}
"""The default primary metric of each task (head selection on val; a benchmark spec may pick another). Phase:
the unrelaxed video-wise F1 (CAMMA's recommendation), also for the relaxed-boundary benchmarks."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "abs_rel", "sq_rel"})

FAMILY_TITLES: dict[Task, str] = {"phase": "Phase recognition", "action": "Action recognition",
                                  "triplet": "Triplet recognition", "skill": "Skill assessment",
                                  "segmentation": "Segmentation", "depth": "Depth estimation"}

CONVENTION_LABELS: dict[str, str] = {
    "unrelaxed": "unrelaxed video-wise: per video (precision / recall / Jaccard / F1: the mean over the phases "
                 "in its ground truth, absent phases skipped), then the mean over videos",
    "union": "union: unrelaxed, per video the mean over ground-truth ∪ predicted phases (a phase predicted but "
             "absent from the ground truth counts 0; SurgMotion's harness, the paper's tables); then the mean "
             "over videos",
    "relaxed": "relaxed (±10 s, Cholec80 protocol; M2CAI16's 8-phase rules for M2CAI16): late / early phase "
               "transitions within 10 s of a ground-truth boundary count as correct; video-wise, skip-absent",
}
"""Legend text of each phase-metric convention (the report prints it above a table that has such columns)."""


def metric_convention(task: str, metric: str) -> str | None:
    """The convention key (:data:`CONVENTION_LABELS`) of a phase metric; None for other tasks' metrics."""
    if task != "phase":
        return None
    if metric in RELAXED_METRICS:
        return "relaxed"
    return "union" if metric in PHASE_UNION_METRICS else "unrelaxed"


def metric_mode(metric: str) -> Mode:
    """``min`` for error metrics (:data:`LOWER_IS_BETTER`), else ``max``."""
    return "min" if metric in LOWER_IS_BETTER else "max"
