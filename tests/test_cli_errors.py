"""The command line's error contract (distill/lab/cli.py): a user error is one line `distill: error: ...`, exit 2, no
traceback, and leaves no run folder; a bug keeps its traceback; every user error derives from one base class."""

import json

import pytest

from distill.lab.cli import main

from .helpers import SMOKE, assert_facts, raises_with, refused, smoke_with, write_file

DISTILBERT_1_99 = ("student: {kind: distilbert, init: teacher, layers: 2, hidden: null, heads: null, ffn: null, "
                   "init_layers: [1, 99]}\n")

# name -> (argv from tmp_path, facts the one line must carry)
CASES = {
    # The two that printed tracebacks before.
    "distilbert init layer out of range": (
        lambda t: ["run", str(smoke_with(t, DISTILBERT_1_99)), "--out", str(t / "run")],
        ["student.init_layers", "teacher layer 99", "1..4"]),
    "augment shard index past the shards": (
        lambda t: ["augment", str(SMOKE), "--num-shards", "2", "--shard-index", "5"],
        ["--shard-index 5", "--num-shards 2"]),
    "augment shards without index": (lambda t: ["augment", str(SMOKE), "--num-shards", "2"],
                                     ["--num-shards", "--shard-index", "together"]),
    "config file not found": (lambda t: ["check", str(t / "none.yaml")], ["config file", "not found", "none.yaml"]),
    "invalid YAML": (lambda t: ["check", str(write_file(t, "bad.yaml", "name: [unclosed\nseed: 1\n"))],
                     ["bad.yaml:2", "not valid YAML"]),
    "unknown key": (lambda t: ["check", str(SMOKE), "--set", "train.lenght_grouped=true"],
                    ["`train.lenght_grouped`", "length_grouped"]),
    "override without value": (lambda t: ["check", str(SMOKE), "--set", "seed"], ["`seed`", "KEY=VALUE"]),
    "resume with nothing to resume": (lambda t: ["run", str(smoke_with(t, "name: nothing-here\n")), "--resume"],
                                      ["--resume", "no unfinished run", "'nothing-here'"]),
    "stages mixing corpus and task data": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--out", str(t / "run")], ["mix"]),
    "general distillation with a fine-tuning teacher": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--set", "stages.1.data=corpus",
                   "--out", str(t / "run")], ["finetune: null"]),
    "missing corpus file": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--set", "stages.1.data=corpus",
                   "--set", "teacher.finetune=null", "--set", f"corpus.sources=[{t / 'none.txt'}]",
                   "--out", str(t / "run")], ["corpus file", "not found", "none.txt"]),
    "missing BiLSTM vectors": (
        lambda t: ["run", str(SMOKE), "--set", "student.kind=bilstm", "--set", f"student.vectors={t / 'v.txt'}",
                   "--set", "stages=[{name: p, losses: {logits_mse: 1}}]", "--out", str(t / "run")],
        ["vectors file", "not found", "v.txt"]),
    "BiLSTM asked for attention": (
        lambda t: ["run", str(SMOKE), "--set", "student.kind=bilstm", "--out", str(t / "run")],
        ["stages.0", "bilstm", "hidden states", "attention"]),
    "missing augmentation tagger": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=augmented", "--set", "augment.method=tang",
                   "--set", "augment.tang.tagger=spacy:/no/such/pipeline", "--out", str(t / "run")],
        ["'/no/such/pipeline'", "not installed"]),
    "missing augmentation masked LM": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=augmented",
                   "--set", f"augment.tinybert.masked_lm={t / 'no-mlm'}", "--out", str(t / "run")],
        ["checkpoint folder", "not found", "no-mlm"]),
    "missing student init folder": (
        lambda t: ["run", str(SMOKE), "--set", f"student.init={t / 'no-student'}", "--out", str(t / "run")],
        ["checkpoint folder", "not found", "no-student"]),
    "unknown packaged model": (
        lambda t: ["run", str(SMOKE), "--set", "teacher.tokenizer=packaged:bert-huge", "--out", str(t / "run")],
        ["packaged", "'bert-huge'"]),
    "sweep seeds not integers": (lambda t: ["sweep", str(SMOKE), "--seeds", "1,two"],
                                 ["--seeds", "'1,two'", "integers"]),
    "sweep grid without values": (lambda t: ["sweep", str(SMOKE), "--grid", "stages.0.lr"],
                                  ["--grid", "`stages.0.lr`", "KEY=V1,V2"]),
    "sweep shard index past the shards": (
        lambda t: ["sweep", str(SMOKE), "--num-shards", "2", "--shard-index", "3"], ["--shard-index 3"]),
    "report of no folder": (lambda t: ["report", str(t / "runs" / "none")], ["runs/none", "no such folder"]),
    "report of a folder without runs": (lambda t: ["report", str(t)], ["no run folders"]),
    "bench of an unknown model": (lambda t: ["bench", "--models", "bert-giant"], ["unknown model", "'bert-giant'"]),
    "bench on a missing GPU": (lambda t: ["bench", "--models", "bilstm", "--device", "cuda:7"], ["cuda:7"]),
    "predict without input": (lambda t: ["predict", str(t)], ["--text", "--file"]),
    "predict from a folder without a student": (lambda t: ["predict", str(t), "--text", "hi"],
                                                ["not an exported student"]),
    "predict with unpaired second texts": (lambda t: ["predict", str(t), "--text", "a", "--text-b", "b",
                                                      "--text-b", "c"], ["1 --text", "2 --text-b"]),
    "adapt-mlm from a missing corpus": (
        lambda t: ["adapt-mlm", "--out", str(t / "mlm"), "--corpus", str(t / "none.txt")], ["none.txt"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_errors_are_one_line_and_exit_2(case, tmp_path, capsys):
    argv, facts = CASES[case]
    code = main(argv(tmp_path))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (case, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("distill: error: "), (case, captured.err)
    assert_facts(lines[0], *facts)
    # A refused run never creates its folder, so the same --out works once the cause is fixed.
    assert not (tmp_path / "run").exists(), case


@pytest.mark.parametrize("case", ["missing GLUE folder", "wrong column"])
def test_a_refused_run_leaves_no_folder_and_the_same_out_works_once_fixed(case, tmp_path, capsys):
    glue = tmp_path / "SST-2"
    rows = ["sentence\tlabel"] + [f"{w} flight {i}\t{int(w == 'good')}" for i in range(20) for w in ("good", "bad")]
    if case == "wrong column":
        glue.mkdir()
        (glue / "train.tsv").write_text("\n".join(r.replace("sentence\t", "text\t") for r in rows) + "\n")
        (glue / "dev.tsv").write_text("\n".join(rows) + "\n")
    f = smoke_with(tmp_path, f"task: {{name: sst2, source: glue, path: {glue}}}\n")
    out = tmp_path / "run"
    err = refused(["run", str(f), "--out", str(out)], capsys)
    facts = {"missing GLUE folder": ["GLUE folder", "not found", str(glue)],
             "wrong column": ["train.tsv:1", "no column", "'sentence'"]}[case]
    assert_facts(err, *facts)
    assert not out.exists()
    glue.mkdir(exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        (glue / name).write_text("\n".join(rows) + "\n")
    assert main(["run", str(f), "--out", str(out), "--set", "stages.0.epochs=1", "--set", "stages.1.epochs=1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["task"] == "sst2"


# Reading vectors is tested in tests/test_augment.py; here, that a refused augmentation keeps the output it
# would have replaced.
VECTOR_CASES = {
    "empty file": (b"", ["vectors.txt", "empty vectors file"]),
    "wrong dimension": (b"the 0.1 0.2 0.3\ncat 0.1 0.2\n", ["vectors.txt:2", "3 values", "found 2"]),
}


@pytest.mark.parametrize("case", sorted(VECTOR_CASES))
def test_vector_errors_keep_an_existing_output(case, tmp_path, capsys):
    raw, facts = VECTOR_CASES[case]
    (tmp_path / "vectors.txt").write_bytes(raw)
    f = smoke_with(tmp_path, f"augment: {{method: tinybert, tinybert: {{vectors: {tmp_path / 'vectors.txt'}}}}}\n")
    previous = tmp_path / "augmented.jsonl"
    previous.write_text(json.dumps({"id": "kept"}) + "\n")
    err = refused(["augment", str(f), "--out", str(previous)], capsys)
    assert_facts(err, *facts)
    assert json.loads(previous.read_text()) == {"id": "kept"}


def test_an_error_that_is_not_the_users_keeps_its_traceback(monkeypatch):
    import distill.lab.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_losses", broken)
    with raises_with(KeyError, "a bug"):
        cli.main(["losses"])


def test_every_user_error_class_derives_from_one_base():
    import importlib
    import pkgutil

    import distill
    import distill.augment
    import distill.students
    import distill.teachers
    from distill.errors import DistillError

    found = []
    for pkg in (distill, distill.teachers, distill.students, distill.augment):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            module = importlib.import_module(info.name)
            found += [obj for obj in vars(module).values()
                      if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == info.name]
    assert len(found) >= 14
    assert all(issubclass(cls, DistillError) for cls in found), [c for c in found if not issubclass(c, DistillError)]
