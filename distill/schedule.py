"""Values that change over a stage: a loss weight or temperature given as a schedule instead of a number.

In a config: `weight: {schedule: linear, from: 1.0, to: 0.0}` (also `cosine`; `constant` takes `value`). The
value at a point of the stage is read from the fraction of its optimiser steps taken (0 at the first step, 1
after the last)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from distill.errors import DistillError

KINDS = ("constant", "linear", "cosine")


class ScheduleError(DistillError):
    pass


@dataclass(frozen=True)
class Schedule:
    kind: str
    start: float
    end: float

    def at(self, fraction: float) -> float:
        """The value after `fraction` (clipped to [0, 1]) of the stage: linear interpolation, or cosine (half a
        period, flat at both ends, as the usual cosine learning-rate decay)."""
        f = min(max(fraction, 0.0), 1.0)
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * f
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * f)) / 2


def subkey(where: str, key: str) -> str:
    """`where` extended by `.key`, inside its closing backtick when it has one (`stages.1.losses.x.weight`)."""
    return f"{where[:-1]}.{key}`" if where.endswith("`") else f"{where}.{key}"


def parse_schedule(value: object, where: str) -> float | Schedule:
    """A number, or a mapping {schedule, from, to} ({schedule: constant, value}); errors name `where`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, dict):
        raise ScheduleError(f"{where} = {value!r}: expected a number or a schedule such as "
                            "{schedule: linear, from: 1.0, to: 0.0}")
    kind = value.get("schedule")
    if kind not in KINDS:
        raise ScheduleError(f"{subkey(where, 'schedule')} = {kind!r}: expected one of {', '.join(KINDS)}")
    keys = ("schedule", "value") if kind == "constant" else ("schedule", "from", "to")
    for key in value:
        if key not in keys:
            raise ScheduleError(f"{where}: unknown key {key!r} for a {kind} schedule; valid: {', '.join(keys)}")
    numbers = []
    for key in keys[1:]:
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ScheduleError(f"{subkey(where, key)} = {v!r}: expected a number")
        numbers.append(float(v))
    return Schedule(kind, numbers[0], numbers[-1])


def value_at(value: float | Schedule, fraction: float) -> float:
    return value.at(fraction) if isinstance(value, Schedule) else value
