"""Benchmark: augmented sets at GLUE scale, today's in-memory path against the memory-mapped one.

Synthetic augmented sets in the augmentation's JSONL format: sentence pairs of tweet-like lengths (each side 5-19
words drawn from the packaged tweets' vocabulary), encoded with the teacher's tokenizer at max_length 128. Per size,
each measurement runs in a fresh process so that its peak RSS (VmHWM) is its own:

- build: the memory-mapped encoding of the JSONL (first run); the old path, which read every row into an `Example`
  and tokenised the whole list into Python lists, on every run;
- first batch: a second (cached) run, from the call that opens the set to the first collated batch;
- loader: examples/s of the DataLoader alone (length-grouped batches of 32, padding, no model);
- training (largest memory-mapped size): TinyBERT-4 (4 layers, 312 wide) training steps from that loader, with the
  process's peak RSS above its baseline (after imports and the model, before the data);

and the old path runs only at sizes it survives here (its projected peak must fit in half the available memory).
Targets: peak RSS while training on 8M pairs < 2 GB above baseline; a cached set starts in < 10 s; the loader gives
at least 10x TinyBERT-4's training rate.

    python bench/data_scale.py [--sizes 0.5M,2M,8M] [--quick] [--device cpu|cuda] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32
MAX_LENGTH = 128


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}K"


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


# ---------------------------------------------------------------- the synthetic set


def vocabulary() -> list[str]:
    from distill.loaders import load_tweets

    words = {w.lower() for ex in load_tweets(0).splits["train"] for w in ex.text_a.split() if w.isalpha()}
    return sorted(words)


def write_synthetic(path: Path, n: int, seed: int = 0) -> None:
    """n augmented-set rows (pairs), written in blocks; plain alphabetic words need no JSON escaping."""
    words = np.array(vocabulary())
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            lengths = rng.integers(5, 20, size=(m, 2))
            picks = words[rng.integers(0, len(words), size=int(lengths.sum()))]
            cuts = np.cumsum(lengths.ravel())[:-1]
            texts = [" ".join(p) for p in np.split(picks, cuts)]
            f.write("".join(
                f'{{"id": "s{start + i}", "source_id": "s{start + i}", "method": "original", '
                f'"text_a": "{texts[2 * i]}", "text_b": "{texts[2 * i + 1]}", "label": {(start + i) % 3}}}\n'
                for i in range(m)))
    tmp.rename(path)


# ---------------------------------------------------------------- measurements (each in its own process)


def tokenizer():
    from distill.teachers.load import load_tokenizer

    return load_tokenizer("packaged:all-minilm-l6-v2")


def quiet(*_):
    pass


def measure_new_build(path: Path) -> dict:
    import shutil

    from distill.augment.runner import augmented_identity, encode_augmented
    from distill.encoded import encoded_folder

    tok = tokenizer()
    # A fresh build every time it is measured (a second bench run reuses the synthetic file, not its encoding).
    shutil.rmtree(encoded_folder(augmented_identity(path), tok, MAX_LENGTH, False), ignore_errors=True)
    base = rss_mb()
    start = time.perf_counter()
    ds = encode_augmented(path, tok, MAX_LENGTH, False, quiet)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": rss_mb("VmHWM") - base, "examples": len(ds),
            "tokens": int(ds.meta["tokens"]), "disk_mb": sum(f.stat().st_size for f in ds.folder.iterdir()) / 2**20}


def loader_rate(ds, batches: int) -> float:
    from distill.config import TrainConfig
    from distill.trainer import make_loader

    loader, _ = make_loader(ds, BATCH, 0, True, TrainConfig())
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(it)["input_ids"].shape[0]
    return seen / (time.perf_counter() - start)


def measure_new_cached(path: Path, batches: int) -> dict:
    from distill.augment.runner import encode_augmented
    from distill.config import TrainConfig
    from distill.trainer import make_loader

    tok = tokenizer()
    base = rss_mb()
    start = time.perf_counter()
    ds = encode_augmented(path, tok, MAX_LENGTH, False, quiet)
    loader, _ = make_loader(ds, BATCH, 0, True, TrainConfig())
    next(iter(loader))
    first = time.perf_counter() - start
    rate = loader_rate(ds, batches)
    return {"first_batch_s": first, "loader_per_s": rate, "peak_mb": rss_mb("VmHWM") - base}


def measure_old(path: Path, batches: int) -> dict:
    """The path before memory maps: every row an `Example`, the whole list tokenised into Python lists (what
    `EncodedDataset` held), on every run: its time to the first batch is its build."""
    from distill.augment.runner import iter_augmented
    from distill.batching import LengthGroupedBatches, PadCollator

    tok = tokenizer()
    base = rss_mb()
    start = time.perf_counter()
    examples = list(iter_augmented(path))
    enc = tok([ex.text_a for ex in examples], [ex.text_b for ex in examples], truncation=True, max_length=MAX_LENGTH)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    labels = [ex.label for ex in examples]
    collate = PadCollator(tok.pad_token_id)
    import torch

    def item(i):
        return {"input_ids": ids[i], "token_type_ids": types[i], "labels": torch.tensor(labels[i]), "index": i}

    order = iter(LengthGroupedBatches([len(x) for x in ids], BATCH, 0))
    collate([item(i) for i in next(order)])
    first = time.perf_counter() - start
    t0, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += collate([item(i) for i in next(order)])["input_ids"].shape[0]
    return {"seconds": first, "first_batch_s": first, "loader_per_s": seen / (time.perf_counter() - t0),
            "peak_mb": rss_mb("VmHWM") - base}


def measure_training(path: Path, steps: int, device: str, loader_batches: int) -> dict:
    """TinyBERT-4 (random weights; the step costs the same) trained on batches from the memory-mapped loader."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from distill.augment.runner import encode_augmented
    from distill.config import TrainConfig
    from distill.trainer import make_loader

    tok = tokenizer()
    config = BertConfig(vocab_size=len(tok), hidden_size=312, num_hidden_layers=4, num_attention_heads=12,
                        intermediate_size=1200, num_labels=3, attn_implementation="sdpa")
    model = BertForSequenceClassification(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    base = rss_mb()
    ds = encode_augmented(path, tok, MAX_LENGTH, False, quiet)
    loader, _ = make_loader(ds, BATCH, 0, True, TrainConfig())
    it = iter(loader)

    def step():
        batch = {k: v.to(device) for k, v in next(it).items() if k in ("input_ids", "token_type_ids",
                                                                        "attention_mask", "labels")}
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"steps_per_s": steps / seconds, "examples_per_s": steps * BATCH / seconds,
            "peak_mb": rss_mb("VmHWM") - base, "baseline_mb": base,
            "loader_per_s": loader_rate(ds, loader_batches)}  # in the same process, on the same machine state


