"""The stored teacher record (`train.teacher_record`) gives the intermediate losses a teacher forward gives."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import BertForSequenceClassification

from distill.adaptor import forward_record, set_attention
from distill.batching import PadCollator
from distill.config import TrainConfig
from distill.encoded import EncodedDataset, build
from distill.losses import LossContext
from distill.objective import Objective
from distill.tasks import Example
from distill.teachers.record_cache import RECORDED, TeacherRecord, build_record, cached_record
from distill.trainer import teacher_records

from .helpers import quiet, raises_with, tiny_bert_config

TEXTS = ["good", "a rather long sentence about flights and delays and bags", "ok then", "meh",
         "the crew was lovely, the seat was not", "no", "why is the wifi never working on this plane at all"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from distill.teachers.load import load_tokenizer

    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    root = tmp_path_factory.mktemp("record")
    build(root / "data", [Example(str(i), t, None, i % 3) for i, t in enumerate(TEXTS)], tok, 32, False,
          log=quiet, progress=False)
    ds = EncodedDataset(root / "data")
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(vocab_size=len(tok), num_hidden_layers=3)).eval()
    return ds, teacher, root


def _batch(ds, rows):
    return PadCollator(ds.pad_id)([ds[i] for i in rows])


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("fp16", 2e-3)])
def test_stored_record_matches_the_forward_pass_at_valid_positions(setup, precision, tol):
    ds, teacher, root = setup
    folder = root / precision
    build_record(teacher, ds, Accelerator(cpu=True), TrainConfig(eval_batch_size=3), folder, precision,
                 progress=False)
    stored = TeacherRecord(folder)
    batch = _batch(ds, [6, 0, 3, 1])  # lengths differ: padding inside the batch
    set_attention(teacher, RECORDED)
    with torch.no_grad():
        live = forward_record(teacher, batch, RECORDED)
    rec = stored.batch(batch["index"], batch["input_ids"].shape[1], torch.device("cpu"))
    mask = batch["attention_mask"].bool()
    assert torch.equal(rec.attention_mask, batch["attention_mask"])
    assert len(rec.hidden_states) == 4 and len(rec.attention_scores) == 3
    for h_live, h_rec in zip(live.hidden_states, rec.hidden_states, strict=True):
        scale = h_live[mask].abs().max()
        torch.testing.assert_close(h_rec[mask], h_live[mask], atol=tol * scale, rtol=0)
        assert not h_rec[~mask].any()  # padding stays zero
    pair = mask[:, None, :, None] & mask[:, None, None, :]
    pair = pair.expand_as(live.attention_scores[0])
    for a_live, a_rec in zip(live.attention_scores, rec.attention_scores, strict=True):
        torch.testing.assert_close(a_rec[pair], a_live[pair], atol=tol * a_live[pair].abs().max(), rtol=0)
    torch.testing.assert_close(rec.logits, live.logits, atol=1e-5, rtol=0)


def test_losses_from_the_record_equal_losses_from_the_teacher(setup):
    ds, teacher, root = setup
    build_record(teacher, ds, Accelerator(cpu=True), TrainConfig(eval_batch_size=4), root / "losses", "fp32",
                 progress=False)
    stored = TeacherRecord(root / "losses")
    torch.manual_seed(1)
    student = BertForSequenceClassification(tiny_bert_config(vocab_size=teacher.config.vocab_size,
                                                             num_hidden_layers=3)).eval()
    objective = Objective({"embedding_mse": 1, "attention_mse": 1, "hidden_mse": 1})
    ctx = LossContext([(1, 1), (2, 2), (3, 3)])
    batch = _batch(ds, [2, 6, 5])
    set_attention(student, objective.needs)
    set_attention(teacher, objective.needs)
    with torch.no_grad():
        s_rec = forward_record(student, batch, objective.needs)
        live = teacher_records({"teacher": teacher}, batch, objective)
        from_store = teacher_records({"teacher": None}, batch, objective, stored={"teacher": stored})
    _, parts_live = objective(s_rec, live, batch, ctx)
    _, parts_store = objective(s_rec, from_store, batch, ctx)
    assert set(parts_live) == {"embedding_mse", "attention_mse", "hidden_mse"}
    for k in parts_live:
        assert float(parts_store[k]) == pytest.approx(float(parts_live[k]), rel=1e-5), k


def test_cached_record_is_built_once_and_reused(setup, tmp_path, monkeypatch):
    ds, teacher, _ = setup
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    said = []
    cfg = TrainConfig(eval_batch_size=4, teacher_record="fp16")
    first = cached_record(teacher, "t1", ds, Accelerator(cpu=True), cfg, said.append)
    second = cached_record(teacher, "t1", ds, Accelerator(cpu=True), cfg, said.append)
    assert "one teacher pass over 7 examples" in said[0] and "reusing" in said[1]
    assert first.folder == second.folder and len(second) == len(ds)
    assert second.hidden.dtype == np.float16
    other = cached_record(teacher, "t2", ds, Accelerator(cpu=True), cfg, said.append)  # another teacher, another key
    assert other.folder != first.folder


def test_the_key_names_the_precision_the_teacher_ran_at(setup):
    from distill.teachers.record_cache import record_folder

    ds, _, _ = setup
    assert record_folder("t", ds, "fp16", "bf16") != record_folder("t", ds, "fp16", "no")
    assert record_folder("t", ds, "fp16", "no") != record_folder("t", ds, "fp32", "no")


def test_a_record_that_would_not_fit_on_disk_is_refused_before_it_starts(setup, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from distill.errors import DistillError

    ds, teacher, _ = setup
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**6, 10**6 - 1000, 1000))
    with raises_with(DistillError, "train.teacher_record", f"{len(ds):,} examples", "needs", "GiB",
                     str(tmp_path / "cache"), "free", "DISTILLERY_CACHE"):
        cached_record(teacher, "t1", ds, Accelerator(cpu=True), TrainConfig(teacher_record="fp32"), lambda *_: None)
    assert not (tmp_path / "cache" / "records").exists() or not any((tmp_path / "cache" / "records").iterdir())
