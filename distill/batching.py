"""Tokenised examples, dynamic padding and length-grouped batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.loaders import fingerprint
from distill.mlm_masking import choose_smoothed, corrupt, mask_tokens, smoothed_token_probs
from distill.tasks import Example


class EncodedDataset(Dataset):
    """Examples tokenised once with the teacher's (fast) tokenizer, without padding."""

    def __init__(self, examples: list[Example], tokenizer, max_length: int, regression: bool = False):
        a = [ex.text_a for ex in examples]
        b = [ex.text_b for ex in examples]
        pair = any(x is not None for x in b)
        enc = tokenizer(a, b if pair else None, truncation=True, max_length=max_length)
        self.input_ids: list[list[int]] = enc["input_ids"]
        self.token_type_ids: list[list[int]] = enc.get("token_type_ids") or [[0] * len(x) for x in self.input_ids]
        dtype = torch.float32 if regression else torch.long
        labels = [ex.label if ex.label is not None else (0.0 if regression else -100) for ex in examples]
        self.labels = torch.tensor(labels, dtype=dtype)
        self.pad_id = tokenizer.pad_token_id or 0
        self.examples = examples
        self.identity = f"{fingerprint(examples)}:{tokenizer.name_or_path}:{len(tokenizer)}:{max_length}"
        self.student_a: list[list[int]] | None = None
        self.student_b: list[list[int]] | None = None
        # Teacher logits for every example (from the teacher-output cache), when a stage needs only those.
        self.teacher_logits: torch.Tensor | None = None

    def attach_student(self, encode) -> None:
        """Also encode the texts for a student with its own vocabulary (e.g. the BiLSTM's words)."""
        self.student_a = [encode(ex.text_a) for ex in self.examples]
        if any(ex.text_b is not None for ex in self.examples):
            self.student_b = [encode(ex.text_b or "") for ex in self.examples]

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def token_counts(self) -> np.ndarray:
        """How often each token id occurs in the dataset (masking weights)."""
        return np.bincount(np.fromiter((t for x in self.input_ids for t in x), dtype=np.int64))

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "token_type_ids": self.token_type_ids[i],
                "labels": self.labels[i], "index": i}
        if self.student_a is not None:
            item["student_ids"] = self.student_a[i]
        if self.student_b is not None:
            item["student_ids_b"] = self.student_b[i]
        return item


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
        batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                 "labels": torch.stack([it["labels"] for it in items]),
                 "index": torch.tensor([it["index"] for it in items])}
        for key in ("student_ids", "student_ids_b"):
            if key in items[0]:
                batch[key], batch[key.replace("ids", "lengths")] = pad_ids([it[key] for it in items])
        if self.mlm is not None:
            batch["input_ids"], batch["mlm_labels"] = self.mlm(ids, batch["index"])
        return batch


def pad_ids(seqs: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded id matrix and the lengths."""
    out = torch.full((len(seqs), max(len(x) for x in seqs)), pad, dtype=torch.long)
    for r, x in enumerate(seqs):
        out[r, :len(x)] = torch.tensor(x)
    return out, torch.tensor([len(x) for x in seqs])


class LengthGroupedBatches:
    """Shuffled batches of similar lengths, so that dynamic padding wastes little.

    Indices are shuffled, cut into windows of `window` batches, each window sorted by length and
    cut into batches, and the batches shuffled again. The order depends only on (seed, epoch), so a
    resumed run sees the same batches. `grouped=False` gives plain shuffled batches."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, grouped: bool = True,
                 shuffle: bool = True, window: int = 50):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.grouped = grouped
        self.shuffle = shuffle
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i]) if self.grouped else list(range(n))
            return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g).tolist()
        if self.grouped:
            span = self.batch_size * self.window
            order = [i for s in range(0, n, span) for i in sorted(order[s:s + span], key=lambda i: self.lengths[i])]
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.grouped:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[p] for p in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
