"""Token classification through the engine: word-to-piece tag alignment, per-word rows of both models, the losses
and metrics on them (padding, later pieces and special tokens excluded), the gate's baseline, the BiLSTM's
per-word head, and QA heads' span rows. Every number is computed by hand or by an independent formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill.adaptor import MASKED_POSITION, Record, head_rows, span_rows
from distill.batching import PadCollator
from distill.encoded import encode_examples, piece_tags
from distill.losses import LossContext, gold_rows, hard_ce, kl_div, soft_cross_entropy
from distill.metrics import compute_task, tag_counts
from distill.tasks import Example, TaskData

from .helpers import raises_with


def tagged(name: str, labels: list[str], scheme: str | None, splits: dict | None = None) -> TaskData:
    from distill.tag_metrics import tag_metrics

    return TaskData(name, labels, tag_metrics(scheme), splits or {}, type="token_classification", scheme=scheme)


def test_each_word_is_tagged_at_its_first_piece_only():
    # [CLS] par ##is is [SEP]: word 0 has two pieces, word 1 one; specials and the second piece are ignored.
    assert piece_tags((3, 5), [None, 0, 0, 1, None]) == [-100, 3, -100, 5, -100]


def test_an_encoded_tagged_split_holds_the_tags_at_first_pieces_and_cuts_whole_words(tokenizer):
    words = ["Paris", "is", "unaffordable"]
    pieces = [tokenizer.tokenize(w) for w in words]  # by hand: each word's pieces on its own
    assert len(pieces[2]) > 1  # the test needs a word of several pieces
    ex = Example("s-1", " ".join(words), None, (1, 0, 2))
    ds = encode_examples([ex], tokenizer, 64, log=lambda *_: None)
    expected = [-100] + [t for p, t in zip(pieces, (1, 0, 2), strict=True) for t in [t] + [-100] * (len(p) - 1)]
    assert ds.tags.row(0).tolist() == expected + [-100]
    assert ds.row_offsets().tolist() == [0, 3]
    assert ds[0]["row_start"] == 0 and ds.labels.tolist() == [-100]
    # 4 tokens: [CLS], Paris's pieces, [SEP] hold only the first word when Paris is one piece and is, too.
    short = encode_examples([ex], tokenizer, 1 + len(pieces[0]) + len(pieces[1]) + 1, log=lambda *_: None)
    assert short.row_offsets().tolist() == [0, 2]


def test_a_stream_mixing_tagged_sentences_with_other_examples_is_refused(tokenizer):
    mixed = [Example("a", "x y", None, (0, 1)), Example("b", "x y", None, 1)]
    with raises_with(ValueError, "mixes tagged sentences"):
        encode_examples(mixed, tokenizer, 16, log=lambda *_: None)


def test_the_collator_pads_tags_with_ignored_positions_and_locates_each_batchs_word_rows():
    items = [{"input_ids": np.array([1, 2, 3]), "token_type_ids": np.zeros(3, np.uint8),
              "labels": np.array([-100, 4, -100], np.int16), "index": 0, "row_start": 7},
             {"input_ids": np.array([1, 2, 3, 4, 5]), "token_type_ids": np.zeros(5, np.uint8),
              "labels": np.array([-100, 1, 2, -100, -100], np.int16), "index": 1, "row_start": 2}]
    batch = PadCollator(0)(items)
    assert batch["labels"].tolist() == [[-100, 4, -100, -100, -100], [-100, 1, 2, -100, -100]]
    assert batch["rows"].tolist() == [7, 2, 3]  # example 0's one word at row 7, example 1's two at rows 2 and 3


def _batch():
    labels = torch.tensor([[-100, 1, -100, 2], [-100, 0, -1, -100]])
    return {"labels": labels, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}


def test_a_token_classifiers_rows_are_its_words_first_pieces_in_row_major_order():
    logits = torch.arange(24.0).reshape(2, 4, 3)
    rows, at = head_rows(logits, _batch())
    # labelled positions (0,1), (0,3), (1,1), (1,2): the -1 of an unknown tag still is a word's first piece.
    assert rows.tolist() == [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0], [15.0, 16.0, 17.0], [18.0, 19.0, 20.0]]
    rec = Record(logits=rows, attention_mask=_batch()["attention_mask"], token_rows=at)
    assert gold_rows(rec, _batch()).tolist() == [1, 2, 0, -100]  # the unknown tag is ignored
    # One row per example: the labels as they are (regression scores below 0 are not touched).
    flat = Record(logits=torch.zeros(2, 1), attention_mask=torch.ones(2, 3))
    assert gold_rows(flat, {"labels": torch.tensor([-0.5, 2.0])}).tolist() == [-0.5, 2.0]


def test_prediction_losses_on_words_match_a_hand_computation_and_ignore_every_other_position():
    torch.manual_seed(0)
    batch = _batch()
    z_s, z_t = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    s = Record(*head_rows(z_s, batch)[:1], batch["attention_mask"], token_rows=head_rows(z_s, batch)[1])
    t = Record(head_rows(z_t, batch)[0], batch["attention_mask"], token_rows=head_rows(z_t, batch)[1])
    ctx = LossContext([])
    words = [(0, 1), (0, 3), (1, 1), (1, 2)]
    by_hand = sum(-(F.softmax(z_t[b, p] / 2, -1) * F.log_softmax(z_s[b, p] / 2, -1)).sum() for b, p in words) / 4
    assert float(soft_cross_entropy(s, t, batch, ctx, temperature=2.0)) == pytest.approx(float(by_hand), rel=1e-6)
    kl = sum((F.softmax(z_t[b, p], -1) * (F.log_softmax(z_t[b, p], -1) - F.log_softmax(z_s[b, p], -1))).sum()
             for b, p in words) / 4
    assert float(kl_div(s, t, batch, ctx, temperature=1.0)) == pytest.approx(float(kl), rel=1e-6)
    gold = [(0, 1, 1), (0, 3, 2), (1, 1, 0)]  # the unknown tag at (1, 2) is not scored
    ce = sum(-F.log_softmax(z_s[b, p], -1)[g] for b, p, g in gold) / 3
    assert float(hard_ce(s, None, batch, ctx)) == pytest.approx(float(ce), rel=1e-6)
    # Anything at padding, specials or later pieces changes nothing.
    z_s2 = z_s.clone()
    z_s2[0, 0], z_s2[0, 2], z_s2[1, 3] = 100.0, -100.0, 55.0
    s2 = Record(head_rows(z_s2, batch)[0], batch["attention_mask"], token_rows=head_rows(z_s2, batch)[1])
    assert float(soft_cross_entropy(s2, t, batch, ctx)) == pytest.approx(float(soft_cross_entropy(s, t, batch, ctx)))


def test_qa_span_rows_mask_padding_and_their_kl_is_the_hf_squad_distillation_loss():
    torch.manual_seed(1)
    start_s, end_s, start_t, end_t = (torch.randn(2, 5) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    rows = span_rows(start_s, end_s, mask)
    assert rows.shape == (4, 5) and torch.equal(rows[1], end_s[0]) and torch.equal(rows[2, :3], start_s[1, :3])
    assert (rows[3, 3:] == MASKED_POSITION).all()
    s = Record(rows, mask)
    t = Record(span_rows(start_t, end_t, mask), mask)
    temp = 2.0

    def kl(zs, zt):  # run_squad_w_distillation: KLDivLoss(batchmean) of log_softmax(s/T) against softmax(t/T)
        return F.kl_div(F.log_softmax(zs / temp, -1), F.softmax(zt / temp, -1), reduction="sum")

    # By hand, each example over its own real positions only, start and end averaged, times T^2.
    starts = kl(start_s[0], start_t[0]) + kl(start_s[1, :3], start_t[1, :3])
    ends = kl(end_s[0], end_t[0]) + kl(end_s[1, :3], end_t[1, :3])
    by_hand = (starts / 2 + ends / 2) / 2 * temp**2
    assert float(kl_div(s, t, {}, LossContext([]), temperature=temp)) == pytest.approx(float(by_hand), rel=1e-5)
    # The gold start and end per example line up with the rows: CE of (start, end) averaged, as BertForQA.
    batch = {"labels": torch.tensor([[1, 3], [0, 2]])}
    ce = (-F.log_softmax(start_s[0], -1)[1] - F.log_softmax(end_s[0], -1)[3]
          - F.log_softmax(start_s[1, :3], -1)[0] - F.log_softmax(end_s[1, :3], -1)[2]) / 4
    assert float(hard_ce(s, None, batch, LossContext([]))) == pytest.approx(float(ce), rel=1e-5)


def test_entity_f1_from_word_rows_in_any_example_order_matches_a_hand_count():
    labels = ["O", "B-PER", "I-PER", "B-LOC"]
    task = tagged("ner", labels, "BIO")
    # Sentence 0: gold PER(0-1) LOC(3); predicted PER(0-1) only. Sentence 1: gold LOC(0); predicted LOC(0) PER(1).
    # Right 2, predicted 3, gold 3: P = R = F1 = 2/3. Words right: 3 of 4 and 1 of 2 -> 4/6.
    gold = np.array([1, 2, 0, 3, 3, 0])
    pred = np.array([1, 2, 0, 0, 3, 1])
    example = np.array([0, 0, 0, 0, 1, 1])
    order = np.array([4, 0, 5, 1, 2, 3])  # sentence 1's words first, as a length-grouped loader gives them
    logits = np.eye(4)[pred]
    scores = compute_task(task, logits[order], gold[order], example[order])
    assert scores == pytest.approx({"entity_f1": 2 / 3, "token_accuracy": 4 / 6})
    counts = tag_counts("entity_f1", logits, gold, np.array([0, 4, 6]), labels)
    assert counts.tolist() == [[1, 1, 2], [1, 2, 1]]  # (right, predicted, gold) per sentence
    accuracy = tag_counts("token_accuracy", logits, gold, np.array([0, 4, 6]), labels)
    assert accuracy.tolist() == [[3, 4, 4], [1, 2, 2]]


def test_the_sentence_bootstrap_recomputes_micro_scores_from_summed_counts():
    from distill.lab.uncertainty import metric_replicates, metric_value

    counts = np.array([[1, 1, 2], [1, 2, 1], [0, 0, 0]])
    gold = np.zeros(3)
    assert metric_value("entity_f1", counts, gold, 3) == pytest.approx(2 * 2 / (3 + 3))
    # Draw sentence 0 twice and sentence 2: right 2, predicted 2, gold 4 -> F1 = 4 / 6; recall 2 / 4.
    idx = np.array([[0, 0, 2]])
    assert metric_replicates("entity_f1", counts, gold, 3, idx)[0] == pytest.approx(4 / 6)
    assert metric_replicates("entity_recall", counts, gold, 3, idx)[0] == pytest.approx(0.5)
    # No entity drawn at all: 0, as conlleval.
    assert metric_replicates("entity_f1", counts, gold, 3, np.array([[2, 2, 2]]))[0] == 0.0


def test_rows_return_to_dataset_order_and_a_missing_word_is_refused():
    from distill.errors import DistillError
    from distill.trainer import in_dataset_order

    logits = np.arange(10.0).reshape(5, 2)
    index = np.array([1, 0, 0, 1, 1])  # example 1's three words came first, interleaved with example 0's two
    offsets = np.array([0, 2, 5])
    assert in_dataset_order(logits, index, offsets).tolist() == [[2, 3], [4, 5], [0, 1], [6, 7], [8, 9]]
    with raises_with(DistillError, "4 rows", "expected 5", "first example that differs: 1"):
        in_dataset_order(logits[:4], index[:4], offsets)


def test_gathering_word_rows_pads_and_unpads_them_per_example():
    from accelerate import Accelerator

    from distill.trainer import gather_rows

    at = torch.tensor([[False, True, True, False], [False, True, False, False]])
    rows, gold = torch.arange(6.0).reshape(3, 2), torch.tensor([4, 5, 6])
    got, got_gold, example = gather_rows(Accelerator(cpu=True), rows, gold, torch.tensor([7, 9]), at)
    assert torch.equal(got, rows) and got_gold.tolist() == [4, 5, 6] and example.tolist() == [7, 7, 9]


def test_the_gate_baseline_is_the_majority_tags_share_and_zero_entity_f1_for_ner():
    from distill.teachers.gate import majority_baseline

    pos = tagged("pos", ["dt", "nn", "vb"], None)
    train = [Example("t", "a b c", None, (0, 1, 1))]  # nn is the most frequent tag
    dev = [Example("d1", "a b", None, (1, 2)), Example("d2", "a b c", None, (1, 1, 0))]
    assert majority_baseline(pos, train, dev) == pytest.approx(3 / 5)
    assert majority_baseline(pos, train, dev, counts=np.array([1, 2])) == pytest.approx(3 / 3)  # kept words only
    ner = tagged("ner", ["O", "B-PER"], "BIO")
    assert majority_baseline(ner, [Example("t", "a b", None, (0, 0))], [Example("d", "a b", None, (1, 0))]) == 0.0


def test_the_bilstm_tagger_reads_one_word_per_tag_and_its_padded_form_equals_the_packed_one():
    from distill.students.bilstm import BiLSTMClassifier, BiLSTMConfig, WordVocab, words_of

    assert words_of("Don't stop-now", tagged=True) == ["don't", "stop-now"]  # the task's words, not re-split
    vocab = WordVocab(["a", "b"], tagged=True)
    assert vocab.encode("a B c") == [3, 4, 1]
    torch.manual_seed(0)
    model = BiLSTMClassifier(BiLSTMConfig(10, 6, hidden=5, fc=7, num_labels=3, tagger=True)).eval()
    ids, lengths = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
    packed = model(ids, lengths)
    assert packed.shape == (2, 4, 3)
    padded = model.forward_padded(ids, lengths)
    real = torch.arange(4)[None, :] < lengths[:, None]
    assert torch.allclose(packed[real], padded[real], atol=1e-6)
    # Word 0 of sentence 1 depends on word 1 (the backward direction) but not on the padding after it.
    assert torch.allclose(model(torch.tensor([[7, 8, 9]]), torch.tensor([2]))[0, :2], packed[1, :2], atol=1e-6)


def test_tinybert_augmentation_of_tagged_sentences_keeps_entity_words_and_unknowns_replaced_tags():
    from distill.augment.tinybert import TinyBertAugmenter
    from distill.config import TinyBertAugmentConfig

    aug = TinyBertAugmenter(TinyBertAugmentConfig(p_replace=0.4), 2000, None, None, None, None)
    aug.protect = frozenset({1, 2})  # B-PER, I-PER
    words = ["Ann", "Lee", "visited", "the", "museum"]
    tags = (1, 2, 0, 0, 0)
    cands = [["Bob"], ["Smith"], ["saw"], [], ["park", "zoo"]]  # "the" has no candidate (a stopword)
    rng = np.random.default_rng(0)
    copies = [aug.rewrite_tagged(words, cands, tags, rng) for _ in range(2000)]
    assert all(text.split(" ")[:2] == ["Ann", "Lee"] and len(text.split(" ")) == 5 for text, _, _ in copies)
    for text, b, label in copies:
        new = text.split(" ")
        assert b is None
        assert label == tuple(-1 if w != old else t for w, old, t in zip(new, words, tags, strict=True))
    # Each eligible word is replaced with probability p_t = 0.4: over 2000 copies the share lies within 4.5 standard
    # errors (sqrt(0.4 * 0.6 / 2000) = 0.011) of 0.4.
    for i in (2, 4):
        share = np.mean([text.split(" ")[i] != words[i] for text, _, _ in copies])
        assert abs(share - 0.4) < 0.05
    assert all(text.split(" ")[3] == "the" for text, _, _ in copies)


def test_augmented_rows_of_tagged_copies_keep_their_own_tags_through_the_jsonl_file(tmp_path):
    import json

    from distill.augment.runner import iter_augmented, rows_for

    ex = Example("s1", "Ann visited the museum", None, (1, 0, 0, 0))
    rows, dropped = rows_for([ex], [[("Ann saw the museum", None, (1, -1, 0, 0)),
                                     ("Ann visited the museum", None, (1, 0, 0, 0))]], "tinybert")
    assert dropped == 1 and [r["label"] for r in rows] == [(1, 0, 0, 0), (1, -1, 0, 0)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    back = list(iter_augmented(path))
    assert [b.label for b in back] == [(1, 0, 0, 0), (1, -1, 0, 0)]  # tuples again, as the encoder needs


def test_tangs_augmentation_is_refused_for_tagged_sentences(tmp_path):
    from distill.config import ConfigError, load_config
    from distill.lab.preflight import check_task_type
    from distill.student_registry import get_student

    from .helpers import smoke_with

    body = ("task: {name: x, source: conll, path: /tmp}\naugment: {method: tang}\n"
            "stages: [{name: prediction, data: augmented}]\n")
    cfg = load_config(smoke_with(tmp_path, body))
    with raises_with(ConfigError, "`augment.method: tang`", "token_classification", "`augment.method: tinybert`"):
        check_task_type(cfg, get_student("tinybert"))


def test_conllu_multiword_tokens_and_empty_nodes_are_not_words(tmp_path):
    from distill.conll import read_conll

    path = tmp_path / "a.conllu"
    path.write_text("# text = del mar\n1-2\tdel\t_\t_\n1\tde\tde\tADP\n2\tel\tel\tDET\n3\tmar\tmar\tNOUN\n"
                    "3.1\tvi\tver\tVERB\n\n")
    assert read_conll(path, word_column=1, tag_column=3) == [(f"{path}:3", ["de", "el", "mar"], ["ADP", "DET", "NOUN"])]
