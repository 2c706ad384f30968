"""Split logic and time-subsampling helpers shared by the benchmark adapters.

Everything here is deterministic and independent of ``PYTHONHASHSEED``, the platform and the Python version:
random choices are made by ranking ids on ``sha256(f"{seed}|...|{id}")``. That ranking is also stable: adding or
removing one video does not re-shuffle the others.

Split kinds (see :class:`~orchestrator.benchmarks.spec.SplitSpec`):

* ``official``: ``train``/``val``/``test`` come from ``spec.splits.ids`` or, when that is empty, from the
  dataset's own files (the adapter passes them in). All three must exist.
* ``seeded_val_from_train``: the dataset has no val split. ``val`` is a seeded, **video-level** fraction
  (``val_fraction``, at least one video) of the official train videos, optionally stratified by a per-video
  label; ``train`` is the rest; ``test`` is the official test split. An official val split, if any, is ignored.
  val therefore never equals (nor overlaps) test.
* ``folds``: the adapter builds ``train``/``val``/``test`` for ``spec.splits.fold`` itself with the helpers
  below (CholecT50 official cross-validation, JIGSAWS LOSO/LOUO, stratified folds for SurgicalActions160).

:func:`select_split` applies the kind and checks that the three splits are pairwise disjoint.
"""
from __future__ import annotations

import bisect
import hashlib
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec

T = TypeVar("T")
SPLITS: tuple[str, str, str] = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- ranking
def rank_key(seed: int, *parts: str) -> str:
    """Deterministic pseudo-random sort key for ``parts`` under ``seed`` (hex sha256)."""
    return hashlib.sha256("|".join([str(seed), *parts]).encode("utf-8")).hexdigest()


def seeded_order(ids: Sequence[str], seed: int, salt: str = "") -> list[str]:
    """``ids`` (de-duplicated) in a seeded pseudo-random order."""
    return sorted(set(ids), key=lambda i: (rank_key(seed, salt, i), i))


def _n_val(n: int, fraction: float) -> int:
    return min(max(1, round(fraction * n)), n - 1)


def seeded_val_split(
    train_ids: Sequence[str],
    fraction: float,
    seed: int,
    strata: Mapping[str, Hashable] | None = None,
) -> tuple[list[str], list[str]]:
    """Split train video ids into (train, val); val = the first ``round(fraction * n)`` ids (at least one) in
    :func:`seeded_order`. With ``strata`` (video id -> label) the fraction is taken per stratum (strata with a
    single video stay in train). Returns two sorted lists."""
    ids = sorted(set(train_ids))
    if len(ids) < 2:
        raise BenchmarkError(f"cannot carve a val split out of {len(ids)} train video(s): {ids}")
    if strata is None:
        val = seeded_order(ids, seed, "val")[: _n_val(len(ids), fraction)]
    else:
        groups: dict[Hashable, list[str]] = {}
        for vid in ids:
            if vid not in strata:
                raise BenchmarkError(f"seeded val split: no stratum for video {vid!r}")
            groups.setdefault(strata[vid], []).append(vid)
        val = []
        for key in sorted(groups, key=str):
            members = groups[key]
            if len(members) >= 2:
                val += seeded_order(members, seed, f"val|{key}")[: _n_val(len(members), fraction)]
        if not val:
            val = seeded_order(ids, seed, "val")[: _n_val(len(ids), fraction)]
    val_set = set(val)
    return [i for i in ids if i not in val_set], sorted(val_set)


# ------------------------------------------------------------------------------------------ selection
def check_disjoint(groups: Mapping[str, Sequence[str]], what: str) -> None:
    """Raise if any two splits share a video id (this also rules out val == test)."""
    names = [s for s in SPLITS if s in groups]
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            both = sorted(set(groups[a]) & set(groups[b]))
            if both:
                raise BenchmarkError(f"{what}: splits {a!r} and {b!r} share videos {both[:10]}")


