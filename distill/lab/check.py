"""`distill check`: every check a run makes before its folder exists, by the run's own code (`workflow_for`,
`preflight.plan_run`, the workflow's constructor), then the plan of the run: the task, teacher and student, and per
stage its data, losses, layer map and the size of the work (examples, optimizer steps, tokens). Nothing is trained,
no model weights are loaded and nothing is built; sizes that only a build would give (an augmented set not built
yet, a corpus not packed yet) are marked as upper bounds or estimates. With `estimate` (the CLI's default), the wall
time too, by timing a few real batches of a random-weight replica of the run (`distill/lab/estimate.py`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from distill.config import (
    ConfigError,
    CorpusConfig,
    ExperimentConfig,
    StageConfig,
    apply_override,
    extends_chain,
    load_config,
    load_raw,
)
from distill.encoded import chunks, encoded_folder
from distill.errors import DistillError
from distill.input_encoding import tokenizer_kwargs
from distill.io import read_json
from distill.lab.preflight import Plan, plan_run
from distill.lab.run import workflow_for
from distill.layer_map import layer_map
from distill.objective import Objective
from distill.tasks import Example, TaskData
from distill.trainer import optimizer_steps

# Lines of an unpacked corpus read to estimate its size (a full pass is the run's packing, which can take hours).
SAMPLE_LINES = 20_000
ESTIMATE, AT_MOST = "~", "at most "


@dataclass
class Size:
    """One epoch of a stage's data. A mark says how exact a figure is: "" exact, "at most " an upper bound, "~" an
    estimate; None: unknown."""

    examples: int | None
    tokens: int | None
    examples_mark: str = ""
    tokens_mark: str = ""
    note: str = ""


@dataclass
class Checked:
    """A config that passed every check, and its plan as printable lines."""

    config: ExperimentConfig
    lines: list[str]


def check(path: str | Path, overrides: list[str] | tuple[str, ...] = (), variant: str | None = None,
          estimate: bool = False) -> Checked:
    """Run every check of `distill run` that needs no training on the config at `path` and plan the run. A config
    with variants, seeds or a grid is a sweep: every variant is checked (a sweep must not stop at its n-th run for
    a resource its first runs did not need) and one is planned: `variant`, else the sweep's reference, else the
    first."""
    runs = select_runs(path, overrides, variant)
    plan, workflow = preflight(runs.chosen, path, runs.name)
    for name, cfg in runs.others.items():
        preflight(cfg, path, name)
    return Checked(runs.chosen, [f"checks passed: {path} (config, task data, tokenizer and teacher, student, layer "
                                 "maps, vectors, augmentation and corpus sources)", *extends_lines(path),
                                 *runs.lines, *plan_lines(runs.chosen, plan, workflow, estimate)])


def extends_lines(path: str | Path) -> list[str]:
    """Where a recipe's inherited values come from (the stages below are shown merged)."""
    chain = extends_chain(path)
    if len(chain) == 1:
        return []
    here = Path.cwd()
    shown = [str(p.relative_to(here)) if p.is_relative_to(here) else str(p) for p in chain[1:]]
    return [f"extends:  {' -> '.join(shown)} (stages merged by name; every value below is the merged one)"]


def preflight(cfg: ExperimentConfig, path: str | Path = "", variant: str | None = None):
    """(plan, workflow) exactly as `run_experiment` makes them before its run folder exists; an error names the
    variant of a sweep it belongs to."""
    try:
        kind = workflow_for(cfg)
        plan = plan_run(cfg)
        return plan, kind(cfg, plan)
    except DistillError as e:
        if variant is None:
            raise
        raise ConfigError(f"{path} (variant {variant!r}): {e}") from None


# ---------------------------------------------------------------- which runs of a config


@dataclass
class Runs:
    chosen: ExperimentConfig  # the run planned in full
    name: str | None  # its variant (None: not a sweep)
    others: dict[str, ExperimentConfig]  # every other variant of a sweep, by name: checked, not planned
    lines: list[str]  # what the sweep holds


