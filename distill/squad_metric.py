"""The official SQuAD evaluation: exact match and token F1 of normalised answers, the best over a question's gold
answers, averaged in percent, with the v2.0 script's HasAns/NoAns breakdown.

Written after the official `evaluate-v2.0.py` (https://rajpurkar.github.io/SQuAD-explorer/), whose rules this
follows where v1.1's script differs: an empty side scores F1 1 only against another empty side, and gold answers
that normalise to nothing are dropped (a question left with none is scored against [""], the no-answer)."""

from __future__ import annotations

import re
import string
from collections import Counter

from distill.labels import DataError

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the as whole words, collapse whitespace."""
    # The official order: punctuation goes before articles, so "the-cat" -> "thecat" keeps its "the".
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def f1(pred: str, gold: str) -> float:
    """Token F1 of the normalised answers; when either is empty, 1 if both are (a correct no-answer) else 0."""
    pred_toks = normalize_answer(pred).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def gold_answers(golds: list[str]) -> list[str]:
    """The answers a prediction is scored against: those that normalise to something, else [""] (no answer)."""
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def per_question(preds: dict[str, str], golds: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    """Per question (in the order of `golds`), (exact match 0/1, F1 0..1), each the best over its gold answers.
    Predictions for questions not in `golds` are ignored, as the official script does; a missing one is an error."""
    _check_complete(preds, golds)
    out = {}
    for qid, answers in golds.items():
        answers = gold_answers(answers)
        pred = preds[qid]
        out[qid] = (max(exact(pred, g) for g in answers), max(f1(pred, g) for g in answers))
    return out


def squad_scores(preds: dict[str, str], golds: dict[str, list[str]],
                 has_answer: dict[str, bool] | None = None) -> dict[str, float]:
    """`exact_match` and `f1` in percent over the questions of `golds`. With `has_answer` (SQuAD v2.0), also the
    official script's `HasAns_*` / `NoAns_*` keys, each group's present only when it has questions (as there)."""
    if not golds:
        raise DataError("squad_scores: no gold questions to score")
    scores = per_question(preds, golds)
    out = _mean(scores, list(golds))
    out = {"exact_match": out["exact"], "f1": out["f1"]}
    if has_answer is None:
        return out
    missing = [qid for qid in golds if qid not in has_answer]
    if missing:
        raise DataError(f"squad_scores: has_answer lacks {len(missing)} of {len(golds)} questions, first: "
                        f"{missing[:5]}")
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid in golds if has_answer[qid] == want]
        if ids:
            group = _mean(scores, ids)
            out.update({f"{prefix}_exact": group["exact"], f"{prefix}_f1": group["f1"],
                        f"{prefix}_total": float(len(ids))})
    return out


def _mean(scores: dict[str, tuple[float, float]], ids: list[str]) -> dict[str, float]:
    return {"exact": 100.0 * sum(scores[q][0] for q in ids) / len(ids),
            "f1": 100.0 * sum(scores[q][1] for q in ids) / len(ids)}


def _check_complete(preds: dict[str, str], golds: dict[str, list[str]]) -> None:
    # The official scripts go on without it (v1.1 scores it 0, v2.0 leaves it out of the average), which silently
    # changes the result; here it is an error.
    missing = [qid for qid in golds if qid not in preds]
    if missing:
        raise DataError(f"no prediction for {len(missing)} of {len(golds)} questions, first: {missing[:5]}")
