"""Deviations from the papers' reference implementations that used to change results silently (issue 12).
Each test failed on the code before its fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.config import ConfigError, StageConfig, from_dict

from .helpers import raises_with


def _stage(**kw) -> StageConfig:
    return StageConfig(name="s", losses={"hard_ce": 1.0}, **kw)


# ---------------------------------------------------------------- 1. Adadelta and weight decay


def test_adadelta_stage_leaves_parameters_without_gradient_alone():
    """Tang et al.: Adadelta, lr 1.0, no decay. A coupled L2 term under Adadelta's per-parameter normalisation
    moves a parameter with zero data gradient by full-size steps (0.3 -> ~0.12 in 100 steps)."""
    from distill.trainer import make_optimizer

    module = nn.Linear(4, 3)
    with torch.no_grad():
        module.weight.fill_(0.3)
    opt = make_optimizer(module, _stage(optimizer="adadelta", lr=1.0))
    for _ in range(100):
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    assert torch.equal(module.weight, torch.full((3, 4), 0.3))


def test_adadelta_rho_defaults_to_tang_and_is_configurable():
    from distill.trainer import make_optimizer

    module = nn.Linear(2, 2)
    assert make_optimizer(module, _stage(optimizer="adadelta", lr=1.0)).defaults["rho"] == 0.95
    assert make_optimizer(module, _stage(optimizer="adadelta", lr=1.0, rho=0.9)).defaults["rho"] == 0.9


def test_adamw_keeps_decoupled_decay_on_matrices_only():
    from distill.trainer import make_optimizer

    module = nn.Linear(2, 2)
    groups = make_optimizer(module, _stage()).param_groups
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(module.weight)] == 0.01 and decay[id(module.bias)] == 0.0


def test_weight_decay_under_adadelta_is_refused_with_the_key():
    raw = {"name": "x", "teacher": {}, "student": {},
           "stages": [{"name": "t", "losses": {"hard_ce": 1.0}, "optimizer": "adadelta", "weight_decay": 0.01}]}
    with raises_with(ConfigError, "`stages.0.weight_decay`", "0.01", "adadelta", "adamw"):
        from_dict(raw)
    raw["stages"][0]["weight_decay"] = 0.0
    assert from_dict(raw).stages[0].weight_decay == 0.0


# ---------------------------------------------------------------- 2. a teacher's label names


GLUE_MNLI = ["contradiction", "entailment", "neutral"]
HF_MNLI = ["entailment", "neutral", "contradiction"]


def _save_head(folder, names: list[str], rows: list[int] | None = None):
    """A tiny BERT classifier saved with `names` as its id2label; `rows` permutes a fixed head (same seed)."""
    from transformers import BertForSequenceClassification

    from tests.helpers import tiny_bert_config

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=30522, num_labels=3))
    if rows is not None:
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[rows].clone())
            model.classifier.bias.copy_(model.classifier.bias[rows].clone())
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def _logits(model) -> torch.Tensor:
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 2088, 102, 0, 0]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def test_a_head_saved_in_another_label_order_is_read_by_name(tmp_path):
    from distill.teachers.load import load_classifier

    glue = _save_head(tmp_path / "glue", GLUE_MNLI)
    # The same classifier saved in Hugging Face's order: row r scores HF_MNLI[r].
    hf = _save_head(tmp_path / "hf", HF_MNLI, rows=[GLUE_MNLI.index(n) for n in HF_MNLI])
    a = load_classifier(glue, GLUE_MNLI, require_head=True)
    b = load_classifier(hf, GLUE_MNLI, require_head=True)
    assert torch.allclose(_logits(a), _logits(b), atol=1e-6)
    assert [b.config.id2label[i] for i in range(3)] == GLUE_MNLI


def test_generic_label_names_need_an_explicit_order(tmp_path):
    from distill.teachers.load import CheckpointError, load_classifier

    glue = _save_head(tmp_path / "glue", GLUE_MNLI)
    generic = _save_head(tmp_path / "generic", ["LABEL_0", "LABEL_1", "LABEL_2"],
                         rows=[GLUE_MNLI.index(n) for n in HF_MNLI])
    with raises_with(CheckpointError, generic, "generically", "['LABEL_0', 'LABEL_1', 'LABEL_2']", str(GLUE_MNLI),
                     "`teacher.label_order`"):
        load_classifier(generic, GLUE_MNLI, require_head=True)
    ordered = load_classifier(generic, GLUE_MNLI, require_head=True, label_order=HF_MNLI)
    assert torch.allclose(_logits(ordered), _logits(load_classifier(glue, GLUE_MNLI, require_head=True)), atol=1e-6)
    with raises_with(CheckpointError, "teacher.label_order", "['a', 'b', 'c']", str(GLUE_MNLI), generic):
        load_classifier(generic, GLUE_MNLI, require_head=True, label_order=["a", "b", "c"])


# ---------------------------------------------------------------- 3. the teacher gate


def _task(labels=("a", "b", "c"), metrics=("accuracy",)):
    from distill.tasks import Example, TaskData

    train = [Example(str(i), "t", None, lab) for i, lab in enumerate([0, 0, 0, 1, 2])]  # majority: class 0
    dev = [Example(f"d{i}", "t", None, lab) for i, lab in enumerate([0, 1, 1, 2, 0, 1])]
    return TaskData("x", list(labels), metrics, {"train": train, "dev": dev}), train, dev


def test_majority_baseline_by_hand():
    from distill.teachers.gate import majority_baseline

    task, train, dev = _task()
    assert majority_baseline(task, train, dev) == pytest.approx(2 / 6)  # dev golds equal to 0: 2 of 6
    task, train, dev = _task(metrics=("macro_f1",))
    # Predicting 0 everywhere: F1 of class 0 = 2*2 / (2*2 + 4 + 0) = 0.5, classes 1 and 2 score 0.
    assert majority_baseline(task, train, dev) == pytest.approx(0.5 / 3)


def test_gate_refuses_a_teacher_at_the_baseline_and_passes_a_good_one():
    import numpy as np

    from distill.config import TeacherGateConfig
    from distill.teachers.gate import TeacherGateError, check_teacher

    task, train, dev = _task()
    gold = np.array([ex.label for ex in dev])
    good = np.eye(3)[gold]
    good[0] = [0, 1, 0]  # 5 of 6 right, classes mixed
    facts = check_teacher(task, good, train, dev, TeacherGateConfig(), "t")
    assert facts["dev_accuracy"] == pytest.approx(5 / 6) and facts["majority_baseline"] == pytest.approx(1 / 3)
    weak = np.eye(3)[[0, 1, 0, 0, 2, 0]]  # accuracy 2/6 = the baseline; classes mixed (share 4/6)
    with raises_with(TeacherGateError, "'t'", "accuracy 0.3333", "majority-class baseline 0.3333",
                     "`teacher.gate.margin`"):
        check_teacher(task, weak, train, dev, TeacherGateConfig(), "t")
    collapsed = np.eye(3)[[1] * 6]  # accuracy 3/6 beats the baseline, but one class everywhere
    with raises_with(TeacherGateError, "'t'", "one class", "100.0%", "`teacher.gate.max_class_share`"):
        check_teacher(task, collapsed, train, dev, TeacherGateConfig(), "t")
    check_teacher(task, collapsed, train, dev, TeacherGateConfig(max_class_share=1.01), "t")


def test_a_run_with_an_untrained_teacher_stops_before_distilling(tmp_path, capsys):
    """The smoke config's teacher (a random BERT after one epoch on 256 tweets) predicts one class."""
    from distill.lab.cli import main
    from tests.helpers import SMOKE

    out = tmp_path / "run"
    code = main(["run", str(SMOKE), "--out", str(out), "--set", "teacher.gate={margin: 0.01}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "one class for" in err or "majority-class baseline" in err
    assert not (out / "student").exists()


# ---------------------------------------------------------------- 5. DistilBERT's soft targets at every token


def _lm_batch():
    ids = torch.tensor([[101, 7, 8, 9, 10, 102], [101, 11, 12, 102, 0, 0]])
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 1] = 8, 11
    masked = ids.clone()
    masked[0, 2] = masked[1, 1] = 103
    return {"input_ids": masked, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids),
            "mlm_labels": labels}


