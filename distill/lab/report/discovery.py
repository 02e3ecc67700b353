"""Finding an experiment's runs: every run folder under it, the runs its sweep planned but never started, and
the variant each run belongs to (from its labels, its `<variant>/seed<n>` folder or, for runs started outside a
sweep, the settings that tell their configs apart)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from distill.config import yaml_load
from distill.errors import DistillError
from distill.lab.records import RUN_FILE, RunFailure, RunInfo, RunMetrics, run_folders
from distill.lab.run_folder import FAILED, FINISHED, MISSING, run_state
from distill.lab.sweep import read_plan
from distill.predictions import FILE as PREDICTIONS
from distill.predictions import read_predictions


@dataclass
class RunEntry:
    """One run of an experiment as the report sees it: where, which variant and seed, its state and, when it
    finished, its metrics record."""

    folder: Path
    variant: str
    seed: int | None
    state: str  # finished | failed | unfinished | missing
    metrics: RunMetrics | None = None
    error: str | None = None

    @cached_property
    def predictions(self) -> tuple[dict, dict] | None:
        """(split -> per-example predictions, metadata), or None for a run that kept none."""
        f = self.folder / PREDICTIONS
        return read_predictions(f) if f.exists() else None


class ReportError(DistillError):
    pass


def discover(root: str | Path) -> list[RunEntry]:
    """Every run folder under `root` (a folder holding run.json or failed.json) plus, when the sweep left its
    plan, the planned runs that never started."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder; expected runs/<experiment>")
    folders = run_folders(root)
    records: dict[Path, RunEntry] = {}
    by_config = config_variants(root, folders)
    for folder in folders:
        run = RunInfo.load(folder) if (folder / RUN_FILE).exists() else RunInfo()
        rel = folder.relative_to(root)
        seeded = re.fullmatch(r"seed(\d+)", rel.name)
        variant = run.variant or (str(rel.parent) if seeded and str(rel.parent) != "." else
                                  by_config.get(folder, str(rel)))
        seed = run.seed if run.seed is not None else int(seeded.group(1)) if seeded else None
        state = run_state(folder)
        rec = RunEntry(folder, variant, seed, state)
        if state == FINISHED:
            rec.metrics = RunMetrics.load(folder)
        elif state == FAILED:
            rec.error = RunFailure.load(folder).error
        records[folder.resolve()] = rec
    plan = read_plan(root)
    for p in (plan or {}).get("runs", []):
        folder = root / p["folder"]
        if folder.resolve() not in records:
            records[folder.resolve()] = RunEntry(folder, p["variant"], p["seed"], MISSING)
    if not records:
        raise ReportError(f"{root}: no run folders (run.json) found; run `distill sweep` first")
    return list(records.values())


def config_variants(root: Path, folders: list[Path]) -> dict[Path, str]:
    """Variant names for runs started outside a sweep (`distill run`, whose folders are named by time): runs whose
    resolved configs differ only in `seed` are seeds of one variant, named after the config's `name`, or, when
    several configs share a name, after the settings that tell them apart."""
    configs: dict[Path, dict] = {}
    for folder in folders:
        labelled = (folder / RUN_FILE).exists() and RunInfo.load(folder).variant
        if (folder / "config.yaml").exists() and not labelled and not re.fullmatch(r"seed(\d+)", folder.name):
            try:
                configs[folder] = flat(yaml_load((folder / "config.yaml").read_text(encoding="utf-8")) or {})
            except (DistillError, OSError):
                continue
    groups: dict[str, list[Path]] = {}
    for folder, cfg in configs.items():
        groups.setdefault(json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True, default=str),
                          []).append(folder)
    names: dict[Path, str] = {}
    for members in groups.values():
        cfg = configs[members[0]]
        rivals = [configs[g[0]] for g in groups.values() if g is not members and configs[g[0]].get("name") ==
                  cfg.get("name")]
        differs = sorted({k for other in rivals for k in set(cfg) | set(other)
                          if k != "seed" and cfg.get(k) != other.get(k)})
        name = str(cfg.get("name") or members[0].relative_to(root))
        if differs:
            name += " (" + ", ".join(f"{k}={cfg.get(k)}" for k in differs) + ")"
        names.update(dict.fromkeys(members, name))
    return names


def flat(tree, prefix: str = "") -> dict:
    """A nested config as dotted keys (`stages.1.lr`) -> leaf values."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {prefix: tree}
    out = {}
    for k, v in items:
        out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
