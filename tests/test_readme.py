"""Everything the READMEs and the manual's pages (docs/*.md) show works as typed. Every command line of their code
blocks, every command and `--set` example written inline, every config snippet and Python example, and the commands
in the experiment configs' header comments are found by reading the files (nothing is listed here by hand), so an
example that stops working, or a new one nobody checked, fails CI. The manual's generated reference pages are
checked by tests/test_docs.py.

How each is checked:
- a synopsis (`distill run CONFIG [--set KEY=VALUE ...]`): every flag it shows exists for that subcommand, with the
  choices it shows;
- a concrete `distill` line: parsed by the real parser, then run. Training runs with small overrides that shrink the
  data (`SMALL`); a config that needs the hub gets `distill check` with stand-ins (tests/standins.py) instead; a sweep
  of several configs or of hub configs gets `--dry-run`; `bench` gets a short timing budget. `runs/quickstart/<run>`
  is a small quickstart run made here;
- `make` targets: `make -n` (the target exists and its recipe expands); install lines: the pins equal the Makefile's;
- `torchrun` / `accelerate launch`: parsed by their own parsers, the `-m distill.lab.cli ...` part as above;
- YAML: validated (a fragment over experiments/quickstart.yaml); one shown as a file's abridged copy must agree with
  that file; Python: executed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.config import ExperimentConfig, deep_merge, from_dict, load_config, load_raw, yaml_load
from distill.lab.cli import build_parser, main

from .helpers import ROOT, raises_with, set_flags

# The manual's hand-written pages are read like the READMEs; docs/reference/ is generated from the code (and built
# and checked by tests/test_docs.py), so it is not among them.
MANUAL = sorted(p for p in (ROOT / "docs").glob("*.md"))
READMES = [ROOT / "README.md", ROOT / "experiments" / "glue" / "README.md", *MANUAL]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
# Shrinks a training command to seconds: 64 training tweets, a one-epoch teacher that need not pass the gate.
SMALL = ["task.train_limit=64", "task.dev_limit=32", "task.test_limit=32", "teacher.finetune.epochs=1",
         "teacher.gate=null"]
# Words a synopsis uses for what the reader fills in.
PLACEHOLDER = re.compile(r"[\[\]|<>]|\.\.\.|^[A-Z][A-Z0-9_]*(?:[=,.].*)?$")
SHELL_VARIABLES = {"$i": "0", "$RANK": "0"}


@dataclass(frozen=True)
class Snippet:
    where: str  # file:line
    kind: str  # command, inline, set, yaml, python, comment
    text: str
    note: str = ""  # the comment after a command, or the prose line before a block

    def __str__(self) -> str:
        return f"{self.where} {self.text[:70]}"


# ---------------------------------------------------------------- finding them


def _fenced(path: Path) -> list[tuple[str, int, list[str], str]]:
    """(language, first line number, lines, the prose line before) of each fenced code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"\s*```(\w*)\s*$", lines[i])
        if m:
            j = next(k for k in range(i + 1, len(lines)) if lines[k].strip().startswith("```"))
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            blocks.append((m.group(1), i + 2, lines[i + 1:j], before))
            i = j
        i += 1
    return blocks


