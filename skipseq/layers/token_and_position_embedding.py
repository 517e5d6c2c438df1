"""Token plus position embeddings, with tied output logits."""

import math

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.multi_head_attention import static_int

POSITIONS = ("learned", "sinusoidal")
# Wavelength base of sinusoidal positions (Vaswani et al. 2017).
SINUSOID_BASE = 10000.0


def sinusoidal_positions(positions, width):
    """Sinusoidal encodings `(len(positions), width)`, sin/cos interleaved.

    `PE[p, 2i] = sin(p / 10000^(2i / width))`, `PE[p, 2i+1] = cos(...)`.
    """
    positions = ops.cast(positions, "float32")
    exponents = ops.arange(0, width, 2, dtype="float32") / width
    frequencies = ops.exp(-math.log(SINUSOID_BASE) * exponents)
    angles = ops.expand_dims(positions, 1) * ops.expand_dims(frequencies, 0)
    # (length, width / 2, 2) -> (length, width): sin, cos, sin, cos, ...
    encodings = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
    return ops.reshape(encodings, (ops.shape(positions)[0], width))


@keras.saving.register_keras_serializable(package="skipseq")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding plus a learned or sinusoidal position embedding.

    ```
    y[t] = s * E[token_t] + P[start_index + t],   s = sqrt(width) or 1
    ```

    With `mask_zero=True` token id 0 is padding and the output carries the
    padding mask `token != 0`, which the skipseq Transformer stacks honour.

    Weight tying: `layer(hidden, reverse=True)` returns the logits
    `hidden @ E^T` (in float32), so one layer can embed the target tokens
    and project the decoder output onto the vocabulary, also inside a
    functional model.

    Args:
        vocabulary_size: int, number of token ids.
        sequence_length: int, the longest sequence (and the number of
            learned positions; for cached decoding, at least the cache
            length).
        embedding_dim: int, the width.
        position: `"learned"` (default) or `"sinusoidal"`.
        scale_embedding: bool, multiply token embeddings by
            `sqrt(embedding_dim)`. Defaults to `False`.
        mask_zero: bool, treat token 0 as padding. Defaults to `False`.
        embeddings_initializer: initialiser of the token (and learned
            position) tables. Defaults to `"uniform"`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: int tensor `(batch, T)` of token ids, or with
            `reverse=True` a float tensor `(batch, T, width)`.
        start_index: int or scalar int tensor, position of the first step
            (for cached decoding). Defaults to `0`.
        reverse: bool, return tied logits instead. Defaults to `False`.

    Example:

    >>> import numpy as np
    >>> embed = TokenAndPositionEmbedding(100, 16, 8, mask_zero=True)
    >>> hidden = embed(np.array([[5, 7, 0]]))
    >>> tuple(hidden.shape), tuple(embed(hidden, reverse=True).shape)
    ((1, 3, 8), (1, 3, 100))
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        position="learned",
        scale_embedding=False,
        mask_zero=False,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.positive_int("vocabulary_size", vocabulary_size)
        _checks.positive_int("sequence_length", sequence_length)
        _checks.positive_int("embedding_dim", embedding_dim)
        _checks.one_of("position", position, POSITIONS)
        _checks.boolean("scale_embedding", scale_embedding)
        _checks.boolean("mask_zero", mask_zero)
        if position == "sinusoidal" and embedding_dim % 2:
            raise ValueError(
                "Argument `embedding_dim` must be even for sinusoidal "
                f"positions. Received: embedding_dim={embedding_dim}"
            )
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.position = position
        self.scale_embedding = scale_embedding
        self.mask_zero = mask_zero
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.supports_masking = mask_zero

    def build(self, input_shape=None):
        self.token_embeddings = self.add_weight(
            name="token_embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=self.embeddings_initializer,
        )
        self.position_embeddings = None
        if self.position == "learned":
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.sequence_length, self.embedding_dim),
                initializer=self.embeddings_initializer,
            )
        self.built = True

    def call(self, inputs, start_index=0, reverse=False):
        if reverse:
            width = inputs.shape[-1]
            if width is not None and width != self.embedding_dim:
                raise ValueError(
                    "With `reverse=True`, `inputs` must have the width "
                    f"embedding_dim={self.embedding_dim}. Received: "
                    f"inputs.shape={tuple(inputs.shape)}"
                )
            kernel = ops.cast(self.token_embeddings, inputs.dtype)
            logits = ops.matmul(inputs, ops.transpose(kernel))
            return ops.cast(logits, "float32")

        self._check_tokens(inputs, start_index)
        tokens = ops.take(self.token_embeddings, inputs, axis=0)
        if self.scale_embedding:
            tokens = tokens * ops.cast(self.embedding_dim**0.5, tokens.dtype)

        length = ops.shape(inputs)[1]
        if self.position == "learned":
            positions = ops.slice(
                self.position_embeddings,
                [start_index, 0],
                [length, self.embedding_dim],
            )
        else:
            positions = sinusoidal_positions(
                ops.arange(length) + start_index, self.embedding_dim
            )
        return tokens + ops.cast(positions, tokens.dtype)

    def _check_tokens(self, inputs, start_index):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "int" not in dtype or len(inputs.shape) != 2:
            raise ValueError(
                "Argument `inputs` must be int token ids of shape (batch, "
                "length); pass `reverse=True` for hidden states. Received: "
                f"inputs.shape={tuple(inputs.shape)}, inputs.dtype={dtype}"
            )
        if self.position != "learned":
            return
        # A slice past the table raises eagerly but is clamped (silently
        # wrong) under XLA, so check whatever is known here.
        length = inputs.shape[1]
        start = static_int(start_index)
        if length is None or start is None:
            return
        if start < 0 or start + length > self.sequence_length:
            raise ValueError(
                f"Positions {start} to {start + length - 1} "
                "(start_index + length - 1) must lie below "
                f"sequence_length={self.sequence_length}. Received: "
                f"start_index={start}, inputs.shape={tuple(inputs.shape)}"
            )

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        if "float" in keras.backend.standardize_dtype(inputs.dtype):
            # A reverse (logits) call keeps the mask of the hidden states.
            return mask
        return ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "position": self.position,
                "scale_embedding": self.scale_embedding,
                "mask_zero": self.mask_zero,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
