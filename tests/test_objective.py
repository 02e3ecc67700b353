"""distill/objective.py: a stage's weighted sum of losses, the loss specs it validates, the outputs it asks of the
student and each teacher (the union of its terms' needs), and which models it switches off the fused attention."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distill.adaptor import PARTS_ATTENTION, SCORES_ATTENTION, Record
from distill.config import load_config
from distill.losses import LossContext, LossError, check_loss_spec
from distill.needs import Needs
from distill.objective import Objective
from distill.trainer import DistillModule, set_attentions

from .helpers import SMOKE, raises_with, tiny_bert_config


def test_objective_is_weighted_sum_and_reports_each_term():
    mask = torch.ones(2, 1)
    s = Record(logits=torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]]), attention_mask=mask)
    t = Record(logits=torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]]), attention_mask=mask)
    obj = Objective({"logits_mse": 0.5, "hard_ce": {"weight": 2.0}})
    total, parts = obj(s, t, {"labels": torch.tensor([0, 1])}, LossContext([]))
    assert set(parts) == {"logits_mse", "hard_ce"}
    assert total.item() == pytest.approx(0.5 * parts["logits_mse"].item() + 2.0 * parts["hard_ce"].item())
    assert obj.trains_logits and obj.uses_teacher and not obj.needs.attention


def test_loss_spec_validation_names_valid_choices():
    with raises_with(LossError, "stages.0.losses.attenion_mse", "'attenion_mse'", "attention_mse"):
        check_loss_spec("attenion_mse", 1, "stages.0.losses.attenion_mse")
    with raises_with(LossError, "'temp'", "weight", "teacher", "convention", "positions", "temperature"):
        check_loss_spec("soft_cross_entropy", {"temp": 2}, "x")
    assert check_loss_spec("kl_div", {"weight": 3, "temperature": 2}, "x") == (3.0, {"temperature": 2}, None)


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



def test_a_parameter_of_the_wrong_type_is_no_need_and_reaches_the_losss_own_check():
    # A list where a word is meant (`positions: [all]`) raised TypeError (unhashable) from the needs lookup,
    # a traceback from `distill check`; it needs nothing and the loss's own check refuses it.
    assert Objective({"kl_div": {"positions": ["all"]}}).needs == Needs()

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


def test_only_stages_whose_losses_read_them_switch_attention():
    """Q/K/V (or scores) are asked for model by model: a stage without such a loss keeps the fused `sdpa` kernel,
    and of several teachers only the one a loss reads them from is switched."""

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
