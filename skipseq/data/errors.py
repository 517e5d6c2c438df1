"""Exceptions raised by `skipseq.data`.

Every error derives from `SkipseqDataError`, so `except SkipseqDataError`
catches them all, and each also derives from the built-in exception that
describes it best, so code written against the standard library keeps
working:

- `DataError` (`ValueError`): a file's content is unusable, e.g. aligned
  files with different line counts, bytes that are not UTF-8, a TSV line
  without exactly one tab, an empty file.
- `DataFileNotFoundError` (`DataError`, `FileNotFoundError`): a file given
  by the caller does not exist.
- `ChecksumError` (`DataError`): a dataset file does not have the sha256 sum
  the registry expects.
- `DatasetNotFoundError` (`FileNotFoundError`): a registered dataset is
  neither in the offline mirror, nor in the Keras cache, nor downloadable.
"""


class SkipseqDataError(Exception):
    """Base class of every error raised by `skipseq.data`."""


class DataError(SkipseqDataError, ValueError):
    """A data file exists but its content cannot be used as asked.

    The message names the file and, where it applies, the 1-based line
    number and the counts involved.
    """


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file named by the caller does not exist."""


class ChecksumError(DataError):
    """A dataset file's sha256 sum differs from the registered one.

    The message names the file, the expected and the actual sum.
    """


class DatasetNotFoundError(SkipseqDataError, FileNotFoundError):
    """A registered dataset file could not be found or downloaded.

    The message names the dataset, every place that was searched (offline
    mirror, Keras cache, download URLs) and how to provide the file.
    """
