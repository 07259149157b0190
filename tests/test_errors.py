"""The one-line quote of a library's error that sarray's messages embed."""

from __future__ import annotations

from sarray.errors import first_line


def test_first_line_keeps_the_first_line_cut_to_the_limit():
    assert first_line(OSError("bad header\n  at byte 12\n")) == "bad header"
    assert first_line(OSError("x" * 500)) == "x" * 200
    assert first_line(OSError("abcdef"), limit=3) == "abc"


def test_first_line_of_an_error_without_text_is_its_type():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   ")) == "ValueError"
