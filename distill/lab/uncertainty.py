"""How sure a report can be: intervals over seeds, paired differences over matched seeds, Holm.

The statistics `distill report` prints (docs/experiments.md, "How the report judges a difference"):
- a variant's score: mean, sample std and a 95% t-interval over its seeds; with one seed, a percentile
  bootstrap interval over the evaluation examples instead (evaluation-set sampling only, not seed variance);
- a variant against the reference: a paired t over matched seeds. Runs are matched by seed; each matched pair
  gives one difference, the variant's metric minus the reference's on every evaluation example; Δ is their mean,
  the interval mean ± t(0.975, n-1) s / sqrt(n), the p-value the two-sided paired t-test's (df n-1). It is
  judged (may get a '*') from `MIN_JUDGED_SEEDS` matched seeds on; fewer are described, never starred;
- runs that cannot be matched by seed: Welch's t over the two sets of per-seed values;
- one run each: a paired bootstrap over the evaluation examples, descriptive only;
- optionally (`generalise`), for claims about new data rather than this evaluation set, the example-bootstrap
  variance of the seed-averaged difference is added to the paired t's squared standard error, with
  Welch-Satterthwaite degrees of freedom;
- across the variants of one table, Holm's step-down correction of the p-values, and for a difference that is
  not distinguishable, the matched seeds a paired t would need to find it with 80% power.

Why not a bootstrap over seeds: resampling 3 matched seeds never reaches past the smallest or largest of the three
per-seed differences, so when all three share a sign (1 time in 4 under no effect) every replicate lands on that
side and p sits at its floor. `tests/test_calibration.py` simulates the null and holds these tests to their
stated error rates.

Metrics on a resample are computed from confusion matrices (classification) so that thousands of replicates
cost a few array operations (scikit-learn's, which `distill.metrics` calls, take milliseconds each); they equal
scikit-learn's on the same rows, degenerate resamples and `distill.metrics`' conventions for them included
(tests/test_uncertainty.py)."""

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


PAIRED_T = "paired t over matched seeds"
PAIRED_T_GENERALISED = "paired t over matched seeds + example bootstrap"
WELCH = "Welch t over seeds"
ONE_SEED = "bootstrap over examples (one seed)"
NONE = "none"
MIN_JUDGED_SEEDS = 3  # fewer matched seeds: a difference is described, never judged
POWER = 0.8
MAX_SEEDS_NEEDED = 1000


@dataclass
class Difference:
    delta: float  # variant minus reference, mean over matched seeds on every example
    low: float | None
    high: float | None
    p: float | None  # None: not judged (too few seeds, or descriptive only), see `why`
    seeds: int  # matched seeds the difference is over (0 when the runs could not be matched)
    method: str  # PAIRED_T | PAIRED_T_GENERALISED | WELCH | ONE_SEED | NONE
    p_holm: float | None = None
    sd: float | None = None  # sd of the per-seed differences (paired t only)
    df: float | None = None  # degrees of freedom of the t
    why: str | None = None  # why no p-value: the reason a reader is given
    example_variance: float | None = None  # --generalise: the examples' share of Δ's variance that was added
    seeds_needed: int | None = None  # matched seeds for 80% power at the table's Holm level (not distinguishable)
    needed_alpha: float | None = None  # the level `seeds_needed` is for

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


