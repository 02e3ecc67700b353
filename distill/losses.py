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
import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from distill.adaptor import Record
from distill.errors import DistillError
from distill.needs import Needs
from distill.schedule import Schedule, parse_schedule, subkey


class LossError(DistillError):
    pass


@dataclass(frozen=True)
class LossInfo:
    """A registered loss: its function (whose docstring describes it) and what it declares."""

    fn: Callable[..., torch.Tensor]
    # What the loss reads from both models beyond logits, whatever its parameters.
    needs: Needs
    uses_teacher: bool
    # Whether it trains the classifier output (then a stage selects its best epoch by dev metric).
    trains_logits: bool
    params: dict[str, object]
    # Needs that depend on a parameter's value: {parameter: {value: needs}}, added to `needs` when the parameter
    # (given or by default) has that value.
    needs_when: dict[str, dict[object, Needs]] = field(default_factory=dict)

    def needs_for(self, params: dict) -> Needs:
        """What the loss reads with these parameters (those not given take their defaults)."""
        out = self.needs
        for param, by_value in self.needs_when.items():
            value = params.get(param, self.params[param])
            # An unhashable value (a list where a word is meant) matches nothing; the parameter's own check
            # refuses it with the loss and the value named.
            if isinstance(value, Hashable) and value in by_value:
                out = out | by_value[value]
        return out


LOSSES: dict[str, LossInfo] = {}


