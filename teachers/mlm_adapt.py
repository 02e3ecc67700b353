"""Adapting an encoder into a masked LM: a fresh MLM head, fine-tuned with the encoder on a text corpus.

No packaged BERT has an MLM head. `adapted:<encoder>` names the packaged MiniLM (or any encoder) given one
with `distill.resources.ADAPT_SETTINGS` on the packaged tweets' training text. Building it is an explicit
step: `ensure_adapted` (called by the workflows that accept such names: augmentation's masked LM, a general
distillation teacher) or `distill adapt-mlm`. Looking the name up (`teachers.load.resolve`) never trains.
Such an adapted MiniLM is a much weaker masked LM than bert-base-uncased; users with the hub should name
`bert-base-uncased` (or any BertForMaskedLM)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distill.batching import pad_ids
from distill.io import atomic_dir, write_json
from distill.mlm_masking import mask_tokens
from distill.resources import ADAPT_SETTINGS, adapted_encoder, adapted_folder
from distill.teachers.load import load_bert_mlm, load_tokenizer
from distill.timing import duration


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
                  log=print, why: str = "") -> Path:
    """Fine-tune `encoder` with a new MLM head on `texts`; writes a BertForMaskedLM folder atomically
    (with the held-out top-1 accuracy at masked positions when `heldout` texts are given). Three steps in, it says
    how long the whole will take (`why` ends that line)."""
    tok = load_tokenizer(encoder)
    model = load_bert_mlm(encoder, need_head=False)
    model.train()
    enc = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, steps // 10, steps)
    special_ids = torch.tensor(sorted(set(tok.all_special_ids)))

    def loss_of(draw: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(enc), (batch_size,), generator=draw).tolist()
        ids, _ = pad_ids([enc[j] for j in idx], tok.pad_token_id)
        attention = (ids != tok.pad_token_id).long()
        corrupted, labels = mask_tokens(ids, torch.isin(ids, special_ids), tok.mask_token_id, len(tok), draw)
        # The vocabulary projection only at the ~15% chosen positions: most of an MLM step's cost otherwise.
        hidden = model.bert(input_ids=corrupted, attention_mask=attention).last_hidden_state
        chosen = labels != -100
        return torch.nn.functional.cross_entropy(model.cls(hidden[chosen]), labels[chosen])

    losses, marks = [], [time.perf_counter()]
    for i in tqdm(range(steps), desc=f"adapting {encoder} to a masked LM", dynamic_ncols=True):
        loss = loss_of(gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # a host copy: the marks time finished steps
        marks.append(time.perf_counter())
        if i == min(2, steps - 1):  # the first step pays for warm-up, the next two are timed whole (update included)
            per_step = (marks[-1] - marks[1]) / max(i, 1)
            log(f"masked LM: adapting {encoder} with an MLM head ({steps} steps of {batch_size} texts), "
                       f"estimated {duration(marks[-1] - marks[0] + per_step * (steps - i - 1))} on cpu (from its "
                       f"first steps){why}")
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


def ensure_adapted(source: str, log=print) -> str:
    """`source` itself, or for `adapted:<encoder>` the cached masked-LM folder, built first if missing."""
    encoder = adapted_encoder(source)
    if encoder is None:
        return source
    folder = adapted_folder(encoder)
    if not (folder / "adaptation.json").exists():
        adapt_encoder(encoder, default_corpus(), folder, heldout=default_corpus("dev"), log=log,
                      why=f", once; cached at {folder}", **ADAPT_SETTINGS)
    return str(folder)