def resample_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(replicates, n) how many times each row is drawn by each replicate of `idx` (replicates, draws). float32
    holds counts exactly up to 2^24, far beyond any evaluation set."""
    weights = np.empty((len(idx), n), dtype=np.float32)
    for b, rows in enumerate(idx):  # one replicate at a time: no (replicates x draws) temporary
        weights[b] = np.bincount(rows, minlength=n)
    return weights


def confusions(pred: np.ndarray, gold: np.ndarray, num_labels: int, idx: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> np.ndarray:
    """(replicates, gold class, predicted class) counts of the rows `idx` (replicates, draws) selects, or of
    `weights` (replicates, n), each row's count per replicate: one sparse product per run, which runs that share
    the draws can share the weights of. Memory: the weights and a (replicates, classes^2) result."""
    from scipy import sparse

    if weights is None:
        weights = resample_weights(idx, len(gold))
    n, k2 = len(gold), num_labels * num_labels
    cells = gold.astype(np.int64) * num_labels + pred.astype(np.int64)
    onehot = sparse.csr_matrix((np.ones(n, dtype=np.float32), (cells, np.arange(n))), shape=(k2, n))
    counts = np.asarray(onehot @ weights.T.astype(np.float32, copy=False)).T  # integers below 2^24: exact
    return np.rint(counts).astype(np.int64).reshape(len(weights), num_labels, num_labels)


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


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


# Token classification resamples sentences: its `logits` are each sentence's counts (`distill.metrics.tag_counts`),
# and a metric is a ratio of their sums (micro F1 = 2 right / (predicted + gold), conlleval's, 0 on no entity).
COUNTED = {
    # Extractive QA's counts per question: (100 x its score, 1, 1) (`distill.qa_eval.question_counts`).
    **{name: (lambda s: _ratio(s[:, 0], s[:, 1])) for name in ("exact_match", "squad_f1", "has_ans_exact",
                                                                "has_ans_f1", "no_ans_exact", "no_ans_f1")},
    "token_accuracy": lambda s: _ratio(s[:, 0], s[:, 1]),
    "entity_f1": lambda s: _ratio(2 * s[:, 0], s[:, 1] + s[:, 2]),
    "entity_precision": lambda s: _ratio(s[:, 0], s[:, 1]),
    "entity_recall": lambda s: _ratio(s[:, 0], s[:, 2]),
}


def metric_replicates(metric: str, logits: np.ndarray, gold: np.ndarray, num_labels: int,
                      idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """`metric` on each row selection of `idx` (replicates, n): one value per replicate. `weights` (from
    `resample_weights(idx)`) saves recounting the draws when several runs share them. For the token metrics
    (`COUNTED`) `logits` holds each sentence's counts."""
    if metric in COUNTED:
        w = resample_weights(idx, len(logits)) if weights is None else weights
        return COUNTED[metric](w.astype(np.float64) @ logits.astype(np.float64))
    if num_labels == 1:
        if metric not in ("pearson", "spearman"):
            raise ValueError(f"metric {metric!r} does not apply to a regression task")
        return _correlations(metric, logits.reshape(-1).astype(np.float64), gold, idx)
    if metric not in CLASSIFICATION:
        raise ValueError(f"unknown classification metric {metric!r}; known: {sorted(CLASSIFICATION)}")
    return CLASSIFICATION[metric](confusions(logits.argmax(-1), gold, num_labels, idx, weights))


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


def _check_paired(variant: list, reference: list) -> None:
    if len(variant) != len(reference) or not variant:
        raise ValueError(f"paired runs: {len(variant)} variant and {len(reference)} reference runs; expected the "
                         "same positive number (matched by seed)")


def example_replicates(metric: str, variant: list[np.ndarray], reference: list[np.ndarray], gold: np.ndarray,
                       num_labels: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, pairs): each pair's difference, variant[j] minus reference[j], on each of `resamples` draws of
    the evaluation examples with replacement, the same draw for every run."""
    _check_paired(variant, reference)
    idx = resample_indices(len(gold), resamples, np.random.default_rng(seed))
    weights = None if num_labels == 1 else resample_weights(idx, len(gold))
    return np.stack([metric_replicates(metric, v, gold, num_labels, idx, weights) -
                     metric_replicates(metric, r, gold, num_labels, idx, weights)
                     for v, r in zip(variant, reference, strict=True)], axis=1)


def example_variance(replicates: np.ndarray) -> float:
    """The part of Δ's variance that comes from which examples were drawn and that the spread over seeds does
    not already hold, from `example_replicates` (resamples, n pairs).

    The bootstrap variance of the seed-averaged difference, V, holds the examples' own effect E (a variant better
    on some kinds of example than others) plus the runs' per-example noise, R / n. Each pair's bootstrap
    variance holds E + R; their mean is W. The per-seed differences' sd already carries R, so only
    E = (n V - W) / (n - 1) is added (0 when negative): adding V whole would count the runs' noise twice."""
    n = replicates.shape[1]
    v = float(np.var(replicates.mean(1), ddof=1))
    w = float(np.var(replicates, axis=0, ddof=1).mean())
    return max(0.0, (n * v - w) / (n - 1))


