"""The synthetic benchmark suite: one learnable benchmark per task type (``SYNTHETIC_BENCHMARKS``: synthetic-phase,
-action, -triplet, -skill, -segmentation, -depth), derived from the ground truth of the synthetic surgical-like
corpus (:mod:`orchestrator.synthetic.corpus`). No download; about 25 s of CPU for the default suite.

``build_synthetic_suite(root)`` writes it (layout and split rule: :mod:`orchestrator.benchmarks.adapters.synthetic`);
``load_samples(find_synthetic("synthetic-phase"), root, "train")`` reads it (the 19-entry registry does not
know these names; :func:`orchestrator.probe.config.resolve_benchmark` resolves every kind of name). Samples, label
definitions, file formats and splits: docs/datasets.md, "The synthetic benchmark suite", and each spec's ``notes``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import av
import decord
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.benchmarks.adapters.synthetic import (
    DEPTH_SCALE_MM,
    INDEX_FILE,
    MAIN_TASKS,
    SUITE_MARKER,
    SuiteIndex,
    SuiteMarker,
    choose_splits,
    deal_splits,
    label_coverage,
    read_marker,
)
from orchestrator.benchmarks.spec import BenchmarkError, Sample
from orchestrator.benchmarks.splits import SPLITS, seeded_order
from orchestrator.data.manifest import load_manifest
from orchestrator.synthetic.config import GENERATOR_VERSION, SourceName, SyntheticConfig
from orchestrator.synthetic.corpus import corpus_is_complete, directory_lock, generate_corpus, load_ground_truth
from orchestrator.synthetic.script import INSTRUMENTS, MOTIONS, TARGETS, VERBS, VideoRecord
from orchestrator.synthetic.specs import PHASE_CLASSES, PHASE_OFFSET, TRIPLET_ID, TRIPLETS

SUITE_VERSION = 1
"""Bump when the derived files or the index change for the same config (the generator has GENERATOR_VERSION)."""
DERIVED_DIRS = ("clips", "frames", "masks", "depth")

# ----------------------------------------------------------------------------------------------------- config
class SuiteConfig(BaseModel):
    """What to build. Everything here (with SUITE_VERSION and GENERATOR_VERSION) determines the output bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    sources: tuple[SourceName, ...] = ("synth_laparoscopy", "synth_colonoscopy", "synth_cataract")
    videos_per_source: int = Field(5, ge=3, le=1000)        # main videos (all benchmarks but skill)
    seconds: float = Field(20.0, gt=0, le=600)
    width: int = 160
    height: int = 128
    skill_videos_per_source: int = Field(8, ge=3, le=1000)  # extra short videos for synthetic-skill
    skill_seconds: float = Field(2.0, gt=0, le=600)
    clip_seconds: float = Field(2.0, ge=1, le=60)           # action clip length (whole seconds)
    clip_margin_s: float = Field(0.2, ge=0, le=10)          # kept between a clip and its phase's boundaries
    clips_per_segment: int = Field(3, ge=1, le=100)
    negatives_per_video: int = Field(2, ge=0, le=1000)      # segmentation frames without the blob, per video
    min_blob_fraction: float = Field(0.002, ge=0, lt=1)     # a positive mask covers at least this image fraction
    split_candidates: int = Field(64, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> SuiteConfig:
        if self.clip_seconds != int(self.clip_seconds):
            raise ValueError(f"clip_seconds must be a whole number (clips are cut at the 1-s keyframes), "
                             f"got {self.clip_seconds}")
        self.corpus_config()
        self.skill_config()
        return self

    def corpus_config(self) -> SyntheticConfig:
        return SyntheticConfig(seed=self.seed, sources=self.sources, videos_per_source=self.videos_per_source,
                               seconds=self.seconds, width=self.width, height=self.height)

    def skill_config(self) -> SyntheticConfig:
        seed = int.from_bytes(hashlib.sha256(f"skill|{self.seed}".encode()).digest()[:4], "little")
        return SyntheticConfig(seed=seed, sources=self.sources, videos_per_source=self.skill_videos_per_source,
                               seconds=self.skill_seconds, width=self.width, height=self.height)

    def digest(self) -> str:
        key = f"suite{SUITE_VERSION}:gen{GENERATOR_VERSION}:{self.model_dump_json()}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- per-video files
def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path, compress_level=3)


