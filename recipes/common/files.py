"""File helpers that never leave a half-written result behind.

A result is first written under a temporary name in the same folder as
its target and then renamed, which is atomic on one file system: a reader
sees the old version or the new one, and a crash leaves at most a
temporary file or folder whose name starts with `.tmp-`.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile

TEMP_PREFIX = ".tmp-"


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_mode():
    """The permissions a new file gets under the current umask."""
    return 0o666 & ~_umask()


def default_directory_mode():
    """The permissions a new folder gets under the current umask."""
    return 0o777 & ~_umask()


def read_text(path, what, error=ValueError):
    """The UTF-8 text of the file `path`.

    A missing or unreadable file raises `error` with a message that names
    it as a `what` file ("Config", "Vocabulary") and gives its path.
    """
    path = pathlib.Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} file not found: '{path}'.") from None
    except (OSError, UnicodeDecodeError) as reason:
        raise error(f"{what} file '{path}' cannot be read: {reason}") from None


def atomic_write_text(path, text):
    """Writes `text` to `path` (UTF-8) through a temporary file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(
        prefix=TEMP_PREFIX + path.name, dir=path.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        # mkstemp creates the file readable by its owner only.
        os.chmod(temp, default_mode())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    return path


def check_can_write(path, overwrite):
    """Raises `FileExistsError` if `path` exists and `overwrite` is false."""
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"'{path}' already exists; pass --overwrite to replace it."
        )


def check_can_replace(path, overwrite, marker=None):
    """`check_can_write`, and with `marker`, protects other folders.

    With `marker` (a file name such as `saved_model.pb`), an existing
    `path` is replaced only if it is a folder holding that file, so that
    `--overwrite` can never delete a run directory or a user's files.
    """
    check_can_write(path, overwrite)
    path = pathlib.Path(path)
    if marker and path.exists() and not (path / marker).is_file():
        raise FileExistsError(
            f"'{path}' exists and is not an earlier export (it has no "
            f"{marker}); it is never replaced, even with --overwrite. "
            "Choose another folder."
        )


@contextlib.contextmanager
def atomic_directory(target, overwrite=False, marker=None):
    """Context manager that builds a folder and moves it to `target`.

    Yields a new empty temporary folder next to `target`. When the block
    ends normally the folder is renamed to `target`; when it raises, the
    temporary folder is deleted and `target` is left as it was. An existing
    `target` is replaced only if `overwrite` is true, and then only after
    the new folder is complete; with `marker`, only if it is a folder
    holding a file of that name (see `check_can_replace`).

    Raises:
        FileExistsError: if `target` exists and may not be replaced
            (checked before the block runs and again before the rename).
    """
    target = pathlib.Path(target)
    check_can_replace(target, overwrite, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = pathlib.Path(
        tempfile.mkdtemp(prefix=TEMP_PREFIX + target.name, dir=target.parent)
    )
    # mkdtemp makes the folder private to its owner; an export is read
    # by servers that may run as another user.
    os.chmod(temp, default_directory_mode())
    try:
        yield temp
        check_can_replace(target, overwrite, marker)
        if target.exists():
            # Move the old folder aside first so that a failed rename
            # below can put it back.
            old = target.with_name(f"{TEMP_PREFIX}old-{target.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            try:
                os.replace(temp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
