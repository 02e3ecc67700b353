"""The manual (docs/, mkdocs.yml): its reference pages are generated from the code and cover all of it, the site
builds in strict mode (a broken link or anchor fails), every page is in the nav, the README is a front page that
links into it, and the measured tables the pages and the README show are the committed records' own."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import shutil
import subprocess
import sys
import tokenize
import types
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from distill.config import ExperimentConfig
from distill.lab import manual
from distill.lab.cli import build_parser
from distill.losses import LOSSES

from .helpers import ROOT

DOCS = ROOT / "docs"
HAND_PAGES = sorted(p.name for p in DOCS.glob("*.md"))
RESULTS = ROOT / "experiments" / "ablations" / "tweets" / "results"


def _flat(page: str) -> str:
    """A page's text with table escapes undone and whitespace collapsed, to look for a source's words in it."""
    return " ".join(page.replace("\\|", "|").split())


# ---------------------------------------------------------------- the site


def _site(tmp_path: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Build the manual as `make docs` does (reference generated, then `mkdocs build --strict`) in a copy under
    tmp_path, with `extra` pages added."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs").mkdir()
    for name in HAND_PAGES:
        shutil.copy(DOCS / name, tmp_path / "docs" / name)
    for name, text in (extra or {}).items():
        (tmp_path / "docs" / name).write_text(text)
    manual.write_reference(tmp_path / "docs" / "reference")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_the_manual_builds_strictly_with_its_generated_reference(tmp_path):
    proc = _site(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in ("reference/losses", "reference/config", "reference/cli", "results", "troubleshooting"):
        assert (tmp_path / "site" / page / "index.html").exists(), page
    # The results page shows the committed suites' plots, copied by the generator.
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    for png in RESULTS.glob("*/ablation.png"):
        assert f"reference/figures/{png.parent.name}.png" in results
        assert (tmp_path / "site" / "reference" / "figures" / f"{png.parent.name}.png").exists()


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    # Strict mode with anchors checked: the build that guards the pages really refuses a wrong link.
    proc = _site(tmp_path, {"index.md": (DOCS / "index.md").read_text()
                            + "\n[x](concepts.md#no-such-section) [y](no-such-page.md)\n"})
    assert proc.returncode != 0
    assert "no-such-section" in proc.stderr and "no-such-page.md" in proc.stderr, proc.stderr[-2000:]


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for v in node.values() for p in _nav_pages(v)]
    return []


def test_every_page_is_in_the_nav_and_the_nav_names_no_missing_page():
    import yaml

    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    generated = [f"reference/{name}" for name in manual.PAGES]
    assert sorted(nav) == sorted(HAND_PAGES + generated)
    for topic in ("getting-started.md", "concepts.md", "configuration.md", "teachers.md", "students.md", "losses.md",
                  "augmentation.md", "experiments.md", "deployment.md", "gpu.md", "conventions.md", "results.md",
                  "troubleshooting.md"):
        assert topic in HAND_PAGES, f"no docs/{topic}"


def test_the_generated_pages_are_ignored_by_git():
    for path in ("docs/reference/losses.md", "site/index.html"):
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert proc.returncode == 0, f"{path} is not ignored by git"


# ---------------------------------------------------------------- the reference pages


def test_the_loss_reference_covers_the_registry():
    page = manual.losses_page()
    for name, info in LOSSES.items():
        section = page.split(f"## `{name}`\n", 1)[1].split("\n## ", 1)[0]
        assert _flat(inspect.getdoc(info.fn)) in _flat(section), name
        for param, default in info.params.items():
            assert f"| `{param}` |" in section and manual._code(manual._value(default)) in section, (name, param)
        for need in info.needs.names():
            assert need in section.split("reads beyond logits:", 1)[1].split("\n", 1)[0], (name, need)
    assert "with `positions: all`: also all_tokens" in page.split("## `kl_div`", 1)[1].split("\n## ", 1)[0]


def test_the_loss_reference_reads_whatever_a_registry_entry_exposes():
    # Entries from before typed needs (a tuple of names) or without any declaration still render.
    assert manual._needs_text(types.SimpleNamespace(needs=("hidden", "attention"))) == "hidden, attention"
    assert manual._needs_text(types.SimpleNamespace()) == "not declared"
    assert manual._needs_text(types.SimpleNamespace(needs=())) == "logits only"


def _config_comments() -> list[str]:
    """Every comment line inside the dataclasses of distill/config.py, read independently of the generator."""
    source = (ROOT / "distill" / "config.py").read_text()
    spans = [(n.lineno, n.end_lineno) for n in ast.parse(source).body if isinstance(n, ast.ClassDef)
             and any(getattr(d, "id", None) == "dataclass" for d in n.decorator_list)]
    return [tok.string.lstrip("#").strip() for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT and any(a <= tok.start[0] <= b for a, b in spans)]


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    import typing

    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        tp = typing.get_type_hints(cls)[f.name]
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
        for a in args:
            if dataclasses.is_dataclass(a) and key != "teachers":
                keys += _leaf_keys(a, f"{key}.")
            elif typing.get_origin(a) is list and dataclasses.is_dataclass(typing.get_args(a)[0]) and key != "teachers":
                keys += _leaf_keys(typing.get_args(a)[0], f"{key}.N.")
    return keys


def test_the_config_reference_has_every_key_its_default_and_every_comment():
    page = manual.config_page()
    for key in _leaf_keys(ExperimentConfig):
        assert f"| `{key}` |" in page, f"config reference: no row for `{key}`"
    flat = _flat(page)
    for comment in _config_comments():
        assert comment in flat, f"config reference: the comment {comment!r} is lost"
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w.]+)` \|.*$", page, re.M)}
    assert "| float | `0.01` |" in rows["teacher.gate.margin"]
    assert "| int \\| null | `null` |" in rows["stages.N.eval_every"] and "eval_step" in rows["stages.N.eval_every"]
    assert "'off' \\| 'fp16' \\| 'fp32'" in rows["train.teacher_record"]
    assert "| required |" in rows["stages.N.losses"]
    assert "The same keys as `teacher`" in rows["teachers"]


def test_config_meanings_come_from_comments_and_field_docstrings():
    meanings = manual.field_meanings(_Documented)
    assert meanings == {"a": "Why a exists. And more.", "b": "What b holds.", "c": "Above c. Below c.",
                        "e": "Beside e."}


@dataclasses.dataclass
class _Documented:
    # Why a exists.
    # And more.
    a: int = 1
    b: str = "x"
    """What b holds."""
    # Above c.
    c: bool = False
    """Below c."""
    d: int = 0
    e: int = 1  # Beside e.


@dataclasses.dataclass
class _ToyStudentConfig:
    kind: str = "toy"
    # Cells per layer of the toy student.
    cells: int = 7


def test_each_student_kind_gets_its_own_table(monkeypatch):
    monkeypatch.setattr(manual, "_student_kinds", lambda: {"toy": _ToyStudentConfig})
    page = manual.config_page()
    assert "## `student`\n" in page  # the anchor other pages link to, whatever the kinds
    section = page.split("### `student` with `kind: toy`", 1)[1].split("\n#", 1)[0]
    assert "| `student.cells` | int | `7` | Cells per layer of the toy student. |" in section
    monkeypatch.setattr(manual, "_student_kinds", dict)  # no registry: the student section walked as any other
    assert "| `student.kind` |" in manual.config_page().split("## `student`\n", 1)[1].split("\n## ", 1)[0]


def test_the_registered_kinds_sections_and_their_comments_are_in_the_reference():
    page, flat = manual.config_page(), _flat(manual.config_page())
    for kind, cls in manual._student_kinds().items():
        section = page.split(f"### `student` with `kind: {kind}`", 1)[1].split("\n#", 1)[0]
        for f in dataclasses.fields(cls):
            assert f"| `student.{f.name}` |" in section, (kind, f.name)
        source = inspect.getsource(cls)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                assert tok.string.lstrip("#").strip() in flat, (kind, tok.string)


def test_the_cli_reference_has_every_command_and_option():
    page = manual.cli_page()
    commands, helps = manual._subcommands(build_parser())
    for name, sub in commands.items():
        section = page.split(f"## distill {name}\n", 1)[1].split("\n## ", 1)[0]
        assert _flat(helps[name]) in _flat(section), name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = action.option_strings[0] if action.option_strings else action.dest
            assert f"`{shown}" in section, f"distill {name}: {shown} is not in the reference"
            if action.help:
                assert _flat(action.help) in _flat(section), (name, shown)


def test_the_generator_runs_as_a_module(tmp_path):
    out = tmp_path / "reference"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale.png").write_bytes(b"")
    (out / "keep.txt").write_text("not ours")
    proc = subprocess.run([sys.executable, "-m", "distill.lab.manual", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in out.glob("*.md")} == set(manual.PAGES)
    assert not (out / "figures" / "stale.png").exists() and (out / "keep.txt").exists()


# ---------------------------------------------------------------- README and the measured tables


def test_the_readme_is_a_front_page_that_links_into_the_manual():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes; the manual holds the rest"
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert {page for page, _ in links} >= {f"docs/{p}" for p in ("getting-started.md", "results.md",
                                                                 "troubleshooting.md", "configuration.md")}
    for page, anchor in links:
        assert (ROOT / page).exists(), f"README links to {page}, which does not exist"
        if anchor:
            assert anchor in _anchors(ROOT / page), f"README links to {page}#{anchor}: no such heading"


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slugify(re.sub(r"[`*]", "", m.group(1)), "-") for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _tables(text: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """(offset, header, rows) of each Markdown table in text."""
    out = []
    for m in re.finditer(r"(?:^\|.*\|[ \t]*\n)+", text, re.M):
        lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in m.group(0).strip().split("\n")]
        out.append((m.start(), lines[0], lines[2:]))
    return out


def _suite_sections(text: str) -> dict[str, str]:
    """The results page's sections that name a committed suite (`results/ablation-x/`), by suite."""
    out = {}
    for section in re.split(r"^## ", text, flags=re.M):
        names = set(re.findall(r"results/(ablation-[\w-]+)/", section))
        if len(names) == 1:
            out[names.pop()] = section
    return out


