"""`extends:`: a child's `stages` merge into its parent's by name (distill/config.py, `merge_stages`)."""

import pytest

from distill.config import ConfigError, load_config, load_raw

from .helpers import raises_with

PARENT = """name: parent
teacher: {checkpoint: random, tokenizer: packaged:all-minilm-l6-v2, random: {layers: 2}}
student: {kind: tinybert, layers: 2}
stages:
  - name: intermediate
    epochs: 2
    lr: 1.0e-3
    data: augmented
    losses: {embedding_mse: 1, hidden_mse: 1}
  - name: prediction
    epochs: 3
    losses: {soft_cross_entropy: 1, hard_ce: 0.5}
"""


@pytest.fixture
def parent(tmp_path):
    (tmp_path / "parent.yaml").write_text(PARENT)
    return tmp_path


def child(folder, stages: str, name: str = "child.yaml", extends: str = "parent.yaml"):
    path = folder / name
    path.write_text(f"extends: {extends}\nname: {path.stem}\nstages:\n{stages}")
    return path


def test_a_stage_of_the_same_name_overrides_only_the_keys_it_gives(parent):
    cfg = load_config(child(parent, "  - {name: intermediate, epochs: 50}\n"))
    first = cfg.stages[0]
    assert (first.name, first.epochs) == ("intermediate", 50)
    assert first.lr == 1.0e-3 and first.data == "augmented"  # inherited
    assert set(first.losses) == {"embedding_mse", "hidden_mse"}
    assert [s.name for s in cfg.stages] == ["intermediate", "prediction"]
    assert cfg.stages[1].epochs == 3


def test_a_childs_losses_replace_the_parents_whole(parent):
    cfg = load_config(child(parent, "  - {name: prediction, losses: {kl_div: 1}}\n"))
    assert set(cfg.stages[1].losses) == {"kl_div"}  # soft_cross_entropy and hard_ce are not kept
    assert cfg.stages[1].epochs == 3


def test_parent_order_is_kept_and_new_stages_follow_in_the_childs_order(parent):
    cfg = load_config(child(parent, "  - {name: extra2, losses: {hard_ce: 1}}\n"
                                    "  - {name: prediction, epochs: 1}\n"
                                    "  - {name: extra1, losses: {hard_ce: 1}}\n"
                                    "  - {name: intermediate, lr: 2.0e-4}\n"))
    assert [s.name for s in cfg.stages] == ["intermediate", "prediction", "extra2", "extra1"]
    assert cfg.stages[0].lr == 2.0e-4 and cfg.stages[1].epochs == 1


def test_drop_removes_a_parent_stage(parent):
    cfg = load_config(child(parent, "  - {name: intermediate, drop: true}\n"
                                    "  - {name: train, losses: {hard_ce: 1}}\n"))
    assert [s.name for s in cfg.stages] == ["prediction", "train"]


def test_overrides_index_the_merged_stages(parent):
    path = child(parent, "  - {name: intermediate, drop: true}\n  - {name: train, losses: {hard_ce: 1}}\n")
    cfg = load_config(path, ["stages.1.epochs=7", "stages.0.lr=1e-4"])
    assert (cfg.stages[1].name, cfg.stages[1].epochs) == ("train", 7)
    assert (cfg.stages[0].name, cfg.stages[0].lr) == ("prediction", 1.0e-4)


def test_extends_chains_merge_at_each_link(parent):
    child(parent, "  - {name: intermediate, epochs: 10}\n  - {name: prediction, drop: true}\n", "middle.yaml")
    leaf = child(parent, "  - {name: intermediate, lr: 3.0e-4}\n  - {name: prediction, losses: {hard_ce: 1}}\n",
                 "leaf.yaml", extends="middle.yaml")
    stages = load_raw(leaf)["stages"]
    # the middle file dropped `prediction`, so the leaf's `prediction` is a new stage, with no inherited epochs
    assert [s["name"] for s in stages] == ["intermediate", "prediction"]
    assert stages[0] == {"name": "intermediate", "epochs": 10, "lr": 3.0e-4, "data": "augmented",
                         "losses": {"embedding_mse": 1, "hidden_mse": 1}}
    assert stages[1] == {"name": "prediction", "losses": {"hard_ce": 1}}
    assert "drop" not in str(stages)


