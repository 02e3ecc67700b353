"""The report's statistics against scipy, hand computations and slow reference loops, and a planted effect:
a variant that is truly better is flagged, a null variant is not. Error rates under simulated nulls:
test_calibration.py."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from distill import metrics
from distill.lab.report import build, to_markdown, write_report
from distill.lab.uncertainty import (
    ONE_SEED,
    PAIRED_T,
    PAIRED_T_GENERALISED,
    bootstrap_interval,
    confusions,
    example_replicates,
    example_variance,
    holm,
    matched_difference,
    metric_replicates,
    paired_t,
    paired_t_power,
    percentile_interval,
    resample_indices,
    seeds_needed,
    t_interval,
    welch_difference,
)
from distill.predictions import SplitPredictions, write_predictions


def test_t_interval_by_hand_and_against_scipy():
    iv = t_interval([0.60, 0.62, 0.64])
    # mean 0.62, s = 0.02, t(0.975, 2) = 4.302653: half-width 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert iv.mean == pytest.approx(0.62) and iv.std == pytest.approx(0.02)
    assert (iv.low, iv.high) == pytest.approx((0.62 - 0.049683, 0.62 + 0.049683), abs=1e-6)
    values = [0.71, 0.69, 0.74, 0.70, 0.66]
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (t_interval(values).low, t_interval(values).high) == pytest.approx((lo, hi))
    one = t_interval([0.5])
    assert one.low is None and one.std is None and one.n == 1


def test_confusion_counts_by_hand():
    gold, pred = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])
    c = confusions(pred, gold, 3, np.array([[0, 1, 2, 3], [1, 1, 3, 3]]))
    assert c[0].tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert c[1].tolist() == [[0, 2, 0], [0, 0, 0], [0, 2, 0]]  # rows 1, 1, 3, 3: gold 0 / 2 predicted as 1


@pytest.mark.parametrize("metric,k", [("accuracy", 3), ("macro_f1", 3), ("mcc", 3), ("f1", 2), ("mcc", 2),
                                      ("pearson", 1), ("spearman", 1)])
def test_metric_on_resamples_equals_the_run_metric_on_the_same_rows(metric, k):
    rng = np.random.default_rng(1)
    n = 60
    if k == 1:
        gold = rng.normal(size=n).astype(np.float32)
        logits = (gold + rng.normal(size=n)).reshape(-1, 1)
        logits[:5] = logits[5:10]  # ties, for spearman's ranks
    else:
        gold = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[gold]
    idx = resample_indices(n, 20, rng)
    fast = metric_replicates(metric, logits, gold, k, idx)
    slow = [metrics.compute((metric,), logits[i], gold[i], k)[metric] for i in idx]
    np.testing.assert_allclose(fast, slow, atol=1e-9)


def _sklearn(metric: str, pred: np.ndarray, gold: np.ndarray, k: int) -> float:
    """scikit-learn's own call, with the conventions distill.metrics states (F1 0 without a true positive)."""
    from sklearn import metrics as skm

    if metric == "accuracy":
        return skm.accuracy_score(gold, pred)
    if metric == "f1":
        return skm.f1_score(gold, pred, labels=[1], average=None, zero_division=0)[0]
    if metric == "macro_f1":
        return skm.f1_score(gold, pred, labels=list(range(k)), average="macro", zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one label in both: a warning about the matrix's shape, then 0
        return skm.matthews_corrcoef(gold, pred)


# Resamples a random draw rarely makes: one class predicted (MCC's denominator 0), one gold class (0 too), one
# label in both, perfect predictions, a class neither predicted nor gold (its F1 0), a single row.
DEGENERATE = {
    "one class predicted": (np.array([0, 1, 2, 1, 0, 2]), np.array([1, 1, 1, 1, 1, 1])),
    "one gold class": (np.array([2, 2, 2, 2]), np.array([0, 2, 1, 2])),
    "one label in both": (np.array([1, 1, 1]), np.array([1, 1, 1])),
    "perfect": (np.array([0, 1, 2, 0]), np.array([0, 1, 2, 0])),
    "a class neither predicted nor gold": (np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1])),
    "one row": (np.array([2]), np.array([0])),
}


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "f1", "mcc"])
def test_confusion_matrix_path_equals_scikit_learn_on_random_and_degenerate_resamples(metric):
    rng = np.random.default_rng(5)
    k = 2 if metric == "f1" else 3
    cases = [(rng.integers(0, k, 40), rng.integers(0, k, 40)) for _ in range(30)]
    cases += [(g % k, p % k) for g, p in DEGENERATE.values()]
    for gold, pred in cases:
        idx = np.arange(len(gold))[None]
        fast = metric_replicates(metric, np.eye(k)[pred], gold, k, idx)[0]
        want = _sklearn(metric, pred, gold, k)
        assert fast == pytest.approx(want, rel=1e-12, abs=1e-15), (metric, gold, pred)
        assert metrics.compute((metric,), np.eye(k)[pred], gold, k)[metric] == want  # the run's metric is sklearn's
    one_class = metric_replicates("mcc", np.eye(3)[[1, 1, 1, 1]], np.array([0, 1, 2, 1]), 3, np.arange(4)[None])
    assert one_class[0] == 0.0  # the stated convention, not nan


