"""Ablation tables and plots made from run folders alone (metrics.json, run.json, TensorBoard events).

One row per variant: each metric as mean ± std over the variant's finished seeds, the change of the main
metric against the reference variant (the full method), parameters, encoder compute and inference speed, and
the teacher's row. Runs that are missing, unfinished or failed are listed, never averaged away."""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from distill.errors import DistillError
from distill.io import read_json, write_json, write_text
from distill.lab.run_folder import FAILED, FINISHED, MISSING, UNFINISHED, run_state
from distill.lab.sweep import read_plan
from distill.tasks import EVAL_SPLITS


@dataclass
class RunRecord:
    folder: Path
    variant: str
    seed: int | None
    state: str  # finished | failed | unfinished | missing
    metrics: dict | None = None
    error: str | None = None


@dataclass
class VariantRow:
    name: str
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per finished seed
    planned: int = 0
    finished: int = 0
    parameters: int | None = None
    compute: float | None = None  # student/teacher encoder FLOPs per token
    speed: list[float] = field(default_factory=list)  # inference examples/s per seed


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
    for folder in folders:
        run = read_json(folder / "run.json") if (folder / "run.json").exists() else {}
        rel = folder.relative_to(root)
        seeded = re.fullmatch(r"seed(\d+)", rel.name)
        variant = run.get("variant") or (str(rel.parent) if seeded and str(rel.parent) != "." else str(rel))
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
    """The columns whose change against the reference is shown: dev and test of the main metric."""
    if metrics.get("general"):
        return [next(iter(run_values(metrics)))]
    return [c for c in (f"dev {metrics['main_metric']}", f"test {metrics['main_metric']}") if c in
            run_values(metrics)]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class Report:
    columns: list[str]
    main: list[str]
    reference: str | None
    rows: list[VariantRow]
    teacher: dict | None
    problems: list[RunRecord]
    lower_is_better: bool = False


def build(root: str | Path, reference: str | None = None) -> Report:
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
    return Report(columns, main_columns(first) if first else [], reference, list(rows.values()), teacher,
                  [r for r in records if r.state != FINISHED], lower_is_better=bool(first and first.get("general")))


# ---------------------------------------------------------------- formats


def _fmt(mean: float | None, std: float | None, pm: str = " ± ") -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" if std is None else f"{mean:.4f}{pm}{std:.4f}"


def _delta(rep: Report, row: VariantRow, column: str) -> str:
    if rep.reference is None:
        return ""
    if row.name == rep.reference:
        return "ref"
    mine, _ = mean_std(row.values.get(column, []))
    ref, _ = mean_std(next(r for r in rep.rows if r.name == rep.reference).values.get(column, []))
    return "n/a" if mine is None or ref is None else f"{mine - ref:+.4f}"


def _header(rep: Report) -> list[str]:
    return ["model", "runs", *[h for c in rep.columns for h in ([c, f"Δ {c}"] if c in rep.main else [c])],
            "params", "compute", "eval ex/s"]


def table_rows(rep: Report, pm: str = " ± ") -> list[list[str]]:
    rows = []
    if rep.teacher:
        t = rep.teacher
        rows.append(["teacher", "-", *[h for c in rep.columns for h in (
            [_fmt(t["values"].get(c), None), ""] if c in rep.main else [_fmt(t["values"].get(c), None)])],
            f"{t['parameters'] / 1e6:.2f}M", "100%", "-"])
    for row in rep.rows:
        cells = [row.name, f"{row.finished}/{row.planned}"]
        for c in rep.columns:
            cells.append(_fmt(*mean_std(row.values.get(c, [])), pm=pm))
            if c in rep.main:
                cells.append(_delta(rep, row, c))
        cells.append(f"{row.parameters / 1e6:.2f}M" if row.parameters else "n/a")
        cells.append(f"{100 * row.compute:.1f}%" if row.compute is not None else "-")
        cells.append(f"{statistics.mean(row.speed):.0f}" if row.speed else "-")
        rows.append(cells)
    return rows


def problems_text(rep: Report) -> list[str]:
    out = []
    for r in sorted(rep.problems, key=lambda r: (r.variant, r.seed or 0)):
        why = {MISSING: "never started", UNFINISHED: "unfinished (resume with `distill sweep`)",
               FAILED: f"failed: {r.error}"}[r.state]
        out.append(f"{r.variant} seed {r.seed}: {why} ({r.folder})")
    return out


