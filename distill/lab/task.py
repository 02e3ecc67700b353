"""Task distillation: a fine-tuned teacher, a student for the task's labels, stages on the task's training
set or its augmented copies, judged by dev and test metrics.

Constructing a `TaskWorkflow` reads and checks the task data and the augmentation resources (before the run
folder exists); `build` tokenises, builds or reuses the augmented set, the fine-tuned teacher and the
teacher-logit caches, and the student; `finish` evaluates, writes the per-example predictions and summarises."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from distill import metrics as task_metrics
from distill.config import ExperimentConfig
from distill.encoded import EncodedDataset, encode_examples
from distill.io import write_json
from distill.lab.preflight import Plan
from distill.lab.records import RunMetrics, StudentFacts, TaskFacts, TeacherFacts, TeacherTaskFacts
from distill.lab.summary import summarise
from distill.labels import check_class_counts
from distill.loaders import load_task
from distill.model_stats import count_parameters
from distill.objective import ensemble_logits
from distill.predictions import FILE as PREDICTIONS_FILE
from distill.predictions import SplitPredictions, write_predictions
from distill.stage import Session, StageInputs
from distill.task_types import QA, TOKENS
from distill.tasks import EVAL_SPLITS, Example
from distill.teachers.finetune import full_train_split, prepare_teacher
from distill.teachers.gate import TeacherGateError, check_teacher, gate_line, gold_rows, majority_baseline
from distill.teachers.logits import cached_logits
from distill.teachers.record_cache import RECORDED, cached_record
from distill.trainer import evaluate_splits


def label_copies(ds: EncodedDataset, teacher_logits, originals: set[str], regression: bool) -> int:
    """Give every augmented copy in `ds` (an example whose id is not among the `originals`) the teacher's label;
    returns how many copies' labels changed (classification) or moved by more than 0.5 (regression)."""
    copies = torch.from_numpy(np.fromiter((i not in originals for i in ds.example_ids()), dtype=bool, count=len(ds)))
    new = teacher_logits.float().squeeze(-1) if regression else teacher_logits.argmax(-1)
    new = new.to(ds.labels.dtype)
    moved = (new - ds.labels).abs() > 0.5 if regression else new != ds.labels
    changed = int((moved & copies).sum())
    ds.labels = torch.where(copies, new, ds.labels)
    return changed


def gold_labels(examples: list[Example], regression: bool) -> np.ndarray | None:
    """The split's gold labels (float32 scores, int64 classes); None unless every example has one (GLUE's test
    split has none), as a partly labelled split would be scored on the labelled part only, silently."""
    if any(ex.label is None for ex in examples):
        return None
    if examples and isinstance(examples[0].label, tuple):  # token classification: every word's tag, in order
        return np.array([tag for ex in examples for tag in ex.label], dtype=np.int64)
    return np.array([ex.label for ex in examples], dtype=np.float32 if regression else np.int64)


def _texts(datasets: dict, splits) -> Iterator[str]:
    """The splits' texts, streamed (a student's vocabulary counts them; an augmented set is never held whole)."""
    for split in splits:
        if split in datasets:
            yield from datasets[split].texts()


# Extractive QA: each evaluated split's answer text per question id, as the official SQuAD scripts read predictions.
ANSWERS_FILE = "answers.json"


