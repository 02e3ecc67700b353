"""Benchmark: TinyBERT's intermediate stage with the teacher run every step against the stored teacher record
(`train.teacher_record`), measured in one run on the same data.

Teacher: the packaged MiniLM-L6 (6L-384, 12 heads); student: TinyBERT-4L-312 from random weights; losses:
embedding + attention + hidden MSE on the uniform map; packaged tweets, length-grouped batches. Prints the epoch
time each way, the one-off cost of building the record and its size, and what a sweep saves: with E epochs over
the same data in R runs (variants x seeds), the teacher runs E x R times live and once stored.

    python bench/teacher_record.py [--examples 2048] [--batch-size 32] [--max-length 64] [--threads 2] \
        [--precision fp16|fp32] [--runs 20]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from distill_loop import tweets_and_teacher  # the same data and frozen teacher as the loop benchmark

from distill.checkpoint import Checkpointer, Progress
from distill.config import StageConfig, TrainConfig
from distill.lab.run import make_projections
from distill.layer_map import layer_map
from distill.losses import LossContext
from distill.objective import Objective
from distill.stage import Session, StageInputs
from distill.students.tinybert import TinyBertStudentConfig, build_tinybert
from distill.teachers.record_cache import TeacherRecord, build_record
from distill.trainer import DistillModule, train_stage

TEACHER = "packaged:all-minilm-l6-v2"
INTERMEDIATE = {"embedding_mse": 1.0, "attention_mse": 1.0, "hidden_mse": 1.0}


def epoch(teacher, student, task, ds, dev, batch_size: int, pairs) -> float:
    """Seconds for one intermediate epoch of the loop every run uses (W_h / W_e included)."""
    module = DistillModule(copy.deepcopy(student), make_projections("separate", student.config.hidden_size,
                                                                    teacher.config.hidden_size, True))
    stage = StageConfig(name="bench", losses=INTERMEDIATE, epochs=1, lr=1e-4, batch_size=batch_size, warmup=0.0,
                        select="last")
    cfg = TrainConfig(log_every=10**9, cpu=True, precision="no")
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        inputs = StageInputs(stage, Objective(INTERMEDIATE), LossContext(pairs), ds, dev, task, teacher, 0)
        train_stage(Session(Accelerator(cpu=True), cfg, Checkpointer(d)), module, inputs, Progress())
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--runs", type=int, default=20, help="runs of a sweep that read the same record")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    task, _, ds, dev, teacher = tweets_and_teacher(args.examples, args.batch_size, args.max_length)
    student = build_tinybert(TinyBertStudentConfig(kind="tinybert", preset="4l-312", init="scratch"), teacher, 0)
    pairs = layer_map("uniform", student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    n = len(ds)
    print(f"{n} tweets (max length {args.max_length}, {int(ds.lengths().sum())} tokens), batch {args.batch_size}, "
          f"{args.threads} threads; teacher 6L-384, student 4L-312, losses {sorted(INTERMEDIATE)}; one epoch each")
    epoch(teacher, student, task, ds, dev, args.batch_size, pairs)  # warm-up: allocator, kernel choice
    live = epoch(teacher, student, task, ds, dev, args.batch_size, pairs)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "record"
        start = time.perf_counter()
        build_record(teacher, ds, Accelerator(cpu=True), TrainConfig(cpu=True, precision="no", eval_batch_size=128),
                     folder, args.precision, progress=False)
        build = time.perf_counter() - start
        size = sum(f.stat().st_size for f in folder.iterdir())
        ds.teacher_record = {"teacher": TeacherRecord(folder)}
        stored = epoch(teacher, student, task, ds, dev, args.batch_size, pairs)
        ds.teacher_record = {}
    print("\n| intermediate epoch | seconds | examples/s |\n|---|---|---|")
    print(f"| teacher forward every step | {live:.1f} | {n / live:.1f} |")
    print(f"| stored record ({args.precision}) | {stored:.1f} | {n / stored:.1f} |")
    print(f"\nrecord: built once in {build:.1f} s, {size / 2 ** 20:.1f} MiB ({size / n / 1024:.1f} KiB an example)")
    print(f"epoch with the record / epoch with the teacher: {stored / live:.2f}x")
    r = args.runs
    print(f"a sweep of {r} runs x 1 epoch over these examples: {r * live / 60:.1f} min live, "
          f"{(build + r * stored) / 60:.1f} min stored ({(build + r * stored) / (r * live):.2f}x)")


if __name__ == "__main__":
    main()
