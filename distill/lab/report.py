"""Ablation tables and plots made from run folders alone (metrics.json, run.json, predictions.safetensors,
TensorBoard events).

One row per variant: each metric as mean ± std over the variant's finished seeds; for the main metric a 95%
interval, the difference against the reference variant (the full method) with its 95% interval and a
Holm-corrected p-value (`uncertainty.py` says how), and a line saying how many differences can be told from
noise. Also parameters, encoder compute, inference speed, the teacher's row and the majority class. Runs that
are missing, unfinished or failed are listed, never averaged away."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from distill.config import yaml_load
from distill.errors import DistillError
from distill.io import read_json, write_json, write_text
from distill.lab.run_folder import FAILED, FINISHED, MISSING, UNFINISHED, run_state
from distill.lab.sweep import read_plan
from distill.lab.uncertainty import (
    CONFIDENCE,
    MAX_SEEDS_NEEDED,
    MIN_JUDGED_SEEDS,
    ONE_SEED,
    PAIRED_T,
    PAIRED_T_GENERALISED,
    POWER,
    RESAMPLES,
    WELCH,
    Difference,
    Interval,
    bootstrap_interval,
    example_bootstrap_difference,
    example_replicates,
    example_variance,
    holm,
    paired_t,
    paired_t_power,
    seeds_needed,
    t_interval,
    welch_difference,
)
from distill.predictions import FILE as PREDICTIONS
from distill.predictions import read_predictions
from distill.tasks import EVAL_SPLITS


@dataclass
class RunRecord:
    folder: Path
    variant: str
    seed: int | None
    state: str  # finished | failed | unfinished | missing
    metrics: dict | None = None
    error: str | None = None

    @cached_property
    def predictions(self) -> tuple[dict, dict] | None:
        """(split -> per-example predictions, metadata), or None for a run that kept none."""
        f = self.folder / PREDICTIONS
        return read_predictions(f) if f.exists() else None


@dataclass
class VariantRow:
    name: str
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per finished seed
    planned: int = 0
    finished: int = 0
    parameters: int | None = None
    compute: float | None = None  # student/teacher encoder FLOPs per token
    speed: list[float] = field(default_factory=list)  # inference examples/s per seed
    wall: list[float] = field(default_factory=list)  # seconds per finished run (the sweep's cost per run)
    runs: list[RunRecord] = field(default_factory=list)  # the finished ones
    intervals: dict[str, Interval] = field(default_factory=dict)  # main columns
    diffs: dict[str, Difference] = field(default_factory=dict)  # main columns, against the reference


class ReportError(DistillError):
    pass


def discover(root: str | Path) -> list[RunRecord]:
    """Every run folder under `root` (a folder holding run.json or failed.json) plus, when the sweep left its
    plan, the planned runs that never started."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder; expected runs/<experiment>")
    folders = sorted({f.parent for pat in ("run.json", "failed.json") for f in root.rglob(pat)
                      if "checkpoints" not in f.relative_to(root).parts})
    records: dict[Path, RunRecord] = {}
    by_config = config_variants(root, folders)
    for folder in folders:
        run = read_json(folder / "run.json") if (folder / "run.json").exists() else {}
        rel = folder.relative_to(root)
        seeded = re.fullmatch(r"seed(\d+)", rel.name)
        variant = run.get("variant") or (str(rel.parent) if seeded and str(rel.parent) != "." else
                                         by_config.get(folder, str(rel)))
        seed = run.get("seed", int(seeded.group(1)) if seeded else None)
        state = run_state(folder)
        rec = RunRecord(folder, variant, seed, state)
        if state == FINISHED:
            rec.metrics = read_json(folder / "metrics.json")
        elif state == FAILED:
            rec.error = read_json(folder / "failed.json").get("error")
        records[folder.resolve()] = rec
    plan = read_plan(root)
    for p in (plan or {}).get("runs", []):
        folder = root / p["folder"]
        if folder.resolve() not in records:
            records[folder.resolve()] = RunRecord(folder, p["variant"], p["seed"], MISSING)
    if not records:
        raise ReportError(f"{root}: no run folders (run.json) found; run `distill sweep` first")
    return list(records.values())


def config_variants(root: Path, folders: list[Path]) -> dict[Path, str]:
    """Variant names for runs started outside a sweep (`distill run`, whose folders are named by time): runs whose
    resolved configs differ only in `seed` are seeds of one variant, named after the config's `name`, or, when
    several configs share a name, after the settings that tell them apart."""
    configs: dict[Path, dict] = {}
    for folder in folders:
        labelled = (folder / "run.json").exists() and read_json(folder / "run.json").get("variant")
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


def run_values(metrics: dict) -> dict[str, float]:
    """The numbers a run contributes to the table: task metrics per split, or a general-distillation run's
    held-out losses after training."""
    out = {}
    if metrics.get("general"):
        after = metrics.get("heldout_after") or {}
        for stage, terms in after.items():
            prefix = "heldout" if len(after) == 1 else f"heldout {stage}"
            out.update({f"{prefix} {k.removeprefix('loss/')}": float(v) for k, v in terms.items()})
        return out
    for split in EVAL_SPLITS:
        for k, v in (metrics["student"].get(split) or {}).items():
            if not k.startswith("loss/"):
                out[f"{split} {k}"] = float(v)
    return out


