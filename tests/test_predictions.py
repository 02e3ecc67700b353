"""Per-example predictions: the file format, and logits collected in dataset order from length-grouped batches.
(The end-to-end checks against a finished run live in test_run.py, beside its finished smoke run.)"""

import numpy as np
import pytest
import torch

from distill.predictions import PredictionsError, SplitPredictions, read_predictions, write_predictions
from distill.tasks import Example, TaskData

from .helpers import raises_with, tiny_bert_config


def test_predictions_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    dev = SplitPredictions(["d0", "d1", "d2"], rng.normal(size=(3, 3)).astype(np.float32),
                           np.array([2, 0, 1], dtype=np.int64), rng.normal(size=(3, 3)).astype(np.float32))
    test = SplitPredictions(["t0", "t1"], rng.normal(size=(2, 3)).astype(np.float32))  # unlabelled, no teacher
    meta = {"task": "toy", "labels": ["a", "b", "c"], "main_metric": "accuracy", "metrics": ["accuracy"],
            "num_labels": 3}
    path = write_predictions(tmp_path, {"dev": dev, "test": test}, meta)
    assert path == tmp_path / "predictions.safetensors"
    splits, meta_back = read_predictions(tmp_path)
    assert meta_back == meta and set(splits) == {"dev", "test"}
    assert splits["dev"].ids == dev.ids and splits["test"].ids == test.ids
    np.testing.assert_array_equal(splits["dev"].student, dev.student)
    np.testing.assert_array_equal(splits["dev"].teacher, dev.teacher)
    np.testing.assert_array_equal(splits["dev"].labels, dev.labels)
    assert splits["dev"].labels.dtype == np.int64
    assert splits["test"].labels is None and splits["test"].teacher is None

    # Regression: one output column and float scores.
    scores = SplitPredictions(["r0", "r1"], np.array([[0.5], [2.0]], dtype=np.float32),
                              np.array([0.0, 4.5], dtype=np.float32))
    back, _ = read_predictions(write_predictions(tmp_path / "reg.safetensors", {"dev": scores}))
    assert back["dev"].student.shape == (2, 1) and back["dev"].labels.dtype == np.float32
    np.testing.assert_array_equal(back["dev"].labels, scores.labels)


def test_predictions_refuse_rows_that_do_not_match_the_ids(tmp_path):
    with raises_with(PredictionsError, "student:", "3 rows", "2 example ids"):
        SplitPredictions(["a", "b"], np.zeros((3, 2), dtype=np.float32))
    with raises_with(PredictionsError, "labels:", "1 rows", "2 example ids"):
        SplitPredictions(["a", "b"], np.zeros((2, 2), dtype=np.float32), np.zeros(1, dtype=np.int64))
    with raises_with(PredictionsError, str(tmp_path), "no per-example predictions", "re-run"):
        read_predictions(tmp_path)


def test_evaluate_splits_gives_logits_in_dataset_order_from_length_grouped_batches():
    from accelerate import Accelerator
    from transformers import BertForSequenceClassification

    from distill.batching import LengthGroupedBatches
    from distill.config import TrainConfig
    from distill.encoded import encode_examples
    from distill.teachers.load import load_tokenizer
    from distill.trainer import evaluate_splits

    words = "the flight was late again thanks for a great upgrade never flying with you".split()
    rng = np.random.default_rng(1)
    examples = [Example(f"e{i}", " ".join(rng.choice(words, size=int(rng.integers(1, 12)))), None, i % 3)
                for i in range(11)]
    task = TaskData("toy", ["a", "b", "c"], ("accuracy",), {"dev": examples})
    tok = load_tokenizer("packaged:all-minilm-l6-v2")
    ds = encode_examples(examples, tok, 32)
    cfg = TrainConfig(eval_batch_size=4)
    order = [i for b in LengthGroupedBatches(ds.lengths(), 4, 0, grouped=True, shuffle=False).batches() for i in b]
    assert cfg.length_grouped and order != list(range(len(ds)))  # rows do come out of dataset order
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=len(tok))).eval()
    predictions = {}
    results = evaluate_splits(Accelerator(cpu=True), model, task, {"dev": ds}, cfg, predictions)
    assert set(predictions) == {"dev"} and set(results["dev"]) == {"accuracy"}
    got = predictions["dev"]
    assert got.shape == (len(ds), 3) and got.dtype == np.float32
    model.eval()  # evaluate() leaves the module in training mode (dropout on)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([ds.ids.row(i).tolist()]),
                                 token_type_ids=torch.tensor([ds[i]['token_type_ids'].tolist()])).logits
                           for i in range(len(ds))])
    np.testing.assert_allclose(got, alone.numpy(), atol=1e-5)
    # The metrics are those of the collected logits.
    gold = np.array([ex.label for ex in examples])
    assert results["dev"]["accuracy"] == pytest.approx(float((got.argmax(-1) == gold).mean()))


def test_rows_missing_or_repeated_are_refused():
    from distill.errors import DistillError
    from distill.trainer import in_dataset_order

    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(in_dataset_order(logits, np.array([2, 0, 1]), np.arange(4)), logits[[1, 2, 0]])
    with raises_with(DistillError, "3 rows", "3 examples", "first example that differs: 0"):
        in_dataset_order(logits, np.array([0, 0, 1]), np.arange(4))
