"""The latent script of a synthetic surgical-like video: vocabularies, per-specialty workflows and the per-video plan.

What a corpus is made of (:mod:`orchestrator.synthetic.corpus` writes it):

* vocabularies (``INSTRUMENTS``, ``VERBS``, ``TARGETS``, ``MOTIONS``), jaw patterns per verb and one
  :class:`SourceProfile` per synthetic source (its specialty's phase workflow and motion habits);
* the per-video ground-truth records written as ``<stem>.json`` (:class:`VideoRecord`, :class:`PhaseSegment`,
  :class:`Vocabularies`);
* :func:`plan_video`: phase plan, camera path, tool tracks (+ hand tremor), blob plan, smoke curve, smoothness and
  the per-frame render states, all drawn from one ``np.random.Generator`` seeded by
  ``SeedSequence(seed, source, index)``. The order of the random draws is part of the output bytes: changing it
  changes every corpus (bump ``GENERATOR_VERSION`` if you do).

Pixels (scene, rendering, encoding) live in :mod:`orchestrator.synthetic.render`; writing files and the
corpus in :mod:`orchestrator.synthetic.corpus`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.ndimage import gaussian_filter1d

from orchestrator.synthetic import marks as M
from orchestrator.synthetic import render as R
from orchestrator.synthetic.config import SyntheticConfig

INSTRUMENTS: tuple[str, ...] = tuple(R.TOOLS)
VERBS = ("idle", "grasp", "retract", "dissect", "cut", "coagulate", "clip", "aspirate", "inject")
TARGETS = ("tissue", "fat", "vessel", "membrane", "mucosa", "polyp", "capsule", "lens", "fluid")
MOTIONS = ("still", "sweep", "circular", "jitter")
DEFAULT_VERB = {"grasper": "retract", "hook": "dissect", "clipper": "clip", "scissors": "cut", "bipolar": "coagulate",
                "irrigator": "aspirate", "snare": "cut", "biopsy_forceps": "grasp", "injector": "inject",
                "phaco_probe": "aspirate", "micro_forceps": "grasp", "cannula": "inject"}
JAW = {"idle": (0.15, 0.0, 0.0), "grasp": (0.35, 0.35, 0.5), "retract": (0.08, 0.0, 0.0), "dissect": (0.2, 0.15, 1.0),
       "cut": (0.45, 0.45, 2.0), "coagulate": (0.06, 0.0, 0.0), "clip": (0.3, 0.3, 0.8), "aspirate": (0.0, 0.0, 0.0),
       "inject": (0.0, 0.0, 0.0)}   # verb -> jaw opening (mean rad, amplitude rad, frequency Hz)
@dataclass(frozen=True)
class SourceProfile:
    """A synthetic source: its specialty's workflow (phase -> primary tool / verb / target) and motion habits."""

    specialty: str
    look: str
    phases: tuple[str, ...]
    tools: tuple[str, ...]          # primary instrument per phase ("" = none)
    verbs: tuple[str, ...]          # primary verb per phase
    targets: tuple[str, ...]        # primary target per phase
    helpers: tuple[str, ...]        # pool of secondary instruments
    helper_prob: float
    motion_weights: tuple[float, float, float, float]
    amplitude: float                # motion amplitude, fraction of the frame width
    speed: tuple[float, float]      # motion frequency range (Hz)
    camera_gain: tuple[float, ...]  # camera speed per phase
    blob_prob: float
    smoke_prob: float
    entries: tuple[str, ...]        # frame sides instruments enter from ("channel" = fixed working channel)


