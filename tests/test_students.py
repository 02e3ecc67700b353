import torch
from transformers import BertForSequenceClassification

from distill.students import get_student
from distill.students.common import StudentError
from distill.students.tinybert import TinyBertStudentConfig as StudentConfig
from distill.students.tinybert import student_shape

from .helpers import raises_with, tiny_bert_config


def teacher(**kw):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_hidden_layers=4, **kw))


def test_presets_and_overrides():
    tc = tiny_bert_config()
    assert student_shape(StudentConfig(preset="4l-312"), tc) == {"layers": 4, "hidden": 312, "heads": 12, "ffn": 1200}
    assert student_shape(StudentConfig(preset="6l-768", layers=3), tc)["layers"] == 3
    assert student_shape(StudentConfig(layers=1), tc) == {"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}
    with raises_with(StudentError, "'2l-128'", "presets", "'4l-312'"):
        student_shape(StudentConfig(preset="2l-128"), tc)
    with raises_with(StudentError, "hidden size 30", "not a multiple", "4 heads"):
        student_shape(StudentConfig(hidden=30, heads=4), tc)


def test_tinybert_4l_312_has_the_papers_size_for_bert_base_vocab():
    tc = tiny_bert_config(vocab_size=30522, max_position_embeddings=512)
    t = BertForSequenceClassification(tc)
    s = build_student(StudentConfig(preset="4l-312"), t, seed=0)
    n = sum(p.numel() for p in s.bert.parameters())
    assert 14.0e6 < n < 14.8e6  # the paper: 14.5M


def build_student(cfg, t, seed):
    return get_student("tinybert").build(cfg, t, seed)


def ffn_out(model, layer):
    return model.bert.encoder.layer[layer].output.dense.weight


def test_init_from_teacher_layers_copies_weights():
    t = teacher()
    s = build_student(StudentConfig(layers=2, init="teacher"), t, seed=1)  # uniform 2 of 4 -> layers 2, 4
    for si, ti in ((0, 1), (1, 3)):
        torch.testing.assert_close(ffn_out(s, si), ffn_out(t, ti))
    torch.testing.assert_close(s.bert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight)
    torch.testing.assert_close(s.classifier.weight, t.classifier.weight)
    s2 = build_student(StudentConfig(layers=2, init="teacher", init_layers=[1, 1]), t, seed=1)
    torch.testing.assert_close(ffn_out(s2, 1), ffn_out(t, 0))


def test_init_from_teacher_needs_matching_width():
    with raises_with(StudentError, "width to match", "16/64/4", "teacher 32/64/4"):
        build_student(StudentConfig(layers=2, hidden=16, heads=4, init="teacher"), teacher(), seed=0)
    with raises_with(StudentError, "student.init_layers", "teacher layer 9", "1..4"):
        build_student(StudentConfig(layers=2, init="teacher", init_layers=[1, 9]), teacher(), seed=0)


def test_scratch_init_is_seeded_and_init_from_folder(tmp_path):
    t = teacher()
    a = build_student(StudentConfig(layers=1), t, seed=5)
    b = build_student(StudentConfig(layers=1), t, seed=5)
    torch.testing.assert_close(ffn_out(a, 0), ffn_out(b, 0))
    a.save_pretrained(tmp_path / "general")
    c = build_student(StudentConfig(init=str(tmp_path / "general")), t, seed=0)
    torch.testing.assert_close(ffn_out(c, 0), ffn_out(a, 0))
    assert c.config.num_hidden_layers == 1


def test_quickstart_student_needs_at_most_half_the_teacher_compute():
    from distill.config import load_config
    from distill.model_stats import encoder_flops_per_token
    from distill.teachers.load import load_bert_config

    from .helpers import ROOT

    cfg = load_config(ROOT / "experiments" / "quickstart.yaml")
    tc = load_bert_config(cfg.teacher.checkpoint)
    shape = student_shape(cfg.student, tc)
    sc = tiny_bert_config(num_hidden_layers=shape["layers"], hidden_size=shape["hidden"],
                          num_attention_heads=shape["heads"], intermediate_size=shape["ffn"])
    ratio = encoder_flops_per_token(sc, cfg.task.max_length) / encoder_flops_per_token(tc, cfg.task.max_length)
    assert ratio <= 0.5
    # by hand for one layer of width 384, FFN 1536 at length 64: 2 * (4*384^2 + 2*384*1536 + 2*64*384)
    assert encoder_flops_per_token(tc, 64) == 6 * 2 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 64 * 384)


# ---------------------------------------------------------------- the registry and each kind's config section


def test_an_unknown_kind_names_the_registered_ones():
    from distill.config import ConfigError, load_config

    from .helpers import SMOKE

    with raises_with(StudentError, "'resnet'", "'tinybert', 'distilbert', 'bilstm'"):
        get_student("resnet")
    with raises_with(ConfigError, "`student.kind`", "'resnet'", "'bilstm'"):
        load_config(SMOKE, ["student.kind=resnet"])


def test_a_key_of_another_kind_is_refused_with_this_kinds_keys():
    from distill.config import ConfigError, load_config

    from .helpers import SMOKE

    with raises_with(ConfigError, "`student.fc`", "preset", "student.kind: tinybert") as e:
        load_config(SMOKE, ["student.fc=100"])  # a BiLSTM key on the smoke config's TinyBERT
    assert "vectors" not in str(e.value)  # only this kind's keys are offered
    with raises_with(ConfigError, "`student.hidden`", "init_layers"):
        load_config(SMOKE, ["student.kind=distilbert", "student.hidden=16"])  # DistilBERT keeps the teacher's width


def test_a_kind_override_starts_from_that_kinds_defaults():
    from distill.config import load_config
    from distill.students.bilstm import BiLSTMStudentConfig

    from .helpers import SMOKE

    s = load_config(SMOKE, ["student.kind=bilstm", "student.hidden=16"]).student  # smoke's layers/heads/ffn dropped
    assert s == BiLSTMStudentConfig(hidden=16, kind="bilstm")


def test_extends_replaces_the_student_section_of_another_kind_and_merges_the_same_kind(tmp_path):
    from distill.config import load_config
    from distill.students.bilstm import BiLSTMStudentConfig

    from .helpers import ROOT, SMOKE

    # quickstart_bilstm.yaml extends the TinyBERT quickstart (layers 3, init teacher): none of that is a BiLSTM's.
    assert load_config(ROOT / "experiments" / "quickstart_bilstm.yaml").student == BiLSTMStudentConfig(
        kind="bilstm", hidden=150, fc=200, vectors="packaged:glove-6b-50d", vocab_from="all_splits")
    (tmp_path / "child.yaml").write_text(f"extends: {SMOKE}\nstudent: {{layers: 1}}\n")
    s = load_config(tmp_path / "child.yaml").student
    assert (s.kind, s.layers, s.hidden, s.heads) == ("tinybert", 1, 32, 4)
