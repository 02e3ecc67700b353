"""`distill predict`'s library: any exported student (BERT, DistilBERT, BiLSTM; classifier or regression head;
single texts or pairs) gives the probabilities its own forward pass gives, and input files are read strictly."""

import pytest
import torch
from transformers import BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from distill.lab.predict import PredictError, load_predictor, read_inputs, student_folder
from distill.students import get_student
from distill.students.bilstm import BiLSTMClassifier, BiLSTMConfig, WordVocab, save_bilstm

from .helpers import raises_with, tiny_bert_config

TEXTS = ["the flight was late again", "thanks for the upgrade", "ok"]
PAIRS = ["was it late?", "a fine crew", "why"]


def export_bert(folder, tokenizer, **config):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=len(tokenizer), **config)).eval()
    get_student("tinybert").export(model, folder, tokenizer)
    return model


@pytest.mark.parametrize("pair", [False, True])
def test_bert_student_probabilities_equal_its_own_forward(tmp_path, tokenizer, pair):
    model = export_bert(tmp_path / "student", tokenizer, id2label={0: "neg", 1: "neu", 2: "pos"},
                        label2id={"neg": 0, "neu": 1, "pos": 2})
    second = PAIRS if pair else None
    pred = load_predictor(tmp_path, max_length=32)  # a run folder holding student/
    got = pred.predict(TEXTS, second, batch_size=2)  # two batches, padded differently
    with torch.no_grad():
        for i, row in enumerate(got):  # each text alone, unpadded: the reference
            enc = tokenizer(TEXTS[i], second[i] if pair else None, return_tensors="pt")
            p = model(**enc).logits.softmax(-1)[0]
            assert row["label"] == ["neg", "neu", "pos"][int(p.argmax())]
            assert row["probability"] == pytest.approx(float(p.max()), abs=1e-5)
            assert list(row["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-5)


def test_regression_head_gives_scores(tmp_path, tokenizer):
    model = export_bert(tmp_path / "s", tokenizer, num_labels=1, problem_type="regression")
    got = load_predictor(tmp_path / "s").predict(TEXTS)
    with torch.no_grad():
        want = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits[:, 0]
    assert [r["score"] for r in got] == pytest.approx(want.tolist(), abs=1e-5)
    assert all(set(r) == {"score"} for r in got)


def test_distilbert_student_takes_no_token_types(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tokenizer), n_layers=1, dim=32, n_heads=4, hidden_dim=64, num_labels=2)).eval()
    get_student("distilbert").export(model, tmp_path / "s", tokenizer)
    got = load_predictor(tmp_path / "s").logits(TEXTS, PAIRS)
    enc = tokenizer(TEXTS, PAIRS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_bilstm_student(tmp_path):
    torch.manual_seed(0)
    model = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embedding_dim=6, hidden=5, fc=7, num_labels=2,
                                          labels=["no", "yes"])).eval()
    model.vocab = WordVocab(["the", "flight", "was", "late", "again", "thanks"])
    save_bilstm(model, tmp_path / "student")
    pred = load_predictor(tmp_path, max_length=3)
    assert pred.student.name == "bilstm" and pred.labels == ["no", "yes"]
    got = pred.logits(TEXTS)
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            ids = model.vocab.encode(text, 3)  # cut at max_length words, as the predictor does
            torch.testing.assert_close(got[i], model(torch.tensor([ids]), torch.tensor([len(ids)]))[0])
    assert [r["label"] for r in pred.predict(TEXTS)] == [["no", "yes"][int(z.argmax())] for z in got]


def test_input_files_are_read_strictly(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("first\tsecond\n\nthird\tfourth\n")
    assert read_inputs(f) == (["first", "third"], ["second", "fourth"])
    f.write_text("one\ntwo\n")
    assert read_inputs(f) == (["one", "two"], None)
    cases = {"a\tb\tc\n": (f"{f}:1:", "3 tab-separated fields", "expected a text or a pair"),
             "a\tb\nc\n": (f"{f}:2:", "mixes single texts"), "\n \n": (str(f), "no text lines")}
    for text, facts in cases.items():
        f.write_text(text)
        with raises_with(PredictError, *facts):
            read_inputs(f)
    f.write_bytes(b"ok\n\xff\xfe\n")
    with raises_with(PredictError, str(f), "not UTF-8", "byte 3"):
        read_inputs(f)
    with raises_with(PredictError, str(tmp_path / "none.txt"), "cannot read"):
        read_inputs(tmp_path / "none.txt")


def test_student_folder_accepts_a_run_or_a_student_and_nothing_else(tmp_path, tokenizer):
    export_bert(tmp_path / "run" / "student", tokenizer)
    assert student_folder(tmp_path / "run") == student_folder(tmp_path / "run" / "student") == tmp_path / "run" / \
        "student"
    with raises_with(PredictError, str(tmp_path), "not an exported student", "expected a run folder"):
        student_folder(tmp_path)
