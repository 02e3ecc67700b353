"""What a stage will cost, measured by timing a few of its real batches: one code path for `distill check`'s
estimate (on a random-weight replica of the run) and for the notice a run prints before it fine-tunes a teacher (on
the teacher itself), so that the two say the same thing about the same work.

Each stage is timed on the same sample of its data, BATCHES length-grouped batches after one untimed warm-up, with
the trainer's own `train_step` and `evaluate`, on a copy of the model (the timed updates never touch the real one)
and with the random state restored. The figure's stated uncertainty is the timed batches' spread (twice the standard
error of their mean, relative); a busy machine is slower than any timing made before it got busy."""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.config import StageConfig, TrainConfig
from distill.encoded import EncodedDataset, build, build_qa
from distill.losses import LossContext
from distill.objective import Objective
from distill.stage import StageInputs
from distill.tasks import Example
from distill.timing import duration, timed
from distill.trainer import (
    DistillModule,
    evaluate,
    make_loader,
    make_optimizer,
    set_attentions,
    train_step,
)

# Length-grouped batches timed per stage, after one untimed warm-up batch: they span the data's length spread.
BATCHES = 6


@dataclass
class Cost:
    what: str
    seconds: float
    detail: str
    spread: float = 0.0  # relative uncertainty of `seconds` from the timed batches (0.1: +-10%)

    def text(self) -> str:
        within = f" (+-{100 * self.spread:.0f}%)" if self.spread and math.isfinite(self.seconds) else ""
        return f"~{duration(self.seconds)}{within}"


@dataclass
class PerBatch:
    mean: float
    sem: float  # the standard error of the mean

    @property
    def spread(self) -> float:
        """Twice the standard error, relative to the mean."""
        return 2 * self.sem / self.mean if self.mean > 0 else 0.0


def combined_spread(parts: list[tuple[float, PerBatch]]) -> float:
    """The relative uncertainty (2 standard errors) of sum(count x per-batch mean) over (count, timing) parts."""
    total = sum(n * t.mean for n, t in parts)
    return 2 * math.sqrt(sum((n * t.sem) ** 2 for n, t in parts)) / total if total > 0 else 0.0


def per_batch(run_one, batches: list, device: torch.device) -> PerBatch:
    """Seconds per batch of `run_one` over `batches`, each timed on its own, after one warm-up call (allocation and
    kernel selection)."""
    run_one(batches[0])
    times = [timed(lambda b=b: run_one(b), device) for b in batches]
    mean = sum(times) / len(times)
    return PerBatch(mean, statistics.stdev(times) / math.sqrt(len(times)) if len(times) > 1 else 0.0)


def time_training(acc, module: DistillModule, stage: StageInputs, cfg: TrainConfig) -> PerBatch:
    """Seconds per training batch of `stage` (teacher targets, loss, backward, update), on a copy of `module`."""
    st = stage.config
    module = copy.deepcopy(module).to(acc.device).train()
    set_attentions(module, stage.teachers, stage.objective)
    loader, _ = make_loader(stage.data, st.batch_size, stage.seed, True, cfg, stage.mlm)
    optimizer = make_optimizer(module, st)
    clip = module.clip_parameters()
    cached = {name: t.to(acc.device) for name, t in stage.data.teacher_logits.items()}
    batches = [{k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in b.items()} for b in loader]

    def step(b):
        with acc.autocast():
            train_step(acc, module, optimizer, clip, b, stage, cached, cfg)

    with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
        return per_batch(step, batches, acc.device)


def time_evaluation(acc, module: DistillModule, stage: StageInputs, cfg: TrainConfig,
                    objective: bool = True) -> PerBatch:
    """Seconds per evaluation batch: the per-epoch dev pass (with the objective's held-out terms), or the final
    evaluation's student forward (`objective=False`)."""
    loader, _ = make_loader(stage.dev, cfg.eval_batch_size, stage.seed, False, cfg, stage.mlm)
    batches = list(loader)
    args = (stage.teachers, stage.objective, stage.ctx, stage.dev.teacher_logits) if objective else ()
    if objective:
        set_attentions(module, stage.teachers, stage.objective)
    with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
        return per_batch(lambda b: evaluate(acc, module, [b], stage.task, *args), batches, acc.device)


def sample(examples: list[Example], n: int, tokenizer, max_length: int, regression: bool, folder: Path,
           name: str, windows: tuple[int, int] | None = None) -> EncodedDataset:
    """The first-run sample a stage is timed on: `n` of `examples` (seeded, as `task.*_limit` subsamples), encoded
    into `folder` (never the cache); extractive QA's questions as windows (`windows`: doc stride, query length)."""
    from distill.loaders import _subsample

    out = Path(folder) / name
    chosen = _subsample(examples, n, 0)
    if not (out / "meta.json").exists():
        if windows is not None:
            build_qa(out, chosen, tokenizer, max_length, windows, log=lambda *_: None)
        else:
            build(out, chosen, tokenizer, max_length, regression, log=lambda *_: None, progress=False)
    return EncodedDataset(out, lambda: iter(chosen))


def finetune_cost(acc, module: DistillModule, task, train: list[Example], epochs: float, stage: StageConfig,
                  tokenizer, max_length: int, cfg: TrainConfig, what: str = "teacher fine-tuning") -> Cost:
    """The teacher's fine-tuning: `epochs` over `train` (the teacher's examples) with a dev pass per epoch, timed
    on `module` (the teacher, or a replica of its shape)."""
    loss = {"hard_mse": 1.0} if task.is_regression else {"hard_ce": 1.0}
    with tempfile.TemporaryDirectory(prefix="distill-timing-") as tmp:
        windows = task.qa and task.qa.windows
        data = sample(train, stage.batch_size * BATCHES, tokenizer, max_length, task.is_regression, Path(tmp),
                      "train", windows)
        dev = sample(task.splits["dev"], cfg.eval_batch_size * 2, tokenizer, max_length, task.is_regression,
                     Path(tmp), "dev", windows)
        inputs = StageInputs(stage, Objective(loss), LossContext([], task.is_regression), data, dev, task, None, 0)
        train_t = time_training(acc, module, inputs, cfg)
        eval_t = time_evaluation(acc, module, inputs, cfg, objective=False)
    batches = math.ceil(len(train) / stage.batch_size)
    dev_batches = math.ceil(len(task.splits["dev"]) / cfg.eval_batch_size)
    seconds = epochs * (batches * train_t.mean + dev_batches * eval_t.mean)
    return Cost(what, seconds, f"{epochs:g} x ({batches:,} batches x {train_t.mean:.3f} s + {dev_batches:,} dev "
                f"batches x {eval_t.mean:.3f} s)", combined_spread([(batches, train_t), (dev_batches, eval_t)]))
