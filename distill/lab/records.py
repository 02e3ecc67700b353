"""What a run folder records, as types: `run.json` (written when a run starts), `metrics.json` (when it finishes)
and `failed.json` (when a sweep records a failure).

Writers build these records and save them; summaries, reports, model cards and sweeps load them back through the
same types instead of repeating key names. The JSON keeps the layout runs have always written (published records
of older runs are read by today's reports): keys a version did not write load as None, keys this version does not
know are kept as they are, and a file that cannot be read raises `RecordError` naming the file and the key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from distill.errors import DistillError
from distill.io import write_json
from distill.tasks import EVAL_SPLITS

RUN_FILE, METRICS_FILE, FAILED_FILE = "run.json", "metrics.json", "failed.json"


class RecordError(DistillError):
    pass


# ---------------------------------------------------------------- reading with the file and key in every error

_TYPES: dict[str, tuple[type, ...]] = {"an integer": (int,), "a number": (int, float), "a string": (str,),
                                       "true or false": (bool,), "an object": (dict,), "a list": (list,)}


class _Fields:
    """The keys of one JSON object of a record file, each taken once, checked against the type it must have."""

    def __init__(self, data: Any, source: str, where: str = ""):
        if not isinstance(data, dict):
            raise RecordError(f"{source}: `{where or '(top level)'}` = {_shown(data)}: expected an object")
        self.data, self.source, self.where, self.taken = data, source, where, set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, expected: str, required: bool = False) -> Any:
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise RecordError(f"{self.source}: no `{self.key(name)}`; expected {expected}")
            return None
        value = self.data[name]
        if value is None and not required:
            return None
        kinds = _TYPES[expected]
        # JSON's true/false are Python ints: refuse them where a number is meant.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise RecordError(f"{self.source}: `{self.key(name)}` = {_shown(value)}: expected {expected}")
        return value

    def child(self, name: str, required: bool = False) -> _Fields | None:
        value = self.get(name, "an object", required)
        return None if value is None else _Fields(value, self.source, self.key(name))

    def scores(self, names: tuple[str, ...]) -> dict[str, dict[str, float] | None]:
        """Per-split metrics (`{"dev": {"macro_f1": 0.8}, ...}`), in the file's order; a split may be null."""
        out = {}
        for split in [k for k in self.data if k in names]:
            metrics = self.get(split, "an object")
            if metrics is not None:
                for k, v in metrics.items():
                    if not isinstance(v, (int, float)) or isinstance(v, bool):
                        raise RecordError(f"{self.source}: `{self.key(split)}.{k}` = {_shown(v)}: expected a number")
            out[split] = metrics
        return out

    def rest(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in self.taken}


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def _set(out: dict, key: str, value: Any) -> None:
    """Keys a run writes only when they have a value."""
    if value is not None:
        out[key] = value


class _RecordFile:
    """A record kept as one JSON file in a run folder: `FILE` names it; subclasses give to_dict and from_dict."""

    FILE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Self:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        path = Path(folder) / cls.FILE
        return cls.from_dict(_load(path), str(path))

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / self.FILE, self.to_dict())


def run_folders(root: Path) -> list[Path]:
    """Every run folder under `root`: one holding run.json, or only failed.json (a run refused before it
    started); checkpoints inside a run are not runs."""
    return sorted({f.parent for pattern in (RUN_FILE, FAILED_FILE) for f in root.rglob(pattern)
                   if "checkpoints" not in f.relative_to(root).parts})


# ---------------------------------------------------------------- run.json


@dataclass
class GitState:
    commit: str | None = None
    dirty: bool | None = None


