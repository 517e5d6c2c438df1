"""Luong and Bahdanau attention for recurrent decoders."""

import keras
from keras import ops

from skipseq.layers import _checks

SCORES = ("dot", "general", "additive")

# Added to the scores of padded source positions before the softmax. The
# softmax runs in float32, where exp(-1e9 - max) is exactly zero.
MASK_SCORE = -1e9


def check_call_shapes(query, value, key, value_mask):
    """Raise on ranks or known sizes that do not fit together."""
    if len(query.shape) not in (2, 3):
        raise ValueError(
            "Argument `query` must have shape (batch, target_time, width) "
            f"or (batch, width). Received: query.shape={tuple(query.shape)}"
        )
    batch, source_time = value.shape[0], None
    if len(value.shape) == 3:
        source_time = value.shape[1]
    _checks.static_dims_match(
        "value", value.shape, (query.shape[0], None, None)
    )
    if key is not None:
        _checks.static_dims_match("key", key.shape, (batch, source_time, None))
    if value_mask is not None:
        _checks.static_dims_match(
            "value_mask", value_mask.shape, (batch, source_time)
        )


@keras.saving.register_keras_serializable(package="skipseq")
class RNNAttention(keras.layers.Layer):
    """Attention of decoder states over encoder outputs (Luong, Bahdanau).

    For each query `q` (a decoder output) and the keys `k_s` and values
    `v_s` of the source positions `s`:

    ```
    dot:       e_s = q . k_s                          (Luong et al. 2015)
    general:   e_s = q . (W k_s)                      (Luong et al. 2015)
    additive:  e_s = w . tanh(W_q q + W_k k_s + b)    (Bahdanau et al. 2015)
    a = softmax(e),   context = sum_s a_s v_s
    ```

    Masking: padded source positions (`value_mask` false) get exactly zero
    weight, and the weights of the other positions sum to one. A source
    row without any valid position gets all-zero weights and a zero
    context. The keys default to the values (the encoder outputs).

    Args:
        score: `"dot"`, `"general"` or `"additive"` (default). `"dot"`
            needs queries and keys of the same width.
        units: int, the hidden width of the additive score. Defaults to
            `None`, the width of the keys. Only used by `"additive"`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        query: `(batch, target_time, query_width)` or `(batch,
            query_width)` for a single step.
        value: `(batch, source_time, value_width)`.
        key: optional `(batch, source_time, key_width)`; defaults to
            `value`.
        value_mask: optional boolean `(batch, source_time)`, false at
            padded source positions.

    Returns:
        `(context, weights)`: `context` of shape `(batch, target_time,
        value_width)` and `weights` of shape `(batch, target_time,
        source_time)`, without the `target_time` axis for a 2D query.

    Example:

    >>> import numpy as np
    >>> attention = RNNAttention("dot")
    >>> context, weights = attention(
    ...     np.ones((2, 3, 4), "float32"), np.ones((2, 5, 4), "float32")
    ... )
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 3, 4), (2, 3, 5))
    """

    def __init__(self, score="additive", units=None, **kwargs):
        super().__init__(**kwargs)
        _checks.one_of("score", score, SCORES)
        if units is not None:
            _checks.positive_int("units", units)
        self.score = score
        self.units = units
        self.query_projection = None
        self.key_projection = None
        self.score_vector = None

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        query_width, key_width = query_shape[-1], key_shape[-1]
        if self.score == "dot" and query_width != key_width:
            raise ValueError(
                'score="dot" needs queries and keys of the same width. '
                f"Received: query width {query_width}, key width "
                f"{key_width}. Use score='general' or 'additive'."
            )
        if self.score == "general":
            self.key_projection = keras.layers.Dense(
                query_width,
                use_bias=False,
                name="key_projection",
                dtype=self.dtype_policy,
            )
            self.key_projection.build(key_shape)
        if self.score == "additive":
            units = self.units or key_width
            self.query_projection = keras.layers.Dense(
                units,
                use_bias=True,
                name="query_projection",
                dtype=self.dtype_policy,
            )
            self.query_projection.build(query_shape)
            self.key_projection = keras.layers.Dense(
                units,
                use_bias=False,
                name="key_projection",
                dtype=self.dtype_policy,
            )
            self.key_projection.build(key_shape)
            self.score_vector = keras.layers.Dense(
                1,
                use_bias=False,
                name="score_vector",
                dtype=self.dtype_policy,
            )
            self.score_vector.build(tuple(query_shape[:-1]) + (units,))
        self.built = True

    def scores(self, query, key):
        """Raw scores `(batch, target_time, source_time)`, 3D query."""
        if self.score == "dot":
            return ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        if self.score == "general":
            key = self.key_projection(key)
            return ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        # (batch, target, 1, units) + (batch, 1, source, units)
        hidden = ops.expand_dims(self.query_projection(query), 2)
        hidden = hidden + ops.expand_dims(self.key_projection(key), 1)
        return ops.squeeze(self.score_vector(ops.tanh(hidden)), -1)

    def call(self, query, value, key=None, value_mask=None):
        check_call_shapes(query, value, key, value_mask)
        single_step = len(query.shape) == 2
        if single_step:
            query = ops.expand_dims(query, 1)
        key = value if key is None else key

        scores = ops.cast(self.scores(query, key), "float32")
        if value_mask is not None:
            # (batch, 1, source): the same mask for every query step.
            valid = ops.expand_dims(ops.cast(value_mask, "bool"), 1)
            scores = ops.where(valid, scores, MASK_SCORE)
        weights = ops.softmax(scores, axis=-1)
        if value_mask is not None:
            # Exact zeros, also for a row whose every position is padded.
            weights = ops.where(valid, weights, 0.0)
        weights = ops.cast(weights, value.dtype)
        context = ops.matmul(weights, value)

        if single_step:
            return context[:, 0], weights[:, 0]
        return context, weights

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        leading = tuple(query_shape[:-1])
        return (
            leading + (value_shape[-1],),
            leading + (value_shape[1],),
        )

    def compute_output_spec(self, query, value, key=None, value_mask=None):
        context_shape, weights_shape = self.compute_output_shape(
            query.shape, value.shape
        )
        return (
            keras.KerasTensor(context_shape, dtype=self.compute_dtype),
            keras.KerasTensor(weights_shape, dtype=self.compute_dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"score": self.score, "units": self.units})
        return config
