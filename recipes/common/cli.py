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
import os
import signal
import sys

from recipes.common.config import ConfigError, apply_overrides, load_config

# Errors a user can fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError)
# Exit status of a program stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
# Exit status when the reader of stdout went away (128 + SIGPIPE).
BROKEN_PIPE = 141
# How to continue after an interruption; a recipe resuming otherwise
# passes its own `interrupted_note` to `run`.
INTERRUPTED_NOTE = "an interrupted `train` resumes when run again"
BOOL_WORDS = {"1": True, "true": True, "yes": True}
BOOL_WORDS.update({"0": False, "false": False, "no": False})


def _bool_flag(text):
    """JSON for a yes/no word; other text stays a string for the check."""
    value = BOOL_WORDS.get(text.strip().lower(), text)
    return json.dumps(value)


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
        kind = type(default)
        if kind is bool:
            group.add_argument(
                f"--{key.replace('_', '-')}",
                dest=f"key_{key}",
                type=_bool_flag,
                metavar="BOOL",
                help=f"{text} (config key `{key}`)",
            )
        else:
            group.add_argument(
                f"--{key.replace('_', '-')}",
                dest=f"key_{key}",
                type=str,
                # A key without a default takes any JSON value (null too).
                metavar="VALUE" if default is None else kind.__name__.upper(),
                help=f"{text} (config key `{key}`)",
            )


def config_from_args(args, defaults):
    """The configuration named by the parsed `args`, overrides applied.

    Per-key flags apply before the `--set` overrides; an error names the
    flag or `--set`.
    """
    config = load_config(args.config, defaults)
    for name, value in vars(args).items():
        if name.startswith("key_") and value is not None:
            key = name[4:]
            flag = f"--{key.replace('_', '-')}"
            config = apply_overrides(
                config, [f"{key}={value}"], defaults, source=flag
            )
    return apply_overrides(config, args.overrides, defaults)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(main, argv=None, interrupted_note=INTERRUPTED_NOTE):
    """Calls `main(argv)` and turns user errors into `error: ...` + exit 2.

    SIGTERM (what `timeout` and `kill` send) is handled like Ctrl-C, so
    temporary files are removed either way; an interrupted program
    prints one line, ending with `interrupted_note` (how to continue),
    and exits with status 130.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # TensorFlow's own INFO records (SavedModel input renaming, asset
    # paths) are noise for a recipe user.
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return main(argv)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        name = str(error) or "SIGINT"
        words = sys.argv[1:] if argv is None else list(argv)
        if interrupted_note == INTERRUPTED_NOTE and "train" not in words:
            # Only training resumes; other commands write atomically.
            interrupted_note = "nothing is left half-written"
        # A progress bar may have left its line open.
        print(
            f"\nerror: interrupted by {name}; files already written are "
            f"kept ({interrupted_note}).",
            file=sys.stderr,
        )
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and keep
        # Python from failing again when it flushes stdout at exit.
        try:
            stdout = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return BROKEN_PIPE  # Not a real file (a test's capture).
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout)
        return BROKEN_PIPE
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_parser(prog, description):
    """An `ArgumentParser` that keeps the line breaks of `description`.

    Defaults are written into each flag's help by hand, where they help.
    """
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
