"""The teacher's intermediate record over a transfer set, computed once: every layer's hidden states and pre-softmax
attention scores at each example's own tokens, memory-mapped.

TinyBERT's intermediate step reads the teacher's embeddings, hidden states and attention scores in every step of
every epoch of every seed and variant of a sweep, and the teacher is frozen and in eval mode, so each forward pass
repeats the first. `train.teacher_record` stores them at `<cache>/records/<key>/`, keyed like the logit cache by
the teacher's identity and the encoded data (plus the stored precision), and a stage reads a batch's record from
the maps instead of running the teacher. Only each example's valid tokens are stored (the losses read no padding),
ragged: hidden states as (tokens, layers + 1, width), scores as one (layers, heads, length, length) block per
example. Written to a temporary folder and renamed, so a reader never sees a half-written record."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from distill.adaptor import Record, forward_record, set_attention
from distill.config import TrainConfig
from distill.encoded import EncodedDataset
from distill.errors import DistillError
from distill.io import atomic_dir, cache_root, read_json, write_json
from distill.needs import Needs
from distill.resources import content_key
from distill.trainer import make_loader, teacher_precision

DTYPES = {"fp16": np.float16, "fp32": np.float32}
# What a record can stand in for: a loss that reads other outputs (queries/keys/values, masked-LM logits) runs
# the teacher.
RECORDED = Needs(hidden=True, attention=True)


def record_folder(teacher_id: str, ds: EncodedDataset, precision: str, computed_in: str = "no") -> Path:
    """`precision`: how the record is stored; `computed_in`: the precision the teacher ran at (a record computed
    under bf16 autocast is not an fp32 teacher's)."""
    return cache_root() / "records" / content_key({"teacher": teacher_id, "data": ds.identity,
                                                   "precision": precision, "computed_in": computed_in}, 20)


def record_bytes(teacher: nn.Module, ds: EncodedDataset, precision: str) -> int:
    """The record's size on disk: tokens x (layers + 1) x width hidden values and layers x heads x sum(length^2)
    scores."""
    c, lengths = teacher.config, ds.lengths().astype(np.int64)
    values = (int(lengths.sum()) * (c.num_hidden_layers + 1) * c.hidden_size
              + c.num_hidden_layers * c.num_attention_heads * int((lengths ** 2).sum()))
    return values * np.dtype(DTYPES[precision]).itemsize


class TeacherRecord:
    """A stored record: `batch(index, width)` gives a Record for a batch of dataset rows padded to `width` tokens
    (zeros at padding), as the teacher's forward pass on that padded batch gives at every valid position."""

    holds = RECORDED

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta = read_json(self.folder / "meta.json")
        self.meta = meta
        self.token_offsets = np.load(self.folder / "token_offsets.npy")
        self.score_offsets = np.load(self.folder / "score_offsets.npy")
        dtype = np.dtype(meta["dtype"])
        self.hidden = np.memmap(self.folder / "hidden.bin", dtype=dtype, mode="r",
                                shape=(int(self.token_offsets[-1]), meta["hidden_layers"], meta["width"]))
        self.scores = np.memmap(self.folder / "scores.bin", dtype=dtype, mode="r", shape=(int(self.score_offsets[-1]),))
        self.logits = torch.from_numpy(np.load(self.folder / "logits.npy"))

    def __len__(self) -> int:
        return len(self.token_offsets) - 1

    def batch(self, index: torch.Tensor, width: int, device: torch.device) -> Record:
        m = self.meta
        rows = index.tolist()
        hidden = np.zeros((len(rows), m["hidden_layers"], width, m["width"]), dtype=np.float32)
        scores = np.zeros((len(rows), m["layers"], m["heads"], width, width), dtype=np.float32)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            a, b = self.token_offsets[i], self.token_offsets[i + 1]
            n = b - a
            hidden[r, :, :n] = self.hidden[a:b].transpose(1, 0, 2)
            scores[r, :, :, :n, :n] = self.scores[self.score_offsets[i]:self.score_offsets[i + 1]].reshape(
                m["layers"], m["heads"], n, n)
            mask[r, :n] = 1
        h = torch.from_numpy(hidden).to(device)
        s = torch.from_numpy(scores).to(device)
        return Record(logits=self.logits[index.cpu()].to(device), attention_mask=torch.from_numpy(mask).to(device),
                      hidden_states=tuple(h[:, k] for k in range(m["hidden_layers"])),
                      attention_scores=tuple(s[:, k] for k in range(m["layers"])))


@torch.inference_mode()
def build_record(teacher: nn.Module, ds: EncodedDataset, accelerator: Accelerator, cfg: TrainConfig, folder: Path,
                 precision: str, progress: bool = True) -> None:
    """Run the teacher once over `ds` and store its record at `folder` (one process: the maps are written in
    dataset order)."""
    dtype = DTYPES[precision]
    lengths = ds.lengths().astype(np.int64)
    c = teacher.config
    layers, heads, width = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    token_offsets = np.concatenate([[0], np.cumsum(lengths)])
    score_offsets = np.concatenate([[0], np.cumsum(layers * heads * lengths ** 2)])
    set_attention(teacher, RECORDED)
    loader, _ = make_loader(ds, cfg.eval_batch_size, 0, False, cfg)
    logits = np.zeros((len(ds), c.num_labels), dtype=np.float32)
    with atomic_dir(folder) as tmp:
        hidden = np.memmap(tmp / "hidden.bin", dtype=dtype, mode="w+", shape=(int(token_offsets[-1]), layers + 1,
                                                                                 width))
        scores = np.memmap(tmp / "scores.bin", dtype=dtype, mode="w+", shape=(int(score_offsets[-1]),))
        for batch in tqdm(loader, desc="teacher record", leave=False, disable=not progress):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with teacher_precision(accelerator, cfg):
                rec = forward_record(teacher, batch, RECORDED)
            h = torch.stack(rec.hidden_states, 1).float().cpu().numpy()  # (batch, layers + 1, seq, width)
            s = torch.stack(rec.attention_scores, 1).float().cpu().numpy()  # (batch, layers, heads, seq, seq)
            logits[batch["index"].cpu().numpy()] = rec.logits.float().cpu().numpy()
            for r, i in enumerate(batch["index"].tolist()):
                n = int(lengths[i])
                hidden[token_offsets[i]:token_offsets[i + 1]] = h[r, :, :n].transpose(1, 0, 2)
                scores[score_offsets[i]:score_offsets[i + 1]] = s[r, :, :, :n, :n].reshape(-1)
        hidden.flush()
        scores.flush()
        del hidden, scores
        np.save(tmp / "token_offsets.npy", token_offsets)
        np.save(tmp / "score_offsets.npy", score_offsets)
        np.save(tmp / "logits.npy", logits)
        write_json(tmp / "meta.json", {"dtype": np.dtype(dtype).name, "layers": layers, "heads": heads,
                                       "hidden_layers": layers + 1, "width": width, "examples": len(ds),
                                       "data": ds.identity})


def cached_record(teacher: nn.Module, teacher_id: str, ds: EncodedDataset, accelerator: Accelerator,
                  cfg: TrainConfig, log=print) -> TeacherRecord:
    """The teacher's record over `ds`, from the cache or computed once now (by the main process; the others wait
    and open it)."""
    precision = cfg.teacher_record
    computed_in = "no" if cfg.teacher_precision == "fp32" else str(accelerator.mixed_precision)
    folder = record_folder(teacher_id, ds, precision, computed_in)
    # Every process enters the barrier whatever it sees on disk: deciding apart would pair the barriers wrongly.
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            if (folder / "meta.json").exists():
                log(f"teacher record: reusing {folder}")
            else:
                size = record_bytes(teacher, ds, precision)
                free = shutil.disk_usage(cache_root() if cache_root().exists() else Path.cwd()).free
                if size * 1.05 > free:
                    raise DistillError(f"train.teacher_record: the record over {len(ds):,} examples needs "
                                       f"{size / 2 ** 30:.1f} GiB and {cache_root()} has {free / 2 ** 30:.1f} GiB "
                                       "free; free space, set DISTILLERY_CACHE to a larger disk, use fp16, or "
                                       "set train.teacher_record: off")
                log(f"teacher record: one teacher pass over {len(ds):,} examples, {size / 2 ** 30:.2f} GiB "
                    f"({precision}) -> {folder}")
                build_record(teacher, ds, accelerator, cfg, folder, precision)
    return TeacherRecord(folder)
