"""A stage's inputs as one object, and the session that every stage of a run shares.

`StageInputs` is what one stage trains on and against (its config, objective, layer pairs, data, teacher,
seed and input masking); `Session` is where it trains and what it leaves behind (accelerator, settings,
checkpoints, TensorBoard, a per-step hook). Teacher fine-tuning, task distillation and general distillation
all build these two and call the same `train_stage`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accelerate import Accelerator
from torch import nn

from distill.batching import MlmMasking
from distill.checkpoint import Checkpointer
from distill.config import StageConfig, TrainConfig
from distill.layer_map import layer_map
from distill.losses import LossContext
from distill.objective import Objective
from distill.tasks import TaskData


@dataclass
class Session:
    accelerator: Accelerator
    train: TrainConfig
    ckpt: Checkpointer
    writer: Any = None  # a SummaryWriter on the main process, else None
    on_step: Callable[[str, int], None] | None = None


@dataclass
class StageInputs:
    config: StageConfig
    objective: Objective
    ctx: LossContext
    data: Any  # the training dataset (task split, augmented set or corpus)
    dev: Any
    task: TaskData | None  # None: corpus text (general distillation), judged by held-out losses only
    # The teacher, or several by name (as the objective names them).
    teacher: nn.Module | dict[str, nn.Module] | None
    seed: int
    mlm: MlmMasking | None = None

    @property
    def teachers(self) -> dict[str, nn.Module]:
        """Every teacher by name (one teacher: under the objective's name for it)."""
        if isinstance(self.teacher, dict):
            return self.teacher
        return {} if self.teacher is None else {self.objective.teachers[0]: self.teacher}

    @property
    def schedule(self) -> str:
        """The stage's learning-rate schedule: constant for task distillation of intermediate losses only (TinyBERT's
        reference trains that step without a schedule), else linear, unless the config names one."""
        if self.config.schedule is not None:
            return self.config.schedule
        intermediate = self.objective.needs.intermediate
        return "constant" if self.task is not None and intermediate and not self.objective.trains_logits else "linear"

    @property
    def select(self) -> str:
        """Which epoch the stage keeps: its best dev metric when it trains the logits on a task, else the last."""
        if self.task is None:
            return "last"
        return self.config.select or ("metric" if self.objective.trains_logits else "last")


def stage_inputs(config: StageConfig, objective: Objective, datasets: dict, task: TaskData | None,
                 teacher: nn.Module | dict[str, nn.Module] | None, seed: int, depths: tuple[int, ...],
                 tokenizer) -> StageInputs:
    """The inputs of a distillation stage; `depths` = (student layers, teacher layers, further teachers' layers)
    for its layer maps (one per teacher, in the objective's teacher order)."""
    pairs, teacher_pairs = [], {}
    if objective.needs.intermediate:
        for name, depth in zip(objective.teachers, depths[1:], strict=False):
            teacher_pairs[name] = layer_map(config.layer_map, depths[0], depth)
        pairs = teacher_pairs[objective.teachers[0]]
    mlm = None
    if config.mlm_masking:
        counts = datasets[config.data].token_counts() if config.mlm_smoothing is not None else None
        mlm = MlmMasking.for_tokenizer(tokenizer, seed, counts, config.mlm_smoothing)
    ctx = LossContext(pairs, task is not None and task.is_regression, teacher_pairs)
    return StageInputs(config, objective, ctx,
                       datasets[config.data], datasets["dev"], task, teacher, seed, mlm)
