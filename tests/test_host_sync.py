"""No host-device synchronisation from our code inside the step loop: between two optimizer steps our code
never reads a tensor's value on the host (`.item()`, `float(t)`, `bool(t)`, `.tolist()`, `.cpu()`, `.numpy()`);
the non-finite guard and the logged sums are read only at log, checkpoint and epoch-end time. On CPU nothing
syncs, so the test watches the calls themselves, which is what would stall a GPU."""

import sys
from collections import Counter

import torch

from distill.config import load_config
from distill.lab.run import run_experiment

from .helpers import ROOT

OURS = tuple(str(ROOT / d) for d in ("distill", "students", "teachers", "augment"))
READS = ["item", "__float__", "__bool__", "__int__", "tolist", "cpu", "numpy"]


def test_step_loop_reads_no_tensor_values(tmp_path, monkeypatch):
    import distill.trainer as trainer

    calls, stepping = Counter(), {"on": False}

    def watch(name):
        real = getattr(torch.Tensor, name)

        def read(self, *a, **k):
            caller = sys._getframe(1).f_code.co_filename
            if stepping["on"] and caller.startswith(OURS):
                calls[f"{name} from {caller}:{sys._getframe(1).f_lineno}"] += 1
            return real(self, *a, **k)
        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, watch(name))
    real_evaluate = trainer.evaluate

    def evaluate(*a, **k):  # the epoch-end evaluation may read values; it is not a training step
        stepping["on"] = False
        return real_evaluate(*a, **k)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    real_guard, guards = trainer._guard, []

    def guard(*a, **k):  # reads the non-finite flag by design; must run at epoch ends only here
        guards.append(a[3].step)
        if not a[4]:  # the guard before an evaluation or at an epoch's end: what follows is not a training step
            stepping["on"] = False
            return real_guard(*a, **k)
        on, stepping["on"] = stepping["on"], False
        try:
            return real_guard(*a, **k)
        finally:
            stepping["on"] = on

    monkeypatch.setattr(trainer, "_guard", guard)
    steps = []

    def on_step(stage, step):
        steps.append(step)
        stepping["on"] = True  # from the end of one step to the end of the next

    cfg = load_config(ROOT / "experiments" / "smoke.yaml", ["train.log_every=100000", "train.checkpoint_every=0"])
    run_experiment(cfg, tmp_path / "run", on_step=on_step, log=lambda *_: None)
    assert len(steps) > 10
    assert not calls, calls
    # Before each evaluation and at each epoch's end (the teacher's fine-tuning epochs too when this run
    # fine-tuned it), never per step.
    epochs = sum(st.epochs for st in cfg.stages)
    assert 2 * epochs <= len(guards) <= 2 * (epochs + cfg.teacher.finetune.epochs) < len(steps)
    # The watch itself works: a read from our code while stepping is counted.
    stepping["on"] = True
    float(torch.ones(()))  # from this test file, not ours: ignored
    assert not calls
