"""Numbers as people write them, from every place a config value comes from: files, `extends:`, `--set`, `--grid`,
sweep variants and `sweep.grid`. YAML 1.1 (PyYAML) reads `2e-5` (no dot) and `1e+3`-less `5.0e5` (no exponent
sign) as strings; learning rates are written that way throughout the field."""

import math

import pytest

from distill.config import ConfigError, dump_yaml, from_dict, load_config, yaml_load
from distill.lab.sweep import expand, parse_grid

from .helpers import SMOKE, raises_with

# As written -> the number meant. YAML 1.2 and JSON read every one of these as a number.
SPELLINGS = [("2e-5", 2e-5), ("1E-4", 1e-4), ("5.0e-5", 5e-5), ("5.0e5", 5e5), ("3e+2", 300.0), ("-1e-3", -1e-3),
             ("+2.5E-1", 0.25), (".5", 0.5), ("1.", 1.0), ("1_000.5", 1000.5)]
IDS = [s for s, _ in SPELLINGS]


def _config(tmp_path, body: str, name: str = "c.yaml"):
    f = tmp_path / name
    f.write_text(f"extends: {SMOKE}\n{body}")
    return f


@pytest.mark.parametrize(("text", "value"), SPELLINGS, ids=IDS)
def test_a_config_file_reads_numbers_as_written(tmp_path, text, value):
    cfg = load_config(_config(tmp_path, f"train: {{log_every: 2}}\nstages:\n  - {{name: intermediate, lr: {text}, "
                                        f"losses: {{hard_ce: 1}}}}\n"))
    assert cfg.stages[0].lr == pytest.approx(value, rel=1e-12) and isinstance(cfg.stages[0].lr, float)


@pytest.mark.parametrize(("text", "value"), SPELLINGS, ids=IDS)
def test_set_grid_variants_and_extends_read_numbers_as_written(tmp_path, text, value):
    assert load_config(SMOKE, [f"stages.1.lr={text}"]).stages[1].lr == pytest.approx(value)
    # A child's number over its parent's, through `extends:`.
    _config(tmp_path, f"stages:\n  - {{name: intermediate, lr: {text}, losses: {{hard_ce: 1}}}}\n", "parent.yaml")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: parent.yaml\nteacher: {{finetune: {{lr: {text}}}}}\n")
    cfg = load_config(child)
    assert cfg.stages[0].lr == pytest.approx(value) and cfg.teacher.finetune.lr == pytest.approx(value)
    # --grid on the command line, and a config's sweep.grid and variants.
    assert parse_grid([f"stages.1.lr={text},1e-4"]) == {"stages.1.lr": [pytest.approx(value), 1e-4]}
    sweep = _config(tmp_path, f"variants: {{v: ['stages.0.lr={text}']}}\nsweep: {{grid: {{stages.1.lr: [{text}]}}}}\n",
                    "sweep.yaml")
    (plan,) = expand(sweep, out_root=tmp_path / "runs")
    assert plan.config.stages[0].lr == pytest.approx(value) and plan.config.stages[1].lr == pytest.approx(value)


def test_the_manual_sweep_example_expands(tmp_path):
    # The manual's own example (docs/experiments.md), which stopped with "`stages.1.lr` = '1e-4': expected a number".
    plans = expand(SMOKE, out_root=tmp_path, grid=parse_grid(["stages.1.lr=1e-4,5e-5", "stages.0.epochs=1,2"]))
    assert [(p.config.stages[1].lr, p.config.stages[0].epochs) for p in plans] == [
        (1e-4, 1), (1e-4, 2), (5e-5, 1), (5e-5, 2)]
    assert plans[0].variant == "stages.1.lr=0.0001,stages.0.epochs=1"


def test_integers_as_written():
    # YAML's digit separators, and a whole number in scientific notation where a count is expected.
    cfg = load_config(SMOKE, ["task.train_limit=1_000", "task.dev_limit=1e3", "task.test_limit=2.5e2",
                              "stages.0.epochs=2.0"])
    assert (cfg.task.train_limit, cfg.task.dev_limit, cfg.task.test_limit, cfg.stages[0].epochs) == (1000, 1000, 250, 2)
    assert all(isinstance(v, int) for v in (cfg.task.dev_limit, cfg.task.test_limit, cfg.stages[0].epochs))
    with raises_with(ConfigError, "`task.max_length`", "1.5", "an integer"):
        load_config(SMOKE, ["task.max_length=1.5"])
    with raises_with(ConfigError, "`task.max_length`", "1e+300", "an integer"):
        load_config(SMOKE, ["task.max_length=1e300"])


def test_a_quoted_number_is_a_number_where_a_number_is_expected():
    assert load_config(SMOKE, ["stages.1.lr='2e-5'"]).stages[1].lr == 2e-5
    assert load_config(SMOKE, ['stages.1.lr=" 1E-4 "']).stages[1].lr == 1e-4


@pytest.mark.parametrize("text", ["fast", "2e-5x", "e-5", "1e", "2e-5.0", "0x1p-3", "1e-5e"])
def test_a_string_that_is_not_a_number_still_gets_the_clear_error(text):
    with raises_with(ConfigError, "`stages.1.lr`", f"'{text}'", "a number"):
        load_config(SMOKE, [f"stages.1.lr='{text}'"])


def test_thousands_separators_get_a_hint():
    with raises_with(ConfigError, "`task.train_limit`", "'1,000'", "an integer", "1000 or 1_000"):
        load_config(SMOKE, ["task.train_limit='1,000'"])


def test_strings_that_only_look_like_numbers_stay_strings_where_a_string_is_expected():
    # A name or path is never parsed as a number unless YAML 1.1 already did (then a clear type error, as before).
    assert yaml_load("a: 1e5x\nb: e5\nc: 1.2.3\nd: '2e-5'\ne: v1e3\n") == {
        "a": "1e5x", "b": "e5", "c": "1.2.3", "d": "2e-5", "e": "v1e3"}
    assert yaml_load("a: .inf\nb: -.inf\nc: 0x1F\nd: 0o17\n") == {"a": math.inf, "b": -math.inf, "c": 31, "d": "0o17"}


def test_a_saved_config_reads_back_equal():
    cfg = load_config(SMOKE, ["stages.1.lr=2e-5", "stages.0.lr=1E-4"])
    again = from_dict(yaml_load(dump_yaml(cfg)))
    assert again == cfg


def test_the_loader_stays_safe():
    # Numbers are added to PyYAML's safe loader; tags that would construct Python objects are still refused.
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml_load("a: !!python/object/apply:os.system ['true']\n")
