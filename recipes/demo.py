"""`make demo`: a short Transformer run on Multi30k English to German.

Trains a small Transformer on CPU for a bounded time (the configuration
`translation_demo`, key `max_train_seconds`), prints BLEU and chrF on
test_2016_flickr and five example translations, exports the SavedModel
and reloads it in a fresh Python process (TensorFlow and tensorflow-text
only) to translate one sentence.

    python -m recipes.demo [--output-dir runs/demo] [--set key=value ...]

The run directory is replaced on every run of the demo.
"""

import argparse
import os
import sys
import time

from recipes.common import cli
from recipes.translation.config import DEFAULTS

DEMO_CONFIG = "translation_demo"
DEMO_SENTENCE = "A little girl is riding a red bicycle in the park."


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.demo",
        description=(
            "Train a small Transformer on Multi30k en->de for a bounded "
            "time, report BLEU, show translations, export a SavedModel "
            "and reload it in a subprocess."
        ),
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join("runs", "demo"),
        help="run directory, replaced on each run (default: runs/demo)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "override a value of the translation_demo configuration, "
            "e.g. max_train_seconds=120"
        ),
    )
    return parser


def main(argv=None):
    from recipes.common.config import load_config
    from recipes.translation import export, recipe

    args = _parser().parse_args(argv)
    config = load_config(DEMO_CONFIG, DEFAULTS, args.overrides)
    start = time.monotonic()

    print(
        f"== Training for at most {config['max_train_seconds']} s "
        f"({config['source_lang']} -> {config['target_lang']}) ==",
        flush=True,
    )
    result = recipe.train(config, args.output_dir, overwrite=True)
    print(
        f"Trained {result['steps']} steps in {result['train_seconds']:.0f} s;"
        f" loss {result['history']['loss'][0]:.3f} (first epoch) -> "
        f"{result['history']['loss'][-1]:.3f} (last epoch).",
        flush=True,
    )

    print("== Evaluating on test_2016_flickr ==", flush=True)
    translator = recipe.Translator.from_run_dir(args.output_dir)
    report = recipe.evaluate(translator, translator.config, args.output_dir)
    print(report["bleu_detail"])
    print(f"chrF2 = {report['chrf']:.2f}")
    print(f"({report['bleu_signature']})")
    for example in report["examples"]:
        print(f"\n  source:     {example['source']}")
        print(f"  reference:  {example['reference']}")
        print(f"  hypothesis: {example['hypothesis']}")

    print("\n== Exporting the SavedModel ==", flush=True)
    export_dir = os.path.join(args.output_dir, "export")
    export.export(translator, export_dir, overwrite=True)
    in_process = translator.translate([DEMO_SENTENCE])[0]
    reloaded, _ = export.translate_in_subprocess(export_dir, [DEMO_SENTENCE])
    print(f"Exported to {export_dir}; reloaded in a fresh process:")
    print(f"  {DEMO_SENTENCE}\n  -> {reloaded[0]}")
    same = "same as" if reloaded[0] == in_process else "DIFFERENT from"
    print(f"  ({same} the in-process translation)")
    print(f"\nDemo finished in {time.monotonic() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(cli.run(main))
