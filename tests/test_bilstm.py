"""The BiLSTM student: padding, vocabulary/OOV, pair features, export, and the teacher-output cache."""

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from distill.batching import pad_ids
from distill.config import load_config
from distill.students import get_student
from distill.students.bilstm import (
    MASK,
    BiLSTMClassifier,
    BiLSTMConfig,
    BiLSTMStudentConfig,
    WordVocab,
    load_bilstm,
    predict,
    save_bilstm,
    words_of,
)

from .helpers import SMOKE, raises_with


def model(pair=False, seed=0):
    torch.manual_seed(seed)
    config = BiLSTMConfig(vocab_size=50, embedding_dim=6, hidden=5, fc=7, num_labels=3, pair=pair)
    return BiLSTMClassifier(config).eval()


def test_padded_batch_gives_the_logits_of_each_sequence_alone():
    m = model()
    seqs = [[4, 5, 6, 7, 8], [9, 10], [11, 12, 13]]
    ids, lengths = pad_ids(seqs)
    with torch.no_grad():
        batched = m(ids, lengths)
        alone = torch.cat([m(torch.tensor([s]), torch.tensor([len(s)])) for s in seqs])
        # garbage in the padded positions changes nothing
        noisy = ids.clone()
        noisy[1, 2:] = 33
        noisy[2, 3:] = 44
        noisy_out = m(noisy, lengths)
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(noisy_out, batched)
    assert batched.shape == (3, 3)


def test_encoding_is_final_forward_state_and_final_backward_state():
    m = model()
    ids = torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        out, _ = m.lstm(m.embedding(ids))
        h = m.encode(ids, torch.tensor([3]))
    torch.testing.assert_close(h[0, :5], out[0, -1, :5])  # forward direction after the last word
    torch.testing.assert_close(h[0, 5:], out[0, 0, 5:])  # backward direction after the first word


def test_pair_features_are_h1_h2_product_and_absolute_difference():
    m = model(pair=True)
    a, la = pad_ids([[4, 5, 6], [7, 8]])
    b, lb = pad_ids([[9], [10, 11, 12]])
    with torch.no_grad():
        h1, h2 = m.encode(a, la), m.encode(b, lb)
        want = m.head(torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1))
        got = m(a, la, b, lb)
    torch.testing.assert_close(got, want)
    assert m.head[0].in_features == 4 * 2 * 5


def test_vocabulary_and_oov_policy():
    texts = ["The flight was late", "the FLIGHT zzyzx zzyzx", "qwerty once", f"an {MASK} here"]
    vocab = WordVocab.build(texts, known={"the", "flight", "was", "late", "an", "here"}, min_count=2)
    assert vocab.itos[:3] == ["[PAD]", "[UNK]", MASK]
    assert "zzyzx" in vocab.stoi  # not in the vectors but frequent enough
    assert "qwerty" not in vocab.stoi and "once" not in vocab.stoi  # rare and unknown -> [UNK]
    assert vocab.encode("the qwerty flight") == [vocab.stoi["the"], 1, vocab.stoi["flight"]]
    assert words_of(f"An {MASK} here!") == ["an", MASK, "here", "!"]
    assert vocab.encode(f"an {MASK}")[1] == 2
    assert vocab.encode("   ") == [1]
    assert len(vocab.encode("the " * 50, max_length=8)) == 8


def test_embeddings_come_from_the_vectors_and_unknown_frequent_words_are_random(tmp_path):
    from distill.students.bilstm import build_bilstm

    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["the", "flight"], np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.float32))
    path = tmp_path / "vec.txt"
    kv.save_word2vec_format(str(path), binary=False)

    class T:
        config = type("C", (), {"id2label": {0: "neg", 1: "pos"}, "num_labels": 2})()

    cfg = BiLSTMStudentConfig(kind="bilstm", vectors=str(path), hidden=3, min_count=2)
    m = build_bilstm(cfg, T(), seed=0, texts=["the flight", "the zzyzx", "zzyzx again"])
    e = m.embedding.weight
    torch.testing.assert_close(e[m.vocab.stoi["flight"]], torch.tensor([5.0, 6, 7, 8]))
    assert torch.all(e[0] == 0) and m.vocab.stoi.get("again") is None
    assert not torch.allclose(e[m.vocab.stoi["zzyzx"]], torch.zeros(4))
    assert m.coverage == {"vocab": 6, "pretrained": 2}  # 3 specials + the, flight, zzyzx
    frozen = build_bilstm(BiLSTMStudentConfig(kind="bilstm", vectors=str(path), freeze_embeddings=True), T(), 0,
                          ["the"])
    assert not frozen.embedding.weight.requires_grad
    clipped = get_student("bilstm").clip_parameters(frozen)
    assert {n for n, p in frozen.named_parameters() if any(p is q for q in clipped)} == \
        {n for n, _ in frozen.named_parameters() if not n.startswith("embedding")}


def test_export_round_trip(tmp_path):
    m = model(pair=False)
    m.vocab = WordVocab([f"w{i}" for i in range(47)])
    save_bilstm(m, tmp_path / "student")
    back = load_bilstm(tmp_path / "student")
    texts = ["w1 w2 w3", "w4 unknown"]
    torch.testing.assert_close(predict(back, texts), predict(m, texts))
    assert torch.allclose(predict(back, texts).sum(-1), torch.ones(2))


