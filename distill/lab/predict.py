"""Labels and probabilities from any exported student (a run folder or its `student/` folder), loaded and encoded by
the registered student whose folders it is (Hugging Face folders, or a student's own files). No training code
needed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.batching import pad_ids
from distill.errors import DistillError
from distill.input_encoding import LEGACY_MAX_LENGTH, InputEncoding, load_encoding
from distill.student_registry import Student, student_for_folder
from distill.task_types import QA, TOKENS, type_of_model


class PredictError(DistillError):
    pass


@dataclass
class Predictor:
    student: Student  # the registered student the folder holds: it encodes the inputs and runs the model
    model: nn.Module
    labels: list[str] | None  # None: a regression head (scores, not probabilities)
    tokenizer: object | None = None  # what the student reads texts with (a BiLSTM carries its own vocabulary)
    encoding: InputEncoding = InputEncoding(LEGACY_MAX_LENGTH, False)  # as the run encoded its inputs
    device: str = "cpu"

    @property
    def max_length(self) -> int:
        return self.encoding.max_length

    def encode(self, texts: list[str], texts_b: list[str] | None = None) -> dict[str, torch.Tensor]:
        """One padded batch of the student's inputs by name (those of its exported graph), on the CPU."""
        return self.student.encode(self.model, self.tokenizer, texts, texts_b, self.encoding)

    @torch.inference_mode()
    def logits(self, texts: list[str], texts_b: list[str] | None = None, batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            b = texts_b[i:i + batch_size] if texts_b is not None else None
            inputs = {k: v.to(self.device) for k, v in self.encode(texts[i:i + batch_size], b).items()}
            out.append(self.student.logits(self.model, inputs))
        return torch.cat(out).float().cpu() if out else torch.empty(0)

    @property
    def task_type(self) -> str:
        if getattr(getattr(self.model, "config", None), "tagger", False):  # a BiLSTM tagger
            return TOKENS
        return type_of_model(self.model)

    @torch.inference_mode()
    def tag(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        """Token classification: one dict per text (words separated by whitespace): its words, each word's tag and
        the tag's probability; words past the student's length (`encoding.json`) are listed as `cut`."""
        out = []
        for i in range(0, len(texts), batch_size):
            words = [t.split() for t in texts[i:i + batch_size]]
            if not all(words):
                raise PredictError(f"text {i + [bool(w) for w in words].index(False) + 1}: no words to tag")
            joined = [" ".join(w) for w in words]
            inputs = {k: v.to(self.device) for k, v in self.encode(joined).items()}
            probs = self.student.logits(self.model, inputs).float().softmax(-1).cpu()
            positions = self.student.word_positions(self.model, self.tokenizer, joined, self.encoding)
            for r, (ws, at) in enumerate(zip(words, positions, strict=True)):
                p = probs[r, at]
                out.append({"words": ws[:len(at)], "tags": [self.labels[int(k)] for k in p.argmax(-1)],
                            "probabilities": [round(float(x), 6) for x in p.max(-1).values],
                            **({"cut": ws[len(at):]} if len(at) < len(ws) else {})})
        return out

    @torch.inference_mode()
    def answer(self, questions: list[str], contexts: list[str], batch_size: int = 64) -> list[dict]:
        """Extractive QA: one dict per question, the answer text found in its context and its score (start + end
        logit, the windows over a long context searched as the run did); "" when no span qualifies, or (SQuAD v2.0)
        when the null score beats the best span's by more than the threshold chosen on dev (`span` keeps the best
        span)."""
        from distill.qa_answers import answer as qa_answer
        from distill.qa_answers import best_spans
        from distill.qa_windows import encode_windows
        from distill.tasks import Example

        enc = self.encoding
        if enc.doc_stride is None:
            raise PredictError("this QA student's encoding.json has no doc_stride: it was not saved by a QA run")
        examples = [Example(f"q{i}", q, c, None) for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        try:
            windows = encode_windows(examples, self.tokenizer, enc.max_length, enc.doc_stride, enc.max_query_length)
        except DistillError as e:
            raise PredictError(str(e)) from None
        starts, ends = [], []
        for i in range(0, len(windows.input_ids), batch_size):
            ids, lengths = pad_ids(windows.input_ids[i:i + batch_size], self.tokenizer.pad_token_id or 0)
            types, _ = pad_ids(windows.token_type_ids[i:i + batch_size])
            mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
            given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            inputs = {k: given[k].to(self.device) for k in self.student.graph(self.model).input_names}
            scores = self.student.logits(self.model, inputs).float().cpu()
            for row, n in zip(scores, lengths.tolist(), strict=True):
                starts.append(row[:n, 0].numpy())
                ends.append(row[:n, 1].numpy())
        preds = best_spans(windows, starts, ends, examples, enc.n_best or 20, enc.max_answer_length or 30)
        return [{"answer": qa_answer(p, enc.null_threshold), "span": p.text, "score": p.score,
                 "null_score": p.null_score} for p in preds]

    def predict(self, texts: list[str], texts_b: list[str] | None = None, batch_size: int = 64) -> list[dict]:
        """One dict per text: the label and every label's probability (or the score, for regression); for a token
        classifier, the tag of every word (`tag`)."""
        if self.task_type == TOKENS:
            if texts_b is not None:
                raise PredictError("a token classifier tags single texts; got sentence pairs")
            return self.tag(texts, batch_size)
        if self.task_type == QA:
            if texts_b is None:
                raise PredictError("a QA student reads a question and its context: give them tab-separated (--file) "
                                   "or as --text and --text-b")
            return self.answer(texts, texts_b, batch_size)
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
    try:
        student = student_for_folder(raw.get("model_type"), folder)
        loaded = student.load(folder)
    except DistillError as e:
        raise PredictError(str(e)) from None
    return Predictor(student, loaded.model, loaded.labels, loaded.tokenizer, encoding)


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
