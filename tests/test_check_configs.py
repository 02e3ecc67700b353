"""`distill check` over every config in experiments/ (globbed: a new recipe is covered without touching this file),
offline, with small stand-ins for what is not on this machine: GLUE folders, hub checkpoints (config and tokenizer
only, no weights: check must never load weights), word vectors, corpus files, a spaCy pipeline, and the student
folders of general-distillation runs that have not run yet. Then the errors check exists to catch, and its sizes
against hand computations."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from distill.config import load_config, load_raw
from distill.lab.cli import main
from distill.tasks import GLUE, GLUE_ALIASES

from .helpers import ROOT

EXPERIMENTS = ROOT / "experiments"
CONFIGS = sorted(EXPERIMENTS.rglob("*.yaml"))

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
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _is_hub_name(value: str) -> bool:
    # As teachers.load.resolve: what is not a folder here and has at most one slash is a hub name.
    return not value.startswith((".", "/", "~")) and value.count("/") <= 1


class Standins:
    """Stand-in resources under `root`, and the `--set` overrides that point a config at them."""

    def __init__(self, root: Path):
        from teachers.load import resolve

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
        from students import distilbert, tinybert
        from teachers.load import load_tokenizer

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

    def overrides(self, config: Path) -> list[str]:
        """`--set` assignments pointing every resource `config` names that is not here at a stand-in; fails naming
        the config and key when there is none."""
        cfg = load_config(config)
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
            if not value.startswith(NAMED) and not Path(value).expanduser().exists():
                out.append(f"{key}={self.vectors(value)}")
        out += self._tagger(cfg.augment.tang.tagger)
        sources = [s if s.startswith(NAMED) or Path(s).expanduser().exists() else str(self.corpus(s))
                   for s in cfg.corpus.sources]
        if sources != cfg.corpus.sources:
            out.append("corpus.sources=[" + ", ".join(sources) + "]")
        handled |= {f"corpus.sources.{i}" for i in range(len(sources))}
        self._no_other_missing_paths(config, handled)
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
        from augment.pos import TaggerError, check_tagger
        from distill.resources import packaged_path

        try:
            check_tagger(spec)
            return []
        except TaggerError:  # e.g. spacy:en_core_web_sm, not pip-installed here: the packaged copy stands in
            return [f"augment.tang.tagger=spacy:{packaged_path('spacy-en-core-web-sm')}"]

    @staticmethod
    def _no_other_missing_paths(config: Path, handled: set[str]) -> None:
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

        for key, value in walk(load_raw(config), ""):
            if key in handled or value.startswith(NAMED) or "/" not in value:
                continue
            if not Path(value).expanduser().exists():
                pytest.fail(f"{config}: `{key}` = {value!r} names a path that is not here, and the test has no "
                            "stand-in for that key; add one to Standins.overrides")


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    import huggingface_hub.constants as hub_constants

    root = tmp_path_factory.mktemp("standins")
    s = Standins(root)
    with pytest.MonkeyPatch.context() as mp:
        for var, value in (("HF_HOME", root / "hf"), ("HF_HUB_CACHE", s.hub), ("HF_HUB_OFFLINE", "1")):
            mp.setenv(var, str(value))
        # huggingface_hub reads these environment variables once, at import; transformers reads the constants.
        mp.setattr(hub_constants, "HF_HUB_CACHE", str(s.hub))
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        yield s


@pytest.fixture
def no_weights(monkeypatch):
    """Check reads configs and tokenizers only: any model weights loaded fail the test (the hub stand-ins have none
    anyway; this also covers the packaged MiniLM, which has)."""
    from transformers import PreTrainedModel

    def refuse(cls, *args, **kwargs):
        raise AssertionError(f"distill check loaded the weights of {args[0] if args else kwargs}")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


def _set(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def check(config: Path, overrides: list[str], capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["check", str(config), "--plan-only", "--no-estimate", *_set(overrides), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_planned(config: Path, code: int, out: str, err: str) -> None:
    assert code == 0, f"distill check {config.relative_to(ROOT)}: {err.strip()[-3000:]}"
    stages = re.findall(r"^stage (\d+)/(\d+) ", out, re.M)
    assert stages and len(stages) == int(stages[0][1]), out
    assert len(re.findall(r"optimizer steps \S+.* per epoch, .* in total$", out, re.M)) == len(stages), out
    assert len(re.findall(r"^  tokens per epoch: ", out, re.M)) == len(stages), out


def _variants(config: Path) -> list[str]:
    return list(load_raw(config).get("variants") or {})


# ---------------------------------------------------------------- every config


def test_standin_hub_checkpoints_load_offline(standins):
    from transformers import AutoConfig, AutoTokenizer

    for name, shape in HUB.items():
        config = AutoConfig.from_pretrained(name)
        assert config.model_type == shape["model_type"] and config.vocab_size == 30522
        assert config.num_hidden_layers == shape.get("num_hidden_layers", shape.get("n_layers"))
        tok = AutoTokenizer.from_pretrained(name)
        assert tok.is_fast and len(tok) == 30522 and tok("a good movie")["input_ids"][0] == tok.cls_token_id


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(EXPERIMENTS)) for p in CONFIGS])
def test_check_passes_and_plans_every_experiment(config, standins, no_weights, capsys):
    code, out, err = check(config, standins.overrides(config), capsys)
    assert_planned(config, code, out, err)
    if _variants(config):
        assert "every variant checked" in out


# A sweep's check already checks every variant (and plans one); planning another by name, once per sweep, keeps the
# file's time linear in the number of variants.
VARIANTS = [(c, _variants(c)[-1]) for c in CONFIGS if _variants(c)]


@pytest.mark.parametrize("config,variant", VARIANTS,
                         ids=[f"{c.relative_to(EXPERIMENTS)}:{v}" for c, v in VARIANTS])
def test_check_plans_a_variant_by_name(config, variant, standins, no_weights, capsys):
    code, out, err = check(config, standins.overrides(config), capsys, "--variant", variant)
    assert_planned(config, code, out, err)
    assert f"planned below: variant {variant!r}" in out


# ---------------------------------------------------------------- what check catches


SST2_TINYBERT4 = EXPERIMENTS / "glue" / "sst2" / "tinybert4.yaml"


def test_a_glue_file_missing_a_column_is_named(standins, capsys, tmp_path):
    folder = tmp_path / "SST-2"
    shutil.copytree(standins.root / "glue" / "SST-2", folder)
    train = folder / "train.tsv"
    train.write_text("".join(line.split("\t")[0] + "\t" + line.split("\t")[1] + "\n"
                             for line in train.read_text().splitlines()))  # index and sentence, no label
    overrides = [o for o in standins.overrides(SST2_TINYBERT4) if not o.startswith("task.path=")]
    code, out, err = check(SST2_TINYBERT4, [*overrides, f"task.path={folder}"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("distill: error: ") and len(err.strip().splitlines()) == 1
    assert f"{train}:1: no column 'label'" in err


@pytest.mark.parametrize("changes,fragment", [
    (["stages.0.layer_map=[[1, 13]]"], "stages.0 (intermediate).layer_map: layer map pair [1, 13]: teacher layer 13 "
                                       "is outside 1..12"),
    (["student.init=scratch", "student.preset=null", "student.layers=16"],
     "stages.0 (intermediate).layer_map: layer map 'uniform': a student of 16 layers cannot map onto a teacher of "
     "12 layers"),
    (["student.init=scratch"], None),  # valid: a random TinyBERT-4
    (["augment.tinybert.vectors=/no/such/glove.txt"], "vectors file not found: /no/such/glove.txt"),
    (["augment.tinybert.masked_lm=/no/such/mlm"], "checkpoint folder not found: /no/such/mlm"),
])
def test_check_catches_what_a_run_would_refuse(standins, capsys, changes, fragment):
    code, out, err = check(SST2_TINYBERT4, [*standins.overrides(SST2_TINYBERT4), *changes], capsys)
    if fragment is None:
        assert_planned(SST2_TINYBERT4, code, out, err)
        return
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_a_resource_only_a_later_variant_needs_is_checked_and_named(capsys):
    # quickstart_bilstm's first variant trains on the training set; only `distilled+aug` needs the tagger.
    config = EXPERIMENTS / "quickstart_bilstm.yaml"
    code, out, err = check(config, ["augment.tang.tagger=spacy:/no/such/pipeline"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "(variant 'distilled+aug'): spaCy pipeline '/no/such/pipeline' is not installed" in err


def test_unknown_variant_is_one_line(standins, capsys):
    config = EXPERIMENTS / "ablations" / "glue" / "tinybert.yaml"
    code, _, err = check(config, standins.overrides(config), capsys, "--variant", "no-such-thing")
    assert code == 2 and "no such variant" in err and "no-augmentation" in err


# ---------------------------------------------------------------- sizes, by hand


def _figures(out: str, stage: int) -> tuple[str, str]:
    block = out.split(f"stage {stage}/")[1]
    steps = re.search(r"optimizer steps ((?:at most |~)?[\d,]+) per epoch, ((?:at most |~)?[\d,]+) in total", block)
    return steps.group(1), steps.group(2)


def test_steps_and_tokens_match_a_hand_computation(standins, capsys, tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    # 10 training sentences: nine of [CLS] good movie [SEP] (4 tokens), one of 10 tokens cut to max_length 6.
    train = ["good movie"] * 9 + ["a very very very very very good movie"]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(train)))
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood movie\t1\nbad movie\t0\n")
    smoke = ROOT / "experiments" / "smoke.yaml"
    overrides = ["task.source=glue", "task.name=sst2", f"task.path={folder}", "task.max_length=6",
                 "task.train_limit=null", "task.dev_limit=null", "task.test_limit=null",
                 "stages.0.batch_size=4", "stages.0.epochs=3", "stages.0.grad_accum=2",
                 "stages.1.batch_size=3", "stages.1.epochs=2"]
    code, out, err = check(smoke, overrides, capsys)
    assert code == 0, err
    # Stage 1: ceil(10 / 4) = 3 batches, ceil(3 / 2) = 2 optimizer steps per epoch, x 3 epochs = 6.
    assert _figures(out, 1) == ("2", "6")
    # Stage 2: ceil(10 / 3) = 4 batches = 4 steps per epoch, x 2 epochs = 8; 14 over both stages.
    assert _figures(out, 2) == ("4", "8")
    assert "total:    14 optimizer steps" in out
    # Tokens per epoch: 9 x 4 + 6 = 42.
    assert out.count("tokens per epoch: 42\n") == 2
    # The teacher is fine-tuned first: ceil(10 / 32) = 1 step per epoch, 1 epoch.
    assert "batch 32 = 1 optimizer steps" in out


def test_augmented_set_not_built_is_an_upper_bound_and_built_is_read(standins, capsys):
    from augment.runner import augmented_path
    from distill.loaders import load_task

    overrides = standins.overrides(SST2_TINYBERT4)
    code, out, err = check(SST2_TINYBERT4, overrides, capsys)
    assert code == 0, err
    # The stand-in SST-2 has 9 training examples; 20 copies each: at most 9 x 21 = 189 examples, batch 32:
    # ceil(189 / 32) = 6 steps per epoch, x 20 epochs = 120 (stage 1), x 3 = 18 (stage 2).
    assert "not built yet" in out and "(estimate)" in out
    assert _figures(out, 1) == ("at most 6", "at most 120") and _figures(out, 2) == ("at most 6", "at most 18")

    cfg = load_config(SST2_TINYBERT4, overrides)
    path = augmented_path(cfg, load_task(cfg.task))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"x{i}", "text_a": "good movie", "text_b": None, "label": i % 2} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        code, out, err = check(SST2_TINYBERT4, overrides, capsys)
        assert code == 0, err
        # 40 examples of 4 tokens: ceil(40 / 32) = 2 steps per epoch; 160 tokens per epoch.
        assert f"built: {path}" in out and _figures(out, 1) == ("2", "40") and "tokens per epoch: 160\n" in out
    finally:
        path.unlink()


def test_general_distillation_corpus_estimated_then_exact_once_packed(standins, capsys):
    from distill.corpus import CorpusDataset, pack_corpus
    from teachers.load import load_tokenizer

    config = EXPERIMENTS / "general" / "tinybert4.yaml"
    overrides = [*standins.overrides(config), "stages.0.batch_size=2", "corpus.heldout=0.25"]
    code, out, err = check(config, overrides, capsys)
    assert code == 0, err
    assert "not packed yet" in out and re.search(r"tokens per epoch: ~[\d,]+ \(estimate\)", out)
    cfg = load_config(config, overrides)
    tokenizer = load_tokenizer(cfg.teacher.checkpoint)
    folder = pack_corpus(cfg.corpus, tokenizer, log=lambda *_: None)
    ds = CorpusDataset(folder, "train", cfg.corpus.heldout, 0)
    code, out, err = check(config, overrides, capsys)
    assert code == 0, err
    per_epoch = -(-len(ds) // 2)
    assert f"packed: {folder}" in out and _figures(out, 1) == (str(per_epoch), f"{per_epoch * 3:,}")
    assert f"tokens per epoch: {sum(ds.lengths()):,}\n" in out
