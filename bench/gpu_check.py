"""GPU readiness in one command (`make gpu-check`): every check the CPU machines cannot make, with its figures.

On a machine with CUDA it runs, each part measured and marked pass, fail or skip:

1. the smoke and quickstart configs in bf16 and in fp16 through the `distill run` command line, the teacher in
   half precision (`train.teacher_precision: auto`), each in its own process with a fresh teacher cache: wall
   time, the run's dev/test figures, peak GPU memory;
2. the smoke config in this process under `torch.cuda.set_sync_debug_mode("warn")`: host syncs per optimizer
   step (target 0), with the source lines that caused them;
3. bench/augmentation.py --device cuda (target: 100x the per-word reference, identical candidates);
4. bench/distill_loop.py --device cuda against TextBrewer on identical batches (target: 1.5x);
5. bench/data_scale.py --device cuda.

It writes one markdown file (default gpu-check.md at the repository root), rewritten atomically after every
part, so an interrupted check still leaves the figures so far, and exits 1 when any part failed. Without CUDA
it says so in one line, writes nothing and exits 0.

    python bench/gpu_check.py [--out gpu-check.md] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OURS = tuple(str(ROOT / d) + os.sep for d in ("distill", "students", "teachers", "augment"))
CONFIGS = ("smoke", "quickstart")
# The message torch's sync debug mode warns with (c10/cuda: warn_or_error_on_sync).
SYNC_MESSAGE = "synchronizing CUDA operation"
AUGMENT_TARGET = 100.0
LOOP_TARGET = 1.5
# Wide enough for the full quickstart on a slow GPU; only a hang should reach it.
TIMEOUT_S = 3600
OUTPUT_LINES = 60
STDERR_LINES = 25
GIB = 2**30
SYNC_TITLE = 'host syncs per step under torch.cuda.set_sync_debug_mode("warn")'
# The line a config run's process ends with (see CLI_WITH_PEAK).
PEAK_MARK = "gpu-check: peak bytes "


@dataclass
class Section:
    """One part of the check as the markdown shows it."""

    title: str
    status: str  # pass | fail | skip
    summary: str  # one line: the figure that decides the status
    body: str = ""  # markdown: tables, the command, its output
    seconds: float | None = None


@dataclass
class Proc:
    """What a benchmark or run subprocess left."""

    command: list[str]
    returncode: int | None  # None: killed at the time limit
    stdout: str
    stderr: str
    seconds: float


# ---------------------------------------------------------------- pure parts: text and figures


def no_cuda_line(torch_version: str, cuda_version: str | None) -> str:
    built = f"built with CUDA {cuda_version}, but no device is visible" if cuda_version else "built without CUDA"
    return f"gpu-check: no CUDA device here (torch {torch_version}, {built}); nothing to check"


def tail(text: str, lines: int) -> str:
    kept = text.rstrip("\n").splitlines()
    cut = len(kept) - lines
    return "\n".join(([f"[... {cut} lines cut ...]"] if cut > 0 else []) + kept[-lines:])


def fenced(text: str) -> str:
    # A fence longer than any backtick run inside, so captured output cannot close it early.
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def section_markdown(number: int, s: Section) -> str:
    took = f" ({s.seconds:.0f} s)" if s.seconds is not None else ""
    parts = [f"## {number}. {s.title}", f"**{s.status}**{took}: {s.summary}"]
    return "\n\n".join(parts + ([s.body.strip()] if s.body.strip() else []))


def assemble(facts: Sequence[tuple[str, str]], sections: Sequence[Section], planned: int, started: str) -> str:
    """The whole file; `planned` sections in all, so a file written part-way says it is incomplete."""
    done = len(sections)
    state = "complete" if done >= planned else f"in progress or interrupted: {done} of {planned} parts"
    out = ["# GPU check", f"Written by `make gpu-check` (`bench/gpu_check.py`), started {started}; {state}.",
           table(("", ""), facts), "## Summary",
           table(("part", "result", "figures"), [(f"{i}. {s.title}", s.status, s.summary)
                                                  for i, s in enumerate(sections, 1)])]
    out += [section_markdown(i, s) for i, s in enumerate(sections, 1)]
    return "\n\n".join(out) + "\n"


def proc_markdown(p: Proc) -> str:
    """The command and its output, stderr's tail as well when it failed."""
    out = [f"`{' '.join(p.command)}`"]
    if p.stdout.strip():
        out.append(fenced(tail(p.stdout, OUTPUT_LINES)))
    if p.returncode != 0 and p.stderr.strip():
        out += ["stderr (last lines):", fenced(tail(p.stderr, STDERR_LINES))]
    return "\n\n".join(out)


