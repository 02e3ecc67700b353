"""Benchmark: inference speed of the BiLSTM student against the BERT teacher, in one run.

Latency at batch 1 (median over single tweets) and throughput at batch 32, on the packaged tweets, for the
packaged MiniLM-L6 teacher and a BiLSTM (glove.6B.50d, hidden 150, FC 200). Speed needs no trained
weights. Prints both and the ratios.

    python bench/bilstm_speed.py [--examples 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from distill.batching import pad_ids
from distill.config import TaskConfig
from distill.loaders import load_task
from distill.model_stats import count_parameters
from distill.students.bilstm import BiLSTMStudentConfig, build_bilstm
from distill.teachers.load import load_classifier, load_tokenizer

TEACHER = "packaged:all-minilm-l6-v2"


def timed(fn, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    task = load_task(TaskConfig(train_limit=args.examples))
    texts = [ex.text_a for ex in task.splits["train"]]
    tok = load_tokenizer(TEACHER)
    teacher = load_classifier(TEACHER, task.labels).eval()
    student = build_bilstm(BiLSTMStudentConfig(kind="bilstm", hidden=150), teacher, 0, texts).eval()

    def teacher_batch(ts):
        enc = tok(ts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        return lambda: teacher(**enc).logits

    def student_batch(ts):
        ids, lengths = pad_ids([student.vocab.encode(t, 128) for t in ts])
        return lambda: student(ids, lengths)

    rows = []
    for name, make in (("teacher MiniLM-L6 (BERT, 6x384)", teacher_batch), ("BiLSTM-150 (glove 50d)", student_batch)):
        make(texts[:32])()  # warm-up
        single = [timed(make([t])) for t in texts[:200]]
        batches = [make(texts[i:i + 32]) for i in range(0, len(texts) - 31, 32)]
        total = sum(timed(b) for b in batches)
        rows.append((name, statistics.median(single) * 1000, 32 * len(batches) / total))
    print(f"{args.examples} tweets, {torch.get_num_threads()} threads; parameters: teacher "
          f"{count_parameters(teacher) / 1e6:.2f}M, BiLSTM {count_parameters(student) / 1e6:.2f}M "
          f"({count_parameters(student) - student.embedding.weight.numel():,} without the embedding table)")
    print(f"{'model':34s} {'batch-1 latency (ms)':>21s} {'batch-32 examples/s':>20s}")
    for name, lat, thr in rows:
        print(f"{name:34s} {lat:21.2f} {thr:20.1f}")
    (_, t_lat, t_thr), (_, s_lat, s_thr) = rows
    print(f"BiLSTM vs teacher: {t_lat / s_lat:.1f}x faster at batch 1, "
          f"{s_thr / t_thr:.1f}x more throughput at batch 32")


if __name__ == "__main__":
    main()
