"""The model card of an exported student: `student/README.md` in the Hugging Face Hub's format (YAML metadata, then
Markdown), made only from what the run folder records (`config.yaml`, `run.json`, `metrics.json`), so that a card
can be rewritten for any finished run (`distill card RUN`) and says nothing the run did not measure."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from distill.config import TaskConfig, yaml_load
from distill.errors import DistillError
from distill.io import read_json, write_text
from distill.lab.records import METRICS_FILE, RUN_FILE, GeneralFacts, GitState, RunInfo, RunMetrics, TaskFacts
from distill.layer_map import layer_map
from distill.losses import LOSSES
from distill.resources import PACKAGED
from distill.student_registry import get_student
from distill.task_types import QA, SEQUENCE, TASK_TYPES, TaskType, config_type

CARD = "README.md"
SPLITS = ("dev", "dev_mismatched", "test")


class CardError(DistillError):
    pass


def write_model_card(run: str | Path) -> Path:
    """Write `<run>/student/README.md` from the run's records; returns its path."""
    run = Path(run)
    needed = [run / f for f in ("config.yaml", RUN_FILE, METRICS_FILE)] + [run / "student"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise CardError(f"{run}: not a finished run folder (missing {', '.join(missing)}); a model card is made "
                        "from a finished run's config.yaml, run.json, metrics.json and student/")
    cfg = yaml_load((run / "config.yaml").read_text(encoding="utf-8"))
    card = model_card(cfg, RunInfo.load(run), RunMetrics.load(run), run)
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


def _packaged(checkpoint: str | None):
    """The packaged resource a `packaged:` or `adapted:packaged:` checkpoint names, or None."""
    name = (checkpoint or "").removeprefix("adapted:")
    return PACKAGED.get(name.split(":", 1)[1]) if name.startswith("packaged:") else None


def base_model(checkpoint: str | None) -> str | None:
    """The teacher's Hub id: a hub name as given, a packaged encoder's Hub original."""
    packaged = _packaged(checkpoint)
    return packaged.hub if packaged is not None else _hub_name(checkpoint)


# distillery's metric names -> the Hub's metric ids (those of `evaluate`) and their arguments.
HUB_METRICS = {"accuracy": ("accuracy", {}), "macro_f1": ("f1", {"average": "macro"}), "f1": ("f1", {}),
               "mcc": ("matthews_correlation", {}), "pearson": ("pearsonr", {}), "spearman": ("spearmanr", {}),
               "token_accuracy": ("accuracy", {}), "entity_f1": ("f1", {"average": "micro"}),
               "entity_precision": ("precision", {"average": "micro"}),
               "entity_recall": ("recall", {"average": "micro"}), "exact_match": ("exact_match", {}),
               "squad_f1": ("f1", {})}


def task_type_of(cfg: dict) -> TaskType:
    """The run's task type (`distill.task_types`) from its resolved config."""
    task = cfg.get("task") or {}
    keys = {f.name for f in dataclasses.fields(TaskConfig)} & {"type", "source", "name"}
    return TASK_TYPES[config_type(TaskConfig(**{k: v for k, v in task.items() if k in keys}))]
GLUE_HUB = "nyu-mll/glue"


def _dataset(cfg: dict) -> dict:
    """The dataset's own identity for `model-index`: its Hub id and configuration where it has them, else the
    task's name."""
    task = cfg["task"]
    source = task.get("source")
    if source == "glue":
        return {"type": GLUE_HUB, "name": f"GLUE {task['name'].upper()}", "config": task["name"]}
    hub = _hub_name(task.get("path")) if source == "hf" else None
    given = ((cfg.get("card") or {}).get("datasets") or [None])[0]
    out = {"type": hub or given or task["name"], "name": hub or given or task["name"]}
    if task.get("subset"):
        out["config"] = task["subset"]
    return out


def card_data(cfg: dict, m: RunMetrics):
    """The card's metadata as `huggingface_hub.ModelCardData` (which checks the model-index's structure)."""
    from huggingface_hub import EvalResult, ModelCardData

    task, student = cfg["task"], cfg["student"]
    general = m.is_general
    card = cfg.get("card") or {}
    teachers = cfg.get("teachers") or [cfg["teacher"]]
    bases = [b for t in teachers if (b := base_model(t.get("checkpoint")))]
    licenses = {p.license for t in teachers if (p := _packaged(t.get("checkpoint"))) is not None and p.license}
    license_ = card.get("license") or (licenses.pop() if len(licenses) == 1 else "other")
    datasets = list(card.get("datasets") or [])
    hub_dataset = _hub_name(task.get("path")) if task.get("source") == "hf" else \
        GLUE_HUB if task.get("source") == "glue" else None
    if hub_dataset and hub_dataset not in datasets:
        datasets.append(hub_dataset)
    results, used = [], []
    kind = task_type_of(cfg)
    if not general:
        dataset = _dataset(cfg)
        splits = m.task.source_splits if m.task else {}
        for split in SPLITS:
            for k, v in (m.student.scores.get(split) or {}).items():
                if k.startswith("loss/") or k not in HUB_METRICS or not math.isfinite(v):
                    continue
                metric, args = HUB_METRICS[k]
                used.append(metric)
                results.append(EvalResult(
                    task_type=kind.pipeline_tag, task_name=kind.pipeline_tag.replace("-", " ").title(),
                    dataset_type=dataset["type"],
                    dataset_name=dataset["name"], dataset_config=dataset.get("config"),
                    dataset_split=splits.get(split, split), metric_type=metric, metric_value=round(float(v), 4),
                    metric_name=f"{split} {k}", metric_args=args or None))
    return ModelCardData(
        license=license_, base_model=bases[0] if len(bases) == 1 else bases or None,
        language=list(card.get("language") or []) or None, datasets=datasets or None,
        library_name=get_student(cfg["student"]["kind"]).library,
        pipeline_tag="fill-mask" if general else kind.pipeline_tag,
        tags=["distillery", "knowledge-distillation", student["kind"]],
        metrics=sorted(set(used)) or None, model_name=cfg["name"], eval_results=results or None)


def validate_card_metadata(meta: dict) -> None:
    """Offline checks of a card's metadata against the Hub's rules that can be checked without it: the structure
    `ModelCardData` parses (model-index -> eval results), metric ids the Hub knows, and no local path."""
    from huggingface_hub import ModelCardData

    try:
        data = ModelCardData(**meta)
    except (TypeError, ValueError, KeyError) as e:
        raise CardError(f"model card metadata: {type(e).__name__}: {e}") from None
    known = {hub for hub, _ in HUB_METRICS.values()}
    bad = [r.metric_type for r in data.eval_results or [] if r.metric_type not in known] + \
        [x for x in data.metrics or [] if x not in known]
    if bad:
        raise CardError(f"model card metadata: metric ids {sorted(set(bad))} are not among {sorted(known)}")
    if not data.license:
        raise CardError("model card metadata: no license")


def _stage_rows(cfg: dict, m: RunMetrics) -> list[str]:
    rows = ["| stage | data | epochs | lr | batch | losses | layer map (student, teacher) |",
            "|---|---|---|---|---|---|---|"]
    n_s = m.student.layers
    several = (m.teacher.task and m.teacher.task.teachers) or {}
    first = (cfg.get("teachers") or [cfg["teacher"]])[0].get("name") or "teacher"
    for st in cfg["stages"]:
        losses = ", ".join(f"{name} {spec}" if not isinstance(spec, dict) else
                           f"{name} ({', '.join(f'{k}={v}' for k, v in spec.items())})"
                           for name, spec in st["losses"].items())
        # Each intermediate loss reads one teacher (by default the first), mapped onto that teacher's depth.
        read = sorted({(spec.get("teacher") if isinstance(spec, dict) else None) or first
                       for name, spec in st["losses"].items()
                       if name in LOSSES and LOSSES[name].needs.intermediate})
        maps = []
        for teacher in read if get_student(cfg["student"]["kind"]).intermediate else []:
            n_t = (several.get(teacher) or {}).get("layers") or m.teacher.layers
            try:
                pairs = str(layer_map(st.get("layer_map", "uniform"), n_s, n_t))
            except DistillError as e:
                pairs = f"({e})"
            maps.append(f"{teacher + ' ' if several else ''}{st.get('layer_map')}: {pairs}")
        pairs = "; ".join(maps) or "-"
        rows.append(f"| {st['name']} | {st.get('data', 'train')} | {st['epochs']} | {st.get('lr')} | "
                    f"{st.get('batch_size')} | {losses} | {pairs} |")
    return rows


def _results(cfg: dict, m: RunMetrics) -> list[str]:
    t, s = m.teacher, m.student
    teachers = cfg.get("teachers") or [cfg["teacher"]]
    t_seeds = ", ".join(str((x.get("finetune") or {}).get("seed", "-")) for x in teachers)
    main = m.main_metric
    lines = [f"Main metric: **{main}** (selects the student's checkpoint on dev). Student seed {cfg['seed']} (data "
             f"order, augmentation, initialisation); teacher fine-tuning seed {t_seeds}. One run: for the spread "
             "over seeds see the experiment's `distill report`.", "",
             "| model | parameters | " + " | ".join(f"{split} {k}" for split in SPLITS for k in
                                                    (s.scores.get(split) or {}) if not k.startswith("loss/")) + " |"]
    cols = [(split, k) for split in SPLITS for k in (s.scores.get(split) or {}) if not k.startswith("loss/")]
    lines.append("|---|---|" + "---|" * len(cols))
    for who, facts in (("teacher" + (" (ensemble)" if len(teachers) > 1 else ""), t), ("student", s)):
        vals = " | ".join(_fmt((facts.scores.get(split) or {}).get(k)) for split, k in cols)
        lines.append(f"| {who} | {facts.parameters / 1e6:.2f}M | {vals} |")
    r = m.ratios
    share = f"{100 * r.dev_score:.1f}% of the teacher's dev {main}; " if r.dev_score is not None else ""
    compute = (f"; encoder compute per token {100 * r.encoder_compute:.1f}% of the teacher's"
               if r.encoder_compute is not None else "")
    lines += ["", f"Student/teacher: {share}parameters {100 * r.parameters:.1f}%{compute}."]
    base = (t.task and t.task.majority_baseline) or {}
    if base:
        lines.append(f"Majority-class baseline ({main}): " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()) + ".")
    return lines


