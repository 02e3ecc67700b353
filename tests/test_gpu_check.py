"""bench/gpu_check.py (`make gpu-check`) without a GPU: the one-line exit, the markdown it writes, how it reads the
benchmarks' output and run folders, and how it attributes sync warnings to optimizer steps. The attribution is
also run on a real smoke run on CPU, with sync warnings injected where CUDA would raise them."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from collections import Counter

import torch

from .helpers import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc  # dataclasses look their module up by name
_spec.loader.exec_module(gc)


# ---------------------------------------------------------------- no CUDA


def test_without_cuda_it_says_so_in_one_line_exits_0_and_writes_nothing(tmp_path):
    out = tmp_path / "figures" / "check.md"
    # No visible device even where the test machine has one, so this path is always the one tested.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("gpu-check: no CUDA device here (torch ")
    assert done.stdout.rstrip().endswith("nothing to check")
    assert done.stderr == ""
    assert list(tmp_path.iterdir()) == []  # neither the file nor its folder nor a temporary


def test_no_cuda_line_names_the_build():
    assert "built without CUDA" in gc.no_cuda_line("2.13.0+cpu", None)
    line = gc.no_cuda_line("2.13.0+cu128", "12.8")
    assert "built with CUDA 12.8, but no device is visible" in line and "\n" not in line


# ---------------------------------------------------------------- the markdown


FACTS = [("device", "NVIDIA H200 (of 1 visible)"), ("bf16", "supported")]


def sections():
    return [gc.Section("configs", "pass", "4/4 runs finished", "| a | b |\n|---|---|\n| 1 | 2 |", 12.4),
            gc.Section("host syncs", "fail", "1.00 host syncs per step (0 is the target): 21 over 21 steps"),
            gc.Section("data scale", "skip", "skipped: bench/data_scale.py missing")]


def test_markdown_has_the_device_a_summary_row_per_part_and_each_part():
    md = gc.assemble(FACTS, sections(), 3, "2030-01-02 03:04:05")
    assert md.startswith("# GPU check\n")
    assert "started 2030-01-02 03:04:05; complete." in md
    assert "| device | NVIDIA H200 (of 1 visible) |" in md
    assert "| 1. configs | pass | 4/4 runs finished |" in md
    assert "| 2. host syncs | fail | 1.00 host syncs per step (0 is the target): 21 over 21 steps |" in md
    assert "| 3. data scale | skip | skipped: bench/data_scale.py missing |" in md
    assert "## 1. configs\n\n**pass** (12 s): 4/4 runs finished\n\n| a | b |" in md
    assert md.index("## 1. configs") < md.index("## 2. host syncs") < md.index("## 3. data scale")


def test_markdown_written_part_way_says_it_is_incomplete():
    md = gc.assemble(FACTS, sections()[:1], 5, "t")
    assert "in progress or interrupted: 1 of 5 parts" in md and "complete." not in md
    assert "## 2." not in md


def test_captured_output_cannot_break_out_of_its_fence():
    text = "a\n```\nb ```` c"
    block = gc.fenced(text)
    fence = block.splitlines()[0]
    assert set(fence) == {"`"} and len(fence) == 5 and block.endswith("\n" + fence)
    assert gc.table(("k", "v"), [("a|b", "x\ny")]).splitlines()[-1] == "| a\\|b | x y |"


def test_a_failed_subprocess_shows_its_stderr_tail_and_the_reason():
    lines = "\n".join(f"line {i}" for i in range(100))
    failed = gc.Proc(["python", "bench/x.py"], 3, "partial\n", lines + "\nValueError: bad\n", 1.0)
    md = gc.proc_markdown(failed)
    assert "`python bench/x.py`" in md and "partial" in md and "ValueError: bad" in md
    assert "line 99" in md and "line 10\n" not in md and "lines cut" in md
    assert gc.proc_problem(failed) == "exit 3: ValueError: bad"
    assert gc.proc_problem(gc.Proc(["x"], None, "", "", 61.0)) == "timed out after 61 s"
    ok = gc.Proc(["x"], 0, "out\n", "warnings\n", 1.0)
    assert gc.proc_problem(ok) is None and "warnings" not in gc.proc_markdown(ok)


# ---------------------------------------------------------------- benchmark output


AUGMENTATION_OUT = """40 tweets, 312 eligible words, masked LM adapted:packaged:all-minilm-l6-v2
method                                        seconds  sentences/s
reference (per word, batch 1, full sort)        61.20         0.65
distillery (batched, inference mode, top-k)      0.48        83.33
identical candidate sets: 312/312 words
speedup: 127.5x
"""


def test_augmentation_output_is_read_and_judged_against_100x_with_identical_candidates():
    parsed = gc.parse_augmentation(AUGMENTATION_OUT)
    assert parsed == {"identical": (312, 312), "speedup": 127.5}
    status, summary = gc.augmentation_verdict(parsed)
    assert status == "pass" and "127.5x" in summary and "312/312" in summary
    assert gc.augmentation_verdict({"identical": (312, 312), "speedup": 99.9})[0] == "fail"
    mismatch = AUGMENTATION_OUT.replace("312/312 words", "311/312 words  (MISMATCH)")
    assert gc.augmentation_verdict(gc.parse_augmentation(mismatch))[0] == "fail"
    assert gc.augmentation_verdict(gc.parse_augmentation("speedup: 300x\n"))[0] == "fail"  # agreement unknown


DISTILL_LOOP_OUT = """1024 tweets, batch 32, NVIDIA H200 (float32), teacher 6L-384, student 3L-384
| measurement | examples/s |
|---|---|
| ours, length-grouped  | 2100.0 |

