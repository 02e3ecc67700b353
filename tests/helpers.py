"""Shared test helpers (fixtures stay in conftest.py; helpers are imported from here)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def tiny_bert_config(**kw):
    from transformers import BertConfig

    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, num_labels=3, max_position_embeddings=64)
    base.update(kw)
    return BertConfig(**base)


def quiet(*_args) -> None:
    """A `log` that says nothing."""
