"""A Transformer decoder block on the skipseq residual core."""

import keras
from keras import ops

from skipseq.layers.multi_head_attention import (
    causal_mask,
    check_cache_index,
    check_padding_mask,
    implicit_mask,
    merge_masks,
    padding_to_attention_mask,
)
from skipseq.layers.transformer_encoder_block import (
    block_config,
    check_block_arguments,
    make_attention,
    make_feedforward,
    make_residual,
)


@keras.saving.register_keras_serializable(package="skipseq")
class TransformerDecoderBlock(keras.layers.Layer):
    """Transformer decoder block: causal self-attention, optional
    cross-attention over an encoder output, then a feed-forward net.

    Each sublayer is wrapped by `skipseq.layers.Residual` in the variant
    chosen by `residual`, exactly as in `TransformerEncoderBlock` (whose
    docstring lists the formulas, e.g. pre-norm `y = x + F(N(x))` and
    post-norm `y = N(x + F(x))`). The block has cross-attention when it is
    built (first called) with an `encoder_sequence`.

    Masking: self-attention is causal (`use_causal_mask=True`), and never
    attends to padded target keys (`decoder_padding_mask`, else the Keras
    mask of `decoder_sequence`); cross-attention never attends to padded
    source keys (`encoder_padding_mask`, else the Keras mask of
    `encoder_sequence`), whatever the two lengths. Explicit attention masks
    are combined with these. The causal mask is applied before attention
    dropout, so it holds in training.

    Incremental decoding: pass `cache`, a dict `{"key", "value"}` of
    self-attention tensors in `CachedMultiHeadAttention`'s layout (keys
    `(batch, num_heads, head_dim, max_length)`, values `(batch, num_heads,
    max_length, head_dim)`), plus
    `"cross_key"`, `"cross_value"` from `cross_attention.sublayer.
    compute_key_value(encoder_sequence)` when the block cross-attends,
    and `cache_index`; the call then returns `(outputs, new_cache)`.
    `decoder_padding_mask`, if given, then covers the `max_length` cache
    positions. `TransformerDecoder.init_cache` and `call_with_cache` drive
    this for a whole stack.

    Args: the same as `TransformerEncoderBlock`.

    Call arguments:
        decoder_sequence: tensor `(batch, T, width)`.
        encoder_sequence: optional tensor `(batch, S, source_width)`.
        decoder_padding_mask: optional bool `(batch, T)`.
        decoder_attention_mask: optional bool `(batch, T, T)`.
        encoder_padding_mask: optional bool `(batch, S)`.
        encoder_attention_mask: optional bool `(batch, T, S)`.
        use_causal_mask: bool, defaults to `True`.
        cache: optional dict of cache tensors, see above.
        cache_index: int or scalar int tensor, the cache position of the
            first of the `T` steps.
        training: Python bool, whether dropout acts.

    Returns:
        Tensor `(batch, T, width)`, or `(outputs, new_cache)` with a cache.

    Example:

    >>> import numpy as np
    >>> block = TransformerDecoderBlock(32, num_heads=2)
    >>> x = np.ones((2, 5, 8), "float32")
    >>> source = np.ones((2, 7, 8), "float32")
    >>> tuple(block(x, encoder_sequence=source).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        residual=None,
        norm="layer",
        stochastic_depth_rate=0.0,
        deepnorm_alpha=1.0,
        deepnorm_beta=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.residual = residual
        self.norm = norm
        self.stochastic_depth_rate = stochastic_depth_rate
        self.deepnorm_alpha = deepnorm_alpha
        self.deepnorm_beta = deepnorm_beta
        self.seed = seed
        self.variant = check_block_arguments(self)
        self.supports_masking = True

        self.self_attention = make_residual(
            self, make_attention(self, "attention", 1), "self_attention", 2
        )
        self.cross_attention = None
        self.feedforward = make_residual(
            self, make_feedforward(self), "feedforward", 5
        )

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        self.self_attention.build(decoder_sequence_shape)
        if encoder_sequence_shape is not None:
            attention = make_attention(self, "attention", 3)
            # Build the branch with the source shape before the Residual
            # builds it with the target shape alone.
            attention.build(decoder_sequence_shape, encoder_sequence_shape)
            self.cross_attention = make_residual(
                self, attention, "cross_attention", 4
            )
            self.cross_attention.build(decoder_sequence_shape)
        self.feedforward.build(decoder_sequence_shape)
        self.built = True

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        use_causal_mask=True,
        cache=None,
        cache_index=None,
        training=None,
    ):
        if cache is not None:
            check_cache_index(
                cache_index, decoder_sequence.shape[1], cache["value"].shape[2]
            )
        else:
            check_padding_mask(
                "decoder_padding_mask", decoder_padding_mask, decoder_sequence
            )
        check_padding_mask(
            "encoder_padding_mask", encoder_padding_mask, encoder_sequence
        )
        length = ops.shape(decoder_sequence)[1]
        key_length = length if cache is None else ops.shape(cache["value"])[2]
        start = 0 if cache is None else cache_index

        if decoder_padding_mask is None and cache is None:
            decoder_padding_mask = implicit_mask(decoder_sequence)
        self_mask = merge_masks(
            causal_mask(length, key_length, start) if use_causal_mask else None,
            padding_to_attention_mask(decoder_padding_mask),
            decoder_attention_mask,
        )
        self_cache = None
        if cache is not None:
            self_cache = {"key": cache["key"], "value": cache["value"]}
            # Residual forwards its keyword arguments as one nested
            # argument, which Keras refuses to mix tensors and Python ints.
            cache_index = ops.convert_to_tensor(cache_index, "int32")
        x = self.self_attention(
            decoder_sequence,
            attention_mask=self_mask,
            cache=self_cache,
            cache_index=cache_index,
            training=training,
        )
        if cache is not None:
            x, self_cache = x

        if self.cross_attention is not None:
            if encoder_sequence is None and cache is None:
                raise ValueError(
                    "This block cross-attends (it was built with an "
                    "encoder sequence), so `encoder_sequence` is required. "
                    "Received: encoder_sequence=None"
                )
            if encoder_padding_mask is None:
                encoder_padding_mask = implicit_mask(encoder_sequence)
            cross_mask = merge_masks(
                padding_to_attention_mask(encoder_padding_mask),
                encoder_attention_mask,
            )
            cross_cache = None
            if cache is not None:
                cross_cache = {
                    "key": cache["cross_key"],
                    "value": cache["cross_value"],
                }
            x = self.cross_attention(
                x,
                source=encoder_sequence,
                attention_mask=cross_mask,
                cache=cross_cache,
                training=training,
            )

        outputs = self.feedforward(x, training=training)
        if cache is None:
            return outputs
        return outputs, {**cache, **self_cache}

    def compute_mask(self, decoder_sequence, mask=None):
        return mask

    def compute_output_shape(
        self, decoder_sequence_shape, encoder_sequence_shape=None
    ):
        return tuple(decoder_sequence_shape)

    def get_config(self):
        config = super().get_config()
        config.update(block_config(self))
        return config
