"""Frozen-backbone features in a content-addressed on-disk cache (extraction with Ray Data, an actor pool).

**Key.** ``sha256`` over everything that determines the stored arrays: ``backbone.identity()`` (weights, kind,
architecture, normalisation), the benchmark name and task, the split, every sample (id, video id, source, time,
target path, label), the preprocessing (:class:`orchestrator.data.views.Preprocessing`: frames, sample fps, short
side, crop, view; for an augmented train view also its index and the ``augment`` settings) and ``FORMAT_VERSION``.
Anything else changes nothing, so a hit is always safe to serve. The centre view hashes exactly as before augmented
views existed (``Preprocessing.key_dict`` leaves their None fields out), so older caches stay valid.

**Layout** of ``<cache>/<key>/``::

    shard_00000.npy   fp16 tokens [n_i, N, D] of the rows in rows_00000.npy (shards are written as batches arrive)
    rows_00000.npy    int64 row numbers (index into the split's sample list) of that shard
    targets_00000.npy float32 [n_i, crop, crop] dense targets (segmentation / depth only)
    index.json        :class:`CacheIndex`, written LAST (atomic rename): its presence marks a complete entry

An entry is written into ``<cache>/.tmp-<key>-<pid>`` and renamed to ``<cache>/<key>`` only when complete, so a
crashed or concurrent extraction never serves a partial entry; a directory without ``index.json`` is ignored
(and replaced on the next extraction).

**Views** (which frames a sample reads, how targets are resized): :mod:`orchestrator.data.views`. Eval view:
short side resized to ``short_side``, centre crop ``crop``; dense targets are stored alongside (``targets_*.npy``).
With ``features.train_views`` = K > 0 (clip-level tasks), TRAIN also gets K entries of augmented views
(:mod:`orchestrator.data.augment`), extracted in the same pass; :func:`ensure_features` returns them in
``FeatureSet.views``. Inside this module an entry is named by :func:`entry_name` (``train``, ``train@1``, ...).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from pydantic import BaseModel, ConfigDict

from model.backbones.factory import build_backbone
from model.tasks import DENSE_TASKS
from orchestrator.benchmarks.spec import BenchmarkSpec, Sample
from orchestrator.data.views import ClipReader, Preprocessing
from orchestrator.probe.cache_store import INDEX_FILE, CacheStore
from orchestrator.probe.config import BackboneInfo, FeatureConfig

FORMAT_VERSION = 1
SPAN_KEYS = ("start_s", "end_s", "start_frame", "end_frame")  # segment of a longer video (AVOS, generic clips)
EXTRACTION_COUNTER: dict[str, int] = {"extractions": 0}  # driver-side; tests assert cache hits with it


class CacheIndex(BaseModel):
    """``index.json`` of one complete cache entry."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    key: str
    backbone: str
    backbone_identity: str
    benchmark: str
    task: str
    split: str
    preprocessing: Preprocessing
    num_samples: int
    token_shape: list[int]          # [N, D]; with L levels [L*N, D], level-major
    levels: int = 1                 # token levels (FeatureConfig.levels: dense tasks 4 by default)
    token_grid: list[int]           # [Tt, Hp, Wp]
    shards: list[str]
    sample_ids: list[str]
    video_ids: list[str]
    times: list[float | None]
    labels: list[Any]
    seconds: float = 0.0


