"""Students, one file each; `build_student` picks the builder named by `student.kind`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from distill.config import StudentConfig
from students.tinybert import build_tinybert

BUILDERS: dict[str, Callable[[StudentConfig, nn.Module, int], nn.Module]] = {"tinybert": build_tinybert}


def build_student(cfg: StudentConfig, teacher: nn.Module, seed: int) -> nn.Module:
    if cfg.kind not in BUILDERS:
        raise ValueError(f"unknown student kind {cfg.kind!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[cfg.kind](cfg, teacher, seed)
