"""The teachers wing (teachers/): names resolve without training, fine-tuning keeps its best epoch (cached), the
logit cache holds the teacher's logits in order, once; a missing checkpoint or mismatched tokenizer is refused."""

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

import distill.teachers.finetune
import distill.teachers.logits
import distill.teachers.logits as teacher_logits
import distill.teachers.mlm_adapt
import distill.trainer
from distill.config import TrainConfig, load_config
from distill.encoded import encode_examples
from distill.loaders import load_task
from distill.teachers.finetune import prepare_teacher, teacher_key
from distill.teachers.load import CheckpointError, load_bert_config, load_tokenizer, random_bert, resolve

from .helpers import SMOKE, assert_facts, quiet, raises_with, refused, smoke_with, tiny_bert_config

ADAPTED = "adapted:packaged:all-minilm-l6-v2"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_looking_up_an_adapted_name_never_trains(fresh_cache, monkeypatch):
    monkeypatch.setattr(distill.teachers.mlm_adapt, "adapt_encoder", lambda *a, **k: pytest.fail("a lookup trained"))
    with raises_with(CheckpointError, repr(ADAPTED), "not been built", str(fresh_cache / "mlm"),
                     "distill adapt-mlm --encoder packaged:all-minilm-l6-v2"):
        resolve(ADAPTED)
    # Its tokenizer and shape are its encoder's, so configs check before it exists.
    assert load_bert_config(ADAPTED).num_hidden_layers == 6
    assert len(load_tokenizer(ADAPTED)) == 30522
    assert not (fresh_cache / "mlm").exists()


def test_ensure_adapted_is_the_explicit_step_and_builds_once(fresh_cache, monkeypatch):
    calls = []

    def fake_adapt(encoder, texts, out, log=print, **settings):
        calls.append((encoder, settings))
        out.mkdir(parents=True)
        (out / "adaptation.json").write_text("{}")
        return out

    monkeypatch.setattr(distill.teachers.mlm_adapt, "adapt_encoder", fake_adapt)
    said = []
    folder = distill.teachers.mlm_adapt.ensure_adapted(ADAPTED, said.append)
    assert distill.teachers.mlm_adapt.ensure_adapted(ADAPTED, said.append) == folder == resolve(ADAPTED)
    assert len(calls) == 1 and calls[0][0] == "packaged:all-minilm-l6-v2" and calls[0][1]["steps"] == 500
    # The adaptation announces itself with its measured cost (tests/test_first_run_notice.py); the line says why.
    assert calls[0][1]["why"] == f", once; cached at {folder}" and not said
    assert distill.teachers.mlm_adapt.ensure_adapted("bert-base-uncased") == "bert-base-uncased"


@pytest.fixture(scope="module")
def smoke_task():
    cfg = load_config(SMOKE, ["teacher.finetune.epochs=3"])
    task = load_task(cfg.task)
    tok = load_tokenizer(cfg.teacher.tokenizer)
    datasets = {k: encode_examples(v, tok, cfg.task.max_length) for k, v in task.splits.items()}
    return cfg, task, tok, datasets


def test_fine_tuning_keeps_the_best_epoch_and_caches_it(smoke_task, fresh_cache, monkeypatch):
    cfg, task, tok, datasets = smoke_task
    script, snapshots = [0.2, 0.9, 0.5], []  # dev scores the epochs "get": the second is the best
    real = distill.trainer.evaluate

    def scripted(acc, model, loader, task, *rest, **kw):
        result = real(acc, model, loader, task, *rest, **kw)
        if rest:  # an epoch-end evaluation inside train_stage (evaluate_splits passes no objective)
            snapshots.append({k: v.clone() for k, v in acc.unwrap_model(model).student.state_dict().items()})
            result[task.main_metric] = script[len(snapshots) - 1]
        return result

    monkeypatch.setattr(distill.trainer, "evaluate", scripted)
    teacher, info = prepare_teacher(cfg, task, tok, datasets, Accelerator(cpu=True), quiet)
    assert [h[task.main_metric] for h in info["history"]] == script
    assert not all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])  # the epochs differ
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], msg=k)  # epoch 2's weights, not the last epoch's
    cached = load_file(fresh_cache / "teachers" / teacher_key(cfg, task) / "model.safetensors")
    for k, v in cached.items():
        torch.testing.assert_close(v, snapshots[1][k], msg=k)
    assert not list((fresh_cache / "teachers").glob("*.work"))  # the resumable work folder is gone
    # A second request reuses the cache: no training, the same weights and record.
    monkeypatch.setattr(distill.teachers.finetune, "train_stage", lambda *a, **k: pytest.fail("trained again"))
    again, info2 = prepare_teacher(cfg, task, tok, datasets, Accelerator(cpu=True), quiet)
    assert info2 == info
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], msg=k)


def test_logit_cache_holds_the_teachers_logits_in_order_and_is_computed_once(smoke_task, fresh_cache,
                                                                             monkeypatch):
    cfg, task, tok, datasets = smoke_task
    teacher = random_bert(cfg.teacher.random, tok, task.labels, seed=0).eval()
    ds = datasets["dev"]
    acc, train = Accelerator(cpu=True), TrainConfig(cpu=True, eval_batch_size=16)
    logits = distill.teachers.logits.cached_logits(teacher, "t1", ds, acc, train, quiet)
    assert logits.shape == (len(ds), 3)
    with torch.no_grad():  # one example at a time, no padding: the reference
        for i in (0, 7, len(ds) - 1):
            ids = torch.tensor([ds.ids.row(i).tolist()])
            want = teacher(input_ids=ids, token_type_ids=torch.tensor([ds[i]['token_type_ids'].tolist()])).logits[0]
            torch.testing.assert_close(logits[i], want, atol=1e-5, rtol=1e-4)
    path = distill.teachers.logits.logits_path("t1", ds)
    monkeypatch.setattr(distill.teachers.logits, "compute_logits", lambda *a, **k: pytest.fail("computed again"))
    said = []
    torch.testing.assert_close(teacher_logits.cached_logits(teacher, "t1", ds, acc, train, said.append), logits)
    assert said == [f"teacher logits: reusing {path}"]
    # Another teacher or other data: another file.
    assert teacher_logits.logits_path("t2", ds) != path != teacher_logits.logits_path("t1", datasets["test"])


def test_missing_checkpoint_and_mismatched_tokenizer(tmp_path, capsys):
    f = smoke_with(tmp_path, f"teacher: {{checkpoint: {tmp_path / 'nowhere'}, random: null, tokenizer: null}}\n",
                   "bad.yaml")
    err = refused(["run", str(f), "--out", str(tmp_path / "r1")], capsys)
    assert_facts(err, str(tmp_path / "nowhere"))
    # A 64-word tokenizer folder for a teacher whose embeddings have 30522 rows: refused, naming both sizes.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                                        [f"w{i}" for i in range(59)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(tmp_path / "tok")
    tiny_bert_config(vocab_size=64).save_pretrained(tmp_path / "tok")  # another model's folder
    f = smoke_with(tmp_path, f"teacher: {{checkpoint: packaged:all-minilm-l6-v2, random: null, tokenizer: "
                             f"{tmp_path / 'tok'}}}\n", "tok.yaml")
    err = refused(["run", str(f), "--out", str(tmp_path / "r2")], capsys)
    assert_facts(err, "tokenizer", str(tmp_path / "tok"), "64", "30522", "does not match")