class FeatureSet(BaseModel):
    """One split's cached features, in sample order (``tokens`` fp16 [n, N, D])."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: CacheIndex
    tokens: np.ndarray
    targets: np.ndarray | None = None
    views: list[np.ndarray] = []    # TRAIN only: tokens of augmented views 1..K, same rows (features.train_views)
    view_keys: list[str] = []       # their cache keys

    @property
    def video_ids(self) -> list[str]:
        return self.index.video_ids


def entry_name(split: str, view: int = 0) -> str:
    """``train`` for the centre view of a split, ``train@2`` for its augmented view 2."""
    return split if view == 0 else f"{split}@{view}"


def parse_entry(name: str) -> tuple[str, int]:
    """:func:`entry_name` inverted: (split, view)."""
    split, _, view = name.partition("@")
    return split, int(view or 0)


def cache_key(backbone_identity: str, spec: BenchmarkSpec, split: str, samples: list[Sample],
              cfg: FeatureConfig, view: int = 0, levels: int = 1) -> str:
    """sha256 of everything that determines the features of ``samples`` in ``view`` (0: the centre view) with
    ``levels`` token levels (see the module docstring)."""
    h = hashlib.sha256()
    head: dict[str, Any] = {"v": FORMAT_VERSION, "backbone": backbone_identity, "benchmark": spec.name,
                            "task": spec.task, "split": split, "pre": cfg.preprocessing(spec, view).key_dict()}
    if levels > 1:  # single-level entries hash as before multi-level features existed
        head["levels"] = levels
    h.update(json.dumps(head, sort_keys=True).encode())
    for s in samples:
        meta = [s.meta.get(k) for k in ("depth_scale_mm", "mask_threshold", "frames_fps", *SPAN_KEYS)]
        h.update(json.dumps([s.sample_id, s.video_id, s.source, s.time_s, s.target_path, s.label, meta],
                            default=str).encode())
    return h.hexdigest()


class ClipEncoder:
    """``map_batches`` callable class: builds the backbone once per actor; descriptor rows → fp16 tokens. A row's
    ``view`` picks its preprocessing: 0 the centre view ``pre``, k > 0 ``views[k]`` (an augmented train view);
    ``levels`` > 1 stores ``Backbone.forward_levels`` tokens."""

    def __init__(self, backbone: str, task: str, pre: Preprocessing, threads: int = 1,
                 views: dict[int, Preprocessing] | None = None, levels: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.backbone = build_backbone(backbone).to(self.device)
        self.reader = ClipReader(task, pre)
        self.task, self.views, self.levels = task, {0: pre, **(views or {})}, levels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spans = np.stack([batch[k] for k in SPAN_KEYS], axis=1).astype(np.float64)
        clips = np.stack([self.reader.clip(str(s), float(t), float(f), tuple(sp), str(i), self.views[int(v)])
                          for s, t, f, sp, i, v in zip(batch["source"], batch["time_s"], batch["frames_fps"], spans,
                                                       batch["sample_id"], batch["view"])])
        x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).to(self.device)  # [B, C, T, H, W] uint8
        out = {"row": np.asarray(batch["row"], dtype=np.int64),
               "tokens": self.backbone.forward_levels(x, self.levels).to(torch.float16).cpu().numpy()}
        if self.task in DENSE_TASKS:
            out["target"] = np.stack([self.reader.target(str(p), float(sc), float(th)) for p, sc, th in
                                      zip(batch["target"], batch["scale"], batch["threshold"])])
        return out


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def descriptors(samples: list[Sample], view: int = 0, offset: int = 0) -> list[dict[str, Any]]:
    """Plain rows for ``ray.data.from_items`` (no None: NaN / "" stand in); ``row`` counts from ``offset``."""
    return [{"row": offset + i, "sample_id": s.sample_id, "view": view, "source": s.source,
             "time_s": _num(s.time_s), "target": s.target_path or "",
             "scale": float(s.meta.get("depth_scale_mm", 1.0)), "threshold": float(s.meta.get("mask_threshold", 128)),
             "frames_fps": _num(s.meta.get("frames_fps")), **{k: _num(s.meta.get(k)) for k in SPAN_KEYS}}
            for i, s in enumerate(samples)]


# ------------------------------------------------------------------------------------------------ the cache
def entry_dir(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir).expanduser().resolve() / key


def read_index(entry: Path) -> CacheIndex | None:
    """The entry's index, or None when the entry is absent or incomplete (no / unreadable ``index.json``)."""
    path = entry / INDEX_FILE
    if not path.is_file():
        return None
    try:
        return CacheIndex.model_validate_json(path.read_text())
    except ValueError:
        return None


def load_features(entry: Path) -> FeatureSet:
    """Read a complete entry (tokens reordered to sample order). Raises FileNotFoundError for a partial one."""
    index = read_index(entry)
    if index is None:
        raise FileNotFoundError(f"feature cache entry {entry} is incomplete (no {INDEX_FILE}); not served")
    n, (ntok, dim) = index.num_samples, index.token_shape
    tokens = np.empty((n, ntok, dim), dtype=np.float16)
    targets = None
    for shard in index.shards:
        rows = np.load(entry / f"rows_{shard}.npy", allow_pickle=False)
        tokens[rows] = np.load(entry / f"shard_{shard}.npy", allow_pickle=False)
        tpath = entry / f"targets_{shard}.npy"
        if tpath.is_file():
            tgt = np.load(tpath, allow_pickle=False)
            if targets is None:
                targets = np.empty((n, *tgt.shape[1:]), dtype=np.float32)
            targets[rows] = tgt
    return FeatureSet(index=index, tokens=tokens, targets=targets)


