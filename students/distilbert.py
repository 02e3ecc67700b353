"""DistilBERT students (Sanh et al. 2019), initialised from a BERT teacher's layers.

Weight mapping, BERT -> DistilBERT (`layers` are the teacher's 1-based layer numbers, one per student
layer; DistilBERT's default for 12 teacher layers is 1, 3, 5, 8, 10, 12, i.e. 0, 2, 4, 7, 9, 11 0-based):

    bert.embeddings.word_embeddings          -> distilbert.embeddings.word_embeddings
    bert.embeddings.position_embeddings      -> distilbert.embeddings.position_embeddings
      (+ token_type_embeddings[0], folded in: DistilBERT has no token types, and BERT adds type 0 to every
       single-segment token, so the embedding output is exactly BERT's for type-0 input)
    bert.embeddings.LayerNorm                -> distilbert.embeddings.LayerNorm
    layer.attention.self.{query,key,value}   -> transformer.layer.attention.{q,k,v}_lin
    layer.attention.output.dense / LayerNorm -> transformer.layer.attention.out_lin / sa_layer_norm
    layer.intermediate.dense                 -> transformer.layer.ffn.lin1
    layer.output.dense / LayerNorm           -> transformer.layer.ffn.lin2 / output_layer_norm
    cls.predictions.transform.dense / LayerNorm / bias -> vocab_transform / vocab_layer_norm / vocab_projector.bias
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, DistilBertConfig, DistilBertForMaskedLM, DistilBertForSequenceClassification

from distill.student_registry import register_student
from distill.students.common import check_layer_copy
from distill.students.hf import STARTS, TransformerConfig, TransformerStudent
from distill.task_types import head_class, type_of_model
from distill.teachers.load import resolve


@dataclass
class DistilBertStudentConfig(TransformerConfig):
    """`student.kind: distilbert`: the teacher's width, heads and feed-forward width, fewer layers."""


def default_layers(n_teacher: int, n_student: int) -> list[int]:
    """DistilBERT's choice for 6 of 12 (1, 3, 5, 8, 10, 12); otherwise evenly spread, ending at the top."""
    if (n_teacher, n_student) == (12, 6):
        return [1, 3, 5, 8, 10, 12]
    return [round((i + 1) * n_teacher / n_student) for i in range(n_student)]


def distilbert_config(teacher: BertConfig, layers: int, **extra) -> DistilBertConfig:
    config = DistilBertConfig(
        vocab_size=teacher.vocab_size, max_position_embeddings=teacher.max_position_embeddings,
        n_layers=layers, n_heads=teacher.num_attention_heads, dim=teacher.hidden_size,
        hidden_dim=teacher.intermediate_size, activation=teacher.hidden_act, pad_token_id=teacher.pad_token_id,
        **extra)
    config._attn_implementation = "sdpa"
    return config


def _bert(model: nn.Module) -> nn.Module:
    return model.bert if hasattr(model, "bert") else model