def proc_problem(p: Proc) -> str | None:
    """Why a subprocess failed, in a few words; None when it exited 0."""
    if p.returncode is None:
        return f"timed out after {p.seconds:.0f} s"
    if p.returncode == 0:
        return None
    last = next((ln.strip() for ln in reversed(p.stderr.splitlines()) if ln.strip()), "")
    return f"exit {p.returncode}" + (f": {last[:200]}" if last else "")


def _last_float(pattern: str, text: str) -> float | None:
    found = re.findall(pattern, text, flags=re.IGNORECASE)
    return float(found[-1]) if found else None


def parse_augmentation(stdout: str) -> dict:
    """bench/augmentation.py's verdict lines: `identical candidate sets: S/C words` and `speedup: Nx`."""
    same = re.findall(r"identical candidate sets:\s*(\d+)\s*/\s*(\d+)", stdout, flags=re.IGNORECASE)
    return {"identical": (int(same[-1][0]), int(same[-1][1])) if same else None,
            "speedup": _last_float(r"speed-?up:\s*([0-9]+(?:\.[0-9]+)?)\s*x", stdout)}


def augmentation_verdict(parsed: dict, target: float = AUGMENT_TARGET) -> tuple[str, str]:
    speedup, identical = parsed["speedup"], parsed["identical"]
    if speedup is None or identical is None:
        return "fail", "its speed-up or candidate agreement line was not found in the output"
    same, compared = identical
    ok = speedup >= target and same == compared
    return ("pass" if ok else "fail",
            f"{speedup:.1f}x the per-word reference (target {target:.0f}x), identical candidates for "
            f"{same}/{compared} words")


def parse_distill_loop(stdout: str) -> dict:
    """bench/distill_loop.py's ratio lines."""
    return {"loop": _last_float(r"loop against loop\):\s*([0-9.]+)x", stdout),
            "static": _last_float(r"static padding, as its examples\):\s*([0-9.]+)x", stdout),
            "overhead": _last_float(r"overhead:.*?\)\s*=\s*([0-9.]+)x", stdout),
            "textbrewer_missing": "TextBrewer not installed" in stdout}


def distill_loop_verdict(parsed: dict, target: float = LOOP_TARGET) -> tuple[str, str]:
    if parsed["textbrewer_missing"]:
        return "fail", "TextBrewer is not installed (`make gpu-check` installs textbrewer==0.2.1.post1 --no-deps)"
    if parsed["loop"] is None:
        return "fail", "its `loop against loop` ratio was not found in the output"
    extra = ""
    if parsed["static"] is not None:
        extra += f"; {parsed['static']:.2f}x against TextBrewer's static padding"
    if parsed["overhead"] is not None:
        extra += f"; overhead {parsed['overhead']:.2f}x the cost floor (target <= 1.2x)"
    return ("pass" if parsed["loop"] >= target else "fail",
            f"{parsed['loop']:.2f}x TextBrewer's examples/s on identical batches (target {target}x){extra}")


def parse_peak(stdout: str) -> int | None:
    found = re.findall(re.escape(PEAK_MARK) + r"(\d+)", stdout)
    return int(found[-1]) if found else None


def run_figures(run_dir: Path) -> dict:
    """What a finished run folder says: precision, the student's and teacher's main metric, its own wall time."""
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8")) if (run_dir / "run.json").exists() else {}
    key = m.get("main_metric")

    def main_metric(who: str, split: str) -> float | None:
        return ((m.get(who) or {}).get(split) or {}).get(key) if key else None

    return {"precision": run.get("mixed_precision"), "metric": key, "wall": m.get("wall_seconds"),
            "student_dev": main_metric("student", "dev"), "student_test": main_metric("student", "test"),
            "teacher_dev": main_metric("teacher", "dev")}


def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


