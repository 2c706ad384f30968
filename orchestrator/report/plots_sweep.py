"""The drawings of :func:`orchestrator.report.plots.log_sweep_plots`: one function per plot, each taking the arrays
of a predictions file (``orchestrator.probe.trial.prediction_arrays`` format, optionally with ``sample_id``,
``source`` and ``time_s``) and the class names, returning a Figure (or None when there is nothing to draw)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from orchestrator.benchmarks.metrics import score_arrays
from orchestrator.benchmarks.metrics_dense import dice_curve
from orchestrator.report.figures import new_figure

MAX_VIDEOS = 16      # phase ribbons: at most this many test videos
MAX_SAMPLES = 4      # segmentation / depth: samples shown
Arrays = dict[str, np.ndarray]


def class_names(classes: list[str], n: int) -> list[str]:
    """``classes`` when it covers ids 0..n-1, else the ids as text."""
    return list(classes[:n]) if len(classes) >= n else [str(i) for i in range(n)]


def _colors(n: int) -> Any:
    """A qualitative colormap with ``n`` distinct colours (tab10, else tab20 + tab20b)."""
    from matplotlib import colormaps  # deferred: matplotlib (~1 s import), at draw time
    from matplotlib.colors import ListedColormap  # deferred: matplotlib (~1 s import), at draw time

    if n <= 10:
        pool = [colormaps["tab10"](i) for i in range(10)]
    else:  # tab20 then tab20b: 40 distinct colours before any repeats
        pool = [colormaps["tab20"](i) for i in range(20)] + [colormaps["tab20b"](i) for i in range(20)]
    return ListedColormap([pool[i % len(pool)] for i in range(max(n, 1))])


def video_order(arrays: Arrays) -> dict[str, np.ndarray]:
    """Row indices of each video (first-appearance order), sorted by ``time_s`` when the file has it."""
    videos = arrays["video"].astype(str)
    names = list(dict.fromkeys(videos.tolist()))
    out = {}
    for v in names:
        rows = np.flatnonzero(videos == v)
        if "time_s" in arrays:
            rows = rows[np.argsort(arrays["time_s"][rows], kind="stable")]
        out[v] = rows
    return out


# ---------------------------------------------------------------------------------------- classification
def phase_ribbons(arrays: Arrays, classes: list[str]) -> Any:
    """Per test video: a ground-truth ribbon above a prediction ribbon, coloured by phase."""
    from matplotlib.patches import Patch  # deferred: matplotlib (~1 s import), at draw time

    target, pred = arrays["target"].astype(int), arrays["pred"].astype(int)
    n = int(max(target.max(initial=0), pred.max(initial=0)) + 1)
    names, cmap = class_names(classes, n), _colors(n)
    order = video_order(arrays)
    shown = list(order)[:MAX_VIDEOS]
    fig = new_figure(10.0, 0.9 * len(shown) + 1.6)
    axes = fig.subplots(len(shown), 1, squeeze=False).ravel()
    for ax, video in zip(axes, shown):
        rows = order[video]
        t = arrays["time_s"][rows] if "time_s" in arrays else np.arange(len(rows), dtype=float)
        extent = (float(t[0]), float(t[-1]) + (float(t[1] - t[0]) if len(t) > 1 else 1.0), 0.0, 2.0)
        ax.imshow(np.stack([target[rows], pred[rows]]), aspect="auto", cmap=cmap, vmin=-0.5, vmax=n - 0.5,
                  interpolation="nearest", extent=extent)
        ax.set_yticks([1.5, 0.5], ["truth", "pred"], fontsize=7)
        ax.set_ylabel(video, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("time (s)" if "time_s" in arrays else "sample (file order)")
    more = f" (first {len(shown)} of {len(order)} videos)" if len(order) > len(shown) else ""
    fig.suptitle(f"Phase ribbons: ground truth vs prediction{more}")
    fig.legend(handles=[Patch(color=cmap(i), label=names[i]) for i in range(n)], loc="outside lower center",
               ncol=min(n, 4), fontsize=7)
    return fig


def confusion(arrays: Arrays, classes: list[str]) -> Any:
    """Row-normalised confusion matrix (counts written in the cells when there are few classes)."""
    from sklearn.metrics import confusion_matrix  # deferred: scikit-learn (~2 s import), at draw time

    target, pred = arrays["target"].astype(int), arrays["pred"].astype(int)
    n = int(max(target.max(initial=0), pred.max(initial=0), len(classes) - 1) + 1)
    names = class_names(classes, n)
    cm = confusion_matrix(target, pred, labels=list(range(n)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(14.0, 3.0 + 0.45 * n)
    fig = new_figure(size + 1.2, size)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = list(range(n))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7 if n > 12 else 9)
    ax.set_yticks(ticks, names, fontsize=7 if n > 12 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of true class", shrink=0.8)
    ax.set_title(f"Confusion matrix (test, {len(target)} samples)")
    return fig


def per_class_ap(arrays: Arrays, classes: list[str]) -> Any:
    """Average precision of every class with at least one positive test sample."""
    from sklearn.metrics import average_precision_score  # deferred: scikit-learn (~2 s import), at draw time

    target, score = arrays["target"].astype(int), arrays["score"].astype(float)
    names = class_names(classes, target.shape[1])
    ids = [c for c in range(target.shape[1]) if target[:, c].sum() > 0]
    if not ids:
        return None
    ap = np.array([average_precision_score(target[:, c], score[:, c]) for c in ids])
    fig = new_figure(min(24.0, max(6.0, 0.22 * len(ids) + 2.0)), 4.5)
    ax = fig.subplots()
    ax.bar(range(len(ids)), ap, color="#3b75af")
    ax.axhline(float(ap.mean()), color="#d62728", linestyle="--", linewidth=1, label=f"mean {ap.mean():.3f}")
    ax.set_xticks(range(len(ids)), [names[c] for c in ids], rotation=90, fontsize=6 if len(ids) > 30 else 8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("average precision")
    skipped = target.shape[1] - len(ids)
    ax.set_title(f"Per-class AP (test; {skipped} class(es) without positives left out)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def skill_scatter(arrays: Arrays, classes: list[str]) -> Any:
    """Predicted vs true score with the identity line."""
    target, pred = arrays["target"].astype(float).ravel(), arrays["pred"].astype(float).ravel()
    fig = new_figure(5.0, 5.0)
    ax = fig.subplots()
    ax.scatter(target, pred, s=28, alpha=0.8, color="#3b75af", edgecolor="black", linewidth=0.4)
    lo, hi = float(min(target.min(), pred.min())), float(max(target.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", linestyle="--", linewidth=1)
    scores = score_arrays("skill", {"target": target, "pred": pred})
    mae, rho = scores["mae"], scores["spearman"]
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(f"Skill: predicted vs true (MAE {mae:.3f}, Spearman {rho:.3f})")
    ax.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------------------------------------- dense
def pick(n: int, k: int = MAX_SAMPLES) -> list[int]:
    """``k`` evenly spaced sample indices (all of them when n <= k)."""
    return sorted(set(np.linspace(0, n - 1, min(n, k)).round().astype(int).tolist())) if n else []


def background(arrays: Arrays, i: int, shape: tuple[int, int]) -> np.ndarray:
    """The sample's source image fitted to ``shape`` (short side resize + centre crop), else mid gray."""
    h, w = shape
    src = str(arrays["source"][i]) if "source" in arrays else ""
    if src and Path(src).is_file():
        try:
            with Image.open(src) as opened:
                im = opened.convert("RGB")
                s = max(h, w) / min(im.size)
                im = im.resize((max(w, round(im.size[0] * s)), max(h, round(im.size[1] * s))))
                left, top = (im.size[0] - w) // 2, (im.size[1] - h) // 2
                return np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.float32) / 255.0
        except OSError:
            pass
    return np.full((h, w, 3), 0.5, dtype=np.float32)