def select_runs(path: str | Path, overrides, variant: str | None) -> Runs:
    raw = load_raw(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    from distill.lab.sweep import expand, is_sweep

    if not is_sweep(raw):
        if variant is not None:
            raise ConfigError(f"--variant {variant!r}: {path} has no variants, seeds or grid")
        return Runs(load_config(path, overrides), None, {}, [])
    plans = expand(path, list(overrides))  # builds, and so validates, every run's config
    first = {}
    for p in plans:  # seeds change no check: one run per variant
        first.setdefault(p.variant, p)
    reference = (raw.get("sweep") or {}).get("reference")
    chosen = variant or (reference if reference in first else next(iter(first)))
    if chosen not in first:
        raise ConfigError(f"--variant {variant!r}: {path} has no such variant; its variants: {', '.join(first)}")
    seeds = sorted({p.seed for p in plans})
    run = first[chosen]
    return Runs(run.config, chosen, {name: p.config for name, p in first.items() if name != chosen},
                [f"sweep:    {len(plans)} runs ({len(first)} variants x seeds {seeds}), every variant checked: "
                 f"{', '.join(first)}",
                 f"          planned below: variant {chosen!r}, seed {run.seed} (--variant NAME for another)"])


# ---------------------------------------------------------------- sizes


def count_tokens(examples: Iterable[Example], tokenizer, max_length: int, what: str, total: int | None = None) -> int:
    """Tokens of `examples` (streamed) as the run encodes them: the teacher's tokenizer, special tokens included,
    pairs as pairs, truncated to `max_length`."""
    count = 0
    # Only a set that takes a while (a large GLUE training set, a built augmented set) shows the bar.
    with tqdm(total=total, desc=f"check: counting the tokens of {what}", unit=" examples", leave=False,
              delay=1.0) as bar:
        for chunk in chunks(examples):
            pair = any(ex.text_b is not None for ex in chunk)
            enc = tokenizer([ex.text_a for ex in chunk], [ex.text_b for ex in chunk] if pair else None,
                            return_attention_mask=False, return_token_type_ids=False, **tokenizer_kwargs(max_length))
            count += sum(len(ids) for ids in enc["input_ids"])
            bar.update(len(chunk))
    return count


def window_size(questions: list[Example], tokenizer, max_length: int, windows: tuple[int, int]) -> Size:
    """Extractive QA: the windows a run trains on (and their tokens), counted by encoding them."""
    from distill.qa_windows import encode_windows

    n = tokens = 0
    with tqdm(total=len(questions), desc="check: counting the windows of the training set", unit=" questions",
              leave=False, delay=1.0) as bar:
        for chunk in chunks(questions):
            f = encode_windows(chunk, tokenizer, max_length, *windows)
            n, tokens = n + len(f), tokens + sum(len(ids) for ids in f.input_ids)
            bar.update(len(chunk))
    return Size(n, tokens, note=f"{len(questions):,} questions in {n:,} windows")


def augmented_size(cfg: ExperimentConfig, task: TaskData, tokenizer, train: Size) -> Size:
    """The augmented set's real size once built; before, the upper bound (every copy distinct) and an estimate."""
    from distill.augment.runner import augmented_identity, augmented_path, iter_augmented

    path = augmented_path(cfg, task)
    if path.exists():
        folder = encoded_folder(augmented_identity(path), tokenizer, cfg.task.max_length, task.is_regression)
        if (folder / "meta.json").exists():
            meta = read_json(folder / "meta.json")
            return Size(meta["examples"], meta["tokens"], note=f"built: {path}; encoded: {folder}")
        examples = tokens = 0
        for chunk in chunks(iter_augmented(path)):
            examples += len(chunk)
            tokens += count_tokens(chunk, tokenizer, cfg.task.max_length, "the augmented set")
        return Size(examples, tokens, note=f"built: {path}")
    from distill.augment.cost import copies_per_example

    copies = copies_per_example(cfg.augment, task.is_pair)
    k = 1 + copies
    return Size(train.examples * k, train.tokens * k, AT_MOST, ESTIMATE,
                note=f"not built yet (the run, or `distill augment`, builds it at {path}): at most "
                     f"{train.examples:,} x (1 + {copies} copies) examples, as duplicates are dropped; "
                     f"tokens estimated as the training set's x {k}")


def corpus_size(c: CorpusConfig, tokenizer) -> Size:
    """The training sequences of the packed corpus and their tokens; estimated when it is not packed yet."""
    from distill.corpus import CorpusDataset, corpus_folder

    folder = corpus_folder(c, tokenizer)
    if (folder / "meta.json").exists():
        ds = CorpusDataset(folder, "train", c.heldout, tokenizer.pad_token_id or 0)
        return Size(len(ds), int(ds.lengths().sum()), note=f"packed: {folder}")
    return estimate_corpus(c, tokenizer, folder)


def _sample(source: str) -> tuple[list[str], float] | None:
    """The first lines of a corpus source and the fraction of the source they are; None when the size cannot be
    known without the hub."""
    if source.startswith("hf:"):
        return None
    from distill.corpus import source_lines  # the run's own reader, so the sample is the text the run packs

    lines = source_lines(source)
    sample = list(islice(lines, SAMPLE_LINES))
    path = Path(source).expanduser()
    if path.is_file():
        lines.close()  # the rest of a file is measured by its size, not read
        if len(sample) < SAMPLE_LINES:
            return sample, 1.0
        read = sum(len(s.encode()) + 1 for s in sample)
        return sample, min(1.0, read / max(1, path.stat().st_size))
    rest = sum(1 for _ in lines)
    return sample, len(sample) / max(1, len(sample) + rest)


def _packed(lines: list[str], tokenizer, max_length: int) -> tuple[int, int]:
    """(sequences, tokens) of packing `lines`, approximately: each document filled into sequences of up to
    `max_length` tokens ([CLS] ... [SEP]); the run's packing also never splits a sentence that fits, so it makes
    a few more sequences."""
    room = max_length - 2
    texts = [t for t in lines if t]
    ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"] if texts else []
    lengths = iter(len(x) for x in ids)
    sequences = tokens = doc = 0
    for text in [*lines, ""]:
        if text:
            doc += next(lengths)
        elif doc:
            pieces = math.ceil(doc / room)
            sequences, tokens, doc = sequences + pieces, tokens + doc + 2 * pieces, 0
    return sequences, tokens


def estimate_corpus(c: CorpusConfig, tokenizer, folder: Path) -> Size:
    sequences = tokens = 0.0
    for source in c.sources:
        sample = _sample(source)
        if sample is None:
            return Size(None, None, note=f"not packed yet, and {source} streams from the hub: its size is known "
                                         "once the run has packed it")
        lines, fraction = sample
        s, t = _packed(lines, tokenizer, c.max_length)
        sequences, tokens = sequences + s / fraction, tokens + t / fraction
    if c.limit is not None and sequences > c.limit:
        sequences, tokens = c.limit, tokens * c.limit / sequences
    n = round(sequences)
    from distill.corpus import heldout_rows

    train = n - int(heldout_rows(n, c.heldout).sum())
    return Size(train, round(tokens * train / n) if n else 0, ESTIMATE, ESTIMATE,
                note=f"not packed yet (the run packs it into {folder}); estimated from up to the first "
                     f"{SAMPLE_LINES:,} lines of each source")


def data_sizes(cfg: ExperimentConfig, plan: Plan, workflow) -> dict[str, Size]:
    """One epoch of each kind of data the stages read."""
    needed = {st.data for st in cfg.stages}
    sizes: dict[str, Size] = {}
    if "corpus" in needed:
        sizes["corpus"] = corpus_size(cfg.corpus, plan.tokenizer)
    if needed & {"train", "augmented"}:
        train, qa = workflow.task.splits["train"], workflow.task.qa
        if qa is not None:  # a stage's examples are the windows over the contexts, several per long context
            sizes["train"] = window_size(train, plan.tokenizer, cfg.task.max_length, qa.windows)
        else:
            sizes["train"] = Size(len(train), count_tokens(train, plan.tokenizer, cfg.task.max_length,
                                                           "the training set", len(train)))
    if "augmented" in needed:
        sizes["augmented"] = augmented_size(cfg, workflow.task, plan.tokenizer, sizes["train"])
    return sizes


# ---------------------------------------------------------------- the plan as text


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _figure(value: int | None, mark: str) -> str:
    return "unknown" if value is None else f"{mark}{value:,}"


def _losses(objective: Objective) -> str:
    def one(t) -> str:
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        return f"{t.name} x{t.weight:g}" + (f" ({params})" if params else "")

    return ", ".join(one(t) for t in objective.terms)


def steps(size: Size, stage: StageConfig) -> tuple[int, int] | None:
    """(optimizer steps per epoch, in total) of a stage over data of `size`, as the trainer counts them."""
    if size.examples is None:
        return None
    per_epoch = optimizer_steps(math.ceil(size.examples / stage.batch_size), stage.grad_accum)
    return per_epoch, per_epoch * stage.epochs


def stage_lines(i: int, cfg: ExperimentConfig, plan: Plan, size: Size) -> list[str]:
    stage, objective = cfg.stages[i], plan.objectives[i]
    lines = [f"stage {i + 1}/{len(cfg.stages)} {stage.name}: data {stage.data}, losses {_losses(objective)}"]
    if objective.needs.intermediate:
        spec = stage.layer_map if isinstance(stage.layer_map, str) else "explicit"
        read = objective.teacher_needs()
        for name, depth in zip(objective.teachers, plan.depths[1:], strict=True):
            if not read.get(name):
                continue  # this teacher gives only logits here
            pairs = layer_map(stage.layer_map, plan.depths[0], depth)
            who = f"teacher {name}" if len(objective.teachers) > 1 else "teacher"
            lines.append(f"  layer map {spec} (student -> {who}): " + ", ".join(f"{s}->{t}" for s, t in pairs))
    lines.append("  " + _work(stage, size))
    lines.append(f"  tokens per epoch: {_figure(size.tokens, size.tokens_mark)}"
                 + (" (estimate)" if size.tokens_mark == ESTIMATE else ""))
    lines.append(settings_line(stage))
    return lines


# Shown on a stage's first and work lines.
_SHOWN = {"name", "data", "losses", "epochs", "batch_size", "grad_accum"}


def settings_line(stage: StageConfig) -> str:
    """Every other setting of the stage as merged, inherited ones included: a recipe that `extends:` another states
    only what differs, and this line is where a reader sees the rest."""
    def spelt(value) -> str:
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else f"{value}"

    return "  settings: " + ", ".join(f"{f.name} {spelt(getattr(stage, f.name))}" for f in fields(stage)
                                      if f.name not in _SHOWN)


def _work(stage: StageConfig, size: Size) -> str:
    accum = f", grad_accum {stage.grad_accum}" if stage.grad_accum > 1 else ""
    counted, mark = steps(size, stage), size.examples_mark
    done = ("optimizer steps unknown" if counted is None else
            f"optimizer steps {mark}{counted[0]:,} per epoch, {mark}{counted[1]:,} in total")
    return (f"{_count(stage.epochs, 'epoch')} x {_figure(size.examples, mark)} examples, batch {stage.batch_size}"
            f"{accum}: {done}")


def task_lines(cfg: ExperimentConfig, task: TaskData) -> list[str]:
    where = f" from {cfg.task.path}" if cfg.task.path else ""
    splits = ", ".join(f"{name} {len(exs):,}" for name, exs in task.splits.items())
    if task.type == "extractive_qa":
        labels = (f"questions (SQuAD v{task.qa.version}), windows of {cfg.task.max_length} tokens overlapping by "
                  f"{task.qa.doc_stride}")
    elif task.type == "token_classification":
        shown = ", ".join(task.labels[:12]) + (f", ... ({len(task.labels)} tags)" if len(task.labels) > 12 else "")
        labels = f"tagged words; tags {shown}"
    else:
        labels = "regression (one score)" if task.is_regression else "labels " + ", ".join(task.labels)
    return [f"task:     {task.name} ({cfg.task.source}{where}): {splits} examples; {labels}; main metric "
            f"{task.main_metric}; max length {cfg.task.max_length}"
            + ("; sentence pairs" if task.is_pair else "")] + [f"          {note}" for note in task.notes]


def teacher_lines(cfg: ExperimentConfig, plan: Plan, task: TaskData | None, train_size: Size | None = None
                  ) -> list[str]:
    """The teachers and how each is made; `train_size`: the training split's size as the stages see it (QA's
    windows), for the fine-tuning's steps."""
    lines, several = [], len(cfg.teachers) > 1
    weights = plan.objectives[0].teacher_weights
    for i, t in enumerate(cfg.teachers):
        label = f"teacher {t.name} (weight {weights[t.name]:.3g}):" if several else "teacher: "
        width = f", width {plan.widths[1]}" if i == 0 else ""
        shape = (f"{t.checkpoint}{_adapted(t.checkpoint)}" + (f" (tokenizer {t.tokenizer})" if t.tokenizer else "")
                 + f": {plan.depths[1 + i]} layers{width}")
        if t.finetune is None:
            lines.append(f"{label} {shape}; used as it is" + (" (pre-trained)" if task is None else
                                                                 " (no fine-tuning)"))
        else:
            from distill.teachers.finetune import full_train_split

            f, full = t.finetune, full_train_split(cfg, t)
            train = task.splits["train"] if full is None else full
            examples = len(train)
            if task.qa is not None:  # trained on windows, several per long context
                examples = (train_size.examples if full is None and train_size is not None else
                            window_size(train, plan.tokenizer, cfg.task.max_length, task.qa.windows).examples)
            data = "the task" if f.train == "task" else f"the task's full training split ({len(train):,} examples)"
            lines.append(f"{label} {shape}; fine-tuned on {data} first: {_count(f.epochs, 'epoch')}, lr {f.lr:g}, "
                         f"batch {f.batch_size} = {_finetune_steps(f, examples):,} optimizer steps, seed {f.seed} "
                         f"({_teacher_cache(cfg, task, train, t)})")
        if t.gate is not None and task is not None:
            lines.append("  gate:   " + _gate(t, task))
    if several:
        lines.append("  prediction losses learn from the teachers' weighted average (of softened distributions, or "
                     "of logits for MSE); intermediate losses from the teacher they name, else the first")
    return lines


def _adapted(source: str) -> str:
    """Whether an `adapted:<encoder>` model is built yet (the workflows that take one build it first)."""
    from distill.resources import adapted_encoder, adapted_folder

    encoder = adapted_encoder(source)
    if encoder is None:
        return ""
    folder = adapted_folder(encoder)
    if (folder / "adaptation.json").exists():
        return f" (adapted: built at {folder})"
    return f" (not built yet: the run first gives {encoder} an MLM head and fine-tunes it, once, into {folder})"


def _finetune_steps(f, examples: int) -> int:
    return optimizer_steps(math.ceil(examples / f.batch_size), 1) * f.epochs


def _teacher_cache(cfg: ExperimentConfig, task: TaskData, train: list[Example], t) -> str:
    from distill.io import cache_root
    from distill.teachers.finetune import teacher_key

    folder = cache_root() / "teachers" / teacher_key(cfg, task, train, t)
    return f"cached at {folder}" if (folder / "teacher.json").exists() else "not cached yet"


def _gate(t, task: TaskData) -> str:
    from distill.teachers.gate import majority_baseline

    g, main = t.gate, task.main_metric
    if task.is_regression:
        return (f"the teacher's dev {main} must exceed {g.margin:g}, and its dev scores must not be constant "
                "(`teacher.gate`)")
    base = majority_baseline(task, task.splits["train"], task.splits["dev"])
    if task.type == "extractive_qa":
        return (f"the teacher's dev {main} must reach answering nothing's {base:.2f} + {g.margin:g} "
                "(`teacher.gate`)")
    if task.type == "token_classification":
        return (f"the teacher's dev {main} must reach the most frequent tag's {base:.4f} + {g.margin:g}, and no tag "
                f"may take {g.max_class_share:.0%} or more of its dev words (`teacher.gate`)")
    return (f"the teacher's dev {main} must reach the majority class's {base:.4f} + {g.margin:g}, no class may "
            f"take {g.max_class_share:.0%} or more of its dev predictions, and every class it trained on "
            f"({g.min_class_examples}+ examples) must be recalled on dev at least once; a recall below chance "
            f"({1 / task.num_labels:.2f}) is warned about (`teacher.gate`)")


def student_lines(cfg: ExperimentConfig, plan: Plan) -> list[str]:
    line = f"student:  {plan.shape.text}"
    needs_hidden = any(o.needs.hidden for o in plan.objectives)
    if needs_hidden and plan.widths[0] != plan.widths[1]:
        # Projections are carried only from an init folder that saved them; else they start random.
        line += (f"; projections {plan.widths[0]} -> {plan.widths[1]} ({cfg.train.projection}"
                 + (f", {cfg.train.projection_init}" if plan.shape.checkpoint is not None else "") + ")")
    return [line]


def data_lines(cfg: ExperimentConfig, sizes: dict[str, Size]) -> list[str]:
    lines = []
    if "augmented" in sizes:
        a = cfg.augment
        models = (f", masked LM {a.tinybert.masked_lm}{_adapted(a.tinybert.masked_lm)}, vectors {a.tinybert.vectors}"
                  if a.method == "tinybert" else f", tagger {a.tang.tagger}")
        lines.append(f"augment:  {a.method}, {a.copies} copies per example, seed "
                     f"{cfg.seed if a.seed is None else a.seed}, labels by the {a.labels}{models}; "
                     f"{sizes['augmented'].note}")
    if "corpus" in sizes:
        c = cfg.corpus
        lines.append(f"corpus:   {', '.join(c.sources)}; sequences of up to {c.max_length} tokens, held out "
                     f"{c.heldout:g}" + (f", at most {c.limit:,} sequences" if c.limit is not None else "")
                     + f"; {sizes['corpus'].note}")
    return lines


def plan_lines(cfg: ExperimentConfig, plan: Plan, workflow, estimate: bool = False) -> list[str]:
    """The plan; with `estimate`, also the wall time, measured by timing real batches (`distill.lab.estimate`)."""
    task = workflow.task
    sizes = data_sizes(cfg, plan, workflow)
    lines = [f"run:      {cfg.name}, seed {cfg.seed}"]
    if task is not None:
        lines += task_lines(cfg, task)
    lines += teacher_lines(cfg, plan, task, sizes.get("train")) + student_lines(cfg, plan) + data_lines(cfg, sizes)
    for i, stage in enumerate(cfg.stages):
        lines += stage_lines(i, cfg, plan, sizes[stage.data])
    counted = [steps(sizes[st.data], st) for st in cfg.stages]
    if all(c is not None for c in counted):
        marks = {sizes[st.data].examples_mark for st in cfg.stages}
        mark = ESTIMATE if ESTIMATE in marks else AT_MOST if AT_MOST in marks else ""
        lines.append(f"total:    {mark}{sum(c[1] for c in counted):,} optimizer steps over "
                     f"{_count(len(cfg.stages), 'stage')}")
    if estimate:
        from distill.lab.estimate import estimate as estimate_time

        lines += estimate_time(cfg, plan, workflow, sizes).lines()
    return lines