def _timeline(rec: VideoRecord, gt: dict[str, np.ndarray], vid: str, src: str) -> tuple[list[Sample], list[Sample]]:
    """Phase and triplet samples at every 1-fps instant (frame ``gt_frames[k]`` = round(time_s * fps))."""
    phase, triplet = [], []
    for f in gt["gt_frames"].tolist():
        t, present = f / rec.fps, np.flatnonzero(gt["instruments"][f]).tolist()
        ivt = [(i, int(gt["verb"][f, i]), int(gt["target"][f, i])) for i in present]
        unknown = [x for x in ivt if x not in TRIPLET_ID]
        if unknown:
            raise BenchmarkError(f"{src}: frame {f}: triplet(s) {unknown} outside the suite vocabulary")
        meta = {"frame": f, "fps": rec.fps, "source_name": rec.source}
        phase.append(Sample(sample_id=f"{vid}@{t:.3f}", video_id=vid, source=src, time_s=t,
                            label=PHASE_OFFSET[rec.source] + int(gt["phase"][f]), meta=meta))
        triplet.append(Sample(sample_id=f"{vid}@{t:.3f}", video_id=vid, source=src, time_s=t,
                              label=sorted({TRIPLET_ID[x] for x in ivt}),
                              meta={**meta, "instruments": present, "verbs": sorted({x[1] for x in ivt}),
                                    "targets": sorted({x[2] for x in ivt})}))
    return phase, triplet


def keyframes(mp4: Path) -> list[int]:
    """Frame indices of the keyframes (IDR, closed GOPs: x264 defaults) of an H.264 MP4, read without decoding."""
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        rate = stream.time_base * stream.average_rate  # type: ignore[operator]  # both set for an MP4 video
        return sorted(round(p.pts * rate) for p in container.demux(stream) if p.pts is not None and p.is_keyframe)


def clip_windows(rec: VideoRecord, cfg: SuiteConfig, keys: list[int]) -> list[tuple[int, int, int]]:
    """(start frame, frames, motion id) of the action clips of one video: inside each phase that has instruments,
    ``clip_margin_s`` from its ends, the non-overlapping ``clip_seconds`` windows that start on a keyframe and end
    on one (or at the end of the video), so they can be cut without re-encoding; up to ``clips_per_segment`` of
    them, evenly spread."""
    n, margin, out = round(cfg.clip_seconds * rec.fps), round(cfg.clip_margin_s * rec.fps), []
    bounds = set(keys) | {rec.n_frames}
    for seg in rec.segments:
        lo, hi, starts = seg.start + margin, seg.end - margin, list[int]()
        for k in sorted(keys):
            if seg.instruments and lo <= k and k + n <= hi and k + n in bounds and (not starts or k >= starts[-1] + n):
                starts.append(k)
        m = min(len(starts), cfg.clips_per_segment)
        picks = sorted({round((j + 0.5) * len(starts) / m - 0.5) for j in range(m)})
        out += [(starts[i], n, seg.motion) for i in picks]
    return out


