"""W_h / W_e travel with a student: a general-distillation student is saved with the projections it learned
(`projections.safetensors` in its folder), and task distillation from it starts from them, as TinyBERT's task
distillation starts from the General TinyBERT's `fit_dense` (one map shared by hidden states and embeddings)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.io import load_tensors, save_tensors

FILE = "projections.safetensors"


def save_projections(folder: Path, projections: nn.ModuleDict) -> None:
    if len(projections):
        save_tensors(folder / FILE, projections.state_dict())


def _checkpoint_files(init: str) -> list[Path]:
    """The files of a student checkpoint that may hold projections: ours, or a General TinyBERT's weights (a
    local folder, or a hub name already in the local hub cache)."""
    names = (FILE, "model.safetensors", "pytorch_model.bin")
    folder = Path(init).expanduser()
    if folder.is_dir():
        return [folder / n for n in names if (folder / n).exists()]
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    found = [try_to_load_from_cache(init, n) for n in names]
    return [Path(f) for f in found if isinstance(f, str)]


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".bin":
        return torch.load(path, map_location="cpu", weights_only=True)
    return load_tensors(path)


def carry_projections(init: str, projections: nn.ModuleDict) -> str | None:
    """Load W_h / W_e saved with the checkpoint `init` into `projections` (same shapes required); returns where
    they came from, or None when the checkpoint has none."""
    if not len(projections):
        return None
    for path in _checkpoint_files(init):
        state = _read(path)
        if path.name == FILE:
            ours = state
        else:
            fit = {k.split("fit_dense.", 1)[1]: v for k, v in state.items() if k.split(".")[-2:-1] == ["fit_dense"]}
            if not fit:
                continue
            ours = {f"{name}.{k}": v for name in projections for k, v in fit.items()}
        shared = {k.split(".", 1)[1]: v for k, v in ours.items() if k.startswith("shared.")}
        for name, module in projections.items():
            mine = {k.split(".", 1)[1]: v for k, v in ours.items() if k.startswith(name + ".")} or shared
            if not mine:
                continue
            if any(mine[k].shape != p.shape for k, p in module.state_dict().items() if k in mine):
                return None  # another width pairing: the saved maps do not apply
            module.load_state_dict(mine)
        return str(path)
    return None
