"""`distill bench`: size and speed of the teacher and the students, measured in one run and printed as ratios
to the teacher. Speed needs no trained weights, so BERT-large and BERT-base shapes are measured with random
weights; a trained student (`--student RUN`) adds its int8 / compiled variants' accuracy cost on its dev split
(and with `--onnx` its ONNX Runtime fp32 and int8 graphs' dev metrics).

Per model: parameters, size on disk (safetensors), FLOPs per example, latency at batch 1 (median) and
throughput at batch 32, both at a fixed sequence length (128 by default, every position a real token). With
`--onnx`, the same two figures in ONNX Runtime (CPU) for each model exported to a temporary folder, fp32 and int8,
beside PyTorch's."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.errors import DistillError
from distill.model_stats import count_parameters
from distill.student_registry import Student, get_student
from distill.task_types import QA, SEQUENCE, TOKENS

VOCAB = 30522


def _bert(layers: int, hidden: int, heads: int, ffn: int) -> dict[str, int]:
    return {"layers": layers, "hidden": hidden, "heads": heads, "ffn": ffn}


# name -> (registered student, its shape). BERT shapes from Devlin et al. (a BERT classifier is TinyBERT's
# architecture at BERT's size); TinyBERT from Jiao et al.; DistilBERT from Sanh et al.; the BiLSTM from Tang et al.
# (300-d vectors, hidden 150 per direction, FC 200).
SHAPES: dict[str, tuple[str, dict[str, int]]] = {
    "bert-large": ("tinybert", _bert(24, 1024, 16, 4096)),
    "bert-base": ("tinybert", _bert(12, 768, 12, 3072)),
    "tinybert6": ("tinybert", _bert(6, 768, 12, 3072)),
    "distilbert": ("distilbert", _bert(6, 768, 12, 3072)),
    "tinybert4": ("tinybert", _bert(4, 312, 12, 1200)),
    "bilstm": ("bilstm", {"hidden": 150, "fc": 200, "embedding_dim": 300}),
}


class BenchError(DistillError):
    pass


def build_shape(name: str, num_labels: int = 2, vocab: int = VOCAB) -> tuple[Student, nn.Module]:
    """The student a named shape belongs to, and a randomly initialised classifier of that shape."""
    if name not in SHAPES:
        raise BenchError(f"unknown model {name!r}; known: {', '.join(SHAPES)} (or give --student RUN)")
    kind, fields = SHAPES[name]
    student = get_student(kind, f"bench shape {name!r}")
    return student, student.random(fields, num_labels, vocab)


def batch_inputs(student: Student, model: nn.Module, batch: int, seq_len: int, device: str,
                 run: nn.Module | None = None) -> Callable[[], torch.Tensor]:
    """A closure running one forward pass of `run` (default `model`) on a random full-length batch (a pair
    student reads it as both sentences, as its FLOPs count them)."""
    run = run if run is not None else model
    g = torch.Generator().manual_seed(0)
    graph = student.graph(model)
    ids = torch.randint(5, graph.vocab_size, (batch, seq_len), generator=g).to(device)
    inputs = graph.from_ids(ids, torch.full((batch,), seq_len, dtype=torch.long))
    return lambda: student.logits(run, inputs)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], device: str, budget_s: float, min_calls: int = 3) -> list[float]:
    """Seconds per call after one warm-up call, repeated until `budget_s` is spent (at least `min_calls`)."""
    fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def disk_bytes(model: nn.Module) -> int:
    """Size of the model's weights as one safetensors file (tied weights stored once)."""
    from distill.io import save_tensors

    state = model.state_dict()
    if not all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values()):
        return _weight_bytes(state)  # quantised packed weights have no safetensors form: count their bytes
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        save_tensors(path, state)
        return path.stat().st_size


