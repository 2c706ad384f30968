"""Tiny fixtures in the real on-disk formats of the phase-recognition benchmarks (a few seconds each)."""
from __future__ import annotations

import pickle
from pathlib import Path

from benchmark_fixtures.media import write_image, write_text, write_video
from orchestrator.benchmarks.adapters.classes import CHOLEC80_PHASES, EGOSURGERY_PHASES, M2CAI16_PHASES

# Cholec80 video01 changes phase after frame 25: label at 1 s must be the row of frame 25 (Preparation), not
# the last label of second 1 (CalotTriangleDissection).
CHOLEC80_V01_LABELS = [0, 0, 2]  # expected labels at 0, 1, 2 s (frames 0, 25, 50)


def _cholec_rows(names: list[str], first_change: int, n_frames: int = 75) -> str:
    rows = ["Frame\tPhase"]
    for f in range(n_frames):
        rows.append(f"{f}\t{names[0] if f <= first_change else names[1] if f < 50 else names[2]}")
    return "\n".join(rows) + "\n"


def build_cholec80(root: Path) -> Path:
    for v in range(1, 81):
        vid = f"video{v:02d}"
        write_video(root / "videos" / f"{vid}.mp4")
        change = 25 if v == 1 else 24
        write_text(root / "phase_annotations" / f"{vid}-phase.txt", _cholec_rows(CHOLEC80_PHASES, change))
    return root


def build_m2cai16(root: Path) -> Path:
    for folder, prefix, n in (("train_dataset", "workflow_video", 27), ("test_dataset", "test_workflow_video", 14)):
        for v in range(1, n + 1):
            vid = f"{prefix}_{v:02d}"
            write_video(root / folder / f"{vid}.mp4")
            rows = ["Frame Phase"] + [f"{f} {M2CAI16_PHASES[min(f // 25, 2)]}" for f in range(75)]
            write_text(root / folder / f"{vid}.txt", "\n".join(rows) + "\n")
            write_text(root / folder / f"{vid}_timestamp.txt", "not an annotation file\n")
    return root


def build_autolaparo(root: Path) -> Path:
    for v in range(1, 22):
        write_video(root / "videos" / f"{v:02d}.mp4")
        rows = ["Frame\tPhase"] + [f"{f}\t{1 + (f + v) % 7}" for f in range(4)]
        write_text(root / "labels" / f"label_{v:02d}.txt", "\n".join(rows) + "\n")
    return root


def build_egosurgery(root: Path) -> Path:
    """Cases 1-21 minus 16, one view each (case 01 has two); case 05 is annotated sparsely (every 60 frames);
    case 06 ships a frame folder instead of a video."""
    cases = [c for c in range(1, 22) if c != 16]
    for c in cases:
        for view in ((1, 2) if c == 1 else (1,)):
            vid = f"{c:02d}_{view}"
            step = 60 if c == 5 else 15
            rows = ["Frame,Phase"] + [f"{vid}_{f:06d},{EGOSURGERY_PHASES[(f // 30) % 9].capitalize()}"
                                      for f in range(0, 120, step)]
            write_text(root / "annotations" / "phase" / f"{vid}.csv", "\n".join(rows) + "\n")
            if c == 6:
                write_image(root / "images" / vid / f"{vid}_000000.jpg")
            else:
                write_video(root / "videos" / f"{vid}.mp4")
    return root


PITVIS_STEPS_ROWS = [1, 1, 11, 2, -1, 14]  # int_step at seconds 0..5 -> kept ids 0, 0, -, 1, -, 11


def build_pitvis(root: Path) -> Path:
    for v in range(1, 26):
        write_video(root / "videos" / f"video_{v:02d}.mp4")
        rows = ["int_video,int_time,int_step,int_instrument1,int_instrument2"]
        rows += [f"{v},{t},{step},0,-1" for t, step in enumerate(PITVIS_STEPS_ROWS)]
        write_text(root / f"annotations_{v:02d}.csv", "\n".join(rows) + "\n")
    return root


ATLAS_CLASSES = ["approach", "craniotomy", "resection"]


def build_atlas(root: Path) -> Path:
    write_text(root / "classes.txt", "\n".join(ATLAS_CLASSES) + "\n")
    train, test = [f"case{i:03d}" for i in range(1, 6)], ["case101", "case113"]
    write_text(root / "splits" / "train.txt", "\n".join(train) + "\n")
    write_text(root / "splits" / "test.txt", "\n".join(test) + "\n")
    for vid in train + test:
        write_video(root / "videos" / f"{vid}.mp4")
        rows = ["frame,phase", "0,approach", "1,approach", "2,1", "3,resection"]
        write_text(root / "annotations" / f"{vid}.csv", "\n".join(rows) + "\n")
    return root


OPHNET_ROWS = [  # video_id, start, end, split, surgery_id, phase_id
    ("case_0001", 0, 2.5, "train", 0, 6), ("case_0001", 2.5, 4.0, "train", 0, 7),
    ("case_0002", 0, 1.2, "train", 5, 3), ("case_0002", 2.0, 3.0, "train", 0, 1),  # gap [1.2, 2.0): 2 s is kept
    ("case_0003", 0, 2.0, "val", 0, 0), ("case_0003", 1.5, 3.0, "val", 0, 95),     # overlap: 1.5 s+ -> 95
    ("case_0004", 0, 3.0, "test", 2, 4),
]


def build_ophnet(root: Path) -> Path:
    rows = ["video_id,start,end,split,surgery_id,phase_id"] + [",".join(map(str, r)) for r in OPHNET_ROWS]
    write_text(root / "annotation" / "OphNet2024_loca_challenge_phase.csv", "\n".join(rows) + "\n")
    for vid in sorted({r[0] for r in OPHNET_ROWS}):
        write_video(root / "videos" / f"{vid}.mp4")
    return root


PMLR50_SPLITS = {"train": ["P01", "P02", "P03"], "val": ["P04"], "test": ["P05", "P06"]}


def build_pmlr50(root: Path) -> Path:
    for split, vids in PMLR50_SPLITS.items():
        table = {vid: [{"unique_id": i, "frame_id": i, "video_id": vid, "phase_gt": min(i, 4), "fps": 1}
                       for i in range(6)] for vid in vids}
        path = root / "labels" / split / f"1fps{split}.pickle"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(table))
        for vid in vids:
            write_video(root / "videos" / f"{vid}.mp4")
    return root