def main_columns(metrics: dict) -> list[str]:
    """The columns whose change against the reference is judged: the main metric on each evaluation split."""
    if metrics.get("general"):
        return [next(iter(run_values(metrics)))]
    return [c for c in (f"{split} {metrics['main_metric']}" for split in EVAL_SPLITS) if c in run_values(metrics)]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class PaperComparison:
    """A paper's reported difference beside ours, with the power this table's seeds have to find one its size."""

    variant: str
    column: str
    paper: float
    source: str
    ours: Difference | None
    alpha: float  # Holm's strictest level in the column: what a difference may have to pass
    power: float | None  # of the paired t at the paper's size, from the measured sd of per-seed differences
    seeds_for_power: int | None  # matched seeds for POWER at the paper's size (None: more than MAX_SEEDS_NEEDED)

    @property
    def agrees(self) -> str:
        d = self.ours
        if d is None:
            return "not measured"
        same = (d.delta > 0) == (self.paper > 0)
        if d.significant:
            return "same direction" if same else "opposite direction"
        return "undecided"


@dataclass
class Report:
    columns: list[str]
    main: list[str]
    reference: str | None
    rows: list[VariantRow]
    teacher: dict | None
    problems: list[RunRecord]
    lower_is_better: bool = False
    teacher_intervals: dict[str, Interval] = field(default_factory=dict)  # bootstrap over the dev examples
    baseline: dict[str, float] = field(default_factory=dict)  # majority class, per main column
    warnings: list[str] = field(default_factory=list)
    resamples: int = RESAMPLES
    generalise: bool = False  # add the example component to Δ's uncertainty (claims about new data)
    expected: dict[str, dict] = field(default_factory=dict)  # the papers' differences (`sweep.expected`)
    papers: list[PaperComparison] = field(default_factory=list)

    def row(self, name: str) -> VariantRow:
        return next(r for r in self.rows if r.name == name)


def build(root: str | Path, reference: str | None = None, resamples: int = RESAMPLES,
          generalise: bool = False) -> Report:
    records = discover(root)
    plan = read_plan(Path(root))
    order: list[str] = []  # the sweep's order when it left a plan, else by name
    for variant in [p["variant"] for p in (plan or {}).get("runs", [])] + sorted(r.variant for r in records):
        if variant not in order:
            order.append(variant)
    rows = {name: VariantRow(name) for name in order}
    finished = [r for r in records if r.state == FINISHED]
    columns: list[str] = []
    for r in finished:
        columns += [c for c in run_values(r.metrics) if c not in columns]
    for r in records:
        row = rows[r.variant]
        row.planned += 1
        if r.state != FINISHED:
            continue
        row.finished += 1
        row.runs.append(r)
        vals = run_values(r.metrics)
        for c in columns:
            row.values.setdefault(c, [])
            if c in vals:
                row.values[c].append(vals[c])
        s = r.metrics["student"]
        row.parameters = s.get("parameters")
        row.compute = (r.metrics.get("ratios") or {}).get("encoder_compute")
        if s.get("eval_examples_per_s"):
            row.speed.append(s["eval_examples_per_s"])
        if r.metrics.get("wall_seconds") is not None:
            row.wall.append(r.metrics["wall_seconds"])
    reference = reference or (plan or {}).get("reference") or (order[0] if order else None)
    if reference is not None and reference not in rows:
        raise ReportError(f"reference variant {reference!r} is not among the runs: {order}")
    first = finished[0].metrics if finished else None
    teacher = None
    if first and not first.get("general"):
        t = first["teacher"]
        teacher = {"parameters": t["parameters"],
                   "values": {f"{split} {k}": v for split in EVAL_SPLITS for k, v in (t.get(split) or {}).items()
                              if not k.startswith("loss/")}}
    rep = Report(columns, main_columns(first) if first else [], reference, list(rows.values()), teacher,
                 [r for r in records if r.state != FINISHED], lower_is_better=bool(first and first.get("general")),
                 resamples=resamples, generalise=generalise, expected=(plan or {}).get("expected") or {})
    if rep.expected:
        point = _grid_point(reference, (plan or {}).get("reference"))
        if point is None:
            rep.warnings.append(f"the papers' differences (`sweep.expected`) are from "
                                f"`{(plan or {}).get('reference')}`, not from `{reference}`: not set beside this table")
        rep.expected = {} if point is None else {f"{v}{point}": spec for v, spec in rep.expected.items()}
    judge(rep, first)
    compare_papers(rep)
    return rep


def _grid_point(reference: str | None, planned: str | None) -> str | None:
    """The grid point (`,key=value...`) a grid sweep's reference run carries after the planned reference variant;
    the papers' differences are then read between the variants at that point. None: another reference."""
    if reference is None or planned is None:
        return None
    if reference == planned:
        return ""
    return reference[len(planned):] if reference.startswith(planned + ",") else None