def test_bootstrap_interval_equals_a_slow_loop_with_the_same_draws():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + np.eye(3)[gold]
    iv = bootstrap_interval("macro_f1", logits, gold, 3, resamples=500, seed=7)
    idx = resample_indices(200, 500, np.random.default_rng(7))
    slow = [metrics.macro_f1(logits[i].argmax(-1), gold[i], 3) for i in idx]
    assert (iv.low, iv.high) == pytest.approx(tuple(np.quantile(slow, [0.025, 0.975])))
    assert iv.mean == pytest.approx(metrics.macro_f1(logits.argmax(-1), gold, 3))
    assert iv.low < iv.mean < iv.high


def test_percentile_interval_by_hand():
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_paired_t_by_hand_and_against_scipy():
    v, r = [0.71, 0.69, 0.74, 0.70, 0.66], [0.68, 0.69, 0.70, 0.64, 0.65]
    d = paired_t(np.subtract(v, r))
    res = stats.ttest_rel(v, r)
    ci = res.confidence_interval(0.95)
    assert d.method == PAIRED_T and d.seeds == 5 and d.df == 4
    assert d.delta == pytest.approx(np.mean(v) - np.mean(r)) and d.p == pytest.approx(res.pvalue)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))
    # by hand: differences 0.03, 0, 0.04, 0.06, 0.01: mean 0.028, s = 0.023875, t = 0.028 / (s / sqrt 5) = 2.6224
    assert d.sd == pytest.approx(0.0238747, abs=1e-6)
    assert d.p == pytest.approx(2 * stats.t.sf(2.62240, 4), abs=1e-5)


def test_fewer_than_three_matched_seeds_are_described_not_judged():
    two = paired_t([0.02, 0.05])
    assert two.p is None and two.low < 0.035 < two.high and "2 matched seeds" in two.why
    one = paired_t([0.02])
    assert one.p is None and one.low is None
    assert paired_t([0.02, 0.05, 0.04]).p is not None
    assert welch_difference([0.7, 0.71], [0.6, 0.62, 0.61]).p is None  # two runs on one side
    assert welch_difference([0.7, 0.71, 0.72], [0.6, 0.62, 0.61]).p is not None


def test_constant_differences_have_no_spread():
    same = paired_t([0.0, 0.0, 0.0])
    assert (same.delta, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    shift = paired_t([0.01, 0.01, 0.01])
    assert shift.p == 0.0 and shift.low == shift.high == pytest.approx(0.01)


def _pairs(seeds=4, n=300, k=3, seed=5):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, k, n)
    ref = [rng.normal(size=(n, k)) + np.eye(k)[gold] for _ in range(seeds)]
    var = [r + 0.3 * np.eye(k)[gold] + rng.normal(scale=0.8, size=(n, k)) for r in ref]
    return gold, var, ref


