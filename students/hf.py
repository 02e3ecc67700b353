"""What the Hugging Face students (TinyBERT, DistilBERT) share: a transformers sequence classifier read by the
engine's adaptor, exported as a Hugging Face folder with its tokenizer, loaded back with the Auto classes, and
exported to ONNX through its (input_ids, attention_mask[, token_type_ids]) forward."""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.config import StudentConfig
from distill.input_encoding import InputEncoding
from distill.model_stats import classifier_flops, encoder_flops_per_token
from distill.student_registry import Graph, Loaded, Shape, Student
from distill.students.common import StudentError
from distill.students.projections import save_projections
from distill.task_types import QA, TASK_TYPES, TOKENS, head_class, type_of_architectures, type_of_model

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
STARTS = ("scratch", "teacher")  # every other `student.init` names a checkpoint


@dataclass
class TransformerConfig(StudentConfig):
    """What both transformer students read: how many layers, and which teacher layers `init: teacher` copies."""

    # Transformer layers (null: TinyBERT the teacher's depth or the preset's, DistilBERT half the teacher's).
    layers: int | None = None
    # Teacher layers (1-based) copied when init is `teacher`; default: TinyBERT the uniform layer map, DistilBERT
    # its paper's 1, 3, 5, 8, 10, 12 for 6 of 12 layers, else evenly spread ending at the top.
    init_layers: list[int] | None = None


