"""Recipe configurations: named JSON files, defaults and overrides.

A recipe declares its keys and default values once, in a `dict`. A named
configuration is a JSON object in `recipes/configs/<name>.json` (or any
path) that sets some of those keys; the command line then overrides single
values with `--set key=value`. Every key must be one the recipe declares,
and every value must have the type of its default, so a typo fails loudly
with the file and the key named instead of being silently ignored.
"""

import json
import pathlib

from recipes.common.files import read_text

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A configuration file or override cannot be used.

    The message names the file or the key and shows the offending value.
    """


def resolve_config_path(name_or_path):
    """Returns the JSON file for a configuration name or path.

    `name_or_path` is either a path to a `.json` file or the name of a file
    in `recipes/configs/` (without `.json`).

    Raises:
        ConfigError: if no such file exists; the message lists the names
            available in `recipes/configs/`.
    """
    text = str(name_or_path)
    candidates = [pathlib.Path(text)]
    if not text.endswith(".json"):
        candidates.append(CONFIG_DIR / f"{text}.json")
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    raise ConfigError(
        f"Config file not found: '{candidates[-1]}'. Pass a path to a JSON "
        f"file or one of the names {known}."
    )


def _type_name(value):
    return type(value).__name__


def _a_type_name(value):
    name = _type_name(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def check_value(key, value, default, source):
    """Returns `value` if it fits the type of `default`, else raises.

    Ints are accepted where a float is expected (and converted). A default
    of None accepts any JSON value. `source` says where the value came from
    for the error message (a file name or "--set").
    """
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"Config key `{key}` in {source} must be "
            f"{_a_type_name(default)} like its default {default!r}. "
            f"Received: {key}={value!r}"
        )
    return value


def _unknown_key(key, defaults, source):
    close = [k for k in defaults if key in k or k in key]
    hint = f" Did you mean {close}?" if close else ""
    return ConfigError(
        f"Unknown config key `{key}` in {source}.{hint} Known keys: "
        f"{sorted(defaults)}"
    )


def load_config_file(path, defaults):
    """Reads a JSON configuration and merges it over `defaults`.

    Returns:
        A new `dict` with every key of `defaults`; the file's values replace
        the defaults.

    Raises:
        ConfigError: if the file is missing, is not valid JSON, is not a
            JSON object, or has a key `defaults` lacks or a value of the
            wrong type. The message names the file (and the key).
    """
    path = pathlib.Path(path)
    text = read_text(path, "Config", ConfigError)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"Config file '{path}' is not valid JSON: {error.msg} at line "
            f"{error.lineno}, column {error.colno}."
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config file '{path}' must hold a JSON object (key: value "
            f"pairs). Received: a JSON {_type_name(values)}."
        )
    config = dict(defaults)
    source = f"config file '{path}'"
    for key, value in values.items():
        if key not in defaults:
            raise _unknown_key(key, defaults, source)
        config[key] = check_value(key, value, defaults[key], source)
    return config


def parse_override(text):
    """Splits `key=value` and decodes the value.

    The value is read as JSON when it parses (numbers, `true`, `null`,
    lists) and as a plain string otherwise, so `--set name=run1` and
    `--set dropout=0.1` both work.

    >>> parse_override("dropout=0.1")
    ('dropout', 0.1)
    >>> parse_override("source_lang=de")
    ('source_lang', 'de')
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"An override must look like key=value. Received: {text!r}"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_overrides(config, overrides, defaults, source="--set"):
    """Returns `config` with `key=value` strings applied in order.

    `source` names where the overrides came from in error messages.

    Raises:
        ConfigError: for a malformed override, a key `defaults` lacks, or a
            value of the wrong type; the message names the key.
    """
    config = dict(config)
    for text in overrides:
        key, value = parse_override(text)
        if key not in defaults:
            raise _unknown_key(key, defaults, source)
        if isinstance(defaults[key], str) and not isinstance(value, str):
            # `--set name=123` means the string "123" for a string key.
            value = text.partition("=")[2]
        config[key] = check_value(key, value, defaults[key], source)
    return config


def load_config(name_or_path, defaults, overrides=()):
    """Resolves, reads and overrides a configuration in one call.

    Args:
        name_or_path: configuration name (a file in `recipes/configs/`) or
            path to a JSON file; None means the defaults alone.
        defaults: `dict` of every key the recipe knows, with defaults.
        overrides: sequence of `key=value` strings, applied last.

    Returns:
        A `dict` with every key of `defaults`.
    """
    if name_or_path is None:
        config = dict(defaults)
    else:
        path = resolve_config_path(name_or_path)
        config = load_config_file(path, defaults)
    return apply_overrides(config, overrides, defaults)


def save_config(config, path):
    """Writes `config` as indented JSON (atomically) and returns the path."""
    from recipes.common.files import atomic_write_text

    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text)
