"""`distill export`: an exported student (a run folder or its `student/` folder) as an ONNX graph, checked against
PyTorch on real padded inputs before it is put in place.

Every student goes through `torch.onnx.export(..., dynamo=True)` (torch.export), the exporter torch supports
now, in the form its `Student.graph` gives (the TorchScript exporter is deprecated). A student whose forward cannot
be traced hands over an equivalent module instead: the BiLSTM's packed sequences have sizes that depend on the
values in `lengths`, so it is exported through `BiLSTMClassifier.forward_padded`, which computes the same logits
without packing; the parity check compares the graph with the forward the model was trained with
(`Student.logits`).

The parity check runs PyTorch and ONNX Runtime (CPU) on one batch of texts of very different lengths padded
together, and on a smaller batch cut to its own length (so that the batch and sequence axes are seen to be
dynamic), and refuses the graph when the largest logit difference is above the tolerance. An int8 graph
(`onnxruntime.quantization.quantize_dynamic`, int8 weights) is judged by what quantisation can promise: the
predicted class of (nearly) every example, and logits within a fraction of their own spread. Each file is written
to a temporary and renamed into place only once its check passes."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.errors import DistillError
from distill.student_registry import Graph, Student
from distill.task_types import QA, SEQUENCE, type_of_model

# Measured in float32 (docs/deployment.md, "Export to ONNX"): 3e-8 to 3e-6 on BiLSTM, TinyBERT-4, DistilBERT and a
# trained MiniLM; 1e-4 leaves room for other CPUs and kernels and still catches a wrong graph (a bias off by 1e-3 is).
FP32_TOLERANCE = 1e-4
# int8 is judged by what a user of the student cares about, on the task's own dev examples: the class predicted
# for at least this share of them is PyTorch's, and the main metric drops by at most INT8_METRIC_DROP. Measured: a
# trained 3-layer MiniLM student on the tweets 97-99% agreement and 0.2-0.6 points of macro-F1; a news-topic
# student 97.6% and 0.5 points. Graphs the quantiser got wrong agree on 40-70%.
INT8_AGREEMENT = 0.95
INT8_METRIC_DROP = 0.02
# Without gold labels (built-in sentences) a regression head has no agreement and no metric: its int8 logits must
# then stay within this fraction of the PyTorch logits' range (random-weight students 1-8%, broken graphs 16-47%).
INT8_RELATIVE = 0.1
# Dev examples compared (fp32 and int8), at most; the 16 of them spread over the lengths also check the axes.
PARITY_EXAMPLES = 1000

# Ordinary sentences of very different lengths (1 to 60 words): the parity batch when no run data is at hand.
SENTENCES = [
    "Thanks!",
    "The flight was late again.",
    "I really enjoyed the concert last night, even though it rained.",
    "Customer service never answered my emails, so I finally gave up and called the bank.",
    "Why?",
    "The new phone is fast, the battery lasts two days, and the camera takes sharp pictures in low light, "
    "but it is heavier than the old one and the case scratches easily.",
    "Not bad at all.",
    "We missed the last train home, walked for an hour in the cold, and still laughed about it the next "
    "morning over coffee and pancakes with the friends who had waited up for us at the station, which was "
    "kind of them given how late it was and how little they had slept the night before.",
    "Okay, fine.",
    "The museum opens at nine on weekdays.",
    "Please send the report before Friday so that the team can review it.",
    "It works.",
]
SECOND = [
    "Thank you.",
    "Was it on time?",
    "The concert was cancelled because of the rain.",
    "The bank replied quickly.",
    "Because the store closed early and nobody told us, we came back the next day.",
    "The phone is light.",
    "It was terrible.",
    "We took a taxi.",
    "No.",
    "When does the museum open on Saturdays and Sundays in the summer?",
    "The report is due on Monday.",
    "It is broken and nobody can fix it.",
]


class ExportError(DistillError):
    pass


@dataclass
class Parity:
    max_abs_diff: float
    examples: int  # examples compared (each once)
    argmax_agreement: float | None = None  # None for a regression head
    logit_range: float | None = None  # max - min of the PyTorch logits
    metric: str | None = None  # the task's main metric, when the examples have gold labels
    pytorch: float | None = None  # that metric of PyTorch's logits on the examples
    onnx: float | None = None  # and of the graph's


def random_inputs(graph: Graph, batch: int, seq_len: int, padded: bool = False,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids keyed by the graph's input names; `padded`: rows of different lengths (the first full),
    else every position a real token; a second sentence (pair students) is the batch in reverse order."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.full((batch,), seq_len, dtype=torch.long)
    if padded:
        lengths[1:] = torch.randint(1, seq_len + 1, (batch - 1,), generator=g)
    ids = torch.randint(5, graph.vocab_size, (batch, seq_len), generator=g)
    ids[torch.arange(seq_len) >= lengths.unsqueeze(1)] = 0
    return graph.from_ids(ids, lengths, ids.flip(0), lengths.flip(0))


def reference_logits(student: Student, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of the model's own forward (for the BiLSTM: the packed one it was trained with)."""
    with torch.inference_mode():
        return student.logits(model, inputs).float()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter reports each step and warns about optional torchvision ops and axis renames: noise for a user.
    # onnxruntime.quantization logs its advice to the root logger.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_graph(graph: Graph, inputs: dict[str, torch.Tensor], path: str | Path) -> dict:
    """Write a student's `graph` as ONNX to `path` (one file, weights inside), traced on `inputs`; returns exporter
    facts."""
    missing = [n for n in graph.input_names if n not in inputs]
    if missing:
        raise ExportError(f"example inputs lack {missing}; the graph takes {graph.input_names}")
    args = tuple(inputs[n] for n in graph.input_names)
    with _quiet_exporter():
        _forget_lstm_kernel()
        try:
            program = torch.onnx.export(graph.module, args, dynamo=True, input_names=graph.input_names,
                                        output_names=["logits"], dynamic_shapes=graph.dynamic_shapes, verbose=False)
        except torch.onnx.errors.OnnxExporterError as e:  # pages of advice on the exporter; one line for the user
            raise ExportError(f"torch.onnx.export (dynamo) cannot export this {graph.kind} student: "
                              f"{str(e).strip().splitlines()[0][:300]}") from e
        finally:
            _forget_lstm_kernel()
    fixed = [f"{x.name}[{axis}]" for x, shape in zip(program.model.graph.inputs, graph.dynamic_shapes, strict=True)
             for axis in shape if isinstance(x.shape[axis], int)]
    if fixed:  # would run only on inputs of the traced size: refuse rather than write a graph that looks fine
        raise ExportError(f"the exporter fixed dynamic axes {', '.join(fixed)} of the {graph.kind} student to the "
                          "example's size")
    with _quiet_exporter():
        # One file: external data would be named after the temporary and break on the rename into place.
        program.save(str(path), external_data=False)
    opset = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset, "kind": graph.kind,
            "inputs": graph.input_names, "outputs": ["logits"],
            "dynamic_axes": {n: {str(k): _dim_name(v) for k, v in s.items()}
                             for n, s in zip(graph.input_names, graph.dynamic_shapes, strict=True)}}


