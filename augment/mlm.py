"""Masked language models for augmentation: loading one and asking it for the top-K words at many masked
positions in batched forwards. An `adapted:<encoder>` masked LM is built first, explicitly
(`teachers.mlm_adapt.ensure_adapted`)."""

from __future__ import annotations

import torch

from distill.augment.flops import ForwardShape
from distill.batching import pad_ids
from distill.teachers.load import load_bert_mlm, load_tokenizer
from distill.teachers.mlm_adapt import ensure_adapted


def load_masked_lm(source: str, device: str | torch.device = "cpu", log=print):
    """A BertForMaskedLM (eval mode, on `device`) and its tokenizer; `adapted:` names are built first."""
    where = ensure_adapted(source, log)
    return load_bert_mlm(where, need_head=True).eval().to(device), load_tokenizer(where)


def whole_word_ids(tokenizer) -> torch.Tensor:
    """Boolean over the vocabulary: tokens that can stand as a word (alphabetic, not a ##piece, not special)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i not in special and tok.isalpha() for i, tok in enumerate(vocab)])


def word_window(counts: list[int], i: int, budget: int, own: int | None = None) -> tuple[int, int]:
    """The words [lo, hi) around word i whose pieces (`counts`; `own` for word i itself if given, e.g. 1 for
    a [MASK]) fit in `budget`: grown one word at a time, left and right alternately (left first), so that
    the context stays centred on word i; a side that is blocked (an edge, or a word too long for what is
    left) lets the other side go on. (i, i) when word i alone does not fit."""
    used = counts[i] if own is None else own
    if used > budget:
        return i, i
    lo, hi, left_turn = i, i + 1, True
    while True:
        can_left = lo > 0 and used + counts[lo - 1] <= budget
        can_right = hi < len(counts) and used + counts[hi] <= budget
        if can_left and (left_turn or not can_right):
            lo -= 1
            used += counts[lo]
            left_turn = False
        elif can_right:
            used += counts[hi]
            hi += 1
            left_turn = True
        else:
            return lo, hi


def piece_counts(tokenizer, words: list[str]) -> dict[str, int]:
    """Word pieces per distinct word. BERT's tokenizer splits on whitespace before anything else, so a
    sentence's pieces are its words' pieces; a tokenizer that disagrees is caught by `encode_masked`."""
    distinct = sorted(set(words))
    if not distinct:
        return {}
    ids = tokenizer(distinct, add_special_tokens=False)["input_ids"]
    return {w: len(p) for w, p in zip(distinct, ids, strict=True)}


def encode_masked(tokenizer, inputs: list[tuple[list[str], int]], pair: bool = False,
                  max_length: int = 512) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids and token types for each (words, i) with word i masked: `[CLS] masked [SEP]`, or
    `[CLS] masked [SEP] original [SEP]` with `pair`. Every row is at most `max_length` long and holds its
    [MASK] (if `max_length` leaves room for one).

    A sentence that fits is encoded whole, exactly as `tokenizer(masked, original)`. A longer one keeps a
    window of words around word i (`word_window`, from per-word piece counts), so that no word is ever
    out of reach whatever the sentence's length. Pairs keep as much of the masked copy as fits and give
    the original what is left, also as a window around word i: the original is what gets truncated, as in
    the reference code (which cuts the end of `masked + original`)."""
    if not inputs:
        return [], []
    mask = tokenizer.mask_token
    budget = max_length - (3 if pair else 2)
    # Callers pass one list per sentence for all of its positions: count each sentence's pieces once.
    sentences = {id(words): words for words, _ in inputs}
    pieces = piece_counts(tokenizer, [w for words in sentences.values() for w in words])
    per_sentence = {key: [pieces[w] for w in words] for key, words in sentences.items()}
    firsts, seconds = [], []
    for words, i in inputs:
        counts = per_sentence[id(words)]
        lo, hi = word_window(counts, i, budget, own=1)  # [MASK] is one piece
        firsts.append(" ".join(words[lo:i] + [mask] + words[i + 1:hi]) if lo < hi else "")
        if pair:
            used = sum(counts[lo:hi]) - counts[i] + 1 if lo < hi else 0
            lo2, hi2 = word_window(counts, i, budget - used)
            seconds.append(" ".join(words[lo2:hi2]))
    enc = tokenizer(firsts, seconds if pair else None)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    for r, row in enumerate(ids):
        if len(row) > max_length:  # piece counts that did not add up: cut by tokens instead
            ids[r], types[r] = _cut_tokens(tokenizer, firsts[r], seconds[r] if pair else None, max_length)
    return ids, types


