"""Tasks from Hugging Face `datasets` (`task.source: hf`) and from files as people have them (no header line,
JSON lines, inferred labels), on datasets the tests write to disk."""

import json

import datasets
import pytest

from distill.config import ConfigError, TaskConfig, from_dict, load_raw
from distill.io import cache_at
from distill.loaders import DataError, load_task

from .helpers import SMOKE, assert_facts, raises_with

# A ClassLabel whose order is not alphabetical: reading names by sorting would swap every label.
NAMES = ["positive", "negative", "neutral"]


def _classlabel_dict(folder, test_labels=(-1, -1)):
    feats = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})
    parts = {"train": (["a good film", "a bad film", "a film", "lovely"], [0, 1, 2, 0]),
             "validation": (["fine", "awful"], [0, 1]),
             "test": (["unseen", "unknown"], list(test_labels))}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"sentence": s, "label": y}, features=feats)
                          for k, (s, y) in parts.items()}).save_to_disk(str(folder))
    return folder


def hf(path, **kw) -> TaskConfig:
    return TaskConfig(name=kw.pop("name", "mine"), source="hf", path=str(path), **kw)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path):
    with cache_at(tmp_path / "cache"):  # `datasets` converts local files into our cache
        yield


def test_saved_dataset_dict_takes_classlabel_names_and_order(tmp_path):
    task = load_task(hf(_classlabel_dict(tmp_path / "d"), text_columns=["sentence"]))
    assert task.labels == NAMES  # the ClassLabel's order, not sorted (which would be negative, neutral, positive)
    assert [(e.text_a, e.label) for e in task.splits["train"]] == [("a good film", 0), ("a bad film", 1),
                                                                   ("a film", 2), ("lovely", 0)]
    assert task.labels[task.splits["dev"][1].label] == "negative"  # `validation` became dev
    assert task.main_metric == "accuracy" and not task.is_pair and not task.is_regression
    # GLUE's test splits on the hub carry -1 everywhere: left out, and said so.
    assert "test" not in task.splits
    assert any("'test' has no labels" in n for n in task.notes)
    assert any("ClassLabel" in n and str(NAMES) in n for n in task.notes)


def test_a_labelled_test_split_is_used_and_an_explicit_unlabelled_one_refused(tmp_path):
    task = load_task(hf(_classlabel_dict(tmp_path / "d", (2, 1)), text_columns=["sentence"]))
    assert [e.label for e in task.splits["test"]] == [2, 1]
    with raises_with(DataError, str(tmp_path / "e"), "split 'test'", "has no labels"):
        load_task(hf(_classlabel_dict(tmp_path / "e"), text_columns=["sentence"], splits={"test": "test"}))


