"""Augmentation: candidates against brute force, rates against the configured probabilities, pairs,
determinism, caching, sharding and bad inputs. Tiny random masked LM and hand-written vectors."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from distill.augment.mlm import masked_top_k, whole_word_ids
from distill.augment.runner import augment_key, build_augmented, example_rng, iter_augmented, rows_for, stats
from distill.augment.tang import TangAugmenter
from distill.augment.tinybert import TinyBertAugmenter
from distill.augment.vectors import Neighbours, VectorsError, load_vectors
from distill.augment.words import split_words
from distill.config import TangAugmentConfig, TinyBertAugmentConfig, load_config
from distill.loaders import load_task
from distill.tasks import Example

from .helpers import SMOKE, raises_with


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    model = BertForMaskedLM(cfg).eval()
    folder = tmp_path_factory.mktemp("mlm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def glove_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["delayed", "postponed", "late", "cancelled", "airline", "carrier", "flight", "plane", "thanks",
             "great", "terrible", "luggage", "baggage", "customer", "service", "overbooked", "rebooked", "frustrating"]
    path = tmp_path_factory.mktemp("vec") / "glove.txt"
    path.write_text("".join(f"{w} " + " ".join(f"{x:.5f}" for x in rng.normal(size=8)) + "\n" for w in words))
    return path


# ---------------------------------------------------------------- vectors


def test_neighbours_equal_brute_force_cosine(glove_file):
    kv = load_vectors(str(glove_file))
    nb = Neighbours(kv)
    words = list(kv.index_to_key)
    vec = {w: kv[w] for w in words}
    for w in ["delayed", "Airline", "unknownword", "overbooked"]:
        got = nb([w], 4)[w]
        key = w.lower()
        if key not in vec:
            assert got == []
            continue
        norm = np.linalg.norm
        cos = {o: float(vec[key] @ vec[o] / (norm(vec[key]) * norm(vec[o]))) for o in words if o != key}
        want = sorted(cos, key=lambda o: -cos[o])[:4]
        assert got == want


def test_vector_formats_and_bad_files(tmp_path, glove_file):
    header = tmp_path / "w2v.txt"
    lines = glove_file.read_text().splitlines()
    header.write_text(f"{len(lines)} 8\n" + "\n".join(lines) + "\n")
    a, b = load_vectors(str(glove_file)), load_vectors(str(header))
    assert a.index_to_key == b.index_to_key and np.allclose(a.vectors, b.vectors)
    assert len(load_vectors(str(glove_file), limit=5).index_to_key) == 5
    binary = tmp_path / "w2v.bin"
    a.save_word2vec_format(str(binary), binary=True)
    assert np.allclose(load_vectors(str(binary)).vectors, a.vectors)
    with raises_with(VectorsError, str(tmp_path / "missing.txt"), "not found"):
        load_vectors(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with raises_with(VectorsError, str(tmp_path / "empty.txt"), "empty vectors"):
        load_vectors(str(tmp_path / "empty.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text(lines[0] + "\n" + lines[1].rsplit(" ", 1)[0] + "\n")
    with raises_with(VectorsError, f"{bad}:2", "expected 8", "found 7"):
        load_vectors(str(bad))
    bad.write_bytes(lines[0].encode() + b"\n\xff\xfe 1 2 3 4 5 6 7 8\n")
    with raises_with(VectorsError, f"{bad}:2", "not UTF-8"):
        load_vectors(str(bad))
    with raises_with(VectorsError, str(glove_file), "8 dimensions", "300"):
        load_vectors(str(glove_file), expect_dim=300)
    kvfile = tmp_path / "v.kv"
    a.save(str(kvfile))
    with raises_with(VectorsError, str(kvfile), "pickles", "`allow_pickle: true`"):
        load_vectors(str(kvfile))
    assert load_vectors(str(kvfile), allow_pickle=True).index_to_key == a.index_to_key


def test_packaged_glove_is_real():
    kv = load_vectors("packaged:glove-6b-50d", limit=20000)
    assert kv.vector_size == 50 and kv.index_to_key[:3] == ["the", ",", "."]
    assert "postponed" in Neighbours(kv)(["delayed"], 10)["delayed"]


# ---------------------------------------------------------------- masked LM candidates


def brute_force(model, tokenizer, words, i, k, valid, pair=False):
    """The reference algorithm: one forward per word, full logits, the whole vocabulary sorted."""
    masked = " ".join(words[:i] + [tokenizer.mask_token] + words[i + 1:])
    enc = tokenizer(masked, " ".join(words) if pair else None, return_tensors="pt")
    logits = model(**enc).logits[0]
    pos = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
    order = torch.argsort(logits[pos], descending=True).tolist()
    return tokenizer.convert_ids_to_tokens([t for t in order if valid[t]][:k])


@pytest.mark.parametrize("pair", [False, True])
def test_batched_top_k_equals_brute_force(tiny_mlm, tokenizer, pair):
    model, _ = tiny_mlm
    valid = whole_word_ids(tokenizer)
    sentences = [split_words(s) for s in ["the flight was delayed again", "great service thanks",
                                          "my luggage never arrived at the gate"]]
    inputs = [(w, i) for w in sentences for i in range(len(w))]
    got = masked_top_k(model, tokenizer, inputs, 7, valid, pair=pair, batch_size=4)
    for (w, i), cand in zip(inputs, got, strict=True):
        assert cand == brute_force(model, tokenizer, w, i, 7, valid, pair)
        assert all(c.isalpha() and not c.startswith("##") for c in cand)


def test_masked_position_past_max_length_gets_candidates_from_a_window(tiny_mlm, tokenizer):
    model, _ = tiny_mlm
    words = ["word"] * 300
    got = masked_top_k(model, tokenizer, [(words, 2), (words, 250)], 5, whole_word_ids(tokenizer), max_length=64)
    assert len(got[0]) == 5 and len(got[1]) == 5


# ---------------------------------------------------------------- TinyBERT method


class Table(TinyBertAugmenter):
    """The TinyBERT sampler with a fixed candidate table (word -> candidates)."""

    def __init__(self, p, table, copies=20, **cfg):
        super().__init__(TinyBertAugmentConfig(p_replace=p, **cfg), copies, None, None, None, None)
        self.table = table

    def candidates(self, sentences):
        return [[self.table.get(w, []) for w in words] for words in sentences]


def test_tinybert_replacement_rate_matches_p_t():
    aug = Table(0.4, {w: [w.upper()] for w in "abcdefghij"}, copies=1)
    words = list("abcdefghij")
    rng = np.random.default_rng(0)
    replaced = sum(sum(o != w for o, w in zip(aug.sample(words, aug.candidates([words])[0], rng), words, strict=True))
                   for _ in range(3000))
    rate = replaced / 30000
    assert abs(rate - 0.4) < 4 * math.sqrt(0.4 * 0.6 / 30000)


def test_tinybert_candidates_route_single_pieces_to_mlm_and_others_to_vectors(tiny_mlm, tokenizer, glove_file):
    model, _ = tiny_mlm
    aug = TinyBertAugmenter(TinyBertAugmentConfig(candidates=3), 2, model, tokenizer, whole_word_ids(tokenizer),
                            Neighbours(load_vectors(str(glove_file))))
    words = split_words("the overbooked flight was frustrating , 42 times")
    table = aug.candidates([words])[0]
    pieces = {w: tokenizer.tokenize(w) for w in words}
    assert len(pieces["flight"]) == 1 and len(pieces["overbooked"]) > 1
    assert table[words.index("flight")] == brute_force(model, tokenizer, words, words.index("flight"), 3,
                                                      whole_word_ids(tokenizer))
    near = Neighbours(load_vectors(str(glove_file)))(["overbooked"], 3)["overbooked"]
    assert table[words.index("overbooked")] == near and len(near) == 3
    for skipped in ("the", "was", ",", "42"):  # stopwords and non-alphabetic words
        assert table[words.index(skipped)] == []


def test_tinybert_pairs_sample_each_side_from_its_own_candidates():
    exs = [Example("e1", "a b", "w x", 0), Example("e2", "c d", "y z", 1)]
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    out = Table(1.0, {w: [w.upper()] for w in "abcdwxyz"}, copies=3, pair_mode="both").augment(exs, rngs)
    assert out[0] == [("A B", "W X")] * 3 and out[1] == [("C D", "Y Z")] * 3
    out = Table(1.0, {w: [w.upper()] for w in "abcdwxyz"}, copies=3).augment(exs, rngs)  # one side at a time
    assert out[0] == [("A B", "w x")] * 3 + [("a b", "W X")] * 3
    assert out[1] == [("C D", "y z")] * 3 + [("c d", "Y Z")] * 3


# ---------------------------------------------------------------- Tang et al. method


def fake_tagger(texts):
    return [[(w, "NN" if w.startswith("n") else "VB") for w in t.split()] for t in texts]


def tang(corpus_words=100, **kw):
    cfg = TangAugmentConfig(**kw)
    corpus = [Example(f"c{i}", f"n{i} v{i}", None, 0) for i in range(corpus_words)]
    return TangAugmenter(cfg, 1, fake_tagger).fit(corpus)


def test_tang_word_level_rates_and_pos_consistency():
    aug = tang(p_mask=0.1, p_pos=0.1, p_ng=0.0)
    tagged = fake_tagger(["n1 v1 n2 v2 n3 v3 n4 v4 n5 v5"])[0]
    rng = np.random.default_rng(0)
    masked = swapped = total = 0
    for _ in range(4000):
        out = aug.synthesise(tagged, rng)
        assert len(out) == len(tagged)
        for (w, _), o in zip(tagged, out, strict=True):
            total += 1
            if o == "[MASK]":
                masked += 1
            elif o != w:
                swapped += 1
                assert o[0] == w[0]  # same POS tag: nouns become nouns, verbs verbs
    tol = 4 * math.sqrt(0.1 * 0.9 / total)
    assert abs(masked / total - 0.1) < tol
    # POS draws come from 100 equally likely words, one of which is the original.
    assert abs(swapped / total - 0.1 * 0.99) < tol


def test_tang_unigram_follows_corpus_frequencies():
    cfg = TangAugmentConfig(p_mask=0.0, p_pos=1.0, p_ng=0.0)
    corpus = [Example("a", "n1 n1 n1 n2", None, 0)]
    aug = TangAugmenter(cfg, 1, fake_tagger).fit(corpus)
    rng = np.random.default_rng(0)
    draws = Counter(aug.synthesise([("n9", "NN")], rng)[0] for _ in range(8000))
    assert abs(draws["n1"] / 8000 - 0.75) < 0.02 and set(draws) == {"n1", "n2"}


def test_tang_ngram_rate_and_shape():
    aug = tang(p_mask=0.0, p_pos=0.0, p_ng=0.25)
    words = [f"n{i}" for i in range(10)]
    tagged = [(w, "NN") for w in words]
    rng = np.random.default_rng(0)
    lengths = Counter()
    cut = 0
    for _ in range(8000):
        out = aug.synthesise(tagged, rng)
        if len(out) < 10:
            cut += 1
            lengths[len(out)] += 1
            start = words.index(out[0])
            assert out == words[start:start + len(out)]
    assert abs(cut / 8000 - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 8000)
    assert set(lengths) == {1, 2, 3, 4, 5}
    assert max(lengths.values()) / min(lengths.values()) < 1.3  # n uniform in 1..5


def test_tang_pairs_synthesise_first_second_or_both():
    aug = tang(p_mask=1.0, p_pos=0.0, p_ng=0.0)
    aug.copies = 3000
    out = aug.augment([Example("p", "n1 n2", "v1 v2", 0)], [np.random.default_rng(0)])[0]
    modes = Counter(("first" if b == "v1 v2" else "second" if a == "n1 n2" else "both") for a, b in out)
    assert set(modes) == {"first", "second", "both"}
    assert all(abs(c / 3000 - 1 / 3) < 0.04 for c in modes.values())
    for a, b in out:
        assert a in ("n1 n2", "[MASK] [MASK]") and b in ("v1 v2", "[MASK] [MASK]")


def test_spacy_packaged_tagger_tags_offline():
    from distill.augment.pos import load_tagger

    tagged = load_tagger("spacy:packaged")(["The flight was delayed again"])[0]
    assert tagged == [("The", "DT"), ("flight", "NN"), ("was", "VBD"), ("delayed", "VBN"), ("again", "RB")]


# ---------------------------------------------------------------- runner


def test_rows_keep_originals_record_sources_and_drop_duplicates():
    exs = [Example("e1", "a b", None, 1)]
    rows, dropped = rows_for(exs, [[("a b", None), ("c b", None), ("c b", None), ("  ", None)]], "tinybert")
    assert [r["method"] for r in rows] == ["original", "tinybert"]
    assert rows[1]["source_id"] == "e1" and rows[1]["id"] == "e1-tinybert1" and rows[1]["label"] == 1
    assert dropped == 3


def aug_config(tiny_mlm, glove_file, *extra):
    _, folder = tiny_mlm
    return load_config(SMOKE, ["task.train_limit=40", "augment.copies=3", "augment.chunk_size=16",
                               f"augment.tinybert.masked_lm={folder}", f"augment.tinybert.vectors={glove_file}",
                               *extra])


def test_same_seed_same_bytes_other_seed_other_output(tiny_mlm, glove_file, tmp_path, monkeypatch):
    cfg = aug_config(tiny_mlm, glove_file)
    task = load_task(cfg.task)
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "a"))
    first = build_augmented(cfg, task, log=lambda *_: None).read_bytes()
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "b"))
    again = build_augmented(cfg, task, log=lambda *_: None).read_bytes()
    assert first == again
    other = build_augmented(aug_config(tiny_mlm, glove_file, "augment.seed=99"), task, log=lambda *_: None)
    assert other.read_bytes() != first
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert sum(r["method"] == "original" for r in rows) == 40
    assert all(r["source_id"] in {ex.id for ex in task.splits["train"]} for r in rows)
    s = stats(build_augmented(cfg, task, log=lambda *_: None))
    assert s["original"] + s["augmented"] == len(rows) and s["augmented"] + s["dropped_duplicates"] == 40 * 3


def test_shards_and_resume_give_the_same_set(tiny_mlm, glove_file, tmp_path, monkeypatch):
    cfg = aug_config(tiny_mlm, glove_file, "augment.method=tang", "augment.tang.tagger=spacy:packaged")
    task = load_task(cfg.task)
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "one"))
    whole = build_augmented(cfg, task, log=lambda *_: None).read_bytes()
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "two"))
    assert build_augmented(cfg, task, num_shards=2, shard_index=1, log=lambda *_: None) is None
    parts = sorted((tmp_path / "two").rglob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-00001.jsonl"]  # 40 examples / 16 = chunks 0, 1, 2; shard 1 has 1
    merged = build_augmented(cfg, task, num_shards=2, shard_index=0, log=lambda *_: None)
    assert merged.read_bytes() == whole
    assert not list((tmp_path / "two").rglob("part-*.jsonl")) and not list((tmp_path / "two").rglob("*.tmp"))
    examples = list(iter_augmented(merged))
    assert {ex.id for ex in examples} >= {ex.id for ex in task.splits["train"]}


def test_cache_key_changes_exactly_when_it_must(tiny_mlm, glove_file):
    base = aug_config(tiny_mlm, glove_file)
    task = load_task(base.task)
    key = augment_key(base, task)
    assert augment_key(aug_config(tiny_mlm, glove_file), task) == key
    assert augment_key(aug_config(tiny_mlm, glove_file, "stages.0.epochs=5"), task) == key  # not an input
    for change in ("augment.tinybert.p_replace=0.5", "augment.copies=4", "augment.seed=3", "seed=3",
                   "augment.tinybert.candidates=5", "augment.tinybert.vectors=packaged:glove-6b-50d",
                   "augment.method=tang"):
        assert augment_key(aug_config(tiny_mlm, glove_file, change), task) != key, change
    other = load_task(aug_config(tiny_mlm, glove_file, "task.train_limit=41").task)
    assert augment_key(base, other) != key


def test_example_rng_depends_on_seed_and_source_only():
    assert example_rng(1, "x").random() == example_rng(1, "x").random()
    assert example_rng(1, "x").random() != example_rng(2, "x").random()
    assert example_rng(1, "x").random() != example_rng(1, "y").random()


def test_empty_and_odd_sentences_do_not_crash(tiny_mlm, tokenizer, glove_file):
    model, _ = tiny_mlm
    aug = TinyBertAugmenter(TinyBertAugmentConfig(candidates=3, p_replace=1.0), 2, model, tokenizer,
                            whole_word_ids(tokenizer), Neighbours(load_vectors(str(glove_file))))
    exs = [Example("a", "   ", None, 0), Example("b", "!!! ...", None, 0), Example("c", "word " * 400, None, 0)]
    out = aug.augment(exs, [np.random.default_rng(i) for i in range(3)])
    assert out[0] == [("", None), ("", None)] and out[1] == [("! ! ! . . .", None)] * 2
    rows, dropped = rows_for(exs, out, "tinybert")
    assert [r["id"] for r in rows if r["method"] == "original"] == ["a", "b", "c"]


def test_a_stage_can_train_on_the_augmented_set_and_reuse_it(tmp_path):
    from distill.lab.run import run_experiment

    over = ["stages.0.data=augmented", "augment.method=tang", "augment.copies=2", "augment.chunk_size=128",
            "stages.1.epochs=1"]
    logs = []
    run_experiment(load_config(SMOKE, over), tmp_path / "r1", log=logs.append)
    line = next(x for x in logs if x.startswith("augmented training set:"))
    n = int(line.split()[3])
    assert 256 < n <= 256 * 3
    assert any(x.startswith("augment: tang, 2 copies of 256 examples") for x in logs)
    assert not any(x.startswith("augment: reusing") for x in logs)
    logs2 = []
    run_experiment(load_config(SMOKE, over), tmp_path / "r2", log=logs2.append)
    assert any(x.startswith("augment: reusing") for x in logs2)
    assert not any(x.startswith("augment: tang, 2 copies") for x in logs2)
    assert next(x for x in logs2 if x.startswith("augmented training set:")) == line


def test_adapt_encoder_writes_a_usable_masked_lm(tmp_path, tokenizer):
    from transformers import BertModel

    from distill.augment.mlm import load_masked_lm
    from distill.teachers.mlm_adapt import adapt_encoder

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64))
    enc.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    texts = ["the flight was delayed", "thanks for the great service", "lost my bag again"] * 20
    out = adapt_encoder(str(tmp_path / "enc"), texts, tmp_path / "mlm", steps=3, batch_size=4, heldout=texts[:6],
                        log=lambda *_: None)
    info = json.loads((out / "adaptation.json").read_text())
    assert info["steps"] == 3 and 0.0 <= info["heldout_top1"] <= 1.0
    model, tok = load_masked_lm(str(out))
    got = masked_top_k(model, tok, [(["the", "flight", "was", "late"], 1)], 4, whole_word_ids(tok))
    assert len(got[0]) == 4
    adapted = dict(model.bert.encoder.named_parameters())
    before = dict(enc.encoder.named_parameters())
    assert any(not torch.equal(adapted[k], before[k]) for k in before)  # it was trained


def test_cli_augment_writes_the_set_and_shards(tmp_path, capsys):
    from distill.lab.cli import main

    over = ["--set", "task.train_limit=30", "--set", "augment.method=tang", "--set", "augment.copies=2",
            "--set", "augment.chunk_size=10"]
    assert main(["augment", str(SMOKE), *over, "--num-shards", "3", "--shard-index", "2"]) == 0
    assert "shard 2 of 3 done" in capsys.readouterr().out
    out = tmp_path / "aug.jsonl"
    assert main(["augment", str(SMOKE), *over, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(r["method"] == "original" for r in rows) == 30 and f"{out}: 30 originals" in printed
    assert main(["augment", str(SMOKE), "--set", "augment.copies=3", "--set", "task.train_limit=30", "--set",
                 "augment.method=tang", "--set", "augment.tang.tagger=spacy:/no/such/model"]) == 2
    assert "is not installed" in capsys.readouterr().err
