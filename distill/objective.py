"""A stage's objective: the weighted sum of the losses its config names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.adaptor import Record
from distill.losses import LOSSES, LossContext, LossInfo, check_loss_spec


@dataclass(frozen=True)
class Term:
    name: str
    weight: float
    params: dict
    info: LossInfo


class Objective:
    def __init__(self, losses: dict, where: str = "losses"):
        self.terms = []
        for name, spec in losses.items():
            weight, params = check_loss_spec(name, spec, f"{where}.{name}")
            self.terms.append(Term(name, weight, params, LOSSES[name]))

    @property
    def needs_hidden(self) -> bool:
        return any("hidden" in t.info.needs for t in self.terms)

    @property
    def needs_attention(self) -> bool:
        return any("attention" in t.info.needs for t in self.terms)

    @property
    def needs_all_tokens(self) -> bool:
        """A masked LM's logits at every non-padding token (a soft-target term with `positions: all`)."""
        return any(t.params.get("positions", t.info.params.get("positions")) == "all" for t in self.terms)

    @property
    def uses_teacher(self) -> bool:
        return any(t.info.uses_teacher for t in self.terms)

    @property
    def trains_logits(self) -> bool:
        return any(t.info.trains_logits for t in self.terms)

    def __call__(self, student: Record, teacher: Record | None, batch: dict,
                 ctx: LossContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {t.name: t.info.fn(student, teacher, batch, ctx, **t.params) for t in self.terms}
        total = sum(t.weight * parts[t.name] for t in self.terms)
        return total, parts
