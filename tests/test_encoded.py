"""Encoded datasets on disk: what the memory maps hold equals what the tokenizer gives, row by row; the cache key
follows content, tokenizer and max length; an interrupted encoding leaves nothing; streams are read in chunks;
a dataset pickles without its contents; the BiLSTM's word ids are cached alongside."""

import json
import pickle

import numpy as np
import pytest
import torch

import distill.encoded as encoded
from distill.batching import PadCollator
from distill.encoded import EncodedDataset, encode_examples, encode_stream
from distill.loaders import fingerprint
from distill.ragged import Ragged, RaggedWriter, id_dtype
from distill.tasks import Example

from .helpers import raises_with


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def quiet(*_):
    pass


SINGLES = [Example("a", "the flight was late", None, 2), Example("b", "great crew , thanks !", None, 0),
           Example("c", "never again " * 40, None, None), Example("d", "ok", None, 1)]
PAIRS = [Example("p", "is the gate open", "the gate is closed", 1), Example("q", "two", "three four five", 0),
         Example("r", "one " * 30, "two " * 30, 1)]


@pytest.mark.parametrize("examples", [SINGLES, PAIRS], ids=["single", "pair"])
def test_rows_labels_and_ids_equal_the_tokenizers_output(cache, tokenizer, examples):
    ds = encode_examples(examples, tokenizer, 16, log=quiet)
    pair = examples[0].text_b is not None
    want = tokenizer([e.text_a for e in examples], [e.text_b for e in examples] if pair else None, truncation=True,
               max_length=16)
    assert len(ds) == len(examples) and ds.ids.values.dtype == np.uint16
    for i in range(len(examples)):
        item = ds[i]
        assert item["input_ids"].tolist() == want["input_ids"][i]
        assert item["token_type_ids"].tolist() == want["token_type_ids"][i]
        assert item["index"] == i
    assert ds.lengths().tolist() == [len(x) for x in want["input_ids"]]
    assert ds.labels.tolist() == [-100 if e.label is None else e.label for e in examples]
    assert list(ds.example_ids()) == [e.id for e in examples]
    # The identity the teacher-logit cache was keyed by before this format: caches made earlier stay valid.
    assert ds.identity == f"{fingerprint(examples)}:{tokenizer.name_or_path}:{len(tokenizer)}:16"
    assert (ds.folder / "token_type_ids.bin").exists() == pair
    counts = ds.token_counts()
    flat = np.array([t for x in want["input_ids"] for t in x])
    assert np.array_equal(counts, np.bincount(flat))


def test_regression_labels_are_float_with_zero_for_missing(cache, tokenizer):
    exs = [Example("a", "fine", None, 3.5), Example("b", "bad", None, None)]
    ds = encode_examples(exs, tokenizer, 8, regression=True, log=quiet)
    assert ds.labels.dtype == torch.float32 and ds.labels.tolist() == [3.5, 0.0]


def test_encoded_once_and_keyed_by_content_tokenizer_and_max_length(cache, tokenizer, monkeypatch):
    first = encode_examples(SINGLES, tokenizer, 16, log=quiet)
    monkeypatch.setattr(encoded, "build", lambda *a, **k: pytest.fail("encoded again"))
    assert encode_examples(list(SINGLES), tokenizer, 16, log=quiet).folder == first.folder
    monkeypatch.undo()
    others = {encode_examples(SINGLES, tokenizer, 17, log=quiet).folder,
              encode_examples(SINGLES[:-1], tokenizer, 16, log=quiet).folder,
              encode_examples([*SINGLES[:-1], Example("d", "ok", None, 0)], tokenizer, 16, log=quiet).folder,
              encode_examples(SINGLES, tokenizer, 16, regression=True, log=quiet).folder}
    assert len(others) == 4 and first.folder not in others


def test_an_interrupted_encoding_leaves_nothing_and_the_next_one_completes(cache, tokenizer, monkeypatch):
    monkeypatch.setattr(encoded, "CHUNK", 2)

    def failing():
        yield from SINGLES[:3]
        raise OSError("disk full")

    with pytest.raises(OSError):
        encode_stream(failing, {"test": 1}, tokenizer, 16, log=quiet)
    assert not any(p.name == "meta.json" for p in cache.rglob("*"))
    assert not [p for p in (cache / "encoded").iterdir()]  # no half-written folder either
    ds = encode_stream(lambda: iter(SINGLES), {"test": 1}, tokenizer, 16, log=quiet)
    assert len(ds) == 4 and list(ds.example_ids()) == [e.id for e in SINGLES]


def test_a_stream_is_tokenised_in_chunks_as_it_is_read(cache, tokenizer, monkeypatch):
    monkeypatch.setattr(encoded, "CHUNK", 3)
    read, calls = [], []

    def source():
        for i in range(10):
            read.append(i)
            yield Example(str(i), f"word {i}", None, i % 2)

    class Counting:  # the tokenizer, recording how much the source had yielded at each call
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __len__(self):
            return len(tokenizer)

        def __call__(self, a, b=None, **kw):
            calls.append((len(a), len(read)))
            return tokenizer(a, b, **kw)

    ds = encode_stream(source, {"stream": 1}, Counting(), 8, log=quiet)
    assert len(ds) == 10
    # Each call saw only its chunk read so far: the stream is never held whole.
    assert calls == [(3, 3), (3, 6), (3, 9), (1, 10)]


