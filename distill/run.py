"""One experiment run, from config to a self-describing run folder.

config -> task data -> teacher (fine-tuned once, cached) -> student -> stages -> evaluation -> artifacts
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import nn

from distill.batching import EncodedDataset
from distill.checkpoint import Checkpointer, Progress
from distill.config import ConfigError, ExperimentConfig, dump_yaml, from_dict
from distill.io import write_json, write_text
from distill.layer_map import layer_map
from distill.loaders import load_task
from distill.losses import LossContext
from distill.model_stats import count_parameters, encoder_flops_per_token
from distill.objective import Objective
from distill.provenance import device_info, git_state, library_versions
from distill.trainer import DistillModule, evaluate_splits, train_stage
from students import build_student, describe, export_student
from students.tinybert import student_shape
from teachers.finetune import prepare_teacher
from teachers.load import load_bert_config, load_tokenizer
from teachers.logits import cached_logits


class RunError(RuntimeError):
    pass


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
    if cfg.teacher.finetune is not None:
        batches.append(("teacher.finetune.batch_size", cfg.teacher.finetune.batch_size))
    for key, size in batches:
        if size % n:
            raise ConfigError(f"`{key}` = {size} is the global batch and must divide evenly over the {n} "
                              f"processes; use a multiple of {n}")
    return accelerator


def _preflight(cfg: ExperimentConfig, vocab_size: int) -> tuple[int, int, int, int]:
    """Catch impossible layer maps, losses and widths before any training: (student layers,
    teacher layers, student width, teacher width)."""
    if cfg.teacher.checkpoint == "random":
        r = cfg.teacher.random
        t_layers, t_hidden = r.layers, r.hidden
        tc = None
    else:
        tc = load_bert_config(cfg.teacher.checkpoint)
        t_layers, t_hidden = tc.num_hidden_layers, tc.hidden_size
        # Ids past the embedding table crash mid-run; a much smaller vocabulary means another tokenizer
        # (checkpoints may pad their table a little, e.g. to a multiple of 8).
        if vocab_size > tc.vocab_size or vocab_size < tc.vocab_size - 128:
            raise ConfigError(f"the tokenizer {cfg.teacher.tokenizer or cfg.teacher.checkpoint!r} has {vocab_size} "
                              f"tokens but the teacher {cfg.teacher.checkpoint!r} has {tc.vocab_size} embeddings: "
                              "the tokenizer does not match the model; set `teacher.tokenizer` to the model's own")
    if cfg.student.kind == "bilstm":
        for i, stage in enumerate(cfg.stages):
            obj = Objective(stage.losses, f"stages.{i}.losses")
            if obj.needs_hidden or obj.needs_attention:
                raise ConfigError(f"stages.{i} ({stage.name}): a BiLSTM student has no hidden states or attention "
                                  f"to distil; use logit losses (logits_mse, soft_cross_entropy, kl_div, hard_ce)")
        return 1, t_layers, 0, t_hidden
    if cfg.student.kind == "distilbert" and cfg.student.init in ("scratch", "teacher"):
        s_layers, s_hidden = cfg.student.layers or max(1, t_layers // 2), t_hidden
    elif cfg.student.init in ("scratch", "teacher"):
        from types import SimpleNamespace

        ref = tc or SimpleNamespace(num_hidden_layers=t_layers, hidden_size=t_hidden,
                                    num_attention_heads=cfg.teacher.random.heads,
                                    intermediate_size=cfg.teacher.random.ffn)
        shape = student_shape(cfg.student, ref)
        s_layers, s_hidden = shape["layers"], shape["hidden"]
    else:
        from transformers import AutoConfig

        from teachers.load import resolve

        sc = AutoConfig.from_pretrained(resolve(cfg.student.init))
        s_layers, s_hidden = sc.num_hidden_layers, sc.hidden_size
    for i, stage in enumerate(cfg.stages):
        where = f"stages.{i} ({stage.name})"
        try:
            layer_map(stage.layer_map, s_layers, t_layers)
        except ValueError as e:
            raise ConfigError(f"{where}.layer_map: {e}") from None
        obj = Objective(stage.losses, f"{where}.losses")
        if (obj.needs_hidden and s_hidden != t_hidden and cfg.train.projection == "none"):
            raise ConfigError(f"{where}: hidden/embedding losses with student width {s_hidden} and teacher width "
                              f"{t_hidden} need a projection, but train.projection is `none`")
    return s_layers, t_layers, s_hidden, t_hidden


def augmented_examples(cfg: ExperimentConfig, task, accelerator: Accelerator, say) -> list:
    """The augmented training set (built once per settings, cached): each process builds its shard."""
    from augment.runner import augmented_path, build_augmented, read_augmented

    path = build_augmented(cfg, task, accelerator.num_processes, accelerator.process_index, say)
    accelerator.wait_for_everyone()
    if path is None and accelerator.is_main_process:  # other shards finished last: merge now
        path = build_augmented(cfg, task, 1, 0, say)
    accelerator.wait_for_everyone()
    path = path or augmented_path(cfg, task)
    examples = read_augmented(path)
    say(f"augmented training set: {len(examples)} examples from {path}")
    return examples


def make_projections(mode: str, s_hidden: int, t_hidden: int, needed: bool) -> nn.ModuleDict:
    if not needed or s_hidden == t_hidden or mode == "none":
        return nn.ModuleDict()
    if mode == "shared":
        return nn.ModuleDict({"shared": nn.Linear(s_hidden, t_hidden)})
    return nn.ModuleDict({"hidden": nn.Linear(s_hidden, t_hidden), "embedding": nn.Linear(s_hidden, t_hidden)})


def config_difference(cfg: ExperimentConfig, out: Path) -> list[str]:
    """Top-level sections in which `cfg` differs from the config the run in `out` was started with."""
    # Through the loader, so that a setting added to the code since the run started (at its default) is
    # not a difference.
    try:
        saved = yaml.safe_load(dump_yaml(from_dict(yaml.safe_load((out / "config.yaml").read_text()),
                                                   src=str(out / "config.yaml"))))
    except ConfigError as e:  # written by a version that had other settings
        return [f"unreadable now: {e}"]
    now = yaml.safe_load(dump_yaml(cfg))
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def _check_resume(cfg: ExperimentConfig, out: Path) -> None:
    diff = config_difference(cfg, out)
    if diff:
        raise RunError(f"--resume: the config differs from the one {out} was started with (in {diff}); "
                       "resume with the same config and overrides, or start a new run")


def is_general(cfg: ExperimentConfig) -> bool:
    """General distillation: every stage trains on the unlabelled corpus (no task, no fine-tuning)."""
    return all(st.data == "corpus" for st in cfg.stages)


def run_experiment(cfg: ExperimentConfig, out: str | Path, resume: bool = False, on_step=None, log=print,
                   labels: dict | None = None) -> dict:
    """Run `cfg` into the folder `out`. `labels` (a sweep's variant name and grid point) go into run.json and
    the TensorBoard hparams so that reports and TensorBoard can tell runs apart."""
    out = Path(out)
    labels = labels or {}
    if resume:
        if not (out / "config.yaml").exists():
            raise RunError(f"--resume: {out} is not a run folder (no config.yaml)")
        _check_resume(cfg, out)
    elif (out / "run.json").exists():
        state = "finished" if (out / "metrics.json").exists() else "unfinished (use --resume to continue it)"
        raise RunError(f"run folder {out} already holds a {state} run; choose another --out")
    if any(st.data == "corpus" for st in cfg.stages) and not is_general(cfg):
        raise ConfigError("stages mix `data: corpus` with task data; run general distillation as its own "
                          "experiment and name its student folder as the task config's `student.init`")
    # Everything that can be checked without training is checked before the run folder is touched.
    tokenizer = load_tokenizer(cfg.teacher.tokenizer or cfg.teacher.checkpoint)
    s_layers, t_layers, s_hidden, t_hidden = _preflight(cfg, len(tokenizer))
    start = time.perf_counter()
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    say = log if main else (lambda *_: None)
    set_seed(cfg.seed)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", dump_yaml(cfg))
        write_json(out / "run.json", {"name": cfg.name, "seed": cfg.seed, **labels, "git": git_state(),
                                      "libraries": library_versions(), **device_info(accelerator.device),
                                      "processes": accelerator.num_processes,
                                      "mixed_precision": accelerator.mixed_precision, "resumed": resume})
    objectives = [Objective(st.losses, f"stages.{i}.losses") for i, st in enumerate(cfg.stages)]
    if is_general(cfg):
        from distill.general import setup_general

        task = None
        teacher, student, datasets, teacher_info = setup_general(cfg, tokenizer, objectives, accelerator, say)
    else:
        task, teacher, student, datasets, teacher_info = _setup_task(cfg, tokenizer, objectives, accelerator, say)
    if cfg.train.dropout is not None:
        for m in student.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.train.dropout
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)
    if teacher is not None and half is not None:
        # The frozen teacher only infers: held in half precision it takes half the memory and no autocast
        # casts per step. Cast only now, after the student has copied any teacher layers in full precision.
        teacher.to(half)
    needs_proj = any(o.needs_hidden for o in objectives)
    module = DistillModule(student, make_projections(cfg.train.projection, s_hidden, t_hidden, needs_proj))
    ckpt = Checkpointer(out / "checkpoints")
    progress = Progress()
    if resume and ckpt.exists():
        progress = ckpt.load_progress()
        module.load_state_dict(ckpt.load_model_state())
        say(f"resuming at stage {progress.stage + 1}, epoch {progress.epoch + 1}, batch {progress.batches_done}")
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    before = None
    if task is None:
        from distill.general import heldout_losses

        before = heldout_losses(accelerator, cfg, module, teacher, objectives, datasets, s_layers, t_layers,
                                out / "heldout_before.json")
    for i, (stage, objective) in enumerate(zip(cfg.stages, objectives, strict=True)):
        if i < progress.stage:
            continue
        if progress.epoch == 0 and progress.batches_done == 0 and ckpt.best.exists():
            ckpt.best.unlink()  # the previous stage's best is not this stage's
        ctx = stage_context(stage, objective, s_layers, t_layers, task)
        say(f"stage {i + 1}/{len(cfg.stages)} {stage.name!r}: losses {dict(stage.losses)}, "
            f"layer map {ctx.pairs}, {stage.epochs} epochs")
        train_stage(accelerator, module, teacher, objective, ctx, stage, cfg.train, datasets[stage.data],
                    datasets["dev"], task, cfg.seed, ckpt, progress, writer, on_step,
                    mlm_masking(stage, tokenizer, cfg.seed))
        progress = Progress(stage=i + 1, history=progress.history)
        if main:
            ckpt.save(module.state_dict(), progress)
        accelerator.wait_for_everyone()

    if task is None:
        from distill.general import summarise_general

        after = heldout_losses(accelerator, cfg, module, teacher, objectives, datasets, s_layers, t_layers)
        metrics = summarise_general(cfg, teacher, student, before, after, progress.history, datasets,
                                    time.perf_counter() - start)
    else:
        t0 = time.perf_counter()
        results = evaluate_splits(accelerator, student, task, datasets, cfg.train)
        # Inference speed on the run's own device and eval batch size: the report's "speed" column.
        speed = sum(len(datasets[s]) for s in results) / (time.perf_counter() - t0)
        metrics = _summarise(cfg, task, teacher, student, teacher_info, results, progress.history,
                             time.perf_counter() - start)
        metrics["student"]["eval_examples_per_s"] = round(speed, 1)
    if main:
        export_student(student, out / "student", tokenizer)
        write_json(out / "metrics.json", metrics)
        _hparams(writer, cfg, metrics, labels)
        writer.close()
        say(summary_text(metrics, out))
    accelerator.wait_for_everyone()
    return metrics


def stage_context(stage, objective: Objective, s_layers: int, t_layers: int, task) -> LossContext:
    pairs = layer_map(stage.layer_map, s_layers, t_layers) if (objective.needs_hidden or
                                                               objective.needs_attention) else []
    # The module applies the projections in its forward; the context only checks widths.
    return LossContext(pairs, task is not None and task.is_regression)


def mlm_masking(stage, tokenizer, seed: int):
    if not stage.mlm_masking:
        return None
    from distill.batching import MlmMasking

    return MlmMasking(tokenizer.mask_token_id, len(tokenizer), tuple(sorted(set(tokenizer.all_special_ids))), seed)


def _setup_task(cfg: ExperimentConfig, tokenizer, objectives: list[Objective], accelerator, say):
    task = load_task(cfg.task)
    datasets = {split: EncodedDataset(exs, tokenizer, cfg.task.max_length, task.is_regression)
                for split, exs in task.splits.items()}
    if any(st.data == "augmented" for st in cfg.stages):
        datasets["augmented"] = EncodedDataset(augmented_examples(cfg, task, accelerator, say), tokenizer,
                                               cfg.task.max_length, task.is_regression)
    say(f"task {task.name}: " + ", ".join(f"{k} {len(v)}" for k, v in task.splits.items()))
    teacher, teacher_info = prepare_teacher(cfg, task, tokenizer, datasets, accelerator, say)
    set_seed(cfg.seed)
    texts = [t for split in ("train", "augmented") if split in datasets
             for ex in datasets[split].examples for t in (ex.text_a, ex.text_b) if t is not None]
    student = build_student(cfg.student, teacher, cfg.seed, texts, task.is_pair)
    if hasattr(student, "vocab"):
        for ds in datasets.values():
            ds.attach_student(lambda text: student.vocab.encode(text, cfg.task.max_length))
        say(f"student vocabulary: {student.coverage['vocab']} words, {student.coverage['pretrained']} with "
            f"pre-trained vectors")
    for stage, objective in zip(cfg.stages, objectives, strict=True):
        if objective.uses_teacher and not (objective.needs_hidden or objective.needs_attention):
            for ds in (datasets[stage.data], datasets["dev"]):
                if ds.teacher_logits is None:
                    ds.teacher_logits = cached_logits(teacher, teacher_info["key"], ds, accelerator, cfg.train, say)
    return task, teacher, student, datasets, teacher_info


def _summarise(cfg, task, teacher, student, teacher_info, results, history, seconds) -> dict:
    main = task.main_metric
    shape = describe(student)
    flops_t = encoder_flops_per_token(teacher.config, cfg.task.max_length)
    flops_s = encoder_flops_per_token(student.config, cfg.task.max_length) if shape["kind"] == "bert" else None
    t_dev = teacher_info.get("dev", {}).get(main)
    s_dev = results.get("dev", {}).get(main)
    return {
        "name": cfg.name, "task": task.name, "main_metric": main,
        "teacher": {"dev": teacher_info.get("dev"), "test": teacher_info.get("test"),
                    "parameters": count_parameters(teacher), "layers": teacher.config.num_hidden_layers,
                    "hidden": teacher.config.hidden_size, "encoder_flops_per_token": flops_t,
                    "source": teacher_info.get("source"), "cache_key": teacher_info.get("key")},
        "student": {**results, "parameters": count_parameters(student), **shape,
                    "encoder_flops_per_token": flops_s},
        "ratios": {"parameters": count_parameters(student) / count_parameters(teacher),
                   "encoder_compute": flops_s / flops_t if flops_s is not None else None,
                   "dev_score": (s_dev / t_dev) if (t_dev and s_dev is not None) else None},
        "history": history,
        "wall_seconds": round(seconds, 1),
    }


def _hparams(writer, cfg: ExperimentConfig, metrics: dict, labels: dict) -> None:
    hp = {**{k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in labels.items()},
          "student.layers": metrics["student"]["layers"], "student.hidden": metrics["student"]["hidden"],
          "student.kind": cfg.student.kind, "student.init": cfg.student.init, "seed": cfg.seed}
    for i, st in enumerate(cfg.stages):
        hp[f"stage{i}.{st.name}.losses"] = ",".join(st.losses)
        hp[f"stage{i}.{st.name}.epochs"] = st.epochs
        hp[f"stage{i}.{st.name}.lr"] = st.lr
    final = {f"hparam/student_dev_{k}": v for k, v in (metrics["student"].get("dev") or {}).items()}
    final.update({f"hparam/student_test_{k}": v for k, v in (metrics["student"].get("test") or {}).items()})
    if metrics["ratios"]["dev_score"] is not None:
        final["hparam/dev_share_of_teacher"] = metrics["ratios"]["dev_score"]
    for stage, terms in (metrics.get("heldout_after") or {}).items():
        final.update({f"hparam/heldout_{stage}_{k.replace('loss/', '')}": v for k, v in terms.items()})
    writer.add_hparams(hp, final, run_name=".")


def summary_text(m: dict, out: Path) -> str:
    if m.get("general"):
        from distill.general import general_summary_text

        return general_summary_text(m, out)
    main = m["main_metric"]

    def fmt(d):
        return ", ".join(f"{k} {v:.4f}" for k, v in (d or {}).items() if not k.startswith("loss/")) or "n/a"

    t, s, r = m["teacher"], m["student"], m["ratios"]
    share = f"{100 * r['dev_score']:.1f}%" if r["dev_score"] is not None else "n/a"
    compute = (f", encoder compute per token {100 * r['encoder_compute']:.1f}%"
               if r["encoder_compute"] is not None else "")
    s_shape = f"{s['layers']}L-{s['hidden']}" if s["kind"] == "bert" else f"BiLSTM-{s['hidden']}"
    return "\n".join([
        "",
        f"== {m['name']} ({m['task']}), {m['wall_seconds']:.0f} s ==",
        f"teacher  {t['layers']}L-{t['hidden']}  {t['parameters'] / 1e6:6.2f}M params   dev: {fmt(t['dev'])}",
        f"         test: {fmt(t['test'])}",
        f"student  {s_shape}  {s['parameters'] / 1e6:6.2f}M params   dev: {fmt(s.get('dev'))}",
        f"         test: {fmt(s.get('test'))}",
        f"student/teacher: dev {main} {share}, parameters {100 * r['parameters']:.1f}%{compute}",
        f"run folder: {out}",
        f"compare runs: tensorboard --logdir {out.parent}",
    ])
