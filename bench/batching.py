"""Benchmark: teacher forward throughput with static padding (the TinyBERT reference pads every batch to
max_seq_length) against dynamic padding, and dynamic padding with length-grouped batches.

Measured in one run on the packaged MiniLM-L6 teacher and the packaged tweets, under inference mode.
Prints examples/s, the share of real (non-pad) tokens, and each ratio to the static baseline.

    python bench/batching.py [--examples 1024] [--batch-size 32] [--max-length 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

from distill.adaptor import forward_record, set_attention
from distill.batching import LengthGroupedBatches, PadCollator
from distill.config import TaskConfig
from distill.encoded import EncodedDataset, encode_examples
from distill.loaders import load_task
from distill.needs import Needs
from distill.teachers.load import load_classifier, load_tokenizer

TEACHER = "packaged:all-minilm-l6-v2"


def batches(ds: EncodedDataset, order: list[list[int]], static_len: int | None):
    collate = PadCollator(ds.pad_id)
    for idx in order:
        b = collate([ds[i] for i in idx])
        if static_len is not None:
            pad = static_len - b["input_ids"].shape[1]
            for k in ("input_ids", "token_type_ids", "attention_mask"):
                fill = ds.pad_id if k == "input_ids" else 0
                b[k] = torch.nn.functional.pad(b[k], (0, pad), value=fill)
        yield b


def measure(model, ds, order, static_len, device, needs: Needs):
    real = padded = 0
    n = 0
    data = list(batches(ds, order, static_len))
    with torch.inference_mode():
        forward_record(model, {k: v.to(device) for k, v in data[0].items()}, needs)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for b in data:
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            forward_record(model, b, needs)
            real += int(b["attention_mask"].sum())
            padded += b["attention_mask"].numel()
            n += b["input_ids"].shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return n / seconds, real / padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    task = load_task(TaskConfig(train_limit=args.examples))
    tok = load_tokenizer(TEACHER)
    ds = encode_examples(task.splits["train"], tok, args.max_length)
    model = load_classifier(TEACHER, task.labels).eval().to(device)
    lengths = ds.lengths()
    plain = LengthGroupedBatches(lengths, args.batch_size, seed=0, grouped=False).batches()
    grouped = LengthGroupedBatches(lengths, args.batch_size, seed=0, grouped=True).batches()
    print(f"teacher MiniLM-L6 forward, {len(ds)} tweets, batch {args.batch_size}, max_length {args.max_length}, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    for needs, label in ((Needs(), "logits only (sdpa)"),
                         (Needs(hidden=True, attention=True), "with hidden states + attention scores")):
        set_attention(model, needs)
        rows = [("static padding to max_length (reference)", plain, args.max_length),
                ("dynamic padding, shuffled batches", plain, None),
                ("dynamic padding, length-grouped batches", grouped, None)]
        print(f"\n{label}")
        print(f"{'batching':45s} {'examples/s':>11s} {'real tokens':>12s} {'speed-up':>9s}")
        base = None
        for name, order, static in rows:
            eps, share = measure(model, ds, order, static, device, needs)
            base = base or eps
            print(f"{name:45s} {eps:11.1f} {100 * share:11.1f}% {eps / base:8.2f}x")


if __name__ == "__main__":
    main()
