"""Atomic writes: a reader never sees a half-written file or folder, and a failed write
leaves the previous version in place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def cache_root() -> Path:
    """Where fine-tuned teachers, adapted masked LMs and augmented sets are cached ($DISTILLERY_CACHE)."""
    return Path(os.environ.get("DISTILLERY_CACHE", Path.home() / ".cache" / "distillery")).expanduser()


@contextlib.contextmanager
def environ(name: str, value: str) -> Iterator[None]:
    """The environment variable `name` set to `value` inside the block, then put back as it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def cache_at(folder: str | Path):
    """The cache root ($DISTILLERY_CACHE) moved to `folder` inside the block."""
    return environ("DISTILLERY_CACHE", str(folder))


def _ordinary_mode(path: Path, mode: int) -> None:
    """Give a temporary from mkstemp/mkdtemp (0600/0700) the permissions an ordinary write would get."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        _ordinary_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def clear_stale(path: str | Path) -> None:
    """Tidy what a killed writer left beside `path`: put back a folder moved aside by `atomic_dir` whose
    replacement never arrived, and delete half-written temporaries. Call only when nothing else can be
    writing `path` (a resume, or a merge once every part exists)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    aside = sorted(path.parent.glob(f".{path.name}.*.old"))
    if aside and not path.exists():
        try:
            os.replace(aside.pop(), path)  # moved aside whole, so complete
        except FileNotFoundError:  # another process of the same resumed run put it back first
            pass
    for p in [*aside, *path.parent.glob(f".{path.name}.*.tmp")]:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def file_digest(path: str | Path, length: int = 16) -> str:
    """sha256 of a file's bytes, read in blocks (a content key for a file too large to hold)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:length]


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().contiguous().cpu()
        # Tied weights (a masked LM's decoder and word embeddings) share storage, which safetensors refuses.
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), v.shape)
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata=metadata)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it takes `path`'s place.

    The old folder is moved aside before the new one is renamed in, and deleted only afterwards,
    so at every moment `path` is either the complete old folder or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _ordinary_mode(tmp, 0o777)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
