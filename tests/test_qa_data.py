"""Extractive QA building blocks: the SQuAD metric, the SQuAD readers, windows over long contexts, spans from
logits and the no-answer threshold. Expected values are worked out by hand in the comments, never by calling the
code under test."""

import json
import math

import numpy as np
import pytest

from distill.labels import DataError
from distill.qa_answers import Prediction, answer, best_spans, choose_null_threshold
from distill.qa_windows import QAFeatures, encode_windows
from distill.squad_data import read_squad_json, squad_rows
from distill.squad_metric import exact, f1, normalize_answer, per_question, squad_scores
from distill.tasks import Example

# ---------------------------------------------------------------- metric


def test_normalize_answer():
    # lower -> drop punctuation ("b-c!" -> "bc") -> drop whole-word articles ("a") -> collapse whitespace
    assert normalize_answer("  A  b-c!  ") == "bc"
    # "the" inside a word is not an article
    assert normalize_answer("Theory of the Cat.") == "theory of cat"
    # punctuation goes first, so "the-cat" becomes one word "thecat" and keeps its "the" (the official order)
    assert normalize_answer("the-cat") == "thecat"


def test_exact_and_f1_hand_worked():
    # "the Big cat." -> "big cat"; "a big cat" -> "big cat"
    assert exact("the Big cat.", "a big cat") == 1.0
    assert exact("big cats", "big cat") == 0.0
    # pred [big, black, cat], gold [cat]: 1 common; P = 1/3, R = 1; F1 = 2*(1/3*1)/(1/3+1) = (2/3)/(4/3) = 0.5
    assert f1("big black cat", "the cat") == pytest.approx(0.5)
    # pred {cat: 2, dog: 1}, gold {cat: 1, dog: 2}: common min counts = 1 + 1 = 2; P = R = 2/3; F1 = 2/3
    assert f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)
    assert f1("cat", "dog") == 0.0
    # empty sides: 1 only when both are empty (a correct no-answer); "the" normalises to empty
    assert f1("", "") == 1.0
    assert f1("the", "") == 1.0
    assert f1("cat", "") == 0.0
    assert f1("", "cat") == 0.0


def test_per_question_takes_the_best_gold():
    golds = {"q": ["a cat", "big black cat", "dog"], "n": [""], "t": ["the", "cat"], "u": ["a"]}
    preds = {"q": "black cat", "n": "", "t": "", "u": "", "extra": "ignored"}
    got = per_question(preds, golds)
    # "black cat" vs "cat": P = 1/2, R = 1 -> 2*(1/2)/(3/2) = 2/3; vs "big black cat": 2 common, P = 1, R = 2/3 ->
    # 2*(2/3)/(5/3) = 0.8; vs "dog": 0. Max 0.8; no gold matches exactly.
    assert got["q"] == (0.0, pytest.approx(0.8))
    assert got["n"] == (1.0, 1.0)
    # The official v2.0 script drops gold answers that normalise to nothing: "t" is scored against ["cat"] only,
    # so "" scores 0; "u" has none left and is scored against [""], so "" scores 1.
    assert got["t"] == (0.0, 0.0)
    assert got["u"] == (1.0, 1.0)
    assert list(got) == ["q", "n", "t", "u"]


