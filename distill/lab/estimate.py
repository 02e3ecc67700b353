"""Cost before work: how long a run will take, measured by timing a few real batches on this device.

The run's own code on a replica of the run: the teacher's and student's architectures (random weights: a step costs
the same whatever the weights), the stages' objectives, layer maps, projections, masking and precision, the
trainer's `train_step` and `evaluate`, on a sample of the stage's data (a few length-grouped batches, encoded into a
temporary folder). Per stage: seconds per training batch x batches, plus the per-epoch evaluation; then the
teacher's fine-tuning (when not cached), the teacher-logit caches and the final evaluation. Nothing is cached and
no run folder is made. The figures are estimates: the first real batches also pay for warm-up, data loading and
the checkpoint writes are not timed, and a busy machine runs slower."""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from distill.config import ExperimentConfig, StageConfig
from distill.encoded import EncodedDataset, build
from distill.io import cache_at
from distill.loaders import _subsample
from distill.losses import LossContext
from distill.objective import Objective
from distill.stage import StageInputs, stage_inputs
from distill.tasks import Example
from distill.timing import duration, timed
from distill.trainer import (
    DistillModule,
    evaluate,
    make_loader,
    make_optimizer,
    optimizer_steps,
    set_attentions,
    teacher_precision,
    train_step,
)

# Length-grouped batches timed per stage, after one untimed warm-up batch: they span the data's length spread.
BATCHES = 6


@dataclass
class Cost:
    what: str
    seconds: float
    detail: str


class Replica:
    """The run's models and data samples, built as the run builds them but with random weights."""

    def __init__(self, cfg: ExperimentConfig, plan, workflow, folder: Path):
        from distill.lab.preflight import teacher_config
        from distill.lab.run import make_accelerator, make_projections

        self.cfg, self.plan, self.task, self.folder = cfg, plan, workflow.task, folder
        self.acc = make_accelerator(cfg)
        tc = teacher_config(cfg, plan.tokenizer)
        tc._attn_implementation = "sdpa"
        if self.task is None:
            from transformers import BertForMaskedLM

            self.teacher = BertForMaskedLM(tc)
        else:
            from transformers import BertForSequenceClassification

            tc.num_labels = self.task.num_labels
            self.teacher = BertForSequenceClassification(tc)
        self.teacher.eval().requires_grad_(False)
        self.student = self._student()
        self.fp32_teacher = self.teacher  # as fine-tuning trains it
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.acc.mixed_precision)
        if half is not None and cfg.train.teacher_precision == "auto":  # as the run holds it once the student is built
            self.teacher = copy.deepcopy(self.teacher).to(half)
        self.teacher.to(self.acc.device)
        needs_proj = any(o.needs_hidden for o in plan.objectives)
        self.module = DistillModule(self.student, make_projections(cfg.train.projection, *plan.widths, needs_proj))
        self.module.to(self.acc.device)

    def _student(self):
        from students import build_student

        cfg, task = self.cfg, self.task
        texts = None if task is None else [t for ex in self._examples("train", 2000)
                                           for t in (ex.text_a, ex.text_b) if t is not None]
        return build_student(cfg.student, self.teacher, cfg.seed, texts, task is not None and task.is_pair,
                             masked_lm=task is None)

    def _examples(self, data: str, n: int) -> list[Example]:
        """A sample of the examples a stage reads; an augmented set not built yet is sampled by its sources (the
        copies have their sources' lengths)."""
        if data == "augmented":
            from itertools import islice

            from augment.runner import augmented_path, iter_augmented

            path = augmented_path(self.cfg, self.task)
            if path.exists():
                return list(islice(iter_augmented(path), n))
            data = "train"
        return _subsample(self.task.splits[data], n, 0)

    def dataset(self, data: str, n: int, name: str):
        """`n` examples (or packed sequences) of a stage's data, encoded into the replica's folder."""
        if data == "corpus":
            return self._corpus(n, name)
        folder = self.folder / name
        if not (folder / "meta.json").exists():
            build(folder, self._examples(data, n), self.plan.tokenizer, self.cfg.task.max_length,
                  self.task.is_regression, log=lambda *_: None)
        return EncodedDataset(folder)

    def _corpus(self, n: int, name: str):
        from distill.corpus import CorpusDataset, corpus_folder, pack_corpus

        c, tok = self.cfg.corpus, self.plan.tokenizer
        pad = tok.pad_token_id or 0
        split = "heldout" if name.startswith("dev") else "train"
        if (corpus_folder(c, tok) / "meta.json").exists():
            ds = CorpusDataset(corpus_folder(c, tok), split, c.heldout, pad)
        else:  # the first sequences packed as the run packs them, into the replica's own cache
            with cache_at(self.folder / "cache"):
                ds = CorpusDataset(pack_corpus(replace(c, limit=4 * n), tok, lambda *_: None), split, c.heldout, pad)
        ds.rows = ds.rows[:n]
        return ds


