"""BERT's masked-LM corruption: choose 15% of the non-special tokens; of those 80% become [MASK],
10% a random token, 10% stay; the loss is computed on the chosen positions only."""

from __future__ import annotations

import torch


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, p: float = 0.15, p_mask: float = 0.8,
                p_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (corrupted ids, labels with -100 where no prediction is asked).

    `special` is a boolean tensor shaped like input_ids, True for [CLS]/[SEP]/padding: never chosen."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < p) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (roll < p_mask)
    to_random = chosen & (roll >= p_mask) & (roll < p_mask + p_random)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(to_random, random_ids, out)
    return out, labels
