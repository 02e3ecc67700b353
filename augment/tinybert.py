"""TinyBERT's data augmentation (Jiao et al. 2020, Algorithm 1).

For each eligible word (alphabetic, not in the configured stopword list, by default the reference's): a word that
is a single word piece gets the masked LM's top-K whole-word predictions at its masked position; a word of several
pieces gets its K nearest neighbours by cosine in the word vectors. Candidates are computed once per word
occurrence; each of N copies then replaces each word by a random candidate with probability p_t. Sentence pairs:
both sides get candidates; by default (`pair_mode: one_side`, the reference's structure) N copies rewrite the first
sentence and N the second, the other kept as is; `both` rewrites both sides in each of N copies. The reference code
pairs the second sentence's variants with the first's last variant (it rewrites its row in place); here they keep
the original first sentence.

Token classification (a tag per word): the words are the task's own (one per tag), a word whose tag marks an entity
(`protect`: every tag but O of a BIO/BIOES scheme) is never replaced, and a replaced word's tag becomes unknown
(-1): the teacher's soft targets still train it, a hard-label loss ignores it. Extractive QA is refused upstream
(a replaced word could sit in the answer span).
"""

from __future__ import annotations

import numpy as np

from distill.augment.words import STOPWORD_LISTS, join_words, split_words
from distill.config import TinyBertAugmentConfig
from distill.tasks import Example

Candidates = list[list[str]]  # per word of a sentence


def copies_per_example(cfg: TinyBertAugmentConfig, copies: int, pair: bool) -> int:
    """The variants `TinyBertAugmenter.augment` makes of one example, before de-duplication."""
    return 2 * copies if pair and cfg.pair_mode == "one_side" else copies


