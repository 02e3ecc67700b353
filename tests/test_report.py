"""`distill report` on hand-made run folders: known metrics -> known table, including mean/std, the change
against the reference, a missing run, a failed run and an unfinished one."""

import csv
import io
import json
import math

import numpy as np
import pytest

from distill.lab.cli import main
from distill.lab.report import ReportError, build, to_csv, to_json, to_latex, to_markdown, write_report

from .helpers import raises_with

TEACHER = {"dev": {"macro_f1": 0.9, "accuracy": 0.95}, "test": {"macro_f1": 0.88, "accuracy": 0.9},
           "parameters": 100_000_000}


def finished_run(folder, variant, seed, f1_dev, f1_test, params=10_000_000, speed=200.0, tb=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"name": "exp", "seed": seed, "variant": variant}))
    (folder / "metrics.json").write_text(json.dumps({
        "name": "exp", "main_metric": "macro_f1", "teacher": TEACHER,
        "student": {"dev": {"macro_f1": f1_dev, "accuracy": f1_dev + 0.01, "loss/kl_div": 0.3},
                    "test": {"macro_f1": f1_test, "accuracy": f1_test + 0.01},
                    "parameters": params, "eval_examples_per_s": speed},
        "ratios": {"encoder_compute": 0.25}, "wall_seconds": 90.0}))
    if tb:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(folder / "tb"))
        for step, (loss, f1) in enumerate(tb, 1):
            w.add_scalar("prediction/train/total", loss, step)
            w.add_scalar("prediction/dev/macro_f1", f1, step)
        w.close()


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "exp"
    finished_run(root / "full/seed1", "full", 1, 0.80, 0.70, tb=[(1.0, 0.5), (0.5, 0.8)])
    finished_run(root / "full/seed2", "full", 2, 0.90, 0.74, tb=[(0.8, 0.6), (0.4, 0.9)])
    finished_run(root / "no-att/seed1", "no-att", 1, 0.60, 0.50, speed=100.0)
    (root / "broken/seed1").mkdir(parents=True)
    (root / "broken/seed1/run.json").write_text(json.dumps({"seed": 1, "variant": "broken"}))
    (root / "broken/seed1/failed.json").write_text(json.dumps({"error": "RuntimeError: out of memory"}))
    (root / "slow/seed1").mkdir(parents=True)
    (root / "slow/seed1/run.json").write_text(json.dumps({"seed": 1, "variant": "slow"}))
    plan = {"config": "x.yaml", "reference": "full", "runs": [
        {"variant": v, "seed": s, "settings": {}, "folder": f"{v}/seed{s}"}
        for v, s in [("full", 1), ("full", 2), ("no-att", 1), ("no-att", 2), ("broken", 1), ("slow", 1)]]}
    (root / "sweep.json").write_text(json.dumps(plan))
    return root


