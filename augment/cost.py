"""What an augmentation will do, counted before it starts, and how long it should take.

The counts are exact: they come from the augmenter's own code (TinyBERT: its split of eligible words into masked-LM
inputs and neighbour queries, and `masked_batches`, the batching `masked_top_k` does; Tang: the texts its `fit`
tags). The time is an estimate: a small sample of the real work is timed on the augmenter's device and
extrapolated (masked-LM forwards by their FLOPs, which grow with the batch's padded length; neighbour queries,
tagged characters and copies in proportion). Writing the part files is not included."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from distill.config import AugmentConfig
from distill.tasks import Example
from distill.timing import duration, timed

SAMPLE_FORWARDS = 3
SAMPLE_EXAMPLES = 256


@dataclass
class Step:
    """One kind of work: its estimated seconds over the whole augmentation, and what was timed to estimate it."""

    name: str
    seconds: float
    timed: str


@dataclass
class AugmentCost:
    method: str
    device: str
    examples: int = 0  # source examples to augment
    copies: int = 0  # augmented copies to make, before de-duplication (`copies_per_example` per example)
    # TinyBERT
    batch_size: int = 0  # rows a forward takes at most
    max_tokens: int | None = None  # padded tokens a forward takes at most (on a CPU)
    mlm_inputs: int = 0  # masked copies of sentences, one per eligible single-piece word occurrence
    forwards: int = 0
    neighbour_queries: int = 0  # distinct known words looked up, per part (each part looks its words up once)
    # Tang
    texts_to_tag: int = 0
    steps: list[Step] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


def chunks_of(examples: list[Example], size: int) -> list[list[Example]]:
    """The parts an augmentation is cut into (`augment.chunk_size` examples each): its unit of work and resuming."""
    return [examples[i:i + size] for i in range(0, len(examples), size)]


def copies_per_example(a: AugmentConfig, pair: bool) -> int:
    """The copies an augmentation makes of one source example (a sentence pair if `pair`), before de-duplication:
    `copies`, but 2 x `copies` for a TinyBERT pair rewritten one side at a time (`pair_mode: one_side`)."""
    if a.method == "tinybert":
        from distill.augment.tinybert import copies_per_example as tinybert_copies

        return tinybert_copies(a.tinybert, a.copies, pair)
    return a.copies


def augmentation_cost(a: AugmentConfig, examples: list[Example], augmenter, parts: list[int] | None = None,
                      sample_forwards: int = SAMPLE_FORWARDS) -> AugmentCost:
    """What `augmenter` (as `augment.runner` builds it) will do for the parts `parts` of the training set `examples`
    (indices into `chunks_of(examples, a.chunk_size)`; None: every part), with an estimated wall time from timing
    a sample. A Tang augmenter may be fitted or not: the texts it has tagged already are not counted."""
    chunks = chunks_of(examples, a.chunk_size)
    todo = [chunks[c] for c in (range(len(chunks)) if parts is None else parts)]
    cost = (_tinybert_cost(augmenter, todo, sample_forwards) if a.method == "tinybert"
            else _tang_cost(augmenter, examples, todo))
    cost.copies = sum(copies_per_example(a, ex.text_b is not None) for chunk in todo for ex in chunk)
    return cost


# ---------------------------------------------------------------- TinyBERT


@dataclass
class _PartWork:
    """What `TinyBertAugmenter.candidates` does for one part."""

    sentences: list[list[str]]
    eligible: list[tuple[int, int]]  # (sentence, word) spots that get candidates
    inputs: list[tuple[list[str], int]]  # masked-LM inputs, in the order `candidates` passes them
    batches: list[list[int]]  # indices into `inputs`, of the forwards `masked_top_k` runs
    shapes: list  # their `augment.flops.ForwardShape`s
    queries: list[str]  # distinct words `Neighbours` computes neighbours for


def _plan_part(aug, chunk: list[Example]) -> _PartWork:
    from distill.augment.mlm import forward_shape, masked_batches

    sentences = aug.sentences(chunk)
    single, several = aug.split(sentences)
    inputs = [(sentences[s], i) for s, i in single]
    ids, _, batches = masked_batches(aug.model, aug.tokenizer, inputs, aug.cfg.mlm_input == "pair",
                                     aug.cfg.batch_size, aug.cfg.max_length)
    planned = [(part, forward_shape(ids, part, aug.tokenizer.mask_token_id)) for part in batches]
    # A batch without any [MASK] (only when max_length leaves no room for one) is skipped without a forward.
    run = [(part, shape) for part, shape in planned if shape.masked]
    nb = aug.neighbours
    # One `Neighbours` call per part.
    return _PartWork(sentences, single + several, inputs, [part for part, _ in run], [shape for _, shape in run],
                     nb.queries([sentences[s][i] for s, i in several]))


def _time_forwards(aug, work: _PartWork, n: int, device) -> tuple[float, list]:
    """Seconds for the first `n` forwards of a part (its longest rows, as the real path runs them first), through
    `masked_top_k` itself, and their shapes."""
    from distill.augment.mlm import masked_top_k

    pair = aug.cfg.mlm_input == "pair"
    sample = [work.inputs[j] for part in work.batches[:n] for j in part]
    shapes: list = []

    def run(inputs, into=None):
        masked_top_k(aug.model, aug.tokenizer, inputs, aug.cfg.candidates, aug.valid, pair=pair,
                     batch_size=aug.cfg.batch_size, max_length=aug.cfg.max_length, shapes=into)

    run(sample[:1])  # warm-up: the first forward of a process pays for allocations and kernel selection
    return timed(lambda: run(sample, shapes), device), shapes


def _time_sampling(aug, chunk: list[Example], work: _PartWork) -> float:
    """Seconds for `augment`'s copies of one part, without its candidates: every eligible word gets a one-word
    candidate list, so that the draws are the real ones."""
    table = [[[] for _ in words] for words in work.sentences]
    for s, i in work.eligible:
        table[s][i] = [work.sentences[s][i]]
    stub = copy.copy(aug)
    stub.candidates = lambda _sentences: table
    rngs = [np.random.default_rng(0) for _ in chunk]
    start = time.perf_counter()
    stub.augment(chunk, rngs)
    return time.perf_counter() - start


def _tinybert_cost(aug, todo: list[list[Example]], sample_forwards: int) -> AugmentCost:
    from distill.augment.mlm import forward_tokens

    device = next(aug.model.parameters()).device
    works = [_plan_part(aug, chunk) for chunk in todo]
    examples = sum(len(c) for c in todo)
    cost = AugmentCost("tinybert", str(device), examples, batch_size=aug.cfg.batch_size,
                       max_tokens=forward_tokens(device), mlm_inputs=sum(len(w.inputs) for w in works),
                       forwards=sum(len(w.shapes) for w in works), neighbour_queries=sum(len(w.queries) for w in works))
    cost.steps = [*_masked_lm_step(aug, works, sample_forwards, device), *_neighbours_step(aug, works, device)]
    if todo:
        seconds = _time_sampling(aug, todo[0], works[0])
        cost.steps.append(Step("sampling", seconds * examples / len(todo[0]), f"{len(todo[0]):,} timed examples"))
    return cost


def _masked_lm_step(aug, works: list[_PartWork], sample_forwards: int, device) -> list[Step]:
    """The first part's first forwards timed, scaled by FLOPs to every forward of every part."""
    from distill.augment.flops import executed_flops

    first = next((w for w in works if w.shapes), None)
    if first is None:
        return []
    seconds, shapes = _time_forwards(aug, first, sample_forwards, device)
    config = aug.model.config
    total = executed_flops(config, [s for w in works for s in w.shapes])
    return [Step("masked LM", seconds * total / executed_flops(config, shapes),
                 f"{len(shapes)} timed forward{'s' * (len(shapes) != 1)}")]


