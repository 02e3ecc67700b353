"""Everything about a run's models that can fail without training, checked before its folder is created:
the tokenizer and the teacher's config load and agree, the student can be built against that teacher (shape,
init layers, init folder, word vectors), every layer map fits both depths, and widths that differ have a
projection. The workflows add their own data checks (`task.py`, `general.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import BertConfig

from distill.config import ConfigError, ExperimentConfig
from distill.layer_map import LayerMapError, layer_map
from distill.objective import Objective
from students import plan_student
from teachers.load import load_bert_config, load_tokenizer, random_bert_config


@dataclass
class Plan:
    tokenizer: object
    objectives: list[Objective]
    depths: tuple[int, int]  # (student layers, teacher layers), for layer maps
    widths: tuple[int, int]  # (student width, teacher width), for projections


def teacher_config(cfg: ExperimentConfig, tokenizer) -> BertConfig:
    t = cfg.teacher
    if t.checkpoint == "random":
        return random_bert_config(t.random, len(tokenizer), tokenizer.pad_token_id or 0)
    tc = load_bert_config(t.checkpoint)
    # Ids past the embedding table crash mid-run; a much smaller vocabulary means another tokenizer
    # (checkpoints may pad their table a little, e.g. to a multiple of 8).
    if len(tokenizer) > tc.vocab_size or len(tokenizer) < tc.vocab_size - 128:
        raise ConfigError(f"the tokenizer {t.tokenizer or t.checkpoint!r} has {len(tokenizer)} tokens but the teacher "
                          f"{t.checkpoint!r} has {tc.vocab_size} embeddings: the tokenizer does not match the model; "
                          "set `teacher.tokenizer` to the model's own")
    return tc


def plan_run(cfg: ExperimentConfig) -> Plan:
    tokenizer = load_tokenizer(cfg.teacher.tokenizer or cfg.teacher.checkpoint)
    tc = teacher_config(cfg, tokenizer)
    objectives = [Objective(st.losses, f"stages.{i}.losses") for i, st in enumerate(cfg.stages)]
    if cfg.student.kind == "bilstm":
        from augment.vectors import check_vectors

        check_vectors(cfg.student.vectors)
    s_layers, s_hidden = plan_student(cfg.student, tc)
    for i, (stage, obj) in enumerate(zip(cfg.stages, objectives, strict=True)):
        where = f"stages.{i} ({stage.name})"
        if not (obj.needs_hidden or obj.needs_attention):
            continue
        if cfg.student.kind == "bilstm":
            raise ConfigError(f"{where}: a BiLSTM student has no hidden states or attention to distil; use logit "
                              "losses (logits_mse, soft_cross_entropy, kl_div, hard_ce)")
        try:
            layer_map(stage.layer_map, s_layers, tc.num_hidden_layers)
        except LayerMapError as e:
            raise ConfigError(f"{where}.layer_map: {e}") from None
        if obj.needs_hidden and s_hidden != tc.hidden_size and cfg.train.projection == "none":
            raise ConfigError(f"{where}: hidden/embedding losses with student width {s_hidden} and teacher width "
                              f"{tc.hidden_size} need a projection, but train.projection is `none`")
    return Plan(tokenizer, objectives, (s_layers, tc.num_hidden_layers), (s_hidden, tc.hidden_size))
