"""One probe-sweep trial (a Ray Tune function trainable) and the metric / prediction helpers around it.

A trial trains one head (``model.probes.build_probe``) with AdamW (lr, wd from the trial config; cosine decay
per step) on the cached TRAIN tokens, evaluates VAL after every epoch and ``tune.report``s the val metrics
(prefixed ``val_``; ``val_primary`` is the benchmark's primary metric) with a checkpoint of its head. Test data
never reaches a trial: the driver evaluates the chosen head on test once (:func:`evaluate_head`).

The train loop takes a ``tokens_fn(rows)`` so the same code serves cached features (index the array) and the
naive baseline of ``bench/bench_sweep.py`` (decode + run the backbone per batch). With augmented train views
(``features.train_views`` = K > 0) the train tokens are a :class:`ViewTokens`: every epoch each train sample uses
one of its K+1 stored views (:func:`epoch_views`, seeded by (trial seed, epoch)); val stays the centre view.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from ray import tune

from model.probe_losses import class_weights_from_labels, probe_loss, probe_outputs
from model.probes import DenseHead, build_probe
from model.tasks import CLASS_TASKS, CLASSIFICATION_TASKS, DENSE_TASKS, MULTILABEL_TASKS, REGRESSION_TASKS, Task
from orchestrator.benchmarks.metrics import ScoreOptions, score_arrays
from orchestrator.benchmarks.metrics_triplet import cholect50_triplet_maps
from orchestrator.benchmarks.spec import BenchmarkSpec
from orchestrator.probe.config import BackboneInfo, SweepConfig
from orchestrator.synthetic.specs import SYNTHETIC_BENCHMARKS, suite_triplet_map

HEAD_FILE = "head.pt"
TokensFn = Callable[[np.ndarray], torch.Tensor]
VIEW_STREAM = 1  # third seed word of the view draw: independent of the epoch's shuffling ([seed, epoch])


class ProbeTask(BaseModel):
    """What a trial needs to know about the benchmark and the probe (picklable, small): :meth:`from_config`."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    task: Task
    num_classes: int
    primary_metric: str
    relaxed: bool = False
    sample_fps: float = 1.0
    embed_dim: int
    grid: list[int]
    crop: int
    probe_depth: int = 1
    probe_heads: int = 16
    levels: int = 1                 # token levels of the cached features (dense tasks: FeatureConfig.levels)
    dense_head: DenseHead = "dpt"
    dense_hidden: int = 128
    epochs: int = 2
    batch_size: int = 16
    checkpoint_every: int = 5
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_config(cls, cfg: SweepConfig, spec: BenchmarkSpec, info: BackboneInfo) -> ProbeTask:
        """The probe task of one (backbone, benchmark) under a sweep config: the one place it is assembled."""
        return cls(benchmark=spec.name, task=spec.task, num_classes=spec.num_classes,
                   primary_metric=spec.primary_metric, relaxed=spec.relaxed_boundary,
                   sample_fps=cfg.features.sample_fps or spec.sample_fps, embed_dim=info.embed_dim, grid=info.grid,
                   crop=cfg.features.crop, probe_depth=cfg.probe.depth, probe_heads=cfg.probe.heads,
                   levels=cfg.features.levels(spec, info), dense_head=cfg.probe.dense_head,
                   dense_hidden=cfg.probe.dense_hidden,
                   epochs=cfg.epochs, batch_size=cfg.batch_size, checkpoint_every=cfg.checkpoint_every,
                   seed=cfg.seed, threads=max(1, int(cfg.cpus_per_trial)))

    def score_options(self) -> ScoreOptions:
        """The metric options of this benchmark: unrelaxed phase metrics always (the primary), plus the relaxed
        ones (``*_relaxed``, window 10 s at the clip rate) where the spec asks for them."""
        return ScoreOptions(num_classes=self.num_classes if self.task in CLASS_TASKS else None,
                            relaxed=self.relaxed, fps=self.sample_fps if self.relaxed else None)


