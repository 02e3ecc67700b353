"""What a finished run says about itself: `metrics.json`, the TensorBoard hparams row and the closing text.

One path for task runs and general-distillation runs: both record the two models' sizes and compute, the
history and the wall time; a task run adds dev/test metrics, a general run held-out losses and its corpus."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from distill.config import ExperimentConfig
from distill.lab.records import GeneralFacts, Ratios, RunMetrics, StudentFacts, TaskFacts, TeacherFacts
from distill.model_stats import count_parameters, encoder_flops_per_token
from distill.student_registry import get_student, label_of


def summarise(cfg: ExperimentConfig, teacher, student, length: int, history: list[dict], seconds: float, *,
              main_metric: str | None, teacher_facts: TeacherFacts, student_facts: StudentFacts,
              dev_score: float | None = None, task: TaskFacts | None = None,
              general: GeneralFacts | None = None) -> RunMetrics:
    """The metrics record. `length`: the sequence length compute is counted at; `*_facts`: the workflow's entries
    for each model (metrics, sources), completed here with their sizes; `task` / `general`: the workflow's own."""
    kind = get_student(cfg.student.kind)
    shape = kind.describe(student)
    flops_t = encoder_flops_per_token(teacher.config, length)
    flops_s = kind.encoder_flops_per_token(student, length)
    params_t, params_s = count_parameters(teacher), count_parameters(student)
    return RunMetrics(
        name=cfg.name, main_metric=main_metric,
        teacher=replace(teacher_facts, parameters=params_t, layers=teacher.config.num_hidden_layers,
                        hidden=teacher.config.hidden_size, encoder_flops_per_token=flops_t),
        student=replace(student_facts, parameters=params_s, description=shape, encoder_flops_per_token=flops_s),
        ratios=Ratios(params_s / params_t, flops_s / flops_t if flops_s is not None else None, dev_score),
        history=history, wall_seconds=round(seconds, 1), task=task, general=general)


def hparams(writer, cfg: ExperimentConfig, metrics: RunMetrics, labels: dict) -> None:
    """One TensorBoard HParams row per run: its variant, grid values, seed, shape, stages and final results."""
    hp = {**{k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in labels.items()},
          "student.layers": metrics.student.layers, "student.hidden": metrics.student.hidden,
          "student.kind": cfg.student.kind, "student.init": cfg.student.init, "seed": cfg.seed}
    for i, st in enumerate(cfg.stages):
        hp[f"stage{i}.{st.name}.losses"] = ",".join(st.losses)
        hp[f"stage{i}.{st.name}.epochs"] = st.epochs
        hp[f"stage{i}.{st.name}.lr"] = st.lr
    final = {f"hparam/student_dev_{k}": v for k, v in (metrics.student.scores.get("dev") or {}).items()}
    final.update({f"hparam/student_test_{k}": v for k, v in (metrics.student.scores.get("test") or {}).items()})
    if metrics.ratios.dev_score is not None:
        final["hparam/dev_share_of_teacher"] = metrics.ratios.dev_score
    for stage, terms in (metrics.general.heldout_after if metrics.general else {}).items():
        final.update({f"hparam/heldout_{stage}_{k.replace('loss/', '')}": v for k, v in terms.items()})
    writer.add_hparams(hp, final, run_name=".")


def _metrics(d: dict | None) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in (d or {}).items() if not k.startswith("loss/")) or "n/a"




def summary_text(m: RunMetrics, out: Path) -> str:
    """The lines a run prints when it ends."""
    t, s, r, general = m.teacher, m.student, m.ratios, m.general
    lines = ["", f"== {m.name} ({'general distillation' if general else m.task.task}), {m.wall_seconds:.0f} s =="]
    shapes = (f"{t.layers}L-{t.hidden}", label_of(s.description))
    for who, facts, shape in (("teacher", t, shapes[0]), ("student", s, shapes[1])):
        evaluated = "" if general else f"   dev: {_metrics(facts.scores.get('dev'))}"
        lines.append(f"{who}  {shape}  {facts.parameters / 1e6:6.2f}M params{evaluated}")
        if not general:
            lines.append(f"         test: {_metrics(facts.scores.get('test'))}")
    share = f"dev {m.main_metric} {100 * r.dev_score:.1f}%, " if r.dev_score is not None else (
        "" if general else f"dev {m.main_metric} n/a, ")
    compute = (f", encoder compute per token {100 * r.encoder_compute:.1f}%"
               if r.encoder_compute is not None else "")
    lines.append(f"student/teacher: {share}parameters {100 * r.parameters:.1f}%{compute}")
    if general:
        lines += [f"corpus: {general.corpus['train_sequences']} training, {general.corpus['heldout_sequences']} "
                  "held-out sequences", "held-out distillation losses, before -> after:"]
        lines += [f"  {stage} {k.removeprefix('loss/')}: {general.heldout_before[stage][k]:.4f} -> {v:.4f}"
                  for stage, terms in general.heldout_after.items() for k, v in terms.items()]
        lines.append(f"general student (a `student.init` for task configs): {out / 'student'}")
    lines += [f"run folder: {out}", f"compare runs: tensorboard --logdir {out.parent}"]
    return "\n".join(lines)
