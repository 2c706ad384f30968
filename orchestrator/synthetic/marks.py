"""Scene progression of the synthetic generator: what each surgical phase does to the operating field.

In real surgery the phase shows in the scene, not only in the instrument: fat is cleared during preparation, clips
stay on the duct after clipping, a polyp is lifted with blue dye before the snare, the capsulorhexis leaves a
circular rim on the lens, the narrow-band light of polyp characterisation turns the whole image green. Here every
phase of every source has a few :class:`Mark` s:

* ``patch``: an irregular soft-edged disc (fat, membrane, gallbladder wall, dye, blood, retrieval bag);
* ``spots``: ``count`` small discs scattered around the centre (burns, residue, bubbles, lens fragments);
* ``clips``: ``count`` short metallic bars (surgical clips); ``line``: one thin dark stroke (an incision, a cut);
* ``ring``: a circle outline (capsulorhexis rim, intraocular lens);
* ``tint``: the whole canvas multiplied by ``colour`` (narrow-band imaging, changed illumination).

A mark is shown while its phase runs; a ``persist`` mark stays for the rest of the video (clips, cuts, dye). Marks
sit near the canvas centre (so they stay in view while the camera drifts), or on the polyp-like bump when
``at_blob`` and the video has one. Their geometry comes from a generator of their own
(``SeedSequence(video_seed, 1)``), so the latent script's random draws are unchanged by them.

:func:`stage_canvases` composites, for each phase segment of a video, the marks active in it onto the scene's
tissue canvases; frame ``t`` of segment ``j`` is rendered from stage ``j`` (``FrameState.stage``). Marks are paint:
they change colours only, never the ground truth (depth, blob mask, labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from orchestrator.synthetic import draw as D
from orchestrator.synthetic import render as R

MarkKind = Literal["patch", "spots", "clips", "line", "ring", "tint"]
RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Mark:
    """One visible change a phase makes (sizes are fractions of the frame width)."""

    kind: MarkKind
    colour: RGB
    size: float = 0.0          # patch / ring / spot radius, clip / line length
    count: int = 1             # spots, clips
    alpha: float = 0.85
    persist: bool = False      # stays after its phase ends
    at_blob: bool = False      # centred on the polyp-like bump when there is one


_METAL: RGB = (0.85, 0.86, 0.9)
PHASE_MARKS: dict[str, tuple[tuple[Mark, ...], ...]] = {   # source -> one tuple of marks per workflow phase
    "synth_laparoscopy": (
        (Mark("patch", (0.96, 0.86, 0.42), 0.24),),                                  # preparation: fat
        (Mark("patch", (0.94, 0.9, 0.88), 0.17), Mark("line", (0.5, 0.05, 0.08), 0.2)),  # calot: membrane opened
        (Mark("clips", _METAL, 0.08, count=3, persist=True),),                       # clipping
        (Mark("line", (0.25, 0.0, 0.02), 0.34, persist=True),),                      # cutting: divided duct
        (Mark("patch", (0.32, 0.5, 0.22), 0.26),),                                   # gallbladder wall
        (Mark("spots", (0.12, 0.08, 0.06), 0.035, count=7, persist=True),),          # coagulation: burns
        (Mark("patch", (0.86, 0.9, 0.95), 0.3, alpha=0.9),),                         # retrieval bag
    ),
    "synth_colonoscopy": (
        (Mark("spots", (0.45, 0.3, 0.08), 0.04, count=9),),                          # insertion: residue
        (Mark("spots", (0.98, 0.98, 0.98), 0.035, count=12, alpha=0.7),),            # inspection: water bubbles
        (Mark("tint", (0.55, 0.85, 0.7)),),                                          # detection: narrow-band light
        (Mark("patch", (0.2, 0.35, 0.85), 0.17, persist=True, at_blob=True),),       # injection: blue lift
        (Mark("patch", (0.6, 0.0, 0.02), 0.1, at_blob=True),),                       # resection: bleeding
        (Mark("clips", _METAL, 0.07, count=2, persist=True, at_blob=True),),         # clipping
        (Mark("tint", (0.8, 0.8, 0.95)),),                                           # withdrawal: dimmed light
    ),
    "synth_cataract": (
        (Mark("line", (0.75, 0.08, 0.08), 0.16, persist=True),),                     # incision
        (Mark("patch", (0.3, 0.45, 0.85), 0.22, alpha=0.5),),                        # viscoelastic + trypan blue
        (Mark("ring", (0.97, 0.97, 0.92), 0.15, persist=True),),                     # capsulorhexis rim
        (Mark("ring", (1.0, 0.82, 0.35), 0.22),),                                    # hydrodissection wave
        (Mark("spots", (0.95, 0.9, 0.68), 0.045, count=6),),                         # phaco: nucleus fragments
        (Mark("tint", (1.15, 0.85, 0.8)),),                                          # I/A: clear red reflex
        (Mark("ring", (0.55, 0.8, 1.0), 0.2, persist=True),),                        # lens implantation: IOL
    ),
}


@dataclass
class Layer:
    """A placed mark on the canvas grid: premultiplied colour (3, Hc, Wc) and coverage (Hc, Wc), or a tint."""

    rgb: np.ndarray | None
    alpha: np.ndarray | None
    tint: np.ndarray | None = None

    def apply(self, canvas: np.ndarray) -> np.ndarray:
        if self.tint is not None:
            return canvas * self.tint[:, None, None]
        assert self.rgb is not None and self.alpha is not None
        return canvas * (1 - self.alpha) + self.rgb


def _disc(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray, radius: float,
          out: np.ndarray) -> None:
    """Soft irregular disc coverage, maximised into ``out`` in place (only its bounding box is touched)."""
    hc, wc = shape
    pad = int(radius * 1.3) + 2
    x0, x1 = max(int(centre[0]) - pad, 0), min(int(centre[0]) + pad + 1, wc)
    y0, y1 = max(int(centre[1]) - pad, 0), min(int(centre[1]) + pad + 1, hc)
    if x0 >= x1 or y0 >= y1:
        return
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = x + 0.5 - centre[0], y + 0.5 - centre[1]
    k, ph = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi)
    rad = radius * (1 + 0.15 * np.sin(k * np.arctan2(dy, dx) + ph))
    cover = np.clip((rad - np.hypot(dx, dy)) / (0.2 * radius + 1.0), 0, 1)
    np.maximum(out[y0:y1, x0:x1], cover, out=out[y0:y1, x0:x1])


def _place(rng: np.random.Generator, mark: Mark, shape: tuple[int, int], centre: np.ndarray, w: int) -> Layer:
    """Draw one mark's geometry around ``centre`` (canvas px) and return it as a layer."""
    colour = np.asarray(mark.colour, np.float32)
    if mark.kind == "tint":
        return Layer(None, None, colour)
    rgb: np.ndarray = np.zeros((3, *shape), np.float32)
    cover = np.zeros(shape, np.float32)
    size = mark.size * w
    if mark.kind in ("patch", "spots"):
        spread = 0.0 if mark.kind == "patch" else 0.22 * w
        for _ in range(mark.count):
            _disc(rng, shape, centre + rng.uniform(-spread, spread, 2), size, cover)
        rgb = colour[:, None, None] * (0.85 + 0.15 * R.smooth_noise(rng, shape, max(size / 2, 2.0))) * cover
    elif mark.kind == "ring":
        D.ring(rgb, cover, centre.astype(np.float32), size, max(0.009 * w, 1.0), colour)
    else:                                   # clips / line: metallic-shaded bars (stroke on black = premultiplied)
        half_w = max((0.014 if mark.kind == "clips" else 0.007) * w, 1.0)
        for _ in range(mark.count):
            mid = centre + (rng.uniform(-0.1 * w, 0.1 * w, 2) if mark.kind == "clips" else 0.0)
            ang = rng.uniform(0, np.pi)
            d = 0.5 * size * np.array([np.cos(ang), np.sin(ang)])
            D.stroke(rgb, cover, (mid - d).astype(np.float32), (mid + d).astype(np.float32), half_w, colour)
    a = np.float32(mark.alpha)
    return Layer((rgb * a).astype(np.float32), (cover * a).astype(np.float32))


