"""What a task is: its examples, its label set and its official metric."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    id: str
    text_a: str
    text_b: str | None
    # A class, a score, or (token classification) one tag index per word of `text_a`, whose words are separated
    # by single spaces; None when unlabelled.
    label: int | float | tuple[int, ...] | None
    # Extractive QA: the gold answers as (text, character offset in `text_b`, the context); () for a question with
    # no answer (SQuAD v2.0); None for other tasks.
    answers: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True)
class GlueSpec:
    """One GLUE task's file layout. Label order follows the official GLUE data / reference code."""

    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None  # None: regression
    metrics: tuple[str, ...]
    header: bool = True
    dev_file: str = "dev.tsv"
    # A second dev set evaluated in the same run (MNLI's mismatched dev), loaded when its file is present.
    extra_dev: tuple[str, str] | None = None


GLUE: dict[str, GlueSpec] = {
    "cola": GlueSpec(3, None, 1, ("0", "1"), ("mcc", "accuracy"), header=False),
    "sst2": GlueSpec("sentence", None, "label", ("0", "1"), ("accuracy",)),
    "mrpc": GlueSpec("#1 String", "#2 String", "Quality", ("0", "1"), ("f1", "accuracy")),
    "qqp": GlueSpec("question1", "question2", "is_duplicate", ("0", "1"), ("f1", "accuracy")),
    "stsb": GlueSpec("sentence1", "sentence2", "score", None, ("pearson", "spearman")),
    # GLUE's own order; Hugging Face datasets uses (entailment, neutral, contradiction): mixing them
    # up turns a good teacher into ~10% accuracy.
    "mnli": GlueSpec(
        "sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"),
        ("accuracy",), dev_file="dev_matched.tsv", extra_dev=("dev_mismatched", "dev_mismatched.tsv"),
    ),
    "mnli-mm": GlueSpec(
        "sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"),
        ("accuracy",), dev_file="dev_mismatched.tsv",
    ),
    "qnli": GlueSpec("question", "sentence", "label", ("entailment", "not_entailment"), ("accuracy",)),
    "rte": GlueSpec("sentence1", "sentence2", "label", ("entailment", "not_entailment"), ("accuracy",)),
    "wnli": GlueSpec("sentence1", "sentence2", "label", ("0", "1"), ("accuracy",)),
}
# The splits a run is judged on, in the order reports show them; `dev` selects checkpoints.
EVAL_SPLITS = ("dev", "dev_mismatched", "test")

GLUE_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli"}


@dataclass(frozen=True)
class QASettings:
    """Extractive QA's windows over long contexts and its answer post-processing (`task.*` keys of the same names)."""

    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    # "2.0": questions may have no answer (SQuAD v2.0), answered "" when the null score wins by a threshold.
    version: str = "1.1"

    @property
    def windows(self) -> tuple[int, int]:
        return self.doc_stride, self.max_query_length


@dataclass
class TaskData:
    name: str
    labels: list[str] | None  # None: regression
    metrics: tuple[str, ...]  # the first is the one used to select checkpoints
    splits: dict[str, list[Example]] = field(default_factory=dict)
    # What the loader decided for the user (labels inferred, a split left out): printed when a run starts.
    notes: list[str] = field(default_factory=list)
    # Each role's split name in the source (dev -> `validation` in a Hub dataset), for model cards.
    source_splits: dict[str, str] = field(default_factory=dict)
    # Splits cut by `task.*_limit`: role -> [examples kept, examples in the source].
    subsampled: dict[str, list[int]] = field(default_factory=dict)
    # `distill.task_types`: sequence_classification (labels None: regression), token_classification (labels: the
    # tags) or extractive_qa (labels None).
    type: str = "sequence_classification"
    # Token classification: the tag scheme (BIO, BIOES) when the tags mark entities, None for plain tags (POS).
    scheme: str | None = None
    # Extractive QA's settings (None for other types).
    qa: QASettings | None = None

    @property
    def is_regression(self) -> bool:
        return self.labels is None and self.type == "sequence_classification"

    @property
    def num_labels(self) -> int:
        if self.type == "extractive_qa":
            return 2  # a start and an end score per token, as BertForQuestionAnswering's head
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return any(ex.text_b is not None for ex in self.splits.get("train", []))

    @property
    def main_metric(self) -> str:
        return self.metrics[0]
