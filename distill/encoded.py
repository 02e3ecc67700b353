"""Encoded datasets on disk, read through memory maps: a split (train, dev, test, an augmented set) tokenised once.

Holding 8M augmented sentence pairs as `Example` objects and lists of ints takes ~69 GB (213 bytes a token); here a
token costs 2 bytes of disk (3 for pairs) and only the pages a batch touches are in memory. Examples stream in,
are tokenised in chunks with the teacher's tokenizer (a progress bar shows the rate) and appended to

    <cache>/encoded/<key>/
        input_ids.bin        token ids, flat, uint16 (uint32 for vocabularies over 65,536)
        offsets.npy          int64, example r is input_ids[offsets[r]:offsets[r + 1]]
        token_type_ids.bin   uint8, same offsets (sentence pairs only)
        labels.npy           int64 (-100: unlabelled) or float32 (regression; 0.0 when unlabelled)
        tags.bin             int16, same offsets (token classification): each word's tag at its first piece,
                             -100 at every other position, -1 at a word whose tag is unknown (an augmented word)

Extractive QA: a row is a window over a context (`distill.qa_windows`), several per question; `labels.npy` holds
each window's gold (start, end) token ([CLS], 0, when the window lacks the answer), `windows.npy` each window's
question (its index in the split), and `spans.bin` / `spans.offsets.npy` every token's (start, end) character
span in the context, (-1, -1) outside it, for turning scores into answer text.
        example_ids.txt      one id per line, in order
        meta.json            counts, dtype, pad id, and the identity the teacher-logit cache is keyed by

The key digests the source (the examples' content, or an augmented file's bytes), the tokenizer and the max
length; the folder is written atomically, so an interrupted encoding leaves nothing and starts over. A student
with its own vocabulary (the BiLSTM) gets its word ids the same way, in `student-<key>/` inside the folder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from distill.input_encoding import tokenizer_kwargs
from distill.io import atomic_dir, cache_root, environ, read_json, write_json
from distill.loaders import fingerprint, fingerprint_row
from distill.ragged import Ragged, RaggedWriter, id_dtype
from distill.resources import content_key
from distill.tasks import Example

FORMAT = 1
# Examples tokenised per call: large enough for the fast tokenizer's batching, small enough to keep memory flat.
CHUNK = 8192

Source = Callable[[], Iterator[Example]]


def chunks(rows: Iterable, size: int | None = None) -> Iterator[list]:
    it = iter(rows)
    while part := list(islice(it, size or CHUNK)):
        yield part


class EncodedDataset(Dataset):
    """One encoded split. Items hold read-only views into the memory maps; `labels` is in memory (small, and a
    run may relabel augmented copies by the teacher) and so is `teacher_logits` when a stage uses the cache."""

    def __init__(self, folder: str | Path, source: Source | None = None):
        self.folder = Path(folder)
        meta = read_json(self.folder / "meta.json")
        self.meta = meta
        self.ids = Ragged(self.folder / "input_ids.bin", self.folder / "offsets.npy", np.dtype(meta["dtype"]))
        self.types = (Ragged(self.folder / "token_type_ids.bin", self.ids.offsets, np.uint8)
                      if meta["pair"] else None)
        self.labels = torch.from_numpy(np.load(self.folder / "labels.npy"))
        # Token classification: per-token tags beside the ids (the per-example `labels` then hold -100).
        self.tags = Ragged(self.folder / "tags.bin", self.ids.offsets, np.int16) if meta.get("tags") else None
        self._row_offsets: np.ndarray | None = None
        # Extractive QA: each row's question, and each token's character span in its context (flat pairs).
        self.qa = bool(meta.get("qa"))
        self.windows = np.load(self.folder / "windows.npy") if self.qa else None
        self.spans = Ragged(self.folder / "spans.bin", self.folder / "spans.offsets.npy", np.int32) if self.qa else None
        self.pad_id: int = meta["pad_id"]
        self.identity: str = meta["identity"]
        self.source = source  # streams the examples again (texts for a student's vocabulary); main process only
        self.student: tuple[Ragged, Ragged | None] | None = None
        self.teacher_logits: dict[str, torch.Tensor] = {}  # by teacher name
        self.teacher_record: dict = {}  # by teacher name: a stored record (teachers.record_cache) when a stage uses one

    def __getstate__(self) -> dict:
        return {**self.__dict__, "source": None}  # a DataLoader worker needs the maps, not the examples

    def __len__(self) -> int:
        return len(self.ids)

    def row_offsets(self) -> np.ndarray:
        """Where each example's rows of per-example outputs start (n + 1 offsets): one row per example, or for
        token classification one per word that has a piece (its first), as `adaptor.head_rows` takes them."""
        if self._row_offsets is None:
            if self.tags is None:
                self._row_offsets = np.arange(len(self) + 1, dtype=np.int64)
            else:
                marks = np.concatenate([[0], np.cumsum(self.tags.values != -100, dtype=np.int64)])
                self._row_offsets = marks[self.ids.offsets]
        return self._row_offsets

    def lengths(self) -> np.ndarray:
        return self.ids.lengths()

    def token_counts(self) -> np.ndarray:
        """How often each token id occurs in the dataset (masking weights)."""
        return self.ids.bincount()

    def example_ids(self) -> Iterator[str]:
        with open(self.folder / "example_ids.txt", encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")

    def texts(self) -> Iterator[str]:
        """Every text of the split, streamed from its source (first and second sentences)."""
        for ex in self._examples():
            yield ex.text_a
            if ex.text_b is not None:
                yield ex.text_b

    def _examples(self) -> Iterator[Example]:
        if self.source is None:
            raise RuntimeError(f"{self.folder}: opened without its source; its texts cannot be read")
        return self.source()

    def attach_student(self, encode: Callable[[str], list[int]], key: str, vocab_size: int, log=print) -> None:
        """Also encode the texts for a student with its own vocabulary (the BiLSTM's words), once per vocabulary
        (`key` names it): cached beside the teacher's ids and memory-mapped the same way."""
        folder = self.folder / f"student-{key}"
        if not (folder / "meta.json").exists():
            self._encode_student(folder, encode, vocab_size, log)
        meta = read_json(folder / "meta.json")
        dtype = np.dtype(meta["dtype"])
        a = Ragged(folder / "a.bin", folder / "a.offsets.npy", dtype)
        b = Ragged(folder / "b.bin", folder / "b.offsets.npy", dtype) if meta["pair"] else None
        self.student = (a, b)

    def _encode_student(self, folder: Path, encode, vocab_size: int, log) -> None:
        dtype = id_dtype(vocab_size)
        log(f"student vocabulary ids: encoding {len(self):,} examples -> {folder}")
        with atomic_dir(folder) as tmp:
            a = RaggedWriter(tmp / "a.bin", tmp / "a.offsets.npy", dtype)
            b = RaggedWriter(tmp / "b.bin", tmp / "b.offsets.npy", dtype)
            pair = False
            for part in tqdm(chunks(self._examples()), total=-(-len(self) // CHUNK), desc="student ids",
                             unit=" chunks", leave=False, delay=2.0):
                a.append([encode(ex.text_a) for ex in part])
                pair = pair or any(ex.text_b is not None for ex in part)
                b.append([encode(ex.text_b or "") for ex in part])
            if a.close() != len(self):
                raise RuntimeError(f"{self.folder}: its source gave another number of examples than it holds")
            b.close()
            write_json(tmp / "meta.json", {"dtype": dtype.name, "pair": pair, "examples": len(self)})

    def __getitem__(self, i: int) -> dict:
        ids = self.ids.row(i)
        item = {"input_ids": ids,
                "token_type_ids": self.types.row(i) if self.types is not None else np.zeros(len(ids), np.uint8),
                "labels": self.labels[i] if self.tags is None else self.tags.row(i), "index": i}
        if self.tags is not None:
            item["row_start"] = int(self.row_offsets()[i])
        if self.student is not None:
            item["student_ids"] = self.student[0].row(i)
            if self.student[1] is not None:
                item["student_ids_b"] = self.student[1].row(i)
        return item


def encode_examples(examples: list[Example], tokenizer, max_length: int, regression: bool = False,
                    log=print, what: str = "examples", windows: tuple[int, int] | None = None) -> EncodedDataset:
    """Examples held in memory (a task split), encoded once and cached by their content. `windows`: extractive QA's
    (doc_stride, max_query_length), its questions then encoded as windows over their contexts."""
    if windows is not None:
        return _encode_qa(examples, tokenizer, max_length, windows, log, what)
    return encode_stream(lambda: iter(examples), {"examples": fingerprint(examples), "n": len(examples)},
                         tokenizer, max_length, regression, log, what, total=len(examples))


def _encode_qa(examples: list[Example], tokenizer, max_length: int, windows: tuple[int, int], log,
               what: str) -> EncodedDataset:
    ident = {"examples": fingerprint(examples), "n": len(examples), "windows": list(windows)}
    folder = encoded_folder(ident, tokenizer, max_length, False)
    if not (folder / "meta.json").exists():
        build_qa(folder, examples, tokenizer, max_length, windows, log, what)
    return EncodedDataset(folder, lambda: iter(examples))


def build_qa(folder: Path, examples: list[Example], tokenizer, max_length: int, windows: tuple[int, int], log=print,
             what: str = "examples") -> None:
    """Write the QA questions `examples` to `folder` as windows (the layout in the module's docstring)."""
    from distill.qa_windows import encode_windows

    log(f"encoding {what} as windows of {max_length} tokens (overlap {windows[0]}) -> {folder}")
    digest = hashlib.sha256()
    with tokenizer_threads(), atomic_dir(folder) as tmp, \
            open(tmp / "example_ids.txt", "w", encoding="utf-8") as names:
        ids = RaggedWriter(tmp / "input_ids.bin", tmp / "offsets.npy", id_dtype(len(tokenizer)))
        types = RaggedWriter(tmp / "token_type_ids.bin", tmp / "types.offsets.npy", np.uint8)
        spans = RaggedWriter(tmp / "spans.bin", tmp / "spans.offsets.npy", np.int32)
        labels, owner, tokens = [], [], 0
        for lo, part in enumerate(tqdm(list(chunks(examples)), desc=f"encoding {what}", leave=False, delay=2.0)):
            f = encode_windows(part, tokenizer, max_length, windows[0], windows[1])
            ids.append(f.input_ids)
            types.append(f.token_type_ids)
            spans.append([[x for span in row for x in span] for row in f.context_spans])
            labels.append(np.array([f.start_positions, f.end_positions], dtype=np.int64).T.reshape(-1, 2))
            owner.append(np.asarray(f.example, dtype=np.int64) + lo * CHUNK)
            tokens += sum(len(x) for x in f.input_ids)
            names.write("".join(f"{part[k].id}\n" for k in f.example))
            for ex in part:
                digest.update(fingerprint_row(ex))
        n = ids.close()
        types.close()
        spans.close()
        (tmp / "types.offsets.npy").unlink()
        np.save(tmp / "labels.npy", np.concatenate(labels) if labels else np.zeros((0, 2), np.int64))
        np.save(tmp / "windows.npy", np.concatenate(owner) if owner else np.zeros(0, np.int64))
        identity = (f"{digest.hexdigest()[:16]}:{tokenizer.name_or_path}:{len(tokenizer)}:{max_length}:"
                    f"qa{windows[0]},{windows[1]}")
        write_json(tmp / "meta.json", {"format": FORMAT, "examples": n, "tokens": tokens, "pair": True,
                                       "dtype": id_dtype(len(tokenizer)).name,
                                       "pad_id": tokenizer.pad_token_id or 0, "regression": False,
                                       "max_length": max_length, "tokenizer": tokenizer.name_or_path,
                                       "identity": identity, "qa": True, "questions": len(examples)})
    log(f"encoded {what}: {len(examples):,} questions in {n:,} windows")


def encode_stream(source: Source, source_identity: dict, tokenizer, max_length: int, regression: bool = False,
                  log=print, what: str = "examples", total: int | None = None) -> EncodedDataset:
    """Examples streamed from `source` (e.g. an augmented JSONL file, never held whole), encoded once and cached;
    `source_identity` must change whenever the examples do (a digest of their file, of their content)."""
    folder = encoded_folder(source_identity, tokenizer, max_length, regression)
    if not (folder / "meta.json").exists():
        build(folder, source(), tokenizer, max_length, regression, log, what, total)
    return EncodedDataset(folder, source)


def tokenizer_threads():
    """Let the fast tokenizer use every core while encoding (1.5-2x on 2 cores). The Makefile turns its threads off
    because a DataLoader worker forked after they ran could deadlock; the setting is read per call, so it can be
    turned on for the encoding alone."""
    return environ("TOKENIZERS_PARALLELISM", "true")


def encoded_folder(source_identity: dict, tokenizer, max_length: int, regression: bool) -> Path:
    """Where examples with this identity are (or will be) encoded for this tokenizer and max length."""
    ident = {"format": FORMAT, "source": source_identity, "tokenizer": [tokenizer.name_or_path, len(tokenizer)],
             "max_length": max_length, "regression": regression}
    return cache_root() / "encoded" / content_key(ident)


def build(folder: Path, examples: Iterable[Example], tokenizer, max_length: int, regression: bool, log=print,
          what: str = "examples", total: int | None = None, progress: bool = True) -> None:
    dtype = id_dtype(len(tokenizer))
    unlabelled = 0.0 if regression else -100
    digest, labels, pair, tokens = hashlib.sha256(), [], False, 0
    log(f"encoding {what} (max_length {max_length}) -> {folder}")
    with tokenizer_threads(), atomic_dir(folder) as tmp, \
            open(tmp / "example_ids.txt", "w", encoding="utf-8") as names, \
            tqdm(total=total, desc=f"encoding {what}", unit=" examples", leave=False, delay=2.0,
                 disable=not progress) as bar:
        ids = RaggedWriter(tmp / "input_ids.bin", tmp / "offsets.npy", dtype)
        types = RaggedWriter(tmp / "token_type_ids.bin", tmp / "types.offsets.npy", np.uint8)
        tags = RaggedWriter(tmp / "tags.bin", tmp / "tags.offsets.npy", np.int16)
        tagged = None
        for part in chunks(examples):
            tagged = _tagged(part, tagged)
            second = [ex.text_b for ex in part]
            has_b = any(t is not None for t in second)
            if tagged:
                enc = tokenizer([ex.text_a.split(" ") for ex in part], is_split_into_words=True,
                                return_attention_mask=False, **tokenizer_kwargs(max_length))
                tags.append([piece_tags(ex.label, enc.word_ids(r)) for r, ex in enumerate(part)])
            else:
                enc = tokenizer([ex.text_a for ex in part], second if has_b else None, return_attention_mask=False,
                                **tokenizer_kwargs(max_length))
            ids.append(enc["input_ids"])
            types.append(enc.get("token_type_ids") or [np.zeros(len(x), np.uint8) for x in enc["input_ids"]])
            pair = pair or has_b
            tokens += sum(len(x) for x in enc["input_ids"])
            labels.append(np.array([unlabelled if ex.label is None or tagged else ex.label for ex in part],
                                   dtype=np.float32 if regression else np.int64))
            for ex in part:
                digest.update(fingerprint_row(ex))
            names.write("".join(f"{ex.id}\n" for ex in part))
            bar.update(len(part))
        n = ids.close()
        types.close()
        tags.close()
        (tmp / "types.offsets.npy").unlink()  # the same offsets as the ids'
        (tmp / "tags.offsets.npy").unlink()
        if not tagged:
            (tmp / "tags.bin").unlink()
        if not pair:
            (tmp / "token_type_ids.bin").unlink()
        np.save(tmp / "labels.npy", np.concatenate(labels) if labels else np.zeros(0, np.float32 if regression
                                                                                    else np.int64))
        # The identity the teacher-logit cache is keyed by: the examples' content digest (as `fingerprint`),
        # tokenizer and max length, so caches made before this format stay valid.
        identity = f"{digest.hexdigest()[:16]}:{tokenizer.name_or_path}:{len(tokenizer)}:{max_length}"
        write_json(tmp / "meta.json", {"format": FORMAT, "examples": n, "tokens": tokens, "pair": pair,
                                       "dtype": dtype.name, "pad_id": tokenizer.pad_token_id or 0,
                                       "regression": regression, "max_length": max_length, "tags": bool(tagged),
                                       "tokenizer": tokenizer.name_or_path, "identity": identity})
    log(f"encoded {what}: {n:,} examples, {tokens:,} tokens")


def _tagged(part: list[Example], before: bool | None) -> bool:
    """Whether a chunk holds tagged sentences (token classification: a tuple of tags per example), the same for
    every example of a stream."""
    kinds = {isinstance(ex.label, tuple) for ex in part}
    if len(kinds) > 1 or (before is not None and kinds != {before}):
        raise ValueError("a stream mixes tagged sentences (token classification) with other examples")
    return kinds.pop()


def piece_tags(tags: tuple[int, ...], word_ids: list[int | None]) -> list[int]:
    """Each word's tag at its first word piece and -100 (ignored) at later pieces and special tokens, as Hugging
    Face's token-classification examples align them; words cut off by truncation have no piece."""
    out, previous = [], None
    for w in word_ids:
        out.append(-100 if w is None or w == previous else int(tags[w]))
        previous = w
    return out
