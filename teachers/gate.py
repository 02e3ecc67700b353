"""The teacher gate: a teacher that does not beat the majority-class baseline on the dev set stops the run
before any distillation stage. An un-fine-tuned BERT used as a teacher is the most common cause of
"distillation does not work"; its logits carry no task knowledge, and no loss can distil what is not there."""

from __future__ import annotations

from collections import Counter

import numpy as np

from distill import metrics as task_metrics
from distill.config import TeacherGateConfig
from distill.errors import DistillError
from distill.task_types import QA, SEQUENCE, TOKENS
from distill.tasks import Example, TaskData


class TeacherGateError(DistillError):
    pass


def gold_rows(task: TaskData, examples: list[Example], counts: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The examples' gold labels as the rows a classifier's logits come in, and each row's example: one per
    example, or for token classification one per word (`counts`: the words each example kept after truncation, a
    prefix of its words; default all)."""
    if task.type != TOKENS:
        return np.array([ex.label for ex in examples]), np.arange(len(examples))
    counts = np.array([len(ex.label) for ex in examples]) if counts is None else np.asarray(counts)
    gold = [np.asarray(ex.label[:k], dtype=np.int64) for ex, k in zip(examples, counts, strict=True)]
    return (np.concatenate(gold) if gold else np.zeros(0, np.int64)), np.repeat(np.arange(len(examples)), counts)


def majority_baseline(task: TaskData, train: list[Example], dev: list[Example],
                      counts: np.ndarray | None = None) -> float:
    """The main metric of predicting the training set's most frequent label (tag) for every dev example (word);
    regression: its mean score, whose correlation with anything is taken as 0. For entity tags the most frequent
    is `O`, which finds no entity: an entity F1 of 0."""
    if task.is_regression:
        return 0.0
    if task.type == QA:  # answering nothing: right on every question without an answer (SQuAD v2.0), in percent
        return 100.0 * sum(ex.answers == () for ex in dev) / len(dev) if task.qa.version == "2.0" else 0.0
    majority = Counter(gold_rows(task, train)[0].tolist()).most_common(1)[0][0]
    gold, example = gold_rows(task, dev, counts)
    logits = np.zeros((len(gold), task.num_labels))
    logits[:, majority] = 1.0
    return task_metrics.compute_task(task, logits, gold, example)[task.main_metric]


def check_teacher(task: TaskData, dev_logits: np.ndarray, train: list[Example], dev: list[Example],
                  gate: TeacherGateConfig, source: str, counts: np.ndarray | None = None) -> dict:
    """The gate's figures (teacher score, baseline, largest predicted-class share); raises when the teacher
    fails it. `dev_logits`: one row per dev example, or per word kept (`counts`) for token classification."""
    main = task.main_metric
    gold, example = gold_rows(task, dev, counts)
    score = task_metrics.compute_task(task, dev_logits, gold, example)[main]
    baseline = majority_baseline(task, train, dev, counts)
    if task.is_regression:
        share = 1.0 if float(np.std(dev_logits)) == 0.0 else 0.0
    else:
        share = float(np.bincount(dev_logits.argmax(-1), minlength=task.num_labels).max() / len(gold))
    unit = "words" if task.type == TOKENS else "examples"
    facts = {"dev_" + main: score, "majority_baseline": baseline, "margin": gate.margin,
             "largest_predicted_share": share}
    hint = ("Is it fine-tuned on this task? Set `teacher.finetune` to fine-tune it, check `teacher.label_order`, "
            "or turn the check off with `teacher.gate: null`.")
    if share >= gate.max_class_share:
        what = "a constant score" if task.is_regression else f"one class for {share:.1%} of the dev {unit}"
        raise TeacherGateError(f"teacher {source!r} predicts {what} (limit `teacher.gate.max_class_share` = "
                               f"{gate.max_class_share}); its dev {main} is {score:.4f}. {hint}")
    if not np.isfinite(score) or score < baseline + gate.margin:
        raise TeacherGateError(f"teacher {source!r} scores dev {main} {score:.4f}, which does not beat the "
                               f"majority-class baseline {baseline:.4f} by the margin {gate.margin} "
                               f"(`teacher.gate.margin`). {hint}")
    # Per-class recall is a sentence classifier's check: a tagset of a hundred tags has rare tags that a good
    # tagger misses on a small dev set.
    if task.type == SEQUENCE and not task.is_regression:
        facts["class_recall"] = class_recall(dev_logits.argmax(-1), gold, task.labels)
        trained = Counter(ex.label for ex in train)
        never = [c for i, c in enumerate(task.labels) if facts["class_recall"].get(c) == 0.0
                 and trained[i] >= gate.min_class_examples]
        if never:
            raise TeacherGateError(f"teacher {source!r} never recalls the class(es) {never} on dev although it trained "
                                   f"on at least {gate.min_class_examples} examples of each (`teacher.gate."
                                   f"min_class_examples`); dev recall per class: {_recalls(facts['class_recall'])}. "
                                   f"{hint}")
        chance = 1 / task.num_labels
        facts["chance"] = chance
        facts["below_chance"] = [c for c, r in facts["class_recall"].items() if r < chance]
    return facts


def class_recall(pred: np.ndarray, gold: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Dev recall of each class that has dev examples."""
    return {c: float((pred[gold == i] == i).mean()) for i, c in enumerate(labels) if (gold == i).any()}


def _recalls(recall: dict[str, float]) -> str:
    return ", ".join(f"{c} {r:.2f}" for c, r in recall.items())


def gate_line(name: str, main: str, facts: dict) -> str:
    """What the run says of a passed gate: the score against the baseline and, when some class's recall is below
    chance, which."""
    line = (f"teacher gate ({name}): dev {main} {facts['dev_' + main]:.4f} against the majority-class "
            f"{facts['majority_baseline']:.4f}: passed")
    weak = facts.get("below_chance") or []
    if weak:
        line += (f"; WARNING: dev recall below chance ({facts['chance']:.2f}) for {weak} "
                 f"({_recalls({c: facts['class_recall'][c] for c in weak})})")
    return line
