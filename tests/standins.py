"""Stand-ins for what the experiment configs name but this machine does not have (GLUE folders, hub checkpoints as
config and tokenizer only, hub datasets as small `save_to_disk` folders in their layout, the Brown corpus, word
vectors, corpus files, a spaCy pipeline, general-distillation students), and the `--set` overrides that point a
config at them. Shared by `distill check` over every config and the README's commands."""

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

# Hub datasets the recipes name (`task.source: hf`), by the layout of their stand-in: SQuAD v1.1 and v2.0 (id, title,
# context, question, answers {text, answer_start}) and CoNLL-2003 (tokens, ner_tags: Sequence(ClassLabel)).
HF_DATASETS = {"squad": "squad", "rajpurkar/squad": "squad", "squad_v2": "squad_v2", "rajpurkar/squad_v2": "squad_v2",
               "conll2003": "conll2003", "eriktks/conll2003": "conll2003"}
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# (words, tags): every tag in every split.
CONLL_SENTENCES = [
    (["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
     ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]),
    (["Peter", "Blackburn", "flew", "to", "New", "York", "for", "the", "World", "Cup", "."],
     ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "O", "B-MISC", "I-MISC", "O"]),
    (["The", "European", "Commission", "met", "in", "Brussels", "on", "Thursday", "."],
     ["O", "B-ORG", "I-ORG", "O", "O", "B-LOC", "O", "O", "O"]),
    (["Werner", "Zwingmann", "said", "nothing", "."], ["B-PER", "I-PER", "O", "O", "O"]),
]
# (context, [(question, answer or None)]): answers are substrings of their context; None is a v2.0 question without
# one. The first context is long enough for several windows of 384 tokens.
SQUAD_CONTEXTS = [
    (" ".join(["The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a "
               "region in France."] + [f"Sentence {i} of a long paragraph about the duchy and its dukes." for i in
                                        range(60)] + ["Rollo agreed to swear fealty to King Charles III."]),
     [("In what country is Normandy located?", "France"), ("Who swore fealty to King Charles III?", "Rollo"),
      ("Who did Rollo fight at Hastings?", None)]),
    ("Computational complexity theory is a branch of the theory of computation that classifies problems by their "
     "inherent difficulty.",
     [("What does computational complexity theory classify?", "problems"), ("Who founded the theory?", None)]),
    ("A problem is regarded as inherently difficult if its solution requires significant resources, such as time "
     "and storage.",
     [("What are two resources a solution may require?", "time and storage"), ("What is a manual step?", None)]),
]
# NLTK's Brown format: each non-blank line a sentence of word/tag tokens (paragraphs open with a tab, blank lines
# between them). Every file holds every tag, so that no split has a tag the others lack.
BROWN_LINES = [
    "\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn of/in "
    "recent/jj elections/nns produced/vbd ``/`` no/at evidence/nn ''/'' ./.",
    "\tThe/at jury/nn further/rbr said/vbd it/pps did/dod not/* find/vb any/dti irregularities/nns ./.",
    "",
    "\tIt/pps urged/vbd that/cs the/at city/nn take/vb steps/nns to/to remedy/vb this/dt problem/nn ./.",
]
BROWN_FILES = ("ca01", "ca02", "cb01", "cc01", "cd01", "ce01", "cf01", "cg01", "ch01", "cj01")

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
        self.datasets = {name: self._hf_dataset(name, root / "hf-datasets" / name)
                         for name in sorted(set(HF_DATASETS.values()))}
        self.brown = self._brown()
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

    @staticmethod
    def _hf_dataset(name: str, folder: Path) -> Path:
        """A `save_to_disk` DatasetDict in the hub dataset's layout and splits (train, validation; CoNLL also test)."""
        import datasets as ds

        if name == "conll2003":
            features = ds.Features({"id": ds.Value("string"), "tokens": ds.Sequence(ds.Value("string")),
                                    "ner_tags": ds.Sequence(ds.ClassLabel(names=CONLL_TAGS))})

            def split(n: int) -> ds.Dataset:
                rows = [CONLL_SENTENCES[i % len(CONLL_SENTENCES)] for i in range(n)]
                return ds.Dataset.from_dict({"id": [str(i) for i in range(n)], "tokens": [w for w, _ in rows],
                                             "ner_tags": [[CONLL_TAGS.index(t) for t in tags] for _, tags in rows]},
                                            features=features)

            ds.DatasetDict({"train": split(8), "validation": split(4), "test": split(4)}).save_to_disk(str(folder))
            return folder
        answers = ds.Sequence({"text": ds.Value("string"), "answer_start": ds.Value("int32")})
        features = ds.Features({"id": ds.Value("string"), "title": ds.Value("string"), "context": ds.Value("string"),
                                "question": ds.Value("string"), "answers": answers})
        v2 = name == "squad_v2"
        rows = {key: [] for key in features}
        for c, (context, questions) in enumerate(SQUAD_CONTEXTS):
            for q, (question, answer) in enumerate(questions):
                if answer is None and not v2:
                    continue
                rows["id"].append(f"{name}-{c}-{q}")
                rows["title"].append(f"Title {c}")
                rows["context"].append(context)
                rows["question"].append(question)
                rows["answers"].append({"text": [answer] if answer else [],
                                        "answer_start": [context.index(answer)] if answer else []})
        data = ds.Dataset.from_dict(rows, features=features)
        ds.DatasetDict({"train": data, "validation": data}).save_to_disk(str(folder))
        return folder

    @staticmethod
    def _brown() -> Path:
        """A small Brown corpus where `distill.brown` looks for the downloaded one (the session's isolated cache);
        a corpus already there is used as it is."""
        import os

        from distill.brown import FILE_GLOB, cache_folder

        if "DISTILLERY_CACHE" not in os.environ:  # never write into the user's own cache
            raise RuntimeError("Standins: DISTILLERY_CACHE is not set (tests/conftest.py isolates the cache)")
        folder = cache_folder()
        if not any(folder.glob(FILE_GLOB)):
            folder.mkdir(parents=True, exist_ok=True)
            for name in BROWN_FILES:
                (folder / name).write_text("\n".join(BROWN_LINES) + "\n")
        return folder

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
        elif cfg.task.source == "hf" and not Path(cfg.task.path).expanduser().exists():
            if cfg.task.path not in HF_DATASETS:
                pytest.fail(f"{config}: `task.path` = {cfg.task.path!r} is a hub dataset without a stand-in; add its "
                            "layout to HF_DATASETS in tests/standins.py")
            out.append(f"task.path={self.datasets[HF_DATASETS[cfg.task.path]]}")
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