def test_means_stds_deltas_and_counts_by_hand(experiment):
    rep = build(experiment)
    assert [r.name for r in rep.rows] == ["full", "no-att", "broken", "slow"]  # the sweep's order
    assert rep.reference == "full" and rep.main == ["dev macro_f1", "test macro_f1"]
    assert "dev loss/kl_div" not in rep.columns
    md = to_markdown(rep)
    lines = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    # full: dev 0.80, 0.90 -> mean 0.85, sample std sqrt(2 * 0.05^2 / 1) = 0.0707; test 0.70, 0.74 -> 0.72, 0.0283
    # 95% t-interval over 2 seeds: mean ± t(0.975, 1) * s / sqrt(2) = 0.85 ± 12.7062 * 0.0707 / 1.4142 = ± 0.6353
    assert ("| full | 2/2 | 0.8500 ± 0.0707 | [0.2147, 1.4853] | ref |  | 0.8600 ± 0.0707 | 0.7200 ± 0.0283 | "
            "[0.4659, 0.9741] | ref |  |") in lines["full"]
    # no-att: one of two seeds finished, no per-example predictions: no interval, Δ = 0.60 - 0.85 untested
    assert "| no-att | 1/2 | 0.6000 | - | -0.2500 | - | 0.6100 | 0.5000 | - | -0.2200 | - |" in lines["no-att"]
    assert lines["no-att"].endswith("| 10.00M | 25.0% | 100 | 1.5 |")  # 90 s per run
    assert "| teacher | - | 0.9000 | - |  |  | 0.9500 | 0.8800 | - |  |  | 0.9000 | 100.00M | 100% | - | - |" in md
    assert "| broken | 0/1 | n/a | - | n/a |  |" in lines["broken"]
    assert "Warning: `no-att` has 1 finished run(s) against the reference's 2" in md
    assert "dev macro_f1: no difference from `full` can be judged (no-att: 1 and 2 run(s) that cannot be paired: " \
        "no spread over seeds to judge against; broken: no finished runs; slow: no finished runs)" in md
    notes = md.split("Not in the means")[1]
    assert "no-att seed 2: never started" in notes
    assert "broken seed 1: failed: RuntimeError: out of memory" in notes
    assert "slow seed 1: unfinished" in notes


def test_csv_and_latex_carry_the_same_numbers(experiment):
    rep = build(experiment)
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    full = next(r for r in rows if r["model"] == "full")
    assert math.isclose(float(full["dev macro_f1 mean"]), 0.85)
    assert math.isclose(float(full["dev macro_f1 std"]), math.sqrt(0.005), rel_tol=1e-5)
    no_att = next(r for r in rows if r["model"] == "no-att")
    assert no_att["dev macro_f1 std"] == "" and no_att["finished"] == "1" and no_att["planned"] == "2"
    assert math.isclose(float(no_att["dev macro_f1 delta"]), -0.25) and no_att["dev macro_f1 p"] == ""
    half = 12.7062 * math.sqrt(0.005) / math.sqrt(2)  # t(0.975, 1) * s / sqrt(n)
    assert math.isclose(float(full["dev macro_f1 ci_low"]), 0.85 - half, rel_tol=1e-4)
    assert next(r for r in rows if r["model"] == "teacher")["parameters"] == "100000000"
    tex = to_latex(rep)
    assert r"0.8500 $\pm$ 0.0707" in tex and r"$\Delta$ dev macro\_f1" in tex and r"\toprule" in tex
    assert "% not in the means: no-att seed 2: never started" in tex


def test_reference_can_be_chosen_and_must_exist(experiment):
    rep = build(experiment, reference="no-att")
    assert "| full | 2/2 | 0.8500 ± 0.0707 | [0.2147, 1.4853] | +0.2500 |" in to_markdown(rep)
    with raises_with(ReportError, "reference variant", "'nope'", "not among the runs", "'full'", "'no-att'"):
        build(experiment, reference="nope")


