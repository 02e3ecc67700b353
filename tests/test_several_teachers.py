"""Several teachers: config, the targets prediction losses get (hand computations), which teacher an intermediate
loss reads, and an end-to-end smoke run with two teachers and scheduled weights."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from distill.adaptor import Record
from distill.config import ConfigError, load_config
from distill.io import cache_root
from distill.lab.run import run_experiment
from distill.losses import LossContext, LossError
from distill.needs import Needs
from distill.objective import Objective, ensemble_logits
from distill.predictions import read_predictions

from .helpers import SMOKE, raises_with

TWO = 'teachers=[{finetune: {seed: 0}}, {name: other, weight: 3, finetune: {seed: 1}}]'


def test_teachers_merge_over_teacher_and_get_names():
    cfg = load_config(SMOKE, [TWO])
    assert [t.name for t in cfg.teachers] == ["teacher1", "other"]
    assert [t.weight for t in cfg.teachers] == [1.0, 3.0]
    assert [t.finetune.seed for t in cfg.teachers] == [0, 1]
    # Shared settings from `teacher:` reach every entry; `teacher` is the first.
    assert all(t.checkpoint == "random" and t.random.layers == 4 and t.finetune.epochs == 1 for t in cfg.teachers)
    assert cfg.teacher is cfg.teachers[0]
    lone = load_config(SMOKE)
    assert [t.name for t in lone.teachers] == ["teacher"]


def test_teacher_errors_name_the_key():
    with raises_with(ConfigError, "`teachers.1.name`", "'a'", "used twice"):
        load_config(SMOKE, ["teachers=[{name: a}, {name: a}]"])
    with raises_with(ConfigError, "`teachers.0.weight`", "0.0", "a positive number"):
        load_config(SMOKE, ["teachers=[{weight: 0}, {}]"])
    with raises_with(ConfigError, "stages.0.losses.hidden_mse.teacher", "'nobody'", "['teacher1', 'other']"):
        load_config(SMOKE, [TWO, "stages.0.losses.hidden_mse={teacher: nobody}"])
    with raises_with(LossError, "stages.1.losses.hard_ce", "'other'", "reads no teacher"):
        load_config(SMOKE, [TWO, "stages.1.losses={hard_ce: {teacher: other}}"])
    with raises_with(ConfigError, "unknown key", "`teachers.0.seed`"):
        load_config(SMOKE, ["teachers=[{seed: 1}]"])


def _records(n=3, c=4, seed=0):
    torch.manual_seed(seed)
    mask = torch.ones(n, 5)
    return [Record(torch.randn(n, c), mask, hidden_states=(torch.randn(n, 5, 6),) * 3) for _ in range(3)]


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_prediction_losses_compare_against_the_weighted_average_distribution(temperature):
    s, a, b = _records()
    obj = Objective({"soft_cross_entropy": {"temperature": temperature}, "kl_div": {"temperature": temperature},
                     "logits_mse": 1.0}, teachers={"a": 1.0, "b": 3.0})
    _, parts = obj(s, {"a": a, "b": b}, {}, LossContext([]))
    # By hand: p = 1/4 softmax(z_a / t) + 3/4 softmax(z_b / t).
    p = 0.25 * torch.softmax(a.logits / temperature, -1) + 0.75 * torch.softmax(b.logits / temperature, -1)
    log_q = torch.log_softmax(s.logits / temperature, -1)
    torch.testing.assert_close(parts["soft_cross_entropy"], -(p * log_q).sum(-1).mean())
    torch.testing.assert_close(parts["kl_div"], (p * (p.log() - log_q)).sum(-1).mean() * temperature**2)
    mean = 0.25 * a.logits + 0.75 * b.logits
    torch.testing.assert_close(parts["logits_mse"], ((s.logits - mean) ** 2).mean())


def test_a_named_teacher_is_read_alone_and_intermediate_losses_default_to_the_first():
    s, a, b = _records(seed=1)
    obj = Objective({"hidden_mse": {"teacher": "b"}, "cosine_hidden": 1.0, "kl_div": {"teacher": "a"}},
                    teachers={"a": 1.0, "b": 1.0})
    _, parts = obj(s, {"a": a, "b": b}, {}, LossContext([(1, 2)]))
    torch.testing.assert_close(parts["hidden_mse"], ((s.hidden_states[1] - b.hidden_states[2]) ** 2).mean())
    cos = torch.nn.functional.cosine_similarity(s.hidden_states[-1], a.hidden_states[-1], dim=-1)
    torch.testing.assert_close(parts["cosine_hidden"], (1 - cos).mean())
    p = torch.softmax(a.logits, -1)
    torch.testing.assert_close(parts["kl_div"], (p * (p.log() - torch.log_softmax(s.logits, -1))).sum(-1).mean())
    # What each teacher must give: `b` hidden states, `a` hidden states and logits.
    assert obj.teacher_needs() == {"b": Needs(hidden=True), "a": Needs(hidden=True)}
    # Logits only (a cache can give them); which rows come is the objective's, not a teacher's.
    assert Objective({"kl_div": 1.0}, teachers={"a": 1.0, "b": 1.0}).teacher_needs() == {"a": Needs(),
                                                                                           "b": Needs()}


def test_a_loss_naming_a_deeper_teacher_uses_that_teachers_layer_pairs():
    s, a, b = _records(seed=2)
    b = Record(b.logits, b.attention_mask, hidden_states=tuple(torch.randn(3, 5, 6) for _ in range(5)))
    obj = Objective({"hidden_mse": {"teacher": "b"}}, teachers={"a": 1.0, "b": 1.0})
    ctx = LossContext([(1, 1), (2, 2)], teacher_pairs={"a": [(1, 1), (2, 2)], "b": [(1, 2), (2, 4)]})
    _, parts = obj(s, {"a": a, "b": b}, {}, ctx)
    expect = sum(((s.hidden_states[i] - b.hidden_states[j]) ** 2).mean() for i, j in [(1, 2), (2, 4)])
    torch.testing.assert_close(parts["hidden_mse"], expect)


def test_unknown_teacher_in_an_objective_is_refused():
    with raises_with(LossError, "hidden_mse.teacher", "'c'", "a, b"):
        Objective({"hidden_mse": {"teacher": "c"}}, teachers={"a": 1.0, "b": 1.0})


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two"
    cfg = load_config(SMOKE, [TWO, "stages.0.losses={embedding_mse: 1, attention_mse: 1, "
                                   "hidden_mse: {weight: 1, teacher: other}}",
                              "stages.1.losses.soft_cross_entropy={weight: {schedule: linear, from: 1.0, to: 0.0}, "
                              "temperature: {schedule: cosine, from: 4.0, to: 1.0}}"])
    return out, run_experiment(cfg, out, log=lambda *_: None)


def test_two_teachers_are_fine_tuned_and_cached_each_on_its_own(two_teachers):
    out, metrics = two_teachers
    teachers = metrics["teacher"]["teachers"]
    assert list(teachers) == ["teacher1", "other"] and [t["weight"] for t in teachers.values()] == [0.25, 0.75]
    keys = [t["cache_key"] for t in teachers.values()]
    assert keys[0] != keys[1]
    for key in keys:
        assert (cache_root() / "teachers" / key / "teacher.json").exists()
    # The prediction stage reads logits only: each teacher's come from its own cache file.
    cached = set()
    for path in (cache_root() / "logits").glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            cached.add(f.metadata()["teacher"])
    assert set(keys) <= cached


def test_the_ensemble_is_what_predictions_and_the_report_compare_with(two_teachers):
    out, metrics = two_teachers
    pred, _ = read_predictions(out)
    # Each teacher's dev logits, recomputed from its cache by hand: log(1/4 softmax(z1) + 3/4 softmax(z2)).
    dev = {}
    for path in (cache_root() / "logits").glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            meta, logits = f.metadata(), f.get_tensor("logits")
        if logits.shape[0] == len(pred["dev"].ids):
            dev.setdefault(meta["teacher"], []).append(logits)
    keys = [t["cache_key"] for t in metrics["teacher"]["teachers"].values()]
    candidates = [(z1, z2) for z1 in dev[keys[0]] for z2 in dev[keys[1]]]
    want = [np.log(0.25 * torch.softmax(z1, -1).numpy() + 0.75 * torch.softmax(z2, -1).numpy())
            for z1, z2 in candidates]
    assert any(np.allclose(pred["dev"].teacher, w, atol=1e-5) for w in want)
    # The run's teacher scores are the ensemble's, the model whose logits the predictions file holds.
    from distill import metrics as task_metrics

    want_dev = task_metrics.compute(["macro_f1", "accuracy"], pred["dev"].teacher, pred["dev"].labels, 3)
    assert metrics["teacher"]["dev"] == pytest.approx(want_dev)
    assert metrics["teacher"]["source"] == "ensemble of teacher1, other"
    assert all("dev" in t and "gate" in t for t in metrics["teacher"]["teachers"].values())


def test_scheduled_weight_and_temperature_are_logged_every_step(two_teachers):
    out, _ = two_teachers
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    weights = acc.Scalars("prediction/schedule/soft_cross_entropy.weight")
    temps = acc.Scalars("prediction/schedule/soft_cross_entropy.temperature")
    run = json.loads((out / "metrics.json").read_text())
    total = [h for h in run["history"] if h["stage"] == "prediction"][-1]["step"]  # steps count per stage
    assert total == 16 and [e.step for e in weights] == list(range(1, total + 1))
    # Logged after the optimiser step, with the fraction the step was taken at: (k - 1) / total.
    for k, (w, t) in enumerate(zip(weights, temps, strict=True), start=1):
        f = (k - 1) / total
        assert w.value == pytest.approx(1.0 - f, abs=1e-6)
        assert t.value == pytest.approx(1.0 + 3.0 * (1 + np.cos(np.pi * f)) / 2, abs=1e-5)


def test_ensemble_logits_are_the_log_of_the_mean_distribution():
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    got = ensemble_logits({"a": z1, "b": z2}, {"a": 0.5, "b": 0.5}, regression=False)
    torch.testing.assert_close(got.exp(), 0.5 * torch.softmax(z1, -1) + 0.5 * torch.softmax(z2, -1))
    torch.testing.assert_close(ensemble_logits({"a": z1[:, :1], "b": z2[:, :1]}, {"a": 0.2, "b": 0.8}, True),
                               0.2 * z1[:, :1] + 0.8 * z2[:, :1])


def test_check_names_every_teacher_and_estimates_each_fine_tuning(capsys):
    from distill.lab.cli import main

    # relation_kl reads the first teacher's queries/keys/values, hidden_mse the other's hidden states: one replica
    # model serves both names in the estimate, and must give both.
    # (An lr no other test uses: neither teacher is cached, so both fine-tunings are estimated.)
    code = main(["check", str(SMOKE), "--set", TWO, "--set", "teacher.finetune.lr=0.0021", "--set",
                 "stages.0.losses={relation_kl: 1, hidden_mse: {teacher: other}}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "teacher teacher1 (weight 0.25): random" in out and "teacher other (weight 0.75): random" in out
    assert "seed 0 (not cached yet)" in out and "seed 1 (not cached yet)" in out
    for name in ("teacher1", "other"):
        assert f"teacher fine-tuning ({name}): ~" in out
    assert "layer map uniform (student -> teacher teacher1): 1->2, 2->4" in out
    assert "layer map uniform (student -> teacher other): 1->2, 2->4" in out
    assert "stage 1 intermediate: ~" in out
