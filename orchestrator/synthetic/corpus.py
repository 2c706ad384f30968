"""Synthetic surgical-like video corpus: the embedded default for pretraining and the synthetic benchmarks.

``generate_corpus(out_dir, SyntheticConfig(...))`` writes, per source (one per specialty) and video::

    <out_dir>/manifest.yaml                 corpus manifest (orchestrator.data.manifest), one Source per source
    <out_dir>/.complete                     CorpusRecord JSON, written LAST (its absence = incomplete corpus)
    <out_dir>/.lock                         flock target: concurrent callers generate the corpus once
    <out_dir>/<source>/<source>_<k>.mp4     H.264 (libx264, yuv420p, ``fps``, width x height, keyframe each second)
    <out_dir>/<source>/<source>_<k>.npz     ground-truth arrays (below)
    <out_dir>/<source>/<source>_<k>.json    VideoRecord: source, specialty, fps, n_frames, width, height,
                                            vocabularies, phase segments, smoothness, seeds

Each video follows a latent script: 4-7 phases (increasing ids in the specialty's workflow, random durations),
each with its own instrument set, motion style (still / sweep / circular / jitter) and speed; per instrument a
verb (visible as the jaw pattern, coagulation glow) and a target. The camera drifts and zooms over a shaded tissue
canvas; a polyp-like bump is visible in some frames; smoke fades in and out around cut/coagulate phases. Each
phase also changes the operating field (``synthetic_marks``): fat, clips, a cut duct, dye, a capsulorhexis rim, a
narrow-band tint... shown while the phase runs, some persisting afterwards, so the phase is visible in the scene
as it is in real surgery, not only in the instrument.

Ground-truth arrays (``load_ground_truth(video) -> (VideoRecord, dict)``), T = n_frames at the native fps,
I = len(INSTRUMENTS), S = number of 1-fps samples (frames 0, fps, 2*fps, ... < T):

    phase          int16   (T,)        phase id (index into record.vocabularies.phases)
    action         int16   (T,)        motion-type id of the current phase (vocabularies.motion_types)
    instruments    uint8   (T, I)      multi-hot presence over vocabularies.instruments
    verb           int16   (T, I)      verb id per instrument, -1 where the instrument is absent
    target         int16   (T, I)      target id per instrument, -1 where absent
    tip_xy         float32 (T, I, 2)   tip (jaw joint) position in pixels (x, y), NaN where absent
    smoke          float32 (T,)        smoke haze opacity in [0, 1]
    blob_visible   bool    (T,)        the polyp-like bump is rendered in this frame (it may be out of view)
    camera         float32 (T, 3)      viewport centre x, y (canvas pixels) and zoom
    gt_frames      int32   (S,)        frame indices of the 1-fps samples
    blob_mask      bool    (S, H, W)   polyp-like bump mask
    instrument_mask bool   (S, H, W)   pixels covered by an instrument (coverage > 0.5)
    depth          float32 (S, H, W)   tissue-surface depth in mm along the view axis (instruments excluded),
                                       quantised to 1/32 mm

``record.smoothness`` = -(mean |third finite difference| of the instrument tips), in pixels of a 320-px-wide frame
per frame^3, over all instruments and frames where the tip is present in 4 consecutive frames (0 if none): higher is
smoother. It falls as the per-video hand tremor (``record.jitter_level``, uniform in [0, 1]) rises, and with
jitter-style phases; it is visible in the video as tip jitter.

Determinism: every video's randomness comes from SeedSequence(seed, source, index) (so adding sources or videos
leaves the others unchanged), and the encoder runs with one thread and ``mbtree=0`` (see
``synthetic_render.encode_h264``): the same config gives byte-identical .mp4/.npz/.json files.

Modules: the latent script (vocabularies, source profiles, :class:`SyntheticConfig`, per-video records,
:func:`plan_video`) lives in :mod:`orchestrator.synthetic.script`, the pixels in :mod:`orchestrator.synthetic.render`
(primitives in :mod:`~orchestrator.synthetic.draw`, the phases' marks in :mod:`~orchestrator.synthetic.marks`); this
module writes videos and corpora.
"""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.data.manifest import Manifest, Source, write_manifest
from orchestrator.synthetic import render as R
from orchestrator.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from orchestrator.synthetic.script import PROFILES, VideoPlan, VideoRecord, plan_video

