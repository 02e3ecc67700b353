import os
import shutil

import pytest

from .helpers import SMOKE

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
    shutil.copy(SMOKE, dst)
    return dst
