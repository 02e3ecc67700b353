"""Students as plugins: the interface a student kind implements (`Student`) and the registry that finds one by the
name a config's `student.kind` gives.

A student answers every question about its kind itself, so nothing outside `students/` asks "which student is
this?": how it is built (a classifier, or a masked LM for general distillation, or a clear refusal), what it will
build (`plan`: depth, width, checks that need no weights), its record for the losses, the parameters whose
gradients are clipped, the inputs it reads when it has its own vocabulary, its description for summaries, cards
and bench rows, its export (a folder, and the graph `distill export --format onnx` writes) and loading that folder
back for `distill predict`. Its config section is a dataclass deriving from `StudentConfig`, registered with it:
the `student:` mapping is validated against the section of its `kind`.

A new student is one file:

    @register_student("mine", config=MineConfig)
    class Mine(Student):
        def plan(self, cfg, teacher_config): ...
        ...

A package installed beside distillery registers its students through the `distill.students` entry-point group
(see `ENTRY_POINTS`); a config then names them like the built-ins.

The registry's one vocabulary is the registered name: configs, descriptions (`describe()["kind"]`), bench shapes
and ONNX reports all use it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from distill.errors import DistillError

if TYPE_CHECKING:  # only annotations: `distill.config` imports this module, and reading a config needs no torch
    import torch
    from torch import nn

    from distill.adaptor import Record
    from distill.input_encoding import InputEncoding
    from distill.needs import Needs

# The students that ship with distillery; imported on the first lookup, the way a plugin entry point would be
# loaded: the engine must not import `distill.students` (a plugin package) at module level.
BUILT_INS = "distill.students"


class StudentError(DistillError):
    pass


@dataclass
class StudentConfig:
    """What every student's section has; each kind registers its own section deriving from this one, and
    `student:` is validated against the section of its `kind` (`distill.config`)."""

    # The registered student (`tinybert`, `distilbert`, `bilstm`, or a plugin's).
    kind: str = "tinybert"
    # Where the weights start: `scratch` (random) for every kind; transformer students also take `teacher` (copy
    # embeddings and chosen teacher layers) or a checkpoint folder.
    init: str = "scratch"


@dataclass(frozen=True)
class Shape:
    """What `Student.plan` says the student will be, before any weights exist."""

    layers: int  # layers a layer map pairs with the teacher's (1 for a student with none to distil)
    width: int  # hidden width that projections map from (0: no hidden states)
    text: str  # one line for `distill check`: kind, shape and where the weights start
    checkpoint: str | None = None  # the folder or hub name the weights start from (projections may be carried)


@dataclass(frozen=True)
class OwnInputs:
    """A student that reads its own ids rather than the teacher's tokens: how a text becomes them."""

    encode: Callable[[str], list[int]]  # one sentence -> ids (already cut to the run's length)
    key: str  # names the vocabulary and length (the encoded ids are cached under it)
    size: int  # vocabulary size (the cached ids' integer type)
    note: str  # said once when the run starts


@dataclass
class Graph:
    """A student's exportable form: a module returning logits, its inputs in order and which axes vary, and how to
    make and read such inputs (the export's parity check and `distill bench` build batches through it)."""

    module: nn.Module
    input_names: list[str]
    dynamic_shapes: tuple
    kind: str  # the student's registered name
    vocab_size: int  # ids drawn for random inputs stay below it
    from_ids: Callable[..., dict[str, torch.Tensor]]  # (ids, lengths[, ids_b, lengths_b]) -> inputs by name
    lengths: Callable[[dict[str, torch.Tensor]], torch.Tensor]  # inputs -> each row's real length
    pair: bool = False  # the graph takes a second sentence and must be given one


@dataclass
class Loaded:
    """An exported student folder, read back for prediction."""

    model: nn.Module
    labels: list[str] | None  # None: a regression head (scores, not probabilities)
    tokenizer: Any = None  # what `Student.encode` reads texts with (None where the model carries its own)


