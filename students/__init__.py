"""Students, one file each; `build_student` picks the builder named by `student.kind`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from distill.config import StudentConfig
from students.bilstm import BiLSTMClassifier, build_bilstm, save_bilstm
from students.distilbert import build_distilbert
from students.tinybert import build_tinybert

KINDS = ("tinybert", "distilbert", "bilstm")


def build_student(cfg: StudentConfig, teacher: nn.Module, seed: int, texts: list[str] | None = None,
                  pair: bool = False) -> nn.Module:
    """The student for `cfg.kind`. `texts` (training and augmented text) give a BiLSTM its vocabulary."""
    if cfg.kind == "tinybert":
        return build_tinybert(cfg, teacher, seed)
    if cfg.kind == "distilbert":
        return build_distilbert(cfg, teacher, seed)
    if cfg.kind == "bilstm":
        return build_bilstm(cfg, teacher, seed, texts, pair)
    raise ValueError(f"unknown student kind {cfg.kind!r}; known: {list(KINDS)}")


def export_student(student: nn.Module, folder: str | Path, tokenizer) -> None:
    """A BERT student as a Hugging Face folder (with the tokenizer); a BiLSTM as safetensors + config + vocab."""
    if isinstance(student, BiLSTMClassifier):
        save_bilstm(student, folder)
        return
    from distill.io import atomic_dir

    with atomic_dir(folder) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def describe(student: nn.Module) -> dict:
    """Shape facts for reports: layers and width of a BERT student, or the BiLSTM's sizes."""
    c = student.config
    if isinstance(student, BiLSTMClassifier):
        return {"kind": "bilstm", "layers": 1, "hidden": c.hidden, "embedding_dim": c.embedding_dim,
                "vocab": c.vocab_size}
    return {"kind": "bert", "layers": c.num_hidden_layers, "hidden": c.hidden_size}
