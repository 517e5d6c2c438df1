"""Command line: `python -m recipes.depth_study [--quick] [options]`.

Trains character LMs on Tiny Shakespeare (90/10 split) with plain and
residual stacks at several depths, the same number of tokens per run, and
writes to --output-dir (default runs/depth_study):

```
results.json      settings, unigram entropy, every run, deepest trained
results.csv       one row per run
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

import json
import pathlib
import sys

from recipes.common import cli
from recipes.depth_study import data as char_data
from recipes.depth_study import report, study

DEFAULT_OUTPUT_DIR = "runs/depth_study"


def _ints(text):
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"Expected comma-separated integers. Received: {text!r}"
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs of results.json in --output-dir",
    )
    parser.add_argument(
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
        runs = previous["runs"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"--resume: {path} is not a depth-study results file ({error}); "
            "use another --output-dir or --overwrite."
        ) from error
    if previous.get("config") != config:
        raise ValueError(
            f"--resume: {path} was written with other settings; use "
            "another --output-dir or drop --resume."
        )
    return runs


def check_output_dir(output_dir, resume, overwrite):
    """Refuse to write over an earlier study unless asked to."""
    path = pathlib.Path(output_dir) / report.RESULTS_JSON
    if path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{path} holds an earlier study; pass --resume to continue it, "
            "--overwrite to replace it, or another --output-dir."
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
    if chars is None:
        chars = char_data.load_char_data(
            config["train_fraction"], config["max_chars"]
        )
    entropy = char_data.unigram_entropy(chars.train_ids, chars.vocabulary_size)
    done = previous_runs(output_dir, config) if resume else []

    def write(records):
        report.write_all(study.summary(config, entropy, records), output_dir)

    records, trained = study.run_study(
        config, chars, on_record=write, keep_models=keep_models, done=done
    )
    results = study.summary(config, entropy, records)
    report.write_all(results, output_dir)
    return results, trained


def main(argv=None):
    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    check_output_dir(args.output_dir, args.resume, args.overwrite)
    results, _ = run_command(config, args.output_dir, resume=args.resume)
    print(report.markdown_table(results))
    print(f"Wrote {args.output_dir}/ in {results['seconds']:.0f} s of runs.")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
