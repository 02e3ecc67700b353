"""Labels and probabilities from any exported student (a run folder or its `student/` folder): BERT-family
students as Hugging Face folders, BiLSTM students as safetensors + vocabulary. No training code needed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.errors import DistillError
from distill.input_encoding import LEGACY_MAX_LENGTH, InputEncoding, load_encoding


class PredictError(DistillError):
    pass


@dataclass
class Predictor:
    model: nn.Module
    labels: list[str] | None  # None: a regression head (scores, not probabilities)
    tokenizer: object | None = None  # None for the BiLSTM (it carries its own word vocabulary)
    encoding: InputEncoding = InputEncoding(LEGACY_MAX_LENGTH, False)  # as the run encoded its inputs
    device: str = "cpu"

    @property
    def max_length(self) -> int:
        return self.encoding.max_length

    @property
    def is_bilstm(self) -> bool:
        return self.tokenizer is None

    def encode(self, texts: list[str], texts_b: list[str] | None = None) -> dict[str, torch.Tensor]:
        """One padded batch of model inputs by the forward's argument names (the BiLSTM's ids / lengths and, for
        pairs, ids_b / lengths_b; a transformer's tokenizer outputs that its forward accepts), on the CPU."""
        from distill.batching import pad_ids

        if self.is_bilstm:
            ids, lengths = pad_ids([self.model.vocab.encode(t, self.max_length) for t in texts])
            out = {"ids": ids, "lengths": lengths}
            if texts_b is not None:
                out["ids_b"], out["lengths_b"] = pad_ids([self.model.vocab.encode(t, self.max_length)
                                                          for t in texts_b])
            return out
        enc = self.tokenizer(texts, texts_b, padding=True, return_tensors="pt", **self.encoding.tokenizer_kwargs())
        # A DistilBERT student keeps BERT's tokenizer but takes no token types.
        accepted = self._inputs()
        return {k: v for k, v in enc.items() if k in accepted}

    @torch.inference_mode()
    def logits(self, texts: list[str], texts_b: list[str] | None = None, batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            b = texts_b[i:i + batch_size] if texts_b is not None else None
            # Lengths stay on the CPU: packing reads them there.
            inputs = {k: v if k.startswith("lengths") else v.to(self.device)
                      for k, v in self.encode(texts[i:i + batch_size], b).items()}
            result = self.model(**inputs)
            out.append(result if self.is_bilstm else result.logits)
        return torch.cat(out).float().cpu() if out else torch.empty(0)

    def _inputs(self) -> set[str]:
        import inspect

        # torch.compile wraps the model in a module whose forward takes *args, **kwargs.
        return set(inspect.signature(getattr(self.model, "_orig_mod", self.model).forward).parameters)

    def predict(self, texts: list[str], texts_b: list[str] | None = None, batch_size: int = 64) -> list[dict]:
        """One dict per text: the label and every label's probability (or the score, for regression)."""
        logits = self.logits(texts, texts_b, batch_size)
        if self.labels is None:
            return [{"score": float(z[0])} for z in logits]
        probs = logits.softmax(-1)
        return [{"label": self.labels[int(p.argmax())], "probability": float(p.max()),
                 "probabilities": {lab: round(float(x), 6) for lab, x in zip(self.labels, p, strict=True)}}
                for p in probs]


def student_folder(path: str | Path) -> Path:
    path = Path(path)
    if (path / "student" / "config.json").exists():
        return path / "student"
    if not (path / "config.json").exists():
        raise PredictError(f"{path}: not an exported student (no config.json, no student/config.json); expected "
                           "a run folder (runs/<experiment>/...) or its student/ folder")
    return path


def load_predictor(path: str | Path, max_length: int | None = None) -> Predictor:
    """The student at `path`, encoding its inputs as its run did (`encoding.json`); `max_length` overrides the
    saved length."""
    folder = student_folder(path)
    try:
        encoding, _ = load_encoding(folder, max_length)
    except DistillError as e:
        raise PredictError(str(e)) from None
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") == "distillery-bilstm":
        from distill.students.bilstm import load_bilstm

        model = load_bilstm(folder)
        labels = list(model.config.labels) if model.config.labels else (
            None if model.config.num_labels == 1 else [str(i) for i in range(model.config.num_labels)])
        return Predictor(model, labels, None, encoding)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise PredictError(f"{folder}: cannot load the student as a sequence classifier: {e}") from None
    c = model.config
    regression = c.problem_type == "regression" or c.num_labels == 1
    labels = None if regression else [c.id2label[i] for i in range(c.num_labels)]
    return Predictor(model, labels, tokenizer, encoding)


def read_inputs(path: str | Path) -> tuple[list[str], list[str] | None]:
    """One example per line; a tab splits a sentence pair. Every line must have the same shape."""
    texts, texts_b, line_nos = [], [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PredictError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise PredictError(f"{path}: cannot read ({e.strerror})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) > 2:
            raise PredictError(f"{path}:{n}: {len(parts)} tab-separated fields; expected a text or a pair")
        texts.append(parts[0])
        line_nos.append(n)
        texts_b.append(parts[1] if len(parts) == 2 else None)
    if not texts:
        raise PredictError(f"{path}: no text lines")
    pairs = [b is not None for b in texts_b]
    if any(pairs) and not all(pairs):
        raise PredictError(f"{path}:{line_nos[pairs.index(not pairs[0])]}: mixes single texts and tab-separated pairs")
    return texts, (texts_b if all(pairs) else None)
