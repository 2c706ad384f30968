"""Drawing primitives of the synthetic generator, shared by the instruments (``synthetic_render``) and the phase
marks (``synthetic_marks``): anti-aliased metallic capsules, rings and glows, drawn in place into channel-first
float32 RGB images with a coverage map. Vectorised over small bounding boxes; no per-pixel Python loops."""
from __future__ import annotations

import numpy as np


def stroke(rgb: np.ndarray, cover: np.ndarray, a: np.ndarray, b: np.ndarray, half_w: float,
           colour: np.ndarray) -> None:
    """Draw an anti-aliased capsule from ``a`` to ``b`` with metallic cross-shading, in place.

    ``rgb`` is channel-first (3, H, W). Long diagonal strokes are processed in pieces along the axis (each pixel
    belongs to the piece its projection falls in), so only small bounding boxes are touched."""
    d = (b - a).astype(np.float32)
    length = float(np.hypot(d[0], d[1])) + 1e-6
    k = int(np.ceil(length / max(8 * half_w, 48.0)))
    for i in range(k):
        stroke_piece(rgb, cover, a, d, length, half_w, colour, (i / k, (i + 1) / k if i < k - 1 else 2.0))


def stroke_piece(rgb: np.ndarray, cover: np.ndarray, a: np.ndarray, d: np.ndarray, length: float, half_w: float,
                 colour: np.ndarray, span: tuple[float, float]) -> None:
    """The part of a stroke whose axis projection falls in ``span`` (fractions of its length)."""
    h, w = cover.shape
    pa, pb = a + span[0] * d, a + min(span[1], 1.0) * d
    pad = half_w + 2
    x0, x1 = int(max(min(pa[0], pb[0]) - pad, 0)), int(min(max(pa[0], pb[0]) + pad + 1, w))
    y0, y1 = int(max(min(pa[1], pb[1]) - pad, 0)), int(min(max(pa[1], pb[1]) + pad + 1, h))
    if x0 >= x1 or y0 >= y1:
        return
    py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length ** 2, 0, 1)
    ex, ey = px - (a[0] + t * d[0]), py - (a[1] + t * d[1])
    alpha = np.clip(half_w + 0.5 - np.sqrt(ex ** 2 + ey ** 2), 0, 1) * ((t >= span[0]) & (t < span[1]))
    across = np.clip((ey * d[0] - ex * d[1]) / (length * half_w), -1, 1)     # signed position across the shaft
    lum = 0.55 + 0.45 * np.cos(across * 1.4) + 0.6 * np.exp(-((across - 0.35) / 0.18) ** 2)
    box = rgb[:, y0:y1, x0:x1]
    box += (colour[:, None, None] * lum - box) * alpha
    np.maximum(cover[y0:y1, x0:x1], alpha, out=cover[y0:y1, x0:x1])


def rot(v: np.ndarray, ang: float) -> np.ndarray:
    """2-D vector ``v`` rotated by ``ang`` radians."""
    c, s = np.cos(ang), np.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]], np.float32)


def ring(rgb: np.ndarray, cover: np.ndarray, centre: np.ndarray, radius: float, half_w: float,
         colour: np.ndarray) -> None:
    """A circle outline (snare loop, capsulorhexis rim, lens implant): 12 capsules around the circle."""
    angles = np.linspace(0, 2 * np.pi, 13)
    pts = centre[None, :] + radius * np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    for p, q in zip(pts[:-1], pts[1:]):
        stroke(rgb, cover, p, q, half_w, colour)


def glow(rgb: np.ndarray, centre: np.ndarray, sigma: float, amount: float) -> None:
    """Add a warm Gaussian glow (coagulation) of width ``sigma`` px around ``centre``, in place."""
    h, w = rgb.shape[1:]
    r = int(3 * sigma) + 1
    x0, x1 = max(int(centre[0]) - r, 0), min(int(centre[0]) + r + 1, w)
    y0, y1 = max(int(centre[1]) - r, 0), min(int(centre[1]) + r + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - centre[1]
    px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - centre[0]
    g = amount * np.exp(-(px ** 2 + py ** 2) / (2 * sigma ** 2))
    rgb[:, y0:y1, x0:x1] += np.array([1.0, 0.92, 0.65], np.float32)[:, None, None] * g
