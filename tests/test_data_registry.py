"""Tests for the dataset registry, `get_path` and the dataset loaders.

Real-data tests read the offline mirror named by SKIPSEQ_DATA_DIR. No test
touches the network: `keras.utils.get_file` is replaced by a function that
fails, or by a fake server that writes given bytes.
"""

import dataclasses
import doctest
import gzip
import hashlib
import os
import pathlib
import re
import shutil

import keras
import pytest

from skipseq import data
from skipseq.data import datasets, fetch, registry
from skipseq.data.registry import DATASETS, DataFile, DatasetInfo

MIRROR = os.environ.get("SKIPSEQ_DATA_DIR")
needs_mirror = pytest.mark.skipif(
    not MIRROR,
    reason="SKIPSEQ_DATA_DIR is not set; real-data tests need the offline "
    "mirror (e.g. SKIPSEQ_DATA_DIR=/work/shared/data)",
)

MASTER = "https://raw.githubusercontent.com/multi30k/dataset/master"
TOY_TEXT = b"ein kleiner Test\nzweite Zeile\n"
TOY_URLS = (
    "https://example.invalid/a/toy.txt",
    "https://example.invalid/b/toy.txt",
)


def _sha256(content):
    return hashlib.sha256(content).hexdigest()


class FakeServer:
    """Stands in for `keras.utils.get_file`: url -> bytes or exception."""

    def __init__(self, responses):
        self.responses = responses
        self.calls = []

    def __call__(self, *, fname, origin, cache_subdir, cache_dir, **kwargs):
        self.calls.append(origin)
        response = self.responses[origin]
        if isinstance(response, Exception):
            raise response
        folder = pathlib.Path(cache_dir, cache_subdir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / fname).write_bytes(response)
        return str(folder / fname)


# The real function, for the test that downloads from a local file:// URL.
REAL_GET_FILE = keras.utils.get_file


def _network_disabled(**kwargs):
    raise RuntimeError("network access is disabled in tests")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", _network_disabled)


@pytest.fixture
def toy(monkeypatch):
    """Registers a one-file dataset 'toy' served (gzipped) by fake URLs."""
    entry = DataFile(
        relpath="toy/sample.txt",
        urls=tuple(url + ".gz" for url in TOY_URLS),
        sha256=_sha256(TOY_TEXT),
        num_lines=2,
        num_bytes=len(TOY_TEXT),
    )
    info = DatasetInfo("toy", "Toy text.", "tests", "none", (entry,))
    monkeypatch.setitem(DATASETS, "toy", info)
    return entry


def _serve(monkeypatch, responses):
    server = FakeServer(responses)
    monkeypatch.setattr(keras.utils, "get_file", server)
    return server


# ----------------------------------------------------------------- registry


def _readme_table():
    text = pathlib.Path(MIRROR, "README.md").read_text()
    row = re.compile(r"^\| (\S+) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|$")
    return {
        m[1]: (int(m[2]), int(m[3]), m[4])
        for m in map(row.match, text.splitlines())
        if m
    }


def _all_files():
    return [f for info in DATASETS.values() for f in info.files]


@needs_mirror
def test_registry_matches_readme_table():
    table = _readme_table()
    files = {
        f.relpath: (f.num_lines, f.num_bytes, f.sha256) for f in _all_files()
    }
    assert len(table) == 13
    assert files == table


@needs_mirror
def test_mirror_files_have_registered_sums_and_sizes():
    for f in _all_files():
        path = pathlib.Path(MIRROR, f.relpath)
        content = path.read_bytes()
        assert _sha256(content) == f.sha256, f.relpath
        assert len(content) == f.num_bytes, f.relpath
        assert content.count(b"\n") == f.num_lines, f.relpath


def test_registry_urls():
    raw = DATASETS["multi30k"].file("train", "en")
    assert raw.urls[0] == f"{MASTER}/data/task1/raw/train.en.gz"
    assert raw.compressed
    tok = DATASETS["multi30k_tok"].file("test_2016_flickr", "de")
    assert tok.urls[0] == (
        f"{MASTER}/data/task1/tok/test_2016_flickr.lc.norm.tok.de"
    )
    assert not tok.compressed
    (shakespeare,) = DATASETS["tiny_shakespeare"].files
    assert shakespeare.urls[0] == (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/"
        "data/tinyshakespeare/input.txt"
    )
    # The fallback URLs pin the snapshots the sums were taken from.
    assert registry._MULTI30K_COMMIT in raw.urls[1]
    assert registry._CHAR_RNN_COMMIT in shakespeare.urls[1]


