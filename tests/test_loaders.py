"""distill/loaders.py: reading GLUE, generic CSV/TSV and the packaged tweets into labelled splits, and the data
errors (file, line, column, label) a bad file is refused with."""

from collections import Counter

import pytest

from distill.config import TaskConfig
from distill.loaders import DataError, load_csv, load_glue, load_task, load_tweets

from .helpers import assert_facts, raises_with, refused, smoke_with


def tsv(path, lines):
    path.write_text("\n".join("\t".join(r) for r in lines) + "\n", encoding="utf-8")
    return path


def test_glue_sst2_reads_by_header(tmp_path):
    tsv(tmp_path / "train.tsv", [["sentence", "label"], ["a fine film", "1"], ["dull", "0"]])
    tsv(tmp_path / "dev.tsv", [["sentence", "label"], ["great", "1"]])
    task = load_glue("SST-2", tmp_path)
    assert task.name == "sst2" and task.labels == ["0", "1"] and task.main_metric == "accuracy"
    assert [(e.text_a, e.label) for e in task.splits["train"]] == [("a fine film", 1), ("dull", 0)]
    assert task.splits["train"][0].text_b is None


def test_glue_mnli_uses_glue_label_order_not_hf_datasets(tmp_path):
    header = ["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2",
              "label1", "gold_label"]
    row = lambda p, h, y: ["0", "1", "2", "g", "", "", "", "", p, h, y, y]  # noqa: E731
    tsv(tmp_path / "train.tsv", [header, row("a", "b", "contradiction"), row("c", "d", "entailment"),
                                 row("e", "f", "neutral")])
    tsv(tmp_path / "dev_matched.tsv", [header, row("x", "y", "neutral")])
    task = load_glue("mnli", tmp_path)
    assert task.labels == ["contradiction", "entailment", "neutral"]
    assert [e.label for e in task.splits["train"]] == [0, 1, 2]
    assert task.splits["dev"][0].text_b == "y" and task.is_pair


def test_glue_cola_has_no_header(tmp_path):
    tsv(tmp_path / "train.tsv", [["gj04", "1", "", "Our friends won't buy this analysis."]])
    tsv(tmp_path / "dev.tsv", [["gj04", "0", "*", "They drank the pub."]])
    task = load_glue("cola", tmp_path)
    assert task.splits["dev"][0].text_a == "They drank the pub." and task.splits["dev"][0].label == 0
    assert task.main_metric == "mcc"


def test_glue_stsb_is_regression(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]
    tsv(tmp_path / "train.tsv", [header, ["0", "g", "f", "y", "0", "s", "s", "a man", "a person", "3.8"]])
    tsv(tmp_path / "dev.tsv", [header, ["0", "g", "f", "y", "0", "s", "s", "x", "y", "0.5"]])
    task = load_glue("sts-b", tmp_path)
    assert task.is_regression and task.num_labels == 1 and task.splits["train"][0].label == pytest.approx(3.8)


def test_malformed_rows_name_file_and_line(tmp_path):
    tsv(tmp_path / "train.tsv", [["sentence", "label"], ["ok", "1"], ["missing label"]])
    tsv(tmp_path / "dev.tsv", [["sentence", "label"], ["ok", "1"]])
    with raises_with(DataError, "train.tsv:3", "at least 2 fields"):
        load_glue("sst2", tmp_path)
    tsv(tmp_path / "train.tsv", [["sentence", "label"], ["ok", "positive"]])
    with raises_with(DataError, "train.tsv:2", "unknown label", "'positive'", "['0', '1']"):
        load_glue("sst2", tmp_path)
    tsv(tmp_path / "train.tsv", [["sentence", "label"], ["  ", "1"]])
    with raises_with(DataError, "train.tsv:2", "empty text"):
        load_glue("sst2", tmp_path)
    (tmp_path / "train.tsv").write_bytes(b"sentence\tlabel\nfine\t1\nbad \xff byte\t0\n")
    with raises_with(DataError, "train.tsv:3", "UTF-8"):
        load_glue("sst2", tmp_path)
    tsv(tmp_path / "train.tsv", [["text", "label"], ["ok", "1"]])
    with raises_with(DataError, "train.tsv:1", "no column", "'sentence'"):
        load_glue("sst2", tmp_path)
    with raises_with(DataError, "not found", str(tmp_path / "missing")):
        load_glue("sst2", tmp_path / "missing")


def test_generic_tsv_korean_nsmc_style(tmp_path):
    tsv(tmp_path / "ratings_train.txt", [["id", "document", "label"], ["1", "아 더빙.. 진짜 짜증나네요", "0"],
                                          ["2", "너무재밓었다", "1"]])
    tsv(tmp_path / "ratings_test.txt", [["id", "document", "label"], ["3", "굳 ㅋ", "1"]])
    cfg = TaskConfig(name="nsmc", source="csv", path=str(tmp_path), train_file="ratings_train.txt",
                     dev_file="ratings_test.txt", text_columns=["document"], label_column="label")
    task = load_csv(cfg)
    assert task.labels == ["0", "1"] and task.splits["dev"][0].text_a == "굳 ㅋ"
    assert task.metrics == ("accuracy", "macro_f1")