def child(args: argparse.Namespace) -> None:
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    os.environ["DISTILLERY_CACHE"] = str(Path(args.workdir) / "cache")
    path = Path(args.child_path)
    out = {"new-build": lambda: measure_new_build(path),
           "new-cached": lambda: measure_new_cached(path, args.loader_batches),
           "old": lambda: measure_old(path, args.loader_batches),
           "train": lambda: measure_training(path, args.train_steps, args.device, args.loader_batches)}[args.child]()
    print("RESULT " + json.dumps(out))


def run_child(args: argparse.Namespace, what: str, path: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--child", what, "--child-path", str(path), "--workdir", args.workdir,
           "--threads", str(args.threads), "--device", args.device, "--loader-batches", str(args.loader_batches),
           "--train-steps", str(args.train_steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    print(f"  {what} on {path.name} failed (exit {proc.returncode}): {' | '.join(tail)}", flush=True)
    return None


# ---------------------------------------------------------------- the table


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.5M,2M,8M", help="sentence pairs per synthetic set")
    ap.add_argument("--quick", action="store_true", help="sizes 50K and 200K, fewer batches")
    ap.add_argument("--device", default="cpu", help="where the TinyBERT-4 training steps run")
    ap.add_argument("--workdir", default=str(ROOT / "runs" / "bench-data-scale"),
                    help="synthetic sets and their cache (kept: a second run reuses them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loader-batches", type=int, default=2000)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--train-only", action="store_true", help="only the training measurement on the largest size "
                    "(its set encoded by an earlier run, or now)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.sizes, args.loader_batches, args.train_steps = "50K,200K", 500, 10
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"data scale: sizes {', '.join(label(n) for n in sizes)} sentence pairs, max_length {MAX_LENGTH}, batch "
          f"{BATCH}, {args.threads} threads, training on {args.device}; {available_gb():.1f} GB available; "
          f"work in {work}", flush=True)
    rows, old_per_pair, trained = [], None, None
    if args.train_only:
        sizes = [max(sizes)]
    for n in sizes:
        path = work / f"synthetic-{label(n)}.jsonl"
        if not path.exists():
            t0 = time.perf_counter()
            write_synthetic(path, n)
            print(f"  wrote {path.name} ({path.stat().st_size / 2**30:.2f} GB) in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        if args.train_only:
            trained = run_child(args, "train", path)
            break
        old = None
        projected = None if old_per_pair is None else old_per_pair * n / 1024
        if projected is None or projected < available_gb() / 2:
            old = run_child(args, "old", path)
            if old is not None:
                old_per_pair = old["peak_mb"] / n
        rows.append((n, "old (in memory)", old, projected))
        build = run_child(args, "new-build", path)
        cached = run_child(args, "new-cached", path)
        new = None if build is None or cached is None else {**build, "first_batch_s": cached["first_batch_s"],
                                                             "loader_per_s": cached["loader_per_s"],
                                                             "peak_mb": max(build["peak_mb"], cached["peak_mb"])}
        rows.append((n, "memory-mapped", new, None))
        print(f"  {label(n)} done", flush=True)
        if n == max(sizes):
            trained = run_child(args, "train", path)
    report(rows, trained, max(sizes))


def report(rows, trained, largest: int) -> None:
    print()
    print(f"{'pairs':>6s} {'path':16s} {'build s':>8s} {'peak RSS MB':>12s} {'1st batch s':>12s} {'loader ex/s':>12s}"
          f"  note")
    for n, path, r, projected in rows:
        if r is None:
            note = (f"not run: projected {projected:.1f} GB, over half the memory" if projected is not None
                    else "failed")
            print(f"{label(n):>6s} {path:16s} {'-':>8s} {'-':>12s} {'-':>12s} {'-':>12s}  {note}")
            continue
        note = f"{r['examples']:,} examples, {r['tokens']:,} tokens, {r['disk_mb']:.0f} MB on disk" \
            if "disk_mb" in r else "rebuilt on every run"
        print(f"{label(n):>6s} {path:16s} {r['seconds']:8.1f} {r['peak_mb']:12.0f} {r['first_batch_s']:12.2f} "
              f"{r['loader_per_s']:12,.0f}  {note}")
    new = {n: r for n, p, r, _ in rows if p == "memory-mapped" and r is not None}
    old = {n: r for n, p, r, _ in rows if p.startswith("old") and r is not None}
    for n in sorted(set(new) & set(old)):
        print(f"{label(n)}: memory-mapped vs old: peak RSS {old[n]['peak_mb'] / max(new[n]['peak_mb'], 1):.1f}x lower, "
              f"cached start {old[n]['first_batch_s'] / new[n]['first_batch_s']:.0f}x faster, loader "
              f"{new[n]['loader_per_s'] / old[n]['loader_per_s']:.2f}x")
    if trained is not None:
        ratio = trained["loader_per_s"] / trained["examples_per_s"]
        print(f"TinyBERT-4 training on {label(largest)} memory-mapped pairs: {trained['steps_per_s']:.2f} steps/s "
              f"({trained['examples_per_s']:.0f} examples/s, batch {BATCH}); peak RSS {trained['peak_mb']:.0f} MB "
              f"above the baseline of {trained['baseline_mb']:.0f} MB (target < 2048 MB): "
              f"{'met' if trained['peak_mb'] < 2048 else 'MISSED'}")
        print(f"loader / training rate: {trained['loader_per_s']:,.0f} / {trained['examples_per_s']:.0f} examples/s = "
              f"{ratio:.0f}x (target >= 10x): {'met' if ratio >= 10 else 'MISSED'}")
    slow = [n for n, r in new.items() if r["first_batch_s"] >= 10]
    print("cached start under 10 s at every size: " + ("met" if not slow else
                                                         f"MISSED at {', '.join(label(n) for n in slow)}"))


if __name__ == "__main__":
    main()
