"""A student registered from one file outside distillery (`tests/toy_student.py`) goes through every command that
takes a student: run, check, predict, export to ONNX (with its parity check), bench and the model card."""

import json

import numpy as np
import pytest
import torch

from distill.lab.cli import main
from distill.student_registry import registered

from . import toy_student
from .helpers import SMOKE, assert_facts, quiet, raises_with

DIM = 12
TEXTS = ["the flight was late again", "thanks for the upgrade", "ok"]


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    """Registered while these tests run only: other modules see the built-in students alone."""
    registered().setdefault("toy", toy_student.Toy())
    yield
    registered().pop("toy", None)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.yaml"
    # The smoke run's prediction stage (soft cross-entropy on logits) without its intermediate stage.
    path.write_text(f"extends: {SMOKE}\nname: toy-smoke\nstudent: {{kind: toy, dim: {DIM}}}\n"
                    "stages:\n  - {name: intermediate, drop: true}\n")
    return path


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy-run") / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    return out


def metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_run_trains_and_describes_the_toy(run):
    from distill.lab.records import RunMetrics
    from distill.lab.summary import summary_text

    m = metrics(run)["student"]
    vocab = m["vocab"]
    assert m["kind"] == "toy" and m["hidden"] == DIM and m["parameters"] == vocab * DIM + DIM * 3 + 3
    assert m["encoder_flops_per_token"] is None  # no transformer encoder to compare with the teacher's
    assert 0.0 <= m["dev"]["macro_f1"] <= 1.0
    assert json.loads((run / "student" / "config.json").read_text())["model_type"] == toy_student.FOLDER_TYPE
    assert f"student  toy-{DIM}" in summary_text(RunMetrics.load(run), run)  # the closing summary names its shape


def test_check_plans_the_toy_and_refuses_what_it_cannot_do(config, capsys):
    assert main(["check", str(config), "--no-estimate"]) == 0
    assert f"student:  toy: mean-pooled embeddings of width {DIM}, one linear layer" in capsys.readouterr().out
    assert main(["check", str(config), "--no-estimate", "--set", "stages.0.losses={hidden_mse: 1}"]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "stages.0", "toy student", "no hidden states")
    assert main(["check", str(config), "--no-estimate", "--set", "student.layers=2"]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "`student.layers`", "dim", "student.kind: toy")


def test_predict_gives_the_models_own_probabilities(run, capsys):
    assert main(["predict", str(run), *(a for t in TEXTS for a in ("--text", t)), "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    from transformers import AutoTokenizer

    model = toy_student.load_toy(run / "student")
    enc = AutoTokenizer.from_pretrained(run / "student")(TEXTS, padding=True, truncation=True, max_length=32,
                                                         return_tensors="pt")
    with torch.no_grad():
        want = model(enc["input_ids"], enc["attention_mask"]).softmax(-1)
    labels = model.config.labels
    assert labels == ["negative", "neutral", "positive"]
    for row, p in zip(printed, want, strict=True):
        assert row["label"] == labels[int(p.argmax())]
        assert [row["probabilities"][lab] for lab in labels] == pytest.approx(p.tolist(), abs=1e-5)


def test_export_writes_an_onnx_graph_that_passes_its_parity_check(run):
    assert main(["export", str(run), "--format", "onnx"]) == 0
    report = json.loads((run / "student" / "onnx.json").read_text())
    assert report["kind"] == "toy" and report["inputs"] == toy_student.INPUTS
    assert report["parity_source"] == "the run's tweets dev split" and report["fp32"]["max_abs_diff"] <= 1e-5
    import onnxruntime as ort

    from distill.lab.predict import load_predictor

    pred = load_predictor(run)
    inputs = pred.encode(TEXTS)
    got = ort.InferenceSession(str(run / "student" / "model.onnx")).run(
        ["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(got, pred.logits(TEXTS).numpy(), atol=1e-5)


def test_bench_measures_the_toy_shape_and_the_trained_toy(run, monkeypatch, capsys):
    from distill.lab import bench

    monkeypatch.setitem(bench.SHAPES, "tiny", ("tinybert", {"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}))
    monkeypatch.setitem(bench.SHAPES, "toy8", ("toy", {"dim": 8}))
    rows = bench.run_bench(["tiny", "toy8"], seq_len=8, batch=2, budget_s=0, student=str(run), log=quiet)
    assert [r.name for r in rows][:2] == ["tiny", "toy8"] and rows[2].name.startswith("student ")
    assert rows[1].flops == 8 * 8 + 2 * 8 * 2 and rows[2].flops == 8 * DIM + 2 * DIM * 3
    # The trained student's dev metrics through the predictor are the run's own.
    assert rows[2].accuracy["macro_f1"] == pytest.approx(metrics(run)["student"]["dev"]["macro_f1"], abs=1e-6)
    assert main(["bench", "--models", "tiny,toy8", "--student", str(run), "--budget", "0", "--seq-len", "8",
                 "--batch", "2", "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert "| toy8 |" in table and f"| student {run / 'student'} |" in table


def test_the_model_card_describes_the_toy(run):
    assert main(["card", str(run)]) == 0
    card = (run / "student" / "README.md").read_text()
    front = card.split("\n---\n")[0]
    assert "library_name" not in front and "- toy" in front  # not a transformers model; tagged with its kind
    assert f"# toy-smoke: a toy student (mean-pooled embeddings, width {DIM})" in card
    assert 'model = load_toy("path/to/student")' in card and "distill predict path/to/student" in card
    assert "layer map" in card and "| prediction |" in card



def test_an_installed_package_registers_its_student_through_an_entry_point(monkeypatch, tmp_path):
    from importlib.metadata import EntryPoint

    from distill import student_registry as reg

    # A package of its own whose import registers the toy, as `pip install` of one declaring
    # `[project.entry-points."distill.students"] toy = "toy_plugin"` would make visible.
    (tmp_path / "toy_plugin.py").write_text(
        "from distill.student_registry import register_student\n"
        "from tests.toy_student import Toy, ToyStudentConfig\n"
        "register_student('toy', config=ToyStudentConfig)(Toy)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = {k: v for k, v in registered().items() if k != "toy"}
    monkeypatch.setattr(reg, "_STUDENTS", registry)
    monkeypatch.setattr(reg, "_loaded_entry_points", False)
    installed = {reg.ENTRY_POINTS: [EntryPoint("toy", "toy_plugin", reg.ENTRY_POINTS)]}
    monkeypatch.setattr(reg.importlib.metadata, "entry_points", lambda group: installed.get(group, []))
    assert isinstance(reg.get_student("toy"), toy_student.Toy)

    # A plugin that cannot be imported is named, with why, rather than surfacing as an unknown kind.
    installed[reg.ENTRY_POINTS] = [EntryPoint("broken", "no_such_package.student", reg.ENTRY_POINTS)]
    monkeypatch.setattr(reg, "_loaded_entry_points", False)
    with raises_with(reg.StudentError, "'broken'", "no_such_package.student", "ModuleNotFoundError"):
        reg.get_student("tinybert")
