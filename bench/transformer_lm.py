"""Decoder-only LM training throughput: skipseq against keras-hub.

Both models are the same pre-norm Transformer LM: token plus learned
position embedding, `--layers` decoder blocks (causal self-attention and
a relu feed-forward net), a final LayerNorm and an untied output
projection onto the vocabulary. The skipseq model uses
`skipseq.layers.TransformerDecoder(normalize_first=True)` (final norm
included), the other `keras_hub.layers.TransformerDecoder(
normalize_first=True)` blocks plus `keras.layers.LayerNormalization`.
Both are trained in one process with `model.fit(jit_compile=True)`, the
same `steps_per_execution`, Adam, sparse cross-entropy on the logits,
float32 and the same batches.

Timing is built for a shared, noisy machine. After a compiling warm-up,
the script runs `--rounds` rounds; each round trains every model for
`--round-steps` steps with `model.fit` and times one compiled float32
matmul loop (the peak), in alternating order (A B P, then P B A, ...),
so a load change hits every contestant alike. A callback times each
execution of the compiled train function; the reported per-step time
of a model is the median over all its timed steps, and the peak is the
median over the rounds. Ratios are ratios of medians.

FLOPs per training step (multiply-add = 2 FLOPs, backward = 2 x
forward, so training = 3 x forward; B batch, T length, w width, f
intermediate, V vocabulary, L layers):

    matmul_params = L * (3w*w [fused qkv] + w*w [attention out]
                         + 2*w*f [feed-forward]) + w*V [output proj.]
    attention     = L * 12 * w * T^2 * B   (Q K^T and A V, full T x T
                    as computed, forward 4*w*T^2 per sequence, x3)
    step_flops    = 6 * matmul_params * B * T + attention

Biases, norms, softmax, the loss and the optimizer are not counted; the
embedding lookup is a gather (no FLOPs), the output projection is. The
share of peak is step_flops / median step time / median matmul FLOP/s.

    python bench/transformer_lm.py            # the full configuration
    python bench/transformer_lm.py --quick    # a tiny smoke run
    python bench/transformer_lm.py --data shakespeare   # needs
        SKIPSEQ_DATA_DIR with tinyshakespeare/input.txt

Targets: skipseq at least 1.1 x the keras-hub tokens/s, and at least 70%
of the matmul peak. This is a benchmark, run on purpose; it is not part
of the tests.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from skipseq.layers import (  # noqa: E402
    TokenAndPositionEmbedding,
    TransformerDecoder,
)

FULL = dict(
    vocabulary=8000,
    layers=4,
    width=256,
    heads=4,
    intermediate=1024,
    length=128,
    batch=32,
    rounds=8,
    round_steps=3,
    peak_size=2048,
    peak_matmuls=4,
)
QUICK = dict(
    vocabulary=500,
    layers=2,
    width=32,
    heads=2,
    intermediate=64,
    length=16,
    batch=4,
    rounds=2,
    round_steps=2,
    peak_size=256,
    peak_matmuls=2,
)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Prints a table, then one JSON line with every number.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check it runs"
    )
    parser.add_argument(
        "--rounds", type=int, help="timed rounds (default 8; quick 2)"
    )
    parser.add_argument(
        "--round-steps",
        type=int,
        help="training steps per model and round (default 3; quick 2); "
        "a multiple of --steps-per-execution",
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="passed to compile() of both models (default 1)",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout rate of both models' blocks (default 0; the "
        "translation recipes train at 0.1 to 0.2)",
    )
    parser.add_argument(
        "--data",
        choices=["synthetic", "shakespeare"],
        default="synthetic",
        help="uniform random ids (default) or tinyshakespeare bytes "
        "(needs SKIPSEQ_DATA_DIR)",
    )
    args = parser.parse_args()
    config = dict(QUICK if args.quick else FULL)
    if args.rounds:
        config["rounds"] = args.rounds
    if args.round_steps:
        config["round_steps"] = args.round_steps
    config["steps_per_execution"] = args.steps_per_execution
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    config["dropout"] = args.dropout
    if config["round_steps"] % args.steps_per_execution:
        parser.error(
            "--round-steps must be a multiple of --steps-per-execution, "
            f"got {config['round_steps']} and {args.steps_per_execution}"
        )
    return args, config


def synthetic_data(config, rows, seed=0):
    rng = np.random.default_rng(seed)
    shape = (rows, config["length"] + 1)
    return rng.integers(1, config["vocabulary"], size=shape).astype("int32")


def shakespeare_data(config, rows):
    path = os.path.join(
        os.environ["SKIPSEQ_DATA_DIR"], "tinyshakespeare", "input.txt"
    )
    with open(path, "rb") as f:
        ids = np.frombuffer(f.read(), np.uint8).astype("int32") + 1
    window = config["length"] + 1
    count = len(ids) // window
    windows = ids[: count * window].reshape(count, window)
    # Wrap around when the corpus has fewer windows than the run needs.
    return windows[np.arange(rows) % count]


def skipseq_model(config):
    ids = keras.Input((config["length"],), dtype="int32")
    x = TokenAndPositionEmbedding(
        config["vocabulary"], config["length"], config["width"]
    )(ids)
    # Pre-norm: the stack ends with its own final LayerNorm.
    x = TransformerDecoder(
        config["layers"],
        config["intermediate"],
        config["heads"],
        dropout=config["dropout"],
        normalize_first=True,
    )(x)
    logits = keras.layers.Dense(config["vocabulary"])(x)
    return keras.Model(ids, logits, name="skipseq_lm")


def keras_hub_model(config):
    import keras_hub

    ids = keras.Input((config["length"],), dtype="int32")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        config["vocabulary"], config["length"], config["width"]
    )(ids)
    for _ in range(config["layers"]):
        x = keras_hub.layers.TransformerDecoder(
            config["intermediate"],
            config["heads"],
            dropout=config["dropout"],
            normalize_first=True,
        )(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    logits = keras.layers.Dense(config["vocabulary"])(x)
    return keras.Model(ids, logits, name="keras_hub_lm")


def train_flops_per_step(config):
    """FLOPs of one training step; the formula is in the module docstring."""
    w, f, v = config["width"], config["intermediate"], config["vocabulary"]
    layers, length, batch = config["layers"], config["length"], config["batch"]
    matmul_params = layers * (3 * w * w + w * w + 2 * w * f) + w * v
    attention = layers * 12 * w * length**2 * batch
    return 6 * matmul_params * batch * length + attention


class ExecutionTimer(keras.callbacks.Callback):
    """Wall and process CPU time of each call of the train function."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.cpu_seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        # On the CPU an eager call of the compiled function returns when
        # the step is done, so this brackets the work of the step.
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)


