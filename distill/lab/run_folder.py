"""The state of a run folder, worked out in one place from the files a run leaves behind.

`run.json` is written when a run starts, `metrics.json` when it finishes, `failed.json` when a sweep records
its failure. Everything that can fail without training is checked before `run.json` exists, so a folder with
`run.json` and no `metrics.json` really is an interrupted run (resume it with `--resume`)."""

from __future__ import annotations

from pathlib import Path

from distill.config import ConfigError, ExperimentConfig, dump_yaml, from_dict, yaml_load
from distill.errors import DistillError
from distill.lab.records import FAILED_FILE, METRICS_FILE, RUN_FILE

FINISHED, FAILED, UNFINISHED, MISSING = "finished", "failed", "unfinished", "missing"


class RunError(DistillError):
    pass


def run_state(folder: Path) -> str:
    """finished | failed | unfinished | missing."""
    folder = Path(folder)
    if (folder / METRICS_FILE).exists():
        return FINISHED
    if (folder / FAILED_FILE).exists():
        return FAILED
    if (folder / RUN_FILE).exists():
        return UNFINISHED
    return MISSING


def latest_unfinished(root: Path) -> Path | None:
    """The most recently touched unfinished run under `root` (what `distill run --resume` continues)."""
    if not root.is_dir():
        return None
    runs = sorted((p for p in root.iterdir() if run_state(p) == UNFINISHED), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def config_difference(cfg: ExperimentConfig, folder: Path) -> list[str]:
    """Top-level sections in which `cfg` differs from the config the run in `folder` was started with."""
    # Through the loader, so that a setting added to the code since the run started (at its default) is
    # not a difference.
    saved_file = Path(folder) / "config.yaml"
    try:
        saved = yaml_load(dump_yaml(from_dict(yaml_load(saved_file.read_text()), src=str(saved_file))))
    except ConfigError as e:  # written by a version that had other settings
        return [f"unreadable now: {e}"]
    now = yaml_load(dump_yaml(cfg))
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def check_can_start(cfg: ExperimentConfig, folder: Path, resume: bool) -> None:
    """A new run needs a folder without a run; a resumed one the folder of a run of the same config."""
    folder = Path(folder)
    if resume:
        if not (folder / "config.yaml").exists():
            raise RunError(f"--resume: {folder} is not a run folder (no config.yaml)")
        diff = config_difference(cfg, folder)
        if diff:
            raise RunError(f"--resume: the config differs from the one {folder} was started with (in {diff}); "
                           "resume with the same config and overrides, or start a new run")
        return
    if started(folder):
        what = FINISHED if run_state(folder) == FINISHED else "unfinished (use --resume to continue it)"
        raise RunError(f"run folder {folder} already holds a {what} run; choose another --out")


def started(folder: Path) -> bool:
    """Whether a run began in `folder` (and so can be resumed): failures before that leave no run.json."""
    return (Path(folder) / RUN_FILE).exists()
