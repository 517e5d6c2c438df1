"""A decoder-only Transformer language model with cached decoding."""

import keras
from keras import ops

from skipseq.layers import Dropout, TransformerDecoder


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class TransformerLM(keras.Model):
    """Decoder-only Transformer: embeddings, a skipseq decoder stack, logits.

    ```
    h_0 = E[token_t] + P[position_t]
    h   = TransformerDecoder(h_0)         (causal, residual variant by name)
    logits = W h + b
    ```

    Decoding (`prefill`, `step_fn`) keeps a key/value cache of
    `max_length` positions with fixed shapes, so a compiled decoding loop
    is traced once. Prompts are left-padded to a common width: a row with
    `p` pad tokens has its positions shifted by `p` and its pad keys
    masked, so each row decodes as it would alone.

    Args:
        vocabulary_size: int, the number of token ids.
        context_length: int, the number of learned positions.
        width: int, the model width. Defaults to `128`.
        num_layers: int. Defaults to `4`.
        num_heads: int. Defaults to `4`.
        intermediate_dim: int, feed-forward width. Defaults to `512`.
        dropout: float. Defaults to `0.1`.
        activation: feed-forward activation. Defaults to `"gelu"`.
        residual: residual variant of the blocks (`"pre"`, `"post"`,
            `"sandwich"`, `"deepnorm"`, `"rezero"`). Defaults to `"pre"`.
        norm: `"layer"` or `"rms"`. Defaults to `"layer"`.
        stochastic_depth_rate: float. Defaults to `0.0`.
        seed: optional int seed of the dropouts.

    >>> import numpy as np
    >>> model = TransformerLM(10, 8, width=16, num_layers=1, num_heads=2,
    ...                       intermediate_dim=32)
    >>> tuple(model(np.zeros((2, 5), "int32")).shape)
    (2, 5, 10)
    """

    def __init__(
        self,
        vocabulary_size,
        context_length,
        width=128,
        num_layers=4,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        activation="gelu",
        residual="pre",
        norm="layer",
        stochastic_depth_rate=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.context_length = context_length
        self.width = width
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = activation
        self.residual = residual
        self.norm = norm
        self.stochastic_depth_rate = stochastic_depth_rate
        self.seed = seed

        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, width, name="token_embedding"
        )
        self.position_embedding = keras.layers.Embedding(
            context_length, width, name="position_embedding"
        )
        self.embedding_dropout = Dropout(dropout, seed=seed)
        self.decoder = TransformerDecoder(
            num_layers,
            intermediate_dim,
            num_heads,
            dropout=dropout,
            activation=activation,
            residual=residual,
            norm=norm,
            stochastic_depth_rate=stochastic_depth_rate,
            seed=seed,
            name="decoder",
        )
        self.lm_head = keras.layers.Dense(vocabulary_size, name="lm_head")

    def build(self, input_shape):
        batch, length = input_shape[0], input_shape[1]
        self.token_embedding.build((batch, length))
        self.position_embedding.build((batch, length))
        self.decoder.build((batch, length, self.width))
        self.lm_head.build((batch, length, self.width))
        self.built = True

    def call(self, token_ids, training=None):
        length = ops.shape(token_ids)[1]
        positions = ops.arange(length, dtype="int32")[None, :]
        x = self.token_embedding(token_ids) + self.position_embedding(positions)
        x = self.embedding_dropout(x, training=training)
        x = self.decoder(x, training=training)
        return self.lm_head(x)

    def _embed_at(self, token_ids, cache_positions, pad_counts):
        # Shift each row's positions by its left padding; pads get 0.
        positions = ops.maximum(cache_positions - pad_counts[:, None], 0)
        return self.token_embedding(token_ids) + self.position_embedding(
            positions
        )

    # Generation rebuilds the cache from a window of history for each
    # chunk: learned positions end at `context_length`.
    carries_state = False

    def prefill(self, token_ids, pad_counts, max_length):
        """The decoding state after feeding `token_ids` in one call.

        Args:
            token_ids: int32 `(batch, P)`, left-padded with
                `pad_counts` pad tokens per row (`P >= 1`).
            pad_counts: int32 `(batch,)`.
            max_length: Python int, cache positions (`>= P` plus the
                steps to decode).

        Returns:
            A dict of tensors with the batch on axis 0.
        """
        batch = ops.shape(token_ids)[0]
        width = token_ids.shape[1]
        cache = self.decoder.init_cache(batch, max_length)
        positions = ops.arange(max_length, dtype="int32")[None, :]
        padding_mask = positions >= pad_counts[:, None]
        x = self._embed_at(token_ids, positions[:, :width], pad_counts)
        _, cache = self.decoder.call_with_cache(
            x, cache, 0, decoder_padding_mask=padding_mask
        )
        return {
            "cache": cache,
            "pad_counts": pad_counts,
            "padding_mask": padding_mask,
        }

    def step_fn(self, prefill_length):
        """A `skipseq.decoding` step function after a prefill of that width.

        Decoding index `i` feeds cache position `prefill_length + i`.
        """

        def step(tokens, state, index):
            cache_index = prefill_length + index
            x = self._embed_at(
                tokens[:, None],
                ops.reshape(cache_index, (1, 1)),
                state["pad_counts"],
            )
            h, cache = self.decoder.call_with_cache(
                x,
                state["cache"],
                cache_index,
                decoder_padding_mask=state["padding_mask"],
            )
            logits = self.lm_head(h[:, 0])
            return logits, {**state, "cache": cache}

        return step

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "context_length": self.context_length,
                "width": self.width,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": self.activation,
                "residual": self.residual,
                "norm": self.norm,
                "stochastic_depth_rate": self.stochastic_depth_rate,
                "seed": self.seed,
            }
        )
        return config
