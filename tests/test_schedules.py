"""Loss weights and temperatures as schedules over a stage, checked against the formulas they name."""

import math

import pytest
import torch

from distill.adaptor import Record
from distill.config import load_config
from distill.losses import LossContext, LossError, check_loss_spec
from distill.objective import Objective
from distill.schedule import Schedule, ScheduleError, parse_schedule

from .helpers import SMOKE, raises_with


@pytest.mark.parametrize("f", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_schedules_follow_their_formulas(f):
    assert Schedule("linear", 4.0, 1.0).at(f) == pytest.approx(4.0 - 3.0 * f)
    # Half a cosine period from 4 down to 1: 1 + 3 (1 + cos(pi f)) / 2.
    assert Schedule("cosine", 4.0, 1.0).at(f) == pytest.approx(1.0 + 3.0 * (1 + math.cos(math.pi * f)) / 2)
    assert Schedule("constant", 2.5, 2.5).at(f) == 2.5


def test_cosine_is_flat_at_both_ends_and_halfway_in_the_middle():
    s = Schedule("cosine", 0.0, 1.0)
    assert s.at(0.0) == 0.0 and s.at(1.0) == pytest.approx(1.0) and s.at(0.5) == pytest.approx(0.5)
    assert s.at(0.01) < 0.001 and s.at(-1) == 0.0 and s.at(2) == pytest.approx(1.0)  # clipped to the stage


def test_schedule_specs_are_checked_naming_the_key():
    assert parse_schedule(3, "w") == 3.0
    assert parse_schedule({"schedule": "linear", "from": 1, "to": 0}, "w") == Schedule("linear", 1.0, 0.0)
    assert parse_schedule({"schedule": "constant", "value": 2}, "w") == Schedule("constant", 2.0, 2.0)
    with raises_with(ScheduleError, "w.schedule", "'exp'", "constant, linear, cosine"):
        parse_schedule({"schedule": "exp", "from": 1, "to": 0}, "w")
    with raises_with(ScheduleError, "'value'", "linear", "schedule, from, to"):
        parse_schedule({"schedule": "linear", "from": 1, "value": 0}, "w")
    with raises_with(ScheduleError, "w.to", "None", "a number"):
        parse_schedule({"schedule": "linear", "from": 1}, "w")
    with raises_with(ScheduleError, "'high'", "a number or a schedule"):
        parse_schedule("high", "w")


def test_only_weights_and_float_parameters_take_schedules():
    weight, params, _ = check_loss_spec("kl_div", {"weight": {"schedule": "linear", "from": 1, "to": 0},
                                                   "temperature": {"schedule": "cosine", "from": 4, "to": 1}}, "x")
    assert weight == Schedule("linear", 1.0, 0.0) and params["temperature"] == Schedule("cosine", 4.0, 1.0)
    # `t2` is a switch, not a number.
    with raises_with(LossError, "x.t2", "only the weight and numeric parameters"):
        check_loss_spec("kl_div", {"t2": {"schedule": "linear", "from": 1, "to": 0}}, "x")


def test_objective_reads_weight_and_temperature_at_the_stage_fraction():
    torch.manual_seed(0)
    zs, zt = torch.randn(3, 4), torch.randn(3, 4)
    s, t = Record(zs, torch.ones(3, 2)), Record(zt, torch.ones(3, 2))
    obj = Objective({"soft_cross_entropy": {"weight": {"schedule": "linear", "from": 2.0, "to": 0.0},
                                            "temperature": {"schedule": "linear", "from": 3.0, "to": 1.0}}})
    for f in (0.0, 0.25, 1.0):
        temp, weight = 3.0 - 2.0 * f, 2.0 - 2.0 * f
        p_t = torch.softmax(zt / temp, -1)
        expect = weight * -(p_t * torch.log_softmax(zs / temp, -1)).sum(-1).mean()
        total, parts = obj(s, t, {}, LossContext([], fraction=f))
        torch.testing.assert_close(total, expect)
        assert obj.scheduled(f) == pytest.approx({"soft_cross_entropy.weight": weight,
                                                  "soft_cross_entropy.temperature": temp})


def test_config_refuses_a_bad_schedule_with_its_dotted_key():
    with raises_with(ScheduleError, "`stages.1.losses.soft_cross_entropy.weight.schedule`", "'step'",
                     "constant, linear, cosine"):
        load_config(SMOKE, ["stages.1.losses.soft_cross_entropy.weight={schedule: step, from: 1, to: 0}"])
    with raises_with(ScheduleError, "`stages.1.losses.soft_cross_entropy.temperature.from`", "'hot'", "a number"):
        load_config(SMOKE, ["stages.1.losses.soft_cross_entropy.temperature={schedule: linear, from: hot, to: 1}"])


def test_evaluation_steps_per_epoch_or_every_n_and_at_the_end():
    from distill.trainer import evaluation_steps

    assert evaluation_steps(8, 2, None) == [8, 16]
    assert evaluation_steps(8, 2, 3) == [3, 6, 9, 12, 15, 16]
    assert evaluation_steps(8, 2, 8) == [8, 16]  # the stage's last step is not evaluated twice
    assert evaluation_steps(5, 1, 50) == [5]  # a stage shorter than eval_every still ends with an evaluation
