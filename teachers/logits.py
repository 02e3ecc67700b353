"""Teacher-output cache: the teacher's logits over a transfer set, computed once.

Stages whose losses read only the teacher's logits (prediction-layer distillation, Tang et al.'s logit
MSE) take them from here instead of running the teacher every epoch. The file
`<cache>/logits/<key>.safetensors` is keyed by the teacher's identity and the encoded data (examples,
tokenizer, max length), shared by every student and seed, rebuilt when either changes, and written by
temp-file-then-rename, so a reader never sees a half-written file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from distill.adaptor import head_rows, set_attention
from distill.config import TrainConfig
from distill.encoded import EncodedDataset
from distill.io import cache_root, load_tensors, save_tensors
from distill.needs import LOGITS_ONLY
from distill.resources import content_key
from distill.timing import duration
from distill.trainer import gather_rows, make_loader, teacher_precision


def logits_path(teacher_id: str, ds: EncodedDataset, precision: str = "auto") -> Path:
    ident = {"teacher": teacher_id, "data": ds.identity}
    if precision != "auto":
        ident["precision"] = precision
    return cache_root() / "logits" / f"{content_key(ident, 20)}.safetensors"


@torch.inference_mode()
def compute_logits(teacher: nn.Module, ds: EncodedDataset, accelerator: Accelerator, cfg: TrainConfig,
                   announce: Callable[[float], None] | None = None, progress: bool = True) -> torch.Tensor:
    """Teacher logits for every example of `ds`, in dataset order, batched under inference mode. `announce` gets the
    estimated total seconds once the first two batches are done: the first pays for warm-up, the second's time per
    token is extrapolated over the tokens left (batches come grouped by length, so later ones can be longer)."""
    set_attention(teacher, LOGITS_ONLY)
    loader, _ = make_loader(ds, cfg.eval_batch_size, 0, False, cfg)
    loader = accelerator.prepare(loader)
    # A row per example, or per word for token classification (`EncodedDataset.row_offsets`).
    out = torch.zeros(int(ds.row_offsets()[-1]), teacher.config.num_labels)
    left, marks = float(ds.lengths().sum()), [time.perf_counter()]
    shown = progress and accelerator.is_local_main_process
    for batch in tqdm(loader, desc="teacher logits", leave=False, disable=not shown):
        with teacher_precision(accelerator, cfg):
            logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"]).logits
        logits, rows = head_rows(logits, batch)
        # Word rows travel with their places among the dataset's rows (the collator's `rows`).
        logits, places, index = gather_rows(accelerator, logits.float(), batch.get("rows"), batch["index"], rows)
        out[(index if places is None else places).cpu()] = logits.cpu()  # a host copy: the marks time finished work
        marks.append(time.perf_counter())
        tokens = float(batch["attention_mask"].sum()) * accelerator.num_processes
        left -= tokens
        if announce is not None and (len(marks) == 3 or left <= 0 < len(marks) < 3):
            announce(marks[-1] - marks[0] + (marks[-1] - marks[-2]) / tokens * max(left, 0.0))
    return out


def cached_logits(teacher: nn.Module, teacher_id: str, ds: EncodedDataset, accelerator: Accelerator,
                  cfg: TrainConfig, log=print) -> torch.Tensor:
    path = logits_path(teacher_id, ds, cfg.teacher_precision)
    if path.exists():
        logits = load_tensors(path)["logits"]
        if logits.shape[0] == ds.row_offsets()[-1]:
            log(f"teacher logits: reusing {path}")
            return logits
    logits = compute_logits(teacher, ds, accelerator, cfg, announce=lambda seconds: log(
        f"teacher logits: computing {len(ds):,} examples once, estimated {duration(seconds)} on "
        f"{accelerator.device.type} (from the first batches) -> {path}"))
    if accelerator.is_main_process:
        save_tensors(path, {"logits": logits}, metadata={"teacher": teacher_id, "data": ds.identity})
    accelerator.wait_for_everyone()
    return logits
