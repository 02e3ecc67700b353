"""General distillation (pre-training-stage distillation) on an unlabelled corpus.

The teacher is a PRE-TRAINED BERT (`teacher.finetune: null`), loaded with its masked-LM head when one of the
losses reads teacher logits (DistilBERT's soft targets). The student is a masked LM of the configured kind
(TinyBERT: a BERT of the student's shape; DistilBERT: the DistilBERT architecture), so its folder is both
a masked LM and a valid `student.init` for a task config. Held-out distillation losses are measured before
and after training."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig, BertForMaskedLM

from distill.config import ConfigError, ExperimentConfig
from distill.corpus import CorpusDataset, pack_corpus
from distill.io import read_json, write_json
from distill.model_stats import count_parameters, encoder_flops_per_token
from distill.objective import Objective
from distill.trainer import evaluate, make_loader
from students import describe
from students.tinybert import copy_teacher_layers, student_shape
from teachers.load import CheckpointError, load_bert_config, resolve


def load_pretrained_teacher(source: str, need_head: bool) -> BertForMaskedLM:
    config = load_bert_config(source)
    model, info = BertForMaskedLM.from_pretrained(resolve(source), config=config, attn_implementation="sdpa",
                                                  output_loading_info=True)
    if need_head and any(k.startswith("cls.") for k in info["missing_keys"]):
        raise CheckpointError(f"{source!r} has no masked-LM head, and the losses read teacher MLM logits; use a "
                              "BertForMaskedLM checkpoint, or `adapted:<encoder>` to give it one")
    return model


def build_general_student(cfg: ExperimentConfig, teacher: BertForMaskedLM, seed: int):
    import torch

    s = cfg.student
    if s.kind == "distilbert":
        from students.distilbert import build_distilbert

        return build_distilbert(s, teacher, seed, masked_lm=True)
    if s.kind != "tinybert":
        raise ConfigError(f"general distillation trains transformer students; `student.kind: {s.kind}` has none")
    if s.init not in ("scratch", "teacher"):
        return BertForMaskedLM.from_pretrained(resolve(s.init), attn_implementation="sdpa")
    tc = teacher.config
    shape = student_shape(s, tc)
    config = BertConfig(vocab_size=tc.vocab_size, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                        num_attention_heads=shape["heads"], intermediate_size=shape["ffn"],
                        max_position_embeddings=tc.max_position_embeddings, type_vocab_size=tc.type_vocab_size,
                        pad_token_id=tc.pad_token_id, hidden_act=tc.hidden_act, layer_norm_eps=tc.layer_norm_eps)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    student = BertForMaskedLM(config)
    if s.init == "teacher":
        from distill.layer_map import layer_map

        copy_teacher_layers(student, teacher, s.init_layers or [t for _, t in layer_map(
            "uniform", shape["layers"], tc.num_hidden_layers)])
    return student


def setup_general(cfg: ExperimentConfig, tokenizer, objectives: list[Objective], accelerator, say):
    if cfg.teacher.finetune is not None:
        raise ConfigError("general distillation uses the PRE-TRAINED teacher: set `teacher.finetune: null`")
    need_head = any(t.info.uses_teacher and t.info.trains_logits for o in objectives for t in o.terms)
    teacher = load_pretrained_teacher(cfg.teacher.checkpoint, need_head)
    teacher.eval().requires_grad_(False)
    student = build_general_student(cfg, teacher, cfg.seed)
    folder = pack_corpus(cfg.corpus, tokenizer, say)
    pad = tokenizer.pad_token_id or 0
    datasets = {"corpus": CorpusDataset(folder, "train", cfg.corpus.heldout, pad),
                "dev": CorpusDataset(folder, "heldout", cfg.corpus.heldout, pad)}
    say(f"corpus: {len(datasets['corpus'])} training and {len(datasets['dev'])} held-out sequences")
    info = {"source": cfg.teacher.checkpoint, "finetuned_here": False, "key": None, "corpus": str(folder)}
    return teacher.to(accelerator.device), student, datasets, info


def heldout_losses(accelerator, cfg: ExperimentConfig, module, teacher, objectives, datasets, s_layers, t_layers,
                   cache: Path | None = None) -> dict[str, dict[str, float]]:
    """Each stage's distillation terms on the held-out corpus (`cache`: computed once per run folder)."""
    from distill.adaptor import set_attention
    from distill.run import mlm_masking, stage_context
    from teachers.load import load_tokenizer

    if cache is not None and cache.exists():
        return read_json(cache)
    tokenizer = load_tokenizer(cfg.teacher.tokenizer or cfg.teacher.checkpoint)
    out = {}
    for stage, objective in zip(cfg.stages, objectives, strict=True):
        for m in (module.student, teacher):
            set_attention(m, objective.needs_attention)
        loader, _ = make_loader(datasets["dev"], cfg.train.eval_batch_size, cfg.seed, False, cfg.train,
                                mlm_masking(stage, tokenizer, cfg.seed))
        ctx = stage_context(stage, objective, s_layers, t_layers, None)
        out[stage.name] = evaluate(accelerator, module.to(accelerator.device), accelerator.prepare(loader), None,
                                   teacher, objective, ctx)
    if cache is not None and accelerator.is_main_process:
        write_json(cache, out)
    return out


def summarise_general(cfg, teacher, student, before, after, history, datasets, seconds) -> dict:
    shape = describe(student)
    length = cfg.corpus.max_length
    flops_t = encoder_flops_per_token(teacher.config, length)
    flops_s = encoder_flops_per_token(student.config, length)
    return {
        "name": cfg.name, "general": True, "main_metric": None,
        "teacher": {"source": cfg.teacher.checkpoint, "parameters": count_parameters(teacher),
                    "layers": teacher.config.num_hidden_layers, "hidden": teacher.config.hidden_size,
                    "encoder_flops_per_token": flops_t},
        "student": {"parameters": count_parameters(student), **shape, "encoder_flops_per_token": flops_s},
        "ratios": {"parameters": count_parameters(student) / count_parameters(teacher),
                   "encoder_compute": flops_s / flops_t, "dev_score": None},
        "heldout_before": before, "heldout_after": after,
        "corpus": {"train_sequences": len(datasets["corpus"]), "heldout_sequences": len(datasets["dev"]),
                   **datasets["corpus"].meta},
        "history": history, "wall_seconds": round(seconds, 1),
    }


def general_summary_text(m: dict, out: Path) -> str:
    lines = ["", f"== {m['name']} (general distillation), {m['wall_seconds']:.0f} s ==",
             f"teacher {m['teacher']['layers']}L-{m['teacher']['hidden']} {m['teacher']['parameters'] / 1e6:.2f}M, "
             f"student {m['student']['layers']}L-{m['student']['hidden']} {m['student']['parameters'] / 1e6:.2f}M "
             f"({100 * m['ratios']['encoder_compute']:.1f}% of the teacher's encoder compute per token)",
             f"corpus: {m['corpus']['train_sequences']} training, {m['corpus']['heldout_sequences']} held-out "
             "sequences", "held-out distillation losses, before -> after:"]
    for stage, terms in m["heldout_after"].items():
        for k, v in terms.items():
            lines.append(f"  {stage} {k[5:] if k.startswith('loss/') else k}: {m['heldout_before'][stage][k]:.4f} -> "
                         f"{v:.4f}")
    lines += [f"general student (a `student.init` for task configs): {out / 'student'}",
              f"compare runs: tensorboard --logdir {out.parent}"]
    return "\n".join(lines)