def _weight_bytes(x: object) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, dict):
        return sum(_weight_bytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_weight_bytes(v) for v in x)
    if isinstance(x, torch.ScriptObject) and hasattr(x, "__getstate__"):
        return _weight_bytes(x.__getstate__())
    return 0


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the linear (and LSTM) layers, for CPU inference."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still works in this torch
        return quantize_dynamic(copy.deepcopy(model), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


@dataclass
class Row:
    name: str
    parameters: int
    disk_bytes: int
    flops: int
    latency_ms: float
    throughput: float
    accuracy: dict | None = None
    onnx: dict[str, tuple[float, float]] | None = None  # "fp32" / "int8" -> (latency b1 ms, throughput ex/s)
    onnx_accuracy: dict[str, dict] | None = None  # a trained student's: "fp32" / "int8" -> dev metrics


@torch.inference_mode()
def measure(name: str, student: Student, model: nn.Module, device: str, seq_len: int, batch: int, budget_s: float,
            base: nn.Module | None = None, log=print) -> Row:
    """Time `model`; parameters and FLOPs are those of `base` (the float model an int8 or compiled variant
    was made from), the size on disk is the variant's own."""
    base = base if base is not None else model
    model = model.eval()
    log(f"  {name}: latency at batch 1 ...")
    lat = time_calls(batch_inputs(student, base, 1, seq_len, device, model), device, budget_s)
    log(f"  {name}: throughput at batch {batch} ...")
    thr = time_calls(batch_inputs(student, base, batch, seq_len, device, model), device, budget_s, min_calls=2)
    size = disk_bytes(getattr(model, "_orig_mod", model))
    return Row(name, count_parameters(base), size, student.flops(base, seq_len), 1000 * statistics.median(lat),
               batch / statistics.median(thr))


def measure_onnx(name: str, student: Student, model: nn.Module, seq_len: int, batch: int, budget_s: float, log=print,
                 score: Callable[[object], dict] | None = None,
                 scores: dict[str, dict] | None = None) -> dict[str, tuple[float, float]]:
    """ONNX Runtime latency at batch 1 and throughput at `batch`, fp32 and int8, on the inputs `measure` times in
    PyTorch. The graph is first checked against PyTorch on a padded batch, so the figures are for the same model.
    `score` (a trained student): each graph's dev metrics, put in `scores` by "fp32" / "int8"."""
    from distill.lab.export import (
        FP32_TOLERANCE,
        check_parity,
        export_graph,
        feeds,
        quantize_int8,
        random_inputs,
        session,
    )

    model = model.eval()
    out = {}
    with tempfile.TemporaryDirectory() as d:
        fp32, int8 = Path(d) / "model.onnx", Path(d) / "model.int8.onnx"
        log(f"  {name}: ONNX export ...")
        graph = student.graph(model)
        sample = random_inputs(graph, 4, min(seq_len, 16), padded=True)
        export_graph(graph, sample, fp32)
        parity = check_parity(student, model, fp32, [sample])
        if not parity.max_abs_diff <= FP32_TOLERANCE:
            raise BenchError(f"{name}: the ONNX graph's logits differ from PyTorch's by {parity.max_abs_diff:.3g}")
        quantize_int8(fp32, int8)  # a random model's int8 says nothing about accuracy; a student's is scored
        for label, path in (("fp32", fp32), ("int8", int8)):
            sess = session(path)
            one = feeds(sess, random_inputs(graph, 1, seq_len))
            many = feeds(sess, random_inputs(graph, batch, seq_len))
            log(f"  {name}: ONNX Runtime {label} latency at batch 1 and throughput at batch {batch} ...")
            lat = time_calls(lambda f=one, s=sess: s.run(None, f), "cpu", budget_s)
            thr = time_calls(lambda f=many, s=sess: s.run(None, f), "cpu", budget_s, min_calls=2)
            out[label] = (1000 * statistics.median(lat), batch / statistics.median(thr))
            if score is not None and scores is not None:
                log(f"  {name}: ONNX Runtime {label} dev metrics ...")
                scores[label] = score(sess)
    return out


def variants(name: str, model: nn.Module, int8: bool, compile_: bool, device: str) -> list[tuple[str, nn.Module]]:
    """The model and, on request, its int8 and compiled forms, each as (label, module)."""
    out = [(name, model)]
    if int8:
        if device != "cpu":
            raise BenchError("--int8 is dynamic quantisation for CPU inference; use --device cpu")
        out.append((f"{name} int8", quantize_int8(model)))
    if compile_:
        out.append((f"{name} compiled", torch.compile(model)))
    return out


def _dev_split(run: Path, limit: int | None, device: str = "cpu"):
    """(task, dev examples, the student's predictor) of a run, from its own config and data."""
    from distill.config import load_config
    from distill.lab.predict import load_predictor
    from distill.loaders import load_task

    cfg_path = run / "config.yaml"
    if not cfg_path.exists():
        raise BenchError(f"{run}: accuracy needs a run folder (with config.yaml); got a bare student folder")
    cfg = load_config(cfg_path)
    task = load_task(cfg.task)
    pred = load_predictor(run)  # encoded as the run encoded its inputs
    pred.device = device
    return task, task.splits["dev"][:limit], pred


def _dev_metrics(task, dev, logits: np.ndarray) -> dict:
    from distill.metrics import compute

    return compute(task.metrics, logits, np.array([ex.label for ex in dev]), task.num_labels)


def student_accuracy(run: Path, models: list[tuple[str, nn.Module]], limit: int | None,
                     device: str = "cpu") -> dict[str, dict]:
    """Dev metrics of a trained student and its int8 / compiled variants, from the run's own config and data."""
    task, dev, pred = _dev_split(run, limit, device)
    out = {}
    for name, model in models:
        pred.model = model
        if task.type == TOKENS:
            out[name] = _tagged_metrics(task, dev, pred.tag([ex.text_a for ex in dev]))
        elif task.type == QA:
            out[name] = _answer_metrics(task, dev, pred)
        else:
            logits = pred.logits([ex.text_a for ex in dev], [ex.text_b for ex in dev] if task.is_pair else None)
            out[name] = _dev_metrics(task, dev, logits.numpy())
    return out


def _tagged_metrics(task, dev, tagged: list[dict]) -> dict:
    """A tagger's dev metrics from `Predictor.tag`'s output: the words it read (those cut are not scored, as in
    a run's own evaluation)."""
    from distill.tag_metrics import entity_scores, token_accuracy

    pred = [t["tags"] for t in tagged]
    gold = [[task.labels[i] for i in ex.label[:len(p)]] for ex, p in zip(dev, pred, strict=True)]
    out = {"token_accuracy": token_accuracy(pred, gold)}
    if task.scheme is not None:
        out.update(entity_scores(pred, gold, task.scheme))
    return {k: out[k] for k in task.metrics}


def _answer_metrics(task, dev, pred) -> dict:
    """A QA student's official dev scores from `Predictor.answer` (SQuAD v2.0: the null threshold chosen on these
    questions, as a run's dev evaluation does)."""
    from distill.qa_answers import Prediction, answer, choose_null_threshold
    from distill.qa_eval import NAMES
    from distill.squad_metric import squad_scores

    found = pred.answer([ex.text_a for ex in dev], [ex.text_b for ex in dev])
    golds = {ex.id: [t for t, _ in ex.answers or ()] for ex in dev}
    spans = [Prediction(ex.id, f["span"], f["score"], f["null_score"]) for ex, f in zip(dev, found, strict=True)]
    v2 = task.qa.version == "2.0"
    threshold = choose_null_threshold(spans, golds) if v2 else None
    official = squad_scores({p.id: answer(p, threshold) for p in spans}, golds,
                            {ex.id: bool(ex.answers) for ex in dev} if v2 else None)
    return {NAMES[k]: v for k, v in official.items() if NAMES.get(k) in task.metrics}


def onnx_scorer(run: Path, limit: int | None) -> Callable[[object], dict]:
    """A function giving an ONNX Runtime session's dev metrics for the run's student (the graph `measure_onnx`
    exported from it), its inputs encoded as `distill export` encodes them."""
    from distill.lab.export import run_onnx

    task, dev, pred = _dev_split(run, limit)
    if task.type != SEQUENCE:
        return lambda sess: {}  # tags and answers are scored through PyTorch (`student_accuracy`); export checks parity

    def score(sess) -> dict:
        parts = []
        for i in range(0, len(dev), 64):
            chunk = dev[i:i + 64]
            parts.append(run_onnx(sess, pred.encode([ex.text_a for ex in chunk],
                                                    [ex.text_b for ex in chunk] if task.is_pair else None)))
        return _dev_metrics(task, dev, np.concatenate(parts))

    return score


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BenchError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        built = f"with CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        raise BenchError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible; torch "
                         f"{torch.__version__} built {built})")


