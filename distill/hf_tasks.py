"""Tasks read with Hugging Face `datasets` (`task.source: hf`).

`task.path` is a hub name (`glue` with `subset: sst2`; needs the hub), a folder written by `save_to_disk`, a folder
of data files (parquet, JSON lines, CSV: `datasets` names the splits after the files, train.* / validation.* /
test.*) or, with `data_files`, files named split by split. A ClassLabel label feature gives the label names and
their order; a float label makes a regression; anything else is read as values, mapped through `task.labels` or
inferred in sorted order (as for CSV files). Rows become the same `Example`s as every other source, so caching,
fingerprints and reports do not know where a task came from."""

from __future__ import annotations

from pathlib import Path

from distill.config import TaskConfig
from distill.io import cache_root
from distill.labels import DataError, label_index, label_scheme, task_metrics_for, text_field
from distill.tasks import Example, TaskData

# The dataset's split taken for each role when `task.splits` does not say.
DEFAULT_SPLITS = {"train": ("train",), "dev": ("validation", "dev", "valid", "validation_matched"),
                  "dev_mismatched": ("validation_mismatched",), "test": ("test",)}
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv",
            ".tsv": "csv", ".txt": "text"}
UNLABELLED = -1  # what a ClassLabel column holds where a split has no labels (GLUE's test sets on the hub)


def _datasets():
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise DataError("`task.source: hf` needs the `datasets` package (pip install datasets)") from None
    return datasets


def open_dataset(cfg: TaskConfig):
    """The task's `DatasetDict`, from disk or the hub; errors name the path and what was expected."""
    ds = _datasets()
    where = Path(cfg.path).expanduser()
    cache = str(cache_root() / "hf-datasets")
    try:
        if cfg.data_files:
            files = {split: str(where / f) for split, f in cfg.data_files.items()}
            missing = [f for f in files.values() if not Path(f).exists()]
            if missing:
                raise DataError(f"task.data_files: file not found: {missing[0]}")
            suffixes = {BUILDERS.get(Path(f).suffix.lower()) for f in files.values()}
            if len(suffixes) != 1 or None in suffixes:
                raise DataError(f"task.data_files {cfg.data_files}: expected files of one kind, named by their "
                                f"suffix: {', '.join(BUILDERS)}")
            builder = suffixes.pop()
            extra = {"delimiter": "\t"} if all(f.endswith(".tsv") for f in files.values()) else {}
            return ds.load_dataset(builder, data_files=files, cache_dir=cache, **extra)
        if (where / "dataset_dict.json").exists():
            return ds.load_from_disk(str(where))
        if (where / "state.json").exists():
            raise DataError(f"{where}: a single saved split (state.json); save a DatasetDict with its train and "
                            "validation splits (DatasetDict({...}).save_to_disk), or name files in task.data_files")
        if where.is_file():
            raise DataError(f"{where}: a file; give its folder as task.path and name it in task.data_files "
                            "(e.g. {train: train.jsonl, validation: dev.jsonl})")
        if where.is_dir():
            return ds.load_dataset(str(where), cfg.subset, cache_dir=cache)
        return ds.load_dataset(cfg.path, cfg.subset, cache_dir=cache)
    except DataError:
        raise
    except Exception as e:  # datasets raises many kinds, wrapping the cause: one line that names the cause
        root = e
        while (root.__cause__ or root.__context__) is not None:
            root = root.__cause__ or root.__context__
        local = where.exists() or bool(cfg.data_files)
        offline = " (HF_HUB_OFFLINE is set: only local data can be read)" if _offline() and not local else ""
        what = " ".join(str(root).split())[:300]
        raise DataError(f"task.path {cfg.path!r}{f', subset {cfg.subset!r}' if cfg.subset else ''}: cannot load "
                        f"with `datasets`{offline}: {type(root).__name__}: {what}") from None


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _roles(cfg: TaskConfig, names: list[str], notes: list[str]) -> dict[str, str]:
    """Which of the dataset's splits plays each role (train, dev, ...); a split plays one role only, so that
    checkpoints are never selected on the split that is reported as held out."""
    roles = {}
    for role, name in cfg.splits.items():
        if name not in names:
            raise DataError(f"task.splits.{role} = {name!r}: the dataset's splits are {names}")
        if name in roles.values():
            other = next(r for r, n in roles.items() if n == name)
            raise DataError(f"task.splits.{role} = {name!r}: already task.splits.{other}; a split plays one role")
        roles[role] = name
    for role, choices in DEFAULT_SPLITS.items():
        found = [c for c in choices if c in names]
        if role in roles or not found:
            continue
        if found[0] in roles.values():
            taken = next(r for r, n in roles.items() if n == found[0])
            notes.append(f"split {found[0]!r} is the {taken} split (task.splits.{taken}): not also used as {role}")
            continue
        roles[role] = found[0]
    for role in ("train", "dev"):
        if role not in roles:
            raise DataError(f"{cfg.path}: no {role} split among the dataset's splits {names}; name one in "
                            f"task.splits.{role}")
    return {role: roles[role] for role in DEFAULT_SPLITS if role in roles}


