"""distill/layer_map.py: which teacher layer each student layer learns from, and the impossible maps (and widths
without a projection) a run is refused with before it writes anything."""

from distill.layer_map import LayerMapError, layer_map

from .helpers import assert_facts, raises_with, refused, smoke_with


def test_uniform_matches_tinybert_g_m_equals_m_times_n_over_m():
    assert layer_map("uniform", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_map("uniform", 6, 12) == [(m, 2 * m) for m in range(1, 7)]
    assert layer_map("uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]


def test_uniform_non_divisible_floors_and_ends_at_last_layer():
    assert layer_map("uniform", 4, 6) == [(1, 1), (2, 3), (3, 4), (4, 6)]


def test_top_and_bottom():
    assert layer_map("top", 4, 12) == [(1, 9), (2, 10), (3, 11), (4, 12)]
    assert layer_map("bottom", 4, 12) == [(1, 1), (2, 2), (3, 3), (4, 4)]


def test_explicit_pairs_checked_against_depths():
    assert layer_map([[1, 2], [2, 12]], 2, 12) == [(1, 2), (2, 12)]
    with raises_with(LayerMapError, "[1, 13]", "teacher layer 13", "1..12"):
        layer_map([[1, 13]], 2, 12)
    with raises_with(LayerMapError, "[3, 1]", "student layer 3", "1..2"):
        layer_map([[3, 1]], 2, 12)
    with raises_with(LayerMapError, "[1, 2, 3]", "pair"):
        layer_map([[1, 2, 3]], 2, 12)


def test_impossible_maps_are_errors():
    with raises_with(LayerMapError, "'uniform'", "6 layers", "teacher of 4 layers"):
        layer_map("uniform", 6, 4)
    with raises_with(LayerMapError, "'middle'", "uniform", "top", "bottom"):
        layer_map("middle", 2, 4)


def test_impossible_layer_map_and_widths_without_projection_stop_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    f = smoke_with(tmp_path, "stages:\n  - {name: intermediate, layer_map: [[1, 9]]}\n", "bad.yaml")
    err = refused(["run", str(f), "--out", str(out)], capsys)
    assert_facts(err, "stages.0 (intermediate).layer_map", "teacher layer 9", "1..4")
    # Refused before the run folder was written to; what was there is untouched.
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    f = smoke_with(tmp_path, "train: {projection: none}\n", "width.yaml")
    err = refused(["run", str(f), "--out", str(tmp_path / "run2")], capsys)
    assert_facts(err, "student width 32", "teacher width 64", "train.projection")
    assert not (tmp_path / "run2").exists()
