"""The task vocabulary: the six kinds of benchmark a probe is trained for, and how they group.

The one place the task names are spelled (``model/`` sits below ``orchestrator/``, and the probe heads and losses
need them); the metric vocabulary per task lives in :mod:`orchestrator.benchmarks.tasks`.
"""
from __future__ import annotations

from typing import Literal, get_args

Task = Literal["phase", "action", "triplet", "skill", "segmentation", "depth"]
TASKS: tuple[Task, ...] = get_args(Task)
CLASSIFICATION_TASKS: tuple[Task, ...] = ("phase", "action")   # one class per sample: softmax, integer labels
MULTILABEL_TASKS: tuple[Task, ...] = ("triplet",)              # several classes per sample: sigmoid, multi-hot
CLASS_TASKS: tuple[Task, ...] = CLASSIFICATION_TASKS + MULTILABEL_TASKS   # tasks with a class list
REGRESSION_TASKS: tuple[Task, ...] = ("skill",)                # one scalar per sample
DENSE_TASKS: tuple[Task, ...] = ("segmentation", "depth")      # one map per image
TIMED_TASKS: tuple[Task, ...] = ("phase", "triplet")           # samples are instants of a longer video


def check_task(task: str, what: str = "task") -> Task:
    """``task`` itself when it is one of :data:`TASKS`, else a ``ValueError`` ("unknown <what> ...") listing them."""
    if task not in TASKS:
        raise ValueError(f"unknown {what} {task!r}; choose from {list(TASKS)}")
    return task