class TransformerStudent(Student):
    library = "transformers"
    task_types = tuple(TASK_TYPES)

    def plan(self, cfg: TransformerConfig, teacher_config) -> Shape:
        if cfg.init in STARTS:
            layers, width = self.planned_shape(cfg, teacher_config)
            copied = self.copied_layers(cfg, teacher_config, layers) if cfg.init == "teacher" else None
            return Shape(layers, width, self._line(cfg, layers, width, copied))
        from transformers import AutoConfig

        from distill.teachers.load import resolve

        try:
            sc = AutoConfig.from_pretrained(resolve(cfg.init))
        except (OSError, ValueError) as e:
            raise StudentError(f"`student.init` = {cfg.init!r}: not a model folder or a reachable hub name "
                               f"({type(e).__name__}); expected `scratch`, `teacher` or a checkpoint") from None
        return Shape(sc.num_hidden_layers, sc.hidden_size, self._line(cfg, sc.num_hidden_layers, sc.hidden_size),
                     cfg.init)

    @abstractmethod
    def planned_shape(self, cfg: TransformerConfig, teacher_config) -> tuple[int, int]:
        """(layers, hidden) of a student built from scratch or from teacher layers, with the checks needing no
        weights."""

    @abstractmethod
    def make(self, cfg: TransformerConfig, teacher: nn.Module, seed: int, masked_lm: bool = False) -> nn.Module:
        """The classifier (or masked LM) for `init` scratch, teacher or a checkpoint; transformers build their own
        vocabulary from none of the texts `build` is given."""

    def build(self, cfg: TransformerConfig, teacher: nn.Module, seed: int, texts: Iterable[str] | None = None,
              pair: bool = False, masked_lm: bool = False, other_texts: Iterable[str] | None = None) -> nn.Module:
        return self.make(cfg, teacher, seed, masked_lm=masked_lm)

    @abstractmethod
    def copied_layers(self, cfg: TransformerConfig, teacher_config, layers: int) -> list[int]:
        """The teacher layers (1-based) `init: teacher` copies into a student of `layers` layers."""

    def shape_name(self, cfg: TransformerConfig) -> str:
        return self.name

    def _line(self, cfg: TransformerConfig, layers: int, width: int, copied: list[int] | None = None) -> str:
        init = {"scratch": "random init", "teacher": f"init from the teacher's layers {copied}"}.get(
            cfg.init, f"init from {cfg.init}")
        return f"{self.shape_name(cfg)}: {layers} layers, width {width}; {init}"

    def describe(self, model: nn.Module) -> dict:
        c = model.config
        return {"kind": self.name, "layers": c.num_hidden_layers, "hidden": c.hidden_size}

    def encoder_flops_per_token(self, model: nn.Module, seq_len: int) -> int | None:
        return encoder_flops_per_token(model.config, seq_len)

    def flops(self, model: nn.Module, seq_len: int) -> int:
        return classifier_flops(model, seq_len)

    def usage(self, folder: str, pair: bool) -> list[str]:
        texts = '["the flight was late", "what a great crew"]'
        call = (f'tokenizer({texts}, ["was it on time?", "who was on board?"], ' if pair else f"tokenizer({texts}, ")
        return ["```python", "import torch",
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
                f'model = AutoModelForSequenceClassification.from_pretrained("{folder}").eval()',
                f'tokenizer = AutoTokenizer.from_pretrained("{folder}")  # model_max_length: the length it was '
                "trained at",
                f'inputs = {call}padding=True, truncation=True, return_tensors="pt")',
                "with torch.no_grad():",
                "    probabilities = model(**inputs).logits.softmax(-1)",
                "labels = [model.config.id2label[int(i)] for i in probabilities.argmax(-1)]", "```"]

    def export(self, model: nn.Module, folder: str | Path, tokenizer, projections: nn.ModuleDict | None = None,
               encoding: InputEncoding | None = None) -> None:
        """A Hugging Face folder with the tokenizer and the run's W_h / W_e (which a later task distillation starts
        from); a tokenizer's `model_max_length` states the trained length."""
        from distill.io import atomic_dir

        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if encoding is not None:
                encoding.save(tmp)
                _state_length(tmp / "tokenizer_config.json", encoding.max_length)
            if projections is not None:
                save_projections(tmp, projections)

    def load(self, folder: Path) -> Loaded:
        from transformers import AutoConfig, AutoTokenizer

        try:
            kind = type_of_architectures(AutoConfig.from_pretrained(folder).architectures)
            model = head_class("Auto", kind).from_pretrained(folder, use_safetensors=True).eval()
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as e:
            raise StudentError(f"{folder}: cannot load the student as a Hugging Face model: {e}") from None
        c = model.config
        if kind == QA:
            return Loaded(model, None, tokenizer)
        regression = c.problem_type == "regression" or c.num_labels == 1
        return Loaded(model, None if regression else [c.id2label[i] for i in range(c.num_labels)], tokenizer)

    def encode(self, model: nn.Module, tokenizer, texts: list[str], texts_b: list[str] | None,
               encoding: InputEncoding) -> dict[str, torch.Tensor]:
        enc = _tokenize(model, tokenizer, texts, texts_b, encoding, return_tensors="pt")
        # A DistilBERT takes no token types; a tokenizer that makes none gives zeros to a model that takes them.
        return {n: enc[n] if n in enc else torch.zeros_like(enc["input_ids"]) for n in _inputs(model)}

    def word_positions(self, model: nn.Module, tokenizer, texts: list[str], encoding: InputEncoding
                       ) -> list[list[int]]:
        """Each word's first piece, as the run labelled them (`distill.encoded.piece_tags`)."""
        enc = _tokenize(model, tokenizer, texts, None, encoding)
        out = []
        for r in range(len(texts)):
            ids, seen = enc.word_ids(r), set()
            out.append([p for p, w in enumerate(ids) if w is not None and w not in seen and not seen.add(w)])
        return out

    def logits(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return head_logits(model(**inputs))

    def graph(self, model: nn.Module) -> Graph:
        names = _inputs(model)
        if not {"input_ids", "attention_mask"} <= set(names):
            raise StudentError(f"cannot export a {type(model).__name__} as a {self.name} student: expected a Hugging "
                               "Face sequence classifier taking input_ids and attention_mask")
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")

        def from_ids(ids, lengths, ids_b=None, lengths_b=None):
            mask = (torch.arange(ids.shape[1], device=ids.device) < lengths.to(ids.device).unsqueeze(1)).long()
            given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
            return {n: given[n] for n in names}

        return Graph(_Logits(model).eval(), names, tuple({0: batch, 1: seq} for _ in names), self.name,
                     model.config.vocab_size, from_ids, lambda inputs: inputs["attention_mask"].sum(1))


def _tokenize(model: nn.Module, tokenizer, texts: list[str], texts_b: list[str] | None, encoding: InputEncoding,
              **kw):
    """The run's encoding of texts; a token classifier's texts are words (separated by single spaces), encoded word
    by word as its training data was."""
    if type_of_model(model) == TOKENS:
        return tokenizer([t.split(" ") for t in texts], is_split_into_words=True, padding=True,
                         **encoding.tokenizer_kwargs(), **kw)
    return tokenizer(texts, texts_b, padding=True, **encoding.tokenizer_kwargs(), **kw)


class _Logits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        return head_logits(self.model(**kw))


def head_logits(out) -> torch.Tensor:
    """A Hugging Face model output's scores: its logits, or a QA head's start and end scores stacked as (batch,
    tokens, 2)."""
    logits = out.get("logits")
    return logits if logits is not None else torch.stack((out["start_logits"], out["end_logits"]), dim=-1)


def _inputs(model: nn.Module) -> list[str]:
    # torch.compile wraps the model in a module whose forward takes *args, **kwargs.
    accepted = inspect.signature(getattr(model, "_orig_mod", model).forward).parameters
    return [n for n in INPUTS if n in accepted]


# Call-time arguments and loading details that the tokenizer keeps among its init arguments and would save: a
# reader would take `max_length: 128` for the length the student was trained at, and `local_files_only: true` would
# stop it from loading a hub copy's files.
_NOT_SAVED = ("max_length", "stride", "truncation_strategy", "local_files_only", "is_local", "name_or_path")


def _state_length(path: Path, max_length: int) -> None:
    from distill.io import read_json, write_json

    cfg = {k: v for k, v in read_json(path).items() if k not in _NOT_SAVED}
    cfg["model_max_length"] = max_length
    write_json(path, cfg)
