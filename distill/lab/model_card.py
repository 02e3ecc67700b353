"""The model card of an exported student: `student/README.md` in the Hugging Face Hub's format (YAML metadata, then
Markdown), made only from what the run folder records (`config.yaml`, `run.json`, `metrics.json`), so that a card
can be rewritten for any finished run (`distill card RUN`) and says nothing the run did not measure."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from distill.config import yaml_load
from distill.errors import DistillError
from distill.io import read_json, write_text
from distill.layer_map import layer_map
from distill.losses import LOSSES
from distill.resources import PACKAGED

CARD = "README.md"
SPLITS = ("dev", "dev_mismatched", "test")


class CardError(DistillError):
    pass


def write_model_card(run: str | Path) -> Path:
    """Write `<run>/student/README.md` from the run's records; returns its path."""
    run = Path(run)
    needed = [run / f for f in ("config.yaml", "run.json", "metrics.json")] + [run / "student"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise CardError(f"{run}: not a finished run folder (missing {', '.join(missing)}); a model card is made "
                        "from a finished run's config.yaml, run.json, metrics.json and student/")
    cfg = yaml_load((run / "config.yaml").read_text(encoding="utf-8"))
    card = model_card(cfg, read_json(run / "run.json"), read_json(run / "metrics.json"), run)
    path = run / "student" / CARD
    write_text(path, card)
    return path


def _hub_name(name: str | None) -> str | None:
    """A checkpoint or dataset name that points at the Hub (not a local path, a packaged or random resource)."""
    if not name or name == "random" or ":" in name or name.startswith((".", "/", "~")) or Path(name).exists():
        return None
    return name


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _metadata(cfg: dict, run_info: dict, m: dict) -> dict:
    task, student = cfg["task"], cfg["student"]
    general = bool(m.get("general"))
    meta: dict = {"library_name": "transformers" if m["student"].get("kind") == "bert" else None,
                  "pipeline_tag": "fill-mask" if general else "text-classification",
                  "tags": ["distillery", "knowledge-distillation", student["kind"]]}
    base = _hub_name(cfg["teacher"].get("checkpoint"))
    if base:
        meta["base_model"] = base
    dataset = _hub_name(task.get("path")) if task.get("source") == "hf" else None
    if dataset:
        meta["datasets"] = [dataset]
    if not general:
        results = []
        for split in SPLITS:
            scores = m["student"].get(split) or {}
            if scores:
                results.append({
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": {"name": m.get("task", task["name"]), "type": dataset or task["name"],
                                **({"config": task["subset"]} if task.get("subset") else {}), "split": split},
                    "metrics": [{"type": k, "value": round(float(v), 4), "name": f"{split} {k}"}
                                for k, v in scores.items() if not k.startswith("loss/") and math.isfinite(v)]})
        meta["metrics"] = sorted({k for split in SPLITS for k in (m["student"].get(split) or {})
                                  if not k.startswith("loss/")})
        meta["model-index"] = [{"name": cfg["name"], "results": results}]
    return {k: v for k, v in meta.items() if v is not None}


def _stage_rows(cfg: dict, m: dict) -> list[str]:
    rows = ["| stage | data | epochs | lr | batch | losses | layer map (student, teacher) |",
            "|---|---|---|---|---|---|---|"]
    n_s = m["student"].get("layers")
    several = m["teacher"].get("teachers") or {}
    first = (cfg.get("teachers") or [cfg["teacher"]])[0].get("name") or "teacher"
    for st in cfg["stages"]:
        losses = ", ".join(f"{name} {spec}" if not isinstance(spec, dict) else
                           f"{name} ({', '.join(f'{k}={v}' for k, v in spec.items())})"
                           for name, spec in st["losses"].items())
        # Each intermediate loss reads one teacher (by default the first), mapped onto that teacher's depth.
        read = sorted({(spec.get("teacher") if isinstance(spec, dict) else None) or first
                       for name, spec in st["losses"].items()
                       if name in LOSSES and LOSSES[name].needs & {"attention", "hidden", "qkv"}})
        maps = []
        for teacher in read if m["student"].get("kind") == "bert" else []:
            n_t = (several.get(teacher) or {}).get("layers") or m["teacher"].get("layers")
            try:
                pairs = str(layer_map(st.get("layer_map", "uniform"), n_s, n_t))
            except DistillError as e:
                pairs = f"({e})"
            maps.append(f"{teacher + ' ' if several else ''}{st.get('layer_map')}: {pairs}")
        pairs = "; ".join(maps) or "-"
        rows.append(f"| {st['name']} | {st.get('data', 'train')} | {st['epochs']} | {st.get('lr')} | "
                    f"{st.get('batch_size')} | {losses} | {pairs} |")
    return rows