def register_loss(name: str, needs: Needs | Iterable[str] = (), uses_teacher: bool = True,
                  trains_logits: bool = False, needs_when: dict[str, dict[object, Needs]] | None = None):
    """Register a loss under `name`. `needs`: what it reads beyond logits (a `Needs`, or its field names);
    `needs_when`: needs that follow from a parameter's value, e.g. `{"positions": {"all": Needs(all_tokens=True)}}`.
    Both are checked here, so a misdeclared loss fails at import, naming the loss and the bad entry."""

    def deco(fn):
        sig = inspect.signature(fn)
        params = {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
        where = f"register_loss({name!r})"
        declared = needs if isinstance(needs, Needs) else Needs.of(needs, f"{where} needs")
        when = {}
        for param, by_value in (needs_when or {}).items():
            if param not in params:
                raise LossError(f"{where} needs_when: {param!r} is not a keyword parameter of {fn.__name__}; "
                                f"its parameters: {', '.join(params) or 'none'}")
            if not isinstance(by_value, dict):
                raise LossError(f"{where} needs_when.{param} = {by_value!r}: expected a mapping of values to Needs")
            when[param] = {value: n if isinstance(n, Needs) else Needs.of(n, f"{where} needs_when.{param}.{value}")
                           for value, n in by_value.items()}
        LOSSES[name] = LossInfo(fn, declared, uses_teacher, trains_logits, params, when)
        return fn

    return deco


@dataclass
class LossContext:
    """What a loss needs beyond the two records: the stage's layer pairs and the task type. Width projections
    (W_h, W_e) are applied to the student's record before any loss sees it (`DistillModule.forward`)."""

    pairs: list[tuple[int, int]]
    regression: bool = False
    # Layer pairs per teacher when several teachers differ in depth (a loss naming a teacher gets its pairs).
    teacher_pairs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # How far through its stage training is (0..1): where scheduled weights and temperatures are read.
    fraction: float = 1.0


def _same_width(kind: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.shape[-1] != t.shape[-1]:
        raise LossError(f"{kind} widths differ (student {s.shape[-1]}, teacher {t.shape[-1]}) and no projection "
                        "is configured; set train.projection to `separate` or `shared`")


def check_loss_spec(name: str, spec, where: str) -> tuple[float | Schedule, dict, str | None]:
    """Validate one `losses:` entry and return (weight, params, teacher). The weight and any parameter whose
    default is a float (a temperature) may be a schedule over the stage; `teacher` names which of several
    teachers the loss reads (None: an intermediate loss reads the first, a prediction loss their weighted
    average)."""
    if name not in LOSSES:
        raise LossError(f"{where}: unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec), {}, None
    if not isinstance(spec, dict):
        raise LossError(f"{where}: expected a weight or a mapping with `weight` and parameters, got {spec!r}")
    params = dict(spec)
    weight = parse_schedule(params.pop("weight", 1.0), subkey(where, "weight"))
    teacher = params.pop("teacher", None)
    info = LOSSES[name]
    if teacher is not None and (not isinstance(teacher, str) or not info.uses_teacher):
        raise LossError(f"{subkey(where, 'teacher')} = {teacher!r}: expected the name of one of the run's teachers"
                        + ("" if info.uses_teacher else f" (and {name} reads no teacher)"))
    valid = info.params
    for key in params:
        if key not in valid:
            allowed = ", ".join(["weight", *(["teacher"] if info.uses_teacher else []), *sorted(valid)])
            raise LossError(f"{where}: unknown parameter {key!r}; valid: {allowed}")
        if isinstance(valid[key], float):
            params[key] = parse_schedule(params[key], subkey(where, key))
        elif isinstance(params[key], dict):
            raise LossError(f"{subkey(where, key)} = {params[key]!r}: only the weight and numeric parameters (a "
                            "temperature) take a schedule")
    return weight, params, teacher


def _masked_mean_sq(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of diff^2 over the entries where mask is 1 (mask broadcasts against diff)."""
    mask = mask.to(diff.dtype)
    count = mask.expand_as(diff).sum()
    return (diff.pow(2) * mask).sum() / count.clamp_min(1.0)


@register_loss("attention_mse", needs=Needs(attention=True))
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


@register_loss("hidden_mse", needs=Needs(hidden=True))
def hidden_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE(H_S W_h, H_T) for each mapped transformer layer, over non-padded tokens."""
    mask = s.attention_mask[..., None]
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for i, j in ctx.pairs:
        h_s, h_t = s.hidden_states[i].float(), t.hidden_states[j].float()
        _same_width("hidden", h_s, h_t)
        total = total + _masked_mean_sq(h_s - h_t, mask)
    return total


@register_loss("embedding_mse", needs=Needs(hidden=True))
def embedding_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE(E_S W_e, E_T) between embedding-layer outputs, over non-padded tokens."""
    e_s, e_t = s.hidden_states[0].float(), t.hidden_states[0].float()
    _same_width("embedding", e_s, e_t)
    return _masked_mean_sq(e_s - e_t, s.attention_mask[..., None])


def _no_regression(ctx: LossContext, name: str) -> None:
    if ctx.regression:
        raise LossError(f"{name} needs class probabilities; for a regression task use logits_mse")


# A masked LM's soft targets at every non-padding token need the logits there, not only at the masked positions.
ALL_TOKENS_WHEN = {"positions": {"all": Needs(all_tokens=True)}}


def _token_rows(s: Record, t: Record, batch: dict, positions: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The student's logits and the row selection that gives both models' rows: the masked positions when
    `positions` is `masked` and the logits are a masked LM's per-token rows (classifier logits, one row per
    example, are used as they are; selection None)."""
    if positions not in ("all", "masked"):
        raise LossError(f"positions={positions!r}; expected all (every non-padding token, DistilBERT's reference) "
                        "or masked (its --restrict_ce_to_mask)")
    if s.token_rows is None or positions == "all":
        return s.logits, None
    masked = batch["mlm_labels"][s.token_rows] != -100
    return s.logits[masked], masked


def teacher_log_probs(t: Record, temperature: float, rows: torch.Tensor | None = None) -> torch.Tensor:
    """log p_T at `temperature`: log_softmax(z_T / t), or for several teachers (`t.ensemble`) the log of the
    weighted average of their softened distributions, sum_i w_i softmax(z_i / t)."""
    members = t.ensemble if t.ensemble is not None else ((1.0, t.logits),)
    log_ps = [F.log_softmax((z if rows is None else z[rows]).float() / temperature, dim=-1) + math.log(w)
              for w, z in members]
    return torch.logsumexp(torch.stack(log_ps), dim=0)


@register_loss("kl_div", trains_logits=True, needs_when=ALL_TOKENS_WHEN)
def kl_div(s: Record, t: Record, batch: dict, ctx: LossContext, *, temperature: float = 1.0,
           t2: bool = True, positions: str = "all") -> torch.Tensor:
    """KL(softmax(z_T/t) || softmax(z_S/t)), batch mean, times t^2 when t2 (keeps gradient scale). On a masked
    LM: one row per non-padding token (`positions: all`, DistilBERT's reference) or per masked token."""
    _no_regression(ctx, "kl_div")
    z_s, rows = _token_rows(s, t, batch, positions)
    log_p_t = teacher_log_probs(t, temperature, rows)
    log_p_s = F.log_softmax(z_s.float() / temperature, dim=-1)
    loss = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return loss * temperature**2 if t2 else loss


@register_loss("soft_cross_entropy", trains_logits=True, needs_when=ALL_TOKENS_WHEN)
def soft_cross_entropy(s: Record, t: Record, batch: dict, ctx: LossContext, *, temperature: float = 1.0,
                       convention: str = "ce", positions: str = "all") -> torch.Tensor:
    """-softmax(z_T/t) . log_softmax(z_S/t); see the module docstring for the conventions (and kl_div for
    `positions`)."""
    _no_regression(ctx, "soft_cross_entropy")
    if convention == "kl_t2":
        return kl_div(s, t, batch, ctx, temperature=temperature, t2=True, positions=positions)
    z_s, rows = _token_rows(s, t, batch, positions)
    p_t = teacher_log_probs(t, temperature, rows).exp()
    per_class = -p_t * F.log_softmax(z_s.float() / temperature, dim=-1)
    if convention == "ce":
        return per_class.sum(-1).mean()
    if convention == "tinybert":
        return per_class.mean()
    raise LossError(f"soft_cross_entropy: convention={convention!r}; expected ce, tinybert or kl_t2")


@register_loss("logits_mse", trains_logits=True)
def logits_mse(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """MSE between raw logits, mean over batch and classes (Tang et al.; TinyBERT on regression); several
    teachers: their weighted mean logits."""
    return F.mse_loss(s.logits.float(), t.logits.float())


@register_loss("hard_ce", uses_teacher=False, trains_logits=True)
def hard_ce(s: Record, t: Record | None, batch: dict, ctx: LossContext) -> torch.Tensor:
    """Cross-entropy against the gold labels."""
    if ctx.regression:
        raise LossError("hard_ce needs class labels; for a regression task use hard_mse")
    return F.cross_entropy(s.logits.float(), gold_rows(s, batch), ignore_index=-100)


def gold_rows(s: Record, batch: dict) -> torch.Tensor:
    """The gold label of each of the student's logits rows: per example; per word for a token classifier (its
    rows' positions); start then end position per example for a QA head (its rows' order). A word whose tag is
    unknown (-1, an augmented word) is ignored (-100)."""
    labels = batch["labels"]
    if labels.dim() == 1:
        return labels
    labels = labels[s.token_rows] if s.token_rows is not None else labels.reshape(-1)
    return labels.masked_fill(labels < 0, -100)


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


@register_loss("cosine_hidden", needs=Needs(hidden=True))
def cosine_hidden(s: Record, t: Record, batch: dict, ctx: LossContext) -> torch.Tensor:
    """DistilBERT's cosine loss: mean over non-padded tokens of 1 - cos(h_S, h_T), last hidden states."""
    h_s, h_t = s.hidden_states[-1].float(), t.hidden_states[-1].float()
    _same_width("hidden", h_s, h_t)
    valid = s.attention_mask.bool()
    return (1 - F.cosine_similarity(h_s[valid], h_t[valid], dim=-1)).mean()


# ---------------------------------------------------------------- MiniLM, MiniLMv2, Patient KD

def _last_or_mapped(s_layers: int, t_layers: int, layers: str, ctx: LossContext, name: str) -> list[tuple[int, int]]:
    """MiniLM distils only the last layer of each model (`last`); `mapped` uses the stage's layer map instead."""
    if layers == "last":
        return [(s_layers, t_layers)]
    if layers == "mapped":
        return ctx.pairs
    raise LossError(f"{name}: layers={layers!r}; expected last (MiniLM) or mapped (the stage's layer map)")


def _row_kl(scores_t: torch.Tensor, scores_s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid query rows (every head, every example) of KL(softmax(scores_T) || softmax(scores_S)) taken
    over the valid keys; scores are (batch, heads, query, key), mask (batch, seq) is 1 at real tokens."""
    keys = mask.bool()[:, None, None, :]
    # A large finite fill, not -inf: a padded key then has probability exactly 0 in both models and its
    # 0 * (log 0 - log 0) term stays 0 instead of NaN.
    low = torch.finfo(torch.float32).min

    def log_probs(x):
        return F.log_softmax(x.float().masked_fill(~keys, low), dim=-1)

    log_t, log_s = log_probs(scores_t), log_probs(scores_s)
    per_row = (log_t.exp() * (log_t - log_s)).masked_fill(~keys, 0.0).sum(-1)  # (batch, heads, query)
    rows = mask.to(per_row.dtype)[:, None, :].expand_as(per_row)
    return (per_row * rows).sum() / rows.sum().clamp_min(1.0)


def _heads_kl(scores_t: torch.Tensor, scores_s: torch.Tensor, mask: torch.Tensor, heads: str, what: str
              ) -> torch.Tensor:
    """`_row_kl` head by head, or between the head-averaged distributions (`mean`; `auto` when the counts
    differ, MiniLM itself requires equal counts)."""
    if heads not in ("auto", "mean", "match"):
        raise LossError(f"{what}: heads={heads!r}; expected auto, mean or match")
    if scores_s.shape[1] == scores_t.shape[1] and heads != "mean":
        return _row_kl(scores_t, scores_s, mask)
    if heads == "match":
        raise LossError(f"{what}: the student has {scores_s.shape[1]} heads, the teacher {scores_t.shape[1]}; "
                        "MiniLM needs equal counts: use heads: auto or mean, or relation_kl (MiniLMv2)")
    keys = mask.bool()[:, None, None, :]
    low = torch.finfo(torch.float32).min

    def mean_log_probs(x):  # log of the heads' mean distribution, as scores whose softmax it is
        p = F.softmax(x.float().masked_fill(~keys, low), dim=-1).mean(1, keepdim=True)
        return p.clamp_min(1e-30).log()

    return _row_kl(mean_log_probs(scores_t), mean_log_probs(scores_s), mask)


def _self_relation(x: torch.Tensor) -> torch.Tensor:
    """x x^T / sqrt(d) per head: x is (batch, heads, seq, d)."""
    x = x.float()
    return x @ x.transpose(-1, -2) / math.sqrt(x.shape[-1])


@register_loss("attention_kl", needs=Needs(attention=True))
def attention_kl(s: Record, t: Record, batch: dict, ctx: LossContext, *, heads: str = "auto",
                 layers: str = "last") -> torch.Tensor:
    """MiniLM v1 (Wang et al. 2020, eq. 4): KL(A_T || A_S) between the attention distributions softmax(Q K^T /
    sqrt(d_k)) of the last layers, per head, mean over heads and valid queries, padded keys excluded.
    heads: as `attention_mse`, but `mean` averages the distributions; layers: `last` or `mapped`."""
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for i, j in _last_or_mapped(len(s.attention_scores), len(t.attention_scores), layers, ctx, "attention_kl"):
        total = total + _heads_kl(t.attention_scores[j - 1], s.attention_scores[i - 1], s.attention_mask, heads,
                                  f"attention_kl (student layer {i}, teacher layer {j})")
    return total


@register_loss("value_relation_kl", needs=Needs(qkv=True))
def value_relation_kl(s: Record, t: Record, batch: dict, ctx: LossContext, *, heads: str = "auto",
                      layers: str = "last") -> torch.Tensor:
    """MiniLM v1 (Wang et al. 2020, eq. 5-6): KL(VR_T || VR_S) with VR = softmax(V V^T / sqrt(d_k)) per head,
    each model with its own head size d_k, mean over heads and valid queries; heads and layers as `attention_kl`."""
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for i, j in _last_or_mapped(len(s.qkv), len(t.qkv), layers, ctx, "value_relation_kl"):
        total = total + _heads_kl(_self_relation(t.qkv[j - 1][2]), _self_relation(s.qkv[i - 1][2]),
                                  s.attention_mask, heads, f"value_relation_kl (student layer {i}, teacher layer {j})")
    return total


_RELATIONS = {"qq": 0, "kk": 1, "vv": 2}


def _relation_heads(x: torch.Tensor, r: int, who: str) -> torch.Tensor:
    """(batch, heads, seq, d) -> the concatenated heads re-split into r relation heads, (batch, r, seq, H*d/r)."""
    b, h, n, d = x.shape
    if (h * d) % r:
        raise LossError(f"relation_kl: relation_heads={r} does not divide the {who}'s attention width {h * d} "
                        f"({h} heads x {d})")
    return x.transpose(1, 2).reshape(b, n, r, h * d // r).transpose(1, 2)


@register_loss("relation_kl", needs=Needs(qkv=True))
def relation_kl(s: Record, t: Record, batch: dict, ctx: LossContext, *, relations: list | None = None,
                relation_heads: int | None = None, teacher_layer: int | None = None,
                student_layer: int | None = None) -> torch.Tensor:
    """MiniLMv2 (Wang et al. 2021, eq. 1-3): for each of the Q-Q, K-K and V-V relations, the heads' queries
    (keys, values) concatenated and re-split into `relation_heads` heads (default: the teacher's head count),
    R = softmax(A A^T / sqrt(d_r)), KL(R_T || R_S) averaged over relation heads and valid queries; summed over
    `relations` (default all three). Head counts need not match. `teacher_layer` (1-based; default the last:
    MiniLMv2 takes an upper-middle layer of large teachers) and `student_layer` (default the last)."""
    names = ["qq", "kk", "vv"] if relations is None else list(relations)
    bad = [r for r in names if r not in _RELATIONS]
    if bad or not names:
        raise LossError(f"relation_kl: relations={relations!r}; expected a non-empty list of qq, kk, vv")
    j = len(t.qkv) if teacher_layer is None else teacher_layer
    i = len(s.qkv) if student_layer is None else student_layer
    for who, layer, n in (("teacher", j, len(t.qkv)), ("student", i, len(s.qkv))):
        if not 1 <= layer <= n:
            raise LossError(f"relation_kl: {who}_layer={layer} is outside 1..{n}")
    r = t.qkv[j - 1][0].shape[1] if relation_heads is None else relation_heads
    if r < 1:
        raise LossError(f"relation_kl: relation_heads={r}; expected a positive number")
    total = s.attention_mask.new_zeros((), dtype=torch.float32)
    for name in names:
        k = _RELATIONS[name]
        rel_t = _self_relation(_relation_heads(t.qkv[j - 1][k], r, "teacher"))
        rel_s = _self_relation(_relation_heads(s.qkv[i - 1][k], r, "student"))
        total = total + _row_kl(rel_t, rel_s, s.attention_mask)
    return total


@register_loss("pkd", needs=Needs(hidden=True))
def pkd(s: Record, t: Record, batch: dict, ctx: LossContext, *, last_layer: bool = False,
        reduction: str = "mean") -> torch.Tensor:
    """Patient KD (Sun et al. 2019, eq. 5): || h_S / ||h_S|| - h_T / ||h_T|| ||^2 between the [CLS] hidden states of
    the mapped layer pairs (PKD-skip: `layer_map: uniform`; PKD-last: `top`), the student's W_h applied first.
    The student's last layer is left out unless `last_layer` (PKD's prediction loss covers it). `reduction`:
    `mean` over examples, layers and dimensions (the reference code's mse_loss), or `sum` over layers and
    dimensions, mean over examples (the paper's equation)."""
    if reduction not in ("mean", "sum"):
        raise LossError(f"pkd: reduction={reduction!r}; expected mean (reference code) or sum (paper)")
    last = len(s.hidden_states) - 1
    pairs = [(i, j) for i, j in ctx.pairs if last_layer or i != last]
    if not pairs:
        raise LossError(f"pkd: the layer map {ctx.pairs} has no pair below the student's last layer {last}; use "
                        "last_layer: true or map more layers")
    h_s = torch.stack([F.normalize(s.hidden_states[i][:, 0].float(), dim=-1) for i, _ in pairs], 1)
    h_t = torch.stack([F.normalize(t.hidden_states[j][:, 0].float(), dim=-1) for _, j in pairs], 1)
    _same_width("hidden", h_s, h_t)
    sq = (h_s - h_t).pow(2)
    return sq.mean() if reduction == "mean" else sq.sum((1, 2)).mean()
