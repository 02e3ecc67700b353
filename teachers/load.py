"""Load a BERT teacher (a local folder, a hub name, the packaged MiniLM, or a random BERT of a given shape)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM

from distill.config import RandomBertConfig
from distill.errors import DistillError
from distill.resources import adapted_encoder, adapted_folder, packaged_path
from distill.task_types import QA, SEQUENCE, TASK_TYPES, head_class


class CheckpointError(DistillError):
    pass


def resolve(source: str) -> str:
    """A checkpoint name as transformers should see it: a folder path or a hub name. Never builds anything:
    `adapted:<encoder>` resolves only once `teachers.mlm_adapt.ensure_adapted` has made it."""
    encoder = adapted_encoder(source)
    if encoder is not None:
        folder = adapted_folder(encoder)
        if not (folder / "adaptation.json").exists():
            raise CheckpointError(f"{source!r} has not been built yet (it would be at {folder}); the workflows that "
                                  f"accept it build it first, or run `distill adapt-mlm --encoder {encoder}`")
        return str(folder)
    if source.startswith("packaged:"):
        return str(packaged_path(source.split(":", 1)[1]))
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise CheckpointError(f"checkpoint folder {path} has no config.json; expected a Hugging Face model folder")
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise CheckpointError(f"checkpoint folder not found: {source}")
    return source


def _same_shape(source: str) -> str:
    """An adapted encoder has its encoder's tokenizer and shape, so those are read before it is built."""
    return adapted_encoder(source) or source


def _hub_error(source: str, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"could not load {source!r}: it is not a local folder, and loading it as a hub name failed "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Offline, use a local folder "
        "or `packaged:all-minilm-l6-v2`."
    )


def load_tokenizer(source: str):
    where = resolve(_same_shape(source))
    try:
        tok = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    if not tok.is_fast:
        raise CheckpointError(f"tokenizer of {source!r} is not a fast tokenizer; distillery needs one")
    return tok


def load_bert_config(source: str) -> BertConfig:
    try:
        config = AutoConfig.from_pretrained(resolve(_same_shape(source)))
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    if config.model_type != "bert":
        raise CheckpointError(f"{source!r} is a {config.model_type!r} model; teachers must be BERT models")
    return config


def _label_config(config: BertConfig, labels: list[str] | None, task_type: str = SEQUENCE) -> BertConfig:
    config = copy.deepcopy(config)  # transformers mutates configs in place: one object per model
    if task_type == QA:  # a start and an end score per token; no label names
        config.num_labels = 2
        return config
    config.num_labels = 1 if labels is None else len(labels)
    names = labels or ["score"]
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = "regression" if labels is None else "single_label_classification"
    return config


def load_classifier(source: str, labels: list[str] | None, require_head: bool = False,
                    label_order: list[str] | None = None, task_type: str = SEQUENCE):
    """A BERT with the head of `task_type` (BertForSequenceClassification, ...ForTokenClassification (labels: the
    tags), ...ForQuestionAnswering) from a checkpoint; `require_head`: the checkpoint must already carry a trained
    head for this label set (a fine-tuned teacher used as it is).

    A classifier the checkpoint carries is read by label NAME: its rows are reordered into the task's label
    order (an MNLI checkpoint saved in Hugging Face's order entailment, neutral, contradiction serves a task in
    GLUE's order). `label_order` names the task's labels in the checkpoint's row order, for checkpoints whose
    names are generic (LABEL_0...) or differ from the task's."""
    own = load_bert_config(source)
    config = _label_config(own, labels, task_type)
    try:
        model, info = head_class("Bert", task_type).from_pretrained(
            resolve(source), config=config, attn_implementation="sdpa", output_loading_info=True)
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    except RuntimeError as e:  # size mismatch: a classifier for another label count
        raise CheckpointError(f"{source!r}: its classifier does not fit {config.num_labels} labels ({e})") from e
    missing = [k for k in info["missing_keys"] if k.startswith(("classifier", "qa_outputs"))]
    if require_head and missing:
        raise CheckpointError(f"{source!r} has no {TASK_TYPES[task_type].head} head ({missing}); it is not "
                              "fine-tuned on the task: set `teacher.finetune` to fine-tune it first")
    if labels is not None and not missing and task_type != QA:
        rows = label_rows(source, [own.id2label[i] for i in range(len(own.id2label))], labels, label_order,
                          strict=require_head)
        if rows != list(range(len(labels))):
            with torch.no_grad():
                model.classifier.weight.copy_(model.classifier.weight[rows].clone())
                model.classifier.bias.copy_(model.classifier.bias[rows].clone())
    return model


def label_rows(source: str, names: list[str], labels: list[str], label_order: list[str] | None,
               strict: bool) -> list[int]:
    """rows[k]: the classifier row that scores the task's label k. `strict`: refuse what cannot be matched by
    name (a head used as it is); otherwise keep the rows as they are (a head about to be fine-tuned)."""
    if label_order is not None:
        if sorted(label_order) != sorted(labels):
            raise CheckpointError(f"teacher.label_order = {label_order}: expected the task's labels {labels} "
                                  f"in the order of {source!r}'s classifier rows")
        return [label_order.index(label) for label in labels]
    if len(names) != len(labels):
        return list(range(len(labels)))
    given = [n.lower() for n in names]
    if sorted(given) == sorted(label.lower() for label in labels):
        return [given.index(label.lower()) for label in labels]
    if not strict:
        return list(range(len(labels)))
    generic = all(re.fullmatch(r"label_\d+", n) for n in given)
    why = ("names its classes only generically" if generic else "names its classes differently from the task")
    raise CheckpointError(f"{source!r} {why} ({names}; the task's labels: {labels}), so its classifier rows cannot "
                          "be matched to the task's labels by name; set `teacher.label_order` to the task's labels "
                          "in the order of the checkpoint's rows")


def random_bert_config(shape: RandomBertConfig, vocab_size: int, pad_token_id: int,
                       max_positions: int = 512) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, intermediate_size=shape.ffn,
                      max_position_embeddings=max_positions, pad_token_id=pad_token_id)


def random_bert(shape: RandomBertConfig, tokenizer, labels: list[str] | None, seed: int,
                max_positions: int = 512, task_type: str = SEQUENCE) -> nn.Module:
    config = _label_config(random_bert_config(shape, len(tokenizer), tokenizer.pad_token_id or 0, max_positions),
                           labels, task_type)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return head_class("Bert", task_type)(config)


def load_bert_mlm(source: str, need_head: bool) -> BertForMaskedLM:
    """A pre-trained BERT with its masked-LM head (general distillation's teacher, augmentation's masked LM);
    `need_head`: refuse a checkpoint without one (its logits would come from a random head)."""
    try:
        model, info = BertForMaskedLM.from_pretrained(resolve(source), config=load_bert_config(source),
                                                      attn_implementation="sdpa", output_loading_info=True)
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    if need_head and any(k.startswith("cls.") for k in info["missing_keys"]):
        raise CheckpointError(f"{source!r} has no masked-LM head, and it is used for its MLM predictions; use a "
                              "BertForMaskedLM checkpoint, or `adapted:<encoder>` to give it one")
    return model
