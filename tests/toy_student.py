"""A fourth student, registered from outside distillery in this one file: the mean of the word-piece embeddings
(the teacher's tokenizer) through one linear layer. Not a Hugging Face model: it saves its own files
(`model.safetensors`, `config.json`, the tokenizer) and loads them back with `load_toy`.

Importing this module registers it as `student.kind: toy`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from distill.adaptor import Record
from distill.input_encoding import InputEncoding
from distill.io import atomic_dir, load_tensors, save_tensors, write_json
from distill.needs import Needs
from distill.student_registry import (
    Graph,
    Loaded,
    Shape,
    Student,
    StudentConfig,
    StudentError,
    register_student,
)

FOLDER_TYPE = "distillery-toy"
INPUTS = ["input_ids", "attention_mask"]


@dataclass
class ToyStudentConfig(StudentConfig):
    """`student.kind: toy`."""

    dim: int = 16  # embedding width


@dataclass
class ToyModelConfig:
    vocab_size: int
    dim: int
    num_labels: int
    labels: list[str] | None = None


class MeanPooled(nn.Module):
    def __init__(self, config: ToyModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.head = nn.Linear(config.dim, config.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        return self.head((self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0))


def load_toy(folder: str | Path) -> MeanPooled:
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("model_type")
    model = MeanPooled(ToyModelConfig(**raw))
    model.load_state_dict(load_tensors(folder / "model.safetensors"))
    return model.eval()


@register_student("toy", config=ToyStudentConfig)
class Toy(Student):
    folder_types = (FOLDER_TYPE,)
    intermediate = False
    masked_lm = False

    def plan(self, cfg: ToyStudentConfig, teacher_config) -> Shape:
        if cfg.init != "scratch":
            raise StudentError(f"`student.init` = {cfg.init!r}: a toy student starts from scratch")
        return Shape(1, 0, f"toy: mean-pooled embeddings of width {cfg.dim}, one linear layer")

    def build(self, cfg: ToyStudentConfig, teacher: nn.Module, seed: int, texts: Iterable[str] | None = None,
              pair: bool = False, masked_lm: bool = False, other_texts: Iterable[str] | None = None) -> nn.Module:
        if masked_lm:
            raise StudentError("a toy student has no masked-LM form")
        tc = teacher.config
        torch.manual_seed(seed)
        return MeanPooled(ToyModelConfig(tc.vocab_size, cfg.dim, tc.num_labels,
                                         [tc.id2label[i] for i in range(tc.num_labels)]))

    def record(self, model: MeanPooled, batch: dict, needs: Needs) -> Record:
        return Record(logits=model(batch["input_ids"], batch["attention_mask"]), attention_mask=batch["attention_mask"])

    def describe(self, model: MeanPooled) -> dict:
        return {"kind": self.name, "layers": 1, "hidden": model.config.dim, "vocab": model.config.vocab_size}

    def label(self, description: dict) -> str:
        return f"toy-{description['hidden']}"

    def title(self, description: dict) -> str:
        return f"mean-pooled embeddings, width {description['hidden']}"

    def flops(self, model: MeanPooled, seq_len: int) -> int:
        c = model.config
        return seq_len * c.dim + 2 * c.dim * c.num_labels  # the mean's additions, then the linear layer

    def usage(self, folder: str, pair: bool) -> list[str]:
        return ["```python", "from tests.toy_student import load_toy", "", f'model = load_toy("{folder}")', "```"]

    def random(self, fields: dict, num_labels: int, vocab: int) -> nn.Module:
        return MeanPooled(ToyModelConfig(vocab, fields["dim"], num_labels))

    def export(self, model: MeanPooled, folder: str | Path, tokenizer, projections: nn.ModuleDict | None = None,
               encoding: InputEncoding | None = None) -> None:
        with atomic_dir(folder) as tmp:
            save_tensors(tmp / "model.safetensors", model.state_dict())
            write_json(tmp / "config.json", {"model_type": FOLDER_TYPE, **asdict(model.config)})
            tokenizer.save_pretrained(tmp)
            if encoding is not None:
                encoding.save(tmp)

    def load(self, folder: Path) -> Loaded:
        from transformers import AutoTokenizer

        model = load_toy(folder)
        c = model.config
        return Loaded(model, c.labels or [str(i) for i in range(c.num_labels)], AutoTokenizer.from_pretrained(folder))

    def encode(self, model: MeanPooled, tokenizer, texts: list[str], texts_b: list[str] | None,
               encoding: InputEncoding) -> dict[str, torch.Tensor]:
        enc = tokenizer(texts, texts_b, padding=True, return_tensors="pt", **encoding.tokenizer_kwargs())
        return {n: enc[n] for n in INPUTS}

    def logits(self, model: MeanPooled, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs)

    def graph(self, model: MeanPooled) -> Graph:
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")

        def from_ids(ids, lengths, ids_b=None, lengths_b=None):
            mask = (torch.arange(ids.shape[1], device=ids.device) < lengths.to(ids.device).unsqueeze(1)).long()
            return {"input_ids": ids, "attention_mask": mask}

        return Graph(model.eval(), INPUTS, ({0: batch, 1: seq}, {0: batch, 1: seq}), self.name,
                     model.config.vocab_size, from_ids, lambda inputs: inputs["attention_mask"].sum(1))
