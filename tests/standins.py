"""Stand-ins for what the experiment configs name but this machine does not have (GLUE folders, hub checkpoints as
config and tokenizer only, word vectors, corpus files, a spaCy pipeline, general-distillation students), and the
`--set` overrides that point a config at them. Shared by `distill check` over every config and the README's
commands."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from distill.config import apply_override, load_config, load_raw
from distill.tasks import GLUE, GLUE_ALIASES

# The hub checkpoints the recipes name, by the shape of their real config.json (vocabulary 30522, uncased).
HUB = {
    "bert-base-uncased": {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768,
                          "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large-uncased": {"model_type": "bert", "num_hidden_layers": 24, "hidden_size": 1024,
                           "num_attention_heads": 16, "intermediate_size": 4096},
    "distilbert-base-uncased": {"model_type": "distilbert", "n_layers": 6, "dim": 768, "n_heads": 12,
                                "hidden_dim": 3072},
    "huawei-noah/TinyBERT_General_4L_312D": {"model_type": "bert", "num_hidden_layers": 4, "hidden_size": 312,
                                             "num_attention_heads": 12, "intermediate_size": 1200},
    "huawei-noah/TinyBERT_General_6L_768D": {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 768,
                                             "num_attention_heads": 12, "intermediate_size": 3072},
}
# GLUE's own folder names; a task added to distill.tasks.GLUE later gets a folder named after its key.
GLUE_FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
                "mnli-mm": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SENTENCES = ["a good movie", "the plot is thin and the acting is worse", "what a delight", "i would not go again",
             "two hours well spent", "the ending makes no sense", "is it raining in paris", "nobody came to the show"]

MODEL_KEYS = ("teacher.checkpoint", "teacher.tokenizer", "student.init", "augment.tinybert.masked_lm")
VECTOR_KEYS = ("student.vectors", "augment.tinybert.vectors")
NAMED = ("packaged:", "adapted:", "hf:", "spacy:")
NOT_RESOURCES = ("name", "description", "variants", "sweep")


def _get(obj, dotted: str):
    """The config's value at `dotted`; None where its section has no such key (`student.vectors` of a BERT)."""
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj


def _is_hub_name(value: str) -> bool:
    # As teachers.load.resolve: what is not a folder here and has at most one slash is a hub name.
    return not value.startswith((".", "/", "~")) and value.count("/") <= 1