def compare_papers(rep: Report) -> None:
    """For each variant with a paper's difference (`sweep.expected`) and each main column: our difference and the
    power of the paired t over the seeds we have to find a true difference of the paper's size, at Holm's
    strictest level of the column, with the per-seed sd we measured."""
    for column in rep.main:
        judged = sum(column in r.diffs for r in rep.rows)
        alpha = (1 - CONFIDENCE) / max(judged, 1)
        for variant, spec in rep.expected.items():
            row = next((r for r in rep.rows if r.name == variant), None)
            d = row.diffs.get(column) if row is not None else None
            paper = float(spec["delta"])
            power = needed = None
            if d is not None and d.sd is not None and d.sd > 0 and d.seeds >= 2:
                extra = d.example_variance or 0.0  # --generalise: the examples' share, as `judge` plans
                power = float(paired_t_power(paper, d.sd, d.seeds, alpha, extra))
                needed = seeds_needed(paper, d.sd, alpha, example_variance=extra)
            rep.papers.append(PaperComparison(variant, column, paper, str(spec.get("source", "")), d, alpha, power,
                                              needed))


def papers_text(rep: Report) -> list[str]:
    """The markdown table of the papers' differences beside ours."""
    if not rep.papers:
        return []
    out = ["Beside the papers: each paper's difference taken as the same size in this table's metric. Power: the "
           "chance that the paired t over the matched seeds we ran, at Holm's strictest level of the column, finds "
           "a true difference of the paper's size, given the sd of the per-seed differences we measured.", "",
           "| variant | column | paper Δ | source | our Δ [95% CI] | verdict | power at paper Δ | seeds for "
           f"{POWER:.0%} |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in rep.papers:
        d = c.ours
        ours = "-" if d is None else f"{_num(d.delta, True)} {_ci_pair(d.low, d.high)}".strip()
        power = "-" if c.power is None else f"{c.power:.2f} ({d.seeds} seeds, α {c.alpha:.3g})"
        needed = ("-" if c.power is None else str(c.seeds_for_power) if c.seeds_for_power is not None
                  else f"more than {MAX_SEEDS_NEEDED}")
        out.append(f"| {c.variant} | {c.column} | {_num(c.paper, True)} | {c.source} | {ours} | {c.agrees} | "
                   f"{power} | {needed} |")
    return out


def _ci_pair(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{_num(low, True)}, {_num(high, True)}]"


# ---------------------------------------------------------------- uncertainty


def _split_metric(column: str) -> tuple[str, str]:
    split, _, metric = column.partition(" ")
    return split, metric


def _aligned(runs: list[RunRecord], split: str) -> tuple[np.ndarray, list[np.ndarray], int] | None:
    """Gold labels and each run's logits over the examples every run evaluated, in the first run's order;
    None when a run kept no predictions or the split has no gold labels."""
    preds = [r.predictions for r in runs]
    if any(p is None or split not in p[0] or p[0][split].labels is None for p in preds):
        return None
    first = preds[0][0][split]
    common = set(first.ids).intersection(*(set(p[0][split].ids) for p in preds[1:]))
    order = [i for i in first.ids if i in common]
    if not order:
        return None
    logits = []
    for p in preds:
        sp = p[0][split]
        if sp.ids == order:
            logits.append(sp.student)
        else:
            where = {ex_id: k for k, ex_id in enumerate(sp.ids)}
            logits.append(sp.student[[where[i] for i in order]])
    where = {ex_id: k for k, ex_id in enumerate(first.ids)}
    gold = first.labels[[where[i] for i in order]]
    return gold, logits, int(preds[0][1].get("num_labels") or first.student.shape[1])


def _interval(row: VariantRow, column: str, resamples: int) -> Interval | None:
    values = row.values.get(column) or []
    if not values:
        return None
    if len(values) >= 2:
        return t_interval(values)
    split, metric = _split_metric(column)
    got = _aligned(row.runs, split) if row.runs else None
    if got is None:
        return Interval(values[0], None, None, None, 1, "none")
    gold, (logits,), k = got
    return bootstrap_interval(metric, logits, gold, k, resamples)


def _value(run: RunRecord, column: str) -> float | None:
    return run_values(run.metrics).get(column)


def _difference(row: VariantRow, ref: VariantRow, column: str, resamples: int,
                generalise: bool = False) -> Difference | None:
    """Row minus reference on `column`. Three or more matched seeds: a paired t over the per-seed differences of
    the runs' own metrics (each on every evaluation example), with `generalise` the examples' share from their
    predictions added. Otherwise Welch over all runs when each side has three; else a paired t shown but not
    judged (two matched seeds), or the example bootstrap of one matched pair (or of one run each)."""
    mine = [r for r in row.runs if _value(r, column) is not None]
    theirs = [r for r in ref.runs if _value(r, column) is not None]
    if not mine or not theirs:
        return None
    split, metric = _split_metric(column)
    by_seed = {r.seed: r for r in theirs if r.seed is not None}
    pairs = [(r, by_seed[r.seed]) for r in mine if r.seed in by_seed]
    welch_judged = min(len(mine), len(theirs)) >= MIN_JUDGED_SEEDS
    if len(pairs) >= MIN_JUDGED_SEEDS or (len(pairs) == 2 and not welch_judged):
        extra = None
        got = _aligned([r for pair in pairs for r in pair], split) if generalise else None
        if got is not None:
            gold, logits, k = got
            extra = example_variance(example_replicates(metric, logits[0::2], logits[1::2], gold, k, resamples))
        return paired_t([_value(a, column) - _value(b, column) for a, b in pairs], extra)
    if not welch_judged and (pairs or (len(mine) == 1 and len(theirs) == 1)):
        a, b = pairs[0] if pairs else (mine[0], theirs[0])
        got = _aligned([a, b], split)
        if got is not None:
            gold, (x, y), k = got
            d = example_bootstrap_difference(metric, x, y, gold, k, resamples)
            if pairs and (len(mine) > 1 or len(theirs) > 1):
                d.why = "one matched seed: " + d.why.removeprefix("one run each: ")
            return d
    return welch_difference([_value(r, column) for r in mine], [_value(r, column) for r in theirs])


def judge(rep: Report, first: dict | None) -> None:
    """Intervals per variant, paired differences against the reference with Holm's correction per column and,
    for each difference not distinguishable, the matched seeds it would need; the teacher's and the majority
    class's scores, and the warnings a reader needs."""
    ref = rep.row(rep.reference) if rep.reference is not None else None
    for column in rep.columns:
        for row in rep.rows:
            got = _interval(row, column, rep.resamples) if column in rep.main else None
            if got is not None:
                row.intervals[column] = got
    for column in rep.main:
        if ref is None:
            break
        others = [r for r in rep.rows if r is not ref]
        diffs = [_difference(r, ref, column, rep.resamples, rep.generalise) for r in others]
        adjusted = holm([d.p if d else None for d in diffs])
        comparisons = sum(d is not None for d in diffs)
        for row, d, p in zip(others, diffs, adjusted, strict=True):
            if d is None:
                continue
            d.p_holm = p
            row.diffs[column] = d
            if rep.generalise and d.method == PAIRED_T:
                rep.warnings.append(f"`{row.name}` ({column}): no per-example predictions, so --generalise could "
                                    "not add the examples' share; its difference is the plain paired t (a claim "
                                    "about this evaluation set)")
            if not d.significant and d.method in (PAIRED_T, PAIRED_T_GENERALISED):
                # Holm's first step is the strictest level a difference may have to pass: planning for it
                # holds whatever the other variants do.
                d.needed_alpha = (1 - CONFIDENCE) / comparisons
                d.seeds_needed = seeds_needed(d.delta, d.sd, d.needed_alpha,
                                              example_variance=d.example_variance or 0.0)
    if first and not first.get("general"):
        baselines = (first["teacher"].get("majority_baseline") or {})
        gate = first["teacher"].get("gate") or {}
        for column in rep.main:
            split, metric = _split_metric(column)
            if metric == first.get("main_metric") and split in baselines:
                rep.baseline[column] = baselines[split]
            elif split == "dev" and "majority_baseline" in gate:
                rep.baseline[column] = gate["majority_baseline"]
        _teacher_intervals(rep)
    if ref is not None:
        for row in rep.rows:
            if row is not ref and 0 < row.finished < ref.finished:
                rep.warnings.append(f"`{row.name}` has {row.finished} finished run(s) against the reference's "
                                    f"{ref.finished}: its differences rest on {row.finished} matched seed(s)")
        if ref.finished == 1:
            rep.warnings.append("the reference has one finished run: no interval or difference can include "
                                "run-to-run variance; run more seeds (`seeds:` or `distill sweep --seeds 1,2,3`)")


def _teacher_intervals(rep: Report) -> None:
    runs = [r for row in rep.rows for r in row.runs]
    got = next((r.predictions for r in runs if r.predictions is not None), None)
    if got is None:
        return
    splits, meta = got
    for column in rep.main:
        split, metric = _split_metric(column)
        sp = splits.get(split)
        if sp is not None and sp.teacher is not None and sp.labels is not None:
            rep.teacher_intervals[column] = bootstrap_interval(metric, sp.teacher, sp.labels,
                                                               int(meta.get("num_labels") or sp.teacher.shape[1]),
                                                               rep.resamples)


def _needed(d: Difference) -> str:
    if d.seeds_needed is not None:
        return str(d.seeds_needed)
    if d.sd is None or not d.sd > 0 or d.delta == 0:
        return "- (no difference or no spread measured)"
    return f"more than {MAX_SEEDS_NEEDED}"


def _why_not(row: VariantRow, column: str) -> str:
    d = row.diffs.get(column)
    if d is not None and d.why:
        return d.why
    return "no finished runs" if not row.finished else f"no {column} in its runs or the reference's"


def verdicts(rep: Report) -> list[str]:
    """One plain-language line per main column: how many differences can be told from noise by which test, the
    seeds each undecided difference would need, and why any difference was not judged."""
    lines = []
    for column in rep.main:
        rows = [r for r in rep.rows if r.name != rep.reference]
        if not rows:
            continue
        tested = [(r, r.diffs[column]) for r in rows if column in r.diffs and r.diffs[column].p is not None]
        untested = [r for r in rows if r not in [t for t, _ in tested]]
        reasons = "; ".join(f"{r.name}: {_why_not(r, column)}" for r in untested)
        if not tested:
            text = (f"{column}: no difference from `{rep.reference}` can be judged ({reasons}). A difference is "
                    f"judged from {MIN_JUDGED_SEEDS} matched seeds on (`seeds:` in the config, or `distill sweep "
                    "--seeds 1,2,3,4,5`): fewer cannot hold a test's error rate")
        else:
            sig = [(r, d) for r, d in tested if d.significant]
            text = (f"{column}: {len(sig)} of {len(tested)} differences from `{rep.reference}` are distinguishable "
                    "from noise at 95% (Holm-corrected)")
            if sig:
                text += ": " + ", ".join(f"{r.name} {d.delta:+.4f}" for r, d in sig)
            rest = [(r, d) for r, d in tested if not d.significant]
            if rest:
                text += (f"; the other {len(rest)} cannot" if len(rest) > 1 else "; the other one cannot") + \
                    " be told apart from the reference"
            if untested:
                text += f"; not judged: {reasons}"
        planned = [(r, r.diffs[column]) for r in rows if column in r.diffs and not r.diffs[column].significant
                   and r.diffs[column].needed_alpha is not None]
        if planned:
            alpha = planned[0][1].needed_alpha
            m = round((1 - CONFIDENCE) / alpha)
            text += (f". Matched seeds a paired t would need to find the measured difference with "
                     f"{POWER:.0%} power at α = {alpha:.3g} (Holm's strictest level for {m} comparison"
                     f"{'s' if m > 1 else ''}): " + ", ".join(f"{r.name} {_needed(d)}" for r, d in planned))
        lines.append(text + ".")
    return lines


# ---------------------------------------------------------------- formats


def _num(x: float | None, signed: bool = False) -> str:
    return "n/a" if x is None else (f"{x:+.4f}" if signed else f"{x:.4f}")


def _fmt(mean: float | None, std: float | None, pm: str = " ± ") -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" if std is None else f"{mean:.4f}{pm}{std:.4f}"


def _ci(iv: Interval | None, signed: bool = False) -> str:
    if iv is None or iv.low is None:
        return "-"
    return f"[{_num(iv.low, signed)}, {_num(iv.high, signed)}]" + (" (b)" if iv.method.startswith("bootstrap") else "")


def _delta_cells(rep: Report, row: VariantRow, column: str) -> list[str]:
    if rep.reference is None:
        return ["", ""]
    if row.name == rep.reference:
        return ["ref", ""]
    d = row.diffs.get(column)
    if d is None:
        return ["n/a", ""]
    ci = "" if d.low is None else f" [{_num(d.low, True)}, {_num(d.high, True)}]"
    ci += " (b)" if d.method == ONE_SEED else ""
    return [f"{d.delta:+.4f}{ci}" + (" *" if d.significant else ""), _p(d.p_holm)]


def _p(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.0005 else f"{p:.3f}")


def _header(rep: Report) -> list[str]:
    cells = ["model", "runs"]
    for c in rep.columns:
        cells += [c, "95% CI", f"Δ {c} [95% CI]", "p (Holm)"] if c in rep.main else [c]
    return cells + ["params", "compute", "eval ex/s", "min/run"]


def table_rows(rep: Report, pm: str = " ± ") -> list[list[str]]:
    rows = []
    if rep.teacher:
        t = rep.teacher
        cells = ["teacher", "-"]
        for c in rep.columns:
            cells.append(_fmt(t["values"].get(c), None))
            if c in rep.main:
                cells += [_ci(rep.teacher_intervals.get(c)), "", ""]
        rows.append(cells + [f"{t['parameters'] / 1e6:.2f}M", "100%", "-", "-"])
    if rep.baseline:
        cells = ["majority class", "-"]
        for c in rep.columns:
            cells.append(_num(rep.baseline[c]) if c in rep.baseline else "")
            if c in rep.main:
                cells += ["", "", ""]
        rows.append(cells + ["", "", "", ""])
    for row in rep.rows:
        cells = [row.name, f"{row.finished}/{row.planned}"]
        for c in rep.columns:
            cells.append(_fmt(*mean_std(row.values.get(c, [])), pm=pm))
            if c in rep.main:
                cells += [_ci(row.intervals.get(c)), *_delta_cells(rep, row, c)]
        cells.append(f"{row.parameters / 1e6:.2f}M" if row.parameters else "n/a")
        cells.append(f"{100 * row.compute:.1f}%" if row.compute is not None else "-")
        cells.append(f"{statistics.mean(row.speed):.0f}" if row.speed else "-")
        cells.append(f"{statistics.mean(row.wall) / 60:.1f}" if row.wall else "-")
        rows.append(cells)
    return rows


def problems_text(rep: Report) -> list[str]:
    out = []
    for r in sorted(rep.problems, key=lambda r: (r.variant, r.seed or 0)):
        why = {MISSING: "never started", UNFINISHED: "unfinished (resume with `distill sweep`)",
               FAILED: f"failed: {r.error}"}[r.state]
        out.append(f"{r.variant} seed {r.seed}: {why} ({r.folder})")
    return out


METHOD_TEXT = {
    PAIRED_T: "Δ: paired t over matched seeds (mean of the per-seed differences, each on every evaluation "
              "example; 95% t-interval and two-sided test, df = seeds - 1)",
    PAIRED_T_GENERALISED: "Δ generalised to new data (--generalise): paired t over matched seeds with the "
                          "examples' own share of the variance (example bootstrap, {resamples} resamples) added "
                          "to the standard error, Welch-Satterthwaite df",
    WELCH: "Δ of runs that cannot be matched by seed: Welch t-interval and test over seeds",
    ONE_SEED: "Δ (b) with one run each: paired bootstrap over the evaluation examples ({resamples} resamples), "
              "covering evaluation-set sampling only, not seed variance: descriptive, never tested",
}


def method_note(rep: Report) -> str:
    methods = {d.method for r in rep.rows for d in r.diffs.values()}
    how = [text.format(resamples=rep.resamples) for m, text in METHOD_TEXT.items() if m in methods]
    return (f"Mean ± sample std over finished seeds; 95% CI: t-interval over seeds, (b) bootstrap over evaluation "
            f"examples where there is one run; Δ = variant minus the reference `{rep.reference}`"
            + ("; lower is better (held-out losses)" if rep.lower_is_better else "") + ". "
            + ". ".join(how) + ("." if how else "")
            + f" Judged from {MIN_JUDGED_SEEDS} seeds on; p: two-sided, Holm-corrected over the variants of a column; "
              "* = distinguishable from noise at 95%.")


def to_markdown(rep: Report) -> str:
    rows = [_header(rep), *table_rows(rep)]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "| " + " | ".join("---" for _ in rows[0]) + " |")
    notes = [method_note(rep), ""] + [f"**{v}**" for v in verdicts(rep)]
    if rep.papers:
        notes += [""] + papers_text(rep)
    if rep.warnings:
        notes += [""] + [f"Warning: {w}" for w in rep.warnings]
    if rep.problems:
        notes += ["", "Not in the means (missing, unfinished or failed):"] + [f"- {p}" for p in problems_text(rep)]
    return "\n".join(lines + [""] + notes) + "\n"


