"""`distill export --format onnx` and `distill bench --onnx`: a student's ONNX graph gives PyTorch's logits on padded
batches of any size and length (BERT, DistilBERT, BiLSTM single and pair), the check refuses a graph that does not,
and nothing half-written is left behind."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from transformers import BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from distill.batching import pad_ids
from distill.lab import export as ex
from distill.lab.cli import main
from distill.lab.predict import load_predictor
from distill.students import get_student
from distill.students.bilstm import BiLSTMClassifier, BiLSTMConfig, WordVocab, save_bilstm

from .helpers import SMOKE, assert_facts, raises_with, tiny_bert_config

WORDS = sorted({w.lower().strip(".,!?") for s in ex.SENTENCES + ex.SECOND for w in s.split()})


def save_tiny_bert(folder, tokenizer):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=len(tokenizer),
                                                           max_position_embeddings=128)).eval()
    get_student("tinybert").export(model, folder, tokenizer)


def save_tiny_bilstm(folder, pair=False):
    torch.manual_seed(0)
    model = BiLSTMClassifier(BiLSTMConfig(vocab_size=len(WORDS) + 3, embedding_dim=8, hidden=6, fc=10, num_labels=3,
                                          pair=pair)).eval()
    model.vocab = WordVocab(WORDS)
    save_bilstm(model, folder)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, tokenizer):
    """A TinyBERT-shaped run folder (smoke config: the tweets' dev texts are the parity batch), exported with int8."""
    run = tmp_path_factory.mktemp("bert-run")
    save_tiny_bert(run / "student", tokenizer)
    shutil.copy(SMOKE, run / "config.yaml")
    # A random model's logits are nearly tied, so int8 may flip a class: agreement is reported, not required here.
    report = ex.export_student_onnx(run, int8=True, int8_agreement=0.0, int8_tolerance=1.0, log=lambda m: None)
    return run, report


def exported_bilstm(tmp_path_factory, pair):
    folder = tmp_path_factory.mktemp("bilstm") / "student"
    save_tiny_bilstm(folder, pair=pair)
    return folder, ex.export_student_onnx(folder, int8=True, int8_agreement=0.0, log=lambda m: None)


@pytest.fixture(scope="module")
def bilstm_single(tmp_path_factory):
    return exported_bilstm(tmp_path_factory, pair=False)


@pytest.fixture(scope="module")
def bilstm_pair(tmp_path_factory):
    return exported_bilstm(tmp_path_factory, pair=True)


def reuse_graph(monkeypatch, exported, edit=None):
    """Skip the exporter (seconds) in tests of what follows it: copy the graph exported earlier for the same
    (seeded) model, after `edit(proto)` if given."""
    folder, report = exported
    info = {k: getattr(report, k) for k in ("exporter", "opset", "kind", "inputs", "dynamic_axes")}

    def copy(model, inputs, path):
        proto = onnx.load(folder / "model.onnx")
        if edit:
            edit(proto)
        onnx.save(proto, path)
        return info

    monkeypatch.setattr(ex, "export_graph", copy)


def assert_onnx_matches_pytorch(folder, onnx_file, batches):
    pred = load_predictor(folder)
    sess = ex.session(folder / onnx_file)
    for texts, texts_b in batches:
        inputs = pred.encode(texts, texts_b)
        np.testing.assert_allclose(ex.run_onnx(sess, inputs),
                                   ex.reference_logits(pred.student, pred.model, inputs).numpy(), atol=1e-5, rtol=0)


def test_bert_export_passes_its_parity_check_on_the_runs_dev_texts(bert_run):
    run, report = bert_run
    folder = run / "student"
    assert report.parity_source == "the run's tweets dev split"
    assert report.fp32["max_abs_diff"] <= 1e-5 and report.tolerance == ex.FP32_TOLERANCE
    assert report.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    saved = json.loads((folder / "onnx.json").read_text())
    assert saved["exporter"] == "torch.onnx.export(dynamo=True)" and saved["opset"] >= 17
    assert set(saved["versions"]) == {"torch", "onnx", "onnxruntime"}
    # Two batches compared: the padded one and a smaller one cut to its own length.
    (rows, length), (rows2, length2) = saved["parity_batches"]
    assert rows > rows2 and length > length2
    graph = onnx.load(folder / "model.onnx").graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert [o.name for o in graph.output] == ["logits"]
    assert leftovers(folder) == []


def test_bert_graph_takes_any_batch_size_and_length(bert_run):
    run, _ = bert_run
    assert_onnx_matches_pytorch(run / "student", "model.onnx", [
        (ex.SENTENCES[:3], None),  # batch 3, short
        (ex.SENTENCES[3:8], ex.SECOND[3:8]),  # batch 5 of pairs (token types 1), longer
        (["ok"], None)])  # batch 1, a few tokens


def test_a_padded_row_gives_the_logits_it_gives_alone(bert_run):
    run, _ = bert_run
    pred = load_predictor(run / "student")
    sess = ex.session(run / "student" / "model.onnx")
    texts = ["fine", ex.SENTENCES[7]]
    batch = ex.run_onnx(sess, pred.encode(texts))
    alone = np.concatenate([ex.run_onnx(sess, pred.encode([t])) for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5, rtol=0)


def test_int8_export_runs_and_reports_its_agreement(bert_run):
    run, report = bert_run
    folder = run / "student"
    assert report.int8_onnx == "model.int8.onnx" and report.int8_refused is None
    q = report.int8
    assert 0.0 <= q["argmax_agreement"] <= 1.0
    assert 0 < q["max_abs_diff"] <= ex.INT8_RELATIVE * q["logit_range"]
    assert (folder / "model.int8.onnx").stat().st_size < 0.6 * (folder / "model.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(folder / "model.int8.onnx").graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    pred = load_predictor(folder)
    inputs = pred.encode(ex.SENTENCES[:4])
    assert ex.run_onnx(ex.session(folder / "model.int8.onnx"), inputs).shape == (4, 3)


def test_distilbert_graph_takes_no_token_types(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tokenizer), n_layers=1, dim=32, n_heads=4, hidden_dim=64, num_labels=2)).eval()
    get_student("distilbert").export(model, tmp_path / "s", tokenizer)
    report = ex.export_student_onnx(tmp_path / "s", log=lambda m: None)
    assert report.kind == "distilbert" and report.inputs == ["input_ids", "attention_mask"]
    assert report.fp32["max_abs_diff"] <= 1e-5
    assert_onnx_matches_pytorch(tmp_path / "s", "model.onnx", [(ex.SENTENCES[:2], None), (ex.SENTENCES[4:9], None)])


@pytest.mark.parametrize("pair", [False, True])
def test_bilstm_padded_path_equals_its_packed_forward(pair):
    torch.manual_seed(0)
    m = BiLSTMClassifier(BiLSTMConfig(vocab_size=40, embedding_dim=6, hidden=5, fc=7, num_labels=3, pair=pair)).eval()
    a, la = pad_ids([[4, 5, 6, 7, 8], [9], [10, 11, 12]])
    b, lb = pad_ids([[13, 14], [15, 16, 17, 18], [19]])
    a[1, 1:], b[2, 1:] = 33, 34  # garbage in the padding changes nothing either way
    with torch.no_grad():
        torch.testing.assert_close(m.forward_padded(a, la, b, lb), m(a, la, b, lb), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("which", ["bilstm_single", "bilstm_pair"])
def test_bilstm_export_is_dynamic_and_matches_pytorch(which, request):
    folder, report = request.getfixturevalue(which)
    pair = json.loads((folder / "config.json").read_text())["pair"]
    assert report.inputs == (["ids", "lengths", "ids_b", "lengths_b"] if pair else ["ids", "lengths"])
    assert report.fp32["max_abs_diff"] <= 1e-5
    for x in onnx.load(folder / "model.onnx").graph.input:  # no axis fixed to the traced size
        assert all(d.dim_param for d in x.type.tensor_type.shape.dim), x.name
    second = (lambda i, j: ex.SECOND[i:j]) if pair else (lambda i, j: None)
    assert_onnx_matches_pytorch(folder, "model.onnx", [(ex.SENTENCES[:3], second(0, 3)),
                                                       (ex.SENTENCES[3:10], second(3, 10))])


@pytest.mark.parametrize("which", ["bilstm_single", "bilstm_pair"])
def test_bilstm_int8_quantises_the_recurrence(which, request):
    folder, report = request.getfixturevalue(which)
    ops = [n.op_type for n in onnx.load(folder / "model.int8.onnx").graph.node]
    # Two LSTMs (one per direction) per sentence, each with its own int8 weights: shared ones were scrambled.
    assert ops.count("DynamicQuantizeLSTM") == (4 if "pair" in which else 2) and "LSTM" not in ops
    assert report.int8_refused is None and report.int8["max_abs_diff"] <= 0.05 * report.int8["logit_range"]


def test_parity_check_refuses_a_wrong_graph_and_writes_nothing(tmp_path, monkeypatch, bilstm_single):
    save_tiny_bilstm(tmp_path / "s")

    def perturb(proto):  # an exporter bug: the last layer's bias off by 1e-3
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.3.bias"))
        values = onnx.numpy_helper.to_array(bias) + np.float32(1e-3)
        bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))

    reuse_graph(monkeypatch, bilstm_single, perturb)
    with raises_with(ex.ExportError, str(tmp_path / "s" / "model.onnx"), "by 0.001", "--tolerance 0.0001",
                     "nothing written"):
        ex.export_student_onnx(tmp_path / "s", log=lambda m: None)
    assert not (tmp_path / "s" / "model.onnx").exists() and not (tmp_path / "s" / "onnx.json").exists()
    assert leftovers(tmp_path / "s") == []


