"""Datasets for the skipseq recipes and readers for the user's own data.

Registered datasets (`DATASETS`): `"multi30k"` and `"multi30k_tok"`
(Multi30k English-German, raw and lowercased-tokenised; splits `train`,
`val`, `test_2016_flickr`) and `"tiny_shakespeare"`. Files are read from
the offline mirror named by `SKIPSEQ_DATA_DIR` when it is set, else from
the Keras cache, else downloaded with `keras.utils.get_file`; every file
is checked against its sha256 sum.

- `get_path(name, split=None, lang=None, *, download=True, ...)`
- `load_multi30k(split, src_lang="en", tgt_lang="de", tokenized=False)`
- `load_tiny_shakespeare()` and `split_text(text, fraction=0.9)`
- `load_parallel(src_path, tgt_path)`, `load_parallel_tsv(path)` and
  `load_text(path)` for the user's own files.
"""

from skipseq.data.datasets import (
    load_multi30k,
    load_tiny_shakespeare,
    split_text,
)
from skipseq.data.errors import (
    ChecksumError,
    DataError,
    DataFileNotFoundError,
    DatasetNotFoundError,
    SkipseqDataError,
)
from skipseq.data.fetch import (
    MIRROR_ENV_VAR,
    get_path,
    keras_cache_dir,
    sha256_file,
    verify_file,
)
from skipseq.data.loaders import (
    ParallelCorpus,
    load_parallel,
    load_parallel_tsv,
    load_text,
)
from skipseq.data.registry import DATASETS, DataFile, DatasetInfo

__all__ = [
    "DATASETS",
    "MIRROR_ENV_VAR",
    "ChecksumError",
    "DataError",
    "DataFile",
    "DataFileNotFoundError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ParallelCorpus",
    "SkipseqDataError",
    "get_path",
    "keras_cache_dir",
    "load_multi30k",
    "load_parallel",
    "load_parallel_tsv",
    "load_text",
    "load_tiny_shakespeare",
    "sha256_file",
    "split_text",
]