@dataclass
class RunInfo(_RecordFile):
    """`run.json`: who started the run, where, with what. `labels` are the sweep's variant name and grid point
    (`{"variant": "no-att", "stages.1.lr": 1e-4}`), written beside the other keys so that a reader sees them
    first; every key this version does not know is read as a label."""

    FILE: ClassVar[str] = RUN_FILE

    name: str | None = None
    seed: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    resume_command: str | None = None  # when a resumed run has the command that started it
    git: GitState | None = None
    libraries: dict[str, str | None] = field(default_factory=dict)
    device: str | None = None
    platform: str | None = None
    torch_threads: int | None = None
    gpu: str | None = None
    processes: int | None = None
    mixed_precision: str | None = None
    resumed: bool | None = None

    @property
    def variant(self) -> str | None:
        return self.labels.get("variant")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "seed": self.seed, **self.labels, "command": self.command}
        _set(out, "resume_command", self.resume_command)
        git = self.git or GitState()
        out.update({"git": {"commit": git.commit, "dirty": git.dirty}, "libraries": self.libraries,
                    "device": self.device, "platform": self.platform, "torch_threads": self.torch_threads})
        _set(out, "gpu", self.gpu)
        out.update({"processes": self.processes, "mixed_precision": self.mixed_precision, "resumed": self.resumed})
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = RUN_FILE) -> RunInfo:
        f = _Fields(data, source)
        git = f.child("git")
        info = cls(
            name=f.get("name", "a string"), seed=f.get("seed", "an integer"), command=f.get("command", "a string"),
            resume_command=f.get("resume_command", "a string"),
            git=None if git is None else GitState(git.get("commit", "a string"), git.get("dirty", "true or false")),
            libraries=f.get("libraries", "an object") or {}, device=f.get("device", "a string"),
            platform=f.get("platform", "a string"), torch_threads=f.get("torch_threads", "an integer"),
            gpu=f.get("gpu", "a string"), processes=f.get("processes", "an integer"),
            mixed_precision=f.get("mixed_precision", "a string"), resumed=f.get("resumed", "true or false"))
        f.get("variant", "a string")  # the one label whose type readers rely on
        info.labels = {k: v for k, v in data.items() if k not in f.taken or k == "variant"}
        return info


# ---------------------------------------------------------------- failed.json


@dataclass
class RunFailure(_RecordFile):
    """`failed.json`: why a sweep's run failed (the traceback is in failed.log beside it)."""

    FILE: ClassVar[str] = FAILED_FILE

    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error}

    @classmethod
    def from_dict(cls, data: Any, source: str = FAILED_FILE) -> RunFailure:
        return cls(_Fields(data, source).get("error", "a string"))


# ---------------------------------------------------------------- metrics.json

@dataclass
class TeacherTaskFacts:
    """What a task run records about the teacher it learned from (a general run has none of these)."""

    cache_key: str | None = None  # of the teacher-logit cache; None for an ensemble
    gate: dict[str, Any] | None = None  # the fine-tuned teacher's quality gate
    augmented_labels: dict[str, Any] | None = None
    teachers: dict[str, dict[str, Any]] | None = None  # each teacher of an ensemble, by name
    majority_baseline: dict[str, float] | None = None  # the majority class's main metric per split


@dataclass
class TeacherFacts:
    parameters: int | None = None
    layers: int | None = None
    hidden: int | None = None
    encoder_flops_per_token: int | None = None
    scores: dict[str, dict[str, float] | None] = field(default_factory=dict)  # per evaluation split
    source: str | None = None  # the checkpoint or packaged model; "ensemble of a, b" for several teachers
    task: TeacherTaskFacts | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.scores)
        if self.task is not None:
            t = self.task
            out.update({"source": self.source, "cache_key": t.cache_key, "gate": t.gate,
                        "augmented_labels": t.augmented_labels})
            _set(out, "teachers", t.teachers)
            out["majority_baseline"] = t.majority_baseline
        else:
            _set(out, "source", self.source)
        out.update({**self.extra, "parameters": self.parameters, "layers": self.layers, "hidden": self.hidden,
                    "encoder_flops_per_token": self.encoder_flops_per_token})
        return out

    @classmethod
    def from_fields(cls, f: _Fields) -> TeacherFacts:
        facts = cls(parameters=f.get("parameters", "an integer"), layers=f.get("layers", "an integer"),
                    hidden=f.get("hidden", "an integer"),
                    encoder_flops_per_token=f.get("encoder_flops_per_token", "a number"), scores=f.scores(EVAL_SPLITS))
        facts.source = f.get("source", "a string")
        if any(f.has(k) for k in ("cache_key", "gate", "augmented_labels", "teachers", "majority_baseline")):
            facts.task = TeacherTaskFacts(f.get("cache_key", "a string"), f.get("gate", "an object"),
                                          f.get("augmented_labels", "an object"), f.get("teachers", "an object"),
                                          f.get("majority_baseline", "an object"))
        facts.extra = f.rest()
        return facts


