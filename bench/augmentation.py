"""Benchmark: TinyBERT augmentation candidates, ours (batched) against a faithful per-word reference.

The reference does what TinyBERT's original data_augmentation.py does for every eligible word: one
masked-LM forward at batch size 1 with gradients enabled, logits for every position, the whole vocabulary
sorted (then '##' pieces and special tokens skipped); for a multi-piece word a full matrix-vector product
with the normalised GloVe matrix and a full argsort. Ours batches masked copies of many sentences into
one forward under inference mode, runs the MLM head only at masked positions, uses top-k, and finds
neighbours of all words in one matrix product.

Same 200 packaged tweets, same masked LM and vectors, 2 CPU threads (unless --threads). Prints
sentences/s for both, whether the candidate sets agree for every word, and the speed-up as the last line.

    python bench/augmentation.py [--quick] [--sentences 200] [--masked-lm adapted:packaged:all-minilm-l6-v2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import transformers

from augment.mlm import load_masked_lm, whole_word_ids
from augment.tinybert import TinyBertAugmenter
from augment.vectors import Neighbours, load_vectors
from augment.words import split_words
from distill.config import TaskConfig, TinyBertAugmentConfig
from distill.loaders import load_task


def reference_candidates(model, tok, valid, kv, norm, cfg, sentences, eligible):
    """Per word, as the original code: no batching, no inference mode, full sorts."""
    table = []
    for words in sentences:
        row = []
        for i, w in enumerate(words):
            if not eligible(w):
                row.append([])
                continue
            pieces = tok.tokenize(w)
            if len(pieces) == 1 and pieces[0] != tok.unk_token:
                masked = " ".join(words[:i] + [tok.mask_token] + words[i + 1:])
                enc = tok(masked, " ".join(words) if cfg.mlm_input == "pair" else None, return_tensors="pt",
                          truncation="only_first" if cfg.mlm_input == "pair" else True, max_length=cfg.max_length)
                logits = model(**enc).logits[0]  # gradients enabled, every position
                pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()
                if len(pos) == 0:
                    row.append([])
                    continue
                order = torch.argsort(logits[pos[0, 0]], descending=True).tolist()
                row.append(tok.convert_ids_to_tokens([t for t in order if valid[t]][:cfg.candidates]))
            else:
                key = w.lower()
                if key not in kv.key_to_index:
                    row.append([])
                    continue
                idx = kv.key_to_index[key]
                dist = norm @ norm[idx]
                dist[idx] = -np.inf
                row.append([kv.index_to_key[j] for j in np.argsort(-dist)[:cfg.candidates]])
        table.append(row)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="40 sentences, to finish within a minute")
    ap.add_argument("--masked-lm", default="adapted:packaged:all-minilm-l6-v2")
    ap.add_argument("--vectors", default="packaged:glove-6b-50d")
    ap.add_argument("--mlm-input", choices=["single", "pair"], default="pair",
                    help="pair = [CLS] masked [SEP] original [SEP], as the reference code")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    n = 40 if args.quick else args.sentences
    cfg = TinyBertAugmentConfig(masked_lm=args.masked_lm, vectors=args.vectors, mlm_input=args.mlm_input)
    task = load_task(TaskConfig(test_limit=n))
    sentences = [split_words(ex.text_a) for ex in task.splits["test"]]
    model, tok = load_masked_lm(cfg.masked_lm)
    kv = load_vectors(cfg.vectors, cfg.vectors_limit)
    valid = whole_word_ids(tok)
    ours = TinyBertAugmenter(cfg, 20, model, tok, valid, Neighbours(kv))
    words = sum(1 for s in sentences for w in s if ours.eligible(w))
    print(f"{n} tweets, {words} eligible words, masked LM {args.masked_lm}, vectors {args.vectors} "
          f"({len(kv.index_to_key)} words), MLM input {args.mlm_input}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    table = ours.candidates(sentences)
    rng = np.random.default_rng(0)
    for words_, cands in zip(sentences, table, strict=True):
        for _ in range(20):
            ours.sample(words_, cands, rng)
    t_ours = time.perf_counter() - start

    norm = np.asarray(kv.vectors, dtype=np.float32)
    norm = norm / np.maximum(np.linalg.norm(norm, axis=1, keepdims=True), 1e-12)
    model.train(False)
    start = time.perf_counter()
    ref = reference_candidates(model, tok, valid, kv, norm, cfg, sentences, ours.eligible)
    t_ref = time.perf_counter() - start

    compared = same = 0
    for a_row, b_row in zip(table, ref, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            if a or b:
                compared += 1
                same += set(a) == set(b)
    print(f"{'method':44s} {'seconds':>8s} {'sentences/s':>12s}")
    print(f"{'reference (per word, batch 1, full sort)':44s} {t_ref:8.2f} {n / t_ref:12.2f}")
    print(f"{'distillery (batched, inference mode, top-k)':44s} {t_ours:8.2f} {n / t_ours:12.2f}")
    print(f"identical candidate sets: {same}/{compared} words" + ("" if same == compared else "  (MISMATCH)"))
    print(f"speedup: {t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()
