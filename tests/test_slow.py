"""Slow end-to-end checks on the real packaged resources (minutes on 2 CPU cores): `make test-slow`."""

import numpy as np
import pytest

from distill.config import load_config
from distill.lab.run import run_experiment
from distill.loaders import load_task
from distill.metrics import compute

from .helpers import ROOT, quiet


@pytest.mark.slow
def test_quickstart_on_the_real_minilm_beats_the_majority_class(tmp_path):
    cfg = load_config(ROOT / "experiments" / "quickstart.yaml")
    m = run_experiment(cfg, tmp_path / "quickstart", log=quiet)
    task = load_task(cfg.task)
    train = np.array([ex.label for ex in task.splits["train"]])
    gold = np.array([ex.label for ex in task.splits["dev"]])
    constant = np.zeros((len(gold), task.num_labels))
    constant[:, np.bincount(train).argmax()] = 1.0  # always the training set's most frequent label
    majority = compute(task.metrics, constant, gold, task.num_labels)["macro_f1"]
    student, teacher = m["student"]["dev"]["macro_f1"], m["teacher"]["dev"]["macro_f1"]
    # A real fine-tuned teacher and a real distilled student: well above a constant guess, the student near
    # its teacher (measured on 2 CPU cores: teacher 0.770, student 0.751).
    assert teacher > majority + 0.3 and student > majority + 0.3, (majority, teacher, student)
    assert student > 0.9 * teacher
    assert m["ratios"]["encoder_compute"] == pytest.approx(0.5)