@dataclass
class StudentFacts:
    parameters: int | None = None
    # What the student says about itself (`Student.describe`: kind, layers, hidden, ...), as it says it. The kind
    # is the registered name; runs before the registry wrote `bert` for TinyBERT and DistilBERT alike.
    description: dict[str, Any] = field(default_factory=dict)
    encoder_flops_per_token: int | None = None  # None where the student is no transformer encoder
    scores: dict[str, dict[str, float] | None] = field(default_factory=dict)  # per evaluation split
    eval_examples_per_s: float | None = None  # inference speed on the run's device
    predictions: str | None = None  # the per-example predictions' file in the run folder
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return self.description.get("kind")

    @property
    def layers(self) -> int | None:
        return self.description.get("layers")

    @property
    def hidden(self) -> int | None:
        return self.description.get("hidden")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.scores)
        _set(out, "eval_examples_per_s", self.eval_examples_per_s)
        _set(out, "predictions", self.predictions)
        out.update({**self.extra, "parameters": self.parameters, **self.description,
                    "encoder_flops_per_token": self.encoder_flops_per_token})
        return out

    @classmethod
    def from_fields(cls, f: _Fields) -> StudentFacts:
        facts = cls(parameters=f.get("parameters", "an integer"), scores=f.scores(EVAL_SPLITS),
                    encoder_flops_per_token=f.get("encoder_flops_per_token", "a number"),
                    eval_examples_per_s=f.get("eval_examples_per_s", "a number"),
                    predictions=f.get("predictions", "a string"))
        f.get("kind", "a string")
        f.get("layers", "an integer")
        f.get("hidden", "an integer")
        # Everything after `parameters` is the description, in the order the student gave it.
        keys = list(f.data)
        after = keys[keys.index("parameters") + 1:] if "parameters" in keys else ["kind", "layers", "hidden"]
        facts.description = {k: f.data[k] for k in after if k in f.data and k != "encoder_flops_per_token"}
        f.taken.update(facts.description)
        facts.extra = f.rest()
        return facts


@dataclass
class Ratios:
    """Student over teacher."""

    parameters: float | None = None
    encoder_compute: float | None = None  # encoder FLOPs per token; None for a student without one
    dev_score: float | None = None  # dev main metric

    @classmethod
    def from_fields(cls, f: _Fields) -> Ratios:
        return cls(f.get("parameters", "a number"), f.get("encoder_compute", "a number"),
                   f.get("dev_score", "a number"))


@dataclass
class TaskFacts:
    """What a task-distillation run adds: the task and its data."""

    task: str | None = None
    data: dict[str, int] = field(default_factory=dict)  # examples per split (augmented included)
    source_splits: dict[str, str] = field(default_factory=dict)  # each split's name in the source
    subsampled: dict[str, list[int]] = field(default_factory=dict)  # split -> [kept, whole]
    selected: dict[str, Any] = field(default_factory=dict)  # per stage: the evaluation whose checkpoint was kept