def _command_lines(lines: list[str], first: int) -> list[tuple[int, str, str]]:
    """(line number, command, its comment) per logical line: continuations joined, `&&` split, comments apart."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(lines, first):
        line = raw.rstrip()
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        code, comment = _split_comment(buf)
        buf = ""
        for part in code.split("&&"):
            if part.strip():
                out.append((start, part.strip(), comment))
    return out


def _split_comment(line: str) -> tuple[str, str]:
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


def snippets() -> list[Snippet]:
    found = []
    for path in READMES:
        name = path.relative_to(ROOT)
        for lang, first, lines, before in _fenced(path):
            if lang in ("bash", "sh", ""):
                found += [Snippet(f"{name}:{n}", "command", cmd, comment)
                          for n, cmd, comment in _command_lines(lines, first)]
            elif lang in ("yaml", "python"):
                found.append(Snippet(f"{name}:{first}", lang, "\n".join(lines), before))
        text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), path.read_text(encoding="utf-8"),
                      flags=re.S)
        for m in re.finditer(r"`([^`]+)`", text):
            span = " ".join(m.group(1).split())
            line = text.count("\n", 0, m.start()) + 1
            if re.match(r"(distill|make(?! -)|python|tensorboard|torchrun|CUDA_VISIBLE_DEVICES=\S+ distill) ", span):
                found.append(Snippet(f"{name}:{line}", "inline", span))
            elif span.startswith("--set "):
                found.append(Snippet(f"{name}:{line}", "set", span))
    for config in sorted((ROOT / "experiments").rglob("*.yaml")):
        comments = [(n, line.lstrip("#").strip()) for n, line in enumerate(config.read_text().splitlines(), 1)
                    if line.startswith("#")]
        for k, (n, text) in enumerate(comments):
            m = re.search(r"(?:^|: )(distill (?:run|sweep|check) .*)", text)
            if not m:
                continue
            cmd, j = m.group(1), k
            while cmd.endswith("\\"):
                j += 1
                cmd = cmd[:-1] + " " + comments[j][1]
            found.append(Snippet(f"{config.relative_to(ROOT)}:{n}", "comment", cmd))
    return found


SNIPPETS = snippets()


def of_kind(*kinds: str) -> list[Snippet]:
    return [s for s in SNIPPETS if s.kind in kinds]


def test_the_readmes_examples_are_all_found():
    # A change in how the READMEs are written must not quietly leave this file testing nothing.
    counts = {k: len(of_kind(k)) for k in ("command", "inline", "set", "yaml", "python", "comment")}
    assert counts["command"] >= 30 and counts["inline"] >= 20 and counts["comment"] >= 30, counts
    assert counts["yaml"] >= 2 and counts["python"] >= 1 and counts["set"] >= 2, counts
    texts = [s.text for s in SNIPPETS]
    assert "distill sweep experiments/quickstart.yaml --grid stages.1.lr=1e-4,5e-5 --grid stages.0.epochs=1,2" in texts


def test_the_manual_pages_are_read_too():
    # The content moved from the README into docs/: its commands must still be found there, page by page.
    assert len(MANUAL) >= 15, MANUAL
    pages = {s.where.split(":")[0] for s in of_kind("command")}
    for page in ("README.md", "docs/getting-started.md", "docs/experiments.md", "docs/deployment.md", "docs/gpu.md",
                 "docs/running.md"):
        assert page in pages, f"no command block found in {page}"
    assert any(s.where.startswith("docs/configuration.md") and "(abridged)" in s.note for s in of_kind("yaml"))
    assert not any("docs/reference" in s.where for s in SNIPPETS)


# ---------------------------------------------------------------- distill command lines

SUBPARSERS = next(a for a in build_parser()._actions if a.dest == "command").choices


def _tokens(command: str) -> list[str]:
    tokens = shlex.split(command)
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):  # an environment assignment before the command
        tokens.pop(0)
    return [SHELL_VARIABLES.get(t, t) for t in tokens]


def is_synopsis(tokens: list[str]) -> bool:
    return any(PLACEHOLDER.search(t) for t in tokens)


def check_synopsis(tokens: list[str], where: str) -> None:
    """Each flag a synopsis shows exists for its subcommand, with the choices it shows."""
    sub = tokens[0]
    assert sub in SUBPARSERS, f"{where}: `distill {sub}` is not a subcommand ({', '.join(SUBPARSERS)})"
    actions = SUBPARSERS[sub]._option_string_actions
    for i, token in enumerate(tokens):
        flag = token.strip("[]").split("=")[0]
        if not flag.startswith("--"):
            continue
        assert flag in actions, f"{where}: `distill {sub}` has no option {flag} (it has {sorted(actions)})"
        shown = tokens[i + 1].strip("[]") if i + 1 < len(tokens) else ""
        if "|" in shown and not shown.startswith("-") and actions[flag].choices is not None:
            assert set(shown.split("|")) == set(actions[flag].choices or ()), (
                f"{where}: {flag} shows {shown}; the parser's choices are {actions[flag].choices}")


def parse(tokens: list[str], where: str, capsys):
    try:
        return build_parser().parse_args(tokens)
    except SystemExit:
        pytest.fail(f"{where}: `distill {shlex.join(tokens)}` does not parse: {capsys.readouterr().err.strip()}")


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """`runs/quickstart/<run>` of the examples: the demo's config, shrunk."""
    out = tmp_path_factory.mktemp("readme") / "quickstart"
    assert main(["run", str(QUICKSTART), "--out", str(out), *set_flags(SMALL)]) == 0
    return out


def substitute(tokens: list[str], run: Path, tmp: Path) -> list[str]:
    out = []
    for t in tokens:
        t = t.replace("runs/quickstart/<run>", str(run)).replace("path/to/student", str(run / "student"))
        out.append(str(tmp / t) if t.startswith("deploy/") else t)
    return out