def _general(m: RunMetrics) -> list[str]:
    g = m.general or GeneralFacts()
    c = g.corpus
    lines = [f"General distillation on {c.get('train_sequences', '?')} packed sequences (held out: "
             f"{c.get('heldout_sequences', '?')}). Held-out distillation losses, before -> after:", ""]
    for stage, terms in g.heldout_after.items():
        for k, v in terms.items():
            lines.append(f"- {stage} {k.removeprefix('loss/')}: {g.heldout_before[stage][k]:.4f} -> {v:.4f}")
    r = m.ratios
    compute = f"; encoder compute per token {100 * r.encoder_compute:.1f}%" if r.encoder_compute else ""
    lines += ["", f"Parameters: {100 * r.parameters:.1f}% of the teacher's{compute}."]
    return lines


def _teacher_lines(cfg: dict, m: RunMetrics) -> list[str]:
    out = []
    for t in cfg.get("teachers") or [cfg["teacher"]]:
        ck = t.get("checkpoint")
        what = PACKAGED[ck.split(":", 1)[1]].what if ck and ck.startswith("packaged:") and \
            ck.split(":", 1)[1] in PACKAGED else f"`{_shown_path(ck)}`"
        if ck == "random":
            what = f"a randomly initialised BERT {t.get('random')} (a test teacher, not a trained model)"
        ft = t.get("finetune") or {}
        tuned = (f"fine-tuned on the task for {_count(ft.get('epochs'), 'epoch')} at lr {ft.get('lr')} (seed "
                 f"{ft.get('seed')})" if ft else "used as given")
        out.append(f"- `{t.get('name') or 'teacher'}`: {what}, {tuned}" +
                   (f", weight {t.get('weight')}" if len(cfg.get("teachers") or []) > 1 else ""))
    t = m.teacher
    out.append(f"- shape: {t.layers} layers, hidden {t.hidden}, {t.parameters / 1e6:.2f}M "
               "parameters" + (f"; source {t.source}" if t.source else ""))
    return out


