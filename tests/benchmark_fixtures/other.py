"""Tiny fixtures in the real on-disk formats of the action, triplet, skill and dense benchmarks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark_fixtures.media import write_depth_u16, write_image, write_mask, write_text, write_video
from orchestrator.benchmarks.adapters.classes import SA160_ACTIONS
from orchestrator.benchmarks.registry import C3VD_TEST_SEQUENCES, CHOLECT50_FOLDS


def build_sa160(root: Path) -> Path:
    for c, name in enumerate(SA160_ACTIONS, start=1):
        folder = root / f"{c:02d}_{name.replace(' ', '_').replace('-', '_')}"
        for k in range(1, 11):
            write_video(folder / f"{c:02d}_{k:02d}.mp4")
    write_text(root / "README.txt", "not a class folder\n")
    return root


AVOS_TRAIN, AVOS_TEST = ["vidA", "vidB", "vidC", "vidD", "vidE"], ["vidT1", "vidT2"]


def build_avos(root: Path) -> Path:
    rows = ["video_id,start_seconds,end_seconds,start_frame,end_frame,label"]
    for vid in AVOS_TRAIN + AVOS_TEST:
        write_video(root / "videos" / f"{vid}.mp4")
        rows += [f"{vid},0,1.5,0,45,Cutting", f"{vid},1.5,2.0,45,60,none", f"{vid},2.0,3.0,60,90,suturing",
                 f"{vid},3.0,3.5,90,105,abstain", f"{vid},3.5,4.0,105,120,background"]
    write_text(root / "open_surgery_temporal_annotations_Jan16.csv", "\n".join(rows) + "\n")
    write_text(root / "train.csv", "video_id\n" + "\n".join(AVOS_TRAIN) + "\n")
    write_text(root / "test.csv", "video_id\n" + "\n".join(AVOS_TEST) + "\n")
    return root


def build_polypdiag(root: Path) -> Path:
    train = [f"{i:05d}.mp4,{i % 2}" for i in range(1, 11)]
    test = [f"{i:05d}.mp4,{i % 2}" for i in range(11, 15)]
    for line in train + test:
        write_video(root / "videos" / line.split(",")[0])
    write_text(root / "splits" / "train.txt", "\n".join(train) + "\n")
    write_text(root / "splits" / "val.txt", "\n".join(test) + "\n")
    return root


INSTRUMENTS = ["grasper", "bipolar", "hook", "scissors", "clipper", "irrigator"]
VERBS = ["grasp", "retract", "dissect", "coagulate", "clip", "cut", "aspirate", "irrigate", "pack", "null_verb"]
TARGETS = ["gallbladder", "cystic_plate", "cystic_duct", "cystic_artery", "cystic_pedicle", "blood_vessel", "fluid",
           "abdominal_wall_cavity", "liver", "adhesion", "omentum", "peritoneum", "gut", "specimen_bag",
           "null_target"]


def fixture_triplet_map() -> np.ndarray:
    """The fixture's own (synthetic) triplet -> (i, v, t) table: 94-99 are <instrument k, null_verb, null_target>."""
    j = np.arange(94)
    valid = np.stack([j % 6, j % 9, j % 14], axis=1)
    null = np.stack([np.arange(6), np.full(6, 9), np.full(6, 14)], axis=1)
    return np.concatenate([valid, null]).astype(np.int64)


def _instance(ivt: int, table: np.ndarray, phase: int) -> list[float]:
    i, v, t = (int(x) for x in table[ivt])
    return [ivt, i, 1, 0.1, 0.1, 0.2, 0.2, v, t, 1, -1, -1, -1, -1, phase]


# frame -> instances of every fixture video: two triplets, a null triplet (94 + 2), nothing, a -1 instance
CHOLECT50_FRAMES = {"0": [1, 17], "1": [96], "2": [], "3": [-1]}