class Standins:
    """Stand-in resources under `root`, and the `--set` overrides that point a config at them."""

    def __init__(self, root: Path):
        from distill.teachers.load import resolve

        self.root = root
        self.tokenizer = Path(resolve("packaged:all-minilm-l6-v2"))  # the bert-base-uncased vocabulary
        self.hub = root / "hf" / "hub"
        for name, shape in HUB.items():
            self._hub_model(name, shape)
        for key, spec in GLUE.items():
            self._glue(root / "glue" / GLUE_FOLDERS.get(key, key), spec)
        self.counter = 0

    # ---- builders

    def _tokenizer_into(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for f in TOKENIZER_FILES:
            shutil.copy(self.tokenizer / f, folder / f)

    def _hub_model(self, name: str, shape: dict) -> None:
        repo = self.hub / ("models--" + name.replace("/", "--"))
        commit = hashlib.sha1(name.encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        self._tokenizer_into(snapshot)
        common = {"vocab_size": 30522, "max_position_embeddings": 512, "pad_token_id": 0}
        if shape["model_type"] == "bert":
            common["type_vocab_size"] = 2
        (snapshot / "config.json").write_text(json.dumps({**common, **shape}, indent=2))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    def _glue(self, folder: Path, spec) -> None:
        """train.tsv and the dev file in the spec's layout, every label in each."""
        folder.mkdir(parents=True, exist_ok=True)
        labels = list(spec.labels) if spec.labels else ["0.000", "2.500", "5.000"]
        for fname, n in (("train.tsv", 9), (spec.dev_file, 6)):
            rows = [self._glue_row(spec, SENTENCES[i % 8], SENTENCES[(i + 3) % 8], labels[i % len(labels)])
                    for i in range(n)]
            if spec.header:
                rows.insert(0, self._glue_header(spec))
            (folder / fname).write_text("".join("\t".join(r) + "\n" for r in rows))

    @staticmethod
    def _glue_header(spec) -> list[str]:
        return ["index", spec.text_a, *([spec.text_b] if spec.text_b is not None else []), spec.label]

    @staticmethod
    def _glue_row(spec, a: str, b: str, label: str) -> list[str]:
        if spec.header:
            return ["0", a, *([b] if spec.text_b is not None else []), label]
        cols = [c for c in (spec.text_a, spec.text_b, spec.label) if c is not None]
        row = ["gj04"] * (max(cols) + 1)  # CoLA: source, label, original mark, sentence
        row[spec.text_a], row[spec.label] = a, label
        if spec.text_b is not None:
            row[spec.text_b] = b
        return row

    def _fresh(self, name: str) -> Path:
        self.counter += 1
        folder = self.root / "files" / str(self.counter)
        folder.mkdir(parents=True)
        return folder / name

    def vectors(self, like: str) -> Path:
        """A tiny vectors file in the format the name's suffix says (word2vec binary or GloVe text)."""
        words, dim = ["the", "good", "movie", "bad", "plot"], 8
        path = self._fresh(Path(like).name)
        if path.suffix == ".bin":
            body = b"".join(w.encode() + b" " + struct.pack(f"{dim}f", *[(i + 1) / 10] * dim) + b"\n"
                            for i, w in enumerate(words))
            path.write_bytes(f"{len(words)} {dim}\n".encode() + body)
        else:
            path.write_text("".join(f"{w} " + " ".join([f"{(i + 1) / 10:.1f}"] * dim) + "\n"
                                    for i, w in enumerate(words)))
        return path

    def corpus(self, like: str) -> Path:
        path = self._fresh(Path(like).name)
        path.write_text("\n".join(SENTENCES[:4]) + "\n\n" + "\n".join(SENTENCES[4:]) + "\n")
        return path

    def student(self, cfg) -> Path:
        """The folder a general-distillation run would leave for `cfg.student`: config.json of the shape the student
        config plans against this teacher, and the tokenizer."""
        from transformers import BertConfig

        from distill.lab.preflight import teacher_config
        from distill.students import distilbert, tinybert
        from distill.teachers.load import load_tokenizer

        tc = teacher_config(cfg, load_tokenizer(cfg.teacher.tokenizer or cfg.teacher.checkpoint))
        planned = dataclasses.replace(cfg.student, init="scratch")
        if cfg.student.kind == "distilbert":
            config = distilbert.distilbert_config(tc, distilbert.planned_shape(planned, tc)[0])
        else:
            shape = tinybert.student_shape(planned, tc)
            config = BertConfig(vocab_size=tc.vocab_size, hidden_size=shape["hidden"],
                                num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                                intermediate_size=shape["ffn"], max_position_embeddings=tc.max_position_embeddings)
        folder = self._fresh("student")
        config.save_pretrained(folder)
        self._tokenizer_into(folder)
        return folder

    # ---- overrides

    def overrides(self, config: Path, given: list[str] | tuple[str, ...] = ()) -> list[str]:
        """`--set` assignments pointing every resource `config` (with the `given` overrides) names that is not here at
        a stand-in; fails naming the config and key when there is none."""
        cfg = load_config(config, given)
        out, handled = [], set(MODEL_KEYS) | set(VECTOR_KEYS) | {"task.path", "augment.tang.tagger"}
        if cfg.task.source == "glue":
            key = GLUE_ALIASES.get(cfg.task.name.lower(), cfg.task.name.lower())
            out.append(f"task.path={self.root / 'glue' / GLUE_FOLDERS.get(key, key)}")
        elif cfg.task.source == "csv" and not Path(cfg.task.path).exists():
            pytest.fail(f"{config}: `task.path` = {cfg.task.path!r} (a CSV task) has no stand-in")
        for key in MODEL_KEYS:
            out += self._model(config, cfg, key, _get(cfg, key))
        for key in VECTOR_KEYS:
            value = _get(cfg, key)
            if value is not None and not value.startswith(NAMED) and not Path(value).expanduser().exists():
                out.append(f"{key}={self.vectors(value)}")
        out += self._tagger(cfg.augment.tang.tagger)
        sources = [s if s.startswith(NAMED) or Path(s).expanduser().exists() else str(self.corpus(s))
                   for s in cfg.corpus.sources]
        if sources != cfg.corpus.sources:
            out.append("corpus.sources=[" + ", ".join(sources) + "]")
        handled |= {f"corpus.sources.{i}" for i in range(len(sources))}
        self._no_other_missing_paths(config, given, handled)
        return out

    def _model(self, config: Path, cfg, key: str, value: str | None) -> list[str]:
        if value is None or value in ("random", "scratch", "teacher") or value.startswith(NAMED):
            return []
        if Path(value).expanduser().exists():
            return []
        if _is_hub_name(value):
            if value not in HUB:
                pytest.fail(f"{config}: `{key}` = {value!r} is a hub checkpoint without a stand-in; add its shape "
                            "to HUB in tests/test_check_configs.py")
            return []
        if key != "student.init":
            pytest.fail(f"{config}: `{key}` = {value!r} is a folder that is not here and has no stand-in")
        return [f"student.init={self.student(cfg)}"]

    @staticmethod
    def _tagger(spec: str) -> list[str]:
        from distill.augment.pos import TaggerError, check_tagger
        from distill.resources import packaged_path

        try:
            check_tagger(spec)
            return []
        except TaggerError:  # e.g. spacy:en_core_web_sm, not pip-installed here: the packaged copy stands in
            return [f"augment.tang.tagger=spacy:{packaged_path('spacy-en-core-web-sm')}"]

    @staticmethod
    def _no_other_missing_paths(config: Path, given, handled: set[str]) -> None:
        """A path-like value under a key this class does not know (a new kind of resource) fails by name."""
        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if not (where == "" and k in NOT_RESOURCES):
                        yield from walk(v, f"{where}.{k}" if where else str(k))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    yield from walk(v, f"{where}.{i}")
            elif isinstance(node, str):
                yield where, node

        raw = load_raw(config)
        for assignment in given:
            apply_override(raw, assignment)
        for key, value in walk(raw, ""):
            if key in handled or value.startswith(NAMED) or "/" not in value:
                continue
            if not Path(value).expanduser().exists():
                pytest.fail(f"{config}: `{key}` = {value!r} names a path that is not here, and the test has no "
                            "stand-in for that key; add one to Standins.overrides")
