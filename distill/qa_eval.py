"""Extractive QA judged as SQuAD is: every window's start and end scores -> each question's best answer
(`qa_answers`), for v2.0 the no-answer threshold chosen on dev (and carried to test), then the official exact
match and F1 in percent (`squad_metric`), also per question for the report's paired comparisons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distill.qa_answers import answer, best_spans, choose_null_threshold
from distill.qa_windows import QAFeatures
from distill.squad_metric import per_question, squad_scores
from distill.tasks import TaskData

# The official v2.0 script's keys -> distillery's metric names (`f1` is the binary F1 of sentence tasks).
NAMES = {"exact_match": "exact_match", "f1": "squad_f1", "HasAns_exact": "has_ans_exact", "HasAns_f1": "has_ans_f1",
         "NoAns_exact": "no_ans_exact", "NoAns_f1": "no_ans_f1"}


@dataclass
class QAOutcome:
    """One split's answers: per question (in the split's order) its id, answer, exact match and F1 (0..1), whether
    it has a gold answer; and the null threshold used (None for v1.1)."""

    ids: list[str]
    answers: list[str]
    per_question: np.ndarray  # (questions, 2): exact match, F1
    has_answer: np.ndarray  # bool per question
    threshold: float | None
    scores: dict[str, float]


def window_features(ds) -> QAFeatures:
    """The windows' questions and character spans of an encoded QA split (`EncodedDataset` with `qa`)."""
    spans = [[tuple(pair) for pair in ds.spans.row(i).reshape(-1, 2).tolist()] for i in range(len(ds))]
    return QAFeatures(context_spans=spans, example=ds.windows.tolist())


def qa_outcome(task: TaskData, ds, starts: list[np.ndarray], ends: list[np.ndarray],
               threshold: float | None = None) -> QAOutcome:
    """The split's answers from its windows' scores (window i of `ds`: starts[i], ends[i], unpadded). SQuAD v2.0:
    `threshold` (the one chosen on dev), or chosen here on this split's own answers when None."""
    examples = list(ds.source())
    settings = task.qa
    preds = best_spans(window_features(ds), starts, ends, examples, settings.n_best, settings.max_answer_length)
    golds = {ex.id: [text for text, _ in ex.answers or ()] for ex in examples}
    v2 = settings.version == "2.0"
    if v2 and threshold is None:
        threshold = choose_null_threshold(preds, golds)
    answers = {p.id: answer(p, threshold if v2 else None) for p in preds}
    has = {ex.id: bool(ex.answers) for ex in examples}
    official = squad_scores(answers, golds, has if v2 else None)
    scores = {NAMES[k]: v for k, v in official.items() if k in NAMES}
    each = per_question(answers, golds)
    ids = [ex.id for ex in examples]
    return QAOutcome(ids, [answers[i] for i in ids], np.array([each[i] for i in ids], dtype=np.float64),
                     np.array([has[i] for i in ids]), threshold if v2 else None,
                     {name: scores[name] for name in task.metrics if name in scores})


def question_counts(metric: str, per_question: np.ndarray, has_answer: np.ndarray) -> np.ndarray:
    """Per question the counts whose sums give `metric` (in percent) over a resample of questions: (100 x score,
    1, 1), or for the HasAns / NoAns metrics (100 x score, 1, 1) on the group's questions and zeros elsewhere."""
    column = 0 if metric.endswith("exact") or metric == "exact_match" else 1
    member = np.ones(len(per_question)) if not metric.startswith(("has_ans", "no_ans")) else \
        (has_answer if metric.startswith("has_ans") else ~has_answer).astype(np.float64)
    return np.stack([100.0 * per_question[:, column] * member, member, member], axis=1)