class Student(ABC):
    """One student kind. Instances hold no state: every method is given the config section or the model."""

    name: ClassVar[str]  # set by `register_student`
    config: ClassVar[type[StudentConfig]]  # set by `register_student`
    # config.json `model_type`s of the exported folders `load` reads.
    folder_types: ClassVar[tuple[str, ...]] = ()
    # Hidden states and attention scores that intermediate losses (and layer maps) can read.
    intermediate: ClassVar[bool] = True
    # Has a masked-LM form (`build(..., masked_lm=True)`), which general distillation trains.
    masked_lm: ClassVar[bool] = True
    # Exported as a Hugging Face transformers folder (the model card's `library_name`).
    library: ClassVar[str | None] = None
    # The task types (`distill.task_types`) it has a head for; a run of another type is refused before it starts.
    task_types: ClassVar[tuple[str, ...]] = ("sequence_classification",)

    # ---------------------------------------------------------------- training

    @abstractmethod
    def plan(self, cfg: StudentConfig, teacher_config) -> Shape:
        """What `build` will make against a teacher of `teacher_config`, refusing what it cannot (a bad shape,
        init layers, an init folder, missing resources) without loading weights."""

    @abstractmethod
    def build(self, cfg: StudentConfig, teacher: nn.Module, seed: int, texts: Iterable[str] | None = None,
              pair: bool = False, masked_lm: bool = False, other_texts: Iterable[str] | None = None) -> nn.Module:
        """A classifier for the teacher's labels, or (`masked_lm`, general distillation) a masked LM, or a
        `StudentError` saying why this kind has none. `texts` (training and augmented) and `other_texts` (dev and
        test) are for a student that builds its own vocabulary."""

    def record(self, model: nn.Module, batch: dict, needs: Needs) -> Record:
        """What the losses read of one batch (the engine's adaptor for a Hugging Face model)."""
        from distill.adaptor import forward_record

        return forward_record(model, batch, needs)

    def clip_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters whose gradient norm is clipped."""
        return list(model.parameters())

    def own_inputs(self, model: nn.Module, max_length: int) -> OwnInputs | None:
        """None: the student reads the teacher's token ids; else how texts become its own ids."""
        return None

    # ---------------------------------------------------------------- describing

    @abstractmethod
    def describe(self, model: nn.Module) -> dict:
        """Shape facts for summaries, cards and reports: `kind` (the registered name) first, then `layers`,
        `hidden` and whatever else says what the model is."""

    def label(self, description: dict) -> str:
        """A short shape name for the closing summary, e.g. `4L-312`."""
        return layers_label(description)

    def title(self, description: dict) -> str:
        """The shape as the model card's heading says it."""
        return f"{description.get('layers')}-layer, hidden {description.get('hidden')}"

    def encoder_flops_per_token(self, model: nn.Module, seq_len: int) -> int | None:
        """FLOPs per token of the layers compared with the teacher's encoder; None where there is no such encoder."""
        return None

    @abstractmethod
    def flops(self, model: nn.Module, seq_len: int) -> int:
        """FLOPs (2 x multiply-adds) of one example of `seq_len` tokens through the whole classifier."""

    @abstractmethod
    def usage(self, folder: str, pair: bool) -> list[str]:
        """Markdown lines showing how to load the exported folder `folder` without distillery (the model card)."""

    @abstractmethod
    def random(self, fields: dict, num_labels: int, vocab: int) -> nn.Module:
        """A randomly initialised classifier of the shape `fields` (config-section keys) gives, for `distill bench`."""

    # ---------------------------------------------------------------- serving

    @abstractmethod
    def export(self, model: nn.Module, folder: str | Path, tokenizer, projections: nn.ModuleDict | None = None,
               encoding: InputEncoding | None = None) -> None:
        """Write the trained student to `folder` (atomically), with the run's input `encoding` beside it."""

    @abstractmethod
    def load(self, folder: Path) -> Loaded:
        """An exported folder, in eval mode."""

    @abstractmethod
    def encode(self, model: nn.Module, tokenizer: Any, texts: list[str], texts_b: list[str] | None,
               encoding: InputEncoding) -> dict[str, torch.Tensor]:
        """One padded batch of the graph's inputs by name (see `graph`), encoded as the run encoded its data;
        `model` and `tokenizer` as `load` gave them (`Loaded.model`, `Loaded.tokenizer`)."""

    def word_positions(self, model: nn.Module, tokenizer: Any, texts: list[str], encoding: InputEncoding
                       ) -> list[list[int]]:
        """Token classification: for each text (words separated by single spaces), the position in `encode`'s
        output of each word that fits, whose logits give its tag."""
        raise StudentError(f"a {self.name} student has no per-word head (token classification)")

    @abstractmethod
    def logits(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's own forward on `inputs` (as `encode` makes them), as logits."""

    @abstractmethod
    def graph(self, model: nn.Module) -> Graph:
        """The form `torch.onnx.export` is given, computing what `logits` computes."""


_STUDENTS: dict[str, Student] = {}


def register_student(name: str, config: type[StudentConfig]) -> Callable[[type[Student]], type[Student]]:
    """Class decorator: register a `Student` under `name` (its `student.kind`) with its config section."""
    if not (isinstance(config, type) and issubclass(config, StudentConfig)):
        raise TypeError(f"student {name!r}: its config must be a dataclass deriving from StudentConfig")

    def add(cls: type[Student]) -> type[Student]:
        if name in _STUDENTS and type(_STUDENTS[name]) is not cls:
            raise ValueError(f"student {name!r} is registered twice ({type(_STUDENTS[name]).__name__}, "
                             f"{cls.__name__})")
        cls.name, cls.config = name, config
        _STUDENTS[name] = cls()
        return cls

    return add


# A package outside distillery adds a student by naming the module that registers it under this entry-point group
# (pyproject: `[project.entry-points."distill.students"] mine = "my_package.mine"`); installing it is enough.
ENTRY_POINTS = "distill.students"
_loaded_entry_points = False


def students() -> dict[str, Student]:
    """Every registered student by name: the built-ins, then the installed packages' (entry points), once."""
    global _loaded_entry_points
    importlib.import_module(BUILT_INS)
    if not _loaded_entry_points:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                entry.load()
            except Exception as e:  # a broken plugin must say which one, not surface as a missing kind
                raise StudentError(f"entry point {entry.name!r} = {entry.value!r} (group {ENTRY_POINTS!r}) could "
                                   f"not be imported: {type(e).__name__}: {e}") from e
        _loaded_entry_points = True
    return _STUDENTS


def registered() -> dict[str, Student]:
    """The registry itself, without loading anything (for the built-ins' own package to expose)."""
    return _STUDENTS


def layers_label(description: dict) -> str:
    """`4L-312`: a student's shape from its recorded layers and width, whatever its kind."""
    return f"{description.get('layers')}L-{description.get('hidden')}"


def label_of(description: dict) -> str:
    """A recorded student's shape name, by its kind where that is registered; an older run's kind `bert` (TinyBERT
    and DistilBERT alike, before the registry) or an uninstalled plugin's is named by layers and width."""
    student = students().get(description.get("kind"))
    return student.label(description) if student is not None else layers_label(description)


def get_student(kind: str, where: str = "`student.kind`") -> Student:
    """The student registered as `kind`; a `StudentError` naming `where` and the registered kinds otherwise."""
    known = students()
    if kind not in known:
        raise StudentError(f"{where} = {kind!r}: expected one of {', '.join(repr(k) for k in known)} (the "
                          "registered students)")
    return known[kind]


def student_for_folder(model_type: str | None, folder: Path) -> Student:
    """The student whose exported folders have this config.json `model_type`."""
    for student in students().values():
        if model_type in student.folder_types:
            return student
    types = sorted(t for s in students().values() for t in s.folder_types)
    raise StudentError(f"{folder}: config.json `model_type` = {model_type!r} is no student's folder; expected one of "
                      f"{types}")