def _neighbours_step(aug, works: list[_PartWork], device) -> list[Step]:
    """The first part's neighbour queries timed, scaled to every part's."""
    first = next((w for w in works if w.queries), None)
    if first is None:
        return []
    aug.neighbours(first.queries[:1], aug.cfg.candidates)  # warm-up
    seconds = timed(lambda: aug.neighbours(first.queries, aug.cfg.candidates), device)
    total = sum(len(w.queries) for w in works)
    return [Step("neighbours", seconds * total / len(first.queries), f"{len(first.queries):,} timed queries")]


# ---------------------------------------------------------------- Tang et al.


def _texts(examples: list[Example]) -> list[str]:
    from distill.augment.tang import text_counts

    return sorted(text_counts(examples))


def _tang_cost(aug, examples: list[Example], todo: list[list[Example]]) -> AugmentCost:
    from distill.augment.tang import TangAugmenter

    # `fit` tags every distinct training text once, whichever parts are still to do.
    to_tag = [t for t in _texts(examples) if t not in aug.tags]
    n = sum(len(c) for c in todo)
    cost = AugmentCost("tang", "cpu", n, texts_to_tag=len(to_tag))
    sample = [ex for chunk in todo for ex in chunk][:SAMPLE_EXAMPLES]
    if not sample:
        return cost
    texts = _texts(sample)
    # Timed twice, the faster kept: a tagger's first large batch after loading can take half as long again.
    times = []
    for _ in range(2):
        start = time.perf_counter()
        tags = aug.tagger(texts)
        times.append(time.perf_counter() - start)
    seconds, tagged = min(times), dict(zip(texts, tags, strict=True))
    if to_tag:
        # Tagging time grows with the text's length: extrapolate by characters.
        per_char = seconds / max(sum(map(len, texts)), 1)
        cost.steps.append(Step("tagging", per_char * sum(map(len, to_tag)), f"{len(texts):,} timed texts"))
    # Synthesis on the sample alone, its tags looked up rather than tagged again.
    scratch = TangAugmenter(aug.cfg, aug.copies, lambda ts: [tagged[t] for t in ts], aug.mask).fit(sample)
    rngs = [np.random.default_rng(0) for _ in sample]
    start = time.perf_counter()
    scratch.augment(sample, rngs)
    seconds = time.perf_counter() - start
    cost.steps.append(Step("synthesis", seconds * n / len(sample), f"{len(sample) * aug.copies:,} timed copies"))
    return cost


# ---------------------------------------------------------------- printing


def cost_lines(cost: AugmentCost) -> list[str]:
    """Printable lines: what will be done, then the estimate and how it was made."""
    if not cost.examples:
        return ["augmentation: nothing to do"]
    if cost.method == "tinybert":
        budget = f", {cost.max_tokens:,} tokens" if cost.max_tokens else ""
        work = (f"{cost.mlm_inputs:,} masked-LM inputs in {cost.forwards:,} forwards (up to {cost.batch_size} rows"
                f"{budget}), {cost.neighbour_queries:,} neighbour queries, {cost.copies:,} copies of "
                f"{cost.examples:,} examples")
    else:
        work = (f"{cost.texts_to_tag:,} distinct texts to tag, {cost.copies:,} copies of {cost.examples:,} examples "
                f"to synthesise")
    steps = "; ".join(f"{s.name} {duration(s.seconds)} ({s.timed})" for s in cost.steps)
    return [f"augmentation: {work}",
            f"augmentation: estimated {duration(cost.seconds)} on {cost.device}" + (f": {steps}" if steps else "")]
