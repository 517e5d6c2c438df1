"""Command-line helpers shared by the recipes.

Every recipe command takes `--config NAME_OR_PATH`, any number of
`--set key=value` overrides, a flag per frequently changed key (the flag
`--batch-size 64` is `--set batch_size=64`), and `--output-dir`.
Expected failures (bad configuration, missing files) end the program with
a one-line message and exit status 2 instead of a traceback.
"""

import argparse
import json
import logging
import sys

from recipes.common.config import ConfigError, load_config

# Errors a user can fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError)


def add_config_arguments(parser, defaults, default_config, key_help):
    """Adds `--config`, `--set` and one flag per key of `key_help`.

    Args:
        parser: an `argparse.ArgumentParser` (or subparser).
        defaults: the recipe's dict of keys and defaults.
        default_config: name of the configuration used without --config.
        key_help: dict `key -> help text`; each key gets a flag
            `--key-with-dashes` of the type of its default.
    """
    parser.add_argument(
        "--config",
        default=default_config,
        help=(
            "configuration: a name from recipes/configs/ (without .json) "
            f"or a path to a JSON file (default: {default_config})"
        ),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "override one configuration value; VALUE is read as JSON when "
            "it parses, else as a string (repeatable, applied last)"
        ),
    )
    group = parser.add_argument_group("configuration values")
    for key, text in key_help.items():
        default = defaults[key]
        kind = type(default) if default is not None else str
        if kind is bool:
            group.add_argument(
                f"--{key.replace('_', '-')}",
                dest=f"key_{key}",
                type=lambda s: json.dumps(s.lower() in ("1", "true", "yes")),
                metavar="BOOL",
                help=f"{text} (config key `{key}`)",
            )
        else:
            group.add_argument(
                f"--{key.replace('_', '-')}",
                dest=f"key_{key}",
                type=str,
                metavar=kind.__name__.upper(),
                help=f"{text} (config key `{key}`)",
            )


def config_from_args(args, defaults):
    """The configuration named by the parsed `args`, overrides applied.

    Per-key flags apply before the `--set` overrides.
    """
    overrides = []
    for name, value in vars(args).items():
        if name.startswith("key_") and value is not None:
            overrides.append(f"{name[4:]}={value}")
    overrides.extend(args.overrides)
    return load_config(args.config, defaults, overrides)


def run(main, argv=None):
    """Calls `main(argv)` and turns user errors into `error: ...` + exit 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # TensorFlow's own INFO records (SavedModel input renaming, asset
    # paths) are noise for a recipe user.
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def make_parser(prog, description):
    """An `ArgumentParser` that shows defaults and keeps line breaks."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