def test_pickles_without_its_contents_and_loads_the_same_items(cache, tokenizer):
    exs = [Example(str(i), "word " * (1 + i % 20), None, i % 3) for i in range(400)]
    ds = encode_examples(exs, tokenizer, 32, log=quiet)
    _ = ds[5]  # maps the files
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000  # offsets and labels, not the token ids (and not the source examples)
    again = pickle.loads(blob)
    assert again.source is None
    for i in (0, 199, 399):
        assert again[i]["input_ids"].tolist() == ds[i]["input_ids"].tolist()


def test_dataloader_workers_give_the_same_batches(cache, tokenizer):
    from distill.config import TrainConfig
    from distill.trainer import make_loader

    exs = [Example(str(i), "word " * (1 + i % 13), None, i % 2) for i in range(64)]
    ds = encode_examples(exs, tokenizer, 32, log=quiet)
    batches = {}
    for workers in (0, 2):
        loader, _ = make_loader(ds, 8, 3, True, TrainConfig(num_workers=workers))
        batches[workers] = [(b["index"].tolist(), b["input_ids"].tolist()) for b in loader]
    assert batches[0] == batches[2]


def test_student_word_ids_are_encoded_once_per_vocabulary_and_memory_mapped(cache, tokenizer):
    vocab = {"the": 3, "gate": 4, "is": 5}
    calls = []

    def encode(text):
        calls.append(text)
        return [vocab.get(w, 1) for w in text.split()][:6] or [1]

    ds = encode_examples(PAIRS, tokenizer, 16, log=quiet)
    ds.attach_student(encode, "v1", 10, quiet)
    assert len(calls) == 2 * len(PAIRS)
    for i, ex in enumerate(PAIRS):
        item = ds[i]
        assert item["student_ids"].tolist() == encode(ex.text_a)
        assert item["student_ids_b"].tolist() == encode(ex.text_b)
    calls.clear()
    fresh = EncodedDataset(ds.folder, ds.source)
    fresh.attach_student(encode, "v1", 10, quiet)
    assert not calls  # cached
    batch = PadCollator(0)([fresh[0], fresh[1]])
    assert batch["student_lengths_b"].tolist() == [4, 3]
    single = encode_examples(SINGLES, tokenizer, 16, log=quiet)
    single.attach_student(encode, "v1", 10, quiet)
    assert "student_ids_b" not in single[0]


def test_augmented_jsonl_is_streamed_keyed_by_its_bytes_and_bad_rows_named(cache, tokenizer, tmp_path):
    from distill.augment.runner import encode_augmented
    from distill.loaders import DataError

    path = tmp_path / "augmented.jsonl"
    rows = [{"id": f"x{i}", "source_id": "x", "method": "original", "text_a": f"text {i}", "text_b": None,
             "label": i % 2} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = encode_augmented(path, tokenizer, 16, False, quiet)
    assert list(ds.example_ids()) == [r["id"] for r in rows] and ds.labels.tolist() == [0, 1, 0, 1, 0]
    assert [t for t in ds.texts()] == [r["text_a"] for r in rows]
    path.write_text(path.read_text() + '{"id": "y", "text_a": "no label"}\n')
    with raises_with(DataError, f"{path}:6:", "not an augmented-set row", "'text_b'"):
        encode_augmented(path, tokenizer, 16, False, quiet)  # other bytes: another key, re-encoded, and refused


def test_ragged_round_trip_types_and_chunked_counts(tmp_path):
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 300, size=int(rng.integers(0, 9))).tolist() for _ in range(50)]
    w = RaggedWriter(tmp_path / "v.bin", tmp_path / "o.npy", np.uint16)
    w.append(rows[:20])
    w.append([])
    w.append(rows[20:])
    assert w.close() == 50
    r = Ragged(tmp_path / "v.bin", tmp_path / "o.npy", np.uint16)
    assert [r.row(i).tolist() for i in range(50)] == rows
    flat = [v for x in rows for v in x]
    assert np.array_equal(r.bincount(chunk=7), np.bincount(flat))
    assert id_dtype(30522) == np.uint16 and id_dtype(70000) == np.uint32
    bad = RaggedWriter(tmp_path / "b.bin", tmp_path / "b.npy", np.uint16)
    with raises_with(ValueError, str(tmp_path / "b.bin"), "out of range", "uint16", "max 70000"):
        bad.append([[70000]])


def test_the_encoding_line_reads_as_a_sentence(cache, tokenizer):
    said = []
    ds = encode_examples(SINGLES, tokenizer, 16, log=said.append, what="the train split")
    tokens = sum(len(ds[i]["input_ids"]) for i in range(len(ds)))
    assert said[-1] == f"encoded the train split: {len(SINGLES)} examples, {tokens} tokens"