@dataclass
class GeneralFacts:
    """What a general-distillation run adds: held-out distillation losses (stage -> term -> value) and its corpus."""

    heldout_before: dict[str, dict[str, float]] = field(default_factory=dict)
    heldout_after: dict[str, dict[str, float]] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)


_TASK_KEYS = ("task", "data", "source_splits", "subsampled", "selected")
_GENERAL_KEYS = ("heldout_before", "heldout_after", "corpus")


@dataclass
class RunMetrics(_RecordFile):
    """`metrics.json`: a finished run's results, the two models' sizes and compute, its history and wall time;
    `task` for task distillation, `general` for general distillation."""

    FILE: ClassVar[str] = METRICS_FILE

    name: str | None = None
    main_metric: str | None = None
    teacher: TeacherFacts = field(default_factory=TeacherFacts)
    student: StudentFacts = field(default_factory=StudentFacts)
    ratios: Ratios = field(default_factory=Ratios)
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation during training
    wall_seconds: float | None = None
    task: TaskFacts | None = None
    general: GeneralFacts | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_general(self) -> bool:
        return self.general is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.general is not None:
            out["general"] = True
        elif self.task is not None:
            out["task"] = self.task.task
        out["main_metric"] = self.main_metric
        if self.task is not None and self.general is None:
            t = self.task
            out.update({"data": t.data, "source_splits": t.source_splits, "subsampled": t.subsampled,
                        "selected": t.selected})
        r = self.ratios
        out.update({"teacher": self.teacher.to_dict(), "student": self.student.to_dict(),
                    "ratios": {"parameters": r.parameters, "encoder_compute": r.encoder_compute,
                               "dev_score": r.dev_score}})
        if self.general is not None:
            g = self.general
            out.update({"heldout_before": g.heldout_before, "heldout_after": g.heldout_after, "corpus": g.corpus})
        out.update({**self.extra, "history": self.history, "wall_seconds": self.wall_seconds})
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = METRICS_FILE) -> RunMetrics:
        f = _Fields(data, source)
        m = cls(name=f.get("name", "a string"), main_metric=f.get("main_metric", "a string"),
                teacher=TeacherFacts.from_fields(f.child("teacher") or _Fields({}, source, "teacher")),
                student=StudentFacts.from_fields(f.child("student", required=True)),
                ratios=Ratios.from_fields(f.child("ratios") or _Fields({}, source, "ratios")),
                history=f.get("history", "a list") or [], wall_seconds=f.get("wall_seconds", "a number"))
        if f.get("general", "true or false"):
            m.general = GeneralFacts(f.get("heldout_before", "an object") or {},
                                     f.get("heldout_after", "an object") or {}, f.get("corpus", "an object") or {})
        elif any(f.has(k) for k in _TASK_KEYS):
            m.task = TaskFacts(f.get("task", "a string"), f.get("data", "an object") or {},
                               f.get("source_splits", "an object") or {}, f.get("subsampled", "an object") or {},
                               f.get("selected", "an object") or {})
        if m.main_metric is None and m.general is None and any(m.student.scores.values()):
            raise RecordError(f"{source}: no `main_metric`; expected the name of the metric a task run is judged by")
        m.extra = f.rest()
        return m

    def values(self) -> dict[str, float]:
        """The numbers the run contributes to a table: task metrics per split (`dev macro_f1`), or a general run's
        held-out losses after training (`heldout hidden_mse`, or `heldout <stage> <term>` with several stages)."""
        out = {}
        if self.general is not None:
            after = self.general.heldout_after
            for stage, terms in after.items():
                prefix = "heldout" if len(after) == 1 else f"heldout {stage}"
                out.update({f"{prefix} {k.removeprefix('loss/')}": float(v) for k, v in terms.items()})
            return out
        for split in EVAL_SPLITS:
            for k, v in (self.student.scores.get(split) or {}).items():
                if not k.startswith("loss/"):
                    out[f"{split} {k}"] = float(v)
        return out
