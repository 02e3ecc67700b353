"""FLOPs of the masked-LM forwards that `augment.mlm.masked_top_k` runs, counted from the model's config and the
real batch shapes, so that a measured time can be turned into achieved FLOP/s (bench/augmentation.py) and a timed
sample of forwards can be extrapolated to a whole augmentation (augment/cost.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardShape:
    """One batched masked-LM forward: each row's length before padding, and the rows the MLM head runs at."""

    lengths: tuple[int, ...]
    masked: int

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def length(self) -> int:
        """The padded length: rows are padded to the longest."""
        return max(self.lengths, default=0)


def head_flops(config, masked: int) -> int:
    """The MLM head at `masked` positions: its transform (h x h) and its decoder over the vocabulary (h x vocab)."""
    h = config.hidden_size
    return 2 * masked * (h * h + h * config.vocab_size)


def encoder_flops(config, batch: int, length: int, masked: int) -> int:
    """Matrix-product FLOPs (a multiply-add is 2) of one BertForMaskedLM forward as `masked_top_k` runs it: the
    encoder over `batch` rows of `length` tokens, and the MLM head at `masked` positions only.

    Per layer and token: the Q, K, V and output projections (4 h^2) and the feed-forward (2 h i); per layer and
    row: attention scores and their weighted sum (2 len^2 h each; the heads split h, so their number does not
    change the total). Left out, as they are not matrix products (and torch's FlopCounterMode does not count them
    either): embedding lookups, biases, residual adds, layer norms, softmax and GELU."""
    h, i = config.hidden_size, config.intermediate_size
    tokens = batch * length
    linear = 2 * tokens * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * batch * length * length * h
    return config.num_hidden_layers * (linear + attention) + head_flops(config, masked)


def executed_flops(config, shapes: list[ForwardShape]) -> int:
    """What the forwards computed, padding included."""
    return sum(encoder_flops(config, s.batch, s.length, s.masked) for s in shapes)


def useful_flops(config, shapes: list[ForwardShape]) -> int:
    """What the forwards would have computed without padding: every row at its own length."""
    return sum(sum(encoder_flops(config, 1, n, 0) for n in s.lengths) + head_flops(config, s.masked) for s in shapes)