def _check_columns(cfg: TaskConfig, split: str, columns: list[str]) -> None:
    for c in [*cfg.text_columns, cfg.label_column]:
        if not isinstance(c, str):
            raise DataError(f"task column {c!r}: a position; a dataset's columns are named: {columns}")
        if c not in columns:
            key = "task.label_column" if c == cfg.label_column else "task.text_columns"
            raise DataError(f"{cfg.path} split {split!r}: no column {c!r} ({key}); columns are {columns}")


def load_hf(cfg: TaskConfig) -> TaskData:
    ds = _datasets()
    data = open_dataset(cfg)
    notes: list[str] = []
    roles = _roles(cfg, list(data), notes)
    train = data[roles["train"]]
    if cfg.type == "extractive_qa":
        return _load_questions(cfg, data, roles, notes)
    _check_columns(cfg, roles["train"], train.column_names)
    if cfg.type == "token_classification":
        return _load_tagged(cfg, data, roles, notes)
    feature = train.features[cfg.label_column]
    where = f"{cfg.path} split {roles['train']!r} column {cfg.label_column!r}"
    class_label = isinstance(feature, ds.ClassLabel)
    if not class_label and not isinstance(feature, ds.Value):
        raise DataError(f"{where}: labels of type {feature}; expected one class or number per example (multi-label "
                        "tasks are not supported)")
    if class_label:
        if cfg.type == "regression":
            raise DataError(f"{where}: a ClassLabel {feature.names}, but task.type is regression")
        if cfg.labels is not None and list(cfg.labels) != list(feature.names):
            raise DataError(f"task.labels {cfg.labels} differs from the dataset's ClassLabel {feature.names} (their "
                            "order is the label ids'); leave task.labels out")
        labels = list(feature.names)
        notes.append(f"{where}: labels from the ClassLabel feature, in its order {labels}")
    else:  # values, as in a CSV file: the same rules (given labels, sorted values, non-integer numbers regress)
        labels = label_scheme({str(v) for v in train[cfg.label_column] if v is not None}, cfg, where, notes)
    splits: dict[str, list[Example]] = {}
    for role, name in roles.items():
        part = data[name]
        _check_columns(cfg, name, part.column_names)
        rows = _read_split(part, cfg, name, role, labels, class_label)
        if rows is None:
            if role in cfg.splits or role in ("train", "dev"):
                raise DataError(f"{cfg.path} split {name!r} ({role}): has no labels (None or {UNLABELLED} "
                                "everywhere); choose a labelled split in task.splits")
            notes.append(f"{cfg.path} split {name!r} has no labels (None or {UNLABELLED} everywhere): not used as "
                         f"{role}")
            continue
        splits[role] = rows
    return TaskData(cfg.name, labels, task_metrics_for(cfg.name, labels, notes), splits, notes,
                    {role: name for role, name in roles.items() if role in splits})


