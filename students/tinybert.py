"""TinyBERT students: BERT-architecture encoders of any depth and width.

The student is a plain `BertForSequenceClassification`, so the exported folder loads with
`AutoModelForSequenceClassification` and the same adaptor reads teacher and student.

Initialisation: `scratch` (random), `teacher` (embeddings and chosen teacher layers copied; widths must
match), or a checkpoint folder (e.g. a General TinyBERT; its encoder weights are loaded, the classifier
is new unless the folder has one for the same labels).

`masked_lm=True` builds the same encoder with BERT's MLM head instead of a classifier: the General TinyBERT
that general distillation trains (its folder is then a valid `student.init` for task configs)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from distill.layer_map import layer_map
from distill.student_registry import register_student
from distill.students.common import StudentError, check_layer_copy
from distill.students.hf import STARTS, TransformerConfig, TransformerStudent
from distill.task_types import SEQUENCE, head_class, type_of_model
from distill.teachers.load import load_classifier, resolve

PRESETS: dict[str, dict[str, int]] = {
    # Jiao et al. 2020: TinyBERT-4 (14.5M parameters) and TinyBERT-6 (67M).
    "4l-312": {"layers": 4, "hidden": 312, "heads": 12, "ffn": 1200},
    "6l-768": {"layers": 6, "hidden": 768, "heads": 12, "ffn": 3072},
}


@dataclass
class TinyBertStudentConfig(TransformerConfig):
    """`student.kind: tinybert`: a BERT-architecture encoder of any depth and width."""

    # Named shape (4l-312, 6l-768); explicit fields below override it.
    preset: str | None = None
    # Width, attention heads and feed-forward width (null: the preset's, else the teacher's).
    hidden: int | None = None
    heads: int | None = None
    ffn: int | None = None


def student_shape(cfg: TinyBertStudentConfig, teacher_config: BertConfig) -> dict[str, int]:
    """Preset, overridden by explicit fields, with the teacher's shape filling what is left."""
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise StudentError(f"unknown TinyBERT preset {cfg.preset!r}; presets: {sorted(PRESETS)}")
    shape = dict(PRESETS.get(cfg.preset, {}))
    for key in ("layers", "hidden", "heads", "ffn"):
        if getattr(cfg, key) is not None:
            shape[key] = getattr(cfg, key)
    defaults = {"layers": teacher_config.num_hidden_layers, "hidden": teacher_config.hidden_size,
                "heads": teacher_config.num_attention_heads, "ffn": teacher_config.intermediate_size}
    for key, value in defaults.items():
        shape.setdefault(key, value)
    if shape["hidden"] % shape["heads"]:
        raise StudentError(f"student hidden size {shape['hidden']} is not a multiple of its {shape['heads']} heads")
    return shape


def planned_shape(cfg: TinyBertStudentConfig, teacher_config: BertConfig) -> tuple[int, int]:
    """(layers, hidden) of the student `build_tinybert` will make, with the checks that need no weights."""
    shape = student_shape(cfg, teacher_config)
    if cfg.init == "teacher":
        check_layer_copy(_dims(shape), _teacher_dims(teacher_config), _init_layers(cfg, shape, teacher_config),
                         shape["layers"], teacher_config.num_hidden_layers)
    return shape["layers"], shape["hidden"]


