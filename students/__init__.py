"""Students, one file each; `build_student` picks the builder named by `student.kind`, `plan_student` says what
it will build (and refuses what it cannot) before any weights are loaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from distill.config import StudentConfig
from distill.input_encoding import InputEncoding
from distill.students import distilbert, tinybert
from distill.students.bilstm import BiLSTMClassifier, build_bilstm, save_bilstm
from distill.students.common import StudentError
from distill.students.projections import save_projections

KINDS = ("tinybert", "distilbert", "bilstm")


def build_student(cfg: StudentConfig, teacher: nn.Module, seed: int, texts: Iterable[str] | None = None,
                  pair: bool = False, masked_lm: bool = False, other_texts: Iterable[str] | None = None) -> nn.Module:
    """The student for `cfg.kind`: a classifier for the teacher's labels, or (`masked_lm`, general distillation) a
    masked LM. `texts` (training and augmented text) and `other_texts` (dev and test) give a BiLSTM its
    vocabulary."""
    if cfg.kind == "bilstm":
        if masked_lm:
            raise StudentError("general distillation trains transformer students; `student.kind: bilstm` has no "
                               "masked-LM form")
        return build_bilstm(cfg, teacher, seed, texts, pair, other_texts)
    if cfg.kind in ("tinybert", "distilbert"):
        return (tinybert.build_tinybert if cfg.kind == "tinybert" else distilbert.build_distilbert)(
            cfg, teacher, seed, masked_lm=masked_lm)
    raise StudentError(f"unknown student kind {cfg.kind!r}; known: {list(KINDS)}")


def plan_student(cfg: StudentConfig, teacher_config) -> tuple[int, int]:
    """(transformer layers, width) of the student `cfg` makes against a teacher of `teacher_config`, checked as
    far as possible without weights (presets, widths, init layers, an init folder); the BiLSTM has no layers
    to distil: (1, 0)."""
    if cfg.kind == "bilstm":
        return 1, 0
    if cfg.init not in ("scratch", "teacher"):
        from transformers import AutoConfig

        from distill.teachers.load import resolve

        try:
            sc = AutoConfig.from_pretrained(resolve(cfg.init))
        except (OSError, ValueError) as e:
            raise StudentError(f"`student.init` = {cfg.init!r}: not a model folder or a reachable hub name "
                               f"({type(e).__name__}); expected `scratch`, `teacher` or a checkpoint") from None
        return sc.num_hidden_layers, sc.hidden_size
    return (tinybert if cfg.kind == "tinybert" else distilbert).planned_shape(cfg, teacher_config)


def export_student(student: nn.Module, folder: str | Path, tokenizer, projections: nn.ModuleDict | None = None,
                   encoding: InputEncoding | None = None) -> None:
    """A BERT student as a Hugging Face folder (with the tokenizer and the run's W_h / W_e, which a later task
    distillation starts from); a BiLSTM as safetensors + config + vocab. `encoding` (the run's input encoding) is
    saved beside it, and a BERT tokenizer's `model_max_length` states the trained length."""
    from distill.io import atomic_dir

    if isinstance(student, BiLSTMClassifier):
        save_bilstm(student, folder, encoding)
        return
    with atomic_dir(folder) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if encoding is not None:
            encoding.save(tmp)
            _state_length(tmp / "tokenizer_config.json", encoding.max_length)
        if projections is not None:
            save_projections(tmp, projections)


# Call-time arguments and loading details that the tokenizer keeps among its init arguments and would save: a
# reader would take `max_length: 128` for the length the student was trained at, and `local_files_only: true` would
# stop it from loading a hub copy's files.
_NOT_SAVED = ("max_length", "stride", "truncation_strategy", "local_files_only", "is_local", "name_or_path")


def _state_length(path: Path, max_length: int) -> None:
    from distill.io import read_json, write_json

    cfg = {k: v for k, v in read_json(path).items() if k not in _NOT_SAVED}
    cfg["model_max_length"] = max_length
    write_json(path, cfg)


def describe(student: nn.Module) -> dict:
    """Shape facts for reports: layers and width of a BERT student, or the BiLSTM's sizes."""
    c = student.config
    if isinstance(student, BiLSTMClassifier):
        return {"kind": "bilstm", "layers": 1, "hidden": c.hidden, "embedding_dim": c.embedding_dim,
                "vocab": c.vocab_size}
    return {"kind": "bert", "layers": c.num_hidden_layers, "hidden": c.hidden_size}