def test_report_command_writes_every_format_and_the_plots(experiment, tmp_path, capsys):
    assert main(["report", str(experiment), "--format", "csv", "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert printed.startswith("model,finished,planned,")
    assert "warning: `no-att` has 1 finished run(s) against the reference's 2" in captured.err
    for name in ("table.md", "table.csv", "table.tex", "report.json", "ablation.png", "curves.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    for png in ("ablation.png", "curves.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert summary["variants"]["full"]["values"]["dev macro_f1"] == [0.8, 0.9]
    assert len(summary["not_in_means"]) == 3


def test_learning_curves_average_seeds_at_shared_steps(experiment):
    from distill.lab.report import discover, read_curves

    runs = [r for r in discover(experiment) if r.variant == "full"]
    curves = [read_curves(r.folder) for r in runs]
    assert [v for _, v in curves[0]["prediction/dev/macro_f1"]] == pytest.approx([0.5, 0.8])
    assert [s for s, _ in curves[1]["prediction/train/total"]] == [1, 2]


def test_folders_without_a_plan_take_the_variant_from_the_path(tmp_path):
    root = tmp_path / "exp"
    finished_run(root / "a/seed3", None, 3, 0.5, 0.5)
    (root / "a/seed3/run.json").write_text(json.dumps({"seed": 3}))  # an older run.json without the variant
    rep = build(root)
    assert [r.name for r in rep.rows] == ["a"] and rep.rows[0].finished == 1
    (tmp_path / "empty").mkdir()
    with raises_with(ReportError, str(tmp_path / "empty"), "no run folders", "`distill sweep`"):
        build(tmp_path / "empty")
    with raises_with(ReportError, str(tmp_path / "absent"), "no such folder"):
        build(tmp_path / "absent")


def test_general_distillation_runs_report_held_out_losses(tmp_path):
    root = tmp_path / "gen"
    for v, att in (("full", 3.0), ("no-emb", 3.5)):
        d = root / v / "seed42"
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"seed": 42, "variant": v}))
        (d / "metrics.json").write_text(json.dumps({
            "general": True, "main_metric": None, "student": {"parameters": 5_000_000},
            "ratios": {"encoder_compute": 0.4},
            "heldout_after": {"general": {"loss/attention_mse": att, "loss/hidden_mse": 1.0}}}))
    rep = build(root)
    assert rep.lower_is_better and rep.teacher is None
    md = to_markdown(rep)
    assert "| no-emb | 1/1 | 3.5000 | - | +0.5000 | - | 1.0000 |" in md and "lower is better" in md
    _, paths = write_report(root)
    assert paths["ablation_plot"].exists()


def test_curve_panels_skip_a_dev_metric_that_never_moves():
    from distill.lab.report import curve_panels

    run = {"intermediate/train/total": [(1, 9.0), (2, 5.0)], "intermediate/dev/macro_f1": [(2, 0.2)],
           "prediction/train/total": [(1, 1.0)], "prediction/dev/macro_f1": [(1, 0.5), (2, 0.6)]}
    other = {**run, "intermediate/dev/macro_f1": [(2, 0.2)]}
    assert curve_panels({"full": [run], "no-att": [other]}, "macro_f1") == [
        "intermediate/train/total", "prediction/train/total", "prediction/dev/macro_f1"]
    moved = {**run, "intermediate/dev/macro_f1": [(2, 0.3)]}
    assert "intermediate/dev/macro_f1" in curve_panels({"full": [run], "no-att": [moved]}, "macro_f1")
    assert curve_panels({"full": [run]}, None) == ["intermediate/train/total", "prediction/train/total"]


