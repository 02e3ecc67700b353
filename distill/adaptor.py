"""The one adaptor: any supported model's forward pass -> a plain `Record` that losses read.

BERT attention scores: transformers' default `sdpa` attention returns no attention maps, and the
`eager` one returns post-softmax probabilities, while TinyBERT distils the pre-softmax scores. We
register an attention function that computes exactly eager attention but hands back
`query @ key^T * scaling` (before the mask and the softmax) as its attention output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

from distill.needs import Needs

SCORES_ATTENTION = "distill_scores"
# The same attention, also handing out each layer's queries, keys and values (MiniLM's losses read them).
PARTS_ATTENTION = "distill_parts"


@dataclass
class AttentionParts:
    """One layer's pre-softmax scores and the per-head projections they came from, each (batch, heads, seq, d)
    (scores: (batch, heads, query, key)). Not a tuple: transformers' output recorder keeps it whole."""

    scores: torch.Tensor
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor


def _scores_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    weights = scores if attention_mask is None else scores + attention_mask
    probs = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, scores


def _parts_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    out, scores = _scores_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    return out, AttentionParts(scores, query, key, value)


for _name, _fn in ((SCORES_ATTENTION, _scores_attention), (PARTS_ATTENTION, _parts_attention)):
    AttentionInterface.register(_name, _fn)
    AttentionMaskInterface.register(_name, eager_mask)


@dataclass
class Record:
    """What a model says about a batch. hidden_states[0] is the embedding output;
    attention_scores[l] are layer l+1's pre-softmax scores, shape (batch, heads, query, key); qkv[l] are its
    (query, key, value) per head, each (batch, heads, seq, head_dim), present only when a loss asks for them."""

    logits: torch.Tensor | None
    attention_mask: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention_scores: tuple[torch.Tensor, ...] | None = None
    qkv: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...] | None = None
    # A masked LM's (or a token classifier's) logits are per token: `token_rows` (batch, seq) marks the positions
    # whose rows they are, in row-major order. None for a classifier (one row per example) and a QA head (two rows
    # per example, see `span_rows`).
    token_rows: torch.Tensor | None = None
    # Several teachers' (weight, logits), weights summing to 1; `logits` is then their weighted mean. Prediction
    # losses average the teachers' softened distributions from these.
    ensemble: tuple[tuple[float, torch.Tensor], ...] | None = None

    def detached(self) -> Record:
        """A copy usable as a loss target outside inference mode, in float32 (a half-precision teacher's
        outputs are compared with the student's in full precision)."""

        def f(t):
            return t.to(torch.float32, copy=True)

        def c(x):
            return None if x is None else tuple(f(t) for t in x)

        return replace(self, logits=None if self.logits is None else f(self.logits),
                       attention_mask=self.attention_mask.clone(),
                       token_rows=None if self.token_rows is None else self.token_rows.clone(),
                       hidden_states=c(self.hidden_states), attention_scores=c(self.attention_scores),
                       qkv=None if self.qkv is None else tuple(c(layer) for layer in self.qkv))


def set_attention(model: nn.Module, needs: Needs) -> None:
    """Scores (and queries, keys, values) need our eager-equivalent attention; otherwise the fused kernel is
    faster."""
    if not hasattr(model, "set_attn_implementation"):
        return  # not a transformers model (e.g. the BiLSTM)
    wanted = PARTS_ATTENTION if needs.qkv else SCORES_ATTENTION if needs.attention else "sdpa"
    if getattr(model.config, "_attn_implementation", None) != wanted:
        model.set_attn_implementation(wanted)


