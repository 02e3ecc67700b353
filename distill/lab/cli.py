"""The `distill` command line."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path


def _default_out(name: str, seed: int) -> Path:
    return Path("runs") / name / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"


def _sweep(configs: list[str], overrides: list[str], out: str | None, grid: list[str], seeds: str | None,
           num_shards: int | None, shard_index: int | None, command: str | None = None, dry_run: bool = False) -> int:
    from distill.config import ConfigError, check_shard
    from distill.lab.report import ReportError, build, to_markdown
    from distill.lab.run_folder import FINISHED
    from distill.lab.sweep import expand, parse_grid, reference_variant, run_plans, shard, write_plan

    if out and len(configs) > 1:
        raise ConfigError("--out names one experiment's folder; give one config with it")
    check_shard(num_shards, shard_index)
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r}: expected integers separated by commas, e.g. 1,2,3") from None
    failed = []
    for config in configs:
        plans = expand(config, overrides, out, parse_grid(grid), seed_list)
        root = plans[0].root
        mine = shard(plans, num_shards or 1, shard_index or 0)
        print(f"{config}: {len(plans)} runs under {root}" + (f", shard {shard_index} of {num_shards}: {len(mine)}"
                                                              if num_shards else ""))
        if dry_run:  # every run's config is validated by `expand`; nothing is written
            width = max((len(p.variant) for p in mine), default=0)
            print("\n".join(f"  {p.state:10s} {p.variant:{width}s} seed {p.seed}  {p.out}" for p in mine))
            continue
        write_plan(root, config, plans, reference_variant(config, plans))
        failed += run_plans(mine, command=command)
        if all(p.state == FINISHED for p in plans):
            try:
                print("\n" + to_markdown(build(root)))
            except ReportError as e:
                print(f"(no table: {e})")
        else:
            print(f"{sum(p.state == FINISHED for p in plans)}/{len(plans)} runs of {root} finished; "
                  f"`distill report {root}` lists the rest")
        print(f"compare runs: tensorboard --logdir {root}")
    if failed:
        print("failed: " + ", ".join(f"{p.variant} seed {p.seed}" for p in failed), file=sys.stderr)
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    return _sweep(args.configs, args.set, args.out, args.grid, args.seeds, args.num_shards, args.shard_index,
                  args.command, args.dry_run)


def cmd_publish(args: argparse.Namespace) -> int:
    from distill.lab.publish import publish

    folders = publish(args.root, args.dest)
    print(f"published {len(folders)} run records from {args.root} to {args.dest} (no weights)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from distill.lab.report import ReportError, write_report

    if args.resamples < 100:
        raise ReportError(f"--resamples {args.resamples}: expected at least 100 (percentile intervals need them)")
    rep, paths = write_report(args.root, args.out, args.reference, plots=not args.no_plots,
                              resamples=args.resamples, generalise=args.generalise)
    print(Path(paths[args.format]).read_text(), end="")
    if args.format != "md":  # the markdown carries them already
        for w in rep.warnings:
            print(f"warning: {w}", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from distill.lab.bench import render, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    rows = run_bench(names, args.device, args.seq_len, args.batch, args.budget, args.int8, args.compile,
                     args.student, args.accuracy_limit, log=lambda m: print(m, file=sys.stderr), onnx=args.onnx)
    text = render(rows, args.seq_len, args.batch, args.device)
    print(text)
    if args.out:
        from distill.io import write_text

        write_text(args.out, text + "\n")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from distill.lab.predict import PredictError, load_predictor, read_inputs

    if bool(args.text) == bool(args.file):
        raise PredictError("give the input as --text \"...\" (repeatable) or --file F, one of the two")
    if args.text_b and len(args.text_b) != len(args.text):
        raise PredictError(f"{len(args.text)} --text but {len(args.text_b)} --text-b; give one second sentence "
                           "per text")
    texts, texts_b = read_inputs(args.file) if args.file else (args.text, args.text_b or None)
    pred = load_predictor(args.model, args.max_length)
    for i, result in enumerate(pred.predict(texts, texts_b, args.batch_size)):
        shown = texts[i] if texts_b is None else f"{texts[i]} ||| {texts_b[i]}"
        if args.json:
            print(json.dumps({"text": texts[i], **({"text_b": texts_b[i]} if texts_b else {}), **result}))
        elif "answer" in result:
            print(f"{result['answer']}\t{result['score']:.4f}\t{texts[i]}")
        elif "tags" in result:
            print(" ".join(f"{w}/{t}" for w, t in zip(result["words"], result["tags"], strict=True))
                  + "".join(f" {w}/<cut>" for w in result.get("cut", [])))
        elif "score" in result:
            print(f"{result['score']:.4f}\t{shown}")
        else:
            print(f"{result['label']}\t{result['probability']:.4f}\t{shown}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from distill.lab.model_card import write_model_card

    for run in args.runs:
        print(f"model card: {write_model_card(run)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from distill.lab import export

    export.export_student_onnx(
        args.model, args.out, args.int8,
        export.FP32_TOLERANCE if args.tolerance is None else args.tolerance,
        export.INT8_AGREEMENT if args.int8_agreement is None else args.int8_agreement,
        export.INT8_METRIC_DROP if args.int8_tolerance is None else args.int8_tolerance,
        args.max_length)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from distill.config import load_config, load_raw
    from distill.lab.run import run_experiment
    from distill.lab.run_folder import RunError, latest_unfinished
    from distill.lab.sweep import is_sweep

    raw = load_raw(args.config)
    if is_sweep(raw):
        return _sweep([args.config], args.set, args.out, [], None, None, None, args.command)
    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else None
    if args.resume and out is None:
        out = latest_unfinished(Path("runs") / cfg.name)
        if out is None:
            raise RunError(f"--resume: no unfinished run of {cfg.name!r} under runs/{cfg.name}; give --out")
    run_experiment(cfg, out or _default_out(cfg.name, cfg.seed), resume=args.resume, command=args.command)
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    import shutil

    from distill.augment.runner import build_augmented, build_in_processes, stats
    from distill.config import check_shard, load_config
    from distill.io import atomic_path
    from distill.loaders import load_task

    check_shard(args.num_shards, args.shard_index)
    cfg = load_config(args.config, args.set)
    task = load_task(cfg.task)
    if args.num_shards is not None:
        path = build_augmented(cfg, task, args.num_shards, args.shard_index)
        if path is None:
            print(f"shard {args.shard_index} of {args.num_shards} done; once every shard has run, shard 0 (or a "
                  "run without --num-shards) merges the parts")
            return 0
    else:
        from accelerate import PartialState

        state = PartialState()  # under `accelerate launch`: one shard per process, the main one merges
        path = build_in_processes(cfg, task, state)
        if not state.is_main_process:
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
    from distill.teachers.mlm_adapt import adapt_encoder, default_corpus

    texts, heldout = default_corpus(), default_corpus("dev")
    if args.corpus:
        heldout = None
        texts = [line.strip() for f in args.corpus for line in open(f, encoding="utf-8") if line.strip()]
    adapt_encoder(args.encoder, texts, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  max_length=args.max_length, seed=args.seed, heldout=heldout)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from distill.config import dump_yaml
    from distill.lab.check import check

    checked = check(args.config, args.set, args.variant, estimate=not args.no_estimate)
    print("\n".join(checked.lines))
    if args.show_config:  # on request, after the plan: it runs to a hundred lines and more
        print("\nresolved config:\n" + dump_yaml(checked.config))
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

    sw = sub.add_parser("sweep", help="run every variant x grid point x seed of configs, one folder each; skips "
                        "finished runs and resumes unfinished ones")
    sw.add_argument("configs", nargs="+", help="experiment YAML files, run in order (e.g. a general-distillation "
                    "sweep, then the task sweep that uses its students through `{variant}`)")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="sweep a config key over values (repeatable; combinations multiply)")
    sw.add_argument("--seeds", help="comma-separated seeds (replaces the config's `seeds`)")
    sw.add_argument("--out", help="experiment folder (default runs/<name>)")
    sw.add_argument("--num-shards", type=int, help="split the runs round-robin over this many processes")
    sw.add_argument("--shard-index", type=int, help="which share this process runs (0-based)")
    sw.add_argument("--dry-run", action="store_true", help="list every run (state, variant, seed, folder) after "
                    "validating each run's config, and run nothing (`distill check` also checks data and models)")
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("report", help="ablation table (md/csv/latex) and plots from an experiment's run folders")
    rp.add_argument("root", help="runs/<experiment>")
    rp.add_argument("--format", choices=["md", "csv", "latex"], default="md", help="what to print (all are written)")
    rp.add_argument("--out", help="folder for table.md/.csv/.tex and the PNG plots (default <root>/report)")
    rp.add_argument("--reference", help="variant the changes are measured against (default: the sweep's "
                    "`sweep.reference`, else its first variant)")
    rp.add_argument("--no-plots", action="store_true")
    rp.add_argument("--generalise", action="store_true", help="judge differences as claims about new data: add the "
                    "evaluation examples' own share of the variance (example bootstrap) to the paired t over seeds")
    rp.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for one-run intervals, one-seed "
                    "differences and --generalise (default 2000)")
    rp.set_defaults(func=cmd_report)

    pb = sub.add_parser("publish", help="copy an experiment's run records (no weights) to a folder a repository can "
                        "hold, from which `distill report` makes the same tables")
    pb.add_argument("root", help="runs/<experiment>")
    pb.add_argument("dest", help="where the records go (replaced as a whole once the copy is complete)")
    pb.set_defaults(func=cmd_publish)

    b = sub.add_parser("bench", help="parameters, size, FLOPs, latency and throughput of the teacher and students, "
                       "as ratios to the first model")
    b.add_argument("--models", default="bert-large,bert-base,tinybert6,distilbert,tinybert4,bilstm",
                   help="comma-separated shapes (random weights), the first is the reference; known: "
                   "bert-large, bert-base, tinybert6, distilbert, tinybert4, bilstm")
    b.add_argument("--student", help="also a trained student: a run folder (adds its dev metrics) or a student folder")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--seq-len", type=int, default=128)
    b.add_argument("--batch", type=int, default=32, help="batch size of the throughput measurement")
    b.add_argument("--budget", type=float, default=3.0, help="seconds spent timing each measurement (after warm-up)")
    b.add_argument("--threads", type=int, help="torch CPU threads")
    b.add_argument("--int8", action="store_true", help="add dynamically quantised int8 variants (CPU)")
    b.add_argument("--compile", action="store_true", help="add torch.compile variants")
    b.add_argument("--onnx", action="store_true", help="add ONNX Runtime latency and throughput (fp32 and int8, CPU) "
                   "of each model, exported to a temporary folder")
    b.add_argument("--accuracy-limit", type=int, help="dev examples used for the student's metrics (default all)")
    b.add_argument("--out", help="also write the table to this file")
    b.set_defaults(func=cmd_bench)

    pr = sub.add_parser("predict", help="labels and probabilities from an exported student")
    pr.add_argument("model", help="a run folder or an exported student folder")
    pr.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    pr.add_argument("--text-b", action="append", default=[], help="second sentences of pairs, one per --text")
    pr.add_argument("--file", help="one text per line; `first<TAB>second` for sentence pairs")
    pr.add_argument("--json", action="store_true", help="one JSON object per line with every probability")
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument("--max-length", type=int, help="truncate inputs at this many tokens instead of the length the "
                    "student was trained at (its encoding.json)")
    pr.set_defaults(func=cmd_predict)

    cd = sub.add_parser("card", help="(re)write the model card student/README.md of finished runs from their "
                        "config.yaml, run.json and metrics.json (runs write it themselves when they finish)")
    cd.add_argument("runs", nargs="+", help="finished run folders")
    cd.set_defaults(func=cmd_card)

    ex = sub.add_parser("export", help="an exported student as ONNX (and int8), put in place only when ONNX "
                        "Runtime gives PyTorch's logits on real padded inputs")
    ex.add_argument("model", help="a run folder or an exported student folder")
    ex.add_argument("--format", choices=["onnx"], default="onnx")
    ex.add_argument("--int8", action="store_true", help="also <name>.int8.onnx: dynamic int8 quantisation "
                    "(onnxruntime.quantization, int8 weights), checked too")
    ex.add_argument("--out", help="the .onnx file (default <student folder>/model.onnx; the report goes beside it as "
                    "onnx.json, or <name>.json for another name)")
    ex.add_argument("--tolerance", type=float, help="largest max abs logit difference accepted for fp32 (default "
                    "1e-4)")
    ex.add_argument("--int8-agreement", type=float, help="int8: least share of the run's dev examples whose "
                    "predicted class must match PyTorch's (default 0.95)")
    ex.add_argument("--int8-tolerance", type=float, help="int8: largest drop of the task's main metric on the run's "
                    "dev examples accepted (default 0.02, i.e. 2 points)")
    ex.add_argument("--max-length", type=int, help="truncation of the parity texts (default: the length "
                    "the student was trained at, its encoding.json)")
    ex.set_defaults(func=cmd_export)

    c = sub.add_parser("check", help="everything a run checks before training (config, data, tokenizer, teacher, "
                       "student, layer maps, vectors, augmentation and corpus sources), then the plan: per stage its "
                       "data, losses, layer map, examples, optimizer steps and tokens, and the wall time estimated by "
                       "timing real batches")
    with_config(c)
    c.add_argument("--variant", help="for a config with variants: the one to plan (default: `sweep.reference`, else "
                   "the first); every variant is checked either way")
    c.add_argument("--show-config", action="store_true", help="after the plan, print the config as resolved "
                   "(defaults, `extends:` and --set applied)")
    c.add_argument("--no-estimate", action="store_true", help="skip the wall-time estimate (which times a few "
                   "batches of each stage, and of the augmentation, on this device)")
    c.set_defaults(func=cmd_check)

    ls = sub.add_parser("losses", help="list the registered losses and their parameters")
    ls.set_defaults(func=cmd_losses)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    # What started a run, as it could be typed again (recorded in run.json and the model card).
    args.command = shlex.join(["distill", *(sys.argv[1:] if argv is None else argv)])
    import transformers

    from distill.errors import DistillError

    # Its per-load weight reports are noise here: distillery says what it initialises itself.
    transformers.logging.set_verbosity_error()
    try:
        return args.func(args)
    except DistillError as e:  # the user's to fix: one line; anything else is a bug and keeps its traceback
        print(f"distill: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, an unwritable folder: every write is temp-then-rename, nothing is torn
        where = f" {e.filename}" if e.filename else ""
        print(f"distill: error: cannot read or write{where}: {e.strerror or e}. Files written before are intact "
              "(writes go to a temporary file, then rename); free space or fix permissions and rerun with "
              "--resume.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
