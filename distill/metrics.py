"""Task metrics: each GLUE task's official metric, macro-F1 and accuracy for the tweets, from the libraries the
field reports them with: scikit-learn (accuracy, F1, Matthews correlation) and scipy (Pearson, Spearman).

Degenerate cases keep one convention throughout (and `distill.lab.uncertainty`'s confusion-matrix path for
bootstrap replicates follows it, tested equal): a class with no true positive has F1 0, also when it is neither
predicted nor gold (scikit-learn's `zero_division=0`), and the Matthews correlation is 0 when its denominator is
(one class predicted, or one class in the gold labels), as scikit-learn defines it."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(skm.accuracy_score(gold, pred))


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Binary F1 of the positive class 1 (MRPC, QQP)."""
    # `labels=[1]` rather than `average="binary"`: the same number, and a split where class 1 never occurs (or a
    # third class does) is scored instead of refused.
    return float(skm.f1_score(gold, pred, labels=[1], average=None, zero_division=0)[0])


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of every class's F1, classes absent from both `pred` and `gold` included (as 0)."""
    return float(skm.f1_score(gold, pred, labels=list(range(num_labels)), average="macro", zero_division=0))


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004; equals the binary formula for 2 classes)."""
    with warnings.catch_warnings():
        # One label in both: scikit-learn warns about the confusion matrix's shape, then returns 0 as it should.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        return float(skm.matthews_corrcoef(gold, pred))


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
             "macro_f1": lambda: macro_f1(pred, gold, num_labels), "mcc": lambda: mcc(pred, gold)}
    for name in names:
        if name not in table:
            raise ValueError(f"unknown classification metric {name!r}; known: {sorted(table)}")
        out[name] = table[name]()
    return out


def sentences(rows: np.ndarray, example: np.ndarray) -> list[np.ndarray]:
    """Per-word rows (a token classifier's, in any example order, each example's words in order) grouped into
    their sentences, in example order."""
    order = np.argsort(example, kind="stable")
    cuts = np.flatnonzero(np.diff(example[order])) + 1
    return np.split(rows[order], cuts)


def tag_counts(metric: str, logits: np.ndarray, gold: np.ndarray, offsets: np.ndarray, labels: list[str]
               ) -> np.ndarray:
    """Per sentence (example i owns rows offsets[i]:offsets[i + 1]) the counts that `metric` sums: (words right,
    words, words) for token accuracy, (entities right, predicted, gold) for the entity scores. A bootstrap over
    sentences recomputes the micro metric exactly from the resampled rows' sums."""
    from distill.tag_metrics import sentence_counts, tag_scheme

    example = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    pred = [[labels[i] for i in s] for s in sentences(logits.argmax(-1), example)]
    true = [[labels[i] for i in s] for s in sentences(gold.astype(np.int64), example)]
    return sentence_counts(pred, true, None if metric == "token_accuracy" else tag_scheme(labels))


def compute_task(task, logits: np.ndarray, gold: np.ndarray, example: np.ndarray) -> dict[str, float]:
    """A task's metrics from its logits rows: one per example, or for token classification one per word, `example`
    giving each row's example (words of an example in order). Rows whose gold is -100 (a word whose tag is
    unknown) are not scored."""
    if task.type != "token_classification":
        return compute(task.metrics, logits, gold, task.num_labels)
    from distill.tag_metrics import entity_scores, token_accuracy

    names = task.labels
    pred = [[names[i] for i in s] for s in sentences(logits.argmax(-1), example)]
    true = [[names[i] if i >= 0 else None for i in s] for s in sentences(gold.astype(np.int64), example)]
    pred = [[p for p, t in zip(ps, ts, strict=True) if t is not None] for ps, ts in zip(pred, true, strict=True)]
    true = [[t for t in ts if t is not None] for ts in true]
    out = {"token_accuracy": token_accuracy(pred, true)}
    if task.scheme is not None:
        out.update(entity_scores(pred, true, task.scheme))
    return {name: out[name] for name in task.metrics}