class _Progress:
    """Prints ``[features] <what>: i/n clips`` every ``every_s`` seconds from a daemon thread."""

    def __init__(self, what: str, total: int, every_s: float) -> None:
        self.what, self.total, self.every_s, self.done = what, total, every_s, 0
        self._stop = threading.Event()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.line()

    def line(self) -> None:
        dt = time.time() - self._t0
        print(f"[features] {self.what}: {self.done}/{self.total} clips, {dt:.0f} s "
              f"({self.done / max(dt, 1e-9):.1f} clips/s)", flush=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Sink(BaseModel):
    """One split's share of an extraction pass: rows ``[offset, offset + n)`` go to ``tmp``."""

    split: str
    view: int = 0
    key: str
    samples: list[Sample]
    offset: int
    tmp: Path
    shards: list[str] = []
    shape: list[int] = []


def _run_extraction(backbone: str, spec: BenchmarkSpec, sinks: list[_Sink], cfg: FeatureConfig,
                    progress: _Progress, levels: int = 1) -> None:
    """ONE Ray Data actor-pool pass over every sink's samples (one actor start-up for all missing splits); the
    driver writes each arriving batch, per sink, as one shard (``rows_*`` = row numbers within the split)."""
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    rows = [r for sink in sinks for r in descriptors(sink.samples, sink.view, sink.offset)]
    views = {sink.view: cfg.preprocessing(spec, sink.view) for sink in sinks if sink.view}
    ds = ray.data.from_items(rows).map_batches(
        ClipEncoder, fn_constructor_kwargs={"backbone": backbone, "task": spec.task, "pre": cfg.preprocessing(spec),
                                            "threads": int(cfg.cpus_per_actor), "views": views, "levels": levels},
        compute=ray.data.ActorPoolStrategy(size=cfg.actors), batch_size=cfg.batch_size, num_gpus=gpus,
        num_cpus=cfg.cpus_per_actor, batch_format="numpy")
    for i, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="numpy")):
        for sink in sinks:
            sel = (batch["row"] >= sink.offset) & (batch["row"] < sink.offset + len(sink.samples))
            if not sel.any():
                continue
            name = f"{i:05d}"
            np.save(sink.tmp / f"shard_{name}.npy", batch["tokens"][sel])
            np.save(sink.tmp / f"rows_{name}.npy", batch["row"][sel] - sink.offset)
            if "target" in batch:
                np.save(sink.tmp / f"targets_{name}.npy", batch["target"][sel].astype(np.float32))
            sink.shards.append(name)
            sink.shape = list(batch["tokens"].shape[1:])
        progress.done += len(batch["row"])


def _commit(sink: _Sink, info: BackboneInfo, spec: BenchmarkSpec, cfg: FeatureConfig, cache_dir: Path,
            seconds: float) -> Path:
    """Write ``index.json`` last, then rename the temp dir to ``<cache>/<key>`` (atomic on one filesystem)."""
    samples = sink.samples
    index = CacheIndex(key=sink.key, backbone=info.spec, backbone_identity=info.identity, benchmark=spec.name,
                       task=spec.task, split=sink.split, preprocessing=cfg.preprocessing(spec, sink.view),
                       num_samples=len(samples), token_shape=sink.shape, levels=cfg.levels(spec, info),
                       token_grid=info.grid, shards=sink.shards,
                       sample_ids=[s.sample_id for s in samples], video_ids=[s.video_id for s in samples],
                       times=[s.time_s for s in samples], labels=[s.label for s in samples], seconds=seconds)
    (sink.tmp / (INDEX_FILE + ".part")).write_text(index.model_dump_json())
    os.replace(sink.tmp / (INDEX_FILE + ".part"), sink.tmp / INDEX_FILE)
    final = entry_dir(cache_dir, sink.key)
    if final.exists():  # an incomplete leftover (a complete one would have been a hit) or a concurrent twin
        if read_index(final) is not None:
            return final
        shutil.rmtree(final)
    os.replace(sink.tmp, final)
    return final


