"""Every flag `distill <subcommand> --help` shows is used, with that subcommand, by a test that asserts its effect.

The meta-test reads the parser and the test files (statically, with `ast`); the tests after it cover the flags no
other test file uses. Heavy imports stay inside the tests, so that the meta-test alone is fast."""

import argparse
import ast
import json
import shutil
from pathlib import Path

import pytest

from distill.lab.cli import build_parser, main

from .helpers import SMOKE

TESTS = Path(__file__).resolve().parent
META_TEST = "test_every_cli_flag_is_used_by_a_test"


def cli_flags() -> dict[str, set[str]]:
    """subcommand -> the option strings its --help shows (without -h/--help)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings if o not in ("-h", "--help")}
            for name, p in sub.choices.items()}


def flags_used(path: Path, commands, skip_function: str | None = None) -> set[tuple[str, str]]:
    """(subcommand, flag) pairs of `path`: in each list or tuple literal, the first string constant naming a
    subcommand, then every later string constant starting with `--` (up to any `=`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == skip_function:
            skipped.update(id(n) for n in ast.walk(node))
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple)) or id(node) in skipped:
            continue
        command = None
        for e in node.elts:
            if not (isinstance(e, ast.Constant) and isinstance(e.value, str)):
                continue
            if command is None:
                if e.value in commands:
                    command = e.value
            elif e.value.startswith("--"):
                used.add((command, e.value.split("=", 1)[0]))
    return used


def test_every_cli_flag_is_used_by_a_test():
    flags = cli_flags()
    used = set()
    for path in sorted(TESTS.glob("*.py")):
        used |= flags_used(path, flags, META_TEST if path.name == Path(__file__).name else None)
    missing = sorted((c, f) for c, fs in flags.items() for f in fs if (c, f) not in used)
    assert not missing, (
        "flags of `distill <subcommand>` that no test uses with that subcommand:\n"
        + "\n".join(f"  distill {c} {f}" for c, f in missing)
        + "\nAdd a test that calls main([<subcommand>, ..., <flag>, ...]) (the subcommand and the flag as string "
          "literals in one list) and asserts the flag's effect (a value recorded, a row present, a length cut, a "
          "check refused...), e.g. in tests/test_cli_flags.py.")


def test_the_scan_pairs_flags_with_the_first_subcommand_of_a_list(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("a = ['x', 'bench', '--out=o', str(1), '--budget', 'predict', '--json']\n"
                 "b = ('--seed', 'run')\n"
                 "def skipped():\n    c = ['report', '--reference']\n")
    assert flags_used(f, {"bench", "predict", "run", "report"}, "skipped") == {
        ("bench", "--out"), ("bench", "--budget"), ("bench", "--json")}


# ---------------------------------------------------------------- shared, cheap fixtures


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer):
    """A run folder of an untrained tiny BERT student (3 labels) with the smoke config (tweets)."""
    from .test_predict import export_bert

    run = tmp_path_factory.mktemp("run")
    export_bert(run / "student", tokenizer, max_position_embeddings=128)
    shutil.copy(SMOKE, run / "config.yaml")
    return run


def sweep_config(folder: Path) -> Path:
    f = folder / "sweep.yaml"
    f.write_text(f"extends: {SMOKE}\nname: flags\nvariants:\n  a: []\n  b: [\"stages.1.epochs=3\"]\nseeds: [1, 2]\n")
    return f


# ---------------------------------------------------------------- adapt-mlm


def test_adapt_mlm_takes_its_encoder_and_training_settings(tmp_path, tokenizer):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the flight was delayed again and again\nthanks for the great service\nlost my bag\n" * 4)
    out = tmp_path / "mlm"
    assert main(["adapt-mlm", "--encoder", str(tmp_path / "enc"), "--corpus", str(corpus), "--out", str(out),
                 "--steps", "2", "--batch-size", "3", "--lr", "0.005", "--max-length", "6", "--seed", "7"]) == 0
    info = json.loads((out / "adaptation.json").read_text())
    assert {k: info[k] for k in ("encoder", "steps", "batch_size", "lr", "max_length", "seed", "texts")} == {
        "encoder": str(tmp_path / "enc"), "steps": 2, "batch_size": 3, "lr": 0.005, "max_length": 6, "seed": 7,
        "texts": 12}
    # The tiny encoder was adapted (not the default packaged MiniLM, 384 wide).
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32


# ---------------------------------------------------------------- sweep, check