PROFILES: dict[str, SourceProfile] = {
    "synth_laparoscopy": SourceProfile(
        "laparoscopy", "laparoscopy",
        ("preparation", "calot_dissection", "clipping", "cutting", "gallbladder_dissection", "coagulation",
         "retrieval"),
        ("grasper", "hook", "clipper", "scissors", "hook", "bipolar", "grasper"),
        ("grasp", "dissect", "clip", "cut", "dissect", "coagulate", "retract"),
        ("fat", "membrane", "vessel", "vessel", "membrane", "tissue", "tissue"),
        ("grasper", "irrigator", "grasper", "bipolar"), 0.7, (0.2, 0.35, 0.25, 0.2), 0.12, (0.3, 1.0),
        (0.5, 0.8, 0.4, 0.4, 0.8, 0.6, 1.2), 0.4, 0.7, ("left", "right", "top")),
    "synth_colonoscopy": SourceProfile(
        "endoscopy", "endoscopy",
        ("insertion", "inspection", "polyp_detection", "injection", "snare_resection", "clipping", "withdrawal"),
        ("", "", "biopsy_forceps", "injector", "snare", "clipper", ""),
        ("idle", "idle", "grasp", "inject", "cut", "clip", "idle"),
        ("mucosa", "mucosa", "polyp", "polyp", "polyp", "mucosa", "mucosa"),
        (), 0.0, (0.35, 0.35, 0.1, 0.2), 0.08, (0.3, 0.8), (2.0, 1.0, 0.4, 0.3, 0.3, 0.4, 1.6), 0.9, 0.3,
        ("channel",)),
    "synth_cataract": SourceProfile(
        "ophthalmology", "ophthalmology",
        ("incision", "viscoelastic", "capsulorhexis", "hydrodissection", "phacoemulsification",
         "irrigation_aspiration", "lens_implantation"),
        ("micro_forceps", "cannula", "micro_forceps", "cannula", "phaco_probe", "phaco_probe", "injector"),
        ("cut", "inject", "grasp", "inject", "aspirate", "aspirate", "inject"),
        ("tissue", "fluid", "capsule", "lens", "lens", "fluid", "lens"),
        ("micro_forceps", "cannula"), 0.5, (0.15, 0.25, 0.45, 0.15), 0.07, (0.2, 0.7), (0.3,) * 7, 0.3, 0.0,
        ("left", "right")),
}


# ------------------------------------------------------------------------------------------------ records
class Vocabularies(BaseModel):
    phases: list[str]
    instruments: list[str] = list(INSTRUMENTS)
    verbs: list[str] = list(VERBS)
    targets: list[str] = list(TARGETS)
    motion_types: list[str] = list(MOTIONS)


class PhaseSegment(BaseModel):
    """Frames [start, end) of one phase; instruments/verbs/targets are parallel lists of vocabulary ids."""

    start: int
    end: int
    phase: int
    motion: int
    speed_hz: float
    instruments: list[int]
    verbs: list[int]
    targets: list[int]


class VideoRecord(BaseModel):
    """Per-video ground-truth record (``<stem>.json``); the arrays live in ``<stem>.npz``."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    video: str
    source: str
    specialty: str
    fps: int
    n_frames: int
    width: int
    height: int
    gt_fps: int = 1
    vocabularies: Vocabularies
    segments: list[PhaseSegment]
    smoothness: float
    jitter_level: float
    blob_present: bool
    seed: int
    video_index: int
    video_seed: int


# ------------------------------------------------------------------------------------------- the latent script
@dataclass
class _Ctx:
    rng: np.random.Generator
    prof: SourceProfile
    look: R.Look
    n: int
    fps: int
    w: int
    h: int


@dataclass
class VideoPlan:
    """Everything needed to render one video and its ground truth (deterministic in the config and index)."""

    record: VideoRecord
    scene: R.Scene
    states: list[R.FrameState]
    arrays: dict[str, np.ndarray]     # per-frame ground truth
    blob_height_mm: float


def _phase_cast(c: _Ctx, phase: int, start: int, end: int) -> PhaseSegment:
    """Who does what in one phase: the workflow's primary tool/verb/target plus maybe a helper instrument."""
    p = c.prof
    tools, verbs, targets = [], [], []
    if p.tools[phase]:
        tools, verbs, targets = [p.tools[phase]], [p.verbs[phase]], [p.targets[phase]]
    helpers = [t for t in p.helpers if t not in tools]
    if helpers and c.rng.random() < p.helper_prob:
        helper = helpers[int(c.rng.integers(len(helpers)))]
        tools.append(helper)
        verbs.append("idle" if c.rng.random() < 0.5 else DEFAULT_VERB[helper])
        targets.append(p.targets[int(c.rng.integers(len(p.targets)))])
    weights = np.asarray(p.motion_weights) / sum(p.motion_weights)
    return PhaseSegment(start=start, end=end, phase=phase, motion=int(c.rng.choice(len(MOTIONS), p=weights)),
                        speed_hz=round(float(c.rng.uniform(*p.speed)), 4),
                        instruments=[INSTRUMENTS.index(t) for t in tools], verbs=[VERBS.index(v) for v in verbs],
                        targets=[TARGETS.index(t) for t in targets])


