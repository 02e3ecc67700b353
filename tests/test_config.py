"""distill/config.py: loading, overriding and validating experiment configs, and the config errors the command line
refuses with (each naming the file, the key, the value and what was expected)."""

import pytest

from distill.config import ConfigError, apply_override, load_config
from distill.losses import LossError

from .helpers import ROOT, assert_facts, raises_with, refused, smoke_with


def write(path, text):
    path.write_text(text)
    return path


def test_every_shipped_experiment_and_variant_validates():
    from distill.lab.sweep import expand

    files = sorted((ROOT / "experiments").rglob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        cfg = load_config(f)
        assert cfg.stages
        for plan in expand(f, []):
            assert plan.config.stages and not plan.config.variants


def test_unknown_key_lists_valid_keys(smoke_config):
    with raises_with(ConfigError, "`stages.0.epoch`", "epochs", "layer_map", str(smoke_config)):
        load_config(smoke_config, ["stages.0.epoch=3"])


def test_wrong_type_names_dotted_path(smoke_config):
    with raises_with(ConfigError, "`stages.1.lr`", "'fast'", "a number"):
        load_config(smoke_config, ["stages.1.lr=fast"])
    with raises_with(ConfigError, "`task.max_length`", "1.5", "an integer"):
        load_config(smoke_config, ["task.max_length=1.5"])
    with raises_with(ConfigError, "`train.precision`", "'fp8'", "'auto'", "'bf16'"):
        load_config(smoke_config, ["train.precision=fp8"])


def test_missing_required_key(tmp_path):
    f = write(tmp_path / "c.yaml", "name: x\nteacher: {}\nstudent: {}\n")
    with raises_with(ConfigError, "`stages`", "required"):
        load_config(f)


def test_overrides_parse_yaml_values(smoke_config):
    cfg = load_config(smoke_config, ["stages.0.epochs=3", "task.train_limit=null",
                                     "stages.0.layer_map=[[1, 2], [2, 4]]"])
    assert cfg.stages[0].epochs == 3
    assert cfg.task.train_limit is None
    assert cfg.stages[0].layer_map == [[1, 2], [2, 4]]
    with raises_with(ConfigError, "`stages.7`", "not an index"):
        load_config(smoke_config, ["stages.7.epochs=1"])
    with raises_with(ConfigError, "`stages`", "KEY=VALUE"):
        apply_override({}, "stages")


def test_extends_merges_mappings_and_replaces_other_lists(smoke_config, tmp_path):
    # `stages` merge by name: tests/test_config_extends.py
    child = write(tmp_path / "child.yaml", "extends: smoke.yaml\nname: child\ntask: {max_length: 16}\n"
                  "seeds: [7]\n")
    write(tmp_path / "smoke.yaml", smoke_config.read_text() + "seeds: [1, 2]\n")
    cfg = load_config(child)
    assert cfg.name == "child"
    assert cfg.task.max_length == 16 and cfg.task.train_limit == 256  # merged
    assert cfg.seeds == [7]  # replaced
    loop = write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with raises_with(ConfigError, "cycle", str(loop), str(tmp_path / "b.yaml")):
        load_config(loop)


def test_unknown_loss_and_parameter_are_rejected(smoke_config):
    with raises_with(LossError, "`stages.0.losses.hiden_mse`", "'hiden_mse'", "hidden_mse"):
        load_config(smoke_config, ["stages.0.losses={hiden_mse: 1}"])
    with raises_with(LossError, "`stages.1.losses.kl_div`", "'tau'", "temperature"):
        load_config(smoke_config, ["stages.1.losses={kl_div: {tau: 2}}"])


def test_unknown_student_kind(smoke_config):
    with raises_with(ConfigError, "`student.kind`", "'resnet'", "'tinybert'"):
        load_config(smoke_config, ["student.kind=resnet"])


def test_bad_yaml_and_missing_file(tmp_path):
    with raises_with(ConfigError, "not found", str(tmp_path / "nope.yaml")):
        load_config(tmp_path / "nope.yaml")
    f = write(tmp_path / "bad.yaml", "name: [unclosed\n")
    with raises_with(ConfigError, f"{f}:2", "not valid YAML"):
        load_config(f)


def test_yaml_booleans_are_read_back_as_the_option_they_spell():
    # YAML 1.1 reads `precision: no` as False; the option list says which string was meant.
    smoke = ROOT / "experiments" / "smoke.yaml"
    assert load_config(smoke, ["train.precision=no"]).train.precision == "no"
    with raises_with(ConfigError, "`train.precision`", "True", "'auto'", "'no'"):
        load_config(smoke, ["train.precision=yes"])


def test_expected_effects_name_a_variant_and_a_number():
    tang = ROOT / "experiments" / "ablations" / "tweets" / "tang.yaml"
    cfg = load_config(tang, ["sweep.expected={hard: {delta: -0.04, source: Tang et al. Table 1}}"])
    assert cfg.sweep.expected["hard"]["delta"] == -0.04
    with raises_with(ConfigError, "`sweep.expected.hrad`", "not a variant", "'hard'"):
        load_config(tang, ["sweep.expected={hrad: {delta: -0.04}}"])
    with raises_with(ConfigError, "`sweep.expected.hard.delta`", "'big'", "a number"):
        load_config(tang, ["sweep.expected={hard: {delta: big}}"])
    with raises_with(ConfigError, "`sweep.expected.hard`", "{delta: <number>, source: <text>}"):
        load_config(tang, ["sweep.expected={hard: {size: 1}}"])


# Through the command line (`distill check`): body -> facts the error carries besides the file's path.
CONFIG_CASES = {
    "unknown key": ("stages:\n  - {name: intermediate, epoch: 2}\n", ["`stages.0.epoch`", "`stages.0`", "epochs"]),
    "wrong type": ("task: {max_length: long}\n", ["`task.max_length`", "'long'", "an integer"]),
    # A child's stages merge into its parent's by name (distill/config.py).
    "stage without a name": ("stages:\n  - {epochs: 1, losses: {hard_ce: 1}}\n",
                             ["`stages.0`", "no `name`", "intermediate, prediction"]),
    "unknown loss": ("stages:\n  - {name: x, losses: {atention_mse: 1}}\n", ["'atention_mse'", "attention_mse"]),
    "unknown student": ("student: {kind: transformer}\n", ["`student.kind`", "'transformer'", "'tinybert'"]),
    # Each stage's kept evaluation and its history are filed under its name: two stages of one name would mix.
    "repeated stage name": ("stages:\n  - {name: x, losses: {hard_ce: 1}}\n  - {name: x, losses: {hard_ce: 1}}\n",
                            ["`stages.1.name`", "'x'", "`stages.0`", "unique"]),
    "bad probability": ("augment: {tang: {p_mask: 1.5}}\n", ["`augment.tang.p_mask`", "1.5", "[0, 1]"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors(case, tmp_path, capsys):
    body, facts = CONFIG_CASES[case]
    f = smoke_with(tmp_path, body, "bad.yaml")
    err = refused(["check", str(f)], capsys)
    assert_facts(err, str(f), *facts)
