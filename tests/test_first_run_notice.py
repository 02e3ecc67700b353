"""The first run of anything that builds a cached artefact says so before the work, in one line with its estimated
time (the fine-tuned teacher, the adapted masked LM, the teacher-logit cache; the augmented set's lines are tested in
tests/test_augment_cost.py), and measuring that estimate changes nothing the run computes."""

import dataclasses
import itertools
import math
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import distill.teachers.finetune
import distill.teachers.logits
import distill.teachers.mlm_adapt
from distill.config import load_config
from distill.encoded import encode_examples
from distill.loaders import load_task
from distill.stage_timing import Cost, finetune_cost
from distill.teachers.load import load_tokenizer, random_bert
from distill.trainer import DistillModule

from .helpers import SMOKE, quiet


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(SMOKE)
    task = load_task(cfg.task)
    tok = load_tokenizer(cfg.teacher.tokenizer)
    train = encode_examples(task.splits["train"][:70], tok, cfg.task.max_length, False, quiet)
    return cfg, task, tok, train


def test_timing_a_fine_tuning_changes_neither_the_model_nor_the_random_state(smoke):
    from accelerate import Accelerator

    from distill.teachers.finetune import finetune_stage

    cfg, task, tok, _ = smoke
    model = random_bert(cfg.teacher.random, tok, task.labels, 0)
    module = DistillModule(model)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    cost = finetune_cost(Accelerator(cpu=True), module, task, task.splits["train"], 1,
                         finetune_stage(cfg, task, cfg.teacher), tok, cfg.task.max_length, cfg.train)
    assert math.isfinite(cost.seconds) and math.isfinite(cost.spread)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def _finetuned_weights(tmp_path, monkeypatch, capsys, name: str, timing: bool) -> tuple[dict, list[str]]:
    from distill.lab.cli import main

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / name))
    if not timing:
        monkeypatch.setattr(distill.teachers.finetune, "finetune_cost",
                            lambda *a, **k: Cost("teacher fine-tuning", 0.0, ""))
    assert main(["run", str(SMOKE), "--out", str(tmp_path / name / "run"), "--set", "stages=[{name: p, epochs: 1, "
                 "losses: {soft_cross_entropy: 1}}]", "--set", "task.train_limit=96"]) == 0
    (teacher,) = (tmp_path / name / "teachers").glob("*/model.safetensors")
    return load_file(teacher), capsys.readouterr().out.splitlines()


def test_a_first_run_says_what_it_builds_with_an_estimate_and_the_result_is_unchanged(tmp_path, monkeypatch, capsys):
    timed_weights, logs = _finetuned_weights(tmp_path, monkeypatch, capsys, "timed", True)
    plain_weights, _ = _finetuned_weights(tmp_path, monkeypatch, capsys, "plain", False)
    assert timed_weights.keys() == plain_weights.keys()
    assert all(torch.equal(timed_weights[k], plain_weights[k]) for k in timed_weights)
    notice = [i for i, line in enumerate(logs) if line.startswith("teacher: fine-tuning random on tweets")]
    assert len(notice) == 1, [logs[i] for i in notice]
    line = logs[notice[0]]
    assert re.search(r"\(96 examples, 1 epoch\), once: estimated ~[\d.]+ s( \(\+-\d+%\))? on cpu \(6 batches timed, "
                     r"as `distill check` times them\); cached at \S+/teachers/\w+ for every later run", line), line
    # Before the teacher's results, and every logit cache the run builds says so too, with its own estimate.
    assert notice[0] < next(i for i, line in enumerate(logs) if line.startswith("teacher  "))
    logit_lines = [line for line in logs if line.startswith("teacher logits: computing")]
    assert logit_lines and all(re.search(r"examples once, estimated [\d.]+ s on cpu", x) for x in logit_lines)


def test_the_runs_notice_and_check_estimate_the_teachers_fine_tuning_alike(tmp_path, monkeypatch, capsys):
    """One timing code: on the same clock the run's notice and `distill check` give the same figure (they were
    2.2x apart: two formulas, two samples). Check builds nothing, shows no build progress, and puts its plan
    first."""
    import distill.stage_timing
    from distill.lab.cli import main

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(distill.stage_timing, "timed", lambda fn, device: (fn(), 0.25)[1])  # 0.25 s a batch
    assert main(["check", str(SMOKE)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("checks passed:") and "resolved config" not in out
    assert "teacher logits" not in err and "encoding" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("meta.json"))
    checked = re.search(r"teacher fine-tuning: (~[^(]+?) \(", out).group(1)
    assert main(["run", str(SMOKE), "--out", str(tmp_path / "run")]) == 0
    notice = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("teacher: fine-tuning"))
    assert f"estimated {checked} on cpu" in notice, (checked, notice)
    assert main(["check", str(SMOKE), "--no-estimate", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert out.index("run:      smoke") < out.index("resolved config:") < out.index("stages:")


def test_the_logit_cache_estimate_extrapolates_the_second_batch_per_token(smoke, monkeypatch):
    from accelerate import Accelerator

    from distill.trainer import make_loader

    cfg, task, tok, train = smoke
    teacher = random_bert(cfg.teacher.random, tok, task.labels, 0).eval()
    clock = itertools.count()  # every perf_counter call advances one second: 1 s per batch, by construction
    monkeypatch.setattr(distill.teachers.logits.time, "perf_counter", lambda: float(next(clock)))
    said = []
    small = dataclasses.replace(cfg.train, eval_batch_size=16)  # 70 examples: 5 batches
    logits = distill.teachers.logits.compute_logits(teacher, train, Accelerator(cpu=True), small, announce=said.append)
    # By hand: 2 s for the first two batches, then the second's second per token over the tokens left.
    first, second = [int(b["attention_mask"].sum()) for b in itertools.islice(make_loader(train, 16, 0, False,
                                                                                          small)[0], 2)]
    total = int(np.diff(np.load(train.folder / "offsets.npy")).sum())  # every example's tokens, from the file
    assert said == [pytest.approx(2 + (total - first - second) / second)]
    assert torch.equal(logits, distill.teachers.logits.compute_logits(teacher, train, Accelerator(cpu=True), small))


def test_adapting_a_masked_lm_says_its_estimate_three_steps_in(tmp_path):
    from transformers import BertConfig, BertModel

    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    texts = ["the flight was delayed again", "thanks for the great service", "lost my bag at the gate"] * 4
    said = []
    distill.teachers.mlm_adapt.adapt_encoder(str(tmp_path / "enc"), texts, tmp_path / "a", steps=5, batch_size=4,
                                     log=said.append, why=", once; cached there")
    assert len(said) == 2 and said[1].startswith("masked LM written to"), said
    assert re.fullmatch(r"masked LM: adapting \S+ with an MLM head \(5 steps of 4 texts\), estimated [\d.]+ s on cpu "
                        r"\(from its first steps\), once; cached there", said[0]), said
