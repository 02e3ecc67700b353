"""Faults: `kill -9` in the middle of teacher fine-tuning, a distillation stage or augmentation, then the same
command again, ends with the result of an uninterrupted run and no torn file; a full disk or an unwritable
folder is a clear error that leaves the previous checkpoint intact."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.config import load_config
from distill.lab.cli import main
from distill.lab.run import run_experiment

from .helpers import SMOKE, assert_facts, raises_with

EVERY_STEP = ["--set", "train.checkpoint_every=1"]


def cli(*args: str, cache: Path) -> list[str]:
    return [sys.executable, "-m", "distill.lab.cli", *args], {**os.environ, "DISTILLERY_CACHE": str(cache),
                                                           "OMP_NUM_THREADS": "1"}


def kill_when(args: list[str], cache: Path, ready, timeout: float = 300) -> None:
    cmd, env = cli(*args, cache=cache)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.time()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"finished before the kill point: {proc.stderr.read()[-2000:]}")
        if time.time() - start > timeout:  # a watchdog against a hung child, not a speed check
            proc.kill()
            pytest.fail(f"the kill point was not reached within {timeout} s")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def run_to_end(args: list[str], cache: Path) -> None:
    cmd, env = cli(*args, cache=cache)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def progress_at(path: Path, key: str = "step", at_least: int = 3):
    def ready():
        try:
            return json.loads(path.read_text())[key] >= at_least
        except (FileNotFoundError, json.JSONDecodeError):
            return False
    return ready


def no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert not left, left


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted smoke run (its teacher fine-tuned from scratch in its own cache)."""
    root = tmp_path_factory.mktemp("ref")
    run_to_end(["run", str(SMOKE), "--out", str(root / "run"), *EVERY_STEP], root / "cache")
    return root


def test_kill_during_a_distillation_stage_then_resume(reference, tmp_path):
    out = tmp_path / "run"
    kill_when(["run", str(SMOKE), "--out", str(out), *EVERY_STEP], reference / "cache",
              progress_at(out / "checkpoints" / "last" / "progress.json", "step", 5))
    assert not (out / "metrics.json").exists()
    run_to_end(["run", str(SMOKE), "--out", str(out), "--resume", *EVERY_STEP], reference / "cache")
    same_weights(reference / "run" / "student" / "model.safetensors", out / "student" / "model.safetensors")
    assert json.loads((out / "metrics.json").read_text())["student"]["dev"] == \
        json.loads((reference / "run" / "metrics.json").read_text())["student"]["dev"]
    no_temporaries(out)