def test_squad_scores_percent_and_has_ans_breakdown():
    golds = {"q1": ["the big cat"], "q2": ["the cat"], "q3": [""], "q4": [""]}
    preds = {"q1": "big cat", "q2": "big black cat", "q3": "", "q4": "dog"}
    has = {"q1": True, "q2": True, "q3": False, "q4": False}
    # per question (EM, F1): q1 (1, 1); q2 (0, 0.5) as above; q3 (1, 1) both empty; q4 (0, 0) "dog" vs ""
    got = squad_scores(preds, golds, has)
    assert got["exact_match"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)  # 50
    assert got["f1"] == pytest.approx(100 * (1 + 0.5 + 1 + 0) / 4)  # 62.5
    assert got["HasAns_exact"] == pytest.approx(100 * (1 + 0) / 2)  # 50
    assert got["HasAns_f1"] == pytest.approx(100 * (1 + 0.5) / 2)  # 75
    assert got["NoAns_exact"] == pytest.approx(100 * (1 + 0) / 2)  # 50
    assert got["NoAns_f1"] == pytest.approx(100 * (1 + 0) / 2)  # 50
    assert got["HasAns_total"] == 2 and got["NoAns_total"] == 2
    # v1.1: no has_answer, the two headline numbers only
    assert set(squad_scores(preds, golds)) == {"exact_match", "f1"}


def test_missing_predictions_are_named():
    golds = {"q1": ["cat"], "q2": ["dog"], "q3": ["cow"]}
    with pytest.raises(DataError, match=r"2 of 3 questions, first: \['q2', 'q3'\]"):
        squad_scores({"q1": "cat"}, golds)


# ---------------------------------------------------------------- reading SQuAD

# "The cat sat on the mat." -> T0 h1 e2 _3 c4 a5 t6 _7 s8 a9 t10 _11 o12 n13 _14 t15 h16 e17 _18 m19 a20 t21 .22
CAT = "The cat sat on the mat."
# "Dogs bark loudly." -> "bark" at 5
DOG = "Dogs bark loudly."


def _v11() -> dict:
    return {"version": "1.1", "data": [
        {"title": "Cats", "paragraphs": [{"context": CAT, "qas": [
            {"id": "q1", "question": " Where did the cat sit?",
             # a dev file's several answers; the third repeats the first
             "answers": [{"text": "the mat", "answer_start": 15}, {"text": "mat", "answer_start": 19},
                         {"text": "the mat", "answer_start": 15}]},
            {"id": "q2", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]},
        ]}]},
        {"title": "Dogs", "paragraphs": [{"context": DOG, "qas": [
            {"id": "q3", "question": "What do dogs do?", "answers": [{"text": "bark", "answer_start": 5}]},
        ]}]},
    ]}


def _v20() -> dict:
    doc = _v11()
    qas = doc["data"][1]["paragraphs"][0]["qas"]
    qas[0]["is_impossible"] = False
    qas.append({"id": "q4", "question": "What do cats do?", "is_impossible": True, "answers": [],
                "plausible_answers": [{"text": "bark", "answer_start": 5}]})
    return doc