def _cut_tokens(tokenizer, first: str, second: str | None, max_length: int) -> tuple[list[int], list[int]]:
    """The safety net: token windows around the [MASK] (and around the same place in the original),
    assembled by hand, so that a tokenizer surprise costs context, never the [MASK] or an exception."""
    a = tokenizer(first, add_special_tokens=False)["input_ids"]
    b = None if second is None else tokenizer(second, add_special_tokens=False)["input_ids"]
    budget = max(max_length - (2 if b is None else 3), 0)
    at = a.index(tokenizer.mask_token_id) if tokenizer.mask_token_id in a else 0
    lo, hi = word_window([1] * len(a), at, budget) if a else (0, 0)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = [cls, *a[lo:hi], sep]
    types = [0] * len(ids)
    if b is not None:
        lo2, hi2 = word_window([1] * len(b), min(at, len(b) - 1), budget - (hi - lo)) if b else (0, 0)
        ids += [*b[lo2:hi2], sep]
        types += [1] * (hi2 - lo2 + 1)
    return ids, types


# On a CPU a forward's activations should stay about cache-sized: its layer norms, GELU, residual adds and addmm's
# bias copies are memory-bound, and at 128 rows of ~100 tokens they took a third of the time. Measured on 2 cores
# (MiniLM-L6, 200 tweets, bench/augmentation.py): 67% of dense-matmul FLOP/s at 128 rows a forward, 81% at 4,096
# tokens. A GPU wants its batches large: no token budget there.
CPU_FORWARD_TOKENS = 4096


def forward_tokens(device: str | torch.device) -> int | None:
    """The most padded tokens (rows x padded length) one masked-LM forward takes on `device`; None: no budget."""
    return CPU_FORWARD_TOKENS if torch.device(device).type == "cpu" else None


def plan_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Row indices cut into batches, longest rows first (so that each batch is padded little): at most `batch_size`
    rows, and at most `max_tokens` tokens once padded to the batch's first (longest) row; a longer row goes alone."""
    batches: list[list[int]] = []
    part: list[int] = []
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        if part and (len(part) == batch_size or (max_tokens is not None
                                                 and (len(part) + 1) * lengths[part[0]] > max_tokens)):
            batches.append(part)
            part = []
        part.append(j)
    return batches + [part] if part else batches


def masked_batches(model, tokenizer, inputs: list[tuple[list[str], int]], pair: bool = False, batch_size: int = 128,
                   max_length: int = 512) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """The rows `masked_top_k` feeds the model for `inputs` (ids, token types; see `encode_masked`) and its batches
    (`plan_batches`, with the model's device's token budget). `max_length` is capped at the model's position table
    (`TinyBertAugmentConfig.max_length`'s default, BERT's 512, is more than some masked LMs have)."""
    max_length = min(max_length, model.config.max_position_embeddings)
    ids, types = encode_masked(tokenizer, inputs, pair, max_length)
    device = next(model.parameters()).device
    return ids, types, plan_batches([len(row) for row in ids], batch_size, forward_tokens(device))


def forward_shape(ids: list[list[int]], part: list[int], mask_id: int) -> ForwardShape:
    """The shape of the forward over rows `part`: the head runs at rows that hold a [MASK] (all, unless
    `max_length` left no room for one)."""
    return ForwardShape(tuple(len(ids[j]) for j in part), sum(mask_id in ids[j] for j in part))


@torch.inference_mode()
def masked_top_k(model, tokenizer, inputs: list[tuple[list[str], int]], k: int, valid: torch.Tensor,
                 pair: bool = False, batch_size: int = 128, max_length: int = 512,
                 shapes: list[ForwardShape] | None = None) -> list[list[str]]:
    """For each (words, i): the top-k whole-word predictions at word i masked.

    Inputs are built by `encode_masked` (a window around word i for sentences too long to fit, so every
    word gets candidates); all masked copies are batched (`masked_batches`: longest-first, dynamic padding, a
    token budget on a CPU); the MLM head runs only at the masked positions; top-k is a partial selection, not a
    sort of the vocabulary.
    `shapes`, if given, receives the shape of every forward run (to count its FLOPs: `augment.flops`)."""
    device = next(model.parameters()).device
    ids, types, batches = masked_batches(model, tokenizer, inputs, pair, batch_size, max_length)
    out: list[list[str]] = [[] for _ in inputs]
    bad = ~valid.to(device)
    for part in batches:
        x, _ = pad_ids([ids[j] for j in part], tokenizer.pad_token_id)
        t, _ = pad_ids([types[j] for j in part])
        x, t = x.to(device), t.to(device)
        is_mask = x == tokenizer.mask_token_id
        rows = is_mask.any(1).nonzero(as_tuple=True)[0]
        if len(rows) == 0:
            continue
        if shapes is not None:
            shapes.append(forward_shape(ids, part, tokenizer.mask_token_id))
        cols = is_mask.float().argmax(1)[rows]  # the first [MASK] of a row is the one we placed
        hidden = model.bert(input_ids=x, attention_mask=(x != tokenizer.pad_token_id).long(),
                            token_type_ids=t).last_hidden_state
        logits = model.cls(hidden[rows, cols]).float()
        logits[:, bad] = -float("inf")
        top = logits.topk(k, dim=-1).indices.cpu().tolist()
        for r, cand in zip(rows.cpu().tolist(), top, strict=True):
            out[part[r]] = tokenizer.convert_ids_to_tokens(cand)
    return out
