"""Benchmark: our distillation loop against TextBrewer's (PyPI `textbrewer`), and against its cost floor.

Same teacher (the packaged MiniLM-L6), same student (3 layers of the teacher's width, initialised from teacher
layers 2, 4, 6), same intermediate losses (embedding + hidden MSE on the uniform map, attention MSE), same data
(packaged tweets) and batch size, one epoch each, measured in one run:

- ours, length-grouped batches (the default) and ours with random batches (dynamic padding);
- TextBrewer's GeneralDistiller on the same random batches (the loops compared at equal padding), and on
  batches padded statically to --max-length, as its examples and the TinyBERT reference do;
- the overhead ratio: our distillation epoch against a plain fine-tuning epoch of the student plus the teacher's
  inference (with hidden states and attention) on the same batches (target <= 1.2x);
- the teacher-logit cache on and off for a prediction-layer stage.

On --device cuda every loop runs on the GPU in float32 (TextBrewer's half precision needs apex), from the same
CPU batches, each timed to a `torch.cuda.synchronize()`, after one untimed warm-up epoch on a few batches (CUDA
context, cuBLAS handles and kernel selection would otherwise be charged to whichever loop runs first).

    pip install --no-deps textbrewer   # (it imports with the current torch; not a project dependency)
    python bench/distill_loop.py [--examples 1024] [--batch-size 32] [--max-length 128] [--threads 2] \
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import tempfile
import time

import torch
import transformers
from accelerate import Accelerator
from torch import nn

from distill.adaptor import forward_record, set_attention
from distill.batching import LengthGroupedBatches, PadCollator
from distill.checkpoint import Checkpointer, Progress
from distill.config import StageConfig, TaskConfig, TrainConfig
from distill.encoded import EncodedDataset, encode_examples
from distill.layer_map import layer_map
from distill.loaders import load_task
from distill.losses import LossContext
from distill.objective import Objective
from distill.stage import Session, StageInputs
from distill.students.tinybert import TinyBertStudentConfig, build_tinybert
from distill.teachers.load import load_classifier, load_tokenizer
from distill.teachers.logits import compute_logits
from distill.trainer import DistillModule, train_stage

TEACHER = "packaged:all-minilm-l6-v2"
INTERMEDIATE = {"embedding_mse": 1.0, "attention_mse": 1.0, "hidden_mse": 1.0}


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a clock read afterwards counts it (kernels launch asynchronously)."""
    if device != "cpu":
        torch.cuda.synchronize()


def ours(teacher, student, task, ds, dev, losses, batch_size, grouped, pairs, device: str = "cpu") -> float:
    """Seconds for one epoch of our loop (the same train_stage every run uses)."""
    module = DistillModule(copy.deepcopy(student))
    stage = StageConfig(name="bench", losses=losses, epochs=1, lr=5e-5, batch_size=batch_size, warmup=0.0,
                        select="last")
    # precision "no": float32 like TextBrewer's loop, so the comparison is of loops, not of number formats.
    cfg = TrainConfig(length_grouped=grouped, log_every=10**9, cpu=device == "cpu", precision="no")
    with tempfile.TemporaryDirectory() as d:
        synchronize(device)
        start = time.perf_counter()
        inputs = StageInputs(stage, Objective(losses), LossContext(pairs), ds, dev, task, teacher, 0)
        train_stage(Session(Accelerator(cpu=device == "cpu"), cfg, Checkpointer(d)), module, inputs, Progress())
        synchronize(device)
        return time.perf_counter() - start


def random_batches(ds: EncodedDataset, batch_size: int, static_len: int | None) -> list[dict]:
    """The epoch's batches in a fixed random order; optionally padded to `static_len` like the reference."""
    order = list(LengthGroupedBatches(ds.lengths(), batch_size, 0, grouped=False, shuffle=True))
    collate = PadCollator(ds.pad_id)
    out = []
    for idx in order:
        b = collate([ds[i] for i in idx])
        if static_len is not None:
            pad = static_len - b["input_ids"].shape[1]
            for k in ("input_ids", "token_type_ids", "attention_mask"):
                b[k] = nn.functional.pad(b[k], (0, pad), value=ds.pad_id if k == "input_ids" else 0)
        out.append(b)
    return out


