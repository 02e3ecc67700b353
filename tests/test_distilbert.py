"""BERT -> DistilBERT initialisation from teacher layers reproduces the teacher's computations."""

import torch
from transformers import BertForMaskedLM, BertForSequenceClassification, DistilBertForMaskedLM

from distill.students.common import StudentError
from distill.students.distilbert import (
    DistilBertStudentConfig,
    build_distilbert,
    default_layers,
    distilbert_config,
    init_from_bert,
)

from .helpers import raises_with, tiny_bert_config


def teacher_mlm():
    torch.manual_seed(0)
    return BertForMaskedLM(tiny_bert_config(num_hidden_layers=4)).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_full_copy_gives_identical_mlm_logits_and_hidden_states():
    t = teacher_mlm()
    s = DistilBertForMaskedLM(distilbert_config(t.config, 4)).eval()
    init_from_bert(s, t, [1, 2, 3, 4])
    ids, mask = batch()
    with torch.no_grad():
        to = t(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        so = s(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    valid = mask.bool()
    for h_t, h_s in zip(to.hidden_states, so.hidden_states, strict=True):
        torch.testing.assert_close(h_s[valid], h_t[valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(so.logits[valid], to.logits[valid], atol=1e-4, rtol=1e-4)


def test_chosen_layers_reproduce_the_teachers_layer_outputs():
    t = teacher_mlm()
    s = DistilBertForMaskedLM(distilbert_config(t.config, 2)).eval()
    init_from_bert(s, t, [2, 4])
    ids, _ = batch()
    with torch.no_grad():
        hs = t(input_ids=ids, output_hidden_states=True).hidden_states
        for i, layer in enumerate([2, 4]):
            out = s.distilbert.transformer.layer[i](hs[layer - 1])
            out = out[0] if isinstance(out, tuple) else out
            torch.testing.assert_close(out, hs[layer], atol=1e-5, rtol=1e-4)


def test_defaults_and_errors():
    assert default_layers(12, 6) == [1, 3, 5, 8, 10, 12]
    assert default_layers(6, 3) == [2, 4, 6]
    t = teacher_mlm()
    s = DistilBertForMaskedLM(distilbert_config(t.config, 2))
    with raises_with(StudentError, "student.init_layers", "teacher layer 5", "1..4"):
        init_from_bert(s, t, [1, 5])
    narrow = tiny_bert_config(hidden_size=16, num_attention_heads=2, intermediate_size=32)
    with raises_with(StudentError, "width to match", "16/32/2", "teacher 32/64/4"):
        init_from_bert(DistilBertForMaskedLM(distilbert_config(narrow, 2)), t, [1, 2])


def test_task_student_from_a_fine_tuned_teacher():
    torch.manual_seed(0)
    t = BertForSequenceClassification(tiny_bert_config(num_hidden_layers=4)).eval()
    s = build_distilbert(DistilBertStudentConfig(kind="distilbert", layers=2, init="teacher"), t, seed=0)
    assert s.config.n_layers == 2 and s.config.num_labels == 3
    ours, theirs = s.distilbert.transformer.layer[1].ffn.lin2, t.bert.encoder.layer[3].output.dense
    torch.testing.assert_close(ours.weight, theirs.weight)


def test_the_plan_names_the_teacher_layers_that_will_be_copied():
    from distill.student_registry import get_student

    twelve = tiny_bert_config(num_hidden_layers=12)
    student = get_student("distilbert")
    cfg = student.config(kind="distilbert", init="teacher")
    # `distill check` says what `build` will copy: DistilBERT's own choice for 6 of 12, or the layers given.
    assert student.plan(cfg, twelve).text.endswith("init from the teacher's layers [1, 3, 5, 8, 10, 12]")
    cfg.init_layers = [2, 4, 6, 8, 10, 12]
    assert student.plan(cfg, twelve).text.endswith("[2, 4, 6, 8, 10, 12]")
    tiny = get_student("tinybert")
    assert tiny.plan(tiny.config(kind="tinybert", init="teacher", layers=4), twelve).text.endswith(
        "init from the teacher's layers [3, 6, 9, 12]")