class TinyBertAugmenter:
    method = "tinybert"
    # Token classification: the tag indices whose words are never replaced (entity tags).
    protect: frozenset[int] = frozenset()

    def __init__(self, cfg: TinyBertAugmentConfig, copies: int, masked_lm, tokenizer, valid_ids, neighbours):
        self.cfg = cfg
        self.copies = copies
        self.model = masked_lm
        self.tokenizer = tokenizer
        self.valid = valid_ids
        self.neighbours = neighbours

    def eligible(self, word: str) -> bool:
        return word.isalpha() and not (self.cfg.skip_stopwords and word.lower() in STOPWORD_LISTS[self.cfg.stopwords])

    def split(self, sentences: list[list[str]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The eligible words as (sentence, word) spots: those that are one known word piece (the masked LM's) and
        the others (the word vectors')."""
        spots = [(s, i) for s, words in enumerate(sentences) for i, w in enumerate(words) if self.eligible(w)]
        if not spots:
            return [], []
        pieces = self.tokenizer([sentences[s][i] for s, i in spots], add_special_tokens=False)["input_ids"]
        unk = self.tokenizer.unk_token_id
        one = [len(p) == 1 and p[0] != unk for p in pieces]
        return ([spot for spot, o in zip(spots, one, strict=True) if o],
                [spot for spot, o in zip(spots, one, strict=True) if not o])

    def candidates(self, sentences: list[list[str]]) -> list[Candidates]:
        """Candidate lists for every word of every sentence, in batched model calls."""
        from distill.augment.mlm import masked_top_k

        table: list[Candidates] = [[[] for _ in words] for words in sentences]
        single, several = self.split(sentences)
        if not single and not several:
            return table
        predicted = masked_top_k(self.model, self.tokenizer, [(sentences[s], i) for s, i in single],
                                 self.cfg.candidates, self.valid, pair=self.cfg.mlm_input == "pair",
                                 batch_size=self.cfg.batch_size, max_length=self.cfg.max_length)
        for (s, i), cand in zip(single, predicted, strict=True):
            table[s][i] = cand
        near = self.neighbours([sentences[s][i] for s, i in several], self.cfg.candidates)
        for s, i in several:
            table[s][i] = near[sentences[s][i]]
        return table

    def sentences(self, examples: list[Example]) -> list[list[str]]:
        """The word lists `augment` asks candidates for: every first sentence, then every second one (empty for
        single sentences)."""
        return ([ex.text_a.split(" ") if _tagged(ex) else split_words(ex.text_a) for ex in examples]
                + [split_words(ex.text_b) if ex.text_b is not None else [] for ex in examples])

    def sample(self, words: list[str], cands: Candidates, rng: np.random.Generator) -> list[str]:
        out = list(words)
        for i, c in enumerate(cands):
            if c and rng.random() < self.cfg.p_replace:
                out[i] = c[rng.integers(len(c))]
        return out

    def rewrite(self, words: list[str], cands: Candidates, rng: np.random.Generator) -> str:
        return join_words(self.sample(words, cands, rng))

    def rewrite_tagged(self, words: list[str], cands: Candidates, tags: tuple[int, ...], rng: np.random.Generator
                       ) -> tuple[str, None, tuple[int, ...]]:
        """A tagged sentence's copy: its entity words kept, every other eligible word replaced with probability
        p_t; the words joined as the task gives them (single spaces) and the replaced words' tags unknown (-1)."""
        kept = [[] if tag in self.protect else c for c, tag in zip(cands, tags, strict=True)]
        new = self.sample(words, kept, rng)
        return " ".join(new), None, tuple(-1 if w != old else tag for w, old, tag in zip(new, words, tags,
                                                                                          strict=True))

    def augment(self, examples: list[Example], rngs: list[np.random.Generator]) -> list[list[tuple[str, str | None]]]:
        """(text_a, text_b) variants per example, before de-duplication (`copies_per_example` of them): `copies` of a
        single sentence; of a pair, `copies` rewriting the first sentence and then `copies` rewriting the second
        (`pair_mode: one_side`), or `copies` rewriting both (`both`). A side kept as is is the original text."""
        words = self.sentences(examples)
        table = self.candidates(words)
        n = len(examples)
        out = []
        for k, ex in enumerate(examples):
            a, b, rng = (words[k], table[k]), (words[n + k], table[n + k]), rngs[k]
            if _tagged(ex):
                out.append([self.rewrite_tagged(words[k], table[k], ex.label, rng) for _ in range(self.copies)])
                continue
            if ex.text_b is None:
                variants = [(self.rewrite(*a, rng), None) for _ in range(self.copies)]
            elif self.cfg.pair_mode == "one_side":
                variants = ([(self.rewrite(*a, rng), ex.text_b) for _ in range(self.copies)]
                            + [(ex.text_a, self.rewrite(*b, rng)) for _ in range(self.copies)])
            else:  # each copy draws its first sentence, then its second
                variants = [(self.rewrite(*a, rng), self.rewrite(*b, rng)) for _ in range(self.copies)]
            out.append(variants)
        return out


def _tagged(ex: Example) -> bool:
    return isinstance(ex.label, tuple)


def build(cfg: TinyBertAugmentConfig, copies: int, device, log=print) -> TinyBertAugmenter:
    from distill.augment.mlm import load_masked_lm, whole_word_ids
    from distill.augment.vectors import Neighbours, load_vectors

    kv = load_vectors(cfg.vectors, cfg.vectors_limit, cfg.allow_pickle)  # first: a bad file fails in seconds
    model, tokenizer = load_masked_lm(cfg.masked_lm, device, log)
    positions = model.config.max_position_embeddings
    if cfg.max_length > positions:
        # Not an error: the default (512, the reference's) must work with smaller masked LMs too; said, since
        # longer sentences then get narrower windows than the config asks for.
        log(f"augment: masked-LM inputs are cut at {positions} word pieces, the most {cfg.masked_lm} takes "
            f"(augment.tinybert.max_length is {cfg.max_length})")
    return TinyBertAugmenter(cfg, copies, model, tokenizer, whole_word_ids(tokenizer), Neighbours(kv, device))
