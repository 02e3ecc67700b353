"""How a student's inputs are encoded: one definition used when the run encodes its data, saved beside the student
(`encoding.json`) and read back by `distill predict`, the export's parity check, `distill bench` and the model
card's snippet, so that a student is never scored at one length and served at another.

Truncation follows the run's own encoding: a pair is cut longest-first (the Hugging Face tokenizers' default for
`truncation=True`), the BiLSTM's words are cut at `max_length` words per sentence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from distill.errors import DistillError
from distill.io import read_json, write_json

FILE = "encoding.json"
QA_KEYS = ("doc_stride", "max_query_length", "n_best", "max_answer_length")
TRUNCATION = "longest_first"
# A student saved before `encoding.json` existed: what `distill predict` assumed then.
LEGACY_MAX_LENGTH = 128


@dataclass(frozen=True)
class InputEncoding:
    max_length: int  # tokens (word pieces, special tokens included), or words per sentence for the BiLSTM
    pair: bool  # trained on sentence pairs
    truncation: str = TRUNCATION
    # Extractive QA: windows over long contexts overlapping by `doc_stride` tokens, questions cut to
    # `max_query_length` tokens, and answers of at most `max_answer_length` tokens from the `n_best` candidates.
    doc_stride: int | None = None
    max_query_length: int | None = None
    n_best: int | None = None
    max_answer_length: int | None = None
    # SQuAD v2.0: the null threshold chosen on dev; a question is answered "" when its null score beats its best
    # span's by more.
    null_threshold: float | None = None

    def tokenizer_kwargs(self) -> dict:
        """The arguments every caller of a Hugging Face tokenizer passes (padding and tensors are the caller's)."""
        return tokenizer_kwargs(self.max_length)

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / FILE, {k: v for k, v in asdict(self).items() if v is not None})


def tokenizer_kwargs(max_length: int) -> dict:
    return {"truncation": TRUNCATION, "max_length": max_length}


def load_encoding(folder: str | Path, max_length: int | None = None) -> tuple[InputEncoding, str]:
    """The student's saved encoding, with `max_length` overriding its length when given; and where the length came
    from (for messages)."""
    path = Path(folder) / FILE
    if path.exists():
        raw = read_json(path)
        try:
            enc = InputEncoding(int(raw["max_length"]), bool(raw["pair"]), str(raw.get("truncation", TRUNCATION)),
                                **{k: int(raw[k]) for k in QA_KEYS if raw.get(k) is not None},
                                null_threshold=None if raw.get("null_threshold") is None else
                                float(raw["null_threshold"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DistillError(f"{path}: expected {{max_length: int, pair: bool, truncation: str}}, got {raw!r} "
                               f"({type(e).__name__}: {e})") from None
        source = str(path)
    else:
        enc, source = InputEncoding(LEGACY_MAX_LENGTH, False), f"no {FILE}: saved by an older distillery"
    if max_length is not None:
        if max_length < 1:
            raise DistillError(f"--max-length {max_length}: expected a positive number of tokens")
        return replace(enc, max_length=max_length), "--max-length"
    return enc, source
