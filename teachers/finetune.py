"""Fine-tune a teacher on the task once and reuse it.

The fine-tuned teacher is cached under `<cache>/teachers/<key>/`, where the key digests everything
that decides its weights (checkpoint, tokenizer, fine-tuning settings and seed, task data, max length).
A later run with the same settings loads it instead of training again; an interrupted fine-tune resumes
from `<key>.work/`."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from distill.checkpoint import Checkpointer, Progress
from distill.config import ExperimentConfig, StageConfig, TeacherConfig
from distill.encoded import EncodedDataset, encode_examples
from distill.io import atomic_dir, cache_root, read_json, write_json
from distill.loaders import fingerprint, load_task
from distill.losses import LossContext
from distill.objective import Objective
from distill.resources import content_key, source_identity
from distill.stage import Session, StageInputs
from distill.stage_timing import BATCHES, finetune_cost
from distill.task_types import SEQUENCE, head_class
from distill.tasks import Example, TaskData
from distill.teachers.load import load_classifier, random_bert
from distill.trainer import DistillModule, evaluate_splits, train_stage


def full_train_split(cfg: ExperimentConfig, t: TeacherConfig | None = None) -> list[Example] | None:
    """The task's whole training split when the teacher `t` (default: the first) is fine-tuned on it
    (`finetune.train: full`) and `task.train_limit` subsamples the student's; None when the teacher trains on the
    student's training split."""
    ft = (t or cfg.teacher).finetune
    if ft is None or ft.train != "full" or cfg.task.train_limit is None:
        return None
    return load_task(replace(cfg.task, train_limit=None)).splits["train"]


def teacher_key(cfg: ExperimentConfig, task: TaskData, train: list[Example] | None = None,
                t: TeacherConfig | None = None) -> str:
    """The cache key of the teacher `t` (default: the first) fine-tuned on `train` (default: the task's training
    split). Its name and weight are not part of it: they say how a run uses the teacher, not what it is."""
    t = t or cfg.teacher
    train = task.splits["train"] if train is None else train
    # `finetune.train` is left out: the fingerprint of the examples trained on says it, and a `full` teacher
    # without a train limit is the same teacher as a `task` one (and keeps the keys cached before the setting).
    finetune = {k: v for k, v in asdict(t.finetune).items() if k != "train"} if t.finetune else None
    ident = {
        "checkpoint": source_identity(t.checkpoint),
        "tokenizer": t.tokenizer,
        "random": asdict(t.random) if t.random else None,
        "finetune": finetune,
        "task": [task.name, task.labels, fingerprint(train), fingerprint(task.splits["dev"])],
        "max_length": cfg.task.max_length,
        "length_grouped": cfg.train.length_grouped,
        "precision": cfg.train.precision,
    }
    if task.type != SEQUENCE:  # keeps the keys of teachers cached before there were other task types
        ident["type"] = task.type
    if task.qa is not None:  # the windows it is trained on (answer post-processing does not change its weights)
        ident["windows"] = list(task.qa.windows)
    return content_key(ident)


def _hard_loss(task: TaskData) -> dict:
    return {"hard_mse": 1.0} if task.is_regression else {"hard_ce": 1.0}


