"""Readers for the user's own text files: parallel corpora and plain text.

All readers decode UTF-8 strictly, drop a leading byte order mark and
accept LF or CRLF line endings. Unusable input raises `DataError` (a
`ValueError`) whose message names the file and, where it applies, the
1-based line number; a missing file raises `DataFileNotFoundError`.
"""

import codecs
import dataclasses
import logging
import os
import pathlib

from skipseq.data.errors import DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ParallelCorpus:
    """Aligned sentence pairs read from a parallel corpus.

    `source[i]` is the translation of `target[i]`. Pairs where either side
    was blank, or longer than `max_length`, were left out and counted.

    Attributes:
        source: source sentences, stripped of surrounding whitespace.
        target: target sentences, stripped likewise.
        skipped_blank: number of pairs left out because a side was blank.
        skipped_long: number of pairs left out because a side had more
            than `max_length` whitespace-separated tokens.

    Example:

    >>> corpus = ParallelCorpus(["Hallo ."], ["Hello ."], skipped_blank=2)
    >>> len(corpus), corpus.skipped
    (1, 2)
    """

    source: list[str]
    target: list[str]
    skipped_blank: int = 0
    skipped_long: int = 0

    def __len__(self):
        return len(self.source)

    @property
    def skipped(self):
        """Total number of pairs left out."""
        return self.skipped_blank + self.skipped_long


def _as_path(value, arg_name):
    if not isinstance(value, str | os.PathLike):
        raise ValueError(
            f"`{arg_name}` must be a path (str or os.PathLike). "
            f"Received: {arg_name}={value!r}"
        )
    return pathlib.Path(value)


def _check_max_length(max_length):
    valid = isinstance(max_length, int) and not isinstance(max_length, bool)
    if max_length is not None and not (valid and max_length > 0):
        raise ValueError(
            "`max_length` must be None or a positive integer (a number of "
            f"whitespace-separated tokens). Received: max_length={max_length!r}"
        )


def _read_text_file(path, role="file"):
    """Returns the content of a UTF-8 text file as a string.

    A leading UTF-8 byte order mark is dropped; line endings are kept.

    Args:
        path: the file.
        role: what the file is, for error messages (e.g. "source file").

    Raises:
        DataFileNotFoundError: if `path` does not exist.
        DataError: if `path` is a directory, is empty, or is not valid
            UTF-8 (the message gives the 1-based line number).
    """
    if not path.exists():
        raise DataFileNotFoundError(f"The {role} '{path}' does not exist.")
    if path.is_dir():
        raise DataError(f"The {role} '{path}' is a directory, not a file.")
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if not data:
        raise DataError(f"The {role} '{path}' is empty.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise DataError(
            f"The {role} '{path}' is not valid UTF-8: line {line} has the "
            f"byte 0x{bad} ({exc.reason}). Re-encode the file as UTF-8."
        ) from None


def _split_lines(text):
    # str.splitlines would also split on U+2028, \x0b, \x1c and others,
    # which can occur inside a sentence and would break the alignment.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _select_pairs(pairs, max_length):
    corpus = ParallelCorpus([], [])
    for source, target in pairs:
        source, target = source.strip(), target.strip()
        if not source or not target:
            corpus.skipped_blank += 1
        elif max_length is not None and (
            len(source.split()) > max_length or len(target.split()) > max_length
        ):
            corpus.skipped_long += 1
        else:
            corpus.source.append(source)
            corpus.target.append(target)
    return corpus


def _finish(corpus, names, max_length):
    total = len(corpus) + corpus.skipped
    if not corpus.source:
        raise DataError(
            f"No usable sentence pairs in {names}: all {total} lines were "
            f"skipped ({corpus.skipped_blank} with a blank side, "
            f"{corpus.skipped_long} longer than max_length={max_length})."
        )
    if corpus.skipped:
        logger.info(
            "Read %d sentence pairs from %s; skipped %d with a blank side "
            "and %d longer than max_length=%s.",
            len(corpus),
            names,
            corpus.skipped_blank,
            corpus.skipped_long,
            max_length,
        )
    return corpus


