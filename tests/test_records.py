"""The run records' schema (`distill.lab.records`): what a run writes reads back whole, the published records of
older runs load unchanged, and a malformed file is refused naming the file and the key."""

import json
from pathlib import Path

import pytest

from distill.lab.records import (
    GeneralFacts,
    GitState,
    Ratios,
    RecordError,
    RunFailure,
    RunInfo,
    RunMetrics,
    StudentFacts,
    TaskFacts,
    TeacherFacts,
    TeacherTaskFacts,
)

from .helpers import raises_with

PUBLISHED = Path(__file__).resolve().parents[1] / "experiments/ablations/tweets/results/runs"


def task_metrics() -> RunMetrics:
    return RunMetrics(
        name="exp", main_metric="macro_f1",
        teacher=TeacherFacts(parameters=1000, layers=2, hidden=32, encoder_flops_per_token=640,
                             scores={"dev": {"macro_f1": 0.9}, "dev_mismatched": None, "test": {"macro_f1": 0.8}},
                             source="packaged:x",
                             task=TeacherTaskFacts(cache_key="abc", gate={"margin": 0.01}, augmented_labels=None,
                                                   majority_baseline={"dev": 0.3, "test": 0.31})),
        student=StudentFacts(parameters=100, description={"kind": "bilstm", "layers": 1, "hidden": 8, "vocab": 50},
                             scores={"dev": {"macro_f1": 0.7, "loss/kl_div": 0.2}, "test": {"macro_f1": 0.6}},
                             eval_examples_per_s=123.4, predictions="predictions.safetensors"),
        ratios=Ratios(0.1, None, 0.7 / 0.9), history=[{"stage": "prediction", "macro_f1": 0.7}], wall_seconds=12.5,
        task=TaskFacts("tweets", {"train": 10, "dev": 5}, {"train": "train"}, {"train": [10, 40]},
                       {"prediction": {"step": 3}}))


def test_task_and_general_records_round_trip_through_their_files(tmp_path):
    m = task_metrics()
    m.save(tmp_path)
    back = RunMetrics.load(tmp_path)
    assert back == m
    assert back.values() == {"dev macro_f1": 0.7, "test macro_f1": 0.6}  # loss terms are no table column
    assert back.student.kind == "bilstm" and back.student.hidden == 8
    saved = json.loads((tmp_path / "metrics.json").read_text())
    # The layout runs have always written: the workflow's entries first, the sizes after, the history last.
    assert list(saved) == ["name", "task", "main_metric", "data", "source_splits", "subsampled", "selected",
                           "teacher", "student", "ratios", "history", "wall_seconds"]
    assert list(saved["teacher"])[:4] == ["dev", "dev_mismatched", "test", "source"]
    assert saved["teacher"]["dev_mismatched"] is None and "teachers" not in saved["teacher"]
    assert list(saved["student"])[-6:] == ["parameters", "kind", "layers", "hidden", "vocab",
                                           "encoder_flops_per_token"]

    general = RunMetrics(name="g", teacher=TeacherFacts(parameters=10, source="bert"),
                         student=StudentFacts(parameters=5, description={"kind": "bert", "layers": 2, "hidden": 8}),
                         ratios=Ratios(0.5, 0.25, None), wall_seconds=1.0,
                         general=GeneralFacts({"g": {"loss/hidden_mse": 2.0}}, {"g": {"loss/hidden_mse": 1.0}},
                                              {"train_sequences": 4}))
    d = general.to_dict()
    assert d["general"] is True and "task" not in d and "cache_key" not in d["teacher"]
    assert RunMetrics.from_dict(d) == general and general.is_general
    assert general.values() == {"heldout hidden_mse": 1.0}

    info = RunInfo(name="exp", seed=3, labels={"variant": "no-att", "stages.1.lr": 0.001}, command="distill run x",
                   git=GitState("abc", False), libraries={"torch": "2.0"}, device="cpu", processes=1,
                   mixed_precision="no", resumed=False)
    info.save(tmp_path)
    assert RunInfo.load(tmp_path) == info and RunInfo.load(tmp_path).variant == "no-att"
    assert list(json.loads((tmp_path / "run.json").read_text()))[:5] == ["name", "seed", "variant", "stages.1.lr",
                                                                        "command"]
    RunFailure("RuntimeError: out of memory").save(tmp_path)
    assert RunFailure.load(tmp_path).error == "RuntimeError: out of memory"