def example_bootstrap_difference(metric: str, variant: np.ndarray, reference: np.ndarray, gold: np.ndarray,
                                 num_labels: int, resamples: int = RESAMPLES, seed: int = 0,
                                 confidence: float = CONFIDENCE) -> Difference:
    """One run against one run: the difference on every example with a percentile interval over the evaluation
    examples. It covers which examples were drawn, not which seed, so it has no p-value and is never judged."""
    reps = example_replicates(metric, [variant], [reference], gold, num_labels, resamples, seed)[:, 0]
    lo, hi = percentile_interval(reps, confidence)
    delta = metric_value(metric, variant, gold, num_labels) - metric_value(metric, reference, gold, num_labels)
    return Difference(delta, lo, hi, None, 1, ONE_SEED,
                      why="one run each: the interval covers evaluation-set sampling only, not seed variance")


def paired_t(differences: list[float] | np.ndarray, example_variance: float | None = None,
             confidence: float = CONFIDENCE) -> Difference:
    """Paired t over matched seeds from the per-seed differences (variant minus reference, each on every
    evaluation example): Δ = their mean, se = s / sqrt(n), df = n - 1. Judged (a p-value) from MIN_JUDGED_SEEDS
    differences on.

    `example_variance` (the examples' own share of Δ's variance, `example_variance()`) makes it a claim about new
    data: se^2 = s^2 / n + example_variance with Welch-Satterthwaite df. That df can exceed n - 1 and, with it,
    make the interval narrower than the plain one; a claim about new data is never allowed to be surer than the
    same claim about this evaluation set, so the generalised interval is the hull of both and p the larger."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    delta = float(d.mean()) if n else 0.0
    method = PAIRED_T if example_variance is None else PAIRED_T_GENERALISED
    if n < 2:
        return Difference(delta, None, None, None, n, NONE,
                          why=f"{n} matched seed(s): a difference needs at least {MIN_JUDGED_SEEDS}")
    if not np.all(np.isfinite(d)):
        return Difference(delta, None, None, None, n, NONE,
                          why=f"{int(np.sum(~np.isfinite(d)))} of {n} per-seed differences are not numbers (a run's "
                              "metric is undefined, e.g. a correlation of constant predictions)")
    sd = float(d.std(ddof=1))
    low, high, p, df = _t_test(delta, sd * sd / n, 0.0, n, confidence)
    if example_variance is not None:
        g_low, g_high, g_p, df = _t_test(delta, sd * sd / n, example_variance, n, confidence)
        low, high, p = min(low, g_low), max(high, g_high), max(p, g_p)
    judged = n >= MIN_JUDGED_SEEDS
    return Difference(delta, low, high, p if judged else None, n, method, sd=sd, df=df,
                      example_variance=example_variance,
                      why=None if judged else f"{n} matched seeds: a difference is judged from {MIN_JUDGED_SEEDS} "
                                              "on (the interval is shown, not tested)")


def _t_test(delta: float, seed_var: float, example_var: float, n: int,
            confidence: float) -> tuple[float, float, float, float]:
    """(low, high, p, df) of a t with squared standard error seed_var + example_var; df n - 1, or
    Welch-Satterthwaite's with the example component taken as known (estimated from thousands of examples)."""
    df = float(n - 1)
    if example_var > 0:
        df = (seed_var + example_var) ** 2 / (seed_var ** 2 / (n - 1)) if seed_var > 0 else float("inf")
    se = float(np.sqrt(seed_var + example_var))
    if se == 0:  # every pair differs by the same amount: no spread to test against
        return delta, delta, 1.0 if delta == 0 else 0.0, df
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return delta - half, delta + half, float(2 * stats.t.sf(abs(delta) / se, df)), df


