"""distill/losses.py: every loss against a hand computation (plain loops over valid entries, padding included) and
the parameter errors each raises; the weighted sum of a stage's losses is tests/test_objective.py's."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from distill.adaptor import Record
from distill.losses import LOSSES, LossContext, LossError
from distill.trainer import project

from .helpers import raises_with


def rec(logits, mask, hidden=None, att=None):
    return Record(logits=logits, attention_mask=mask, hidden_states=hidden, attention_scores=att)


def test_attention_mse_counts_only_valid_query_key_pairs():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    a_s = torch.randn(2, 2, 3, 3, generator=g)
    a_t = torch.randn(2, 2, 3, 3, generator=g)
    total, count = 0.0, 0
    for b in range(2):
        for h in range(2):
            for i in range(3):
                for j in range(3):
                    if mask[b, i] and mask[b, j]:
                        total += (a_s[b, h, i, j] - a_t[b, h, i, j]).item() ** 2
                        count += 1
    assert count == 2 * 9 + 2 * 4
    s = rec(torch.zeros(2, 2), mask, att=(a_s,))
    t = rec(torch.zeros(2, 2), mask, att=(a_t,))
    got = LOSSES["attention_mse"].fn(s, t, {}, LossContext([(1, 1)]))
    assert got.item() == pytest.approx(total / count, rel=1e-6)


def test_attention_mse_ignores_padding_values_and_sums_layer_pairs():
    g = torch.Generator().manual_seed(1)
    short = [torch.randn(1, 2, 2, 2, generator=g) for _ in range(4)]  # student l1, l2, teacher l1, l2
    s_rec = rec(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.long), att=(short[0], short[1]))
    t_rec = rec(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.long), att=(short[2], short[3]))
    ctx = LossContext([(1, 1), (2, 2)])
    unpadded = LOSSES["attention_mse"].fn(s_rec, t_rec, {}, ctx)

    def pad(x, fill):  # one extra padded position (row and column) filled with garbage
        y = torch.full((1, 2, 3, 3), fill)
        y[:, :, :2, :2] = x
        return y

    mask = torch.tensor([[1, 1, 0]])
    s_pad = rec(torch.zeros(1, 2), mask, att=tuple(pad(x, 1e3) for x in short[:2]))
    t_pad = rec(torch.zeros(1, 2), mask, att=tuple(pad(x, -7e2) for x in short[2:]))
    padded = LOSSES["attention_mse"].fn(s_pad, t_pad, {}, ctx)
    assert padded.item() == pytest.approx(unpadded.item(), rel=1e-6)
    one = ((short[0] - short[2]) ** 2).mean() + ((short[1] - short[3]) ** 2).mean()
    assert unpadded.item() == pytest.approx(one.item(), rel=1e-6)


def test_attention_mse_head_count_mismatch_compares_head_means():
    g = torch.Generator().manual_seed(2)
    a_s = torch.randn(1, 2, 2, 2, generator=g)
    a_t = torch.randn(1, 4, 2, 2, generator=g)
    mask = torch.ones(1, 2, dtype=torch.long)
    s, t = rec(torch.zeros(1, 2), mask, att=(a_s,)), rec(torch.zeros(1, 2), mask, att=(a_t,))
    got = LOSSES["attention_mse"].fn(s, t, {}, LossContext([(1, 1)]))
    ms, mt = a_s.mean(1), a_t.mean(1)
    want = sum((ms[0, i, j] - mt[0, i, j]).item() ** 2 for i in range(2) for j in range(2)) / 4
    assert got.item() == pytest.approx(want, rel=1e-6)
    with raises_with(LossError, "heads"):
        LOSSES["attention_mse"].fn(s, t, {}, LossContext([(1, 1)]), heads="match")


def test_hidden_mse_with_projection_over_valid_tokens():
    g = torch.Generator().manual_seed(3)
    mask = torch.tensor([[1, 1, 0]])
    hs = [torch.randn(1, 3, 2, generator=g) for _ in range(2)]  # embeddings, layer 1 (width 2)
    ht = [torch.randn(1, 3, 3, generator=g) for _ in range(3)]  # embeddings, layers 1, 2 (width 3)
    proj = nn.Linear(2, 3)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
        proj.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
    # The run projects the student's record (DistillModule.forward) before any loss reads it.
    projected_rec = project(rec(torch.zeros(1, 2), mask, hidden=tuple(hs)),
                            nn.ModuleDict({"hidden": proj, "embedding": nn.Linear(2, 3)}))
    got = LOSSES["hidden_mse"].fn(projected_rec, rec(torch.zeros(1, 2), mask, hidden=tuple(ht)), {},
                                  LossContext([(1, 2)]))
    total = 0.0
    for tok in range(2):  # token 2 is padding
        x1, x2 = hs[1][0, tok].tolist()
        projected = [x1 + 0.5, 2 * x2, x1 - x2 - 0.5]
        total += sum((p - q) ** 2 for p, q in zip(projected, ht[2][0, tok].tolist(), strict=True))
    assert got.item() == pytest.approx(total / 6, rel=1e-5)


def test_embedding_mse_uses_index_zero_and_its_own_projection():
    mask = torch.tensor([[1, 0]])
    e_s = torch.tensor([[[1.0, 2.0], [9.0, 9.0]]])
    e_t = torch.tensor([[[0.0, 0.0], [-9.0, 9.0]]])
    ctx = LossContext([(1, 1)])
    got = LOSSES["embedding_mse"].fn(rec(torch.zeros(1, 2), mask, hidden=(e_s, e_s)),
                                     rec(torch.zeros(1, 2), mask, hidden=(e_t, e_t)), {}, ctx)
    assert got.item() == pytest.approx((1 + 4) / 2)
    with raises_with(LossError, "widths", "student 2", "teacher 3", "train.projection"):
        LOSSES["embedding_mse"].fn(rec(torch.zeros(1, 2), mask, hidden=(e_s,)),
                                   rec(torch.zeros(1, 2), mask, hidden=(torch.zeros(1, 2, 3),)), {}, ctx)


LOGITS_S = [[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]]
LOGITS_T = [[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]]


def _softmax(row, t):
    e = [math.exp(x / t) for x in row]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_cross_entropy_conventions(temperature):
    s = rec(torch.tensor(LOGITS_S), torch.ones(2, 1))
    t = rec(torch.tensor(LOGITS_T), torch.ones(2, 1))
    ce_rows, kl_rows = [], []
    for zs, zt in zip(LOGITS_S, LOGITS_T, strict=True):
        p, q = _softmax(zt, temperature), _softmax(zs, temperature)
        ce_rows.append(-sum(pi * math.log(qi) for pi, qi in zip(p, q, strict=True)))
        kl_rows.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)))
    fn = LOSSES["soft_cross_entropy"].fn
    ctx = LossContext([])
    ce = fn(s, t, {}, ctx, temperature=temperature, convention="ce").item()
    tiny = fn(s, t, {}, ctx, temperature=temperature, convention="tinybert").item()
    klt2 = fn(s, t, {}, ctx, temperature=temperature, convention="kl_t2").item()
    assert ce == pytest.approx(sum(ce_rows) / 2, rel=1e-6)
    assert tiny == pytest.approx(sum(ce_rows) / 6, rel=1e-6)
    assert klt2 == pytest.approx(sum(kl_rows) / 2 * temperature**2, rel=1e-5)
    kl = LOSSES["kl_div"].fn(s, t, {}, ctx, temperature=temperature, t2=False).item()
    assert kl == pytest.approx(sum(kl_rows) / 2, rel=1e-5)


def test_logits_mse_and_hard_losses():
    s = rec(torch.tensor(LOGITS_S), torch.ones(2, 1))
    t = rec(torch.tensor(LOGITS_T), torch.ones(2, 1))
    ctx = LossContext([])
    diffs = [(a - b) ** 2 for ra, rb in zip(LOGITS_S, LOGITS_T, strict=True) for a, b in zip(ra, rb, strict=True)]
    assert LOSSES["logits_mse"].fn(s, t, {}, ctx).item() == pytest.approx(sum(diffs) / 6)
    labels = torch.tensor([1, 2])
    want = -sum(math.log(_softmax(row, 1.0)[y]) for row, y in zip(LOGITS_S, [1, 2], strict=True)) / 2
    assert LOSSES["hard_ce"].fn(s, None, {"labels": labels}, ctx).item() == pytest.approx(want, rel=1e-6)
    reg = rec(torch.tensor([[0.5], [2.0]]), torch.ones(2, 1))
    got = LOSSES["hard_mse"].fn(reg, None, {"labels": torch.tensor([1.0, 1.0])}, LossContext([], regression=True))
    assert got.item() == pytest.approx((0.25 + 1.0) / 2)


def test_probability_losses_refuse_regression():
    r = rec(torch.zeros(2, 1), torch.ones(2, 1))
    for name in ("soft_cross_entropy", "kl_div", "hard_ce"):
        with raises_with(LossError, name, "regression"):
            LOSSES[name].fn(r, r, {"labels": torch.zeros(2)}, LossContext([], regression=True))


# ================================================================ MiniLM, MiniLMv2 and Patient KD
# attention_kl, value_relation_kl (MiniLM), relation_kl (MiniLMv2) and pkd (Patient KD), against plain loops
# in float64.

# Three examples of four tokens; the second and third padded at the end.
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])


# ---------------------------------------------------------------- reference computations


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    z = sum(e)
    return [v / z for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def ref_kl(scores_t, scores_s, mask, mean_heads=False):
    """Pooled mean over valid (example, head, query) rows of KL(softmax_valid(T) || softmax_valid(S)); with
    mean_heads the heads' distributions are averaged first (rows: valid (example, query))."""
    st, ss, mask = np.asarray(scores_t, np.float64), np.asarray(scores_s, np.float64), np.asarray(mask)
    total, rows = 0.0, 0
    for b in range(mask.shape[0]):
        keys = [k for k in range(mask.shape[1]) if mask[b, k]]
        for q in keys:
            pts = [softmax([st[b, h, q, k] for k in keys]) for h in range(st.shape[1])]
            pss = [softmax([ss[b, h, q, k] for k in keys]) for h in range(ss.shape[1])]
            if mean_heads:
                pt = [sum(p[n] for p in pts) / len(pts) for n in range(len(keys))]
                ps = [sum(p[n] for p in pss) / len(pss) for n in range(len(keys))]
                total, rows = total + kl(pt, ps), rows + 1
            else:
                for pt, ps in zip(pts, pss, strict=True):
                    total, rows = total + kl(pt, ps), rows + 1
    return total / rows