def test_int8_refused_leaves_the_fp32_graph_and_no_int8_file(tmp_path, monkeypatch, bilstm_single):
    save_tiny_bilstm(tmp_path / "s")
    reuse_graph(monkeypatch, bilstm_single)
    monkeypatch.setattr(ex, "int8_refusal", lambda *a: "agreement 0.5 < --int8-agreement 0.95")
    (tmp_path / "s" / "model.int8.onnx").write_bytes(b"from an earlier export")
    with raises_with(ex.ExportError, str(tmp_path / "s" / "model.int8.onnx"), "int8 graph refused", "agreement 0.5",
                     "the older int8 file removed"):
        ex.export_student_onnx(tmp_path / "s", int8=True, log=lambda m: None)
    folder = tmp_path / "s"
    assert (folder / "model.onnx").exists() and not (folder / "model.int8.onnx").exists()
    saved = json.loads((folder / "onnx.json").read_text())
    assert saved["int8_onnx"] is None and saved["int8_refused"] and saved["int8"]["max_abs_diff"] > 0
    assert leftovers(folder) == []


def test_cli_export(tmp_path, tokenizer, capsys):
    save_tiny_bert(tmp_path / "run" / "student", tokenizer)
    out = tmp_path / "elsewhere" / "tiny.onnx"
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--int8", "--int8-agreement", "0",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fp32: max abs logit difference" in printed and "argmax agreement with PyTorch" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.int8.onnx", "tiny.json", "tiny.onnx"]
    assert json.loads((out.parent / "tiny.json").read_text())["parity_source"] == "built-in sentences"