def _write(tmp_path, doc, name="squad.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_read_squad_v11(tmp_path):
    examples, version = read_squad_json(_write(tmp_path, _v11()))
    assert version == "1.1"
    assert [ex.id for ex in examples] == ["q1", "q2", "q3"]
    q1 = examples[0]
    assert q1 == Example("q1", "Where did the cat sit?", CAT, None, (("the mat", 15), ("mat", 19)))
    assert examples[2].answers == (("bark", 5),)


def test_read_squad_v20(tmp_path):
    examples, version = read_squad_json(_write(tmp_path, _v20()))
    assert version == "2.0"
    assert [ex.id for ex in examples] == ["q1", "q2", "q3", "q4"]
    assert examples[3].answers == ()  # plausible_answers are not answers
    assert examples[2].answers == (("bark", 5),)


def _set(path_keys, value):
    def edit(doc):
        *head, last = path_keys
        node = doc
        for k in head:
            node = node[k]
        node[last] = value
        return doc
    return edit


def _drop(path_keys):
    def edit(doc):
        *head, last = path_keys
        node = doc
        for k in head:
            node = node[k]
        del node[last]
        return doc
    return edit


Q0 = ["data", 0, "paragraphs", 0, "qas", 0]


@pytest.mark.parametrize("edit, needles", [
    (lambda d: "{not json", [":1:", "not JSON"]),
    (lambda d: {"version": "1.1"}, ['list under "data"']),
    (_drop(["data", 0, "paragraphs", 0, "context"]), ["data[0].paragraphs[0]", "no key 'context'"]),
    (_set(["data", 0, "paragraphs", 0], "text"), ["data[0].paragraphs[0]", "expected an object"]),
    (_set([*Q0, "answers", 0, "answer_start"], "15"),
     ["data[0].paragraphs[0].qas[0].answers[0].answer_start", "expected an integer"]),
    # context[14:21] is " the ma": a start one character early
    (_set([*Q0, "answers", 0, "answer_start"], 14),
     ["data[0].paragraphs[0].qas[0].answers[0]", "'q1'", "expected the answer text 'the mat'", "' the ma'",
      "occurs at character 15"]),
    (_set([*Q0, "answers", 0, "answer_start"], 500), ["answers[0]", "'q1'", "23 characters"]),
    (_set(["data", 0, "paragraphs", 0, "qas", 1, "id"], "q1"),
     ["data[0].paragraphs[0].qas[1]", "'q1'", "already used at data[0].paragraphs[0].qas[0]", "unique"]),
    (_set([*Q0, "is_impossible"], True), ["data[0].paragraphs[0].qas[0]", "'q1'", "is_impossible is true",
                                          "expected an empty"]),
    (_set([*Q0, "is_impossible"], "yes"), ["qas[0]", "is_impossible", "expected true or false"]),
    (_set([*Q0, "answers"], []), ["data[0].paragraphs[0].qas[0]", "'q1'", "expected at least one answer"]),
    (_set([*Q0, "answers"], {"text": "the mat"}), ["qas[0].answers", "expected a list"]),
    (_set([*Q0, "question"], "  "), ["qas[0]", "'q1'", "question", "empty"]),
    (_drop(["data", 1, "paragraphs", 0, "qas", 0, "id"]), ["data[1].paragraphs[0].qas[0]", "no key 'id'"]),
])
def test_malformed_squad_json_names_file_place_and_expectation(tmp_path, edit, needles):
    path = _write(tmp_path, edit(_v11()))
    with pytest.raises(DataError) as err:
        read_squad_json(path)
    message = str(err.value)
    for needle in [str(path), *needles]:
        assert needle in message, (needle, message)


def _rows():
    return [
        {"id": "a", "title": "Cats", "context": CAT, "question": "Where?",
         "answers": {"text": ["the mat", "mat"], "answer_start": [15, 19]}},
        {"id": "b", "title": "Cats", "context": CAT, "question": "Why?", "answers": {"text": [], "answer_start": []}},
    ]


def test_squad_rows():
    examples = squad_rows(_rows(), "squad_v2/validation")
    assert examples == [Example("a", "Where?", CAT, None, (("the mat", 15), ("mat", 19))),
                        Example("b", "Why?", CAT, None, ())]


@pytest.mark.parametrize("edit, needles", [
    (lambda r: r[1]["answers"].update(text=["cat"]), ["row 1", "'b'", "1 texts but 0 answer_starts"]),
    # context[16:23] is "he mat.": one character late
    (lambda r: r[0]["answers"].update(answer_start=[16, 19]), ["row 0", "'a'", "expected the answer text 'the mat'",
                                                                "'he mat.'"]),
    (lambda r: r[1].update(id="a"), ["row 1", "already used at row 0"]),
    (lambda r: r[0].pop("context"), ["row 0", "no key 'context'"]),
])
def test_malformed_squad_rows(edit, needles):
    rows = _rows()
    edit(rows)
    with pytest.raises(DataError) as err:
        squad_rows(rows, "squad_v2/validation")
    for needle in ["squad_v2/validation", *needles]:
        assert needle in str(err.value), (needle, str(err.value))


# ---------------------------------------------------------------- windows

WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
         "eighteen nineteen twenty").split()
# Character starts: one 0, two 4, three 8, four 14, five 19, six 24, seven 28, eight 34
NUMBERS = " ".join(WORDS)


