"""Build augmented training sets: cached, sharded, resumable, reproducible.

An augmented set lives in `<cache>/augment/<key>/`, the key digesting the input data, the method and its
parameters, the models (masked LM, vectors, tagger) and the seed. Source examples are cut into chunks;
each chunk is written as its own part file (temp file, then rename), so an interrupted build leaves only
finished parts and resumes where it stopped, and shards (`num_shards`/`shard_index`, or the processes of
`accelerate launch`) take every num_shards-th chunk. When every part exists they are merged, in source
order, into `augmented.jsonl` by shard 0.

Every example is drawn from its own random generator seeded by (seed, source id), so the output does not
depend on chunking or sharding. Rows hold `id`, `source_id`, `method` (`original` for the kept
originals), `text_a`, `text_b` and the source `label`. Copies equal to their original or to an earlier
copy are dropped and counted in `stats.json`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from distill.config import AugmentConfig, ExperimentConfig, check_shard
from distill.encoded import EncodedDataset, encode_stream
from distill.io import atomic_path, cache_root, clear_stale, file_digest, read_json, write_json, write_text
from distill.loaders import DataError, fingerprint
from distill.resources import content_key, source_identity
from distill.tasks import Example, TaskData

# 2: long sentences windowed for the masked LM, blocked neighbours, Tang counts over every occurrence.
FORMAT = 2


def augment_key(cfg: ExperimentConfig, task: TaskData) -> str:
    a = cfg.augment
    params = asdict(a.tinybert) if a.method == "tinybert" else asdict(a.tang)
    models = ([source_identity(a.tinybert.masked_lm), source_identity(a.tinybert.vectors)]
              if a.method == "tinybert" else [a.tang.tagger])
    ident = {"format": FORMAT, "data": [task.name, fingerprint(task.splits["train"])], "method": a.method,
             "copies": a.copies, "params": params, "models": models, "seed": seed_of(cfg),
             "chunk_size": a.chunk_size}
    return content_key(ident)


def augmented_path(cfg: ExperimentConfig, task: TaskData) -> Path:
    return cache_root() / "augment" / augment_key(cfg, task) / "augmented.jsonl"


def seed_of(cfg: ExperimentConfig) -> int:
    return cfg.seed if cfg.augment.seed is None else cfg.augment.seed


def example_rng(seed: int, source_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source_id.encode())])


def check_sources(a: AugmentConfig) -> None:
    """The augmentation's models and files can be found (checked before a run starts; nothing is loaded)."""
    if a.method == "tinybert":
        from distill.augment.vectors import check_vectors
        from distill.teachers.load import load_bert_config

        check_vectors(a.tinybert.vectors, a.tinybert.allow_pickle)
        load_bert_config(a.tinybert.masked_lm)
    else:
        from distill.augment.pos import check_tagger

        check_tagger(a.tang.tagger)


def make_augmenter(cfg: ExperimentConfig, examples: list[Example], log):
    a = cfg.augment
    import torch

    device = "cuda" if torch.cuda.is_available() and not cfg.train.cpu else "cpu"
    if a.method == "tinybert":
        from distill.augment.tinybert import build

        return build(a.tinybert, a.copies, device, log)
    from distill.augment.pos import load_tagger
    from distill.augment.tang import TangAugmenter

    return TangAugmenter(a.tang, a.copies, load_tagger(a.tang.tagger)).fit(examples)


def rows_for(examples: list[Example], variants: list[list[tuple[str, str | None]]], method: str) -> tuple[list, int]:
    """JSONL rows: each original, then its distinct new copies; returns (rows, duplicates dropped)."""
    rows, dropped = [], 0
    for ex, vs in zip(examples, variants, strict=True):
        rows.append({"id": ex.id, "source_id": ex.id, "method": "original", "text_a": ex.text_a,
                     "text_b": ex.text_b, "label": ex.label})
        seen = {(ex.text_a, ex.text_b)}
        # A variant may carry its own label (a tagged copy: its replaced words' tags unknown).
        for k, (a, b, *label) in enumerate(vs):
            if (a, b) in seen or not a.strip() or (b is not None and not b.strip()):
                dropped += 1
                continue
            seen.add((a, b))
            rows.append({"id": f"{ex.id}-{method}{k}", "source_id": ex.id, "method": method, "text_a": a,
                         "text_b": b, "label": label[0] if label else ex.label})
    return rows, dropped