def to_csv(rep: Report) -> str:
    """Numbers for machines: mean, std, n and the 95% interval per column; for the main columns the difference
    against the reference with its interval, raw and Holm-corrected p-values and the method."""
    buf = io.StringIO()
    w = csv.writer(buf)
    stats_cols = ("mean", "std", "ci_low", "ci_high")
    diff_cols = ("delta", "delta_low", "delta_high", "p", "p_holm", "method", "seeds_needed")
    w.writerow(["model", "finished", "planned", *[f"{c} {s}" for c in rep.columns for s in stats_cols],
                *[f"{c} {s}" for c in rep.main for s in diff_cols], "parameters", "encoder_compute",
                "eval_examples_per_s", "wall_seconds_per_run"])

    def r6(x):
        return "" if x is None else round(x, 6)

    if rep.teacher:
        t = rep.teacher
        cells = []
        for c in rep.columns:
            iv = rep.teacher_intervals.get(c)
            cells += [t["values"].get(c, ""), "", r6(iv and iv.low), r6(iv and iv.high)]
        w.writerow(["teacher", "", "", *cells, *["" for _ in rep.main for _ in diff_cols], t["parameters"], 1.0, "",
                    ""])
    for row in rep.rows:
        cells = []
        for c in rep.columns:
            mean, std = mean_std(row.values.get(c, []))
            iv = row.intervals.get(c)
            cells += [r6(mean), r6(std), r6(iv and iv.low), r6(iv and iv.high)]
        for c in rep.main:
            d = row.diffs.get(c)
            cells += ["" for _ in diff_cols] if d is None else [
                r6(d.delta), r6(d.low), r6(d.high), r6(d.p), r6(d.p_holm), d.method,
                "" if d.seeds_needed is None else d.seeds_needed]
        w.writerow([row.name, row.finished, row.planned, *cells, row.parameters or "",
                    "" if row.compute is None else round(row.compute, 4),
                    round(statistics.mean(row.speed), 1) if row.speed else "",
                    round(statistics.mean(row.wall), 1) if row.wall else ""])
    return buf.getvalue()