def ref_value_relation(v):
    """(b, H, s, d) -> (b, H, s, s): V V^T / sqrt(d), head by head."""
    v = np.asarray(v, np.float64)
    b_, h_, s_, d = v.shape
    out = np.zeros((b_, h_, s_, s_))
    for b in range(b_):
        for h in range(h_):
            for n in range(s_):
                for m in range(s_):
                    out[b, h, n, m] = sum(v[b, h, n, k] * v[b, h, m, k] for k in range(d)) / math.sqrt(d)
    return out


def ref_relation(x, r):
    """(b, H, s, d) -> (b, r, s, s): heads concatenated per token (head 0 first), re-split into r chunks,
    A_r A_r^T / sqrt(width / r)."""
    x = np.asarray(x, np.float64)
    b_, h_, s_, d = x.shape
    w = h_ * d // r
    out = np.zeros((b_, r, s_, s_))
    for b in range(b_):
        tokens = [np.concatenate([x[b, h, n] for h in range(h_)]) for n in range(s_)]
        for rr in range(r):
            for n in range(s_):
                for m in range(s_):
                    a, c = tokens[n][rr * w:(rr + 1) * w], tokens[m][rr * w:(rr + 1) * w]
                    out[b, rr, n, m] = sum(float(u) * float(v) for u, v in zip(a, c, strict=True)) / math.sqrt(w)
    return out