def _forget_lstm_kernel() -> None:
    # torch 2.13: for dynamic shapes, torch.onnx.export registers a while-loop decomposition of aten.lstm for the
    # duration of the call, but the op's dispatch cache keeps the kernel it found first. After any earlier LSTM
    # call with autograd on (an earlier export in the same process, a forward under no_grad) the exporter got the
    # unrolled decomposition and silently fixed the sequence length. Emptying the cache makes each export, and
    # each eager call after it, look the kernel up afresh.
    cache = getattr(torch.ops.aten.lstm.input, "_dispatch_cache", None)
    if cache is not None:
        cache.clear()


def _dim_name(dim) -> str:
    return getattr(dim, "__name__", str(dim))


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session, with as many threads as torch uses (so timings compare)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def feeds(sess, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {i.name: inputs[i.name].cpu().numpy() for i in sess.get_inputs()}


def run_onnx(sess, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    return sess.run(["logits"], feeds(sess, inputs))[0]


def compare(reference: torch.Tensor, got: np.ndarray) -> Parity:
    ref = reference.numpy()
    if ref.shape != got.shape:
        raise ExportError(f"the ONNX graph gave logits of shape {got.shape}; PyTorch {ref.shape}")
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    agree = float((ref.argmax(-1) == got.argmax(-1)).mean()) if ref.shape[-1] > 1 else None
    return Parity(diff, len(ref), agree, float(ref.max() - ref.min()) if ref.size else 0.0)


def check_parity(student: Student, model: nn.Module, path: str | Path, batches: list[dict[str, torch.Tensor]],
                 scored: ParityData | None = None) -> Parity:
    """PyTorch against ONNX Runtime: the largest logit difference over `batches` (the shape checks) and over the
    scored examples' batches; agreement, logit range and, with gold labels, the main metric of each, over the
    scored examples (else over `batches`)."""
    sess = session(path)
    lengths = student.graph(model).lengths

    def pair(b):
        return (_real_rows(reference_logits(student, model, b).numpy(), lengths(b)),
                _real_rows(run_onnx(sess, b), lengths(b)))

    shape = [pair(b) for b in batches]
    parts = shape if scored is None else [pair(b) for b in scored.batches]
    ref = np.concatenate([r for r, _ in parts])
    got = np.concatenate([g for _, g in parts])
    p = compare(torch.from_numpy(ref), got)
    p.max_abs_diff = max([p.max_abs_diff] + [compare(torch.from_numpy(r), g).max_abs_diff for r, g in shape])
    if type_of_model(model) == QA:  # its two columns are a start and an end score, not classes to agree on
        p.argmax_agreement = None
    if scored is not None and scored.gold is not None:
        from distill.metrics import compute

        gold = scored.gold[scored.order]
        p.metric = scored.task.main_metric
        p.pytorch, p.onnx = (float(compute((p.metric,), x, gold, scored.task.num_labels)[p.metric])
                             for x in (ref, got))
    return p


def _real_rows(logits: np.ndarray, lengths: torch.Tensor) -> np.ndarray:
    """A token classifier's logits (batch, tokens, tags) as one row per real token, padding left out (batches of
    different lengths then concatenate); per-example logits as they are."""
    if logits.ndim != 3:
        return logits
    return logits[np.arange(logits.shape[1])[None, :] < lengths.numpy()[:, None]]


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 quantisation of an ONNX graph's weights (activations quantised at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxscript.optimizer import optimize

    with _quiet_exporter():
        # The exporter leaves the LSTM's gate-reordered weights as Slice/Concat of PyTorch's (they are above its
        # constant-folding size limit), and ONNX Runtime quantises an LSTM only when its weights are initializers:
        # folding first makes the BiLSTM's recurrence int8 too (2x its int8 throughput; no change to BERTs).
        folded = optimize(onnx.load(str(src)), input_size_limit=2**31 - 1, output_size_limit=2**31 - 1)
        quantize_dynamic(_unshare_lstm_weights(folded), Path(dst), weight_type=QuantType.QInt8)


def _unshare_lstm_weights(proto):
    """Give every LSTM node its own copy of W and R. onnxruntime's quantiser (1.32) transposes a quantised LSTM
    weight in place each time a node uses it, so the second sentence of a siamese pair BiLSTM got scrambled weights
    (its int8 logits off by half their range)."""
    import onnx

    inits = {t.name: t for t in proto.graph.initializer}
    seen: set[str] = set()
    for node in proto.graph.node:
        if node.op_type != "LSTM":
            continue
        for i in (1, 2):
            name = node.input[i]
            if name in seen and name in inits:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}_{node.name or len(seen)}_{i}"
                proto.graph.initializer.append(copy)
                node.input[i] = copy.name
            seen.add(node.input[i])
    return proto


def int8_refusal(p: Parity, min_agreement: float, max_drop: float) -> str | None:
    """Why an int8 graph is refused, or None: the class predicted must (nearly always) stay PyTorch's and the main
    metric on the task's dev examples must not drop by more than `max_drop`. Quantisation moves logits by design,
    so they are compared only where nothing else can be: a regression head without gold scores."""
    if p.argmax_agreement is not None and p.argmax_agreement < min_agreement:
        return f"argmax agreement {p.argmax_agreement:.3f} < --int8-agreement {min_agreement}"
    if p.metric is not None:
        drop = p.pytorch - p.onnx
        if not drop <= max_drop:  # also refuses NaN
            return (f"dev {p.metric} {p.onnx:.4f} in int8 against {p.pytorch:.4f} in PyTorch, a drop of {drop:.4f} > "
                    f"--int8-tolerance {max_drop}")
        return None
    if p.argmax_agreement is None:
        bound = INT8_RELATIVE * max(p.logit_range or 0.0, 1e-6)
        if not p.max_abs_diff <= bound:
            return (f"max abs score difference {p.max_abs_diff:.3g} > {INT8_RELATIVE} x the scores' range "
                    f"{p.logit_range:.3g} (no gold scores to judge the metric by)")
    return None


# ------------------------------------------------------------------ the parity batch


def run_config(path: Path, log: Callable[[str], None] = print):
    """The resolved config of the run `path` (a run folder or its `student/`) belongs to, or None."""
    run = next((p for p in (path, path.parent) if (p / "config.yaml").exists()), None)
    if run is None:
        return None
    from distill.config import load_config

    try:
        return load_config(run / "config.yaml")
    except (DistillError, OSError) as e:
        log(f"(not reading {run / 'config.yaml'}: {e})")
        return None


@dataclass
class ParityData:
    """The examples a graph is checked on: the task's dev examples (with their gold labels when they have them),
    else the built-in sentences."""
    texts: list[str]
    texts_b: list[str] | None
    gold: np.ndarray | None  # in `texts` order; None: no gold labels
    source: str
    task: object | None = None  # the run's TaskData (its metrics), when the examples are its dev split
    order: np.ndarray | None = None  # the examples' order in `batches` (by length, so that padding stays small)
    batches: list = field(default_factory=list)

    def encode(self, pred, batch_size: int = 64) -> None:
        lengths = [len(a) + len(b or "") for a, b in zip(self.texts, self.texts_b or [None] * len(self.texts),
                                                          strict=True)]
        self.order = np.argsort(lengths, kind="stable")
        self.batches = []
        for i in range(0, len(self.order), batch_size):
            rows = self.order[i:i + batch_size]
            self.batches.append(pred.encode([self.texts[j] for j in rows],
                                            [self.texts_b[j] for j in rows] if self.texts_b else None))

    def spread(self, n: int = 16) -> tuple[list[str], list[str] | None]:
        """`n` examples spread over the lengths (all when there are fewer): padded together, they check that the
        graph's axes are dynamic and that padding changes nothing."""
        rows = list(self.order) if self.order is not None else list(range(len(self.texts)))
        if len(rows) > n:
            rows = [rows[round(i * (len(rows) - 1) / (n - 1))] for i in range(n)]
        return [self.texts[j] for j in rows], [self.texts_b[j] for j in rows] if self.texts_b else None


def parity_data(cfg, log: Callable[[str], None] = print, limit: int = PARITY_EXAMPLES) -> ParityData:
    """The run's dev examples (the first `limit`) from any task source that can be read here, else the built-in
    sentences."""
    if cfg is not None:
        from distill.lab.task import gold_labels
        from distill.loaders import load_task

        try:
            task = load_task(cfg.task)
        except (DistillError, OSError, ValueError, ConnectionError) as e:  # e.g. a hub dataset, offline
            log(f"(the run's dev examples are not at hand: {str(e).splitlines()[0][:200]}; using built-in sentences)")
        else:
            dev = task.splits.get("dev", [])[:limit]
            if len(dev) >= 4:
                pair = dev[0].text_b is not None
                # Tags are scored per word, the graph's rows are per token: agreement and differences only.
                gold = None if task.type != SEQUENCE else gold_labels(dev, task.is_regression)
                return ParityData([ex.text_a for ex in dev], [ex.text_b for ex in dev] if pair else None,
                                  gold, f"the run's {cfg.task.name} dev split", task)
    return ParityData(list(SENTENCES), None, None, "built-in sentences")


# ------------------------------------------------------------------ the command


@dataclass
class ExportReport:
    onnx: str  # file names, relative to this report's folder
    exporter: str
    opset: int | None
    kind: str
    inputs: list[str]
    dynamic_axes: dict
    parity_source: str
    parity_batches: list[list[int]]  # [rows, padded length] of each batch compared
    fp32: dict
    tolerance: float
    int8: dict | None
    int8_onnx: str | None  # None: not asked for, or refused
    int8_criterion: dict | None
    int8_refused: str | None
    versions: dict
    max_length: int  # inputs cut at this many tokens (words, for the BiLSTM), as the student's run did


def _versions() -> dict:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def report_path(out: Path) -> Path:
    """`onnx.json` beside the default `model.onnx`; `<name>.json` beside any other name."""
    return out.with_name("onnx.json") if out.name == "model.onnx" else out.with_suffix(".json")


def export_student_onnx(path: str | Path, out: str | Path | None = None, int8: bool = False,
                        tolerance: float = FP32_TOLERANCE, int8_agreement: float = INT8_AGREEMENT,
                        int8_tolerance: float = INT8_METRIC_DROP, max_length: int | None = None,
                        log: Callable[[str], None] = print) -> ExportReport:
    """Export a student to ONNX (and optionally int8), each file put in place only once it passes its check on the
    run's dev examples; `onnx.json` beside it records what was measured, and the run's model card shows it."""
    from distill.io import atomic_path, write_json
    from distill.lab.predict import PredictError, load_predictor, student_folder

    for name, value, top in (("--tolerance", tolerance, None), ("--int8-agreement", int8_agreement, 1.0),
                             ("--int8-tolerance", int8_tolerance, None)):
        if not value >= 0 or (top is not None and value > top):
            raise ExportError(f"{name} {value}: expected a number >= 0" + (f" and <= {top}" if top else ""))
    path = Path(path)
    try:
        folder = student_folder(path)
        cfg = run_config(path, log)
        pred = load_predictor(folder, max_length)  # encoded as the run encoded its inputs (encoding.json)
    except PredictError as e:
        raise ExportError(str(e)) from None
    except (OSError, ValueError, KeyError, TypeError) as e:  # a config.json that is not a student's
        raise ExportError(f"{path}: not a loadable student ({type(e).__name__}: {e}); expected a run folder or "
                          "its student/ folder written by distillery") from None
    out = Path(out) if out else folder / "model.onnx"
    if out.suffix != ".onnx":
        raise ExportError(f"--out {out}: expected a file name ending in .onnx")
    model, student = pred.model.eval(), pred.student
    try:
        graph = student.graph(model)
    except DistillError as e:
        raise ExportError(str(e)) from None
    data = parity_data(cfg, log)
    if graph.pair and data.texts_b is None:
        data.texts_b = SECOND[:len(data.texts)]
    data.encode(pred)
    texts, texts_b = data.spread()
    inputs = pred.encode(texts, texts_b)
    # The first rows again, padded only to their own longest: another batch and sequence size.
    rows = max(2, len(texts) // 3)
    batches = [inputs, pred.encode(texts[:rows], texts_b[:rows] if texts_b else None)]
    first = graph.input_names[0]
    shapes = [[int(b[first].shape[0]), int(b[first].shape[1])] for b in batches]
    lengths = graph.lengths(inputs)
    log(f"exporting {folder} ({graph.kind}, inputs cut at {pred.max_length} tokens) to {out}; parity on "
        f"{len(data.texts)} {'pairs' if data.texts_b else 'texts'} ({data.source}), {shapes[0][0]} of them of "
        f"{int(lengths.min())}-{int(lengths.max())} tokens padded into one batch, and the first "
        f"{shapes[1][0]} cut to length {shapes[1][1]}")

    with atomic_path(out) as tmp:
        info = export_graph(graph, inputs, tmp)
        fp32 = check_parity(student, model, tmp, batches, data)
        log(f"fp32: max abs logit difference {fp32.max_abs_diff:.3g} (tolerance {tolerance:g}){_scored(fp32)}")
        if not fp32.max_abs_diff <= tolerance:  # `not <=` also refuses NaN
            raise ExportError(f"{out}: ONNX logits differ from PyTorch by {fp32.max_abs_diff:.3g} > --tolerance "
                              f"{tolerance:g}; nothing written")
    report = ExportReport(out.name, info["exporter"], info["opset"], info["kind"], info["inputs"],
                          info["dynamic_axes"], data.source, shapes, asdict(fp32), tolerance, None, None, None, None,
                          _versions(), pred.max_length)
    write_json(report_path(out), asdict(report))  # now, so that it never describes an older model.onnx
    if int8:
        int8_out = out.with_name(out.stem + ".int8.onnx")
        report.int8_criterion = {"min_argmax_agreement": int8_agreement, "max_metric_drop": int8_tolerance}
        with atomic_path(int8_out) as tmp:
            quantize_int8(out, tmp)
            q = check_parity(student, model, tmp, batches, data)
            report.int8 = asdict(q)
            log(f"int8: max abs logit difference {q.max_abs_diff:.3g} (logit range {q.logit_range:.3g}){_scored(q)}")
            why = int8_refusal(q, int8_agreement, int8_tolerance)
            if why:
                report.int8_refused = why
                write_json(report_path(out), asdict(report))
                # An int8 file from an earlier export would now sit beside a model.onnx it was not made from.
                stale = int8_out.exists()
                int8_out.unlink(missing_ok=True)
                raise ExportError(f"{int8_out}: int8 graph refused ({why}); {out} was written"
                                  + (", the older int8 file removed" if stale else "") + ". --int8-agreement and "
                                  "--int8-tolerance set what int8 may cost")
        report.int8_onnx = int8_out.name
        write_json(report_path(out), asdict(report))
    log(f"wrote {out}" + (f", {out.with_name(report.int8_onnx)}" if report.int8_onnx else "")
        + f" and {report_path(out)}")
    _refresh_card(path, folder, out, log)
    return report


def _scored(p: Parity) -> str:
    agree = "" if p.argmax_agreement is None else f"; argmax agreement with PyTorch {p.argmax_agreement:.3f}"
    metric = "" if p.metric is None else f"; dev {p.metric} {p.onnx:.4f} (PyTorch {p.pytorch:.4f})"
    return f"{agree}{metric} over {p.examples} examples"


def _refresh_card(path: Path, folder: Path, out: Path, log: Callable[[str], None]) -> None:
    """The run's model card shows the export's figures: rewritten when the graph sits in a finished run's student
    folder."""
    run = folder.parent
    if out.parent != folder or out.name != "model.onnx" or not (run / "metrics.json").exists():
        return
    from distill.lab.model_card import CardError, write_model_card

    try:
        write_model_card(run)
    except (CardError, OSError) as e:
        log(f"(model card not updated: {e})")

