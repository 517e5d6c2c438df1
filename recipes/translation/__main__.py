"""Command line of the translation recipe.

    python -m recipes.translation train     [--config NAME] [--set k=v ...]
    python -m recipes.translation evaluate  [--output-dir RUN]
    python -m recipes.translation translate [--output-dir RUN] [FILE]
    python -m recipes.translation export    [--output-dir RUN] [--export-dir]

`train` writes a run directory (default `runs/translation/<config>`);
the other commands read the trained model, its vocabulary and its
configuration from there.
"""

import os
import pathlib
import sys

from recipes.common import cli, files
from recipes.common.config import ConfigError
from recipes.translation.config import DEFAULT_CONFIG, DEFAULTS, KEY_HELP

DESCRIPTION = """\
Train, evaluate, use and export a translation model (Transformer or
GNMT-style residual RNN) on Multi30k English-German or a parallel corpus.

Configurations are JSON files in recipes/configs/ (translation_transformer,
translation_rnn, translation_demo, translation_tiny); --set key=value and
the per-key flags override single values. evaluate, translate and export
read the configuration saved by train in the run directory; there,
--set changes only search settings such as beam_size.
"""


def default_run_dir(config_name):
    """`runs/translation/<name>` for a configuration name or path."""
    return pathlib.Path("runs", "translation", pathlib.Path(config_name).stem)


def _add_run_arguments(parser, for_training):
    parser.add_argument(
        "--output-dir",
        "--run-dir",
        default=None,
        help=(
            "run directory: where train writes config.json, vocab*.txt, "
            "model.weights.h5, backup/ and logs/, and where the other "
            "commands read them (default: runs/translation/<config name>)"
        ),
    )
    if for_training:
        parser.add_argument(
            "--reverse",
            action="store_true",
            help=(
                "swap the dataset's source and target languages (German to "
                "English); give an --output-dir other than the forward "
                "run's, as both default to runs/translation/<config name>"
            ),
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace a finished run in --output-dir",
        )


def _parser():
    parser = cli.make_parser("python -m recipes.translation", DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model (resumes an interrupted run)",
        description=(
            "Learn a WordPiece vocabulary from the training split, then "
            "train with model.fit (XLA, label smoothing, warm-up schedule, "
            "BackupAndRestore, TensorBoard). Running it again on an "
            "unfinished run directory resumes at the last saved epoch."
        ),
    )
    _add_run_arguments(train, for_training=True)
    cli.add_config_arguments(train, DEFAULTS, DEFAULT_CONFIG, KEY_HELP)

    evaluate = commands.add_parser(
        "evaluate",
        help="BLEU and chrF on the test split; writes report.json",
        description=(
            "Translate the test split (test_2016_flickr by default) with "
            "the trained model and report sacrebleu BLEU (13a, cased) and "
            "chrF; the report goes to <run dir>/report.json."
        ),
    )
    translate = commands.add_parser(
        "translate",
        help="translate lines from a file or stdin, streaming results",
        description=(
            "Translate one sentence per line from FILE (or stdin) and "
            "print one translation per line as soon as its batch is done."
        ),
    )
    translate.add_argument(
        "input",
        nargs="?",
        default="-",
        help="text file, one sentence per line ('-' or absent: stdin)",
    )
    translate.add_argument(
        "--batch-lines",
        type=int,
        default=16,
        help=(
            "translate this many lines at a time (default: 16); each "
            "call is padded to a multiple of eval_batch_size rows, the "
            "one batch shape the compiled search is built for"
        ),
    )
    export = commands.add_parser(
        "export",
        help="write a SavedModel that maps raw strings to translations",
        description=(
            "Write a SavedModel whose serving signature takes a batch of "
            "strings and returns translations (tokenise, encode, beam "
            "search, detokenise, all in the graph). Load it with "
            "TensorFlow after `import tensorflow_text`."
        ),
    )
    export.add_argument(
        "--export-dir",
        default=None,
        help="where to write the SavedModel (default: <run dir>/export)",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing export (never replaced otherwise)",
    )
    for sub in (evaluate, translate, export):
        _add_run_arguments(sub, for_training=False)
        sub.add_argument(
            "--config",
            default=DEFAULT_CONFIG,
            help=(
                "configuration name, only used to find the default run "
                f"directory (default: {DEFAULT_CONFIG})"
            ),
        )
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=(
                "override a search or test setting: beam_size, "
                "length_penalty, max_decode_length, eval_batch_size, "
                "bucket_lengths, jit_compile, test_corpus, test_split or "
                "max_eval_examples (e.g. test_corpus=mine.tsv)"
            ),
        )
        sub.add_argument(
            "--beam-size",
            type=int,
            default=None,
            help="beam width (1: greedy search; default: from the config)",
        )
    return parser