def test_tang_loss_by_hand():
    from distill.adaptor import Record
    from distill.losses import LossContext
    from distill.objective import Objective

    zs, zt = torch.tensor([[1.0, 0.0], [0.5, 2.0]]), torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    alpha = 0.3
    obj = Objective({"hard_ce": alpha, "logits_mse": 1 - alpha})
    total, _ = obj(Record(zs, torch.ones(2, 1)), Record(zt, torch.ones(2, 1)), {"labels": labels}, LossContext([]))
    ce = (-(torch.log_softmax(zs, -1)[0, 0] + torch.log_softmax(zs, -1)[1, 1]) / 2).item()
    mse = ((1 - 2) ** 2 + (0 + 1) ** 2 + (0.5 - 0) ** 2 + (2 - 1) ** 2) / 4
    assert total.item() == pytest.approx(alpha * ce + (1 - alpha) * mse, rel=1e-6)


# ---------------------------------------------------------------- end to end, and the cache


BILSTM = ["student.kind=bilstm", "student.hidden=16", "student.fc=8", "student.min_count=1",
          "student.vectors=packaged:glove-6b-50d", "student.vectors_limit=20000",
          "stages=[{name: train, epochs: 2, lr: 0.01, batch_size: 32, losses: {logits_mse: 1.0}}]"]


def test_bilstm_run_uses_the_logit_cache_and_exports(tmp_path, monkeypatch):
    from distill.lab.run import run_experiment

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))  # other tests' runs share the session cache

    logs = []
    m = run_experiment(load_config(SMOKE, BILSTM), tmp_path / "a", log=logs.append)
    assert sum(x.startswith("teacher logits: computing") for x in logs) == 3  # train, dev, test (predictions)
    assert m["student"]["kind"] == "bilstm" and m["student"]["parameters"] < m["teacher"]["parameters"]
    logs2 = []
    run_experiment(load_config(SMOKE, [*BILSTM, "seed=5"]), tmp_path / "b", log=logs2.append)
    assert sum(x.startswith("teacher logits: reusing") for x in logs2) == 3
    back = load_bilstm(tmp_path / "a" / "student")
    assert back.config.labels == ["negative", "neutral", "positive"]
    assert predict(back, ["thanks for the great flight"]).shape == (1, 3)
    card = (tmp_path / "a" / "student" / "README.md").read_text()
    assert "library_name" not in card.split("\n---\n")[0]  # not a transformers model
    assert f"BiLSTM (hidden {m['student']['hidden']}, {m['student']['vocab']} words)" in card and "load_bilstm" in card


def test_bilstm_refuses_intermediate_losses(tmp_path):
    from distill.config import ConfigError
    from distill.lab.run import run_experiment

    with raises_with(ConfigError, "stages.0", "bilstm student", "no hidden states", "logit losses"):
        run_experiment(load_config(SMOKE, BILSTM[:-1]), tmp_path / "x", log=lambda *_: None)


def test_logit_cache_is_keyed_reused_and_atomic(tmp_path, monkeypatch):
    from accelerate import Accelerator

    import distill.teachers.logits as tl
    from distill.config import RandomBertConfig, TrainConfig
    from distill.encoded import encode_examples
    from distill.tasks import Example
    from distill.teachers.load import load_tokenizer, random_bert

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path))
    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    teacher = random_bert(RandomBertConfig(layers=1, hidden=16, heads=2, ffn=32), tok, ["a", "b"], seed=0).eval()
    exs = [Example(str(i), f"text number {i} " * (1 + i % 5), None, i % 2) for i in range(50)]
    ds = encode_examples(exs, tok, 32)
    acc = Accelerator(cpu=True)
    calls = []
    real = tl.compute_logits
    monkeypatch.setattr(tl, "compute_logits", lambda *a, **k: calls.append(1) or real(*a, **k))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tl, "save_tensors", boom)
    with pytest.raises(OSError):
        tl.cached_logits(teacher, "t1", ds, acc, TrainConfig(), log=lambda *_: None)
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing half-written is left to be read
    monkeypatch.undo()
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path))
    monkeypatch.setattr(tl, "compute_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = tl.cached_logits(teacher, "t1", ds, acc, TrainConfig(), log=lambda *_: None)
    again = tl.cached_logits(teacher, "t1", ds, acc, TrainConfig(), log=lambda *_: None)
    assert len(calls) == 2 and torch.equal(first, again)  # the failed try, then one computation
    with torch.no_grad():
        direct = teacher(**tok([exs[3].text_a], return_tensors="pt")).logits[0]
    torch.testing.assert_close(first[3], direct, atol=1e-5, rtol=1e-4)  # row order = dataset order
    tl.cached_logits(teacher, "t2", ds, acc, TrainConfig(), log=lambda *_: None)
    assert len(calls) == 3  # another teacher -> another file
    ds2 = encode_examples(exs[:-1], tok, 32)
    tl.cached_logits(teacher, "t1", ds2, acc, TrainConfig(), log=lambda *_: None)
    assert len(calls) == 4  # other data -> another file
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3
