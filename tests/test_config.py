import pytest

from distill.config import ConfigError, apply_override, load_config
from distill.losses import LossError

from .helpers import ROOT


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
    with pytest.raises(ConfigError) as e:
        load_config(smoke_config, ["stages.0.epoch=3"])
    msg = str(e.value)
    assert "unknown key `stages.0.epoch`" in msg and "epochs" in msg and "layer_map" in msg
    assert str(smoke_config) in msg


def test_wrong_type_names_dotted_path(smoke_config):
    with pytest.raises(ConfigError, match=r"`stages.1.lr` = 'fast': expected a number"):
        load_config(smoke_config, ["stages.1.lr=fast"])
    with pytest.raises(ConfigError, match=r"`task.max_length` = 1.5: expected an integer"):
        load_config(smoke_config, ["task.max_length=1.5"])
    with pytest.raises(ConfigError, match=r"`train.precision` = 'fp8': expected one of"):
        load_config(smoke_config, ["train.precision=fp8"])


def test_missing_required_key(tmp_path):
    f = write(tmp_path / "c.yaml", "name: x\nteacher: {}\nstudent: {}\n")
    with pytest.raises(ConfigError, match="missing required key `stages`"):
        load_config(f)


def test_overrides_parse_yaml_values(smoke_config):
    cfg = load_config(smoke_config, ["stages.0.epochs=3", "task.train_limit=null",
                                     "stages.0.layer_map=[[1, 2], [2, 4]]"])
    assert cfg.stages[0].epochs == 3
    assert cfg.task.train_limit is None
    assert cfg.stages[0].layer_map == [[1, 2], [2, 4]]
    with pytest.raises(ConfigError, match="not an index"):
        load_config(smoke_config, ["stages.7.epochs=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
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
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)


def test_unknown_loss_and_parameter_are_rejected(smoke_config):
    with pytest.raises(LossError, match="unknown loss 'hiden_mse'.*registered losses"):
        load_config(smoke_config, ["stages.0.losses={hiden_mse: 1}"])
    with pytest.raises(LossError, match="unknown parameter 'tau'"):
        load_config(smoke_config, ["stages.1.losses={kl_div: {tau: 2}}"])


def test_unknown_student_kind(smoke_config):
    with pytest.raises(ConfigError, match="student.kind.*expected one of 'tinybert'"):
        load_config(smoke_config, ["student.kind=resnet"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    f = write(tmp_path / "bad.yaml", "name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_yaml_booleans_are_read_back_as_the_option_they_spell():
    # YAML 1.1 reads `precision: no` as False; the option list says which string was meant.
    smoke = ROOT / "experiments" / "smoke.yaml"
    assert load_config(smoke, ["train.precision=no"]).train.precision == "no"
    with pytest.raises(ConfigError, match=r"`train.precision` = True: expected one of 'auto' \| 'no'"):
        load_config(smoke, ["train.precision=yes"])


def test_expected_effects_name_a_variant_and_a_number():
    tang = ROOT / "experiments" / "ablations" / "tweets" / "tang.yaml"
    cfg = load_config(tang, ["sweep.expected={hard: {delta: -0.04, source: Tang et al. Table 1}}"])
    assert cfg.sweep.expected["hard"]["delta"] == -0.04
    with pytest.raises(ConfigError, match=r"sweep.expected.hrad`: not a variant; expected one of"):
        load_config(tang, ["sweep.expected={hrad: {delta: -0.04}}"])
    with pytest.raises(ConfigError, match=r"sweep.expected.hard.delta` = 'big': expected a number"):
        load_config(tang, ["sweep.expected={hard: {delta: big}}"])
    with pytest.raises(ConfigError, match=r"expected \{delta: <number>, source: <text>\}"):
        load_config(tang, ["sweep.expected={hard: {size: 1}}"])