def _cut(src: Path, dst: Path, start: int, n: int) -> None:
    """Copy the packets of frames [start, start + n) (a whole number of closed GOPs) into ``dst``: no re-encoding,
    so the clip's pixels are exactly the parent video's; the bytes are deterministic."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        per_frame = 1 / (ist.time_base * ist.average_rate)  # type: ignore[operator]  # both set for an MP4
        lo, hi, started, copied = round(start * per_frame), round((start + n) * per_frame), False, 0
        for packet in inp.demux(ist):
            if packet.pts is None:
                continue
            if packet.is_keyframe and packet.pts >= hi:
                break
            started = started or (packet.is_keyframe and packet.pts == lo)
            if started and lo <= packet.pts < hi:
                assert packet.dts is not None  # MP4 packets carry both stamps
                packet.pts, packet.dts, packet.stream = packet.pts - lo, packet.dts - lo, ost
                out.mux(packet)
                copied += 1
    if copied != n:
        raise BenchmarkError(f"{src}: frames {start}-{start + n - 1} are not whole closed GOPs ({copied} of {n} "
                             f"packets copied); cannot cut {dst} without re-encoding")


def _action(root: Path, cfg: SuiteConfig, rec: VideoRecord, vid: str, src: str) -> tuple[list[Sample], list[str]]:
    samples, files = [], []
    for k, (start, n, motion) in enumerate(clip_windows(rec, cfg, keyframes(root / src))):
        rel = f"clips/{vid}/{k:02d}.mp4"
        _cut(root / src, root / rel, start, n)
        samples.append(Sample(sample_id=f"{vid}#{k:02d}", video_id=vid, source=rel, label=motion, meta={
            "video": src, "start_s": start / rec.fps, "end_s": (start + n) / rec.fps, "start_frame": start,
            "end_frame": start + n, "n_frames": n, "duration_s": n / rec.fps, "fps": rec.fps,
            "source_name": rec.source}))
        files.append(rel)
    return samples, files


def _dense(root: Path, cfg: SuiteConfig, rec: VideoRecord, gt: dict[str, np.ndarray], frames: np.ndarray,
           vid: str) -> tuple[list[Sample], list[Sample], list[str]]:
    """Frame, depth and (positives + seeded negatives) mask PNGs at every 1-fps instant."""
    seg, depth, files = [], [], []
    area = gt["blob_mask"].reshape(len(frames), -1).mean(1)
    empty = [str(k) for k in range(len(frames)) if area[k] == 0]
    negatives = {int(k) for k in seeded_order(empty, cfg.seed, f"negative|{vid}")[: cfg.negatives_per_video]}
    for k, f in enumerate(gt["gt_frames"].tolist()):
        img, dep, msk = (f"{d}/{vid}/{k:04d}.png" for d in ("frames", "depth", "masks"))
        raw = np.round(gt["depth"][k] / DEPTH_SCALE_MM)
        if raw.min() < 1 or raw.max() > 65535:
            raise BenchmarkError(f"{vid}: frame {f}: depth {raw.min() * DEPTH_SCALE_MM:.2f}-"
                                 f"{raw.max() * DEPTH_SCALE_MM:.2f} mm does not fit a uint16 PNG at 1/32 mm")
        raw = raw.astype(np.uint16)
        raw[gt["instrument_mask"][k]] = 0
        _save_png(root / img, frames[k])
        _save_png(root / dep, raw)
        files += [img, dep]
        meta = {"frame": f, "time_s": f / rec.fps, "source_name": rec.source}
        depth.append(Sample(sample_id=f"{vid}@{k:04d}", video_id=vid, source=img, target_path=dep, meta={
            **meta, "depth_scale_mm": DEPTH_SCALE_MM, "depth_max_mm": 65535 * DEPTH_SCALE_MM, "invalid_value": 0}))
        positive = bool(area[k] > 0 and area[k] >= cfg.min_blob_fraction)
        if positive or k in negatives:
            _save_png(root / msk, gt["blob_mask"][k].astype(np.uint8) * 255)
            files.append(msk)
            seg.append(Sample(sample_id=f"{vid}@{k:04d}", video_id=vid, source=img, target_path=msk, meta={
                **meta, "positive": positive, "blob_fraction": round(float(area[k]), 6), "mask_threshold": 128}))
    return seg, depth, files


def _derive_video(root: Path, cfg: SuiteConfig, src: str) -> tuple[str, str, dict[str, list[Sample]], list[str]]:
    """All derived files and samples of one main video: (video id, source, samples per task, files written)."""
    rec, gt = load_ground_truth(root / src)
    vid = Path(src).stem
    vr = decord.VideoReader(str(root / src), ctx=decord.cpu(0), num_threads=1)
    frames = vr.get_batch(gt["gt_frames"].tolist()).asnumpy()
    if frames.shape[1:3] != gt["blob_mask"].shape[1:]:
        raise BenchmarkError(f"{root / src}: decoded size {frames.shape[1:3]} != ground truth {gt['blob_mask'].shape}")
    phase, triplet = _timeline(rec, gt, vid, src)
    action, clip_files = _action(root, cfg, rec, vid, src)
    seg, depth, files = _dense(root, cfg, rec, gt, frames, vid)
    samples = {"phase": phase, "action": action, "triplet": triplet, "segmentation": seg, "depth": depth}
    return vid, rec.source, samples, clip_files + files


def _skill_samples(root: Path, manifest: Path) -> tuple[list[Sample], dict[str, list[str]]]:
    """One sample per skill video (label = smoothness) and the video ids per source."""
    m, samples, by_source = load_manifest(manifest), list[Sample](), dict[str, list[str]]()
    for source in m.sources:
        for mp4 in m.resolve_videos(source):
            rec = VideoRecord.model_validate_json(mp4.with_suffix(".json").read_text())
            vid = f"skill_{mp4.stem}"
            samples.append(Sample(sample_id=vid, video_id=vid, source=str(mp4.relative_to(root)), label=rec.smoothness,
                                  meta={"jitter_level": rec.jitter_level, "duration_s": rec.n_frames / rec.fps,
                                        "fps": rec.fps, "source_name": rec.source}))
            by_source.setdefault(rec.source, []).append(vid)
    return samples, by_source


# ------------------------------------------------------------------------------------------------------- build
def suite_is_complete(root: str | Path, config: SuiteConfig) -> bool:
    """True when ``root`` holds a finished suite for exactly this config (and every file it lists exists)."""
    root = Path(root)
    marker = read_marker(root)
    return (marker is not None and marker.digest == config.digest()
            and all((root / f).is_file() for f in marker.files)
            and corpus_is_complete(root / "videos", config.corpus_config())
            and corpus_is_complete(root / "skill_videos", config.skill_config()))


def _write_last(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _derive(root: Path, cfg: SuiteConfig, main: Path, skill: Path) -> tuple[SuiteIndex, list[str]]:
    """Write every derived file (after wiping stale ones) and return the index and the files written. Serial: it
    costs about 3 s of CPU for the default suite (no decoding but the 1-fps keyframes, clips are packet copies),
    less than spawning worker processes would."""
    for d in DERIVED_DIRS:
        shutil.rmtree(root / d, ignore_errors=True)
    m = load_manifest(main)
    outs = [_derive_video(root, cfg, str(p.relative_to(root))) for s in m.sources for p in m.resolve_videos(s)]
    by_source: dict[str, list[str]] = {}
    for vid, source, _, _ in outs:
        by_source.setdefault(source, []).append(vid)
    groups = choose_splits({o[0]: label_coverage(o[2]) for o in outs}, by_source, cfg.seed, cfg.split_candidates)
    samples = {t: [s for o in outs for s in o[2][t]] for t in MAIN_TASKS}
    samples["skill"], skill_by_source = _skill_samples(root, skill)
    skill_groups = deal_splits(skill_by_source, cfg.seed, "skill")
    index = SuiteIndex(
        digest=cfg.digest(), config=cfg.model_dump(mode="json"),
        splits={s: sorted(groups[s] + skill_groups[s]) for s in SPLITS}, phase_classes=PHASE_CLASSES,
        motion_types=list(MOTIONS), triplets=list(TRIPLETS), samples=samples,
        vocabularies={"instruments": list(INSTRUMENTS), "verbs": list(VERBS), "targets": list(TARGETS)})
    return index, [f for o in outs for f in o[3]]


def build_synthetic_suite(root: str | Path, seed: int = 0, config: SuiteConfig | None = None, *,
                          workers: int = 2, force: bool = False,
                          progress: Callable[[str], None] | None = None) -> Path:
    """Build the synthetic benchmark suite under ``root`` and return ``root`` (resolved) for ``load_samples``.

    ``config`` defaults to ``SuiteConfig(seed=seed)`` (3 sources x 5 videos x 20 s at 160x128, plus 3 x 8 skill
    videos of 2 s); when ``config`` is given, ``seed`` must be 0 or equal ``config.seed``. Idempotent: a complete
    suite for this config is returned untouched; otherwise (absent, interrupted, other config, ``force``) the
    corpora are (re)generated as needed, every derived file is rewritten, and the ``.complete`` marker is
    written last. ``workers`` > 1 renders the videos in spawned processes (call it under
    ``if __name__ == "__main__":`` in a script); the output bytes do not depend on it."""
    if config is None:
        config = SuiteConfig(seed=seed)
    elif seed not in (0, config.seed):
        raise ValueError(f"seed={seed} conflicts with config.seed={config.seed}; give the seed in one place")
    root = Path(root).expanduser().resolve()
    if not force and suite_is_complete(root, config):
        return root
    with directory_lock(root):
        if not force and suite_is_complete(root, config):    # another process finished it meanwhile
            return root
        t0 = time.perf_counter()
        (root / SUITE_MARKER).unlink(missing_ok=True)        # from here on the suite counts as incomplete
        main = generate_corpus(root / "videos", config.corpus_config(), force=force, workers=workers,
                               progress=progress)
        skill = generate_corpus(root / "skill_videos", config.skill_config(), force=force, workers=workers,
                                progress=progress)
        index, files = _derive(root, config, main, skill)
        _write_last(root / INDEX_FILE, index.model_dump_json())
        took = round(time.perf_counter() - t0, 3)
        marker = SuiteMarker(digest=config.digest(), files=files + [INDEX_FILE], seconds_taken=took)
        _write_last(root / SUITE_MARKER, marker.model_dump_json(indent=1))
        if progress:
            progress(f"synthetic suite: {sum(map(len, index.samples.values()))} samples, {len(files)} files, "
                     f"{took:.1f}s -> {root}")
    return root