def run_distill(tokens: list[str], where: str, note: str, request, capsys, tmp_path) -> None:
    """A concrete `distill` command, run as typed (see the module's docstring for the cheaper forms)."""
    tokens = list(tokens)
    args = parse(tokens, where, capsys)
    sub = tokens[0]
    if sub in ("run", "check", "sweep"):
        configs = [args.config] if sub != "sweep" else args.configs
        for c in configs:
            assert (ROOT / c).exists(), f"{where}: {c} does not exist"
        standins = request.getfixturevalue("standins")
        offline = all(not standins.overrides(ROOT / c, args.set) for c in configs)
        if sub == "sweep" and offline and len(configs) == 1:
            run_sweep(tokens, args, where, note, tmp_path, capsys)
            return
        if sub == "sweep":
            code = main([*tokens, "--dry-run"])
            out, err = capsys.readouterr()
            assert code == 0, f"{where}: {err}"
            # Each config's runs are listed with their state (finished where this checkout has run the suite).
            assert len(re.findall(r"^  (missing|finished|unfinished|failed) ", out, re.M)) >= len(configs), out
            return
        extra = standins.overrides(ROOT / args.config, args.set)
        code = main(["check", str(ROOT / args.config), *set_flags(args.set + extra), "--no-estimate"])
        out, err = capsys.readouterr()
        assert code == 0 and "stage 1/" in out, f"{where}: distill check: {err.strip()[-2000:]}"
        return
    if sub == "bench":
        tokens += ["--budget", "0.05", "--seq-len", "16", "--batch", "4"]
    if sub == "export" and args.int8:
        # The shrunk run's student is barely trained (logits within ~0.1 of each other), where int8 noise is as large
        # as the logits; the int8 check itself is tested in tests/test_onnx_export.py.
        tokens += ["--int8-agreement", "0", "--int8-tolerance", "1"]
    code = main(tokens)
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: `distill {shlex.join(tokens)}` exited {code}: {err.strip()[-2000:]}"
    if sub == "export":
        onnx = Path(args.out) if args.out else Path(args.model) / "student" / "model.onnx"
        report = onnx.with_suffix(".json") if args.out else onnx.parent / "onnx.json"
        assert onnx.exists() and report.exists(), f"{where}: no {onnx} / {report}"
        assert onnx.with_suffix(".int8.onnx").exists() or not args.int8, f"{where}: no int8 graph"
    if sub == "bench":
        for model in args.models.split(","):
            assert re.search(rf"^\| {model} \|", out, re.M), f"{where}: no row for {model}:\n{out}"
        assert ("ORT fp32" in out) == args.onnx and (" int8 |" in out) == args.int8, out


def run_sweep(tokens, args, where, note, tmp_path, capsys):
    from distill.lab.run_folder import FINISHED, run_state
    from distill.lab.sweep import expand, parse_grid

    out_root = tmp_path / "sweep"
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    plans = expand(ROOT / args.configs[0], [*args.set, *SMALL], out_root, parse_grid(args.grid), seeds)
    code = main([*tokens, *set_flags(SMALL), "--out", str(out_root)])
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: {err.strip()[-2000:]}"
    assert all(run_state(p.out) == FINISHED for p in plans), f"{where}: not every run finished:\n{out}"
    for p in plans:  # each run trained with its own grid point
        saved = from_dict(yaml_load((p.out / "config.yaml").read_text()))
        assert saved.stages == p.config.stages and saved.seed == p.seed
    if m := re.search(r"(\d+) variants x (\d+) seeds", note):  # what the comment beside the command says
        assert len(plans) == int(m.group(1)) * int(m.group(2)) and len({p.variant for p in plans}) == int(m.group(1))


@pytest.mark.parametrize("snippet", of_kind("command"), ids=str)
def test_each_command_of_a_code_block_works(snippet, request, capsys, tmp_path):
    tokens = _tokens(snippet.text)
    program = tokens[0]
    if any("<run>" in t or t.startswith(("path/to/", "deploy/")) for t in tokens):  # what this test fills in
        tokens = substitute(tokens, request.getfixturevalue("quickstart_run"), tmp_path)
    if program == "distill":
        if is_synopsis(tokens[1:]):
            check_synopsis(tokens[1:], snippet.where)
        else:
            run_distill(tokens[1:], snippet.where, snippet.note, request, capsys, tmp_path)
    elif program == "make":
        make_dry_run(tokens, snippet.where)
    elif program in ("pip", "python3", ".", "source"):
        install_line(tokens, snippet.where)
    elif program == "python":
        script_flags(tokens, snippet.where)
    elif program in ("torchrun", "accelerate"):
        launcher(tokens, snippet.where, request, capsys, tmp_path)
    else:
        pytest.fail(f"{snippet.where}: the README shows `{program}`, which tests/test_readme.py does not know how to "
                    "check; add it there")