def test_window_premises(tokenizer):
    # The hand counts below rest on these: every number word is one WordPiece token; the questions are 3 and 2.
    assert tokenizer.tokenize(NUMBERS) == WORDS
    assert tokenizer.tokenize("how many?") == ["how", "many", "?"]
    assert tokenizer.tokenize("what?") == ["what", "?"]


def test_windows_answer_cut_and_whole(tokenizer):
    ex = Example("a", "how many?", NUMBERS, None, (("six seven", 24),))
    f = encode_windows([ex], tokenizer, max_length=12, doc_stride=2)
    # room = 12 - 3 question - 3 special = 6 context tokens; step = 6 - 2 overlap = 4: windows start at context
    # tokens 0, 4, 8, 12, 16 (the last holds 16..19): 1 + ceil((20 - 6) / 4) = 1 + ceil(3.5) = 5 windows
    assert len(f) == 5 and f.example == [0] * 5
    # Window 0 holds one..six: "seven" is cut off -> [CLS]. Window 1 holds five..ten at positions 5..10
    # ([CLS] how many ? [SEP] = positions 0..4): six at 6, seven at 7. The others do not hold it.
    assert list(zip(f.start_positions, f.end_positions, strict=True)) == [(0, 0), (6, 7), (0, 0), (0, 0), (0, 0)]
    ids = f.input_ids[1]
    assert normalize_answer(tokenizer.decode(ids[6:8])) == "six seven"
    assert f.context_spans[1][6] == (24, 27) and f.context_spans[1][7] == (28, 33)
    # Question and special tokens are not context: [CLS] how many ? [SEP] ... [SEP]
    for spans in f.context_spans:
        assert spans[:5] == [(-1, -1)] * 5 and spans[-1] == (-1, -1)
    assert f.context_spans[1][5] == (19, 23)  # "five"
    assert f.token_type_ids[1] == [0] * 5 + [1] * 7


def test_windows_unanswerable_and_first_answer(tokenizer):
    no = Example("n", "what?", NUMBERS, None, ())
    two = Example("t", "how many?", NUMBERS, None, (("seven", 28), ("six", 24)))
    f = encode_windows([no, two], tokenizer, max_length=12, doc_stride=2)
    # "what?": room = 12 - 2 - 3 = 7, step = 5: starts 0, 5, 10, 15 -> 1 + ceil((20 - 7) / 5) = 1 + 3 = 4 windows;
    # then "how many?" gives 5 as above.
    assert f.example == [0] * 4 + [1] * 5
    assert f.start_positions[:4] == [0] * 4 and f.end_positions[:4] == [0] * 4
    # The first answer ("seven", context token 6) counts: window 1 of "how many?" puts it at 5 + (6 - 4) = 7.
    assert f.start_positions[4:] == [0, 7, 0, 0, 0] and f.end_positions[4:] == [0, 7, 0, 0, 0]


def test_windows_answer_whitespace_and_single_window(tokenizer):
    # A trailing space belongs to no token: "six " ends at "six". A short context is one window.
    ex = Example("s", "how many?", "one two six", None, (("six ", 8),))
    f = encode_windows([ex], tokenizer, max_length=32, doc_stride=8)
    # [CLS] how many ? [SEP] one two six [SEP]: six at 5 + 2 = 7
    assert len(f) == 1 and (f.start_positions[0], f.end_positions[0]) == (7, 7)