def _tiny_mlm(seed: int):
    from transformers import BertForMaskedLM

    from tests.helpers import tiny_bert_config

    torch.manual_seed(seed)
    return BertForMaskedLM(tiny_bert_config(vocab_size=120)).eval()


def test_soft_targets_cover_every_non_padding_token_by_default():
    from distill.losses import LossContext
    from distill.needs import Needs
    from distill.objective import Objective
    from distill.trainer import DistillModule, teacher_records

    batch, ctx = _lm_batch(), LossContext([])
    objective = Objective({"kl_div": {"weight": 5.0, "temperature": 2.0}, "mlm": 2.0})
    teacher = teacher_records({"teacher": _tiny_mlm(1)}, batch, objective)["teacher"]
    module = DistillModule(_tiny_mlm(2))
    student = module(batch, Needs(all_tokens=objective.needs.all_tokens))
    n_tokens = int(batch["attention_mask"].sum())  # 6 + 4, [CLS] and [SEP] included, as the reference
    assert student.logits.shape[0] == teacher.logits.shape[0] == n_tokens
    _, parts = module(batch, objective.needs, objective, teacher, ctx)
    # Hand formula: mean over the 10 token rows of KL(p_T || p_S) at T = 2, times T^2.
    p_t = torch.softmax(teacher.logits / 2, -1)
    per_row = (p_t * (p_t.log() - torch.log_softmax(student.logits / 2, -1))).sum(-1)
    assert parts["kl_div"].item() == pytest.approx(per_row.mean().item() * 4, rel=1e-5)
    # The MLM term reads only the two masked rows, whatever rows the record carries.
    rows = student.token_rows.nonzero().tolist()
    at = [rows.index([0, 2]), rows.index([1, 1])]
    expected = torch.nn.functional.cross_entropy(student.logits[at], torch.tensor([8, 11]))
    assert parts["mlm"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_targets_restricted_to_masked_positions_on_request():
    from distill.losses import LossContext
    from distill.objective import Objective
    from distill.trainer import DistillModule, teacher_records

    batch, ctx = _lm_batch(), LossContext([])
    objective = Objective({"kl_div": {"temperature": 2.0, "positions": "masked"}})
    assert not objective.needs.all_tokens
    teacher = teacher_records({"teacher": _tiny_mlm(1)}, batch, objective)["teacher"]
    assert teacher.logits.shape[0] == 2
    everywhere = Objective({"kl_div": {"temperature": 2.0, "positions": "masked"}, "soft_cross_entropy": 0.0})
    # Every row computed, the KL term selects two.
    t_all = teacher_records({"teacher": _tiny_mlm(1)}, batch, everywhere)["teacher"]
    module = DistillModule(_tiny_mlm(2))
    a = module(batch, objective.needs, objective, teacher, ctx)[1]["kl_div"]
    b = module(batch, everywhere.needs, everywhere, t_all, ctx)[1]["kl_div"]
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


# ---------------------------------------------------------------- 7. labels of augmented copies


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory):
    """A cache of this module's own, so that its augmented set is never another test's "first build"."""
    import os

    old = os.environ["DISTILLERY_CACHE"]
    os.environ["DISTILLERY_CACHE"] = str(tmp_path_factory.mktemp("fidelity-cache"))
    yield
    os.environ["DISTILLERY_CACHE"] = old


