import math

import numpy as np
import pytest

from distill import metrics

from .helpers import raises_with


def onehot_logits(pred, k):
    out = np.zeros((len(pred), k))
    out[np.arange(len(pred)), pred] = 1.0
    return out


def test_binary_metrics_by_hand():
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    tp, fp, fn, tn = 3, 1, 1, 3
    got = metrics.compute(("accuracy", "f1", "mcc", "macro_f1"), onehot_logits(pred, 2), gold, 2)
    assert got["accuracy"] == pytest.approx(6 / 8)
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert got["mcc"] == pytest.approx(mcc)
    f1_neg = 2 * tn / (2 * tn + fn + fp)
    assert got["macro_f1"] == pytest.approx((got["f1"] + f1_neg) / 2)


def test_macro_f1_three_classes_with_an_absent_prediction():
    gold = np.array([0, 1, 2, 2])
    pred = np.array([0, 0, 2, 2])
    got = metrics.compute(("macro_f1",), onehot_logits(pred, 3), gold, 3)
    f1_0 = 2 * 1 / (2 * 1 + 1 + 0)
    f1_1 = 0.0
    f1_2 = 1.0
    assert got["macro_f1"] == pytest.approx((f1_0 + f1_1 + f1_2) / 3)


def test_regression_correlations():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([[1.0], [3.0], [2.0], [5.0]])
    got = metrics.compute(("pearson", "spearman"), pred, gold, 1)
    p, g = pred[:, 0], gold
    dp, dg = p - p.mean(), g - g.mean()
    pearson = (dp * dg).sum() / math.sqrt((dp**2).sum() * (dg**2).sum())
    assert got["pearson"] == pytest.approx(pearson)
    # ranks pred: 1,3,2,4 vs 1,2,3,4 -> d^2 = 0+1+1+0 -> 1 - 6*2/(4*15)
    assert got["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))


def test_unknown_metric_is_an_error():
    with raises_with(ValueError, "unknown classification metric", "'auc'", "'accuracy'"):
        metrics.compute(("auc",), onehot_logits(np.array([0]), 2), np.array([0]), 2)


def test_degenerate_cases_keep_the_stated_conventions():
    gold = np.array([0, 1, 1, 0])
    one_class = onehot_logits(np.array([1, 1, 1, 1]), 2)
    got = metrics.compute(("mcc", "f1", "macro_f1", "accuracy"), one_class, gold, 2)
    assert got["mcc"] == 0.0  # denominator 0: one class predicted
    assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 0))
    assert got["macro_f1"] == pytest.approx(got["f1"] / 2)  # class 0 never predicted: F1 0
    assert metrics.compute(("mcc",), one_class, np.ones(4, int), 2)["mcc"] == 0.0  # one label in both
    # Class 1 neither predicted nor gold: F1 0 (not 1, not nan), and counted in the macro mean.
    none = metrics.compute(("f1", "macro_f1"), onehot_logits(np.array([0, 2]), 3), np.array([0, 2]), 3)
    assert none == {"f1": 0.0, "macro_f1": pytest.approx(2 / 3)}


def test_multiclass_mcc_is_gorodkins():
    gold = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    c = np.zeros((3, 3))
    np.add.at(c, (gold, pred), 1)
    t, p, s = c.sum(1), c.sum(0), c.sum()
    want = (np.trace(c) * s - t @ p) / math.sqrt((s * s - p @ p) * (s * s - t @ t))
    assert metrics.compute(("mcc",), onehot_logits(pred, 3), gold, 3)["mcc"] == pytest.approx(want, rel=1e-12)
