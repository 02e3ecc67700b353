"""A generative model of evaluation runs that differ only by seed, for checking the report's error rates.

Each replication draws an evaluation set (gold labels over `classes`, and a difficulty per example that every run
shares) and runs. A run has a skill, drawn around `skill` with a run-level shift of sd `seed_sd`; it is right on
an example when the example's difficulty is below its skill, except on a random `noisy` share of the examples,
where it is right with probability `skill` independently of difficulty (per-run noise). Wrong predictions go to
another class at random. Accuracy is close to the skill and macro-F1 moves with it, so `seed_sd` is about the
sd of the metric over seeds.

`effect` adds to the variant's skill (a real difference). `interaction` makes the variant better by that much on
a random half of the examples and worse by as much on the other half: no difference in the population of
examples, but one on any finite evaluation set, which only a claim about new data should discount."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Replication:
    gold: np.ndarray
    variants: list[list[np.ndarray]]  # per variant, one-hot logits per seed; [v][j] and reference[j] share seed j
    reference: list[np.ndarray]

    @property
    def variant(self) -> list[np.ndarray]:
        return self.variants[0]


def replicate(rng: np.random.Generator, seeds: int, seed_sd: float, *, variants: int = 1, examples: int = 3800,
              classes: int = 3, skill: float = 0.7, noisy: float = 0.16, effect: float = 0.0,
              interaction: float = 0.0) -> Replication:
    gold = rng.integers(0, classes, examples)
    difficulty = rng.random(examples)
    tilt = interaction * np.where(rng.random(examples) < 0.5, 1.0, -1.0)
    eye = np.eye(classes, dtype=np.float32)

    def run(offset: np.ndarray | float) -> np.ndarray:
        s = skill + seed_sd * rng.standard_normal() + offset
        right = np.where(rng.random(examples) < noisy, rng.random(examples) < s, difficulty < s)
        wrong = (gold + rng.integers(1, classes, examples)) % classes
        return eye[np.where(right, gold, wrong)]

    reference = [run(0.0) for _ in range(seeds)]
    return Replication(gold, [[run(effect + tilt) for _ in range(seeds)] for _ in range(variants)], reference)
