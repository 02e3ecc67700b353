"""Experiment configs: YAML files validated into typed dataclasses.

One file = one experiment. A file may `extends:` another (paths relative to the file); mappings merge
key by key, lists and scalars replace, except `stages`, which merge by name (`merge_stages`) so that a recipe
states only what differs from the one it extends:

- a child stage whose `name` is a parent stage's is merged into it key by key: the child's keys replace the
  parent's, each whole, so a child that gives `losses` replaces the parent stage's losses (a stage trains on
  exactly the losses one file lists; merging them would silently keep a loss the child meant to swap out);
- parent stages keep their order; child stages with new names follow, in the child's order;
- `{name: X, drop: true}` (nothing else in the entry) removes the parent's stage X;
- every stage of a child's list must have a name, and a name may appear once.

Command-line overrides (`--set stages.0.epochs=2`) are applied to the merged mapping before validation, so they
are checked exactly like the file and index the merged stages.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from distill.errors import DistillError
from distill.student_registry import StudentConfig, StudentError, get_student
from distill.tasks import EVAL_SPLITS


class ConfigError(DistillError):
    """A config that cannot be used; the message names the file and the dotted key."""


# ---------------------------------------------------------------- YAML, with numbers as people write them

# YAML 1.1 (PyYAML) needs a dot and a signed exponent for a float, so `2e-5`, `1E-4` and `5.0e5` would be strings;
# YAML 1.2 and JSON read them as numbers, and learning rates are written that way throughout the field.
_NUMBER = r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?"
_FLOAT = re.compile(rf"^(?:{_NUMBER})$")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """YAML as every config source reads it (files, `extends:`, `--set`, `--grid`, variants, saved run configs):
    PyYAML's safe YAML 1.1, except that a number in scientific notation is a number however it is spelt."""
    loader = _Loader(text)  # a SafeLoader: tags that construct objects are refused as by yaml.safe_load
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _as_number(value: Any) -> Any:
    """A quoted number (`lr: "2e-5"`) where a number is expected; anything else unchanged."""
    if isinstance(value, str) and _FLOAT.match(value.strip()) and any(c.isdigit() for c in value):
        return float(value.strip().replace("_", ""))
    return value


@dataclass
class FinetuneConfig:
    epochs: int = 3
    lr: float = 2.0e-5
    batch_size: int = 32
    warmup: float = 0.1
    weight_decay: float = 0.01
    # Independent of the run's seed, so that a seed sweep of students shares one teacher.
    seed: int = 0
    # `full`: the task's whole training split even when `task.train_limit` subsamples the student's (the papers
    # fine-tune their teachers on the full training set); `task`: the student's training split.
    train: Literal["task", "full"] = "task"


