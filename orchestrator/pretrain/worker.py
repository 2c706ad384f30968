"""``train_loop_per_worker`` for Ray Train: SurgMotion pretraining on clips streamed by Ray Data.

Per optimiser step: ``accum_steps`` micro-batches (DDP ``no_sync`` on all but the last), grad clipping, AdamW with
per-step warm-up + cosine lr, EMA update. Masks are drawn from a generator seeded by (seed, rank, step, micro) so
they need no saved state. Rank 0 logs to MLflow; every ``checkpoint_every`` steps all ranks report, rank 0 with a
checkpoint (which holds the data position). When a worker group starts, rank 0 hands the position of the
checkpoint it restored (0 for a fresh run) to the run's driver-node actor, which the ClipDatasource asks, before
any rank starts iterating: the data stream and the weights can never disagree, even if the job died between a
checkpoint and its commit, and wherever Ray plans the read.
"""
from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict

from model.jepa import DIAGNOSTIC_KEYS, LOSS_KEYS, SurgMotion, ema_momentum_at, surgmotion_param_groups
from model.vit import uint8_clip_to_float
from orchestrator.data.decode import DecodeFailureMonitor
from orchestrator.data.pipeline import ClipCollate
from orchestrator.pretrain.checkpoint import (
    load_init_weights,
    load_model_weights,
    load_train_state,
    save_checkpoint,
    set_rng_state,
)
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.metric_sink import set_position, sink_writer
from orchestrator.storage import resolve_storage
from orchestrator.tracking import MetricLogger

LOG_KEYS = LOSS_KEYS + DIAGNOSTIC_KEYS  # per-step values of the model's output dict that reach MLflow

# Ray Train V2 patches print() in workers (and tees it when MLflow wraps stdout): log instead, printed once.
log = logging.getLogger("surgmotion.pretrain")


class RunContext(BaseModel):
    """What the driver resolved for this run and every worker needs (besides the config itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str
    run_id: str
    total_steps: int
    epoch_size: int
    skipped_index: int = 0           # videos the clip index skipped (added to the decode skips in the metrics)
    init_model: str | None = None    # stage-1 weights in the run's storage (a path or bucket URI; fresh runs only)
    metric_sink: str | None = None   # the driver-node actor: metrics and data position (None: direct, position 0)


class WorkerConfig(BaseModel):
    """The ``train_loop_config`` of the TorchTrainer: the validated config and the run context."""

    model_config = ConfigDict(extra="forbid")

    cfg: PretrainConfig
    ctx: RunContext


def lr_at(step: int, total: int, base: float, final: float, warmup: int) -> float:
    """Linear warm-up from 0 to ``base`` over ``warmup`` steps, then cosine to ``final`` at ``total``."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))


