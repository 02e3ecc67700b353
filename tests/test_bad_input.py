"""Bad input, case by case: each is refused with a message naming the file, line, key or value and what was
expected, before anything is trained, and nothing already written is lost."""

import json

import pytest

from distill.lab.cli import main

from .helpers import SMOKE


def config(tmp_path, body: str, name: str = "bad.yaml"):
    f = tmp_path / name
    f.write_text(f"extends: {SMOKE}\n" + body)
    return f


def tsv(tmp_path, rows: list[str], name="train.tsv", raw: bytes | None = None):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(raw if raw is not None else ("\n".join(rows) + "\n").encode())
    return d


def csv_task(data) -> str:
    return f"task: {{name: mine, source: csv, path: {data}, train_file: train.tsv, dev_file: dev.tsv}}\n"


GOOD_ROWS = ["text\tlabel", "a fine day\tpos", "a bad day\tneg"]


def run_cli(args, capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    return err


CONFIG_CASES = {
    "unknown key": ("stages:\n  - {name: intermediate, epoch: 2}\n",
                    ["unknown key `stages.0.epoch`", "valid keys in `stages.0`", "epochs"]),
    "wrong type": ("task: {max_length: long}\n", ["`task.max_length` = 'long': expected an integer"]),
    # A child's stages merge into its parent's by name (distill/config.py).
    "stage without a name": ("stages:\n  - {epochs: 1, losses: {hard_ce: 1}}\n",
                             ["`stages.0`", "no `name`", "intermediate, prediction"]),
    "unknown loss": ("stages:\n  - {name: x, losses: {atention_mse: 1}}\n",
                     ["unknown loss 'atention_mse'", "attention_mse"]),
    "unknown student": ("student: {kind: transformer}\n", ["`student.kind` = 'transformer'", "'tinybert'"]),
    # Each stage's kept evaluation and its history are filed under its name: two stages of one name would mix.
    "repeated stage name": ("stages:\n  - {name: x, losses: {hard_ce: 1}}\n  - {name: x, losses: {hard_ce: 1}}\n",
                            ["`stages.1.name` = 'x'", "`stages.0`", "unique"]),
    "bad probability": ("augment: {tang: {p_mask: 1.5}}\n", ["`augment.tang.p_mask` = 1.5", "[0, 1]"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors(case, tmp_path, capsys):
    body, expected = CONFIG_CASES[case]
    f = config(tmp_path, body)
    err = run_cli(["check", str(f)], capsys)
    assert str(f) in err
    for fragment in expected:
        assert fragment in err, (case, err)


def test_impossible_layer_map_and_widths_without_projection_stop_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    f = config(tmp_path, "stages:\n  - {name: intermediate, layer_map: [[1, 9]]}\n")
    err = run_cli(["run", str(f), "--out", str(out)], capsys)
    assert "stages.0 (intermediate).layer_map" in err and "teacher layer 9 is outside 1..4" in err
    # Refused before the run folder was written to; what was there is untouched.
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    f = config(tmp_path, "train: {projection: none}\n", "width.yaml")
    err = run_cli(["run", str(f), "--out", str(tmp_path / "run2")], capsys)
    assert "student width 32 and teacher width 64 need a projection" in err and "train.projection" in err
    assert not (tmp_path / "run2").exists()


DATA_CASES = {
    "missing file": (None, None, ["data file not found:", "data/train.tsv"]),
    "wrong columns": (["sentence\tlabel", "a\tpos"], None, ["train.tsv:1: no column 'text'", "['sentence', 'label']"]),
    "unknown label": (["text\tlabel", "a\tpos"], ["text\tlabel", "b\tmaybe"],
                      ["dev.tsv:2: unknown label 'maybe'", "expected one of ['pos']"]),
    "empty text": (["text\tlabel", "a\tpos", " \tpos"], None, ["train.tsv:3: empty text in column 'text'"]),
    "non-UTF8 bytes": (b"text\tlabel\na\tpos\n\xff\xfe bad\tpos\n", None, ["train.tsv:3", "UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data_errors(case, tmp_path, capsys):
    train, dev, expected = DATA_CASES[case]
    if train is None:
        data = tmp_path / "data"
        data.mkdir()
    elif isinstance(train, bytes):
        data = tsv(tmp_path, [], raw=train)
    else:
        data = tsv(tmp_path, train)
    if dev is not None or train is not None:
        tsv(tmp_path, dev or GOOD_ROWS, "dev.tsv")
    f = config(tmp_path, csv_task(data))
    err = run_cli(["augment", str(f)], capsys)  # loading the task is the first thing it does
    for fragment in expected:
        assert fragment in err, (case, err)


def test_a_one_megabyte_line_loads_and_is_truncated(tmp_path):
    from distill.config import TaskConfig
    from distill.encoded import encode_examples
    from distill.loaders import load_task
    from distill.teachers.load import load_tokenizer

    long = " ".join(["word"] * 200_000)  # 1 MB of text on one line
    data = tsv(tmp_path, ["text\tlabel", f"{long}\tpos", "short\tneg"])
    tsv(tmp_path, GOOD_ROWS, "dev.tsv")
    task = load_task(TaskConfig(name="mine", source="csv", path=str(data)))
    assert len(task.splits["train"][0].text_a) == len(long)
    ds = encode_examples(task.splits["train"], load_tokenizer("packaged:all-minilm-l6-v2"), 64, False)
    assert ds.lengths()[0] == 64


def test_missing_checkpoint_and_mismatched_tokenizer(tmp_path, capsys):
    f = config(tmp_path, f"teacher: {{checkpoint: {tmp_path / 'nowhere'}, random: null, tokenizer: null}}\n")
    err = run_cli(["run", str(f), "--out", str(tmp_path / "r1")], capsys)
    assert str(tmp_path / "nowhere") in err
    # A 64-word tokenizer folder for a teacher whose embeddings have 30522 rows: refused, naming both sizes.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                                        [f"w{i}" for i in range(59)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(tmp_path / "tok")
    from .helpers import tiny_bert_config

    tiny_bert_config(vocab_size=64).save_pretrained(tmp_path / "tok")  # another model's folder
    f = config(tmp_path, f"teacher: {{checkpoint: packaged:all-minilm-l6-v2, random: null, tokenizer: "
                         f"{tmp_path / 'tok'}}}\n", "tok.yaml")
    err = run_cli(["run", str(f), "--out", str(tmp_path / "r2")], capsys)
    assert "tokenizer" in err and "64" in err and "30522" in err and "does not match" in err


VECTOR_CASES = {
    "empty file": (b"", ["empty vectors file"]),
    "wrong dimension": (b"the 0.1 0.2 0.3\ncat 0.1 0.2\n",
                        ["vectors.txt:2: expected 3 values after the word, found 2"]),
}


@pytest.mark.parametrize("case", sorted(VECTOR_CASES))
def test_vector_errors_keep_an_existing_output(case, tmp_path, capsys):
    raw, expected = VECTOR_CASES[case]
    (tmp_path / "vectors.txt").write_bytes(raw)
    f = config(tmp_path, f"augment: {{method: tinybert, tinybert: {{vectors: {tmp_path / 'vectors.txt'}}}}}\n")
    previous = tmp_path / "augmented.jsonl"
    previous.write_text(json.dumps({"id": "kept"}) + "\n")
    err = run_cli(["augment", str(f), "--out", str(previous)], capsys)
    for fragment in expected:
        assert fragment in err, (case, err)
    assert json.loads(previous.read_text()) == {"id": "kept"}


@pytest.mark.parametrize("case", ["missing GLUE folder", "wrong column"])
def test_a_refused_run_leaves_no_folder_and_the_same_out_works_once_fixed(case, tmp_path, capsys):
    glue = tmp_path / "SST-2"
    rows = ["sentence\tlabel"] + [f"{w} flight {i}\t{int(w == 'good')}" for i in range(20) for w in ("good", "bad")]
    if case == "wrong column":
        glue.mkdir()
        (glue / "train.tsv").write_text("\n".join(r.replace("sentence\t", "text\t") for r in rows) + "\n")
        (glue / "dev.tsv").write_text("\n".join(rows) + "\n")
    f = config(tmp_path, f"task: {{name: sst2, source: glue, path: {glue}}}\n")
    out = tmp_path / "run"
    err = run_cli(["run", str(f), "--out", str(out)], capsys)
    assert ("GLUE folder not found" if case == "missing GLUE folder" else "train.tsv:1: no column 'sentence'") in err
    assert not out.exists()
    glue.mkdir(exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        (glue / name).write_text("\n".join(rows) + "\n")
    assert main(["run", str(f), "--out", str(out), "--set", "stages.0.epochs=1", "--set", "stages.1.epochs=1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["task"] == "sst2"
