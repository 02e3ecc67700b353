"""Word-level splitting, and the stopword lists TinyBERT's augmenter can skip."""

from __future__ import annotations

import re

# NLTK's 179-word English stopword list, inlined so that no corpus download is needed.
NLTK_STOPWORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom this
that that'll these those am is are was were be been being have has had having do does did doing a an the and but
if or because as until while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don don't should
should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
weren weren't won won't wouldn wouldn't
""".split())

# TinyBERT's data_augmentation.py `StopWordsList`, kept verbatim so that the default skips what the reference skips:
# NLTK's list less its eight question words (which the reference rewrites), plus 's and 're (never alphabetic, so
# they change nothing here, as there).
TINYBERT_STOPWORDS = (NLTK_STOPWORDS - {"how", "what", "when", "where", "which", "who", "whom", "why"}) | {"'s", "'re"}

# By the name `augment.tinybert.stopwords` gives.
STOPWORD_LISTS: dict[str, frozenset[str]] = {"tinybert": TINYBERT_STOPWORDS, "nltk": NLTK_STOPWORDS}

_WORD = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Words and single punctuation marks, as BERT's basic tokenizer splits them (case kept)."""
    return _WORD.findall(text)


def join_words(words: list[str]) -> str:
    return " ".join(words)
