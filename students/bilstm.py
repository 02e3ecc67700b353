"""Tang et al. 2019's BiLSTM student: pre-trained word vectors, one bidirectional LSTM layer, the
concatenated final forward and backward states -> FC (ReLU) -> logits. Sentence pairs: a siamese
encoder (shared weights) with features [h1, h2, h1*h2, |h1-h2|].

Vocabulary and OOV policy: words are lower-cased `split_words` tokens of the training (and augmented)
text. A word enters the vocabulary if the vectors know it, or if it occurs at least `min_count` times
(then its vector is random, scaled like the pre-trained ones). With `vocab_from: all_splits` (the reference
builds its vocabulary over train, dev and test) dev and test words that have pre-trained vectors enter too;
no label is read. Everything else maps to [UNK]. [PAD] is 0; [MASK] (Tang et al.'s masking token) has its own
learned vector. Dropout (0.1, the reference's) follows the FC layer's ReLU.

The exported folder (`model.safetensors`, `config.json`, `vocab.json`) loads with `load_bilstm`, without
the training code."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from distill.adaptor import Record
from distill.augment.words import split_words
from distill.batching import pad_ids
from distill.config import StudentConfig
from distill.input_encoding import InputEncoding
from distill.io import atomic_dir, load_tensors, save_tensors, write_json
from distill.needs import Needs
from distill.resources import content_key
from distill.student_registry import Graph, Loaded, OwnInputs, Shape, Student, register_student
from distill.students.common import StudentError
from distill.task_types import TOKENS, type_of_model

PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"


def words_of(text: str, tagged: bool = False) -> list[str]:
    """Lower-cased words; a literal [MASK] (from Tang et al.'s augmentation) stays one token. `tagged`: a token
    classification text, whose words are given (separated by single spaces) and must stay one per tag."""
    if tagged:
        return [w if w == MASK else w.lower() for w in text.split(" ")]
    out: list[str] = []
    for k, piece in enumerate(text.split(MASK)):
        if k:
            out.append(MASK)
        out.extend(w.lower() for w in split_words(piece))
    return out


class WordVocab:
    def __init__(self, words: list[str], tagged: bool = False):
        self.itos = [PAD, UNK, MASK] + [w for w in words if w not in (PAD, UNK, MASK)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.tagged = tagged  # words split as a token classification task gives them (one per tag)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        ids = [self.stoi.get(w, 1) for w in words_of(text, self.tagged)][:max_length]
        return ids or [1]  # an empty text reads as one [UNK]

    @classmethod
    def build(cls, texts: Iterable[str], known: set[str], min_count: int, max_size: int | None = None,
              other_texts: Iterable[str] | None = None, tagged: bool = False) -> WordVocab:
        """Training words that have vectors or occur `min_count` times, most frequent first; then words of
        `other_texts` (dev and test) that have vectors."""
        counts = Counter(w for t in texts for w in words_of(t, tagged))
        keep = [w for w, c in counts.most_common() if w in known or c >= min_count]
        keep = keep[:max_size] if max_size else keep
        seen = set(keep)
        extra = Counter(w for t in other_texts or [] for w in words_of(t, tagged) if w in known and w not in seen)
        return cls(keep + [w for w, _ in extra.most_common()], tagged)


@dataclass
class BiLSTMConfig:
    vocab_size: int
    embedding_dim: int
    hidden: int = 150
    fc: int = 200
    num_labels: int = 2
    pair: bool = False
    labels: list[str] | None = None
    dropout: float = 0.1
    # Token classification: the head reads the LSTM's output at every word (both directions), a tag per word.
    tagger: bool = False


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: BiLSTMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden, batch_first=True, bidirectional=True)
        features = 2 * config.hidden * (4 if config.pair and not config.tagger else 1)
        self.head = nn.Sequential(nn.Linear(features, config.fc), nn.ReLU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.fc, config.num_labels))

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final forward state (at each sequence's own last word) and final backward state, concatenated;
        padding never enters the recurrence."""
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return torch.cat([h[0], h[1]], dim=-1)

    def encode_padded(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What `encode` computes, without packing, for graph exporters (torch.export cannot trace
        `pack_padded_sequence`, whose sizes depend on the values in `lengths`). The forward direction reads the
        padded batch and its state is taken at each sequence's last word (padding comes after it, so never
        enters); the backward direction reads each sequence reversed within its own length, with the reverse
        weights, and its state is taken at the same position. Same arithmetic as the packed LSTM; the padding
        positions are computed and thrown away."""
        fwd, bwd, _ = self._directions(ids, lengths)
        last = (lengths.to(ids.device) - 1).unsqueeze(1)
        at_last = last.unsqueeze(-1).expand(-1, 1, self.lstm.hidden_size)
        return torch.cat([fwd.gather(1, at_last)[:, 0], bwd.gather(1, at_last)[:, 0]], dim=-1)

    def _directions(self, ids: torch.Tensor, lengths: torch.Tensor):
        """The forward direction's outputs over the padded batch, the backward direction's over each sequence
        reversed within its own length, and that reversal (position -> position read)."""
        x = self.embedding(ids)
        lstm = self.lstm
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        last = (lengths.to(ids.device) - 1).unsqueeze(1)
        reverse = torch.where(pos <= last, last - pos, pos)  # padding stays where it was
        x_rev = x.gather(1, reverse.unsqueeze(-1).expand_as(x))
        h0 = x.new_zeros(1, ids.shape[0], lstm.hidden_size)
        # torch.lstm is the op nn.LSTM runs; called per direction with that direction's own weights.
        fwd, _, _ = torch.lstm(x, (h0, h0), [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0,
                                             lstm.bias_hh_l0], True, 1, 0.0, False, False, True)
        bwd, _, _ = torch.lstm(x_rev, (h0, h0), [lstm.weight_ih_l0_reverse, lstm.weight_hh_l0_reverse,
                                                 lstm.bias_ih_l0_reverse, lstm.bias_hh_l0_reverse],
                               True, 1, 0.0, False, False, True)
        return fwd, bwd, reverse

    def states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions' outputs at every word, (batch, words, 2 * hidden); zeros at padding."""
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])[0]

    def states_padded(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What `states` computes, without packing (see `encode_padded`); padding positions hold what the
        recurrence computed there, which no reader uses."""
        fwd, bwd, reverse = self._directions(ids, lengths)
        # Each word's backward state, in word order (the reversal within a length is its own inverse).
        back = bwd.gather(1, reverse.unsqueeze(-1).expand(-1, -1, self.lstm.hidden_size))
        return torch.cat([fwd, back], dim=-1)

    def forward(self, ids, lengths, ids_b=None, lengths_b=None) -> torch.Tensor:
        if self.config.tagger:
            return self.head(self.states(ids, lengths))
        return self.classify(self.encode, ids, lengths, ids_b, lengths_b)

    def forward_padded(self, ids, lengths, ids_b=None, lengths_b=None) -> torch.Tensor:
        """`forward` through `encode_padded`: the same logits, in a form ONNX exporters can trace."""
        if self.config.tagger:
            return self.head(self.states_padded(ids, lengths))
        return self.classify(self.encode_padded, ids, lengths, ids_b, lengths_b)

    def classify(self, encode, ids, lengths, ids_b=None, lengths_b=None) -> torch.Tensor:
        h = encode(ids, lengths)
        if self.config.pair:
            h2 = encode(ids_b, lengths_b)
            h = torch.cat([h, h2, h * h2, (h - h2).abs()], dim=-1)
        return self.head(h)



@dataclass
class BiLSTMStudentConfig(StudentConfig):
    """`student.kind: bilstm`: word vectors, one bidirectional LSTM layer, a feed-forward head (`init` is not read:
    it starts from `vectors`)."""

    hidden: int = 150  # LSTM width per direction
    fc: int = 200  # the head's hidden width
    vectors: str = "packaged:glove-6b-50d"
    vectors_limit: int | None = None
    freeze_embeddings: bool = False
    # OOV policy: a word without a vector enters the vocabulary when it occurs this often in training text.
    min_count: int = 2
    max_vocab: int | None = None
    # `all_splits`: dev and test words that have pre-trained vectors join the vocabulary (the reference builds it
    # over every split; no labels are read); `train`: training (and augmented) words only.
    vocab_from: Literal["train", "all_splits"] = "all_splits"


@register_student("bilstm", config=BiLSTMStudentConfig)
class BiLSTM(Student):
    folder_types = ("distillery-bilstm",)
    intermediate = False
    masked_lm = False
    task_types = ("sequence_classification", "token_classification")

    def plan(self, cfg: BiLSTMStudentConfig, teacher_config) -> Shape:
        from distill.augment.vectors import check_vectors

        check_vectors(cfg.vectors)
        return Shape(1, 0, f"{self.name}: LSTM width {cfg.hidden}, FC {cfg.fc}, word vectors {cfg.vectors}")

    def build(self, cfg: BiLSTMStudentConfig, teacher: nn.Module, seed: int, texts: Iterable[str] | None = None,
              pair: bool = False, masked_lm: bool = False, other_texts: Iterable[str] | None = None) -> nn.Module:
        if masked_lm:
            raise StudentError("general distillation trains transformer students; `student.kind: bilstm` has no "
                               "masked-LM form")
        return build_bilstm(cfg, teacher, seed, texts, pair, other_texts)

    def record(self, model: BiLSTMClassifier, batch: dict, needs: Needs) -> Record:
        logits = model(batch["student_ids"], batch["student_lengths"], batch.get("student_ids_b"),
                       batch.get("student_lengths_b"))
        if not model.config.tagger:
            return Record(logits=logits, attention_mask=batch["attention_mask"])
        # The teacher's rows are each word's first piece, in order; the BiLSTM reads the same words, so its rows
        # are the first as many words of each sentence. The pieces' positions give the gold tags (`gold_rows`).
        pieces = batch["labels"] != -100
        words = pieces.sum(1)
        if logits.shape[1] < int(words.max()):
            raise StudentError(f"the BiLSTM read {logits.shape[1]} words of a sentence whose encoding kept "
                               f"{int(words.max())}: its words must be the task's (one per tag)")
        at = torch.arange(logits.shape[1], device=logits.device)[None, :] < words[:, None].to(logits.device)
        return Record(logits=logits[at], attention_mask=batch["attention_mask"], token_rows=pieces)

    def clip_parameters(self, model: BiLSTMClassifier) -> list[nn.Parameter]:
        """Tang et al. clip gradients of everything but the embedding table."""
        return [p for n, p in model.named_parameters() if not n.startswith("embedding")]

    def own_inputs(self, model: BiLSTMClassifier, max_length: int) -> OwnInputs:
        vocab = model.vocab
        return OwnInputs(lambda text: vocab.encode(text, max_length),
                         content_key({"words": vocab.itos, "max_length": max_length}), len(vocab),
                         f"student vocabulary: {model.coverage['vocab']} words, {model.coverage['pretrained']} with "
                         "pre-trained vectors")

    def describe(self, model: BiLSTMClassifier) -> dict:
        c = model.config
        return {"kind": self.name, "layers": 1, "hidden": c.hidden, "embedding_dim": c.embedding_dim,
                "vocab": c.vocab_size}

    def label(self, description: dict) -> str:
        return f"BiLSTM-{description.get('hidden')}"

    def title(self, description: dict) -> str:
        return f"BiLSTM (hidden {description.get('hidden')}, {description.get('vocab')} words)"

    def flops(self, model: BiLSTMClassifier, seq_len: int) -> int:
        """The four gates of both directions at every token (of both sentences, for pairs) plus the feed-forward
        head; embedding lookups and activations left out."""
        c = model.config
        e, h = c.embedding_dim, c.hidden
        recurrent = 2 * seq_len * 2 * 4 * (e * h + h * h) * (2 if c.pair else 1)
        features = 2 * h * (4 if c.pair and not c.tagger else 1)
        return recurrent + 2 * (features * c.fc + c.fc * c.num_labels) * (seq_len if c.tagger else 1)

    def usage(self, folder: str, pair: bool) -> list[str]:
        return ["The BiLSTM loads with `distill.students.bilstm.load_bilstm` (no training code needed)."]

    def random(self, fields: dict, num_labels: int, vocab: int) -> nn.Module:
        return BiLSTMClassifier(BiLSTMConfig(vocab, fields.get("embedding_dim", 300), fields["hidden"], fields["fc"],
                                             num_labels))

    def export(self, model: BiLSTMClassifier, folder: str | Path, tokenizer=None,
               projections: nn.ModuleDict | None = None, encoding: InputEncoding | None = None) -> None:
        save_bilstm(model, folder, encoding)

    def load(self, folder: Path) -> Loaded:
        model = load_bilstm(folder)
        c = model.config
        labels = list(c.labels) if c.labels else (None if c.num_labels == 1 else [str(i) for i in range(c.num_labels)])
        return Loaded(model, labels, model.vocab)

    def encode(self, model: BiLSTMClassifier, tokenizer: WordVocab, texts: list[str], texts_b: list[str] | None,
               encoding: InputEncoding) -> dict[str, torch.Tensor]:
        """Word ids and lengths, each sentence cut at `max_length` words; a second sentence only for a pair model."""
        ids, lengths = pad_ids([tokenizer.encode(t, encoding.max_length) for t in texts])
        out = {"ids": ids, "lengths": lengths}
        if model.config.pair:
            if texts_b is None:
                raise StudentError("a pair BiLSTM reads sentence pairs; got single texts")
            out["ids_b"], out["lengths_b"] = pad_ids([tokenizer.encode(t, encoding.max_length) for t in texts_b])
        return out

    def word_positions(self, model: BiLSTMClassifier, tokenizer: WordVocab, texts: list[str],
                       encoding: InputEncoding) -> list[list[int]]:
        if not model.config.tagger:
            return super().word_positions(model, tokenizer, texts, encoding)
        return [list(range(min(len(t.split(" ")), encoding.max_length))) for t in texts]

    def logits(self, model: BiLSTMClassifier, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs)

    def graph(self, model: BiLSTMClassifier) -> Graph:
        """Exported through `forward_padded`: torch.export cannot trace the packed sequences `forward` uses."""
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        names, shapes = ["ids", "lengths"], [{0: batch, 1: seq}, {0: batch}]
        if model.config.pair:  # the second sentence is padded on its own, to its own length
            names += ["ids_b", "lengths_b"]
            shapes += [{0: batch, 1: torch.export.Dim("sequence_b")}, {0: batch}]

        def from_ids(ids, lengths, ids_b=None, lengths_b=None):
            out = {"ids": ids, "lengths": lengths}
            if model.config.pair:  # without a second sentence, the same one twice
                out["ids_b"] = ids if ids_b is None else ids_b
                out["lengths_b"] = lengths if lengths_b is None else lengths_b
            return out

        return Graph(_PaddedLogits(model).eval(), names, tuple(shapes), self.name, model.config.vocab_size, from_ids,
                     lambda inputs: inputs["lengths"], model.config.pair)


class _PaddedLogits(nn.Module):
    def __init__(self, model: BiLSTMClassifier):
        super().__init__()
        self.model = model

    def forward(self, ids, lengths, ids_b=None, lengths_b=None):
        return self.model.forward_padded(ids, lengths, ids_b, lengths_b)


def build_bilstm(cfg: BiLSTMStudentConfig, teacher, seed: int, texts: Iterable[str] | None = None, pair: bool = False,
                 other_texts: Iterable[str] | None = None):
    """A BiLSTM for the teacher's label set, its embedding table from `cfg.vectors`; `other_texts` (dev and test
    text) add their words that have vectors when `cfg.vocab_from` is `all_splits`."""
    from distill.augment.vectors import load_vectors

    if texts is None:
        raise StudentError("a BiLSTM student needs the training texts to build its vocabulary")
    kv = load_vectors(cfg.vectors, cfg.vectors_limit)
    tagger = type_of_model(teacher) == TOKENS
    vocab = WordVocab.build(texts, set(kv.key_to_index), cfg.min_count, cfg.max_vocab,
                            other_texts if cfg.vocab_from == "all_splits" else None, tagger)
    tc = teacher.config
    labels = [tc.id2label[i] for i in range(tc.num_labels)]
    config = BiLSTMConfig(len(vocab), kv.vector_size, cfg.hidden, cfg.fc, tc.num_labels, pair, labels,
                          tagger=tagger)
    torch.manual_seed(seed)
    model = BiLSTMClassifier(config)
    std = float(kv.vectors.std())
    with torch.no_grad():
        weight = torch.randn(len(vocab), kv.vector_size) * std
        rows = [(i, kv.key_to_index[w]) for i, w in enumerate(vocab.itos) if w in kv.key_to_index]
        found = len(rows)
        if rows:
            ours, theirs = zip(*rows, strict=True)
            weight[list(ours)] = torch.tensor(np.asarray(kv.vectors)[list(theirs)])
        weight[0] = 0.0
        model.embedding.weight.copy_(weight)
    model.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
    model.vocab = vocab
    model.coverage = {"vocab": len(vocab), "pretrained": found}
    return model


def save_bilstm(model: BiLSTMClassifier, folder: str | Path, encoding=None) -> None:
    """safetensors + config + vocabulary, and the run's input encoding (`distill.input_encoding`) when given."""
    with atomic_dir(folder) as tmp:
        save_tensors(tmp / "model.safetensors", model.state_dict())
        write_json(tmp / "config.json", {"model_type": "distillery-bilstm", **asdict(model.config)})
        write_json(tmp / "vocab.json", model.vocab.itos)
        if encoding is not None:
            encoding.save(tmp)


def load_bilstm(folder: str | Path) -> BiLSTMClassifier:
    """An exported BiLSTM student with its vocabulary (`model.vocab`), in eval mode."""
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("model_type", None)
    model = BiLSTMClassifier(BiLSTMConfig(**raw))
    state = load_tensors(folder / "model.safetensors")
    if "head.2.weight" in state:  # exported before the dropout layer took index 2
        state = {k.replace("head.2.", "head.3."): v for k, v in state.items()}
    model.load_state_dict(state)
    itos = json.loads((folder / "vocab.json").read_text())
    model.vocab = WordVocab(itos[3:], model.config.tagger)
    return model.eval()


@torch.no_grad()
def predict(model: BiLSTMClassifier, texts: list[str], texts_b: list[str] | None = None) -> torch.Tensor:
    """Class probabilities (or scores, for regression) for raw texts."""
    def batch(ts):
        return pad_ids([model.vocab.encode(t) for t in ts])

    a, la = batch(texts)
    b, lb = batch(texts_b) if texts_b is not None else (None, None)
    logits = model(a, la, b, lb)
    return logits if model.config.num_labels == 1 else logits.softmax(-1)
