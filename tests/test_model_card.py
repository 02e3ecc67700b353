"""A run from a `task.source: hf` dataset on disk, end to end through the CLI, and the model card it leaves in
`student/README.md`: every field is checked against the run's own records."""

import json
import shlex

import datasets
import pytest
import yaml

from distill.lab.cli import main
from distill.lab.model_card import write_model_card
from distill.loaders import load_tweets
from distill.predictions import read_predictions

from .helpers import SMOKE

NAMES = ["positive", "negative", "neutral"]  # ClassLabel order; the packaged tweets' own is negative, neutral, pos.
OWN = {0: 1, 1: 2, 2: 0}  # the packaged tweets' label id -> NAMES id


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfrun")
    tweets = load_tweets(0)
    feats = datasets.Features({"tweet": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=NAMES)})
    parts = {"train": tweets.splits["train"][:300], "validation": tweets.splits["dev"][:96],
             "test": tweets.splits["test"][:96]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(
        {"tweet": [e.text_a for e in exs], "sentiment": [OWN[e.label] for e in exs]}, features=feats)
        for k, exs in parts.items()}).save_to_disk(str(root / "data"))
    out = root / "run"
    argv = ["run", str(SMOKE), "--out", str(out), "--set", "task.source=hf", "--set", f"task.path={root / 'data'}",
            "--set", "task.name=tweets-hf", "--set", "task.text_columns=[tweet]", "--set",
            "task.label_column=sentiment"]
    assert main(argv) == 0
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
    assert main(["check", *argv[1:2], *argv[4:], "--no-estimate", "--plan-only"]) == 0
    out = capsys.readouterr().out
    assert "task:     tweets-hf (hf from" in out and "labels positive, negative, neutral" in out
    assert f"labels from the ClassLabel feature, in its order {NAMES}" in out


def test_model_card_metadata_follows_the_hub_format_and_the_runs_metrics(hf_run):
    out, _, _ = hf_run
    metrics = json.loads((out / "metrics.json").read_text())
    meta, _ = _card(out)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert {"distillery", "knowledge-distillation", "tinybert"} <= set(meta["tags"])
    assert "base_model" not in meta and "datasets" not in meta  # a random teacher and a local folder: no hub names
    (index,) = meta["model-index"]
    assert index["name"] == "smoke"
    by_split = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]} for r in index["results"]}
    assert set(by_split) == {"dev", "test"}
    for split in ("dev", "test"):
        assert by_split[split] == pytest.approx(metrics["student"][split], abs=5e-5)
    assert sorted(meta["metrics"]) == ["accuracy", "macro_f1"]


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
    assert "- examples: train 256, dev 96, test 96" in body
    assert f"from source `hf`, `{out.parent / 'data'}`" in body
    # The recipe: each stage with its losses, and the layer pairs of the intermediate one (2 of 4 layers, uniform).
    assert ("| intermediate | train | 1 | 0.001 | 32 | embedding_mse 1.0, attention_mse 1.0, hidden_mse 1.0 | "
            "uniform: [(1, 2), (2, 4)] |") in body
    assert "| prediction | train | 2 | 0.001 | 32 | soft_cross_entropy (weight=1, temperature=1, convention=ce) | - |" \
        in body
    # The exact command, as it could be typed again, and the resolved config, equal to the run's config.yaml.
    assert shlex.join(["distill", *argv]) in body.splitlines()
    config_block = body.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    assert yaml.safe_load(config_block) == yaml.safe_load((out / "config.yaml").read_text())
    run = json.loads((out / "run.json").read_text())
    assert f"git commit `{run['git']['commit']}`" in body


def test_distill_card_rewrites_the_same_card_and_refuses_other_folders(hf_run, tmp_path, capsys):
    out, _, _ = hf_run
    before = (out / "student" / "README.md").read_text()
    (out / "student" / "README.md").unlink()
    assert main(["card", str(out)]) == 0
    assert (out / "student" / "README.md").read_text() == before
    assert write_model_card(out) == out / "student" / "README.md"
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: not a finished run folder (missing {tmp_path / 'config.yaml'}" in err


def test_each_intermediate_loss_is_mapped_onto_the_depth_of_the_teacher_it_reads(tmp_path):
    from distill.lab.model_card import model_card

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
               "teacher": {**scores, "parameters": 2e7, "layers": 6, "hidden": 384,
                           "teachers": {"small": {"layers": 6}, "big": {"layers": 12}}},
               "student": {**scores, "parameters": 1e7, "kind": "bert", "layers": 3, "hidden": 384},
               "ratios": {"parameters": 0.5, "encoder_compute": 0.5, "dev_score": 1.0}, "wall_seconds": 1}
    card = model_card(cfg, {}, metrics, tmp_path)
    row = next(line for line in card.splitlines() if line.startswith("| inter |"))
    assert "big uniform: [(1, 4), (2, 8), (3, 12)]; small uniform: [(1, 2), (2, 4), (3, 6)]" in row
    assert "teacher fine-tuning seed 0, 1" in card and "| teacher (ensemble) |" in card
    assert "base_model: packaged" not in card  # only hub names are base models
    assert "(not recorded: a run started from Python" in card


def test_a_general_students_card_says_it_is_an_init_not_a_classifier(tmp_path):
    from distill.lab.model_card import model_card

    cfg = {"name": "gen", "seed": 1, "task": {"name": "tweets", "source": "packaged"},
           "teacher": {"checkpoint": "bert-base-uncased"}, "student": {"kind": "tinybert", "init": "scratch"},
           "stages": [{"name": "general", "data": "corpus", "epochs": 1, "losses": {"hidden_mse": 1}}]}
    metrics = {"general": True, "teacher": {"parameters": 1e8, "layers": 12},
               "student": {"parameters": 1e7, "kind": "bert", "layers": 4, "hidden": 312},
               "ratios": {"parameters": 0.1, "encoder_compute": 0.1, "dev_score": None},
               "corpus": {"train_sequences": 10, "heldout_sequences": 2},
               "heldout_before": {"general": {"loss/hidden_mse": 2.0}},
               "heldout_after": {"general": {"loss/hidden_mse": 1.0}}, "wall_seconds": 1}
    card = model_card(cfg, {"command": "distill run gen.yaml"}, metrics, tmp_path)
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
