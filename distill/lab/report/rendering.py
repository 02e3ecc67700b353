"""An ablation table in its formats: Markdown (with the method, the verdicts, the papers' differences, warnings
and the runs left out), CSV and JSON for machines, LaTeX for papers."""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import asdict

from distill.lab.report.statistics import Report, VariantRow, mean_std
from distill.lab.run_folder import FAILED, MISSING, UNFINISHED
from distill.lab.uncertainty import (
    CONFIDENCE,
    MAX_SEEDS_NEEDED,
    MIN_JUDGED_SEEDS,
    ONE_SEED,
    PAIRED_T,
    PAIRED_T_GENERALISED,
    POWER,
    WELCH,
    Difference,
    Interval,
)


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