MARKER = ".complete"


class CorpusRecord(BaseModel):
    """``<out_dir>/.complete``: written last; its presence with a matching digest means the corpus is usable."""

    model_config = ConfigDict(extra="forbid")

    generator_version: int
    config: SyntheticConfig
    digest: str
    files: list[str]          # every file written, relative to out_dir (manifest included)
    seconds_taken: float


def iter_frames(plan: VideoPlan) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Rendered frames: (uint8 RGB (H, W, 3), instrument coverage in [0, 1] (H, W)) before encoding."""
    for state in plan.states:
        yield R.render_frame(plan.scene, state)


# ------------------------------------------------------------------------------------------------------ writing
def _encode(plan: VideoPlan, path: Path, config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Write the H.264 MP4 and return the 1-fps instrument masks (coverage > 0.5)."""
    gt_frames, masks = set(plan.arrays["gt_frames"].tolist()), []

    def frames() -> Iterator[np.ndarray]:
        for t, (rgb, cover) in enumerate(iter_frames(plan)):
            if t in gt_frames:
                masks.append(cover > 0.5)
            yield rgb

    R.encode_h264(path, frames(), config.width, config.height, config.fps, config.crf, config.preset)
    return {"instrument_mask": np.stack(masks)}


def dense_ground_truth(plan: VideoPlan) -> dict[str, np.ndarray]:
    """1-fps tissue depth (mm) and blob mask from the scene geometry."""
    scene, h, w = plan.scene, plan.record.height, plan.record.width
    depths, blobs = [], []
    for t in plan.arrays["gt_frames"].tolist():
        state = plan.states[t]
        bump = np.zeros((h, w), np.float32)
        if state.blob_visible:
            bump = R.sample_canvas(scene.bump_mm, state.camera, h, w)
        depth = R.sample_canvas(scene.depth, state.camera, h, w) - bump
        depths.append(np.round(depth / state.camera[2] * 32) / 32)   # zoom = closer; 1/32 mm steps compress well
        blobs.append(bump > 0.05 * max(plan.blob_height_mm, 1e-6))
    return {"blob_mask": np.stack(blobs), "depth": np.stack(depths).astype(np.float32)}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but byte-reproducible (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def write_video(out_dir: str | Path, config: SyntheticConfig, source: str, index: int) -> list[Path]:
    """Render, encode and write one video with its ``.npz`` and ``.json`` (JSON last); returns the three paths."""
    plan = plan_video(config, source, index)
    folder = Path(out_dir) / source
    folder.mkdir(parents=True, exist_ok=True)
    mp4 = folder / plan.record.video
    npz, js = mp4.with_suffix(".npz"), mp4.with_suffix(".json")
    arrays = dict(plan.arrays)
    arrays.update(_encode(plan, _partial(mp4), config))
    arrays.update(dense_ground_truth(plan))
    _save_npz(_partial(npz), arrays)
    _partial(js).write_text(plan.record.model_dump_json(indent=1))
    for p in (mp4, npz, js):
        os.replace(_partial(p), p)
    return [mp4, npz, js]


def load_ground_truth(video_path: str | Path) -> tuple[VideoRecord, dict[str, np.ndarray]]:
    """The record and arrays written beside a synthetic video (``<stem>.json`` and ``<stem>.npz``)."""
    video_path = Path(video_path)
    js, npz = video_path.with_suffix(".json"), video_path.with_suffix(".npz")
    for p in (js, npz):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: synthetic ground truth not found for {video_path}")
    try:
        record = VideoRecord.model_validate_json(js.read_text())
    except ValidationError as e:
        raise ValueError(f"{js}: invalid synthetic ground-truth record: {e}") from None
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return record, arrays


# ------------------------------------------------------------------------------------------------------- corpus
def _read_marker(out_dir: Path) -> CorpusRecord | None:
    try:
        return CorpusRecord.model_validate_json((out_dir / MARKER).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def corpus_is_complete(out_dir: str | Path, config: SyntheticConfig) -> bool:
    """True when ``out_dir`` holds a finished corpus for exactly this config (and all its files exist)."""
    out_dir = Path(out_dir)
    rec = _read_marker(out_dir)
    return rec is not None and rec.digest == config.digest() and all((out_dir / f).is_file() for f in rec.files)


@contextmanager
def directory_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<out_dir>/.lock`` so concurrent callers (e.g. several Ray workers) build once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _corpus_manifest(config: SyntheticConfig) -> Manifest:
    return Manifest(name=f"synthetic-surgical-seed{config.seed}", sources=[
        Source(name=s, specialty=PROFILES[s].specialty,
               videos=[f"{s}/{s}_{k:03d}.mp4" for k in range(config.videos_per_source)])
        for s in config.sources])


def _write_one(job: tuple[str, SyntheticConfig, str, int]) -> tuple[list[str], str]:
    out_dir, config, source, index = job
    t0 = time.perf_counter()
    paths = write_video(out_dir, config, source, index)
    rec, size = paths[2].read_text(), sum(p.stat().st_size for p in paths)
    record = VideoRecord.model_validate_json(rec)
    line = (f"{source}/{paths[0].name}: {record.n_frames} frames, {len(record.segments)} phases, "
            f"blob={'yes' if record.blob_present else 'no'}, {size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f}s")
    return [str(p.relative_to(out_dir)) for p in paths], line


def _remove_stale(out_dir: Path, old: CorpusRecord | None, keep: set[str]) -> None:
    """Delete files a previous (complete) generation wrote that the new config does not produce."""
    for rel in old.files if old else []:
        if rel not in keep:
            (out_dir / rel).unlink(missing_ok=True)


def generate_corpus(out_dir: str | Path, config: SyntheticConfig | None = None, *, force: bool = False,
                    workers: int = 1, progress: Callable[[str], None] | None = None) -> Path:
    """Write the synthetic corpus into ``out_dir`` and return ``<out_dir>/manifest.yaml``.

    Idempotent: if ``out_dir`` already holds a complete corpus for this config, returns at once without touching
    it. Otherwise (absent, interrupted, other config, or ``force``) every video is (re)written and the completion
    marker is written last. ``workers`` > 1 renders videos in parallel processes (same bytes as serial)."""
    config = config or SyntheticConfig()
    out_dir = Path(out_dir).expanduser().resolve()
    manifest_path = out_dir / "manifest.yaml"
    if not force and corpus_is_complete(out_dir, config):
        return manifest_path
    with directory_lock(out_dir):
        if not force and corpus_is_complete(out_dir, config):    # another process finished it meanwhile
            return manifest_path
        t0 = time.perf_counter()
        old = _read_marker(out_dir)
        (out_dir / MARKER).unlink(missing_ok=True)             # from here on the corpus counts as incomplete
        jobs = [(str(out_dir), config, s, k) for s in config.sources for k in range(config.videos_per_source)]
        files: list[str] = []
        for rel, line in _run_jobs(jobs, workers):
            files += rel
            if progress:
                progress(line)
        _remove_stale(out_dir, old, set(files) | {"manifest.yaml"})
        write_manifest(_corpus_manifest(config), manifest_path)
        record = CorpusRecord(generator_version=GENERATOR_VERSION, config=config, digest=config.digest(),
                              files=files + ["manifest.yaml"], seconds_taken=round(time.perf_counter() - t0, 3))
        _partial(out_dir / MARKER).write_text(record.model_dump_json(indent=1))
        os.replace(_partial(out_dir / MARKER), out_dir / MARKER)
    return manifest_path


def _run_jobs(jobs: Sequence[tuple[str, SyntheticConfig, str, int]], workers: int) -> Iterator[tuple[list[str], str]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_write_one, jobs)
        return
    ctx = multiprocessing.get_context("spawn")   # safe inside threaded callers (Ray); bytes are seed-determined
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
        yield from pool.map(_write_one, jobs)