@dataclass
class ConfigRun:
    config: str
    precision: str
    status: str  # pass | fail | skip
    note: str = ""  # why it failed or was skipped
    seconds: float | None = None
    peak_bytes: int | None = None
    figures: dict = field(default_factory=dict)
    stderr: str = ""  # the tail, kept for a failed run


def config_run_status(proc: Proc, figures: dict | None, precision: str) -> tuple[str, str]:
    """A run passes when it exits 0, leaves its metrics, ran in the precision asked for and its figures are finite."""
    problem = proc_problem(proc)
    if problem:
        return "fail", problem
    if figures is None:
        return "fail", "no metrics.json in the run folder"
    if figures["precision"] != precision:
        return "fail", f"ran in {figures['precision']!r}, not {precision!r}"
    scores = [figures[k] for k in ("student_dev", "student_test", "teacher_dev")]
    if any(v is None or not math.isfinite(v) for v in scores):
        return "fail", f"missing or non-finite figures: {scores}"
    return "pass", ""


def configs_section(runs: Sequence[ConfigRun], seconds: float) -> Section:
    rows = []
    for r in runs:
        f = r.figures
        peak = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / GIB:.2f}"
        rows.append((r.config, r.precision, r.status + (f" ({r.note})" if r.note else ""), _num(r.seconds, 0),
                     _num(f.get("wall"), 0), f.get("metric") or "n/a", _num(f.get("teacher_dev")),
                     _num(f.get("student_dev")), _num(f.get("student_test")), peak))
    ran = [r for r in runs if r.status != "skip"]
    failed = [f"{r.config}/{r.precision}" for r in ran if r.status == "fail"]
    status = "fail" if failed or not ran else "pass"
    summary = (f"{len(ran) - len(failed)}/{len(ran)} runs finished in the precision asked for"
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    body = table(("config", "precision", "result", "wall s (measured)", "wall s (run)", "metric", "teacher dev",
                  "student dev", "student test", "peak GiB"), rows)
    body += ("\n\nEach run: `distill run experiments/CONFIG.yaml --set train.precision=P --out DIR` in its own "
             "process (the CLI's `main`, then torch's peak allocated memory), teacher in half precision "
             "(`teacher_precision: auto`), fine-tuned afresh in a temporary cache. Failures' stderr:")
    for r in runs:
        if r.status == "fail" and r.stderr:
            body += f"\n\n{r.config}/{r.precision}:\n\n" + fenced(r.stderr)
    return Section("smoke and quickstart configs in bf16 and fp16, teacher in half precision", status, summary,
                   body, seconds)


# ---------------------------------------------------------------- pure parts: host syncs per step

# Events of a watched run, in order: ("step", stage, step) after each optimizer step; ("enter", name) and
# ("exit", name) around evaluation, the non-finite guard and checkpoint saves (reads by design, not per step);
# ("sync", where, origin) for each sync warning: `where` the warning's file:line, `origin` the innermost
# file:line in this project's code (None when no project code was on the stack).
Event = tuple


@dataclass
class SyncFigures:
    steps: Counter = field(default_factory=Counter)  # clean step windows watched, per stage
    in_steps: dict[str, Counter] = field(default_factory=dict)  # stage -> (where, origin) -> syncs
    boundary: int = 0  # syncs in windows that also hold an epoch end (first step after it mixed with its work)
    spans: Counter = field(default_factory=Counter)  # syncs inside evaluation / guard / checkpoint saves
    outside: int = 0  # before the first step (setup, teacher fine-tuning, caches) or after the last one

    def total_in_steps(self) -> int:
        return sum(sum(c.values()) for c in self.in_steps.values())

    def per_step(self) -> float | None:
        n = sum(self.steps.values())
        return self.total_in_steps() / n if n else None


def count_syncs(events: Sequence[Event]) -> SyncFigures:
    """Attribute sync warnings to optimizer steps. A window runs from one step's end to the next step's end and
    belongs to the latter; a window that holds an evaluation, guard or checkpoint span is an epoch or stage
    boundary and left out of the per-step figures, as are syncs before the first step and after the last."""
    figs = SyncFigures()
    window: list[tuple[str, str | None]] | None = None  # None until the first step
    tainted, spans = False, []  # spans: the names of the open spans, innermost last
    for ev in events:
        kind = ev[0]
        if kind == "enter":
            spans.append(ev[1])
            tainted = tainted or window is not None
        elif kind == "exit":
            if spans:
                spans.pop()
        elif kind == "sync":
            if spans:
                figs.spans[spans[-1]] += 1
            elif window is None:
                figs.outside += 1
            else:
                window.append((ev[1], ev[2]))
        elif kind == "step":
            if window is not None:
                if tainted:
                    figs.boundary += len(window)
                else:
                    figs.steps[ev[1]] += 1
                    figs.in_steps.setdefault(ev[1], Counter()).update(window)
            window, tainted = [], False
    figs.outside += len(window or [])
    return figs


def syncs_section(figs: SyncFigures, precision: str, seconds: float) -> Section:
    per = figs.per_step()
    if per is None:
        return Section(SYNC_TITLE, "fail", "no optimizer step was watched", seconds=seconds)
    rows = []
    for stage, n in figs.steps.items():
        k = sum(figs.in_steps.get(stage, Counter()).values())
        rows.append((stage, n, k, f"{k / n:.2f}"))
    body = table(("stage", "steps watched", "host syncs", "per step"), rows)
    where = Counter()
    for c in figs.in_steps.values():
        where.update(c)
    if where:
        body += "\n\nWhere (the warning's line; the innermost distillery line on the stack):\n\n"
        body += table(("location", "from distillery code", "syncs"),
                      [(w, o or "-", n) for (w, o), n in where.most_common()])
    body += (f"\n\nLeft out of the per-step figure: {figs.boundary} in windows holding an epoch or stage end (its "
             f"first step mixed with evaluation and saving), {sum(figs.spans.values())} inside evaluation, the "
             f"non-finite guard and checkpoint saves ({dict(figs.spans) or 'none'}), {figs.outside} before the "
             "first step or after the last (setup, teacher fine-tuning, caches, the final evaluation). The smoke "
             f"config ran in {precision} with `train.log_every` and mid-epoch checkpoints off (both read values by "
             "design).")
    total = figs.total_in_steps()
    return Section(SYNC_TITLE, "pass" if total == 0 else "fail",
                   f"{per:.2f} host syncs per step (0 is the target): {total} over {sum(figs.steps.values())} "
                   "steps", body, seconds)


def short_path(filename: str) -> str:
    """A path as the markdown shows it: relative to the repository or to site-packages."""
    if filename.startswith(str(ROOT) + os.sep):
        return filename[len(str(ROOT)) + 1:]
    marker = "site-packages" + os.sep
    return filename.split(marker, 1)[1] if marker in filename else filename


def innermost_ours(frames: Sequence[tuple[str, int]]) -> str | None:
    """The innermost (last) frame in this project's packages, as path:line."""
    for filename, lineno in reversed(frames):
        if filename.startswith(OURS):
            return f"{short_path(filename)}:{lineno}"
    return None


def is_sync_warning(message: object) -> bool:
    return SYNC_MESSAGE in str(message)


# ---------------------------------------------------------------- measuring (CUDA only)


def run_proc(command: list[str], env: dict | None = None, timeout: float = TIMEOUT_S) -> Proc:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        return Proc(command, done.returncode, done.stdout, done.stderr, time.perf_counter() - start)
    except subprocess.TimeoutExpired as e:
        return Proc(command, None, _text(e.stdout), _text(e.stderr), time.perf_counter() - start)


def _text(out: bytes | str | None) -> str:
    """A timed-out process's partial output, which subprocess gives as bytes even in text mode."""
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def base_env(**extra: str) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            "TOKENIZERS_PARALLELISM": "false", **extra}