def test_windows_question_cut_and_no_room(tokenizer):
    ex = Example("w", "why " * 100, NUMBERS, None, ())
    f = encode_windows([ex], tokenizer, max_length=40, doc_stride=4, max_query_length=5)
    # 5 question tokens + 20 context + 3 special = 28 <= 40: one window with token_type 0 for [CLS] 5x why [SEP]
    assert len(f) == 1 and f.token_type_ids[0].count(0) == 7 and len(f.input_ids[0]) == 28
    # "how many?" is 3 tokens: room = 8 - 3 - 3 = 2, not more than the stride 2
    with pytest.raises(DataError, match=r"example 0 \('a'\): max_length 8 - 3 question tokens - 3 special tokens "
                                        r"leaves room for 2 context tokens.*doc_stride 2"):
        encode_windows([Example("a", "how many?", NUMBERS, None, ())], tokenizer, max_length=8, doc_stride=2)
    with pytest.raises(DataError, match=r"max_length 6 - 3 question tokens .* no room"):
        encode_windows([Example("a", "how many?", NUMBERS, None, ())], tokenizer, max_length=6, doc_stride=0)


# ---------------------------------------------------------------- spans from logits

# "alpha beta gamma delta": alpha (0, 5), beta (6, 10), gamma (11, 16), delta (17, 22)
GREEK = "alpha beta gamma delta"
N = (-1, -1)


def _greek_features() -> QAFeatures:
    # Window 0: [CLS] q [SEP] alpha beta gamma [SEP]; window 1: [CLS] q [SEP] gamma delta [SEP]
    return QAFeatures(input_ids=[[0] * 7, [0] * 6], token_type_ids=[[0] * 7, [0] * 6], start_positions=[0, 0],
                      end_positions=[0, 0], example=[0, 0],
                      context_spans=[[N, N, N, (0, 5), (6, 10), (11, 16), N], [N, N, N, (11, 16), (17, 22), N]])


def test_best_span_in_second_window_skipping_question_tokens():
    ex = Example("g", "q", GREEK, None, ())
    start = [np.array([1.0, 5.0, 0, 2.0, 0, 0, 0]), np.array([0.5, 0, 0, 1.0, 3.0, 0])]
    end = [np.array([1.0, 0, 0, 0, 1.0, 0, 0]), np.array([0.5, 0, 0, 0, 2.5, 0])]
    (pred,) = best_spans(_greek_features(), start, end, [ex])
    # Window 0: the question token 1 (start 5.0) + beta (end 1.0) = 6.0 would win but starts in the question;
    # the best valid span is alpha..beta = 2.0 + 1.0 = 3.0. Window 1: delta..delta = 3.0 + 2.5 = 5.5 beats
    # gamma..delta = 1.0 + 2.5 = 3.5. Best: "delta" (characters 17..22), 5.5.
    # Null: window 0 CLS 1.0 + 1.0 = 2.0, window 1 0.5 + 0.5 = 1.0; the minimum is 1.0.
    assert pred == Prediction("g", "delta", 5.5, 1.0)
    assert answer(pred, None) == "delta"
    # null - score = 1.0 - 5.5 = -4.5: not above 0 -> the span; above -5 -> no answer
    assert answer(pred, 0.0) == "delta"
    assert answer(pred, -5.0) == ""
    # null 8.0 - score 5.5 = 2.5 > 0 -> no answer; with threshold 3 the span stays
    assert answer(Prediction("g", "delta", 5.5, 8.0), 0.0) == ""
    assert answer(Prediction("g", "delta", 5.5, 8.0), 3.0) == "delta"


