"""Declared classes with no (or few) training examples: refused by `distill check` and before training unless
`task.allow_empty_classes`, warned about when few; and a teacher gate that compares each class's dev recall with
chance, so that a teacher which never predicts a class does not pass silently."""

import numpy as np
import pytest

from distill.config import TeacherGateConfig
from distill.lab.cli import main
from distill.labels import FEW_CLASS_EXAMPLES, DataError, check_class_counts
from distill.tasks import Example, TaskData
from distill.teachers.gate import TeacherGateError, check_teacher, gate_line

from .helpers import SMOKE, assert_facts, raises_with


def task(train_labels, dev_labels, labels=("world", "sports", "business", "tech")) -> TaskData:
    mk = lambda ys, p: [Example(f"{p}{i}", f"text {i}", None, y) for i, y in enumerate(ys)]  # noqa: E731
    return TaskData("news", list(labels), ("accuracy",), {"train": mk(train_labels, "t"), "dev": mk(dev_labels, "d")})


def test_a_class_with_no_training_example_is_refused_unless_allowed():
    t = task([0] * 20 + [1] * 20 + [2] * 20, [0, 1, 2, 3])
    with raises_with(DataError, "task news", "no example of the declared class(es)", "['tech']", "'tech': 0",
                     "task.allow_empty_classes: true"):
        check_class_counts(t)
    (warning,) = check_class_counts(t, allow_empty=True)
    assert "{'tech': 0}" in warning and "allowed by task.allow_empty_classes" in warning


def test_few_examples_warn_and_enough_say_nothing():
    few = FEW_CLASS_EXAMPLES - 1
    (warning,) = check_class_counts(task([0] * 20 + [1] * 20 + [2] * 20 + [3] * few, [0]))
    assert warning.startswith("WARNING") and f"{{'tech': {few}}}" in warning
    assert check_class_counts(task([0, 1, 2, 3] * FEW_CLASS_EXAMPLES, [0])) == []


@pytest.fixture
def four_labels(tmp_path, monkeypatch):
    """A CSV task that declares four labels; its training file holds three of them."""
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    words = "markets rally as the team wins a new chip launch".split()
    rows = lambda n, labels: "text\tlabel\n" + "".join(  # noqa: E731
        f"{' '.join(words[i % 5:i % 5 + 4])} {i}\t{labels[i % len(labels)]}\n" for i in range(n))
    (tmp_path / "train.tsv").write_text(rows(60, ["world", "sports", "business"]))
    (tmp_path / "dev.tsv").write_text(rows(16, ["world", "sports", "business", "tech"]))
    return ["task.source=csv", "task.name=news", f"task.path={tmp_path}", "task.labels=[world,sports,business,tech]",
            "task.train_limit=null", "task.dev_limit=null", "task.test_limit=null"]


def test_check_and_run_refuse_the_empty_class_before_anything_is_built(four_labels, tmp_path, capsys):
    sets = [a for o in four_labels for a in ("--set", o)]
    assert main(["check", str(SMOKE), "--no-estimate", *sets]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "no example of the declared class(es)", "['tech']", "allow_empty_classes")
    assert main(["run", str(SMOKE), "--out", str(tmp_path / "run"), *sets]) == 2
    assert "['tech']" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["check", str(SMOKE), "--no-estimate", *sets, "--set", "task.allow_empty_classes=true"]) == 0
    assert "WARNING: few training examples for class(es) {'tech': 0}" in capsys.readouterr().out


def test_the_gate_stops_a_teacher_that_never_recalls_a_trained_class():
    t = task([0, 1, 2, 3] * 10, [0, 0, 1, 1, 2, 2, 3, 3])
    gate = TeacherGateConfig(margin=0.0)
    logits = np.eye(4)[[0, 0, 1, 1, 2, 2, 2, 2]]  # class 3 (tech) predicted as 2: never recalled
    with raises_with(TeacherGateError, "'teacher'", "never recalls", "['tech']", "`teacher.gate.min_class_examples`",
                     "tech 0.00"):
        check_teacher(t, logits, t.splits["train"], t.splits["dev"], gate, "teacher")
    # Half of tech recalled: passes, and 0.5 is above chance (0.25), so nothing is warned about.
    logits = np.eye(4)[[0, 0, 1, 1, 2, 2, 3, 2]]
    facts = check_teacher(t, logits, t.splits["train"], t.splits["dev"], gate, "teacher")
    assert facts["class_recall"] == {"world": 1.0, "sports": 1.0, "business": 1.0, "tech": 0.5}
    assert facts["below_chance"] == [] and "WARNING" not in gate_line("t", "accuracy", facts)
    t5 = task([0, 1, 2, 3, 4] * 10, [0, 1, 2, 3, 4] * 2 + [4] * 3, labels=("a", "b", "c", "d", "e"))
    logits = np.eye(5)[[0, 1, 2, 3, 4] * 2 + [0, 1, 2]]  # class e: 2 of 5 recalled, 0.4 >= chance 0.2
    facts = check_teacher(t5, logits, t5.splits["train"], t5.splits["dev"], gate, "teacher")
    assert facts["below_chance"] == []
    logits = np.eye(5)[[0, 1, 2, 3, 0] * 2 + [0, 1, 4]]  # class e: 1 of 5 recalled, 0.2 is not below 0.2
    assert check_teacher(t5, logits, t5.splits["train"], t5.splits["dev"], gate, "teacher")["below_chance"] == []
    t4 = task([0, 1, 2, 3] * 10, [0, 1, 2] + [3] * 5)
    logits = np.eye(4)[[0, 1, 2, 3, 0, 0, 0, 0]]  # tech: 1 of 5 recalled, 0.2 < chance 0.25
    facts = check_teacher(t4, logits, t4.splits["train"], t4.splits["dev"], gate, "teacher")
    assert facts["below_chance"] == ["tech"]
    assert "WARNING: dev recall below chance (0.25) for ['tech'] (tech 0.20)" in gate_line("t", "accuracy", facts)


def test_a_class_trained_on_too_few_examples_to_demand_recall_only_warns():
    t = task([0, 1, 2] * 10 + [3] * 3, [0, 1, 2, 3])
    facts = check_teacher(t, np.eye(4)[[0, 1, 2, 2]], t.splits["train"], t.splits["dev"],
                          TeacherGateConfig(margin=0.0), "teacher")
    assert facts["below_chance"] == ["tech"]
