"""`distill bench`: FLOPs per example against hand computations and torch's own FLOP counter, sizes on disk,
and the ratio table."""

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from distill.lab.bench import BenchError, Row, build_shape, disk_bytes, quantize_int8, render
from distill.model_stats import classifier_flops
from distill.students import get_student
from distill.students.bilstm import BiLSTMClassifier, BiLSTMConfig

from .helpers import raises_with


def tiny_bert():
    return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=16, num_labels=3,
                                                    attn_implementation="eager")).eval()


def test_bert_flops_by_hand():
    # L=2 layers, h=8, f=16, S=4 tokens, 3 labels. Per layer: Q,K,V,O 4 * 2*S*h*h = 2048; feed-forward
    # 2 * 2*S*h*f = 2048; QK^T and AV 2 * 2*S*S*h = 512 -> 4608. Two layers 9216, pooler 2*h*h = 128,
    # classifier 2*h*3 = 48.
    assert classifier_flops(tiny_bert(), 4) == 9216 + 128 + 48


def test_bert_flops_match_torchs_flop_counter():
    model = tiny_bert()
    ids = torch.randint(0, 50, (1, 6))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    assert classifier_flops(model, 6) == counter.get_total_flops()


def test_distilbert_flops_match_torchs_flop_counter():
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=50, dim=8, n_layers=3, n_heads=2, hidden_dim=12, num_labels=2, attn_implementation="eager")).eval()
    ids = torch.randint(0, 50, (1, 5))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    assert classifier_flops(model, 5) == counter.get_total_flops()


def test_bilstm_flops_by_hand():
    # E=5, H=3, S=4, FC 7, 2 labels. Each direction, each token: 4 gates x (E*H + H*H) multiply-adds = 96,
    # x2 FLOPs x2 directions x4 tokens = 1536. Head: 2*(2H*7) + 2*(7*2) = 84 + 28.
    model = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embedding_dim=5, hidden=3, fc=7, num_labels=2))
    bilstm = get_student("bilstm")
    assert bilstm.flops(model, 4) == 1536 + 112
    pair = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embedding_dim=5, hidden=3, fc=7, num_labels=2, pair=True))
    assert bilstm.flops(pair, 4) == 2 * 1536 + 2 * (24 * 7) + 28  # two sentences, features [h1,h2,h1*h2,|h1-h2|]


def test_named_shapes_have_the_papers_sizes():
    # BERT-base ~110M and TinyBERT-4 ~14.5M parameters (with a 2-label head), DistilBERT ~66M.
    sizes = {n: sum(p.numel() for p in build_shape(n)[1].parameters()) / 1e6 for n in ("bert-base", "tinybert4",
                                                                                       "distilbert")}
    assert {n: build_shape(n)[0].name for n in ("bert-base", "distilbert", "bilstm")} == {
        "bert-base": "tinybert", "distilbert": "distilbert", "bilstm": "bilstm"}
    assert 109 < sizes["bert-base"] < 110 and 14.3 < sizes["tinybert4"] < 14.6 and 66 < sizes["distilbert"] < 67.5
    with raises_with(BenchError, "unknown model", "'bert-huge'", "bert-large", "--student RUN"):
        build_shape("bert-huge")


def test_disk_size_is_the_weights_and_int8_stores_linear_weights_in_a_byte():
    model = tiny_bert()
    n = sum(p.numel() for p in model.parameters())
    float_bytes = disk_bytes(model)
    assert 4 * n <= float_bytes < 4 * n + 20_000  # fp32 weights plus the safetensors header
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    q = disk_bytes(quantize_int8(model))
    assert q < float_bytes - 2.5 * linear  # each linear weight went from 4 bytes to 1 (scales and biases stay)


def test_ratio_table():
    rows = [Row("teacher", 100_000_000, 400 * 2**20, 20 * 10**9, 40.0, 50.0),
            Row("student", 10_000_000, 40 * 2**20, 2 * 10**9, 5.0, 500.0, {"macro_f1": 0.8})]
    text = render(rows, 128, 32, "cpu")
    line = next(x for x in text.splitlines() if x.startswith("| student"))
    assert line == ("| student | 10.00M | 40.0 | 2.00 | 5.00 | 500.0 | 10.0 | 10.0 | 8.0 | 10.0 | macro_f1 0.8000 |")


def test_a_pair_bilstm_is_timed_on_two_sentences():
    # `bench --student` on a pair BiLSTM crashed: its timed forward passed no second sentence.
    from distill.lab.bench import batch_inputs

    pair = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embedding_dim=5, hidden=3, fc=7, num_labels=2, pair=True))
    assert batch_inputs(get_student("bilstm"), pair, 4, 6, "cpu")().shape == (4, 2)