def run_bench(names: list[str], device: str = "cpu", seq_len: int = 128, batch: int = 32, budget_s: float = 3.0,
              int8: bool = False, compile_: bool = False, student: str | None = None,
              accuracy_limit: int | None = None, log=print, onnx: bool = False) -> list[Row]:
    """Measure every model (the first is the teacher the ratios refer to) and its optional variants; `onnx` adds
    each model's ONNX Runtime figures to its row."""
    check_device(device)
    if onnx and device != "cpu":
        raise BenchError("--onnx measures ONNX Runtime's CPU execution provider; use --device cpu")
    torch.manual_seed(0)
    rows = []
    for name in names:
        kind, model = build_shape(name)
        model = model.to(device)
        first = len(rows)
        for label, m in variants(name, model, int8, compile_, device):
            rows.append(measure(label, kind, m, device, seq_len, batch, budget_s, model, log))
        if onnx:  # on the float model's row; its int8 graph is ONNX Runtime's own quantisation
            rows[first].onnx = measure_onnx(name, kind, model, seq_len, batch, budget_s, log)
    if student:
        from distill.lab.predict import load_predictor, student_folder

        run = Path(student)
        pred = load_predictor(run)
        base_name = f"student {student_folder(run)}"
        models = variants(base_name, pred.model.to(device), int8, compile_, device)
        for label, m in models:
            rows.append(measure(label, pred.student, m, device, seq_len, batch, budget_s, pred.model, log))
        scored = (run / "config.yaml").exists()
        if onnx:
            first = rows[-len(models)]
            first.onnx_accuracy = {}
            first.onnx = measure_onnx(base_name, pred.student, pred.model, seq_len, batch, budget_s, log,
                                      onnx_scorer(run, accuracy_limit) if scored else None, first.onnx_accuracy)
        if scored:
            acc = student_accuracy(run, models, accuracy_limit, device)
            for r in rows:
                r.accuracy = acc.get(r.name, r.accuracy)
    return rows


