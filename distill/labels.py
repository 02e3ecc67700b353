"""From the label values a task's files hold to the ids a model outputs, shared by every task source: the label
set (given, a ClassLabel's, or inferred and said), a value's id, a text field's check, and a task's metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill.errors import DistillError
from distill.tasks import GLUE, GLUE_ALIASES

if TYPE_CHECKING:
    from distill.config import TaskConfig


class DataError(DistillError):
    """Task data that cannot be read; the message names the file and line."""


def label_index(value: str, labels: list[str] | None, where: str) -> int | float:
    if labels is None:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} is not a number (regression task)") from None
    try:
        return labels.index(value)
    except ValueError:
        raise DataError(f"{where}: unknown label {value!r}; expected one of {labels}") from None


def text_field(value: object, where: str, col: str | int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: empty text in column {col!r}" if isinstance(value, str) or value is None
                        else f"{where}: column {col!r} holds {value!r}, not text")
    return value.strip()


def label_scheme(values: set[str], cfg: TaskConfig, where: str, notes: list[str]) -> list[str] | None:
    """The label names of a task whose training labels take `values` (None: regression): the config's
    `labels`, or the values sorted (numbers by value). `type: auto` without `labels` makes non-integer numbers a
    regression.
    What was inferred is added to `notes`, to be printed."""
    numbers = all(is_number(v) for v in values)
    if cfg.type == "regression" or (cfg.type == "auto" and cfg.labels is None and numbers and
                                    any(not float(v).is_integer() for v in values)):
        if cfg.type == "auto":
            notes.append(f"{where}: the labels are non-integer numbers, so the task is a regression "
                         "(set `task.type: classification` to treat them as classes)")
        return None
    if cfg.labels is not None:
        return list(cfg.labels)
    labels = sorted(values, key=lambda v: (0, float(v), v) if is_number(v) else (1, 0.0, v))
    notes.append(f"{where}: labels inferred in sorted order {labels} (output i is label i; set `task.labels` to "
                 "choose another order)")
    return labels


def task_metrics_for(name: str, labels: list[str] | None, notes: list[str] | None = None) -> tuple[str, ...]:
    """A task's metrics, the first selecting checkpoints: a GLUE task's official ones under its GLUE name when the
    label count is GLUE's, else accuracy and macro-F1 (Pearson and Spearman for a regression). GLUE's F1 is the
    F1 of label 1 (output 1), said in `notes`, since inferred or dataset labels may put another class there."""
    key = GLUE_ALIASES.get(name.lower(), name.lower())
    spec = GLUE.get(key)
    if spec is not None and (spec.labels is None) == (labels is None) and (
            labels is None or len(labels) == len(spec.labels)):
        if "f1" in spec.metrics and notes is not None:
            notes.append(f"{key}'s F1 is computed for label {labels[1]!r} (output 1) as the positive class")
        return spec.metrics
    return ("pearson", "spearman") if labels is None else ("accuracy", "macro_f1")


def is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# Fewer training examples than this in a declared class earn a warning: a class seen a handful of times is learned
# from noise, and its dev recall is a coin toss.
FEW_CLASS_EXAMPLES = 10


def check_class_counts(task, allow_empty: bool = False) -> list[str]:
    """The training split's examples per declared class: raises for a class with none (unless `allow_empty`, the
    config key `task.allow_empty_classes`); returns a warning for classes with fewer than FEW_CLASS_EXAMPLES (and for
    the allowed empty ones)."""
    if task.is_regression or task.labels is None or "train" not in task.splits:  # scores, or QA's spans
        return []
    counts = [0] * task.num_labels
    if task.type == "token_classification":
        return _tag_counts(task, counts)
    for ex in task.splits["train"]:
        if ex.label is not None:
            counts[ex.label] += 1
    empty = [task.labels[i] for i, n in enumerate(counts) if n == 0]
    if empty and not allow_empty:
        raise DataError(f"task {task.name}: the training split has no example of the declared class(es) {empty} "
                        f"(examples per class: {dict(zip(task.labels, counts, strict=True))}); a student cannot learn "
                        "a class it never sees. Fix `task.labels` or the data, or set `task.allow_empty_classes: true`")
    few = {task.labels[i]: n for i, n in enumerate(counts) if n < FEW_CLASS_EXAMPLES}
    if not few:
        return []
    return [f"WARNING: few training examples for class(es) {few} (fewer than {FEW_CLASS_EXAMPLES}"
            + (", allowed by task.allow_empty_classes" if empty else "") + "): their dev recall will be near chance"]


def _tag_counts(task, counts: list[int]) -> list[str]:
    """Token classification: a tagset's rare tags are expected (Brown has tags seen a handful of times), so they
    are said, not refused."""
    for ex in task.splits["train"]:
        for tag in ex.label or ():
            if tag >= 0:
                counts[tag] += 1
    few = {task.labels[i]: n for i, n in enumerate(counts) if n < FEW_CLASS_EXAMPLES}
    if not few:
        return []
    shown = dict(sorted(few.items(), key=lambda kv: kv[1])[:10])
    return [f"{len(few)} of {len(counts)} tags have fewer than {FEW_CLASS_EXAMPLES} training words (the rarest: "
            f"{shown}); they are learned from little or nothing"]