def test_registry_entries_are_frozen():
    info = DATASETS["multi30k"]
    with pytest.raises(AttributeError):
        info.name = "other"
    assert info.splits == ("train", "val", "test_2016_flickr")
    assert info.langs == ("en", "de")
    assert DATASETS["tiny_shakespeare"].splits == ()


@pytest.mark.parametrize(
    "name, split, lang, message",
    [
        ("wmt14", None, None, "Received: name='wmt14'"),
        ("multi30k", "test", "en", "Received: split='test'"),
        ("multi30k", "train", "fr", "Received: lang='fr'"),
        ("multi30k", "train", None, "Received: lang=None"),
        ("tiny_shakespeare", "train", None, "must be None. Received: split"),
    ],
    ids=["name", "split", "lang", "lang_missing", "split_not_allowed"],
)
def test_get_path_rejects_bad_arguments(name, split, lang, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.get_path(name, split, lang, download=False)


def test_registry_doctests():
    for module in (registry, datasets):
        result = doctest.testmod(module, raise_on_error=True)
        assert result.attempted > 0, module.__name__


# ---------------------------------------------------------- real datasets


@needs_mirror
def test_get_path_reads_mirror_from_environment(tmp_path):
    path = data.get_path("multi30k", "val", "de", cache_dir=tmp_path)
    assert path == pathlib.Path(MIRROR, "multi30k", "val.de")
    assert list(tmp_path.iterdir()) == []


@needs_mirror
def test_load_multi30k_train():
    sources, targets = data.load_multi30k("train", download=False)
    assert len(sources) == len(targets) == 29000
    assert sources[0] == "Two young, White males are outside near many bushes."
    assert targets[0] == (
        "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    )
    assert sources[-1].startswith("A man in shorts and a Hawaiian shirt")
    assert targets[-1].startswith("Ein Mann in Shorts und Hawaiihemd")
    # Line 5909 of train.de ends with a space upstream; lines are stripped.
    assert targets[5908] == (
        "Ein junger Mann springt mitten in der Luft auf einem Trampolin."
    )


@needs_mirror
def test_load_multi30k_tokenized_reversed_direction():
    sources, targets = data.load_multi30k(
        "val", src_lang="de", tgt_lang="en", tokenized=True, download=False
    )
    assert len(sources) == len(targets) == 1014
    assert sources[0] == (
        "eine gruppe von männern lädt baumwolle auf einen lastwagen"
    )
    assert targets[0] == "a group of men are loading cotton onto a truck"


@needs_mirror
def test_load_multi30k_test_2016():
    sources, targets = data.load_multi30k("test_2016_flickr", download=False)
    assert len(sources) == len(targets) == 1000
    assert targets[0] == (
        "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="dev"), "Received: split='dev'"),
        (dict(split="val", src_lang="fr"), "Received: src_lang='fr'"),
        (dict(split="val", tgt_lang="EN"), "Received: tgt_lang='EN'"),
        (
            dict(split="val", src_lang="de", tgt_lang="de"),
            "src_lang='de', tgt_lang='de'",
        ),
        (dict(split="val", tokenized="yes"), "Received: tokenized='yes'"),
    ],
    ids=["split", "src_lang", "tgt_lang", "same_lang", "tokenized"],
)
def test_load_multi30k_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_multi30k(**kwargs, download=False)


@needs_mirror
def test_tiny_shakespeare_and_nanogpt_split():
    text = data.load_tiny_shakespeare(download=False)
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:\nBefore we proceed any further")
    assert len(set(text)) == 65
    train, val = data.split_text(text)
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert train + val == text


def test_split_text_fractions():
    assert data.split_text("abcd", fraction=0.5) == ("ab", "cd")
    assert data.split_text([1, 2, 3], fraction=0.9) == ([1, 2], [3])


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.9"])
def test_split_text_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=re.escape(f"fraction={fraction!r}")):
        data.split_text("abc", fraction=fraction)