def ref_pkd(hs_s, hs_t, pairs, reduction):
    total_per_example = []
    dims = None
    for b in range(hs_s[0].shape[0]):
        acc = 0.0
        for i, j in pairs:
            u, v = [float(x) for x in hs_s[i][b, 0]], [float(x) for x in hs_t[j][b, 0]]
            nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
            acc += sum((a / nu - c / nv) ** 2 for a, c in zip(u, v, strict=True))
            dims = len(u)
        total_per_example.append(acc)
    mean_b = sum(total_per_example) / len(total_per_example)
    return mean_b if reduction == "sum" else mean_b / (len(pairs) * dims)


def batch_rec(mask=MASK, att=None, qkv=None, hidden=None):
    """A record of the three-example batch `MASK` describes."""
    return Record(logits=None, attention_mask=mask, hidden_states=hidden, attention_scores=att, qkv=qkv)


def scores(layers, heads, seq=4, batch=3):
    return tuple(torch.randn(batch, heads, seq, seq) * 2 for _ in range(layers))


def qkvs(layers, heads, d, seq=4, batch=3):
    return tuple(tuple(torch.randn(batch, heads, seq, d) for _ in range(3)) for _ in range(layers))


def loss(name, s, t, pairs=((1, 1),), **params):
    return LOSSES[name].fn(s, t, {}, LossContext(list(pairs)), **params).item()


