"""The keys of the text-generation recipe, with their defaults.

A named configuration (`recipes/configs/lm_*.json`) sets some of these and
`--set key=value` overrides single values; see `recipes.common.config`.
"""

from recipes.common.config import ConfigError

MODELS = ("transformer", "lstm", "gru")
TOKENIZERS = ("char", "byte", "sentencepiece")

DEFAULTS = {
    # Data: the registered dataset, or a UTF-8 text file when set.
    "dataset": "tiny_shakespeare",
    "text_file": "",
    "train_fraction": 0.9,
    "tokenizer": "char",
    # The most subword units (special ids included) of `sentencepiece`;
    # characters and bytes ignore it.
    "vocabulary_size": 1024,
    # Share of training windows whose first input is the start token, so
    # that an empty prompt (the start token alone) has a learned meaning.
    "bos_rate": 0.02,
    # Model.
    "model": "transformer",
    "context_length": 128,
    "width": 128,
    "num_layers": 4,
    "num_heads": 4,
    "intermediate_dim": 512,
    "activation": "gelu",
    "residual": "pre",
    "norm": "layer",
    "dropout": 0.1,
    "stochastic_depth_rate": 0.0,
    "rnn_residual_start": 1,
    "rnn_norm_position": "none",
    # Training.
    "batch_size": 32,
    "learning_rate": 1e-3,
    "final_learning_rate": 1e-4,
    "schedule": "cosine",
    "warmup_steps": 100,
    "weight_decay": 0.1,
    "clipnorm": 1.0,
    # When > 0, the final weights are an exponential moving average of the
    # weights over training with this momentum (Keras' optimizer EMA,
    # written into the model when `fit` ends); 0 keeps the last weights.
    "ema_momentum": 0.0,
    "max_steps": 2000,
    "steps_per_epoch": 200,
    "validation_steps": 20,
    "max_train_seconds": 0.0,
    # End the cosine decay when max_train_seconds runs out, if that comes
    # before max_steps.
    "decay_by_time": False,
    "seed": 1,
    # Generation: new tokens per compiled chunk (the cache covers
    # `context_length` positions: a window of `context_length -
    # chunk_length` tokens of history, then the chunk).
    "chunk_length": 32,
}


def check_config(config):
    """Raises `ConfigError` for values no run could use."""

    def fail(key, expected):
        raise ConfigError(
            f"Config key `{key}` must be {expected}. "
            f"Received: {key}={config[key]!r}"
        )

    if config["model"] not in MODELS:
        fail("model", f"one of {list(MODELS)}")
    if config["tokenizer"] not in TOKENIZERS:
        fail("tokenizer", f"one of {list(TOKENIZERS)}")
    if not 0 < config["train_fraction"] < 1:
        fail("train_fraction", "strictly between 0 and 1")
    if config["vocabulary_size"] < 8:
        fail("vocabulary_size", "an integer >= 8")
    for key in ("context_length", "width", "num_layers", "batch_size"):
        if config[key] < 1:
            fail(key, "a positive integer")
    for key in ("max_steps", "steps_per_epoch"):
        if config[key] < 1:
            fail(key, "a positive integer")
    if not 1 <= config["chunk_length"] <= config["context_length"] - 2:
        fail(
            "chunk_length",
            "between 1 and context_length - 2 "
            f"(= {config['context_length'] - 2})",
        )
    if not 0 <= config["ema_momentum"] < 1:
        fail("ema_momentum", "in [0, 1) (0 means no moving average)")
    if config["max_train_seconds"] < 0:
        fail("max_train_seconds", ">= 0 (0 means no limit)")
    return config