def device_facts(quick: bool) -> list[tuple[str, str]]:
    from distill.provenance import git_state

    props = torch.cuda.get_device_properties(0)
    major, minor = torch.cuda.get_device_capability(0)
    git = git_state(ROOT)
    commit = (git["commit"] or "unknown")[:12] + (" (with uncommitted changes)" if git["dirty"] else "")
    return [("device", f"{torch.cuda.get_device_name(0)} (of {torch.cuda.device_count()} visible)"),
            ("compute capability", f"{major}.{minor}"), ("memory", f"{props.total_memory / GIB:.1f} GiB"),
            ("torch / CUDA / cuDNN", f"{torch.__version__} / {torch.version.cuda} / {torch.backends.cudnn.version()}"),
            ("bf16", "supported" if torch.cuda.is_bf16_supported() else "not supported"),
            ("commit", commit), ("mode", "--quick (shortened)" if quick else "full")]


# `python -c` with the `distill` command's own entry point, then the peak allocated GPU memory, which only the
# process that allocated it can read.
CLI_WITH_PEAK = f"""import sys, torch
from distill.lab.cli import main
rc = main(sys.argv[1:])
if torch.cuda.is_initialized():
    print("{PEAK_MARK}" + str(torch.cuda.max_memory_allocated()), flush=True)
sys.exit(rc)
"""
QUICK_QUICKSTART = ["task.train_limit=512", "task.dev_limit=256", "task.test_limit=256"]


