"""The report's statistics against scipy, hand computations and slow reference loops, and a planted effect:
a variant that is truly better is flagged, a null variant is not."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from distill import metrics
from distill.lab.report import build, to_markdown, write_report
from distill.lab.uncertainty import (
    bootstrap_interval,
    bootstrap_p,
    confusions,
    holm,
    metric_replicates,
    paired_bootstrap,
    percentile_interval,
    resample_indices,
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


def test_bootstrap_p_and_percentile_interval_by_hand():
    # 1 of 4 replicates <= 0, 3 >= 0: min((1 + 1) / 5, (3 + 1) / 5) = 0.4, two-sided 0.8
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)
    assert bootstrap_p(np.ones(999)) == pytest.approx(2 / 1000)  # never 0: the +1 of an exact test
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_paired_bootstrap_equals_a_slow_two_level_loop():
    rng = np.random.default_rng(5)
    n, seeds, b = 80, 3, 300
    gold = rng.integers(0, 2, n)
    ref = [rng.normal(size=(n, 2)) + np.eye(2)[gold] for _ in range(seeds)]
    var = [r + 0.3 * np.eye(2)[gold] + rng.normal(scale=0.5, size=(n, 2)) for r in ref]
    d = paired_bootstrap("accuracy", var, ref, gold, 2, resamples=b, seed=11)
    draw = np.random.default_rng(11)
    idx = resample_indices(n, b, draw)
    seed_draw = draw.integers(0, seeds, size=(b, seeds))
    slow = []
    for i, s in zip(idx, seed_draw, strict=True):
        slow.append(np.mean([metrics.accuracy(var[j][i].argmax(-1), gold[i]) -
                             metrics.accuracy(ref[j][i].argmax(-1), gold[i]) for j in s]))
    assert (d.low, d.high) == pytest.approx(tuple(np.quantile(slow, [0.025, 0.975])))
    assert d.p == pytest.approx(bootstrap_p(np.array(slow)))
    point = np.mean([metrics.accuracy(v.argmax(-1), gold) - metrics.accuracy(r.argmax(-1), gold)
                     for v, r in zip(var, ref, strict=True)])
    assert d.delta == pytest.approx(point) and d.seeds == seeds


def test_identical_runs_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 50)
    runs = [rng.normal(size=(50, 3)) for _ in range(2)]
    d = paired_bootstrap("macro_f1", runs, runs, gold, 3, resamples=200)
    assert (d.delta, d.low, d.high, d.p) == (0.0, 0.0, 0.0, 1.0)


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
    assert better.method == "paired bootstrap" and better.seeds == 3
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
    assert d["significant"] and d["method"] == "paired bootstrap" and math.isclose(
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
