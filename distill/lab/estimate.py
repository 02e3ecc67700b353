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
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from distill.config import ExperimentConfig
from distill.io import cache_at
from distill.loaders import _subsample
from distill.stage import stage_inputs
from distill.stage_timing import BATCHES, Cost, combined_spread, per_batch, sample, time_evaluation, time_training
from distill.tasks import Example
from distill.teachers.record_cache import RECORDED, TeacherRecord, build_record
from distill.timing import duration
from distill.trainer import evaluation_steps, make_loader, optimizer_steps, teacher_precision


class Replica:
    """The run's models and data samples, built as the run builds them but with random weights."""

    def __init__(self, cfg: ExperimentConfig, plan, workflow, folder: Path):
        from distill.lab.preflight import teacher_config
        from distill.lab.run import distill_module, make_accelerator, teacher_dtype

        self.cfg, self.plan, self.task, self.folder = cfg, plan, workflow.task, folder
        # The stages' data read from a stored teacher record, and the record's build time per example.
        self.recorded_data: set[str] = set()
        self.record_seconds_per_example = 0.0
        self.acc = make_accelerator(cfg)
        tc = teacher_config(cfg, plan.tokenizer)
        tc._attn_implementation = "sdpa"
        if self.task is None:
            from transformers import BertForMaskedLM

            self.teacher = BertForMaskedLM(tc)
        else:
            from distill.task_types import head_class

            tc.num_labels = self.task.num_labels
            self.teacher = head_class("Bert", self.task.type)(tc)
        self.teacher.eval().requires_grad_(False)
        self.student = self._student()
        self.fp32_teacher = self.teacher  # as fine-tuning trains it
        half = teacher_dtype(cfg, self.acc)
        if half is not None:  # as the run holds it once the student is built; fine-tuning times the fp32 one
            self.teacher = copy.deepcopy(self.teacher).to(half)
        self.teacher.to(self.acc.device)
        self.module = distill_module(cfg, plan, self.student)
        self.module.to(self.acc.device)

    def _student(self):
        cfg, task = self.cfg, self.task
        texts = None if task is None else [t for ex in self._examples("train", 2000)
                                           for t in (ex.text_a, ex.text_b) if t is not None]
        return self.plan.student.build(cfg.student, self.teacher, cfg.seed, texts, task is not None and task.is_pair,
                                       masked_lm=task is None)

    def _examples(self, data: str, n: int) -> list[Example]:
        """A sample of the examples a stage reads; an augmented set not built yet is sampled by its sources (the
        copies have their sources' lengths)."""
        if data == "augmented":
            from itertools import islice

            from distill.augment.runner import augmented_path, iter_augmented

            path = augmented_path(self.cfg, self.task)
            if path.exists():
                return list(islice(iter_augmented(path), n))
            data = "train"
        return _subsample(self.task.splits[data], n, 0)

    def dataset(self, data: str, n: int, name: str):
        """`n` examples (or packed sequences) of a stage's data, encoded into the replica's folder."""
        if data == "corpus":
            return self._corpus(n, name)
        if data == "augmented":
            return sample(self._examples(data, n), n, self.plan.tokenizer, self.cfg.task.max_length,
                          self.task.is_regression, self.folder, name)
        return sample(self.task.splits[data], n, self.plan.tokenizer, self.cfg.task.max_length,
                      self.task.is_regression, self.folder, name, self.task.qa and self.task.qa.windows)

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


def time_teacher_forward(r: Replica, ds) -> float:
    """Seconds per evaluation batch of the teacher's logits (its cache, its evaluation)."""
    from distill.adaptor import set_attention
    from distill.needs import LOGITS_ONLY

    set_attention(r.teacher, LOGITS_ONLY)
    loader, _ = make_loader(ds, r.cfg.train.eval_batch_size, 0, False, r.cfg.train)
    batches = list(r.acc.prepare(loader))

    def forward(b):
        with torch.inference_mode(), teacher_precision(r.acc, r.cfg.train):
            r.teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])

    return per_batch(forward, batches, r.acc.device).mean


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
            from distill.teachers.logits import compute_logits  # the run's teacher-output cache

            for ds in (data, dev):
                logits = compute_logits(r.teacher, ds, r.acc, cfg.train, progress=False)  # builds nothing
                ds.teacher_logits = dict.fromkeys(cached, logits)
        recorded = [name for name, needs in objective.teacher_needs().items()
                    if needs and needs <= RECORDED and cfg.train.teacher_record != "off" and not st.mlm_masking]
        if r.task is not None and recorded:  # timed as the run trains: reading the stored record
            start = time.perf_counter()
            build_record(r.teacher, data, r.acc, cfg.train, r.folder / f"record{i}", cfg.train.teacher_record,
                         progress=False)
            r.record_seconds_per_example = (time.perf_counter() - start) / len(data)
            data.teacher_record = dict.fromkeys(recorded, TeacherRecord(r.folder / f"record{i}"))
            r.recorded_data.add(st.data)
        train_t = time_training(r.acc, r.module, stage, cfg.train)
        eval_t = time_evaluation(r.acc, r.module, stage, cfg.train)
        per_train, per_eval = train_t.mean, eval_t.mean
        examples = sizes[st.data].examples
        if examples is None:
            costs.append(Cost(f"stage {i + 1} {st.name}", math.nan, f"{per_train:.3f} s per batch of {st.batch_size}"
                              "; the data's size is unknown until it is built"))
            continue
        batches = math.ceil(examples / st.batch_size)
        dev_batches = math.ceil(dev_n / eval_bs)
        steps = optimizer_steps(batches, st.grad_accum)
        evals = len(evaluation_steps(steps, st.epochs, st.eval_every))
        seconds = st.epochs * batches * per_train + evals * dev_batches * per_eval
        mark = sizes[st.data].examples_mark
        costs.append(Cost(f"stage {i + 1} {st.name}", seconds,
                          f"{st.epochs} x {mark}{batches:,} batches x {per_train:.3f} s + {evals} x {dev_batches:,} "
                          f"dev batches x {per_eval:.3f} s; {steps * st.epochs:,} optimizer steps",
                          combined_spread([(st.epochs * batches, train_t), (evals * dev_batches, eval_t)])))
    return costs