def _per_batch(run_one, batches: list, device: torch.device) -> float:
    run_one(batches[0])  # warm-up: the first call pays for allocation and kernel selection
    return timed(lambda: [run_one(b) for b in batches], device) / len(batches)


def time_training(r: Replica, module: DistillModule, stage: StageInputs) -> float:
    """Seconds per training batch of `stage` (teacher targets, loss, backward, update)."""
    acc, st = r.acc, stage.config
    set_attentions(module, stage.teachers, stage.objective)
    loader, _ = make_loader(stage.data, st.batch_size, stage.seed, True, r.cfg.train, stage.mlm)
    optimizer = make_optimizer(module, st)
    model, optimizer, loader = acc.prepare(module, optimizer, loader)
    clip = module.clip_parameters()
    cached = {name: t.to(acc.device) for name, t in stage.data.teacher_logits.items()}
    batches = list(loader)
    return _per_batch(lambda b: train_step(acc, model, optimizer, clip, b, stage, cached, r.cfg.train), batches,
                      acc.device)


def time_evaluation(r: Replica, module: DistillModule, stage: StageInputs, objective: bool = True) -> float:
    """Seconds per evaluation batch: the per-epoch dev pass (with the objective's held-out terms), or the final
    evaluation's student forward (`objective=False`)."""
    acc = r.acc
    loader, _ = make_loader(stage.dev, r.cfg.train.eval_batch_size, stage.seed, False, r.cfg.train, stage.mlm)
    loader = acc.prepare(loader)
    n = len(loader)
    args = (stage.teachers, stage.objective, stage.ctx, stage.dev.teacher_logits) if objective else ()
    evaluate(acc, module, loader, stage.task, *args)  # warm-up
    return timed(lambda: evaluate(acc, module, loader, stage.task, *args), acc.device) / n


def time_teacher_forward(r: Replica, ds) -> float:
    """Seconds per evaluation batch of the teacher's logits (its cache, its evaluation)."""
    from distill.adaptor import set_attention

    set_attention(r.teacher, False)
    loader, _ = make_loader(ds, r.cfg.train.eval_batch_size, 0, False, r.cfg.train)
    batches = list(r.acc.prepare(loader))

    def forward(b):
        with torch.inference_mode(), teacher_precision(r.acc, r.cfg.train):
            r.teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])

    return _per_batch(forward, batches, r.acc.device)