def _committed(suite: str) -> tuple[list[str], dict[str, list[str]], dict[str, float]]:
    """A published suite's main table (header, rows by model) and the papers' differences on dev by variant."""
    text = (RESULTS / suite / "table.md").read_text()
    tables = _tables(text)
    _, header, rows = tables[0]
    paper = {}
    for _, h, beside in tables[1:]:
        if "paper Δ" in h:
            for row in beside:
                if row[h.index("column")].startswith("dev"):
                    paper.setdefault(row[0], float(row[h.index("paper Δ")]))
    return header, {r[0]: r for r in rows}, paper


def _column(header: list[str], i: int) -> tuple[str, int]:
    """A column's name as both tables can write it (`dev macro-F1` = `dev macro_f1`, `Δ dev` = `Δ dev macro_f1`),
    and which of the columns so named it is."""
    def norm(h: str) -> str:
        h = h.replace("macro-F1", "macro_f1")
        return re.sub(r"^Δ (dev|test) \w+ \[", r"Δ \1 [", h)

    name = norm(header[i])
    return name, [norm(h) for h in header[:i]].count(name)


def test_the_results_tables_are_the_committed_records():
    sections = _suite_sections((DOCS / "results.md").read_text())
    assert set(sections) >= {"ablation-tinybert", "ablation-tang", "ablation-distilbert", "ablation-heads"}
    for suite, section in sections.items():
        c_header, c_rows, paper = _committed(suite)
        c_index = {_column(c_header, i): i for i in range(len(c_header))}
        tables = [t for t in _tables(section) if t[1][:2] == ["model", "runs"]]
        assert len(tables) == 1, f"{suite}: expected one results table on the page"
        _, header, rows = tables[0]
        for row in rows:
            model = row[0]
            assert model in c_rows, f"docs/results.md, {suite}: no row {model!r} in the committed table"
            for i, cell in enumerate(row):
                if header[i] == "paper Δ":
                    assert (not cell and model not in paper) or float(cell) == pytest.approx(paper[model], abs=5e-4), \
                        f"{suite} {model}: paper Δ {cell} here, {paper.get(model)} in the records"
                    continue
                j = c_index[_column(header, i)]
                assert cell == c_rows[model][j], (f"docs/results.md, {suite}, {model}, {header[i]}: {cell!r} here, "
                                                  f"{c_rows[model][j]!r} in results/{suite}/table.md")


def test_the_readme_headline_numbers_are_the_committed_records():
    readme = (ROOT / "README.md").read_text()
    sections = _suite_sections((DOCS / "results.md").read_text())
    by_anchor = {slugify(re.sub(r"[`*]", "", s.split("\n", 1)[0]), "-"): suite for suite, s in sections.items()}
    rows = [r for _, h, rs in _tables(readme) if "dev macro-F1" in h for r in rs]
    assert len(rows) >= 3
    for row in rows:
        anchor = re.search(r"docs/results\.md#([\w-]+)", row[0]).group(1)
        committed = (RESULTS / by_anchor[anchor] / "table.md").read_text()
        numbers = re.findall(r"0\.\d{4} ± 0\.\d{4}|[-+]0\.\d{4}", " ".join(row[1:]))
        assert numbers, row
        for number in numbers:
            assert number in committed, f"README: {number} is not in results/{by_anchor[anchor]}/table.md"
