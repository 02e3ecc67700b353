"""How sure a report can be: intervals over seeds, bootstraps over examples, paired differences, Holm.

The statistics `distill report` prints (README, "How the report judges a difference"):
- a variant's score: mean, sample std and a 95% t-interval over its seeds; with one seed, a percentile
  bootstrap interval over the evaluation examples instead;
- a variant against the reference: a paired bootstrap. Each replicate draws the evaluation examples with
  replacement (the same draw for both variants) and the matched seeds with replacement, and takes the mean over
  the drawn seeds of (variant's metric - reference's metric) on the drawn examples. The 95% interval is the
  replicates' 2.5th-97.5th percentiles; the two-sided p-value is the percentile test's (twice the smaller share of
  replicates on either side of zero), so "interval excludes zero" and "p < 0.05" agree;
- across the variants of one table, Holm's step-down correction of those p-values.

Metrics on a resample are computed from confusion matrices (classification) so that thousands of replicates
cost a few array operations; they equal `distill.metrics.compute` on the same rows (tested)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass
class Interval:
    mean: float
    std: float | None  # sample std over seeds; None for one seed
    low: float | None
    high: float | None
    n: int
    method: str  # "t over seeds" | "bootstrap over examples" | "none"


@dataclass
class Difference:
    delta: float  # variant minus reference, mean over matched seeds on every example
    low: float | None
    high: float | None
    p: float | None
    seeds: int  # matched seeds the difference is over
    method: str  # "paired bootstrap" | "Welch t over seeds" | "none"
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        """Distinguishable from noise after Holm's correction over the table's variants."""
        return self.p_holm is not None and self.p_holm < 1 - CONFIDENCE


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean, sample std and the t-interval mean ± t_{n-1} * s / sqrt(n) (no interval for fewer than 2)."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return Interval(mean, None, None, None, n, "none")
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return Interval(mean, sd, mean - half, mean + half, n, "t over seeds")


def resample_indices(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement."""
    return rng.integers(0, n, size=(resamples, n))


# ---------------------------------------------------------------- metrics on many resamples at once


def confusions(pred: np.ndarray, gold: np.ndarray, num_labels: int, idx: np.ndarray) -> np.ndarray:
    """(replicates, gold class, predicted class) counts of the rows `idx` (replicates, n) selects."""
    k2 = num_labels * num_labels
    cells = (gold.astype(np.int64) * num_labels + pred.astype(np.int64))[idx]  # (B, n)
    flat = (cells + np.arange(len(idx))[:, None] * k2).ravel()
    return np.bincount(flat, minlength=len(idx) * k2).reshape(len(idx), num_labels, num_labels)


def _f1_per_class(c: np.ndarray) -> np.ndarray:
    tp = np.diagonal(c, axis1=1, axis2=2).astype(np.float64)
    fp = c.sum(1) - tp  # predicted as the class, gold another
    fn = c.sum(2) - tp
    denom = 2 * tp + fp + fn
    return np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _mcc(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.float64)
    t, p, s = c.sum(2), c.sum(1), c.sum((1, 2))
    cov = np.trace(c, axis1=1, axis2=2) * s - (t * p).sum(1)
    denom = np.sqrt(s * s - (p * p).sum(1)) * np.sqrt(s * s - (t * t).sum(1))
    return np.where(denom > 0, cov / np.where(denom > 0, denom, 1), 0.0)


CLASSIFICATION = {
    "accuracy": lambda c: np.trace(c, axis1=1, axis2=2) / c.sum((1, 2)),
    "macro_f1": lambda c: _f1_per_class(c).mean(1),
    "f1": lambda c: _f1_per_class(c)[:, 1],
    "mcc": _mcc,
}


def _correlations(name: str, score: np.ndarray, gold: np.ndarray, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(idx), chunk):
        x, y = score[idx[i:i + chunk]], gold[idx[i:i + chunk]].astype(np.float64)
        if name == "spearman":
            x, y = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
        denom = np.sqrt((x * x).sum(1) * (y * y).sum(1))
        out.append(np.where(denom > 0, (x * y).sum(1) / np.where(denom > 0, denom, 1), 0.0))
    return np.concatenate(out)


