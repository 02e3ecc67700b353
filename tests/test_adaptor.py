"""The attention scores we expose are exactly the inputs of eager attention's softmax."""

import copy

import pytest
import torch
from transformers import BertForSequenceClassification

from distill.adaptor import forward_record, set_attention
from distill.needs import Needs

from .helpers import tiny_bert_config


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
    with pytest.raises(RuntimeError, match="no attention scores"):
        forward_record(m, batch(), Needs(attention=True))
