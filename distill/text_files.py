"""Reading a data file's text, with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

from distill.labels import DataError


def decode_file(path: Path) -> str:
    """A data file's text; a missing file or bytes that are not UTF-8 are a `DataError` naming the file (and line)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes that are not UTF-8 ({raw[e.start:e.start + 4]!r})") from None
