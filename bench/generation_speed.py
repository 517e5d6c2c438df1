"""Cached generation speed: skipseq against keras-hub, and its flatness.

Builds two decoder-only Transformers of the same shape with random
weights in one process: the recipe's `TransformerLM` (skipseq
`TransformerDecoder`, pre-norm, gelu, learned positions, with its
key/value cache, decoded by `skipseq.decoding.greedy_search` inside one
XLA-compiled `ChunkDecoder` call) and keras-hub's `GPT2CausalLM` (the
same blocks, its own cache and `GreedySampler`). Both decode greedily,
batch 1, after the same `PROMPT`-token prompt, and generate exactly `N`
new tokens (no stop token) for a short and a long `N`.

Sizes: the decoder blocks, embeddings and final norm have the same
parameter count (checked). GPT2 ties its output projection to the token
embedding, the recipe model has its own (`vocabulary x width` weights
and `vocabulary` biases more); the work per token is the same.

Each run gets a cache sized for that run, so the short run does not pay
for the long one's cache:

- skipseq: `ChunkDecoder(window=PROMPT, chunk_length=N)`, which prefills
  the first `PROMPT - 1` tokens into a cache of `PROMPT + N` positions,
  then decodes `N` cached steps;
- keras-hub: `generate` on `token_ids` of width `PROMPT + N` with the
  prompt in front (its natural use): it prefills the whole width into a
  cache of `PROMPT + N` positions, then decodes `N` cached steps.

A third configuration, "skipseq windowed", is how the recipe itself
generates (the `generate` command and the export): a model with a
128-token context decodes chunks of 32 tokens, each from a cache
prefilled with the last 96 tokens, so each chunk costs the same however
long the output already is. It has no keras-hub counterpart (GPT2's
`generate` cannot go past its context) and is timed for its flatness.

keras-hub is timed compiled with XLA (`compile(jit_compile=True)`), as
skipseq is, and also with its default `jit_compile="auto"`, which Keras
turns off on a machine without accelerators (reported as "keras_hub
auto"). Every configuration runs once untimed (tracing and compilation
excluded); then `--rounds` rounds each time every configuration once
(wall and process CPU time), in an order that rotates from round to
round, so a change of load hits all alike. Reported: median seconds per
call, tokens per second (`N` / median), the skipseq / keras-hub tokens/s
ratio at each length, and the flatness ratio time(long) / time(short)
of each implementation; each ratio also as the median of its per-round
ratios and as a ratio of median CPU times. With a cache each new token
costs about the same, so flatness stays near long / short (4 for 512
and 128); the target is at most 1.1 times that (4.4). In one long
cached loop every step still reads the whole fixed-size cache, keys and
values of every layer, so the cost per token grows with the cache. For
the default model (width 128, 4 layers) that read is about 2/3 of a
step's weight reads at 520 slots (2 x width x slots per layer against
about 12 x width^2), so the ratio of the single-loop configurations
cannot come near 4; wider models come closer (the cache read grows with
the width, the weights with its square).

    python -m bench.generation_speed            # 128 and 512 new tokens
    python -m bench.generation_speed --quick    # small and fast, a smoke run

Prints a table and one JSON line. This is a benchmark, run on purpose;
it is not part of the tests.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from recipes.text_generation.generation import (  # noqa: E402
    ChunkDecoder,
    generate_ids,
)
from recipes.text_generation.transformer_lm import TransformerLM  # noqa: E402

try:
    from bench import _timing  # noqa: E402
except ImportError:  # Run as a script: bench/ itself is on sys.path.
    import _timing  # noqa: E402

VOCABULARY = 96
PROMPT = 8
# The windowed configuration: the recipe's context and chunk defaults.
CONTEXT = 128
CHUNK = 32
# Above the special ids the recipe never generates (pad, unknown, start).
FIRST_ID = 3


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Prints a table, then one JSON line with every number.",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    args.lengths = (128, 512)
    if args.quick:
        args.width, args.layers, args.heads, args.rounds = 32, 2, 2, 3
        args.lengths = (32, 128)
    return args


def prompt_ids():
    rng = np.random.default_rng(0)
    return rng.integers(FIRST_ID, VOCABULARY, PROMPT).astype("int32")


def skipseq_model(args, context=None):
    keras.utils.set_random_seed(0)
    model = TransformerLM(
        VOCABULARY,
        context or PROMPT + max(args.lengths),
        width=args.width,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_dim=4 * args.width,
        dropout=0.0,
    )
    model(np.zeros((1, 4), "int32"))
    return model


def skipseq_runner(model, new_tokens):
    # The cache holds PROMPT + new_tokens positions: prompt and output.
    decoder = ChunkDecoder(model, PROMPT, new_tokens, method="greedy")
    prompt = prompt_ids()[None, :]
    pads = np.zeros((1,), "int32")

    def run():
        tokens = decoder(prompt, pads, 0.0, [0, 0]).numpy()
        return tokens.shape[1]

    return run


def windowed_runner(model, new_tokens):
    # The recipe's own generation (`generate` and the export): chunks of
    # CHUNK tokens, each from a fresh cache over the last CONTEXT - CHUNK
    # tokens, so every chunk costs the same whatever came before.
    decoder = ChunkDecoder(model, CONTEXT - CHUNK, CHUNK, method="greedy")
    prompt = [prompt_ids().tolist()]

    def run():
        chunks = generate_ids(decoder, prompt, new_tokens, temperature=0.0)
        return sum(chunk.shape[1] for chunk in chunks)

    return run


def keras_hub_backbone(args):
    keras.utils.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.width,
        intermediate_dim=4 * args.width,
        dropout=0.0,
        max_sequence_length=PROMPT + max(args.lengths),
    )


def keras_hub_model(backbone, jit_compile):
    causal_lm = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy", jit_compile=jit_compile)
    return causal_lm


def keras_hub_runner(causal_lm, new_tokens):
    # Its cache spans the input width: PROMPT + new_tokens positions.
    length = PROMPT + new_tokens
    token_ids = np.zeros((1, length), "int32")
    token_ids[0, :PROMPT] = prompt_ids()
    padding_mask = np.arange(length)[None, :] < PROMPT
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}

    def run():
        outputs = causal_lm.generate(inputs, stop_token_ids=None)
        return int(outputs["padding_mask"].sum()) - PROMPT

    return run


class Configuration:
    """One implementation at one output length, and its timings."""

    def __init__(self, name, new_tokens, run):
        self.name = name
        self.new_tokens = new_tokens
        self.run = run
        self.seconds = []
        self.cpu_seconds = []

    def time(self, timed=True):
        with _timing.Stopwatch() as watch:
            produced = self.run()
        if produced != self.new_tokens:
            raise RuntimeError(
                f"{self.name} made {produced} new tokens, not {self.new_tokens}"
            )
        if timed:
            self.seconds.append(watch.seconds)
            self.cpu_seconds.append(watch.cpu_seconds)


def ratio(numerator, denominator):
    """Ratio of medians, median per-round ratio and CPU-time ratio."""
    paired, per_round = _timing.paired_ratio(
        numerator.seconds, denominator.seconds
    )
    return {
        "ratio": _timing.median(numerator.seconds)
        / _timing.median(denominator.seconds),
        "paired_ratio": paired,
        "per_round": per_round,
        "cpu_time_ratio": _timing.median(numerator.cpu_seconds)
        / _timing.median(denominator.cpu_seconds),
    }


def main():
    args = parse_args()
    ours = skipseq_model(args)
    windowed = skipseq_model(args, context=CONTEXT)
    backbone = keras_hub_backbone(args)
    hub_models = {
        "keras_hub": keras_hub_model(backbone, True),
        "keras_hub auto": keras_hub_model(backbone, "auto"),
    }
    head = ours.lm_head.count_params()
    params = {
        "skipseq": ours.count_params(),
        "keras_hub": backbone.count_params(),
    }
    print(
        f"parameters: skipseq {params['skipseq']} ({head} in its untied "
        f"output projection), keras_hub {params['keras_hub']} (tied); "
        f"without the skipseq projection: {params['skipseq'] - head} "
        f"and {params['keras_hub']}"
    )
    if params["skipseq"] - head != params["keras_hub"]:
        raise RuntimeError(f"The models differ in size: {params}")
    jit = {name: bool(m.jit_compile) for name, m in hub_models.items()}
    print(f"keras_hub jit_compile: {jit}; skipseq: always XLA")

    configurations = []
    for length in args.lengths:
        configurations.append(
            Configuration("skipseq", length, skipseq_runner(ours, length))
        )
        configurations.append(
            Configuration(
                "skipseq windowed", length, windowed_runner(windowed, length)
            )
        )
        for name, causal_lm in hub_models.items():
            run = keras_hub_runner(causal_lm, length)
            configurations.append(Configuration(name, length, run))
    by_key = {(c.name, c.new_tokens): c for c in configurations}

    for configuration in configurations:
        configuration.time(timed=False)
    for index in range(args.rounds):
        for configuration in _timing.rotated(configurations, index):
            configuration.time()

    results = {}
    print(
        f"{'implementation':<17} {'new tokens':>10} {'seconds':>8} "
        f"{'cpu s':>7} {'tokens/s':>9}"
    )
    for c in configurations:
        seconds = _timing.median(c.seconds)
        results[f"{c.name} {c.new_tokens}"] = {
            "median_seconds": seconds,
            "median_cpu_seconds": _timing.median(c.cpu_seconds),
            "tokens_per_s": c.new_tokens / seconds,
            "seconds": c.seconds,
        }
        row = results[f"{c.name} {c.new_tokens}"]
        print(
            f"{c.name:<17} {c.new_tokens:>10} {seconds:>8.3f} "
            f"{row['median_cpu_seconds']:>7.3f} {row['tokens_per_s']:>9.1f}"
        )

    short, long = args.lengths
    target = 1.1 * long / short
    comparisons = {}
    for other in hub_models:
        for length in args.lengths:
            # Time of theirs over ours: our tokens/s over theirs.
            comparisons[f"skipseq / {other} tokens/s, {length}"] = (
                ratio(by_key[other, length], by_key["skipseq", length]),
                "",
            )
    for name in ("skipseq", "skipseq windowed", *hub_models):
        comparisons[f"{name} time({long}) / time({short})"] = (
            ratio(by_key[name, long], by_key[name, short]),
            f"<= {target:.1f}",
        )
    print()
    print(
        f"{'comparison':<45} {'ratio':>6} {'paired':>7} {'cpu':>6} "
        f"{'target':>7}  per-round ratios"
    )
    for label, (numbers, goal) in comparisons.items():
        per_round = " ".join(f"{r:.2f}" for r in numbers["per_round"])
        print(
            f"{label:<45} {numbers['ratio']:>6.3f} "
            f"{numbers['paired_ratio']:>7.3f} "
            f"{numbers['cpu_time_ratio']:>6.3f} {goal:>7}  {per_round}"
        )
    print(
        "ratio: of medians; paired: median of per-round ratios; "
        "cpu: of median process CPU times."
    )
    print(
        json.dumps(
            {
                "benchmark": "generation_speed",
                "width": args.width,
                "layers": args.layers,
                "heads": args.heads,
                "prompt": PROMPT,
                "lengths": args.lengths,
                "rounds": args.rounds,
                "cpus": os.cpu_count(),
                "parameters": params,
                "skipseq_output_projection_parameters": head,
                "keras_hub_jit_compile": jit,
                "results": results,
                "comparisons": {k: v[0] for k, v in comparisons.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