def test_published_records_load_and_write_back_byte_for_byte():
    files = sorted(PUBLISHED.rglob("metrics.json"))
    assert files, f"no published records under {PUBLISHED}"
    for f in files:
        text = f.read_text()
        assert json.dumps(RunMetrics.load(f.parent).to_dict()) == json.dumps(json.loads(text)), f
        run = json.loads((f.parent / "run.json").read_text())
        assert RunInfo.load(f.parent).to_dict() == run, f
    # An ensemble's record carries each teacher's facts.
    several = [RunMetrics.load(f.parent) for f in files if '"teachers"' in f.read_text()]
    assert all(m.teacher.task.teachers for m in several)


def test_older_and_hand_made_records_without_optional_keys_load(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"seed": 1, "variant": "slow"}))
    info = RunInfo.load(tmp_path)
    assert (info.seed, info.variant, info.command, info.git, info.libraries) == (1, "slow", None, None, {})
    (tmp_path / "metrics.json").write_text(json.dumps({
        "main_metric": "macro_f1", "teacher": {"dev": {"macro_f1": 0.9}, "parameters": 100},
        "student": {"dev": {"macro_f1": 0.8}, "parameters": 10}, "future_key": [1, 2]}))
    m = RunMetrics.load(tmp_path)
    assert m.teacher.task is None and m.task is None and m.general is None and m.ratios == Ratios()
    assert m.history == [] and m.wall_seconds is None and m.values() == {"dev macro_f1": 0.8}
    assert m.extra == {"future_key": [1, 2]} and m.to_dict()["future_key"] == [1, 2]  # kept, not dropped


@pytest.mark.parametrize(("file", "content", "facts"), [
    ("metrics.json", {"main_metric": "f1", "teacher": {}, "student": {"parameters": "10M"}},
     ["student.parameters", '"10M"', "an integer"]),
    ("metrics.json", {"main_metric": "f1", "teacher": {}, "student": {"dev": {"f1": "high"}}},
     ["student.dev.f1", '"high"', "a number"]),
    ("metrics.json", {"main_metric": "f1", "teacher": {}}, ["`student`", "an object"]),
    ("metrics.json", {"main_metric": "f1", "teacher": [], "student": {}}, ["`teacher` = []", "an object"]),
    ("metrics.json", {"teacher": {}, "student": {}, "ratios": {"parameters": True}},
     ["ratios.parameters", "true", "a number"]),
    ("metrics.json", {"teacher": {}, "student": {"dev": {"f1": 0.5}}}, ["main_metric"]),
    ("run.json", {"seed": "one"}, ["`seed`", '"one"', "an integer"]),
    ("run.json", {"git": {"commit": 5}}, ["git.commit", "5", "a string"]),
    ("run.json", [1, 2], ["(top level)", "an object"]),
    ("failed.json", {"error": 3}, ["`error`", "a string"]),
])
def test_a_malformed_record_names_its_file_and_key(tmp_path, file, content, facts):
    (tmp_path / file).write_text(json.dumps(content))
    cls = {"metrics.json": RunMetrics, "run.json": RunInfo, "failed.json": RunFailure}[file]
    with raises_with(RecordError, str(tmp_path / file), *facts):
        cls.load(tmp_path)


def test_a_record_that_is_no_json_names_its_file_and_place(tmp_path):
    (tmp_path / "metrics.json").write_text('{"teacher": {},\n "student": }')
    with raises_with(RecordError, str(tmp_path / "metrics.json"), "line 2"):
        RunMetrics.load(tmp_path)
