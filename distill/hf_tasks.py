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
    except Exception as e:  # datasets raises many kinds; one line that says what was asked
        offline = " (HF_HUB_OFFLINE is set: only local data can be read)" if _offline() else ""
        what = " ".join(str(e).split())[:300]
        raise DataError(f"task.path {cfg.path!r}{f', subset {cfg.subset!r}' if cfg.subset else ''}: cannot load "
                        f"with `datasets`{offline}: {type(e).__name__}: {what}") from None


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _roles(cfg: TaskConfig, names: list[str]) -> dict[str, str]:
    """Which of the dataset's splits plays each role (train, dev, ...)."""
    roles = {}
    for role, choices in DEFAULT_SPLITS.items():
        if role in cfg.splits:
            if cfg.splits[role] not in names:
                raise DataError(f"task.splits.{role} = {cfg.splits[role]!r}: the dataset's splits are {names}")
            roles[role] = cfg.splits[role]
        else:
            found = [c for c in choices if c in names]
            if found:
                roles[role] = found[0]
    for role in ("train", "dev"):
        if role not in roles:
            raise DataError(f"{cfg.path}: no {role} split among the dataset's splits {names}; name one in "
                            f"task.splits.{role}")
    return roles


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
    roles = _roles(cfg, list(data))
    train = data[roles["train"]]
    _check_columns(cfg, roles["train"], train.column_names)
    feature = train.features[cfg.label_column]
    notes: list[str] = []
    where = f"{cfg.path} split {roles['train']!r} column {cfg.label_column!r}"
    if isinstance(feature, ds.ClassLabel):
        if cfg.type == "regression":
            raise DataError(f"{where}: a ClassLabel {feature.names}, but task.type is regression")
        if cfg.labels is not None and list(cfg.labels) != list(feature.names):
            raise DataError(f"task.labels {cfg.labels} differs from the dataset's ClassLabel {feature.names} (their "
                            "order is the label ids'); leave task.labels out")
        labels = list(feature.names)
        notes.append(f"{where}: labels from the ClassLabel feature, in its order {labels}")
    elif cfg.type != "classification" and getattr(feature, "dtype", "").startswith("float"):
        labels = None
        if cfg.type == "auto":
            notes.append(f"{where}: a float label, so the task is a regression")
    else:
        labels = label_scheme({str(v) for v in list(train[cfg.label_column])}, cfg, where, notes)
    splits: dict[str, list[Example]] = {}
    for role, name in roles.items():
        part = data[name]
        _check_columns(cfg, name, part.column_names)
        rows = _read_split(part, cfg, name, role, labels, isinstance(feature, ds.ClassLabel))
        if rows is None:
            if role in cfg.splits or role in ("train", "dev"):
                raise DataError(f"{cfg.path} split {name!r} ({role}): has no labels ({UNLABELLED} everywhere); "
                                "choose a labelled split in task.splits")
            notes.append(f"{cfg.path} split {name!r} has no labels ({UNLABELLED} everywhere): not used as {role}")
            continue
        splits[role] = rows
    return TaskData(cfg.name, labels, task_metrics_for(cfg.name, labels is None), splits, notes)


def _read_split(part, cfg: TaskConfig, name: str, role: str, labels: list[str] | None,
                class_label: bool) -> list[Example] | None:
    """A split's examples, or None when a ClassLabel split holds no label at all."""
    text_cols = list(cfg.text_columns)
    gold = list(part[cfg.label_column])
    if class_label and gold and all(v == UNLABELLED for v in gold):
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