def test_parquet_folder_of_pairs_infers_sorted_labels_and_glue_metrics(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    datasets.Dataset.from_dict({"q1": ["how old", "where is it", "why"], "q2": ["what age", "when", "how come"],
                                "dup": ["yes", "no", "yes"]}).to_parquet(str(folder / "train.parquet"))
    datasets.Dataset.from_dict({"q1": ["who"], "q2": ["which person"], "dup": ["yes"]}).to_parquet(
        str(folder / "validation.parquet"))
    task = load_task(hf(folder, name="qqp", text_columns=["q1", "q2"], label_column="dup"))
    assert task.labels == ["no", "yes"] and task.is_pair
    assert [(e.text_a, e.text_b, e.label) for e in task.splits["train"]] == [
        ("how old", "what age", 1), ("where is it", "when", 0), ("why", "how come", 1)]
    assert task.metrics == ("f1", "accuracy")  # named like a GLUE task: its official metrics
    assert any("sorted order ['no', 'yes']" in n for n in task.notes)
    # A config `labels:` list sets the order instead.
    task = load_task(hf(folder, text_columns=["q1", "q2"], label_column="dup", labels=["yes", "no"]))
    assert [e.label for e in task.splits["train"]] == [0, 1, 0]


def test_json_lines_with_float_labels_are_a_regression_through_data_files_and_split_names(tmp_path):
    rows = {"tr.jsonl": [("a man plays", "a person plays", 3.8), ("a cat", "a car", 0.4)],
            "va.jsonl": [("x y", "x z", 2.5)]}
    for name, items in rows.items():
        (tmp_path / name).write_text("".join(json.dumps({"s1": a, "s2": b, "score": y}) + "\n" for a, b, y in items))
    cfg = hf(tmp_path, name="stsb", text_columns=["s1", "s2"], label_column="score",
             data_files={"train": "tr.jsonl", "held": "va.jsonl"}, splits={"dev": "held"})
    task = load_task(cfg)
    assert task.is_regression and task.num_labels == 1 and task.metrics == ("pearson", "spearman")
    assert [e.label for e in task.splits["train"]] == pytest.approx([3.8, 0.4])
    assert task.splits["dev"][0].text_b == "x z"
    assert any("regression" in n for n in task.notes)


def test_hf_errors_name_what_is_wrong(tmp_path):
    folder = _classlabel_dict(tmp_path / "d")
    with raises_with(DataError, "'text'", "task.text_columns", "['sentence', 'label']"):
        load_task(hf(folder))
    with raises_with(DataError, "task.splits.dev", "'dev'", "['train', 'validation'"):
        load_task(hf(folder, text_columns=["sentence"], splits={"dev": "dev"}))
    with raises_with(DataError, "task.labels", str(sorted(NAMES)), "ClassLabel", str(NAMES)):
        load_task(hf(folder, text_columns=["sentence"], labels=sorted(NAMES)))
    with raises_with(DataError, "ClassLabel", str(NAMES), "task.type", "regression"):
        load_task(hf(folder, text_columns=["sentence"], type="regression"))
    with raises_with(DataError, "task.data_files", "missing.parquet", "not found"):
        load_task(hf(tmp_path, data_files={"train": "missing.parquet"}))


def test_load_errors_name_their_root_cause_and_the_hub_only_for_hub_names(tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\nfine,1\nthis, row, has, extra, fields\n")
    (folder / "validation.csv").write_text("text,label\nok,0\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        load_task(hf(folder))
    assert_facts(str(e.value), "Expected 2 fields", "line 3")
    assert "HF_HUB_OFFLINE" not in str(e.value)

    def unreachable(path, name=None, **kw):  # what `datasets` raises offline, wrapped as it wraps causes
        try:
            raise OSError("offline mode is enabled")
        except OSError as cause:
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub") from cause

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with raises_with(DataError, "task.path", "'no-such/dataset'", "HF_HUB_OFFLINE",
                     "OSError: offline mode is enabled"):
        load_task(hf("no-such/dataset"))


def test_unlabelled_splits_shared_splits_float_classes_and_multi_labels(tmp_path):
    # A Kaggle-style folder: test.csv has no label column (datasets fills None): left out, like the hub's -1.
    folder = tmp_path / "kaggle"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood,1.0\nbad,0.0\n")
    (folder / "validation.csv").write_text("text,label\nfine,1.0\n")
    (folder / "test.csv").write_text("text\nunseen\n")
    task = load_task(hf(folder))
    assert set(task.splits) == {"train", "dev"} and any("'test' has no labels" in n for n in task.notes)
    # Whole-number floats (pandas' 0/1 once a NaN was there) are classes, as in a CSV read by distillery.
    assert task.labels == ["0.0", "1.0"] and [e.label for e in task.splits["train"]] == [1, 0]
    # A dataset with train and test only, its test named as dev: not also reported as a held-out test.
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
                          for k in ("train", "test")}).save_to_disk(str(tmp_path / "tt"))
    task = load_task(hf(tmp_path / "tt", splits={"dev": "test"}))
    assert set(task.splits) == {"train", "dev"}
    assert any("'test' is the dev split (task.splits.dev): not also used as test" in n for n in task.notes)
    with raises_with(DataError, "task.splits.test = 'test'", "task.splits.dev"):
        load_task(hf(tmp_path / "tt", splits={"dev": "test", "test": "test"}))
    # Multi-label rows are refused, naming the column.
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[0], [1, 2]]})
                          for k in ("train", "validation")}).save_to_disk(str(tmp_path / "ml"))
    with raises_with(DataError, "'label'", "multi-label"):
        load_task(hf(tmp_path / "ml"))


def test_hf_keys_are_checked_in_the_config():
    base = load_raw(SMOKE)
    with raises_with(ConfigError, "`task.splits.validation`", "train, dev, dev_mismatched, test"):
        from_dict({**base, "task": {"source": "hf", "path": "x", "splits": {"validation": "v"}}})
    with raises_with(ConfigError, "`task.subset`", "`task.source: hf`", "'csv'"):
        from_dict({**base, "task": {"source": "csv", "path": "x", "subset": "sst2"}})
    with raises_with(ConfigError, "`task.path`", "required", "`task.source: hf`"):
        from_dict({**base, "task": {"source": "hf"}})
    with raises_with(ConfigError, "`task.header`", "`task.delimiter`", "`task.source: csv`"):
        from_dict({**base, "task": {"source": "hf", "path": "x", "header": False}})


# ---------------------------------------------------------------- files as people have them


def _csv(path, lines, sep=","):
    path.write_text("\n".join(sep.join(r) for r in lines) + "\n", encoding="utf-8")
    return path


def files(tmp_path, **kw) -> TaskConfig:
    return TaskConfig(name="mine", source="csv", path=str(tmp_path), **kw)


