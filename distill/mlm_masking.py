"""BERT's masked-LM corruption: choose 15% of the non-special tokens; of those 80% become [MASK],
10% a random token, 10% stay; the loss is computed on the chosen positions only.

DistilBERT's reference chooses differently (`mlm_smoothing`): exactly ceil(15% of the batch's non-padding
tokens) positions, drawn without replacement with probability proportional to count(token)^-0.7 (counts over
the training data; special tokens never), so rare tokens are masked more often than under uniform choice."""

from __future__ import annotations

import math

import numpy as np
import torch


def smoothed_token_probs(counts: np.ndarray, smoothing: float, special_ids: tuple[int, ...]) -> torch.Tensor:
    """Per-vocabulary-entry choice weights max(count, 1)^-smoothing, zero for special tokens."""
    probs = np.maximum(counts.astype(np.float64), 1.0) ** -smoothing
    probs[list(special_ids)] = 0.0
    return torch.from_numpy(probs)


def choose_smoothed(input_ids: torch.Tensor, pad_id: int, token_probs: torch.Tensor, generator: torch.Generator,
                    p: float = 0.15) -> torch.Tensor:
    """The positions to predict: ceil(p x non-padding tokens) of them, without replacement, weighted by
    `token_probs` of the token at each position."""
    weights = token_probs[input_ids.flatten()].to(torch.float64)
    n = min(math.ceil(p * int((input_ids != pad_id).sum())), int((weights > 0).sum()))
    chosen = torch.zeros(input_ids.numel(), dtype=torch.bool)
    if n > 0:
        chosen[torch.multinomial(weights, n, replacement=False, generator=generator)] = True
    return chosen.view_as(input_ids) & (input_ids != pad_id)


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, p: float = 0.15, p_mask: float = 0.8,
                p_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (corrupted ids, labels with -100 where no prediction is asked).

    `special` is a boolean tensor shaped like input_ids, True for [CLS]/[SEP]/padding: never chosen."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < p) & ~special
    return corrupt(input_ids, chosen, mask_id, vocab_size, generator, p_mask, p_random)


def corrupt(input_ids: torch.Tensor, chosen: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
            p_mask: float = 0.8, p_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen positions: p_mask of them [MASK], p_random a random token, the rest kept; labels -100 elsewhere."""
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (roll < p_mask)
    to_random = chosen & (roll >= p_mask) & (roll < p_mask + p_random)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(to_random, random_ids, out)
    return out, labels