class Contestant:
    """A compiled model, its share of the data and its timings."""

    def __init__(self, name, model, config):
        self.name = name
        self.model = model
        self.config = config
        self.step_seconds = []
        self.cpu_step_seconds = []
        # The median step time of each round, to pair with the others.
        self.round_seconds = []
        self.losses = []
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
            steps_per_execution=config["steps_per_execution"],
        )

    def fit(self, data, timed=True):
        timer = ExecutionTimer()
        history = self.model.fit(
            data[:, :-1],
            data[:, 1:],
            batch_size=self.config["batch"],
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
        if timed:
            per_step = self.config["steps_per_execution"]
            seconds = [s / per_step for s in timer.seconds]
            self.step_seconds += seconds
            self.cpu_step_seconds += [s / per_step for s in timer.cpu_seconds]
            self.round_seconds.append(float(np.median(seconds)))
            self.losses.append(float(history.history["loss"][-1]))


class MatmulPeak:
    """Float32 matmul FLOP/s of this machine, compiled with XLA."""

    def __init__(self, size, matmuls):
        self.size = size
        self.matmuls = matmuls
        self.flops_per_second = []
        self.a = tf.random.normal((size, size))
        # Scaled so a chain of products stays finite.
        self.b = tf.random.normal((size, size)) / size**0.5

        @tf.function(jit_compile=True)
        def chain(a, b):
            for _ in range(matmuls):
                a = tf.matmul(a, b)
            return a

        self.chain = chain

    def run(self, timed=True):
        start = time.perf_counter()
        self.chain(self.a, self.b).numpy()
        seconds = time.perf_counter() - start
        if timed:
            flops = 2 * self.size**3 * self.matmuls
            self.flops_per_second.append(flops / seconds)


def main():
    args, config = parse_args()
    steps = config["round_steps"]
    rows = config["batch"] * steps * (config["rounds"] + 1)
    if args.data == "shakespeare":
        data = shakespeare_data(config, rows)
    else:
        data = synthetic_data(config, rows)
    chunk = config["batch"] * steps
    rounds = [data[i * chunk : (i + 1) * chunk] for i in range(rows // chunk)]

    contestants = []
    for name, build in [
        ("skipseq", skipseq_model),
        ("keras_hub", keras_hub_model),
    ]:
        keras.utils.set_random_seed(0)
        contestants.append(Contestant(name, build(config), config))
    peak = MatmulPeak(config["peak_size"], config["peak_matmuls"])
    params = {c.name: c.model.count_params() for c in contestants}
    if len(set(params.values())) != 1:
        raise RuntimeError(f"The models differ in size: {params}")

    # Warm-up: compile every function, then one untimed round.
    for contestant in contestants:
        contestant.fit(rounds[0], timed=False)
    peak.run(timed=False)
    for index, round_data in enumerate(rounds[1:]):
        jobs = [*contestants, peak]
        if index % 2:
            jobs.reverse()
        for job in jobs:
            if job is peak:
                peak.run()
            else:
                job.fit(round_data)

    peak_flops = float(np.median(peak.flops_per_second))
    step_flops = train_flops_per_step(config)
    tokens_per_step = config["batch"] * config["length"]
    results = {}
    for contestant in contestants:
        seconds = float(np.median(contestant.step_seconds))
        results[contestant.name] = {
            "parameters": params[contestant.name],
            "median_step_seconds": seconds,
            "step_seconds": contestant.step_seconds,
            "tokens_per_s": tokens_per_step / seconds,
            "model_flops_per_s": step_flops / seconds,
            "share_of_peak": step_flops / seconds / peak_flops,
            "median_cpu_step_seconds": float(
                np.median(contestant.cpu_step_seconds)
            ),
            "round_seconds": contestant.round_seconds,
            "last_loss": contestant.losses[-1],
        }
    ours, theirs = results["skipseq"], results["keras_hub"]
    ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
    # Secondary estimates: the two models' step times within a round
    # share the load, so their ratio per round is less noisy; process CPU
    # time ignores time the process spent waiting for a core.
    paired_ratio = float(
        np.median(
            np.array(theirs["round_seconds"]) / np.array(ours["round_seconds"])
        )
    )
    cpu_ratio = (
        theirs["median_cpu_step_seconds"] / ours["median_cpu_step_seconds"]
    )

    print(
        f"{'model':<10} {'params':>9} {'step ms':>8} {'tokens/s':>9} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'cpu ms':>7} {'loss':>6}"
    )
    for name, row in results.items():
        print(
            f"{name:<10} {row['parameters']:>9} "
            f"{1e3 * row['median_step_seconds']:>8.0f} "
            f"{row['tokens_per_s']:>9.0f} "
            f"{row['model_flops_per_s'] / 1e9:>8.1f} "
            f"{100 * row['share_of_peak']:>6.1f}% "
            f"{1e3 * row['median_cpu_step_seconds']:>7.0f} "
            f"{row['last_loss']:>6.3f}"
        )
    print(
        f"skipseq / keras_hub tokens/s: {ratio:.3f}x (target >= 1.1); "
        f"median of per-round ratios {paired_ratio:.3f}x, "
        f"CPU-time ratio {cpu_ratio:.3f}x"
    )
    print(
        f"float32 matmul peak ({config['peak_size']}^2, median of "
        f"{len(peak.flops_per_second)}): {peak_flops / 1e9:.1f} GFLOP/s; "
        f"training step: {step_flops / 1e9:.1f} GFLOP"
    )
    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    print(
        json.dumps(
            {
                "benchmark": "transformer_lm",
                "config": config,
                "data": args.data,
                "device": device,
                "cpus": os.cpu_count(),
                "train_flops_per_step": step_flops,
                "matmul_peak_flops": peak_flops,
                "matmul_peak_samples": peak.flops_per_second,
                "results": results,
                "ratio": ratio,
                "paired_ratio": paired_ratio,
                "cpu_time_ratio": cpu_ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
