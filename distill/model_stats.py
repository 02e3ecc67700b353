"""Sizes and compute of BERT-shaped models, for reports and ratios."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def encoder_flops_per_token(config, seq_len: int) -> int:
    """Multiply-adds x 2 per token in the transformer layers (embeddings and classifier excluded):
    Q, K, V and output projections (4 h^2), the feed-forward block (2 h f), and the attention
    products QK^T and AV (2 L h) for a sequence of length L."""
    f = getattr(config, "intermediate_size", None) or config.hidden_dim  # DistilBERT calls it hidden_dim
    h, n = config.hidden_size, config.num_hidden_layers
    return 2 * n * (4 * h * h + 2 * h * f + 2 * seq_len * h)


def classifier_flops(model: nn.Module, seq_len: int) -> int:
    """FLOPs (2 x multiply-adds) of one example of `seq_len` tokens through a whole BERT-shaped sequence
    classifier: the transformer layers plus the pooler / pre-classifier and the classifier. Embedding lookups,
    layer norms, softmax and activations are left out (they are a few percent at most). Other students count
    their own (`Student.flops`)."""
    c = model.config
    h = c.hidden_size
    head = 2 * h * h + 2 * h * c.num_labels  # BERT's pooler or DistilBERT's pre_classifier, then the classifier
    return seq_len * encoder_flops_per_token(c, seq_len) + head
