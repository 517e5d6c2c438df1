"""Tests for the readers of the user's own files (`skipseq.data.loaders`)."""

import doctest
import logging
import re

import pytest

from skipseq import data
from skipseq.data import loaders


def _write(folder, name, content):
    path = folder / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def _pair(tmp_path, source, target):
    return _write(tmp_path, "a.src", source), _write(tmp_path, "a.tgt", target)


def test_loaders_doctests():
    result = doctest.testmod(loaders, raise_on_error=True)
    assert result.attempted > 0


# ---------------------------------------------------------------- parallel


def test_load_parallel_keeps_alignment_when_skipping_blanks(tmp_path):
    src, tgt = _pair(
        tmp_path,
        "eins\n\ndrei\nvier\n  \nsechs",
        "one\ntwo\n\nfour\nfive\nsix\n",
    )
    corpus = data.load_parallel(src, tgt)
    assert corpus.source == ["eins", "vier", "sechs"]
    assert corpus.target == ["one", "four", "six"]
    assert (corpus.skipped_blank, corpus.skipped_long) == (3, 0)
    assert len(corpus) == 3


def test_load_parallel_max_length_counts_tokens(tmp_path):
    src, tgt = _pair(
        tmp_path,
        "a b c\na b c d\na b\n\nx\n",
        "1 2\n1 2\n1 2 3 4\n1\n1 2 3\n",
    )
    corpus = data.load_parallel(src, tgt, max_length=3)
    # Three tokens is allowed; four on either side is too long.
    assert corpus.source == ["a b c", "x"]
    assert corpus.target == ["1 2", "1 2 3"]
    assert (corpus.skipped_blank, corpus.skipped_long) == (1, 2)
    assert corpus.skipped == 3


def test_load_parallel_logs_skipped_counts(tmp_path, caplog):
    src, tgt = _pair(tmp_path, "a\n\nb c d\n", "1\n2\n3\n")
    with caplog.at_level(logging.INFO, logger="skipseq.data"):
        data.load_parallel(src, tgt, max_length=2)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "skipped 1 with a blank side and 1 longer than max_length=2" in (
        record.getMessage()
    )
    assert str(src) in record.getMessage()


def test_load_parallel_strips_bom_crlf_and_spaces(tmp_path):
    src, tgt = _pair(
        tmp_path,
        b"\xef\xbb\xbfGr\xc3\xbc\xc3\x9fe \r\n  Tsch\xc3\xbcss\r\n",
        "Hello\r\nBye",
    )
    corpus = data.load_parallel(src, tgt)
    assert corpus.source == ["Grüße", "Tschüss"]
    assert corpus.target == ["Hello", "Bye"]


def test_load_parallel_does_not_split_on_unicode_line_separators(tmp_path):
    src, tgt = _pair(tmp_path, "a\u2028b\x0cc\x85d\n", "x\n")
    corpus = data.load_parallel(src, tgt)
    assert corpus.source == ["a\u2028b\x0cc\x85d"]


def test_load_parallel_line_count_mismatch(tmp_path):
    src, tgt = _pair(tmp_path, "a\nb\nc\n", "x\ny")
    with pytest.raises(data.DataError) as info:
        data.load_parallel(src, tgt)
    message = str(info.value)
    assert f"'{src}' has 3 lines" in message
    assert f"'{tgt}' has 2 lines" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("side", ["source", "target"])
def test_load_parallel_missing_file(tmp_path, side):
    present = _write(tmp_path, "present.txt", "a\n")
    missing = tmp_path / "missing.txt"
    paths = (missing, present) if side == "source" else (present, missing)
    with pytest.raises(data.DataFileNotFoundError) as info:
        data.load_parallel(*paths)
    assert str(info.value) == f"The {side} file '{missing}' does not exist."
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, data.DataError)


@pytest.mark.parametrize(
    "content", [b"", b"\xef\xbb\xbf"], ids=["zero_bytes", "bom_only"]
)
def test_load_parallel_empty_file(tmp_path, content):
    src, tgt = _pair(tmp_path, "a\n", content)
    with pytest.raises(data.DataError) as info:
        data.load_parallel(src, tgt)
    assert str(info.value) == f"The target file '{tgt}' is empty."


def test_load_parallel_not_utf8_names_line(tmp_path):
    src, tgt = _pair(tmp_path, b"ok\nfine\nna\xefve\nend\n", "1\n2\n3\n4\n")
    with pytest.raises(data.DataError) as info:
        data.load_parallel(src, tgt)
    message = str(info.value)
    assert f"The source file '{src}' is not valid UTF-8" in message
    assert "line 3 has the byte 0xef" in message


def test_load_parallel_not_utf8_after_bom(tmp_path):
    content = b"\xef\xbb\xbf\xff\n"
    src, tgt = _pair(tmp_path, "a\n", content)
    with pytest.raises(data.DataError, match="line 1 has the byte 0xff"):
        data.load_parallel(src, tgt)


