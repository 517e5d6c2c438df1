"""Training throughput: residual LSTM stack against plain Keras LSTMs.

Four models, all built and trained in one process: a stack of `layers`
LSTM layers of width `units` with identity skips from the third layer
up (`skipseq.layers.ResidualRNN`, GNMT style, no norm), and the same
stack of plain `keras.layers.LSTM`, each with and without
`jit_compile`. Every model ends in `Dense(1)` and is trained with
`model.fit`, Adam, mean squared error and the same random batches. The
skips have no weights (equal widths), so the two stacks have the same
parameter count; the script checks it, and checks after training that
each model still has the `jit_compile` it was compiled with.

Timing is built for a shared, noisy machine. Each model first trains
one untimed round (tracing and XLA compilation). Then `rounds` rounds
follow; in each one every model trains `round_steps` steps through
`model.fit`, in an order that rotates from round to round, so a change
of load hits every model alike. A callback times each call of the
compiled train function (wall and process CPU time). Reported: the
median step time of each model over all its timed steps, the ratios of
those medians, the median of the per-round ratios (two models timed in
the same round share its load) and the ratio of median CPU times.

Targets: residual / plain step time at most 1.05, with and without XLA,
and XLA faster than no XLA (speedup = no-XLA time / XLA time > 1).

On the CPU both modes run the same recurrence: Keras' LSTM has a fused
kernel only for cuDNN (`keras.src.backend.tensorflow.rnn.lstm` raises
NotImplementedError without a GPU and the layer falls back), so without
XLA each step is a `tf.while_loop` iteration of `LSTMCell.call` (two
matmuls and the gate ops, run op by op by the TensorFlow executor, its
gradient another while loop); with XLA the same loop is compiled.

    python -m bench.residual_lstm            # 4 x 512, batch 32, time 32
    python -m bench.residual_lstm --quick    # tiny sizes, checks it runs

Prints two tables, then one JSON line with every number. This is a
benchmark, run on purpose; it is not part of the tests.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skipseq.layers import ResidualRNN  # noqa: E402

try:
    from bench import _timing  # noqa: E402
except ImportError:  # Run as a script: bench/ itself is on sys.path.
    import _timing  # noqa: E402

FULL = dict(layers=4, units=512, batch=32, time=32, rounds=8, round_steps=3)
QUICK = dict(layers=3, units=16, batch=4, time=6, rounds=2, round_steps=2)
MODELS = (
    ("plain", False),
    ("residual", False),
    ("plain", True),
    ("residual", True),
)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Prints two tables, then one JSON line with every number.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check it runs"
    )
    for name, value in FULL.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            help=f"default {value}; quick {QUICK[name]}",
        )
    args = parser.parse_args()
    config = dict(QUICK if args.quick else FULL)
    for name in FULL:
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if config["layers"] < 3:
        parser.error(
            "--layers must be >= 3 (the skips start at the third layer), "
            f"got {config['layers']}"
        )
    return config


def residual_model(config):
    inputs = keras.Input((config["time"], config["units"]))
    x = ResidualRNN(
        "lstm",
        num_layers=config["layers"],
        units=config["units"],
        residual_start=2,
    )(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(x), name="residual")


def plain_model(config, jit_compile):
    # With a possible cuDNN path Keras turns XLA off for the whole model
    # (keras-team/keras#18456), so the plain stack opts out under XLA;
    # on a CPU both settings take the same non-cuDNN loop.
    use_cudnn = False if jit_compile else "auto"
    inputs = keras.Input((config["time"], config["units"]))
    x = inputs
    for _ in range(config["layers"]):
        x = keras.layers.LSTM(
            config["units"], return_sequences=True, use_cudnn=use_cudnn
        )(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x), name="plain")


class Contestant:
    """One compiled model and the timings of its training steps."""

    def __init__(self, kind, jit_compile, config):
        self.kind = kind
        self.jit_compile = jit_compile
        self.name = f"{kind} {'XLA' if jit_compile else 'no XLA'}"
        self.config = config
        # Same seed: the two models of a kind start from the same weights.
        keras.utils.set_random_seed(0)
        if kind == "residual":
            self.model = residual_model(config)
        else:
            self.model = plain_model(config, jit_compile)
        self.model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="mse",
            jit_compile=jit_compile,
        )
        self.times = _timing.StepTimes()
        self.losses = []

    def fit(self, inputs, targets, timed=True):
        timer, history = _timing.fit_round(
            self.model, inputs, targets, self.config["batch"]
        )
        if timed:
            self.times.add_round(timer)
            self.losses.append(float(history.history["loss"][-1]))


def main():
    config = parse_args()
    rows = config["batch"] * config["round_steps"]
    rng = np.random.default_rng(0)
    shape = (rows, config["time"], config["units"])
    inputs = rng.normal(size=shape).astype("float32")
    targets = rng.normal(size=shape[:2] + (1,)).astype("float32")

    contestants = [Contestant(k, jit, config) for k, jit in MODELS]
    by_name = {(c.kind, c.jit_compile): c for c in contestants}
    params = {c.name: c.model.count_params() for c in contestants}
    if len(set(params.values())) != 1:
        raise RuntimeError(f"The models differ in size: {params}")

    # Warm-up: trace and compile each train function, untimed.
    for contestant in contestants:
        contestant.fit(inputs, targets, timed=False)
    for index in range(config["rounds"]):
        for contestant in _timing.rotated(contestants, index):
            contestant.fit(inputs, targets)

    jit_after_fit = {c.name: bool(c.model.jit_compile) for c in contestants}
    results = {}
    print(
        f"{'model':<16} {'params':>9} {'jit asked':>9} {'jit after fit':>13} "
        f"{'step ms':>8} {'cpu ms':>8} {'loss':>7}"
    )
    for c in contestants:
        results[c.name] = {
            "parameters": params[c.name],
            "jit_compile_asked": c.jit_compile,
            "jit_compile_after_fit": jit_after_fit[c.name],
            "median_step_seconds": _timing.median(c.times.step_seconds),
            "median_cpu_step_seconds": _timing.median(c.times.cpu_step_seconds),
            "step_seconds": c.times.step_seconds,
            "round_seconds": c.times.round_seconds,
            "last_loss": c.losses[-1],
        }
        row = results[c.name]
        print(
            f"{c.name:<16} {row['parameters']:>9} {str(c.jit_compile):>9} "
            f"{str(jit_after_fit[c.name]):>13} "
            f"{1e3 * row['median_step_seconds']:>8.1f} "
            f"{1e3 * row['median_cpu_step_seconds']:>8.1f} "
            f"{row['last_loss']:>7.4f}"
        )

    comparisons = {
        "residual / plain, no XLA": (
            _timing.compare(
                by_name["residual", False].times, by_name["plain", False].times
            ),
            "<= 1.05",
        ),
        "residual / plain, XLA": (
            _timing.compare(
                by_name["residual", True].times, by_name["plain", True].times
            ),
            "<= 1.05",
        ),
        "XLA speedup, plain": (
            _timing.compare(
                by_name["plain", False].times, by_name["plain", True].times
            ),
            "> 1",
        ),
        "XLA speedup, residual": (
            _timing.compare(
                by_name["residual", False].times,
                by_name["residual", True].times,
            ),
            "> 1",
        ),
    }
    print()
    print(
        f"{'comparison':<26} {'ratio':>6} {'paired':>7} {'cpu':>6} "
        f"{'target':>7}  per-round ratios"
    )
    for label, (numbers, target) in comparisons.items():
        per_round = " ".join(f"{r:.3f}" for r in numbers["per_round"])
        print(
            f"{label:<26} {numbers['ratio']:>6.3f} "
            f"{numbers['paired_ratio']:>7.3f} "
            f"{numbers['cpu_time_ratio']:>6.3f} {target:>7}  {per_round}"
        )
    print(
        "ratio: of median step times; paired: median of per-round ratios; "
        "cpu: of median process CPU times. Speedup = no-XLA / XLA time."
    )
    mismatched = [
        c.name for c in contestants if jit_after_fit[c.name] != c.jit_compile
    ]
    if mismatched:
        print(f"WARNING: jit_compile changed during fit for {mismatched}")
    print(
        json.dumps(
            {
                "benchmark": "residual_lstm",
                "config": config,
                "backend": keras.backend.backend(),
                "cpus": os.cpu_count(),
                "results": results,
                "comparisons": {k: v[0] for k, v in comparisons.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
