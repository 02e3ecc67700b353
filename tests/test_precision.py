"""Mixed precision: bf16 autocast with the teacher held in bf16 gives finite losses and the fp32 result within
bf16's tolerance. Runs on CPU here (accelerate's CPU autocast); the same path runs on a GPU. Each precision runs
in its own process because accelerate fixes the precision once per process."""

import json
import math
import os
import subprocess
import sys

import pytest

from .helpers import SMOKE


def run(precision: str, out) -> dict:
    done = subprocess.run([sys.executable, "-m", "distill.lab.cli", "run", str(SMOKE), "--out", str(out),
                           "--set", f"train.precision={precision}"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_bf16_matches_fp32_within_tolerance(tmp_path):
    full, half = run("no", tmp_path / "fp32"), run("bf16", tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["mixed_precision"] == "bf16"
    assert json.loads((tmp_path / "fp32" / "run.json").read_text())["mixed_precision"] == "no"
    for a, b in zip(full["history"], half["history"], strict=True):
        losses = [k for k in a if k.startswith("loss/")]
        assert losses
        for k in losses:
            assert math.isfinite(b[k])
            # bf16 keeps 8 bits of mantissa: terms agree to a few percent, not exactly.
            assert b[k] == pytest.approx(a[k], rel=0.05, abs=1e-3), k
        assert a[losses[0]] != b[losses[0]]  # bf16 really ran
