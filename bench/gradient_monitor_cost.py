"""Cost of GradientFlowMonitor: training step time with and without it.

Trains a stack of pre-norm residual feed-forward blocks on random data and
times `fit` without the monitor and with it at every_n_steps = 1, 10, 100.
Each configuration is warmed up first (so tracing is not counted) and
timed `--repeats` times; the median step time and its ratio to the plain
step time are printed.

    python -m bench.gradient_monitor_cost --steps 300 --depth 8
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skipseq.diagnostics import GradientFlowMonitor  # noqa: E402
from skipseq.layers import Residual  # noqa: E402

EVERY_N = (1, 10, 100)


def build_model(depth, width, seq_len):
    blocks = []
    for _ in range(depth):
        feedforward = keras.Sequential(
            [
                keras.layers.Dense(4 * width, activation="relu"),
                keras.layers.Dense(width),
            ]
        )
        blocks.append(Residual(feedforward))
    model = keras.Sequential(
        [keras.Input((seq_len, width)), *blocks, keras.layers.Dense(width)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def time_fit(model, x, y, batch_size, callbacks, repeats):
    """Median seconds per step over `repeats` one-epoch fits."""
    steps = len(x) // batch_size
    # Warm-up: trace the train step, then the monitor's measurement
    # directly, since the warm-up steps need not fall on a measured step.
    model.fit(
        x[: 2 * batch_size],
        y[: 2 * batch_size],
        batch_size=batch_size,
        verbose=0,
    )
    for monitor in callbacks:
        monitor.set_model(model)
        monitor.on_train_begin()
        monitor.measure()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, callbacks=callbacks, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.steps * args.batch_size
    shape = (n, args.seq_len, args.width)
    x = rng.normal(size=shape).astype("float32")
    y = rng.normal(size=shape).astype("float32")
    probe = (x[: args.batch_size], y[: args.batch_size])
    model = build_model(args.depth, args.width, args.seq_len)

    print(
        f"depth={args.depth} width={args.width} seq_len={args.seq_len} "
        f"batch={args.batch_size} steps={args.steps} "
        f"backend={keras.backend.backend()}"
    )
    base = time_fit(model, x, y, args.batch_size, [], args.repeats)
    print(f"{'monitor':>16} {'ms/step':>9} {'ratio':>7}")
    print(f"{'none':>16} {1e3 * base:9.2f} {1.0:7.2f}")
    for every_n in EVERY_N:
        monitor = GradientFlowMonitor(probe, every_n_steps=every_n)
        seconds = time_fit(
            model, x, y, args.batch_size, [monitor], args.repeats
        )
        label = f"every_n_steps={every_n}"
        print(f"{label:>16} {1e3 * seconds:9.2f} {seconds / base:7.2f}")


if __name__ == "__main__":
    main()