def _augmented_workflow(*over):
    from accelerate import Accelerator

    from distill.config import load_config
    from distill.lab.preflight import plan_run
    from distill.lab.task import TaskWorkflow
    from tests.helpers import SMOKE, quiet

    cfg = load_config(SMOKE, ["stages.0.data=augmented", "augment.method=tang", "augment.copies=2",
                              "augment.chunk_size=128", *over])
    workflow = TaskWorkflow(cfg, plan_run(cfg))
    _, _, datasets = workflow.build(Accelerator(cpu=True), quiet)
    return workflow, datasets


def test_augmented_copies_take_the_teachers_label_and_originals_keep_theirs(own_cache):
    workflow, datasets = _augmented_workflow()
    aug = datasets["augmented"]
    train_ids = {ex.id for ex in workflow.task.splits["train"]}
    copies = torch.tensor([ex.id not in train_ids for ex in aug.source()])
    gold = torch.tensor([ex.label for ex in aug.source()])
    teacher = aug.teacher_logits["teacher"].argmax(-1)
    assert copies.any() and (~copies).any()
    assert torch.equal(aug.labels[copies], teacher[copies])
    assert torch.equal(aug.labels[~copies], gold[~copies])
    assert workflow.teacher_info["augmented_labels"]["changed"] == int((teacher != gold)[copies].sum())


