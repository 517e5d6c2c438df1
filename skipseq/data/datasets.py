"""Loaders for the registered datasets: Multi30k and Tiny Shakespeare."""

import numbers

from skipseq.data.fetch import get_path
from skipseq.data.loaders import load_parallel, load_text
from skipseq.data.registry import (
    MULTI30K,
    MULTI30K_LANGS,
    MULTI30K_SPLITS,
    MULTI30K_TOK,
    TINY_SHAKESPEARE,
)


def load_multi30k(
    split,
    src_lang="en",
    tgt_lang="de",
    tokenized=False,
    *,
    download=True,
    data_dir=None,
    cache_dir=None,
):
    """Loads a split of Multi30k English-German as aligned sentence lists.

    Files are found as by `get_path` (offline mirror `SKIPSEQ_DATA_DIR`,
    Keras cache, then download) and checked against their sha256 sums.
    Lines are stripped of surrounding whitespace; the files have no blank
    lines, so every line is kept.

    Args:
        split: `"train"` (29,000 pairs), `"val"` (1,014) or
            `"test_2016_flickr"` (1,000; the usual "test2016").
        src_lang: source language, `"en"` or `"de"`. Defaults to `"en"`.
        tgt_lang: target language, `"en"` or `"de"`, not `src_lang`.
            Defaults to `"de"`.
        tokenized: if true, read the official lowercased, Moses-tokenised
            files (`multi30k_tok`, with XML escapes such as `&apos;`)
            instead of the raw text. Defaults to False.
        download: passed to `get_path`. Defaults to True.
        data_dir: passed to `get_path`. Defaults to None.
        cache_dir: passed to `get_path`. Defaults to None.

    Returns:
        A tuple `(sources, targets)` of two equally long lists of `str`.

    Raises:
        ValueError: for a bad argument; the message names it.
        ChecksumError, DatasetNotFoundError: see `get_path`.

    Example:

    >>> sources, targets = load_multi30k("val")  # doctest: +SKIP
    >>> len(sources), len(targets)  # doctest: +SKIP
    (1014, 1014)
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(
            f"`split` must be one of {list(MULTI30K_SPLITS)}. "
            f"Received: split={split!r}"
        )
    for arg_name, value in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if value not in MULTI30K_LANGS:
            raise ValueError(
                f"`{arg_name}` must be one of {list(MULTI30K_LANGS)}. "
                f"Received: {arg_name}={value!r}"
            )
    if src_lang == tgt_lang:
        raise ValueError(
            "`src_lang` and `tgt_lang` must differ. Received: "
            f"src_lang={src_lang!r}, tgt_lang={tgt_lang!r}"
        )
    if not isinstance(tokenized, bool):
        raise ValueError(
            f"`tokenized` must be a bool. Received: tokenized={tokenized!r}"
        )
    name = MULTI30K_TOK if tokenized else MULTI30K
    options = dict(download=download, data_dir=data_dir, cache_dir=cache_dir)
    src_path = get_path(name, split, src_lang, **options)
    tgt_path = get_path(name, split, tgt_lang, **options)
    corpus = load_parallel(src_path, tgt_path)
    return corpus.source, corpus.target


def load_tiny_shakespeare(*, download=True, data_dir=None, cache_dir=None):
    """Loads Tiny Shakespeare as one string of 1,115,394 characters.

    The file is found as by `get_path` and checked against its sha256 sum.
    Use `split_text` for the usual 90/10 train/validation split.

    Args:
        download: passed to `get_path`. Defaults to True.
        data_dir: passed to `get_path`. Defaults to None.
        cache_dir: passed to `get_path`. Defaults to None.

    Returns:
        The text as a `str`.

    Raises:
        ChecksumError, DatasetNotFoundError: see `get_path`.

    Example:

    >>> text = load_tiny_shakespeare()  # doctest: +SKIP
    >>> text[:14]  # doctest: +SKIP
    'First Citizen:'
    """
    path = get_path(
        TINY_SHAKESPEARE,
        download=download,
        data_dir=data_dir,
        cache_dir=cache_dir,
    )
    return load_text(path)


def split_text(text, fraction=0.9):
    """Splits a sequence in two at a fraction of its length.

    The first `int(len(text) * fraction)` items go to the first part, the
    rest to the second, as nanoGPT's character-level Shakespeare split:
    for Tiny Shakespeare and the default 0.9 the parts have 1,003,854 and
    111,540 characters.

    Args:
        text: a `str` (or any sliceable sequence).
        fraction: share of the first part, strictly between 0 and 1.
            Defaults to 0.9.

    Returns:
        A tuple `(first, second)` with `first + second == text`.

    Raises:
        ValueError: if `fraction` is not a number in (0, 1).

    Example:

    >>> split_text("abcdefghij")
    ('abcdefghi', 'j')
    >>> split_text("abcdefghij", fraction=0.25)
    ('ab', 'cdefghij')
    """
    is_number = isinstance(fraction, numbers.Real) and not isinstance(
        fraction, bool
    )
    if not (is_number and 0 < fraction < 1):
        raise ValueError(
            "`fraction` must be a number strictly between 0 and 1. "
            f"Received: fraction={fraction!r}"
        )
    cut = int(len(text) * fraction)
    return text[:cut], text[cut:]
