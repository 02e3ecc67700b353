"""Masked language models for augmentation: loading one, adapting an encoder into one, and asking it
for the top-K words at many masked positions in batched forwards.

No packaged BERT has an MLM head. `adapt_encoder` gives an encoder (the packaged MiniLM by default) a
fresh MLM head and fine-tunes encoder and head with BERT's masking on a text corpus; the source name
`adapted:<encoder>` builds that once (cached) and uses it. Such an adapted MiniLM is a much weaker masked
LM than bert-base-uncased; users with the hub should name `bert-base-uncased` (or any BertForMaskedLM)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import BertForMaskedLM, get_linear_schedule_with_warmup

from distill.io import atomic_dir, cache_root, write_json
from distill.mlm_masking import mask_tokens
from teachers.load import CheckpointError, load_bert_config, load_tokenizer, resolve

ADAPT_DEFAULTS = {"steps": 500, "batch_size": 32, "lr": 1e-4, "max_length": 64, "seed": 0}


def adapted_folder(encoder: str, settings: dict) -> Path:
    ident = json.dumps({"encoder": encoder, **settings}, sort_keys=True)
    return cache_root() / "mlm" / hashlib.sha256(ident.encode()).hexdigest()[:16]


def default_corpus(split: str = "train") -> list[str]:
    """Offline adaptation corpus: the packaged tweets' training split (dev for held-out checks)."""
    from distill.loaders import load_tweets

    return [ex.text_a for ex in load_tweets(0).splits[split]]


@torch.inference_mode()
def heldout_top1(model, tokenizer, texts: list[str], max_length: int = 64, seed: int = 0) -> float:
    """Top-1 accuracy of a masked LM at BERT-masked positions of held-out texts (mask tokens only)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    hits = total = 0
    for start in range(0, len(texts), 64):
        enc = tokenizer(texts[start:start + 64], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        ids = enc["input_ids"]
        corrupted, labels = mask_tokens(ids, torch.isin(ids, special_ids), tokenizer.mask_token_id, len(tokenizer),
                                        gen, p_mask=1.0, p_random=0.0)
        hidden = model.bert(input_ids=corrupted, attention_mask=enc["attention_mask"]).last_hidden_state
        chosen = labels != -100
        pred = model.cls(hidden[chosen]).argmax(-1)
        hits += int((pred == labels[chosen]).sum())
        total += int(chosen.sum())
    return hits / max(total, 1)


def adapt_encoder(encoder: str, texts: list[str], out: str | Path, steps: int = 500, batch_size: int = 32,
                  lr: float = 1e-4, max_length: int = 64, seed: int = 0, heldout: list[str] | None = None,
                  log=print) -> Path:
    """Fine-tune `encoder` with a new MLM head on `texts`; writes a BertForMaskedLM folder atomically
    (with the held-out top-1 accuracy at masked positions when `heldout` texts are given)."""
    tok = load_tokenizer(encoder)
    model = BertForMaskedLM.from_pretrained(resolve(encoder), config=load_bert_config(encoder),
                                            attn_implementation="sdpa")
    model.train()
    enc = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, steps // 10, steps)
    special_ids = torch.tensor(sorted(set(tok.all_special_ids)))
    losses = []
    for _ in tqdm(range(steps), desc=f"adapting {encoder} to a masked LM", dynamic_ncols=True):
        idx = torch.randint(len(enc), (batch_size,), generator=gen).tolist()
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((batch_size, width), tok.pad_token_id)
        for r, i in enumerate(idx):
            ids[r, :len(enc[i])] = torch.tensor(enc[i])
        attention = (ids != tok.pad_token_id).long()
        corrupted, labels = mask_tokens(ids, torch.isin(ids, special_ids), tok.mask_token_id, len(tok), gen)
        # The vocabulary projection only at the ~15% chosen positions: most of an MLM step's cost otherwise.
        hidden = model.bert(input_ids=corrupted, attention_mask=attention).last_hidden_state
        chosen = labels != -100
        loss = torch.nn.functional.cross_entropy(model.cls(hidden[chosen]), labels[chosen])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    top1 = heldout_top1(model, tok, heldout[:2000], max_length) if heldout else None
    model.train(False)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / "adaptation.json", {"encoder": encoder, "steps": steps, "batch_size": batch_size, "lr": lr,
                                             "max_length": max_length, "seed": seed, "texts": len(texts),
                                             "first_loss": losses[0],
                                             "last_100_loss": sum(losses[-100:]) / len(losses[-100:]),
                                             "heldout_top1": top1})
    log(f"masked LM written to {out}" + (f" (held-out top-1 {top1:.3f})" if top1 is not None else ""))
    return Path(out)


def resolve_masked_lm(source: str, log=print) -> str:
    """A folder or hub name of a BertForMaskedLM; `adapted:<encoder>` is built on first use."""
    if not source.startswith("adapted:"):
        return source
    encoder = source.split(":", 1)[1]
    folder = adapted_folder(encoder, ADAPT_DEFAULTS)
    if not (folder / "adaptation.json").exists():
        log(f"masked LM: adapting {encoder} with an MLM head (once; cached at {folder})")
        adapt_encoder(encoder, default_corpus(), folder, heldout=default_corpus("dev"), log=log, **ADAPT_DEFAULTS)
    return str(folder)


def load_masked_lm(source: str, device: str | torch.device = "cpu", log=print):
    where = resolve_masked_lm(source, log)
    try:
        model = BertForMaskedLM.from_pretrained(resolve(where), attn_implementation="sdpa")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"could not load masked LM {source!r}: {e}") from e
    return model.eval().to(device), load_tokenizer(where)


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
        width = len(ids[part[0]])
        x = torch.full((len(part), width), tokenizer.pad_token_id)
        t = torch.zeros((len(part), width), dtype=torch.long)
        for r, j in enumerate(part):
            x[r, :len(ids[j])] = torch.tensor(ids[j])
            t[r, :len(types[j])] = torch.tensor(types[j])
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