def mask_generator(seed: int, rank: int, step: int, micro: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, rank, step, micro]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def fill_invalid(clips: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Replace clips that failed to decode by valid clips of the same batch; return the number replaced."""
    bad = (ok == 0).nonzero().flatten()
    good = ok.nonzero().flatten()
    if len(bad) and len(good):
        clips[bad] = clips[good[torch.arange(len(bad)) % len(good)]]
    return clips, int(len(bad))


class Worker:
    """State of one training worker; ``run()`` is the whole loop."""

    def __init__(self, cfg: PretrainConfig, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        tc = ray.train.get_context()
        self.rank, self.world = tc.get_world_rank(), tc.get_world_size()
        self.device = ray.train.torch.get_device()
        if cfg.scaling.torch_threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.scaling.torch_threads)
        self.bf16 = self.device.type == "cuda" and cfg.train.precision in ("auto", "bf16")
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.model = SurgMotion(cfg.model).to(self.device)
        fused = cfg.optim.fused if cfg.optim.fused is not None else self.device.type == "cuda"
        self.opt = torch.optim.AdamW(surgmotion_param_groups(self.model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                     betas=cfg.optim.betas, fused=fused)
        self.step, self.samples, self.skipped_decode = 0, 0, 0
        self.decode_health = DecodeFailureMonitor(cfg.data.max_decode_failure_rate, cfg.data.decode_failure_window)
        self._restore(ray.train.get_checkpoint())
        if self.rank == 0 and ctx.metric_sink:  # the datasource streams from here: the restored checkpoint's
            set_position(ctx.metric_sink, self.samples)
        if self.world > 1:
            dist.barrier()  # no rank starts the data execution before the actor holds the position
        self.net: Any = ray.train.torch.prepare_model(self.model) if self.world > 1 else self.model  # DDP / compiled
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.logger = None
        if self.rank == 0:
            writer = sink_writer(ctx.metric_sink) if ctx.metric_sink else None
            self.logger = MetricLogger(ctx.tracking_uri, ctx.run_id, writer=writer)

    def _restore(self, checkpoint: Any) -> None:
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                load_model_weights(self.model, Path(d))
                state = load_train_state(Path(d))
            self.opt.load_state_dict(state["optimizer"])
            self.step, self.samples = int(state["step"]), int(state["samples"])
            self.skipped_decode = int(state.get("skipped_decode", 0))
            set_rng_state(state["rng"])
            if self.rank == 0:
                log.info(f"[pretrain] resumed from step {self.step} ({self.samples} samples seen)")
        elif self.ctx.init_model:
            with resolve_storage(self.ctx.init_model).local_copy() as weights:
                loaded = load_init_weights(self.model, weights)
            if self.rank == 0:
                log.info(f"[pretrain] initialised weights from {self.ctx.init_model} ({loaded})")

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        shard = ray.train.get_dataset_shard("train")
        # The stream starts at the restored checkpoint's position (written by rank 0 in __init__), so every row is new.
        yield from shard.iter_torch_batches(batch_size=self.cfg.train.batch_per_worker, collate_fn=ClipCollate(),
                                            prefetch_batches=self.cfg.data.prefetch_batches, drop_last=True)

    def micro_step(self, batch: dict[str, torch.Tensor], micro: int, sync: bool) -> dict[str, float]:
        """Forward + backward of one micro-batch (gradients accumulate; DDP syncs only when ``sync``)."""
        failed: Sequence[str] = batch.get("failed", [""] * len(batch["ok"]))  # type: ignore[assignment]
        self.decode_health.update(batch["ok"].numpy(), failed)
        clips, bad = fill_invalid(batch["clip"], batch["ok"])
        self.skipped_decode += bad
        clip = uint8_clip_to_float(clips.to(self.device, non_blocking=True))
        gen = mask_generator(self.cfg.train.seed, self.rank, self.step, micro)
        no_sync = self.net.no_sync() if (self.world > 1 and not sync) else contextlib.nullcontext()
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with no_sync:
            with amp:
                out = self.net(clip, generator=gen)
            (out["loss"] / self.cfg.accum_steps).backward()
        return {k: float(out[k].detach()) for k in LOG_KEYS}

    def optimizer_step(self) -> tuple[float, float, float]:
        o, total = self.cfg.optim, self.ctx.total_steps
        warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_fraction * total)
        lr = lr_at(self.step, total, o.lr, o.final_lr, warmup)
        for g in self.opt.param_groups:
            g["lr"] = lr
        grad_norm = 0.0
        if o.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(list(self.model.online_parameters()), o.grad_clip))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        momentum = ema_momentum_at(self.step, total, self.cfg.model.ema_momentum, self.cfg.model.ema_final)
        self.model.update_target(momentum)
        self.step += 1
        self.samples += self.cfg.train.global_batch
        return lr, grad_norm, momentum

    def reduce(self, values: dict[str, float]) -> dict[str, float]:
        """Mean over ranks of the loss terms, sum of the skip counts (all ranks call this at the same steps)."""
        if self.world == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        out = dict(zip(values, (t / self.world).tolist()))
        out["skipped_decode"] = float(t[list(values).index("skipped_decode")])
        return out

    def report(self, metrics: dict[str, float], final: bool = False) -> None:
        if self.logger is not None:  # rank 0
            self.logger.flush()  # metrics up to the checkpoint are durable before it commits
            with tempfile.TemporaryDirectory() as d:
                state = {"step": self.step, "samples": self.samples, "skipped_decode": self.skipped_decode,
                         "epoch": self.samples // self.ctx.epoch_size}
                save_checkpoint(Path(d), self.model, self.opt, state, self.cfg.model_dump(mode="json"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            log.info(f"[pretrain] checkpoint at step {self.step}{' (final)' if final else ''}")
        else:
            ray.train.report(metrics, checkpoint=None)

    def accumulate(self, it: Iterator[dict[str, torch.Tensor]]) -> tuple[dict[str, float], int, float] | None:
        """One optimiser step's micro-batches: ``accum_steps`` forward/backward passes (DDP syncs on the last).
        Returns (mean loss terms, clips seen, seconds waiting for data), or None when the stream ended first."""
        n = self.cfg.accum_steps
        losses: dict[str, float] = {k: 0.0 for k in LOG_KEYS}
        clips, waited = 0, 0.0
        for micro in range(n):
            t0 = time.perf_counter()
            batch = next(it, None)
            waited += time.perf_counter() - t0
            if batch is None:
                return None
            out = self.micro_step(batch, micro, sync=micro == n - 1)
            losses = {k: losses[k] + out[k] / n for k in LOG_KEYS}
            clips += len(batch["index"])
        return losses, clips, waited

    def run(self) -> None:
        cfg, total = self.cfg, self.ctx.total_steps
        end = min(total, cfg.train.stop_after_step or total)
        it, t_last = self.batches(), time.perf_counter()
        while self.step < end:
            got = self.accumulate(it)
            if got is None:
                break
            losses, clips, waited = got
            lr, gnorm, momentum = self.optimizer_step()
            now = time.perf_counter()
            self.log({**losses, "lr": lr, "grad_norm": gnorm, "ema_momentum": momentum,
                      "clips_per_s": clips * self.world / (now - t_last), "data_wait_frac": waited / (now - t_last),
                      "skipped_decode": float(self.skipped_decode)})
            t_last = now
            if self.step % cfg.train.checkpoint_every == 0 and self.step < end:
                self.report({"step": self.step, "loss": losses["loss"]})
        self.report({"step": self.step}, final=self.step >= total)
        if self.logger:
            self.logger.flush()

    def log(self, stats: dict[str, float]) -> None:
        stats = self.reduce(stats)
        if self.logger is None:  # not rank 0
            return
        stats["skipped_videos"] = stats["skipped_decode"] + self.ctx.skipped_index
        stats["epoch"] = float(self.samples / self.ctx.epoch_size)
        self.logger.log(stats, step=self.step)
        if self.step % self.cfg.train.log_every == 0 or self.step == self.ctx.total_steps:
            log.info(f"[pretrain] step {self.step}/{self.ctx.total_steps} loss {stats['loss']:.4f} "
                     f"(motion {stats['loss_motion']:.4f} st {stats['loss_st']:.4f} var {stats['loss_var']:.4f}) "
                     f"lr {stats['lr']:.2e} {stats['clips_per_s']:.2f} clips/s "
                     f"data wait {stats['data_wait_frac']:.0%}")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point handed to ``TorchTrainer``: ``config`` is a :class:`WorkerConfig` dump."""
    wc = WorkerConfig.model_validate(config)
    Worker(wc.cfg, wc.ctx).run()