def textbrewer_epoch(teacher, student, batches: list[dict], pairs, device: str = "cpu") -> float:
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    t, s = copy.deepcopy(teacher), copy.deepcopy(student)
    for m in (t, s):
        m.set_attn_implementation("eager")  # TextBrewer reads `outputs.attentions`, which sdpa does not return
        m.to(device)  # TextBrewer moves each batch to TrainingConfig.device, never the models
    matches = [{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1}]
    matches += [{"layer_T": tl, "layer_S": sl, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
                for sl, tl in pairs]
    matches += [{"layer_T": tl - 1, "layer_S": sl - 1, "feature": "attention", "loss": "attention_mse", "weight": 1}
                for sl, tl in pairs]

    def adaptor(batch, outputs):
        return {"logits": outputs.logits, "hidden": outputs.hidden_states, "attention": outputs.attentions,
                "inputs_mask": batch["attention_mask"]}

    def post(batch):
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "token_type_ids": batch["token_type_ids"], "output_hidden_states": True, "output_attentions": True}

    with tempfile.TemporaryDirectory() as d:
        distiller = GeneralDistiller(
            TrainingConfig(device=device, output_dir=d, log_dir=None, ckpt_frequency=1),
            DistillationConfig(temperature=1, hard_label_weight=0, kd_loss_weight=0, intermediate_matches=matches),
            t, s, adaptor, adaptor)
        optimizer = torch.optim.AdamW(s.parameters(), lr=5e-5)
        synchronize(device)
        start = time.perf_counter()
        distiller.train(optimizer, batches, num_epochs=1, batch_postprocessor=post)
        synchronize(device)
        return time.perf_counter() - start


def teacher_inference(teacher, batches: list[dict], device: str = "cpu") -> float:
    needs = Objective(INTERMEDIATE).needs  # what the intermediate stage's teacher gives
    set_attention(teacher, needs)
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            # The copy to the device is timed, as it is inside both training loops.
            forward_record(teacher, {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()},
                           needs)
    synchronize(device)
    return time.perf_counter() - start


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise SystemExit(f"--device cuda: no CUDA device here (torch {torch.__version__}, {built})")


def warm_up(teacher, student, task, few: EncodedDataset, dev, batch_size: int, pairs, device: str) -> None:
    """One untimed epoch of each loop on `few` (a few batches), so no timed loop pays for CUDA's first calls."""
    ours(teacher, student, task, few, dev, INTERMEDIATE, batch_size, False, pairs, device)
    with contextlib.suppress(ImportError):  # reported where TextBrewer is timed
        textbrewer_epoch(teacher, student, random_batches(few, batch_size, None), pairs, device)


