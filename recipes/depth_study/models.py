"""The language models of the depth study: Transformer and LSTM stacks.

Every model maps `(batch, T)` character ids to `(batch, T, vocabulary)`
logits: an embedding, a stack of `depth` blocks, a linear read-out. The
stack is the only thing that changes between variants, and `blocks(model)`
names the blocks whose gradients the study compares.
"""

import keras

from skipseq.layers import (
    ResidualRNN,
    TokenAndPositionEmbedding,
    TransformerDecoder,
)

# `residual=` of `TransformerDecoder`; "plain" has no skip at all.
TRANSFORMER_VARIANTS = ("plain", "post", "pre", "rezero", "deepnorm")
LSTM_VARIANTS = ("plain", "residual")
FAMILIES = {"transformer": TRANSFORMER_VARIANTS, "lstm": LSTM_VARIANTS}
STACK_NAME = "stack"


def transformer_lm(vocabulary_size, depth, variant, config):
    """A decoder-only Transformer LM with `depth` blocks."""
    tokens = keras.Input((config["context_length"],), dtype="int32")
    x = TokenAndPositionEmbedding(
        vocabulary_size,
        config["context_length"],
        config["width"],
        name="embedding",
    )(tokens)
    x = TransformerDecoder(
        depth,
        config["intermediate_dim"],
        config["num_heads"],
        residual=variant,
        name=STACK_NAME,
    )(x)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(tokens, logits, name=f"transformer_{variant}_{depth}")


def lstm_lm(vocabulary_size, depth, variant, config):
    """An LSTM LM with `depth` layers, with skips on all or on none.

    `"residual"` puts a skip around every layer (`residual_start=0`, the
    embedding has the LSTM width); `"plain"` is the same stack with
    `residual_start=depth`, i.e. without skips.
    """
    tokens = keras.Input((config["context_length"],), dtype="int32")
    x = keras.layers.Embedding(
        vocabulary_size, config["width"], name="embedding"
    )(tokens)
    x = ResidualRNN(
        "lstm",
        num_layers=depth,
        units=config["width"],
        residual_start=depth if variant == "plain" else 0,
        name=STACK_NAME,
    )(x)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(tokens, logits, name=f"lstm_{variant}_{depth}")


def build_model(family, vocabulary_size, depth, variant, config):
    """The model of one run, initialised from `config["seed"]`.

    The global Keras seed is set first, so the same arguments always give
    the same initial weights.
    """
    if family not in FAMILIES or variant not in FAMILIES[family]:
        raise ValueError(
            f"Unknown model family/variant: {family}/{variant}. Known: "
            f"{ {k: list(v) for k, v in FAMILIES.items()} }"
        )
    keras.utils.set_random_seed(config["seed"])
    make = transformer_lm if family == "transformer" else lstm_lm
    return make(vocabulary_size, depth, variant, config)


def blocks(model):
    """The stack's blocks, bottom first: what `gradient_flow` measures."""
    stack = model.get_layer(STACK_NAME)
    if isinstance(stack, ResidualRNN):
        return list(stack.recurrent_layers)
    return list(stack.blocks)