# ---------------------------------------------------------------- attention_kl


def test_attention_kl_last_layer_per_head_pooled_over_valid_rows():
    torch.manual_seed(0)
    a_s, a_t = scores(2, 3), scores(3, 3)
    got = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t))
    assert got == pytest.approx(ref_kl(a_t[2], a_s[1], MASK), rel=1e-5)
    # Not the first layers, and not an unweighted mean of per-example means (examples have 4, 2, 3 valid rows).
    assert got != pytest.approx(ref_kl(a_t[0], a_s[0], MASK), rel=1e-3)
    per_example = np.mean([ref_kl(a_t[2][b:b + 1], a_s[1][b:b + 1], MASK[b:b + 1]) for b in range(3)])
    assert got != pytest.approx(per_example, rel=1e-3)


def test_attention_kl_ignores_padded_queries_and_keys():
    torch.manual_seed(1)
    a_s, a_t = scores(1, 2), scores(1, 2)
    before = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t))
    pad = ~MASK.bool()
    junk = pad[:, None, :, None] | pad[:, None, None, :]
    a_s2 = (a_s[0].masked_fill(junk, 50.0),)
    a_t2 = (a_t[0].masked_fill(junk, -30.0),)
    assert loss("attention_kl", batch_rec(att=a_s2), batch_rec(att=a_t2)) == pytest.approx(before, rel=1e-6)
    assert before == pytest.approx(ref_kl(a_t[0], a_s[0], MASK), rel=1e-5)


def test_attention_kl_mapped_sums_pairs():
    torch.manual_seed(2)
    a_s, a_t = scores(2, 2), scores(4, 2)
    pairs = [(1, 2), (2, 4)]
    got = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t), pairs, layers="mapped")
    want = ref_kl(a_t[1], a_s[0], MASK) + ref_kl(a_t[3], a_s[1], MASK)
    assert got == pytest.approx(want, rel=1e-5)
    with raises_with(LossError, "layers"):
        loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t), pairs, layers="first")


def test_attention_kl_head_means():
    torch.manual_seed(3)
    a_s, a_t = scores(1, 2), scores(1, 4)
    for heads in ("auto", "mean"):  # different counts: auto falls back to the heads' mean distribution
        got = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t), heads=heads)
        assert got == pytest.approx(ref_kl(a_t[0], a_s[0], MASK, mean_heads=True), rel=1e-5)
    with raises_with(LossError, "heads"):
        loss("attention_kl", batch_rec(att=a_s), batch_rec(att=a_t), heads="match")
    b_t = scores(1, 2)  # equal counts: mean averages the distributions, match/auto go head by head
    mean = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=b_t), heads="mean")
    assert mean == pytest.approx(ref_kl(b_t[0], a_s[0], MASK, mean_heads=True), rel=1e-5)
    per_head = ref_kl(b_t[0], a_s[0], MASK)
    assert mean != pytest.approx(per_head, rel=1e-3)
    for heads in ("auto", "match"):
        got = loss("attention_kl", batch_rec(att=a_s), batch_rec(att=b_t), heads=heads)
        assert got == pytest.approx(per_head, rel=1e-5)


# ---------------------------------------------------------------- value_relation_kl


def test_value_relation_kl_own_head_size_and_padding():
    torch.manual_seed(4)
    q_s, q_t = qkvs(2, 2, 6), qkvs(3, 2, 8)  # equal head counts, different head sizes
    got = loss("value_relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t))
    want = ref_kl(ref_value_relation(q_t[2][2]), ref_value_relation(q_s[1][2]), MASK)
    assert got == pytest.approx(want, rel=1e-5)
    # Only V matters: changing queries and keys changes nothing; padded value rows change nothing.
    q_s2 = tuple((torch.randn_like(q), torch.randn_like(k), v.masked_fill(~MASK.bool()[:, None, :, None], 9.0))
                 for q, k, v in q_s)
    assert loss("value_relation_kl", batch_rec(qkv=q_s2), batch_rec(qkv=q_t)) == pytest.approx(got, rel=1e-6)


def test_value_relation_kl_mapped_and_head_mean():
    torch.manual_seed(5)
    q_s, q_t = qkvs(2, 2, 6), qkvs(4, 4, 8)
    pairs = [(1, 2), (2, 4)]
    got = loss("value_relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), pairs, layers="mapped")
    want = sum(ref_kl(ref_value_relation(q_t[j - 1][2]), ref_value_relation(q_s[i - 1][2]), MASK, mean_heads=True)
               for i, j in pairs)
    assert got == pytest.approx(want, rel=1e-5)
    with raises_with(LossError, "heads"):
        loss("value_relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), heads="match")


# ---------------------------------------------------------------- relation_kl (MiniLMv2)


def test_relation_kl_different_heads_and_widths():
    torch.manual_seed(6)
    q_s, q_t = qkvs(2, 2, 6), qkvs(2, 4, 8)  # student width 12, teacher width 32
    got = loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relation_heads=2)
    parts = [ref_kl(ref_relation(q_t[1][k], 2), ref_relation(q_s[1][k], 2), MASK) for k in range(3)]
    assert got == pytest.approx(sum(parts), rel=1e-5)
    only = loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relations=["kk", "vv"], relation_heads=2)
    assert only == pytest.approx(parts[1] + parts[2], rel=1e-5)
    # Default R is the teacher's head count (4), which divides 12 and 32 too.
    default = loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relations=["qq"])
    assert default == pytest.approx(ref_kl(ref_relation(q_t[1][0], 4), ref_relation(q_s[1][0], 4), MASK), rel=1e-5)


