"""Read extractive question answering data, SQuAD v1.1 and v2.0: the official JSON files and rows in the Hugging Face
`squad` / `squad_v2` layout, into Examples (text_a the question, text_b the context, answers as (text, character
start in the context); () for a question with no answer).

Every malformed question is an error that names the file (or source and row), the place and what was expected."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from numbers import Integral
from pathlib import Path

from distill.labels import DataError
from distill.tasks import Example
from distill.text_files import decode_file


def read_squad_json(path: str | Path) -> tuple[list[Example], str]:
    """The questions of an official SQuAD JSON file in file order, and the version: "2.0" when any question carries
    `is_impossible`, else "1.1". All gold answers are kept (dev files have several per question), identical
    (text, start) pairs once."""
    path = Path(path)
    doc = _load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        found = f"keys {sorted(doc)}" if isinstance(doc, dict) else f"a JSON {_kind(doc)}"
        raise DataError(f"{path}: expected a JSON object with a list under \"data\" (the SQuAD layout), found {found}")
    examples: list[Example] = []
    seen: dict[str, str] = {}
    version = "1.1"
    for ai, article in enumerate(doc["data"]):
        for pi, para in enumerate(_field(article, "paragraphs", list, path, f"data[{ai}]")):
            ppath = f"data[{ai}].paragraphs[{pi}]"
            context = _field(para, "context", str, path, ppath)
            if not context.strip():
                raise DataError(f"{path}: {ppath}.context: empty; expected the paragraph's text")
            for qi, qa in enumerate(_field(para, "qas", list, path, ppath)):
                qpath = f"{ppath}.qas[{qi}]"
                qid = _field(qa, "id", str, path, qpath)
                where = f"{path}: {qpath} (question {qid!r})"
                _claim(seen, qid, qpath, where)
                question = _field(qa, "question", str, path, qpath).strip()
                if not question:
                    raise DataError(f"{path}: {qpath}.question (question {qid!r}): empty; expected the question's "
                                    "text")
                impossible = False  # without the key (SQuAD v1.1) every question has an answer
                if "is_impossible" in qa:
                    version = "2.0"
                    impossible = qa["is_impossible"]
                    if not isinstance(impossible, bool):
                        raise DataError(f"{path}: {qpath}.is_impossible (question {qid!r}): {impossible!r}; expected "
                                        "true or false")
                pairs = []
                for k, ans in enumerate(_field(qa, "answers", list, path, qpath)):
                    apath = f"{qpath}.answers[{k}]"
                    pairs.append((_field(ans, "text", str, path, apath), _field(ans, "answer_start", int, path, apath),
                                  f"{path}: {apath} (question {qid!r})"))
                answers = _answers(pairs, context, impossible, where)
                examples.append(Example(qid, question, context, None, answers))
    if not examples:
        raise DataError(f"{path}: no questions; expected data[].paragraphs[].qas[] entries")
    return examples, version


def squad_rows(rows: Iterable[Mapping[str, object]], where: str) -> list[Example]:
    """Rows in the Hugging Face `squad` / `squad_v2` layout (id, title, context, question, answers={"text": [...],
    "answer_start": [...]}) as Examples; an empty answer list is a question with no answer. `where` names the
    source (a dataset and split) in errors."""
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        rpath = f"row {i}"
        qid = _field(row, "id", str, where, rpath)
        at = f"{where}: {rpath} (question {qid!r})"
        _claim(seen, qid, rpath, at)
        context = _field(row, "context", str, where, rpath)
        question = _field(row, "question", str, where, rpath).strip()
        if not context.strip() or not question:
            raise DataError(f"{at}: empty {'context' if not context.strip() else 'question'}; expected text")
        answers = _field(row, "answers", Mapping, where, rpath)
        texts = _field(answers, "text", list, where, f"{rpath}.answers")
        starts = _field(answers, "answer_start", list, where, f"{rpath}.answers")
        if len(texts) != len(starts):
            raise DataError(f"{at}: answers has {len(texts)} texts but {len(starts)} answer_starts; expected one "
                            "start per text")
        pairs = []
        for k, (text, start) in enumerate(zip(texts, starts, strict=True)):
            if not isinstance(text, str):
                raise DataError(f"{at}: answers.text[{k}] is {text!r}; expected a string")
            if not _is_int(start):
                raise DataError(f"{at}: answers.answer_start[{k}] is {start!r}; expected an integer")
            pairs.append((text, int(start), f"{at}: answer {k}"))
        examples.append(Example(qid, question, context, None, _answers(pairs, context, None, at)))
    if not examples:
        raise DataError(f"{where}: no rows")
    return examples


def _answers(pairs: list[tuple[str, int, str]], context: str, impossible: bool | None,
             where: str) -> tuple[tuple[str, int], ...]:
    """The checked (text, start) pairs of a question, identical ones once, in their order. `impossible` is the
    question's is_impossible (None: not given, so the answer list decides)."""
    if impossible and pairs:
        raise DataError(f"{where}: is_impossible is true but it has {len(pairs)} answer(s); expected an empty "
                        "\"answers\" list (SQuAD v2.0 keeps them under \"plausible_answers\")")
    if impossible is False and not pairs:
        raise DataError(f"{where}: \"answers\" is empty but the question is answerable (is_impossible false or "
                        "absent); expected at least one answer, or is_impossible true (SQuAD v2.0)")
    out: list[tuple[str, int]] = []
    for text, start, at in pairs:
        if not text:
            raise DataError(f"{at}: empty answer text; expected a span of the context")
        found = context[start:start + len(text)] if 0 <= start < len(context) else None
        if found != text:
            # A start off by a few characters usually means offsets counted in bytes or after some cleaning.
            elsewhere = context.find(text)
            hint = f" (the text occurs at character {elsewhere})" if elsewhere >= 0 else " (nowhere in the context)"
            there = (f"the context holds {found!r} there" if found is not None
                     else f"the context has {len(context)} characters")
            raise DataError(f"{at}: answer_start {start}: expected the answer text {text!r}, but {there}{hint}")
        if (text, start) not in out:
            out.append((text, start))
    return tuple(out)


def _load(path: Path) -> object:
    text = decode_file(path).removeprefix("\ufeff")  # a byte order mark (utf-8-sig) is not JSON
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not JSON ({e.msg} at column {e.colno}); expected the SQuAD JSON "
                        "layout") from None


def _claim(seen: dict[str, str], qid: str, place: str, at: str) -> None:
    """Question ids are unique within a source: `seen` maps each to where it stands (a JSON path, a row)."""
    if qid in seen:
        raise DataError(f"{at}: id already used at {seen[qid]}; expected unique question ids")
    seen[qid] = place


def _field(obj: object, key: str, kind: type, source: str | Path, at: str):
    """obj[key], checked to be a `kind`; errors name `source`, the path `at` and the key."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{source}: {at}: a {_kind(obj)}; expected an object with key {key!r}")
    if key not in obj:
        raise DataError(f"{source}: {at}: no key {key!r}; expected one beside the keys {sorted(obj)}")
    value = obj[key]
    if kind is int:
        ok = _is_int(value)
        value = int(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise DataError(f"{source}: {at}.{key}: {_kind(value)} {_short(value)}; expected {_NAMES.get(kind, kind)}")
    return value


_NAMES = {str: "a string", int: "an integer", list: "a list", Mapping: "an object"}


def _is_int(value: object) -> bool:
    # JSON true/false are Python bools, which are ints: a start of `true` is a mistake, not character 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