ours (length-grouped) / TextBrewer (static padding, as its examples): 3.10x
ours / TextBrewer, both on the same random batches (loop against loop): 1.62x
length grouping on / off: 1.40x
overhead: distillation epoch 0.6 s / (student fine-tuning 0.3 s + teacher inference 0.2 s) = 1.15x (target <= 1.2x)
teacher-logit cache on / off (prediction stage): 1.80x per epoch
"""


def test_distill_loop_output_is_read_and_judged_on_identical_batches_against_1_5x():
    parsed = gc.parse_distill_loop(DISTILL_LOOP_OUT)
    assert parsed == {"loop": 1.62, "static": 3.10, "overhead": 1.15, "textbrewer_missing": False}
    status, summary = gc.distill_loop_verdict(parsed)
    assert status == "pass" and summary.startswith("1.62x TextBrewer's examples/s on identical batches")
    assert gc.distill_loop_verdict({**parsed, "loop": 1.49})[0] == "fail"
    missing = "  TextBrewer not installed (No module named 'textbrewer'); `pip install --no-deps textbrewer`\n"
    status, summary = gc.distill_loop_verdict(gc.parse_distill_loop(missing))
    assert status == "fail" and "not installed" in summary


def test_quick_flags_only_for_scripts_that_take_them(tmp_path):
    script = tmp_path / "b.py"
    script.write_text('ap.add_argument("--quick", action="store_true")\n')
    assert gc.script_flags(script, True, ["--quick"]) == ["--quick"]
    assert gc.script_flags(script, False, ["--quick"]) == []
    assert gc.script_flags(script, True, ["--examples", "256"]) == []


def test_a_missing_benchmark_is_skipped_not_failed():
    s = gc.run_bench("data scale", "no_such_benchmark.py", ["--device", "cuda"], False, [], None)
    assert (s.status, s.summary) == ("skip", "skipped: bench/no_such_benchmark.py missing")


# ---------------------------------------------------------------- config runs


def write_run(folder, precision="bf16", dev=0.61, wall=42.0):
    folder.mkdir(parents=True)
    metrics = {"name": "smoke", "task": "tweets", "main_metric": "macro_f1", "wall_seconds": wall,
               "teacher": {"dev": {"macro_f1": 0.55, "accuracy": 0.6}},
               "student": {"dev": {"macro_f1": dev, "accuracy": 0.7}, "test": {"macro_f1": 0.6, "accuracy": 0.7}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps({"mixed_precision": precision}))
    return folder


def test_run_figures_and_status_from_a_run_folder(tmp_path):
    figs = gc.run_figures(write_run(tmp_path / "r"))
    assert figs == {"precision": "bf16", "metric": "macro_f1", "wall": 42.0, "student_dev": 0.61,
                    "student_test": 0.6, "teacher_dev": 0.55}
    ok = gc.Proc(["x"], 0, f"{gc.PEAK_MARK}1234\n", "", 50.0)
    assert gc.config_run_status(ok, figs, "bf16") == ("pass", "")
    assert gc.config_run_status(ok, figs, "fp16") == ("fail", "ran in 'bf16', not 'fp16'")
    assert gc.config_run_status(ok, None, "bf16")[0] == "fail"
    nan = gc.run_figures(write_run(tmp_path / "nan", dev=float("nan")))
    assert gc.config_run_status(ok, nan, "bf16")[0] == "fail"
    crashed = gc.Proc(["x"], 1, "", "RuntimeError: CUDA out of memory", 5.0)
    assert gc.config_run_status(crashed, figs, "bf16") == ("fail", "exit 1: RuntimeError: CUDA out of memory")
    assert gc.parse_peak(ok.stdout) == 1234 and gc.parse_peak("") is None


def test_configs_section_fails_when_any_run_fails_and_shows_its_stderr():
    good = gc.ConfigRun("smoke", "bf16", "pass", "", 30.0, 3 * gc.GIB,
                        {"metric": "macro_f1", "wall": 28.0, "teacher_dev": 0.5, "student_dev": 0.4,
                         "student_test": 0.41})
    bad = gc.ConfigRun("quickstart", "fp16", "fail", "exit 2: distill: error: x", 9.0, stderr="Traceback: boom")
    skipped = gc.ConfigRun("quickstart", "bf16", "skip", "bf16 not supported on this GPU")
    s = gc.configs_section([good, bad, skipped], 40.0)
    assert s.status == "fail" and s.summary == "1/2 runs finished in the precision asked for; failed: quickstart/fp16"
    assert "| smoke | bf16 | pass | 30 | 28 | macro_f1 | 0.5000 | 0.4000 | 0.4100 | 3.00 |" in s.body
    assert "Traceback: boom" in s.body and "bf16 not supported" in s.body
    assert gc.configs_section([good], 1.0).status == "pass"
    assert gc.configs_section([skipped], 1.0).status == "fail"  # nothing ran: nothing shown to work


# ---------------------------------------------------------------- host syncs per step


def test_sync_warnings_are_counted_per_step_and_epoch_ends_left_out():
    events = [
        ("sync", "setup.py:1", None),  # before any step: setup, teacher fine-tuning
        ("step", "intermediate", 1),
        ("sync", "torch/x.py:5", "distill/trainer.py:10"),
        ("step", "intermediate", 2),  # one sync in this step
        ("step", "intermediate", 3),  # none
        ("sync", "torch/x.py:5", "distill/trainer.py:10"),
        ("step", "intermediate", 4),  # one
        ("enter", "_guard"), ("sync", "distill/trainer.py:300", "distill/trainer.py:300"), ("exit", "_guard"),
        ("enter", "evaluate"), ("enter", "save"), ("sync", "io.py:9", None), ("exit", "save"),
        ("sync", "e.py:2", None), ("exit", "evaluate"),
        ("sync", "distill/trainer.py:250", "distill/trainer.py:250"),  # after evaluation, before the next step
        ("step", "prediction", 5),  # a boundary window: left out
        ("sync", "distill/trainer.py:88", "distill/trainer.py:88"),
        ("sync", "distill/trainer.py:88", "distill/trainer.py:88"),
        ("step", "prediction", 6),  # two
        ("enter", "evaluate"), ("sync", "e.py:2", None), ("exit", "evaluate"),  # the final evaluation
        ("sync", "late.py:1", None),
    ]
    figs = gc.count_syncs(events)
    assert figs.steps == Counter({"intermediate": 3, "prediction": 1})
    assert figs.in_steps["intermediate"] == Counter({("torch/x.py:5", "distill/trainer.py:10"): 2})
    assert figs.in_steps["prediction"] == Counter({("distill/trainer.py:88", "distill/trainer.py:88"): 2})
    assert figs.total_in_steps() == 4 and figs.per_step() == 1.0
    assert figs.boundary == 1
    assert figs.spans == Counter({"_guard": 1, "save": 1, "evaluate": 2})
    assert figs.outside == 2

    s = gc.syncs_section(figs, "bf16", 3.0)
    assert s.status == "fail" and s.summary == "1.00 host syncs per step (0 is the target): 4 over 4 steps"
    assert "| intermediate | 3 | 2 | 0.67 |" in s.body and "| prediction | 1 | 2 | 2.00 |" in s.body
    assert "| torch/x.py:5 | distill/trainer.py:10 | 2 |" in s.body


def test_no_syncs_in_steps_passes_and_no_steps_fails():
    clean = gc.count_syncs([("step", "s", 1), ("step", "s", 2), ("enter", "evaluate"), ("sync", "e.py:1", None),
                            ("exit", "evaluate")])
    s = gc.syncs_section(clean, "bf16", 1.0)
    assert (s.status, clean.per_step()) == ("pass", 0.0) and s.summary.startswith("0.00 host syncs per step")
    none = gc.count_syncs([("sync", "a.py:1", None)])
    assert none.per_step() is None and gc.syncs_section(none, "bf16", 1.0).status == "fail"


def test_sync_warnings_are_recorded_with_their_line_and_other_warnings_dropped():
    events = []
    with gc.sync_warnings_to_events(events):
        warnings.warn_explicit("called a synchronizing CUDA operation (Triggered internally at x.cpp:1.)",
                               UserWarning, "site-packages/torch/optim/adamw.py", 7)
        warnings.warn_explicit("called a synchronizing CUDA operation", UserWarning, "a.py", 1)  # again: kept
        warnings.warn_explicit("called a synchronizing CUDA operation", UserWarning, "a.py", 1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert events == [("sync", "torch/optim/adamw.py:7", None), ("sync", "a.py:1", None),
                      ("sync", "a.py:1", None)]


def test_innermost_project_frame_is_found():
    frames = [(str(ROOT / "distill" / "lab" / "run.py"), 5), (str(ROOT / "distill" / "trainer.py"), 215),
              ("/usr/lib/python3/site-packages/torch/nn/module.py", 9)]
    assert gc.innermost_ours(frames) == "distill/trainer.py:215"
    assert gc.innermost_ours(frames[2:]) is None
    assert gc.innermost_ours([(str(ROOT / "bench" / "gpu_check.py"), 1)]) is None


def test_spans_are_marked_and_the_originals_put_back():
    class Owner:
        def work(self, x):
            return x + 1

    events, real = [], Owner.work
    with gc.spans_marked(events, [(Owner, "work")]):
        assert Owner().work(1) == 2
    assert events == [("enter", "work"), ("exit", "work")] and Owner.work is real
    with contextlib.suppress(RuntimeError), gc.spans_marked(events, [(Owner, "work")]):
        raise RuntimeError("a failed run")
    assert Owner.work is real


def test_syncs_are_attributed_on_a_real_smoke_run(tmp_path, monkeypatch):
    """The CUDA part's wiring on CPU: the loop's spans and steps are marked, and a sync injected into every step
    (in the teacher's forward, as a device-to-host copy there would be) comes out as exactly one per step, while
    by-design reads (the guard's flag, evaluation) are counted outside the steps."""
    import distill.trainer as trainer
    from distill.config import load_config

    real_record = trainer.teacher_records

    def syncing_record(*a, **k):
        warnings.warn_explicit(gc.SYNC_MESSAGE, UserWarning, "injected.py", 3)
        return real_record(*a, **k)

    monkeypatch.setattr(trainer, "teacher_records", syncing_record)

    def reads_warn(name):  # what CUDA would flag: a value read on the host, here only from our code
        real = getattr(torch.Tensor, name)

        def read(self, *a, **k):
            if sys._getframe(1).f_code.co_filename.startswith(gc.OURS):
                warnings.warn(gc.SYNC_MESSAGE, UserWarning, stacklevel=2)
            return real(self, *a, **k)
        return read

    for name in ("item", "__float__", "__bool__", "tolist", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, reads_warn(name))
    cfg = load_config(ROOT / "experiments" / "smoke.yaml", gc.SYNC_OVERRIDES)
    events = gc.watch_run(cfg, tmp_path / "run", gc.sync_warnings_to_events)
    figs = gc.count_syncs(events)
    steps = sum(figs.steps.values())
    assert set(figs.steps) == {st.name for st in cfg.stages} and steps > 10
    where = Counter()
    for c in figs.in_steps.values():
        where.update(c)
    # Only the injected sync, once per step: the loop itself reads nothing per step.
    assert [w for w, _ in where] == ["injected.py:3"] and figs.per_step() == 1.0
    origin = next(iter(where))[1]
    assert origin.startswith("distill/trainer.py:")  # the loop line that called it, past this test's wrapper
    assert figs.spans["_guard"] >= sum(st.epochs for st in cfg.stages) and figs.spans["evaluate"] > 0
    assert figs.boundary >= len(cfg.stages)  # the injected sync of each first step after an epoch end


def test_with_cuda_each_part_is_written_as_it_finishes_and_a_crashing_part_does_not_stop_the_rest(tmp_path,
                                                                                                 monkeypatch):
    """main's CUDA path with the device and the parts faked: the file after every part, a failed part, exit 1."""
    out = tmp_path / "check.md"
    seen_before = []

    def part(status):
        def run(work, quick):
            seen_before.append(out.read_text())  # what an interruption at this moment would leave
            return gc.Section(f"part {status}", status, f"{status} figures")
        return run

    def crash(work, quick):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(gc.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gc, "device_facts", lambda quick: [("device", "fake"), ("mode", str(quick))])
    monkeypatch.setattr(gc, "PARTS", [("one", part("pass")), ("two", crash), ("three", part("skip"))])
    assert gc.main(["--out", str(out), "--quick"]) == 1
    assert "0 of 3 parts" in seen_before[0] and "## 1." not in seen_before[0]
    assert "2 of 3 parts" in seen_before[1] and "| 2. two | fail | RuntimeError: CUDA error" in seen_before[1]
    md = out.read_text()
    assert "; complete." in md and "| mode | True |" in md and "| 3. part skip | skip | skip figures |" in md
    assert [p.name for p in tmp_path.iterdir()] == ["check.md"]  # no temporary left beside it
    monkeypatch.setattr(gc, "PARTS", [("one", part("pass"))])
    assert gc.main(["--out", str(out)]) == 0
