"""Dynamic padding, MLM masking in the collator, and length-grouped batches (index arithmetic in numpy, so that
a sampler over 8M examples costs tens of megabytes, not a list of Python ints per example)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from distill.mlm_masking import choose_smoothed, corrupt, mask_tokens, smoothed_token_probs


@dataclass(frozen=True)
class MlmMasking:
    """BERT masking applied by the collator; each batch's masks come from a generator seeded by the run
    seed and the batch's example indices, so a resumed run masks exactly as an uninterrupted one."""

    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    seed: int
    pad_id: int = 0
    # DistilBERT's frequency-smoothed choice (see distill/mlm_masking.py); None: BERT's uniform 15%.
    token_probs: torch.Tensor | None = field(default=None, compare=False)

    @classmethod
    def for_tokenizer(cls, tokenizer, seed: int, counts: np.ndarray | None = None,
                      smoothing: float | None = None) -> MlmMasking:
        """`counts` (per vocabulary entry, over the training data) and `smoothing`: DistilBERT's choice."""
        special = tuple(sorted(set(tokenizer.all_special_ids)))
        probs = None
        if smoothing is not None and counts is not None:
            padded = np.zeros(len(tokenizer), dtype=np.int64)
            padded[:min(len(counts), len(padded))] = counts[:len(padded)]
            probs = smoothed_token_probs(padded, smoothing, special)
        return cls(tokenizer.mask_token_id, len(tokenizer), special, seed, tokenizer.pad_token_id or 0, probs)

    def __call__(self, ids: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(hash((self.seed, *index.tolist())) % (2**63))
        if self.token_probs is not None:
            chosen = choose_smoothed(ids, self.pad_id, self.token_probs, gen)
            return corrupt(ids, chosen, self.mask_id, self.vocab_size, gen)
        special = torch.isin(ids, torch.tensor(self.special_ids))
        return mask_tokens(ids, special, self.mask_id, self.vocab_size, gen)


class PadCollator:
    """Pads a batch to its own longest sequence (not to max_length); optionally masks it for MLM."""

    def __init__(self, pad_id: int, mlm: MlmMasking | None = None):
        self.pad_id = pad_id
        self.mlm = mlm

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        ids, lengths = pad_ids([it["input_ids"] for it in items], self.pad_id)
        types, _ = pad_ids([it["token_type_ids"] for it in items])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        tagged = isinstance(items[0]["labels"], np.ndarray)  # token classification: a tag per token, -100 padded
        batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                 "labels": pad_ids([it["labels"] for it in items], -100)[0] if tagged else
                 torch.stack([it["labels"] for it in items]),
                 "index": torch.tensor([it["index"] for it in items])}
        if tagged:  # where the batch's word rows lie among the dataset's (a teacher-logit cache's rows)
            batch["rows"] = torch.from_numpy(np.concatenate(
                [it["row_start"] + np.arange(int((it["labels"] != -100).sum())) for it in items]))
        for key in ("student_ids", "student_ids_b"):
            if key in items[0]:
                batch[key], batch[key.replace("ids", "lengths")] = pad_ids([it[key] for it in items])
        if self.mlm is not None:
            batch["input_ids"], batch["mlm_labels"] = self.mlm(ids, batch["index"])
        return batch


def pad_ids(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded id matrix and the lengths (rows are lists or arrays, e.g. views into a memory map)."""
    lengths = np.fromiter((len(x) for x in seqs), dtype=np.int64, count=len(seqs))
    out = np.full((len(seqs), int(lengths.max())), pad, dtype=np.int64)
    for r, x in enumerate(seqs):
        out[r, :len(x)] = x
    return torch.from_numpy(out), torch.from_numpy(lengths)


class LengthGroupedBatches:
    """Shuffled batches of similar lengths, so that dynamic padding wastes little.

    Indices are shuffled, cut into windows of `window` batches, each window sorted by length and
    cut into batches, and the batches shuffled again. The order depends only on (seed, epoch), so a
    resumed run sees the same batches. `grouped=False` gives plain shuffled batches."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int, grouped: bool = True,
                 shuffle: bool = True, window: int = 50):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.grouped = grouped
        self.shuffle = shuffle
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable") if self.grouped else np.arange(n)
            return [order[i:i + size] for i in range(0, n, size)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g).numpy()
        if self.grouped:
            # Each window of the shuffled order sorted by length; lexsort is stable, so equal lengths keep their
            # shuffled order (as Python's sorted did: resumed runs of older versions see the same batches).
            window = np.arange(n) // (size * self.window)
            order = order[np.lexsort((self.lengths[order], window))]
        batches = [order[i:i + size] for i in range(0, n, size)]
        if self.grouped:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[p] for p in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
