"""Resumable training state, written atomically: weights as safetensors, optimizer state loaded
with `weights_only=True`, and a JSON record of where the run stands."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from distill.io import atomic_dir, clear_stale, load_tensors, save_tensors, write_json


@dataclass
class Progress:
    """Where a multi-stage run stands. `stage` is the stage in progress (== number of stages when done);
    `batches_done` counts batches of the current epoch already trained on."""

    stage: int = 0
    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    best: float | None = None
    history: list[dict] = field(default_factory=list)


class Checkpointer:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @property
    def last(self) -> Path:
        return self.folder / "last"

    @property
    def best(self) -> Path:
        return self.folder / "best.safetensors"

    def exists(self) -> bool:
        clear_stale(self.last)
        return (self.last / "progress.json").exists()

    def save(self, model_state: dict[str, torch.Tensor], progress: Progress, optimizer=None, scheduler=None) -> None:
        with atomic_dir(self.last) as tmp:
            save_tensors(tmp / "model.safetensors", model_state)
            rng = {"cpu": torch.get_rng_state()}
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng[f"cuda{i}"] = s
            save_tensors(tmp / "rng.safetensors", rng)
            if optimizer is not None:
                torch.save({"optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else None},
                           tmp / "optimizer.pt")
            write_json(tmp / "progress.json", asdict(progress))

    def save_best(self, model_state: dict[str, torch.Tensor]) -> None:
        save_tensors(self.best, model_state)

    def load_progress(self) -> Progress:
        return Progress(**json.loads((self.last / "progress.json").read_text()))

    def load_model_state(self, best: bool = False) -> dict[str, torch.Tensor]:
        return load_tensors(self.best if best else self.last / "model.safetensors")

    def load_optimizer(self, optimizer, scheduler=None) -> bool:
        path = self.last / "optimizer.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        return True

    def restore_rng(self) -> None:
        rng = load_tensors(self.last / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
