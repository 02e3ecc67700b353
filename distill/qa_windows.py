"""Extractive QA examples as model inputs: [CLS] question [SEP] context-window [SEP], a context longer than one
window cut into overlapping windows, each with the token positions of its answer span (or of [CLS]) and each
token's characters in the context, from which predicted spans are read back (`qa_answers`).

As Hugging Face's examples/pytorch/question-answering/run_qa.py (`prepare_train_features`), plus BERT run_squad.py's
`max_query_length` cut of long questions."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.labels import DataError
from distill.tasks import Example

# [CLS] question [SEP] context [SEP]
_SPECIAL_TOKENS = 3
# Examples per tokenizer call: batched calls are much faster, and bounded ones keep the memory of one call small.
_CHUNK = 1000
NOT_CONTEXT = (-1, -1)


@dataclass
class QAFeatures:
    """One entry per window (feature), in example order, an example's windows in context order."""

    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] = field(default_factory=list)
    # The answer's first and last token; both 0, the [CLS] position, when the window does not hold the whole
    # (first) answer or the question has none.
    start_positions: list[int] = field(default_factory=list)
    end_positions: list[int] = field(default_factory=list)
    # The index, in the examples encoded, of the example the window comes from.
    example: list[int] = field(default_factory=list)
    # Per token, its (start, end) characters in the context; NOT_CONTEXT (-1, -1) for question and special tokens.
    context_spans: list[list[tuple[int, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        # The windows' spans: what post-processing reads (an encoded split gives it without the ids).
        return len(self.context_spans)


def encode_windows(examples: list[Example], tokenizer, max_length: int, doc_stride: int,
                   max_query_length: int = 64) -> QAFeatures:
    """Each example (text_a the question, text_b the context) as one or more windows of at most `max_length`
    tokens. Questions are first cut to `max_query_length` tokens (BERT run_squad's default 64).

    `doc_stride` is the Hugging Face tokenizer's `stride`: the number of context tokens consecutive windows SHARE,
    so each window starts (room - doc_stride) tokens after the previous one, where room = max_length - question
    tokens - 3. HF run_qa's `--doc_stride 128` means this. BERT's and TinyBERT's run_squad.py `--doc_stride 128`
    means the STEP between window starts instead (with max_seq_length 384 and a 64-token question: step 128, overlap
    317 - 128 = 189); to reproduce it, pass doc_stride = room - step.

    Training positions follow the FIRST gold answer, as both scripts do ([CLS] for a question without answers,
    or with `answers` None, unlabelled). `tokenizer` must be a fast (Rust)
    tokenizer, which gives character offsets."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"encode_windows needs a fast tokenizer (character offsets); got {type(tokenizer).__name__}")
    if max_query_length < 1 or doc_stride < 0:
        raise DataError(f"encode_windows: max_query_length {max_query_length} and doc_stride {doc_stride}: "
                        "expected max_query_length >= 1 and doc_stride >= 0")
    for i, ex in enumerate(examples):
        if ex.text_b is None:
            raise DataError(f"example {i} ({ex.id!r}): no context (text_b); expected a question and its context")
    out = QAFeatures()
    for lo in range(0, len(examples), _CHUNK):
        _encode_chunk(examples[lo:lo + _CHUNK], lo, tokenizer, max_length, doc_stride, max_query_length, out)
    return out


def _encode_chunk(chunk: list[Example], offset: int, tokenizer, max_length: int, doc_stride: int,
                  max_query_length: int, out: QAFeatures) -> None:
    # HF run_qa strips the question's leading whitespace: some tokenizers turn it into tokens that use up room.
    questions = [ex.text_a.lstrip() for ex in chunk]
    alone = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    for k, ex in enumerate(chunk):
        spans = alone["offset_mapping"][k]
        if len(spans) > max_query_length:
            # Cut the text at the end of the last kept token: WordPiece re-tokenises such a prefix into the same
            # tokens, and the pair call below then needs no token-level surgery.
            questions[k] = questions[k][:spans[max_query_length - 1][1]]
        n_question = min(len(spans), max_query_length)
        room = max_length - n_question - _SPECIAL_TOKENS
        # The Rust tokenizer panics (an uncatchable-looking pyo3 PanicException) on a stride >= room once a context
        # overflows; said here instead, for every example, so that it does not depend on which contexts are long.
        if room <= doc_stride:
            what = "no room for any context token" if room <= 0 else f"room for {room} context tokens per window"
            raise DataError(f"example {offset + k} ({ex.id!r}): max_length {max_length} - {n_question} question "
                            f"tokens - {_SPECIAL_TOKENS} special tokens leaves {what}; expected more than doc_stride "
                            f"{doc_stride} (raise max_length, or lower max_query_length or doc_stride)")
    enc = tokenizer(questions, [ex.text_b for ex in chunk], truncation="only_second", max_length=max_length,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    for i, ids in enumerate(enc["input_ids"]):
        k = enc["overflow_to_sample_mapping"][i]
        ex = chunk[k]
        if ids[0] != tokenizer.cls_token_id:
            raise DataError(f"example {offset + k} ({ex.id!r}): the tokenizer does not put [CLS] first; the no-answer "
                            "position is token 0 here (BERT's layout)")
        seq = enc.sequence_ids(i)
        spans = [tuple(span) if s == 1 else NOT_CONTEXT for span, s in zip(enc["offset_mapping"][i], seq, strict=True)]
        start, end = _answer_tokens(ex, spans)
        out.input_ids.append(list(ids))
        out.token_type_ids.append(list(enc["token_type_ids"][i]))
        out.start_positions.append(start)
        out.end_positions.append(end)
        out.example.append(offset + k)
        out.context_spans.append(spans)


def _answer_tokens(ex: Example, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The first and last token of the example's first answer in a window, or (0, 0) when the window does not hold
    all of it or there is none."""
    if not ex.answers:
        return 0, 0
    text, start = ex.answers[0]
    # Whitespace at an answer's ends (a few SQuAD answers have it) belongs to no token: it is left out, so that
    # "cat " ends at the token "cat" (HF run_qa would end it at the next token) and is not cut by a window ending
    # there.
    first = start + len(text) - len(text.lstrip())
    last = start + len(text.rstrip())
    context = [j for j, span in enumerate(spans) if span != NOT_CONTEXT]
    if not context or first >= last or spans[context[0]][0] > first or spans[context[-1]][1] < last:
        return 0, 0
    # The token holding the answer's first character and the one holding its last: a token cut by the answer's
    # boundary (an answer inside a word) is taken whole, as in HF run_qa.
    s = next(j for j in context if spans[j][1] > first)
    e = next(j for j in reversed(context) if spans[j][0] < last)
    return (s, e) if s <= e else (0, 0)
