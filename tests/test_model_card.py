"""A run from a `task.source: hf` dataset on disk, end to end through the CLI, and the model card it leaves in
`student/README.md`: every field is checked against the run's own records."""

import json
import shlex

import datasets
import numpy as np
import pytest
import yaml

from distill.lab.cli import main
from distill.lab.model_card import write_model_card
from distill.loaders import load_tweets
from distill.predictions import read_predictions

from .helpers import SMOKE, assert_facts

NAMES = ["positive", "negative", "neutral"]  # ClassLabel order; the packaged tweets' own is negative, neutral, pos.
OWN = {0: 1, 1: 2, 2: 0}  # the packaged tweets' label id -> NAMES id


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfrun")
    tweets = load_tweets(0)
    feats = datasets.Features({"tweet": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=NAMES)})
    # Spread over each split: the packaged splits are ordered by label, so their first rows are all of one class.
    parts = {name: exs[::len(exs) // n][:n] for name, exs, n in (
        ("train", tweets.splits["train"], 300), ("validation", tweets.splits["dev"], 96),
        ("test", tweets.splits["test"], 96))}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(
        {"tweet": [e.text_a for e in exs], "sentiment": [OWN[e.label] for e in exs]}, features=feats)
        for k, exs in parts.items()}).save_to_disk(str(root / "data"))
    # Two seeds started one by one, as `distill run` names its folders (by time), not as a sweep.
    out = root / "runs" / "20261204-101500-seed1"
    argv = ["run", str(SMOKE), "--out", str(out), "--set", "task.source=hf", "--set", f"task.path={root / 'data'}",
            "--set", "task.name=tweets-hf", "--set", "task.text_columns=[tweet]", "--set",
            "task.label_column=sentiment", "--set", "task.max_length=16"]  # short: truncation matters
    assert main(argv) == 0
    second = [*argv, "--set", "seed=2"]
    second[3] = str(root / "runs" / "20261204-103000-seed2")
    assert main(second) == 0
    return out, argv, parts


