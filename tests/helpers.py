"""Shared test helpers (fixtures stay in conftest.py; helpers are imported from here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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


def assert_facts(message: str, *facts: str) -> None:
    """An error message carries each fact a user needs (the key, the value, what was expected, the file and line)
    as a substring, whatever the sentence around them says."""
    missing = [f for f in facts if f not in message]
    assert not missing, f"the message lacks {missing}: {message!r}"


@contextmanager
def raises_with(exc_type: type[BaseException], *facts: str) -> Iterator[pytest.ExceptionInfo]:
    """`pytest.raises(exc_type)` whose message must carry every one of `facts` (see `assert_facts`)."""
    with pytest.raises(exc_type) as info:
        yield info
    assert_facts(str(info.value), *facts)


def write_file(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    return path


def smoke_with(folder: Path, body: str, name: str = "cfg.yaml") -> Path:
    """A config that extends the smoke experiment with `body`."""
    return write_file(folder, name, f"extends: {SMOKE}\n{body}")


def refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Runs the command line, which must refuse (exit 2); returns its stderr."""
    from distill.lab.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    return err


def set_flags(overrides: list[str]) -> list[str]:
    """`--set` before each override, as the command line takes them."""
    return [arg for o in overrides for arg in ("--set", o)]