def mlm_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits of a BERT or DistilBERT masked LM for the given hidden vectors."""
    if hasattr(model, "cls"):
        return model.cls(hidden)
    x = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
    return model.vocab_projector(x)


def _language_model_record(model: nn.Module, batch: dict, needs: Needs) -> Record:
    """A masked LM or bare encoder on corpus text. Logits at every non-padding token (`needs.all_tokens`: DistilBERT's
    soft-target loss) or only at the masked positions (batch["mlm_labels"] != -100; the vocabulary projection is
    most of an MLM step's cost), in row-major order, so teacher and student rows line up; none without masking
    or a head."""
    base = getattr(model, "bert", None) or getattr(model, "distilbert", None) or model
    types = {"token_type_ids": batch.get("token_type_ids")} if getattr(base.config, "type_vocab_size", 0) else {}
    out = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **types,
               output_hidden_states=True, output_attentions=needs.attention_maps, return_dict=True)
    logits = rows = None
    labels = batch.get("mlm_labels")
    if labels is not None and base is not model:
        rows = batch["attention_mask"].bool() if needs.all_tokens else labels != -100
        logits = mlm_head(model, out.last_hidden_state[rows])
    return Record(logits=logits, attention_mask=batch["attention_mask"], hidden_states=tuple(out.hidden_states),
                  token_rows=rows, **_attention_fields(out.attentions, needs))


def _attention_fields(attentions, needs: Needs) -> dict:
    """A record's `attention_scores` and `qkv` from what the registered attention function returned per layer."""
    if not needs.attention_maps:
        return {}
    if not attentions or attentions[0] is None or (needs.qkv and not isinstance(attentions[0], AttentionParts)):
        raise RuntimeError("the model returned no attention scores (or queries, keys and values); was "
                           "set_attention(model, needs) called?")
    parts = isinstance(attentions[0], AttentionParts)
    scores = tuple(a.scores if parts else a for a in attentions) if needs.attention else None
    qkv = tuple((a.query, a.key, a.value) for a in attentions) if needs.qkv else None
    return {"attention_scores": scores, "qkv": qkv}


def forward_record(model: nn.Module, batch: dict, needs: Needs) -> Record:
    """Run a Hugging Face sequence classifier (or, on corpus text, a masked LM or encoder) and adapt
    its outputs, computing what `needs` asks for beyond the logits (a masked LM or encoder hands out its hidden
    states whatever is asked: its logits are computed from them).

    The model's attention implementation must already be chosen with `set_attention`."""
    if not (hasattr(model, "classifier") or hasattr(model, "qa_outputs")):
        return _language_model_record(model, batch, needs)
    # DistilBERT has no token types.
    types = {"token_type_ids": batch.get("token_type_ids")} if getattr(model.config, "type_vocab_size", 0) else {}
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        **types,
        output_hidden_states=needs.hidden,
        output_attentions=needs.attention_maps,
        return_dict=True,
    )
    if hasattr(model, "qa_outputs"):
        logits, rows = span_rows(out.start_logits, out.end_logits, batch["attention_mask"]), None
    else:
        logits, rows = head_rows(out.logits, batch)
    return Record(logits=logits, attention_mask=batch["attention_mask"], token_rows=rows,
                  hidden_states=tuple(out.hidden_states) if needs.hidden else None,
                  **_attention_fields(out.attentions, needs))


# Where a span's distribution over positions excludes padding: far below any score, finite so that a padded
# position's 0 * (log 0 - log 0) stays 0 in a KL, and within half precision's range.
MASKED_POSITION = -1e4


def head_rows(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A classifier's rows: one per example, or for a token classifier (logits per token) one per word, at each
    word's first piece (`batch["labels"]` is -100 elsewhere), in row-major order so that teacher and student rows
    line up; and the positions they were taken from (None for one row per example)."""
    if logits.dim() == 2:
        return logits, None
    rows = batch["labels"] != -100
    return logits[rows], rows


def span_rows(start: torch.Tensor, end: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A QA head's scores as two rows per example, its start and end scores over the positions (2 * batch, seq),
    padding masked: prediction losses then compare distributions over positions, as run_squad_w_distillation."""
    both = torch.stack((start, end), dim=1)  # (batch, 2, seq): rows b*2 (start) and b*2 + 1 (end)
    both = both.masked_fill(~attention_mask.bool()[:, None, :], MASKED_POSITION)
    return both.reshape(-1, both.shape[-1])