def test_cli_export_refuses_bad_input_in_one_line(tmp_path, capsys, monkeypatch, bilstm_single):
    (tmp_path / "notes").mkdir()
    assert main(["export", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert_facts(err, str(tmp_path / "notes"), "not an exported student", "expected a run folder")
    save_tiny_bilstm(tmp_path / "s")
    reuse_graph(monkeypatch, bilstm_single)
    assert main(["export", str(tmp_path / "s"), "--tolerance", "0"]) == 2  # float32 kernels never agree to the bit
    assert_facts(capsys.readouterr().err, str(tmp_path / "s" / "model.onnx"), "--tolerance 0", "nothing written")
    assert not (tmp_path / "s" / "model.onnx").exists() and leftovers(tmp_path / "s") == []
    assert main(["export", str(tmp_path / "s"), "--int8-agreement", "2"]) == 2
    assert_facts(capsys.readouterr().err, "--int8-agreement 2.0", ">= 0", "<= 1.0")


def test_bench_onnx_columns(monkeypatch, capsys):
    from distill.lab import bench

    monkeypatch.setitem(bench.SHAPES, "tiny", ("tinybert", {"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}))
    assert main(["bench", "--models", "tiny", "--onnx", "--int8", "--budget", "0", "--seq-len", "8", "--batch", "2",
                 "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = [c.strip() for c in next(x for x in lines if x.startswith("| model")).strip("|").split("|")]
    rows = {r[0]: dict(zip(head, r, strict=True)) for r in
            ([c.strip() for c in x.strip("|").split("|")] for x in lines if x.startswith("| tiny"))}
    ort = ["ORT fp32 b1 ms", "ORT fp32 b2 ex/s", "ORT int8 b1 ms", "ORT int8 b2 ex/s"]
    assert head[6:10] == ort and "ONNX Runtime" in lines[0]
    assert all(float(rows["tiny"][c]) > 0 for c in ort)
    assert [rows["tiny int8"][c] for c in ort] == ["-"] * 4  # torch's int8 variant: no graph of its own


def test_bench_onnx_scores_a_trained_students_graphs_on_its_dev_split(bert_run, monkeypatch, capsys):
    from distill.lab import bench

    run, _ = bert_run
    monkeypatch.setitem(bench.SHAPES, "tiny", ("tinybert", {"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}))
    rows = bench.run_bench(["tiny"], seq_len=8, batch=2, budget_s=0, student=str(run), accuracy_limit=32,
                           onnx=True, log=lambda m: None)
    student = rows[-1]
    assert set(student.onnx_accuracy) == {"fp32", "int8"}
    # The fp32 graph gives PyTorch's logits, so its dev metrics are the student's own.
    assert student.onnx_accuracy["fp32"] == pytest.approx(student.accuracy, abs=1e-9)
    assert set(student.onnx_accuracy["int8"]) == set(student.accuracy)
    cell = bench.render(rows, 8, 2, "cpu").splitlines()[-1]
    assert f"; ORT fp32 macro_f1 {student.accuracy['macro_f1']:.4f}" in cell and "; ORT int8 macro_f1" in cell


def test_cli_export_int8_tolerance_bounds_the_metric_drop_on_dev(bert_run, tmp_path, capsys, monkeypatch):
    """int8 is judged by the task's main metric on the run's dev examples: a quantiser that flips the classifier
    (every example one rare class) loses points, refused above --int8-tolerance and accepted below it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(bert_run[0], run)
    real = ex.quantize_int8
    from collections import Counter

    from distill.config import load_config
    from distill.loaders import load_task

    counts = Counter(e.label for e in load_task(load_config(SMOKE).task).splits["dev"])
    rarest, majority = min(range(3), key=lambda c: counts[c]), max(range(3), key=lambda c: counts[c])
    # PyTorch predicts the majority class everywhere (the best constant macro-F1), the broken int8 the rarest.
    model = BertForSequenceClassification.from_pretrained(run / "student")
    with torch.no_grad():
        model.classifier.bias[majority] += 100.0
    model.save_pretrained(run / "student")

    def flipped(src, dst):
        real(src, dst)
        proto = onnx.load(str(dst))
        for node in proto.graph.node:
            node.output[:] = ["broken_in" if o == "logits" else o for o in node.output]
        push = np.zeros(3, np.float32)
        push[rarest] = 1e3  # every example predicted as the dev split's rarest class
        proto.graph.initializer.append(onnx.numpy_helper.from_array(push, "push"))
        proto.graph.node.append(onnx.helper.make_node("Add", ["broken_in", "push"], ["logits"]))
        onnx.save(proto, str(dst))

    monkeypatch.setattr(ex, "quantize_int8", flipped)
    assert main(["export", str(run), "--int8", "--int8-agreement", "0", "--int8-tolerance", "1"]) == 0
    saved = json.loads((run / "student" / "onnx.json").read_text())
    q = saved["int8"]
    assert q["metric"] == "macro_f1" and q["examples"] == 96  # the smoke config's dev split
    drop = q["pytorch"] - q["onnx"]
    assert drop > 0 and q["pytorch"] == pytest.approx(saved["fp32"]["pytorch"])
    assert main(["export", str(run), "--int8", "--int8-agreement", "0", "--int8-tolerance", str(drop / 2)]) == 2
    assert_facts(capsys.readouterr().err, "macro_f1", f"a drop of {drop:.4f}", f"--int8-tolerance {drop / 2}")
    saved = json.loads((run / "student" / "onnx.json").read_text())
    assert saved["int8_criterion"]["max_metric_drop"] == pytest.approx(drop / 2) and saved["int8_refused"]
    assert not (run / "student" / "model.int8.onnx").exists()


def test_cli_export_max_length_cuts_the_parity_texts(tmp_path, monkeypatch, bilstm_single):
    save_tiny_bilstm(tmp_path / "s")
    reuse_graph(monkeypatch, bilstm_single)
    _, report = bilstm_single
    assert report.parity_batches[0][1] > 3  # by default the longest built-in sentence has more words
    assert main(["export", str(tmp_path / "s"), "--max-length", "3"]) == 0
    saved = json.loads((tmp_path / "s" / "onnx.json").read_text())
    assert [length for _, length in saved["parity_batches"]] == [3, 3]