def _results(cfg: dict, m: dict) -> list[str]:
    t, s = m["teacher"], m["student"]
    teachers = cfg.get("teachers") or [cfg["teacher"]]
    t_seeds = ", ".join(str((x.get("finetune") or {}).get("seed", "-")) for x in teachers)
    main = m.get("main_metric")
    lines = [f"Main metric: **{main}** (selects the student's checkpoint on dev). Student seed {cfg['seed']} (data "
             f"order, augmentation, initialisation); teacher fine-tuning seed {t_seeds}. One run: for the spread "
             "over seeds see the experiment's `distill report`.", "",
             "| model | parameters | " + " | ".join(f"{split} {k}" for split in SPLITS
                                                    for k in (s.get(split) or {}) if not k.startswith("loss/")) + " |"]
    cols = [(split, k) for split in SPLITS for k in (s.get(split) or {}) if not k.startswith("loss/")]
    lines.append("|---|---|" + "---|" * len(cols))
    for who, facts in (("teacher" + (" (ensemble)" if len(teachers) > 1 else ""), t), ("student", s)):
        vals = " | ".join(_fmt((facts.get(split) or {}).get(k)) for split, k in cols)
        lines.append(f"| {who} | {facts['parameters'] / 1e6:.2f}M | {vals} |")
    r = m["ratios"]
    share = f"{100 * r['dev_score']:.1f}% of the teacher's dev {main}; " if r.get("dev_score") is not None else ""
    compute = (f"; encoder compute per token {100 * r['encoder_compute']:.1f}% of the teacher's"
               if r.get("encoder_compute") is not None else "")
    lines += ["", f"Student/teacher: {share}parameters {100 * r['parameters']:.1f}%{compute}."]
    base = t.get("majority_baseline") or {}
    if base:
        lines.append(f"Majority-class baseline ({main}): " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()) + ".")
    return lines


def _general(m: dict) -> list[str]:
    c = m.get("corpus") or {}
    lines = [f"General distillation on {c.get('train_sequences', '?')} packed sequences (held out: "
             f"{c.get('heldout_sequences', '?')}). Held-out distillation losses, before -> after:", ""]
    for stage, terms in (m.get("heldout_after") or {}).items():
        for k, v in terms.items():
            lines.append(f"- {stage} {k.removeprefix('loss/')}: {m['heldout_before'][stage][k]:.4f} -> {v:.4f}")
    r = m["ratios"]
    compute = f"; encoder compute per token {100 * r['encoder_compute']:.1f}%" if r.get("encoder_compute") else ""
    lines += ["", f"Parameters: {100 * r['parameters']:.1f}% of the teacher's{compute}."]
    return lines


def _teacher_lines(cfg: dict, m: dict) -> list[str]:
    out = []
    for t in cfg.get("teachers") or [cfg["teacher"]]:
        ck = t.get("checkpoint")
        what = PACKAGED[ck.split(":", 1)[1]].what if ck and ck.startswith("packaged:") and \
            ck.split(":", 1)[1] in PACKAGED else ck
        if ck == "random":
            what = f"a randomly initialised BERT {t.get('random')} (a test teacher, not a trained model)"
        ft = t.get("finetune") or {}
        tuned = (f"fine-tuned on the task for {ft.get('epochs')} epochs at lr {ft.get('lr')} (seed {ft.get('seed')})"
                 if ft else "used as given")
        out.append(f"- `{t.get('name') or 'teacher'}`: {what}, {tuned}" +
                   (f", weight {t.get('weight')}" if len(cfg.get("teachers") or []) > 1 else ""))
    t = m["teacher"]
    out.append(f"- shape: {t.get('layers')} layers, hidden {t.get('hidden')}, {t['parameters'] / 1e6:.2f}M "
               "parameters" + (f"; source {t['source']}" if t.get("source") else ""))
    return out


