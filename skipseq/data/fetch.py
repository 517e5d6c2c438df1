"""Finding, downloading and verifying the files of registered datasets."""

import gzip
import hashlib
import logging
import os
import pathlib
import tempfile
import zlib

from skipseq.data.errors import ChecksumError, DatasetNotFoundError
from skipseq.data.registry import DATASETS

logger = logging.getLogger(__name__)

# Environment variable naming the offline mirror root.
MIRROR_ENV_VAR = "SKIPSEQ_DATA_DIR"
# Downloads go to <keras cache>/datasets/skipseq/<relpath>, so that folder
# has the mirror layout and can itself serve as SKIPSEQ_DATA_DIR.
CACHE_SUBDIR = os.path.join("datasets", "skipseq")
_CHUNK_BYTES = 1 << 20

# Sums already checked, keyed by (real path, mtime in ns, size): a file is
# hashed again only after it changes.
_verified_sums = {}


def sha256_file(path):
    """Returns the hex sha256 sum of the file at `path`."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def _stat_key(path):
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def verify_file(path, sha256, description="file"):
    """Checks that the file at `path` has the sha256 sum `sha256`.

    A successful check is remembered per path, modification time and size,
    so repeated calls on an unchanged file do not hash it again.

    Args:
        path: the file to check.
        sha256: expected hex sha256 sum.
        description: what the file is, for the error message (e.g.
            "dataset 'multi30k' (split='train', lang='en')").

    Raises:
        ChecksumError: if the sums differ; the message names the file and
            both sums.
    """
    key = _stat_key(path)
    if _verified_sums.get(key) == sha256:
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise ChecksumError(
            f"Checksum mismatch for '{path}' ({description}): expected "
            f"sha256 {sha256}, got {actual}. The file is corrupt or a "
            "different version; replace it with the original."
        )
    _verified_sums[key] = sha256


def keras_cache_dir(cache_dir=None):
    """Returns the Keras cache root that `keras.utils.get_file` writes to.

    Follows the rules of `get_file`: `cache_dir` if given, else
    `$KERAS_HOME`, else `~/.keras`; if that folder is not writable,
    `/tmp/.keras`. The folder is created when possible.
    """
    if cache_dir is None:
        if "KERAS_HOME" in os.environ:
            cache_dir = os.environ["KERAS_HOME"]
        else:
            home = os.path.expanduser("~")
            if not os.access(home, os.W_OK):
                home = "/tmp"
            cache_dir = os.path.join(home, ".keras")
    root = os.path.expanduser(os.fspath(cache_dir))
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        pass
    if not os.access(root, os.W_OK):
        tmp = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        root = os.path.join(tmp, ".keras")
    return pathlib.Path(root)


def _describe(info, entry):
    parts = [
        f"{k}={v!r}"
        for k, v in (("split", entry.split), ("lang", entry.lang))
        if v
    ]
    suffix = f" ({', '.join(parts)})" if parts else ""
    return f"dataset '{info.name}'{suffix}"


def _read_download(src, url, description, compressed):
    # Only read errors mean a bad download; write errors propagate as is.
    try:
        return src.read(_CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        action = "decompressed" if compressed else "read"
        raise ChecksumError(
            f"The file downloaded from {url} for {description} could not "
            f"be {action}: {exc}"
        ) from exc


def _install(downloaded, target, entry, url, description):
    """Decompresses if needed, checks the sum and moves into `target`.

    Writes to a temporary file next to `target` and renames it only after
    the sum matched, so no partial or wrong file is ever left at `target`.
    """
    compressed = url.endswith(".gz")
    opener = gzip.open if compressed else open
    hasher = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as dst, opener(downloaded, "rb") as src:
            while chunk := _read_download(src, url, description, compressed):
                hasher.update(chunk)
                dst.write(chunk)
        actual = hasher.hexdigest()
        if actual != entry.sha256:
            raise ChecksumError(
                f"Checksum mismatch for the file downloaded from {url} "
                f"({description}, to be stored as '{target}'): expected "
                f"sha256 {entry.sha256}, got {actual}. The download was "
                "discarded."
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    _verified_sums[_stat_key(target)] = entry.sha256


def _download(entry, url, target, root, description):
    # Imported here so that `import skipseq.data` stays light.
    import keras

    # The download keeps a distinct name until it is verified.
    suffix = ".gz" if url.endswith(".gz") else ".download"
    subdir = os.path.join(CACHE_SUBDIR, *entry.relpath.split("/")[:-1])
    downloaded = keras.utils.get_file(
        fname=target.name + suffix,
        origin=url,
        cache_subdir=subdir,
        cache_dir=os.fspath(root),
        force_download=True,
    )
    try:
        _install(downloaded, target, entry, url, description)
    finally:
        if os.path.exists(downloaded):
            os.remove(downloaded)
    logger.info("Stored %s at %s", description, target)
    return target


def _lookup(name):
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"`name` must be one of {sorted(DATASETS)}. Received: name={name!r}"
        )
    return DATASETS[name]


def get_path(
    name, split=None, lang=None, *, download=True, data_dir=None, cache_dir=None
):
    """Returns the local path of a registered dataset file, verified.

    Looks in three places, in order:

    1. the offline mirror: `data_dir`, or else the folder named by the
       environment variable `SKIPSEQ_DATA_DIR`, with the registry layout
       (`multi30k/train.en`, `multi30k/tok/train.lc.norm.tok.en`,
       `tinyshakespeare/input.txt`, ...). A mirror file is never replaced
       by a download;
    2. the Keras cache, `<cache root>/datasets/skipseq/<relpath>`;
    3. if `download` is true, the file's URLs, in order, through
       `keras.utils.get_file`; gzip downloads are decompressed. The file is
       stored in the Keras cache only after its sum matched.

    Every file is checked against the registered sha256 sum of its
    uncompressed content (checks are cached per path, mtime and size).

    Args:
        name: dataset name, a key of `DATASETS` (`"multi30k"`,
            `"multi30k_tok"`, `"tiny_shakespeare"`).
        split: split name for datasets with splits, e.g. `"train"`,
            `"val"`, `"test_2016_flickr"`; None otherwise. Defaults to None.
        lang: language code (`"en"`, `"de"`) for datasets with languages;
            None otherwise. Defaults to None.
        download: whether to download a file found in neither the mirror nor
            the cache. Defaults to True.
        data_dir: mirror root that overrides `SKIPSEQ_DATA_DIR`. Defaults to
            None.
        cache_dir: Keras cache root (as `keras.utils.get_file`'s
            `cache_dir`); None means `$KERAS_HOME` or `~/.keras`. Defaults
            to None.

    Returns:
        A `pathlib.Path` to the uncompressed, verified file.

    Raises:
        ValueError: for an unknown `name`, `split` or `lang`.
        ChecksumError: if a mirror file has the wrong sum, if a cached file
            has the wrong sum and `download` is false, or if every download
            attempt that succeeded had the wrong sum.
        DatasetNotFoundError: if the file is not available; the message
            names the dataset, the mirror and cache paths, the URLs, and
            how to provide the file.

    Example:

    >>> path = get_path("multi30k", "val", "en")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'val.en'
    """
    info = _lookup(name)
    entry = info.file(split, lang)
    if not isinstance(download, bool):
        raise ValueError(
            f"`download` must be a bool. Received: download={download!r}"
        )
    for arg_name, value in (("data_dir", data_dir), ("cache_dir", cache_dir)):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ValueError(
                f"`{arg_name}` must be None or a path (str or os.PathLike). "
                f"Received: {arg_name}={value!r}"
            )
    description = _describe(info, entry)
    searched = []

    if data_dir is not None:
        mirror, origin = data_dir, "data_dir"
    else:
        mirror, origin = os.environ.get(MIRROR_ENV_VAR), MIRROR_ENV_VAR
    if mirror:
        path = pathlib.Path(mirror).expanduser() / entry.relpath
        if path.is_file():
            verify_file(path, entry.sha256, description)
            return path
        # A mistyped mirror folder is the likelier cause: say so.
        problem = "does not exist"
        root_dir = pathlib.Path(mirror).expanduser()
        if not root_dir.is_dir():
            kind = "a file" if root_dir.exists() else "missing"
            problem = f"does not exist (the mirror folder itself is {kind})"
        searched.append(
            f"offline mirror: '{path}' {problem} ({origin}={mirror})"
        )
    else:
        searched.append(
            f"offline mirror: none, {MIRROR_ENV_VAR} is not set or empty"
        )

    root = keras_cache_dir(cache_dir)
    cached = root.joinpath(CACHE_SUBDIR, *entry.relpath.split("/"))
    if cached.is_file():
        try:
            verify_file(cached, entry.sha256, description)
            return cached
        except ChecksumError:
            if not download:
                raise
            logger.warning(
                "Cached %s at %s has the wrong checksum; downloading again.",
                description,
                cached,
            )
            os.remove(cached)
    searched.append(f"Keras cache: '{cached}' does not exist")

    checksum_failed = False
    if download:
        for url in entry.urls:
            try:
                return _download(entry, url, cached, root, description)
            except ChecksumError as exc:
                checksum_failed = True
                searched.append(f"download: {exc}")
            except Exception as exc:  # get_file raises plain Exception.
                searched.append(f"download from {url} failed: {exc}")
            logger.warning("%s", searched[-1])
    else:
        urls = ", ".join(entry.urls)
        searched.append(f"download: disabled (download=False); URLs: {urls}")

    listing = "\n".join(f"  - {line}" for line in searched)
    message = (
        f"Could not obtain {description}, file '{entry.relpath}'.\n"
        f"Searched:\n{listing}\n"
        f"To provide it, set {MIRROR_ENV_VAR} to a folder that holds "
        f"'{entry.relpath}' (the layout of the skipseq data mirror), or "
        "allow network access and call with download=True (the default)."
    )
    if checksum_failed:
        raise ChecksumError(message)
    raise DatasetNotFoundError(message)