def _tex(text: str) -> str:
    return re.sub(r"([_&%#$])", r"\\\1", text).replace("Δ", r"$\Delta$").replace(" ± ", r" $\pm$ ")


def to_latex(rep: Report) -> str:
    header = _header(rep)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in table_rows(rep)]
    lines += [r"\bottomrule", r"\end{tabular}", "% " + method_note(rep)]
    lines += ["% " + v for v in verdicts(rep)]
    if rep.problems:
        lines += ["% not in the means: " + p for p in problems_text(rep)]
    return "\n".join(lines) + "\n"


FORMATS = {"md": ("table.md", to_markdown), "csv": ("table.csv", to_csv), "latex": ("table.tex", to_latex)}


def to_json(rep: Report) -> dict:
    def iv(x: Interval | None):
        return None if x is None else asdict(x)

    return {"reference": rep.reference, "columns": rep.columns, "main": rep.main, "teacher": rep.teacher,
            "teacher_intervals": {c: iv(x) for c, x in rep.teacher_intervals.items()},
            "majority_baseline": rep.baseline, "resamples": rep.resamples, "confidence": CONFIDENCE,
            "generalise": rep.generalise, "min_judged_seeds": MIN_JUDGED_SEEDS, "method": method_note(rep),
            "variants": {r.name: {"values": r.values, "planned": r.planned, "finished": r.finished,
                                  "seeds": [x.seed for x in r.runs],
                                  "intervals": {c: iv(x) for c, x in r.intervals.items()},
                                  "differences": {c: {**asdict(d), "significant": d.significant}
                                                  for c, d in r.diffs.items()},
                                  "parameters": r.parameters, "compute": r.compute,
                                  "eval_examples_per_s": r.speed, "wall_seconds": r.wall} for r in rep.rows},
            "verdicts": verdicts(rep), "warnings": rep.warnings, "not_in_means": problems_text(rep),
            "papers": [{"variant": c.variant, "column": c.column, "paper_delta": c.paper, "source": c.source,
                        "delta": None if c.ours is None else c.ours.delta, "verdict": c.agrees, "alpha": c.alpha,
                        "power": c.power, "seeds_for_power": c.seeds_for_power} for c in rep.papers]}


