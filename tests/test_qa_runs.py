"""Extractive QA end to end on SQuAD files written here: windows over contexts longer than a window, a run's
answers and official scores (recomputed from the files it writes), SQuAD v2.0's null threshold chosen on dev and
carried to test, `distill predict`, the ONNX export, the model card's loading code, the loaders and what is
refused."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from distill.config import ConfigError, load_config
from distill.labels import DataError

from .helpers import raises_with, smoke_with

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"]
PLACES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Prague"]
FILLER = "The weather was fine and the streets were quiet all day long."


def paragraph(rng: random.Random, key: str, v2: bool) -> dict:
    """A context of 1 to 3 filler sentences around the facts, so that some contexts need several windows and
    some answers lie in a later one."""
    who, where = rng.choice(NAMES), rng.choice(PLACES)
    other = rng.choice([n for n in NAMES if n != who])
    home = rng.choice([p for p in PLACES if p != where])
    context = " ".join([FILLER] * rng.randint(0, 2) + [f"{who} flew to {where}."] + [FILLER] * rng.randint(0, 2)
                       + [f"{other} drove to {home}."])
    qas = [{"id": f"{key}a", "question": f"Where did {who} fly?",
            "answers": [{"text": where, "answer_start": context.index(f"to {where}") + 3}]},
           {"id": f"{key}b", "question": f"Where did {other} drive?",
            "answers": [{"text": home, "answer_start": context.rindex(home)}]}]
    if v2:
        for q in qas:
            q["is_impossible"] = False
        ghost = rng.choice([n for n in NAMES if n not in (who, other)])
        qas.append({"id": f"{key}c", "question": f"Where did {ghost} fly?", "answers": [], "is_impossible": True})
    return {"context": context, "qas": qas}


def write_squad(folder, v2: bool, n_train: int = 120, n_eval: int = 24, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        data = {"version": "v2.0" if v2 else "1.1",
                "data": [{"title": "t", "paragraphs": [paragraph(rng, f"{split}{i}", v2) for i in range(n)]}]}
        (folder / f"{split}.json").write_text(json.dumps(data))


def task_body(folder) -> str:
    return (f"task: {{name: toyqa, source: squad, path: {folder}, train_file: train.json, dev_file: dev.json, "
            "test_file: test.json, max_length: 40, doc_stride: 12, max_query_length: 16}\n"
            "teacher: {finetune: {epochs: 4, lr: 3.0e-3, batch_size: 16}}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from distill.lab.run import run_experiment

    root = tmp_path_factory.mktemp("qa")
    out = {}
    for version, v2 in (("v1", False), ("v2", True)):
        write_squad(root / version, v2)
        cfg = load_config(smoke_with(root, task_body(root / version), f"{version}.yaml"))
        run_experiment(cfg, root / f"run-{version}")
        out[version] = root / f"run-{version}"
    return out


def test_contexts_longer_than_a_window_are_split_and_some_answers_lie_in_a_later_window(runs):
    from distill.loaders import load_task

    task = load_task(load_config(runs["v1"] / "config.yaml").task)
    from distill.encoded import encode_examples
    from distill.teachers.load import load_tokenizer

    ds = encode_examples(task.splits["dev"], load_tokenizer("packaged:all-minilm-l6-v2"), 40, windows=(12, 16),
                         log=lambda *_: None)
    per_question = np.bincount(ds.windows)
    assert per_question.max() >= 3 and (per_question == 1).any()
    answered = [w for w in range(len(ds)) if ds.labels[w, 0] > 0]
    later = [w for w in answered if w > 0 and ds.windows[w - 1] == ds.windows[w]]
    assert later, "no answer lies in a question's second or later window"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_runs_scores_are_the_official_scores_of_the_answers_it_wrote(runs, version):
    from distill.predictions import read_predictions
    from distill.squad_data import read_squad_json
    from distill.squad_metric import squad_scores

    run = runs[version]
    metrics = json.loads((run / "metrics.json").read_text())
    answers = json.loads((run / "answers.json").read_text())
    splits, meta = read_predictions(run)
    assert meta["type"] == "extractive_qa" and meta["main_metric"] == "squad_f1"
    for split in ("dev", "test"):
        examples, _ = read_squad_json(run.parent / version / f"{split}.json")
        golds = {ex.id: [t for t, _ in ex.answers] for ex in examples}
        has = {ex.id: bool(ex.answers) for ex in examples} if version == "v2" else None
        official = squad_scores(answers[split], golds, has)
        scores = metrics["student"][split]
        assert scores["squad_f1"] == pytest.approx(official["f1"]) and \
            scores["exact_match"] == pytest.approx(official["exact_match"])
        if version == "v2":
            assert scores["no_ans_f1"] == pytest.approx(official["NoAns_f1"])
        sp = splits[split]
        assert sp.ids == [ex.id for ex in examples]
        # The per-question scores the report resamples average to the run's scores (percent).
        assert 100 * sp.student[:, 1].mean() == pytest.approx(scores["squad_f1"])
        assert sp.labels.tolist() == [int(bool(ex.answers)) for ex in examples]


def test_the_v2_null_threshold_is_chosen_on_dev_and_carried_to_test(monkeypatch, runs):
    import distill.trainer as trainer
    from distill.lab.predict import load_predictor
    from distill.lab.task import TaskWorkflow  # noqa: F401 (the workflow's imports)
    from distill.loaders import load_task
    from distill.qa_eval import QAOutcome

    seen = []

    def fake(task, ds, starts, ends, threshold=None):
        seen.append(threshold)
        chosen = 1.5 if threshold is None else threshold
        return QAOutcome([], [], np.zeros((0, 2)), np.zeros(0, bool), chosen, {"squad_f1": 0.0})

    monkeypatch.setattr(trainer, "qa_outcome", fake)
    cfg = load_config(runs["v2"] / "config.yaml")
    task = load_task(cfg.task)
    from accelerate import Accelerator

    from distill.encoded import encode_examples
    from distill.teachers.load import load_tokenizer

    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    datasets = {s: encode_examples(task.splits[s], tok, 40, windows=(12, 16), log=lambda *_: None)
                for s in ("dev", "test")}
    model = load_predictor(runs["v2"]).model
    trainer.evaluate_splits(Accelerator(cpu=True), model, task, datasets, cfg.train)
    assert seen == [None, 1.5]  # dev chooses, test is given dev's


def test_the_gate_baseline_of_qa_is_answering_nothing():
    from distill.tasks import Example, QASettings, TaskData
    from distill.teachers.gate import majority_baseline

    dev = [Example("a", "q", "c", None, ()), Example("b", "q", "c", None, (("x", 0),)),
           Example("c", "q", "c", None, ()), Example("d", "q", "c", None, (("y", 1),))]
    v2 = TaskData("qa", None, ("squad_f1",), type="extractive_qa", qa=QASettings(version="2.0"))
    assert majority_baseline(v2, [], dev) == pytest.approx(50.0)  # 2 of 4 questions have no answer
    v1 = TaskData("qa", None, ("squad_f1",), type="extractive_qa", qa=QASettings(version="1.1"))
    assert majority_baseline(v1, [], dev) == 0.0


def test_predict_answers_a_question_from_a_context_longer_than_a_window(runs, capsys):
    from distill.lab.cli import main
    from distill.lab.predict import load_predictor

    context = f"{FILLER} {FILLER} Erin flew to Oslo. {FILLER} Bob drove to Rome."
    pred = load_predictor(runs["v1"])
    out = pred.predict(["Where did Erin fly?"], [context])[0]
    assert out["answer"] in context and np.isfinite(out["score"])
    assert main(["predict", str(runs["v1"]), "--text", "Where did Bob drive?", "--text-b", context]) == 0
    answer, score, question = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert answer in context and question == "Where did Bob drive?"


def test_the_qa_export_matches_pytorch_and_the_cards_loading_code_runs(runs):
    from distill.lab.export import export_student_onnx
    from distill.lab.model_card import FOLDER, write_model_card

    report = export_student_onnx(runs["v1"], log=lambda *_: None)
    assert report.fp32["max_abs_diff"] <= 1e-4 and report.fp32["argmax_agreement"] is None  # start vs end: no classes
    card = write_model_card(runs["v1"]).read_text()
    assert "pipeline_tag: question-answering" in card
    code = card.split("```python\n", 1)[1].split("```", 1)[0].replace(FOLDER, str(runs["v1"] / "student"))
    namespace: dict = {}
    exec(code, namespace)  # the card's own snippet, as a reader would run it
    assert namespace["out"].start_logits.shape == namespace["inputs"]["input_ids"].shape


@pytest.mark.parametrize("body, error, facts", [
    ("student: {kind: bilstm}\n", ConfigError, ["`student.kind: bilstm`", "extractive_qa", "tinybert"]),
    ("stages: [{name: prediction, data: augmented}]\n", ConfigError, ["`data: augmented`", "answer spans"]),
    ("train: {teacher_record: fp16}\n", ConfigError, ["teacher_record", "extractive_qa"]),
])
def test_what_qa_cannot_do_yet_is_refused_before_anything_runs(tmp_path, body, error, facts):
    from distill.lab.preflight import plan_run

    write_squad(tmp_path / "d", False, 4, 2)
    cfg = load_config(smoke_with(tmp_path, task_body(tmp_path / "d") + body))
    with raises_with(error, *facts):
        plan_run(cfg)


def test_a_squad_task_names_its_json_files(tmp_path):
    from distill.loaders import load_task

    write_squad(tmp_path, False, 4, 2)
    cfg = load_config(smoke_with(tmp_path, task_body(tmp_path).replace("dev.json", "dev.tsv")))
    with raises_with(DataError, "task.dev_file 'dev.tsv'", "SQuAD JSON"):
        load_task(cfg.task)


def test_a_hugging_face_dataset_in_the_squad_layout_reads_as_questions(tmp_path):
    import datasets

    from distill.loaders import load_task

    rows = {"id": ["a", "b"], "title": ["t", "t"], "context": ["Ann flew to Rome.", "Ann flew to Rome."],
            "question": ["Where did Ann fly?", "Who drove?"],
            "answers": [{"text": ["Rome"], "answer_start": [12]}, {"text": [], "answer_start": []}]}
    data = datasets.DatasetDict({split: datasets.Dataset.from_dict(rows) for split in ("train", "validation")})
    data.save_to_disk(str(tmp_path / "ds"))
    body = (f"task: {{name: qa, source: hf, path: {tmp_path / 'ds'}, type: extractive_qa, max_length: 64, "
            "doc_stride: 16}\n")
    task = load_task(load_config(smoke_with(tmp_path, body)).task)
    assert task.type == "extractive_qa" and task.qa.version == "2.0" and task.main_metric == "squad_f1"
    assert [(ex.text_a, ex.answers) for ex in task.splits["train"]] == [("Where did Ann fly?", (("Rome", 12),)),
                                                                        ("Who drove?", ())]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"id": ["a"], "question": ["q"]}),
                          "validation": datasets.Dataset.from_dict({"id": ["a"], "question": ["q"]})}
                         ).save_to_disk(str(tmp_path / "bad"))
    with raises_with(DataError, "['answers', 'context']", "squad layout"):
        load_task(load_config(smoke_with(tmp_path, body.replace(str(tmp_path / "ds"), str(tmp_path / "bad")),
                                         "bad.yaml")).task)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bench_scores_a_trained_qa_student_as_its_run_did(runs, version):
    from distill.lab.bench import student_accuracy
    from distill.lab.predict import load_predictor

    model = load_predictor(runs[version]).model
    got = student_accuracy(runs[version], [("student", model)], None)["student"]
    metrics = json.loads((runs[version] / "metrics.json").read_text())
    assert got["squad_f1"] == pytest.approx(metrics["student"]["dev"]["squad_f1"])
    assert got["exact_match"] == pytest.approx(metrics["student"]["dev"]["exact_match"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_predict_gives_the_answers_the_run_scored_with_its_dev_threshold(runs, version):
    from distill.lab.predict import load_predictor
    from distill.squad_data import read_squad_json

    run = runs[version]
    examples, _ = read_squad_json(run.parent / version / "dev.json")
    pred = load_predictor(run)
    assert (pred.encoding.null_threshold is not None) == (version == "v2")
    found = pred.predict([ex.text_a for ex in examples], [ex.text_b for ex in examples])
    scored = json.loads((run / "answers.json").read_text())["dev"]
    assert [f["answer"] for f in found] == [scored[ex.id] for ex in examples]


def test_a_teacher_fine_tuned_on_other_windows_is_another_cached_teacher(tmp_path):
    from dataclasses import replace

    from distill.loaders import load_task
    from distill.teachers.finetune import teacher_key

    write_squad(tmp_path, False, 4, 2)
    cfg = load_config(smoke_with(tmp_path, task_body(tmp_path)))
    keys = set()
    for stride, query in ((12, 16), (8, 16), (12, 10)):
        cfg.task = replace(cfg.task, doc_stride=stride, max_query_length=query)
        keys.add(teacher_key(cfg, load_task(cfg.task)))
    assert len(keys) == 3


def test_check_plans_qa_stages_over_windows_not_questions(tmp_path, capsys, tokenizer):
    import re

    from distill.lab.cli import main
    from distill.loaders import load_task
    from distill.qa_windows import encode_windows

    write_squad(tmp_path, False, 30, 4)
    path = smoke_with(tmp_path, task_body(tmp_path))
    task = load_task(load_config(path).task)
    windows = encode_windows(task.splits["train"], tokenizer, 40, 12, 16)
    assert len(windows) > len(task.splits["train"])  # the fixture's contexts need several windows
    assert main(["check", str(path), "--no-estimate"]) == 0
    out = capsys.readouterr().out
    epochs = re.findall(r"^  \d+ epochs? x ([\d,]+) examples", out, re.M)
    assert epochs and all(int(n.replace(",", "")) == len(windows) for n in epochs), out
    tokens = re.findall(r"^  tokens per epoch: ([\d,]+)", out, re.M)
    assert all(int(n.replace(",", "")) == sum(len(ids) for ids in windows.input_ids) for n in tokens)
    # The teacher fine-tunes on the same windows: 4 epochs of ceil(windows / 16) batches.
    assert f"batch 16 = {4 * -(-len(windows) // 16)} optimizer steps" in out


def test_the_report_resamples_questions_and_centres_on_the_runs_scores(runs):
    from distill.lab.report.statistics import _counts
    from distill.lab.uncertainty import metric_replicates, metric_value
    from distill.predictions import read_predictions

    splits, meta = read_predictions(runs["v2"])
    metrics = json.loads((runs["v2"] / "metrics.json").read_text())
    sp = splits["dev"]
    for metric in ("squad_f1", "exact_match", "has_ans_f1", "no_ans_exact"):
        counts = _counts(metric, sp, meta, sp.student)
        assert metric_value(metric, counts, np.zeros(len(counts)), 3) == pytest.approx(
            metrics["student"]["dev"][metric])
    # Resampling question 0 only: its own score, in percent; a HasAns metric over only unanswerable questions: 0.
    counts = _counts("squad_f1", sp, meta, sp.student)
    assert metric_replicates("squad_f1", counts, np.zeros(len(counts)), 3, np.zeros((1, 5), int))[0] == \
        pytest.approx(100 * sp.student[0, 1])
    none = np.flatnonzero(sp.labels == 0)[:3][None]
    has = _counts("has_ans_f1", sp, meta, sp.student)
    assert metric_replicates("has_ans_f1", has, np.zeros(len(has)), 3, none)[0] == 0.0