def _card(out):
    text = (out / "student" / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_hf_run_reads_the_classlabel_order_end_to_end(hf_run):
    out, _, parts = hf_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "tweets-hf"
    assert metrics["data"] == {"train": 256, "dev": 96, "test": 96}  # smoke's limits apply to any source
    preds, meta = read_predictions(out)
    assert meta["labels"] == NAMES
    # Gold labels are the ClassLabel ids of the dataset's rows, in order (dev_limit 96 keeps all 96).
    assert preds["dev"].ids == [f"dev-{i}" for i in range(96)]
    assert preds["dev"].labels.tolist() == [OWN[e.label] for e in parts["validation"]]
    student = json.loads((out / "student" / "config.json").read_text())
    assert [student["id2label"][str(i)] for i in range(3)] == NAMES


def test_check_prints_what_the_loader_decided(hf_run, capsys):
    _, argv, _ = hf_run
    assert main(["check", *argv[1:2], *argv[4:], "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "task:     tweets-hf (hf from" in out and "labels positive, negative, neutral" in out
    assert f"labels from the ClassLabel feature, in its order {NAMES}" in out


def test_model_card_metadata_follows_the_hub_format_and_the_runs_metrics(hf_run):
    from huggingface_hub import ModelCard, ModelCardData

    out, _, _ = hf_run
    metrics = json.loads((out / "metrics.json").read_text())
    meta, _ = _card(out)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert {"distillery", "knowledge-distillation", "tinybert"} <= set(meta["tags"])
    assert "base_model" not in meta and "datasets" not in meta  # a random teacher and a local folder: no hub names
    assert meta["license"] == "other"  # nothing known of a random teacher's licence; `card.license` sets it
    # The Hub's own parser of model-index (offline) reads every result back.
    data = ModelCardData(**meta)
    card = ModelCard((out / "student" / "README.md").read_text())
    assert card.data.to_dict() == data.to_dict()
    by_split = {}
    for r in data.eval_results:
        assert r.task_type == "text-classification" and r.dataset_type == r.dataset_name == "tweets-hf"
        by_split.setdefault(r.dataset_split, {})[(r.metric_type, json.dumps(r.metric_args))] = r.metric_value
    # The dataset's own split names: its `validation` is distillery's dev.
    assert set(by_split) == {"validation", "test"}
    for split, own in (("dev", "validation"), ("test", "test")):
        assert by_split[own] == pytest.approx({("accuracy", "null"): metrics["student"][split]["accuracy"],
                                               ("f1", '{"average": "macro"}'): metrics["student"][split]["macro_f1"]},
                                              abs=5e-5)
    assert sorted(meta["metrics"]) == ["accuracy", "f1"]  # Hub metric ids; macro-F1 is f1 with average: macro


def test_model_card_body_has_teacher_task_data_recipe_results_and_the_command(hf_run):
    out, argv, _ = hf_run
    metrics = json.loads((out / "metrics.json").read_text())
    _, body = _card(out)
    t, s, r = metrics["teacher"], metrics["student"], metrics["ratios"]
    rows = {line.split("|")[1].strip(): line for line in body.splitlines() if line.startswith("| teacher")
            or line.startswith("| student")}
    for who, facts in (("teacher", t), ("student", s)):
        for split in ("dev", "test"):
            for k in ("macro_f1", "accuracy"):
                assert f"{facts[split][k]:.4f}" in rows[who]
        assert f"{facts['parameters'] / 1e6:.2f}M" in rows[who]
    assert f"encoder compute per token {100 * r['encoder_compute']:.1f}%" in body
    assert f"parameters {100 * r['parameters']:.1f}%" in body
    assert "Student seed 1" in body and "teacher fine-tuning seed 0" in body
    assert "- examples: train 256, dev 96 (the source's `validation` split), test 96" in body
    assert "from source `hf`, `.../data`" in body
    # The recipe: each stage with its losses, and the layer pairs of the intermediate one (2 of 4 layers, uniform).
    assert ("| intermediate | train | 1 | 0.001 | 32 | embedding_mse 1.0, attention_mse 1.0, hidden_mse 1.0 | "
            "uniform: [(1, 2), (2, 4)] |") in body
    assert "| prediction | train | 2 | 0.001 | 32 | soft_cross_entropy (weight=1, temperature=1, convention=ce) | - |" \
        in body
    # The exact command, local paths cut to their last part (a card is published).
    shown = [f".../{a.rsplit('/', 1)[1]}" if a.startswith("/") else
             a.split("=", 1)[0] + "=.../data" if a.startswith("task.path=") else a for a in argv]
    assert shlex.join(["distill", *shown]) in body.splitlines()
    run = json.loads((out / "run.json").read_text())
    assert f"git commit `{run['git']['commit']}`" in body


def test_the_card_carries_no_local_path_and_only_what_the_run_used(hf_run):
    out, _, _ = hf_run
    text = (out / "student" / "README.md").read_text()
    assert str(out.parent.parent) not in text and "/tmp" not in text
    _, body = _card(out)
    config_block = yaml.safe_load(body.split("```yaml\n", 1)[1].split("\n```", 1)[0])
    assert "augment" not in config_block and "corpus" not in config_block and "sweep" not in config_block
    assert config_block["task"]["path"] == ".../data" and config_block["stages"] == yaml.safe_load(
        (out / "config.yaml").read_text())["stages"]
    assert "1 epochs" not in text and "fine-tuned on the task for 1 epoch at" in text
    assert "subsampled" in text and "train 256 of 300" in text and "dev 96 (the source's `validation` split)" in text


def test_the_cards_usage_snippets_run_as_written(hf_run, tmp_path, capsys, monkeypatch):
    from distill.lab.model_card import FOLDER
    from distill.lab.predict import load_predictor

    out, _, _ = hf_run
    _, body = _card(out)
    code = body.split("```python\n", 1)[1].split("\n```", 1)[0]
    scope: dict = {}
    exec(code.replace(FOLDER, str(out / "student")), scope)  # noqa: S102 - the card's own snippet
    texts = ["the flight was late", "what a great crew"]
    expected = [r["label"] for r in load_predictor(out).predict(texts)]
    assert scope["labels"] == expected
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    command = next(line for line in body.splitlines() if line.startswith("distill predict"))
    argv = shlex.split(command.replace(FOLDER, str(out / "student")))[1:]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == expected


def test_predict_onnx_and_the_runs_own_scores_agree_on_every_dev_example(hf_run, tmp_path):
    """The student as shipped (predict, the ONNX graph) gives the logits its run scored, at the run's length."""
    from distill.lab import export as ex
    from distill.lab.predict import load_predictor

    out, _, parts = hf_run
    tok = json.loads((out / "student" / "tokenizer_config.json").read_text())
    assert tok["model_max_length"] == 16 and "max_length" not in tok and "local_files_only" not in tok
    assert json.loads((out / "student" / "encoding.json").read_text()) == {
        "max_length": 16, "pair": False, "truncation": "longest_first"}
    preds, _ = read_predictions(out)
    texts = [e.text_a for e in parts["validation"]]
    pred = load_predictor(out)
    got = pred.logits(texts).numpy()
    assert pred.encode(texts)["input_ids"].shape[1] == 16  # truncation is what the run did
    np.testing.assert_allclose(got, preds["dev"].student, atol=1e-4)
    assert (got.argmax(-1) == preds["dev"].student.argmax(-1)).all()
    report = ex.export_student_onnx(out, int8=True, int8_agreement=0.0, int8_tolerance=1.0, log=lambda m: None)
    assert report.parity_source == "the run's tweets-hf dev split" and report.fp32["examples"] == 96
    assert report.fp32["argmax_agreement"] == 1.0 and report.max_length == 16
    dev = json.loads((out / "metrics.json").read_text())["student"]["dev"]
    assert report.fp32["metric"] == "accuracy"  # the task's main metric
    assert report.fp32["pytorch"] == pytest.approx(dev["accuracy"], abs=1e-6) == report.fp32["onnx"]
    sess = ex.session(out / "student" / "model.onnx")
    onnx_logits = np.concatenate([ex.run_onnx(sess, pred.encode(texts[i:i + 32])) for i in (0, 32, 64)])
    np.testing.assert_allclose(onnx_logits, preds["dev"].student, atol=1e-4)
    # The card now shows the export's figures.
    _, body = _card(out)
    assert "## ONNX" in body and "`model.onnx`: max abs logit difference" in body and "over 96 examples" in body


def test_the_two_seeds_report_as_one_variant(hf_run):
    from distill.lab.report import build

    out, _, _ = hf_run
    rep = build(out.parent)
    assert [(r.name, r.finished) for r in rep.rows] == [("smoke", 2)]


def test_a_packaged_teachers_card_names_its_hub_original_and_licence(tmp_path):
    from distill.lab.model_card import model_card
    from distill.lab.records import RunInfo, RunMetrics

    cfg = {"name": "q", "seed": 1, "task": {"name": "tweets", "source": "packaged", "max_length": 64},
           "teacher": {"checkpoint": "packaged:all-minilm-l6-v2", "finetune": {"seed": 0, "epochs": 2}},
           "student": {"kind": "tinybert", "init": "teacher"}, "card": {"language": ["en"]},
           "stages": [{"name": "pred", "epochs": 1, "losses": {"soft_cross_entropy": 1}}]}
    metrics = {"task": "tweets", "main_metric": "macro_f1",
               "teacher": {"dev": {"macro_f1": 0.7}, "parameters": 20_000_000, "layers": 6, "hidden": 384},
               "student": {"dev": {"macro_f1": 0.6, "mcc": 0.3}, "parameters": 10_000_000, "kind": "bert", "layers": 3,
                           "hidden": 384},
               "ratios": {"parameters": 0.5, "encoder_compute": 0.5, "dev_score": 0.86}, "wall_seconds": 1}
    record = RunMetrics.from_dict(metrics)
    meta = yaml.safe_load(model_card(cfg, RunInfo(), record, tmp_path)[4:].split("\n---\n", 1)[0])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert meta["language"] == ["en"] and sorted(meta["metrics"]) == ["f1", "matthews_correlation"]
    cfg["card"] = {"license": "mit", "datasets": ["cardiffnlp/tweet_eval"]}
    meta = yaml.safe_load(model_card(cfg, RunInfo(), record, tmp_path)[4:].split("\n---\n", 1)[0])
    assert meta["license"] == "mit" and meta["datasets"] == ["cardiffnlp/tweet_eval"]
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "cardiffnlp/tweet_eval"


def test_distill_card_rewrites_the_same_card_and_refuses_other_folders(hf_run, tmp_path, capsys):
    out, _, _ = hf_run
    before = (out / "student" / "README.md").read_text()
    (out / "student" / "README.md").unlink()
    assert main(["card", str(out)]) == 0
    assert (out / "student" / "README.md").read_text() == before
    assert write_model_card(out) == out / "student" / "README.md"
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert_facts(err, str(tmp_path), "not a finished run folder", str(tmp_path / "config.yaml"))


def test_each_intermediate_loss_is_mapped_onto_the_depth_of_the_teacher_it_reads(tmp_path):
    from distill.lab.model_card import model_card
    from distill.lab.records import RunInfo, RunMetrics

    cfg = {"name": "two", "seed": 3, "task": {"name": "tweets", "source": "packaged", "max_length": 64},
           "teacher": {"checkpoint": "packaged:all-minilm-l6-v2", "name": "small", "finetune": {"seed": 0}},
           "teachers": [{"checkpoint": "packaged:all-minilm-l6-v2", "name": "small", "finetune": {"seed": 0}},
                        {"checkpoint": "bert-base-uncased", "name": "big", "finetune": {"seed": 1}}],
           "student": {"kind": "tinybert", "init": "scratch"},
           "stages": [{"name": "inter", "epochs": 1, "layer_map": "uniform",
                       "losses": {"hidden_mse": {"weight": 1, "teacher": "big"}, "attention_mse": 1}},
                      {"name": "pred", "epochs": 1, "losses": {"soft_cross_entropy": 1}}]}
    scores = {"dev": {"accuracy": 0.5}}
    metrics = {"task": "tweets", "main_metric": "accuracy",
               "teacher": {**scores, "parameters": 20_000_000, "layers": 6, "hidden": 384,
                           "teachers": {"small": {"layers": 6}, "big": {"layers": 12}}},
               "student": {**scores, "parameters": 10_000_000, "kind": "bert", "layers": 3, "hidden": 384},
               "ratios": {"parameters": 0.5, "encoder_compute": 0.5, "dev_score": 1.0}, "wall_seconds": 1}
    card = model_card(cfg, RunInfo(), RunMetrics.from_dict(metrics), tmp_path)
    row = next(line for line in card.splitlines() if line.startswith("| inter |"))
    assert "big uniform: [(1, 4), (2, 8), (3, 12)]; small uniform: [(1, 2), (2, 4), (3, 6)]" in row
    assert "teacher fine-tuning seed 0, 1" in card and "| teacher (ensemble) |" in card
    assert "base_model: packaged" not in card  # hub names only: the packaged encoder's Hub original
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "bert-base-uncased" in card
    assert "(not recorded: a run started from Python" in card


def test_a_general_students_card_says_it_is_an_init_not_a_classifier(tmp_path):
    from distill.lab.model_card import model_card
    from distill.lab.records import RunInfo, RunMetrics

    cfg = {"name": "gen", "seed": 1, "task": {"name": "tweets", "source": "packaged"},
           "teacher": {"checkpoint": "bert-base-uncased"}, "student": {"kind": "tinybert", "init": "scratch"},
           "stages": [{"name": "general", "data": "corpus", "epochs": 1, "losses": {"hidden_mse": 1}}]}
    metrics = {"general": True, "teacher": {"parameters": 100_000_000, "layers": 12},
               "student": {"parameters": 10_000_000, "kind": "bert", "layers": 4, "hidden": 312},
               "ratios": {"parameters": 0.1, "encoder_compute": 0.1, "dev_score": None},
               "corpus": {"train_sequences": 10, "heldout_sequences": 2},
               "heldout_before": {"general": {"loss/hidden_mse": 2.0}},
               "heldout_after": {"general": {"loss/hidden_mse": 1.0}}, "wall_seconds": 1}
    card = model_card(cfg, RunInfo(command="distill run gen.yaml"), RunMetrics.from_dict(metrics), tmp_path)
    meta = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
    assert meta["pipeline_tag"] == "fill-mask" and meta["base_model"] == "bert-base-uncased"
    assert "`student.init`" in card and "AutoModelForSequenceClassification" not in card
    assert "- general hidden_mse: 2.0000 -> 1.0000" in card


def test_a_resumed_run_keeps_the_command_that_started_it(tmp_path):
    from distill.io import write_json
    from distill.lab.run import _first_command

    assert _first_command(tmp_path, False, "distill run a.yaml") == {"command": "distill run a.yaml"}
    write_json(tmp_path / "run.json", {"command": "distill run a.yaml --set seed=2"})
    resumed = "distill run a.yaml --set seed=2 --out x --resume"
    assert _first_command(tmp_path, True, resumed) == {"command": "distill run a.yaml --set seed=2",
                                                       "resume_command": resumed}
    assert _first_command(tmp_path, False, "distill run b.yaml") == {"command": "distill run b.yaml"}
