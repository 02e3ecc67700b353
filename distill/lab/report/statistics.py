"""The numbers of an ablation table: each variant's values over its finished seeds, intervals, differences
against the reference variant with Holm's correction (`uncertainty.py` says how each is computed), the teacher's
and the majority class's scores, and the papers' differences beside ours with the power to find them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.lab.records import RunMetrics, TeacherTaskFacts
from distill.lab.report.discovery import ReportError, RunEntry, discover
from distill.lab.run_folder import FINISHED
from distill.lab.sweep import read_plan
from distill.lab.uncertainty import (
    CONFIDENCE,
    MIN_JUDGED_SEEDS,
    PAIRED_T,
    PAIRED_T_GENERALISED,
    RESAMPLES,
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
from distill.metrics import tag_counts
from distill.qa_eval import question_counts
from distill.task_types import QA
from distill.tasks import EVAL_SPLITS


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
    runs: list[RunEntry] = field(default_factory=list)  # the finished ones
    intervals: dict[str, Interval] = field(default_factory=dict)  # main columns
    diffs: dict[str, Difference] = field(default_factory=dict)  # main columns, against the reference


def main_columns(metrics: RunMetrics) -> list[str]:
    """The columns whose change against the reference is judged: the main metric on each evaluation split."""
    values = metrics.values()
    if metrics.is_general:
        return [next(iter(values))]
    return [c for c in (f"{split} {metrics.main_metric}" for split in EVAL_SPLITS) if c in values]


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
    problems: list[RunEntry]
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
        columns += [c for c in r.metrics.values() if c not in columns]
    for r in records:
        row = rows[r.variant]
        row.planned += 1
        if r.state != FINISHED:
            continue
        row.finished += 1
        row.runs.append(r)
        vals = r.metrics.values()
        for c in columns:
            row.values.setdefault(c, [])
            if c in vals:
                row.values[c].append(vals[c])
        s = r.metrics.student
        row.parameters = s.parameters
        row.compute = r.metrics.ratios.encoder_compute
        if s.eval_examples_per_s:
            row.speed.append(s.eval_examples_per_s)
        if r.metrics.wall_seconds is not None:
            row.wall.append(r.metrics.wall_seconds)
    reference = reference or (plan or {}).get("reference") or (order[0] if order else None)
    if reference is not None and reference not in rows:
        raise ReportError(f"reference variant {reference!r} is not among the runs: {order}")
    first = finished[0].metrics if finished else None
    teacher = None
    if first and not first.is_general:
        t = first.teacher
        teacher = {"parameters": t.parameters,
                   "values": {f"{split} {k}": v for split in EVAL_SPLITS for k, v in (t.scores.get(split) or {}).items()
                              if not k.startswith("loss/")}}
    rep = Report(columns, main_columns(first) if first else [], reference, list(rows.values()), teacher,
                 [r for r in records if r.state != FINISHED], lower_is_better=bool(first and first.is_general),
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


# ---------------------------------------------------------------- uncertainty


def _split_metric(column: str) -> tuple[str, str]:
    split, _, metric = column.partition(" ")
    return split, metric


def _aligned(runs: list[RunEntry], split: str, metric: str) -> tuple[np.ndarray, list[np.ndarray], int] | None:
    """Gold labels and each run's logits over the examples every run evaluated, in the first run's order;
    None when a run kept no predictions or the split has no gold labels. Token classification: each run's
    per-sentence counts for `metric` in place of logits (the unit resampled is the sentence)."""
    preds = [r.predictions for r in runs]
    if any(p is None or split not in p[0] or p[0][split].labels is None for p in preds):
        return None
    first = preds[0][0][split]
    common = set(first.ids).intersection(*(set(p[0][split].ids) for p in preds[1:]))
    order = [i for i in first.ids if i in common]
    if not order:
        return None
    if first.offsets is not None or preds[0][1].get("type") == QA:
        return _aligned_counts(preds, split, metric, order)
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


def _aligned_counts(preds: list, split: str, metric: str, order: list[str]) -> tuple[np.ndarray, list, int]:
    """Token classification's and extractive QA's `_aligned`: each run's per-sentence (per-question) counts of
    `metric` over the examples `order` names (placeholder gold labels: the counts hold the gold side)."""
    out = []
    for splits, meta in preds:
        sp = splits[split]
        counts = _counts(metric, sp, meta, sp.student)
        where = {ex_id: k for k, ex_id in enumerate(sp.ids)}
        out.append(counts[[where[i] for i in order]])
    return np.zeros(len(order)), out, 3


def _counts(metric: str, sp, meta: dict, scores: np.ndarray) -> np.ndarray:
    """The per-example counts `metric` sums (`uncertainty.COUNTED`): per sentence from a tagger's word logits, per
    question from its (exact match, F1) scores."""
    if meta.get("type") == QA:
        return question_counts(metric, scores, sp.labels.astype(bool))
    return tag_counts(metric, scores, sp.labels, sp.offsets, list(meta["labels"]))


def _interval(row: VariantRow, column: str, resamples: int) -> Interval | None:
    values = row.values.get(column) or []
    if not values:
        return None
    if len(values) >= 2:
        return t_interval(values)
    split, metric = _split_metric(column)
    got = _aligned(row.runs, split, metric) if row.runs else None
    if got is None:
        return Interval(values[0], None, None, None, 1, "none")
    gold, (logits,), k = got
    return bootstrap_interval(metric, logits, gold, k, resamples)


def _value(run: RunEntry, column: str) -> float | None:
    return run.metrics.values().get(column)


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
        got = _aligned([r for pair in pairs for r in pair], split, metric) if generalise else None
        if got is not None:
            gold, logits, k = got
            extra = example_variance(example_replicates(metric, logits[0::2], logits[1::2], gold, k, resamples))
        return paired_t([_value(a, column) - _value(b, column) for a, b in pairs], extra)
    if not welch_judged and (pairs or (len(mine) == 1 and len(theirs) == 1)):
        a, b = pairs[0] if pairs else (mine[0], theirs[0])
        got = _aligned([a, b], split, metric)
        if got is not None:
            gold, (x, y), k = got
            d = example_bootstrap_difference(metric, x, y, gold, k, resamples)
            if pairs and (len(mine) > 1 or len(theirs) > 1):
                d.why = "one matched seed: " + d.why.removeprefix("one run each: ")
            return d
    return welch_difference([_value(r, column) for r in mine], [_value(r, column) for r in theirs])


def judge(rep: Report, first: RunMetrics | None) -> None:
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
    if first and not first.is_general:
        facts = first.teacher.task or TeacherTaskFacts()
        baselines = facts.majority_baseline or {}
        gate = facts.gate or {}
        for column in rep.main:
            split, metric = _split_metric(column)
            if metric == first.main_metric and split in baselines:
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
            if sp.offsets is not None or meta.get("type") == QA:  # the teacher's per-sentence (question) counts
                counts = _counts(metric, sp, meta, sp.teacher)
                rep.teacher_intervals[column] = bootstrap_interval(metric, counts, np.zeros(len(counts)), 3,
                                                                   rep.resamples)
                continue
            rep.teacher_intervals[column] = bootstrap_interval(metric, sp.teacher, sp.labels,
                                                               int(meta.get("num_labels") or sp.teacher.shape[1]),
                                                               rep.resamples)