def tweets_and_teacher(examples: int, dev_examples: int, max_length: int):
    """The packaged tweets (`examples` training, `dev_examples` dev), encoded for the packaged MiniLM-L6, and that
    teacher frozen in eval mode; the global seed set to 0 for the student built next."""
    task = load_task(TaskConfig(train_limit=examples, dev_limit=dev_examples))
    tok = load_tokenizer(TEACHER)
    ds = encode_examples(task.splits["train"], tok, max_length, False)
    dev = encode_examples(task.splits["dev"], tok, max_length, False)
    teacher = load_classifier(TEACHER, task.labels).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    return task, tok, ds, dev, teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where both loops run (cuda: the first GPU, float32 for both)")
    args = ap.parse_args()
    check_device(args.device)
    device = args.device
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    task, tok, ds, dev, teacher = tweets_and_teacher(args.examples, args.batch_size, args.max_length)
    student = build_tinybert(TinyBertStudentConfig(kind="tinybert", layers=3, init="teacher"), teacher, 0)
    teacher.to(device)  # after the student copied its layers; our loop moves only the student (accelerate)
    pairs = layer_map("uniform", 3, teacher.config.num_hidden_layers)
    n = len(ds)
    rows = []

    def row(name, seconds, note=""):
        rows.append((name, n / seconds, note))
        print(f"  {name}: {n / seconds:.1f} examples/s {note}", flush=True)

    where = f"{args.threads} threads" if device == "cpu" else f"{torch.cuda.get_device_name()} (float32)"
    print(f"{n} tweets, batch {args.batch_size}, {where}, teacher 6L-384, student 3L-384, "
          f"losses {sorted(INTERMEDIATE)}; one epoch each")
    if device != "cpu":
        few = encode_examples(task.splits["train"][:4 * args.batch_size], tok, args.max_length, False)
        warm_up(teacher, student, task, few, dev, args.batch_size, pairs, device)
    row("ours, length-grouped",
        ours(teacher, student, task, ds, dev, INTERMEDIATE, args.batch_size, True, pairs, device))
    t_ours_random = ours(teacher, student, task, ds, dev, INTERMEDIATE, args.batch_size, False, pairs, device)
    row("ours, random batches", t_ours_random)
    dynamic = random_batches(ds, args.batch_size, None)
    static = random_batches(ds, args.batch_size, args.max_length)
    tb_error = None
    try:
        row("TextBrewer, same random batches", textbrewer_epoch(teacher, student, dynamic, pairs, device))
        row(f"TextBrewer, static padding to {args.max_length}",
            textbrewer_epoch(teacher, student, static, pairs, device))
    except ImportError as e:
        tb_error = f"TextBrewer not installed ({e}); `pip install --no-deps textbrewer`"
        print("  " + tb_error)

    t_finetune = ours(None, student, task, ds, dev, {"hard_ce": 1.0}, args.batch_size, False, [], device)
    t_teacher = teacher_inference(teacher, dynamic, device)
    row("student fine-tuning alone (hard CE)", t_finetune)
    row("teacher inference alone (hidden + attention)", t_teacher)

    soft = {"soft_cross_entropy": {"weight": 1.0, "temperature": 1.0}}
    t_soft = ours(teacher, student, task, ds, dev, soft, args.batch_size, False, [], device)
    start = time.perf_counter()
    cpu = device == "cpu"
    logits = compute_logits(teacher, ds, Accelerator(cpu=cpu), TrainConfig(cpu=cpu, precision="no"))
    ds.teacher_logits = {"teacher": logits}
    t_fill = time.perf_counter() - start
    t_cached = ours(teacher, student, task, ds, dev, soft, args.batch_size, False, [], device)
    ds.teacher_logits = {}
    row("prediction stage, teacher forward every step", t_soft)
    row("prediction stage, teacher-logit cache", t_cached, f"(filling the cache once: {t_fill:.1f} s)")

    speed = {name: v for name, v, _ in rows}
    print("\n| measurement | examples/s |\n|---|---|")
    for name, v, note in rows:
        print(f"| {name} {note} | {v:.1f} |")
    print()
    if tb_error is None:
        print(f"ours (length-grouped) / TextBrewer (static padding, as its examples): "
              f"{speed['ours, length-grouped'] / speed[f'TextBrewer, static padding to {args.max_length}']:.2f}x")
        print(f"ours / TextBrewer, both on the same random batches (loop against loop): "
              f"{speed['ours, random batches'] / speed['TextBrewer, same random batches']:.2f}x")
    else:
        print(tb_error)
    print(f"length grouping on / off: {speed['ours, length-grouped'] / speed['ours, random batches']:.2f}x")
    floor = t_finetune + t_teacher
    print(f"overhead: distillation epoch {t_ours_random:.1f} s / (student fine-tuning {t_finetune:.1f} s + teacher "
          f"inference {t_teacher:.1f} s) = {t_ours_random / floor:.2f}x (target <= 1.2x)")
    print(f"teacher-logit cache on / off (prediction stage): {t_soft / t_cached:.2f}x per epoch")


if __name__ == "__main__":
    main()
