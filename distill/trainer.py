"""The training loop, written once on `accelerate`: teacher fine-tuning and every distillation stage.

One stage = an objective (weighted losses), data, epochs and an optimiser schedule. The loop runs the
same on CPU, one GPU or several (accelerate shards the batches), checkpoints atomically, resumes from
the last checkpoint mid-epoch, and stops on a non-finite loss keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_constant_schedule, get_linear_schedule_with_warmup

from distill import metrics as task_metrics
from distill.adaptor import MASKED_POSITION, Record, forward_record, set_attention
from distill.batching import LengthGroupedBatches, MlmMasking, PadCollator
from distill.checkpoint import Checkpointer, Progress
from distill.config import StageConfig, TrainConfig
from distill.encoded import EncodedDataset
from distill.errors import DistillError
from distill.losses import LossContext, gold_rows
from distill.needs import LOGITS_ONLY, Needs
from distill.objective import Objective
from distill.qa_eval import qa_outcome
from distill.stage import Session, StageInputs
from distill.student_registry import Student
from distill.task_types import QA
from distill.tasks import EVAL_SPLITS, TaskData


class TrainingDiverged(DistillError):
    pass


class DistillModule(nn.Module):
    """The trainable part of a run: the student and the run's projections (W_h, W_e).

    Projections belong to the run, not to the student: they are checkpointed with it and left out
    of the exported student."""

    def __init__(self, student: nn.Module, projections: nn.ModuleDict | None = None, kind: Student | None = None):
        super().__init__()
        self.student = student
        self.projections = projections if projections is not None else nn.ModuleDict()
        # The student's kind reads its record and names the parameters to clip; None: a Hugging Face model (a
        # teacher, or a bare model in tests), read by the adaptor.
        self.kind = kind

    def forward(self, batch: dict, needs: Needs = LOGITS_ONLY, objective: Objective | None = None,
                teacher: dict[str, Record] | None = None, ctx: LossContext | None = None):
        """The student's record, holding what `needs` asks for (with an objective: its `needs`); with an objective,
        the loss and its terms instead. Training computes the loss inside forward because DistributedDataParallel
        requires every output to reach the loss."""
        rec = self._record(batch, needs)
        return rec if objective is None else objective(rec, teacher, batch, ctx)

    def _record(self, batch: dict, needs: Needs) -> Record:
        rec = forward_record(self.student, batch, needs) if self.kind is None else \
            self.kind.record(self.student, batch, needs)
        # Projected here, inside forward, so that DistributedDataParallel sees the projections used.
        return project(rec, self.projections)

    def clip_parameters(self) -> list[nn.Parameter]:
        params = list(self.student.parameters()) if self.kind is None else self.kind.clip_parameters(self.student)
        return params + list(self.projections.parameters())


def make_loader(ds: EncodedDataset, batch_size: int, seed: int, train: bool, cfg: TrainConfig,
                mlm: MlmMasking | None = None):
    sampler = LengthGroupedBatches(ds.lengths(), batch_size, seed, grouped=cfg.length_grouped, shuffle=train)
    # A private generator: every new iterator draws a base seed from the loader's generator, and drawing it
    # from the global RNG would shift dropout after a resume (the resumed run creates one more iterator).
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=PadCollator(ds.pad_id, mlm),
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def teacher_records(teachers: dict[str, nn.Module], batch: dict, objective: Objective,
                    cached: dict[str, torch.Tensor] | None = None, stored: dict | None = None) -> dict[str, Record]:
    """Every teacher's record for a batch, by name, for the teachers the objective reads: from the teacher-output
    cache when only its logits are read and a cache is given, from a stored record (`stored`, by name) when it
    holds everything read, else from a forward pass under inference mode."""
    out = {}
    rows = Needs(all_tokens=objective.needs.all_tokens)  # the student's logits rows, so that the rows line up
    for name, needs in objective.teacher_needs().items():
        logits = (cached or {}).get(name)
        if logits is not None and not needs:
            # The cache holds a row per example, or per word for token classification (the batch's `rows`).
            index = batch.get("rows", batch["index"]).to(logits.device)
            out[name] = Record(logits=logits[index].to(batch["input_ids"].device),
                               attention_mask=batch["attention_mask"])
            continue
        record = (stored or {}).get(name)
        if record is not None and needs <= record.holds:
            out[name] = record.batch(batch["index"], batch["input_ids"].shape[1], batch["input_ids"].device)
            continue
        with torch.inference_mode():
            rec = forward_record(teachers[name], batch, needs | rows)
        # Inference tensors cannot be saved for backward; a clone outside inference mode can.
        out[name] = rec.detached()
    return out


def set_attentions(module: DistillModule, teachers: dict[str, nn.Module], objective: Objective) -> None:
    """Each model's attention implementation for a stage: scores or queries/keys/values where its losses read
    them, the fused kernel elsewhere."""
    set_attention(module.student, objective.needs)
    needs = objective.teacher_needs()
    wants: dict[int, Needs] = {}  # by model: one model may serve under several names (an estimate's)
    for name, teacher in teachers.items():
        wants[id(teacher)] = wants.get(id(teacher), LOGITS_ONLY) | needs.get(name, LOGITS_ONLY)
    for teacher in teachers.values():
        set_attention(teacher, wants[id(teacher)])


def project(rec: Record, projections: nn.ModuleDict) -> Record:
    """The student's hidden states in the teacher's width: W_e on the embeddings (index 0), W_h on every layer
    (`shared`: one map for both); unchanged without projections."""
    if not len(projections) or rec.hidden_states is None:
        return rec
    p = projections
    emb, hid = p["embedding" if "embedding" in p else "shared"], p["hidden" if "hidden" in p else "shared"]
    h = rec.hidden_states
    return replace(rec, hidden_states=(emb(h[0]), *(hid(x) for x in h[1:])))


@torch.no_grad()
def evaluate(accelerator: Accelerator, module: DistillModule, loader, task: TaskData,
             teachers: dict[str, nn.Module] | None = None, objective: Objective | None = None,
             ctx: LossContext | None = None, cached: dict[str, torch.Tensor] | None = None,
             keep: dict | None = None, dataset: EncodedDataset | None = None,
             threshold: float | None = None) -> dict[str, float]:
    """Task metrics on a split (none when `task` is None: corpus text) and, when an objective is given,
    its held-out terms (all of them when there is no task, else those that use the teacher). `keep`, a dict,
    receives the gathered "logits" and each row's dataset "index" (rows come in the loader's order), or for
    extractive QA the split's answers ("qa", a `QAOutcome`), which need the split's `dataset` (its windows) and
    for SQuAD v2.0 take the null `threshold` chosen on dev (None: chosen on this split)."""
    module.eval()
    logits, golds, indices, sums, batches = [], [], [], {}, 0
    qa = task is not None and task.type == QA
    spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # QA: each window's start and end scores, unpadded
    use_objective = objective is not None and (objective.uses_teacher or task is None)
    for batch in loader:
        rec = module(batch, objective.needs if use_objective else LOGITS_ONLY)
        if use_objective:
            t = teacher_records(teachers, batch, objective, cached) if objective.uses_teacher else None
            _, parts = objective(rec, t, batch, ctx)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            batches += 1
        if qa:
            both, lengths, index = accelerator.gather_for_metrics(_span_scores(accelerator, rec.logits, batch))
            for row, n, i in zip(both.cpu().numpy(), lengths.tolist(), index.tolist(), strict=True):
                spans[i] = (row[0, :n], row[1, :n])
        elif task is not None:
            lg, gold, index = gather_rows(accelerator, rec.logits.float(), gold_rows(rec, batch), batch["index"],
                                          rec.token_rows)
            logits.append(lg.cpu().numpy())
            golds.append(gold.cpu().numpy())
            indices.append(index.cpu().numpy())
    module.train()
    if accelerator.num_processes > 1 and use_objective:
        # Each process saw its slice of every batch: average the per-process means (equal slices).
        keys = sorted(sums)
        total = accelerator.reduce(torch.tensor([sums[k] for k in keys], device=accelerator.device), "mean")
        sums = dict(zip(keys, total.tolist(), strict=True))
    if qa:
        out = {}
        if dataset is not None:  # a timing pass over a few batches has no whole split to answer
            outcome = qa_outcome(task, dataset, *zip(*(spans[i] for i in range(len(dataset))), strict=True),
                                 threshold=threshold)
            out = dict(outcome.scores)
            if keep is not None:
                keep["qa"] = outcome
    else:
        out = {} if task is None else task_metrics.compute_task(task, np.concatenate(logits), np.concatenate(golds),
                                                                np.concatenate(indices))
    out.update({f"loss/{k}": v / max(batches, 1) for k, v in sums.items()})
    if keep is not None and task is not None and not qa:
        keep.update(logits=np.concatenate(logits), index=np.concatenate(indices))
    return out


def _span_scores(accelerator: Accelerator, rows: torch.Tensor, batch: dict) -> tuple[torch.Tensor, ...]:
    """A QA head's span rows (2 per window) as (window, start/end, position), with each window's length and index,
    padded to one length across processes."""
    both = rows.float().reshape(-1, 2, rows.shape[-1])
    if accelerator.num_processes > 1:
        both = accelerator.pad_across_processes(both, dim=2, pad_index=MASKED_POSITION)
    return both, batch["attention_mask"].sum(1), batch["index"]


def gather_rows(accelerator: Accelerator, rows: torch.Tensor, gold: torch.Tensor | None, index: torch.Tensor,
                token_rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """A batch's logits rows (and their gold labels) from every process, with each row's example index: one row per
    example, or per word (`token_rows`, a token classifier's). `gather_for_metrics` drops the copies a last uneven
    batch repeats by counting examples, so word rows travel padded per example and are unpadded after."""
    if token_rows is None:
        return accelerator.gather_for_metrics((rows, gold, index))
    counts = token_rows.sum(1)
    width = int(counts.max()) if len(counts) else 0
    slots = torch.arange(width, device=counts.device)[None, :] < counts[:, None]
    padded = rows.new_zeros((len(counts), width, *rows.shape[1:]))
    padded[slots] = rows
    gold_padded = None
    if gold is not None:
        gold_padded = gold.new_full((len(counts), width), -100)
        gold_padded[slots] = gold
    if accelerator.num_processes > 1:
        padded = accelerator.pad_across_processes(padded, dim=1)
        gold_padded = None if gold is None else accelerator.pad_across_processes(gold_padded, dim=1, pad_index=-100)
    padded, gold_padded, index, counts = accelerator.gather_for_metrics((padded, gold_padded, index, counts))
    slots = torch.arange(padded.shape[1], device=counts.device)[None, :] < counts[:, None]
    return (padded[slots], None if gold_padded is None else gold_padded[slots],
            index.to(counts.device).repeat_interleave(counts))


def evaluate_splits(accelerator: Accelerator, model: nn.Module, task: TaskData,
                    datasets: dict[str, EncodedDataset], cfg: TrainConfig,
                    predictions: dict | None = None, kind: Student | None = None) -> dict[str, dict[str, float]]:
    """Task metrics of a classifier on every evaluation split there is (dev, MNLI's mismatched dev, test).
    `predictions`, a dict, receives each split's logits (float32, one row per example in dataset order); `kind`:
    the student the model is (None: a Hugging Face model)."""
    set_attention(model, LOGITS_ONLY)
    module = DistillModule(model, kind=kind).to(accelerator.device)
    out, threshold = {}, None
    for split in EVAL_SPLITS:
        if split in datasets:
            loader, _ = make_loader(datasets[split], cfg.eval_batch_size, 0, False, cfg)
            keep = {} if predictions is not None or task.type == QA else None
            # SQuAD v2.0's null threshold is chosen on dev and used as it is on the later splits.
            out[split] = evaluate(accelerator, module, accelerator.prepare(loader), task, keep=keep,
                                  dataset=datasets[split], threshold=threshold)
            if task.type == QA:
                threshold = keep["qa"].threshold if threshold is None else threshold
                if predictions is not None:
                    predictions[split] = keep["qa"]
            elif keep is not None:
                predictions[split] = in_dataset_order(keep["logits"], keep["index"], datasets[split].row_offsets())
    return out


def in_dataset_order(logits: np.ndarray, index: np.ndarray, row_offsets: np.ndarray) -> np.ndarray:
    """`logits` rows (in a loader's order, e.g. length-grouped; `index`: each row's example) moved to their
    examples' places in the dataset, whose example i owns rows row_offsets[i]:row_offsets[i + 1] (one row per
    example, or per word for token classification, kept in their order within an example)."""
    n = len(row_offsets) - 1
    expected = np.diff(row_offsets)
    found = np.bincount(index, minlength=n) if len(index) else np.zeros(n, dtype=np.int64)
    # Every example's rows exactly once: a missing or repeated row would silently pair logits with the wrong example.
    if len(found) != n or not np.array_equal(found, expected):
        bad = int(np.flatnonzero(found[:n] != expected)[0]) if len(found) == n else n
        raise DistillError(f"evaluation gave {len(index)} rows for {n} examples (expected {int(row_offsets[-1])}); "
                           f"the first example that differs: {bad}")
    order = np.argsort(index, kind="stable")
    return np.ascontiguousarray(logits[order], dtype=np.float32)


def train_stage(session: Session, module: DistillModule, stage: StageInputs, progress: Progress) -> None:
    """Train one stage from `progress` (a fresh stage or a resumed one) to its end, evaluating dev at the steps
    `evaluation_steps` names and keeping the evaluation `stage.select` names."""
    acc, cfg, ckpt, st, objective, teachers = (session.accelerator, session.train, session.ckpt, stage.config,
                                               stage.objective, stage.teachers)
    tag = st.name
    set_attentions(module, teachers, objective)
    train_dl, sampler = make_loader(stage.data, st.batch_size, stage.seed, True, cfg, stage.mlm)
    dev_dl, _ = make_loader(stage.dev, cfg.eval_batch_size, stage.seed, False, cfg, stage.mlm)
    optimizer = make_optimizer(module, st)
    clip = module.clip_parameters()
    model, optimizer, train_dl, dev_dl = acc.prepare(module, optimizer, train_dl, dev_dl)
    per_epoch = optimizer_steps(len(train_dl), st.grad_accum)
    total = per_epoch * st.epochs
    evals = set(evaluation_steps(per_epoch, st.epochs, st.eval_every))
    scheduler = (get_linear_schedule_with_warmup(optimizer, int(st.warmup * total), total)
                 if stage.schedule == "linear" else get_constant_schedule(optimizer))
    if progress.epoch > 0 or progress.batches_done > 0:
        ckpt.load_optimizer(optimizer, scheduler)
        ckpt.restore_rng()
    acc.gradient_accumulation_steps = st.grad_accum

    def save(path_kind: str = "last"):
        if acc.is_main_process:
            state = acc.get_state_dict(model)
            ckpt.save_best(state) if path_kind == "best" else ckpt.save(state, progress, optimizer, scheduler)

    # On the batches' device: indexing a host copy with a device index would copy the index back every step.
    cached, dev_cached = ({name: t.to(acc.device) for name, t in logits.items()}
                          for logits in (stage.data.teacher_logits, stage.dev.teacher_logits))
    bad = torch.zeros((), dtype=torch.bool, device=acc.device)
    since = [time.perf_counter()]

    def dev_pass(epoch: int, window: _Window, at_epoch_end: bool) -> None:
        _guard(bad, tag, epoch, progress, {}, ckpt)
        if window.batches:  # the steps since the last multiple of log_every, before the evaluation's time counts
            _log(session.writer, window.flush(tag, scheduler.get_last_lr()[0], acc.num_processes), progress.step)
        ctx = replace(stage.ctx, fraction=progress.step / total)
        result = evaluate(acc, model, dev_dl, stage.task, teachers, objective, ctx, dev_cached, dataset=stage.dev)
        result.update({"stage": tag, "epoch": epoch + 1, "step": progress.step})
        progress.history.append(result)
        _log(session.writer, {f"{tag}/dev/{k}": v for k, v in result.items() if isinstance(v, float)}, progress.step)
        if acc.is_local_main_process:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in result.items() if isinstance(v, float))
            tqdm.write(f"[{tag}] epoch {epoch + 1}/{st.epochs}, step {progress.step}/{total}: dev {shown}")
        # Wall time since the previous evaluation, this one included: what `distill check` estimates. Set after
        # logging, so that it is not logged as a dev metric.
        result["seconds"] = round(time.perf_counter() - since[0], 2)
        since[0] = time.perf_counter()
        score = result.get(stage.task.main_metric) if stage.task is not None else None
        # A non-finite score (Pearson of constant predictions) is the worst, never the best to keep.
        if stage.select == "metric" and score is not None and math.isfinite(score) and (
                progress.best is None or score > progress.best):
            progress.best = score
            save("best")
            if not at_epoch_end:  # so that a resume never finds a best newer than its checkpoint's history
                save()
                acc.wait_for_everyone()
        window.t0 = time.perf_counter()  # throughput after the evaluation counts training only

    model.train()
    for epoch in range(progress.epoch, st.epochs):
        sampler.set_epoch(epoch)
        skip = progress.batches_done
        bar = tqdm(acc.skip_first_batches(train_dl, skip) if skip else train_dl, total=len(train_dl), initial=skip,
                   desc=f"{tag} {epoch + 1}/{st.epochs}", disable=not acc.is_local_main_process, leave=False,
                   dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
        window = _Window()
        for batch in bar:
            ctx = replace(stage.ctx, fraction=progress.step / total)
            loss, parts = train_step(acc, model, optimizer, clip, batch, stage, cached, cfg, ctx)
            # A device-side flag: checked at log and checkpoint time, not every step (no host sync).
            bad |= ~torch.isfinite(loss.detach())
            progress.batches_done += 1
            window.add(batch["input_ids"].shape[0], {"total": loss, **parts})
            if not acc.sync_gradients:
                continue
            scheduler.step()
            progress.step += 1
            scheduled = objective.scheduled(ctx.fraction)
            if scheduled:  # every step: a schedule's shape is what one wants to see
                _log(session.writer, {f"{tag}/schedule/{k}": v for k, v in scheduled.items()}, progress.step)
            if progress.step % cfg.log_every == 0:
                _guard(bad, tag, epoch, progress, parts, ckpt)
                logs = window.flush(tag, scheduler.get_last_lr()[0], acc.num_processes)
                _log(session.writer, logs, progress.step)
                bar.set_postfix(loss=f"{logs[f'{tag}/train/total']:.4f}", refresh=False)
            if progress.step in evals:
                dev_pass(epoch, window, progress.batches_done == len(train_dl))
            if cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0:
                _guard(bad, tag, epoch, progress, parts, ckpt)
                save()
                acc.wait_for_everyone()
            if session.on_step is not None:
                session.on_step(tag, progress.step)
        _guard(bad, tag, epoch, progress, {}, ckpt)
        if window.batches:  # the epoch's last steps, since the last log or evaluation
            _log(session.writer, window.flush(tag, scheduler.get_last_lr()[0], acc.num_processes), progress.step)
        progress.epoch, progress.batches_done = epoch + 1, 0
        save()
        acc.wait_for_everyone()
    if stage.select == "metric" and ckpt.best.exists():
        acc.unwrap_model(model).load_state_dict(ckpt.load_model_state(best=True))
    acc.free_memory()


def evaluation_steps(steps_per_epoch: int, epochs: int, eval_every: int | None) -> list[int]:
    """The optimiser steps (counted from the stage's start) after which a stage evaluates dev: each epoch's last,
    or every `eval_every`-th and the stage's last."""
    total = steps_per_epoch * epochs
    if eval_every is None:
        return [steps_per_epoch * (e + 1) for e in range(epochs)]
    return sorted({*range(eval_every, total + 1, eval_every), total})


def train_step(acc: Accelerator, model: nn.Module, optimizer, clip: list[nn.Parameter], batch: dict,
               stage: StageInputs, cached: dict[str, torch.Tensor] | None, cfg: TrainConfig,
               ctx: LossContext | None = None) -> tuple[torch.Tensor, dict]:
    """One batch: the teachers' targets, the student's loss and its backward pass, and the update at the end of an
    accumulation. `ctx`: the stage's context at this step (default: the stage's own). Returns the loss and its
    terms (device tensors: reading them would sync)."""
    objective = stage.objective
    with acc.accumulate(model):
        with teacher_precision(acc, cfg):
            # A record holds the teacher on the unmasked inputs: a masking stage runs the teacher.
            stored = None if stage.mlm is not None else getattr(stage.data, "teacher_record", None)
            t_rec = (teacher_records(stage.teachers, batch, objective, cached, stored)
                     if objective.uses_teacher else None)
        loss, parts = model(batch, objective.needs, objective, t_rec, ctx or stage.ctx)
        acc.backward(loss)
        if acc.sync_gradients and stage.config.max_grad_norm > 0:
            acc.clip_grad_norm_(clip, stage.config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, parts


def optimizer_steps(batches: int, grad_accum: int) -> int:
    """Optimiser steps in an epoch of `batches`, as accelerate takes them: every `grad_accum` batches and at the
    end of the data (a last, shorter accumulation still steps)."""
    return max(1, math.ceil(batches / grad_accum))


def teacher_precision(accelerator: Accelerator, cfg: TrainConfig):
    """The context the teacher's targets are computed in: the run's autocast, or none (`teacher_precision: fp32`)."""
    return accelerator.autocast() if cfg.teacher_precision == "auto" else contextlib.nullcontext()


def make_optimizer(module: nn.Module, stage: StageConfig) -> torch.optim.Optimizer:
    """The stage's optimiser over the trainable parameters. AdamW: decoupled decay on matrices only (not biases
    and norms). Adadelta (Tang et al.): no decay, the config refuses any."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    if stage.optimizer == "adadelta":
        return torch.optim.Adadelta(trainable, lr=stage.lr, rho=stage.rho, weight_decay=0.0)
    decay = 0.01 if stage.weight_decay is None else stage.weight_decay
    groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": decay},
              {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=stage.lr)


def _guard(bad: torch.Tensor, tag: str, epoch: int, progress: Progress, parts: dict, ckpt: Checkpointer) -> None:
    if bool(bad):
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
        raise TrainingDiverged(
            f"stage {tag!r}, epoch {epoch + 1}, step {progress.step}: the loss became NaN or infinite "
            f"(last terms: {terms or 'n/a'}). Stopped without saving; the last good checkpoint is "
            f"{ckpt.last}. Lower the learning rate, check the data, or use fp32."
        )


class _Window:
    """The training losses summed since the last log (device tensors: read only when logged), and the batches and
    examples they came from, so that each logged value is the mean over exactly the batches it covers."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.batches, self.examples, self.t0 = 0, 0, time.perf_counter()

    def add(self, examples: int, terms: dict[str, torch.Tensor]) -> None:
        self.batches += 1
        self.examples += examples
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach()

    def flush(self, tag: str, lr: float, processes: int) -> dict[str, float]:
        logs = {f"{tag}/train/{k}": float(v) / self.batches for k, v in self.sums.items()}
        logs[f"{tag}/lr"] = lr
        logs[f"{tag}/examples_per_s"] = self.examples * processes / (time.perf_counter() - self.t0)
        self.__init__()
        return logs


def _log(writer, scalars: dict[str, float], step: int) -> None:
    if writer is None:
        return
    for k, v in scalars.items():
        writer.add_scalar(k, v, step)