def test_best_span_max_answer_length_and_no_valid_span():
    ex = Example("g", "q", GREEK, None, ())
    f = _greek_features()
    start = [np.array([0, 0, 0, 4.0, 0, 1.0, 0]), np.zeros(6)]
    end = [np.array([0, 0, 0, 0, 0, 4.0, 0]), np.zeros(6)]
    # Unlimited: alpha..gamma (3 tokens) = 4 + 4 = 8.
    (pred,) = best_spans(f, start, end, [ex])
    assert (pred.text, pred.score) == ("alpha beta gamma", 8.0)
    # At most 2 tokens: alpha..gamma is skipped. Window 0 candidates: alpha = 4 + 0, alpha..beta = 4 + 0,
    # beta..gamma = 0 + 4, gamma = 1 + 4 = 5. Window 1, all zeros: 0. Best: gamma (11..16), 5.
    (pred,) = best_spans(f, start, end, [ex], max_answer_length=2)
    assert (pred.text, pred.score) == ("gamma", 5.0)
    # n_best 1: window 0 tries only start alpha (3) with end gamma (5): 3 tokens, too long; window 1 (all ties)
    # tries only token 0 ([CLS]), not context. No span: "" and -inf; null min(0 + 0, 0 + 0) = 0.
    (pred,) = best_spans(f, start, end, [ex], n_best=1, max_answer_length=2)
    assert pred == Prediction("g", "", -math.inf, 0.0)
    assert answer(pred, None) == "" and answer(pred, 0.0) == ""


def test_best_spans_checks_logit_lengths():
    ex = Example("g", "q", GREEK, None, ())
    with pytest.raises(DataError, match="window 1 has 6 tokens but 7 start"):
        best_spans(_greek_features(), [np.zeros(7), np.zeros(7)], [np.zeros(7), np.zeros(6)], [ex])


# ---------------------------------------------------------------- no-answer threshold


def _p(qid, text, diff):
    # score 0, so null_score - score = diff
    return Prediction(qid, text, 0.0, diff)


def test_choose_null_threshold_hand_worked():
    golds = {"q1": ["cat"], "q2": ["dog"], "q3": [""], "q4": [""]}
    preds = [_p("q1", "cat", -2.0), _p("q2", "red dog", 1.0), _p("q3", "bird", 2.0), _p("q4", "fish", 3.0)]
    # Answered F1: q1 1; q2 "red dog" vs "dog": P = 1/2, R = 1 -> 2/3; q3, q4 0. As "": q1, q2 0; q3, q4 1.
    # A question is answered when its difference <= t:
    #   t = -inf: 0 + 0 + 1 + 1 = 2
    #   t = -2 (q1): 1 + 0 + 1 + 1 = 3
    #   t = 1 (q1, q2): 1 + 2/3 + 1 + 1 = 3.667   <- best, F1 = 91.67%
    #   t = 2 (q1..q3): 1 + 2/3 + 0 + 1 = 2.667
    #   t = 3 (all): 1 + 2/3 + 0 + 0 = 1.667
    t = choose_null_threshold(preds, golds)
    assert t == 1.0
    by_id = {p.id: answer(p, t) for p in preds}
    assert by_id == {"q1": "cat", "q2": "red dog", "q3": "", "q4": ""}
    assert squad_scores(by_id, golds)["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 1) / 4)


def test_choose_null_threshold_ties_and_groups():
    # q1 answered gains 1 at t = 1; q2 answered ("cow" vs "dog") gains nothing at t = 2: totals -inf 0, 1: 1, 2: 1.
    # The tie goes to the smaller threshold, 1.
    assert choose_null_threshold([_p("q1", "cat", 1.0), _p("q2", "cow", 2.0)], {"q1": ["cat"], "q2": ["dog"]}) == 1.0
    # All null is best (the only question has no answer): -inf.
    assert choose_null_threshold([_p("q1", "cat", 0.0)], {"q1": [""]}) == -math.inf
    # Equal differences switch together: at t = 1 q1 (+1) and q2 (-1) are both answered: -inf 2, 1: 2, 5: 1.
    # No strict gain over all-null, so -inf (walking q1 alone, the official script would report 1 with 3).
    preds = [_p("q1", "cat", 1.0), _p("q2", "x", 1.0), _p("q3", "y", 5.0)]
    assert choose_null_threshold(preds, {"q1": ["cat"], "q2": [""], "q3": [""]}) == -math.inf
    with pytest.raises(DataError, match=r"first: \['q3'\]"):
        choose_null_threshold(preds[:2], {"q1": ["cat"], "q2": [""], "q3": [""]})