def test_load_parallel_all_pairs_skipped(tmp_path):
    src, tgt = _pair(tmp_path, "\n\nlong line here\n", "a\nb\nc\n")
    with pytest.raises(data.DataError) as info:
        data.load_parallel(src, tgt, max_length=2)
    message = str(info.value)
    assert f"No usable sentence pairs in '{src}' and '{tgt}'" in message
    assert "all 3 lines were skipped (2 with a blank side, 1 longer" in message


def test_load_parallel_directory(tmp_path):
    src = _write(tmp_path, "a.src", "a\n")
    with pytest.raises(data.DataError) as info:
        data.load_parallel(src, tmp_path)
    assert str(info.value) == (
        f"The target file '{tmp_path}' is a directory, not a file."
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_length=0), "Received: max_length=0"),
        (dict(max_length=-3), "Received: max_length=-3"),
        (dict(max_length=2.5), "Received: max_length=2.5"),
        (dict(max_length=True), "Received: max_length=True"),
        (dict(src_path=3), "Received: src_path=3"),
        (dict(tgt_path=None), "Received: tgt_path=None"),
    ],
    ids=["zero", "negative", "float", "bool", "src_path", "tgt_path"],
)
def test_load_parallel_rejects_bad_arguments(tmp_path, kwargs, message):
    src, tgt = _pair(tmp_path, "a\n", "b\n")
    arguments = dict(src_path=src, tgt_path=tgt) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_parallel(**arguments)


# --------------------------------------------------------------------- TSV


def test_load_parallel_tsv(tmp_path):
    path = _write(
        tmp_path,
        "pairs.tsv",
        b"\xef\xbb\xbfHallo .\tHello .\r\n\r\n"
        b"leer\t \r\nein Satz mehr\tone more sentence\r\nJa\tYes",
    )
    corpus = data.load_parallel_tsv(path, max_length=2)
    assert corpus.source == ["Hallo .", "Ja"]
    assert corpus.target == ["Hello .", "Yes"]
    assert (corpus.skipped_blank, corpus.skipped_long) == (2, 1)


@pytest.mark.parametrize(
    "line, tabs", [("no tab here", 0), ("a\tb\tc", 2)], ids=["none", "two"]
)
def test_load_parallel_tsv_needs_one_tab(tmp_path, line, tabs):
    path = _write(tmp_path, "pairs.tsv", f"a\tb\n\n{line}\nc\td\n")
    with pytest.raises(data.DataError) as info:
        data.load_parallel_tsv(path)
    assert str(info.value) == (
        f"The TSV file '{path}', line 3: expected exactly one tab between "
        f"source and target, found {tabs}."
    )


def test_load_parallel_tsv_bad_files(tmp_path):
    missing = tmp_path / "missing.tsv"
    with pytest.raises(
        data.DataFileNotFoundError, match=re.escape(str(missing))
    ):
        data.load_parallel_tsv(missing)
    empty = _write(tmp_path, "empty.tsv", b"")
    with pytest.raises(data.DataError, match=re.escape(f"'{empty}' is empty")):
        data.load_parallel_tsv(empty)
    latin1 = _write(
        tmp_path, "latin1.tsv", "a\tb\nc\td\u00e9\n".encode("latin-1")
    )
    with pytest.raises(data.DataError) as info:
        data.load_parallel_tsv(latin1)
    assert f"'{latin1}' is not valid UTF-8: line 2" in str(info.value)


def test_load_parallel_tsv_rejects_bad_max_length(tmp_path):
    path = _write(tmp_path, "pairs.tsv", "a\tb\n")
    with pytest.raises(ValueError, match=re.escape("max_length='5'")):
        data.load_parallel_tsv(path, max_length="5")


# -------------------------------------------------------------------- text


def test_load_text_keeps_blank_lines(tmp_path):
    path = _write(tmp_path, "t.txt", b"\xef\xbb\xbfA:\r\nHi.\r\n\r\nB:\r\nHo.")
    assert data.load_text(path) == "A:\nHi.\n\nB:\nHo."


def test_load_text_bad_files(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(data.DataFileNotFoundError) as info:
        data.load_text(missing)
    assert str(info.value) == f"The text file '{missing}' does not exist."
    empty = _write(tmp_path, "empty.txt", b"")
    with pytest.raises(data.DataError) as info:
        data.load_text(empty)
    assert str(info.value) == f"The text file '{empty}' is empty."
    blank = _write(tmp_path, "blank.txt", " \n\n\t\n")
    with pytest.raises(data.DataError) as info:
        data.load_text(blank)
    assert str(info.value) == f"The text file '{blank}' holds only whitespace."
    binary = _write(tmp_path, "binary.txt", b"line\n\n\x80\x81\n")
    with pytest.raises(data.DataError) as info:
        data.load_text(binary)
    assert f"'{binary}' is not valid UTF-8: line 3 has the byte 0x80" in str(
        info.value
    )


def test_load_text_rejects_bad_path():
    with pytest.raises(ValueError, match=re.escape("Received: path=42")):
        data.load_text(42)
