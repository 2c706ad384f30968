"""Tiny fixtures for the generic private-data layouts (the phase-CSV one is Atlas-Neurosurgical's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark_fixtures.media import write_depth_u16, write_image, write_mask, write_text, write_video

CLIP_CLASSES = ["grasp", "cut", "idle"]


def build_clip_csv(root: Path) -> Path:
    for split, vids in (("train", ["v1", "v2", "v3", "v4"]), ("test", ["v9"])):
        rows = ["path,label,video_id,start_s,end_s"]
        for i, vid in enumerate(vids):
            write_video(root / "clips" / f"{vid}.mp4")
            rows += [f"clips/{vid}.mp4,{CLIP_CLASSES[i % 3]},{vid},0,1.5", f"clips/{vid}.mp4,2,{vid},1.5,3"]
        write_text(root / "splits" / f"{split}.csv", "\n".join(rows) + "\n")
    return root


def build_image_mask(root: Path) -> Path:
    for split, n in (("train", 6), ("test", 2)):
        for i in range(n):
            write_image(root / split / "images" / f"img{i}.jpg", seed=i)
            write_mask(root / split / "masks" / f"img{i}.png")
    return root


def build_image_depth(root: Path) -> Path:
    """One sub-folder per video (video-level split); depth as uint16 PNG with a 0.01 mm/unit scale file."""
    for split, vids in (("train", ["seqA", "seqB", "seqC"]), ("test", ["seqT"])):
        for vid in vids:
            for f in range(2):
                write_image(root / split / "images" / vid / f"{f:03d}.png", seed=f, size=(3, 2))
                write_depth_u16(root / split / "depth" / vid / f"{f:03d}.png", np.full((2, 3), 1000))
    write_text(root / "depth_scale.json", json.dumps({"scale_to_mm": 0.01, "max_depth_mm": 200}))
    return root
