"""One probe-sweep trial (a Ray Tune function trainable) and the metric / prediction helpers around it.

A trial trains one head (``model.probes.build_probe``) with AdamW (lr, wd from the trial config; cosine decay
per step) on the cached TRAIN tokens, evaluates VAL after every epoch and ``tune.report``s the val metrics
(prefixed ``val_``; ``val_primary`` is the benchmark's primary metric) with a checkpoint of its head. Test data
never reaches a trial: the driver evaluates the chosen head on test once (:func:`evaluate_head`).

The train loop takes a ``tokens_fn(rows)`` so the same code serves cached features (index the array) and the
naive baseline of ``bench/bench_sweep.py`` (decode + run the backbone per batch).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from model.probes import build_probe, class_weights_from_labels, probe_loss, probe_outputs
from orchestrator.benchmarks import metrics as M

LOWER_IS_BETTER = ("rmse", "mae", "abs_rel", "sq_rel")
HEAD_FILE = "head.pt"
TokensFn = Callable[[np.ndarray], torch.Tensor]


def metric_mode(metric: str) -> str:
    """``min`` for error metrics (rmse / mae / abs_rel / sq_rel), else ``max``."""
    return "min" if metric in LOWER_IS_BETTER else "max"


class ProbeTask(BaseModel):
    """What a trial needs to know about the benchmark and the probe (picklable, small)."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    task: str
    num_classes: int
    primary_metric: str
    relaxed: bool = False
    sample_fps: float = 1.0
    embed_dim: int
    grid: list[int]
    crop: int
    probe_depth: int = 1
    probe_heads: int = 16
    epochs: int = 2
    batch_size: int = 16
    checkpoint_every: int = 5
    seed: int = 0
    threads: int = 1


class SplitArrays(BaseModel):
    """Labels + video ids of one split (tokens are fetched through a ``tokens_fn``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    labels: np.ndarray        # int [n] / multi-hot [n, C] / float [n] / dense targets [n, H, W]
    video: np.ndarray         # str [n]


def label_array(task: str, labels: list[Any], num_classes: int, targets: np.ndarray | None) -> np.ndarray:
    """Sample labels → the array the loss and the metrics use."""
    if task in ("segmentation", "depth"):
        if targets is None:
            raise ValueError(f"{task}: cached features have no dense targets")
        return targets.astype(np.float32)
    if task == "triplet":
        out = np.zeros((len(labels), num_classes), dtype=np.float32)
        for i, active in enumerate(labels):
            out[i, list(active or [])] = 1.0
        return out
    if task == "skill":
        return np.asarray(labels, dtype=np.float32)
    return np.asarray(labels, dtype=np.int64)


# -------------------------------------------------------------------------------------------------- metrics
def prediction_arrays(task: str, outputs: np.ndarray, labels: np.ndarray, video: np.ndarray) -> dict[str, np.ndarray]:
    """Head outputs (``probe_outputs``) → the NPZ arrays of experiments/score.py (docs/metrics.md)."""
    vid = np.asarray(video).astype(str)
    if task in ("phase", "action"):
        return {"video": vid, "target": labels.astype(np.int64), "pred": outputs.argmax(-1).astype(np.int64)}
    if task == "triplet":
        return {"video": vid, "target": labels.astype(np.int64), "score": outputs.astype(np.float32)}
    if task == "skill":
        return {"target": labels.astype(np.float32), "pred": outputs.reshape(-1).astype(np.float32)}
    if task == "segmentation":
        return {"target": (labels > 0.5), "score": outputs[:, 0].astype(np.float32)}
    return {"target": labels.astype(np.float32), "pred": outputs[:, 0].astype(np.float32)}


def triplet_maps(benchmark: str, num_classes: int) -> np.ndarray:
    if benchmark.lower().startswith("synthetic"):
        from orchestrator.benchmarks.synthetic_suite import suite_triplet_map

        return suite_triplet_map()
    return M.synthetic_triplet_maps()  # CholecT50's id layout; see docs/sweeps.md


def compute_metrics(pt: ProbeTask, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """The benchmark's metrics (orchestrator.benchmarks.metrics) from :func:`prediction_arrays` output."""
    a, task = arrays, pt.task
    if task == "phase":
        protocol = "m2cai16" if pt.num_classes == M.RELAXED_NUM_PHASES["m2cai16"] else "cholec80"
        return M.phase_metrics(a["video"], a["target"], a["pred"], pt.num_classes, relaxed=pt.relaxed,
                               fps=pt.sample_fps if pt.relaxed else None, protocol=protocol)  # type: ignore[arg-type]
    if task == "action":
        return M.action_metrics(a["target"], a["pred"], pt.num_classes)
    if task == "triplet":
        maps = a["maps"] if "maps" in a else triplet_maps(pt.benchmark, pt.num_classes)
        return M.triplet_metrics(a["video"], a["target"], a["score"], maps)
    if task == "skill":
        return M.skill_metrics(a["target"], a["pred"])
    if task == "segmentation":
        return M.segmentation_metrics(a["target"], a["score"])
    return M.depth_metrics(a["target"], a["pred"])