class SplitArrays(BaseModel):
    """Labels + video ids of one split (tokens are fetched through a ``tokens_fn``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    labels: np.ndarray        # int [n] / multi-hot [n, C] / float [n] / dense targets [n, H, W]
    video: np.ndarray         # str [n]


def label_array(task: str, labels: list[Any], num_classes: int, targets: np.ndarray | None) -> np.ndarray:
    """Sample labels → the array the loss and the metrics use."""
    if task in DENSE_TASKS:
        if targets is None:
            raise ValueError(f"{task}: cached features have no dense targets")
        return targets.astype(np.float32)
    if task in MULTILABEL_TASKS:
        out = np.zeros((len(labels), num_classes), dtype=np.float32)
        for i, active in enumerate(labels):
            out[i, list(active or [])] = 1.0
        return out
    if task in REGRESSION_TASKS:
        return np.asarray(labels, dtype=np.float32)
    return np.asarray(labels, dtype=np.int64)


# -------------------------------------------------------------------------------------------------- metrics
def prediction_arrays(task: str, outputs: np.ndarray, labels: np.ndarray, video: np.ndarray) -> dict[str, np.ndarray]:
    """Head outputs (``probe_outputs``) → the NPZ arrays of experiments/score.py (docs/metrics.md)."""
    vid = np.asarray(video).astype(str)
    if task in CLASSIFICATION_TASKS:
        return {"video": vid, "target": labels.astype(np.int64), "pred": outputs.argmax(-1).astype(np.int64)}
    if task in MULTILABEL_TASKS:
        return {"video": vid, "target": labels.astype(np.int64), "score": outputs.astype(np.float32)}
    if task in REGRESSION_TASKS:
        return {"target": labels.astype(np.float32), "pred": outputs.reshape(-1).astype(np.float32)}
    if task == "segmentation":
        return {"target": (labels > 0.5), "score": outputs[:, 0].astype(np.float32)}
    return {"target": labels.astype(np.float32), "pred": outputs[:, 0].astype(np.float32)}


def triplet_maps(benchmark: str) -> np.ndarray:
    """The triplet → component map of a benchmark: the suite's for synthetic benchmarks, else the official
    CholecT50 table (package data; docs/metrics.md §3)."""
    return suite_triplet_map() if benchmark in SYNTHETIC_BENCHMARKS else cholect50_triplet_maps()


# ------------------------------------------------------------------------------------------------ training
def make_probe(pt: ProbeTask) -> torch.nn.Module:
    torch.manual_seed(pt.seed)
    return build_probe(pt.task, pt.embed_dim, pt.num_classes, grid=pt.grid, image_size=pt.crop,
                       depth=pt.probe_depth, num_heads=pt.probe_heads, hidden_dim=pt.dense_hidden, levels=pt.levels,
                       dense_head=pt.dense_head)


SCALED_TASKS = (*REGRESSION_TASKS, "depth")  # the tasks whose targets the head sees standardised


class Standardizer:
    """Skill targets are z-scored on train (probes.py asks the caller to); depth maps are divided by the mean valid
    (> 0) train depth, so that the head predicts values near 1 instead of tens of mm (0 = invalid stays 0);
    predictions are mapped back before any metric."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = mean, std or 1.0

    @classmethod
    def fit(cls, pt: ProbeTask, train_labels: np.ndarray) -> Standardizer:
        if pt.task == "depth":
            valid = train_labels[train_labels > 0]
            return cls(0.0, float(valid.mean()) if valid.size else 1.0)
        if pt.task not in REGRESSION_TASKS:
            return cls()
        return cls(float(train_labels.mean()), float(train_labels.std()))

    def fwd(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def inv(self, out: np.ndarray) -> np.ndarray:
        return out * self.std + self.mean


def predict(pt: ProbeTask, head: torch.nn.Module, tokens_fn: TokensFn, n: int) -> np.ndarray:
    """Head outputs (``probe_outputs``: probabilities / scores / maps) for rows 0..n-1."""
    head.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, n, pt.batch_size):
            rows = np.arange(start, min(n, start + pt.batch_size))
            outs.append(probe_outputs(pt.task, head(tokens_fn(rows).float())).numpy())
    return np.concatenate(outs)


