"""Augmentation fidelity: masked-LM inputs for sentences of any length (windows checked against hand-built
rows), blocked GloVe neighbours against a brute-force cosine top-k, Tang et al.'s unigram counts over
every occurrence against hand-computed distributions, and TinyBERT's reference choices (data_augmentation.py:
its 512-piece masked-LM inputs, its stopword list, its one-side-at-a-time sentence pairs). Tiny random masked
LM, random vectors, stub tagger, a fixed candidate table."""

from collections import Counter

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from transformers import BertConfig, BertForMaskedLM

from distill.augment.mlm import masked_top_k, whole_word_ids
from distill.augment.runner import augment_key, rows_for
from distill.augment.tang import TangAugmenter
from distill.augment.tinybert import TinyBertAugmenter, build
from distill.augment.vectors import Neighbours
from distill.augment.words import split_words
from distill.config import AugmentConfig, TangAugmentConfig, TinyBertAugmentConfig, load_config
from distill.loaders import load_task
from distill.tasks import Example

from .helpers import SMOKE, raises_with

# ---------------------------------------------------------------- masked LM inputs

# Common words that the uncased MiniLM vocabulary holds whole, so a word is exactly one piece and a window's
# rows can be written down by hand.
COMMON = "the cat sat on a mat and dog ran to big red house with green door under old tree by river".split()


@pytest.fixture(scope="module")
def tiny_mlm(tokenizer):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def valid(tokenizer):
    return whole_word_ids(tokenizer)


def sentence(n: int, seed: int = 0) -> list[str]:
    return [COMMON[j] for j in np.random.default_rng(seed).integers(len(COMMON), size=n)]


def test_common_words_are_single_pieces(tokenizer):
    assert all(len(tokenizer.tokenize(w)) == 1 for w in COMMON)  # what the hand-built rows below rely on


def hand_row(tokenizer, words, i, lo, hi, orig=None):
    """[CLS] words[lo:hi] with word i masked [SEP] (words[orig] [SEP]), ids and token types, one id per word."""
    tid = tokenizer.convert_tokens_to_ids
    first = [tid(tokenizer.mask_token) if j == i else tid(words[j]) for j in range(lo, hi)]
    ids = [tokenizer.cls_token_id, *first, tokenizer.sep_token_id]
    types = [0] * len(ids)
    if orig is not None:
        second = [tid(w) for w in words[orig[0]:orig[1]]] + [tokenizer.sep_token_id]
        ids += second
        types += [1] * len(second)
    return ids, types


def reference_top_k(model, ids, types, mask_id, k, valid):
    """One forward of one row, full logits at its [MASK], the whole vocabulary sorted."""
    x = torch.tensor([ids])
    logits = model(input_ids=x, token_type_ids=torch.tensor([types]), attention_mask=torch.ones_like(x)).logits[0]
    order = torch.argsort(logits[ids.index(mask_id)], descending=True).tolist()
    return [t for t in order if valid[t]][:k]


class Capture:
    """The (ids, token types) rows the masked LM's encoder is given, padding stripped."""

    def __init__(self, model):
        self.rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self.handle = model.bert.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, _module, _args, kwargs):
        for x, t, m in zip(kwargs["input_ids"], kwargs["token_type_ids"], kwargs["attention_mask"], strict=True):
            n = int(m.sum())
            self.rows.append((tuple(x[:n].tolist()), tuple(t[:n].tolist())))

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.handle.remove()


