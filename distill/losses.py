"""Distillation losses, registered by name.

A loss reads the student's and the teacher's `Record`s (never the models), the batch (labels) and a
`LossContext` (layer map, task type), and returns a scalar. A stage's total loss is the
weighted sum of the losses its config names; each term is logged on its own.

Conventions, stated once:
- intermediate losses (`attention_mse`, `hidden_mse`, `embedding_mse`) are means over VALID entries
  only (padded queries and keys / padded tokens excluded), summed over the mapped layer pairs as in
  TinyBERT; the reference code instead averages over padding and so depends on max_seq_length.
- `soft_cross_entropy` convention `ce`: -sum_c p_T log p_S per example, mean over the batch
  (TextBrewer); `tinybert`: the same divided by the number of classes (TinyBERT's code averages over
  batch and classes); `kl_t2`: `kl_div`, i.e. KL(p_T || p_S) batch mean times t^2 (DistilBERT,
  torchdistill). No convention multiplies the cross-entropy by t^2 except `kl_t2`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distill.adaptor import Record
from distill.errors import DistillError


class LossError(DistillError):
    pass


@dataclass(frozen=True)
class LossInfo:
    fn: Callable[..., torch.Tensor]
    # Which outputs the loss reads from both models: subset of {"hidden", "attention"} (logits always come).
    needs: frozenset[str]
    uses_teacher: bool
    # Whether it trains the classifier output (then a stage selects its best epoch by dev metric).
    trains_logits: bool
    params: dict[str, object]


LOSSES: dict[str, LossInfo] = {}


def register_loss(name: str, needs: tuple[str, ...] = (), uses_teacher: bool = True, trains_logits: bool = False):
    def deco(fn):
        sig = inspect.signature(fn)
        params = {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
        LOSSES[name] = LossInfo(fn, frozenset(needs), uses_teacher, trains_logits, params)
        return fn

    return deco


@dataclass
class LossContext:
    """What a loss needs beyond the two records: the stage's layer pairs and the task type. Width projections
    (W_h, W_e) are applied to the student's record before any loss sees it (`DistillModule.forward`)."""

    pairs: list[tuple[int, int]]
    regression: bool = False