def run_config(config: str, precision: str, work: Path, quick: bool) -> ConfigRun:
    out = work / f"{config}-{precision}"
    sets = [f"train.precision={precision}", "train.teacher_precision=auto"]
    if quick and config == "quickstart":
        sets += QUICK_QUICKSTART
    command = [sys.executable, "-c", CLI_WITH_PEAK, "run", f"experiments/{config}.yaml", "--out", str(out)]
    for s in sets:
        command += ["--set", s]
    print(f"  {config} {precision} ...", flush=True)
    proc = run_proc(command, base_env(DISTILLERY_CACHE=str(work / "cache")))
    figures = run_figures(out) if (out / "metrics.json").exists() else None
    status, note = config_run_status(proc, figures, precision)
    run = ConfigRun(config, precision, status, note, proc.seconds, parse_peak(proc.stdout), figures or {},
                    tail(proc.stderr, STDERR_LINES) if status == "fail" else "")
    print(f"    {status} in {proc.seconds:.0f} s {note}", flush=True)
    return run


def check_configs(work: Path, quick: bool) -> Section:
    start = time.perf_counter()
    runs = []
    for config in CONFIGS:
        for precision in ("bf16", "fp16"):
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                runs.append(ConfigRun(config, precision, "skip", "bf16 not supported on this GPU"))
                continue
            runs.append(run_config(config, precision, work, quick))
    return configs_section(runs, time.perf_counter() - start)


@contextlib.contextmanager
def spans_marked(events: list, targets: Sequence[tuple[object, str]]) -> Iterator[None]:
    """Wrap each (owner, attribute) so that its calls show as ("enter", name) ... ("exit", name) in `events`."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def marked(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*a, **k):
            events.append(("enter", name))
            try:
                return fn(*a, **k)
            finally:
                events.append(("exit", name))
        return inner

    try:
        for owner, name, fn in originals:
            setattr(owner, name, marked(name, fn))
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


@contextlib.contextmanager
def sync_warnings_to_events(events: list) -> Iterator[None]:
    """Each sync warning raised inside appended to `events` with where it came from; other warnings dropped."""

    def show(message, category, filename, lineno, file=None, line=None):
        if is_sync_warning(message):
            frames = [(f.filename, f.lineno) for f in traceback.extract_stack()[:-1]]
            events.append(("sync", f"{short_path(filename)}:{lineno}", innermost_ours(frames)))

    # showwarning rather than record=True: it runs while the offending call is still on the stack, so the
    # distillery line behind a sync inside torch can be found.
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # every occurrence, not once per location
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def cuda_syncs_recorded(events: list) -> Iterator[None]:
    with sync_warnings_to_events(events):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")


def watch_run(cfg, out: Path, record: Callable[[list], contextlib.AbstractContextManager]) -> list[Event]:
    """Run `cfg` in this process with `record` adding sync events, steps and by-design reading spans marked."""
    import distill.checkpoint as checkpoint
    import distill.trainer as trainer
    from distill.lab.run import run_experiment

    events: list[Event] = []
    # The loop looks these up as module globals / class attributes at call time, so wrapping them here works.
    spans = [(trainer, "evaluate"), (trainer, "_guard"), (checkpoint.Checkpointer, "save"),
             (checkpoint.Checkpointer, "save_best")]
    with spans_marked(events, spans), record(events):
        run_experiment(cfg, out, on_step=lambda stage, step: events.append(("step", stage, step)),
                       log=lambda *_: None)
    return events


SYNC_OVERRIDES = ["train.log_every=100000", "train.checkpoint_every=0"]


def check_host_syncs(work: Path, quick: bool) -> Section:
    from distill.config import load_config
    from distill.io import cache_at

    start = time.perf_counter()
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cfg = load_config(ROOT / "experiments" / "smoke.yaml", [*SYNC_OVERRIDES, f"train.precision={precision}"])
    try:
        with cache_at(work / "cache-syncs"):
            events = watch_run(cfg, work / "syncs", cuda_syncs_recorded)
    except Exception as e:  # a failed run is this part's result, not the end of the check
        return Section(SYNC_TITLE, "fail", f"the smoke run failed: {type(e).__name__}: {e}",
                       fenced(tail(traceback.format_exc(), STDERR_LINES)), time.perf_counter() - start)
    return syncs_section(count_syncs(events), precision, time.perf_counter() - start)


def script_flags(script: Path, quick: bool, quick_flags: Sequence[str]) -> list[str]:
    """`quick_flags` under --quick when the script's source mentions their first flag (the scripts change)."""
    if quick and quick_flags and quick_flags[0] in script.read_text(encoding="utf-8"):
        return list(quick_flags)
    return []


