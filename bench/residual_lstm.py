"""Training throughput: residual LSTM stack against plain Keras LSTMs.

Trains a stack of `--layers` LSTM layers of width `--units` (residuals
from the third layer up, GNMT style) and the same stack of plain
`keras.layers.LSTM`, in one process, with and without `jit_compile`, and
prints the per-step times and ratios as a table and as one JSON line.

Targets: the residual stack costs at most 5% more per step than the
plain one, and XLA is faster than no XLA.

    python bench/residual_lstm.py            # 4 x 512, batch 64, 50 steps
    python bench/residual_lstm.py --quick    # tiny sizes, checks it runs
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from skipseq.layers import ResidualRNN  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check it runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.units, args.batch, args.time = 16, 4, 6
        args.steps, args.warmup = 2, 1
    return args


def residual_model(args, jit_compile):
    inputs = keras.Input((args.time, args.units))
    outputs = ResidualRNN(
        "lstm", num_layers=args.layers, units=args.units, residual_start=2
    )(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(outputs))


def plain_model(args, jit_compile):
    # A possible cuDNN path makes Keras turn XLA off for the whole model
    # (keras-team/keras#18456), so the plain stack opts out under XLA.
    use_cudnn = False if jit_compile else "auto"
    inputs = keras.Input((args.time, args.units))
    x = inputs
    for _ in range(args.layers):
        x = keras.layers.LSTM(
            args.units, return_sequences=True, use_cudnn=use_cudnn
        )(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def seconds_per_step(build, args, jit_compile, data):
    keras.utils.set_random_seed(0)
    model = build(args, jit_compile)
    model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
    inputs, targets = data
    for _ in range(args.warmup):
        model.train_on_batch(inputs, targets)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(inputs, targets)
    float(loss)  # waits for the last step
    elapsed = (time.perf_counter() - start) / args.steps
    if model.jit_compile is not jit_compile:
        raise RuntimeError(
            f"{build.__name__}: jit_compile={jit_compile} was asked for, "
            f"but the model ran with jit_compile={model.jit_compile}"
        )
    return elapsed


def main():
    args = parse_args()
    rng = np.random.default_rng(0)
    data = (
        rng.normal(size=(args.batch, args.time, args.units)).astype("float32"),
        rng.normal(size=(args.batch, args.time, 1)).astype("float32"),
    )
    times = {}
    for jit_compile in (False, True):
        for build in (plain_model, residual_model):
            key = f"{build.__name__.split('_')[0]}_jit{int(jit_compile)}"
            times[key] = seconds_per_step(build, args, jit_compile, data)

    results = {
        "layers": args.layers,
        "units": args.units,
        "batch": args.batch,
        "time": args.time,
        "backend": keras.backend.backend(),
        "seconds_per_step": times,
        "residual_over_plain_nojit": times["residual_jit0"]
        / times["plain_jit0"],
        "residual_over_plain_jit": times["residual_jit1"] / times["plain_jit1"],
        "xla_speedup_residual": times["residual_jit0"] / times["residual_jit1"],
        "xla_speedup_plain": times["plain_jit0"] / times["plain_jit1"],
    }
    print(f"{'model':<10} {'no XLA ms':>10} {'XLA ms':>10} {'XLA speedup':>12}")
    for name in ("plain", "residual"):
        no_xla, xla = times[f"{name}_jit0"], times[f"{name}_jit1"]
        print(
            f"{name:<10} {1e3 * no_xla:>10.2f} {1e3 * xla:>10.2f} "
            f"{no_xla / xla:>12.2f}"
        )
    print(
        "residual / plain per step: "
        f"no XLA {results['residual_over_plain_nojit']:.3f}, "
        f"XLA {results['residual_over_plain_jit']:.3f} (target <= 1.05)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
