"""Losses against hand computations (explicit loops over valid entries), with padding."""

import math

import pytest
import torch
from torch import nn

from distill.adaptor import Record
from distill.losses import LOSSES, LossContext, LossError, check_loss_spec
from distill.objective import Objective
from distill.trainer import project


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
    with pytest.raises(LossError, match="heads"):
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
    with pytest.raises(LossError, match="widths differ"):
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
        with pytest.raises(LossError, match="regression"):
            LOSSES[name].fn(r, r, {"labels": torch.zeros(2)}, LossContext([], regression=True))


def test_objective_is_weighted_sum_and_reports_each_term():
    s = rec(torch.tensor(LOGITS_S), torch.ones(2, 1))
    t = rec(torch.tensor(LOGITS_T), torch.ones(2, 1))
    obj = Objective({"logits_mse": 0.5, "hard_ce": {"weight": 2.0}})
    total, parts = obj(s, t, {"labels": torch.tensor([0, 1])}, LossContext([]))
    assert set(parts) == {"logits_mse", "hard_ce"}
    assert total.item() == pytest.approx(0.5 * parts["logits_mse"].item() + 2.0 * parts["hard_ce"].item())
    assert obj.trains_logits and obj.uses_teacher and not obj.needs.attention


def test_loss_spec_validation_names_valid_choices():
    with pytest.raises(LossError, match="registered losses: .*attention_mse"):
        check_loss_spec("attenion_mse", 1, "stages.0.losses.attenion_mse")
    with pytest.raises(LossError, match="valid: weight, teacher, convention, positions, temperature"):
        check_loss_spec("soft_cross_entropy", {"temp": 2}, "x")
    assert check_loss_spec("kl_div", {"weight": 3, "temperature": 2}, "x") == (3.0, {"temperature": 2}, None)