def run_bench(title: str, name: str, args: Sequence[str], quick: bool, quick_flags: Sequence[str],
              verdict: Callable[[str], tuple[str, str]] | None) -> Section:
    script = ROOT / "bench" / name
    if not script.exists():
        return Section(title, "skip", f"skipped: bench/{name} missing")
    print(f"  {name} ...", flush=True)
    proc = run_proc([sys.executable, f"bench/{name}", *args, *script_flags(script, quick, quick_flags)],
                    base_env())
    problem = proc_problem(proc)
    if problem:
        status, summary = "fail", problem
    elif verdict is None:
        status, summary = "pass", f"ran in {proc.seconds:.0f} s (figures below)"
    else:
        status, summary = verdict(proc.stdout)
    print(f"    {status}: {summary}", flush=True)
    return Section(title, status, summary, proc_markdown(proc), proc.seconds)


def check_augmentation(quick: bool) -> Section:
    return run_bench("augmentation benchmark on the GPU", "augmentation.py", ["--device", "cuda"], quick,
                     ["--quick"], lambda out: augmentation_verdict(parse_augmentation(out)))


def check_distill_loop(quick: bool) -> Section:
    return run_bench("distillation loop against TextBrewer on the GPU", "distill_loop.py", ["--device", "cuda"],
                     quick, ["--examples", "256"], lambda out: distill_loop_verdict(parse_distill_loop(out)))


def check_data_scale(quick: bool) -> Section:
    return run_bench("data-scale benchmark on the GPU", "data_scale.py", ["--device", "cuda"], quick, ["--quick"],
                     None)


PARTS: list[tuple[str, Callable[[Path, bool], Section]]] = [
    ("configs", check_configs),
    ("host syncs", check_host_syncs),
    ("augmentation", lambda work, quick: check_augmentation(quick)),
    ("distillation loop", lambda work, quick: check_distill_loop(quick)),
    ("data scale", lambda work, quick: check_data_scale(quick)),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "gpu-check.md"), help="the markdown file (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="shortened benchmarks and quickstart, for a fast look")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(no_cuda_line(torch.__version__, torch.version.cuda))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from distill.io import write_text

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    facts = device_facts(args.quick)
    print("gpu-check: " + ", ".join(f"{k} {v}" for k, v in facts), flush=True)
    sections: list[Section] = []
    write_text(args.out, assemble(facts, sections, len(PARTS), started))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for i, (name, part) in enumerate(PARTS, 1):
            print(f"[{i}/{len(PARTS)}] {name}", flush=True)
            try:
                section = part(Path(tmp), args.quick)
            except Exception as e:  # one broken part must not hide the others' figures
                section = Section(name, "fail", f"{type(e).__name__}: {e}", fenced(tail(traceback.format_exc(), 25)))
            sections.append(section)
            write_text(args.out, assemble(facts, sections, len(PARTS), started))
    failed = [s.title for s in sections if s.status == "fail"]
    print(f"gpu-check: wrote {args.out}; " + (f"{len(failed)} part(s) failed" if failed else "no part failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
