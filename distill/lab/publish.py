"""Run records that a repository can hold: an experiment's run folders without weights or checkpoints.

`distill report` reads only metrics.json, run.json, config.yaml, predictions.safetensors, failed.json, the
TensorBoard events and the sweep's plan, so a copy of those regenerates the same tables and plots anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

from distill.errors import DistillError
from distill.io import atomic_dir
from distill.lab.sweep import PLAN_FILE
from distill.predictions import FILE as PREDICTIONS

# What a run folder holds that a report reads; everything else (student/, checkpoints/) is weights.
RECORD_FILES = ("run.json", "metrics.json", "failed.json", "config.yaml", PREDICTIONS)
RECORD_FOLDERS = ("tb",)


class PublishError(DistillError):
    pass


def publish(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy each run folder's records under `root` (an experiment, runs/<name>) to the same place under `dest`,
    replacing `dest` as a whole only once the copy is complete. Returns the run folders copied."""
    root, dest = Path(root), Path(dest)
    if not root.is_dir():
        raise PublishError(f"{root}: no such folder; expected runs/<experiment>")
    if dest.resolve() == root.resolve() or root.resolve() in dest.resolve().parents:
        raise PublishError(f"{dest}: inside {root}; publish to a folder outside the runs")
    folders = sorted(f.parent for f in root.rglob("run.json") if "checkpoints" not in f.relative_to(root).parts)
    if not folders:
        raise PublishError(f"{root}: no run folders (run.json) found; run `distill sweep` first")
    with atomic_dir(dest) as tmp:
        if (root / PLAN_FILE).exists():
            shutil.copy2(root / PLAN_FILE, tmp / PLAN_FILE)
        for folder in folders:
            out = tmp / folder.relative_to(root)
            out.mkdir(parents=True, exist_ok=True)
            for name in RECORD_FILES:
                if (folder / name).is_file():
                    shutil.copy2(folder / name, out / name)
            for name in RECORD_FOLDERS:
                if (folder / name).is_dir():
                    shutil.copytree(folder / name, out / name)
    return folders
