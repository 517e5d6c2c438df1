"""What dropout adds to an XLA training step: skipseq against Keras.

Three copies of one model are trained with `model.fit(jit_compile=True)`
in one process: without dropout, with `keras.layers.Dropout` and with
`skipseq.layers.Dropout`, at the same rate and places. The model is the
feed-forward half of a pre-norm Transformer, `--layers` times
`x + drop(W2 drop(relu(W1 LN(x))))`, at the size of the `lm_quality`
recipe (batch 32, length 128, width 192, intermediate 768), so each step
draws two masks per layer, one of them four times the width.

Timing follows the other benchmarks: warm-up untimed, then rounds whose
order rotates; the ratios are of median step times, with the median of
the per-round ratios and the CPU-time ratio beside them.

    python -m bench.dropout_cost            # the full configuration
    python -m bench.dropout_cost --quick    # a tiny smoke run

Goal: skipseq's dropout adds at most 10% to the step without dropout,
and the step with it is faster than with Keras' dropout.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skipseq.layers import Dropout  # noqa: E402

try:
    from bench import _timing  # noqa: E402
except ImportError:  # run as a script from bench/
    import _timing  # noqa: E402

FULL = dict(
    batch=32,
    length=128,
    width=192,
    intermediate=768,
    layers=6,
    rate=0.1,
    rounds=6,
    round_steps=4,
)
QUICK = dict(FULL, batch=4, length=16, width=16, intermediate=32, layers=2)
QUICK.update(rounds=2, round_steps=2)

DROPOUTS = {
    "none": None,
    "keras": keras.layers.Dropout,
    "skipseq": Dropout,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check it runs"
    )
    parser.add_argument(
        "--rounds", type=int, help="timed rounds (default 6; quick 2)"
    )
    args = parser.parse_args()
    config = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error(f"--rounds must be at least 1, got {args.rounds}")
        config["rounds"] = args.rounds
    return config


def build_model(config, dropout_class):
    inputs = keras.Input((config["length"], config["width"]))
    x = inputs
    for _ in range(config["layers"]):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(config["intermediate"], activation="relu")(h)
        if dropout_class is not None:
            h = dropout_class(config["rate"])(h)
        h = keras.layers.Dense(config["width"])(h)
        if dropout_class is not None:
            h = dropout_class(config["rate"])(h)
        x = x + h
    return keras.Model(inputs, x)


class Contestant:
    """One compiled model and the timings of its training steps."""

    def __init__(self, name, config):
        self.name = name
        self.config = config
        keras.utils.set_random_seed(0)
        self.model = build_model(config, DROPOUTS[name])
        self.model.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=True
        )
        self.times = _timing.StepTimes()

    def fit(self, inputs, targets, timed=True):
        timer, _ = _timing.fit_round(
            self.model, inputs, targets, self.config["batch"]
        )
        if timed:
            self.times.add_round(timer)


def main():
    config = parse_args()
    rows = config["batch"] * config["round_steps"]
    rng = np.random.default_rng(0)
    shape = (rows, config["length"], config["width"])
    inputs = rng.normal(size=shape).astype("float32")
    targets = rng.normal(size=shape).astype("float32")

    contestants = {name: Contestant(name, config) for name in DROPOUTS}
    for contestant in contestants.values():
        contestant.fit(inputs, targets, timed=False)
    for index in range(config["rounds"]):
        for contestant in _timing.rotated(list(contestants.values()), index):
            contestant.fit(inputs, targets)

    print(f"{'dropout':<8} {'step ms':>8} {'cpu ms':>8}")
    for name, c in contestants.items():
        print(
            f"{name:<8} {1e3 * _timing.median(c.times.step_seconds):>8.1f} "
            f"{1e3 * _timing.median(c.times.cpu_step_seconds):>8.1f}"
        )
    none, ours, theirs = (
        contestants[k].times for k in ("none", "skipseq", "keras")
    )
    comparisons = {
        "skipseq / none": _timing.compare(ours, none),
        "keras / none": _timing.compare(theirs, none),
        "keras / skipseq": _timing.compare(theirs, ours),
    }
    print(f"\n{'step time':<16} {'ratio':>6} {'paired':>7} {'cpu':>6}")
    for label, numbers in comparisons.items():
        print(
            f"{label:<16} {numbers['ratio']:>6.3f} "
            f"{numbers['paired_ratio']:>7.3f} "
            f"{numbers['cpu_time_ratio']:>6.3f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "dropout_cost",
                "config": config,
                "cpus": os.cpu_count(),
                "comparisons": comparisons,
            }
        )
    )


if __name__ == "__main__":
    main()