@dataclass
class RandomBertConfig:
    """Shape of a randomly initialised BERT (for smoke tests and speed measurements)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    ffn: int = 128


@dataclass
class TeacherGateConfig:
    """Before any distillation stage the teacher must beat the majority-class baseline on the dev set by `margin`
    (in the task's main metric; regression: a correlation above `margin`), and no class may take
    `max_class_share` or more of its dev predictions. Each class's dev recall is compared with chance (1 / classes):
    a class the teacher never recalls although it trained on it (at least `min_class_examples` examples) stops the
    run; a recall below chance is warned about."""

    margin: float = 0.01
    max_class_share: float = 0.99
    min_class_examples: int = 10


@dataclass
class TeacherConfig:
    # With several teachers (`teachers:`): how losses name this one (default teacher1, teacher2, ...) and its
    # share of the prediction targets (weights are normalised to sum to 1).
    name: str | None = None
    weight: float = 1.0
    # A local folder, a hub name (bert-base-uncased), `packaged:all-minilm-l6-v2`, or `random`.
    checkpoint: str = "packaged:all-minilm-l6-v2"
    # Tokenizer source when it differs from the checkpoint (required for `random`).
    tokenizer: str | None = None
    random: RandomBertConfig | None = None
    # None: the checkpoint is used as it is (already fine-tuned on the task, or pre-trained for general
    # distillation).
    finetune: FinetuneConfig | None = field(default_factory=FinetuneConfig)
    # The task's label names in the order of the checkpoint's classifier rows, for a head used as it is whose
    # names are generic (LABEL_0...) or differ from the task's; otherwise rows are matched to labels by name.
    label_order: list[str] | None = None
    # null: no check (a random teacher in smoke tests).
    gate: TeacherGateConfig | None = field(default_factory=TeacherGateConfig)


@dataclass
class TaskConfig:
    # GLUE task name (sst2, mnli, ...), `tweets`, or any name for `source: csv` / `source: hf`.
    name: str = "tweets"
    # `hf`: read with Hugging Face `datasets` (a hub name, a `save_to_disk` folder, or a folder of parquet / JSON
    # lines / CSV files); `csv`: CSV, TSV or JSON lines files read by distillery itself; `conll`: CoNLL-style files
    # (one word and its tag per line, a blank line between sentences) for token classification; `squad`: SQuAD
    # v1.1 / v2.0 JSON files for extractive QA. Packaged tasks: `tweets`, `brown-pos` (Brown corpus POS tags).
    source: Literal["packaged", "glue", "csv", "hf", "conll", "squad"] = "packaged"
    path: str | None = None
    # `source: csv` only: file names inside `path`.
    train_file: str = "train.tsv"
    dev_file: str = "dev.tsv"
    test_file: str | None = None
    # `false`: CSV/TSV files without a header line; columns are then named by 0-based position (an integer
    # column is a position in any case).
    header: bool = True
    # `source: hf` only: the dataset's configuration (`glue` + `sst2`), data files by split name (relative to
    # `path`), and which of the dataset's splits are train / dev / dev_mismatched / test (by default train,
    # the first of validation / dev / valid, and test when it has labels).
    subset: str | None = None
    data_files: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    text_columns: list[str | int] = field(default_factory=lambda: ["text"])
    label_column: str | int = "label"
    # Label names in the order of the model's outputs; by default a ClassLabel feature's names, else the values
    # found in the training split, sorted (printed when a run starts).
    labels: list[str] | None = None
    # `auto`: regression when the labels are non-integer numbers (a float feature for `source: hf`), token
    # classification for `source: conll` and `brown-pos`, extractive QA for `source: squad`.
    # `token_classification`: a tag per word (NER, POS); `extractive_qa`: an answer span in a context (SQuAD).
    type: Literal["auto", "classification", "regression", "token_classification", "extractive_qa"] = "auto"
    # `source: conll`: the 0-based columns of the word and the tag (negative counts from the end of the line).
    word_column: int = 0
    tag_column: int = -1
    # `brown-pos`: `simplified` drops the title / headline / cited / foreign-word marks (np-tl -> np: 190 tags),
    # `full` keeps Brown's 472 tags.
    brown_tags: Literal["simplified", "full"] = "simplified"
    # Extractive QA: windows of `max_length` tokens over long contexts, consecutive windows overlapping by
    # `doc_stride` tokens (Hugging Face's run_qa.py, default 128); questions cut to `max_query_length` tokens.
    doc_stride: int = 128
    max_query_length: int = 64
    # Answer post-processing (BERT's run_squad defaults): candidates per end and the longest answer, in tokens.
    n_best: int = 20
    max_answer_length: int = 30
    delimiter: str | None = None
    # Subsampling (seeded by split_seed) and truncation, to size runs for the hardware.
    max_length: int = 128
    train_limit: int | None = None
    dev_limit: int | None = None
    test_limit: int | None = None
    split_seed: int = 0
    # A declared label with no training example is refused (a typo in `labels`, a filtered split); `true` allows it
    # (the class is then learned from nothing and is said so). Classes with few examples are warned about.
    allow_empty_classes: bool = False


@dataclass
class TinyBertAugmentConfig:
    """Jiao et al. 2020, Algorithm 1 (defaults from the paper: K = 15, p_t = 0.4)."""

    candidates: int = 15
    p_replace: float = 0.4
    # Any BertForMaskedLM folder or hub name; `adapted:<encoder>` MLM-fine-tunes an encoder once (cached).
    masked_lm: str = "adapted:packaged:all-minilm-l6-v2"
    # `single`: [CLS] masked sentence [SEP]; `pair`: [CLS] masked [SEP] original [SEP] (the reference code).
    mlm_input: Literal["single", "pair"] = "single"
    vectors: str = "packaged:glove-6b-50d"
    # The most frequent words kept for neighbours (the reference keeps GloVe's first 100,000; the rest of a large
    # GloVe gives rare tokens and misspellings as neighbours); null: every word.
    vectors_limit: int | None = 100_000
    allow_pickle: bool = False
    skip_stopwords: bool = True
    # Which words `skip_stopwords` skips: `tinybert`, the reference's `StopWordsList` (NLTK's English list without
    # how, what, when, where, which, who, whom, why, which it rewrites), or `nltk`, NLTK's whole 179-word list.
    stopwords: Literal["tinybert", "nltk"] = "tinybert"
    # Sentence pairs: `one_side`, as the reference (which augments each sentence of a pair on its own), makes N copies
    # that rewrite the first sentence and N that rewrite the second, the other kept as is (2N per pair); `both`
    # rewrites both sentences in each of N copies.
    pair_mode: Literal["one_side", "both"] = "one_side"
    batch_size: int = 128
    # Word pieces of one masked-LM input, special tokens included: the reference cuts `masked + original` at 512,
    # BERT's maximum. Capped at the masked LM's `max_position_embeddings` (the build says so when it caps).
    max_length: int = 512


@dataclass
class TangAugmentConfig:
    """Tang et al. 2019: masking, POS-guided replacement, n-gram sampling."""

    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ng: float = 0.25
    max_ngram: int = 5
    # `spacy:packaged` (en_core_web_sm from PyPI), `spacy:<name or path>`, or `nltk`.
    tagger: str = "spacy:packaged"
    # Each POS tag's unigram distribution counts every occurrence of a word in the training set (the reference), or
    # each distinct text once (`unique_texts`).
    count: Literal["occurrences", "unique_texts"] = "occurrences"
    # For sentence pairs, each copy synthesises one of these, chosen uniformly.
    pair_modes: list[Literal["first", "second", "both"]] = field(default_factory=lambda: ["first", "second", "both"])


@dataclass
class AugmentConfig:
    method: Literal["tinybert", "tang"] = "tinybert"
    # N (TinyBERT) or n_iter (Tang): augmented copies per training example, before de-duplication.
    copies: int = 20
    # None: the experiment's seed.
    seed: int | None = None
    # Source examples per part file: the unit of sharding and of resuming.
    chunk_size: int = 256
    # The gold label of an augmented copy: the teacher's prediction on the copy (argmax; its score for
    # regression), since a rewrite can flip the label, or the source example's. Originals keep their gold labels;
    # soft targets are the teacher's either way.
    labels: Literal["teacher", "source"] = "teacher"
    tinybert: TinyBertAugmentConfig = field(default_factory=TinyBertAugmentConfig)
    tang: TangAugmentConfig = field(default_factory=TangAugmentConfig)


@dataclass
class CorpusConfig:
    """Unlabelled text for general distillation. Sources: plain-text files (one sentence per line, a
    blank line between documents), `hf:NAME[/CONFIG]:SPLIT[:COLUMN]` (a Hugging Face dataset, streamed;
    needs `datasets` and the hub) or `packaged:tweets` (the tweets' training split, offline)."""

    sources: list[str] = field(default_factory=lambda: ["packaged:tweets"])
    max_length: int = 128
    # Every round(1 / heldout)-th packed sequence is held out to measure distillation losses.
    heldout: float = 0.05
    # At most this many packed sequences (None: all).
    limit: int | None = None


# The roles a task's splits play: training, checkpoint selection, and the evaluation splits reports show.
TASK_SPLITS = ("train", *EVAL_SPLITS)

LossSpec = float | dict[str, Any]


@dataclass
class StageConfig:
    name: str
    losses: dict[str, LossSpec]
    epochs: int = 1
    lr: float = 5.0e-5
    batch_size: int = 32
    warmup: float = 0.1
    # Decoupled (AdamW) decay on matrices; null: 0.01 for AdamW, 0 for Adadelta. Adadelta would apply decay as a
    # coupled L2 gradient that its per-parameter normalisation turns into full-size steps, so it is refused there.
    weight_decay: float | None = None
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    layer_map: str | list[list[int]] = "uniform"
    # Which epoch's weights the stage keeps: the best dev metric, or the last epoch.
    # Default: `metric` when a loss trains the logits, else `last`.
    select: Literal["metric", "last"] | None = None
    # Dev evaluated every N optimiser steps and at the stage's end (TinyBERT's task_distill.py `eval_step`), the
    # best kept when `select` is `metric`; null: at each epoch's end.
    eval_every: int | None = None
    # `augmented`: the training set plus its augmented copies (built once per `augment:` settings, cached);
    # `corpus`: the unlabelled corpus (general distillation; no task metrics).
    data: Literal["train", "augmented", "corpus"] = "train"
    # BERT's 15% / 80-10-10 masking of the inputs (DistilBERT's losses need it); teacher and student
    # see the same masked input.
    mlm_masking: bool = False
    # DistilBERT's choice of positions: ceil(15%) of each batch's tokens drawn with weight count^-mlm_smoothing
    # (0.7, the reference; counts over the stage's training data); null: BERT's independent 15% per token.
    mlm_smoothing: float | None = 0.7
    # Adadelta is Tang et al.'s choice for the BiLSTM (use lr 1.0 with it; rho 0.95 as their code).
    optimizer: Literal["adamw", "adadelta"] = "adamw"
    rho: float = 0.95
    # Learning-rate schedule; null: constant for a task-distillation stage of intermediate losses only (TinyBERT's
    # task_distill.py uses no schedule there), else linear warmup and decay.
    schedule: Literal["linear", "constant"] | None = None


@dataclass
class TrainConfig:
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    cpu: bool = False
    eval_batch_size: int = 64
    length_grouped: bool = True
    log_every: int = 10
    # Optimizer steps between mid-epoch checkpoints (0: only at epoch ends).
    checkpoint_every: int = 0
    num_workers: int = 0
    # Dropout probability of every dropout layer of the student (null: the model's own, usually 0.1).
    dropout: float | None = None
    # W_h / W_e when student and teacher widths differ: one each, one shared, or none (then an error).
    projection: Literal["separate", "shared", "none"] = "separate"
    # `carried`: start W_h / W_e from those saved with the `student.init` checkpoint (a general-distillation
    # student of this tool, or a General TinyBERT's `fit_dense`), as TinyBERT's task distillation does; `fresh`:
    # random.
    projection_init: Literal["carried", "fresh"] = "carried"
    # Precision of the teacher's targets: `auto` follows `precision` (a half-precision teacher under
    # bf16/fp16), `fp32` keeps the teacher in full precision whatever the student uses.
    teacher_precision: Literal["auto", "fp32"] = "auto"
    # The teacher's hidden states and attention scores over a stage's training data, stored once (memory-mapped,
    # keyed like the logit cache) and read by every epoch, seed and variant instead of a teacher forward per step:
    # `fp16` halves the disk of `fp32` (relative error ~1e-3 in the targets); `off`: the teacher runs every step.
    teacher_record: Literal["off", "fp16", "fp32"] = "off"


@dataclass
class SweepConfig:
    # A grid of dotted config keys -> values; every combination (times every variant and seed) is one run.
    grid: dict[str, list[Any]] = field(default_factory=dict)
    # The variant the ablation table measures changes against (default: the first variant).
    reference: str | None = None
    # What the papers report for a variant, as a difference from the reference in this table's main metric
    # (variant -> {delta: -0.07, source: "TinyBERT Table 6, 4-task dev average"}): the report puts it beside the
    # measured difference with the power the table's seeds have to find an effect of that size.
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CardConfig:
    # The model card's Hub metadata (student/README.md). `license`: an SPDX-style Hub licence id; default the
    # teacher's when it is known (apache-2.0 for the packaged MiniLM), else `other`. `language`: ISO 639-1 codes.
    # `datasets`: Hub dataset ids the student was trained on (a `source: hf` hub name is added by itself).
    license: str | None = None
    language: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    name: str
    teacher: TeacherConfig
    student: StudentConfig
    stages: list[StageConfig]
    # Several teachers: each entry is merged over `teacher` (shared settings) and fine-tuned and cached on its own;
    # `teacher` then stands for the first. Empty: `teacher` alone.
    teachers: list[TeacherConfig] = field(default_factory=list)
    # Not used by general distillation (every stage on `data: corpus`).
    task: TaskConfig = field(default_factory=TaskConfig)
    seed: int = 42
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    card: CardConfig = field(default_factory=CardConfig)
    description: str = ""
    # Named variants of this experiment (each a list of KEY=VALUE overrides) and the seeds to run each
    # with: `distill run` runs every (variant, seed) as its own run folder and prints them side by side.
    variants: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str, src: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        # An optional block (`teacher.finetune`) given as a mapping: its own errors name the key inside it.
        if isinstance(value, dict) and len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return _build(inner[0], value, where, src)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, src)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:  # an optional value: its own type's error says more (and `null` is the other choice)
            raise ConfigError(f"{errors[0]} or null") from None
        raise ConfigError(f"{src}: `{where}` = {value!r}: expected {_type_name(tp)}")
    if origin is Literal:
        # YAML 1.1 reads a bare `no`/`off` as False (and `yes`/`on` as True): take the option it was.
        if isinstance(value, bool):
            spelt = [o for o in typing.get_args(tp) if isinstance(o, str) and
                     o.lower() in (("yes", "on", "true") if value else ("no", "off", "false"))]
            value = spelt[0] if len(spelt) == 1 else value
        if value not in typing.get_args(tp):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected one of {_type_name(tp)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected {_type_name(tp)}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}.{i}", src) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected a mapping")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(v, vt, f"{where}.{k}", src) for k, v in value.items()}
    if tp is StudentConfig:
        return _build_student(value, where, src)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, src)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected true or false")
        return value
    if tp is int:
        number = _as_number(value)
        # A whole number however written (`1e4` steps), as long as a float holds it exactly.
        if isinstance(number, float) and number.is_integer() and abs(number) <= 2**53:
            return int(number)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected an integer{_separator_hint(value, True)}")
        return number
    if tp is float:
        number = _as_number(value)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected a number{_separator_hint(value, False)}")
        return float(number)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{src}: `{where}` = {value!r}: expected a string")
        return value
    raise TypeError(f"unsupported config type {tp!r}")


