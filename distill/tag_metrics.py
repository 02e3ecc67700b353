"""Scores of token classification (NER, POS tagging): which tag scheme a tag set follows, token accuracy, entity
precision/recall/F1, per-sentence counts for a bootstrap, and the most-frequent-tag baseline.

Entities are read with seqeval's default mode, the one its documentation calls compatible with conlleval (the
CoNLL-2000/2003 evaluation script that published NER scores come from): an entity starts at a B- or S- tag, and also
at an I- or E- tag that follows O or a tag of another type. So IOB1 data (CoNLL-2003's original files, where I- opens
an entity and B- only separates two adjacent entities of one type) and a model's ill-formed output (O I-PER) are
scored as conlleval scores them. seqeval's strict mode (`mode="strict"` with an IOB2 or IOBES scheme) would instead
drop every entity that is not well formed in that scheme; no published CoNLL-2003 score counts that way, so it is
not used, for BIO nor for BIOES (conlleval reads E- and S- tags too, and seqeval's default mode copies its rules)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

# Tag prefixes of the entity schemes; a tag is "<prefix><type>", the type non-empty, besides the outside tag "O".
BIO_PREFIXES = ("B-", "I-")
BIOES_PREFIXES = ("B-", "I-", "E-", "S-")


def tag_scheme(tags: list[str]) -> str | None:
    """"BIOES" when every tag besides "O" is B-/I-/E-/S- followed by a type and some are E- or S- (IOE tag sets
    land here too: their decoding is the same); "BIO" when every one is B-/I- followed by a type; None for plain
    tags (POS) or a tag set with no prefixed tag at all.

    IOB2 and IOB1 share one tag set (IOB1 only uses B- less), so a tag set cannot tell them apart and both are
    "BIO": the conlleval decoding used for every scheme (see the module's docstring) reads both."""
    named = [t for t in tags if t != "O"]
    if not named or not all(t[:2] in BIOES_PREFIXES and len(t) > 2 for t in named):
        return None
    if any(t[:2] in ("E-", "S-") for t in named):
        return "BIOES"
    return "BIO"


def tag_metrics(scheme: str | None) -> tuple[str, ...]:
    """The metric names a token classification task reports, the first selecting checkpoints."""
    return ("entity_f1", "token_accuracy") if scheme is not None else ("token_accuracy",)


def _check(pred: list[list[str]], gold: list[list[str]]) -> None:
    # A length mismatch is a bug in the code that made the predictions, not in the data: scoring it would compare
    # tags of different words.
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predicted sentences for {len(gold)} gold ones")
    for i, (p, g) in enumerate(zip(pred, gold, strict=True)):
        if len(p) != len(g):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(g)} words")


def _entity_scheme(scheme: str | None) -> None:
    if scheme not in ("BIO", "BIOES"):
        raise ValueError(f"entity scores need an entity tag scheme (BIO or BIOES), not {scheme!r}")


def token_accuracy(pred: list[list[str]], gold: list[list[str]]) -> float:
    """The fraction of words whose predicted tag is the gold one, over all words of all sentences."""
    _check(pred, gold)
    total = sum(len(g) for g in gold)
    if total == 0:
        raise ValueError("no words to score")
    return sum(p == g for ps, gs in zip(pred, gold, strict=True) for p, g in zip(ps, gs, strict=True)) / total


def entity_scores(pred: list[list[str]], gold: list[list[str]], scheme: str | None) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over all entity types, as conlleval and seqeval's defaults
    compute them: an entity counts as right only with its type and both boundaries right. A score whose
    denominator is 0 (no predicted or no gold entity) is 0, as in conlleval."""
    _check(pred, gold)
    _entity_scheme(scheme)
    # seqeval takes (gold, predicted); zero_division=0 gives conlleval's 0 without seqeval's warning.
    return {"entity_f1": float(f1_score(gold, pred, zero_division=0)),
            "entity_precision": float(precision_score(gold, pred, zero_division=0)),
            "entity_recall": float(recall_score(gold, pred, zero_division=0))}


def sentence_counts(pred: list[list[str]], gold: list[list[str]], scheme: str | None) -> np.ndarray:
    """Per sentence, shape (sentences, 3): with an entity scheme (entities right, entities predicted, gold
    entities); for plain tags (words tagged right, words, words). Micro scores are sums over sentences, so a
    bootstrap that resamples sentences recomputes its F1 exactly with `f1_from_counts` of the resampled rows
    (for plain tags that F1 is the token accuracy)."""
    _check(pred, gold)
    rows = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (p, g) in enumerate(zip(pred, gold, strict=True)):
        if scheme is None:
            rows[i] = (sum(a == b for a, b in zip(p, g, strict=True)), len(g), len(g))
        else:
            _entity_scheme(scheme)
            # An entity is (type, first word, last word); within one sentence each is unique, so sets count them.
            ep, eg = set(get_entities(p)), set(get_entities(g))
            rows[i] = (len(ep & eg), len(ep), len(eg))
    return rows


def f1_from_counts(counts: np.ndarray) -> float:
    """Micro F1 of summed `sentence_counts` rows, with seqeval's arithmetic (precision and recall first, 0 for a
    zero denominator), so that it equals `entity_scores`' F1 on the same sentences."""
    right, predicted, gold = (int(x) for x in np.asarray(counts).reshape(-1, 3).sum(axis=0))
    precision = right / predicted if predicted else 0.0
    recall = right / gold if gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def most_frequent_tag_baseline(train_tags: list[list[str]], eval_tags: list[list[str]], scheme: str | None) -> float:
    """The main metric (`tag_metrics(scheme)[0]`) of tagging every evaluated word with the training split's most
    frequent tag (ties: the first in sorted order). For NER that tag is "O", which predicts no entity, so the
    entity F1 and the baseline a gate compares against are 0; for POS it is the share of the most frequent tag."""
    counts = Counter(t for sentence in train_tags for t in sentence)
    if not counts:
        raise ValueError("no training tags")
    tag = min(counts, key=lambda t: (-counts[t], t))
    pred = [[tag] * len(sentence) for sentence in eval_tags]
    if scheme is None:
        return token_accuracy(pred, eval_tags)
    return entity_scores(pred, eval_tags, scheme)["entity_f1"]
