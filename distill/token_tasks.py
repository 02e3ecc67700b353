"""Token-classification tasks (a tag per word: NER, POS): CoNLL-style files (`task.source: conll`), the packaged
Brown corpus POS tags (`brown-pos`) and Hugging Face datasets with a sequence of tags per example (`hf_tasks`).

Every source gives the same `Example`s: the words joined by single spaces in `text_a` and a tuple of tag indices
as the label; the tag set comes from the training split (or `task.labels`), and its scheme (BIO, BIOES, or plain
tags) decides the metrics: entity F1 (seqeval) with token accuracy, or token accuracy alone."""

from __future__ import annotations

from pathlib import Path

from distill.config import TaskConfig
from distill.conll import Sentence, read_conll, sentences_to_examples, tag_set
from distill.labels import DataError
from distill.tag_metrics import tag_metrics, tag_scheme
from distill.task_types import TOKENS
from distill.tasks import TaskData

BROWN = "brown-pos"


def tagged_task(name: str, sentences: dict[str, list[Sentence]], labels: list[str] | None, where: str,
                notes: list[str], tags_from: tuple[str, ...] = ("train",)) -> TaskData:
    """A token-classification task from sentences by split; tags are `labels` when given, else those of the splits
    `tags_from` (the training split: a tag seen only in dev could not be learned)."""
    tags = list(labels) if labels is not None else tag_set([s for split in tags_from for s in sentences[split]])
    scheme = tag_scheme(tags)
    notes.append(f"{where}: {len(tags)} tags" + (f", {scheme} entity scheme (entity F1 by seqeval)" if scheme else
                                                 ", no entity scheme (token accuracy)"))
    splits = {split: sentences_to_examples(s, tags, split) for split, s in sentences.items()}
    return TaskData(name, tags, tag_metrics(scheme), splits, notes, type=TOKENS, scheme=scheme)


def load_conll_task(cfg: TaskConfig) -> TaskData:
    folder = Path(cfg.path)
    files = {"train": cfg.train_file, "dev": cfg.dev_file, **({"test": cfg.test_file} if cfg.test_file else {})}
    sentences = {}
    for split, name in files.items():
        sentences[split] = read_conll(folder / name, cfg.word_column, cfg.tag_column)
    return tagged_task(cfg.name, sentences, cfg.labels, str(folder / files["train"]), [])


def load_brown_task(cfg: TaskConfig, log=print) -> TaskData:
    """Part-of-speech tagging of the Brown corpus, split by document (80/10/10, seeded by `task.split_seed`); the
    tag set is the whole corpus's (a rare tag may occur in one split only)."""
    from distill.brown import brown_folder, read_brown, split_brown

    folder = brown_folder(log)
    sentences = split_brown(read_brown(folder, cfg.brown_tags), cfg.split_seed)
    notes = [f"Brown corpus ({cfg.brown_tags} tags) split by document with seed {cfg.split_seed}"]
    return tagged_task(BROWN, sentences, cfg.labels, str(folder), notes, tags_from=tuple(sentences))


def hf_tagged_rows(words, tags, names: list[str], where: str) -> Sentence:
    """One Hugging Face row of a `Sequence(ClassLabel)` task as a sentence (where, words, tag names)."""
    if not isinstance(words, list) or not isinstance(tags, list):
        raise DataError(f"{where}: expected a list of words and a list of tag ids, got {type(words).__name__} and "
                        f"{type(tags).__name__}")
    bad = [t for t in tags if not isinstance(t, int) or not 0 <= t < len(names)]
    if bad:
        raise DataError(f"{where}: tag id {bad[0]!r} outside the ClassLabel's {len(names)} names")
    return where, [str(w) for w in words], [names[t] for t in tags]