def test_generic_csv_pair_with_declared_labels(tmp_path):
    (tmp_path / "train.csv").write_text('q1,q2,y\n"a, b",c,dup\nd,e,diff\n', encoding="utf-8")
    (tmp_path / "dev.csv").write_text("q1,q2,y\nf,g,same\n", encoding="utf-8")
    cfg = TaskConfig(name="pairs", source="csv", path=str(tmp_path), train_file="train.csv", dev_file="dev.csv",
                     text_columns=["q1", "q2"], label_column="y", labels=["diff", "dup"])
    with raises_with(DataError, "dev.csv:2", "unknown label", "'same'"):
        load_csv(cfg)
    (tmp_path / "dev.csv").write_text("q1,q2,y\nf,g,dup\n", encoding="utf-8")
    task = load_csv(cfg)
    assert task.splits["train"][0].text_a == "a, b" and task.splits["train"][0].label == 1


def test_tweets_split_is_seeded_stratified_and_keeps_duplicates_together():
    a, b = load_tweets(0), load_tweets(0)
    assert [e.id for e in a.splits["dev"]] == [e.id for e in b.splits["dev"]]
    c = load_tweets(1)
    assert [e.id for e in a.splits["dev"]] != [e.id for e in c.splits["dev"]]
    texts = {name: {e.text_a.lower() for e in exs} for name, exs in a.splits.items()}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sum(sizes.values()) > 37000 and 0.78 < sizes["train"] / sum(sizes.values()) < 0.82
    share = lambda exs: Counter(e.label for e in exs)[2] / len(exs)  # noqa: E731 positive class
    assert abs(share(a.splits["train"]) - share(a.splits["dev"])) < 0.02


def test_limits_subsample_deterministically():
    cfg = TaskConfig(train_limit=50, dev_limit=20, test_limit=10)
    t1, t2 = load_task(cfg), load_task(cfg)
    assert [len(t1.splits[s]) for s in ("train", "dev", "test")] == [50, 20, 10]
    assert [e.id for e in t1.splits["train"]] == [e.id for e in t2.splits["train"]]


# Through the command line (`distill augment` loads the task first): a task folder whose train.tsv (or dev.tsv) is
# missing, malformed or undecodable is refused naming the file and line.
def data_folder(tmp_path, rows: list[str], name="train.tsv", raw: bytes | None = None):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(raw if raw is not None else ("\n".join(rows) + "\n").encode())
    return d


def csv_task(data) -> str:
    return f"task: {{name: mine, source: csv, path: {data}, train_file: train.tsv, dev_file: dev.tsv}}\n"


GOOD_ROWS = ["text\tlabel", "a fine day\tpos", "a bad day\tneg"]

# name -> (train rows or bytes or None for no file, dev rows or None for good ones, facts the error carries)
DATA_CASES = {
    "missing file": (None, None, ["data file", "not found", "data/train.tsv"]),
    "wrong columns": (["sentence\tlabel", "a\tpos"], None, ["train.tsv:1", "no column", "'text'",
                                                          "['sentence', 'label']"]),
    "unknown label": (["text\tlabel", "a\tpos"], ["text\tlabel", "b\tmaybe"],
                      ["dev.tsv:2", "unknown label", "'maybe'", "['pos']"]),
    "empty text": (["text\tlabel", "a\tpos", " \tpos"], None, ["train.tsv:3", "empty text", "'text'"]),
    "non-UTF8 bytes": (b"text\tlabel\na\tpos\n\xff\xfe bad\tpos\n", None, ["train.tsv:3", "UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data_errors(case, tmp_path, capsys):
    train, dev, facts = DATA_CASES[case]
    if train is None:
        data = tmp_path / "data"
        data.mkdir()
    elif isinstance(train, bytes):
        data = data_folder(tmp_path, [], raw=train)
    else:
        data = data_folder(tmp_path, train)
    if dev is not None or train is not None:
        data_folder(tmp_path, dev or GOOD_ROWS, "dev.tsv")
    f = smoke_with(tmp_path, csv_task(data), "bad.yaml")
    err = refused(["augment", str(f)], capsys)
    assert_facts(err, *facts)


def test_a_one_megabyte_line_loads_and_is_truncated(tmp_path):
    from distill.encoded import encode_examples
    from distill.teachers.load import load_tokenizer

    long = " ".join(["word"] * 200_000)  # 1 MB of text on one line
    data = data_folder(tmp_path, ["text\tlabel", f"{long}\tpos", "short\tneg"])
    data_folder(tmp_path, GOOD_ROWS, "dev.tsv")
    task = load_task(TaskConfig(name="mine", source="csv", path=str(data)))
    assert len(task.splits["train"][0].text_a) == len(long)
    ds = encode_examples(task.splits["train"], load_tokenizer("packaged:all-minilm-l6-v2"), 64, False)
    assert ds.lengths()[0] == 64