def init_from_bert(student: nn.Module, teacher: nn.Module, layers: list[int]) -> None:
    """Copy embeddings, the chosen teacher layers and (for masked-LM models) the MLM head into a
    DistilBERT student (ForMaskedLM or ForSequenceClassification)."""
    bert = _bert(teacher)
    tc, sc = bert.config, student.config
    check_layer_copy((sc.dim, sc.hidden_dim, sc.n_heads), (tc.hidden_size, tc.intermediate_size,
                     tc.num_attention_heads), layers, sc.n_layers, tc.num_hidden_layers)
    d = student.distilbert
    with torch.no_grad():
        e, be = d.embeddings, bert.embeddings
        e.word_embeddings.weight.copy_(be.word_embeddings.weight)
        e.position_embeddings.weight.copy_(be.position_embeddings.weight + be.token_type_embeddings.weight[0])
        e.LayerNorm.load_state_dict(be.LayerNorm.state_dict())
        for i, t in enumerate(layers):
            s, b = d.transformer.layer[i], bert.encoder.layer[t - 1]
            for ours, theirs in ((s.attention.q_lin, b.attention.self.query), (s.attention.k_lin, b.attention.self.key),
                                 (s.attention.v_lin, b.attention.self.value),
                                 (s.attention.out_lin, b.attention.output.dense),
                                 (s.sa_layer_norm, b.attention.output.LayerNorm), (s.ffn.lin1, b.intermediate.dense),
                                 (s.ffn.lin2, b.output.dense), (s.output_layer_norm, b.output.LayerNorm)):
                ours.load_state_dict(theirs.state_dict())
        if isinstance(student, DistilBertForMaskedLM) and hasattr(teacher, "cls"):
            head = teacher.cls.predictions
            student.vocab_transform.load_state_dict(head.transform.dense.state_dict())
            student.vocab_layer_norm.load_state_dict(head.transform.LayerNorm.state_dict())
            student.vocab_projector.bias.copy_(head.bias if head.bias is not None else head.decoder.bias)


def planned_shape(cfg: DistilBertStudentConfig, teacher_config: BertConfig) -> tuple[int, int]:
    """(layers, hidden) of the student `build_distilbert` will make (the teacher's width: DistilBERT keeps it),
    with the checks that need no weights."""
    tc = teacher_config
    n = cfg.layers or max(1, tc.num_hidden_layers // 2)
    if cfg.init == "teacher":
        dims = (tc.hidden_size, tc.intermediate_size, tc.num_attention_heads)
        check_layer_copy(dims, dims, cfg.init_layers or default_layers(tc.num_hidden_layers, n), n,
                         tc.num_hidden_layers)
    return n, tc.hidden_size


def build_distilbert(cfg: DistilBertStudentConfig, teacher: nn.Module, seed: int, masked_lm: bool = False) -> nn.Module:
    """A DistilBERT for the teacher's task (or a masked LM for general distillation)."""
    tc = _bert(teacher).config
    if cfg.init not in STARTS:
        cls = DistilBertForMaskedLM if masked_lm else head_class("DistilBert", type_of_model(teacher))
        labels = teacher.config
        extra = {} if masked_lm else {"num_labels": labels.num_labels, "id2label": dict(labels.id2label),
                                      "label2id": dict(labels.label2id)}
        model = cls.from_pretrained(resolve(cfg.init), attn_implementation="sdpa", **extra)
        model.config = copy.deepcopy(model.config)
        return model
    n = cfg.layers or max(1, tc.num_hidden_layers // 2)
    extra = {} if masked_lm else {"num_labels": teacher.config.num_labels, "id2label": dict(teacher.config.id2label),
                                  "label2id": dict(teacher.config.label2id),
                                  "problem_type": teacher.config.problem_type}
    config = distilbert_config(tc, n, **extra)
    torch.manual_seed(seed)
    model = (DistilBertForMaskedLM if masked_lm else head_class("DistilBert", type_of_model(teacher)))(config)
    if cfg.init == "teacher":
        init_from_bert(model, teacher, cfg.init_layers or default_layers(tc.num_hidden_layers, n))
    return model


@register_student("distilbert", config=DistilBertStudentConfig)
class DistilBert(TransformerStudent):
    folder_types = ("distilbert",)

    planned_shape = staticmethod(planned_shape)
    make = staticmethod(build_distilbert)

    def copied_layers(self, cfg: DistilBertStudentConfig, teacher_config, layers: int) -> list[int]:
        return cfg.init_layers or default_layers(teacher_config.num_hidden_layers, layers)

    def random(self, fields: dict, num_labels: int, vocab: int) -> nn.Module:
        return DistilBertForSequenceClassification(DistilBertConfig(
            vocab_size=vocab, n_layers=fields["layers"], dim=fields["hidden"], n_heads=fields["heads"],
            hidden_dim=fields["ffn"], num_labels=num_labels))