def stage_costs(r: Replica, sizes: dict) -> list[Cost]:
    cfg, costs = r.cfg, []
    eval_bs = cfg.train.eval_batch_size
    if r.task is not None:
        dev_n = len(r.task.splits["dev"])
    else:  # held-out sequences: every round(1 / heldout)-th packed one
        dev_n = round((sizes["corpus"].examples or 0) * cfg.corpus.heldout / max(1e-9, 1 - cfg.corpus.heldout))
    for i, (st, objective) in enumerate(zip(cfg.stages, r.plan.objectives, strict=True)):
        data = r.dataset(st.data, st.batch_size * BATCHES, f"stage{i}")
        dev = r.dataset("dev" if r.task is not None else "corpus", eval_bs * 2, f"dev{i}")
        # Every teacher as the replica's one: several teachers cost one forward (or cached logits) each.
        teachers = dict.fromkeys(objective.teachers, r.teacher)
        stage = stage_inputs(st, objective, {st.data: data, "dev": dev}, r.task, teachers, cfg.seed, r.plan.depths,
                             r.plan.tokenizer)
        cached = [name for name, needs in objective.teacher_needs().items() if not needs]
        if r.task is not None and cached:
            from teachers.logits import compute_logits  # the run's teacher-output cache

            for ds in (data, dev):
                logits = compute_logits(r.teacher, ds, r.acc, cfg.train)
                ds.teacher_logits = dict.fromkeys(cached, logits)
        per_batch = time_training(r, r.module, stage)
        per_eval = time_evaluation(r, r.module, stage)
        examples = sizes[st.data].examples
        if examples is None:
            costs.append(Cost(f"stage {i + 1} {st.name}", math.nan, f"{per_batch:.3f} s per batch of {st.batch_size}"
                              "; the data's size is unknown until it is built"))
            continue
        batches = math.ceil(examples / st.batch_size)
        dev_batches = math.ceil(dev_n / eval_bs)
        seconds = st.epochs * (batches * per_batch + dev_batches * per_eval)
        mark = sizes[st.data].examples_mark
        costs.append(Cost(f"stage {i + 1} {st.name}", seconds,
                          f"{st.epochs} x ({mark}{batches:,} batches x {per_batch:.3f} s + {dev_batches:,} dev batches "
                          f"x {per_eval:.3f} s); {optimizer_steps(batches, st.grad_accum) * st.epochs:,} optimizer "
                          "steps"))
    return costs


def finetune_costs(r: Replica) -> list[Cost]:
    """Each teacher's fine-tuning, when its cache does not hold it yet (timed on the replica's teacher: several
    teachers of one architecture cost the same per batch)."""
    if r.task is None:
        return []
    return [c for t in r.cfg.teachers if (c := finetune_cost(r, t)) is not None]


def finetune_cost(r: Replica, t) -> Cost | None:
    """The teacher `t`'s fine-tuning, when its cache does not hold it yet."""
    cfg, task = r.cfg, r.task
    ft = t.finetune
    if ft is None:
        return None
    from distill.io import cache_root
    from teachers.finetune import full_train_split, teacher_key

    train = full_train_split(cfg, t) or task.splits["train"]
    if (cache_root() / "teachers" / teacher_key(cfg, task, train, t) / "teacher.json").exists():
        return None
    loss = {"hard_mse": 1.0} if task.is_regression else {"hard_ce": 1.0}
    st = StageConfig(name="teacher", losses=loss, epochs=ft.epochs, lr=ft.lr, batch_size=ft.batch_size)
    data = r.dataset("train", ft.batch_size * BATCHES, "teacher-train")
    dev = r.dataset("dev", cfg.train.eval_batch_size * 2, "teacher-dev")
    module = DistillModule(copy.deepcopy(r.fp32_teacher).train().requires_grad_(True)).to(r.acc.device)
    stage = StageInputs(st, Objective(loss), LossContext([], task.is_regression), data, dev, task, None, ft.seed)
    per_batch = time_training(r, module, stage)
    per_eval = time_evaluation(r, module, stage, objective=False)
    batches = math.ceil(len(train) / ft.batch_size)
    dev_batches = math.ceil(len(task.splits["dev"]) / cfg.train.eval_batch_size)
    name = "teacher fine-tuning" + (f" ({t.name})" if len(cfg.teachers) > 1 else "")
    return Cost(name, ft.epochs * (batches * per_batch + dev_batches * per_eval),
                f"{ft.epochs} x ({batches:,} batches x {per_batch:.3f} s + {dev_batches:,} dev batches x "
                f"{per_eval:.3f} s); not cached yet")


