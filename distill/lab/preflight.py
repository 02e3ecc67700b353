"""Everything about a run's models that can fail without training, checked before its folder is created:
the tokenizer and the teacher's config load and agree, the student can be built against that teacher (shape,
init layers, init folder, word vectors), every layer map fits both depths, and widths that differ have a
projection. The workflows add their own data checks (`task.py`, `general.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import BertConfig

from distill.config import ConfigError, ExperimentConfig, TeacherConfig, teacher_weights
from distill.layer_map import LayerMapError, layer_map
from distill.objective import Objective
from distill.student_registry import Shape, Student, get_student, students
from distill.task_types import QA, SEQUENCE, config_type
from distill.teachers.load import load_bert_config, load_tokenizer, random_bert_config


@dataclass
class Plan:
    tokenizer: object
    objectives: list[Objective]
    depths: tuple[int, ...]  # (student layers, teacher layers, further teachers' layers), for layer maps
    widths: tuple[int, int]  # (student width, teacher width), for projections
    student: Student  # the registered student `student.kind` names
    shape: Shape  # what it says it will build


def teacher_config(cfg: ExperimentConfig, tokenizer, t: TeacherConfig | None = None) -> BertConfig:
    """The teacher `t`'s (default: the first's) model config, checked against the run's tokenizer."""
    t = t or cfg.teacher
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
    configs = [teacher_config(cfg, tokenizer, t) for t in cfg.teachers]
    tc = configs[0]
    _same_inputs(cfg, tokenizer, configs)
    weights = teacher_weights(cfg)
    objectives = [Objective(st.losses, f"stages.{i}.losses", weights) for i, st in enumerate(cfg.stages)]
    student = get_student(cfg.student.kind)
    check_task_type(cfg, student)
    shape = student.plan(cfg.student, tc)
    s_layers, s_hidden = shape.layers, shape.width
    for i, (stage, obj) in enumerate(zip(cfg.stages, objectives, strict=True)):
        where = f"stages.{i} ({stage.name})"
        if not obj.needs.intermediate:
            continue
        if not student.intermediate:
            raise ConfigError(f"{where}: a {student.name} student has no hidden states or attention to distil; use "
                              "logit losses (logits_mse, soft_cross_entropy, kl_div, hard_ce)")
        for t, c in zip(cfg.teachers, configs, strict=True):
            try:
                layer_map(stage.layer_map, s_layers, c.num_hidden_layers)
            except LayerMapError as e:
                who = f" (teacher {t.name})" if len(configs) > 1 else ""
                raise ConfigError(f"{where}.layer_map{who}: {e}") from None
        if obj.needs.hidden and s_hidden != tc.hidden_size and cfg.train.projection == "none":
            raise ConfigError(f"{where}: hidden/embedding losses with student width {s_hidden} and teacher width "
                              f"{tc.hidden_size} need a projection, but train.projection is `none`")
    return Plan(tokenizer, objectives, (s_layers, *(c.num_hidden_layers for c in configs)), (s_hidden, tc.hidden_size),
                student, shape)


def check_task_type(cfg: ExperimentConfig, student: Student) -> None:
    """Refuse, before anything runs, a student kind without a head for the task's type, and what the new task types
    do not support yet."""
    kind = config_type(cfg.task)
    if kind not in student.task_types:
        raise ConfigError(f"`student.kind: {student.name}` cannot serve a {kind} task (`task.type`): a {student.name} "
                          f"student has a head for {', '.join(student.task_types)}; students for {kind}: "
                          + ", ".join(n for n, s in students().items() if kind in s.task_types))
    if kind == SEQUENCE:
        return
    for i, stage in enumerate(cfg.stages):
        if stage.data == "augmented" and kind == QA:
            raise ConfigError(f"stages.{i} ({stage.name}): `data: augmented` on an {kind} task: no augmentation "
                              "keeps answer spans yet (use `data: train`)")
        if stage.data == "augmented" and cfg.augment.method != "tinybert":
            raise ConfigError(f"stages.{i} ({stage.name}): `augment.method: {cfg.augment.method}` on a {kind} task: "
                              "its n-gram sampling cuts sentences and its masking and POS replacement change words "
                              "without their tags; `augment.method: tinybert` keeps every word's place (entity "
                              "words unchanged, a replaced word's tag unknown)")
    if kind == QA and len(cfg.teachers) > 1:
        raise ConfigError(f"`teachers:` names {len(cfg.teachers)} teachers on an {kind} task: several teachers' span "
                          "scores are not averaged yet; use one teacher")
    if cfg.train.teacher_record != "off":
        raise ConfigError(f"`train.teacher_record: {cfg.train.teacher_record}` on a {kind} task: the stored record "
                          "holds a row per example; use `off` (the teacher runs with the student)")


def _same_inputs(cfg: ExperimentConfig, tokenizer, configs: list[BertConfig]) -> None:
    """Several teachers read the student's one tokenisation, and hidden-state losses share one projection: every
    teacher needs the first one's vocabulary, and its width when an intermediate loss names it."""
    first = cfg.teachers[0]
    for i, (t, c) in enumerate(zip(cfg.teachers[1:], configs[1:], strict=True), start=1):
        source = t.tokenizer or t.checkpoint
        same = source == (first.tokenizer or first.checkpoint)
        if not same and load_tokenizer(source).get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"`teachers.{i}` ({t.name}): its tokenizer {source!r} differs from the first teacher's; "
                              "several teachers must share one tokenizer (the student sees one input)")
        named = [f"stages.{k}.losses.{name}" for k, st in enumerate(cfg.stages) for name, spec in st.losses.items()
                 if isinstance(spec, dict) and spec.get("teacher") == t.name]
        if named and c.hidden_size != configs[0].hidden_size:
            raise ConfigError(f"{named[0]} reads teacher {t.name} of width {c.hidden_size}, but the run's projections "
                              f"map the student to the first teacher's width {configs[0].hidden_size}")
