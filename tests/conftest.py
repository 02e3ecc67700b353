import os
import shutil

import pytest

from .helpers import SMOKE
from .standins import Standins

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


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged MiniLM tokenizer (real WordPiece vocabulary, no download), loaded once per session."""
    from distill.teachers.load import load_tokenizer

    return load_tokenizer("packaged:all-minilm-l6-v2")


@pytest.fixture
def smoke_config(tmp_path):
    """experiments/smoke.yaml copied into tmp_path (so `extends` tests can sit beside it)."""
    dst = tmp_path / "smoke.yaml"
    shutil.copy(SMOKE, dst)
    return dst


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    import huggingface_hub.constants as hub_constants

    root = tmp_path_factory.mktemp("standins")
    s = Standins(root)
    with pytest.MonkeyPatch.context() as mp:
        for var, value in (("HF_HOME", root / "hf"), ("HF_HUB_CACHE", s.hub), ("HF_HUB_OFFLINE", "1")):
            mp.setenv(var, str(value))
        # huggingface_hub reads these environment variables once, at import; transformers reads the constants.
        mp.setattr(hub_constants, "HF_HUB_CACHE", str(s.hub))
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        yield s


@pytest.fixture
def no_weights(monkeypatch):
    """Check reads configs and tokenizers only: any model weights loaded fail the test (the hub stand-ins have none
    anyway; this also covers the packaged MiniLM, which has)."""
    from transformers import PreTrainedModel

    def refuse(cls, *args, **kwargs):
        raise AssertionError(f"distill check loaded the weights of {args[0] if args else kwargs}")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