def test_matched_difference_is_the_paired_t_of_the_per_seed_metrics():
    gold, var, ref = _pairs()
    d = matched_difference("macro_f1", var, ref, gold, 3)
    per_seed = [metrics.macro_f1(v.argmax(-1), gold, 3) - metrics.macro_f1(r.argmax(-1), gold, 3)
                for v, r in zip(var, ref, strict=True)]
    res = stats.ttest_1samp(per_seed, 0.0)
    assert d.method == PAIRED_T and d.p == pytest.approx(res.pvalue) and d.delta == pytest.approx(np.mean(per_seed))


def test_example_replicates_equal_a_slow_loop_with_the_same_draws():
    gold, var, ref = _pairs(seeds=2, n=80)
    reps = example_replicates("accuracy", var, ref, gold, 3, resamples=50, seed=11)
    idx = resample_indices(80, 50, np.random.default_rng(11))
    slow = [[metrics.accuracy(v[i].argmax(-1), gold[i]) - metrics.accuracy(r[i].argmax(-1), gold[i])
             for v, r in zip(var, ref, strict=True)] for i in idx]
    np.testing.assert_allclose(reps, slow, atol=1e-12)


def test_example_variance_removes_the_runs_noise_the_seeds_already_carry():
    # Two pairs whose replicates are independent noise of variance 1 each (no examples' own effect): the mean's
    # variance is 1/2 = W/n, and nothing is added. Perfectly correlated pairs (the examples' effect only): V = W.
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200_000, 2))
    assert example_variance(noise) == pytest.approx(0.0, abs=0.01)
    shared = np.repeat(rng.normal(size=(200_000, 1)), 3, axis=1)
    assert example_variance(shared) == pytest.approx(1.0, rel=0.01)
    # by hand: replicates [[1, 3], [3, 1], [2, 2]]: V = var of means (2, 2, 2) = 0, W = mean(1, 1) = 1 -> max(0, -1)
    assert example_variance(np.array([[1.0, 3.0], [3.0, 1.0], [2.0, 2.0]])) == 0.0


def test_generalise_adds_the_example_component_to_the_standard_error():
    gold, var, ref = _pairs()
    plain = matched_difference("macro_f1", var, ref, gold, 3)
    wide = matched_difference("macro_f1", var, ref, gold, 3, generalise=True, resamples=400, seed=3)
    e = example_variance(example_replicates("macro_f1", var, ref, gold, 3, resamples=400, seed=3))
    se = np.sqrt(plain.sd ** 2 / 4 + e)
    df = (plain.sd ** 2 / 4 + e) ** 2 / ((plain.sd ** 2 / 4) ** 2 / 3)
    assert wide.method == PAIRED_T_GENERALISED and wide.delta == plain.delta and wide.df == pytest.approx(df)
    assert wide.p == pytest.approx(2 * stats.t.sf(abs(wide.delta) / se, df))
    assert wide.high - wide.low == pytest.approx(2 * stats.t.ppf(0.975, df) * se)


def test_one_run_each_is_an_example_bootstrap_without_a_p_value():
    gold, var, ref = _pairs(seeds=1, n=200)
    d = matched_difference("accuracy", var, ref, gold, 3, resamples=500, seed=7)
    reps = example_replicates("accuracy", var, ref, gold, 3, resamples=500, seed=7)[:, 0]
    assert d.method == ONE_SEED and d.p is None and not d.significant and "evaluation-set sampling" in d.why
    assert (d.low, d.high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))


def test_identical_runs_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 50)
    runs = [rng.normal(size=(50, 3)) for _ in range(3)]
    for generalise in (False, True):
        d = matched_difference("macro_f1", runs, runs, gold, 3, generalise=generalise, resamples=200)
        assert (d.delta, d.low, d.high, d.p) == (0.0, 0.0, 0.0, 1.0)