@pytest.mark.parametrize("snippet", of_kind("inline"), ids=str)
def test_each_inline_command_parses(snippet, capsys):
    """Commands written in the prose name runs that do not exist here: their flags and targets are checked."""
    tokens = _tokens(snippet.text)
    if tokens[0] == "distill" and len(tokens) == 2:  # a mention of the command
        assert tokens[1] in [*SUBPARSERS, "--help"], f"{snippet.where}: `distill {tokens[1]}` is not a subcommand"
    elif tokens[0] == "distill":
        if is_synopsis(tokens[1:]) or any(t.startswith("runs/") for t in tokens):
            check_synopsis(tokens[1:], snippet.where)
        else:
            parse(tokens[1:], snippet.where, capsys)
    elif tokens[0] == "make":
        make_dry_run(tokens, snippet.where)
    elif tokens[0] == "python":
        script_flags(tokens, snippet.where)
    elif tokens[0] == "tensorboard":
        exe = Path(sys.executable).parent / "tensorboard"
        assert exe.exists(), f"{snippet.where}: no tensorboard in {exe.parent}"
        assert all(t in _help([str(exe)]) for t in tokens if t.startswith("--")), snippet.where


@pytest.mark.parametrize("snippet", of_kind("set"), ids=str)
def test_each_inline_set_example_names_real_keys(snippet):
    """`--set` examples in the prose: the keys exist; where the values are real too, the config validates."""
    assignments = [t for t in _tokens(snippet.text) if t != "--set"]
    raw = load_raw(QUICKSTART)
    concrete = [a for a in assignments if "..." not in a]
    for a in assignments:
        key = a.split("=", 1)[0]
        assert _has_key(ExperimentConfig, key.split(".")), f"{snippet.where}: `{key}` is not a config key"
    load_config(QUICKSTART, concrete)
    assert raw == load_raw(QUICKSTART)


def _has_key(cls, parts: list[str]) -> bool:
    import dataclasses
    import typing

    tp = cls
    for part in parts:
        origin = typing.get_origin(tp)
        if origin is list and part.isdigit():
            tp = typing.get_args(tp)[0]
            continue
        if origin is not None and type(None) in typing.get_args(tp):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if not dataclasses.is_dataclass(tp):
            return False
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return False
        tp = hints[part]
    return True


# ---------------------------------------------------------------- other programs


