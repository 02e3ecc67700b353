"""General distillation (pre-training-stage distillation) on an unlabelled corpus.

The teacher is a PRE-TRAINED BERT (`teacher.finetune: null`), loaded with its masked-LM head when one of the
losses reads teacher logits (DistilBERT's soft targets); an `adapted:` teacher is built first. The student is
the masked-LM form of the configured kind, so its folder is both a masked LM and a valid `student.init` for a
task config. Held-out distillation losses are measured before and after training."""

from __future__ import annotations

from pathlib import Path

from distill.config import ConfigError, ExperimentConfig
from distill.corpus import CorpusDataset, check_sources, pack_corpus
from distill.io import read_json, write_json
from distill.lab.preflight import Plan
from distill.lab.records import GeneralFacts, RunMetrics, StudentFacts, TeacherFacts
from distill.lab.summary import summarise
from distill.stage import Session, StageInputs
from distill.teachers.load import load_bert_mlm
from distill.teachers.mlm_adapt import ensure_adapted
from distill.trainer import evaluate, make_loader, set_attentions


class GeneralWorkflow:
    def __init__(self, cfg: ExperimentConfig, plan: Plan):
        if len(cfg.teachers) > 1:
            raise ConfigError("several `teachers` are for task distillation; general distillation reads one "
                              "pre-trained teacher (`teacher:`)")
        if cfg.teacher.finetune is not None:
            raise ConfigError("general distillation uses the PRE-TRAINED teacher: set `teacher.finetune: null`")
        if not plan.student.masked_lm:
            raise ConfigError(f"general distillation trains a student's masked-LM form; `student.kind: "
                              f"{plan.student.name}` has none")
        check_sources(cfg.corpus)
        self.cfg, self.plan, self.task = cfg, plan, None
        self.datasets: dict = {}

    def build(self, accelerator, say, writer=None):
        cfg, tokenizer = self.cfg, self.plan.tokenizer
        need_head = any(t.info.uses_teacher and t.info.trains_logits for o in self.plan.objectives for t in o.terms)
        teacher = load_bert_mlm(ensure_adapted(cfg.teacher.checkpoint, say), need_head)
        teacher.eval().requires_grad_(False)
        student = self.plan.student.build(cfg.student, teacher, cfg.seed, masked_lm=True)
        folder = pack_corpus(cfg.corpus, tokenizer, say)
        pad = tokenizer.pad_token_id or 0
        self.datasets = {"corpus": CorpusDataset(folder, "train", cfg.corpus.heldout, pad),
                         "dev": CorpusDataset(folder, "heldout", cfg.corpus.heldout, pad)}
        say(f"corpus: {len(self.datasets['corpus'])} training and {len(self.datasets['dev'])} held-out sequences")
        return teacher.to(accelerator.device), student, self.datasets

    def before(self, session: Session, module, stages: list[StageInputs], out: Path) -> dict:
        return heldout_losses(session, module, stages, out / "heldout_before.json")

    def finish(self, session: Session, module, stages: list[StageInputs], history: list[dict], before: dict,
               seconds, out: Path) -> RunMetrics:
        after = heldout_losses(session, module, stages)
        corpus = self.datasets["corpus"]
        return summarise(
            self.cfg, next(iter(stages[0].teachers.values())), module.student, self.cfg.corpus.max_length, history,
            seconds(),
            main_metric=None, teacher_facts=TeacherFacts(source=self.cfg.teacher.checkpoint),
            student_facts=StudentFacts(),
            general=GeneralFacts(before, after, {"train_sequences": len(corpus),
                                                 "heldout_sequences": len(self.datasets["dev"]), **corpus.meta}))


def heldout_losses(session: Session, module, stages: list[StageInputs],
                   cache: Path | None = None) -> dict[str, dict[str, float]]:
    """Each stage's distillation terms on the held-out corpus (`cache`: computed once per run folder)."""
    if cache is not None and cache.exists():
        return read_json(cache)
    acc, cfg = session.accelerator, session.train
    out = {}
    for stage in stages:
        set_attentions(module, stage.teachers, stage.objective)
        loader, _ = make_loader(stage.dev, cfg.eval_batch_size, stage.seed, False, cfg, stage.mlm)
        out[stage.config.name] = evaluate(acc, module.to(acc.device), acc.prepare(loader), None, stage.teachers,
                                          stage.objective, stage.ctx)
    if cache is not None and acc.is_main_process:
        write_json(cache, out)
    return out
