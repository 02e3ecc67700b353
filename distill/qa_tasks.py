"""Extractive-QA tasks: SQuAD v1.1 / v2.0 JSON files (`task.source: squad`) and Hugging Face datasets in the
`squad` / `squad_v2` layout (`hf_tasks`). A question is an `Example` with the question in `text_a`, the context in
`text_b` and its gold answers in `answers`; the metrics are the official SQuAD exact match and F1 (percent), and
for v2.0 also over the questions that have an answer and those that have none."""

from __future__ import annotations

from pathlib import Path

from distill.config import TaskConfig
from distill.labels import DataError
from distill.squad_data import read_squad_json
from distill.task_types import QA
from distill.tasks import Example, QASettings, TaskData

V1_METRICS = ("squad_f1", "exact_match")
V2_METRICS = (*V1_METRICS, "has_ans_f1", "has_ans_exact", "no_ans_f1", "no_ans_exact")


def settings(cfg: TaskConfig, version: str) -> QASettings:
    return QASettings(cfg.doc_stride, cfg.max_query_length, cfg.n_best, cfg.max_answer_length, version)


def qa_task(name: str, splits: dict[str, list[Example]], cfg: TaskConfig, notes: list[str]) -> TaskData:
    """The task of questions by split; SQuAD v2.0 when any question has no answer."""
    v2 = any(ex.answers == () for exs in splits.values() for ex in exs)
    version = "2.0" if v2 else "1.1"
    unanswerable = sum(ex.answers == () for ex in splits["dev"])
    notes.append(f"SQuAD v{version} layout: dev {len(splits['dev'])} questions"
                 + (f", {unanswerable} without an answer (the null threshold is chosen on dev)" if v2 else ""))
    return TaskData(name, None, V2_METRICS if v2 else V1_METRICS, splits, notes, type=QA, qa=settings(cfg, version))


def load_squad_task(cfg: TaskConfig) -> TaskData:
    folder = Path(cfg.path)
    files = {"train": cfg.train_file, "dev": cfg.dev_file, **({"test": cfg.test_file} if cfg.test_file else {})}
    splits = {}
    for split, name in files.items():
        if not name.endswith(".json"):
            raise DataError(f"task.{split}_file {name!r}: expected a SQuAD JSON file (train-v1.1.json, dev-v2.0.json)")
        splits[split] = read_squad_json(folder / name)[0]
    return qa_task(cfg.name, splits, cfg, [])
