"""JIGSAWS skill assessment (global rating score regression): one Sample per trial video.

On disk (one folder per task; any subset of the three tasks may be present)::

    <root>/<Task>/meta_file_<Task>.txt         tab-separated with empty columns
    <root>/<Task>/video/<Task>_<S><NNN>_capture1.avi   (and _capture2.avi)

Meta file columns after dropping empty fields (:data:`META_COLUMNS`): trial name, self-proclaimed skill
N/I/E, GRS total, then the six GRS items (1-5 each; GRS = their sum, range 6-30). ``label`` = GRS total.

Folds (``kind="folds"``): ``spec.splits.ids`` lists the held-out groups per scheme,
``{"LOSO": ["1".."5"], "LOUO": ["B".."I"]}``, and ``spec.splits.fold`` indexes their concatenation:
0-4 = LOSO (SuperTrialOut, hold out trial repetition 1..5 of every subject), 5-12 = LOUO (UserOut, hold out
subject B..I). Test = the held-out group (all tasks pooled; ``meta["task"]`` lets metrics be computed per
task); val = one other group of the same scheme chosen by seeded ranking; train = the rest.
"""
from __future__ import annotations

import re
from pathlib import Path

from orchestrator.benchmarks.adapters.common import parse_float, parse_int, read_text_lines, row_error
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import leave_group_out, official_groups, scheme_fold, select_split

JIGSAWS_TASKS: tuple[str, ...] = ("Suturing", "Knot_Tying", "Needle_Passing")
JIGSAWS_FOLD_GROUPS: dict[str, list[str]] = {
    "LOSO": ["1", "2", "3", "4", "5"],
    "LOUO": ["B", "C", "D", "E", "F", "G", "H", "I"],
}
META_COLUMNS: tuple[str, ...] = (
    "trial", "skill_level", "grs", "respect_for_tissue", "suture_needle_handling", "time_and_motion",
    "flow_of_operation", "overall_performance", "quality_of_final_product",
)
GRS_ITEMS: tuple[str, ...] = META_COLUMNS[3:]
_TRIAL = re.compile(r"(?P<task>[A-Za-z_]+)_(?P<subject>[A-Z])(?P<rep>\d{3})")


def parse_meta_line(path: Path, line: int, text: str, task: str) -> dict:
    """One meta-file line -> {trial, task, subject, super_trial, skill_level, grs, grs_items}."""
    fields = text.split()
    if len(fields) != len(META_COLUMNS):
        raise row_error(path, line, f"expected {len(META_COLUMNS)} non-empty fields {list(META_COLUMNS)}, "
                                    f"got {len(fields)}: {fields}")
    m = _TRIAL.fullmatch(fields[0])
    if not m or m.group("task") != task:
        raise row_error(path, line, f"field 'trial': {fields[0]!r} is not '{task}_<subject><NNN>'")
    if fields[1] not in ("N", "I", "E"):
        raise row_error(path, line, f"field 'skill_level': {fields[1]!r} not in N/I/E")
    grs = parse_float(fields[2], path, line, "grs")
    items = {name: parse_int(v, path, line, name) for name, v in zip(GRS_ITEMS, fields[3:])}
    bad = [k for k, v in items.items() if not 1 <= v <= 5]
    if bad or not 6 <= grs <= 30:
        raise row_error(path, line, f"GRS {grs} outside 6-30 or item(s) {bad} outside 1-5")
    return {"trial": fields[0], "task": task, "subject": m.group("subject"), "super_trial": int(m.group("rep")),
            "skill_level": fields[1], "grs": grs, "grs_items": items}


def read_trials(root: Path) -> dict[str, dict]:
    """All trials of the task folders present under ``root``, keyed by trial name."""
    tasks = [t for t in JIGSAWS_TASKS if (root / t).is_dir()]
    if not tasks:
        raise BenchmarkError(f"JIGSAWS: none of the task folders {[str(root / t) for t in JIGSAWS_TASKS]} exists")
    trials: dict[str, dict] = {}
    for task in tasks:
        meta = root / task / f"meta_file_{task}.txt"
        for line, text in read_text_lines(meta, f"JIGSAWS {task} meta file"):
            rec = parse_meta_line(meta, line, text, task)
            if rec["trial"] in trials:
                raise row_error(meta, line, f"field 'trial': duplicate trial {rec['trial']}")
            trials[rec["trial"]] = rec
    return trials


def jigsaws_groups(spec: BenchmarkSpec, trials: dict[str, dict]) -> dict[str, list[str]]:
    """train/val/test trial names for ``spec.splits.fold`` (see module docstring)."""
    schemes = {k: v for k, v in spec.splits.ids.items() if k in JIGSAWS_FOLD_GROUPS} or JIGSAWS_FOLD_GROUPS
    scheme, held = scheme_fold(schemes, spec.splits.fold or 0)
    key = "super_trial" if scheme == "LOSO" else "subject"
    members = {name: str(rec[key]) for name, rec in trials.items()}
    if held not in members.values():
        raise BenchmarkError(f"{spec.name}: fold {spec.splits.fold} ({scheme} {held}) has no trials")
    return leave_group_out(members, held, schemes[scheme], spec.splits.seed, scheme)


@register_adapter("jigsaws_grs")
def load_jigsaws(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    trials = read_trials(root)
    groups = jigsaws_groups(spec, trials) if spec.splits.kind == "folds" else official_groups(spec)
    out: list[Sample] = []
    for name in select_split(spec, split, groups):
        if name not in trials:
            raise BenchmarkError(f"{spec.name}: trial {name} of the split is in no meta file")
        rec = trials[name]
        video_dir = root / rec["task"] / "video"
        cap1, cap2 = video_dir / f"{name}_capture1.avi", video_dir / f"{name}_capture2.avi"
        if not cap1.is_file():
            raise BenchmarkError(f"{spec.name} video: {cap1} does not exist")
        meta = {k: rec[k] for k in ("task", "subject", "super_trial", "skill_level", "grs_items")}
        meta["capture2"] = str(cap2) if cap2.is_file() else None
        out.append(Sample(sample_id=name, video_id=name, source=str(cap1), label=rec["grs"], meta=meta))
    return out