def left_first_window(n: int, i: int, budget: int) -> tuple[int, int]:
    """For one-piece words: `budget` words around i, the left side taking the odd word (ceil), an edge giving
    its share to the other side."""
    size = min(budget, n)
    lo = max(0, min(i - size // 2, n - size))
    return lo, lo + size


def test_left_first_window_formula_by_hand():
    # The formula the tests use, on numbers worked out by hand: 126 words around word 150 of 300 are
    # 63 to its left (87..149) and 62 to its right (151..212); at the edges the other side takes the rest.
    assert left_first_window(300, 150, 126) == (87, 213)
    assert left_first_window(300, 0, 126) == (0, 126)
    assert left_first_window(300, 299, 126) == (174, 300)
    assert left_first_window(300, 150, 125) == (88, 213)  # 62 and 62
    assert left_first_window(100, 50, 25) == (38, 63)  # 12 and 12
    assert left_first_window(100, 3, 25) == (0, 25)


@pytest.mark.parametrize("pair", [False, True])
def test_every_word_of_a_long_sentence_gets_candidates(tiny_mlm, tokenizer, valid, pair):
    model, n, k = tiny_mlm, 300, 5
    words = sentence(n)
    inputs = [(words, i) for i in range(n)]
    with Capture(model) as cap:
        got = masked_top_k(model, tokenizer, inputs, k, valid, pair=pair, batch_size=64, max_length=128)
    assert [len(c) for c in got] == [k] * n
    # Single: [CLS] 126 words [SEP]. Pair: [CLS] 125 words [SEP] [SEP]: the masked copy keeps all the
    # room and the original, truncated first, gets none of it.
    budget = 125 if pair else 126
    expected = {}
    for i in range(n):
        lo, hi = left_first_window(n, i, budget)
        expected[i] = hand_row(tokenizer, words, i, lo, hi, (i, i) if pair else None)
    assert sorted(cap.rows) == sorted((tuple(a), tuple(b)) for a, b in expected.values())
    for ids, _ in cap.rows:
        assert len(ids) <= 128 and ids.count(tokenizer.mask_token_id) == 1
    for i in (0, 1, 62, 63, 150, 236, 237, 299):
        ids, types = expected[i]
        want = reference_top_k(model, ids, types, tokenizer.mask_token_id, k, valid)
        assert got[i] == tokenizer.convert_ids_to_tokens(want), i


def test_pair_mode_truncates_the_original_first_around_the_masked_word(tiny_mlm, tokenizer, valid):
    model, n = tiny_mlm, 100
    words = sentence(n, seed=1)
    inputs = [(words, i) for i in range(n)]
    with Capture(model) as cap:
        got = masked_top_k(model, tokenizer, inputs, 4, valid, pair=True, batch_size=32, max_length=128)
    # 128 - 3 special tokens = 125: the whole masked copy (100) and 25 words of the original around word i.
    expected = [hand_row(tokenizer, words, i, 0, n, left_first_window(n, i, 25)) for i in range(n)]
    assert sorted(cap.rows) == sorted((tuple(a), tuple(b)) for a, b in expected)
    for i in (0, 12, 13, 50, 87, 88, 99):
        ids, types = expected[i]
        want = reference_top_k(model, ids, types, tokenizer.mask_token_id, 4, valid)
        assert got[i] == tokenizer.convert_ids_to_tokens(want), i


def plain_encoding(tokenizer, words, i, pair):
    """Today's input for a sentence that fits: the whole masked sentence (and the whole original), untruncated."""
    masked = " ".join(words[:i] + [tokenizer.mask_token] + words[i + 1:])
    enc = tokenizer([masked], [" ".join(words)] if pair else None)
    return tuple(enc["input_ids"][0]), tuple(enc["token_type_ids"][0])


@pytest.mark.parametrize("pair", [False, True])
def test_sentences_that_fit_get_the_untruncated_input(tiny_mlm, tokenizer, valid, pair):
    from distill.augment.mlm import encode_masked

    model = tiny_mlm
    # Real words of several pieces and punctuation, and the longest sentence of one-piece words that fits
    # exactly: 126 words + 2 specials (single), 2 x 62 words + 3 specials (pair).
    sentences = [["the", "overbooked", "flight", "was", "frustrating", ",", "42", "times", "!"],
                 ["Unbelievably", "slow", "luggage", "carousels", "at", "Zürich"],
                 sentence(62 if pair else 126, seed=2)]
    inputs = [(w, i) for w in sentences for i in range(len(w))]
    want = [plain_encoding(tokenizer, w, i, pair) for w, i in inputs]
    assert max(len(ids) for ids, _ in want) == (127 if pair else 128)  # 2 x 63 + 3 would not fit
    ids, types = encode_masked(tokenizer, inputs, pair=pair, max_length=128)
    assert list(zip(map(tuple, ids), map(tuple, types), strict=True)) == want
    with Capture(model) as cap:
        masked_top_k(model, tokenizer, inputs, 3, valid, pair=pair, batch_size=16, max_length=128)
    assert sorted(cap.rows) == sorted(want)


@pytest.mark.parametrize("pair", [False, True])
def test_one_word_too_many_is_windowed_not_cut(tiny_mlm, tokenizer, valid, pair):
    n = 63 if pair else 127  # one one-piece word more than fits whole
    words = sentence(n, seed=3)
    inputs = [(words, i) for i in range(n)]
    with Capture(tiny_mlm) as cap:
        got = masked_top_k(tiny_mlm, tokenizer, inputs, 3, valid, pair=pair, max_length=128)
    assert all(len(c) == 3 for c in got)
    assert len(cap.rows) == n
    for ids, _ in cap.rows:
        assert len(ids) <= 128 and ids.count(tokenizer.mask_token_id) == 1


def test_word_window_grows_alternately_within_the_budget():
    from distill.augment.mlm import word_window

    # pieces per word:  0  1  2  3  4  5  6
    counts = [1, 3, 1, 2, 1, 1, 4]
    assert word_window(counts, 3, 100) == (0, 7)
    assert word_window(counts, 3, 2) == (3, 4)  # only the word itself
    assert word_window(counts, 3, 1) == (3, 3)  # not even that
    assert word_window(counts, 3, 3) == (2, 4)  # left first: word 2 (1 piece)
    assert word_window(counts, 3, 4) == (2, 5)  # then right: word 4
    assert word_window(counts, 3, 6) == (2, 6)  # word 1 (3 pieces) does not fit; the right side goes on: word 5
    assert word_window(counts, 3, 8) == (1, 6)  # 2 + 1 + 1 + 3 (word 1) + 1 (word 5) = 8
    assert word_window(counts, 3, 12) == (0, 6)  # + word 0 = 9; word 6 (4 pieces) would make 13
    assert word_window(counts, 3, 13) == (0, 7)
    assert word_window(counts, 0, 4) == (0, 2)  # at the left edge the right side takes it all: 1 + 3
    assert word_window(counts, 0, 5) == (0, 3)  # + 1
    assert word_window(counts, 6, 5) == (5, 7)  # 4 + 1 (word 5)
    assert word_window(counts, 6, 7) == (4, 7)  # + 1 (word 4); word 3 (2 pieces) would make 8


def test_wrong_piece_counts_never_raise_and_keep_the_mask(tiny_mlm, tokenizer, valid, monkeypatch):
    import distill.augment.mlm as mlm

    # A tokenizer surprise: the windows are sized from counts that say one piece per word, while
    # "unbelievably" is several, so the rows come out too long and the safety net must cut them.
    assert len(tokenizer.tokenize("unbelievably")) > 1
    monkeypatch.setattr(mlm, "piece_counts", lambda _tok, words: dict.fromkeys(words, 1))
    words = [w for pair in zip(sentence(100, seed=4), ["unbelievably"] * 100, strict=True) for w in pair]
    inputs = [(words, i) for i in range(0, len(words), 2)]  # the one-piece words
    pieces = {w: tokenizer(w, add_special_tokens=False)["input_ids"] for w in set(words)}
    for pair in (False, True):
        with Capture(tiny_mlm) as cap:
            got = masked_top_k(tiny_mlm, tokenizer, inputs, 3, valid, pair=pair, max_length=64)
        assert all(len(c) == 3 for c in got) and len(cap.rows) == len(inputs)
        rows = {}
        for ids, types in cap.rows:
            assert len(ids) <= 64 and ids.count(tokenizer.mask_token_id) == 1 and len(types) == len(ids)
            at = ids.index(tokenizer.mask_token_id)
            assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            assert ids.count(tokenizer.sep_token_id) == (2 if pair else 1)
            rows[at, ids[at - 1], ids[at + 1]] = ids
        for _, i in inputs:  # the context right beside the mask is kept
            if i > 0:
                assert any(before == pieces[words[i - 1]][-1] and after == pieces[words[i + 1]][0]
                           for _, before, after in rows)


# ---------------------------------------------------------------- GloVe neighbours


def random_kv(n: int, dim: int, seed: int = 0) -> KeyedVectors:
    kv = KeyedVectors(vector_size=dim)
    kv.add_vectors([f"w{j}" for j in range(n)], np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32))
    return kv


def brute_force_neighbours(kv: KeyedVectors, word: str, k: int) -> list[str]:
    """Cosine against every other word in float64, best first, ties to the lower index."""
    m = np.asarray(kv.vectors, dtype=np.float64)
    norm = np.linalg.norm(m, axis=1)
    m = m / np.where(norm > 0, norm, 1.0)[:, None]
    q = kv.key_to_index[word]
    cos = m @ m[q]
    others = np.array([j for j in range(len(m)) if j != q])
    order = others[np.lexsort((others, -cos[others]))]
    gaps = np.diff(cos[order][:min(k, len(order)) + 1])
    # Float32 rounding could swap two cosines closer than this; the random data is chosen to have none.
    assert len(gaps) == 0 or np.min(np.abs(gaps)) > 1e-6
    return [kv.index_to_key[j] for j in order[:k]]


@pytest.mark.parametrize(("chunk", "block", "k"), [
    (1024, 16384, 10),  # one chunk, one block: the whole vocabulary at once
    (7, 10, 5),  # 257 words: the last block holds 7
    (16, 37, 20),  # k above half a block
    (5, 3, 8),  # k larger than a block
    (300, 1, 4),  # one word per block
])
def test_blocked_neighbours_equal_brute_force(chunk, block, k):
    kv = random_kv(257, 16)
    nb = Neighbours(kv)
    words = [*kv.index_to_key[::-1], "unknown", "W3"]
    got = nb(words, k, chunk=chunk, block=block)
    for w in kv.index_to_key:
        assert got[w] == brute_force_neighbours(kv, w, k), w
    assert got["unknown"] == [] and got["W3"] == got["w3"]  # lower-cased lookup


def test_k_beyond_the_vocabulary_gives_every_other_word_in_order():
    kv = random_kv(12, 6, seed=1)
    got = Neighbours(kv)(kv.index_to_key, 50, chunk=4, block=5)
    for w in kv.index_to_key:
        assert len(got[w]) == 11 and w not in got[w]
        assert got[w] == brute_force_neighbours(kv, w, 11)


def test_exact_ties_go_to_the_lower_index_in_every_blocking():
    # Axis vectors: cosines are exactly 1 (same axis) or 0, so most neighbours tie; a zero vector ties with all.
    n = 23
    vecs = np.zeros((n, 3), dtype=np.float32)
    for j in range(n - 1):
        vecs[j, j % 3] = 1.0
    kv = KeyedVectors(vector_size=3)
    kv.add_vectors([f"w{j}" for j in range(n)], vecs)
    by_hand = {  # same axis first by index, then the rest (all cosine 0) by index
        "w4": ["w1", "w7", "w10", "w13", "w16", "w19", "w0", "w2", "w3"],
        "w22": ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"],  # the zero vector
        "w0": ["w3", "w6", "w9", "w12", "w15", "w18", "w21", "w1", "w2"],
    }
    for chunk, block in [(1024, 16384), (2, 4), (1, 1), (3, 7), (5, 22)]:
        got = Neighbours(kv)(list(by_hand), 9, chunk=chunk, block=block)
        assert got == by_hand, (chunk, block)


def test_no_similarity_matrix_larger_than_chunk_by_block(monkeypatch):
    import distill.augment.vectors as vectors

    shapes = []
    inner = vectors.block_similarities

    def counting(queries, block):
        out = inner(queries, block)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(vectors, "block_similarities", counting)
    kv = random_kv(257, 16)
    words = kv.index_to_key[:40]
    got = Neighbours(kv)(words, 6, chunk=16, block=50)
    assert all(got[w] == brute_force_neighbours(kv, w, 6) for w in words)
    assert shapes and max(r for r, _ in shapes) <= 16 and max(c for _, c in shapes) <= 50
    # Every query chunk (16, 16, 8 words) sees the whole vocabulary once, block by block.
    assert sorted(Counter(r for r, _ in shapes).items()) == [(8, 6), (16, 12)]
    assert sum(c for _, c in shapes) == 3 * 257


# ---------------------------------------------------------------- Tang et al. unigram counts


class StubTagger:
    """Nouns start with n; records what it was asked to tag."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return [[(w, "NN" if w.startswith("n") else "VB") for w in t.split()] for t in texts]


def tang_corpus() -> list[Example]:
    return ([Example(f"r{j}", "n1 v1 n1", None, 0) for j in range(5)]  # the same sentence five times
            + [Example("s", "n2 v2", None, 1), Example("p", "n2 v1", "n1 v3", 0), Example("q", "n3 v2", "n2 v2", 1)])


def distribution(aug: TangAugmenter, tag: str) -> dict[str, float]:
    words, cdf = aug.unigram[tag]
    return dict(zip(words, np.diff(cdf, prepend=0.0), strict=True))


def test_tang_unigram_counts_every_occurrence():
    tagger = StubTagger()
    aug = TangAugmenter(TangAugmentConfig(), 1, tagger).fit(tang_corpus())
    # By hand, over every text of every example (text_b included):
    #   nouns: n1 2 x 5 (r0-r4) + 1 (p, b) = 11; n2 1 (s) + 1 (p, a) + 1 (q, b) = 3; n3 1 (q, a) -> of 15
    #   verbs: v1 5 (r0-r4) + 1 (p, a) = 6; v2 1 (s) + 1 (q, a) + 1 (q, b) = 3; v3 1 (p, b) -> of 10
    assert distribution(aug, "NN") == pytest.approx({"n1": 11 / 15, "n2": 3 / 15, "n3": 1 / 15})
    assert distribution(aug, "VB") == pytest.approx({"v1": 6 / 10, "v2": 3 / 10, "v3": 1 / 10})
    assert aug.unigram["NN"][1][-1] == pytest.approx(1.0)
    # Each distinct text is tagged once ("n2 v2" is both s's text and q's text_b).
    assert sorted(t for call in tagger.calls for t in call) == ["n1 v1 n1", "n1 v3", "n2 v1", "n2 v2", "n3 v2"]
    rng = np.random.default_rng(0)
    cfg = aug.cfg
    cfg.p_mask, cfg.p_pos, cfg.p_ng = 0.0, 1.0, 0.0
    draws = Counter(aug.synthesise([("n9", "NN")], rng)[0] for _ in range(6000))
    assert abs(draws["n1"] / 6000 - 11 / 15) < 4 * np.sqrt(11 / 15 * 4 / 15 / 6000)


def test_tang_unique_texts_keeps_the_old_counts():
    aug = TangAugmenter(TangAugmentConfig(count="unique_texts"), 1, StubTagger()).fit(tang_corpus())
    # Distinct texts: "n1 v1 n1", "n2 v2", "n2 v1", "n1 v3", "n3 v2" -> nouns n1 3, n2 2, n3 1; verbs v1 2, v2 2, v3 1.
    assert distribution(aug, "NN") == pytest.approx({"n1": 3 / 6, "n2": 2 / 6, "n3": 1 / 6})
    assert distribution(aug, "VB") == pytest.approx({"v1": 2 / 5, "v2": 2 / 5, "v3": 1 / 5})


def test_tang_refuses_an_unknown_count():
    from distill.config import ConfigError, from_dict

    raw = {"name": "x", "teacher": {}, "student": {}, "stages": [{"name": "s", "losses": {"hard_ce": 1}}],
           "augment": {"method": "tang", "tang": {"count": "tokens"}}}
    with raises_with(ConfigError, "`augment.tang.count`", "'tokens'", "'occurrences'", "'unique_texts'"):
        from_dict(raw)


# ---------------------------------------------------------------- TinyBERT's reference choices (data_augmentation.py)


@pytest.fixture(scope="module")
def mlm_512(tokenizer):
    """A tiny masked LM with BERT's 512 positions, so that only the augmentation's own budget cuts an input."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    return BertForMaskedLM(cfg).eval()


def no_neighbours(words, k):
    """Word vectors that know no word (the sentences here are all one-piece words, which never ask them)."""
    return {}


def test_pair_input_keeps_a_100_piece_original_whole_by_default(mlm_512, tokenizer, valid):
    # The reference cuts `masked + original` at 512 pieces: a 100-piece sentence goes in whole, twice.
    n = 100
    words = sentence(n, seed=5)
    aug = TinyBertAugmenter(TinyBertAugmentConfig(mlm_input="pair", candidates=3), 1, mlm_512, tokenizer, valid,
                            no_neighbours)
    with Capture(mlm_512) as cap:
        table = aug.candidates([words])[0]
    single, several = aug.split([words])
    assert single and not several
    assert [len(ids) for ids, _ in cap.rows] == [2 * n + 3] * len(single)  # [CLS] masked [SEP] original [SEP]
    want = [hand_row(tokenizer, words, i, 0, n, (0, n)) for _, i in single]
    assert sorted(cap.rows) == sorted((tuple(a), tuple(b)) for a, b in want)
    assert all(len(table[i]) == 3 for _, i in single)


def test_longer_pairs_are_still_windowed_within_512(mlm_512, tokenizer, valid):
    n = 300  # 2 x 300 + 3 > 512: the masked copy keeps 300, the original the 209 pieces left around word i
    words = sentence(n, seed=6)
    aug = TinyBertAugmenter(TinyBertAugmentConfig(mlm_input="pair", candidates=2), 1, mlm_512, tokenizer, valid,
                            no_neighbours)
    some = [0, 150, 299]
    inputs = [(words, i) for i in some]
    with Capture(mlm_512) as cap:
        masked_top_k(mlm_512, tokenizer, inputs, 2, valid, pair=True, max_length=aug.cfg.max_length)
    want = [hand_row(tokenizer, words, i, 0, n, left_first_window(n, i, 509 - n)) for i in some]
    assert sorted(cap.rows) == sorted((tuple(a), tuple(b)) for a, b in want)
    assert all(len(ids) <= 512 for ids, _ in cap.rows)


def test_a_masked_lm_with_fewer_positions_caps_the_budget_and_says_so(tiny_mlm, tokenizer, tmp_path):
    folder = tmp_path / "mlm"
    tiny_mlm.save_pretrained(folder)  # 128 positions
    tokenizer.save_pretrained(folder)
    vectors = tmp_path / "glove.txt"
    vectors.write_text("cat 1 0\ndog 0 1\n")
    cfg = TinyBertAugmentConfig(masked_lm=str(folder), vectors=str(vectors), mlm_input="pair")
    assert cfg.max_length == 512
    logs: list[str] = []
    aug = build(cfg, 1, "cpu", logs.append)
    assert any("128" in line and "max_length" in line for line in logs), logs
    words = sentence(100, seed=7)
    with Capture(aug.model) as cap:
        aug.candidates([words])
    assert cap.rows and all(len(ids) <= 128 and ids.count(tokenizer.mask_token_id) == 1 for ids, _ in cap.rows)


# data_augmentation.py's `StopWordsList`, verbatim: NLTK's English list without its eight question words, plus 's, 're.
REFERENCE_STOPWORDS = [
    'i', 'me', 'my', 'myself', 'we', 'our', 'ours', 'ourselves', 'you', "you're", "you've", "you'll", "you'd", 'your',
    'yours', 'yourself', 'yourselves', 'he', 'him', 'his', 'himself', 'she', "she's", 'her', 'hers', 'herself', 'it',
    "it's", 'its', 'itself', 'they', 'them', 'their', 'theirs', 'themselves', 'this', 'that', "that'll", 'these',
    'those', 'am', 'is', 'are', 'was', 'were', 'be', 'been', 'being', 'have', 'has', 'had', 'having', 'do', 'does',
    'did', 'doing', 'a', 'an', 'the', 'and', 'but', 'if', 'or', 'because', 'as', 'until', 'while', 'of', 'at', 'by',
    'for', 'with', 'about', 'against', 'between', 'into', 'through', 'during', 'before', 'after', 'above', 'below',
    'to', 'from', 'up', 'down', 'in', 'out', 'on', 'off', 'over', 'under', 'again', 'further', 'then', 'once', 'here',
    'there', 'all', 'any', 'both', 'each', 'few', 'more', 'most', 'other', 'some', 'such', 'no', 'nor', 'not', 'only',
    'own', 'same', 'so', 'than', 'too', 'very', 's', 't', 'can', 'will', 'just', 'don', "don't", 'should', "should've",
    'now', 'd', 'll', 'm', 'o', 're', 've', 'y', 'ain', 'aren', "aren't", 'couldn', "couldn't", 'didn', "didn't",
    'doesn', "doesn't", 'hadn', "hadn't", 'hasn', "hasn't", 'haven', "haven't", 'isn', "isn't", 'ma', 'mightn',
    "mightn't", 'mustn', "mustn't", 'needn', "needn't", 'shan', "shan't", 'shouldn', "shouldn't", 'wasn', "wasn't",
    'weren', "weren't", 'won', "won't", 'wouldn', "wouldn't", "'s", "'re"]
QUESTION_WORDS = ["how", "what", "when", "where", "which", "who", "whom", "why"]


def test_question_words_get_candidates_and_replacements_by_default(mlm_512, tokenizer, valid):
    aug = TinyBertAugmenter(TinyBertAugmentConfig(candidates=3, p_replace=1.0), 1, mlm_512, tokenizer, valid,
                            no_neighbours)
    text = "how and why did the cat sit , what when where which who whom was it"
    words = split_words(text)
    table = aug.candidates([words])[0]
    for w in QUESTION_WORDS:
        assert len(table[words.index(w)]) == 3, w
    for w in ("and", "did", "the", "was", "it", ","):
        assert table[words.index(w)] == [], w
    (out, _), = aug.augment([Example("q", text, None, 0)], [np.random.default_rng(0)])[0]
    for j, (old, new) in enumerate(zip(words, out.split(), strict=True)):
        assert new in table[j] if table[j] else new == old, (old, new)


def test_default_stopwords_are_exactly_the_references():
    from distill.augment.words import STOPWORD_LISTS

    assert STOPWORD_LISTS["tinybert"] == frozenset(REFERENCE_STOPWORDS)
    aug = TinyBertAugmenter(TinyBertAugmentConfig(), 1, None, None, None, None)
    for w in STOPWORD_LISTS["nltk"] | STOPWORD_LISTS["tinybert"]:
        assert aug.eligible(w) == (w.isalpha() and w not in REFERENCE_STOPWORDS), w
        assert aug.eligible(w.capitalize()) == aug.eligible(w), w


def test_nltk_stopwords_keep_the_question_words_out():
    from distill.augment.words import STOPWORD_LISTS

    assert STOPWORD_LISTS["nltk"] == frozenset(REFERENCE_STOPWORDS) - {"'s", "'re"} | set(QUESTION_WORDS)
    assert len(STOPWORD_LISTS["nltk"]) == 179
    nltk = TinyBertAugmenter(TinyBertAugmentConfig(stopwords="nltk"), 1, None, None, None, None)
    keep_all = TinyBertAugmenter(TinyBertAugmentConfig(skip_stopwords=False), 1, None, None, None, None)
    for w in QUESTION_WORDS:
        assert not nltk.eligible(w) and keep_all.eligible(w)
    assert keep_all.eligible("the")


class FakeCandidates:
    """A deterministic candidate table instead of a masked LM and vectors: word w -> w0 .. w4."""

    def __call__(self, sentences):
        return [[[f"{w}{j}" for j in range(5)] if w.isalpha() else [] for w in words] for words in sentences]


def fake_augmenter(copies: int, **cfg):
    aug = TinyBertAugmenter(TinyBertAugmentConfig(**cfg), copies, None, None, None, None)
    aug.candidates = FakeCandidates()
    return aug


PAIRS = [Example("p1", "the flight was late", "my bag was lost too", 0),
         Example("s1", "great crew today", None, 1),
         Example("p2", "is it on time", "no", 2)]


def test_pairs_are_rewritten_one_side_at_a_time_by_default():
    n = 6
    aug = fake_augmenter(n, p_replace=0.5)
    out = aug.augment(PAIRS, [np.random.default_rng(j) for j in range(len(PAIRS))])
    for ex, variants in zip(PAIRS, out, strict=True):
        if ex.text_b is None:
            assert len(variants) == n and all(b is None for _, b in variants)
            continue
        # As the reference: N rewrites of the first sentence with the second as is, then N of the second.
        assert len(variants) == 2 * n
        assert all(b == ex.text_b for _, b in variants[:n]), variants
        assert all(a == ex.text_a for a, _ in variants[n:]), variants
        for a, b in variants:
            assert a == ex.text_a or b == ex.text_b
        assert any(a != ex.text_a for a, _ in variants[:n]) and any(b != ex.text_b for _, b in variants[n:])
    for ex, variants in zip(PAIRS, out, strict=True):
        rows, dropped = rows_for([ex], [variants], "tinybert")
        # The original is kept once (the reference writes it once per side; its second copy would be a duplicate).
        assert [r["method"] for r in rows].count("original") == 1
        assert len(rows) - 1 + dropped == len(variants)
        assert all(r["text_a"] == ex.text_a or r["text_b"] == ex.text_b for r in rows)


def test_both_sides_per_copy_on_request():
    n = 5
    aug = fake_augmenter(n, p_replace=1.0, pair_mode="both")
    out = aug.augment(PAIRS, [np.random.default_rng(j) for j in range(len(PAIRS))])
    assert [len(v) for v in out] == [n, n, n]
    for a, b in out[0]:
        assert a != PAIRS[0].text_a and b != PAIRS[0].text_b


def test_copies_counted_per_pair_as_the_augmenter_makes_them(tokenizer):
    from distill.augment.cost import augmentation_cost, copies_per_example

    n = 3
    for mode, per_pair in (("one_side", 2 * n), ("both", n)):
        aug = fake_augmenter(n, pair_mode=mode)
        a = AugmentConfig(copies=n, chunk_size=2, tinybert=aug.cfg)
        assert copies_per_example(a, pair=True) == per_pair and copies_per_example(a, pair=False) == n
        out = aug.augment(PAIRS, [np.random.default_rng(0) for _ in PAIRS])
        assert [len(v) for v in out] == [copies_per_example(a, ex.text_b is not None) for ex in PAIRS]
    tang = AugmentConfig(method="tang", copies=n)
    assert copies_per_example(tang, pair=True) == copies_per_example(tang, pair=False) == n
    # The build's announced count is the same one.
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64)).eval()
    real = TinyBertAugmenter(TinyBertAugmentConfig(candidates=2), n, model, tokenizer, whole_word_ids(tokenizer),
                             Neighbours(random_kv(10, 4)))
    cost = augmentation_cost(AugmentConfig(copies=n, chunk_size=2, tinybert=real.cfg), PAIRS, real)
    assert cost.copies == 2 * n + n + 2 * n


def test_cache_key_follows_the_new_options():
    base = load_config(SMOKE, ["task.train_limit=20"])
    task = load_task(base.task)
    key = augment_key(base, task)
    for change in ("augment.tinybert.pair_mode=both", "augment.tinybert.stopwords=nltk",
                   "augment.tinybert.max_length=128"):
        assert augment_key(load_config(SMOKE, ["task.train_limit=20", change]), task) != key, change
