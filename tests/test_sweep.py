"""Sweeps: expansion of variants x grid x seeds, sharding, skipping finished runs, resuming and recording
failures."""

import json

import pytest

import distill.lab.run
from distill.config import ConfigError
from distill.lab.sweep import expand, parse_grid, read_plan, run_plans, shard, write_plan

from .helpers import SMOKE, assert_facts, raises_with


@pytest.fixture
def sweep_config(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text(f"""
extends: {SMOKE}
name: sw
variants:
  a: []
  b: ["stages.0.epochs=2"]
seeds: [1, 2]
sweep:
  grid: {{stages.1.lr: [0.1, 0.2]}}
  reference: b
student: {{init: "folder-{{variant}}-{{seed}}"}}
""")
    return f


def test_expansion_is_variants_times_grid_times_seeds(sweep_config, tmp_path):
    plans = expand(sweep_config, out_root=tmp_path / "runs")
    assert len(plans) == 2 * 2 * 2
    labels = [(p.variant, p.seed) for p in plans]
    assert labels[:4] == [("a,stages.1.lr=0.1", 1), ("a,stages.1.lr=0.1", 2), ("a,stages.1.lr=0.2", 1),
                          ("a,stages.1.lr=0.2", 2)]
    for p in plans:
        assert p.config.seed == p.seed
        assert p.config.stages[1].lr == p.settings["stages.1.lr"]
        assert p.config.stages[0].epochs == (2 if p.variant.startswith("b,") else 1)
        assert p.out == tmp_path / "runs" / p.variant / f"seed{p.seed}"
        # `{variant}` is the variant's own name (not the grid label), `{seed}` the seed.
        assert p.config.student.init == f"folder-{p.variant.split(',')[0]}-{p.seed}"
        assert not p.config.variants and not p.config.seeds and not p.config.sweep.grid


def test_command_line_grid_and_seeds_replace_the_configs(sweep_config, tmp_path):
    # A --grid key replaces the same key of the config's sweep.grid; a new key multiplies; --seeds replaces seeds.
    plans = expand(sweep_config, ["variants={only: []}", "sweep.reference=only"], tmp_path,
                   parse_grid(["stages.1.lr=0.5", "stages.0.epochs=1,3"]), seeds=[7])
    assert [(p.variant, p.seed, p.config.stages[1].lr, p.config.stages[0].epochs) for p in plans] == [
        ("only,stages.1.lr=0.5,stages.0.epochs=1", 7, 0.5, 1), ("only,stages.1.lr=0.5,stages.0.epochs=3", 7, 0.5, 3)]


def test_grid_and_variant_errors_name_the_problem(sweep_config, tmp_path):
    with raises_with(ConfigError, "--grid", "`stages.1.lr`", "KEY=V1,V2"):
        parse_grid(["stages.1.lr"])
    with raises_with(ConfigError, "unknown key", "`stages.1.lrr`"):
        expand(sweep_config, [], tmp_path, parse_grid(["stages.1.lrr=1,2"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(sweep_config.read_text().replace("reference: b", "reference: c"))
    with raises_with(ConfigError, str(bad), "`sweep.reference`", "'c'", "['a', 'b']"):
        expand(bad)


def test_shards_cover_every_run_exactly_once(sweep_config, tmp_path):
    plans = expand(sweep_config, out_root=tmp_path)
    for n in (1, 3, 8, 11):
        parts = [shard(plans, n, i) for i in range(n)]
        outs = [p.out for part in parts for p in part]
        assert sorted(outs) == sorted(p.out for p in plans)
    with raises_with(ConfigError, "--shard-index 2", "--num-shards 2"):
        shard(plans, 2, 2)


def test_finished_runs_are_skipped_unfinished_resumed_and_failures_recorded(sweep_config, tmp_path, monkeypatch):
    from distill.config import dump_yaml

    plans = expand(sweep_config, out_root=tmp_path)[:4]
    write_plan(tmp_path, sweep_config, plans, "b")
    plans[0].out.mkdir(parents=True)
    (plans[0].out / "run.json").write_text("{}")
    (plans[0].out / "metrics.json").write_text("{}")  # finished
    plans[1].out.mkdir(parents=True)
    (plans[1].out / "run.json").write_text("{}")  # interrupted
    (plans[1].out / "config.yaml").write_text(dump_yaml(plans[1].config))
    calls = []

    def fake_run(cfg, out, resume=False, labels=None, log=print, command=None):
        calls.append((out, resume, labels, command))
        if out == plans[2].out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "run.json").write_text("{}")  # it had started
            raise RuntimeError("disk on fire")
        (out / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{}")

    monkeypatch.setattr(distill.lab.run, "run_experiment", fake_run)
    failed = run_plans(plans, log=lambda *_: None, command="distill sweep x.yaml")
    assert [c[0] for c in calls] == [p.out for p in plans[1:]]
    assert {c[3] for c in calls} == {"distill sweep x.yaml"}  # each run records the sweep's command
    assert [c[1] for c in calls] == [True, False, False]
    assert calls[0][2] == {"variant": plans[1].variant, "stages.1.lr": 0.1}
    assert failed == [plans[2]]
    assert "disk on fire" in json.loads((plans[2].out / "failed.json").read_text())["error"]
    assert "RuntimeError" in (plans[2].out / "failed.log").read_text()
    assert [p.state for p in plans] == ["finished", "finished", "failed", "finished"]
    # Running the sweep again only retries the failed run, resuming it.
    calls.clear()
    assert run_plans(plans, log=lambda *_: None) == [plans[2]]
    assert [(c[0], c[1]) for c in calls] == [(plans[2].out, True)]
    plan = read_plan(tmp_path)
    assert plan["reference"] == "b" and [r["folder"] for r in plan["runs"]] == [
        str(p.out.relative_to(tmp_path)) for p in plans]


def test_a_run_finished_with_another_config_is_neither_skipped_nor_redone(sweep_config, tmp_path, monkeypatch):
    from distill.config import dump_yaml

    plans = expand(sweep_config, out_root=tmp_path)[:2]
    for p in plans:
        p.out.mkdir(parents=True)
        (p.out / "run.json").write_text("{}")
        (p.out / "metrics.json").write_text('{"kept": true}')
        (p.out / "config.yaml").write_text(dump_yaml(p.config))
    other = expand(sweep_config, ["stages.0.epochs=7"], out_root=tmp_path)[1].config
    (plans[1].out / "config.yaml").write_text(dump_yaml(other))  # the config was edited since
    monkeypatch.setattr(distill.lab.run, "run_experiment", lambda *a, **k: pytest.fail("must not run"))
    said = []
    assert run_plans(plans, log=said.append) == [plans[1]]
    assert "finished earlier" in said[0]
    assert_facts(said[1], str(plans[1].out), "a different config", "['stages']", "rename the experiment")
    assert json.loads((plans[1].out / "metrics.json").read_text()) == {"kept": True}


def test_a_run_that_failed_before_it_started_is_retried_afresh(tmp_path, capsys):
    """A run refused by its checks (here: a data file not there yet) leaves no run folder to resume; once the
    cause is fixed, the next sweep runs it from the start instead of failing on "not a run folder"."""
    from distill.lab.cli import main

    data = tmp_path / "data"
    data.mkdir()
    rows = "text\tlabel\n" + "".join(f"{w} day {i}\t{'pos' if w == 'good' else 'neg'}\n"
                                      for i in range(16) for w in ("good", "bad"))
    (data / "dev.tsv").write_text(rows)
    cfg = tmp_path / "late.yaml"
    cfg.write_text(f"extends: {SMOKE}\nname: late\nseeds: [1]\n"
                   f"task: {{name: mine, source: csv, path: {data}, train_file: train.tsv, dev_file: dev.tsv}}\n"
                   "stages: [{name: intermediate, drop: true},\n"
                   "         {name: prediction, epochs: 1, lr: 0.001, batch_size: 32, losses: {hard_ce: 1}}]\n")
    out = tmp_path / "runs"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 1
    run = out / "main" / "seed1"
    assert "data file not found" in (run / "failed.json").read_text() and not (run / "run.json").exists()
    (data / "train.tsv").write_text(rows)
    capsys.readouterr()
    assert main(["sweep", str(cfg), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (run / "metrics.json").exists() and not (run / "failed.json").exists()


def test_dry_run_lists_every_run_with_its_state_and_writes_nothing(sweep_config, tmp_path, capsys):
    from distill.lab.cli import main

    out = tmp_path / "runs"
    (out / "a,stages.1.lr=0.1" / "seed1").mkdir(parents=True)  # started (no run.json yet): still `missing`
    done = out / "b,stages.1.lr=0.2" / "seed2"
    done.mkdir(parents=True)
    for name in ("config.yaml", "run.json", "metrics.json"):
        (done / name).write_text("{}")
    before = sorted(p for p in out.rglob("*"))
    assert main(["sweep", str(sweep_config), "--out", str(out), "--dry-run", "--grid", "stages.1.lr=0.1,0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{sweep_config}: 8 runs under {out}"
    rows = [line.split() for line in lines[1:]]
    assert [(r[1], r[3]) for r in rows] == [(p.variant, str(p.seed)) for p in expand(sweep_config, [], out, parse_grid(
        ["stages.1.lr=0.1,0.2"]))]
    states = {(r[1], r[3]): r[0] for r in rows}
    assert states[("b,stages.1.lr=0.2", "2")] == "finished" and states[("a,stages.1.lr=0.1", "1")] == "missing"
    assert sorted(p for p in out.rglob("*")) == before  # no sweep.json, no run folder
    # A bad grid value is refused before anything is listed.
    assert main(["sweep", str(sweep_config), "--dry-run", "--grid", "stages.1.lr=fast"]) == 2