def evaluation_cost(r: Replica, sizes: dict) -> Cost | None:
    """The final evaluation (student on every evaluation split) and the teacher's logits over the evaluation splits
    and the logit-only stages' data (computed once per teacher and data: free on a second run)."""
    if r.task is None:
        return None
    from distill.tasks import EVAL_SPLITS

    cfg = r.cfg
    eval_bs = cfg.train.eval_batch_size
    dev = r.dataset("dev", eval_bs * 2, "final-dev")
    objective = r.plan.objectives[-1]
    stage = stage_inputs(cfg.stages[-1], objective, {cfg.stages[-1].data: dev, "dev": dev}, r.task,
                         dict.fromkeys(objective.teachers, r.teacher), cfg.seed, r.plan.depths, r.plan.tokenizer)
    student = time_evaluation(r, r.module, stage, objective=False)
    teacher = time_teacher_forward(r, dev)
    eval_batches = sum(math.ceil(len(r.task.splits[s]) / eval_bs) for s in EVAL_SPLITS if s in r.task.splits)
    # (data, teacher) pairs whose logits are cached; every teacher's over the evaluation splits.
    cached_data = {(st.data, name) for st, o in zip(cfg.stages, r.plan.objectives, strict=True)
                   for name, needs in o.teacher_needs().items() if not needs}
    logit_batches = (eval_batches * len(cfg.teachers)
                     + sum(math.ceil((sizes[d].examples or 0) / eval_bs) for d, _ in cached_data))
    return Cost("evaluation and teacher logits", eval_batches * student + logit_batches * teacher,
                f"{eval_batches:,} batches x {student:.3f} s (student) + {logit_batches:,} x {teacher:.3f} s "
                "(teacher logits, once per teacher and data)")


def augmentation_cost(cfg: ExperimentConfig, task) -> tuple[Cost | None, list[str]]:
    """The augmentation's exact work and estimated time (`augment.cost`, by timing a few of its real forwards or
    taggings) when a stage needs an augmented set that is not built yet."""
    if task is None or not any(st.data == "augmented" for st in cfg.stages):
        return None, []
    from augment.cost import augmentation_cost as count
    from augment.cost import cost_lines
    from augment.runner import augmented_path, make_augmenter
    from distill.resources import adapted_encoder, adapted_folder

    if augmented_path(cfg, task).exists():
        return None, []
    a = cfg.augment
    encoder = adapted_encoder(a.tinybert.masked_lm) if a.method == "tinybert" else None
    if encoder is not None and not (adapted_folder(encoder) / "adaptation.json").exists():
        return (Cost("augmentation", math.nan, f"its masked LM {a.tinybert.masked_lm} is built first"),
                [f"  augmentation: not timed: its masked LM {a.tinybert.masked_lm} is not built yet (the run builds "
                 "it first, once)"])
    examples = task.splits["train"]
    # Tang's augmenter unfitted: fitting is tagging the whole training set, the work being estimated.
    cost = count(a, examples, make_augmenter(cfg, [] if a.method == "tang" else examples, lambda *_: None))
    return Cost("augmentation", cost.seconds, "above"), ["  " + line for line in cost_lines(cost)]


@dataclass
class Estimate:
    costs: list[Cost]  # teacher fine-tuning, stages, evaluation, and the augmentation (when not built)
    augmentation_lines: list[str]  # the augmentation's exact work and how its time was measured
    where: str  # device, threads and precision the batches were timed with

    @property
    def total(self) -> float:
        return sum(c.seconds for c in self.costs)

    def lines(self) -> list[str]:
        lines = [f"estimate: timed {BATCHES} batches per stage on {self.where}", *self.augmentation_lines]
        lines += [f"  {c.what}: ~{duration(c.seconds)} ({c.detail})" for c in self.costs if c.what != "augmentation"]
        return lines + [f"  total: ~{duration(self.total)}"]


def estimate(cfg: ExperimentConfig, plan, workflow, sizes: dict) -> Estimate:
    """Each part's estimated wall time, how it was measured, and the total (`duration` prints NaN as unknown)."""
    augmentation, augment_lines = augmentation_cost(cfg, workflow.task)
    with tempfile.TemporaryDirectory(prefix="distill-estimate-") as tmp:
        r = Replica(cfg, plan, workflow, Path(tmp))
        threads = f", {torch.get_num_threads()} threads" if r.acc.device.type == "cpu" else ""
        costs = [c for c in (augmentation, *finetune_costs(r), *stage_costs(r, sizes), evaluation_cost(r, sizes))
                 if c is not None]
    return Estimate(costs, augment_lines, f"{r.acc.device.type}{threads}, precision {r.acc.mixed_precision}")
