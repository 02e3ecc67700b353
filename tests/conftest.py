import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # One teacher cache per test session, never the user's; session-scoped so that module-scoped
    # fixtures (which run before function-scoped ones) see it too.
    old = os.environ.get("DISTILLERY_CACHE")
    os.environ["DISTILLERY_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    yield
    if old is None:
        os.environ.pop("DISTILLERY_CACHE", None)
    else:
        os.environ["DISTILLERY_CACHE"] = old


@pytest.fixture
def smoke_config(tmp_path):
    """experiments/smoke.yaml copied into tmp_path (so `extends` tests can sit beside it)."""
    dst = tmp_path / "smoke.yaml"
    shutil.copy(ROOT / "experiments" / "smoke.yaml", dst)
    return dst


def tiny_bert_config(**kw):
    from transformers import BertConfig

    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, num_labels=3, max_position_embeddings=64)
    base.update(kw)
    return BertConfig(**base)
