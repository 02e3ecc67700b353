"""TensorBoard's training curves: each logged value is the mean over exactly the batches since the previous log
(an epoch boundary resets the window, so the first log after it must not be divided by a full `log_every`), every
step's loss reaches a log (the epoch's last steps too), and the teacher's fine-tuning is logged like any stage."""

import torch

from distill.config import load_config
from distill.lab.run import run_experiment

from .helpers import SMOKE, quiet


def test_logged_losses_are_window_means_and_cover_every_step(tmp_path, monkeypatch):
    import distill.trainer as trainer

    logged: list[tuple[str, float, int]] = []
    real_log, real_step = trainer._log, trainer.train_step
    seen: dict[str, int] = {}

    def log(writer, scalars, step):
        logged.extend((k, v, step) for k, v in scalars.items())
        return real_log(writer, scalars, step)

    def step(*a, **k):  # the real step, reporting the batch's index as its loss: a window's mean is checkable
        real_step(*a, **k)
        name = a[5].config.name
        seen[name] = seen.get(name, 0) + 1
        value = torch.tensor(float(seen[name]))
        return value, {"soft_cross_entropy": value}

    monkeypatch.setattr(trainer, "_log", log)
    monkeypatch.setattr(trainer, "train_step", step)
    # 256 examples / batch 32 = 8 steps per epoch; log_every 3 does not divide it.
    cfg = load_config(SMOKE, ["train.log_every=3", "stages.0.epochs=2"])
    run_experiment(cfg, tmp_path / "run", log=quiet)
    total = [(v, s) for k, v, s in logged if k == "intermediate/train/total"]
    # Windows: steps 1-3, 4-6, 7-8 | 9 (epoch 2 starts), 10-12, 13-15, 16. The batches are 1..16 in order.
    windows = [(1, 3), (4, 6), (7, 8), (9, 9), (10, 12), (13, 15), (16, 16)]
    assert [s for _, s in total] == [b for _, b in windows]
    assert [v for v, _ in total] == [sum(range(a, b + 1)) / (b - a + 1) for a, b in windows]
    terms = [v for k, v, _ in logged if k == "intermediate/train/soft_cross_entropy"]
    assert terms == [v for v, _ in total]


def test_teacher_finetuning_curves_reach_tensorboard(tmp_path, monkeypatch):
    from distill.io import cache_at
    from distill.lab.report import read_curves

    with cache_at(tmp_path / "cache"):  # a teacher not cached yet: this run fine-tunes it
        cfg = load_config(SMOKE, ["train.log_every=2", "stages.1.epochs=1"])
        run_experiment(cfg, tmp_path / "first", log=quiet)
        run_experiment(cfg, tmp_path / "second", log=quiet)  # the cached teacher: its curves are replayed
    for run in ("first", "second"):
        curves = read_curves(tmp_path / run)
        assert "teacher/train/total" in curves, sorted(curves)
        assert "teacher/dev/accuracy" in curves
        # 256 examples / batch 32, one epoch: steps 2, 4, 6, 8.
        assert [s for s, _ in curves["teacher/train/total"]] == [2, 4, 6, 8]
    assert read_curves(tmp_path / "first")["teacher/train/total"] == read_curves(tmp_path / "second")[
        "teacher/train/total"]
