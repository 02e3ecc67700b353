"""Token classification end to end on CoNLL files written here: a run of each student kind, its per-word
predictions, the metrics recomputed from them, `distill predict`, the ONNX export, the model card and the
Hugging Face pipeline; the loaders' errors; and a student kind without a per-word head refused before anything
runs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from distill.config import ConfigError, load_config
from distill.labels import DataError

from .helpers import assert_facts, raises_with, smoke_with

WORDS = {"dt": ["the", "a", "this"], "nn": ["dog", "cat", "house", "car"], "vb": ["runs", "sees", "likes"],
         "jj": ["big", "red", "old"]}
PATTERNS = [["dt", "nn", "vb", "dt", "nn"], ["dt", "jj", "nn", "vb"], ["nn", "vb", "dt", "jj", "nn"]]


def write_conll(folder, n_train: int = 160, n_eval: int = 48, seed: int = 0) -> None:
    """A small POS task a tiny model learns in one epoch: each word has one tag, sentences follow three patterns."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.txt", n_train), ("dev.txt", n_eval), ("test.txt", n_eval)):
        lines = ["-DOCSTART- -X- O", ""]
        for _ in range(n):
            for tag in rng.choice(PATTERNS):
                lines.append(f"{rng.choice(WORDS[tag])}\tX\t{tag}")
            lines.append("")
        (folder / name).write_text("\n".join(lines) + "\n")