def _same_width(kind: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.shape[-1] != t.shape[-1]:
        raise LossError(f"{kind} widths differ (student {s.shape[-1]}, teacher {t.shape[-1]}) and no projection "
                        "is configured; set train.projection to `separate` or `shared`")


def check_loss_spec(name: str, spec, where: str) -> tuple[float, dict]:
    """Validate one `losses:` entry and return (weight, params)."""
    if name not in LOSSES:
        raise LossError(f"{where}: unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec), {}
    if not isinstance(spec, dict):
        raise LossError(f"{where}: expected a weight or a mapping with `weight` and parameters, got {spec!r}")
    params = dict(spec)
    weight = params.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise LossError(f"{where}.weight = {weight!r}: expected a number")
    valid = LOSSES[name].params
    for key in params:
        if key not in valid:
            allowed = ", ".join(["weight", *sorted(valid)])
            raise LossError(f"{where}: unknown parameter {key!r}; valid: {allowed}")
    return float(weight), params


def _masked_mean_sq(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of diff^2 over the entries where mask is 1 (mask broadcasts against diff)."""
    mask = mask.to(diff.dtype)
    count = mask.expand_as(diff).sum()
    return (diff.pow(2) * mask).sum() / count.clamp_min(1.0)


@register_loss("attention_mse", needs=("attention",))
def attention_mse(s: Record, t: Record, batch: dict, ctx: LossContext, *, heads: str = "auto") -> torch.Tensor:
    """MSE between pre-softmax attention scores of mapped layers, over valid (query, key) pairs.

    heads: `auto` compares head by head when the counts match and the head-averaged maps when they
    differ (e.g. BERT-large's 16 heads against 12); `mean` always compares head averages; `match`
    requires equal counts."""
    m = s.attention_mask.float()
    valid = m[:, None, :, None] * m[:, None, None, :]
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for i, j in ctx.pairs:
        a_s, a_t = s.attention_scores[i - 1].float(), t.attention_scores[j - 1].float()
        if heads not in ("auto", "mean", "match"):
            raise LossError(f"attention_mse: heads={heads!r}; expected auto, mean or match")
        if a_s.shape[1] != a_t.shape[1] or heads == "mean":
            if heads == "match":
                raise LossError(f"attention_mse: student layer {i} has {a_s.shape[1]} heads, teacher layer {j} "
                                f"has {a_t.shape[1]}; use heads: auto or mean")
            a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
        total = total + _masked_mean_sq(a_s - a_t, valid)
    return total


@register_loss("hidden_mse", needs=("hidden",))
def hidden_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE(H_S W_h, H_T) for each mapped transformer layer, over non-padded tokens."""
    mask = s.attention_mask[..., None]
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for i, j in ctx.pairs:
        h_s, h_t = s.hidden_states[i].float(), t.hidden_states[j].float()
        _same_width("hidden", h_s, h_t)
        total = total + _masked_mean_sq(h_s - h_t, mask)
    return total


@register_loss("embedding_mse", needs=("hidden",))
def embedding_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE(E_S W_e, E_T) between embedding-layer outputs, over non-padded tokens."""
    e_s, e_t = s.hidden_states[0].float(), t.hidden_states[0].float()
    _same_width("embedding", e_s, e_t)
    return _masked_mean_sq(e_s - e_t, s.attention_mask[..., None])


def _no_regression(ctx: LossContext, name: str) -> None:
    if ctx.regression:
        raise LossError(f"{name} needs class probabilities; for a regression task use logits_mse")


def _token_rows(s: Record, t: Record, batch: dict, positions: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' logits, restricted to the masked positions when `positions` is `masked` and the logits are a
    masked LM's per-token rows (classifier logits, one row per example, are returned as they are)."""
    if positions not in ("all", "masked"):
        raise LossError(f"positions={positions!r}; expected all (every non-padding token, DistilBERT's reference) "
                        "or masked (its --restrict_ce_to_mask)")
    if s.token_rows is None or positions == "all":
        return s.logits, t.logits
    masked = batch["mlm_labels"][s.token_rows] != -100
    return s.logits[masked], t.logits[masked]


@register_loss("kl_div", trains_logits=True)
def kl_div(s: Record, t: Record, batch: dict, ctx: LossContext, *, temperature: float = 1.0,
           t2: bool = True, positions: str = "all") -> torch.Tensor:
    """KL(softmax(z_T/t) || softmax(z_S/t)), batch mean, times t^2 when t2 (keeps gradient scale). On a masked
    LM: one row per non-padding token (`positions: all`, DistilBERT's reference) or per masked token."""
    _no_regression(ctx, "kl_div")
    z_s, z_t = _token_rows(s, t, batch, positions)
    log_p_t = F.log_softmax(z_t.float() / temperature, dim=-1)
    log_p_s = F.log_softmax(z_s.float() / temperature, dim=-1)
    loss = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return loss * temperature**2 if t2 else loss


@register_loss("soft_cross_entropy", trains_logits=True)
def soft_cross_entropy(s: Record, t: Record, batch: dict, ctx: LossContext, *, temperature: float = 1.0,
                       convention: str = "ce", positions: str = "all") -> torch.Tensor:
    """-softmax(z_T/t) . log_softmax(z_S/t); see the module docstring for the conventions (and kl_div for
    `positions`)."""
    _no_regression(ctx, "soft_cross_entropy")
    if convention == "kl_t2":
        return kl_div(s, t, batch, ctx, temperature=temperature, t2=True, positions=positions)
    z_s, z_t = _token_rows(s, t, batch, positions)
    p_t = F.softmax(z_t.float() / temperature, dim=-1)
    per_class = -p_t * F.log_softmax(z_s.float() / temperature, dim=-1)
    if convention == "ce":
        return per_class.sum(-1).mean()
    if convention == "tinybert":
        return per_class.mean()
    raise LossError(f"soft_cross_entropy: convention={convention!r}; expected ce, tinybert or kl_t2")


@register_loss("logits_mse", trains_logits=True)
def logits_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE between raw logits, mean over batch and classes (Tang et al.; TinyBERT on regression)."""
    return F.mse_loss(s.logits.float(), t.logits.float())


@register_loss("hard_ce", uses_teacher=False, trains_logits=True)
def hard_ce(s: Record, t: Record | None, batch: dict, ctx: LossContext) -> torch.Tensor:
    """Cross-entropy against the gold labels."""
    if ctx.regression:
        raise LossError("hard_ce needs class labels; for a regression task use hard_mse")
    return F.cross_entropy(s.logits.float(), batch["labels"])


@register_loss("hard_mse", uses_teacher=False, trains_logits=True)
def hard_mse(s: Record, t: Record | None, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE against gold scores (regression tasks)."""
    if not ctx.regression:
        raise LossError("hard_mse is for regression tasks; for classification use hard_ce")
    return F.mse_loss(s.logits.float().squeeze(-1), batch["labels"].float())


@register_loss("mlm", uses_teacher=False, trains_logits=False)
def mlm(s: Record, t: Record | None, batch: dict, ctx: LossContext) -> torch.Tensor:
    """Masked-LM cross-entropy of the student at the masked positions (needs `mlm_masking: true`); rows of other
    tokens, present when a soft-target term needs every token, are ignored."""
    labels = batch.get("mlm_labels")
    if labels is None or s.logits is None or s.token_rows is None:
        raise LossError("mlm needs a stage with `mlm_masking: true` and a student with an MLM head")
    return F.cross_entropy(s.logits.float(), labels[s.token_rows], ignore_index=-100)


@register_loss("cosine_hidden", needs=("hidden",))
def cosine_hidden(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """DistilBERT's cosine loss: mean over non-padded tokens of 1 - cos(h_S, h_T), last hidden states."""
    h_s, h_t = s.hidden_states[-1].float(), t.hidden_states[-1].float()
    _same_width("hidden", h_s, h_t)
    valid = s.attention_mask.bool()
    return (1 - F.cosine_similarity(h_s[valid], h_t[valid], dim=-1)).mean()
