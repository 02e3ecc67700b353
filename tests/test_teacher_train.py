"""`teacher.finetune.train`: the teacher fine-tuned on the task's whole training split (`full`) or on the student's,
possibly subsampled, one (`task`)."""

import pytest
from accelerate import Accelerator

from distill.config import ConfigError, load_config
from distill.lab.cli import main
from distill.lab.preflight import plan_run
from distill.lab.task import TaskWorkflow
from distill.teachers.finetune import full_train_split, teacher_key

from .helpers import SMOKE, quiet, raises_with

WORDS = "the flight was late again thanks for a great upgrade never flying with you lost my bag".split()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Overrides of the smoke config for a 48-example training file, of which the student gets 16."""
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))  # every teacher fine-tuned here, not reused

    def rows(n: int, offset: int) -> str:
        return "text\tlabel\n" + "".join(f"{' '.join(WORDS[(i + offset) % 7:(i + offset) % 7 + 2 + i % 5])} {i}\t"
                                         f"{'pos' if i % 2 else 'neg'}\n" for i in range(n))

    (tmp_path / "train.tsv").write_text(rows(48, 0))
    (tmp_path / "dev.tsv").write_text(rows(12, 3))
    return ["task.source=csv", "task.name=toy", f"task.path={tmp_path}", "task.train_limit=16",
            "task.dev_limit=null", "task.test_limit=null", "teacher.finetune.batch_size=8"]


def test_full_teacher_fine_tunes_on_the_whole_training_split(toy):
    trained, keys = {}, {}
    for mode in ("task", "full"):
        cfg = load_config(SMOKE, [*toy, f"teacher.finetune.train={mode}"])
        workflow = TaskWorkflow(cfg, plan_run(cfg))
        workflow.build(Accelerator(cpu=True), quiet)
        info = workflow.teacher_info
        # One epoch of batches of 8: 16 examples are 2 optimizer steps, 48 are 6.
        trained[mode] = (info["train_examples"], info["history"][-1]["step"])
        keys[mode] = info["key"]
        assert len(workflow.datasets["train"]) == 16  # the student's training split stays limited
    assert trained == {"task": (16, 2), "full": (48, 6)}
    assert keys["task"] != keys["full"]


def test_full_without_a_train_limit_is_the_task_teacher(toy):
    from distill.loaders import load_task

    task_cfg = load_config(SMOKE, [*toy, "task.train_limit=null"])
    full_cfg = load_config(SMOKE, [*toy, "task.train_limit=null", "teacher.finetune.train=full"])
    assert full_train_split(full_cfg) is None  # nothing to load: the student's split is the full one
    task = load_task(task_cfg.task)
    assert teacher_key(full_cfg, task) == teacher_key(task_cfg, task)


def test_check_plans_the_full_teachers_fine_tuning(toy, capsys):
    assert main(["check", str(SMOKE), "--no-estimate", *(a for o in toy for a in ("--set", o)),
                 "--set", "teacher.finetune.train=full"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuned on the task's full training split (48 examples) first" in out
    assert "batch 8 = 6 optimizer steps" in out
    assert main(["check", str(SMOKE), "--no-estimate", *(a for o in toy for a in ("--set", o))]) == 0
    assert "fine-tuned on the task first: 1 epoch, lr 0.001, batch 8 = 2 optimizer steps" in capsys.readouterr().out


def test_a_bad_teacher_training_set_is_refused_naming_the_key():
    with raises_with(ConfigError, str(SMOKE), "`teacher.finetune.train`", "'all'", "'task'", "'full'"):
        load_config(SMOKE, ["teacher.finetune.train=all"])
