"""What kind of prediction a task asks for: one label (or score) per sentence or pair, one tag per word, or an
answer span in a context. The type decides the model's head, the rows prediction losses compare, the metrics and
what a served model is in Hugging Face's terms (its pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SEQUENCE = "sequence_classification"
TOKENS = "token_classification"
QA = "extractive_qa"


@dataclass(frozen=True)
class TaskType:
    name: str
    head: str  # the transformers class suffix: Bert<head>, DistilBert<head>, AutoModelFor<head>
    pipeline_tag: str  # the Hub's task name, and `transformers.pipeline`'s
    what: str


TASK_TYPES: dict[str, TaskType] = {
    SEQUENCE: TaskType(SEQUENCE, "SequenceClassification", "text-classification", "one label or score per example"),
    TOKENS: TaskType(TOKENS, "TokenClassification", "token-classification", "one tag per word"),
    QA: TaskType(QA, "QuestionAnswering", "question-answering", "an answer span in a context"),
}


def config_type(task) -> str:
    """The task type a `task:` config section (`TaskConfig`) asks for, known before its data is read: `task.type`
    when it names one, else the source's (CoNLL files and Brown are tagged, SQuAD files are QA), else a sequence
    task (`auto`, `classification` and `regression`)."""
    if task.type in TASK_TYPES:
        return task.type
    if task.source == "conll" or (task.source == "packaged" and task.name == "brown-pos"):
        return TOKENS
    if task.source == "squad":
        return QA
    return SEQUENCE


def head_class(architecture: str, task_type: str) -> type[nn.Module]:
    """The transformers model class of an architecture (`Bert`, `DistilBert`, `Auto`) for a task type."""
    import transformers

    prefix = "AutoModelFor" if architecture == "Auto" else f"{architecture}For"
    return getattr(transformers, prefix + TASK_TYPES[task_type].head)


def type_of_model(model: nn.Module) -> str:
    """The task type a transformers model's head serves, read from its class (a teacher decides its students')."""
    name = type(getattr(model, "_orig_mod", model)).__name__
    for t in TASK_TYPES.values():
        if name.endswith(t.head):
            return t.name
    return SEQUENCE


def type_of_architectures(architectures: list[str] | None) -> str:
    """The task type of a saved model folder, from its config's `architectures`."""
    for name in architectures or []:
        for t in TASK_TYPES.values():
            if name.endswith(t.head):
                return t.name
    return SEQUENCE
