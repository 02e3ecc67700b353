"""Experiments with named variants and several seeds: each (variant, seed) is one run folder, and the
results are printed side by side (mean and spread over seeds)."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from pathlib import Path

from distill.config import ConfigError, ExperimentConfig, apply_override, from_dict, load_raw
from distill.io import read_json


@dataclass
class Planned:
    variant: str
    seed: int
    config: ExperimentConfig
    out: Path


def expand(path: str | Path, overrides: list[str], out_root: str | Path | None = None) -> list[Planned]:
    """Every (variant, seed) of a config; a config without variants is one variant named `main`."""
    raw = load_raw(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    from_dict(raw, src=str(path))  # validate the base (variants and seeds included) before expanding
    variants = raw.pop("variants", None) or {"main": []}
    seeds = raw.pop("seeds", None) or [raw.get("seed", 42)]
    root = Path(out_root) if out_root else Path("runs") / raw["name"]
    plans = []
    for name, changes in variants.items():
        for seed in seeds:
            one = copy.deepcopy(raw)
            for assignment in changes:
                try:
                    apply_override(one, assignment)
                except ConfigError as e:
                    raise ConfigError(f"{path}: variant {name!r}: {e}") from None
            one["seed"] = seed
            cfg = from_dict(one, src=f"{path} (variant {name!r})")
            plans.append(Planned(name, seed, cfg, root / name / f"seed{seed}"))
    return plans


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def comparison(plans: list[Planned]) -> str:
    """A Markdown table: one row per variant, metrics as mean ± std over its finished seeds, plus the teacher."""
    by_variant: dict[str, list[dict]] = {}
    missing = []
    for p in plans:
        f = p.out / "metrics.json"
        if f.exists():
            by_variant.setdefault(p.variant, []).append(read_json(f))
        else:
            missing.append(f"{p.variant}/seed{p.seed}")
    if not by_variant:
        return "no finished runs"
    first = next(iter(by_variant.values()))[0]
    metric_names = list((first["teacher"].get("dev") or {}).keys())
    head = ["model", "params", *[f"dev {m}" for m in metric_names], *[f"test {m}" for m in metric_names], "seeds"]
    rows = [head, ["---"] * len(head)]
    t = first["teacher"]
    rows.append(["teacher", f"{t['parameters'] / 1e6:.2f}M", *[f"{t['dev'][m]:.4f}" for m in metric_names],
                 *[f"{(t.get('test') or {}).get(m, float('nan')):.4f}" for m in metric_names], "-"])
    for variant, ms in by_variant.items():
        cells = [variant, f"{ms[0]['student']['parameters'] / 1e6:.2f}M"]
        for split in ("dev", "test"):
            for m in metric_names:
                cells.append(_mean_std([r["student"][split][m] for r in ms if split in r["student"]]))
        cells.append(str(len(ms)))
        rows.append(cells)
    text = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    if missing:
        text += "\nmissing or unfinished runs: " + ", ".join(missing)
    return text