def prepare_teacher(cfg: ExperimentConfig, task: TaskData, tokenizer, datasets: dict[str, EncodedDataset],
                    accelerator: Accelerator, log=print, train: list[Example] | None = None,
                    t: TeacherConfig | None = None, writer=None) -> tuple[nn.Module, dict]:
    """The fine-tuned teacher `t` (default: the first; eval mode, on the accelerator's device) and its metrics
    record. `train`: the teacher's training examples when they are not the student's (`datasets["train"]`);
    encoded only when the teacher is not cached yet. `writer` (TensorBoard's) receives the fine-tuning curves, kept
    with the cached teacher and replayed for every run that reuses it."""
    t = t or cfg.teacher
    if t.finetune is None:
        model = load_classifier(t.checkpoint, task.labels, require_head=True, label_order=t.label_order,
                                task_type=task.type)
        key = content_key({"checkpoint": source_identity(t.checkpoint), "labels": task.labels,
                           "label_order": t.label_order})
        info = {"source": t.checkpoint, "finetuned_here": False, "key": key}
        info.update(evaluate_splits(accelerator, model, task, datasets, cfg.train))
        return _ready(model, accelerator), info

    key = teacher_key(cfg, task, train, t)
    folder = cache_root() / "teachers" / key
    if (folder / "teacher.json").exists():
        log(f"teacher: reusing the fine-tuned teacher cached at {folder}")
        model = head_class("Bert", task.type).from_pretrained(folder, attn_implementation="sdpa")
        info = read_json(folder / "teacher.json")
        replay_curves(writer, info.get("curves", []), _tag(cfg, t))
        return _ready(model, accelerator), info

    examples = task.splits["train"] if train is None else train
    with accelerator.main_process_first():
        train = datasets["train"] if train is None else encode_examples(
            train, tokenizer, cfg.task.max_length, task.is_regression, log, "the teacher's training split",
            task.qa and task.qa.windows)
    set_seed(t.finetune.seed)
    if t.checkpoint == "random":
        model = random_bert(t.random, tokenizer, task.labels, t.finetune.seed, task_type=task.type)
    else:
        model = load_classifier(t.checkpoint, task.labels, label_order=t.label_order, task_type=task.type)
    work = Checkpointer(folder.parent / f"{key}.work")
    module = DistillModule(model)
    progress = Progress()
    if work.exists():
        progress = work.load_progress()
        module.load_state_dict(work.load_model_state())
        log(f"teacher: resuming fine-tuning at epoch {progress.epoch + 1}, batch {progress.batches_done}")
    ft = t.finetune
    stage = finetune_stage(cfg, task, t)
    inputs = StageInputs(stage, Objective(stage.losses), LossContext([], task.is_regression), train,
                         datasets["dev"], task, None, ft.seed)
    # Said before it starts, with its measured cost (the same code as `distill check`'s): the first run of a teacher
    # takes minutes to hours.
    epochs_left = ft.epochs - progress.epoch - progress.batches_done * ft.batch_size / max(len(train), 1)
    cost = finetune_cost(accelerator, module, task, examples, epochs_left, stage, tokenizer, cfg.task.max_length,
                         cfg.train)
    log(f"teacher: fine-tuning {t.checkpoint} on {task.name} ({len(train):,} examples, "
        f"{ft.epochs} epoch{'s' if ft.epochs != 1 else ''}), once: estimated {cost.text()} on "
        f"{accelerator.device.type} ({BATCHES} batches timed, as `distill check` times them); cached at {folder} for "
        "every later run with these settings")
    start = time.perf_counter()
    curves = CurveRecorder(writer)
    train_stage(Session(accelerator, cfg.train, work, curves), module, inputs, progress)
    info = {"source": t.checkpoint, "finetuned_here": True, "key": key, "finetune": asdict(ft),
            "train_examples": len(train), "history": progress.history,
            "train_seconds": round(time.perf_counter() - start, 1), "curves": curves.scalars}
    info.update(evaluate_splits(accelerator, model, task, datasets, cfg.train))
    if accelerator.is_main_process:
        with atomic_dir(folder) as tmp:
            model.config._attn_implementation = "sdpa"
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "teacher.json", info)
        shutil.rmtree(work.folder, ignore_errors=True)
    accelerator.wait_for_everyone()
    return _ready(model, accelerator), info


def finetune_stage(cfg: ExperimentConfig, task: TaskData, t: TeacherConfig) -> StageConfig:
    """The teacher's fine-tuning as a stage: hard labels, the `teacher.finetune` settings, the best dev epoch kept."""
    ft = t.finetune
    return StageConfig(name=_tag(cfg, t), losses=_hard_loss(task), epochs=ft.epochs, lr=ft.lr,
                       batch_size=ft.batch_size, warmup=ft.warmup, weight_decay=ft.weight_decay, select="metric")


def _tag(cfg: ExperimentConfig, t: TeacherConfig) -> str:
    """The teacher's stage name in logs and TensorBoard: `teacher`, or `teacher-<name>` among several."""
    return "teacher" if len(cfg.teachers) == 1 else f"teacher-{t.name}"


class CurveRecorder:
    """A TensorBoard writer's `add_scalar`, forwarded (when there is a writer) and kept as [tag, value, step] rows
    relative to the stage's tag, so that the cached teacher carries its curves to the runs that reuse it. A
    resumed fine-tuning keeps only the curves logged after the resume."""

    def __init__(self, writer=None):
        self.writer, self.scalars = writer, []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append([tag.split("/", 1)[1], float(value), int(step)])
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)


def replay_curves(writer, scalars: list, tag: str) -> None:
    if writer is not None:
        for name, value, step in scalars:
            writer.add_scalar(f"{tag}/{name}", value, step)


def _ready(model: nn.Module, accelerator: Accelerator) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(accelerator.device)