def test_sweep_set_overrides_every_run(tmp_path, monkeypatch, capsys):
    import distill.lab.run

    ran = []
    monkeypatch.setattr(distill.lab.run, "run_experiment", lambda cfg, out, **kw: ran.append((cfg, out)))
    out = tmp_path / "runs"
    assert main(["sweep", str(sweep_config(tmp_path)), "--out", str(out), "--set", "stages.0.lr=0.0123",
                 "--set", "seeds=[5]"]) == 0
    assert "0/2 runs of" in capsys.readouterr().out  # nothing finished: the fake run writes nothing
    assert [(o.relative_to(out).as_posix(), c.seed) for c, o in ran] == [("a/seed5", 5), ("b/seed5", 5)]
    assert [c.stages[0].lr for c, _ in ran] == [0.0123, 0.0123]
    assert [c.stages[1].epochs for c, _ in ran] == [2, 3]  # the variants still apply on top


def test_check_variant_plans_the_named_variant(tmp_path, capsys):
    config = sweep_config(tmp_path)
    planned = {}
    for variant in ("a", "b"):
        assert main(["check", str(config), "--variant", variant, "--no-estimate"]) == 0
        planned[variant] = capsys.readouterr().out
    assert "planned below: variant 'a'" in planned["a"] and "planned below: variant 'b'" in planned["b"]
    # The plan is the variant's: b trains its second stage for 3 epochs, a for 2.
    assert "3 epochs x" not in planned["a"] and "3 epochs x" in planned["b"]
    assert main(["check", str(config), "--variant", "c", "--no-estimate"]) == 2
    assert "--variant 'c'" in capsys.readouterr().err


# ---------------------------------------------------------------- predict


def test_predict_batch_size_and_max_length(tiny_run, monkeypatch, capsys):
    from distill.lab.predict import Predictor, load_predictor

    shapes = []
    encode = Predictor.encode

    def recording(self, texts, texts_b=None):
        enc = encode(self, texts, texts_b)
        shapes.append(tuple(enc["input_ids"].shape))
        return enc

    monkeypatch.setattr(Predictor, "encode", recording)
    texts = ["the flight was late again and nobody at the gate could tell us why", "thanks", "ok", "lost bag", "hi"]
    assert main(["predict", str(tiny_run), *(a for t in texts for a in ("--text", t)), "--json", "--batch-size", "2",
                 "--max-length", "6"]) == 0
    # Five texts in batches of 2, 2 and 1; the long first one cut to 6 tokens.
    assert [rows for rows, _ in shapes] == [2, 2, 1] and shapes[0][1] == 6
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = load_predictor(tiny_run, max_length=6).predict(texts)
    assert [p["text"] for p in printed] == texts
    for got, row in zip(printed, want, strict=True):
        assert got["label"] == row["label"] and got["probability"] == pytest.approx(row["probability"], abs=1e-6)


# ---------------------------------------------------------------- bench


@pytest.fixture
def tiny_shape(monkeypatch):
    from distill.lab import bench

    monkeypatch.setitem(bench.SHAPES, "tiny", ("tinybert", {"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}))
    return ["--models", "tiny", "--budget", "0", "--seq-len", "8", "--batch", "2"]


def table_rows(printed: str) -> dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line for line in printed.splitlines() if line.startswith("| ")}


def test_bench_compile_adds_compiled_rows_and_out_writes_the_table(tiny_shape, monkeypatch, tmp_path, capsys):
    import torch

    # torch.compile proper needs a C compiler and minutes on CPU: record the request, run the model eagerly.
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: compiled.append(model) or model)
    out = tmp_path / "bench.md"
    assert main(["bench", *tiny_shape, "--compile", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert [type(m).__name__ for m in compiled] == ["BertForSequenceClassification"]
    assert list(table_rows(printed))[1:] == ["tiny", "tiny compiled"]  # after the header row
    assert out.read_text() == printed


def test_bench_student_scores_accuracy_limit_dev_examples(tiny_shape, tiny_run, monkeypatch, capsys):
    from distill.lab import bench

    scored = []
    dev_metrics = bench._dev_metrics

    def recording(task, dev, logits):
        scored.append(len(dev))
        return dev_metrics(task, dev, logits)

    monkeypatch.setattr(bench, "_dev_metrics", recording)
    assert main(["bench", *tiny_shape, "--student", str(tiny_run), "--accuracy-limit", "5"]) == 0
    rows = table_rows(capsys.readouterr().out)
    student = rows[f"student {tiny_run / 'student'}"]
    assert scored == [5]
    assert "macro_f1 " in student.split(" | ")[-1] and rows["tiny"].endswith("| - |")  # only the student is scored