def make_dry_run(tokens: list[str], where: str) -> None:
    proc = subprocess.run(["make", "-n", *tokens[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{where}: `make -n {shlex.join(tokens[1:])}`: {proc.stderr.strip()}"
    assert proc.stdout.strip(), f"{where}: `{shlex.join(tokens)}` does nothing"


def _makefile_value(name: str) -> str:
    m = re.search(rf"^{name}\s*\?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"Makefile: no `{name} ?=`"
    return m.group(1).strip()


def install_line(tokens: list[str], where: str) -> None:
    """The hand install must install what `make install` does."""
    if tokens[0] in (".", "source"):
        assert tokens[1] == f"{_makefile_value('VENV')}/bin/activate", where
        return
    if tokens[0] == "python3":
        assert tokens[1:4] == ["-m", "venv", _makefile_value("VENV")], where
        return
    packages = [t for t in tokens[2:] if not t.startswith("-")]
    if "-e" in tokens:
        import tomllib

        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for p in packages:
            m = re.fullmatch(r"\.\[(\w+)\]", p)
            assert m and m.group(1) in extras, f"{where}: {p} is not an extra of pyproject.toml ({sorted(extras)})"
    elif "--no-deps" in tokens:
        assert packages == _makefile_value("RESOURCES").split(), f"{where}: not the Makefile's RESOURCES"
    else:
        assert packages == _makefile_value("TORCH_SPEC").split(), f"{where}: not the Makefile's TORCH_SPEC"


def _help(argv: list[str]) -> str:
    proc = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{argv}: {proc.stderr.strip()[-1000:]}"
    return proc.stdout


def script_flags(tokens: list[str], where: str) -> None:
    """`python SCRIPT [flags]` or `python -m MODULE [args]`: the script or module exists and has the flags shown."""
    if tokens[1] == "-m":
        import importlib.util

        assert importlib.util.find_spec(tokens[2]), f"{where}: no module {tokens[2]}"
        text, rest = _help([sys.executable, "-m", tokens[2]]), tokens[3:]
    else:
        script = ROOT / tokens[1]
        assert script.exists(), f"{where}: {tokens[1]} does not exist"
        text, rest = _help([sys.executable, str(script)]), tokens[2:]
    for t in rest:
        flag = t.strip("[]").split("=")[0]
        if flag.startswith("--"):
            assert re.search(rf"{re.escape(flag)}\b", text), f"{where}: {tokens[1]} has no {flag}:\n{text}"


def launcher(tokens: list[str], where: str, request, capsys, tmp_path) -> None:
    """torchrun / accelerate launch: their own parsers take their flags; the module part is our command line."""
    if tokens[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        args = get_args_parser().parse_args(tokens[1:])
        module, rest = (args.training_script, args.training_script_args) if args.module else (None, [])
    else:
        from accelerate.commands.launch import launch_command_parser

        assert tokens[1] == "launch", where
        args = launch_command_parser().parse_args(tokens[2:])
        module, rest = (args.training_script, args.training_script_args) if args.module else (None, [])
    assert module == "distill.lab.cli", f"{where}: launches {module!r}, not -m distill.lab.cli"
    if is_synopsis(rest):
        check_synopsis(rest, where)
    else:
        run_distill(rest, where, "", request, capsys, tmp_path)


# ---------------------------------------------------------------- config snippets, Python, config comments


@pytest.mark.parametrize("snippet", of_kind("yaml"), ids=str)
def test_each_config_snippet_validates(snippet):
    data = yaml_load(snippet.text)
    if {"name", "teacher", "student", "stages"} <= set(data):
        from_dict(data, src=snippet.where)
    else:  # a fragment: over the quickstart
        from_dict(deep_merge(load_raw(QUICKSTART), data), src=snippet.where)
    if m := re.search(r"`(experiments/\S+\.yaml)` \(abridged\)", snippet.note):
        whole = load_raw(ROOT / m.group(1))
        for key, value in _leaves(data):
            assert _at(whole, key) == value, f"{snippet.where}: `{key}` is {value!r} here, {_at(whole, key)!r} in " \
                                             f"{m.group(1)}"


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}.{i}")
    else:
        yield prefix, node


def _at(node, dotted: str):
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


@pytest.mark.parametrize("snippet", of_kind("python"), ids=str)
def test_each_python_example_runs(snippet, quickstart_run):
    code = snippet.text.replace("runs/quickstart/<run>", str(quickstart_run))
    scope: dict = {}
    exec(compile(code, snippet.where, "exec"), scope)  # noqa: S102 - the README's own example
    model = scope.get("model")
    if model is not None:
        assert model.config.num_labels == len(load_config(QUICKSTART).task.labels or ["neg", "neu", "pos"])


@pytest.mark.parametrize("snippet", of_kind("comment"), ids=str)
def test_each_command_in_a_config_comment_parses_and_validates(snippet, capsys):
    """The `Run:` lines of the recipes: files that exist, keys that exist, values that validate."""
    tokens = _tokens(snippet.text)[1:]
    if is_synopsis(tokens):
        check_synopsis(tokens, snippet.where)
        sets = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--set"]
        assert all(_has_key(ExperimentConfig, a.split("=")[0].split(".")) for a in sets), snippet.where
        return
    args = parse(tokens, snippet.where, capsys)
    configs = [args.config] if tokens[0] != "sweep" else args.configs
    assert all((ROOT / c).exists() for c in configs), f"{snippet.where}: {configs}: no such file"
    if tokens[0] == "sweep":
        from distill.lab.sweep import expand, parse_grid

        assert expand(ROOT / configs[0], args.set, ROOT / "runs" / "none", parse_grid(args.grid))
    else:
        load_config(ROOT / args.config, args.set)


def test_synopsis_checks_catch_a_wrong_flag_or_choice():
    # The checker itself: a flag or a choice the parser does not have fails.
    with raises_with(AssertionError, "x:", "`distill report`", "no option --formats"):
        check_synopsis(["report", "ROOT", "[--formats", "md]"], "x")
    with raises_with(AssertionError, "x:", "--format shows md|csv", "'latex'"):
        check_synopsis(["report", "ROOT", "[--format", "md|csv]"], "x")
    check_synopsis(["report", "ROOT", "[--format", "md|csv|latex]"], "x")
    assert is_synopsis(["run", "CONFIG"]) and not is_synopsis(["run", "experiments/quickstart.yaml"])
