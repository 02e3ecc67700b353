"""End-to-end runs of experiments/smoke.yaml (tiny random teacher and student, seconds each)."""

import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distill.config import load_config
from distill.lab.cli import main
from distill.lab.run import run_experiment
from distill.lab.run_folder import RunError
from distill.losses import LOSSES, register_loss
from distill.trainer import TrainingDiverged

from .helpers import ROOT, SMOKE, assert_facts, raises_with


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    logs = []
    metrics = run_experiment(load_config(SMOKE), out, log=logs.append)
    return out, metrics, logs


def test_run_folder_is_complete(finished):
    out, metrics, _ = finished
    for name in ("config.yaml", "run.json", "metrics.json", "student/config.json", "student/model.safetensors",
                 "student/tokenizer.json", "checkpoints/last/progress.json"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert set(run["git"]) == {"commit", "dirty"} and run["libraries"]["torch"] and run["seed"] == 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["student"]["dev"]["macro_f1"] == metrics["student"]["dev"]["macro_f1"]
    assert set(saved["teacher"]["dev"]) == {"macro_f1", "accuracy"}
    assert saved["student"]["parameters"] < saved["teacher"]["parameters"]
    assert [h["stage"] for h in saved["history"]] == ["intermediate", "prediction", "prediction"]
    # Held-out distillation terms are recorded for the intermediate stage.
    assert {"loss/attention_mse", "loss/hidden_mse", "loss/embedding_mse"} <= set(saved["history"][0])
    from distill.lab.records import RunMetrics
    from distill.lab.summary import summary_text

    text = summary_text(RunMetrics.load(out), out).splitlines()
    dev = saved["student"]["dev"]
    assert f"dev: macro_f1 {dev['macro_f1']:.4f}, accuracy {dev['accuracy']:.4f}" in text[4]
    assert text[6].startswith(f"student/teacher: dev macro_f1 {100 * saved['ratios']['dev_score']:.1f}%, parameters")


def test_check_estimates_each_stage_from_timed_batches_and_says_how_it_compares(finished, capsys):
    """`distill check` times real batches of a replica of the run; printed next to the smoke run's real times
    (not asserted: wall time depends on the machine's load). Asserted: the work the estimate counts is the work
    the run did, every part has a finite positive estimate, and the run records each epoch's wall time."""
    import math
    import re

    from distill.lab.check import data_sizes, preflight
    from distill.lab.estimate import estimate

    out, _, _ = finished
    cfg = load_config(SMOKE)
    plan, workflow = preflight(cfg)
    est = estimate(cfg, plan, workflow, data_sizes(cfg, plan, workflow))
    parts = {c.what: c for c in est.costs}
    assert set(parts) == {"stage 1 intermediate", "stage 2 prediction", "evaluation and teacher logits"}
    assert all(0 < c.seconds < math.inf for c in est.costs) and est.total == sum(c.seconds for c in est.costs)
    history = json.loads((out / "metrics.json").read_text())["history"]
    steps, real = {}, {}
    for h in history:
        steps[h["stage"]] = h["step"]
        real[h["stage"]] = real.get(h["stage"], 0.0) + h["seconds"]
    counted = [int(re.search(r"; ([\d,]+) optimizer steps", parts[f"stage {i} {name}"].detail)[1].replace(",", ""))
               for i, name in ((1, "intermediate"), (2, "prediction"))]
    assert counted == [steps["intermediate"], steps["prediction"]]
    evaluations = [int(re.search(r"\+ (\d+) x [\d,]+ dev batches", parts[f"stage {i} {name}"].detail)[1])
                   for i, name in ((1, "intermediate"), (2, "prediction"))]
    assert evaluations == [sum(h["stage"] == name for h in history) for name in ("intermediate", "prediction")]
    lines = est.lines()
    assert lines[0].startswith("estimate: timed") and lines[-1].startswith("  total: ~")
    with capsys.disabled():
        for i, name in enumerate(("intermediate", "prediction"), 1):
            print(f"\nsmoke stage {name}: estimated {parts[f'stage {i} {name}'].seconds:.2f} s, took "
                  f"{real[name]:.2f} s")


def test_predictions_file_reproduces_the_runs_metrics(finished):
    from distill.loaders import load_task
    from distill.metrics import compute
    from distill.predictions import read_predictions
    from distill.teachers.gate import majority_baseline

    out, _, _ = finished
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["student"]["predictions"] == "predictions.safetensors"
    splits, meta = read_predictions(out / saved["student"]["predictions"])
    assert meta == {"task": "tweets", "labels": ["negative", "neutral", "positive"], "main_metric": "macro_f1",
                    "metrics": ["macro_f1", "accuracy"], "num_labels": 3, "type": "sequence_classification"}
    task = load_task(load_config(SMOKE).task)
    assert set(splits) == {"dev", "test"}
    for split, p in splits.items():
        examples = task.splits[split]
        assert p.ids == [ex.id for ex in examples]
        assert p.labels.dtype == np.int64 and p.labels.tolist() == [ex.label for ex in examples]
        assert p.student.shape == p.teacher.shape == (len(examples), 3)
        for who in ("student", "teacher"):
            got = compute(tuple(meta["metrics"]), getattr(p, who), p.labels, meta["num_labels"])
            assert got == pytest.approx(saved[who][split], abs=1e-6), (who, split)
        # The majority-class baseline is recorded whether or not the gate is on (smoke turns it off).
        assert saved["teacher"]["majority_baseline"][split] == pytest.approx(
            majority_baseline(task, task.splits["train"], examples))


def test_predict_library_gives_the_logits_in_the_predictions_file(finished):
    from distill.lab.predict import load_predictor
    from distill.loaders import load_task
    from distill.predictions import read_predictions

    out, _, _ = finished
    cfg = load_config(out / "config.yaml")
    dev = load_task(cfg.task).splits["dev"]
    splits, _ = read_predictions(out)
    assert splits["dev"].ids == [ex.id for ex in dev]
    logits = load_predictor(out, max_length=cfg.task.max_length).logits([ex.text_a for ex in dev])
    np.testing.assert_allclose(logits.numpy(), splits["dev"].student, atol=1e-4)


def test_exported_student_loads_with_transformers_and_predicts_like_the_run(finished):
    out, metrics, _ = finished
    model = AutoModelForSequenceClassification.from_pretrained(out / "student").eval()
    tok = AutoTokenizer.from_pretrained(out / "student")
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    # The projections belong to the run, not to the exported student.
    from safetensors.torch import load_file

    assert not any(k.startswith("projections") for k in load_file(out / "student" / "model.safetensors"))
    ckpt = load_file(out / "checkpoints" / "last" / "model.safetensors")
    assert any(k.startswith("projections.hidden") for k in ckpt)
    enc = tok(["the flight was late again", "thanks for the upgrade"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    state = {k[len("student."):]: v for k, v in ckpt.items() if k.startswith("student.")}
    twin = AutoModelForSequenceClassification.from_pretrained(out / "student")
    twin.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(**enc).logits, logits)


def test_tensorboard_has_each_loss_term_lr_metrics_throughput_and_hparams(finished):
    out, _, _ = finished
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("intermediate/train/attention_mse", "intermediate/train/hidden_mse",
                "intermediate/train/embedding_mse", "intermediate/train/total", "intermediate/lr",
                "intermediate/examples_per_s", "prediction/train/soft_cross_entropy", "prediction/dev/macro_f1"):
        assert tag in tags, tag
    hp = EventAccumulator(str(out / "tb"))
    hp.Reload()
    plugins = hp.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins


def test_teacher_is_cached_and_reused(finished, tmp_path):
    _, first, logs = finished
    assert any("fine-tuning" in line for line in logs) or any("reusing" in line for line in logs)
    logs2 = []
    second = run_experiment(load_config(SMOKE, ["seed=7", "stages.1.epochs=1"]), tmp_path / "r2", log=logs2.append)
    assert any("reusing the fine-tuned teacher" in line for line in logs2)
    assert second["teacher"]["dev"] == first["teacher"]["dev"]
    assert second["teacher"]["cache_key"] == first["teacher"]["cache_key"]
    logs3 = []
    third = run_experiment(load_config(SMOKE, ["teacher.finetune.lr=0.002", "stages.1.epochs=1"]), tmp_path / "r3",
                           log=logs3.append)
    assert third["teacher"]["cache_key"] != first["teacher"]["cache_key"]
    assert any("fine-tuning random" in line for line in logs3)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_result(finished, tmp_path):
    _, uninterrupted, _ = finished
    cfg = load_config(SMOKE)
    out = tmp_path / "interrupted"

    def crash(stage, step):
        if stage == "prediction" and step == 11:  # epoch 2 of the prediction stage, mid-epoch
            raise Interrupt

    with pytest.raises(Interrupt):
        run_experiment(load_config(SMOKE, ["train.checkpoint_every=3"]), out, on_step=crash, log=lambda *_: None)
    assert not (out / "metrics.json").exists()
    resumed = run_experiment(load_config(SMOKE, ["train.checkpoint_every=3"]), out, resume=True,
                             log=lambda *_: None)
    assert resumed["student"]["dev"] == pytest.approx(uninterrupted["student"]["dev"], abs=1e-6)
    assert resumed["student"]["test"] == pytest.approx(uninterrupted["student"]["test"], abs=1e-6)
    del cfg


def test_existing_folder_and_changed_config_are_refused(finished, tmp_path):
    out, _, _ = finished
    with raises_with(RunError, str(out), "finished run", "--out"):
        run_experiment(load_config(SMOKE), out)
    with raises_with(RunError, "--resume", str(out), "config differs", "'stages'"):
        run_experiment(load_config(SMOKE, ["stages.0.lr=0.5"]), out, resume=True)
    with raises_with(RunError, "--resume", str(tmp_path / "nothing"), "not a run folder", "config.yaml"):
        run_experiment(load_config(SMOKE), tmp_path / "nothing", resume=True)


def test_resume_ignores_settings_added_since_at_their_defaults(finished, tmp_path):
    import yaml

    from distill.lab.run_folder import check_can_start

    out, _, _ = finished
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"].pop("dropout") is None  # as written before `train.dropout` existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_can_start(load_config(SMOKE), tmp_path, resume=True)
    with raises_with(RunError, str(tmp_path), "config differs", "['train']"):
        check_can_start(load_config(SMOKE, ["train.dropout=0.2"]), tmp_path, resume=True)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    @register_loss("test_nan_after_four")
    def _nan(s, t, batch, ctx):
        calls["n"] += 1
        value = s.logits.float().pow(2).mean()
        return value * float("nan") if calls["n"] > 4 else value

    try:
        cfg = load_config(SMOKE, ["stages.1.losses={test_nan_after_four: 1}", "train.checkpoint_every=2",
                                  "train.log_every=1"])
        out = tmp_path / "nan"
        with raises_with(TrainingDiverged, "NaN or infinite", "last good checkpoint",
                         str(out / "checkpoints" / "last")):
            run_experiment(cfg, out, log=lambda *_: None)
        progress = json.loads((out / "checkpoints" / "last" / "progress.json").read_text())
        assert progress["stage"] == 1 and progress["step"] == 4  # saved before the bad step, never after
    finally:
        LOSSES.pop("test_nan_after_four")


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    assert main(["run", str(SMOKE), "--set", "stages.0.layer_map=middle"]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "stages.0", "layer_map", "'middle'", "uniform, top, bottom")
    assert main(["check", str(SMOKE), "--set", "student.layerz=3"]) == 2
    assert_facts(capsys.readouterr().err, "`student.layerz`", "`student`", "layers")
    assert main(["check", str(SMOKE), "--no-estimate", "--set", "stages.1.epochs=5"]) == 0
    assert "5 epochs x" in capsys.readouterr().out


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    metrics = run_experiment(load_config(SMOKE, ["stages.1.grad_accum=2", "stages.1.batch_size=16"]),
                             tmp_path / "accum", log=lambda *_: None)
    prediction = [h for h in metrics["history"] if h["stage"] == "prediction"]
    # 256 examples / 16 per batch = 16 batches per epoch = 8 optimizer steps per epoch.
    assert [h["step"] for h in prediction] == [8, 16]


def test_predict_gives_the_models_labels_and_probabilities(finished, tmp_path, capsys):
    out, _, _ = finished
    texts = ["the flight was late again", "thanks for the upgrade"]
    model = AutoModelForSequenceClassification.from_pretrained(out / "student").eval()
    tok = AutoTokenizer.from_pretrained(out / "student")
    with torch.no_grad():
        probs = model(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert main(["predict", str(out), "--text", texts[0], "--text", texts[1], "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == texts
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] == model.config.id2label[int(p.argmax())]
        expected = dict(zip(["negative", "neutral", "positive"], p.tolist(), strict=True))
        assert row["probabilities"] == pytest.approx(expected, abs=1e-5)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    f = tmp_path / "in.txt"
    f.write_text(texts[0] + "\n\n" + texts[1] + "\n")
    assert main(["predict", str(out / "student"), "--file", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [r["label"] for r in rows]
    f.write_text("a\tb\nc\n")
    assert main(["predict", str(out), "--file", str(f)]) == 2
    assert_facts(capsys.readouterr().err, f"{f}:2", "single texts", "tab-separated pairs")
    assert main(["predict", str(tmp_path), "--text", "x"]) == 2
    assert_facts(capsys.readouterr().err, str(tmp_path), "not an exported student", "config.json")


def test_bench_student_accuracy_matches_the_runs_own_evaluation(finished):
    from distill.lab.bench import run_bench

    out, metrics, _ = finished
    rows = run_bench([], seq_len=16, batch=4, budget_s=0.0, int8=True, student=str(out), log=lambda *_: None)
    assert [r.name.split()[-1] for r in rows] == [str(out / "student"), "int8"]
    assert rows[0].accuracy == pytest.approx(metrics["student"]["dev"], abs=1e-6)
    assert set(rows[1].accuracy) == {"macro_f1", "accuracy"} and rows[1].disk_bytes < rows[0].disk_bytes


def test_eval_every_evaluates_dev_every_n_steps_and_keeps_the_best(tmp_path):
    # TinyBERT's task_distill.py evaluates every `eval_step` optimiser steps of the prediction step and keeps the best.
    out = tmp_path / "every"
    metrics = run_experiment(load_config(SMOKE, ["stages.1.eval_every=3"]), out, log=lambda *_: None)
    prediction = [h for h in metrics["history"] if h["stage"] == "prediction"]
    # 256 examples / 32 = 8 steps per epoch, 2 epochs: every 3rd step and the stage's last.
    assert [h["step"] for h in prediction] == [3, 6, 9, 12, 15, 16]
    assert [h["epoch"] for h in prediction] == [1, 1, 2, 2, 2, 2]
    best = max(prediction, key=lambda h: h["macro_f1"])
    # The kept checkpoint is the best evaluation, wherever it fell, and the test split is scored on it.
    assert metrics["selected"]["prediction"] == {"step": best["step"], "epoch": best["epoch"],
                                                 "macro_f1": best["macro_f1"]}
    assert metrics["student"]["dev"]["macro_f1"] == pytest.approx(best["macro_f1"], abs=1e-6)
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("prediction/dev/macro_f1")] == [3, 6, 9, 12, 15, 16]


def test_eval_every_resumes_to_the_same_result(tmp_path):
    overrides = ["stages.1.eval_every=3", "train.checkpoint_every=2"]
    whole = run_experiment(load_config(SMOKE, overrides), tmp_path / "whole", log=lambda *_: None)

    def crash(stage, step):
        if stage == "prediction" and step == 11:
            raise Interrupt

    out = tmp_path / "cut"
    with pytest.raises(Interrupt):
        run_experiment(load_config(SMOKE, overrides), out, on_step=crash, log=lambda *_: None)
    resumed = run_experiment(load_config(SMOKE, overrides), out, resume=True, log=lambda *_: None)
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in whole["history"]]
    assert resumed["student"]["test"] == pytest.approx(whole["student"]["test"], abs=1e-6)
    assert resumed["selected"] == whole["selected"]


def test_a_stored_teacher_record_trains_the_same_student(finished, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))  # a fresh cache: the record is built here
    _, live, _ = finished
    logs = []
    stored = run_experiment(load_config(SMOKE, ["train.teacher_record=fp32"]), tmp_path / "stored", log=logs.append)
    assert any(line.startswith("teacher record: one teacher pass") for line in logs)
    for a, b in zip(live["history"], stored["history"], strict=True):
        for k, v in a.items():
            if k.startswith("loss/"):
                assert b[k] == pytest.approx(v, rel=1e-4), (a["stage"], k)
    assert stored["student"]["dev"] == pytest.approx(live["student"]["dev"], abs=1e-6)


def test_a_non_finite_dev_score_is_never_the_one_kept(tmp_path, monkeypatch):
    import distill.trainer as trainer

    real, calls = trainer.evaluate, {"n": 0}

    def first_prediction_nan(*args, **kwargs):
        out = real(*args, **kwargs)
        objective = args[5] if len(args) > 5 else kwargs.get("objective")
        if objective is not None and objective.trains_logits and objective.uses_teacher:  # not the teacher's own
            calls["n"] += 1
            if calls["n"] == 1:  # the prediction stage's first evaluation
                out = {**out, "macro_f1": float("nan")}
        return out

    monkeypatch.setattr(trainer, "evaluate", first_prediction_nan)
    metrics = run_experiment(load_config(SMOKE, ["stages.1.eval_every=4"]), tmp_path / "nan", log=lambda *_: None)
    prediction = [h for h in metrics["history"] if h["stage"] == "prediction"]
    assert prediction[0]["step"] == 4 and prediction[0]["macro_f1"] != prediction[0]["macro_f1"]  # NaN
    assert metrics["selected"]["prediction"]["step"] != 4
    finite = [h["macro_f1"] for h in prediction[1:]]
    assert metrics["selected"]["prediction"]["macro_f1"] == max(finite)


def test_check_times_an_intermediate_stage_as_it_runs_with_a_stored_record(monkeypatch):
    import distill.lab.estimate as est_module
    from distill.lab.check import data_sizes, preflight
    from distill.lab.estimate import estimate

    read = []
    real = est_module.TeacherRecord.batch

    def counted(self, *args, **kwargs):
        read.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(est_module.TeacherRecord, "batch", counted)
    cfg = load_config(SMOKE, ["train.teacher_record=fp32"])
    plan, workflow = preflight(cfg)
    est = estimate(cfg, plan, workflow, data_sizes(cfg, plan, workflow))
    final = next(c for c in est.costs if c.what == "evaluation and teacher logits")
    assert "teacher record over train" in final.detail
    assert read  # the intermediate stage's batches were timed reading the record, not running the teacher


def test_an_older_runs_resolved_config_loads_with_its_unset_keys_at_todays_defaults(tmp_path):
    # Before per-kind sections, one flat `student:` was written whole, a BiLSTM's unset width as `hidden: null`
    # (read as 150): such a run must still resume and its config.yaml still run, as the same model.
    published = ROOT / "experiments/ablations/tweets/results/runs/ablation-tang/distilled+aug/seed4/config.yaml"
    text = published.read_text()
    assert "\n  hidden: 150\n" in text
    (tmp_path / "config.yaml").write_text(text.replace("\n  hidden: 150\n", "\n  hidden: null\n"))
    assert load_config(tmp_path / "config.yaml").student == load_config(published).student


def test_an_older_runs_record_is_summarised(tmp_path):
    # Runs before the student registry recorded TinyBERT and DistilBERT alike as kind "bert"; a plugin's run read
    # where the plugin is not installed names a kind nobody registered. Both still summarise by their shape.
    from distill.lab.records import RunMetrics
    from distill.lab.summary import summary_text

    run = ROOT / "experiments/ablations/tweets/results/runs/ablation-heads/tinybert-2-teachers/seed1"
    m = RunMetrics.load(run)
    assert m.student.kind == "bert"
    assert f"student  {m.student.layers}L-{m.student.hidden}  " in summary_text(m, run)