# ------------------------------------------------------- mirror checksums


def _copy_to_mirror(tmp_path, relpath, corrupt):
    target = tmp_path / "mirror" / relpath
    target.parent.mkdir(parents=True)
    shutil.copyfile(pathlib.Path(MIRROR, relpath), target)
    if corrupt:
        content = bytearray(target.read_bytes())
        content[10] ^= 0x01
        target.write_bytes(bytes(content))
    return target


@needs_mirror
def test_corrupt_mirror_file_raises_checksum_error(tmp_path, monkeypatch):
    target = _copy_to_mirror(tmp_path, "multi30k/val.en", corrupt=True)
    monkeypatch.setenv("SKIPSEQ_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(data.ChecksumError) as info:
        data.load_multi30k("val", download=False, cache_dir=tmp_path)
    message = str(info.value)
    assert str(target) in message
    expected = DATASETS["multi30k"].file("val", "en").sha256
    assert f"expected sha256 {expected}" in message
    assert isinstance(info.value, data.SkipseqDataError)
    assert isinstance(info.value, ValueError)


@needs_mirror
def test_mirror_sum_is_checked_once_per_version(tmp_path, monkeypatch):
    target = _copy_to_mirror(tmp_path, "multi30k/val.en", corrupt=False)
    calls = []

    def counting_sha256(path):
        calls.append(path)
        return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()

    monkeypatch.setattr(fetch, "sha256_file", counting_sha256)
    mirror = tmp_path / "mirror"
    for _ in range(3):
        assert data.get_path("multi30k", "val", "en", data_dir=mirror) == target
    assert len(calls) == 1
    # A changed file (new size and mtime) is hashed again, and rejected.
    target.write_bytes(b"changed\n")
    with pytest.raises(data.ChecksumError, match=re.escape(str(target))):
        data.get_path("multi30k", "val", "en", data_dir=mirror)
    assert len(calls) == 2


# ------------------------------------------------------ missing datasets


def test_missing_dataset_error_names_places(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPSEQ_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.get_path(
            "multi30k", "train", "en", download=False, cache_dir=tmp_path
        )
    message = str(info.value)
    assert "dataset 'multi30k' (split='train', lang='en')" in message
    assert str(tmp_path / "mirror" / "multi30k" / "train.en") in message
    cached = tmp_path / "datasets" / "skipseq" / "multi30k" / "train.en"
    assert str(cached) in message
    assert f"{MASTER}/data/task1/raw/train.en.gz" in message
    assert "download=False" in message
    assert "set SKIPSEQ_DATA_DIR" in message
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, data.SkipseqDataError)


def test_missing_dataset_without_mirror_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_tiny_shakespeare(download=False, cache_dir=tmp_path)
    message = str(info.value)
    assert "dataset 'tiny_shakespeare'" in message
    assert "SKIPSEQ_DATA_DIR is not set" in message
    assert "tinyshakespeare/input.txt" in message


def test_failed_downloads_are_listed(tmp_path, monkeypatch, toy):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.get_path("toy", cache_dir=tmp_path)
    message = str(info.value)
    for url in toy.urls:
        assert f"download from {url} failed: network access is disabled" in (
            message
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------- downloads


def _toy_dir(tmp_path):
    return tmp_path / "datasets" / "skipseq" / "toy"


def test_download_extracts_and_verifies_gzip(tmp_path, monkeypatch, toy):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    server = _serve(monkeypatch, {toy.urls[0]: gzip.compress(TOY_TEXT)})
    path = data.get_path("toy", cache_dir=tmp_path)
    assert path == _toy_dir(tmp_path) / "sample.txt"
    assert path.read_bytes() == TOY_TEXT
    # Only the verified file is left: no .gz, no partial file.
    assert sorted(os.listdir(_toy_dir(tmp_path))) == ["sample.txt"]
    # The second call finds the cached file and downloads nothing.
    assert data.get_path("toy", cache_dir=tmp_path, download=False) == path
    assert server.calls == [toy.urls[0]]


def test_download_falls_back_to_second_url(tmp_path, monkeypatch, toy):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    server = _serve(
        monkeypatch,
        {
            toy.urls[0]: Exception("URL fetch failure: 404"),
            toy.urls[1]: gzip.compress(TOY_TEXT),
        },
    )
    path = data.get_path("toy", cache_dir=tmp_path)
    assert path.read_bytes() == TOY_TEXT
    assert server.calls == list(toy.urls)


def test_plain_download_is_verified(tmp_path, monkeypatch, toy):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    plain = dataclasses.replace(toy, urls=TOY_URLS)
    info = DatasetInfo("toy", "Toy text.", "tests", "none", (plain,))
    monkeypatch.setitem(DATASETS, "toy", info)
    _serve(monkeypatch, {TOY_URLS[0]: TOY_TEXT})
    path = data.get_path("toy", cache_dir=tmp_path)
    assert path.read_bytes() == TOY_TEXT
    assert sorted(os.listdir(_toy_dir(tmp_path))) == ["sample.txt"]


@pytest.mark.parametrize(
    "payload, message",
    [
        (gzip.compress(b"other text\n"), "Checksum mismatch"),
        (b"not gzip at all", "could not be decompressed"),
        (gzip.compress(TOY_TEXT)[:-12], "could not be decompressed"),
    ],
    ids=["wrong_content", "not_gzip", "truncated"],
)
def test_bad_download_leaves_nothing(
    tmp_path, monkeypatch, toy, payload, message
):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    _serve(monkeypatch, {url: payload for url in toy.urls})
    with pytest.raises(data.ChecksumError) as info:
        data.get_path("toy", cache_dir=tmp_path)
    assert message in str(info.value)
    for url in toy.urls:
        assert url in str(info.value)
    assert os.listdir(_toy_dir(tmp_path)) == []


def test_corrupt_cache_file(tmp_path, monkeypatch, toy):
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    cached = _toy_dir(tmp_path) / "sample.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stale\n")
    # Without downloads, the bad cached file is reported by name.
    with pytest.raises(data.ChecksumError, match=re.escape(str(cached))):
        data.get_path("toy", cache_dir=tmp_path, download=False)
    # With downloads, it is replaced by a verified copy.
    _serve(monkeypatch, {toy.urls[0]: gzip.compress(TOY_TEXT)})
    assert data.get_path("toy", cache_dir=tmp_path) == cached
    assert cached.read_bytes() == TOY_TEXT


def test_real_get_file_with_local_url(tmp_path, monkeypatch):
    # urlretrieve reads file:// URLs without any network access.
    monkeypatch.delenv("SKIPSEQ_DATA_DIR", raising=False)
    monkeypatch.setattr(keras.utils, "get_file", REAL_GET_FILE)
    served = tmp_path / "served" / "toy.txt.gz"
    served.parent.mkdir()
    served.write_bytes(gzip.compress(TOY_TEXT))
    entry = DataFile(
        "toy/sample.txt", (served.as_uri(),), _sha256(TOY_TEXT), 2, 30
    )
    info = DatasetInfo("toy", "Toy text.", "tests", "none", (entry,))
    monkeypatch.setitem(DATASETS, "toy", info)
    path = data.get_path("toy", cache_dir=tmp_path / "cache")
    assert (
        path
        == tmp_path / "cache" / "datasets" / "skipseq" / "toy" / "sample.txt"
    )
    assert path.read_bytes() == TOY_TEXT
    assert os.listdir(path.parent) == ["sample.txt"]


def test_get_path_names_bad_option_types(tmp_path):
    with pytest.raises(ValueError, match=r"download='no'"):
        data.get_path("multi30k", "val", "en", download="no")
    with pytest.raises(ValueError, match=r"data_dir=3"):
        data.get_path("multi30k", "val", "en", data_dir=3)
    with pytest.raises(ValueError, match=r"cache_dir=3"):
        data.get_path("multi30k", "val", "en", cache_dir=3)


def test_missing_mirror_folder_is_named(tmp_path, monkeypatch):
    # A mistyped SKIPSEQ_DATA_DIR: the message says the folder is missing.
    missing = tmp_path / "no_such_mirror"
    monkeypatch.setenv(fetch.MIRROR_ENV_VAR, str(missing))
    with pytest.raises(
        data.DatasetNotFoundError,
        match=r"the mirror folder itself is missing",
    ):
        data.get_path(
            "multi30k", "val", "en", download=False, cache_dir=tmp_path
        )
