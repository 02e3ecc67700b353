"""A stage's objective: the weighted sum of the losses its config names, against one teacher or several.

With several teachers, a prediction loss compares against their weighted average (of softened distributions,
or of logits for MSE) unless it names one teacher; an intermediate loss reads the teacher it names, by default
the first. Weights and temperatures given as schedules are read at the stage's current fraction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from distill.adaptor import Record
from distill.losses import LOSSES, LossContext, LossError, LossInfo, check_loss_spec, teacher_log_probs
from distill.needs import Needs
from distill.schedule import Schedule, value_at

# The name a run's only teacher goes by.
SOLE_TEACHER = "teacher"


@dataclass(frozen=True)
class Term:
    name: str
    weight: float | Schedule
    params: dict
    info: LossInfo
    teacher: str | None = None  # None: the first teacher (intermediate) or all of them (prediction)

    @property
    def needs(self) -> Needs:
        """What this term reads, its parameters' needs included."""
        return self.info.needs_for(self.params)

    def reads(self, teachers: list[str]) -> list[str]:
        """The teachers this term reads."""
        if not self.info.uses_teacher:
            return []
        if self.teacher is not None:
            return [self.teacher]
        return teachers[:1] if self.needs.intermediate else list(teachers)


class Objective:
    def __init__(self, losses: dict, where: str = "losses", teachers: dict[str, float] | None = None):
        """`teachers`: each teacher's name and weight, in config order (default: one teacher)."""
        teachers = teachers or {SOLE_TEACHER: 1.0}
        total = sum(teachers.values())
        self.teacher_weights = {name: w / total for name, w in teachers.items()}
        self.teachers = list(teachers)
        self.terms = []
        for name, spec in losses.items():
            weight, params, teacher = check_loss_spec(name, spec, f"{where}.{name}")
            if teacher is not None and teacher not in teachers:
                raise LossError(f"{where}.{name}.teacher = {teacher!r}: the run's teachers are "
                                f"{', '.join(self.teachers)}")
            self.terms.append(Term(name, weight, params, LOSSES[name], teacher))

    @cached_property
    def needs(self) -> Needs:
        """What the student's record must hold: the union of the terms' needs."""
        out = Needs()
        for t in self.terms:
            out = out | t.needs
        return out

    @property
    def uses_teacher(self) -> bool:
        return any(t.info.uses_teacher for t in self.terms)

    @property
    def trains_logits(self) -> bool:
        return any(t.info.trains_logits for t in self.terms)

    def teacher_needs(self) -> dict[str, Needs]:
        """Each teacher the objective reads and the outputs beyond logits it must give (empty: logits only, which
        a teacher-output cache can supply). Without `all_tokens`: which logits rows come is the objective's
        (`needs.all_tokens`), the same for every model so that their rows line up."""
        out: dict[str, Needs] = {}
        for term in self.terms:
            for name in term.reads(self.teachers):
                out[name] = out.get(name, Needs()) | replace(term.needs, all_tokens=False)
        return out

    def scheduled(self, fraction: float) -> dict[str, float]:
        """The current value of every scheduled weight or parameter, as `loss.weight` / `loss.param`."""
        out = {}
        for t in self.terms:
            for key, value in (("weight", t.weight), *t.params.items()):
                if isinstance(value, Schedule):
                    out[f"{t.name}.{key}"] = value.at(fraction)
        return out

    def ensemble(self, records: dict[str, Record]) -> Record:
        """The teachers' combined record for prediction losses: weighted mean logits, with each teacher's
        (weight, logits) kept for averaging distributions."""
        if len(self.teachers) == 1:
            return records[self.teachers[0]]
        members = tuple((self.teacher_weights[n], records[n].logits) for n in self.teachers)
        return combined_record(members, records[self.teachers[0]])

    def __call__(self, student: Record, teacher: Record | dict[str, Record] | None, batch: dict,
                 ctx: LossContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss and each term; `teacher` is the one teacher's record or every teacher's by name."""
        records = {self.teachers[0]: teacher} if isinstance(teacher, Record) else (teacher or {})
        combined = None
        parts, total = {}, 0.0
        for t in self.terms:
            params = {k: value_at(v, ctx.fraction) for k, v in t.params.items()}
            term_ctx, rec, names = ctx, None, t.reads(self.teachers)
            if len(names) == 1:
                rec = records[names[0]]
                if names[0] in ctx.teacher_pairs:
                    term_ctx = replace(ctx, pairs=ctx.teacher_pairs[names[0]])
            elif names:
                combined = combined or self.ensemble(records)
                rec = combined
            parts[t.name] = t.info.fn(student, rec, batch, term_ctx, **params)
            total = total + value_at(t.weight, ctx.fraction) * parts[t.name]
        return total, parts


def ensemble_logits(logits: dict[str, torch.Tensor], weights: dict[str, float], regression: bool) -> torch.Tensor:
    """Several teachers' logits over a dataset as one teacher's: the weighted mean score (regression), or the log of
    the weighted mean of their distributions (classification; its argmax is the ensemble's prediction). `weights`
    sum to 1 (`Objective.teacher_weights`)."""
    if len(logits) == 1:
        return next(iter(logits.values()))
    rec = combined_record(tuple((weights[name], z) for name, z in logits.items()))
    return rec.logits if regression else teacher_log_probs(rec, 1.0)


def combined_record(members: tuple[tuple[float, torch.Tensor], ...], like: Record | None = None) -> Record:
    """Several teachers' (weight, logits) as one record: the weighted mean logits, the members kept so that
    prediction losses can average distributions; batch fields (mask, token rows) from `like`."""
    mean = sum(w * z.float() for w, z in members)
    if like is None:
        return Record(logits=mean, attention_mask=None, ensemble=members)
    return replace(like, logits=mean, ensemble=members, hidden_states=None, attention_scores=None, qkv=None)