def build_cholect50(root: Path) -> Path:
    table = fixture_triplet_map()
    rows = [f"{k},{i},{v},{t},{i * 10 + v},{i * 15 + t}" for k, (i, v, t) in enumerate(table)]
    lines = ["# IVT, I, V, T, IV, IT", *rows]
    write_text(root / "label_mapping.txt", "\n".join(lines) + "\n")
    cats = {"triplet": {str(k): f"{INSTRUMENTS[i]},{VERBS[v]},{TARGETS[t]}" for k, (i, v, t) in enumerate(table)},
            "instrument": dict(enumerate(INSTRUMENTS)), "verb": dict(enumerate(VERBS)),
            "target": dict(enumerate(TARGETS)), "phase": {"0": "preparation"}}
    for vid in [v for vids in CHOLECT50_FOLDS.values() for v in vids]:
        ann = {f: [_instance(k, table, 0) if k >= 0 else [-1] * 14 + [0] for k in ks]
               for f, ks in CHOLECT50_FRAMES.items()}
        doc = {"video": int(vid[3:]), "fps": 1, "num_frames": 4, "categories": cats, "annotations": ann,
               "info": "fixture", "licenses": "none"}
        write_text(root / "labels" / f"{vid}.json", json.dumps(doc))
        (root / "videos" / vid).mkdir(parents=True, exist_ok=True)
    for f in range(4):
        write_image(root / "videos" / "VID79" / f"{f:06d}.png", seed=f)
    return root


JIGSAWS_ITEMS = [2, 3, 3, 2, 3, 2]  # six GRS items of every fixture trial except the first (GRS = sum = 15)


def build_jigsaws(root: Path) -> Path:
    """Suturing: subjects B-I x trials 1-5; Knot_Tying: subjects B-D x trials 1-3 (capture2 only for B)."""
    for task, subjects, reps in (("Suturing", "BCDEFGHI", 5), ("Knot_Tying", "BCD", 3)):
        lines = []
        for s in subjects:
            for r in range(1, reps + 1):
                trial = f"{task}_{s}{r:03d}"
                items = [5, 5, 5, 5, 5, 5] if (s, r) == ("B", 1) else JIGSAWS_ITEMS
                skill = "E" if s in "BC" else "N"
                lines.append("\t".join([trial, "", skill, str(sum(items)), *map(str, items)]))
                write_video(root / task / "video" / f"{trial}_capture1.avi")
                if s == "B":
                    write_video(root / task / "video" / f"{trial}_capture2.avi")
        write_text(root / task / f"meta_file_{task}.txt", "\n".join(lines) + "\n")
    return root


PRANET_TEST = ["Kvasir", "CVC-ClinicDB", "CVC-300", "CVC-ColonDB", "ETIS-LaribPolypDB"]


def build_pranet(root: Path) -> Path:
    for i in range(10):
        write_image(root / "TrainDataset" / "images" / f"train{i}.png", seed=i)
        write_mask(root / "TrainDataset" / "masks" / f"train{i}.png")
    for name in PRANET_TEST:
        for i in range(2):
            write_image(root / "TestDataset" / name / "images" / f"{name}_{i}.png", seed=100 + i)
            write_mask(root / "TestDataset" / name / "masks" / f"{name}_{i}.png")
    return root


C3VD_DEPTH = np.array([[0, 65535, 32768], [655, 6554, 1]], dtype=np.uint16)
C3VD_TRAIN = ["cecum_t1_b", "trans_t1_a", "sigmoid_t1_a", "desc_t4_a"]


def build_c3vd(root: Path) -> Path:
    """v1 layout (``NNNN_color.png`` + ``NNNN_depth.tiff``) except ``desc_t4_a`` in the v2 layout."""
    for seq in C3VD_TEST_SEQUENCES + C3VD_TRAIN:
        for f in range(2):
            if seq == "desc_t4_a":
                write_image(root / seq / "rgb" / f"{f:04d}.png", seed=f, size=(3, 2))
                write_depth_u16(root / seq / "depth" / f"{f:04d}_depth.tiff", C3VD_DEPTH)
            else:
                write_image(root / seq / f"{f:04d}_color.png", seed=f, size=(3, 2))
                write_depth_u16(root / seq / f"{f:04d}_depth.tiff", C3VD_DEPTH)
    write_text(root / seq / "pose.txt", ",".join(["1"] * 16) + "\n")
    return root
