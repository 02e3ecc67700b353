"""Rows of different lengths (token ids of many sequences) on disk: one flat binary file of values and an int64
offsets array (row r is values[offsets[r]:offsets[r + 1]]), read back through `numpy.memmap`.

Written row batch by row batch, so a writer's memory stays flat whatever the number of rows; read lazily, so a
dataset holding a reader pickles (into DataLoader workers) as two paths, not as its contents."""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every token id: BERT's 30,522 ids fit in two bytes."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class RaggedWriter:
    """Appends rows to `values` (a .bin file) and, on `close`, writes their offsets to `offsets` (a .npy file)."""

    def __init__(self, values: Path, offsets: Path, dtype: np.dtype | type):
        self.values, self.offsets_path, self.dtype = Path(values), Path(offsets), np.dtype(dtype)
        self._file = open(self.values, "wb")  # noqa: SIM115 (closed by `close`, which callers always reach)
        self._lengths: list[np.ndarray] = []
        self._limit = np.iinfo(self.dtype).max if self.dtype.kind == "u" else None

    def append(self, rows: list[list[int]] | list[np.ndarray]) -> None:
        if not rows:
            return
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        if self._limit is not None and len(flat) and (flat.max() > self._limit or flat.min() < 0):
            raise ValueError(f"{self.values}: value out of range for {self.dtype} "
                             f"(min {flat.min()}, max {flat.max()})")
        self._file.write(flat.astype(self.dtype).tobytes())
        self._lengths.append(lengths)

    def close(self) -> int:
        """Finish both files; returns the number of rows."""
        self._file.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(self.offsets_path, offsets)
        return len(lengths)


class Ragged:
    """Read side of `RaggedWriter`: `row(i)` is a read-only view into the memory-mapped values."""

    def __init__(self, values: Path, offsets: Path | np.ndarray, dtype: np.dtype | type):
        self.values_path, self.dtype = Path(values), np.dtype(dtype)
        self.offsets = np.load(offsets) if not isinstance(offsets, np.ndarray) else offsets
        self._values: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            # An empty file cannot be mapped; no rows, or only empty ones, need no values.
            if self.offsets[-1] == 0:
                self._values = np.zeros(0, dtype=self.dtype)
            else:
                self._values = np.memmap(self.values_path, dtype=self.dtype, mode="r", shape=(int(self.offsets[-1]),))
        return self._values

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_values": None}  # a worker maps the file itself

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def bincount(self, minlength: int = 0, chunk: int = 1 << 24) -> np.ndarray:
        """How often each value occurs, read in chunks (np.bincount of the whole map would copy it to int64)."""
        counts = np.zeros(minlength, dtype=np.int64)
        for start in range(0, len(self.values), chunk):
            part = np.bincount(self.values[start:start + chunk], minlength=len(counts))  # never shorter
            part[:len(counts)] += counts
            counts = part
        return counts