def _separator_hint(value: Any, integer: bool) -> str:
    """What to write instead of `1,000` (YAML reads it as a string)."""
    text = str(value).strip()
    if not (isinstance(value, str) and re.fullmatch(r"[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?", text)):
        return ""
    return f" (write {text.replace(',', '')}" + (f" or {text.replace(',', '_')}" if integer else "") + f", not {text})"


def _build(cls: type, raw: Any, where: str, src: str) -> Any:
    label = where or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: `{label}` must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(
            f"{src}: unknown key `{_join(where, unknown[0])}`; valid keys in `{label}`: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, f in fields.items():
        path = _join(where, name)
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], path, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{src}: missing required key `{path}` ({_type_name(hints[name])})")
    return cls(**kwargs)


# The keys of the one flat `student` section that came before per-kind sections, at its defaults. The resolved
# config.yaml of an older run holds them all: then the keys of other kinds are passed over (that kind never read them);
# elsewhere, only at these defaults.
FLAT_STUDENT = {"preset": None, "layers": None, "hidden": None, "heads": None, "ffn": None, "init_layers": None,
                "vectors": "packaged:glove-6b-50d", "vectors_limit": None, "fc": 200, "freeze_embeddings": False,
                "min_count": 2, "max_vocab": None, "vocab_from": "all_splits"}


