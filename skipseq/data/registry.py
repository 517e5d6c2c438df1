"""Registry of the public datasets used by the skipseq recipes.

`DATASETS` maps a dataset name to a `DatasetInfo`, which lists its files as
`DataFile` entries with download URLs and sha256 sums. Use
`skipseq.data.get_path` to obtain a verified local copy of a file.
"""

import dataclasses

# Names of the registered datasets.
MULTI30K = "multi30k"
MULTI30K_TOK = "multi30k_tok"
TINY_SHAKESPEARE = "tiny_shakespeare"

MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
MULTI30K_LANGS = ("en", "de")


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file of a registered dataset.

    Attributes:
        relpath: path of the file under the offline mirror root
            (`SKIPSEQ_DATA_DIR`), with "/" separators, e.g.
            `"multi30k/train.en"`. The Keras cache uses the same layout
            under `<keras cache>/datasets/skipseq/`.
        urls: download URLs, tried in order. A URL ending in `.gz` serves
            the gzip-compressed file.
        sha256: hex sha256 sum of the uncompressed file.
        num_lines: number of lines of the uncompressed file.
        num_bytes: size of the uncompressed file in bytes.
        split: split name (e.g. `"train"`) or None for a single-file
            dataset.
        lang: language code (e.g. `"en"`) or None.

    Example:

    >>> f = DATASETS["multi30k"].file("val", "en")
    >>> f.relpath, f.num_lines, f.compressed
    ('multi30k/val.en', 1014, True)
    """

    relpath: str
    urls: tuple[str, ...]
    sha256: str
    num_lines: int
    num_bytes: int
    split: str | None = None
    lang: str | None = None

    @property
    def compressed(self):
        """Whether the download URLs serve a gzip-compressed file."""
        return self.urls[0].endswith(".gz")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: a name, a description and its files.

    Attributes:
        name: key of the dataset in `DATASETS`.
        description: one-line description.
        source: where the files come from (repository and commit).
        license: the terms stated by the source.
        files: the `DataFile` entries.

    Example:

    >>> info = DATASETS["multi30k_tok"]
    >>> info.splits, info.langs
    (('train', 'val', 'test_2016_flickr'), ('en', 'de'))
    >>> info.file("train", "de").relpath
    'multi30k/tok/train.lc.norm.tok.de'
    """

    name: str
    description: str
    source: str
    license: str
    files: tuple[DataFile, ...]

    @property
    def splits(self):
        """Split names in registry order (empty if the dataset has none)."""
        names = (f.split for f in self.files if f.split is not None)
        return tuple(dict.fromkeys(names))

    @property
    def langs(self):
        """Language codes in registry order (empty if none)."""
        names = (f.lang for f in self.files if f.lang is not None)
        return tuple(dict.fromkeys(names))

    def file(self, split=None, lang=None):
        """Returns the `DataFile` for `split` and `lang`.

        Raises:
            ValueError: if the dataset has no such split or language; the
                message lists the valid values.
        """
        for name, value, valid in (
            ("split", split, self.splits),
            ("lang", lang, self.langs),
        ):
            if valid and value not in valid:
                raise ValueError(
                    f"Dataset '{self.name}' needs `{name}` to be one of "
                    f"{list(valid)}. Received: {name}={value!r}"
                )
            if not valid and value is not None:
                raise ValueError(
                    f"Dataset '{self.name}' has no {name}s; `{name}` must "
                    f"be None. Received: {name}={value!r}"
                )
        for f in self.files:
            if f.split == split and f.lang == lang:
                return f
        # Unreachable for a consistent registry entry.
        raise ValueError(
            f"Dataset '{self.name}' has no file for split={split!r}, "
            f"lang={lang!r}."
        )


_MULTI30K_RAW_URL = "https://raw.githubusercontent.com/multi30k/dataset"
_MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
_CHAR_RNN_RAW_URL = "https://raw.githubusercontent.com/karpathy/char-rnn"
_CHAR_RNN_COMMIT = "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"

