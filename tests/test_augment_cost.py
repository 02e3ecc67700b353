"""Augmentation cost: the masked-LM FLOP count against torch's FlopCounterMode, and the work an augmentation
announces before it starts (masked-LM inputs, forwards, neighbour queries; Tang's texts to tag) against hand counts
and against what the augmenter then does. Tiny random masked LM, hand-written vectors, stub tagger."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForMaskedLM

from distill.augment.cost import AugmentCost, Step, augmentation_cost, chunks_of, cost_lines, duration
from distill.augment.flops import ForwardShape, encoder_flops, executed_flops, useful_flops
from distill.augment.mlm import CPU_FORWARD_TOKENS, forward_tokens, masked_top_k, plan_batches, whole_word_ids
from distill.augment.runner import build_augmented, rows_for
from distill.augment.tang import TangAugmenter
from distill.augment.tinybert import TinyBertAugmenter
from distill.augment.vectors import Neighbours, load_vectors
from distill.augment.words import split_words
from distill.config import AugmentConfig, TangAugmentConfig, TinyBertAugmentConfig, load_config
from distill.loaders import load_task
from distill.tasks import Example

from .helpers import SMOKE


def tiny_config(tokenizer) -> BertConfig:
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope="module")
def eager_mlm(tokenizer):
    # Eager attention: its score and weighted-sum products are matmuls that FlopCounterMode counts (it has no formula
    # for the CPU flash-attention kernel that `sdpa` uses).
    torch.manual_seed(0)
    return BertForMaskedLM._from_config(tiny_config(tokenizer), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def glove_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["delayed", "postponed", "late", "airline", "flight", "plane", "great", "luggage", "baggage",
             "overbooked", "rebooked", "frustrating"]
    path = tmp_path_factory.mktemp("vec") / "glove.txt"
    path.write_text("".join(f"{w} " + " ".join(f"{x:.5f}" for x in rng.normal(size=8)) + "\n" for w in words))
    return path


# ---------------------------------------------------------------- FLOPs


def counted(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


@pytest.mark.parametrize(("batch", "length", "masked"), [(1, 7, 1), (3, 11, 4), (5, 2, 0)])
def test_encoder_flops_equal_flop_counter_on_a_real_forward(eager_mlm, batch, length, masked):
    # FlopCounterMode counts matrix products only, as the formula does: they agree exactly (layer norms, softmax,
    # GELU, biases and residual adds are in neither).
    torch.manual_seed(1)
    x = torch.randint(1000, 2000, (batch, length))
    rows, cols = torch.arange(masked) % batch, torch.arange(masked) % length

    @torch.inference_mode()
    def forward():
        hidden = eager_mlm.bert(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
        eager_mlm.cls(hidden[rows, cols])

    assert counted(forward) == encoder_flops(eager_mlm.config, batch, length, masked)


def test_encoder_flops_by_hand():
    cfg = BertConfig(vocab_size=10, hidden_size=2, num_hidden_layers=3, num_attention_heads=1, intermediate_size=4)
    # per layer: linear 2*6*(4*4 + 2*2*4) = 384, attention 4*2*3*3*2 = 144; head 2*5*(4 + 20) = 240
    assert encoder_flops(cfg, 2, 3, 5) == 3 * (384 + 144) + 240


def test_masked_top_k_reports_the_shapes_it_runs(eager_mlm, tokenizer):
    valid = whole_word_ids(tokenizer)
    sentences = [split_words(s) for s in ["the flight was delayed again", "great service thanks",
                                          "my luggage never arrived at the gate today"]]
    inputs = [(w, i) for w in sentences for i in range(len(w))]
    shapes: list[ForwardShape] = []
    got = counted(lambda: masked_top_k(eager_mlm, tokenizer, inputs, 5, valid, batch_size=4, shapes=shapes))
    assert got == executed_flops(eager_mlm.config, shapes)
    assert all(s.masked == s.batch == 4 for s in shapes)
    # [CLS] words [SEP], one piece per word: 8 rows of 10 tokens, 5 of 7 and 3 of 5, longest first.
    assert [len(tokenizer(" ".join(s))["input_ids"]) for s in sentences] == [7, 5, 10]
    assert [s.lengths for s in shapes] == [(10,) * 4, (10,) * 4, (7, 7, 7, 7), (7, 5, 5, 5)]
    cfg = eager_mlm.config
    assert useful_flops(cfg, shapes[:3]) == executed_flops(cfg, shapes[:3])  # no padding in equal-length batches
    padding = encoder_flops(cfg, 3, 7, 0) - 3 * encoder_flops(cfg, 1, 5, 0)
    assert executed_flops(cfg, shapes) - useful_flops(cfg, shapes) == padding


def test_batches_by_rows_and_by_padded_tokens():
    lengths = [5, 10, 9, 3, 9, 5, 5]
    assert plan_batches(lengths, 3) == [[1, 2, 4], [0, 5, 6], [3]]  # longest first, ties in input order
    # At most 20 tokens once padded to the first row: (10, 9) is 20, (9, 5) 18, (5, 5, 3) 15 at the row limit.
    assert plan_batches(lengths, 3, max_tokens=20) == [[1, 2], [4, 0], [5, 6, 3]]
    assert plan_batches([30, 2], 8, max_tokens=20) == [[0], [1]]  # a row over the budget goes alone
    assert plan_batches([], 4, 10) == []
    assert forward_tokens("cpu") == CPU_FORWARD_TOKENS and forward_tokens("meta") is None


# ---------------------------------------------------------------- TinyBERT counts


@pytest.fixture(scope="module")
def augmenter(tokenizer, glove_file):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(tokenizer)).eval()
    cfg = TinyBertAugmentConfig(candidates=3, batch_size=3)
    return TinyBertAugmenter(cfg, 2, model, tokenizer, whole_word_ids(tokenizer),
                             Neighbours(load_vectors(str(glove_file))))


# Two parts of chunk_size 2. Stopwords (the, was, again, on), punctuation and numbers get no candidates.
EXAMPLES = [
    Example("e1", "The flight was delayed again , overbooked !", None, 0),
    Example("e2", "Overbooked plane , great service", "rebooked on the next plane , overbooked", 1),
    Example("e3", "overbooked luggage : frustrating zzqxv 42", None, 0),
]
# By hand: one-piece words go to the masked LM, one input per occurrence; the others to the vectors, each distinct
# lower-cased word known to the vectors once per part (zzqxv is not in them).
PART_0_SINGLE = ["flight", "delayed", "plane", "great", "service", "next", "plane"]
PART_0_QUERIES = {"overbooked", "rebooked"}
PART_1_SINGLE = ["luggage", "frustrating"]
PART_1_QUERIES = {"overbooked"}


def test_hand_count_pieces(tokenizer):
    for w in {*PART_0_SINGLE, *PART_1_SINGLE}:
        assert len(tokenizer.tokenize(w)) == 1, w
    for w in ("overbooked", "Overbooked", "rebooked", "zzqxv"):
        assert len(tokenizer.tokenize(w)) > 1, w


def test_tinybert_counts_equal_a_hand_count(augmenter):
    a = AugmentConfig(copies=2, chunk_size=2, tinybert=augmenter.cfg)
    cost = augmentation_cost(a, EXAMPLES, augmenter)
    # Copies: 2 per sentence, 2 x 2 for the pair (e2), rewritten one side at a time.
    assert (cost.examples, cost.copies, cost.batch_size) == (3, 2 + 4 + 2, 3)
    assert cost.mlm_inputs == len(PART_0_SINGLE) + len(PART_1_SINGLE) == 9
    assert cost.forwards == math.ceil(7 / 3) + math.ceil(2 / 3) == 4
    assert cost.neighbour_queries == len(PART_0_QUERIES) + len(PART_1_QUERIES) == 3
    assert [s.name for s in cost.steps] == ["masked LM", "neighbours", "sampling"]
    # Each step says what was timed for it; the total is the steps' sum, checked on planted values (measured seconds
    # are not asserted: bench/ measures them).
    assert all(s.timed for s in cost.steps)
    planted = replace(cost, steps=[replace(st, seconds=float(i + 1)) for i, st in enumerate(cost.steps)])
    assert planted.seconds == 1.0 + 2.0 + 3.0
    only = augmentation_cost(a, EXAMPLES, augmenter, parts=[1])
    assert (only.examples, only.mlm_inputs, only.forwards, only.neighbour_queries) == (1, 2, 1, 1)


class Spy:
    """What the augmenter really does: rows per masked-LM forward, and the words `Neighbours` computes."""

    def __init__(self, aug):
        self.forwards: list[int] = []
        self.queries: list[str] = []
        self.aug = aug
        self.chunk = aug.neighbours._chunk

    def __enter__(self):
        self.handle = self.aug.model.bert.register_forward_pre_hook(
            lambda _m, _a, kw: self.forwards.append(len(kw["input_ids"])), with_kwargs=True)
        self.aug.neighbours._chunk = self.spy_chunk
        return self

    def spy_chunk(self, part, k, block):
        self.queries += part
        return self.chunk(part, k, block)

    def __exit__(self, *_):
        self.handle.remove()
        del self.aug.neighbours._chunk


def test_tinybert_counts_equal_what_the_augmenter_does(augmenter):
    a = AugmentConfig(copies=2, chunk_size=2, tinybert=augmenter.cfg)
    cost = augmentation_cost(a, EXAMPLES, augmenter)
    with Spy(augmenter) as spy:
        for chunk in chunks_of(EXAMPLES, 2):
            augmenter.augment(chunk, [np.random.default_rng(0) for _ in chunk])
    assert spy.forwards == [3, 3, 1, 2]
    assert (len(spy.forwards), sum(spy.forwards), len(spy.queries)) == (cost.forwards, cost.mlm_inputs,
                                                                         cost.neighbour_queries)
    assert spy.queries == sorted(PART_0_QUERIES) + sorted(PART_1_QUERIES)


def test_nothing_to_do(augmenter):
    a = AugmentConfig(copies=2, chunk_size=2, tinybert=augmenter.cfg)
    cost = augmentation_cost(a, EXAMPLES, augmenter, parts=[])
    assert (cost.examples, cost.forwards, cost.steps) == (0, 0, [])
    assert cost_lines(cost) == ["augmentation: nothing to do"]
    words_only = [Example("x", "the , 42", None, 0)]  # no eligible word: no forward, no query, only sampling
    cost = augmentation_cost(a, words_only, augmenter)
    assert (cost.mlm_inputs, cost.forwards, cost.neighbour_queries) == (0, 0, 0)
    assert [s.name for s in cost.steps] == ["sampling"]


# ---------------------------------------------------------------- Tang counts


class CountingTagger:
    def __init__(self):
        self.tagged: list[str] = []

    def __call__(self, texts):
        self.tagged += texts
        return [[(w, "NN" if w.startswith("n") else "VB") for w in t.split()] for t in texts]


TANG = [Example("a", "n1 v1", None, 0), Example("b", "n2 v2", "n1 v1", 1), Example("c", "n1 v1", None, 0),
        Example("d", "n3", "v3 n3", 1)]


def test_tang_counts_distinct_texts_and_copies():
    tagger = CountingTagger()
    aug = TangAugmenter(TangAugmentConfig(), 5, tagger)
    a = AugmentConfig(method="tang", copies=5, chunk_size=3)
    cost = augmentation_cost(a, TANG, aug)
    assert (cost.texts_to_tag, cost.copies, cost.examples) == (4, 20, 4)  # n1 v1, n2 v2, n3, v3 n3
    assert [s.name for s in cost.steps] == ["tagging", "synthesis"]
    planted = replace(cost, steps=[replace(st, seconds=float(i + 1)) for i, st in enumerate(cost.steps)])
    assert planted.seconds == 1.0 + 2.0  # the total is the steps' sum (planted values; bench/ measures seconds)
    assert aug.tags == {} and aug.unigram == {}  # the estimate leaves the augmenter as it was
    tagger.tagged.clear()
    aug.fit(TANG)
    assert len(tagger.tagged) == cost.texts_to_tag
    fitted = augmentation_cost(a, TANG, aug, parts=[1])
    assert (fitted.texts_to_tag, fitted.copies, [s.name for s in fitted.steps]) == (0, 5, ["synthesis"])


# ---------------------------------------------------------------- printing and the runner


def test_duration_and_lines():
    assert [duration(x) for x in (0.42, 12.4, 190, 3 * 3600 + 5 * 60 + 7)] == ["0.4 s", "12 s", "3 min 10 s",
                                                                               "3 h 5 min"]
    cost = AugmentCost("tinybert", "cpu", examples=300, copies=6000, batch_size=128, max_tokens=4096, mlm_inputs=12345,
                       forwards=97, neighbour_queries=2001, steps=[Step("masked LM", 185.0, "3 timed forwards"),
                              Step("neighbours", 5.0, "800 timed queries")])
    assert cost_lines(cost) == [
        "augmentation: 12,345 masked-LM inputs in 97 forwards (up to 128 rows, 4,096 tokens), 2,001 neighbour "
        "queries, 6,000 copies of 300 examples",
        "augmentation: estimated 3 min 10 s on cpu: masked LM 3 min 5 s (3 timed forwards); "
        "neighbours 5.0 s (800 timed queries)"]


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mlm")
    BertForMaskedLM(tiny_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_build_announces_the_work_before_it_starts(mlm_folder, glove_file, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path))
    cfg = load_config(SMOKE, ["task.train_limit=20", "augment.copies=2", "augment.chunk_size=8",
                              f"augment.tinybert.masked_lm={mlm_folder}", f"augment.tinybert.vectors={glove_file}"])
    logs: list[str] = []
    build_augmented(cfg, load_task(cfg.task), num_shards=2, shard_index=1, log=logs.append)
    lines = [x for x in logs if x.startswith("augmentation:")]
    assert len(lines) == 2 and "masked-LM inputs" in lines[0] and "estimated" in lines[1]
    assert "copies of 8 examples" in lines[0]  # shard 2 of 2 does part 1 only: examples 8..15


def test_tang_build_fits_after_the_estimate_and_gives_the_same_set(tmp_path, monkeypatch):
    from distill.augment.pos import load_tagger
    from distill.augment.runner import example_rng, seed_of

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path))
    cfg = load_config(SMOKE, ["task.train_limit=20", "augment.method=tang", "augment.copies=2",
                              "augment.chunk_size=8"])
    task = load_task(cfg.task)
    logs: list[str] = []
    path = build_augmented(cfg, task, log=logs.append)
    assert any(x.startswith("augmentation:") and "distinct texts to tag" in x for x in logs)
    examples = task.splits["train"]
    aug = TangAugmenter(cfg.augment.tang, 2, load_tagger(cfg.augment.tang.tagger)).fit(examples)
    want = []
    for chunk in chunks_of(examples, 8):
        rows, _ = rows_for(chunk, aug.augment(chunk, [example_rng(seed_of(cfg), ex.id) for ex in chunk]), "tang")
        want += rows
    assert [json.loads(line) for line in path.read_text().splitlines()] == want