def _overlay(img: np.ndarray, mask: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    out = img.copy()
    out[mask] = 0.45 * out[mask] + 0.55 * np.asarray(color, dtype=np.float32)
    return out


def _label(arrays: Arrays, i: int) -> str:
    return str(arrays["sample_id"][i]) if "sample_id" in arrays else f"sample {i}"


def segmentation_overlays(arrays: Arrays, classes: list[str]) -> Any:
    """For a few test samples: the true mask (green) and the predicted mask (p >= 0.5, red) over the image, with
    the sample's Dice at 0.5 as the metrics compute it (``metrics_dense.dice_curve``)."""
    target, score = arrays["target"].astype(bool), arrays["score"].astype(float)
    idx = pick(len(target))
    fig = new_figure(6.4, 3.0 * len(idx) + 0.6)
    axes = fig.subplots(len(idx), 2, squeeze=False)
    for row, i in zip(axes, idx):
        img = background(arrays, i, target[i].shape)
        row[0].imshow(_overlay(img, target[i], (0.1, 0.8, 0.2)))
        row[1].imshow(_overlay(img, score[i] >= 0.5, (0.9, 0.15, 0.1)))
        dice = float(dice_curve(target[i], score[i], [0.5])[0])
        row[0].set_title(f"{_label(arrays, i)}: truth", fontsize=9)
        row[1].set_title(f"prediction (Dice {dice:.2f})", fontsize=9)
        for ax in row:
            ax.set_axis_off()
    fig.suptitle("Segmentation: true (green) vs predicted (red) masks")
    return fig


def depth_maps(arrays: Arrays, classes: list[str]) -> Any:
    """For a few test samples: true and predicted depth with one colour scale per sample (invalid = gray)."""
    from matplotlib import colormaps  # deferred: matplotlib (~1 s import), at draw time

    target, pred = arrays["target"].astype(float), arrays["pred"].astype(float)
    idx = pick(len(target))
    cmap = colormaps["viridis"].with_extremes(bad="#808080")
    fig = new_figure(7.0, 3.0 * len(idx) + 0.6)
    axes = fig.subplots(len(idx), 2, squeeze=False)
    for row, i in zip(axes, idx):
        valid = target[i] > 0
        ref = target[i][valid] if valid.any() else pred[i].ravel()
        lo, hi = float(ref.min()), float(ref.max())
        hi = hi if hi > lo else lo + 1.0
        row[0].imshow(np.ma.masked_where(~valid, target[i]), cmap=cmap, vmin=lo, vmax=hi)
        im = row[1].imshow(pred[i], cmap=cmap, vmin=lo, vmax=hi)
        one = {"target": target[i:i + 1], "pred": pred[i:i + 1]}
        rmse = score_arrays("depth", one)["rmse"] if valid.any() else float("nan")
        row[0].set_title(f"{_label(arrays, i)}: truth", fontsize=9)
        row[1].set_title(f"prediction (RMSE {rmse:.2f})", fontsize=9)
        for ax in row:
            ax.set_axis_off()
        fig.colorbar(im, ax=list(row), shrink=0.8, label="depth")
    fig.suptitle("Depth: true vs predicted")
    return fig
