"""Sweeps: every (variant, grid point, seed) of a versioned config is one run folder under
runs/<experiment>/<variant>/seed<seed>. Finished runs are skipped, unfinished ones resumed, a failed run is
recorded and the sweep goes on, and the plan can be split across processes (shards)."""

from __future__ import annotations

import copy
import itertools
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    check_shard,
    from_dict,
    load_raw,
    set_value,
    yaml_load,
)
from distill.io import read_json, write_json, write_text
from distill.lab.records import FAILED_FILE, RunFailure
from distill.lab.run_folder import FINISHED, config_difference, run_state, started

PLAN_FILE = "sweep.json"


@dataclass
class Planned:
    variant: str
    seed: int
    config: ExperimentConfig
    out: Path
    settings: dict[str, Any] = field(default_factory=dict)  # the grid point, for tables and TensorBoard hparams
    root: Path = Path("runs")  # the experiment folder holding every run of the sweep

    @property
    def state(self) -> str:
        return run_state(self.out)


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """`--grid stages.0.lr=1e-4,5e-5` -> {"stages.0.lr": [1e-4, 5e-5]} (each value parsed as YAML)."""
    grid = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise ConfigError(f"--grid `{item}`: expected KEY=V1,V2,..., e.g. stages.0.lr=1e-4,5e-5")
        grid[key.strip()] = [yaml_load(v) for v in text.split(",")]
    return grid


def _fill(node: Any, values: dict[str, str]) -> Any:
    """`{variant}` and `{seed}` in string values: lets a task sweep point each variant at the student the
    matching variant of a general-distillation sweep produced."""
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str):
        for k, v in values.items():
            node = node.replace("{" + k + "}", v)
    return node


def _point_name(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items()).replace("/", "_")


def is_sweep(raw: dict) -> bool:
    """Whether a raw config describes several runs (variants, seeds or a grid): `distill run` then sweeps it."""
    return bool(raw.get("variants") or raw.get("seeds") or (raw.get("sweep") or {}).get("grid"))


def expand(path: str | Path, overrides: list[str] | tuple[str, ...] = (), out_root: str | Path | None = None,
           grid: dict[str, list[Any]] | None = None, seeds: list[int] | None = None) -> list[Planned]:
    """Every (variant, grid point, seed) of a config, in a fixed order; a config without variants is one
    variant named `main`. `grid` and `seeds` add to / replace the config's `sweep.grid` and `seeds`."""
    raw = load_raw(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    base = from_dict(raw, src=str(path))  # validate the base (variants, seeds, sweep) before expanding
    variants = raw.pop("variants", None) or {"main": []}
    seeds = list(seeds or raw.pop("seeds", None) or [raw.get("seed", 42)])
    raw.pop("seeds", None)
    full_grid = {**base.sweep.grid, **(grid or {})}
    raw.pop("sweep", None)
    root = Path(out_root) if out_root else Path("runs") / raw["name"]
    points = [dict(zip(full_grid, combo, strict=True)) for combo in itertools.product(*full_grid.values())]
    plans = []
    for name, changes in variants.items():
        for point in points:
            label = name if not point else (_point_name(point) if name == "main" else f"{name},{_point_name(point)}")
            for seed in seeds:
                one = copy.deepcopy(raw)
                where = f"{path} (variant {label!r})"
                try:
                    for assignment in changes:
                        apply_override(one, assignment)
                    for key, value in point.items():
                        set_value(one, key, value)
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                one["seed"] = seed
                one = _fill(one, {"variant": name, "seed": str(seed)})
                plans.append(Planned(label, seed, from_dict(one, src=where), root / label / f"seed{seed}", point,
                                     root))
    return plans


def reference_variant(path: str | Path, plans: list[Planned]) -> str:
    ref = load_raw(path).get("sweep", {}) or {}
    return ref.get("reference") or plans[0].variant


def expected_effects(path: str | Path) -> dict[str, dict]:
    """The papers' differences the sweep's config states (`sweep.expected`, validated by `expand`), for the report."""
    return (load_raw(path).get("sweep", {}) or {}).get("expected") or {}


def shard(plans: list[Planned], num_shards: int, index: int) -> list[Planned]:
    """Round-robin split: shard `index` of `num_shards` (any process count covers every plan exactly once)."""
    check_shard(num_shards, index)
    return plans[index::num_shards]


def write_plan(root: Path, config: str | Path, plans: list[Planned], reference: str) -> None:
    """What the sweep meant to run, so that a report can list runs that never started (and the papers' expected
    differences, so that a report on published records has them)."""
    write_json(root / PLAN_FILE, {"config": str(config), "reference": reference, "expected": expected_effects(config),
                                  "runs": [{"variant": p.variant, "seed": p.seed, "settings": p.settings,
                                            "folder": str(p.out.relative_to(root))} for p in plans]})


def read_plan(root: Path) -> dict | None:
    f = root / PLAN_FILE
    return read_json(f) if f.exists() else None


def run_plans(plans: list[Planned], log=print, command: str | None = None) -> list[Planned]:
    """Run each plan unless finished (resuming unfinished or failed ones); returns the plans that failed.
    A failure is written to the run's failed.json and the sweep goes on with the next run. `command`: the sweep's
    command line, recorded in each run."""
    from distill.lab import run as runner  # the training stack, only when a sweep really runs

    failed = []
    for i, p in enumerate(plans, 1):
        if p.state == FINISHED:
            diff = config_difference(p.config, p.out) if (p.out / "config.yaml").exists() else []
            if diff:
                # Skipping it would put a result of another config in the table; redoing it would destroy one.
                log(f"!! {p.variant} seed {p.seed}: {p.out} finished with a different config (in {diff}); move "
                    "that folder away or rename the experiment (`name:`) to run this config")
                failed.append(p)
                continue
            log(f"[{i}/{len(plans)}] {p.variant} seed {p.seed}: finished earlier ({p.out})")
            continue
        (p.out / FAILED_FILE).unlink(missing_ok=True)
        resume = started(p.out)
        log(f"[{i}/{len(plans)}] == {p.variant} seed {p.seed} -> {p.out}" + (" (resuming)" if resume else ""))
        try:
            runner.run_experiment(p.config, p.out, resume=resume, labels={"variant": p.variant, **p.settings}, log=log,
                                  command=command)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one bad run must not stop the rest of a long sweep
            p.out.mkdir(parents=True, exist_ok=True)
            RunFailure(f"{type(e).__name__}: {e}").save(p.out)
            write_text(p.out / "failed.log", traceback.format_exc())
            log(f"!! {p.variant} seed {p.seed} failed: {type(e).__name__}: {e} (details in {p.out / 'failed.log'})")
            failed.append(p)
    return failed