def metric_replicates(metric: str, logits: np.ndarray, gold: np.ndarray, num_labels: int,
                      idx: np.ndarray) -> np.ndarray:
    """`metric` on each row selection of `idx` (replicates, n): one value per replicate."""
    if num_labels == 1:
        if metric not in ("pearson", "spearman"):
            raise ValueError(f"metric {metric!r} does not apply to a regression task")
        return _correlations(metric, logits.reshape(-1).astype(np.float64), gold, idx)
    if metric not in CLASSIFICATION:
        raise ValueError(f"unknown classification metric {metric!r}; known: {sorted(CLASSIFICATION)}")
    return CLASSIFICATION[metric](confusions(logits.argmax(-1), gold, num_labels, idx))


def metric_value(metric: str, logits: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    return float(metric_replicates(metric, logits, gold, num_labels, np.arange(len(gold))[None])[0])


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    lo, hi = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def bootstrap_interval(metric: str, logits: np.ndarray, gold: np.ndarray, num_labels: int,
                       resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """One run's score with a percentile bootstrap interval over its evaluation examples."""
    idx = resample_indices(len(gold), resamples, np.random.default_rng(seed))
    reps = metric_replicates(metric, logits, gold, num_labels, idx)
    lo, hi = percentile_interval(reps, confidence)
    return Interval(metric_value(metric, logits, gold, num_labels), None, lo, hi, 1, "bootstrap over examples")


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p-value of `replicates` against zero: twice the smaller tail share, with
    the +1 of an exact test, so that it is never 0."""
    b = len(replicates)
    below = (np.sum(replicates <= 0) + 1) / (b + 1)
    above = (np.sum(replicates >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_bootstrap(metric: str, variant: list[np.ndarray], reference: list[np.ndarray], gold: np.ndarray,
                     num_labels: int, resamples: int = RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE) -> Difference:
    """Variant minus reference. `variant[j]` and `reference[j]` are the logits of the runs with the j-th matched
    seed, rows in the same example order as `gold`."""
    if len(variant) != len(reference) or not variant:
        raise ValueError(f"paired runs: {len(variant)} variant and {len(reference)} reference runs; expected the "
                         "same positive number (matched by seed)")
    rng = np.random.default_rng(seed)
    idx = resample_indices(len(gold), resamples, rng)
    seeds = rng.integers(0, len(variant), size=(resamples, len(variant)))
    diff = np.stack([metric_replicates(metric, v, gold, num_labels, idx) -
                     metric_replicates(metric, r, gold, num_labels, idx)
                     for v, r in zip(variant, reference, strict=True)], axis=1)  # (B, seeds)
    reps = np.take_along_axis(diff, seeds, axis=1).mean(1)
    point = float(np.mean([metric_value(metric, v, gold, num_labels) - metric_value(metric, r, gold, num_labels)
                           for v, r in zip(variant, reference, strict=True)]))
    lo, hi = percentile_interval(reps, confidence)
    return Difference(point, lo, hi, bootstrap_p(reps), len(variant), "paired bootstrap")


def welch_difference(variant: list[float], reference: list[float], confidence: float = CONFIDENCE) -> Difference:
    """Variant mean minus reference mean with Welch's t-interval and test over seeds: for runs without
    per-example predictions (general distillation's held-out losses, runs made before predictions were kept)."""
    delta = float(np.mean(variant) - np.mean(reference))
    if len(variant) < 2 or len(reference) < 2:
        return Difference(delta, None, None, None, 0, "none")
    if np.std(variant) == 0 and np.std(reference) == 0:  # no spread: scipy's statistic is undefined
        return Difference(delta, delta, delta, 1.0 if delta == 0 else 0.0, 0, "Welch t over seeds")
    res = stats.ttest_ind(variant, reference, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Difference(delta, float(ci.low), float(ci.high), float(res.pvalue), 0, "Welch t over seeds")


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted among the tests)."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m, out, running = len(known), list(pvalues), 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