def _data_lines(cfg: dict, m: dict) -> list[str]:
    task = cfg["task"]
    where = f"`{task.get('path')}`" + (f" (subset `{task['subset']}`)" if task.get("subset") else "") \
        if task.get("path") else "packaged with distillery"
    sizes = m.get("data") or {}
    out = [f"- task `{m.get('task', task['name'])}` from source `{task['source']}`, {where}"]
    if sizes:
        out.append("- examples: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    limits = {k: task.get(k) for k in ("train_limit", "dev_limit", "test_limit") if task.get(k) is not None}
    if limits:
        out.append("- subsampled (seed " + str(task.get("split_seed", 0)) + "): " +
                   ", ".join(f"{k} {v}" for k, v in limits.items()))
    out.append(f"- sequences truncated to {task.get('max_length')} tokens")
    aug = cfg.get("augment") or {}
    if any(st.get("data") == "augmented" for st in cfg["stages"]):
        out.append(f"- augmentation: {aug.get('method')}, {aug.get('copies')} copies per example, labels by the "
                   f"{aug.get('labels')}")
    return out


def model_card(cfg: dict, run_info: dict, m: dict, run: Path) -> str:
    """The card's text: metadata front matter, then what a reader needs to judge and reuse the student."""
    meta = yaml.safe_dump(_metadata(cfg, run_info, m), sort_keys=False, allow_unicode=True)
    s = m["student"]
    shape = (f"BiLSTM (hidden {s.get('hidden')}, {s.get('vocab')} words)" if s.get("kind") == "bilstm"
             else f"{s.get('layers')}-layer, hidden {s.get('hidden')}")
    kind = cfg["student"]["kind"]
    general = bool(m.get("general"))
    git = run_info.get("git") or {}
    command = run_info.get("command")
    libs = run_info.get("libraries") or {}
    lines = [
        "---", meta.rstrip(), "---", "",
        f"# {cfg['name']}: a {kind} student ({shape})", "",
        "Distilled with distillery from a BERT teacher"
        + ("" if general else f" on the task `{m.get('task')}`") + f"; {s['parameters'] / 1e6:.2f}M parameters, "
        f"initialised from `{cfg['student'].get('init')}`.", "",
        "## Results", "", *(_general(m) if general else _results(cfg, m)), "",
        "## Teacher", "", *_teacher_lines(cfg, m), "",
        *([] if general else ["## Data", "", *_data_lines(cfg, m), ""]),
        "## Distillation recipe", "", *_stage_rows(cfg, m), "",
        f"Projections for width differences: `{(cfg.get('train') or {}).get('projection')}` (saved beside the "
        "student for a later stage, not part of the model).", "",
        "## How it was made", "",
        "```", command or "(not recorded: a run started from Python, or before runs recorded their command)", "```",
        *([f"Resumed with `{run_info['resume_command']}`."] if run_info.get("resume_command") else []), "",
        f"To run this configuration alone: `distill run {run / 'config.yaml'}`.", "",
        f"- git commit `{git.get('commit')}`" + (" (with uncommitted changes)" if git.get("dirty") else ""),
        f"- {run_info.get('device', 'device n/a')}, {run_info.get('processes', 1)} process(es), mixed precision "
        f"{run_info.get('mixed_precision')}; {m.get('wall_seconds')} s",
        "- " + ", ".join(f"{k} {v}" for k, v in libs.items() if v),
        *([f"- variant `{run_info['variant']}` of a sweep"] if run_info.get("variant") else []), "",
        "The resolved configuration:", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(),
        "```", "",
        "## Use", "",
        *(_usage_general() if general else _usage_bert() if s.get("kind") == "bert" else _usage_bilstm()), ""]
    return "\n".join(lines)


def _usage_bert() -> list[str]:
    return ["```python", "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "model = AutoModelForSequenceClassification.from_pretrained(FOLDER)",
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER)", "```", "",
            "or `distill predict FOLDER texts.txt`; `distill export FOLDER --format onnx` writes `model.onnx`."]


def _usage_bilstm() -> list[str]:
    return ["`distill predict FOLDER texts.txt` (the BiLSTM loads with `students.bilstm.load_bilstm`, without the "
            "training code); `distill export FOLDER --format onnx` writes `model.onnx`."]


def _usage_general() -> list[str]:
    return ["A general-distilled student is a starting point, not a classifier: name this folder as a task config's "
            "`student.init` for task distillation. It loads with `AutoModelForMaskedLM` (its MLM head, when it was "
            "trained with one) or `AutoModel`; projections W_h / W_e beside it carry over to the task run."]
