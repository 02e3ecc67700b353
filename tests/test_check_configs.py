"""`distill check` over every config in experiments/ (globbed: a new recipe is covered without touching this file),
offline, with small stand-ins for what is not on this machine: GLUE folders, hub checkpoints (config and tokenizer
only, no weights: check must never load weights), word vectors, corpus files, a spaCy pipeline, and the student
folders of general-distillation runs that have not run yet. Then the errors check exists to catch, and its sizes
against hand computations."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from distill.config import load_config, load_raw
from distill.lab.cli import main

from .helpers import ROOT, assert_facts, set_flags
from .standins import HUB

EXPERIMENTS = ROOT / "experiments"
CONFIGS = sorted(EXPERIMENTS.rglob("*.yaml"))

def check(config: Path, overrides: list[str], capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["check", str(config), "--no-estimate", *set_flags(overrides), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_planned(config: Path, code: int, out: str, err: str) -> None:
    assert code == 0, f"distill check {config.relative_to(ROOT)}: {err.strip()[-3000:]}"
    stages = re.findall(r"^stage (\d+)/(\d+) ", out, re.M)
    assert stages and len(stages) == int(stages[0][1]), out
    assert len(re.findall(r"optimizer steps \S+.* per epoch, .* in total$", out, re.M)) == len(stages), out
    assert len(re.findall(r"^  tokens per epoch: ", out, re.M)) == len(stages), out
    assert len(re.findall(r"^  settings: lr ", out, re.M)) == len(stages), out


def _variants(config: Path) -> list[str]:
    return list(load_raw(config).get("variants") or {})


# ---------------------------------------------------------------- every config


def test_standin_hub_checkpoints_load_offline(standins):
    from transformers import AutoConfig, AutoTokenizer

    for name, shape in HUB.items():
        config = AutoConfig.from_pretrained(name)
        assert config.model_type == shape["model_type"] and config.vocab_size == 30522
        assert config.num_hidden_layers == shape.get("num_hidden_layers", shape.get("n_layers"))
        tok = AutoTokenizer.from_pretrained(name)
        assert tok.is_fast and len(tok) == 30522 and tok("a good movie")["input_ids"][0] == tok.cls_token_id


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(EXPERIMENTS)) for p in CONFIGS])
def test_check_passes_and_plans_every_experiment(config, standins, no_weights, capsys):
    code, out, err = check(config, standins.overrides(config), capsys)
    assert_planned(config, code, out, err)
    if _variants(config):
        assert "every variant checked" in out


def test_check_shows_a_recipes_stages_merged_with_those_it_extends(standins, no_weights, capsys):
    config = EXPERIMENTS / "glue" / "cola" / "tinybert4.yaml"  # states only its 50 intermediate epochs
    code, out, err = check(config, standins.overrides(config), capsys)
    assert code == 0, err
    assert re.search(r"^extends: .*glue/sst2/tinybert4\.yaml ", out, re.M), out
    first, second = out.split("stage 1/2 intermediate")[1].split("stage 2/2 prediction")
    assert "  50 epochs x" in first  # the recipe's own value
    assert "lr 5e-05," in first and "warmup 0.0," in first and "schedule constant" in first  # from sst2
    assert "data augmented" in second and "lr 3e-05," in second and "eval_every 50," in second


# A sweep's check already checks every variant (and plans one); planning another by name, once per sweep, keeps the
# file's time linear in the number of variants.
VARIANTS = [(c, _variants(c)[-1]) for c in CONFIGS if _variants(c)]


@pytest.mark.parametrize("config,variant", VARIANTS,
                         ids=[f"{c.relative_to(EXPERIMENTS)}:{v}" for c, v in VARIANTS])
def test_check_plans_a_variant_by_name(config, variant, standins, no_weights, capsys):
    code, out, err = check(config, standins.overrides(config), capsys, "--variant", variant)
    assert_planned(config, code, out, err)
    assert f"planned below: variant {variant!r}" in out


# ---------------------------------------------------------------- what check catches


SST2_TINYBERT4 = EXPERIMENTS / "glue" / "sst2" / "tinybert4.yaml"


def test_a_glue_file_missing_a_column_is_named(standins, capsys, tmp_path):
    folder = tmp_path / "SST-2"
    shutil.copytree(standins.root / "glue" / "SST-2", folder)
    train = folder / "train.tsv"
    train.write_text("".join(line.split("\t")[0] + "\t" + line.split("\t")[1] + "\n"
                             for line in train.read_text().splitlines()))  # index and sentence, no label
    overrides = [o for o in standins.overrides(SST2_TINYBERT4) if not o.startswith("task.path=")]
    code, out, err = check(SST2_TINYBERT4, [*overrides, f"task.path={folder}"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("distill: error: ") and len(err.strip().splitlines()) == 1
    assert_facts(err, f"{train}:1:", "no column", "'label'")


@pytest.mark.parametrize("changes,facts", [
    (["stages.0.layer_map=[[1, 13]]"], ("stages.0 (intermediate).layer_map", "[1, 13]", "teacher layer 13", "1..12")),
    (["student.init=scratch", "student.preset=null", "student.layers=16"],
     ("stages.0 (intermediate).layer_map", "'uniform'", "student of 16 layers", "teacher of 12 layers")),
    (["student.init=scratch"], None),  # valid: a random TinyBERT-4
    (["augment.tinybert.vectors=/no/such/glove.txt"], ("vectors file not found", "/no/such/glove.txt")),
    (["augment.tinybert.masked_lm=/no/such/mlm"], ("checkpoint folder not found", "/no/such/mlm")),
])
def test_check_catches_what_a_run_would_refuse(standins, capsys, changes, facts):
    code, out, err = check(SST2_TINYBERT4, [*standins.overrides(SST2_TINYBERT4), *changes], capsys)
    if facts is None:
        assert_planned(SST2_TINYBERT4, code, out, err)
        return
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert_facts(err, *facts)


def test_a_resource_only_a_later_variant_needs_is_checked_and_named(capsys):
    # quickstart_bilstm's first variant trains on the training set; only `distilled+aug` needs the tagger.
    config = EXPERIMENTS / "quickstart_bilstm.yaml"
    code, out, err = check(config, ["augment.tang.tagger=spacy:/no/such/pipeline"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert_facts(err, "variant 'distilled+aug'", "spaCy pipeline", "'/no/such/pipeline'", "not installed")


def test_unknown_variant_is_one_line(standins, capsys):
    config = EXPERIMENTS / "ablations" / "glue" / "tinybert.yaml"
    code, _, err = check(config, standins.overrides(config), capsys, "--variant", "no-such-thing")
    assert code == 2
    assert_facts(err, "no such variant", "'no-such-thing'", "no-augmentation")


# ---------------------------------------------------------------- sizes, by hand


def _figures(out: str, stage: int) -> tuple[str, str]:
    block = out.split(f"stage {stage}/")[1]
    steps = re.search(r"optimizer steps ((?:at most |~)?[\d,]+) per epoch, ((?:at most |~)?[\d,]+) in total", block)
    return steps.group(1), steps.group(2)


def test_steps_and_tokens_match_a_hand_computation(standins, capsys, tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    # 10 training sentences: nine of [CLS] good movie [SEP] (4 tokens), one of 10 tokens cut to max_length 6.
    train = ["good movie"] * 9 + ["a very very very very very good movie"]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(train)))
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood movie\t1\nbad movie\t0\n")
    smoke = ROOT / "experiments" / "smoke.yaml"
    overrides = ["task.source=glue", "task.name=sst2", f"task.path={folder}", "task.max_length=6",
                 "task.train_limit=null", "task.dev_limit=null", "task.test_limit=null",
                 "stages.0.batch_size=4", "stages.0.epochs=3", "stages.0.grad_accum=2",
                 "stages.1.batch_size=3", "stages.1.epochs=2"]
    code, out, err = check(smoke, overrides, capsys)
    assert code == 0, err
    # Stage 1: ceil(10 / 4) = 3 batches, ceil(3 / 2) = 2 optimizer steps per epoch, x 3 epochs = 6.
    assert _figures(out, 1) == ("2", "6")
    # Stage 2: ceil(10 / 3) = 4 batches = 4 steps per epoch, x 2 epochs = 8; 14 over both stages.
    assert _figures(out, 2) == ("4", "8")
    assert "total:    14 optimizer steps" in out
    # Tokens per epoch: 9 x 4 + 6 = 42.
    assert out.count("tokens per epoch: 42\n") == 2
    # The teacher is fine-tuned first: ceil(10 / 32) = 1 step per epoch, 1 epoch.
    assert "batch 32 = 1 optimizer steps" in out


def test_augmented_set_not_built_is_an_upper_bound_and_built_is_read(standins, capsys):
    from distill.augment.runner import augmented_path
    from distill.loaders import load_task

    overrides = standins.overrides(SST2_TINYBERT4)
    code, out, err = check(SST2_TINYBERT4, overrides, capsys)
    assert code == 0, err
    # The stand-in SST-2 has 9 training examples; 20 copies each: at most 9 x 21 = 189 examples, batch 32:
    # ceil(189 / 32) = 6 steps per epoch, x 20 epochs = 120 (stage 1), x 3 = 18 (stage 2).
    assert "not built yet" in out and "(estimate)" in out
    assert _figures(out, 1) == ("at most 6", "at most 120") and _figures(out, 2) == ("at most 6", "at most 18")

    cfg = load_config(SST2_TINYBERT4, overrides)
    path = augmented_path(cfg, load_task(cfg.task))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"x{i}", "text_a": "good movie", "text_b": None, "label": i % 2} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        code, out, err = check(SST2_TINYBERT4, overrides, capsys)
        assert code == 0, err
        # 40 examples of 4 tokens: ceil(40 / 32) = 2 steps per epoch; 160 tokens per epoch.
        assert f"built: {path}" in out and _figures(out, 1) == ("2", "40") and "tokens per epoch: 160\n" in out
    finally:
        path.unlink()


def test_general_distillation_corpus_estimated_then_exact_once_packed(standins, capsys):
    from distill.corpus import CorpusDataset, pack_corpus
    from distill.teachers.load import load_tokenizer

    config = EXPERIMENTS / "general" / "tinybert4.yaml"
    overrides = [*standins.overrides(config), "stages.0.batch_size=2", "corpus.heldout=0.25"]
    code, out, err = check(config, overrides, capsys)
    assert code == 0, err
    assert "not packed yet" in out and re.search(r"tokens per epoch: ~[\d,]+ \(estimate\)", out)
    cfg = load_config(config, overrides)
    tokenizer = load_tokenizer(cfg.teacher.checkpoint)
    folder = pack_corpus(cfg.corpus, tokenizer, log=lambda *_: None)
    ds = CorpusDataset(folder, "train", cfg.corpus.heldout, 0)
    code, out, err = check(config, overrides, capsys)
    assert code == 0, err
    per_epoch = -(-len(ds) // 2)
    assert f"packed: {folder}" in out and _figures(out, 1) == (str(per_epoch), f"{per_epoch * 3:,}")
    assert f"tokens per epoch: {sum(ds.lengths()):,}\n" in out


def test_pair_task_augmented_set_counts_each_side_rewritten_on_its_own(standins, capsys):
    config = EXPERIMENTS / "glue" / "mrpc" / "tinybert4.yaml"
    overrides = standins.overrides(config)
    code, out, err = check(config, overrides, capsys)
    assert code == 0, err
    copies = load_config(config, overrides).augment.copies
    # TinyBERT's reference rewrites one side of a pair at a time: 2N copies per pair (pair_mode: one_side).
    assert f"x (1 + {2 * copies} copies) examples" in out
    code, out, err = check(config, [*overrides, "augment.tinybert.pair_mode=both"], capsys)
    assert code == 0, err
    assert f"x (1 + {copies} copies) examples" in out


@pytest.mark.parametrize("path", sorted((EXPERIMENTS / "glue").glob("*/tinybert*.yaml")), ids=lambda p: p.parent.name
                         + "/" + p.stem)
def test_tinybert_recipes_evaluate_every_50_steps_of_the_prediction_step(path):
    cfg = load_config(path)
    prediction = [st for st in cfg.stages if st.name == "prediction"]
    assert prediction and prediction[0].eval_every == 50  # task_distill.py's --eval_step default
    assert all(st.eval_every is None for st in cfg.stages if st.name != "prediction")