_MULTI30K_SOURCE = (
    f"GitHub multi30k/dataset (snapshot {_MULTI30K_COMMIT}), data/task1/"
)
_MULTI30K_LICENSE = (
    "No license file; the source README restricts the Flickr30K-derived "
    "data to non-commercial research and educational use. Cite Elliott "
    "et al. 2016, 'Multi30K: Multilingual English-German Image "
    "Descriptions'."
)

# (split, lang) -> (lines, bytes, sha256 of raw file, sha256 of tok file)
_MULTI30K_SUMS = {
    ("train", "en"): (
        29000,
        1801238,
        1837696,
        "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
        "08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119",
    ),
    ("train", "de"): (
        29000,
        2110398,
        2150008,
        "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
        "cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505",
    ),
    ("val", "en"): (
        1014,
        63297,
        64608,
        "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
        "46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec",
    ),
    ("val", "de"): (
        1014,
        75981,
        77273,
        "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
        "97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00",
    ),
    ("test_2016_flickr", "en"): (
        1000,
        62076,
        63307,
        "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
        "5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2",
    ),
    ("test_2016_flickr", "de"): (
        1000,
        70649,
        71917,
        "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
        "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4",
    ),
}


def _multi30k_urls(path):
    # The moving branch first, then the snapshot the sums were taken from.
    return (
        f"{_MULTI30K_RAW_URL}/master/{path}",
        f"{_MULTI30K_RAW_URL}/{_MULTI30K_COMMIT}/{path}",
    )


def _multi30k_files(tokenized):
    files = []
    for (split, lang), sums in _MULTI30K_SUMS.items():
        lines, raw_bytes, tok_bytes, raw_sha, tok_sha = sums
        if tokenized:
            name = f"{split}.lc.norm.tok.{lang}"
            relpath = f"multi30k/tok/{name}"
            urls = _multi30k_urls(f"data/task1/tok/{name}")
            num_bytes, sha256 = tok_bytes, tok_sha
        else:
            relpath = f"multi30k/{split}.{lang}"
            urls = _multi30k_urls(f"data/task1/raw/{split}.{lang}.gz")
            num_bytes, sha256 = raw_bytes, raw_sha
        files.append(
            DataFile(relpath, urls, sha256, lines, num_bytes, split, lang)
        )
    return tuple(files)


DATASETS = {
    MULTI30K: DatasetInfo(
        name=MULTI30K,
        description=(
            "Multi30k English-German image captions (WMT16 multimodal "
            "task 1), raw text, one sentence per line."
        ),
        source=_MULTI30K_SOURCE + "raw/*.gz (gunzipped)",
        license=_MULTI30K_LICENSE,
        files=_multi30k_files(tokenized=False),
    ),
    MULTI30K_TOK: DatasetInfo(
        name=MULTI30K_TOK,
        description=(
            "Multi30k English-German, official lowercased, Moses-normalised "
            "and Moses-tokenised text (contains XML escapes such as "
            "&apos;)."
        ),
        source=_MULTI30K_SOURCE + "tok/*.lc.norm.tok.*",
        license=_MULTI30K_LICENSE,
        files=_multi30k_files(tokenized=True),
    ),
    TINY_SHAKESPEARE: DatasetInfo(
        name=TINY_SHAKESPEARE,
        description=(
            "Tiny Shakespeare (char-rnn): 1,115,394 characters of plain "
            "text for character-level language modelling."
        ),
        source=(
            f"GitHub karpathy/char-rnn (commit {_CHAR_RNN_COMMIT}), "
            "data/tinyshakespeare/input.txt"
        ),
        license="Repository MIT; the text is in the public domain.",
        files=(
            DataFile(
                relpath="tinyshakespeare/input.txt",
                urls=(
                    f"{_CHAR_RNN_RAW_URL}/master/"
                    "data/tinyshakespeare/input.txt",
                    f"{_CHAR_RNN_RAW_URL}/{_CHAR_RNN_COMMIT}/"
                    "data/tinyshakespeare/input.txt",
                ),
                sha256=(
                    "86c4e6aa9db7c042ec79f339dcb96d42"
                    "b0075e16b8fc2e86bf0ca57e2dc565ed"
                ),
                num_lines=40000,
                num_bytes=1115394,
            ),
        ),
    ),
}