def test_csv_without_header_reads_columns_by_position(tmp_path):
    _csv(tmp_path / "train.csv", [["id1", "bad", "a dull film"], ["id2", "good", "a fine film"]])
    _csv(tmp_path / "dev.csv", [["id3", "good", "lovely"]])
    task = load_task(files(tmp_path, train_file="train.csv", dev_file="dev.csv", header=False, text_columns=[2],
                           label_column=1))
    assert task.labels == ["bad", "good"]
    assert [(e.text_a, e.label) for e in task.splits["train"]] == [("a dull film", 0), ("a fine film", 1)]
    assert task.splits["train"][0].id == "train-1"  # ids carry the file line, as with a header (then from 2)
    assert any("sorted order ['bad', 'good']" in n for n in task.notes)
    # Names with header: false are refused, saying how to name columns.
    with raises_with(DataError, "train.csv", "'text'", "`task.header: false`", "0-based position"):
        load_task(files(tmp_path, train_file="train.csv", dev_file="dev.csv", header=False))


def test_a_first_row_that_looks_like_data_gets_a_hint(tmp_path):
    _csv(tmp_path / "train.tsv", [["this film was a joy", "1"], ["dull", "0"]], "\t")
    _csv(tmp_path / "dev.tsv", [["fine", "1"]], "\t")
    with raises_with(DataError, f"{tmp_path / 'train.tsv'}:1", "'text'", "looks like data", "`task.header: false`"):
        load_task(files(tmp_path))
    _csv(tmp_path / "train.tsv", [["sentence", "polarity"], ["dull", "0"]], "\t")
    with pytest.raises(DataError) as e:  # a real header with other names: no hint
        load_task(files(tmp_path))
    assert_facts(str(e.value), "['sentence', 'polarity']")
    assert "looks like data" not in str(e.value)


def test_json_lines_files_read_by_key_with_errors_naming_the_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "great", "label": 1}\n\n{"text": "awful", "label": 0}\n')
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": 1}\n')
    task = load_task(files(tmp_path, train_file="train.jsonl", dev_file="dev.jsonl"))
    assert task.labels == ["0", "1"] and [e.label for e in task.splits["train"]] == [1, 0]
    assert task.splits["train"][1].id == "train-3"
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": "x" "label": 1}\n')
    with raises_with(DataError, f"{tmp_path / 'dev.jsonl'}:2", "not a JSON object"):
        load_task(files(tmp_path, train_file="train.jsonl", dev_file="dev.jsonl"))
    (tmp_path / "dev.jsonl").write_text('{"txt": "fine", "label": 1}\n')
    with raises_with(DataError, f"{tmp_path / 'dev.jsonl'}:1", "'text'", "['label', 'txt']"):
        load_task(files(tmp_path, train_file="train.jsonl", dev_file="dev.jsonl"))


def test_non_integer_number_labels_make_a_regression_unless_told_otherwise(tmp_path):
    _csv(tmp_path / "train.tsv", [["text", "label"], ["a", "0.5"], ["b", "4"], ["c", "2.25"]], "\t")
    _csv(tmp_path / "dev.tsv", [["text", "label"], ["d", "4"]], "\t")
    task = load_task(files(tmp_path))
    assert task.is_regression and [e.label for e in task.splits["train"]] == [0.5, 4.0, 2.25]
    task = load_task(files(tmp_path, type="classification"))
    assert task.labels == ["0.5", "2.25", "4"]  # numbers sort by value, not as text
    with raises_with(DataError, f"{tmp_path / 'train.tsv'}:4", "'2.25'", "['0.5', '4']"):
        load_task(files(tmp_path, labels=["0.5", "4"]))


def test_a_hub_name_is_asked_of_datasets_with_its_subset_and_read_like_glue(monkeypatch):
    # The hub is out of reach here: stand in for it at `datasets.load_dataset`, with GLUE SST-2's shape.
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"]),
                               "idx": datasets.Value("int32")})
    glue = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["hide new secretions", "a charming film"], "label": [0, 1],
                                             "idx": [0, 1]}, features=feats),
        "validation": datasets.Dataset.from_dict({"sentence": ["it 's a lovely film"], "label": [1], "idx": [0]},
                                                 features=feats),
        "test": datasets.Dataset.from_dict({"sentence": ["uneasy mishmash"], "label": [-1], "idx": [0]},
                                           features=feats)})
    asked = []

    def load_dataset(path, name=None, **kw):
        asked.append((path, name))
        return glue

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    task = load_task(hf("glue", name="sst2", subset="sst2", text_columns=["sentence"]))
    assert asked == [("glue", "sst2")]
    assert task.labels == ["negative", "positive"] and task.main_metric == "accuracy"
    assert [e.label for e in task.splits["train"]] == [0, 1] and set(task.splits) == {"train", "dev"}
