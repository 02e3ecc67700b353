"""From a QA model's start and end logits over the windows of `qa_windows` to answer texts: the best span of each
example over all its windows, the no-answer decision of SQuAD v2.0, and the no-answer threshold chosen on dev.

As Hugging Face's question-answering `utils_qa.postprocess_qa_predictions` and BERT's run_squad.py
(`write_predictions`): n-best start and end tokens per window, scores start + end logit, the null score the
smallest [CLS] start + end over the windows. BERT's script also drops a start token whose window is not its
"max context" window (the one where it has the most tokens around it); HF's does not, nor does this one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distill.labels import DataError
from distill.qa_windows import NOT_CONTEXT, QAFeatures
from distill.squad_metric import f1, gold_answers
from distill.tasks import Example


@dataclass
class Prediction:
    id: str
    text: str  # the best span's characters of the context; "" when no span qualifies
    score: float  # its start + end logit; -inf when no span qualifies
    null_score: float  # the smallest [CLS] start + end logit over the example's windows


def best_spans(features: QAFeatures, start_logits: list[np.ndarray], end_logits: list[np.ndarray],
               examples: list[Example], n_best: int = 20, max_answer_length: int = 30) -> list[Prediction]:
    """One Prediction per example, in example order. Window i's logits have its length (no padding). Candidates in
    each window: the `n_best` highest start and the `n_best` highest end tokens (ties: the earlier token) that are
    context tokens (the top `n_best` are taken over all tokens and then filtered, as HF and BERT do), with
    end >= start and at most `max_answer_length` tokens; the best start + end over all the example's windows wins
    (ties: the earlier window, then the higher-ranked start)."""
    n = len(features)
    if len(start_logits) != n or len(end_logits) != n:
        raise DataError(f"best_spans: {n} windows but {len(start_logits)} start and {len(end_logits)} end logit "
                        "arrays; expected one of each per window")
    best: list[tuple[float, str] | None] = [None] * len(examples)
    null: list[float] = [math.inf] * len(examples)
    seen = [False] * len(examples)
    for i in range(n):
        k = features.example[i]
        if not 0 <= k < len(examples):
            raise DataError(f"best_spans: window {i} comes from example {k}, but {len(examples)} examples were given")
        spans = features.context_spans[i]
        starts = np.asarray(start_logits[i], dtype=np.float64).reshape(-1)
        ends = np.asarray(end_logits[i], dtype=np.float64).reshape(-1)
        if len(starts) != len(spans) or len(ends) != len(spans):
            raise DataError(f"best_spans: window {i} has {len(spans)} tokens but {len(starts)} start and {len(ends)} "
                            "end logits; expected one per token, without padding")
        # The official scripts take the smallest null score over the windows (BERT run_squad's `score_null`, HF's
        # `min_null_prediction`): the window least sure that there is no answer.
        null[k] = min(null[k], float(starts[0] + ends[0]))
        seen[k] = True
        context = _context(examples[k], i)
        top_ends = _top(ends, n_best)
        for s in _top(starts, n_best):
            if spans[s] == NOT_CONTEXT:
                continue
            for e in top_ends:
                if spans[e] == NOT_CONTEXT or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if best[k] is None or score > best[k][0]:
                    best[k] = (score, context[spans[s][0]:spans[e][1]])
    out = []
    for k, ex in enumerate(examples):
        if not seen[k]:
            raise DataError(f"best_spans: example {k} ({ex.id!r}) has no window; expected the features encoded "
                            "from these examples")
        score, text = best[k] if best[k] is not None else (-math.inf, "")
        out.append(Prediction(ex.id, text, score, null[k]))
    return out


def _context(ex: Example, window: int) -> str:
    if ex.text_b is None:
        raise DataError(f"best_spans: window {window} comes from example {ex.id!r}, which has no context (text_b)")
    return ex.text_b


def _top(logits: np.ndarray, n: int) -> list[int]:
    # A stable sort on the negated logits: equal logits keep token order, so ties go to the earlier token (np.argsort's
    # default quicksort, used by HF, leaves their order unspecified).
    return np.argsort(-logits, kind="stable")[:n].tolist()


def answer(pred: Prediction, null_threshold: float | None) -> str:
    """The predicted answer text. SQuAD v1.1 (`null_threshold` None): the best span. v2.0: "" (no answer) when
    null_score - score > null_threshold, else the span (BERT run_squad's `null_score_diff_threshold`, 0.0 there by
    default; HF's `null_score_diff_threshold`)."""
    if null_threshold is None:
        return pred.text
    return "" if pred.null_score - pred.score > null_threshold else pred.text


def choose_null_threshold(preds: list[Prediction], golds: dict[str, list[str]]) -> float:
    """The `null_threshold` for `answer` that maximises the official F1 over the questions of `golds` (a question
    with no answer has [""]), as the official SQuAD v2.0 script's `find_best_thresh` with na_prob = null_score -
    score.

    The candidates are -inf (every question answered ""; the official script reports 0.0 there, its na_prob being
    a probability) and each observed null_score - score (the largest one answers every question); any threshold up
    to the next observed difference scores the same, and the observed one is returned. Ties go to the smallest
    threshold reaching the best F1, which is what the official script does: it walks the questions by increasing
    na_prob from "all null" and moves only on a strict gain. Unlike it, questions with EQUAL differences switch
    together (a threshold cannot separate them; the official script may stop inside such a group and report a
    threshold that scores differently). Predictions for questions not in `golds` are ignored."""
    by_id = {p.id: p for p in preds}
    missing = [qid for qid in golds if qid not in by_id]
    if missing:
        raise DataError(f"choose_null_threshold: no prediction for {len(missing)} of {len(golds)} questions, first: "
                        f"{missing[:5]}")
    if not golds:
        raise DataError("choose_null_threshold: no dev questions")
    # Per question: its F1 when answered "" and its gain when answered with its span instead.
    rows = []
    total = 0.0
    for qid, answers in golds.items():
        answers = gold_answers(answers)
        p = by_id[qid]
        as_null = max(f1("", g) for g in answers)
        total += as_null
        rows.append((p.null_score - p.score, max(f1(p.text, g) for g in answers) - as_null))
    rows.sort(key=lambda r: r[0])
    best_total, best_threshold = total, -math.inf
    for j, (diff, gain) in enumerate(rows):
        total += gain
        # With threshold `diff`, every question whose difference is <= diff is answered: decide after the last one.
        # F1s are float sums, so a gain below 1e-12 is a tie.
        if (j + 1 == len(rows) or rows[j + 1][0] != diff) and total > best_total + 1e-12:
            best_total, best_threshold = total, diff
    return best_threshold