def to_markdown(rep: Report) -> str:
    rows = [_header(rep), *table_rows(rep)]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "| " + " | ".join("---" for _ in rows[0]) + " |")
    notes = [f"Mean ± sample std over finished seeds; Δ = mean minus the reference variant `{rep.reference}`"
             + ("; lower is better (held-out losses)" if rep.lower_is_better else "") + "."]
    if rep.problems:
        notes += ["", "Not in the means (missing, unfinished or failed):"] + [f"- {p}" for p in problems_text(rep)]
    return "\n".join(lines + [""] + notes) + "\n"


def to_csv(rep: Report) -> str:
    """Numbers for machines: mean, std and n per column, one row per variant plus the teacher."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "finished", "planned", *[f"{c} {s}" for c in rep.columns for s in ("mean", "std")],
                *[f"delta {c}" for c in rep.main], "parameters", "encoder_compute", "eval_examples_per_s"])
    if rep.teacher:
        t = rep.teacher
        w.writerow(["teacher", "", "", *[x for c in rep.columns for x in (t["values"].get(c, ""), "")],
                    *["" for _ in rep.main], t["parameters"], 1.0, ""])
    for row in rep.rows:
        stats = [mean_std(row.values.get(c, [])) for c in rep.columns]
        deltas = [_delta(rep, row, c) for c in rep.main]
        w.writerow([row.name, row.finished, row.planned,
                    *["" if x is None else round(x, 6) for m, s in stats for x in (m, s)],
                    *["" if d in ("ref", "n/a") else d for d in deltas], row.parameters or "",
                    "" if row.compute is None else round(row.compute, 4),
                    round(statistics.mean(row.speed), 1) if row.speed else ""])
    return buf.getvalue()


def _tex(text: str) -> str:
    return re.sub(r"([_&%#$])", r"\\\1", text).replace("Δ", r"$\Delta$").replace(" ± ", r" $\pm$ ")


def to_latex(rep: Report) -> str:
    header = _header(rep)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in table_rows(rep)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if rep.problems:
        lines += ["% not in the means: " + p for p in problems_text(rep)]
    return "\n".join(lines) + "\n"


FORMATS = {"md": ("table.md", to_markdown), "csv": ("table.csv", to_csv), "latex": ("table.tex", to_latex)}


# ---------------------------------------------------------------- plots


def _save(fig, path: Path, dpi: int) -> None:
    from distill.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def plot_ablation(rep: Report, path: Path) -> Path | None:
    """Bar chart of the main metric per variant with std error bars; the teacher as a dashed line."""
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
    stds = [statistics.stdev(r.values[col]) if len(r.values[col]) > 1 else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    colors = ["tab:orange" if r.name == rep.reference else "tab:blue" for r in rows]
    ax.barh(range(len(rows)), means, xerr=stds, color=colors, capsize=3)
    ax.set_yticks(range(len(rows)), [f"{r.name} (n={r.finished})" for r in rows])
    ax.invert_yaxis()
    if rep.teacher and col in rep.teacher["values"]:
        ax.axvline(rep.teacher["values"][col], color="black", linestyle="--", label="teacher")
        ax.legend(loc="lower right")
    lo = min(m - s for m, s in zip(means, stds, strict=True))
    hi = max([m + s for m, s in zip(means, stds, strict=True)] + list((rep.teacher or {}).get("values", {}).values()
                                                                        if rep.teacher else []))
    ax.set_xlim(max(0.0, lo - 0.1 * (hi - lo + 1e-9)), hi + 0.05 * (hi - lo + 1e-9))
    ax.set_xlabel(col + (" (lower is better)" if rep.lower_is_better else ""))
    ax.set_title(f"ablation: {col}, mean ± std over seeds")
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


def write_report(root: str | Path, out: str | Path | None = None, reference: str | None = None,
                 plots: bool = True) -> tuple[Report, dict[str, Path]]:
    """Every format and the plots into `out` (default: <root>/report); returns the report and the paths."""
    root = Path(root)
    rep = build(root, reference)  # first: a wrong folder is refused before anything is written into it
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt, (name, render) in FORMATS.items():
        write_text(out / name, render(rep))
        paths[fmt] = out / name
    write_json(out / "report.json", {"reference": rep.reference, "columns": rep.columns, "main": rep.main,
                                     "teacher": rep.teacher,
                                     "variants": {r.name: {"values": r.values, "planned": r.planned,
                                                           "parameters": r.parameters, "compute": r.compute,
                                                           "eval_examples_per_s": r.speed} for r in rep.rows},
                                     "not_in_means": problems_text(rep)})
    if plots:
        for key, fn, name in (("ablation_plot", plot_ablation, "ablation.png"),
                              ("curves_plot", lambda r, p: plot_curves(r, discover(root), p), "curves.png")):
            made = fn(rep, out / name)
            if made:
                paths[key] = made
    return rep, paths