class TaskWorkflow:
    def __init__(self, cfg: ExperimentConfig, plan: Plan):
        self.cfg, self.plan = cfg, plan
        self.task = load_task(cfg.task)
        # Said before training (and by `distill check`) with the loader's other notes.
        self.task.notes += check_class_counts(self.task, cfg.task.allow_empty_classes)
        self.teacher_info: dict = {}  # the first teacher's
        self.teacher_infos: dict[str, dict] = {}  # every teacher's, by name
        self.ensemble_info: dict | None = None  # several teachers: their ensemble's metrics
        self.datasets: dict = {}
        self._logits_of = None  # set by `build`: the teacher's logits over a dataset, from the teacher-output cache
        if any(st.data == "augmented" for st in cfg.stages):
            from distill.augment.runner import augmented_path, check_sources

            if not augmented_path(cfg, self.task).exists():
                check_sources(cfg.augment)

    def build(self, accelerator, say, writer=None):
        """(teacher, student, datasets by split name). `writer`: TensorBoard's, for the teachers' fine-tuning
        curves."""
        cfg, task, tokenizer = self.cfg, self.task, self.plan.tokenizer
        # Encoded once into the cache by the main process; the others then map the same files.
        with accelerator.main_process_first():
            datasets = {split: encode_examples(exs, tokenizer, cfg.task.max_length, task.is_regression, say,
                                               f"the {split} split", task.qa and task.qa.windows)
                        for split, exs in task.splits.items()}
        if any(st.data == "augmented" for st in cfg.stages):
            from distill.augment.runner import build_in_processes, encode_augmented

            path = build_in_processes(cfg, task, accelerator, say)
            with accelerator.main_process_first():
                datasets["augmented"] = encode_augmented(path, tokenizer, cfg.task.max_length, task.is_regression,
                                                         say)
            say(f"augmented training set: {len(datasets['augmented']):,} examples from {path}")
        self.datasets = datasets  # read by the gate and the teachers' scores before the student is built
        say(f"task {task.name}: " + ", ".join(f"{k} {len(v)}" for k, v in task.splits.items()))
        for note in task.notes:
            say(f"task: {note}")
        teachers = {}
        for t in cfg.teachers:
            teachers[t.name], self.teacher_infos[t.name] = prepare_teacher(
                cfg, task, tokenizer, datasets, accelerator, say, self._teacher_train(say, t), t, writer)
        self.teacher_info = self.teacher_infos[cfg.teacher.name]

        def logits_of(ds, name=None):
            """A teacher's logits over a split (default: the teachers' ensemble), computed once (teacher-output
            cache)."""
            for n in [name] if name else teachers:
                if n not in ds.teacher_logits:
                    ds.teacher_logits[n] = cached_logits(teachers[n], self.teacher_infos[n]["key"], ds, accelerator,
                                                         cfg.train, say)
            if name:
                return ds.teacher_logits[name]
            return ensemble_logits({n: ds.teacher_logits[n] for n in teachers}, self.plan.objectives[0].teacher_weights,
                                   task.is_regression)

        self._logits_of = logits_of
        if task.type == QA:
            return self._build_qa(accelerator, say, teachers, datasets)
        for t in cfg.teachers:
            if t.gate is not None:
                self._gate(t, logits_of(datasets["dev"], t.name), say)
        if len(teachers) > 1:
            self.ensemble_info = self._ensemble_metrics(logits_of, datasets)
        if "augmented" in datasets and cfg.augment.labels == "teacher" and task.type == TOKENS:
            say("augmented copies: a replaced word's tag is unknown (the teacher's soft targets train it, hard_ce "
                "ignores it); every other word keeps its gold tag (`augment.labels` applies to sentence tasks)")
        elif "augmented" in datasets and cfg.augment.labels == "teacher":
            changed = label_copies(datasets["augmented"], logits_of(datasets["augmented"]),
                                   {ex.id for ex in task.splits["train"]}, task.is_regression)
            self.teacher_info["augmented_labels"] = {"by": "teacher" if len(teachers) == 1 else "teachers' ensemble",
                                                     "changed": changed}
            say(f"augmented copies labelled by the teacher: {changed} differ from their source's label")
        return self._build_student(accelerator, say, teachers, datasets)

    def _build_qa(self, accelerator, say, teachers, datasets):
        """Extractive QA: the teacher's answers on every evaluation split (its gate, its predictions), and no
        teacher-output cache (a window's scores are as long as the window: the teacher runs with the student)."""
        cfg, task = self.cfg, self.task
        t = cfg.teacher
        self.teacher_qa = {}
        scores = evaluate_splits(accelerator, teachers[t.name], task, datasets, cfg.train, self.teacher_qa)
        self.teacher_info.update(scores)
        if t.gate is not None:
            main, dev = task.main_metric, scores["dev"][task.main_metric]
            baseline = majority_baseline(task, task.splits["train"], task.splits["dev"])
            self.teacher_info["gate"] = {"dev_" + main: dev, "majority_baseline": baseline, "margin": t.gate.margin}
            if not dev >= baseline + t.gate.margin:
                raise TeacherGateError(f"teacher {t.checkpoint!r} scores dev {main} {dev:.2f}, which does not beat "
                                       f"answering nothing ({baseline:.2f}) by the margin {t.gate.margin} "
                                       "(`teacher.gate.margin`). Is it fine-tuned on this task? Set "
                                       "`teacher.finetune`, or turn the check off with `teacher.gate: null`.")
            say(gate_line(t.name, main, self.teacher_info["gate"]))
        return self._build_student(accelerator, say, teachers, datasets)

    def _build_student(self, accelerator, say, teachers, datasets):
        cfg, task = self.cfg, self.task
        logits_of = self._logits_of
        set_seed(cfg.seed)
        student = self.plan.student.build(cfg.student, teachers[cfg.teacher.name], cfg.seed,
                                          _texts(datasets, ("train", "augmented")), task.is_pair,
                                          other_texts=_texts(datasets, EVAL_SPLITS))
        own = self.plan.student.own_inputs(student, cfg.task.max_length)
        if own is not None:
            with accelerator.main_process_first():
                for ds in datasets.values():
                    ds.attach_student(own.encode, own.key, own.size, say)
            say(own.note)
        for stage, objective in zip(cfg.stages, self.plan.objectives, strict=True):
            for name, needs in objective.teacher_needs().items():
                if task.type == QA:
                    continue
                if not needs:  # read as logits only: from the cache
                    logits_of(datasets[stage.data], name)
                    logits_of(datasets["dev"], name)
                elif cfg.train.teacher_record != "off" and needs <= RECORDED and not stage.mlm_masking:
                    ds = datasets[stage.data]
                    if name not in ds.teacher_record:
                        ds.teacher_record[name] = cached_record(teachers[name], self.teacher_infos[name]["key"], ds,
                                                                accelerator, cfg.train, say)
        self.datasets = datasets
        return teachers, student, datasets

    def _teacher_train(self, say, t) -> list[Example] | None:
        """The teacher's own training examples when they are not the student's (`finetune.train: full`)."""
        examples = full_train_split(self.cfg, t)
        if examples is not None:
            say(f"teacher {t.name}: trains on the full training split, {len(examples)} examples "
                f"(the student's is limited to {len(self.task.splits['train'])})")
        return examples

    def _gate(self, t, dev_logits, say) -> None:
        task = self.task
        gate = check_teacher(task, dev_logits.numpy(), task.splits["train"], task.splits["dev"], t.gate, t.checkpoint,
                             self._kept("dev"))
        self.teacher_infos[t.name]["gate"] = gate
        say(gate_line(t.name, task.main_metric, gate))

    def _ensemble_metrics(self, logits_of, datasets) -> dict:
        """The teachers' ensemble (what prediction losses learn from) scored on every labelled evaluation split."""
        task, out = self.task, {}
        for split in EVAL_SPLITS:
            golds = gold_labels(task.splits[split], task.is_regression) if split in datasets else None
            if golds is not None:
                gold, example = gold_rows(task, task.splits[split], self._kept(split))
                out[split] = task_metrics.compute_task(task, logits_of(datasets[split]).float().numpy(), gold,
                                                       example)
        return out

    def before(self, session: Session, module, stages: list[StageInputs], out) -> None:
        return None  # judged by task metrics after training, not by held-out losses before it

    def finish(self, session: Session, module, stages: list[StageInputs], history: list[dict], before,
               seconds, out: Path) -> RunMetrics:
        cfg, task, info = self.cfg, self.task, self.teacher_info
        t0 = time.perf_counter()
        logits: dict = {}
        results = evaluate_splits(session.accelerator, module.student, task, self.datasets, cfg.train, logits,
                                  module.kind)
        if task.type == QA and "dev" in logits:  # SQuAD v2.0: served with the threshold it was scored with
            self.null_threshold = logits["dev"].threshold
        # Inference speed on the run's own device and eval batch size: the report's "speed" column.
        speed = sum(len(self.datasets[s]) for s in results) / (time.perf_counter() - t0)
        # Every process computes the teacher's logits (they are gathered across processes); one writes.
        predictions = self._predictions(logits)
        if session.accelerator.is_main_process:
            write_predictions(Path(out) / PREDICTIONS_FILE, predictions, self._predictions_meta())
            if task.type == QA:  # the answers themselves, for error analysis and the official scripts
                write_json(Path(out) / ANSWERS_FILE, {split: dict(zip(o.ids, o.answers, strict=True))
                                                      for split, o in logits.items()})
        main = task.main_metric
        # The scores of what the student learned from: the teacher, or several teachers' ensemble (also what the
        # predictions file holds), so that the report's teacher row and its interval describe the same model.
        several = self.ensemble_info is not None
        scores = self.ensemble_info if several else {s: info.get(s) for s in EVAL_SPLITS}
        t_dev, s_dev = (scores.get("dev") or {}).get(main), results.get("dev", {}).get(main)
        return summarise(
            cfg, next(iter(stages[0].teachers.values())), module.student, cfg.task.max_length, history, seconds(),
            main_metric=main,
            task=TaskFacts(task.name, {split: len(ds) for split, ds in self.datasets.items()}, task.source_splits,
                           task.subsampled, selected_evaluations(stages, history, main)),
            teacher_facts=TeacherFacts(
                scores=dict(scores),
                source="ensemble of " + ", ".join(self.teacher_infos) if several else info.get("source"),
                task=TeacherTaskFacts(cache_key=None if several else info.get("key"), gate=info.get("gate"),
                                      augmented_labels=info.get("augmented_labels"),
                                      teachers=self._teachers_facts(stages[0].teachers) if several else None,
                                      majority_baseline=self._majority_baselines(results))),
            student_facts=StudentFacts(scores=dict(results), eval_examples_per_s=round(speed, 1),
                                       predictions=PREDICTIONS_FILE),
            dev_score=(s_dev / t_dev) if (t_dev and s_dev is not None) else None)

    def _teachers_facts(self, models: dict) -> dict[str, dict]:
        """Several teachers: each one's weight, depth, size, cache key, scores and gate (the ensemble's scores are
        the teacher's)."""
        weights = self.plan.objectives[0].teacher_weights
        return {name: {"weight": weights[name], "layers": models[name].config.num_hidden_layers,
                       "parameters": count_parameters(models[name]), "cache_key": info.get("key"),
                       "source": info.get("source"), "gate": info.get("gate"),
                       **{s: info.get(s) for s in EVAL_SPLITS if info.get(s)}}
                for name, info in self.teacher_infos.items()}

    def _predictions(self, student: dict[str, np.ndarray]) -> dict[str, SplitPredictions]:
        """Each evaluated split's student logits with its ids, gold labels and the teacher's (cached) logits."""
        out = {}
        if self.task.type == QA:
            return {split: SplitPredictions(o.ids, o.per_question, o.has_answer.astype(np.int64),
                                            self.teacher_qa[split].per_question) for split, o in student.items()}
        for split, logits in student.items():
            examples = self.task.splits[split]
            labelled = gold_labels(examples, self.task.is_regression) is not None
            tokens = self.task.type == TOKENS
            out[split] = SplitPredictions([ex.id for ex in examples], logits,
                                          gold_rows(self.task, examples, self._kept(split))[0] if labelled else None,
                                          self._logits_of(self.datasets[split]).float().numpy(),
                                          self.datasets[split].row_offsets() if tokens else None)
        return out

    def _kept(self, split: str) -> np.ndarray | None:
        """Token classification: the words of each example of `split` that its encoding kept (truncation cuts the
        last words of a long sentence, which are then neither predicted nor scored, as in Hugging Face's examples)."""
        if self.task.type != TOKENS:
            return None
        return np.diff(self.datasets[split].row_offsets())

    def _predictions_meta(self) -> dict:
        task = self.task
        return {"task": task.name, "labels": task.labels, "main_metric": task.main_metric,
                "metrics": list(task.metrics), "num_labels": task.num_labels, "type": task.type}

    def _majority_baselines(self, splits) -> dict[str, float]:
        """The majority class's main metric on each evaluated split with labels: the floor any model should beat."""
        train = self.task.splits["train"]
        if self.task.type == QA:
            return {split: majority_baseline(self.task, train, self.task.splits[split]) for split in splits}
        return {split: majority_baseline(self.task, train, self.task.splits[split], self._kept(split))
                for split in splits if gold_labels(self.task.splits[split], self.task.is_regression) is not None}


def selected_evaluations(stages: list[StageInputs], history: list[dict], main: str) -> dict[str, dict]:
    """Per stage that keeps its best dev evaluation: the step, epoch and score of the one kept (the first of equal
    bests, as the trainer keeps it), so that a reader knows which checkpoint the dev and test scores belong to."""
    out = {}
    for stage in stages:
        seen = [h for h in history if h["stage"] == stage.config.name and math.isfinite(h.get(main, math.nan))]
        if stage.select == "metric" and seen:
            best = max(seen, key=lambda h: h[main])
            out[stage.config.name] = {"step": best["step"], "epoch": best["epoch"], main: best[main]}
    return out
