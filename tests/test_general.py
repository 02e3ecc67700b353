"""General distillation: the packed corpus, the DistilBERT losses, and general students as task inits."""

import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from distill.adaptor import Record
from distill.config import CorpusConfig, load_config
from distill.corpus import CorpusDataset, pack_corpus
from distill.losses import LOSSES, LossContext
from distill.teachers.load import load_tokenizer

from .helpers import SMOKE, raises_with


def test_packed_corpus_round_trips_and_splits(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "c.txt"
    doc1 = ["the flight was late .", "we waited for hours at the gate .", "never again ."]
    doc2 = ["great crew", " ".join(["word"] * 40)]  # a sentence longer than one sequence
    text.write_text("\n".join(doc1) + "\n\n" + "\n".join(doc2) + "\n")
    cfg = CorpusConfig(sources=[str(text)], max_length=16, heldout=0.0)
    folder = pack_corpus(cfg, tokenizer, log=lambda *_: None)
    assert pack_corpus(cfg, tokenizer, log=lambda *_: None) == folder  # built once
    ds = CorpusDataset(folder, "train", 0.0, 0)
    seqs = [ds.tokens(i) for i in range(len(ds))]
    assert all(s[0] == tokenizer.cls_token_id and s[-1] == tokenizer.sep_token_id and len(s) <= 16 for s in seqs)
    body = [int(t) for s in seqs for t in s[1:-1]]
    want = [t for line in doc1 + doc2 for t in tokenizer(line, add_special_tokens=False)["input_ids"]]
    assert body == want  # every token, in order, nothing lost or duplicated
    first_doc = sum(len(tokenizer(x, add_special_tokens=False)["input_ids"]) for x in doc1)
    assert len(seqs[0]) - 2 + len(seqs[1]) - 2 >= first_doc  # documents never share a sequence
    assert isinstance(ds.ids.values, np.memmap)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sentences"] == 5 and meta["sequences"] == len(seqs)
    train = CorpusDataset(folder, "train", 0.25, 0)
    held = CorpusDataset(folder, "heldout", 0.25, 0)
    assert len(train) + len(held) == len(seqs) and not set(train.rows) & set(held.rows) and len(held) >= 1


def test_cosine_hidden_ignores_padding_and_matches_hand_computation():
    mask = torch.tensor([[1, 1, 0]])
    hs = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, -5.0]]])
    ht = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-1.0, 7.0]]])
    s = Record(None, mask, hidden_states=(hs, hs))
    t = Record(None, mask, hidden_states=(ht, ht))
    got = LOSSES["cosine_hidden"].fn(s, t, {}, LossContext([])).item()
    assert got == pytest.approx(((1 - 0.0) + (1 - 1.0)) / 2)


def test_mlm_loss_reads_masked_positions_only():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # two masked positions
    labels = torch.tensor([[-100, 0, -100, 2]])
    rec = Record(logits, torch.ones(1, 4), token_rows=labels != -100)
    got = LOSSES["mlm"].fn(rec, None, {"mlm_labels": labels}, LossContext([])).item()
    want = -(torch.log_softmax(logits, -1)[0, 0] + torch.log_softmax(logits, -1)[1, 2]).item() / 2
    assert got == pytest.approx(want, rel=1e-6)


@pytest.fixture(scope="module")
def pretrained_teacher(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4,
                                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64))
    folder = tmp_path_factory.mktemp("pretrained")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def general(folder, *extra):
    return load_config(SMOKE, [f"teacher.checkpoint={folder}", "teacher.finetune=null", "teacher.random=null",
                               "teacher.tokenizer=null", "corpus.limit=300", "corpus.max_length=32", *extra])