def task_body(folder) -> str:
    return (f"task: {{name: toypos, source: conll, path: {folder}, train_file: train.txt, dev_file: dev.txt, "
            "test_file: test.txt, max_length: 16}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per student kind on the toy task, the teacher gated (it must beat the majority tag)."""
    from distill.lab.run import run_experiment

    root = tmp_path_factory.mktemp("tokens")
    write_conll(root / "data")
    teacher = ("teacher: {finetune: {epochs: 3, lr: 3.0e-3, batch_size: 16}, gate: {margin: 0.05}}\n")
    out = {}
    for kind, student in (("tinybert", ""), ("distilbert", "student: {kind: distilbert, layers: 2, init: teacher}\n")):
        cfg = load_config(smoke_with(root, task_body(root / "data") + teacher + student, f"{kind}.yaml"))
        run_experiment(cfg, root / kind)
        out[kind] = root / kind
    body = task_body(root / "data") + teacher + (
        "student: {kind: bilstm, hidden: 16, fc: 16}\n"
        "stages: [{name: prediction, epochs: 3, lr: 5.0e-3, batch_size: 16}]\n")
    cfg = load_config(smoke_with(root, body, "bilstm.yaml"))
    cfg.stages = [s for s in cfg.stages if s.name == "prediction"]  # a BiLSTM has no layers to distil
    run_experiment(cfg, root / "bilstm")
    out["bilstm"] = root / "bilstm"
    return out


@pytest.mark.parametrize("kind", ["tinybert", "distilbert", "bilstm"])
def test_a_run_scores_every_word_and_its_predictions_recompute_its_metrics(runs, kind):
    from distill.metrics import compute_task
    from distill.predictions import read_predictions
    from distill.tasks import TaskData

    run = runs[kind]
    metrics = json.loads((run / "metrics.json").read_text())
    gate = metrics["teacher"]["gate"]
    assert gate["dev_token_accuracy"] >= gate["majority_baseline"] + 0.05  # the gate ran and passed
    splits, meta = read_predictions(run)
    dev = splits["dev"]
    sentences = [line for line in (run.parent / "data" / "dev.txt").read_text().split("\n\n") if "\t" in line]
    words = [len([w for w in s.splitlines() if "\t" in w]) for s in sentences]
    assert dev.offsets.tolist() == np.concatenate([[0], np.cumsum(words)]).tolist()  # every word (none cut)
    assert dev.student.shape == (sum(words), len(meta["labels"]))
    task = TaskData("toypos", meta["labels"], tuple(meta["metrics"]), type="token_classification")
    for who, logits in (("student", dev.student), ("teacher", dev.teacher)):
        again = compute_task(task, logits, dev.labels, dev.row_example)["token_accuracy"]
        assert again == pytest.approx(metrics[who]["dev"]["token_accuracy"], abs=1e-9)
    assert metrics["student"]["dev"]["token_accuracy"] > gate["majority_baseline"]


@pytest.mark.parametrize("kind", ["tinybert", "bilstm"])
def test_predict_tags_each_word_and_cuts_what_the_student_cannot_read(runs, kind, capsys):
    from distill.lab.cli import main
    from distill.lab.predict import load_predictor

    pred = load_predictor(runs[kind])
    out = pred.predict(["the dog runs", "a big red car sees the old house"])
    assert out[0]["words"] == ["the", "dog", "runs"] and len(out[0]["tags"]) == 3
    assert set(out[0]["tags"]) <= {"dt", "nn", "vb", "jj"} and all(0 < p <= 1 for p in out[0]["probabilities"])
    short = load_predictor(runs[kind], max_length=4).predict(["the dog runs the car"])[0]
    kept = 4 if kind == "bilstm" else 2  # 4 words for the BiLSTM; [CLS] the dog [SEP] for a transformer
    words = "the dog runs the car".split()
    assert short["words"] == words[:kept] and short["cut"] == words[kept:]
    assert main(["predict", str(runs[kind]), "--text", "the cat sees a dog"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert [w.split("/")[0] for w in line.split()] == ["the", "cat", "sees", "a", "dog"]


@pytest.mark.parametrize("kind", ["tinybert", "bilstm"])
def test_the_onnx_export_of_a_tagger_matches_pytorch_word_for_word(runs, kind):
    from distill.lab.export import export_student_onnx

    report = export_student_onnx(runs[kind], log=lambda *_: None)
    assert report.fp32["max_abs_diff"] <= 1e-4 and report.fp32["argmax_agreement"] == 1.0


def test_the_card_and_the_hugging_face_pipeline_serve_a_token_classifier(runs):
    from transformers import pipeline

    from distill.lab.model_card import write_model_card

    card = write_model_card(runs["tinybert"]).read_text()
    assert "pipeline_tag: token-classification" in card and 'pipeline("token-classification"' in card
    nlp = pipeline("token-classification", model=str(runs["tinybert"] / "student"))
    found = nlp("the dog runs")
    assert [f["word"] for f in found] == ["the", "dog", "runs"]  # POS tags: no "O" for the pipeline to drop
    assert {f["entity"] for f in found} <= {"dt", "nn", "vb", "jj"}


def test_a_student_without_a_per_word_head_is_refused_naming_both(tmp_path):
    from distill.lab.preflight import plan_run

    from . import toy_student  # noqa: F401 (registers `student.kind: toy`)

    write_conll(tmp_path / "data", 8, 4)
    cfg = load_config(smoke_with(tmp_path, task_body(tmp_path / "data") + "student: {kind: toy}\n"))
    cfg.stages = [s for s in cfg.stages if s.name == "prediction"]
    with raises_with(ConfigError, "`student.kind: toy`", "token_classification", "tinybert", "distilbert", "bilstm"):
        plan_run(cfg)


@pytest.mark.parametrize("body, facts", [
    ("task: {name: x, source: conll, path: /tmp, type: regression}", ["`task.type` = 'regression'",
                                                                      "token_classification"]),
    ("task: {name: brown-pos, source: packaged, type: classification}", ["brown-pos", "token classification"]),
    ("task: {name: x, source: squad, path: /tmp, type: extractive_qa, doc_stride: 200}",
     ["`task.doc_stride` = 200", "`task.max_length` = 32"]),
])
def test_task_types_a_source_cannot_give_are_refused(tmp_path, body, facts):
    with raises_with(ConfigError, *facts):
        load_config(smoke_with(tmp_path, body))


def test_conll_tags_unseen_in_training_are_refused_with_the_known_tags(tmp_path):
    from distill.loaders import load_task

    write_conll(tmp_path, 6, 3)
    with open(tmp_path / "dev.txt", "a") as f:
        f.write("the\tX\tzz\n\n")
    cfg = load_config(smoke_with(tmp_path, task_body(tmp_path)))
    with raises_with(DataError, "dev.txt", "'zz'", "not a known tag"):
        load_task(cfg.task)


def test_a_hugging_face_dataset_with_a_sequence_of_class_labels_reads_as_tagged_sentences(tmp_path):
    import datasets

    from distill.loaders import load_task

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    rows = {"tokens": [["Ann", "Lee", "ran"], ["he", "ran"]], "ner_tags": [[1, 2, 0], [0, 0]]}
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features),
                                 "validation": datasets.Dataset.from_dict(rows, features=features)})
    data.save_to_disk(str(tmp_path / "ds"))
    body = (f"task: {{name: ner, source: hf, path: {tmp_path / 'ds'}, type: token_classification, "
            "text_columns: [tokens], label_column: ner_tags}\n")
    task = load_task(load_config(smoke_with(tmp_path, body)).task)
    assert task.type == "token_classification" and task.labels == ["O", "B-PER", "I-PER"] and task.scheme == "BIO"
    assert task.metrics == ("entity_f1", "token_accuracy")
    assert [(ex.text_a, ex.label) for ex in task.splits["train"]] == [("Ann Lee ran", (1, 2, 0)), ("he ran", (0, 0))]
    flat = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"tokens": [["a"]], "ner_tags": [1]}),
                                 "validation": datasets.Dataset.from_dict({"tokens": [["a"]], "ner_tags": [1]})})
    flat.save_to_disk(str(tmp_path / "flat"))
    with raises_with(DataError, "'ner_tags'", "Sequence(ClassLabel)"):
        load_task(load_config(smoke_with(tmp_path, body.replace(str(tmp_path / "ds"), str(tmp_path / "flat")),
                                         "flat.yaml")).task)


