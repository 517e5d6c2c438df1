"""Argument checks shared by skipseq layers.

Every message names the argument, says what was expected and echoes the
value received, so a user can find the mistake from the message alone.
"""


def one_of(name, value, choices):
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )


def rate(name, value):
    """Raise unless `value` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"Argument `{name}` must be a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1). Received: {name}={value!r}"
        )


def positive(name, value):
    """Raise unless `value` is a number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"Argument `{name}` must be a positive number. "
            f"Received: {name}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"Argument `{name}` must be greater than 0. "
            f"Received: {name}={value!r}"
        )


def positive_int(name, value):
    """Raise unless `value` is an int greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={value!r}"
        )


def boolean(name, value):
    """Raise unless `value` is a bool (a string such as "no" is truthy)."""
    if not isinstance(value, bool):
        raise ValueError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r}"
        )


def optional_int(name, value):
    """Raise unless `value` is None or an int (e.g. a seed)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int)
    ):
        raise ValueError(
            f"Argument `{name}` must be None or an int. "
            f"Received: {name}={value!r}"
        )


def static_dims_match(name, shape, expected):
    """Raise unless the known sizes of `shape` equal those of `expected`.

    `None` entries (unknown until run time) match anything, so the check
    costs nothing inside a traced function.
    """
    shape, expected = tuple(shape), tuple(expected)
    mismatch = len(shape) != len(expected) or any(
        a is not None and b is not None and a != b
        for a, b in zip(shape, expected, strict=False)
    )
    if mismatch:
        raise ValueError(
            f"Argument `{name}` must have shape {expected}. "
            f"Received: {name}.shape={shape}"
        )