def _data_lines(cfg: dict, m: RunMetrics) -> list[str]:
    task = cfg["task"]
    where = f"`{_shown_path(task.get('path'))}`" + (f" (subset `{task['subset']}`)" if task.get("subset") else "") \
        if task.get("path") else "packaged with distillery"
    facts = m.task or TaskFacts(task["name"])
    sizes = facts.data
    out = [f"- task `{facts.task}` from source `{task['source']}`, {where}"]
    splits = facts.source_splits
    if sizes:
        out.append("- examples: " + ", ".join(f"{k} {v:,}" + (f" (the source's `{splits[k]}` split)"
                                                              if splits.get(k, k) != k else "")
                                              for k, v in sizes.items()))
    cut = facts.subsampled
    if cut:
        out.append(f"- subsampled (seed {task.get('split_seed', 0)}): " +
                   ", ".join(f"{k} {kept:,} of {whole:,}" for k, (kept, whole) in cut.items()))
    out.append(f"- sequences truncated to {task.get('max_length')} tokens (saved with the student: `encoding.json`, "
               "and the tokenizer's `model_max_length`)")
    aug = cfg.get("augment") or {}
    if any(st.get("data") == "augmented" for st in cfg["stages"]):
        out.append(f"- augmentation: {aug.get('method')}, {_count(aug.get('copies'), 'copy', 'copies')} per example, "
                   f"labels by the {aug.get('labels')}")
    return out