def render(rows: list[Row], seq_len: int, batch: int, device: str) -> str:
    t = rows[0]
    onnx = any(r.onnx for r in rows)
    ort = [f"ORT {k} {c}" for k in ("fp32", "int8") for c in ("b1 ms", f"b{batch} ex/s")] if onnx else []
    head = ["model", "params", "size MB", "GFLOPs/ex", "latency b1 ms", f"b{batch} ex/s", *ort, "smaller x",
            "fewer FLOPs x", "faster b1 x", f"throughput b{batch} x", "dev metrics"]
    title = f"sequence length {seq_len}, device {device}, torch threads {torch.get_num_threads()}"
    if onnx:
        import onnxruntime

        title += f"; ONNX Runtime {onnxruntime.__version__} (CPU, as many threads) on each model exported"
    lines = [f"{title}; ratios against {t.name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = ", ".join(f"{k} {v:.4f}" for k, v in (r.accuracy or {}).items()) or "-"
        for k, metrics in (r.onnx_accuracy or {}).items():
            acc += f"; ORT {k} " + ", ".join(f"{m} {v:.4f}" for m, v in metrics.items())
        ort_cells = []
        for k in ("fp32", "int8") if onnx else ():
            ort_cells += [f"{r.onnx[k][0]:.2f}", f"{r.onnx[k][1]:.1f}"] if r.onnx else ["-", "-"]
        lines.append("| " + " | ".join([
            r.name, f"{r.parameters / 1e6:.2f}M", f"{r.disk_bytes / 2**20:.1f}", f"{r.flops / 1e9:.2f}",
            f"{r.latency_ms:.2f}", f"{r.throughput:.1f}", *ort_cells, f"{t.parameters / r.parameters:.1f}",
            f"{t.flops / r.flops:.1f}", f"{t.latency_ms / r.latency_ms:.1f}", f"{r.throughput / t.throughput:.1f}",
            acc]) + " |")
    return "\n".join(lines)