def _build_student(raw: Any, where: str, src: str) -> StudentConfig:
    """`student:` validated against the section its `kind` registered (a key of another kind is unknown here)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: `{where}` must be a mapping, got {raw!r}")
    kind = raw.get("kind", StudentConfig.kind)
    if not isinstance(kind, str):
        raise ConfigError(f"{src}: `{_join(where, 'kind')}` = {kind!r}: expected the name of a student")
    try:
        section = get_student(kind, f"{src}: `{_join(where, 'kind')}`").config
    except StudentError as e:
        raise ConfigError(str(e)) from None
    own = {f.name for f in dataclasses.fields(section)}
    if FLAT_STUDENT.keys() <= raw.keys():  # an older run's resolved config: every kind's keys
        # A key at the flat section's default was unset, and an unset key takes its kind's default now (a
        # BiLSTM's `hidden: null` meant 150 units); other kinds' keys were never read.
        raw = {k: v for k, v in raw.items() if k not in FLAT_STUDENT or k in own and FLAT_STUDENT[k] != v}
    else:
        raw = {k: v for k, v in raw.items() if k in own or k not in FLAT_STUDENT or FLAT_STUDENT[k] != v}
    try:
        return _build(section, raw, where, src)
    except ConfigError as e:
        if "unknown key" not in str(e):
            raise
        raise ConfigError(f"{e} (the keys of `{_join(where, 'kind')}: {kind}`)") from None


def _kind(student: Any) -> Any:
    return student.get("kind", StudentConfig.kind) if isinstance(student, dict) else None


def _carried(student: Any, kind: Any) -> dict:
    """What a `student:` section keeps when its kind changes (an override or a child of another kind): the keys
    of the deepest section both kinds derive from, below `StudentConfig` (TinyBERT and DistilBERT share `init`,
    `layers`, `init_layers`), so that kinds are compared at the same settings; the old kind's own keys go."""
    if not isinstance(student, dict) or not isinstance(kind, str) or not isinstance(_kind(student), str):
        return {}
    try:
        old, new = get_student(_kind(student)).config, get_student(kind).config
    except StudentError:
        return {}  # the unknown kind is refused, with the registered ones, when the section is built
    shared = next(c for c in new.__mro__ if issubclass(old, c))  # the deepest section both derive from
    if shared is StudentConfig or not dataclasses.is_dataclass(shared):
        return {}  # `init` of a transformer (a checkpoint) and of a BiLSTM are different things
    names = {f.name for f in dataclasses.fields(shared)} - {"kind"}
    return {k: copy.deepcopy(v) for k, v in student.items() if k in names}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ---------------------------------------------------------------- files, inheritance, overrides


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{where}: not valid YAML ({what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_raw(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a config file and the chain of files it extends, merged (no validation)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: `extends` forms a cycle: {chain}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        _refuse_drops(data.get("stages"), f"{path}: extends no file")
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: `extends` must be a path string, got {parent!r}")
    base = load_raw(path.parent / parent, (*_seen, path))
    merged = deep_merge(base, data)
    child = data.get("student")
    if isinstance(child, dict) and "kind" in child and child["kind"] != _kind(base.get("student")):
        # Another kind's keys mean nothing to this one: only the settings both kinds read carry over.
        merged["student"] = {**_carried(base.get("student"), child["kind"]), **copy.deepcopy(child)}
    if isinstance(base.get("stages"), list) and isinstance(data.get("stages"), list):
        merged["stages"] = merge_stages(base["stages"], data["stages"], str(path))
    else:
        _refuse_drops(data.get("stages"), f"{path}: its parent {parent} has no `stages` list")
    return merged


DROP = "drop"


def merge_stages(parent: list, child: list, src: str) -> list:
    """A child file's `stages` merged into its parent's by name (the rule in the module docstring)."""
    by_name = {st["name"]: i for i, st in enumerate(parent) if isinstance(st, dict) and isinstance(st.get("name"), str)}
    known = ", ".join(by_name) or "none"
    out: list = copy.deepcopy(parent)
    dropped, seen = set(), {}
    for i, st in enumerate(child):
        if not isinstance(st, dict) or not isinstance(st.get("name"), str):
            raise ConfigError(f"{src}: `stages.{i}` = {st!r} has no `name`: a file that extends another merges its "
                              f"stages into the parent's by name (parent stages: {known})")
        name = st["name"]
        if name in seen:
            raise ConfigError(f"{src}: `stages.{i}.name` = {name!r}: already the name of `stages.{seen[name]}` in "
                              "this file; stage names must be unique")
        seen[name] = i
        if DROP in st:
            extra = sorted(set(st) - {"name", DROP})
            if st[DROP] is not True or extra:
                raise ConfigError(f"{src}: `stages.{i}` = {st!r}: expected {{name: {name}, {DROP}: true}} and no other "
                                  f"key to drop the parent's stage {name!r}"
                                  + (f" (got {', '.join(extra)})" if extra else ""))
            if name not in by_name:
                raise ConfigError(f"{src}: `stages.{i}`: cannot drop {name!r}: the parent has no such stage (parent "
                                  f"stages: {known})")
            dropped.add(by_name[name])
        elif name in by_name:
            out[by_name[name]] = {**out[by_name[name]], **copy.deepcopy(st)}
        else:
            out.append(copy.deepcopy(st))
    return [st for j, st in enumerate(out) if j not in dropped]


def extends_chain(path: str | Path) -> list[Path]:
    """The files a config is merged from, itself first, then what it extends, and so on (for `distill check` to
    say where a recipe's inherited values come from)."""
    chain = [Path(path).resolve()]
    while isinstance(parent := _read_yaml(chain[-1]).get("extends"), str):
        chain.append((chain[-1].parent / parent).resolve())
        if chain[-1] in chain[:-1]:
            raise ConfigError(f"{chain[0]}: `extends` forms a cycle: " + " -> ".join(map(str, chain)))
    return chain


def _refuse_drops(stages: Any, why: str) -> None:
    """`drop: true` only means something against a parent's stages."""
    for i, st in enumerate(stages if isinstance(stages, list) else []):
        if isinstance(st, dict) and DROP in st:
            raise ConfigError(f"{why}, so `stages.{i}` ({DROP}: {st[DROP]!r}) has no parent stage to drop; "
                              f"`{DROP}` only applies to a file that extends one with stages")


def apply_override(raw: dict, assignment: str) -> None:
    """Apply `a.b.0.c=value` in place; the value is parsed as YAML (numbers, lists, null...)."""
    if "=" not in assignment:
        raise ConfigError(f"override `{assignment}`: expected KEY=VALUE, e.g. stages.0.epochs=2")
    key, text = assignment.split("=", 1)
    set_value(raw, key, yaml_load(text) if text != "" else "")


def set_value(raw: dict, key: str, value: Any) -> None:
    """Set the dotted `key` (list indices as numbers) of a raw config to `value`."""
    parts = key.strip().split(".")
    if parts == ["student", "kind"] and value != _kind(raw.get("student")):
        # A new kind starts from its own defaults and the settings both kinds read, as on `extends:`.
        raw["student"] = _carried(raw.get("student"), value)
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override `{key}`: `{where}` is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override `{key}`: `{'.'.join(parts[:i])}` is a value, not a mapping or list")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    raw = load_raw(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    return from_dict(raw, src=str(path))


def _expand_teachers(raw: dict, src: str) -> dict:
    """`teachers:` entries merged over the shared `teacher:` settings (`_name_teachers` then makes `teacher` the
    first of them)."""
    entries = raw.get("teachers")
    if not entries:
        return raw
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{src}: `teachers` = {entries!r}: expected a list of mappings (each merged over `teacher`)")
    base = raw.get("teacher") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{src}: `teacher` must be a mapping, got {base!r}")
    # `teacher` stays the shared settings while validating, so that an entry's error names `teachers.N`.
    return {**raw, "teacher": base, "teachers": [deep_merge(base, entry) for entry in entries]}


def _name_teachers(cfg: ExperimentConfig, src: str) -> list[str]:
    """Give every teacher a name (a lone teacher is `teacher`; a list's are teacher1, teacher2, ...) and check
    that names are unique and weights positive; returns the names."""
    from distill.objective import SOLE_TEACHER

    if not cfg.teachers:
        cfg.teachers = [cfg.teacher]
        cfg.teacher.name = cfg.teacher.name or SOLE_TEACHER
        return [cfg.teacher.name]
    for i, t in enumerate(cfg.teachers):
        t.name = t.name or f"teacher{i + 1}"
        if t.weight <= 0:
            raise ConfigError(f"{src}: `teachers.{i}.weight` = {t.weight}: expected a positive number")
    names = [t.name for t in cfg.teachers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{src}: `teachers.{i}.name` = {name!r} is used twice; teacher names must differ")
    cfg.teacher = cfg.teachers[0]
    return names


def teacher_weights(cfg: ExperimentConfig) -> dict[str, float]:
    """Each teacher's name and weight, in config order (what an `Objective` needs)."""
    return {t.name: t.weight for t in cfg.teachers}


def from_dict(raw: dict, src: str = "<config>") -> ExperimentConfig:
    cfg = _build(ExperimentConfig, _expand_teachers(raw, src), "", src)
    _check(cfg, src)
    return cfg


def _check(cfg: ExperimentConfig, src: str) -> None:
    """Cross-field checks that types cannot express."""
    from distill.losses import check_loss_spec

    if not cfg.stages:
        raise ConfigError(f"{src}: `stages` is empty; give at least one distillation stage")
    names = _name_teachers(cfg, src)
    for i, stage in enumerate(cfg.stages):
        first = next(j for j, other in enumerate(cfg.stages) if other.name == stage.name)
        if first != i:  # evaluations, the kept checkpoint and TensorBoard tags are filed under the stage's name
            raise ConfigError(f"{src}: `stages.{i}.name` = {stage.name!r}: already the name of `stages.{first}`; "
                              "stage names must be unique")
        if not stage.losses:
            raise ConfigError(f"{src}: `stages.{i}.losses` is empty")
        for name, spec in stage.losses.items():
            teacher = check_loss_spec(name, spec, f"{src}: `stages.{i}.losses.{name}`")[2]
            if teacher is not None and teacher not in names:
                raise ConfigError(f"{src}: `stages.{i}.losses.{name}.teacher` = {teacher!r}: expected one of the "
                                  f"teachers {names}")
        for key in ("epochs", "batch_size", "grad_accum"):
            if getattr(stage, key) < 1:
                raise ConfigError(f"{src}: `stages.{i}.{key}` = {getattr(stage, key)}: must be >= 1")
        if stage.eval_every is not None and stage.eval_every < 1:
            raise ConfigError(f"{src}: `stages.{i}.eval_every` = {stage.eval_every}: expected optimiser steps >= 1, "
                              "or null (evaluate at each epoch's end)")
        if stage.optimizer == "adadelta" and stage.weight_decay:
            raise ConfigError(f"{src}: `stages.{i}.weight_decay` = {stage.weight_decay} with optimizer adadelta: "
                              "Adadelta applies decay as a coupled L2 gradient that its normalisation turns into "
                              "full-size steps (it erases rarely seen word vectors); use 0, or optimizer adamw")
        if not 0.0 < stage.rho < 1.0:
            raise ConfigError(f"{src}: `stages.{i}.rho` = {stage.rho}: expected a number in (0, 1)")
    if cfg.teacher.checkpoint == "random" and (cfg.teacher.random is None or cfg.teacher.tokenizer is None):
        raise ConfigError(f"{src}: `teacher.checkpoint: random` needs `teacher.random` and `teacher.tokenizer`")
    if cfg.task.source in ("glue", "csv", "hf", "conll", "squad") and not cfg.task.path:
        raise ConfigError(f"{src}: `task.path` is required for `task.source: {cfg.task.source}`")
    _check_task_type(cfg.task, src)
    a = cfg.augment
    for key, value in (("augment.tinybert.p_replace", a.tinybert.p_replace), ("augment.tang.p_mask", a.tang.p_mask),
                       ("augment.tang.p_pos", a.tang.p_pos), ("augment.tang.p_ng", a.tang.p_ng)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{src}: `{key}` = {value}: expected a probability in [0, 1]")
    if a.tang.p_mask + a.tang.p_pos > 1.0:
        raise ConfigError(f"{src}: `augment.tang.p_mask` + `augment.tang.p_pos` exceeds 1")
    for key in ("copies", "chunk_size"):
        if getattr(a, key) < 1:
            raise ConfigError(f"{src}: `augment.{key}` must be >= 1")
    if a.tinybert.candidates < 1 or a.tang.max_ngram < 1:
        raise ConfigError(f"{src}: `augment.tinybert.candidates` and `augment.tang.max_ngram` must be >= 1")
    if cfg.train.dropout is not None and not 0.0 <= cfg.train.dropout < 1.0:
        raise ConfigError(f"{src}: `train.dropout` = {cfg.train.dropout}: expected a probability in [0, 1)")
    if cfg.sweep.reference is not None and cfg.variants and cfg.sweep.reference not in cfg.variants:
        raise ConfigError(f"{src}: `sweep.reference` = {cfg.sweep.reference!r}: expected one of the variants "
                          f"{list(cfg.variants)}")
    for variant, spec in cfg.sweep.expected.items():
        where = f"{src}: `sweep.expected.{variant}"
        if cfg.variants and variant not in cfg.variants:
            raise ConfigError(f"{where}`: not a variant; expected one of {list(cfg.variants)}")
        if not isinstance(spec, dict) or set(spec) - {"delta", "source"} or "delta" not in spec:
            raise ConfigError(f"{where}` = {spec!r}: expected {{delta: <number>, source: <text>}}")
        if isinstance(spec["delta"], bool) or not isinstance(spec["delta"], (int, float)):
            raise ConfigError(f"{where}.delta` = {spec['delta']!r}: expected a number (variant minus reference, in "
                              "the main metric's units)")
    for key, values in cfg.sweep.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{src}: `sweep.grid.{key}`: expected a non-empty list of values")
    if cfg.task.text_columns and not 1 <= len(cfg.task.text_columns) <= 2:
        raise ConfigError(f"{src}: `task.text_columns` must name one or two columns")
    for role in cfg.task.splits:
        if role not in TASK_SPLITS:
            raise ConfigError(f"{src}: unknown key `task.splits.{role}`; valid keys in `task.splits`: "
                              + ", ".join(TASK_SPLITS))
    if cfg.task.source == "hf" and (not cfg.task.header or cfg.task.delimiter):
        raise ConfigError(f"{src}: `task.header` and `task.delimiter` are read only with `task.source: csv`; "
                          "`datasets` reads a CSV's header itself (give column names)")
    for key in ("subset", "data_files", "splits"):
        if getattr(cfg.task, key) and cfg.task.source != "hf":
            raise ConfigError(f"{src}: `task.{key}` is read only with `task.source: hf` (source is "
                              f"{cfg.task.source!r})")


# The task types each source can give: a source that reads one kind of file refuses the others.
SOURCE_TYPES = {"glue": ("auto", "classification", "regression"), "csv": ("auto", "classification", "regression"),
                "conll": ("auto", "token_classification"), "squad": ("auto", "extractive_qa")}


def _check_task_type(task: TaskConfig, src: str) -> None:
    allowed = SOURCE_TYPES.get(task.source)
    if allowed is not None and task.type not in allowed:
        raise ConfigError(f"{src}: `task.type` = {task.type!r} with `task.source: {task.source}`: expected one of "
                          f"{', '.join(allowed)}")
    if task.source == "packaged" and task.name == "brown-pos" and task.type not in ("auto", "token_classification"):
        raise ConfigError(f"{src}: `task.type` = {task.type!r}: the packaged `brown-pos` task is token classification")
    for key in ("doc_stride", "max_query_length", "n_best", "max_answer_length"):
        if getattr(task, key) < 1:
            raise ConfigError(f"{src}: `task.{key}` = {getattr(task, key)}: expected a positive number of tokens")
    if (task.type == "extractive_qa" or task.source == "squad") and task.doc_stride >= task.max_length:
        raise ConfigError(f"{src}: `task.doc_stride` = {task.doc_stride} with `task.max_length` = {task.max_length}: "
                          "the overlap between windows must be shorter than a window")


def check_shard(num_shards: int | None, index: int | None) -> None:
    """Work split over `num_shards` processes (augmentation parts, sweep runs): `index` must name one of them;
    both absent means no split."""
    if (num_shards is None) != (index is None):
        raise ConfigError("--num-shards and --shard-index go together")
    if num_shards is None:
        return
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ConfigError(f"--shard-index {index} of --num-shards {num_shards}: expected 0 <= index < num_shards")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: ExperimentConfig) -> str:
    data = to_dict(cfg)
    if len(cfg.teachers) <= 1:
        data.pop("teachers")  # a lone teacher is `teacher`; a copy in `teachers` would override later --set
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
