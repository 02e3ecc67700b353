"""distill/needs.py: `Needs`, the typed value a loss declares (checked at registration, a parameter's needs
included) of the outputs it reads; how an objective unions them is tests/test_objective.py's."""

from __future__ import annotations

from distill.errors import DistillError
from distill.losses import LOSSES, register_loss
from distill.needs import Needs
from distill.objective import Objective

from .helpers import assert_facts, raises_with


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
    with raises_with(DistillError, "somewhere", "'hiden'", "attention"):
        Needs.of(["hidden", "hiden"], "somewhere")
    with raises_with(DistillError, "'hidden'"):
        Needs.of("hidden")  # would otherwise read as the letters h, i, d, ...


def _refused(**declaration) -> str:
    name = "test_misdeclared_loss"
    with raises_with(DistillError, name) as err:
        @register_loss(name, **declaration)
        def misdeclared(s, t, batch, ctx, *, positions: str = "all"):
            return s.logits.sum()
    assert name not in LOSSES
    return str(err.value)


def test_a_misdeclared_loss_is_refused_at_registration_naming_the_loss_and_the_bad_field():
    assert_facts(_refused(needs=("hidden", "attn")), "'attn'")
    assert_facts(_refused(needs="hidden"), "'hidden'")
    assert_facts(_refused(needs=42), "42")
    assert_facts(_refused(needs_when={"position": {"all": Needs(all_tokens=True)}}), "'position'", "positions")
    assert_facts(_refused(needs_when={"positions": {"all": ["every"]}}), "'every'")
    assert_facts(_refused(needs_when={"positions": "all"}), "'all'")


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