def build_augmented(cfg: ExperimentConfig, task: TaskData, num_shards: int = 1, shard_index: int = 0,
                    log=print) -> Path | None:
    """Do this shard's missing parts; shard 0 also merges once every part exists. Returns the merged
    file, or None while parts are missing (or for shards other than 0)."""
    from distill.augment.cost import augmentation_cost, chunks_of, cost_lines

    check_shard(num_shards, shard_index)
    a = cfg.augment
    final = augmented_path(cfg, task)
    folder = final.parent
    if final.exists():
        log(f"augment: reusing {final}")
        return final
    examples = task.splits["train"]
    chunks = chunks_of(examples, a.chunk_size)
    part = [folder / f"part-{c:05d}.jsonl" for c in range(len(chunks))]
    mine = [c for c in range(len(chunks)) if c % num_shards == shard_index and not part[c].exists()]
    if mine:
        folder.mkdir(parents=True, exist_ok=True)
        done = len(chunks) - sum(1 for p in part if not p.exists())
        log(f"augment: {a.method}, {a.copies} copies of {len(examples)} examples into {folder} "
            f"({done}/{len(chunks)} parts already done; shard {shard_index + 1}/{num_shards})")
        # Tang's fit is its tagging, work the estimate is about: fitted after it (fitting on nothing first is a no-op).
        augmenter = make_augmenter(cfg, [] if a.method == "tang" else examples, log)
        if task.scheme is not None:  # entity words are never replaced
            augmenter.protect = frozenset(i for i, tag in enumerate(task.labels) if tag != "O")
        for line in cost_lines(augmentation_cost(a, examples, augmenter, mine)):
            log(line)
        if a.method == "tang":
            augmenter.fit(examples)
        seed = seed_of(cfg)
        for c in tqdm(mine, desc=f"augment ({a.method})", unit="part", dynamic_ncols=True):
            rngs = [example_rng(seed, ex.id) for ex in chunks[c]]
            rows, dropped = rows_for(chunks[c], augmenter.augment(chunks[c], rngs), a.method)
            lines = [json.dumps(r, ensure_ascii=False) for r in rows]
            lines.append(json.dumps({"_dropped_duplicates": dropped}))
            write_text(part[c], "\n".join(lines) + "\n")
    # Only shard 0 merges, so that two shards finishing together never merge at once.
    if shard_index != 0 or not all(p.exists() for p in part):
        return None
    return _merge(folder, part, cfg, log)


def build_in_processes(cfg: ExperimentConfig, task: TaskData, state, log=print) -> Path:
    """The augmented set built by every process of `state` (an `Accelerator` or accelerate's `PartialState`),
    one shard each, merged by the main process; returns the merged file's path on every process."""
    path = build_augmented(cfg, task, state.num_processes, state.process_index, log)
    state.wait_for_everyone()
    if path is None and state.is_main_process:  # the other shards finished last: merge now
        build_augmented(cfg, task, 1, 0, log)
    state.wait_for_everyone()
    return augmented_path(cfg, task)


def _merge(folder: Path, parts: list[Path], cfg: ExperimentConfig, log) -> Path:
    final = folder / "augmented.jsonl"
    counts = {"original": 0, "augmented": 0, "dropped_duplicates": 0}
    with atomic_path(final) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for p in parts:
            for line in p.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if "_dropped_duplicates" in row:
                    counts["dropped_duplicates"] += row["_dropped_duplicates"]
                    continue
                counts["original" if row["method"] == "original" else "augmented"] += 1
                out.write(line + "\n")
    write_json(folder / "stats.json", {**counts, "method": cfg.augment.method, "copies": cfg.augment.copies,
                                       "seed": seed_of(cfg), "config": asdict(cfg.augment)})
    for p in parts:
        p.unlink()
        clear_stale(p)  # a killed earlier attempt's half-written copy of this part
    log(f"augment: {counts['original']} originals + {counts['augmented']} augmented examples "
        f"({counts['dropped_duplicates']} duplicates dropped) -> {final}")
    return final


def iter_augmented(path: str | Path) -> Iterator[Example]:
    """The rows of an augmented set, streamed (an 8M-pair set is never held whole)."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                ex = Example(row["id"], row["text_a"], row["text_b"], row["label"])
                if isinstance(ex.label, list):  # JSON gives a tagged sentence's tags back as a list
                    ex = replace(ex, label=tuple(ex.label))
                yield ex
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{line_no}: not an augmented-set row ({e})") from None


def encode_augmented(path: str | Path, tokenizer, max_length: int, regression: bool, log=print) -> EncodedDataset:
    """The augmented set tokenised once into a memory-mapped dataset, keyed by the file's bytes."""
    return encode_stream(partial(iter_augmented, path), augmented_identity(path), tokenizer, max_length,
                         regression, log, "the augmented set")


def augmented_identity(path: str | Path) -> dict:
    """What the encoded form of an augmented file is keyed by: its bytes."""
    return {"augmented": file_digest(path)}


def stats(path: str | Path) -> dict:
    return read_json(Path(path).parent / "stats.json")
