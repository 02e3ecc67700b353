"""distill/adaptor.py: the attention scores it exposes are exactly the inputs of eager attention's softmax, and the
queries, keys and values it hands out are the model's own projections."""

import copy
import math

import pytest
import torch
from torch.testing import assert_close
from transformers import BertConfig, BertForSequenceClassification

from distill.adaptor import forward_record, set_attention
from distill.needs import Needs

from .helpers import raises_with, tiny_bert_config


def batch(vocab=120):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def pair_of_models(make):
    torch.manual_seed(0)
    ours = make().eval()
    eager = copy.deepcopy(ours)
    eager.config = copy.deepcopy(ours.config)
    eager.set_attn_implementation("eager")
    return ours, eager


def check_scores(ours, eager, b):
    set_attention(ours, Needs(attention=True))
    rec = forward_record(ours, b, Needs(hidden=True, attention=True))
    out = eager(**b, output_attentions=True, output_hidden_states=True)
    n = ours.config.num_hidden_layers
    assert len(rec.attention_scores) == n and len(rec.hidden_states) == n + 1
    additive = (1 - b["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    for scores, probs in zip(rec.attention_scores, out.attentions, strict=True):
        torch.testing.assert_close(torch.softmax(scores + additive, -1), probs, atol=1e-5, rtol=1e-4)
        # Pre-softmax: rows do not sum to one and padded keys keep finite raw scores.
        assert torch.isfinite(scores).all() and not torch.allclose(scores.sum(-1), torch.ones(()))
    torch.testing.assert_close(rec.logits, out.logits, atol=1e-5, rtol=1e-4)
    # index 0 is the embedding output
    emb = ours.bert.embeddings(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"])
    torch.testing.assert_close(rec.hidden_states[0], emb)


def test_scores_are_eager_softmax_inputs_on_a_tiny_bert():
    ours, eager = pair_of_models(lambda: BertForSequenceClassification(tiny_bert_config()))
    check_scores(ours, eager, batch())


def test_scores_are_eager_softmax_inputs_on_the_packaged_minilm():
    from distill.teachers.load import load_classifier

    ours, eager = pair_of_models(lambda: load_classifier("packaged:all-minilm-l6-v2", ["a", "b"]))
    check_scores(ours, eager, batch(vocab=30000))


def test_gradients_flow_through_scores_and_sdpa_mode_returns_none():
    torch.manual_seed(0)
    m = BertForSequenceClassification(tiny_bert_config())
    set_attention(m, Needs(attention=True))
    rec = forward_record(m, batch(), Needs(attention=True))
    rec.attention_scores[0].pow(2).mean().backward()
    assert m.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    set_attention(m, Needs())
    with raises_with(RuntimeError, "no attention scores", "set_attention"):
        forward_record(m, batch(), Needs(attention=True))


# ---------------------------------------------------------------- q, k, v of a real tiny BERT


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(10)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 50, (2, 4))
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
             "token_type_ids": torch.zeros_like(ids)}
    return model, batch


def test_adaptor_hands_out_the_models_own_projections(tiny_bert):
    model, batch = tiny_bert
    with torch.no_grad():
        set_attention(model, Needs(qkv=True))
        rec_ = forward_record(model, batch, Needs(hidden=True, attention=True, qkv=True))
        set_attention(model, Needs())
        plain = forward_record(model, batch, Needs())
    b, s, heads, d = 2, 4, 4, 4
    assert len(rec_.qkv) == 2 and len(rec_.attention_scores) == 2
    for layer in range(2):
        attn = model.bert.encoder.layer[layer].attention.self
        x = rec_.hidden_states[layer]
        with torch.no_grad():
            want = [proj(x).view(b, s, heads, d).transpose(1, 2) for proj in (attn.query, attn.key, attn.value)]
        for got, ref in zip(rec_.qkv[layer], want, strict=True):
            assert got.shape == (b, heads, s, d)
            assert_close(got, ref, rtol=1e-5, atol=1e-6)
        q, k, _ = want
        assert_close(rec_.attention_scores[layer], q @ k.transpose(-1, -2) / math.sqrt(d), rtol=1e-5, atol=1e-6)
    assert_close(rec_.logits, plain.logits, rtol=1e-5, atol=1e-5)


def test_adaptor_qkv_without_parts_attention_raises(tiny_bert):
    model, batch = tiny_bert
    set_attention(model, Needs(attention=True))
    with torch.no_grad(), raises_with(RuntimeError, "set_attention"):
        forward_record(model, batch, Needs(hidden=True, attention=True, qkv=True))
