"""The command line's error paths, walked: every user error is one line `distill: error: ...` on stderr with
exit status 2 (no traceback), a run refused by its checks leaves no run folder behind, and an error that is not
a user error (a bug) keeps its traceback."""

import pytest

from distill.lab.cli import main

from .helpers import SMOKE


def _write(tmp_path, name: str, body: str):
    f = tmp_path / name
    f.write_text(body)
    return f


def smoke_with(tmp_path, body: str):
    return _write(tmp_path, "cfg.yaml", f"extends: {SMOKE}\n{body}")


DISTILBERT_1_99 = ("student: {kind: distilbert, init: teacher, layers: 2, hidden: null, heads: null, ffn: null, "
                   "init_layers: [1, 99]}\n")

# name -> (argv from tmp_path, fragments the one line must contain)
CASES = {
    # The two that printed tracebacks before.
    "distilbert init layer out of range": (
        lambda t: ["run", str(smoke_with(t, DISTILBERT_1_99)), "--out", str(t / "run")],
        ["teacher layer 99 is outside 1..4"]),
    "augment shard index past the shards": (
        lambda t: ["augment", str(SMOKE), "--num-shards", "2", "--shard-index", "5"],
        ["--shard-index 5 of --num-shards 2"]),
    "augment shards without index": (lambda t: ["augment", str(SMOKE), "--num-shards", "2"], ["go together"]),
    "config file not found": (lambda t: ["check", str(t / "none.yaml")], ["config file not found"]),
    "invalid YAML": (lambda t: ["check", str(_write(t, "bad.yaml", "name: [unclosed\nseed: 1\n"))],
                     ["bad.yaml:", "not valid YAML"]),
    "unknown key": (lambda t: ["check", str(SMOKE), "--set", "train.lenght_grouped=true"],
                    ["unknown key `train.lenght_grouped`", "length_grouped"]),
    "override without value": (lambda t: ["check", str(SMOKE), "--set", "seed"], ["expected KEY=VALUE"]),
    "resume with nothing to resume": (lambda t: ["run", str(smoke_with(t, "name: nothing-here\n")), "--resume"],
                                      ["no unfinished run of 'nothing-here'"]),
    "stages mixing corpus and task data": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--out", str(t / "run")], ["mix"]),
    "general distillation with a fine-tuning teacher": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--set", "stages.1.data=corpus",
                   "--out", str(t / "run")], ["finetune: null"]),
    "missing corpus file": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=corpus", "--set", "stages.1.data=corpus",
                   "--set", "teacher.finetune=null", "--set", f"corpus.sources=[{t / 'none.txt'}]",
                   "--out", str(t / "run")], ["corpus file not found"]),
    "missing BiLSTM vectors": (
        lambda t: ["run", str(SMOKE), "--set", "student.kind=bilstm", "--set", f"student.vectors={t / 'v.txt'}",
                   "--set", "stages=[{name: p, losses: {logits_mse: 1}}]", "--out", str(t / "run")],
        ["vectors file not found"]),
    "BiLSTM asked for attention": (
        lambda t: ["run", str(SMOKE), "--set", "student.kind=bilstm", "--out", str(t / "run")],
        ["a bilstm student has no hidden states or attention", "stages.0"]),
    "missing augmentation tagger": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=augmented", "--set", "augment.method=tang",
                   "--set", "augment.tang.tagger=spacy:/no/such/pipeline", "--out", str(t / "run")],
        ["is not installed"]),
    "missing augmentation masked LM": (
        lambda t: ["run", str(SMOKE), "--set", "stages.0.data=augmented",
                   "--set", f"augment.tinybert.masked_lm={t / 'no-mlm'}", "--out", str(t / "run")],
        ["checkpoint folder not found", "no-mlm"]),
    "missing student init folder": (
        lambda t: ["run", str(SMOKE), "--set", f"student.init={t / 'no-student'}", "--out", str(t / "run")],
        ["checkpoint folder not found", "no-student"]),
    "unknown packaged model": (
        lambda t: ["run", str(SMOKE), "--set", "teacher.tokenizer=packaged:bert-huge", "--out", str(t / "run")],
        ["unknown packaged resource 'bert-huge'"]),
    "sweep seeds not integers": (lambda t: ["sweep", str(SMOKE), "--seeds", "1,two"], ["--seeds '1,two'"]),
    "sweep grid without values": (lambda t: ["sweep", str(SMOKE), "--grid", "stages.0.lr"], ["expected KEY=V1,V2"]),
    "sweep shard index past the shards": (
        lambda t: ["sweep", str(SMOKE), "--num-shards", "2", "--shard-index", "3"], ["--shard-index 3"]),
    "report of no folder": (lambda t: ["report", str(t / "runs" / "none")], ["no such folder"]),
    "report of a folder without runs": (lambda t: ["report", str(t)], ["no run folders"]),
    "bench of an unknown model": (lambda t: ["bench", "--models", "bert-giant"], ["unknown model 'bert-giant'"]),
    "bench on a missing GPU": (lambda t: ["bench", "--models", "bilstm", "--device", "cuda:7"], ["cuda:7"]),
    "predict without input": (lambda t: ["predict", str(t)], ["--text", "--file"]),
    "predict from a folder without a student": (lambda t: ["predict", str(t), "--text", "hi"],
                                                ["not an exported student"]),
    "predict with unpaired second texts": (lambda t: ["predict", str(t), "--text", "a", "--text-b", "b",
                                                      "--text-b", "c"], ["2 --text-b"]),
    "adapt-mlm from a missing corpus": (
        lambda t: ["adapt-mlm", "--out", str(t / "mlm"), "--corpus", str(t / "none.txt")], ["none.txt"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_errors_are_one_line_and_exit_2(case, tmp_path, capsys):
    argv, fragments = CASES[case]
    code = main(argv(tmp_path))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (case, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("distill: error: "), (case, captured.err)
    for fragment in fragments:
        assert fragment in lines[0], (case, lines[0])
    # A refused run never creates its folder, so the same --out works once the cause is fixed.
    assert not (tmp_path / "run").exists(), case


def test_an_error_that_is_not_the_users_keeps_its_traceback(monkeypatch):
    import distill.lab.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_losses", broken)
    with pytest.raises(KeyError, match="a bug"):
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