def test_power_against_a_simulated_paired_t_and_the_seeds_needed():
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 1.0, size=(40_000, 6))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(6))
    simulated = np.mean(np.abs(t) > stats.t.ppf(1 - 0.01 / 2, 5))
    assert paired_t_power(0.5, 1.0, 6, 0.01) == pytest.approx(simulated, abs=0.01)
    n = seeds_needed(0.5, 1.0, 0.05)
    assert paired_t_power(0.5, 1.0, n, 0.05) >= 0.8 > paired_t_power(0.5, 1.0, n - 1, 0.05)
    assert n == 34  # the textbook figure for a standardised effect of 0.5 at 80% power, two-sided 5%
    assert seeds_needed(0.5, 1.0, 0.01) > n
    assert seeds_needed(0.0, 1.0, 0.05) is None and seeds_needed(0.5, None, 0.05) is None
    assert seeds_needed(0.001, 1.0, 0.05) is None  # more than the limit


def test_seeds_needed_for_large_effects_where_scipy_tails_are_nan():
    d = paired_t([0.020, 0.023])  # standardised effect 10: 3 seeds are plenty at any level used
    assert seeds_needed(d.delta, d.sd, 0.05) == 3 and seeds_needed(d.delta, d.sd, 0.025) == 3
    power = paired_t_power(d.delta, d.sd, np.arange(3, 50), 0.01)
    assert np.all(np.isfinite(power)) and np.all(np.diff(power) >= -1e-12)


def test_seeds_needed_under_generalise_respects_the_examples_floor():
    # se^2 = sd^2 / n + E never falls below E: a difference of 1.67 sqrt(E) cannot reach 80% at 5% by seeds alone
    assert seeds_needed(0.01, 0.01, 0.05, example_variance=0.006 ** 2) is None
    plain, wide = seeds_needed(0.02, 0.01, 0.05), seeds_needed(0.02, 0.01, 0.05, example_variance=0.006 ** 2)
    assert plain == 5 and wide > plain
    # against a simulation of the generalised statistic at that n: (mean of n draws + example noise) / its se
    rng = np.random.default_rng(2)
    n, e = wide, 0.006 ** 2
    d = rng.normal(0.02, 0.01, size=(40_000, n))
    shift = rng.normal(0, np.sqrt(e), size=40_000)
    seed_var = d.var(1, ddof=1) / n
    t = (d.mean(1) + shift) / np.sqrt(seed_var + e)
    df = (seed_var + e) ** 2 / (seed_var ** 2 / (n - 1))
    assert np.mean(np.abs(t) > stats.t.ppf(0.975, df)) == pytest.approx(
        float(paired_t_power(0.02, 0.01, n, 0.05, e)), abs=0.03)


def test_undefined_metrics_are_not_judged_and_do_not_unstar_the_others():
    d = paired_t([0.01, float("nan"), 0.02])
    assert d.p is None and "not numbers" in d.why
    assert holm([float("nan"), 0.001, 0.02]) == pytest.approx([float("nan"), 0.002, 0.02], nan_ok=True)


def test_the_generalised_test_is_never_surer_than_the_plain_one():
    for extra in (1e-6, 1e-5, 1e-4):
        plain, wide = paired_t([0.03, 0.05, 0.04]), paired_t([0.03, 0.05, 0.04], extra)
        assert wide.low <= plain.low and wide.high >= plain.high and wide.p >= plain.p


def test_welch_difference_against_scipy():
    v, r = [0.70, 0.72, 0.69, 0.71], [0.60, 0.66, 0.63]
    d = welch_difference(v, r)
    res = stats.ttest_ind(v, r, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert d.delta == pytest.approx(np.mean(v) - np.mean(r))
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high)) and d.p == pytest.approx(res.pvalue)
    assert welch_difference([0.7], r).p is None


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06; None is skipped
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