def load_parallel(src_path, tgt_path, *, max_length=None):
    """Reads a parallel corpus stored as two line-aligned files.

    Line `i` of `src_path` is the translation of line `i` of `tgt_path`.
    Each line is stripped of surrounding whitespace (including the `\\r` of
    CRLF endings). A pair is left out, and counted, when either side is
    blank (`skipped_blank`) or, with `max_length` set, when either side has
    more than `max_length` whitespace-separated tokens (`skipped_long`);
    the remaining pairs stay aligned. A summary of skipped pairs is logged
    at INFO level.

    Args:
        src_path: path of the source-language file.
        tgt_path: path of the target-language file.
        max_length: None (keep all lengths) or the largest number of
            whitespace-separated tokens a side may have. Defaults to None.

    Returns:
        A `ParallelCorpus`.

    Raises:
        ValueError: for a bad `src_path`, `tgt_path` or `max_length`.
        DataFileNotFoundError: if a file does not exist (message names it).
        DataError: if the files have different numbers of lines (message
            names both files and both counts), a file is empty or not
            UTF-8 (message names the file and line), or no pair is left.

    Example:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.de").write_text("Hallo .\\n\\nGute Nacht .\\n")
    >>> _ = (folder / "a.en").write_text("Hello .\\nEmpty\\nGood night .\\n")
    >>> corpus = load_parallel(folder / "a.de", folder / "a.en")
    >>> corpus.source, corpus.target, corpus.skipped_blank
    (['Hallo .', 'Gute Nacht .'], ['Hello .', 'Good night .'], 1)
    """
    src_path = _as_path(src_path, "src_path")
    tgt_path = _as_path(tgt_path, "tgt_path")
    _check_max_length(max_length)
    src_lines = _split_lines(_read_text_file(src_path, "source file"))
    tgt_lines = _split_lines(_read_text_file(tgt_path, "target file"))
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            "The source and target files must have the same number of "
            f"lines, but '{src_path}' has {len(src_lines)} lines and "
            f"'{tgt_path}' has {len(tgt_lines)} lines."
        )
    corpus = _select_pairs(zip(src_lines, tgt_lines, strict=True), max_length)
    return _finish(corpus, f"'{src_path}' and '{tgt_path}'", max_length)


def load_parallel_tsv(path, *, max_length=None):
    """Reads a parallel corpus stored as one tab-separated file.

    Each line holds `source<TAB>target`. Blank lines, and lines with a
    blank side, are skipped and counted; other lines must contain exactly
    one tab. Sides are stripped of surrounding whitespace and `max_length`
    applies as in `load_parallel`.

    Args:
        path: path of the TSV file.
        max_length: None (keep all lengths) or the largest number of
            whitespace-separated tokens a side may have. Defaults to None.

    Returns:
        A `ParallelCorpus`.

    Raises:
        ValueError: for a bad `path` or `max_length`.
        DataFileNotFoundError: if the file does not exist.
        DataError: if the file is empty or not UTF-8, if a non-blank line
            does not have exactly one tab (message names the file and the
            1-based line number), or if no pair is left.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pairs.tsv"
    >>> _ = path.write_text("Hallo .\\tHello .\\n\\nJa\\tYes\\n")
    >>> corpus = load_parallel_tsv(path)
    >>> corpus.source, corpus.target, corpus.skipped_blank
    (['Hallo .', 'Ja'], ['Hello .', 'Yes'], 1)
    """
    path = _as_path(path, "path")
    _check_max_length(max_length)
    lines = _split_lines(_read_text_file(path, "TSV file"))
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            pairs.append(("", ""))
            continue
        tabs = line.count("\t")
        if tabs != 1:
            raise DataError(
                f"The TSV file '{path}', line {number}: expected exactly one "
                f"tab between source and target, found {tabs}."
            )
        pairs.append(tuple(line.split("\t")))
    corpus = _select_pairs(pairs, max_length)
    return _finish(corpus, f"'{path}'", max_length)


def load_text(path):
    """Reads a plain UTF-8 text file for language modelling.

    Returns the whole text with a leading byte order mark dropped and CRLF
    line endings turned into LF; blank lines are kept, since they are part
    of the text.

    Args:
        path: path of the text file.

    Returns:
        The text as one `str`.

    Raises:
        ValueError: for a bad `path`.
        DataFileNotFoundError: if the file does not exist.
        DataError: if the file is empty, holds only whitespace, or is not
            UTF-8 (message names the file and the 1-based line number).

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "poem.txt"
    >>> _ = path.write_bytes(b"\\xef\\xbb\\xbfTo be,\\r\\nor not.\\r\\n")
    >>> load_text(path)
    'To be,\\nor not.\\n'
    """
    path = _as_path(path, "path")
    text = _read_text_file(path, "text file").replace("\r\n", "\n")
    if not text.strip():
        raise DataError(f"The text file '{path}' holds only whitespace.")
    return text
