"""`Needs`: the typed value a loss declares, checked at registration, unioned by a stage's objective and handed
whole to the adaptor, so that each stage computes exactly the outputs its losses read."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from distill.config import load_config
from distill.errors import DistillError
from distill.losses import LOSSES, register_loss
from distill.needs import Needs
from distill.objective import Objective
from distill.trainer import DistillModule, set_attentions

from .helpers import SMOKE, tiny_bert_config


def test_union_is_fieldwise_or_and_subset_is_fieldwise_implication():
    a, b = Needs(hidden=True), Needs(attention=True, all_tokens=True)
    assert a | b == Needs(hidden=True, attention=True, all_tokens=True)
    assert a | Needs() == a and (a | b).names() == ("hidden", "attention", "all_tokens")
    assert a <= a | b and Needs() <= a
    assert not (a <= b) and not (a | b <= a)
    assert not Needs() and Needs(qkv=True)


def test_intermediate_means_more_than_logits_and_rows_are_not_an_output():
    assert Needs(hidden=True).intermediate and Needs(qkv=True).intermediate
    assert not Needs(all_tokens=True).intermediate
    assert Needs(qkv=True).attention_maps and not Needs(hidden=True).attention_maps


def test_needs_by_name_refuses_an_unknown_name_and_a_bare_string():
    assert Needs.of(["hidden", "qkv"]) == Needs(hidden=True, qkv=True)
    with pytest.raises(DistillError) as err:
        Needs.of(["hidden", "hiden"], "somewhere")
    assert "somewhere" in str(err.value) and "'hiden'" in str(err.value) and "attention" in str(err.value)
    with pytest.raises(DistillError, match="'hidden'"):
        Needs.of("hidden")  # would otherwise read as the letters h, i, d, ...


def _refused(**declaration) -> str:
    name = "test_misdeclared_loss"
    with pytest.raises(DistillError) as err:
        @register_loss(name, **declaration)
        def misdeclared(s, t, batch, ctx, *, positions: str = "all"):
            return s.logits.sum()
    assert name not in LOSSES
    assert name in str(err.value)
    return str(err.value)


def test_a_misdeclared_loss_is_refused_at_registration_naming_the_loss_and_the_bad_field():
    assert "'attn'" in _refused(needs=("hidden", "attn"))
    assert "'hidden'" in _refused(needs="hidden")
    assert "42" in _refused(needs=42)
    message = _refused(needs_when={"position": {"all": Needs(all_tokens=True)}})
    assert "'position'" in message and "positions" in message
    assert "'every'" in _refused(needs_when={"positions": {"all": ["every"]}})
    assert "'all'" in _refused(needs_when={"positions": "all"})


def test_every_registered_loss_declares_needs_and_describes_itself():
    # What the generated loss reference lists for each loss.
    for name, info in LOSSES.items():
        assert isinstance(info.needs, Needs), name
        assert all(isinstance(n, Needs) for by in info.needs_when.values() for n in by.values()), name
        assert (info.fn.__doc__ or "").strip(), name


def test_a_parameter_dependent_need_follows_the_parameter_not_its_name():
    assert Objective({"kl_div": 1.0}).needs == Needs(all_tokens=True)  # positions: all by default
    assert Objective({"kl_div": {"positions": "masked"}}).needs == Needs()
    assert Objective({"soft_cross_entropy": {"positions": "masked"}, "kl_div": 1.0}).needs.all_tokens
    # Registered without a declaration, a `positions` parameter asks for nothing.
    name = "test_positions_without_declaration"

    @register_loss(name)
    def undeclared(s, t, batch, ctx, *, positions: str = "all"):
        return s.logits.sum()

    try:
        assert Objective({name: 1.0}).needs == Needs()
    finally:
        del LOSSES[name]


@pytest.mark.parametrize("stage,student,teacher", [
    ("intermediate", Needs(hidden=True, attention=True), Needs(hidden=True, attention=True)),
    # Logits only: no hidden states, no attention; the teacher's from its cache (which rows: the objective's).
    ("prediction", Needs(all_tokens=True), Needs()),
])
def test_each_smoke_stage_asks_for_exactly_what_its_losses_read(stage, student, teacher):
    cfg = load_config(SMOKE)
    objective = Objective(next(st for st in cfg.stages if st.name == stage).losses)
    assert objective.needs == student
    assert objective.teacher_needs() == {"teacher": teacher}


def test_objectives_union_their_terms_needs():
    minilm = Objective({"relation_kl": 1.0, "hidden_mse": 1.0, "kl_div": {"positions": "masked"}})
    assert minilm.needs == Needs(hidden=True, qkv=True)
    general = Objective({"kl_div": 5.0, "mlm": 2.0, "cosine_hidden": 1.0})  # DistilBERT's triple loss
    assert general.needs == Needs(hidden=True, all_tokens=True)
    assert Objective({"hard_ce": 1.0}).needs == Needs() and Objective({"hard_ce": 1.0}).teacher_needs() == {}


def test_a_logits_only_stage_computes_no_hidden_states_or_attention():
    torch.manual_seed(0)
    student, teacher = (DistillModule(BertForSequenceClassification(tiny_bert_config())) for _ in range(2))
    batch = {"input_ids": torch.randint(5, 90, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "token_type_ids": torch.zeros(2, 6, dtype=torch.long)}
    cfg = load_config(SMOKE)
    for stage in cfg.stages:
        objective = Objective(stage.losses)
        set_attentions(student, {"teacher": teacher.student}, objective)
        with torch.no_grad():
            rec = student(batch, objective.needs)
        assert (rec.hidden_states is not None) == objective.needs.hidden, stage.name
        assert (rec.attention_scores is not None) == objective.needs.attention, stage.name
        assert rec.qkv is None
        # The fused kernel where no loss reads attention.
        want = "sdpa" if not objective.needs.attention else "distill_scores"
        assert student.student.config._attn_implementation == want == teacher.student.config._attn_implementation