# ---------------------------------------------------------------- a planted effect, through run folders


N, LABELS = 600, ["negative", "neutral", "positive"]


def _run(root, variant, seed, logits, gold, teacher):
    folder = root / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    f1 = metrics.macro_f1(logits.argmax(-1), gold, 3)
    (folder / "run.json").write_text(json.dumps({"name": "exp", "seed": seed, "variant": variant}))
    (folder / "metrics.json").write_text(json.dumps({
        "name": "exp", "main_metric": "macro_f1",
        "teacher": {"dev": {"macro_f1": metrics.macro_f1(teacher.argmax(-1), gold, 3)}, "parameters": 10**8,
                    "majority_baseline": {"dev": metrics.macro_f1(np.zeros(N, int), gold, 3)}},
        "student": {"dev": {"macro_f1": f1}, "parameters": 10**7}, "ratios": {"encoder_compute": 0.3}}))
    ids = [f"dev-{i}" for i in range(N)]
    if variant == "shuffled":  # the same examples in another order: the report aligns them by id
        order = np.random.default_rng(seed).permutation(N)
        ids, logits = [ids[i] for i in order], logits[order]
        gold_out, teacher_out = gold[order], teacher[order]
    else:
        gold_out, teacher_out = gold, teacher
    write_predictions(folder, {"dev": SplitPredictions(ids, logits, gold_out, teacher_out)},
                      {"num_labels": 3, "labels": LABELS, "main_metric": "macro_f1"})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Three seeds each of a reference, a variant whose logits are shifted towards the gold class (truly better),
    a null variant (the reference's distribution, fresh noise) and the reference's own runs reordered."""
    root = tmp_path_factory.mktemp("planted") / "exp"
    rng = np.random.default_rng(2024)
    gold = rng.integers(0, 3, N)
    signal = np.eye(3)[gold]
    teacher = 3.0 * signal + rng.normal(size=(N, 3))
    for seed in (1, 2, 3):
        noise = np.random.default_rng(seed)
        ref = 1.0 * signal + noise.normal(size=(N, 3))
        _run(root, "full", seed, ref, gold, teacher)
        _run(root, "better", seed, ref + 0.8 * signal + 0.3 * noise.normal(size=(N, 3)), gold, teacher)
        _run(root, "null", seed, 1.0 * signal + noise.normal(size=(N, 3)), gold, teacher)
        _run(root, "shuffled", seed, ref, gold, teacher)
    (root / "sweep.json").write_text(json.dumps({"config": "x.yaml", "reference": "full", "runs": [
        {"variant": v, "seed": s, "settings": {}, "folder": f"{v}/seed{s}"}
        for v in ("full", "better", "null", "shuffled") for s in (1, 2, 3)]}))
    return root


def test_a_planted_effect_is_flagged_and_a_null_variant_is_not(planted):
    rep = build(planted, resamples=1000)
    better, null, same = (rep.row(n).diffs["dev macro_f1"] for n in ("better", "null", "shuffled"))
    assert better.method == PAIRED_T and better.seeds == 3
    assert better.delta > 0.05 and better.low > 0 and better.significant
    assert null.low < 0 < null.high and not null.significant
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)  # aligned by example id, not by row
    # Holm over the three comparisons: the adjusted p of the smallest is 3x its raw p (capped at 1)
    assert better.p_holm == pytest.approx(min(1.0, 3 * better.p))
    md = to_markdown(rep)
    assert "dev macro_f1: 1 of 3 differences from `full` are distinguishable from noise at 95%" in md
    assert "better +" in md and "| majority class |" in md
    teacher_iv = rep.teacher_intervals["dev macro_f1"]
    assert teacher_iv.method == "bootstrap over examples" and teacher_iv.low < rep.teacher["values"]["dev macro_f1"]


def test_variant_interval_is_a_t_interval_over_seeds_and_a_bootstrap_for_one_seed(planted, tmp_path):
    rep = build(planted, resamples=500)
    row = rep.row("full")
    iv = row.intervals["dev macro_f1"]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(row.values["dev macro_f1"]),
                              scale=stats.sem(row.values["dev macro_f1"]))
    assert iv.method == "t over seeds" and (iv.low, iv.high) == pytest.approx((lo, hi))
    import shutil

    one = tmp_path / "one"
    shutil.copytree(planted / "full" / "seed1", one / "full" / "seed1")
    shutil.copytree(planted / "better" / "seed2", one / "better" / "seed2")  # no matching seed: Welch not possible
    rep1 = build(one, reference="full", resamples=500)
    iv1 = rep1.row("full").intervals["dev macro_f1"]
    assert iv1.method == "bootstrap over examples" and iv1.low < iv1.mean < iv1.high
    assert rep1.row("better").diffs["dev macro_f1"].p is None
    assert any("one finished run" in w for w in rep1.warnings)


def test_report_files_carry_intervals_and_the_plot_is_made(planted, tmp_path):
    rep, paths = write_report(planted, tmp_path / "rep", resamples=300)
    summary = json.loads(paths["json"].read_text())
    d = summary["variants"]["better"]["differences"]["dev macro_f1"]
    assert d["significant"] and d["method"] == PAIRED_T and math.isclose(
        d["delta"], rep.row("better").diffs["dev macro_f1"].delta)
    assert summary["variants"]["full"]["seeds"] == [1, 2, 3]
    assert paths["ablation_plot"].read_bytes()[:4] == b"\x89PNG"
    csv_text = paths["csv"].read_text()
    assert "dev macro_f1 p_holm" in csv_text.splitlines()[0]


def test_tensorboard_hparams_row_per_variant_carries_the_interval(planted, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rep, paths = write_report(planted, tmp_path / "rep", plots=False, resamples=300)
    acc = EventAccumulator(str(paths["tensorboard"] / "better"))
    acc.Reload()
    got = {tag: acc.Scalars(tag)[0].value for tag in acc.Tags()["scalars"]}
    iv, d = rep.row("better").intervals["dev macro_f1"], rep.row("better").diffs["dev macro_f1"]
    assert got["hparam/student_dev_macro_f1"] == pytest.approx(iv.mean, abs=1e-6)  # the runs' own tag: one column
    assert got["hparam/student_dev_macro_f1_ci_low"] == pytest.approx(iv.low, abs=1e-6)
    assert got["hparam/student_dev_macro_f1_ci_high"] == pytest.approx(iv.high, abs=1e-6)
    assert got["hparam/student_dev_macro_f1_delta_low"] == pytest.approx(d.low, abs=1e-6)
    files = len(list((paths["tensorboard"] / "better").glob("events.*")))
    write_report(planted, tmp_path / "rep", plots=False, resamples=300)  # a second report replaces the rows
    assert len(list((paths["tensorboard"] / "better").glob("events.*"))) == files


def test_report_command_takes_the_resamples_and_refuses_too_few(planted, tmp_path, capsys):
    from distill.lab.cli import main

    assert main(["report", str(planted), "--out", str(tmp_path / "r"), "--no-plots", "--resamples", "200"]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["resamples"] == 200
    assert main(["report", str(planted), "--resamples", "10"]) == 2
    assert "--resamples 10: expected at least 100" in capsys.readouterr().err


def test_undecided_differences_say_how_many_seeds_they_would_need(planted):
    rep = build(planted, resamples=300)
    null = rep.row("null").diffs["dev macro_f1"]
    assert not null.significant and null.needed_alpha == pytest.approx(0.05 / 3)
    assert null.seeds_needed == seeds_needed(null.delta, null.sd, 0.05 / 3)
    better = rep.row("better").diffs["dev macro_f1"]
    assert better.seeds_needed is None  # found already
    line = next(v for v in to_markdown(rep).splitlines() if v.startswith("**dev macro_f1"))
    assert "80% power at α = 0.0167 (Holm's strictest level for 3 comparisons)" in line
    want = null.seeds_needed if null.seeds_needed is not None else "more than 1000"
    assert f"null {want}" in line


def test_fewer_than_three_seeds_judge_nothing_and_say_why(planted, tmp_path):
    import shutil

    two = tmp_path / "two"
    for variant in ("full", "better"):
        for seed in (1, 2):
            shutil.copytree(planted / variant / f"seed{seed}", two / variant / f"seed{seed}")
    rep = build(two, reference="full", resamples=300)
    d = rep.row("better").diffs["dev macro_f1"]
    assert d.method == PAIRED_T and d.p is None and not d.significant and d.low is not None
    md = to_markdown(rep)
    assert "dev macro_f1: no difference from `full` can be judged" in md and "] *" not in md
    assert "better: 2 matched seeds" in md

    one = tmp_path / "one"
    shutil.copytree(planted / "full" / "seed1", one / "full" / "seed1")
    shutil.copytree(planted / "better" / "seed1", one / "better" / "seed1")
    rep1 = build(one, reference="full", resamples=300)
    d1 = rep1.row("better").diffs["dev macro_f1"]
    assert d1.method == ONE_SEED and d1.p is None and d1.low < d1.delta < d1.high
    md1 = to_markdown(rep1)
    assert "] (b) |" in md1 and "evaluation-set sampling only, not seed variance" in md1 and "] *" not in md1


def test_one_matched_seed_is_an_example_bootstrap_of_that_pair(planted, tmp_path):
    import shutil

    root = tmp_path / "one-matched"
    for seed in (1, 2, 3):
        shutil.copytree(planted / "full" / f"seed{seed}", root / "full" / f"seed{seed}")
    shutil.copytree(planted / "better" / "seed2", root / "better" / "seed2")
    d = build(root, reference="full", resamples=300).row("better").diffs["dev macro_f1"]
    assert d.method == ONE_SEED and d.p is None and d.why.startswith("one matched seed: ")
    full2 = json.loads((root / "full/seed2/metrics.json").read_text())["student"]["dev"]["macro_f1"]
    better2 = json.loads((root / "better/seed2/metrics.json").read_text())["student"]["dev"]["macro_f1"]
    assert d.delta == pytest.approx(better2 - full2)


def test_generalise_without_predictions_says_it_fell_back(planted, tmp_path):
    import shutil

    root = tmp_path / "no-preds"
    shutil.copytree(planted, root)
    for f in root.rglob("predictions.safetensors"):
        f.unlink()
    rep = build(root, resamples=300, generalise=True)
    assert rep.row("better").diffs["dev macro_f1"].method == PAIRED_T
    assert any("`better` (dev macro_f1): no per-example predictions, so --generalise could not add" in w
               for w in rep.warnings)


def test_report_generalise_flag_adds_the_example_component(planted, tmp_path):
    from distill.lab.cli import main

    assert main(["report", str(planted), "--out", str(tmp_path / "g"), "--no-plots", "--resamples", "300",
                 "--generalise"]) == 0
    summary = json.loads((tmp_path / "g" / "report.json").read_text())
    assert summary["generalise"] is True
    g = summary["variants"]["null"]["differences"]["dev macro_f1"]
    plain = build(planted, resamples=300).row("null").diffs["dev macro_f1"]
    assert g["method"] == PAIRED_T_GENERALISED and g["delta"] == pytest.approx(plain.delta)
    # A larger standard error; the interval itself may be the narrower one, since the examples' share is
    # estimated from 600 examples (more degrees of freedom than 3 seeds give).
    se = (g["high"] - g["low"]) / 2 / stats.t.ppf(0.975, g["df"])
    assert se > plain.sd / np.sqrt(3) and g["df"] > plain.df == 2
    assert "examples' own share of the variance" in summary["method"]
