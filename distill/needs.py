"""What a loss reads from the models beyond their logits, as one typed value.

Each registered loss declares its `Needs`; a stage's objective takes the union of its terms' needs; the adaptor,
the training loop, evaluation and the teacher-record code are handed that one value and compute only what it
asks for (hidden states and attention maps cost memory, and attention scores rule out the fused kernel)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from distill.errors import DistillError


class NeedsError(DistillError):
    pass


@dataclass(frozen=True)
class Needs:
    """Outputs a loss reads from the student's and the teacher's records; logits always come. Behaves as a set of
    its true fields: `a | b` is the union, `a <= b` says every need of `a` is one of `b`, an empty one is false."""

    hidden: bool = False
    """Every layer's hidden states, index 0 being the embedding output (`Record.hidden_states`)."""
    attention: bool = False
    """Every layer's pre-softmax attention scores, (batch, heads, query, key) (`Record.attention_scores`)."""
    qkv: bool = False
    """Every layer's per-head queries, keys and values (`Record.qkv`; MiniLM's relation losses)."""
    all_tokens: bool = False
    """A masked LM's logits at every non-padding token rather than only at the masked ones (a soft-target loss
    with `positions: all`, DistilBERT's reference). Says which logits rows come, not which outputs: a
    classifier's logits are one row per example either way."""

    @classmethod
    def of(cls, names: Iterable[str], where: str = "needs") -> Needs:
        """The needs named by field, e.g. `Needs.of(["hidden", "attention"])`; an unknown name is an error naming
        it and the valid ones."""
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise NeedsError(f"{where} = {names!r}: expected a Needs or a list of field names "
                             f"({', '.join(cls.names_valid())})")
        names = list(names)
        for name in names:
            if name not in cls.names_valid():
                raise NeedsError(f"{where}: unknown need {name!r}; valid: {', '.join(cls.names_valid())}")
        return cls(**dict.fromkeys(names, True))

    @classmethod
    def names_valid(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def names(self) -> tuple[str, ...]:
        """The fields that are set, in declaration order (for listings such as the loss reference)."""
        return tuple(name for name in self.names_valid() if getattr(self, name))

    def __or__(self, other: Needs) -> Needs:
        if not isinstance(other, Needs):
            return NotImplemented
        return Needs(**{name: getattr(self, name) or getattr(other, name) for name in self.names_valid()})

    def __le__(self, other: Needs) -> bool:
        if not isinstance(other, Needs):
            return NotImplemented
        return all(getattr(other, name) for name in self.names())

    def __bool__(self) -> bool:
        return bool(self.names())

    @property
    def intermediate(self) -> bool:
        """Whether anything beyond logits is read: hidden states, attention scores or queries/keys/values."""
        return self.hidden or self.attention or self.qkv

    @property
    def attention_maps(self) -> bool:
        """Whether the model must hand out its attention (scores, or the queries/keys/values they come from)."""
        return self.attention or self.qkv


# Logits alone: what evaluation and a logit cache read.
LOGITS_ONLY = Needs()