def _run_dir(args):
    return pathlib.Path(args.output_dir or default_run_dir(args.config))


def _train(args):
    from recipes.translation import recipe

    config = cli.config_from_args(args, DEFAULTS)
    corpora = [k for k in ("train_corpus", "valid_corpus") if config[k]]
    if args.reverse and corpora:
        # A user corpus has no language names to swap; doing nothing
        # would train the direction the user asked not to.
        raise ConfigError(
            "--reverse swaps the languages of the dataset, not of your own "
            f"corpus ({', '.join(corpora)} is set): swap the two files or "
            "the TSV columns instead."
        )
    if args.reverse:
        config["source_lang"], config["target_lang"] = (
            config["target_lang"],
            config["source_lang"],
        )
    run_dir = _run_dir(args)
    result = recipe.train(config, run_dir, overwrite=args.overwrite)
    print(
        f"Trained {result['steps']} steps in {result['train_seconds']:.0f} s "
        f"(resumed at epoch {result['initial_epoch']}); final loss "
        f"{result['history']['loss'][-1]:.4f}. Model saved in {run_dir}."
    )


def _load(args):
    from recipes.translation import recipe

    overrides = list(args.overrides)
    if args.beam_size is not None:
        overrides.append(f"beam_size={args.beam_size}")
    return recipe.Translator.from_run_dir(_run_dir(args), overrides)


def _evaluate(args):
    from recipes.translation import recipe

    translator = _load(args)
    report = recipe.evaluate(translator, translator.config, _run_dir(args))
    print(report["bleu_detail"])
    print(f"chrF2 = {report['chrf']:.2f}")
    print(f"{report['bleu_signature']}")
    print(f"Report written to {_run_dir(args) / recipe.REPORT_FILE}")


def _decode_lines(stream, name):
    """UTF-8 lines of a binary stream; a bad byte names `name` and line."""
    for number, raw in enumerate(stream, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\n")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"Input {name} is not UTF-8 text: line {number} has the "
                f"byte {raw[error.start : error.start + 1]!r}."
            ) from None


def _read_lines(path):
    if path == "-":
        yield from _decode_lines(sys.stdin.buffer, "from standard input")
        return
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"Input file not found: '{path}'.") from None
    except OSError as error:
        raise ValueError(
            f"Input file '{path}' cannot be read: {error.strerror}."
        ) from None
    with file:
        yield from _decode_lines(file, f"file '{path}'")


def _translate(args):
    if args.batch_lines < 1:
        raise ValueError(
            "Argument --batch-lines must be >= 1. "
            f"Received: --batch-lines={args.batch_lines}"
        )
    translator = _load(args)
    batch = []
    for line in _read_lines(args.input):
        batch.append(line)
        if len(batch) >= args.batch_lines:
            for out in translator.translate(batch):
                print(out, flush=True)
            batch = []
    for out in translator.translate(batch):
        print(out, flush=True)


def _export(args):
    from recipes.translation import export

    target = args.export_dir or _run_dir(args) / "export"
    # Before the slow model load, so a refusal comes at once.
    files.check_can_replace(target, args.overwrite, export.MARKER)
    translator = _load(args)
    path = export.export(translator, target, overwrite=args.overwrite)
    print(f"SavedModel written to {path}. Load it with:")
    print("  import tensorflow as tf; import tensorflow_text")
    print(f"  tf.saved_model.load('{path}')")


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "translate": _translate,
    "export": _export,
}


def main(argv=None):
    args = _parser().parse_args(argv)
    COMMANDS[args.command](args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(cli.run(main))
