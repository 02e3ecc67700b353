import pytest

from distill.layer_map import LayerMapError, layer_map


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
    with pytest.raises(LayerMapError, match="teacher layer 13 is outside 1..12"):
        layer_map([[1, 13]], 2, 12)
    with pytest.raises(LayerMapError, match="student layer 3 is outside 1..2"):
        layer_map([[3, 1]], 2, 12)
    with pytest.raises(LayerMapError, match="pair"):
        layer_map([[1, 2, 3]], 2, 12)


def test_impossible_maps_are_errors():
    with pytest.raises(LayerMapError, match="cannot map onto a teacher of 4 layers"):
        layer_map("uniform", 6, 4)
    with pytest.raises(LayerMapError, match="unknown layer map 'middle'"):
        layer_map("middle", 2, 4)