def official_groups(
    spec: BenchmarkSpec, from_files: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """The dataset's official split: ``spec.splits.ids`` when it names train or test, else the adapter's
    split read from the dataset files (``from_files``)."""
    ids = spec.splits.ids
    if any(k in ids for k in SPLITS):
        return {k: list(v) for k, v in ids.items() if k in SPLITS}
    return {k: list(v) for k, v in (from_files or {}).items() if k in SPLITS}


def split_groups(
    spec: BenchmarkSpec,
    official: Mapping[str, Sequence[str]],
    strata: Mapping[str, Hashable] | None = None,
) -> dict[str, list[str]]:
    """train/val/test video ids after applying ``spec.splits.kind`` to the official split (or, for ``folds``,
    to the adapter's per-fold split)."""
    kind = spec.splits.kind
    if kind == "seeded_val_from_train":
        for need in ("train", "test"):
            if not official.get(need):
                raise BenchmarkError(f"{spec.name}: official {need!r} split is empty or missing")
        train, val = seeded_val_split(official["train"], spec.splits.val_fraction, spec.splits.seed, strata)
        groups = {"train": train, "val": val, "test": sorted(set(official["test"]))}
    else:
        missing = [s for s in SPLITS if not official.get(s)]
        if missing:
            hint = " (use SplitSpec(kind='seeded_val_from_train'))" if missing == ["val"] else ""
            raise BenchmarkError(f"{spec.name}: split(s) {missing} empty or missing for kind={kind!r}{hint}")
        groups = {s: sorted(set(official[s])) for s in SPLITS}
    check_disjoint(groups, spec.name)
    return groups


def select_split(
    spec: BenchmarkSpec,
    split: str,
    official: Mapping[str, Sequence[str]],
    strata: Mapping[str, Hashable] | None = None,
) -> list[str]:
    """Sorted video ids of ``split`` (see :func:`split_groups`)."""
    if split not in SPLITS:
        raise BenchmarkError(f"{spec.name}: unknown split {split!r}; expected one of {list(SPLITS)}")
    return split_groups(spec, official, strata)[split]


# ------------------------------------------------------------------------------------------------ folds
def stratified_folds(labels: Mapping[str, Hashable], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of ids, stratified by label: within each class the ids are put in :func:`seeded_order`
    and dealt round-robin, starting at a class-dependent offset so fold sizes stay balanced."""
    folds: list[list[str]] = [[] for _ in range(k)]
    by_class: dict[Hashable, list[str]] = {}
    for vid, lab in labels.items():
        by_class.setdefault(lab, []).append(vid)
    offset = 0
    for lab in sorted(by_class, key=str):
        for j, vid in enumerate(seeded_order(by_class[lab], seed, f"fold|{lab}")):
            folds[(offset + j) % k].append(vid)
        offset += len(by_class[lab])
    return [sorted(f) for f in folds]


def fold_groups(folds: Sequence[Sequence[str]], test_fold: int) -> dict[str, list[str]]:
    """test = fold ``test_fold``, val = the next fold (cyclically), train = the remaining folds."""
    k = len(folds)
    if not 0 <= test_fold < k:
        raise BenchmarkError(f"fold {test_fold} out of range 0..{k - 1}")
    val_fold = (test_fold + 1) % k
    train = [v for i, f in enumerate(folds) if i not in (test_fold, val_fold) for v in f]
    return {"train": sorted(train), "val": sorted(folds[val_fold]), "test": sorted(folds[test_fold])}


def cholect50_fold_groups(folds: Mapping[str, Sequence[str]], fold: int) -> dict[str, list[str]]:
    """CholecT50 official cross-validation (``cholect50-crossval``): test = ``folds[f"fold{fold}"]``; the other
    folds are concatenated in their listed order and the **last 5 videos** of that list become val."""
    key = f"fold{fold}"
    if key not in folds:
        raise BenchmarkError(f"CholecT50: fold {fold} unknown; folds are {sorted(folds)}")
    rest = [v for name, vids in folds.items() if name != key for v in vids]
    return {"train": rest[:-5], "val": rest[-5:], "test": list(folds[key])}


def scheme_fold(groups: Mapping[str, Sequence[str]], fold: int) -> tuple[str, str]:
    """Map a flat fold index onto (scheme, held-out group). ``groups`` lists, per scheme, its held-out groups in
    order (e.g. JIGSAWS ``{"LOSO": ["1".."5"], "LOUO": ["B".."I"]}``); fold indices enumerate their
    concatenation (JIGSAWS: 0-4 = LOSO, 5-12 = LOUO)."""
    flat = [(scheme, g) for scheme, gs in groups.items() for g in gs]
    if not 0 <= fold < len(flat):
        raise BenchmarkError(f"fold {fold} out of range 0..{len(flat) - 1} ({dict(groups)})")
    return flat[fold]


def fold_index(groups: Mapping[str, Sequence[str]], scheme: str, group: str) -> int:
    """Inverse of :func:`scheme_fold`."""
    flat = [(s, g) for s, gs in groups.items() for g in gs]
    try:
        return flat.index((scheme, group))
    except ValueError:
        raise BenchmarkError(f"no fold for scheme {scheme!r} group {group!r}; known: {dict(groups)}") from None


def leave_group_out(
    members: Mapping[str, str], held_out: str, all_groups: Sequence[str], seed: int, salt: str
) -> dict[str, list[str]]:
    """Leave-one-group-out: test = items of ``held_out``; val = items of one other group picked by seeded
    ranking among the remaining groups that have items; train = the rest. ``members``: item id -> group."""
    present = [g for g in all_groups if g != held_out and any(m == g for m in members.values())]
    if not present:
        raise BenchmarkError(f"leave-one-group-out: no group besides {held_out!r} has items")
    val_group = min(present, key=lambda g: (rank_key(seed, salt, held_out, g), g))
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for item, g in sorted(members.items()):
        out["test" if g == held_out else "val" if g == val_group else "train"].append(item)
    return out


# ------------------------------------------------------------------------------------------- time axis
def labels_at_sample_fps(
    frames: Sequence[tuple[int, T]], annotation_fps: float, sample_fps: float = 1.0
) -> list[tuple[float, T, int]]:
    """Subsample per-frame labels (frame index at ``annotation_fps``) to instants t_k = k / sample_fps.

    Convention (Cholec80: 1-fps frame i <-> annotation row i*25): the label at t is the annotation of frame
    ``round(t * annotation_fps)``. If that frame has no annotation (sparse files), the latest annotated frame
    before it is used when it lies less than one sample interval earlier; otherwise the instant is skipped.
    Instants run from 0 to the last annotated frame. ``frames`` must have unique frame indices.
    Returns (t, label, annotation frame index) triples.
    """
    if annotation_fps <= 0 or sample_fps <= 0:
        raise BenchmarkError(f"fps must be > 0 (annotation_fps={annotation_fps}, sample_fps={sample_fps})")
    rows = sorted(frames, key=lambda r: r[0])
    if not rows:
        return []
    idx = [r[0] for r in rows]
    window = annotation_fps / sample_fps
    out: list[tuple[float, T, int]] = []
    k = 0
    while True:
        t = k / sample_fps
        target = round(t * annotation_fps)
        if target > idx[-1]:
            return out
        pos = bisect.bisect_right(idx, target) - 1
        if pos >= 0 and target - idx[pos] < window:
            out.append((t, rows[pos][1], idx[pos]))
        k += 1


def intervals_at_sample_fps(
    intervals: Sequence[tuple[float, float, T]], sample_fps: float = 1.0
) -> list[tuple[float, T]]:
    """Labels at instants t_k = k / sample_fps from (start_s, end_s, label) intervals: t is labelled by the
    interval with start <= t < end (the one with the latest start if several overlap); uncovered instants are
    skipped."""
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda iv: iv[0])
    last_end = max(iv[1] for iv in ordered)
    out: list[tuple[float, T]] = []
    k = 0
    while k / sample_fps < last_end:
        t = k / sample_fps
        hit = None
        for start, end, lab in ordered:
            if start > t:
                break
            if t < end:
                hit = lab
        if hit is not None:
            out.append((t, hit))
        k += 1
    return out