def test_report_command_measures_against_the_reference_given(experiment, tmp_path, capsys):
    # The plan's reference is `full`; --reference makes it `no-att`, so `full` shows +0.25 against it.
    assert main(["report", str(experiment), "--reference", "no-att", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    lines = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ")}
    assert "| full | 2/2 | 0.8500 ± 0.0707 | [0.2147, 1.4853] | +0.2500 |" in lines["full"]
    assert "| no-att | 1/2 | 0.6000 | - | ref |" in lines["no-att"]
    assert json.loads((tmp_path / "r" / "report.json").read_text())["reference"] == "no-att"


def test_p_values_below_the_printed_precision_read_as_a_bound():
    from distill.lab.report import _p

    assert (_p(None), _p(0.0001), _p(0.0004999), _p(0.0005), _p(0.0421)) == ("-", "<0.001", "<0.001", "0.001",
                                                                             "0.042")


def _single_run(folder, seed, f1, **config):
    """A `distill run` folder (named by its start time) whose run.json has no variant, as outside a sweep."""
    finished_run(folder, None, seed, f1, f1 - 0.05)
    (folder / "run.json").write_text(json.dumps({"name": "news", "seed": seed}))
    cfg = {"name": "news", "seed": seed, "task": {"name": "agnews", "max_length": 64},
           "stages": [{"name": "prediction", "lr": config.get("lr", 1e-4)}]}
    (folder / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML


def test_runs_differing_only_in_seed_are_seeds_of_one_variant(tmp_path):
    root = tmp_path / "news"
    _single_run(root / "20261204-101500-seed42", 42, 0.80)
    _single_run(root / "20261204-113000-seed43", 43, 0.82)
    rep = build(root)
    assert [(r.name, r.finished) for r in rep.rows] == [("news", 2)]
    # A third run with another learning rate is another variant, named by what differs.
    _single_run(root / "20261204-120000-seed42", 42, 0.70, lr=5e-5)
    rep = build(root)
    assert sorted((r.name, r.finished) for r in rep.rows) == [("news (stages.0.lr=0.0001)", 2),
                                                             ("news (stages.0.lr=5e-05)", 1)]


def test_published_records_give_the_same_report_without_weights(experiment, tmp_path):
    for seed in (1, 2):  # what a real run folder also holds: weights and checkpoints
        (experiment / f"full/seed{seed}/student").mkdir()
        (experiment / f"full/seed{seed}/student/model.safetensors").write_bytes(b"weights")
        (experiment / f"full/seed{seed}/checkpoints/last").mkdir(parents=True)
        (experiment / f"full/seed{seed}/checkpoints/last/run.json").write_text("{}")
    dest = tmp_path / "repo" / "ablation"
    assert main(["publish", str(experiment), str(dest)]) == 0
    assert not list(dest.rglob("*model.safetensors")) and not list(dest.rglob("checkpoints"))
    assert (dest / "sweep.json").exists() and list((dest / "full/seed1/tb").iterdir())
    original, published = build(experiment), build(dest)
    # The same table; only the folders its notes name (a missing and an unfinished run) differ.
    assert to_markdown(published).replace(str(dest), "ROOT") == to_markdown(original).replace(str(experiment), "ROOT")
    from distill.lab.publish import PublishError, publish

    with raises_with(PublishError, str(experiment / "records"), "inside", "outside the runs"):
        publish(experiment, experiment / "records")


def test_papers_differences_sit_beside_ours_with_the_power_to_find_them(tmp_path):
    from scipy import stats

    root = tmp_path / "exp"
    full, other = [0.80, 0.82, 0.79, 0.81], [0.74, 0.80, 0.70, 0.78]
    for seed, (a, b) in enumerate(zip(full, other, strict=True), 1):
        finished_run(root / f"full/seed{seed}", "full", seed, a, a - 0.1)
        finished_run(root / f"no-td/seed{seed}", "no-td", seed, b, b - 0.1)
        finished_run(root / f"no-x/seed{seed}", "no-x", seed, a + 0.001 * (-1) ** seed, a - 0.1)
    plan = {"config": "x.yaml", "reference": "full",
            "expected": {"no-td": {"delta": -0.071, "source": "TinyBERT Table 6"},
                         "no-x": {"delta": 0.002, "source": "made up"}},
            "runs": [{"variant": v, "seed": s, "settings": {}, "folder": f"{v}/seed{s}"}
                     for v in ("full", "no-td", "no-x") for s in range(1, 5)]}
    (root / "sweep.json").write_text(json.dumps(plan))
    rep = build(root)
    c = next(c for c in rep.papers if c.variant == "no-td" and c.column == "dev macro_f1")
    diffs = [b - a for a, b in zip(full, other, strict=True)]
    sd, n, alpha = float(np.std(diffs, ddof=1)), 4, 0.05 / 2  # two variants judged: Holm's first level
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = 0.071 / (sd / math.sqrt(n))
    by_hand = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert c.alpha == pytest.approx(alpha) and c.power == pytest.approx(by_hand, rel=1e-6)
    assert 0.2 < by_hand < 0.95  # a power in the middle of its range, where an error would show
    assert c.ours.delta == pytest.approx(np.mean(diffs)) and c.agrees == "undecided"
    assert c.seeds_for_power is not None and c.seeds_for_power > n
    tiny = next(c for c in rep.papers if c.variant == "no-x" and c.column == "dev macro_f1")
    assert tiny.power < 0.8 and tiny.agrees == "undecided"
    md = to_markdown(rep)
    assert "| no-td | dev macro_f1 | -0.0710 | TinyBERT Table 6 |" in md
    assert json.loads(json.dumps(to_json(rep)))["papers"][0]["paper_delta"] == -0.071
    other = build(root, reference="no-x")  # the papers' differences are from `full`: not beside another reference
    assert not other.papers and any("sweep.expected" in w for w in other.warnings)


def test_publish_never_replaces_the_runs_or_a_folder_it_did_not_make(experiment, tmp_path):
    from distill.lab.publish import PublishError, publish

    with raises_with(PublishError, str(experiment.parent), str(experiment), "replace the runs themselves"):
        publish(experiment, experiment.parent)
    assert (experiment / "full/seed1/metrics.json").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with raises_with(PublishError, str(foreign), "did not make", ".published"):
        publish(experiment, foreign)
    assert (foreign / "mine.txt").read_text() == "keep"
    dest = tmp_path / "records"
    publish(experiment, dest)
    publish(experiment, dest)  # its own folder: replaced


def test_published_records_keep_a_run_refused_before_it_started(experiment, tmp_path):
    (experiment / "no-att/seed2").mkdir(parents=True)
    (experiment / "no-att/seed2/failed.json").write_text(json.dumps({"error": "ConfigError: bad key"}))
    from distill.lab.publish import publish

    dest = tmp_path / "records"
    publish(experiment, dest)
    assert (dest / "no-att/seed2/failed.json").exists()
    assert "ConfigError: bad key" in to_markdown(build(dest))


def test_papers_differences_follow_the_grid_point_of_the_reference(tmp_path):
    """A grid sweep labels its runs `variant,key=value`: a paper's difference for `no-td` is set beside the
    `no-td` run at the reference's own grid point, not dropped because no row is called `no-td`."""
    root = tmp_path / "exp"
    for point, base in (("lr=1", 0.80), ("lr=2", 0.70)):
        for seed in (1, 2, 3):
            finished_run(root / f"full,{point}/seed{seed}", f"full,{point}", seed, base + 0.01 * seed, base)
            finished_run(root / f"no-td,{point}/seed{seed}", f"no-td,{point}", seed,
                         base - 0.05 + 0.012 * seed, base)
    plan = {"config": "x.yaml", "reference": "full",
            "expected": {"no-td": {"delta": -0.071, "source": "TinyBERT Table 6"}},
            "runs": [{"variant": f"{v},{p}", "seed": s, "settings": {}, "folder": f"{v},{p}/seed{s}"}
                     for v in ("full", "no-td") for p in ("lr=1", "lr=2") for s in (1, 2, 3)]}
    (root / "sweep.json").write_text(json.dumps(plan))
    rep = build(root, reference="full,lr=2")
    assert not any("sweep.expected" in w for w in rep.warnings)
    c = next(c for c in rep.papers if c.column == "dev macro_f1")
    assert c.variant == "no-td,lr=2"
    assert c.ours.delta == pytest.approx(np.mean([-0.05 + 0.002 * s for s in (1, 2, 3)]))


def test_a_variant_named_by_many_differing_settings_gets_a_tensorboard_folder(tmp_path):
    """Runs that differ in many settings are named by all of them (hundreds of characters); their TensorBoard folder
    name is cut, with a digest of the whole name so that two long names stay apart, below the file system's limit."""
    from distill.lab.report.plots import write_tensorboard

    long_a, long_b = "x" * 300 + "=a", "x" * 300 + "=b"
    for name in (long_a, long_b):
        finished_run(tmp_path / "exp" / name[-1] / "seed1", name, 1, 0.8, 0.7)
    rep = build(tmp_path / "exp")
    folder = write_tensorboard(rep, tmp_path / "tb")
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 2 and all(len(n) <= 120 for n in written)
