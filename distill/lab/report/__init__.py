"""`distill report`: ablation tables and plots made from run folders alone (metrics.json, run.json,
predictions.safetensors, TensorBoard events).

One row per variant: each metric as mean ± std over the variant's finished seeds; for the main metric a 95%
interval, the difference against the reference variant (the full method) with its 95% interval and a
Holm-corrected p-value (`uncertainty.py` says how), and a line saying how many differences can be told from
noise. Also parameters, encoder compute, inference speed, the teacher's row and the majority class. Runs that
are missing, unfinished or failed are listed, never averaged away.

discovery.py finds the runs, statistics.py computes the numbers, rendering.py writes the formats and plots.py
draws; `write_report` puts them all in one folder."""

from __future__ import annotations

from pathlib import Path

from distill.io import write_json, write_text
from distill.lab.report.discovery import ReportError, RunEntry, config_variants, discover, flat
from distill.lab.report.plots import curve_panels, plot_ablation, plot_curves, read_curves, write_tensorboard
from distill.lab.report.rendering import (
    FORMATS,
    _p,
    method_note,
    papers_text,
    problems_text,
    table_rows,
    to_csv,
    to_json,
    to_latex,
    to_markdown,
    verdicts,
)
from distill.lab.report.statistics import PaperComparison, Report, VariantRow, build, judge, main_columns, mean_std
from distill.lab.uncertainty import RESAMPLES

__all__ = ["FORMATS", "PaperComparison", "Report", "ReportError", "RunEntry", "VariantRow", "_p", "build",
           "config_variants", "curve_panels", "discover", "flat", "judge", "main_columns", "mean_std", "method_note",
           "papers_text", "plot_ablation", "plot_curves", "problems_text", "read_curves", "table_rows", "to_csv",
           "to_json", "to_latex", "to_markdown", "verdicts", "write_report", "write_tensorboard"]


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