# ------------------------------------------------------------------------------------------------ training
def make_probe(pt: ProbeTask) -> torch.nn.Module:
    torch.manual_seed(pt.seed)
    return build_probe(pt.task, pt.embed_dim, pt.num_classes, grid=pt.grid, image_size=pt.crop,
                       depth=pt.probe_depth, num_heads=pt.probe_heads)


class Standardizer:
    """Skill targets are z-scored on train (probes.py asks the caller to); predictions are mapped back."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = mean, std or 1.0

    @classmethod
    def fit(cls, pt: ProbeTask, train_labels: np.ndarray) -> "Standardizer":
        if pt.task != "skill":
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
    if pt.task == "skill":
        out = std.inv(out)
    arrays = prediction_arrays(pt.task, out, split.labels, split.video)
    if pt.task == "triplet":  # score.py reads the component map from the file
        arrays["maps"] = triplet_maps(pt.benchmark, pt.num_classes).astype(np.int64)
    return compute_metrics(pt, arrays), arrays


LossFn = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def _loss_fn(pt: ProbeTask, train: SplitArrays, std: Standardizer) -> LossFn:
    weights = None
    if pt.task in ("phase", "action", "triplet"):
        weights = class_weights_from_labels(torch.tensor(np.array(train.labels)), pt.num_classes)

    def loss(logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        target = torch.from_numpy(np.array(train.labels[rows]))
        if pt.task == "skill":
            target = std.fwd(target)
        return probe_loss(pt.task, logits, target, weights)

    return loss


def _restore(head: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> int:
    """Continue from the trial's last checkpoint (Tune resume); returns the next epoch."""
    from ray import tune

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
    from ray import tune

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
        for start in range(0, n, pt.batch_size):
            rows = np.sort(order[start:start + pt.batch_size])
            loss = loss_fn(head(train_tokens(rows).float()), rows)
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
    """Tune function trainable over cached features (``data`` comes through ``tune.with_parameters``)."""
    assert pt is not None and data is not None
    tr, va = data["train_tokens"], data["val_tokens"]
    train_trial(config, pt, data["train"], data["val"], lambda r: torch.from_numpy(np.asarray(tr[r])),
                lambda r: torch.from_numpy(np.asarray(va[r])))


def load_head(pt: ProbeTask, checkpoint_dir: str | Path) -> tuple[torch.nn.Module, Standardizer]:
    """A trial's head (and its skill standardisation) from a checkpoint directory."""
    state = torch.load(Path(checkpoint_dir) / HEAD_FILE, map_location="cpu", weights_only=True)
    head = make_probe(pt)
    head.load_state_dict(state["head"])
    return head.eval(), Standardizer(float(state["std"][0]), float(state["std"][1]))