def matched_difference(metric: str, variant: list[np.ndarray], reference: list[np.ndarray], gold: np.ndarray,
                       num_labels: int, generalise: bool = False, resamples: int = RESAMPLES, seed: int = 0,
                       confidence: float = CONFIDENCE) -> Difference:
    """Variant minus reference from per-example logits. `variant[j]` and `reference[j]` are the runs with the
    j-th matched seed, rows in the same example order as `gold`. One pair: the example bootstrap, descriptive;
    two or more: the paired t over their differences (plus the example component with `generalise`)."""
    _check_paired(variant, reference)
    if len(variant) == 1:
        return example_bootstrap_difference(metric, variant[0], reference[0], gold, num_labels, resamples, seed,
                                            confidence)
    diffs = [metric_value(metric, v, gold, num_labels) - metric_value(metric, r, gold, num_labels)
             for v, r in zip(variant, reference, strict=True)]
    extra = None
    if generalise:
        extra = example_variance(example_replicates(metric, variant, reference, gold, num_labels, resamples, seed))
    return paired_t(diffs, extra, confidence)


def welch_difference(variant: list[float], reference: list[float], confidence: float = CONFIDENCE) -> Difference:
    """Variant mean minus reference mean with Welch's t-interval and test over seeds, for runs that cannot be
    matched by seed. Judged when both sides have MIN_JUDGED_SEEDS runs."""
    delta = float(np.mean(variant) - np.mean(reference))
    if len(variant) < 2 or len(reference) < 2:
        return Difference(delta, None, None, None, 0, NONE,
                          why=f"{len(variant)} and {len(reference)} run(s) that cannot be paired: no spread over "
                              "seeds to judge against")
    judged = min(len(variant), len(reference)) >= MIN_JUDGED_SEEDS
    why = None if judged else (f"{len(variant)} and {len(reference)} unmatched runs: a difference is judged from "
                               f"{MIN_JUDGED_SEEDS} runs a side on")
    if np.var(variant) == 0 and np.var(reference) == 0:  # no spread: scipy's statistic is undefined
        return Difference(delta, delta, delta, (1.0 if delta == 0 else 0.0) if judged else None, 0, WELCH,
                          why=why)
    res = stats.ttest_ind(variant, reference, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Difference(delta, float(ci.low), float(ci.high), float(res.pvalue) if judged else None, 0, WELCH,
                      df=float(res.df), why=why)


def paired_t_power(delta: float, sd: float, n: int | np.ndarray, alpha: float,
                   example_variance: float = 0.0) -> np.ndarray:
    """Power of the two-sided paired t-test at level `alpha` with `n` matched seeds, when the per-seed
    differences have mean `delta` and sd `sd` (noncentral t). With `example_variance` (the generalised test),
    the standard error is sqrt(sd^2 / n + example_variance), which more seeds cannot shrink below its floor,
    and df is Welch-Satterthwaite's."""
    n = np.asarray(n, dtype=np.float64)
    seed_var = sd * sd / n
    df = n - 1 if example_variance == 0 else (seed_var + example_variance) ** 2 / (seed_var ** 2 / (n - 1))
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(delta) / np.sqrt(seed_var + example_variance)
    # scipy's noncentral t returns NaN far in a tail (nc above about 8): there the tail is 0, the other side 1.
    upper = np.nan_to_num(stats.nct.sf(crit, df, nc), nan=1.0)
    lower = np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0)
    return upper + lower


def seeds_needed(delta: float, sd: float | None, alpha: float, power: float = POWER,
                 limit: int = MAX_SEEDS_NEEDED, example_variance: float = 0.0) -> int | None:
    """The fewest matched seeds (at least MIN_JUDGED_SEEDS) with which a paired t at level `alpha` finds a true
    mean difference `delta` with per-seed sd `sd` at least `power` of the time (with `example_variance`, the
    generalised test); None when no spread was measured, there is no difference to find, or it takes more than
    `limit`."""
    if sd is None or not sd > 0 or not delta or not np.isfinite(delta):
        return None
    ns = np.arange(MIN_JUDGED_SEEDS, limit + 1)
    ok = np.nonzero(paired_t_power(delta, sd, ns, alpha, example_variance) >= power)[0]
    return int(ns[ok[0]]) if len(ok) else None


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None and NaN stay as they are and are not counted among the tests)."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not np.isnan(p))
    m, out, running = len(known), list(pvalues), 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