def _plan_phases(c: _Ctx) -> list[PhaseSegment]:
    """4-7 phases in workflow order (increasing ids) with Dirichlet-random durations covering all frames."""
    k = min(int(c.rng.integers(4, 8)), len(c.prof.phases), max(1, c.n // 4))
    ids = np.sort(c.rng.choice(len(c.prof.phases), size=k, replace=False))
    min_len = max(1, c.n // (3 * k))
    lens = min_len + np.floor(c.rng.dirichlet(np.full(k, 2.0)) * (c.n - k * min_len)).astype(int)
    lens[-1] += c.n - int(lens.sum())
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    return [_phase_cast(c, int(p), int(s), int(s + ln)) for p, s, ln in zip(ids, starts, lens)]


def _per_frame(segs: list[PhaseSegment], values: list[float] | np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.float64)
    for s, v in zip(segs, values):
        out[s.start:s.end] = v
    return out


def _camera_path(c: _Ctx, segs: list[PhaseSegment]) -> np.ndarray:
    """(n, 3) viewport centre x, y on the canvas and zoom: slow sinusoidal drift whose speed follows the phase."""
    hc, wc = R.canvas_size(c.look, c.h, c.w)
    gain = _per_frame(segs, [c.prof.camera_gain[s.phase] for s in segs], c.n)
    gain = gaussian_filter1d(gain, c.fps / 2, mode="nearest")
    freqs, offsets = c.rng.uniform(0.04, 0.12, 3), c.rng.uniform(0, 2 * np.pi, 3)
    ang = np.cumsum(gain)[:, None] * (2 * np.pi * freqs / c.fps) + offsets
    amp = c.look.drift * c.w
    cam = np.stack([wc / 2 + amp * np.sin(ang[:, 0]), hc / 2 + 0.8 * amp * np.sin(ang[:, 1]),
                    1 + c.look.zoom * (0.5 - 0.5 * np.cos(ang[:, 2]))], 1)
    return cam.astype(np.float32)


def _motion(c: _Ctx, style: str, m: int, freq: float, amp: float) -> np.ndarray:
    """(m, 2) tip offset for one phase in a motion style."""
    t = np.arange(m) / c.fps
    ph, ang = c.rng.uniform(0, 2 * np.pi, 2)
    u = np.array([np.cos(ang), np.sin(ang)])
    if style == "still":
        return 0.08 * amp * np.sin(2 * np.pi * 0.2 * t + ph)[:, None] * u
    if style == "sweep":
        return amp * np.sin(2 * np.pi * freq * t + ph)[:, None] * u
    if style == "circular":
        th = c.rng.choice([-1.0, 1.0]) * 2 * np.pi * freq * t + ph
        return amp * np.stack([np.cos(th), c.rng.uniform(0.5, 1.0) * np.sin(th)], 1)
    noise = gaussian_filter1d(c.rng.standard_normal((m + 8, 2)), 1.5, axis=0)[4:-4]
    return 0.6 * amp * noise / (noise.std() + 1e-6)


def _ffill(a: np.ndarray) -> np.ndarray:
    """Fill NaN rows with the previous valid row (leading ones with the first valid row)."""
    valid = ~np.isnan(a[:, 0])
    if not valid.any():
        return np.zeros_like(a)
    idx = np.maximum.accumulate(np.where(valid, np.arange(len(a)), -1))
    idx[idx < 0] = int(np.argmax(valid))
    return a[idx]


def _entry_point(c: _Ctx) -> tuple[float, float]:
    side = c.prof.entries[int(c.rng.integers(len(c.prof.entries)))]
    u, w, h = c.rng.uniform(0.25, 0.75), c.w, c.h
    if side == "channel":
        return w * (1.02 + c.rng.uniform(-0.03, 0.03)), h + 0.08 * w
    return {"left": (-0.12 * w, u * h), "right": (1.12 * w, u * h), "top": (u * w, -0.12 * w)}.get(
        side, (u * w, h + 0.12 * w))


def _tool_track(c: _Ctx, segs: list[PhaseSegment], tool: int, blob_xy: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-frame tip, jaw opening, glow, verb and target of one instrument (tip NaN where absent)."""
    n, fps, w, h = c.n, c.fps, c.w, c.h
    anchor = np.full((n, 2), np.nan)
    offset, opening, glow = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
    verb, target = np.full(n, -1, np.int16), np.full(n, -1, np.int16)
    for s in segs:
        if tool not in s.instruments:
            continue
        k, sl, m = s.instruments.index(tool), slice(s.start, s.end), s.end - s.start
        anchor[sl] = c.rng.uniform((0.3 * w, 0.3 * h), (0.7 * w, 0.7 * h))
        if TARGETS[s.targets[k]] == "polyp" and blob_xy is not None:   # work at the bump
            anchor[sl] = np.clip(blob_xy[(s.start + s.end) // 2], (0.15 * w, 0.15 * h), (0.85 * w, 0.85 * h))
        amp = c.prof.amplitude * w * c.rng.uniform(0.6, 1.3)
        offset[sl] = _motion(c, MOTIONS[s.motion], m, s.speed_hz, amp)
        mean, jaw_amp, freq = JAW[VERBS[s.verbs[k]]]
        t = np.arange(m) / fps
        opening[sl] = np.clip(mean + jaw_amp * np.sin(2 * np.pi * freq * t + c.rng.uniform(0, 2 * np.pi)), 0, 1.2)
        glow[sl] = (VERBS[s.verbs[k]] == "coagulate") * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        verb[sl], target[sl] = s.verbs[k], s.targets[k]
    present = ~np.isnan(anchor[:, 0])
    tip = gaussian_filter1d(_ffill(anchor) + offset, 2.0, axis=0, mode="nearest")
    return {"tip": tip, "present": present, "opening": opening, "glow": glow, "verb": verb, "target": target}


def _plan_blob(c: _Ctx, segs: list[PhaseSegment]) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Whether the polyp-like bump is shown per frame, and its (radius px, height mm)."""
    visible = np.zeros(c.n, bool)
    if c.rng.random() >= c.prof.blob_prob:
        return visible, None
    blob = (float(c.rng.uniform(0.06, 0.11) * c.w), float(c.rng.uniform(3.0, 8.0)))
    polyp = [s for s in segs if TARGETS.index("polyp") in s.targets]
    if polyp:
        start, end = max(0, polyp[0].start - c.fps), min(c.n, polyp[-1].end + c.fps)
    else:
        length = max(1, int(c.n * c.rng.uniform(0.3, 0.8)))
        start = int(c.rng.integers(0, c.n - length + 1))
        end = start + length
    visible[start:end] = True
    return visible, blob


def _smoke_curve(c: _Ctx, segs: list[PhaseSegment]) -> np.ndarray:
    """Haze opacity per frame: fades in after cutting/coagulation starts, holds, fades out."""
    events = []
    for s in segs:
        energetic = any(VERBS[v] in ("cut", "coagulate") for v in s.verbs)
        if energetic and c.rng.random() < c.prof.smoke_prob:
            events.append((s.start + (s.end - s.start) // 5, max((s.end - s.start) // 2, 1)))
    if c.prof.smoke_prob > 0 and c.rng.random() < 0.15:
        events.append((int(c.rng.integers(0, c.n)), int(c.fps * c.rng.uniform(1, 3))))
    t, curve = np.arange(c.n, dtype=np.float64), np.zeros(c.n)
    rise, decay = 0.5 * c.fps, 1.0 * c.fps
    for start, hold in events:
        env = np.clip((t - start) / rise, 0, 1) * np.clip(1 - (t - start - rise - hold) / decay, 0, 1)
        curve = np.maximum(curve, c.rng.uniform(0.25, 0.55) * env)
    return curve.astype(np.float32)


def _smoothness(tips: np.ndarray, width: int) -> float:
    """-(mean |third difference| of the tips) in pixels of a 320-px-wide frame per frame^3 (NaN = absent)."""
    d3 = tips[3:] - 3 * tips[2:-1] + 3 * tips[1:-2] - tips[:-3]
    mag = np.linalg.norm(d3, axis=-1)
    valid = ~np.isnan(mag)
    return -float(mag[valid].mean() * 320.0 / width) if valid.any() else 0.0


def _video_seed(config: SyntheticConfig, source: str, index: int) -> int:
    """Stable per-video seed: independent of the other sources/videos in the config."""
    key = int.from_bytes(hashlib.sha256(source.encode()).digest()[:4], "little")
    return int(np.random.SeedSequence([config.seed, key, index]).generate_state(1)[0])


def _frame_states(c: _Ctx, segs: list[PhaseSegment], camera: np.ndarray, blob_visible: np.ndarray, smoke: np.ndarray,
                  tracks: dict[int, dict[str, np.ndarray]],
                  bases: dict[int, tuple[float, float]]) -> list[R.FrameState]:
    pad, states = c.w // 4, []
    stage = _per_frame(segs, list(range(len(segs))), c.n).astype(int)
    for t in range(c.n):
        insts = [R.InstrumentState(R.TOOLS[INSTRUMENTS[i]], bases[i], (float(tr["tip"][t, 0]), float(tr["tip"][t, 1])),
                                   float(tr["opening"][t]), float(tr["glow"][t]))
                 for i, tr in tracks.items() if tr["present"][t]]
        shift = (int(pad / 2 * (1 + np.sin(2 * np.pi * t / (7 * c.fps)))),
                 int(pad / 2 * (1 + np.cos(2 * np.pi * t / (9 * c.fps)))))
        states.append(R.FrameState((float(camera[t, 0]), float(camera[t, 1]), float(camera[t, 2])),
                                   bool(blob_visible[t]), float(smoke[t]), shift, insts, int(stage[t])))
    return states


def _gt_arrays(c: _Ctx, segs: list[PhaseSegment], tracks: dict[int, dict[str, np.ndarray]],
               extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n, ni = c.n, len(INSTRUMENTS)
    arrays: dict[str, np.ndarray] = {"phase": _per_frame(segs, [s.phase for s in segs], n).astype(np.int16),
              "action": _per_frame(segs, [s.motion for s in segs], n).astype(np.int16),
              "instruments": np.zeros((n, ni), np.uint8), "verb": np.full((n, ni), -1, np.int16),
              "target": np.full((n, ni), -1, np.int16), "tip_xy": np.full((n, ni, 2), np.nan, np.float32)}
    for i, tr in tracks.items():
        arrays["instruments"][:, i] = tr["present"]
        arrays["verb"][:, i], arrays["target"][:, i] = tr["verb"], tr["target"]
        arrays["tip_xy"][tr["present"], i] = tr["tip"][tr["present"]]
    arrays.update(extra)
    arrays["gt_frames"] = np.arange(0, n, c.fps, dtype=np.int32)
    return arrays


def plan_video(config: SyntheticConfig, source: str, index: int) -> VideoPlan:
    """The latent script of video ``index`` of ``source`` plus its scene: deterministic in (config, source, index)."""
    prof, vseed = PROFILES[source], _video_seed(config, source, index)
    c = _Ctx(np.random.default_rng(vseed), prof, R.LOOKS[prof.look], config.n_frames, config.fps,
             config.width, config.height)
    segs = _plan_phases(c)
    camera = _camera_path(c, segs)
    blob_visible, blob = _plan_blob(c, segs)
    scene = R.build_scene(c.rng, c.look, c.h, c.w, blob)
    scene.stages = M.stage_canvases(np.random.default_rng([vseed, 1]), M.PHASE_MARKS[source],
                                    [s.phase for s in segs], scene)
    blob_xy = None
    if blob is not None:
        blob_xy = (np.array(scene.blob_centre)[None] - camera[:, :2]) * camera[:, 2:] + np.array([c.w / 2, c.h / 2])
    tool_ids = sorted({i for s in segs for i in s.instruments})
    bases = {i: _entry_point(c) for i in tool_ids}
    tracks = {i: _tool_track(c, segs, i, blob_xy) for i in tool_ids}
    jitter = float(c.rng.uniform(0, 1))
    for tr in tracks.values():                  # hand tremor on top of the planned motion, then keep it in frame
        noise = gaussian_filter1d(c.rng.standard_normal((c.n + 8, 2)), 0.7, axis=0)[4:-4]
        tr["tip"] = tr["tip"] + jitter * 2.5 * (c.w / 320) * noise / (noise.std() + 1e-6)
        tr["tip"] = np.clip(tr["tip"], (0.04 * c.w, 0.04 * c.h), (0.96 * c.w, 0.96 * c.h))
    smoke = _smoke_curve(c, segs)
    arrays = _gt_arrays(c, segs, tracks, {"smoke": smoke, "blob_visible": blob_visible, "camera": camera})
    record = VideoRecord(
        video=f"{source}_{index:03d}.mp4", source=source, specialty=prof.specialty, fps=c.fps, n_frames=c.n,
        width=c.w, height=c.h, vocabularies=Vocabularies(phases=list(prof.phases)), segments=segs,
        smoothness=round(_smoothness(arrays["tip_xy"], c.w), 6), jitter_level=round(jitter, 6),
        blob_present=blob is not None, seed=config.seed, video_index=index, video_seed=vseed)
    states = _frame_states(c, segs, camera, blob_visible, smoke, tracks, bases)
    return VideoPlan(record, scene, states, arrays, 0.0 if blob is None else blob[1])