def evaluate_head(pt: ProbeTask, head: torch.nn.Module, tokens_fn: TokensFn, split: SplitArrays,
                  std: Standardizer) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics + prediction arrays of a head on one split."""
    out = predict(pt, head, tokens_fn, len(split.labels))
    if pt.task in SCALED_TASKS:
        out = std.inv(out)
    arrays = prediction_arrays(pt.task, out, split.labels, split.video)
    if pt.task in MULTILABEL_TASKS:  # score.py reads the component map from the file
        arrays["maps"] = triplet_maps(pt.benchmark).astype(np.int64)
    return score_arrays(pt.task, arrays, pt.score_options()), arrays


LossFn = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def _loss_fn(pt: ProbeTask, train: SplitArrays, std: Standardizer) -> LossFn:
    weights = None
    if pt.task in CLASS_TASKS:
        weights = class_weights_from_labels(torch.tensor(np.array(train.labels)), pt.num_classes)

    def loss(logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        target = torch.from_numpy(np.array(train.labels[rows]))
        if pt.task in SCALED_TASKS:
            target = std.fwd(target)
        return probe_loss(pt.task, logits, target, weights)

    return loss


def epoch_views(n: int, num_views: int, seed: int, epoch: int) -> np.ndarray:
    """Which stored view (0 = centre, 1..K = augmented) each of ``n`` train samples uses in ``epoch``: uniform
    over ``num_views`` = K+1, seeded by (``seed``, ``epoch``) only."""
    if num_views <= 1:
        return np.zeros(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch, VIEW_STREAM]).integers(0, num_views, n)


class ViewTokens:
    """Train ``tokens_fn`` over the K+1 stored views of the train split (arrays ``[n, N, D]``, centre first):
    called directly it serves the centre view; :meth:`for_epoch` serves each row from its view of that epoch."""

    def __init__(self, views: Sequence[np.ndarray], seed: int) -> None:
        self.views, self.seed = list(views), seed

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.views[0][rows]))

    def for_epoch(self, epoch: int) -> TokensFn:
        choice = epoch_views(len(self.views[0]), len(self.views), self.seed, epoch)

        def tokens(rows: np.ndarray) -> torch.Tensor:
            c = choice[rows]
            out = np.empty((len(rows), *self.views[0].shape[1:]), dtype=self.views[0].dtype)
            for v in np.unique(c):
                out[c == v] = self.views[int(v)][rows[c == v]]
            return torch.from_numpy(out)

        return tokens


def _restore(head: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> int:
    """Continue from the trial's last checkpoint (Tune resume); returns the next epoch."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        state = torch.load(Path(d) / HEAD_FILE, map_location="cpu", weights_only=True)
    head.load_state_dict(state["head"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    return int(state["epoch"]) + 1


def train_trial(config: dict[str, Any], pt: ProbeTask, train: SplitArrays, val: SplitArrays,
                train_tokens: TokensFn, val_tokens: TokensFn) -> None:
    """The body of a Tune trial: epochs of AdamW on train, val metrics + head checkpoint reported per epoch."""
    torch.set_num_threads(max(1, pt.threads))
    head, std = make_probe(pt), Standardizer.fit(pt, train.labels)
    loss_fn = _loss_fn(pt, train, std)
    n = len(train.labels)
    steps = pt.epochs * math.ceil(n / pt.batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=float(config["lr"]), weight_decay=float(config["wd"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    for epoch in range(_restore(head, opt, sched), pt.epochs):
        head.train()
        order, total = np.random.default_rng([pt.seed, epoch]).permutation(n), 0.0
        epoch_tokens = train_tokens.for_epoch(epoch) if isinstance(train_tokens, ViewTokens) else train_tokens
        for start in range(0, n, pt.batch_size):
            rows = np.sort(order[start:start + pt.batch_size])
            loss = loss_fn(head(epoch_tokens(rows).float()), rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(rows)
        metrics, _ = evaluate_head(pt, head, val_tokens, val, std)
        report = {f"val_{k}": float(v) for k, v in metrics.items()}
        report.update(val_primary=float(metrics[pt.primary_metric]), train_loss=total / n, epoch=epoch)
        if (epoch + 1) % pt.checkpoint_every and epoch + 1 < pt.epochs:
            tune.report(report)
            continue
        with tempfile.TemporaryDirectory() as d:  # every checkpoint_every epochs and at the last one
            torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch, "std": [std.mean, std.std]}, Path(d) / HEAD_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))


def cached_trainable(config: dict[str, Any], pt: ProbeTask | None = None, data: dict[str, Any] | None = None) -> None:
    """Tune function trainable over cached features (``data`` comes through ``tune.with_parameters``; its
    ``train_views``, the augmented train views, may be absent or empty)."""
    assert pt is not None and data is not None
    tr, va, views = data["train_tokens"], data["val_tokens"], list(data.get("train_views") or [])
    train_fn: TokensFn = ViewTokens([tr, *views], pt.seed) if views else lambda r: torch.from_numpy(np.asarray(tr[r]))
    train_trial(config, pt, data["train"], data["val"], train_fn, lambda r: torch.from_numpy(np.asarray(va[r])))


def load_head(pt: ProbeTask, checkpoint_dir: str | Path) -> tuple[torch.nn.Module, Standardizer]:
    """A trial's head (and its skill standardisation) from a checkpoint directory."""
    state = torch.load(Path(checkpoint_dir) / HEAD_FILE, map_location="cpu", weights_only=True)
    head = make_probe(pt)
    head.load_state_dict(state["head"])
    return head.eval(), Standardizer(float(state["std"][0]), float(state["std"][1]))
