"""Task metrics: each GLUE task's official metric, macro-F1 and accuracy for the tweets."""

from __future__ import annotations

import numpy as np
from scipy import stats


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean())


def _f1_for(pred: np.ndarray, gold: np.ndarray, cls: int) -> float:
    tp = float(((pred == cls) & (gold == cls)).sum())
    fp = float(((pred == cls) & (gold != cls)).sum())
    fn = float(((pred != cls) & (gold == cls)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Binary F1 of the positive class 1 (MRPC, QQP)."""
    return _f1_for(pred, gold, 1)


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    return float(np.mean([_f1_for(pred, gold, c) for c in range(num_labels)]))


def mcc(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004; equals the binary formula for 2 classes)."""
    c = np.zeros((num_labels, num_labels), dtype=np.float64)
    np.add.at(c, (gold, pred), 1)
    t, p, s = c.sum(1), c.sum(0), c.sum()
    cov = np.trace(c) * s - t @ p
    denom = np.sqrt(s * s - p @ p) * np.sqrt(s * s - t @ t)
    return 0.0 if denom == 0 else float(cov / denom)


def compute(names: tuple[str, ...], logits: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, float]:
    """Metrics by name from raw logits (regression: one output column)."""
    out: dict[str, float] = {}
    if num_labels == 1:
        pred_f = logits.reshape(-1).astype(np.float64)
        gold_f = gold.astype(np.float64)
        for name in names:
            if name == "pearson":
                out[name] = float(stats.pearsonr(pred_f, gold_f)[0])
            elif name == "spearman":
                out[name] = float(stats.spearmanr(pred_f, gold_f)[0])
            else:
                raise ValueError(f"metric {name!r} does not apply to a regression task")
        return out
    pred = logits.argmax(-1)
    gold = gold.astype(np.int64)
    table = {"accuracy": lambda: accuracy(pred, gold), "f1": lambda: f1(pred, gold),
             "macro_f1": lambda: macro_f1(pred, gold, num_labels), "mcc": lambda: mcc(pred, gold, num_labels)}
    for name in names:
        if name not in table:
            raise ValueError(f"unknown classification metric {name!r}; known: {sorted(table)}")
        out[name] = table[name]()
    return out
