"""Read and check a prediction ``.npz`` file and score it (``experiments/score.py``; the metrics themselves come
from :func:`orchestrator.benchmarks.metrics.score_arrays`).

Every input problem (missing file or key, wrong dtype or shape, out-of-range labels) raises
:class:`ScoreInputError` whose message names the file and the key. NPZ keys per task are in ``NPZ_KEYS`` and
documented in docs/metrics.md.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from model.tasks import TASKS
from orchestrator.benchmarks.metrics import ScoreOptions, score_arrays
from orchestrator.benchmarks.metrics_triplet import read_triplet_maps

# key -> (accepted dtype kinds, ndim); numpy kinds: b bool, i/u int, f float, U/S str.
_KeySpec = tuple[str, int]
NPZ_KEYS: dict[str, dict[str, _KeySpec]] = {
    "phase": {"video": ("USiu", 1), "target": ("iu", 1), "pred": ("iu", 1)},
    "action": {"video": ("USiu", 1), "target": ("iu", 1), "pred": ("iu", 1)},
    "triplet": {"video": ("USiu", 1), "target": ("biuf", 2), "score": ("f", 2)},
    "skill": {"target": ("iuf", 1), "pred": ("iuf", 1)},
    "segmentation": {"target": ("biuf", 3), "score": ("f", 3)},
    "depth": {"target": ("f", 3), "pred": ("f", 3)},
}
OPTIONAL_NPZ_KEYS: dict[str, dict[str, _KeySpec]] = {"triplet": {"maps": ("iu", 2)}, "depth": {"valid": ("b", 3)}}


class ScoreInputError(ValueError):
    """Unusable scoring input; the message names the file and, where relevant, the key."""


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an NPZ file (pickled object arrays refused)."""
    if not path.is_file():
        raise ScoreInputError(f"{path}: file not found")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ScoreInputError(f"{path}: not a readable .npz file ({exc})") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ScoreInputError(f"{path}: holds a single array; expected an .npz archive with named keys")
    arrays = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:  # object arrays need pickle, which we refuse
                raise ScoreInputError(
                    f"{path}: key '{key}' is an object array; store ids as a fixed-width str array"
                ) from exc
    return arrays


def _get(arrays: dict[str, np.ndarray], path: Path, key: str, spec: _KeySpec) -> np.ndarray:
    """``arrays[key]`` after checking its dtype kind and number of dimensions."""
    kinds, ndim = spec
    arr = arrays[key]
    if arr.dtype.kind not in kinds:
        raise ScoreInputError(f"{path}: key '{key}' has dtype {arr.dtype}; expected kind(s) '{kinds}'")
    if arr.ndim != ndim:
        raise ScoreInputError(f"{path}: key '{key}' has shape {arr.shape}; expected {ndim} dimension(s)")
    return arr


def read_task_arrays(task: str, path: Path) -> dict[str, np.ndarray]:
    """Load and check the NPZ arrays of ``task``: presence, dtype, ndim and matching shapes."""
    if task not in NPZ_KEYS:
        raise ScoreInputError(f"unknown task {task!r}; expected one of {TASKS}")
    arrays = load_npz_arrays(path)
    required, optional = NPZ_KEYS[task], OPTIONAL_NPZ_KEYS.get(task, {})
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ScoreInputError(f"{path}: missing key(s) {missing} for task '{task}' (found {sorted(arrays)})")
    out = {key: _get(arrays, path, key, spec) for key, spec in required.items()}
    out |= {key: _get(arrays, path, key, spec) for key, spec in optional.items() if key in arrays}
    target = out["target"]
    if target.size == 0:
        raise ScoreInputError(f"{path}: key 'target' is empty (shape {target.shape})")
    for key, arr in out.items():
        if key == "maps":
            continue
        same = arr.shape == target.shape if arr.ndim == target.ndim else len(arr) == len(target)
        if not same:
            raise ScoreInputError(f"{path}: key '{key}' has shape {arr.shape} but 'target' has shape {target.shape}")
    return out


_OPTION_TASKS: dict[str, tuple[str, ...]] = {
    "num_classes": ("phase", "action", "triplet"),
    "relaxed": ("phase",),
    "aggregation": ("phase",),
    "maps_path": ("triplet",),
    "ignore_null": ("triplet",),
}


def _check_options_apply(task: str, options: ScoreOptions) -> None:
    """Refuse options that the task would silently ignore."""
    defaults = ScoreOptions()
    for name, tasks in _OPTION_TASKS.items():
        if task not in tasks and getattr(options, name) != getattr(defaults, name):
            flag = "--" + name.replace("_path", "").replace("_", "-")
            raise ScoreInputError(f"{flag} does not apply to task '{task}' (only to {', '.join(tasks)})")


def read_maps_file(path: Path) -> np.ndarray:
    """A triplet map overriding the default (``--maps``): an ``.npz`` with key ``maps`` ([N_triplets, 3] int), or
    a text table ``IVT, I, V, T[, IV, IT]`` such as CholecT50's own ``label_mapping.txt``."""
    if path.suffix.lower() == ".npz":
        maps = load_npz_arrays(path)
        if "maps" not in maps:
            raise ScoreInputError(f"{path}: missing key ['maps'] (an [N_triplets, 3] int array)")
        return _get(maps, path, "maps", ("iu", 2))
    if not path.is_file():
        raise ScoreInputError(f"{path}: file not found")
    try:
        return read_triplet_maps(path)
    except UnicodeDecodeError as exc:
        raise ScoreInputError(f"{path}: not a text table IVT,I,V,T[,IV,IT] ({exc})") from exc
    except ValueError as exc:
        raise ScoreInputError(str(exc)) from exc


def score_npz(task: str, path: str | Path, options: ScoreOptions | None = None) -> dict[str, float]:
    """Compute the metrics of ``task`` from the NPZ at ``path``; returns metric name -> float (NaN if undefined)."""
    options = options or ScoreOptions()
    npz_path = Path(path)
    arrays = read_task_arrays(task, npz_path)
    _check_options_apply(task, options)
    if task == "triplet" and options.num_classes not in (None, arrays["target"].shape[1]):
        raise ScoreInputError(
            f"{npz_path}: key 'target' has {arrays['target'].shape[1]} triplet columns, not {options.num_classes}"
        )
    if task == "triplet" and options.maps_path is not None:
        arrays["maps"] = read_maps_file(options.maps_path)
    try:
        return score_arrays(task, arrays, options)
    except ScoreInputError:
        raise
    except ValueError as exc:
        raise ScoreInputError(f"{npz_path}: {exc}") from exc