def extract_features(info: BackboneInfo, spec: BenchmarkSpec, jobs: dict[str, list[Sample]],
                     cfg: FeatureConfig, cache_dir: str | Path) -> dict[str, Path]:
    """Extract the entries in ``jobs`` (:func:`entry_name` → samples: a split's centre view, or ``train@k``) in one
    pass, each into a temp dir that becomes its cache entry only when complete. Returns entry name → entry dir.
    ``cache_dir`` is a local folder here (a bucket cache extracts into its mirror: :class:`CacheStore`)."""
    root = Path(cache_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    sinks, offset = [], 0
    for name, samples in jobs.items():
        split, view = parse_entry(name)
        key = cache_key(info.identity, spec, split, samples, cfg, view, cfg.levels(spec, info))
        tmp = root / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        sinks.append(_Sink(split=split, view=view, key=key, samples=samples, offset=offset, tmp=tmp))
        offset += len(samples)
    EXTRACTION_COUNTER["extractions"] += 1
    t0 = time.time()
    what = f"{spec.name}/{'+'.join(jobs)} ({info.spec})"
    try:
        with _Progress(what, offset, cfg.progress_every_s) as progress:
            _run_extraction(info.spec, spec, sinks, cfg, progress, cfg.levels(spec, info))
            progress.line()
        if progress.done != offset:
            raise RuntimeError(f"{what}: extracted {progress.done} of {offset} clips")
        return {entry_name(sink.split, sink.view): _commit(sink, info, spec, cfg, root, round(time.time() - t0, 3))
                for sink in sinks}
    finally:
        for sink in sinks:
            shutil.rmtree(sink.tmp, ignore_errors=True)


def backbone_info(backbone: str, cfg: FeatureConfig) -> BackboneInfo:
    """Build the backbone once on the driver for its identity (the cache key) and token grid."""
    bb = build_backbone(backbone)
    grid = bb.token_grid((1, 3, cfg.frames, cfg.crop, cfg.crop))
    return BackboneInfo(spec=backbone, identity=bb.identity(), grid=list(grid), embed_dim=bb.embed_dim,
                        blocks=bb.num_blocks())


def ensure_features(info: BackboneInfo, spec: BenchmarkSpec, splits: dict[str, list[Sample]],
                    cfg: FeatureConfig, cache_dir: str | Path) -> dict[str, FeatureSet]:
    """Cached features of every split in ``splits`` (split → samples), TRAIN with its augmented views
    (``FeatureConfig.views``) in ``FeatureSet.views``: hits (complete index) are read directly, the misses are
    extracted together in one Ray Data pass first."""
    if cfg.train_views and spec.task in DENSE_TASKS:
        print(f"[features] {spec.name}: features.train_views={cfg.train_views} ignored: {spec.task} targets are "
              "not augmented, so dense tasks train on the centre view only", flush=True)
    if spec.task in DENSE_TASKS and cfg.dense_levels > 1 and info.blocks is None:
        print(f"[features] {spec.name}: {info.spec} gives last-layer tokens only; the dense head reads 1 level, "
              f"not features.dense_levels={cfg.dense_levels}", flush=True)
    views, levels = {split: cfg.views(spec, split) for split in splits}, cfg.levels(spec, info)
    store = CacheStore(cache_dir)
    entries = {entry_name(split, v): store.entry(cache_key(info.identity, spec, split, samples, cfg, v, levels))
               for split, samples in splits.items() for v in views[split]}
    for name in sorted(entries):
        if read_index(entries[name]) is None and store.pull(entries[name].name):
            print(f"[features] pulled {spec.name}/{name} ({info.spec}) from {store.remote}", flush=True)
    misses = {name: splits[parse_entry(name)[0]] for name, e in entries.items() if read_index(e) is None}
    for name in sorted(entries.keys() - misses.keys()):
        print(f"[features] cache hit {spec.name}/{name} ({info.spec}): {entries[name]}", flush=True)
    if misses:
        fresh = extract_features(info, spec, misses, cfg, store.root)
        for name, entry in sorted(fresh.items()):
            store.push(entry)
        if store.remote is not None:
            print(f"[features] pushed {len(fresh)} entr{'y' if len(fresh) == 1 else 'ies'} to {store.remote}",
                  flush=True)
        entries.update(fresh)
    out = {}
    for split in splits:
        augmented = [load_features(entries[entry_name(split, v)]) for v in views[split] if v]
        out[split] = load_features(entries[split]).model_copy(
            update={"views": [a.tokens for a in augmented], "view_keys": [a.index.key for a in augmented]})
    return out
