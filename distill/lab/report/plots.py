"""An ablation's pictures: the main metric and each difference with its interval, learning curves from the
runs' TensorBoard events, and one TensorBoard HParams row per variant."""

from __future__ import annotations

import hashlib
import re
import statistics
from pathlib import Path

import numpy as np

from distill.lab.report.discovery import RunEntry
from distill.lab.report.statistics import Report, _split_metric, mean_std
from distill.lab.run_folder import FINISHED
from distill.lab.uncertainty import ONE_SEED, Difference, Interval


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


def plot_curves(rep: Report, records: list[RunEntry], path: Path) -> Path | None:
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


def _folder_name(name: str, limit: int = 100) -> str:
    """A variant's name as a folder name: a variant named by every setting it changes can run past the file system's
    255 bytes, so a long one is cut and told apart from others by a digest of the whole."""
    safe = re.sub(r"[^\w.,=+-]", "_", name)
    if len(safe) <= limit:
        return safe
    return f"{safe[:limit]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


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
            writer = SummaryWriter(str(tmp / _folder_name(row.name)))
            writer.add_hparams({"variant": row.name, "summary": f"mean of {row.finished} seeds"}, final,
                               run_name=".")
            writer.close()
    return folder
