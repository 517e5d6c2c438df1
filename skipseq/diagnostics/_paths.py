"""Checks of the monitor's output paths, made when it is constructed.

A path that cannot be written would otherwise fail at the first record, or
for the plot only after training has finished, losing `fit`'s History.
"""

import os


def _fspath(name, value, what):
    """`value` as a non-empty str path, or raise naming `name`."""
    path = None
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"Argument `{name}` must be None or {what} (a str or "
            f"os.PathLike). Received: {name}={value!r}"
        )
    return path


def output_file(name, value):
    """Raise unless `value` is None or a writable file path.

    The file may be new, but its directory must exist: the writers do not
    create directories for a single file.
    """
    if value is None:
        return
    path = _fspath(name, value, "a file path")
    if os.path.isdir(path):
        raise ValueError(
            f"Argument `{name}` must be a file path, but {path!r} is a "
            f"directory. Received: {name}={value!r}"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"Argument `{name}` must be in an existing directory, but "
            f"{directory!r} is not one. Received: {name}={value!r}"
        )
    target = path if os.path.exists(path) else directory
    if not os.access(target, os.W_OK):
        raise ValueError(
            f"Argument `{name}` must be writable, but {target!r} is not. "
            f"Received: {name}={value!r}"
        )


def log_directory(name, value):
    """Raise unless `value` is None or a directory TensorBoard can use.

    Missing directories are created by TensorFlow, so only a file in the
    way (the path itself or a parent) or a read-only parent is an error.
    Remote paths (`gs://...`) are left to TensorFlow.
    """
    if value is None:
        return
    path = _fspath(name, value, "a directory path")
    if "://" in path:
        return
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"Argument `{name}` must be a directory, but {existing!r} is a "
            f"file. Received: {name}={value!r}"
        )
    if not os.access(existing, os.W_OK):
        raise ValueError(
            f"Argument `{name}` must be writable, but {existing!r} is not. "
            f"Received: {name}={value!r}"
        )
