"""Ray Data pipeline for pretraining: clip descriptors → decord decode in ``map_batches`` → Train workers.

The descriptors come from :class:`ClipDatasource`, whose read tasks are generated when an execution starts.
At that moment it asks the run's actor (:mod:`orchestrator.pretrain.metric_sink`, on the driver's node) for the
data position (samples consumed up to the checkpoint the workers restored; rank 0 sets it before any rank
iterates), so a job re-run or a worker group restarted by ``FailureConfig`` streams from
the checkpoint on instead of from the beginning.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.data import Dataset, TaskPoolStrategy
from ray.data.block import BlockMetadata
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.data.datasource import Datasource, ReadTask

from orchestrator.data.config import DataConfig
from orchestrator.data.decode import decode_batch
from orchestrator.data.sampling import SamplingPlan, descriptors

MAX_READ_TASKS = 2000
_PLANS: dict[str, SamplingPlan] = {}


def _plan(ref: ray.ObjectRef) -> SamplingPlan:
    key = ref.hex()
    if key not in _PLANS:
        _PLANS[key] = ray.get(ref)
    return _PLANS[key]


def _read_rows(plan_ref: ray.ObjectRef, seed: int, epoch_size: int, first: int, last: int,
               block: int) -> Iterable[pa.Table]:
    rows = descriptors(_plan(plan_ref), seed, epoch_size, first, last, block)
    rows["path"] = rows["path"].astype(str)
    yield pa.table(rows)


class ClipDatasource(Datasource):
    """Descriptor rows for global sample indices [position, total), position read when an execution starts."""

    def __init__(self, plan_ref: ray.ObjectRef, seed: int, epoch_size: int, total: int,
                 position_actor: str | None = None, block_rows: int = 64) -> None:
        super().__init__()
        self.plan_ref, self.seed, self.epoch_size = plan_ref, seed, epoch_size
        self.total, self.position_actor, self.block_rows = total, position_actor, block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def first_index(self) -> int:
        """The first sample to stream: the position held by the named actor (any actor with a ``position()``
        method; the pretraining driver's is :class:`orchestrator.pretrain.metric_sink.MetricSink`), 0 without."""
        if not self.position_actor:
            return 0
        samples: Any = ray.get(ray.get_actor(self.position_actor).position.remote())
        return min(self.total, int(samples))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: object | None = None) -> list[ReadTask]:
        first = self.first_index()
        remaining = self.total - first
        rows = max(self.block_rows, math.ceil(remaining / MAX_READ_TASKS))
        tasks = []
        for lo in range(first, self.total, rows):
            hi = min(self.total, lo + rows)
            meta = BlockMetadata(num_rows=hi - lo, size_bytes=(hi - lo) * 128, input_files=None, exec_stats=None)
            fn = partial(_read_rows, self.plan_ref, self.seed, self.epoch_size, lo, hi, self.block_rows)
            tasks.append(ReadTask(fn, meta, per_task_row_limit=per_task_row_limit))
        return tasks


def clip_dataset(plan: SamplingPlan, cfg: DataConfig, *, seed: int, epoch_size: int, total: int,
                 position_actor: str | None = None, train: bool = True) -> Dataset:
    """The pretraining dataset of global samples [position, total): rows ``index`` (int64), ``ok`` (uint8),
    ``clip`` (uint8 ``[T, crop, crop, 3]``); clip geometry, decode tasks, CPUs and batch sizes from ``cfg``."""
    source = ClipDatasource(ray.put(plan), seed, epoch_size, total, position_actor, cfg.read_block_rows)
    ds = ray.data.read_datasource(source)
    return ds.map_batches(decode_batch, fn_kwargs={"cfg": cfg, "train": train}, batch_size=cfg.decode_batch,
                          batch_format="numpy", compute=TaskPoolStrategy(size=cfg.decode_tasks),
                          num_cpus=cfg.decode_cpus)


class ClipCollate(NumpyBatchCollateFn):
    """``iter_torch_batches`` collate: numpy columns → CPU tensors (the train loop moves them to its device)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:  # type: ignore[override]
        # (ray types the return as an unbound TypeVar)
        # Arrow-backed arrays are read-only; torch needs writable memory, so copy (one memcpy per column).
        # Text columns (``failed``: why a clip failed to decode) stay a list of str.
        return {k: [str(x) for x in v] if np.asarray(v).dtype.kind in "OUS"
                else torch.from_numpy(np.array(v, copy=True)) for k, v in batch.items()}