def build_tinybert(cfg: TinyBertStudentConfig, teacher, seed: int, masked_lm: bool = False):
    """A classifier for the teacher's labels, or (`masked_lm`) a masked LM for general distillation."""
    tc = teacher.config
    if cfg.init not in STARTS:
        if masked_lm:
            return BertForMaskedLM.from_pretrained(resolve(cfg.init), attn_implementation="sdpa")
        return _from_folder(cfg.init, tc, type_of_model(teacher))
    shape = student_shape(cfg, tc)
    labels = {} if masked_lm else {"num_labels": tc.num_labels, "id2label": dict(tc.id2label),
                                   "label2id": dict(tc.label2id), "problem_type": tc.problem_type}
    config = BertConfig(
        vocab_size=tc.vocab_size, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"], intermediate_size=shape["ffn"],
        max_position_embeddings=tc.max_position_embeddings, type_vocab_size=tc.type_vocab_size,
        pad_token_id=tc.pad_token_id, hidden_act=tc.hidden_act, layer_norm_eps=tc.layer_norm_eps, **labels)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    student = (BertForMaskedLM if masked_lm else head_class("Bert", type_of_model(teacher)))(config)
    if cfg.init == "teacher":
        copy_teacher_layers(student, teacher, _init_layers(cfg, shape, tc))
    return student


def _init_layers(cfg: TinyBertStudentConfig, shape: dict, tc: BertConfig) -> list[int]:
    return cfg.init_layers or [t for _, t in layer_map("uniform", shape["layers"], tc.num_hidden_layers)]


def _dims(shape: dict) -> tuple[int, int, int]:
    return shape["hidden"], shape["ffn"], shape["heads"]


def _teacher_dims(c: BertConfig) -> tuple[int, int, int]:
    return c.hidden_size, c.intermediate_size, c.num_attention_heads


def copy_teacher_layers(student, teacher, layers: list[int]) -> None:
    """Copy the embeddings, teacher layers `layers` (1-based, one per student layer), pooler and
    classifier (where both models have them) into the student. Needs equal widths and head counts."""
    s, t = student.config, teacher.config
    check_layer_copy(_teacher_dims(s), _teacher_dims(t), layers, s.num_hidden_layers, t.num_hidden_layers)
    with torch.no_grad():
        student.bert.embeddings.load_state_dict(teacher.bert.embeddings.state_dict())
        for i, layer in enumerate(layers):
            student.bert.encoder.layer[i].load_state_dict(teacher.bert.encoder.layer[layer - 1].state_dict())
        if getattr(student.bert, "pooler", None) is not None and getattr(teacher.bert, "pooler", None) is not None:
            student.bert.pooler.load_state_dict(teacher.bert.pooler.state_dict())
        for head in ("classifier", "qa_outputs"):
            if hasattr(student, head) and hasattr(teacher, head):
                getattr(student, head).load_state_dict(getattr(teacher, head).state_dict())


def _from_folder(folder: str, teacher_config: BertConfig, task_type: str = SEQUENCE):
    labels = [teacher_config.id2label[i] for i in range(teacher_config.num_labels)]
    student = load_classifier(folder, None if teacher_config.problem_type == "regression" else labels,
                              task_type=task_type)
    if student.config.vocab_size != teacher_config.vocab_size:
        raise StudentError(f"student checkpoint {folder} has a vocabulary of {student.config.vocab_size}, the "
                           f"teacher {teacher_config.vocab_size}: they must share the tokenizer")
    student.config = copy.deepcopy(student.config)
    return student


@register_student("tinybert", config=TinyBertStudentConfig)
class TinyBert(TransformerStudent):
    folder_types = ("bert",)

    planned_shape = staticmethod(planned_shape)
    make = staticmethod(build_tinybert)

    def copied_layers(self, cfg: TinyBertStudentConfig, teacher_config, layers: int) -> list[int]:
        return _init_layers(cfg, {"layers": layers}, teacher_config)

    def shape_name(self, cfg: TinyBertStudentConfig) -> str:
        return self.name + (f" {cfg.preset}" if cfg.preset else "")

    def random(self, fields: dict, num_labels: int, vocab: int) -> nn.Module:
        return BertForSequenceClassification(BertConfig(
            vocab_size=vocab, num_hidden_layers=fields["layers"], hidden_size=fields["hidden"],
            num_attention_heads=fields["heads"], intermediate_size=fields["ffn"], num_labels=num_labels,
            attn_implementation="sdpa"))