def test_kill_during_teacher_fine_tuning_then_resume(reference, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    work = cache / "teachers"
    args = ["run", str(SMOKE), "--out", str(out), *EVERY_STEP, "--set", "teacher.finetune.epochs=2"]

    def mid_fine_tuning():
        return any(progress_at(p / "last" / "progress.json", "step", 4)() for p in work.glob("*.work"))

    kill_when(args, cache, mid_fine_tuning)
    assert not any((p / "teacher.json").exists() for p in work.iterdir() if not p.name.endswith(".work"))
    run_to_end([*args, "--resume"], cache)
    # The same teacher as fine-tuning it in one go (in a fresh cache).
    ref_cache = tmp_path / "ref-cache"
    run_to_end(["run", str(SMOKE), "--out", str(tmp_path / "ref"), *EVERY_STEP, "--set",
                "teacher.finetune.epochs=2"], ref_cache)
    (mine,) = [p for p in work.iterdir() if (p / "teacher.json").exists()]
    (theirs,) = [p for p in (ref_cache / "teachers").iterdir() if (p / "teacher.json").exists()]
    assert mine.name == theirs.name  # same content key
    same_weights(mine / "model.safetensors", theirs / "model.safetensors")
    assert not list(work.glob("*.work"))  # the resumable work folder is gone once the teacher is cached
    no_temporaries(cache)


def test_kill_while_building_the_teacher_logit_cache_then_resume(reference, tmp_path):
    import shutil

    cache, out = tmp_path / "cache", tmp_path / "run"
    shutil.copytree(reference / "cache" / "teachers", cache / "teachers")  # the same teacher, no logits yet
    cmd, env = cli("run", str(SMOKE), "--out", str(out), *EVERY_STEP, cache=cache)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("teacher logits: computing"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "finished before the logit cache was built"
    run_to_end(["run", str(SMOKE), "--out", str(out), "--resume", *EVERY_STEP], cache)
    mine = sorted((cache / "logits").glob("*.safetensors"))
    assert [p.name for p in mine] == sorted(p.name for p in (reference / "cache" / "logits").glob("*.safetensors"))
    for p in mine:
        torch.testing.assert_close(load_file(p)["logits"], load_file(reference / "cache" / "logits" / p.name)["logits"])
    same_weights(reference / "run" / "student" / "model.safetensors", out / "student" / "model.safetensors")
    no_temporaries(cache)
    no_temporaries(out)


def test_kill_during_augmentation_then_rerun(tmp_path):
    cfg = tmp_path / "aug.yaml"
    cfg.write_text(f"extends: {SMOKE}\naugment: {{method: tang, copies: 4, chunk_size: 8, "
                   "tang: {tagger: 'spacy:packaged'}}\ntask: {train_limit: 1000}\n")
    cache = tmp_path / "cache"

    def some_parts():
        return len(list(cache.glob("augment/*/part-*.jsonl"))) >= 3

    kill_when(["augment", str(cfg)], cache, some_parts)
    assert not list(cache.glob("augment/*/augmented.jsonl"))
    run_to_end(["augment", str(cfg), "--out", str(tmp_path / "resumed.jsonl")], cache)
    run_to_end(["augment", str(cfg), "--out", str(tmp_path / "straight.jsonl")], tmp_path / "cache2")
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "straight.jsonl").read_bytes()
    no_temporaries(cache)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    import distill.checkpoint

    out = tmp_path / "run"
    real, calls = distill.checkpoint.save_tensors, []

    def flaky(path, tensors, metadata=None):
        if Path(path).parent.name.startswith(".last.") and out in Path(path).parents:  # the run's next `last`
            calls.append(path)
        if len(calls) > 6:  # the first three checkpoints (model + rng each) succeed, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, tensors, metadata)

    monkeypatch.setattr(distill.checkpoint, "save_tensors", flaky)
    with raises_with(OSError, "No space left"):
        run_experiment(load_config(SMOKE, ["train.checkpoint_every=1"]), out, log=lambda *_: None)
    last = out / "checkpoints" / "last"
    assert json.loads((last / "progress.json").read_text())["step"] == 3
    assert load_file(last / "model.safetensors")  # intact and readable
    no_temporaries(out)
    # Through the command line the same fault is one clear line, not a traceback.
    monkeypatch.setattr(distill.checkpoint, "save_tensors", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device", "ckpt")))
    assert main(["run", str(SMOKE), "--out", str(tmp_path / "r2"), "--set", "train.checkpoint_every=1"]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "cannot read or write", "ckpt", "No space left on device", "--resume")


def test_unwritable_output_folder_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", str(SMOKE), "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert_facts(err, "cannot read or write", str(blocker))
    assert blocker.read_text() == "not a folder"


def test_a_checkpoint_moved_aside_by_a_killed_save_is_put_back(tmp_path):
    from distill.checkpoint import Checkpointer, Progress

    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save({"w": torch.ones(2)}, Progress(step=7))
    # Killed inside atomic_dir after the old folder was moved aside and before the new one was renamed in.
    aside = tmp_path / "ckpt" / ".last.abc123.old"
    (tmp_path / "ckpt" / "last").rename(aside)
    (tmp_path / "ckpt" / ".last.def456.tmp").mkdir()
    (tmp_path / "ckpt" / ".last.def456.tmp" / "model.safetensors").write_bytes(b"torn")
    assert ckpt.exists() and ckpt.load_progress().step == 7
    assert torch.equal(ckpt.load_model_state()["w"], torch.ones(2))
    no_temporaries(tmp_path)
    assert not aside.exists()


def test_atomic_writes_get_the_permissions_of_an_ordinary_write(tmp_path):
    """mkstemp/mkdtemp create 0600/0700 temporaries; renamed into place they made every result file (tables,
    metrics, predictions, exported students) unreadable to anyone but their writer."""
    from distill.io import atomic_dir, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "table.md", "x")
        with atomic_dir(tmp_path / "student") as tmp:
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "student").stat().st_mode & 0o777 == 0o755