# ---------------------------------------------------------------- plots


def _save(fig, path: Path, dpi: int) -> None:
    from distill.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def _err(center: float, iv: Interval | Difference | None) -> tuple[float, float]:
    if iv is None or iv.low is None:
        return 0.0, 0.0
    return max(0.0, center - iv.low), max(0.0, iv.high - center)


def plot_ablation(rep: Report, path: Path) -> Path | None:
    """Left: the main metric per variant with 95% error bars, the teacher and the majority class as lines.
    Right: each variant's difference from the reference with its 95% interval; filled = distinguishable from
    noise after Holm's correction."""
    if not rep.main:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = rep.main[0]
    rows = [r for r in rep.rows if r.values.get(col)]
    if not rows:
        return None
    means = [statistics.mean(r.values[col]) for r in rows]
    errs = np.array([_err(m, r.intervals.get(col)) for m, r in zip(means, rows, strict=True)]).T
    compare = [r for r in rows if col in r.diffs]
    fig, axes = plt.subplots(1, 2 if compare else 1, figsize=(12 if compare else 7, 0.45 * len(rows) + 1.8),
                             squeeze=False)
    ax = axes[0][0]
    colors = ["tab:orange" if r.name == rep.reference else "tab:blue" for r in rows]
    ax.barh(range(len(rows)), means, xerr=errs, color=colors, capsize=3)
    ax.set_yticks(range(len(rows)), [f"{r.name} (n={r.finished})" for r in rows])
    ax.invert_yaxis()
    lines = []
    if rep.teacher and col in rep.teacher["values"]:
        lines.append(rep.teacher["values"][col])
        ax.axvline(lines[-1], color="black", linestyle="--", label="teacher")
        tiv = rep.teacher_intervals.get(col)
        if tiv is not None and tiv.low is not None:
            ax.axvspan(tiv.low, tiv.high, color="black", alpha=0.08)
    if col in rep.baseline:
        lines.append(rep.baseline[col])
        ax.axvline(lines[-1], color="tab:red", linestyle=":", label="majority class")
    if lines:
        ax.legend(loc="lower right", fontsize=8)
    lo = min(m - e for m, e in zip(means, errs[0], strict=True))
    hi = max([m + e for m, e in zip(means, errs[1], strict=True)] + lines)
    lo = min([lo] + lines)
    pad = 0.05 * (hi - lo + 1e-9)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(col + (" (lower is better)" if rep.lower_is_better else ""))
    ax.set_title(f"{col}: mean and 95% CI over seeds", fontsize=10)
    if compare:
        ax = axes[0][1]
        deltas = [r.diffs[col].delta for r in compare]
        derr = np.array([_err(d, r.diffs[col]) for d, r in zip(deltas, compare, strict=True)]).T
        for i, (r, d) in enumerate(zip(compare, deltas, strict=True)):
            sig = r.diffs[col].significant
            ax.errorbar([d], [i], xerr=derr[:, i:i + 1], fmt="o", capsize=3, color="tab:green" if sig else "gray",
                        markerfacecolor=None if sig else "white")
        papers = [(i, float(rep.expected[r.name]["delta"])) for i, r in enumerate(compare) if r.name in rep.expected]
        if papers:  # the papers' reported differences, taken as the same size in this metric
            ax.scatter([d for _, d in papers], [i for i, _ in papers], marker="x", color="tab:purple", zorder=3,
                       label="paper's Δ")
            ax.legend(loc="best", fontsize=8)
        ax.axvline(0, color="tab:orange", linewidth=1)
        ax.set_yticks(range(len(compare)), [f"{r.name}{' (b)' if r.diffs[col].method == ONE_SEED else ''}"
                                            f"{' *' if r.diffs[col].significant else ''}" for r in compare])
        ax.invert_yaxis()
        ax.set_xlabel(f"Δ {col} against {rep.reference}")
        ax.set_title("difference, 95% CI (* / filled: Holm-corrected p < 0.05)", fontsize=10)
    fig.tight_layout()
    _save(fig, path, 120)
    plt.close(fig)
    return path