def _load_tagged(cfg: TaskConfig, data, roles: dict[str, str], notes: list[str]) -> TaskData:
    """A token-classification dataset: a column of word lists (`task.text_columns`, one) and a column of tag ids,
    a `Sequence(ClassLabel)` whose names are the tags (CoNLL-2003 on the hub: tokens, ner_tags)."""
    from distill.token_tasks import hf_tagged_rows, tagged_task

    ds = _datasets()
    if len(cfg.text_columns) != 1:
        raise DataError(f"task.text_columns {cfg.text_columns}: token classification reads one column of words")
    words_col, tags_col = cfg.text_columns[0], cfg.label_column
    feature = data[roles["train"]].features[tags_col]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:  # datasets writes a plain list for some sequences
        inner = feature[0]
    if not isinstance(inner, ds.ClassLabel):
        raise DataError(f"{cfg.path} split {roles['train']!r} column {tags_col!r}: {feature}; expected a "
                        "Sequence(ClassLabel) of tag ids (task.type: token_classification)")
    names = list(inner.names)
    if cfg.labels is not None and list(cfg.labels) != names:
        raise DataError(f"task.labels {cfg.labels} differs from the dataset's ClassLabel {names} (their order is the "
                        "tag ids'); leave task.labels out")
    sentences = {}
    for role, name in roles.items():
        part = data[name].select_columns([words_col, tags_col])
        sentences[role] = [hf_tagged_rows(row[words_col], row[tags_col], names,
                                          f"{cfg.path}[{name}]:{i}") for i, row in enumerate(part)]
    task = tagged_task(cfg.name, sentences, names, f"{cfg.path} column {tags_col!r}", notes)
    task.source_splits = dict(roles)
    return task


def _load_questions(cfg: TaskConfig, data, roles: dict[str, str], notes: list[str]) -> TaskData:
    """An extractive-QA dataset in the `squad` / `squad_v2` layout (id, context, question, answers with text and
    answer_start lists); the column names are the layout's."""
    from distill.qa_tasks import qa_task
    from distill.squad_data import squad_rows

    splits = {}
    for role, name in roles.items():
        part = data[name]
        missing = sorted({"id", "context", "question", "answers"} - set(part.column_names))
        if missing:
            raise DataError(f"{cfg.path} split {name!r}: no column(s) {missing}; expected the squad layout (id, "
                            f"context, question, answers); columns are {part.column_names}")
        splits[role] = squad_rows(part, f"{cfg.path} split {name!r}")
    task = qa_task(cfg.name, splits, cfg, notes)
    task.source_splits = dict(roles)
    return task


def _read_split(part, cfg: TaskConfig, name: str, role: str, labels: list[str] | None,
                class_label: bool) -> list[Example] | None:
    """A split's examples, or None when a ClassLabel split holds no label at all."""
    text_cols = list(cfg.text_columns)
    gold = list(part[cfg.label_column])
    # How an unlabelled split looks: the hub's -1 (a ClassLabel, or ints), or no label column in that file.
    if gold and (all(v is None for v in gold) or all(v == UNLABELLED and isinstance(v, int) for v in gold)):
        return None
    out = []
    for i, row in enumerate(part.select_columns([*text_cols, cfg.label_column]).iter(batch_size=1000)):
        for j in range(len(row[cfg.label_column])):
            n = i * 1000 + j
            where = f"{cfg.path} split {name!r} row {n}"
            texts = [text_field(row[c][j], where, c) for c in text_cols]
            out.append(Example(f"{role}-{n}", texts[0], texts[1] if len(texts) > 1 else None,
                               _label(row[cfg.label_column][j], labels, class_label, where)))
    if not out:
        raise DataError(f"{cfg.path} split {name!r}: no examples")
    return out


def _label(value, labels: list[str] | None, class_label: bool, where: str) -> int | float:
    if value is None or (class_label and value == UNLABELLED):
        raise DataError(f"{where}: no label")
    if class_label and labels is not None:
        if not 0 <= value < len(labels):
            raise DataError(f"{where}: label id {value} outside the ClassLabel's {len(labels)} names")
        return int(value)
    return label_index(str(value), labels, where)