def test_augmented_copies_keep_the_source_label_on_request(own_cache):
    workflow, datasets = _augmented_workflow("augment.labels=source")
    aug = datasets["augmented"]
    assert torch.equal(aug.labels, torch.tensor([ex.label for ex in aug.source()]))
    assert "augmented_labels" not in workflow.teacher_info


# ---------------------------------------------------------------- 8. the BiLSTM: dropout, vocabulary


def test_bilstm_drops_out_after_the_fc_relu_as_the_reference():
    from distill.students.bilstm import BiLSTMClassifier, BiLSTMConfig

    torch.manual_seed(0)
    m = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embedding_dim=4, hidden=3, fc=64, num_labels=2))
    ids, lengths = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    m.eval()
    with torch.no_grad():
        features = m.encode(ids, lengths)
        fc = torch.relu(m.head[0](features))
        assert torch.allclose(m(ids, lengths), m.head[-1](fc))  # eval: no dropout
        m.train()
        m.head[2].p = 0.5
        torch.manual_seed(1)
        got = m(ids, lengths)
        torch.manual_seed(1)
        kept = torch.nn.functional.dropout(fc, 0.5, training=True)  # the same draw, applied after the ReLU
        assert torch.allclose(got, m.head[-1](kept)) and not torch.allclose(got, m.head[-1](fc))
    assert BiLSTMConfig(1, 1).dropout == 0.1


def test_bilstm_vocabulary_takes_dev_and_test_words_that_have_vectors():
    from distill.students.bilstm import WordVocab

    known = {"good", "film", "great", "movie"}
    train, other = ["good movie", "odd odd"], ["great film", "zzqx unseen"]
    vocab = WordVocab.build(train, known, min_count=2, other_texts=other)
    assert vocab.itos[3:] == ["odd", "good", "movie", "great", "film"]  # no labels read; OOV dev words stay out
    assert WordVocab.build(train, known, min_count=2).itos[3:] == ["odd", "good", "movie"]


# ---------------------------------------------------------------- 8. schedules


def _inputs(losses: dict, task: bool = True, **stage):
    from distill.losses import LossContext
    from distill.objective import Objective
    from distill.stage import StageInputs
    from distill.tasks import TaskData

    config = StageConfig(name="s", losses=losses, **stage)
    data = TaskData("x", ["a", "b"], ("accuracy",)) if task else None
    return StageInputs(config, Objective(losses), LossContext([]), None, None, data, None, 0)


def test_tinybert_intermediate_task_stage_has_no_schedule_unless_asked():
    intermediate = {"embedding_mse": 1, "attention_mse": 1, "hidden_mse": 1}
    assert _inputs(intermediate).schedule == "constant"  # TinyBERT task_distill.py: schedule 'none'
    assert _inputs({"soft_cross_entropy": 1}).schedule == "linear"
    assert _inputs(intermediate, task=False).schedule == "linear"  # general distillation keeps its warmup/decay
    assert _inputs(intermediate, schedule="linear").schedule == "linear"


