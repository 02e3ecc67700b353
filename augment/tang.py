"""Tang et al. 2019's augmentation for distilling into small students.

Per word, X ~ U(0, 1): X < p_mask -> the mask token; p_mask <= X < p_mask + p_pos -> a word with the same
POS tag drawn from the unigram distribution of that tag's words in the training corpus; otherwise the word
stays (the two rules never both apply). Then, with probability p_ng, only a random n-gram of the result is
kept (n uniform in 1..max_ngram). Sentence pairs: each copy synthesises the first sentence only, the
second only, or both, chosen uniformly from `pair_modes`."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from distill.augment.pos import Tagged
from distill.augment.words import join_words
from distill.config import TangAugmentConfig
from distill.tasks import Example


def text_counts(examples: list[Example]) -> Counter:
    """How often each text (first or second sentence) occurs: `fit` tags each distinct one once."""
    return Counter(t for ex in examples for t in (ex.text_a, ex.text_b) if t is not None)


class TangAugmenter:
    method = "tang"

    def __init__(self, cfg: TangAugmentConfig, copies: int, tagger, mask_token: str = "[MASK]"):
        self.cfg = cfg
        self.copies = copies
        self.tagger = tagger
        self.mask = mask_token
        self.tags: dict[str, Tagged] = {}
        self.unigram: dict[str, tuple[list[str], np.ndarray]] = {}

    def fit(self, corpus: list[Example]) -> TangAugmenter:
        """Tag the training corpus (each distinct text once) and build each tag's unigram distribution of
        words, over every occurrence unless `cfg.count` is `unique_texts` (a repeated text counts once)."""
        times = text_counts(corpus)
        texts = sorted(times)  # each distinct text is tagged once ...
        for text, tagged in zip(texts, self.tagger(texts), strict=True):
            self.tags[text] = tagged
        counts: dict[str, Counter] = defaultdict(Counter)
        for text in texts:
            weight = times[text] if self.cfg.count == "occurrences" else 1  # ... and counts as often as it occurs
            for word, tag in self.tags[text]:
                counts[tag][word] += weight
        for tag, c in sorted(counts.items()):
            words = sorted(c)
            freq = np.array([c[w] for w in words], dtype=np.float64)
            self.unigram[tag] = (words, np.cumsum(freq / freq.sum()))
        return self

    def _tagged(self, text: str) -> Tagged:
        if text not in self.tags:
            self.tags[text] = self.tagger([text])[0]
        return self.tags[text]

    def synthesise(self, tagged: Tagged, rng: np.random.Generator) -> list[str]:
        out = []
        for word, tag in tagged:
            x = rng.random()
            if x < self.cfg.p_mask:
                out.append(self.mask)
            elif x < self.cfg.p_mask + self.cfg.p_pos and tag in self.unigram:
                words, cdf = self.unigram[tag]
                out.append(words[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(words) - 1)])
            else:
                out.append(word)
        if out and rng.random() < self.cfg.p_ng:
            n = int(rng.integers(1, self.cfg.max_ngram + 1))
            if n < len(out):
                start = int(rng.integers(0, len(out) - n + 1))
                out = out[start:start + n]
        return out

    def augment(self, examples: list[Example], rngs: list[np.random.Generator]) -> list[list[tuple[str, str | None]]]:
        out = []
        for ex, rng in zip(examples, rngs, strict=True):
            ta = self._tagged(ex.text_a)
            tb = self._tagged(ex.text_b) if ex.text_b is not None else None
            variants = []
            for _ in range(self.copies):
                if tb is None:
                    variants.append((join_words(self.synthesise(ta, rng)), None))
                    continue
                mode = self.cfg.pair_modes[int(rng.integers(len(self.cfg.pair_modes)))]
                a = join_words(self.synthesise(ta, rng)) if mode in ("first", "both") else ex.text_a
                b = join_words(self.synthesise(tb, rng)) if mode in ("second", "both") else ex.text_b
                variants.append((a, b))
            out.append(variants)
        return out