def test_a_child_stage_without_a_name_is_refused(parent):
    path = child(parent, "  - {epochs: 5}\n")
    with raises_with(ConfigError, "stages.0", "no `name`", "intermediate, prediction", str(path)):
        load_config(path)


def test_a_name_given_twice_in_one_child_is_refused(parent):
    with raises_with(ConfigError, "stages.1.name", "'prediction'", "stages.0"):
        load_config(child(parent, "  - {name: prediction, epochs: 1}\n  - {name: prediction, epochs: 2}\n"))


@pytest.mark.parametrize("entry, facts", [
    ("{name: prediction, drop: true, epochs: 2}", ["stages.0", "drop: true", "epochs"]),
    ("{name: prediction, drop: yes please}", ["stages.0", "drop: true", "'yes please'"]),
    ("{name: predicton, drop: true}", ["stages.0", "'predicton'", "no such stage", "intermediate, prediction"]),
])
def test_drop_misuse_names_the_entry_and_what_is_expected(parent, entry, facts):
    with raises_with(ConfigError, *facts):
        load_config(child(parent, f"  - {entry}\n"))


def test_drop_without_a_parent_stage_list_is_refused(parent):
    lone = parent / "lone.yaml"
    lone.write_text(PARENT + "  - {name: intermediate, drop: true}\n")
    with raises_with(ConfigError, "stages.2", "extends no file"):
        load_config(lone)
    (parent / "bare.yaml").write_text("name: bare\n")
    with raises_with(ConfigError, "stages.0", "bare.yaml has no `stages`"):
        load_config(child(parent, "  - {name: x, drop: true}\n", extends="bare.yaml"))


def test_shipped_recipes_state_only_what_differs_from_the_stages_they_extend():
    from distill.config import yaml_load

    from .helpers import ROOT

    restated = []
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        raw = yaml_load(path.read_text())
        if not raw.get("extends") or not raw.get("stages"):
            continue
        inherited = {s["name"]: s for s in load_raw(path.parent / raw["extends"]).get("stages", [])}
        for st in raw["stages"]:
            same = [k for k, v in st.items() if k != "name" and inherited.get(st["name"], {}).get(k, object()) == v]
            restated += [f"{path.relative_to(ROOT)}: {st['name']}.{k}" for k in same]
    assert not restated


def test_a_change_of_kind_keeps_what_both_kinds_read(tmp_path):
    from distill.students.distilbert import DistilBertStudentConfig

    from .helpers import SMOKE

    # A sweep over `student.kind` (or a child naming another kind) compares the kinds at the same settings: the
    # keys TinyBERT and DistilBERT share (init, layers, init_layers) carry over, TinyBERT's own (hidden...) do not.
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {SMOKE}\nstudent: {{kind: tinybert, init: teacher, layers: 1, init_layers: [2], "
                    "hidden: 32}\n")
    want = DistilBertStudentConfig(kind="distilbert", init="teacher", layers=1, init_layers=[2])
    assert load_config(base, ["student.kind=distilbert"]).student == want
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nstudent: {kind: distilbert}\n")
    assert load_config(tmp_path / "child.yaml").student == want
    # A BiLSTM shares no setting with a transformer (its `hidden` is LSTM units, `init` no checkpoint of it).
    (tmp_path / "lstm.yaml").write_text("extends: base.yaml\nstudent: {kind: bilstm}\n")
    s = load_config(tmp_path / "lstm.yaml").student
    assert (s.kind, s.init, s.hidden) == ("bilstm", "scratch", 150)