def _count(n, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _shown_path(path: str | None) -> str | None:
    """A local path as the reader of a published card may see it: its last part only."""
    if path is None or _hub_name(path) is not None:
        return path
    return f".../{Path(path).name}" if Path(path).name else path


def _no_local_paths(command: str) -> str:
    """The command with each local path (absolute, or `~`) cut to its last part: a card is published."""
    import shlex

    def cut(token: str) -> str:
        key, eq, value = token.partition("=") if "=" in token and not token.startswith("/") else ("", "", token)
        if value.startswith(("/", "~")):
            value = f".../{Path(value).name}"
        return f"{key}{eq}{value}"

    try:
        return shlex.join(cut(t) for t in shlex.split(command))
    except ValueError:
        return command


# Sections a run reads only when it uses them: a card shows a section only then.
def used_config(cfg: dict) -> dict:
    """The resolved config without what the run did not use (augmentation without augmented stages, the corpus
    outside general distillation, sweep settings, an empty card section), local paths cut to their last part."""
    stages = cfg.get("stages") or []
    drop = {"variants", "seeds", "sweep", "description"}
    if not any(st.get("data") == "augmented" for st in stages):
        drop.add("augment")
    if not any(st.get("data") == "corpus" for st in stages):
        drop.add("corpus")
    if not cfg.get("teachers"):
        drop.add("teachers")
    out = {k: v for k, v in cfg.items() if k not in drop}

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return _shown_path(v) if isinstance(v, str) and v.startswith(("/", "~")) else v

    return clean(out)


def _onnx_lines(run: Path) -> list[str]:
    """The export's measured figures (`distill export` writes student/onnx.json), when the student was exported."""
    path = run / "student" / "onnx.json"
    if not path.exists():
        return []
    o = read_json(path)

    def one(name: str, p: dict | None) -> str:
        if not p:
            return ""
        agree = "" if p.get("argmax_agreement") is None else f", argmax agreement {p['argmax_agreement']:.3f}"
        metric = "" if p.get("metric") is None else f", dev {p['metric']} {p['onnx']:.4f} (PyTorch {p['pytorch']:.4f})"
        return (f"- `{name}`: max abs logit difference from PyTorch {p['max_abs_diff']:.3g} over "
                f"{p['examples']} examples ({o.get('parity_source')}){agree}{metric}")

    lines = ["## ONNX", "", one(o["onnx"], o.get("fp32"))]
    if o.get("int8_onnx"):
        lines.append(one(o["int8_onnx"], o.get("int8")))
    elif o.get("int8_refused"):
        lines.append(f"- int8: refused ({o['int8_refused']})")
    return [*lines, ""]


FOLDER = "path/to/student"  # the usage snippets' placeholder: the student folder, or its Hub id once uploaded


def model_card(cfg: dict, run_info: RunInfo, m: RunMetrics, run: Path) -> str:
    """The card's text: metadata front matter, then what a reader needs to judge and reuse the student."""
    meta = card_data(cfg, m).to_yaml()
    validate_card_metadata(yaml.safe_load(meta))
    s, d = m.student, m.student.description
    kind = cfg["student"]["kind"]
    student = get_student(kind)
    shape = student.title(d)
    general = m.is_general
    git = run_info.git or GitState()
    command = run_info.command
    libs = run_info.libraries
    pair = _pair(run)
    lines = [
        "---", meta.rstrip(), "---", "",
        f"# {cfg['name']}: a {kind} student ({shape})", "",
        "Distilled with distillery from a BERT teacher"
        + ("" if general else f" on the task `{m.task and m.task.task}`") + f"; {s.parameters / 1e6:.2f}M parameters, "
        f"initialised from `{_shown_path(cfg['student'].get('init'))}`.", "",
        "## Results", "", *(_general(m) if general else _results(cfg, m)), "",
        *_onnx_lines(run),
        "## Teacher", "", *_teacher_lines(cfg, m), "",
        *([] if general else ["## Data", "", *_data_lines(cfg, m), ""]),
        "## Distillation recipe", "", *_stage_rows(cfg, m), "",
        f"Projections for width differences: `{(cfg.get('train') or {}).get('projection')}` (saved beside the "
        "student for a later stage, not part of the model).", "",
        "## How it was made", "",
        "```", _no_local_paths(command) if command else
        "(not recorded: a run started from Python, or before runs recorded their command)", "```",
        *([f"Resumed with `{_no_local_paths(run_info.resume_command)}`."] if run_info.resume_command else []), "",
        "The run folder's `config.yaml` reruns this configuration alone: `distill run config.yaml`.", "",
        f"- git commit `{git.commit}`" + (" (with uncommitted changes)" if git.dirty else ""),
        f"- {run_info.device or 'device n/a'}, {run_info.processes or 1} process(es), mixed precision "
        f"{run_info.mixed_precision}; {m.wall_seconds} s",
        "- " + ", ".join(f"{k} {v}" for k, v in libs.items() if v),
        *([f"- variant `{run_info.variant}` of a sweep"] if run_info.variant else []), "",
        "The configuration, as resolved (sections the run did not use left out):", "", "```yaml",
        yaml.safe_dump(used_config(cfg), sort_keys=False, allow_unicode=True).rstrip(), "```", "",
        "## Use", "",
        *(_usage_general() if general else [*_usage(student, cfg, pair), "", *_usage_cli()]), ""]
    return "\n".join(lines)


def _usage(student, cfg: dict, pair: bool) -> list[str]:
    """How to load the student without distillery: a Hugging Face student of a tagging or QA task through its
    `transformers.pipeline`, any other as the student kind shows it."""
    kind = task_type_of(cfg)
    if kind.name == SEQUENCE or student.library != "transformers":
        return student.usage(FOLDER, pair)
    if kind.name == QA:  # transformers 5 removed the question-answering pipeline; 4.x has it
        return ["```python", "import torch",
                "from transformers import AutoModelForQuestionAnswering, AutoTokenizer", "",
                f'model = AutoModelForQuestionAnswering.from_pretrained("{FOLDER}").eval()',
                f'tokenizer = AutoTokenizer.from_pretrained("{FOLDER}")',
                'inputs = tokenizer("Who flew?", "The crew flew to Paris.", truncation="only_second", '
                'return_tensors="pt")', "with torch.no_grad():", "    out = model(**inputs)",
                "start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())",
                'print(tokenizer.decode(inputs["input_ids"][0, start:end + 1]))', "```", "",
                f'With transformers 4.x: `pipeline("question-answering", model="{FOLDER}")`; distillery\'s '
                "`distill predict` searches long contexts window by window as the run did."]
    return ["```python", "from transformers import pipeline", "",
            f'nlp = pipeline("{kind.pipeline_tag}", model="{FOLDER}")', 'print(nlp("Alice flew to Paris"))', "```"]


def _pair(run: Path) -> bool:
    path = run / "student" / "encoding.json"
    return bool(read_json(path).get("pair")) if path.exists() else False


def _usage_cli() -> list[str]:
    return ["With distillery installed, from a file with one text per line (a tab separates a sentence pair):", "",
            "```", f"distill predict {FOLDER} --file texts.txt", "```", "",
            f"`distill export {FOLDER} --format onnx --int8` writes `model.onnx` and `model.int8.onnx`, each checked "
            "against PyTorch. Inputs are cut at the length the student was trained at (`encoding.json`)."]


def _usage_general() -> list[str]:
    return ["A general-distilled student is a starting point, not a classifier: name this folder as a task config's "
            "`student.init` for task distillation. It loads with `AutoModelForMaskedLM` (its MLM head, when it was "
            "trained with one) or `AutoModel`; projections W_h / W_e beside it carry over to the task run."]