def place_marks(rng: np.random.Generator, marks: tuple[tuple[Mark, ...], ...], phases: list[int],
                scene: R.Scene) -> list[list[Layer]]:
    """Layers of each phase in ``phases`` (the video's segments, in order), placed once per video."""
    shape = scene.colour.shape[1:]
    hc, wc = shape
    w = scene.width
    out = []
    for phase in phases:
        layers = []
        for mark in marks[phase]:
            if mark.at_blob and scene.has_blob:
                centre: np.ndarray = np.asarray(scene.blob_centre, np.float32)
            else:
                centre = np.array([wc / 2, hc / 2], np.float32) + rng.uniform(-0.08 * w, 0.08 * w, 2)
            layers.append(_place(rng, mark, shape, centre, w))
        out.append(layers)
    return out


def _composite(base: np.ndarray, layers: list[Layer]) -> np.ndarray:
    out = base
    for lay in layers:
        out = lay.apply(out)
    return np.ascontiguousarray(out, np.float32)


def stage_canvases(rng: np.random.Generator, marks: tuple[tuple[Mark, ...], ...], phases: list[int],
                   scene: R.Scene) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per segment: (colour, colour_blob) canvases with that segment's marks and the earlier persistent ones."""
    placed = place_marks(rng, marks, phases, scene)
    stages = []
    for j, layers in enumerate(placed):
        active = [lay for i in range(j) for lay, m in zip(placed[i], marks[phases[i]]) if m.persist] + layers
        colour = _composite(scene.colour, active)
        stages.append((colour, _composite(scene.colour_blob, active) if scene.has_blob else colour))
    return stages
