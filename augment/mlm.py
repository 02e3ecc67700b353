"""Masked language models for augmentation: loading one and asking it for the top-K words at many masked
positions in batched forwards. An `adapted:<encoder>` masked LM is built first, explicitly
(`teachers.mlm_adapt.ensure_adapted`)."""

from __future__ import annotations

import torch

from distill.batching import pad_ids
from teachers.load import load_bert_mlm, load_tokenizer
from teachers.mlm_adapt import ensure_adapted


def load_masked_lm(source: str, device: str | torch.device = "cpu", log=print):
    """A BertForMaskedLM (eval mode, on `device`) and its tokenizer; `adapted:` names are built first."""
    where = ensure_adapted(source, log)
    return load_bert_mlm(where, need_head=True).eval().to(device), load_tokenizer(where)


def whole_word_ids(tokenizer) -> torch.Tensor:
    """Boolean over the vocabulary: tokens that can stand as a word (alphabetic, not a ##piece, not special)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i not in special and tok.isalpha() for i, tok in enumerate(vocab)])


@torch.inference_mode()
def masked_top_k(model, tokenizer, inputs: list[tuple[list[str], int]], k: int, valid: torch.Tensor,
                 pair: bool = False, batch_size: int = 128, max_length: int = 128) -> list[list[str]]:
    """For each (words, i): the top-k whole-word predictions at word i masked.

    All masked copies are batched (longest-first, dynamic padding); the MLM head runs only at the masked
    positions; top-k is a partial selection, not a sort of the vocabulary. A position cut off by
    truncation gets no candidates."""
    device = next(model.parameters()).device
    max_length = min(max_length, model.config.max_position_embeddings)
    mask = tokenizer.mask_token
    texts = [" ".join(w[:i] + [mask] + w[i + 1:]) for w, i in inputs]
    originals = [" ".join(w) for w, _ in inputs] if pair else None
    enc = tokenizer(texts, originals, truncation="only_first" if pair else True, max_length=max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
    out: list[list[str]] = [[] for _ in inputs]
    bad = ~valid.to(device)
    for start in range(0, len(order), batch_size):
        part = order[start:start + batch_size]
        x, _ = pad_ids([ids[j] for j in part], tokenizer.pad_token_id)
        t, _ = pad_ids([types[j] for j in part])
        x, t = x.to(device), t.to(device)
        is_mask = x == tokenizer.mask_token_id
        rows = is_mask.any(1).nonzero(as_tuple=True)[0]
        if len(rows) == 0:
            continue
        cols = is_mask.float().argmax(1)[rows]  # the first [MASK] of a row is the one we placed
        hidden = model.bert(input_ids=x, attention_mask=(x != tokenizer.pad_token_id).long(),
                            token_type_ids=t).last_hidden_state
        logits = model.cls(hidden[rows, cols]).float()
        logits[:, bad] = -float("inf")
        top = logits.topk(k, dim=-1).indices.cpu().tolist()
        for r, cand in zip(rows.cpu().tolist(), top, strict=True):
            out[part[r]] = tokenizer.convert_ids_to_tokens(cand)
    return out