def test_relation_kl_layer_selection_and_errors():
    torch.manual_seed(7)
    q_s, q_t = qkvs(2, 2, 6), qkvs(3, 4, 8)
    got = loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relations=["vv"], relation_heads=2,
               teacher_layer=2)
    assert got == pytest.approx(ref_kl(ref_relation(q_t[1][2], 2), ref_relation(q_s[1][2], 2), MASK), rel=1e-5)
    got = loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relations=["qq"], relation_heads=2,
               student_layer=1)
    assert got == pytest.approx(ref_kl(ref_relation(q_t[2][0], 2), ref_relation(q_s[0][0], 2), MASK), rel=1e-5)
    with raises_with(LossError, "relation_heads"):
        loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relation_heads=5)  # divides neither 12 nor 32
    with raises_with(LossError, "relation_heads"):
        loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relation_heads=8)  # divides 32, not 12
    with raises_with(LossError, "teacher_layer"):
        loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), teacher_layer=4)
    with raises_with(LossError, "relations"):
        loss("relation_kl", batch_rec(qkv=q_s), batch_rec(qkv=q_t), relations=["qk"])


# ---------------------------------------------------------------- pkd


def hiddens(layers, width=6, seq=4, batch=3):
    return tuple(torch.randn(batch, seq, width) for _ in range(layers + 1))


def test_pkd_reductions_and_last_layer():
    torch.manual_seed(8)
    h_s, h_t = hiddens(3), hiddens(6)
    pairs = [(1, 2), (2, 4), (3, 6)]
    s, t = batch_rec(hidden=h_s), batch_rec(hidden=h_t)
    for reduction in ("mean", "sum"):
        got = loss("pkd", s, t, pairs, reduction=reduction)
        assert got == pytest.approx(ref_pkd(h_s, h_t, pairs[:2], reduction), rel=1e-5)
        got = loss("pkd", s, t, pairs, reduction=reduction, last_layer=True)
        assert got == pytest.approx(ref_pkd(h_s, h_t, pairs, reduction), rel=1e-5)
    assert loss("pkd", s, t, pairs, reduction="sum") == pytest.approx(
        2 * 6 * loss("pkd", s, t, pairs, reduction="mean"), rel=1e-5)
    with raises_with(LossError, "last_layer"):
        loss("pkd", s, t, [(3, 6)])
    with raises_with(LossError, "reduction"):
        loss("pkd", s, t, pairs, reduction="max")


def test_pkd_reads_only_cls_and_is_scale_free():
    torch.manual_seed(9)
    h_s, h_t = hiddens(3), hiddens(6)
    pairs = [(1, 2), (2, 4), (3, 6)]
    before = loss("pkd", batch_rec(hidden=h_s), batch_rec(hidden=h_t), pairs, last_layer=True)

    def scramble(hs):  # new values at every non-[CLS] position (padded ones included), [CLS] rescaled
        return tuple(torch.cat([h[:, :1] * 3.5, torch.randn_like(h[:, 1:]) * 10], 1) for h in hs)

    after = loss("pkd", batch_rec(hidden=scramble(h_s)), batch_rec(hidden=scramble(h_t)), pairs, last_layer=True)
    assert after == pytest.approx(before, rel=1e-5)
    assert before > 0.1