def read_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of one run's TensorBoard events: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = folder / "tb"
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
            if not tag.startswith("hparam/")}


def curve_panels(per_variant: dict[str, list[dict]], metric: str | None) -> list[str]:
    """The tags worth a panel: each stage's training total and, where it moves, its dev main metric. A dev
    metric constant in a stage (the classifier is not trained there, e.g. intermediate-layer distillation)
    would be an empty-looking panel."""
    tags: list[str] = []
    for curves in per_variant.values():
        for c in curves:
            tags += [t for t in c if (t.endswith("/train/total") or (metric and t.endswith(f"/dev/{metric}")))
                     and t not in tags]
    return [t for t in tags if "/dev/" not in t or len({v for curves in per_variant.values() for c in curves
                                                        for _, v in c.get(t, [])}) > 1]


def plot_curves(rep: Report, records: list[RunRecord], path: Path) -> Path | None:
    """Learning curves per stage (training loss, dev main metric), one line per variant (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_variant: dict[str, list[dict]] = {}
    for r in records:
        if r.state == FINISHED:
            per_variant.setdefault(r.variant, []).append(read_curves(r.folder))
    metric = rep.main[0].split(" ", 1)[1] if rep.main and not rep.lower_is_better else None
    tags = curve_panels(per_variant, metric)
    if not tags:
        return None
    fig, axes = plt.subplots(1, len(tags), figsize=(4.5 * len(tags), 3.6), squeeze=False)
    for ax, tag in zip(axes[0], tags, strict=True):
        for variant, curves in per_variant.items():
            series = [dict(c[tag]) for c in curves if tag in c]
            if not series:
                continue
            steps = sorted(set.intersection(*(set(s) for s in series)))
            # Markers: a dev metric has one point per epoch, a one-epoch stage only one.
            ax.plot(steps, [statistics.mean(s[x] for s in series) for x in steps], label=variant,
                    linewidth=2 if variant == rep.reference else 1, marker="o" if "/dev/" in tag else None,
                    markersize=3)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, 110)
    plt.close(fig)
    return path


def _tag(column: str) -> str:
    split, metric = _split_metric(column)
    return f"student_{split}_{metric}" if metric else column.replace(" ", "_")


def write_tensorboard(rep: Report, folder: Path) -> Path:
    """One TensorBoard HParams row per variant (`<out>/tb/<variant>`) beside the per-run rows of a sweep: the
    mean over seeds under the runs' own metric tag, its 95% interval, and the difference from the reference
    with its interval and Holm-corrected p. Rewritten whole on every report."""
    from torch.utils.tensorboard import SummaryWriter

    from distill.io import atomic_dir

    with atomic_dir(folder) as tmp:
        for row in rep.rows:
            if not row.finished:
                continue
            final = {}
            for c in rep.main:
                mean, _ = mean_std(row.values.get(c, []))
                if mean is None:
                    continue
                tag, iv, d = _tag(c), row.intervals.get(c), row.diffs.get(c)
                final[f"hparam/{tag}"] = mean
                if iv is not None and iv.low is not None:
                    final.update({f"hparam/{tag}_ci_low": iv.low, f"hparam/{tag}_ci_high": iv.high})
                if d is not None:
                    final[f"hparam/{tag}_delta"] = d.delta
                    if d.low is not None:
                        final.update({f"hparam/{tag}_delta_low": d.low, f"hparam/{tag}_delta_high": d.high})
                    if d.p_holm is not None:
                        final[f"hparam/{tag}_p_holm"] = d.p_holm
            writer = SummaryWriter(str(tmp / re.sub(r"[^\w.,=+-]", "_", row.name)))
            writer.add_hparams({"variant": row.name, "summary": f"mean of {row.finished} seeds"}, final,
                               run_name=".")
            writer.close()
    return folder


def write_report(root: str | Path, out: str | Path | None = None, reference: str | None = None,
                 plots: bool = True, resamples: int = RESAMPLES,
                 generalise: bool = False) -> tuple[Report, dict[str, Path]]:
    """Every format and the plots into `out` (default: <root>/report); returns the report and the paths."""
    root = Path(root)
    # First: a wrong folder is refused before anything is written into it.
    rep = build(root, reference, resamples, generalise)
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt, (name, render) in FORMATS.items():
        write_text(out / name, render(rep))
        paths[fmt] = out / name
    write_json(out / "report.json", to_json(rep))
    paths["json"] = out / "report.json"
    paths["tensorboard"] = write_tensorboard(rep, out / "tb")
    if plots:
        for key, fn, name in (("ablation_plot", plot_ablation, "ablation.png"),
                              ("curves_plot", lambda r, p: plot_curves(r, discover(root), p), "curves.png")):
            made = fn(rep, out / name)
            if made:
                paths[key] = made
    return rep, paths
