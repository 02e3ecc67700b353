"""Run records that a repository can hold: an experiment's run folders without weights or checkpoints.

`distill report` reads only metrics.json, run.json, config.yaml, predictions.safetensors, failed.json, the
TensorBoard events and the sweep's plan, so a copy of those regenerates the same tables and plots anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

from distill.errors import DistillError
from distill.io import atomic_dir
from distill.lab.records import FAILED_FILE, METRICS_FILE, RUN_FILE, run_folders
from distill.lab.sweep import PLAN_FILE
from distill.predictions import FILE as PREDICTIONS

# What a run folder holds that a report reads; everything else (student/, checkpoints/) is weights.
RECORD_FILES = (RUN_FILE, METRICS_FILE, FAILED_FILE, "config.yaml", PREDICTIONS)
RECORD_FOLDERS = ("tb",)
MARKER = ".published"


class PublishError(DistillError):
    pass


def publish(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy each run folder's records under `root` (an experiment, runs/<name>) to the same place under `dest`,
    replacing `dest` as a whole only once the copy is complete. Returns the run folders copied."""
    root, dest = Path(root), Path(dest)
    if not root.is_dir():
        raise PublishError(f"{root}: no such folder; expected runs/<experiment>")
    src, out = root.resolve(), dest.resolve()
    if out == src or src in out.parents:
        raise PublishError(f"{dest}: inside {root}; publish to a folder outside the runs")
    if out in src.parents:
        raise PublishError(f"{dest}: holds {root}; publishing there would replace the runs themselves")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise PublishError(f"{dest}: a folder that `distill publish` did not make (no {MARKER}); publishing replaces "
                           "the folder as a whole, so give an empty or new folder")
    folders = run_folders(root)
    if not folders:
        raise PublishError(f"{root}: no run folders (run.json) found; run `distill sweep` first")
    with atomic_dir(dest) as tmp:
        (tmp / MARKER).write_text(f"run records published from {root} by `distill publish`\n")
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
