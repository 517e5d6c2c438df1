r"""Command line: `python -m recipes.text_generation COMMAND --help`.

```
train     train (or resume) a language model into --output-dir
evaluate  validation loss (nats per character) of a trained run
generate  stream generated text from a trained run
export    write a SavedModel with a `generate` signature
```

Examples:

```
python -m recipes.text_generation train --config lm_char_transformer \
    --output-dir runs/lm --set max_steps=500
python -m recipes.text_generation generate --run-dir runs/lm \
    --prompt "ROMEO:" --num-new-tokens 300 --temperature 0.8 --top-k 20
python -m recipes.text_generation export --run-dir runs/lm \
    --export-dir runs/lm/saved_model
```

`generate` prints the text chunk by chunk as it is decoded (each chunk is
one compiled call of `chunk_length` tokens, a configuration key).
"""

import json
import logging
import os
import sys

from recipes.common import cli
from recipes.text_generation import generation
from recipes.text_generation.config import DEFAULTS
from recipes.text_generation.vocabulary import UNK_ID

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "lm_char_transformer"
KEY_HELP = {
    "model": "transformer, lstm or gru",
    "tokenizer": "char, byte or sentencepiece (subword units)",
    "vocabulary_size": "most subword units of the sentencepiece tokenizer",
    "text_file": "train on this UTF-8 text file instead of the dataset",
    "context_length": "tokens of context",
    "batch_size": "training batch size",
    "learning_rate": "peak learning rate",
    "schedule": "learning-rate schedule: cosine, inverse_sqrt or constant",
    "warmup_steps": "linear warm-up steps of the schedule",
    "dropout": "dropout rate of the model",
    "ema_momentum": (
        "keep an exponential moving average of the weights with this "
        "momentum and end with it (0: the last weights)"
    ),
    "max_steps": "optimizer steps",
    "max_train_seconds": "stop training after this time (0: no limit)",
    "decay_by_time": (
        "end the cosine decay when max_train_seconds runs out, if sooner; "
        "needs schedule cosine and a time limit"
    ),
    "residual": "residual variant: pre, post, sandwich, deepnorm, rezero",
}


# The translation recipe names the run directory --output-dir for every
# command; both names work in both recipes.
RUN_DIR_FLAGS = ("--run-dir", "--output-dir")
RUN_DIR_OPTIONS = dict(
    dest="run_dir",
    required=True,
    help="run directory written by train",
)


def make_parser():
    # The module docstring (command list and examples), without its
    # Markdown fences.
    parser = cli.make_parser(
        "python -m recipes.text_generation", __doc__.replace("```\n", "")
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train or resume a model",
        description=(
            "Train a language model with model.fit (XLA, warm-up schedule, "
            "BackupAndRestore, TensorBoard) and write config.json, "
            "vocabulary.json, model.weights.h5, backup/, logs/ and "
            "report.json into the run directory. Running it again on an "
            "unfinished run directory resumes at the last finished epoch."
        ),
    )
    cli.add_config_arguments(train, DEFAULTS, DEFAULT_CONFIG, KEY_HELP)
    train.add_argument(
        "--output-dir", "--run-dir", required=True, help="run directory"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run in --output-dir",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="validation loss",
        description=(
            "Validation loss in nats per character (and bits, perplexity) "
            "on the whole validation split; updates report.json."
        ),
    )
    evaluate.add_argument(*RUN_DIR_FLAGS, **RUN_DIR_OPTIONS)

    generate = commands.add_parser(
        "generate",
        help="stream generated text",
        description=(
            "Continue a prompt, printing each chunk of chunk_length tokens "
            "(a configuration key) as it is decoded. Each chunk starts "
            "from the last context_length - chunk_length tokens; beam "
            "search keeps the best beam of each chunk."
        ),
    )
    generate.add_argument(*RUN_DIR_FLAGS, **RUN_DIR_OPTIONS)
    generate.add_argument(
        "--prompt",
        default="",
        help="text to continue; empty starts from the start token",
    )
    generate.add_argument(
        "--num-new-tokens",
        type=int,
        default=500,
        help="tokens to generate (default: 500)",
    )
    generate.add_argument(
        "--method",
        choices=generation.METHODS,
        default="sample",
        help="decoding method (default: sample)",
    )
    generate.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature; 0 means greedy (sample only; default: 1.0)",
    )
    generate.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="sample from the k most likely tokens (sample only)",
    )
    generate.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus sampling mass in (0, 1] (sample only)",
    )
    generate.add_argument(
        "--beam-size",
        type=int,
        default=4,
        help="beam width of --method beam (default: 4)",
    )
    generate.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of sampling; the same seed gives the same text (default: 0)",
    )
    generate.add_argument(
        "--no-stream", action="store_true", help="print once at the end"
    )

    export = commands.add_parser(
        "export",
        help="write a SavedModel",
        description=(
            "Write a SavedModel with a `generate` signature (prompts, "
            "num_new_tokens, temperature, seed -> text) that samples, or "
            "decodes greedily at temperature 0. It loads with TensorFlow "
            "alone."
        ),
    )
    export.add_argument(*RUN_DIR_FLAGS, **RUN_DIR_OPTIONS)
    export.add_argument(
        "--export-dir",
        default=None,
        help="where to write the SavedModel (default: <run dir>/export)",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export (never replaced otherwise)",
    )
    return parser


