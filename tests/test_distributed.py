"""Two CPU processes (torchrun, gloo) against one process with the same global batch: same weights, same
metrics (the duplicates a distributed sampler pads with are dropped), one set of files, and a checkpoint
written by one process resumed by two."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from distill.config import load_config
from distill.lab.run import run_experiment

from .helpers import ROOT


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    # Dropout off and per-example losses, so that splitting each batch over processes changes nothing but
    # the order of floating-point sums. dev 95: the last dev batch cannot split evenly (padding duplicates).
    f = tmp_path_factory.mktemp("dist") / "dist.yaml"
    f.write_text(f"""
extends: {ROOT / 'experiments' / 'smoke.yaml'}
name: dist
task: {{dev_limit: 95}}
stages:
  - {{name: intermediate, drop: true}}
  - name: prediction
    epochs: 2
    lr: 1.0e-3
    batch_size: 32
    losses:
      soft_cross_entropy: {{weight: 0.5, temperature: 2.0}}
      hard_ce: 0.5
train: {{dropout: 0.0, eval_batch_size: 32, log_every: 2, checkpoint_every: 2}}
""")
    return f


@pytest.fixture(scope="module")
def single(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    metrics = run_experiment(load_config(config), out, log=lambda *_: None)
    return out, metrics


def torchrun(config, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "distill.lab.cli", "run", str(config), "--out", str(out), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def assert_same_student(a, b):
    wa, wb = load_file(a / "student" / "model.safetensors"), load_file(b / "student" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=2e-5, rtol=1e-4, msg=k)


def test_two_processes_equal_one_with_the_same_global_batch(config, single, tmp_path):
    out1, m1 = single
    m2 = torchrun(config, tmp_path / "run")
    assert_same_student(out1, tmp_path / "run")
    # 95 dev examples: metrics over exactly those (gather_for_metrics drops the padded duplicates).
    for split in ("dev", "test"):
        for k, v in m1["student"][split].items():
            assert m2["student"][split][k] == pytest.approx(v, abs=1e-6), (split, k)
    for h1, h2 in zip(m1["history"], m2["history"], strict=True):
        assert h2["step"] == h1["step"]
        assert h2["loss/soft_cross_entropy"] == pytest.approx(h1["loss/soft_cross_entropy"], abs=1e-5)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["processes"] == 2
    # Only the main process writes: every event file (scalars, hparams) carries one process id.
    events = list((tmp_path / "run" / "tb").glob("events.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1


def test_checkpoint_from_one_process_resumes_on_two(config, single, tmp_path):
    out1, m1 = single
    out = tmp_path / "run"

    def crash(stage, step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_config(config), out, on_step=crash, log=lambda *_: None)
    assert json.loads((out / "checkpoints" / "last" / "progress.json").read_text())["step"] == 4
    m2 = torchrun(config, out, "--resume")
    assert_same_student(out1, out)
    assert m2["student"]["dev"] == pytest.approx(m1["student"]["dev"], abs=1e-6)