def test_schedule_length_counts_optimizer_steps_as_accelerate_takes_them():
    """10 batches with accumulation 3: accelerate steps after batches 3, 6, 9 and at the end of the data (10)."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from distill.trainer import optimizer_steps

    acc = Accelerator(cpu=True, gradient_accumulation_steps=3)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model, opt, loader = acc.prepare(model, opt, DataLoader(torch.ones(10, 1), batch_size=1))
    epochs, lrs = 2, []
    sched = get_linear_schedule_with_warmup(opt, 0, optimizer_steps(len(loader), 3) * epochs)
    for _ in range(epochs):
        for x in loader:
            with acc.accumulate(model):
                model(x).sum().backward()
                opt.step()
                opt.zero_grad()
                if acc.sync_gradients:
                    lrs.append(sched.get_last_lr()[0])
                    sched.step()
    assert len(lrs) == optimizer_steps(10, 3) * epochs == 8
    assert min(lrs) > 0  # floor(10 / 3) = 3 steps per epoch would give the last two steps lr 0


# ---------------------------------------------------------------- 8. projections carried into task distillation


def _projections(mode="separate", s=4, t=6):
    from distill.lab.run import make_projections

    torch.manual_seed(len(mode) + s)
    return make_projections(mode, s, t, True)


def test_projections_saved_with_a_student_start_the_next_distillation(tmp_path):
    from distill.students.projections import carry_projections, save_projections

    learned = _projections()
    save_projections(tmp_path, learned)
    assert carry_projections(str(tmp_path), _projections(s=5)) is None  # another width: nothing applies
    target = nn.ModuleDict({k: nn.Linear(4, 6) for k in ("hidden", "embedding")})
    assert carry_projections(str(tmp_path), target) == str(tmp_path / "projections.safetensors")
    for name in ("hidden", "embedding"):
        assert torch.equal(target[name].weight, learned[name].weight)


def test_a_general_tinybert_fit_dense_initialises_both_projections(tmp_path):
    from distill.io import save_tensors
    from distill.students.projections import carry_projections

    fit = nn.Linear(4, 6)
    save_tensors(tmp_path / "model.safetensors", {"fit_dense.weight": fit.weight, "fit_dense.bias": fit.bias,
                                                  "bert.embeddings.word_embeddings.weight": torch.zeros(3, 4)})
    target = _projections()
    assert carry_projections(str(tmp_path), target) == str(tmp_path / "model.safetensors")
    for name in ("hidden", "embedding"):
        assert torch.equal(target[name].weight, fit.weight) and torch.equal(target[name].bias, fit.bias)
    shared = _projections("shared")
    carry_projections(str(tmp_path), shared)
    assert torch.equal(shared["shared"].weight, fit.weight)


# ---------------------------------------------------------------- 8. teacher precision


def test_teacher_targets_in_full_precision_on_request():
    from distill.config import TrainConfig
    from distill.trainer import teacher_precision

    class BF16Run:  # an accelerator's autocast under bf16 (a real Accelerator's state is process-wide)
        def autocast(self):
            return torch.autocast("cpu", dtype=torch.bfloat16)

    acc = BF16Run()
    torch.manual_seed(0)
    teacher, x = nn.Linear(64, 8), torch.randn(4, 64)
    exact = teacher(x)
    with teacher_precision(acc, TrainConfig(teacher_precision="fp32")):
        full = teacher(x)
    with teacher_precision(acc, TrainConfig()):
        auto = teacher(x)
    assert full.dtype == torch.float32 and torch.equal(full, exact)
    assert auto.dtype == torch.bfloat16


# ---------------------------------------------------------------- 6. GloVe neighbours from the frequent words


def test_tinybert_neighbours_come_from_the_100k_most_frequent_words_by_default(tmp_path):
    from distill.augment.vectors import load_vectors
    from distill.config import TinyBertAugmentConfig

    assert TinyBertAugmentConfig().vectors_limit == 100_000  # the reference reads GloVe's first 100,000 lines
    glove = tmp_path / "g.txt"
    glove.write_text("".join(f"w{i} {i} 1\n" for i in range(5)))
    assert list(load_vectors(str(glove), 3).key_to_index) == ["w0", "w1", "w2"]


# ---------------------------------------------------------------- 8. DistilBERT's frequency-smoothed masking


def test_smoothed_token_weights_by_hand():
    import numpy as np

    from distill.mlm_masking import smoothed_token_probs

    probs = smoothed_token_probs(np.array([0, 1, 100, 5, 7]), 0.7, special_ids=(0, 4))
    assert probs.tolist() == pytest.approx([0.0, 1.0, 100 ** -0.7, 5 ** -0.7, 0.0])


def test_smoothed_choice_masks_ceil_15_percent_and_prefers_rare_tokens():
    import math

    from distill.mlm_masking import choose_smoothed, smoothed_token_probs

    counts = torch.zeros(10, dtype=torch.long)
    counts[5], counts[6] = 1, 100  # token 5 is rare, token 6 frequent
    probs = smoothed_token_probs(counts.numpy(), 0.7, special_ids=(0, 1, 2))  # 0 pad, 1 [CLS], 2 [SEP]
    batch = torch.tensor([[1, 5, 6, 6, 6, 2, 0, 0], [1, 6, 6, 2, 0, 0, 0, 0]] * 20)
    chosen = choose_smoothed(batch, 0, probs, torch.Generator().manual_seed(0))
    assert int(chosen.sum()) == math.ceil(0.15 * int((batch != 0).sum()))  # 0.15 * 200 tokens = 30
    assert not chosen[(batch == 0) | (batch == 1) | (batch == 2)].any()
    # One position per draw (6 tokens: ceil(0.9) = 1): P(rare) = 1 / (1 + 3 * 100^-0.7) = 0.893.
    row = torch.tensor([[1, 5, 6, 6, 6, 2]])
    hits = sum(bool(choose_smoothed(row, 0, probs, torch.Generator().manual_seed(s))[0, 1]) for s in range(4000))
    assert hits / 4000 == pytest.approx(1 / (1 + 3 * 100 ** -0.7), abs=0.02)


def test_distilbert_stages_mask_with_smoothing_by_default():
    from distill.objective import Objective
    from distill.stage import stage_inputs
    from distill.teachers.load import load_tokenizer

    class Data:
        def token_counts(self):
            import numpy as np

            return np.bincount([2023, 2023, 2003], minlength=30522)

    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    config = StageConfig(name="d", losses={"mlm": 1.0}, data="corpus", mlm_masking=True)
    assert config.mlm_smoothing == 0.7
    inputs = stage_inputs(config, Objective(config.losses), {"corpus": Data(), "dev": Data()}, None, None, 0,
                          (1, 1), tok)
    probs = inputs.mlm.token_probs
    assert probs[2023] == pytest.approx(2 ** -0.7) and probs[2003] == pytest.approx(1.0)
    assert probs[tok.cls_token_id] == 0 and probs[tok.pad_token_id] == 0
    config.mlm_smoothing = None
    assert stage_inputs(config, Objective(config.losses), {"corpus": Data(), "dev": Data()}, None, None, 0,
                        (1, 1), tok).mlm.token_probs is None


# ---------------------------------------------------------------- recipes: MNLI's two dev sets in one run


def test_mnli_run_is_judged_on_matched_and_mismatched_dev(tmp_path):
    from accelerate import Accelerator
    from transformers import BertForSequenceClassification

    from distill.config import TrainConfig
    from distill.encoded import encode_examples
    from distill.loaders import load_glue
    from distill.teachers.load import load_tokenizer
    from distill.trainer import evaluate_splits
    from tests.helpers import tiny_bert_config

    header = ["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2",
              "label1", "gold_label"]
    for name, rows in (("train.tsv", [("a", "b", "contradiction"), ("c", "d", "entailment")]),
                       ("dev_matched.tsv", [("x", "y", "neutral")]),
                       ("dev_mismatched.tsv", [("p", "q", "entailment"), ("r", "s", "neutral")])):
        lines = [header] + [["0", "1", "2", "g", "", "", "", "", p, h, y, y] for p, h, y in rows]
        (tmp_path / name).write_text("\n".join("\t".join(r) for r in lines) + "\n")
    task = load_glue("mnli", tmp_path)
    assert [e.label for e in task.splits["dev_mismatched"]] == [1, 2] and len(task.splits["dev"]) == 1
    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    datasets = {s: encode_examples(exs, tok, 16) for s, exs in task.splits.items()}
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=len(tok), num_labels=3))
    results = evaluate_splits(Accelerator(cpu=True), model, task, datasets, TrainConfig())
    assert set(results) == {"dev", "dev_mismatched"} and "accuracy" in results["dev_mismatched"]