def run_generate(args):
    if args.temperature is not None and args.method != "sample":
        raise ValueError(
            f"Argument `temperature` shapes sampling, and method="
            f"{args.method!r} does not sample. Received: "
            f"temperature={args.temperature!r}"
        )
    temperature = 1.0 if args.temperature is None else args.temperature
    generation.check_generation_args(
        args.num_new_tokens,
        temperature,
        args.top_k,
        args.top_p,
        args.beam_size,
        method=args.method,
    )
    from recipes.text_generation.training import load_run

    config, vocabulary, model = load_run(args.run_dir)
    chunk = config["chunk_length"]
    decoder = generation.ChunkDecoder(
        model,
        config["context_length"] - chunk,
        chunk,
        method=args.method,
        top_k=args.top_k,
        top_p=args.top_p,
        beam_size=args.beam_size,
    )
    prompt_ids = [vocabulary.encode(args.prompt)]
    unknown = prompt_ids[0].count(UNK_ID)
    if unknown:
        logger.warning(
            "%d unit(s) of the prompt never occur in the training text; "
            "the model reads them as the unknown token.",
            unknown,
        )
    decode = vocabulary.stream_decoder()
    pieces = []
    if not args.no_stream:
        print(args.prompt, end="", flush=True)
    for new in generation.generate_ids(
        decoder, prompt_ids, args.num_new_tokens, temperature, args.seed
    ):
        text = decode(new[0].tolist())
        pieces.append(text)
        if not args.no_stream:
            print(text, end="", flush=True)
    pieces.append(decode([], final=True))
    if not args.no_stream:
        print(pieces[-1], end="")
    if args.no_stream:
        print(args.prompt + "".join(pieces), end="")
    print()


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.command == "train":
        from recipes.text_generation import training

        config = cli.config_from_args(args, DEFAULTS)
        report = training.train(config, args.output_dir, args.overwrite)
        print(json.dumps(report, sort_keys=True))
    elif args.command == "evaluate":
        from recipes.text_generation import training

        print(json.dumps(training.evaluate(args.run_dir), sort_keys=True))
    elif args.command == "generate":
        run_generate(args)
    else:
        from recipes.common.files import check_can_replace
        from recipes.text_generation import export, training

        export_dir = args.export_dir or os.path.join(args.run_dir, "export")
        # Before the slow model load, so a refusal comes at once.
        check_can_replace(export_dir, args.overwrite, export.MARKER)
        config, vocabulary, model = training.load_run(args.run_dir)
        path = export.export(
            model, vocabulary, config, export_dir, args.overwrite
        )
        print(f"SavedModel written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