def test_general_tinybert_then_task_distillation_from_it(pretrained_teacher, tmp_path):
    from distill.lab.run import run_experiment

    cfg = general(pretrained_teacher, "student.hidden=16", "student.heads=4", "student.layers=2",
                  "stages=[{name: general, data: corpus, epochs: 2, lr: 0.002, batch_size: 16, "
                  "losses: {embedding_mse: 1, attention_mse: 1, hidden_mse: 1}}]")
    m = run_experiment(cfg, tmp_path / "general", log=lambda *_: None)
    before, after = m["heldout_before"]["general"], m["heldout_after"]["general"]
    assert set(before) == {"loss/embedding_mse", "loss/attention_mse", "loss/hidden_mse"}
    assert sum(after.values()) < sum(before.values())  # distillation lowered the held-out losses
    folder = tmp_path / "general" / "student"
    from distill.lab.records import RunMetrics
    from distill.lab.summary import summary_text

    assert RunMetrics.load(tmp_path / "general").to_dict() == m  # a general run's record reads back whole
    text = summary_text(RunMetrics.from_dict(m), tmp_path / "general")
    assert "(general distillation)" in text and f"a `student.init` for task configs): {folder}" in text
    assert f"general attention_mse: {before['loss/attention_mse']:.4f} -> {after['loss/attention_mse']:.4f}" in text
    assert f"parameters {100 * m['ratios']['parameters']:.1f}%, encoder compute per token" in text
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2
    card = (folder / "README.md").read_text()  # a general student's card: held-out losses, no task metrics
    assert f"- general attention_mse: {before['loss/attention_mse']:.4f} -> {after['loss/attention_mse']:.4f}" in card
    assert "model-index" not in card and "pipeline_tag: fill-mask" in card and "## Data" not in card
    from safetensors.torch import load_file

    general_w = load_file(folder / "model.safetensors")
    assert (folder / "projections.safetensors").exists()  # W_h / W_e (16 -> 32) travel with the student
    task = load_config(SMOKE, [f"student.init={folder}", "student.hidden=null", "student.layers=null",
                               "teacher.random.hidden=32"])
    from distill.students import get_student
    from distill.teachers.load import random_bert

    t = random_bert(task.teacher.random, load_tokenizer("packaged:all-minilm-l6-v2"), ["a", "b", "c"], 0)
    s = get_student(task.student.kind).build(task.student, t, 0)
    key = "bert.encoder.layer.1.output.dense.weight"
    torch.testing.assert_close(s.state_dict()[key], general_w[key])
    logs = []
    run_experiment(task, tmp_path / "task", log=logs.append)  # the general student as a task init
    assert f"projections W_h / W_e: carried from {folder / 'projections.safetensors'}" in logs


def test_general_distilbert_triple_loss(pretrained_teacher, tmp_path):
    from distill.lab.run import run_experiment

    cfg = general(pretrained_teacher, "student.kind=distilbert", "student.layers=2", "student.init=teacher",
                  "stages=[{name: distil, data: corpus, mlm_masking: true, epochs: 1, lr: 0.001, batch_size: 16, "
                  "losses: {kl_div: {weight: 5.0, temperature: 2.0}, mlm: 2.0, cosine_hidden: 1.0}}]")
    m = run_experiment(cfg, tmp_path / "d", log=lambda *_: None)
    assert set(m["heldout_after"]["distil"]) == {"loss/kl_div", "loss/mlm", "loss/cosine_hidden"}
    from transformers import AutoModelForMaskedLM

    back = AutoModelForMaskedLM.from_pretrained(tmp_path / "d" / "student")
    assert back.config.model_type == "distilbert" and back.config.n_layers == 2


def test_general_refuses_a_fine_tuning_teacher_and_mixed_stages(pretrained_teacher, tmp_path):
    from distill.config import ConfigError
    from distill.lab.run import run_experiment

    with raises_with(ConfigError, "PRE-TRAINED", "`teacher.finetune: null`"):
        cfg = load_config(SMOKE, [f"teacher.checkpoint={pretrained_teacher}", "teacher.random=null",
                                  "teacher.tokenizer=null", "stages.0.data=corpus", "stages.1.data=corpus"])
        run_experiment(cfg, tmp_path / "x", log=lambda *_: None)
    with raises_with(ConfigError, "mix", "`data: corpus`", "`student.init`"):
        run_experiment(load_config(SMOKE, ["stages.0.data=corpus"]), tmp_path / "y", log=lambda *_: None)


def test_bad_corpus_sources_are_clear_errors(tmp_path, tokenizer, monkeypatch):
    import importlib.util

    from distill.loaders import DataError

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    with raises_with(DataError, "corpus", str(tmp_path / "nope.txt"), "not found"):
        pack_corpus(CorpusConfig(sources=[str(tmp_path / "nope.txt")]), tokenizer, log=lambda *_: None)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    with raises_with(DataError, f"{bad}:2", "not UTF-8"):
        pack_corpus(CorpusConfig(sources=[str(bad)]), tokenizer, log=lambda *_: None)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with raises_with(DataError, str(empty), "no text"):
        pack_corpus(CorpusConfig(sources=[str(empty)]), tokenizer, log=lambda *_: None)
    assert not list((tmp_path / "cache").rglob("meta.json"))  # nothing half-built is left as a corpus
    if importlib.util.find_spec("datasets") is None:
        with raises_with(DataError, "'hf:wikitext/wikitext-2-raw-v1:train'", "pip install datasets"):
            pack_corpus(CorpusConfig(sources=["hf:wikitext/wikitext-2-raw-v1:train"]), tokenizer, log=lambda *_: None)
