"""One experiment run, from config to a self-describing run folder.

config -> checks (before the folder exists) -> data + teacher + student (the workflow) -> stages -> evaluation
-> artifacts. The workflow is task distillation (`task.py`) or, when every stage reads the unlabelled corpus,
general distillation (`general.py`); this spine is the same for both."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import nn

from distill.checkpoint import Checkpointer, Progress
from distill.config import ConfigError, ExperimentConfig, dump_yaml
from distill.input_encoding import InputEncoding
from distill.io import write_text
from distill.lab.general import GeneralWorkflow
from distill.lab.model_card import write_model_card
from distill.lab.preflight import plan_run
from distill.lab.records import RUN_FILE, GitState, RunInfo
from distill.lab.run_folder import check_can_start
from distill.lab.summary import hparams, summary_text
from distill.lab.task import TaskWorkflow
from distill.provenance import device_info, git_state, library_versions
from distill.stage import Session, stage_inputs
from distill.students.projections import carry_projections
from distill.trainer import DistillModule, train_stage


def make_accelerator(cfg: ExperimentConfig) -> Accelerator:
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not cfg.train.cpu \
            else "no"
    # Different stages train different parameters (the classifier, the projections): DDP must allow it.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # split_batches: `batch_size` is the global batch, cut across processes, so one config gives the same
    # optimisation (and resumes) on any number of processes.
    # Without a GPU, accelerate treats several launched processes as distributed CPU (gloo) only with cpu=True.
    cpu = cfg.train.cpu or not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu, kwargs_handlers=[ddp],
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    n = accelerator.num_processes
    batches = [(f"stages.{i}.batch_size", st.batch_size) for i, st in enumerate(cfg.stages)]
    batches += [("train.eval_batch_size", cfg.train.eval_batch_size)]
    for i, t in enumerate(cfg.teachers):
        if t.finetune is not None:
            batches.append((f"teachers.{i}.finetune.batch_size" if len(cfg.teachers) > 1 else
                            "teacher.finetune.batch_size", t.finetune.batch_size))
    for key, size in batches:
        if size % n:
            raise ConfigError(f"`{key}` = {size} is the global batch and must divide evenly over the {n} "
                              f"processes; use a multiple of {n}")
    return accelerator


def make_projections(mode: str, s_hidden: int, t_hidden: int, needed: bool) -> nn.ModuleDict:
    if not needed or s_hidden == t_hidden or mode == "none":
        return nn.ModuleDict()
    if mode == "shared":
        return nn.ModuleDict({"shared": nn.Linear(s_hidden, t_hidden)})
    return nn.ModuleDict({"hidden": nn.Linear(s_hidden, t_hidden), "embedding": nn.Linear(s_hidden, t_hidden)})


def teacher_dtype(cfg: ExperimentConfig, accelerator: Accelerator) -> torch.dtype | None:
    """The half precision the frozen teacher is held in when the run trains in one (None: as loaded). The teacher
    only infers: in half precision it takes half the memory and no autocast casts per step."""
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)
    return half if cfg.train.teacher_precision == "auto" else None


def distill_module(cfg: ExperimentConfig, plan, student: nn.Module) -> DistillModule:
    """What the stages train: the student, with the config's dropout, and the run's projections (created when a
    loss reads hidden states and the widths differ). The run and its cost estimate (`estimate.Replica`) both
    build it here."""
    if cfg.train.dropout is not None:
        for m in student.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.train.dropout
    needs_proj = any(o.needs.hidden for o in plan.objectives)
    return DistillModule(student, make_projections(cfg.train.projection, *plan.widths, needs_proj), plan.student)


def workflow_for(cfg: ExperimentConfig):
    """General distillation when every stage trains on the unlabelled corpus, else task distillation."""
    corpus = [st.data == "corpus" for st in cfg.stages]
    if any(corpus) and not all(corpus):
        raise ConfigError("stages mix `data: corpus` with task data; run general distillation as its own "
                          "experiment and name its student folder as the task config's `student.init`")
    return GeneralWorkflow if all(corpus) else TaskWorkflow


def run_experiment(cfg: ExperimentConfig, out: str | Path, resume: bool = False, on_step=None, log=print,
                   labels: dict | None = None, command: str | None = None) -> dict:
    """Run `cfg` into the folder `out`. `labels` (a sweep's variant name and grid point) go into run.json and
    the TensorBoard hparams so that reports and TensorBoard can tell runs apart; `command` (the command line that
    started it) into run.json and the student's model card."""
    out, labels = Path(out), labels or {}
    # Everything that can be checked without training is checked before the run folder is touched.
    check_can_start(cfg, out, resume)
    kind = workflow_for(cfg)
    plan = plan_run(cfg)
    workflow = kind(cfg, plan)
    start = time.perf_counter()
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    say = log if main else (lambda *_: None)
    set_seed(cfg.seed)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", dump_yaml(cfg))
        started_by = _first_command(out, resume, command)
        RunInfo(name=cfg.name, seed=cfg.seed, labels=labels, **started_by, git=GitState(**git_state()),
                libraries=library_versions(), **device_info(accelerator.device),
                processes=accelerator.num_processes, mixed_precision=accelerator.mixed_precision,
                resumed=resume).save(out)
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    # teacher: a model, or several by name; a teacher fine-tuned (or reused) here logs its curves to `writer`.
    teacher, student, datasets = workflow.build(accelerator, say, writer)
    half = teacher_dtype(cfg, accelerator)
    if half is not None:
        # Cast only now, after the student has copied any teacher layers in full precision.
        for t in teacher.values() if isinstance(teacher, dict) else [teacher]:
            t.to(half)
    module = distill_module(cfg, plan, student)
    if cfg.train.projection_init == "carried" and plan.shape.checkpoint is not None:
        source = carry_projections(plan.shape.checkpoint, module.projections)
        if source is not None:
            say(f"projections W_h / W_e: carried from {source}")
    ckpt = Checkpointer(out / "checkpoints")
    progress = Progress()
    if resume and ckpt.exists():
        progress = ckpt.load_progress()
        module.load_state_dict(ckpt.load_model_state())
        say(f"resuming at stage {progress.stage + 1}, epoch {progress.epoch + 1}, batch {progress.batches_done}")
    session = Session(accelerator, cfg.train, ckpt, writer, on_step)
    stages = [stage_inputs(st, obj, datasets, workflow.task, teacher, cfg.seed, plan.depths, plan.tokenizer)
              for st, obj in zip(cfg.stages, plan.objectives, strict=True)]
    before = workflow.before(session, module, stages, out)
    for i, stage in enumerate(stages):
        if i < progress.stage:
            continue
        if progress.epoch == 0 and progress.batches_done == 0 and ckpt.best.exists():
            ckpt.best.unlink()  # the previous stage's best is not this stage's
        st = stage.config
        say(f"stage {i + 1}/{len(stages)} {st.name!r}: losses {dict(st.losses)}, layer map {stage.ctx.pairs}, "
            f"{st.epochs} epochs")
        train_stage(session, module, stage, progress)
        progress = Progress(stage=i + 1, history=progress.history)
        if main:
            ckpt.save(module.state_dict(), progress)
        accelerator.wait_for_everyone()
    metrics = workflow.finish(session, module, stages, progress.history, before, lambda: time.perf_counter() - start,
                              out)
    if main:
        plan.student.export(student, out / "student", plan.tokenizer, module.projections, input_encoding(cfg, workflow))
        metrics.save(out)
        try:
            write_model_card(out)
        except Exception as e:  # noqa: BLE001 - the card describes a finished run; it must not fail it
            say(f"!! no model card ({type(e).__name__}: {e}); the run is complete: `distill card {out}` retries")
        hparams(writer, cfg, metrics, labels)
        writer.close()
        say(summary_text(metrics, out))
    accelerator.wait_for_everyone()
    return metrics.to_dict()


def input_encoding(cfg: ExperimentConfig, workflow) -> InputEncoding:
    """How the run encoded its inputs: the task's length and pairing, or the corpus's sequences."""
    if workflow.task is None:
        return InputEncoding(cfg.corpus.max_length, False)
    qa = workflow.task.qa
    if qa is not None:
        return InputEncoding(cfg.task.max_length, True, doc_stride=qa.doc_stride, max_query_length=qa.max_query_length,
                             n_best=qa.n_best, max_answer_length=qa.max_answer_length,
                             null_threshold=getattr(workflow, "null_threshold", None))
    return InputEncoding(cfg.task.max_length, workflow.task.is_pair)


def _first_command(out: Path, resume: bool, command: str | None) -> dict:
    """The command that started the run (kept when it is resumed; the resuming one is recorded beside it)."""
    if resume and (out / RUN_FILE).exists():
        first = RunInfo.load(out).command
        if first is not None:
            return {"command": first, "resume_command": command}
    return {"command": command}
