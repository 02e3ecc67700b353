"""MiniLM (attention_kl, value_relation_kl), MiniLMv2 (relation_kl) and Patient KD (pkd) against hand computations
(plain loops in float64 numpy/math, with padding), and the adaptor's queries, keys and values on a real tiny BERT."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from distill.adaptor import Record, forward_record, set_attention
from distill.losses import LOSSES, LossContext, LossError
from distill.needs import Needs

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


def rec(mask=MASK, att=None, qkv=None, hidden=None):
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
    got = loss("attention_kl", rec(att=a_s), rec(att=a_t))
    assert got == pytest.approx(ref_kl(a_t[2], a_s[1], MASK), rel=1e-5)
    # Not the first layers, and not an unweighted mean of per-example means (examples have 4, 2, 3 valid rows).
    assert got != pytest.approx(ref_kl(a_t[0], a_s[0], MASK), rel=1e-3)
    per_example = np.mean([ref_kl(a_t[2][b:b + 1], a_s[1][b:b + 1], MASK[b:b + 1]) for b in range(3)])
    assert got != pytest.approx(per_example, rel=1e-3)


def test_attention_kl_ignores_padded_queries_and_keys():
    torch.manual_seed(1)
    a_s, a_t = scores(1, 2), scores(1, 2)
    before = loss("attention_kl", rec(att=a_s), rec(att=a_t))
    pad = ~MASK.bool()
    junk = pad[:, None, :, None] | pad[:, None, None, :]
    a_s2 = (a_s[0].masked_fill(junk, 50.0),)
    a_t2 = (a_t[0].masked_fill(junk, -30.0),)
    assert loss("attention_kl", rec(att=a_s2), rec(att=a_t2)) == pytest.approx(before, rel=1e-6)
    assert before == pytest.approx(ref_kl(a_t[0], a_s[0], MASK), rel=1e-5)


def test_attention_kl_mapped_sums_pairs():
    torch.manual_seed(2)
    a_s, a_t = scores(2, 2), scores(4, 2)
    pairs = [(1, 2), (2, 4)]
    got = loss("attention_kl", rec(att=a_s), rec(att=a_t), pairs, layers="mapped")
    want = ref_kl(a_t[1], a_s[0], MASK) + ref_kl(a_t[3], a_s[1], MASK)
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(LossError, match="layers"):
        loss("attention_kl", rec(att=a_s), rec(att=a_t), pairs, layers="first")


def test_attention_kl_head_means():
    torch.manual_seed(3)
    a_s, a_t = scores(1, 2), scores(1, 4)
    for heads in ("auto", "mean"):  # different counts: auto falls back to the heads' mean distribution
        got = loss("attention_kl", rec(att=a_s), rec(att=a_t), heads=heads)
        assert got == pytest.approx(ref_kl(a_t[0], a_s[0], MASK, mean_heads=True), rel=1e-5)
    with pytest.raises(LossError, match="heads"):
        loss("attention_kl", rec(att=a_s), rec(att=a_t), heads="match")
    b_t = scores(1, 2)  # equal counts: mean averages the distributions, match/auto go head by head
    mean = loss("attention_kl", rec(att=a_s), rec(att=b_t), heads="mean")
    assert mean == pytest.approx(ref_kl(b_t[0], a_s[0], MASK, mean_heads=True), rel=1e-5)
    per_head = ref_kl(b_t[0], a_s[0], MASK)
    assert mean != pytest.approx(per_head, rel=1e-3)
    for heads in ("auto", "match"):
        assert loss("attention_kl", rec(att=a_s), rec(att=b_t), heads=heads) == pytest.approx(per_head, rel=1e-5)


# ---------------------------------------------------------------- value_relation_kl


def test_value_relation_kl_own_head_size_and_padding():
    torch.manual_seed(4)
    q_s, q_t = qkvs(2, 2, 6), qkvs(3, 2, 8)  # equal head counts, different head sizes
    got = loss("value_relation_kl", rec(qkv=q_s), rec(qkv=q_t))
    want = ref_kl(ref_value_relation(q_t[2][2]), ref_value_relation(q_s[1][2]), MASK)
    assert got == pytest.approx(want, rel=1e-5)
    # Only V matters: changing queries and keys changes nothing; padded value rows change nothing.
    q_s2 = tuple((torch.randn_like(q), torch.randn_like(k), v.masked_fill(~MASK.bool()[:, None, :, None], 9.0))
                 for q, k, v in q_s)
    assert loss("value_relation_kl", rec(qkv=q_s2), rec(qkv=q_t)) == pytest.approx(got, rel=1e-6)


def test_value_relation_kl_mapped_and_head_mean():
    torch.manual_seed(5)
    q_s, q_t = qkvs(2, 2, 6), qkvs(4, 4, 8)
    pairs = [(1, 2), (2, 4)]
    got = loss("value_relation_kl", rec(qkv=q_s), rec(qkv=q_t), pairs, layers="mapped")
    want = sum(ref_kl(ref_value_relation(q_t[j - 1][2]), ref_value_relation(q_s[i - 1][2]), MASK, mean_heads=True)
               for i, j in pairs)
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(LossError, match="heads"):
        loss("value_relation_kl", rec(qkv=q_s), rec(qkv=q_t), heads="match")


# ---------------------------------------------------------------- relation_kl (MiniLMv2)


def test_relation_kl_different_heads_and_widths():
    torch.manual_seed(6)
    q_s, q_t = qkvs(2, 2, 6), qkvs(2, 4, 8)  # student width 12, teacher width 32
    got = loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relation_heads=2)
    parts = [ref_kl(ref_relation(q_t[1][k], 2), ref_relation(q_s[1][k], 2), MASK) for k in range(3)]
    assert got == pytest.approx(sum(parts), rel=1e-5)
    only = loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relations=["kk", "vv"], relation_heads=2)
    assert only == pytest.approx(parts[1] + parts[2], rel=1e-5)
    # Default R is the teacher's head count (4), which divides 12 and 32 too.
    default = loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relations=["qq"])
    assert default == pytest.approx(ref_kl(ref_relation(q_t[1][0], 4), ref_relation(q_s[1][0], 4), MASK), rel=1e-5)


def test_relation_kl_layer_selection_and_errors():
    torch.manual_seed(7)
    q_s, q_t = qkvs(2, 2, 6), qkvs(3, 4, 8)
    got = loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relations=["vv"], relation_heads=2, teacher_layer=2)
    assert got == pytest.approx(ref_kl(ref_relation(q_t[1][2], 2), ref_relation(q_s[1][2], 2), MASK), rel=1e-5)
    got = loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relations=["qq"], relation_heads=2, student_layer=1)
    assert got == pytest.approx(ref_kl(ref_relation(q_t[2][0], 2), ref_relation(q_s[0][0], 2), MASK), rel=1e-5)
    with pytest.raises(LossError, match="relation_heads"):
        loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relation_heads=5)  # divides neither 12 nor 32
    with pytest.raises(LossError, match="relation_heads"):
        loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relation_heads=8)  # divides 32, not 12
    with pytest.raises(LossError, match="teacher_layer"):
        loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), teacher_layer=4)
    with pytest.raises(LossError, match="relations"):
        loss("relation_kl", rec(qkv=q_s), rec(qkv=q_t), relations=["qk"])


# ---------------------------------------------------------------- pkd


def hiddens(layers, width=6, seq=4, batch=3):
    return tuple(torch.randn(batch, seq, width) for _ in range(layers + 1))


def test_pkd_reductions_and_last_layer():
    torch.manual_seed(8)
    h_s, h_t = hiddens(3), hiddens(6)
    pairs = [(1, 2), (2, 4), (3, 6)]
    s, t = rec(hidden=h_s), rec(hidden=h_t)
    for reduction in ("mean", "sum"):
        got = loss("pkd", s, t, pairs, reduction=reduction)
        assert got == pytest.approx(ref_pkd(h_s, h_t, pairs[:2], reduction), rel=1e-5)
        got = loss("pkd", s, t, pairs, reduction=reduction, last_layer=True)
        assert got == pytest.approx(ref_pkd(h_s, h_t, pairs, reduction), rel=1e-5)
    assert loss("pkd", s, t, pairs, reduction="sum") == pytest.approx(
        2 * 6 * loss("pkd", s, t, pairs, reduction="mean"), rel=1e-5)
    with pytest.raises(LossError, match="last_layer"):
        loss("pkd", s, t, [(3, 6)])
    with pytest.raises(LossError, match="reduction"):
        loss("pkd", s, t, pairs, reduction="max")


def test_pkd_reads_only_cls_and_is_scale_free():
    torch.manual_seed(9)
    h_s, h_t = hiddens(3), hiddens(6)
    pairs = [(1, 2), (2, 4), (3, 6)]
    before = loss("pkd", rec(hidden=h_s), rec(hidden=h_t), pairs, last_layer=True)

    def scramble(hs):  # new values at every non-[CLS] position (padded ones included), [CLS] rescaled
        return tuple(torch.cat([h[:, :1] * 3.5, torch.randn_like(h[:, 1:]) * 10], 1) for h in hs)

    after = loss("pkd", rec(hidden=scramble(h_s)), rec(hidden=scramble(h_t)), pairs, last_layer=True)
    assert after == pytest.approx(before, rel=1e-5)
    assert before > 0.1


# ---------------------------------------------------------------- adaptor: q, k, v of a real tiny BERT


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(10)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 50, (2, 4))
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
             "token_type_ids": torch.zeros_like(ids)}
    return model, batch


def test_adaptor_hands_out_the_models_own_projections(tiny_bert):
    model, batch = tiny_bert
    with torch.no_grad():
        set_attention(model, Needs(qkv=True))
        rec_ = forward_record(model, batch, Needs(hidden=True, attention=True, qkv=True))
        set_attention(model, Needs())
        plain = forward_record(model, batch, Needs())
    b, s, heads, d = 2, 4, 4, 4
    assert len(rec_.qkv) == 2 and len(rec_.attention_scores) == 2
    for layer in range(2):
        attn = model.bert.encoder.layer[layer].attention.self
        x = rec_.hidden_states[layer]
        with torch.no_grad():
            want = [proj(x).view(b, s, heads, d).transpose(1, 2) for proj in (attn.query, attn.key, attn.value)]
        for got, ref in zip(rec_.qkv[layer], want, strict=True):
            assert got.shape == (b, heads, s, d)
            assert_close(got, ref, rtol=1e-5, atol=1e-6)
        q, k, _ = want
        assert_close(rec_.attention_scores[layer], q @ k.transpose(-1, -2) / math.sqrt(d), rtol=1e-5, atol=1e-6)
    assert_close(rec_.logits, plain.logits, rtol=1e-5, atol=1e-5)


def test_adaptor_qkv_without_parts_attention_raises(tiny_bert):
    model, batch = tiny_bert
    set_attention(model, Needs(attention=True))
    with torch.no_grad(), pytest.raises(RuntimeError, match="set_attention"):
        forward_record(model, batch, Needs(hidden=True, attention=True, qkv=True))


def test_only_stages_whose_losses_read_them_switch_attention():
    """Q/K/V (or scores) are asked for model by model: a stage without such a loss keeps the fused `sdpa` kernel,
    and of several teachers only the one a loss reads them from is switched."""
    from transformers import BertConfig, BertForSequenceClassification

    from distill.adaptor import PARTS_ATTENTION, SCORES_ATTENTION
    from distill.objective import Objective
    from distill.trainer import DistillModule, set_attentions

    def bert():
        return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                        num_attention_heads=4, intermediate_size=32))

    student, a, b = DistillModule(bert()), bert(), bert()

    def impl(m):
        return m.config._attn_implementation

    teachers = {"a": a, "b": b}
    for losses, want in [({"relation_kl": 1.0, "hidden_mse": {"teacher": "b"}}, (PARTS_ATTENTION, PARTS_ATTENTION,
                                                                                 "sdpa")),
                         ({"attention_kl": {"teacher": "b"}}, (SCORES_ATTENTION, "sdpa", SCORES_ATTENTION)),
                         ({"kl_div": 1.0, "hidden_mse": 1.0}, ("sdpa", "sdpa", "sdpa"))]:
        set_attentions(student, teachers, Objective(losses, teachers={"a": 1.0, "b": 1.0}))
        assert (impl(student.student), impl(a), impl(b)) == want, losses