def test_check_plans_a_tagging_run_and_names_its_metric(tmp_path, capsys):
    from distill.lab.cli import main

    write_conll(tmp_path / "data", 20, 6)
    path = smoke_with(tmp_path, task_body(tmp_path / "data"))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert_facts(out, "main metric token_accuracy", "4 tags, no entity scheme (token accuracy)")


def test_a_tagging_run_distils_on_augmented_copies_whose_replaced_words_have_unknown_tags(tmp_path, tokenizer):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from distill.augment.runner import augmented_path, iter_augmented
    from distill.lab.run import run_experiment
    from distill.loaders import load_task

    torch.manual_seed(0)
    mlm = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64))
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    rng = np.random.default_rng(0)
    vocab = sorted({w for ws in WORDS.values() for w in ws})
    (tmp_path / "glove.txt").write_text("".join(f"{w} " + " ".join(f"{x:.4f}" for x in rng.normal(size=8)) + "\n"
                                                for w in vocab))
    write_conll(tmp_path / "data", 40, 12)
    body = task_body(tmp_path / "data") + (
        f"augment: {{copies: 2, tinybert: {{masked_lm: {tmp_path / 'mlm'}, vectors: {tmp_path / 'glove.txt'}, "
        "skip_stopwords: false, p_replace: 0.5}}\n"
        "stages: [{name: intermediate, data: augmented}, {name: prediction, data: augmented}]\n")
    cfg = load_config(smoke_with(tmp_path, body))
    run_experiment(cfg, tmp_path / "run")
    rows = list(iter_augmented(augmented_path(cfg, load_task(cfg.task))))
    originals = {r.id: r for r in rows if "-tinybert" not in r.id}
    copies = [r for r in rows if "-tinybert" in r.id]
    assert copies and all(isinstance(r.label, tuple) for r in rows)
    changed = 0
    for r in copies:
        source = originals[r.id.rsplit("-tinybert", 1)[0]]
        old, new = source.text_a.split(" "), r.text_a.split(" ")
        assert len(new) == len(old)
        assert r.label == tuple(-1 if a != b else t for a, b, t in zip(new, old, source.label, strict=True))
        changed += sum(a != b for a, b in zip(new, old, strict=True))
    assert changed > 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["augmented"] == len(rows)


def test_bench_scores_a_trained_tagger_as_its_run_did(runs):
    from distill.lab.bench import student_accuracy
    from distill.lab.predict import load_predictor

    model = load_predictor(runs["tinybert"]).model
    got = student_accuracy(runs["tinybert"], [("student", model)], None)["student"]
    metrics = json.loads((runs["tinybert"] / "metrics.json").read_text())
    assert got["token_accuracy"] == pytest.approx(metrics["student"]["dev"]["token_accuracy"])
