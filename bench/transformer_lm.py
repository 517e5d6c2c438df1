"""Decoder-only LM training throughput: skipseq against keras-hub.

Both models are pre-norm Transformer decoders with a final LayerNorm and
an untied output projection, trained with `model.fit(jit_compile=True)`
on the same data in one process. The script prints tokens/s for each,
their ratio, and the achieved model FLOP/s as a share of this machine's
float32 matmul peak (measured here with a compiled `tf.matmul` loop).

    python bench/transformer_lm.py            # the full configuration
    python bench/transformer_lm.py --quick    # a tiny smoke run
    python bench/transformer_lm.py --data shakespeare   # needs
        SKIPSEQ_DATA_DIR with tinyshakespeare/input.txt

This is a benchmark, run on purpose; it is not part of the tests.
"""

import argparse
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from skipseq.layers import TokenAndPositionEmbedding, TransformerDecoder

FULL = dict(
    vocabulary=8000,
    layers=4,
    width=256,
    heads=4,
    intermediate=1024,
    length=128,
    batch=32,
    steps=100,
    peak_size=4096,
)
QUICK = dict(
    vocabulary=500,
    layers=2,
    width=32,
    heads=2,
    intermediate=64,
    length=16,
    batch=4,
    steps=3,
    peak_size=256,
)


def synthetic_data(config, seed=0):
    rng = np.random.default_rng(seed)
    shape = (config["batch"] * config["steps"], config["length"] + 1)
    return rng.integers(1, config["vocabulary"], size=shape).astype("int32")


def shakespeare_data(config):
    path = os.path.join(
        os.environ["SKIPSEQ_DATA_DIR"], "tinyshakespeare", "input.txt"
    )
    with open(path, "rb") as f:
        ids = np.frombuffer(f.read(), np.uint8).astype("int32") + 1
    window = config["length"] + 1
    count = min(len(ids) // window, config["batch"] * config["steps"])
    return ids[: count * window].reshape(count, window)


def skipseq_model(config):
    ids = keras.Input((config["length"],), dtype="int32")
    x = TokenAndPositionEmbedding(
        config["vocabulary"], config["length"], config["width"]
    )(ids)
    x = TransformerDecoder(
        config["layers"],
        config["intermediate"],
        config["heads"],
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
            config["intermediate"], config["heads"], normalize_first=True
        )(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    logits = keras.layers.Dense(config["vocabulary"])(x)
    return keras.Model(ids, logits, name="keras_hub_lm")


def train_flops_per_token(config):
    """6 x matmul parameters + causal-attention score and mix products."""
    w, f, v = config["width"], config["intermediate"], config["vocabulary"]
    matmul_params = config["layers"] * (4 * w * w + 2 * w * f) + w * v
    # Q K^T and A V: 2 * 2 * T * w multiply-adds per token and layer,
    # forward; x3 for training.
    attention = 3 * 4 * config["layers"] * config["length"] * w
    return 6 * matmul_params + attention


def tokens_per_second(model, data, config):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    inputs, targets = data[:, :-1], data[:, 1:]
    batch = config["batch"]
    # The first epoch compiles; the second is timed.
    model.fit(inputs[:batch], targets[:batch], batch_size=batch, verbose=0)
    start = time.perf_counter()
    history = model.fit(inputs, targets, batch_size=batch, verbose=0)
    seconds = time.perf_counter() - start
    loss = float(history.history["loss"][-1])
    return inputs.size / seconds, loss


def matmul_peak(size, iterations=20):
    """Float32 matmul FLOP/s of this machine, compiled with XLA."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size)) / size

    @tf.function(jit_compile=True)
    def run(a):
        for _ in range(iterations):
            a = tf.matmul(a, b)
        return a

    run(a).numpy()
    start = time.perf_counter()
    run(a).numpy()
    seconds = time.perf_counter() - start
    return 2 * size**3 * iterations / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument(
        "--data", choices=["synthetic", "shakespeare"], default="synthetic"
    )
    args = parser.parse_args()
    config = dict(QUICK if args.quick else FULL)
    if args.steps:
        config["steps"] = args.steps
    keras.utils.set_random_seed(0)
    if args.data == "shakespeare":
        data = shakespeare_data(config)
    else:
        data = synthetic_data(config)

    peak = matmul_peak(config["peak_size"])
    flops_per_token = train_flops_per_token(config)
    results = {}
    for name, build in [
        ("skipseq", skipseq_model),
        ("keras_hub", keras_hub_model),
    ]:
        speed, loss = tokens_per_second(build(config), data, config)
        results[name] = {
            "tokens_per_s": speed,
            "loss": loss,
            "flops_share_of_peak": speed * flops_per_token / peak,
        }
        keras.utils.clear_session()

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    ratio = (
        results["skipseq"]["tokens_per_s"]
        / results["keras_hub"]["tokens_per_s"]
    )
    print(f"{'model':<10} {'tokens/s':>12} {'loss':>8} {'% of peak':>10}")
    for name, row in results.items():
        print(
            f"{name:<10} {row['tokens_per_s']:>12.0f} {row['loss']:>8.3f} "
            f"{100 * row['flops_share_of_peak']:>9.1f}%"
        )
    print(f"skipseq / keras_hub tokens/s: {ratio:.2f}x")
    print(f"float32 matmul peak: {peak / 1e12:.2f} TFLOP/s")
    print(
        json.dumps(
            {
                "benchmark": "transformer_lm",
                "config": config,
                "data": args.data,
                "device": device,
                "matmul_peak_flops": peak,
                "train_flops_per_token": flops_per_token,
                "results": results,
                "ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