def finetune_costs(r: Replica) -> list[Cost]:
    """Each teacher's fine-tuning, when its cache does not hold it yet (timed on the replica's teacher: several
    teachers of one architecture cost the same per batch)."""
    if r.task is None:
        return []
    return [c for t in r.cfg.teachers if (c := finetune_cost(r, t)) is not None]


def finetune_cost(r: Replica, t) -> Cost | None:
    """The teacher `t`'s fine-tuning, when its cache does not hold it yet: `distill.stage_timing.finetune_cost`, the
    code the run's own notice uses, on the replica's teacher."""
    cfg, task = r.cfg, r.task
    ft = t.finetune
    if ft is None:
        return None
    from distill.io import cache_root
    from distill.stage_timing import finetune_cost as timed_finetune
    from distill.teachers.finetune import finetune_stage, full_train_split, teacher_key
    from distill.trainer import DistillModule

    train = full_train_split(cfg, t) or task.splits["train"]
    if (cache_root() / "teachers" / teacher_key(cfg, task, train, t) / "teacher.json").exists():
        return None
    name = "teacher fine-tuning" + (f" ({t.name})" if len(cfg.teachers) > 1 else "")
    module = DistillModule(copy.deepcopy(r.fp32_teacher).train().requires_grad_(True)).to(r.acc.device)
    cost = timed_finetune(r.acc, module, task, train, ft.epochs, finetune_stage(cfg, task, t), r.plan.tokenizer,
                          cfg.task.max_length, cfg.train, name)
    cost.detail += "; not cached yet"
    return cost


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
    student = time_evaluation(r.acc, r.module, stage, cfg.train, objective=False).mean
    teacher = time_teacher_forward(r, dev)
    eval_batches = sum(math.ceil(len(r.task.splits[s]) / eval_bs) for s in EVAL_SPLITS if s in r.task.splits)
    # (data, teacher) pairs whose logits are cached; every teacher's over the evaluation splits.
    cached_data = {(st.data, name) for st, o in zip(cfg.stages, r.plan.objectives, strict=True)
                   for name, needs in o.teacher_needs().items() if not needs}
    logit_batches = (eval_batches * len(cfg.teachers)
                     + sum(math.ceil((sizes[d].examples or 0) / eval_bs) for d, _ in cached_data))
    record = sum(sizes[d].examples or 0 for d in r.recorded_data) * r.record_seconds_per_example
    return Cost("evaluation and teacher logits", eval_batches * student + logit_batches * teacher + record,
                f"{eval_batches:,} batches x {student:.3f} s (student) + {logit_batches:,} x {teacher:.3f} s "
                "(teacher logits, once per teacher and data)"
                + (f" + {record:.0f} s (teacher record over {', '.join(sorted(r.recorded_data))}, once per teacher "
                   "and data)" if record else ""))


def augmentation_cost(cfg: ExperimentConfig, task) -> tuple[Cost | None, list[str]]:
    """The augmentation's exact work and estimated time (`augment.cost`, by timing a few of its real forwards or
    taggings) when a stage needs an augmented set that is not built yet."""
    if task is None or not any(st.data == "augmented" for st in cfg.stages):
        return None, []
    from distill.augment.cost import augmentation_cost as count
    from distill.augment.cost import cost_lines
    from distill.augment.runner import augmented_path, make_augmenter
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
        lines += [f"  {c.what}: {c.text()} ({c.detail})" for c in self.costs if c.what != "augmentation"]
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
