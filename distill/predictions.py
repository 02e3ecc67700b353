"""Per-example predictions of a finished task run: `predictions.safetensors` in the run folder.

For every evaluation split: the student's logits, the teacher's logits (from the teacher-output cache, so
computed once per cached teacher and split) and the gold labels where the split has them, one row per example
in the split's order, with the example ids in the file's metadata. Reports and later analyses (paired
bootstraps, error analysis) read this file and need no re-run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.errors import DistillError
from distill.io import load_tensors, save_tensors

FILE = "predictions.safetensors"
FORMAT = "1"


class PredictionsError(DistillError):
    pass


@dataclass
class SplitPredictions:
    ids: list[str]
    student: np.ndarray  # (examples, outputs) float32 logits; one output column for regression
    labels: np.ndarray | None = None  # gold labels (int64 classes, float32 scores); None when the split has none
    teacher: np.ndarray | None = None
    # Token classification: example i's rows (one per word) are offsets[i]:offsets[i + 1]; None: a row per example.
    offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids) if self.offsets is None else int(self.offsets[-1])
        if self.offsets is not None and len(self.offsets) != len(self.ids) + 1:
            raise PredictionsError(f"offsets: {len(self.offsets)} for {len(self.ids)} example ids (expected one more)")
        for name in ("student", "labels", "teacher"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise PredictionsError(f"{name}: {len(arr)} rows for {n} rows of {len(self.ids)} example ids")

    @property
    def row_example(self) -> np.ndarray:
        """Each row's example (its index among `ids`)."""
        n = len(self.ids)
        return np.arange(n) if self.offsets is None else np.repeat(np.arange(n), np.diff(self.offsets))


def write_predictions(path: str | Path, splits: dict[str, SplitPredictions], meta: dict | None = None) -> Path:
    """Atomically write `splits` (split name -> predictions) to `path` (a file, or a run folder)."""
    path = Path(path)
    path = path / FILE if path.suffix != ".safetensors" else path
    tensors, metadata = {}, {"format": FORMAT, **{k: json.dumps(v) for k, v in (meta or {}).items()}}
    for split, p in splits.items():
        tensors[f"{split}/student"] = torch.from_numpy(np.ascontiguousarray(p.student, dtype=np.float32))
        if p.teacher is not None:
            tensors[f"{split}/teacher"] = torch.from_numpy(np.ascontiguousarray(p.teacher, dtype=np.float32))
        if p.labels is not None:
            tensors[f"{split}/labels"] = torch.from_numpy(np.ascontiguousarray(p.labels))
        if p.offsets is not None:
            tensors[f"{split}/offsets"] = torch.from_numpy(np.ascontiguousarray(p.offsets, dtype=np.int64))
        metadata[f"ids/{split}"] = json.dumps(p.ids)
    save_tensors(path, tensors, metadata=metadata)
    return path


def read_predictions(path: str | Path) -> tuple[dict[str, SplitPredictions], dict]:
    """(split name -> predictions, metadata) from a run folder or a predictions file."""
    from safetensors import safe_open

    path = Path(path)
    path = path / FILE if path.is_dir() else path
    if not path.exists():
        raise PredictionsError(f"{path}: no per-example predictions (runs before distillery's issue 13 have "
                               "none); re-run the run to make them")
    with safe_open(str(path), framework="pt") as f:
        raw_meta = f.metadata() or {}
    if raw_meta.get("format") != FORMAT:
        raise PredictionsError(f"{path}: predictions format {raw_meta.get('format')!r}; expected {FORMAT!r}")
    tensors = load_tensors(path)
    splits = {}
    for key, text in raw_meta.items():
        if not key.startswith("ids/"):
            continue
        split = key.removeprefix("ids/")

        def get(name: str, split: str = split) -> np.ndarray | None:
            t = tensors.get(f"{split}/{name}")
            return None if t is None else t.numpy()

        splits[split] = SplitPredictions(json.loads(text), get("student"), get("labels"), get("teacher"),
                                         get("offsets"))
    meta = {k: json.loads(v) for k, v in raw_meta.items() if k != "format" and not k.startswith("ids/")}
    return splits, meta
