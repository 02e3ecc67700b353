"""Read token classification data in the CoNLL column format (CoNLL-2000/2003 NER and chunking, CoNLL-U POS):
one word per line, its fields separated by spaces or tabs, a blank line between sentences.

A sentence is (where, words, tags), where = "file:line" of its first word, the place every later error names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from distill.labels import DataError
from distill.tag_metrics import tag_scheme
from distill.tasks import Example
from distill.text_files import decode_file

Sentence = tuple[str, list[str], list[str]]

# Fields are separated by runs of spaces or tabs only: other Unicode whitespace (a no-break space) stays inside a
# word, and `sentences_to_examples` then refuses the word, since a model's input splits words on any whitespace.
_FIELDS = re.compile(r"[ \t]+")
# A CoNLL-U line whose ID is a range or a decimal: a multiword token or an empty node, not a word of the sentence.
_CONLLU_EXTRA = re.compile(r"^\d+(-|\.)\d+$")


def _needed(column: int) -> int:
    """The fewest fields a line needs for a 0-based position (negative: from the end)."""
    return column + 1 if column >= 0 else -column


def read_conll(path: str | Path, word_column: int = 0, tag_column: int = -1, *,
               comments: bool = True) -> list[Sentence]:
    """Every sentence of a CoNLL file as (where, words, tags). `word_column` and `tag_column` are 0-based field
    positions, negative ones counted from the end (default: the first field is the word, the last the tag, as in
    CoNLL-2003's word/POS/chunk/NER lines; CoNLL-U's UPOS is `word_column=1, tag_column=3`).

    Skipped: `-DOCSTART-` lines, CoNLL-2003's document markers (they also end a sentence), and with `comments`
    CoNLL-U's comment lines, which stand before a sentence's first word and start with "# " (or are a lone "#"). A
    "#" glued to text ("#tag", a tweet's hashtag) or followed by a tab is always a word; in a space-separated file
    whose sentences can start with the word "#", pass `comments=False`."""
    path = Path(path)
    if word_column == tag_column:
        raise DataError(f"{path}: the word column and the tag column are both {word_column}; expected two columns")
    text = decode_file(path).removeprefix("\ufeff")  # a byte order mark would otherwise glue onto the first word
    need = max(_needed(word_column), _needed(tag_column))
    sentences: list[Sentence] = []
    start, words, tags = 0, [], []

    def close() -> None:
        nonlocal words, tags
        if words:
            sentences.append((f"{path}:{start}", words, tags))
        words, tags = [], []

    for line_no, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r")
        if not line:
            close()
            continue
        if line.startswith("-DOCSTART-"):
            close()
            continue
        if comments and not words and (line == "#" or raw.startswith("# ")):
            continue
        fields = _FIELDS.split(line)
        if comments and _CONLLU_EXTRA.match(fields[0]):
            continue  # CoNLL-U's multiword token ("1-2 del") or empty node ("8.1"): its words have their own lines
        where = f"{path}:{line_no}"
        if len(fields) < need:
            raise DataError(f"{where}: found {len(fields)} field(s) separated by spaces or tabs; expected at least "
                            f"{need} for the word column {word_column} and the tag column {tag_column}")
        if word_column % len(fields) == tag_column % len(fields):
            raise DataError(f"{where}: found {len(fields)} field(s), so the word column {word_column} and the tag "
                            f"column {tag_column} are the same field; expected at least {need + 1} fields")
        if not words:
            start = line_no
        words.append(fields[word_column])
        tags.append(fields[tag_column])
    close()
    if not sentences:
        raise DataError(f"{path}: no sentences; expected one word per line with its tag, a blank line between "
                        "sentences")
    return sentences


def tag_set(sentences: Iterable[Sentence]) -> list[str]:
    """The tags of (the training split's) sentences in a stable order, output i being tag i: "O" first then the
    others sorted for an entity scheme (BIO, BIOES: "O" is then output 0 whatever the entity types), else sorted."""
    tags = sorted({t for _, _, ts in sentences for t in ts})
    if tag_scheme(tags) is not None and "O" in tags:
        tags.remove("O")
        tags.insert(0, "O")
    return tags


def sentences_to_examples(sentences: Iterable[Sentence], tags: list[str], stem: str) -> list[Example]:
    """Examples whose text_a is the words joined by single spaces and whose label is each word's index in `tags`;
    the id is "<stem>-<line of the first word>". A word that is empty or holds whitespace is refused: the text
    could not be split back into the same words."""
    index = {t: i for i, t in enumerate(tags)}
    out = []
    for where, words, word_tags in sentences:
        if not words:
            raise DataError(f"{where}: a sentence with no words; expected at least one")
        if len(words) != len(word_tags):
            raise DataError(f"{where}: {len(words)} words but {len(word_tags)} tags; expected one tag per word")
        for i, (word, tag) in enumerate(zip(words, word_tags, strict=True), 1):
            if not word or any(c.isspace() for c in word):
                raise DataError(f"{where}: word {i} {word!r} is empty or contains whitespace; expected a word "
                                "without spaces (words are joined by single spaces)")
            if tag not in index:
                raise DataError(f"{where}: word {i} {word!r} has the tag {tag!r}, which is not a known tag; expected "
                                f"one of {tags}")
        out.append(Example(f"{stem}-{where.rsplit(':', 1)[1]}", " ".join(words), None,
                           tuple(index[t] for t in word_tags)))
    return out
