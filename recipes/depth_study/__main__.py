"""Command line: `python -m recipes.depth_study [--quick] [options]`.

Trains character LMs on Tiny Shakespeare (90/10 split) with plain and
residual stacks at several depths, the same number of tokens per run, and
writes to --output-dir (default runs/depth_study):

```
results.json      settings, unigram entropy, every run, deepest trained
results.csv       one row per run (plain values; empty for NaN)
table.md          the tables printed at the end
val_loss.png      final validation loss against depth
grad_ratio.png    first / last block gradient norm against depth
grad_profile.png  gradient norm per block of the deepest runs
```

The files are rewritten after every run, so an interrupted study keeps
what it finished; `--resume` then skips the runs already in
results.json (when the settings match).

Examples:

```
python -m recipes.depth_study --quick
python -m recipes.depth_study --transformer-depths 2,8,32 --lstm-depths 2,8
```
"""

import argparse
import json
import os
import pathlib
import sys

from recipes.common import cli
from recipes.depth_study import data as char_data
from recipes.depth_study import report, study

DEFAULT_OUTPUT_DIR = "runs/depth_study"
# The last words of the message of an interrupted study.
INTERRUPTED_NOTE = "run the command again with --resume to continue the study"
# Advice for a results.json that --resume cannot continue.
START_AFRESH = "use another --output-dir, or --overwrite instead of --resume"


def _ints(text):
    """A list of depths; `check_config` checks that they are positive."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        # argparse prefixes the flag: "argument --lstm-depths: ...".
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 2,4,8. "
            f"Received: {text!r}"
        ) from None


def _names(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def make_parser():
    parser = cli.make_parser(
        "python -m recipes.depth_study", __doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small study (minutes)"
    )
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    earlier = parser.add_mutually_exclusive_group()
    earlier.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs of results.json in --output-dir",
    )
    earlier.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier study in --output-dir",
    )
    options = {
        "transformer_depths": (_ints, "default 2,4,8,16,32"),
        "transformer_variants": (_names, "plain,post,pre,rezero,deepnorm"),
        "lstm_depths": (_ints, "default 2,4,8,16"),
        "lstm_variants": (_names, "plain,residual"),
        "width": (int, "model width"),
        "context_length": (int, "characters of context"),
        "batch_size": (int, "sequences per step"),
        "token_budget": (int, "training tokens of every run"),
        "learning_rate": (float, "peak Adam learning rate"),
        "margin": (float, "nats below the unigram entropy to count as trains"),
        "max_chars": (int, "use only the first characters of the text"),
        "seed": (int, "seed of weights and data order"),
    }
    for key, (kind, text) in options.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=kind,
            default=None,
            help=text,
        )
    parser.set_defaults(setting_keys=list(options))
    return parser


def config_from_args(args):
    overrides = {
        key: getattr(args, key)
        for key in args.setting_keys
        if getattr(args, key) is not None
    }
    return study.make_config(quick=args.quick, **overrides)


def previous_runs(output_dir, config):
    """The runs of an earlier study with the same settings, else []."""
    path = pathlib.Path(output_dir) / report.RESULTS_JSON
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(previous, dict) or not isinstance(
            previous.get("config"), dict
        ):
            raise ValueError("no `config` object")
        if "runs" not in previous:
            raise ValueError("no `runs`")
    except ValueError as error:
        raise ValueError(
            f"--resume: {path} is not a depth-study results file ({error}); "
            f"{START_AFRESH}."
        ) from error
    old = previous["config"]
    differ = [
        f"{key}={old.get(key)!r} there, {config.get(key)!r} now"
        for key in sorted(set(old) | set(config))
        if old.get(key) != config.get(key)
    ]
    if differ:
        raise ValueError(
            f"--resume: {path} was written with other settings "
            f"({'; '.join(differ)}); pass the same settings, or "
            f"{START_AFRESH}."
        )
    try:
        study.check_records(previous["runs"], config)
    except ValueError as error:
        raise ValueError(
            f"--resume: {path} holds a broken run: {error}; {START_AFRESH}."
        ) from error
    return previous["runs"]


def check_output_dir(output_dir, resume, overwrite):
    """Fail before any run if the study could not write to `output_dir`.

    `output_dir` must be a folder, or a new path whose nearest existing
    parent is a writable folder; an earlier study in it is kept unless
    `resume` or `overwrite`.
    """
    path = pathlib.Path(output_dir)
    received = f"Received: --output-dir={output_dir}"
    if path.exists() and not path.is_dir():
        raise ValueError(
            "Argument `--output-dir` must be a folder or a new path; it "
            f"is a file. {received}"
        )
    # The folder the first missing folder of the path is made in, or
    # `output_dir` itself.
    absolute = path.absolute()
    existing = next(p for p in (absolute, *absolute.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"Argument `--output-dir` must be a folder or a new path; "
            f"{existing} is a file. {received}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"Argument `--output-dir` must be writable; {existing} is not. "
            f"{received}"
        )
    for name in report.OUTPUT_FILES:
        if (path / name).is_dir():
            raise ValueError(
                f"Argument `--output-dir` holds a folder {name} where the "
                f"study writes a file. {received}"
            )
    results = path / report.RESULTS_JSON
    if results.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{results} holds an earlier study; pass --resume to continue "
            "it, --overwrite to replace it, or another --output-dir."
        )


def run_command(
    config, output_dir, resume=False, chars=None, keep_models=False
):
    """Run the study and write its files.

    Returns:
        `(results, models)`: the results dict (as in results.json) and
        the trained models by `(family, variant, depth)`, empty unless
        `keep_models`.
    """
    # Before the data: a results.json that cannot be resumed fails now.
    done = previous_runs(output_dir, config) if resume else []
    if chars is None:
        chars = char_data.load_char_data(
            config["train_fraction"], config["max_chars"]
        )
    entropy = char_data.unigram_entropy(chars.train_ids, chars.vocabulary_size)

    def write(records):
        report.write_all(study.summary(config, entropy, records), output_dir)

    records, trained = study.run_study(
        config, chars, on_record=write, keep_models=keep_models, done=done
    )
    results = study.summary(config, entropy, records)
    report.write_all(results, output_dir)
    return results, trained


def main(argv=None):
    # Settings and folder first: a mistake fails before any data or run.
    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    check_output_dir(args.output_dir, args.resume, args.overwrite)
    results, _ = run_command(config, args.output_dir, resume=args.resume)
    print(report.markdown_table(results))
    print(f"Wrote {args.output_dir}/ in {results['seconds']:.0f} s of runs.")
    return 0


def cli_main(argv=None):
    """`main` with one-line errors and the depth study's resume advice."""
    return cli.run(main, argv, interrupted_note=INTERRUPTED_NOTE)


if __name__ == "__main__":
    sys.exit(cli_main())
