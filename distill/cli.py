"""The `distill` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _default_out(name: str, seed: int) -> Path:
    return Path("runs") / name / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"


def _latest_unfinished(name: str) -> Path | None:
    root = Path("runs") / name
    if not root.is_dir():
        return None
    runs = sorted((p for p in root.iterdir() if (p / "run.json").exists() and not (p / "metrics.json").exists()),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def cmd_run(args: argparse.Namespace) -> int:
    from distill.config import load_config, load_raw
    from distill.run import run_experiment
    from distill.variants import comparison, expand

    raw = load_raw(args.config)
    if raw.get("variants") or raw.get("seeds"):
        plans = expand(args.config, args.set, args.out)
        for p in plans:
            if (p.out / "metrics.json").exists():
                print(f"{p.variant} seed {p.seed}: finished earlier, {p.out}")
                continue
            resume = (p.out / "run.json").exists()
            print(f"== variant {p.variant!r}, seed {p.seed} -> {p.out}" + (" (resuming)" if resume else ""))
            run_experiment(p.config, p.out, resume=resume)
        print("\n" + comparison(plans))
        print(f"compare runs: tensorboard --logdir {plans[0].out.parent.parent}")
        return 0
    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else None
    if args.resume and out is None:
        out = _latest_unfinished(cfg.name)
        if out is None:
            print(f"distill: --resume: no unfinished run of {cfg.name!r} under runs/{cfg.name}; give --out",
                  file=sys.stderr)
            return 2
    run_experiment(cfg, out or _default_out(cfg.name, cfg.seed), resume=args.resume)
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    import shutil

    from augment.runner import build_augmented, stats
    from distill.config import load_config
    from distill.io import atomic_path
    from distill.loaders import load_task

    cfg = load_config(args.config, args.set)
    task = load_task(cfg.task)
    if args.num_shards is not None:
        if args.shard_index is None:
            print("distill: --num-shards needs --shard-index", file=sys.stderr)
            return 2
        path = build_augmented(cfg, task, args.num_shards, args.shard_index)
    else:
        from accelerate import PartialState

        state = PartialState()  # under `accelerate launch`: one shard per process, the main one merges
        path = build_augmented(cfg, task, state.num_processes, state.process_index)
        state.wait_for_everyone()
        if path is None and state.is_main_process:
            path = build_augmented(cfg, task, 1, 0)
        state.wait_for_everyone()
        if not state.is_main_process:
            return 0
    if path is None:
        print(f"shard {args.shard_index} of {args.num_shards} done; once every shard has run, shard 0 (or a "
              "run without --num-shards) merges the parts")
        return 0
    s = stats(path)
    if args.out:
        with atomic_path(args.out) as tmp:
            shutil.copyfile(path, tmp)
        path = args.out
    print(f"{path}: {s['original']} originals, {s['augmented']} augmented, {s['dropped_duplicates']} duplicates "
          "dropped")
    return 0


def cmd_adapt_mlm(args: argparse.Namespace) -> int:
    from augment.mlm import adapt_encoder, default_corpus

    texts, heldout = default_corpus(), default_corpus("dev")
    if args.corpus:
        heldout = None
        texts = [line.strip() for f in args.corpus for line in open(f, encoding="utf-8") if line.strip()]
    adapt_encoder(args.encoder, texts, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  max_length=args.max_length, seed=args.seed, heldout=heldout)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from distill.config import dump_yaml, load_config

    cfg = load_config(args.config, args.set)
    print(dump_yaml(cfg), end="")
    return 0


def cmd_losses(args: argparse.Namespace) -> int:
    from distill.losses import LOSSES

    for name, info in sorted(LOSSES.items()):
        params = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "-"
        doc = (info.fn.__doc__ or "").strip().splitlines()[0]
        print(f"{name:20s} params: {params:40s} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill", description="Distil fine-tuned BERT teachers into small students.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("config", help="experiment YAML file")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stages.0.epochs=2 (repeatable)")

    r = sub.add_parser("run", help="fine-tune the teacher (cached) and run every distillation stage")
    with_config(r)
    r.add_argument("--out", help="run folder (default runs/<name>/<time>-seed<seed>)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("augment", help="write the augmented training set of a config's task (cached)")
    with_config(a)
    a.add_argument("--out", help="also copy the set to this JSONL file")
    a.add_argument("--num-shards", type=int, help="split the work into this many shards (default: the "
                   "processes of `accelerate launch`, else 1)")
    a.add_argument("--shard-index", type=int, help="which shard this process builds (0-based)")
    a.set_defaults(func=cmd_augment)

    m = sub.add_parser("adapt-mlm", help="give an encoder an MLM head and fine-tune it as a masked LM")
    m.add_argument("--encoder", default="packaged:all-minilm-l6-v2")
    m.add_argument("--corpus", nargs="*", help="plain-text files, one sentence per line (default: the "
                   "packaged tweets' training split)")
    m.add_argument("--out", required=True, help="folder for the BertForMaskedLM")
    m.add_argument("--steps", type=int, default=500)
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--lr", type=float, default=1e-4)
    m.add_argument("--max-length", type=int, default=64)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_adapt_mlm)

    c = sub.add_parser("check", help="validate a config and print it resolved")
    with_config(c)
    c.set_defaults(func=cmd_check)

    ls = sub.add_parser("losses", help="list the registered losses and their parameters")
    ls.set_defaults(func=cmd_losses)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    import transformers

    # Its per-load weight reports are noise here: distillery says what it initialises itself.
    transformers.logging.set_verbosity_error()
    from augment.pos import TaggerError
    from augment.vectors import VectorsError
    from distill.config import ConfigError
    from distill.layer_map import LayerMapError
    from distill.loaders import DataError
    from distill.losses import LossError
    from distill.run import RunError
    from distill.trainer import TrainingDiverged
    from students.tinybert import StudentError
    from teachers.load import CheckpointError

    try:
        return args.func(args)
    except (ConfigError, DataError, LossError, LayerMapError, RunError, CheckpointError, StudentError,
            TrainingDiverged, VectorsError, TaggerError) as e:
        print(f"distill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
