"""Loading never runs code: weights are safetensors, any torch.load is weights_only, YAML is safe-loaded, no
remote code. A pickle that would create a file when unpickled is refused, and the file never appears."""

import pickle
import re
from pathlib import Path

import pytest
import torch

from distill.checkpoint import Checkpointer, Progress

from .helpers import ROOT, tiny_bert_config


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"optimizer": Payload(marker), "scheduler": None}))
    assert not marker.exists()


def test_pickled_code_in_an_optimizer_checkpoint_does_not_run(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    ckpt.save(model.state_dict(), Progress(), opt)
    marker = tmp_path / "pwned"
    evil_pickle(ckpt.last / "optimizer.pt", marker)
    with pytest.raises(pickle.UnpicklingError):
        ckpt.load_optimizer(opt)
    assert not marker.exists()


def test_pickled_code_in_a_checkpoint_folder_does_not_run(tmp_path):
    from distill.teachers.load import CheckpointError, load_classifier

    folder = tmp_path / "model"
    folder.mkdir()
    tiny_bert_config().save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings": Payload(marker)}))
    with pytest.raises((CheckpointError, OSError, pickle.UnpicklingError, RuntimeError, ValueError)):
        load_classifier(str(folder), ["a", "b"])
    assert not marker.exists()


def test_the_source_never_unpickles_unsafely_or_runs_remote_code():
    sources = [p for d in ("distill", "teachers", "students", "augment", "bench") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text()
        assert "trust_remote_code=True" not in text, path
        assert not re.search(r"yaml\.load\(", text), path  # yaml.safe_load only
        assert not re.search(r"pickle\.loads?\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_exported_students_are_safetensors_only(tmp_path):
    from transformers import BertForSequenceClassification

    from distill.students import get_student
    from distill.teachers.load import load_tokenizer

    get_student("tinybert").export(BertForSequenceClassification(tiny_bert_config()), tmp_path / "s",
                                   load_tokenizer("packaged:all-minilm-l6-v2"))
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
