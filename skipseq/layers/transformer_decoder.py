"""A stack of Transformer decoder blocks with incremental decoding."""

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.deepnorm import deepnorm_constants
from skipseq.layers.multi_head_attention import (
    causal_mask,
    check_cache_index,
    check_padding_mask,
    implicit_mask,
    merge_masks,
    padding_to_attention_mask,
    static_int,
)
from skipseq.layers.transformer_decoder_block import TransformerDecoderBlock
from skipseq.layers.transformer_encoder import (
    block_arguments,
    build_stack_extras,
    check_stack_arguments,
    run_stack,
    stack_config,
)


def check_cache(cache, has_cross_attention, num_layers):
    """Raise unless `cache` has the keys and sizes `init_cache` gives."""
    keys = ["self_key", "self_value"]
    if has_cross_attention:
        keys += ["cross_key", "cross_value", "encoder_padding_mask"]
    if not isinstance(cache, dict) or any(k not in cache for k in keys):
        if isinstance(cache, dict):
            received = f"a dict with keys {sorted(cache)}"
        else:
            received = f"cache={cache!r}"
        raise ValueError(
            f"Argument `cache` must be the dict from `init_cache`, with keys "
            f"{keys}. Received: {received}"
        )
    for key in keys[:2]:
        if len(cache[key]) != num_layers:
            raise ValueError(
                f"Argument `cache` must hold one `{key}` tensor per layer "
                f"(num_layers={num_layers}). Received: {len(cache[key])}"
            )


@keras.saving.register_keras_serializable(package="skipseq")
class TransformerDecoder(keras.layers.Layer):
    """A stack of `num_layers` `TransformerDecoderBlock`s.

    ```
    x_0 = inputs;  x_i = block_i(G_i(x_0 .. x_{i-1}), source);  y = N(...)
    ```

    The stack is the same as `TransformerEncoder` (final norm for pre-norm
    and sandwich, optional DLCL aggregation `G_i`), with causal
    self-attention and, when first called with an `encoder_sequence`,
    cross-attention in every block. The causal, padding and explicit
    masks are combined once per call and shared by the blocks.

    DeepNorm constants depend on the decoder depth `M` alone: decoder only
    `alpha = (2M)^(1/4)`, `beta = (8M)^(-1/4)`; with cross-attention
    (encoder-decoder) `alpha = (3M)^(1/4)`, `beta = (12M)^(-1/4)`.

    Incremental decoding. `init_cache` returns a dict of tensors, each with
    the batch on axis 0, so it can be a `tf.while_loop` state and beam
    search can reorder it with `ops.take(t, beam_indices, axis=0)`:

    ```
    {
      "self_key":   (L tensors (batch, num_heads, head_dim, max_length)),
      "self_value": (L tensors (batch, num_heads, max_length, head_dim)),
      # with cross-attention only:
      "cross_key":  (L tensors (batch, num_heads, head_dim, source_length)),
      "cross_value": (L tensors (batch, num_heads, source_length, head_dim)),
      "encoder_padding_mask": bool (batch, source_length),
    }
    ```

    `call_with_cache(inputs, cache, cache_index)` runs `T` steps starting
    at `cache_index` (often `T = 1`), writes their keys and values into
    the cache with a dynamic update slice and returns
    `(outputs, new_cache)`. All shapes are fixed, so a compiled step is
    traced once for the whole decoding. It equals the full causal call on
    the same positions.

    Args: as `TransformerEncoder`, without `num_decoder_layers`.

    Call arguments:
        decoder_sequence: tensor `(batch, T, width)`.
        encoder_sequence: optional tensor `(batch, S, source_width)`.
        decoder_padding_mask: optional bool `(batch, T)`; else the Keras
            mask of `decoder_sequence`.
        decoder_attention_mask: optional bool `(batch, T, T)`.
        encoder_padding_mask: optional bool `(batch, S)`; else the Keras
            mask of `encoder_sequence`.
        encoder_attention_mask: optional bool `(batch, T, S)`.
        use_causal_mask: bool, defaults to `True`.
        training: Python bool, whether dropout acts.

    Example:

    >>> import numpy as np
    >>> decoder = TransformerDecoder(2, 32, num_heads=2, residual="pre")
    >>> source = np.ones((1, 7, 8), "float32")
    >>> target = np.ones((1, 4, 8), "float32")
    >>> full = decoder(target, source)
    >>> cache = decoder.init_cache(1, 4, encoder_outputs=source)
    >>> step, cache = decoder.call_with_cache(target[:, :1], cache, 0)
    >>> bool(np.allclose(step[:, 0], full[:, 0], atol=1e-5))
    True
    """

    def __init__(
        self,
        num_layers,
        intermediate_dim,
        num_heads,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        residual=None,
        norm="layer",
        stochastic_depth_rate=0.0,
        layer_aggregation=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.residual = residual
        self.norm = norm
        self.stochastic_depth_rate = stochastic_depth_rate
        self.layer_aggregation = layer_aggregation
        self.seed = seed
        self.variant = check_stack_arguments(self)
        self.supports_masking = True
        self.blocks = []

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        # The blocks are made here: DeepNorm's constants depend on whether
        # the stack cross-attends, known from the first call.
        self.has_cross_attention = encoder_sequence_shape is not None
        alpha = beta = 1.0
        if self.variant == "deepnorm":
            encoder_layers = 1 if self.has_cross_attention else 0
            constants = deepnorm_constants(encoder_layers, self.num_layers)
            alpha, beta = constants.decoder_alpha, constants.decoder_beta
        self.blocks = [
            TransformerDecoderBlock(**block_arguments(self, i, alpha, beta))
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build(decoder_sequence_shape, encoder_sequence_shape)
        build_stack_extras(self, decoder_sequence_shape)
        self.width = decoder_sequence_shape[-1]
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
        training=None,
    ):
        check_padding_mask(
            "decoder_padding_mask", decoder_padding_mask, decoder_sequence
        )
        check_padding_mask(
            "encoder_padding_mask", encoder_padding_mask, encoder_sequence
        )
        length = ops.shape(decoder_sequence)[1]
        if decoder_padding_mask is None:
            decoder_padding_mask = implicit_mask(decoder_sequence)
        self_mask = merge_masks(
            causal_mask(length, length) if use_causal_mask else None,
            padding_to_attention_mask(decoder_padding_mask),
            decoder_attention_mask,
        )
        if encoder_padding_mask is None:
            encoder_padding_mask = implicit_mask(encoder_sequence)
        cross_mask = merge_masks(
            padding_to_attention_mask(encoder_padding_mask),
            encoder_attention_mask,
        )

        def run_block(index, block, x):
            return block(
                x,
                encoder_sequence=encoder_sequence,
                decoder_attention_mask=self_mask,
                encoder_attention_mask=cross_mask,
                use_causal_mask=False,
                training=training,
            )

        return run_stack(self, decoder_sequence, run_block)

    def init_cache(
        self,
        batch_size,
        max_length,
        encoder_outputs=None,
        encoder_padding_mask=None,
    ):
        """A fresh decoding cache (see the class docstring).

        Args:
            batch_size: int or scalar int tensor.
            max_length: int, the number of decoding positions.
            encoder_outputs: tensor `(batch, S, source_width)`; required
                when the stack cross-attends, whose keys and values are
                computed here once.
            encoder_padding_mask: optional bool `(batch, S)`; else the
                Keras mask of `encoder_outputs`, else all True.

        Returns:
            The cache dict.
        """
        self._check_built("init_cache")
        if not ops.is_tensor(batch_size):
            _checks.positive_int("batch_size", batch_size)
        _checks.positive_int("max_length", max_length)
        if self.has_cross_attention != (encoder_outputs is not None):
            raise ValueError(
                "Argument `encoder_outputs` must be given exactly when the "
                "decoder has cross-attention (has_cross_attention="
                f"{self.has_cross_attention}). Received: encoder_outputs="
                f"{None if encoder_outputs is None else 'a tensor'}"
            )
        if encoder_outputs is not None:
            source_width = self.blocks[0].cross_attention.sublayer.source_width
            _checks.static_dims_match(
                "encoder_outputs",
                encoder_outputs.shape,
                (static_int(batch_size), None, source_width),
            )
        head_dim = self.width // self.num_heads
        # Keys transposed: see CachedMultiHeadAttention.
        keys = ops.zeros(
            (batch_size, self.num_heads, head_dim, max_length),
            dtype=self.compute_dtype,
        )
        values = ops.zeros(
            (batch_size, self.num_heads, max_length, head_dim),
            dtype=self.compute_dtype,
        )
        cache = {
            "self_key": tuple(keys for _ in self.blocks),
            "self_value": tuple(values for _ in self.blocks),
        }
        if not self.has_cross_attention:
            return cache

        key_values = [
            block.cross_attention.sublayer.compute_key_value(encoder_outputs)
            for block in self.blocks
        ]
        cache["cross_key"] = tuple(kv["key"] for kv in key_values)
        cache["cross_value"] = tuple(kv["value"] for kv in key_values)
        if encoder_padding_mask is None:
            encoder_padding_mask = implicit_mask(encoder_outputs)
        if encoder_padding_mask is None:
            encoder_padding_mask = ops.ones(
                ops.shape(encoder_outputs)[:2], dtype="bool"
            )
        cache["encoder_padding_mask"] = ops.cast(encoder_padding_mask, "bool")
        return cache

    def call_with_cache(
        self,
        inputs,
        cache,
        cache_index,
        decoder_padding_mask=None,
        training=False,
    ):
        """Decode `T` steps from `cache_index` on, updating the cache.

        Args:
            inputs: tensor `(batch, T, width)`, the embedded steps at
                positions `cache_index .. cache_index + T - 1`.
            cache: the dict from `init_cache` or a previous step.
            cache_index: int or scalar int tensor, with
                `0 <= cache_index <= max_length - T`. A known index
                outside that range raises; a traced one cannot be
                checked and is clamped by the update slice.
            decoder_padding_mask: optional bool `(batch, max_length)` over
                the cache positions (e.g. left-padded prompts).
            training: Python bool, whether dropout acts. Defaults to
                `False`.

        Returns:
            `(outputs, new_cache)`, outputs of shape `(batch, T, width)`.
        """
        self._check_built("call_with_cache")
        check_cache(cache, self.has_cross_attention, self.num_layers)
        # (batch, num_heads, max_length, head_dim)
        self_value = cache["self_value"][0]
        _checks.static_dims_match(
            "inputs", inputs.shape, (self_value.shape[0], None, self.width)
        )
        check_cache_index(cache_index, inputs.shape[1], self_value.shape[2])
        if decoder_padding_mask is not None:
            _checks.static_dims_match(
                "decoder_padding_mask",
                decoder_padding_mask.shape,
                (self_value.shape[0], self_value.shape[2]),
            )
        # A direct method call skips Keras' autocast of the inputs.
        inputs = ops.cast(inputs, self.compute_dtype)
        length = ops.shape(inputs)[1]
        max_length = ops.shape(self_value)[2]
        self_mask = merge_masks(
            causal_mask(length, max_length, cache_index),
            padding_to_attention_mask(decoder_padding_mask),
        )
        cross_mask = padding_to_attention_mask(
            cache.get("encoder_padding_mask")
        )
        new_keys, new_values = [], []

        def run_block(index, block, x):
            block_cache = {
                "key": cache["self_key"][index],
                "value": cache["self_value"][index],
            }
            if self.has_cross_attention:
                block_cache["cross_key"] = cache["cross_key"][index]
                block_cache["cross_value"] = cache["cross_value"][index]
            x, block_cache = block(
                x,
                decoder_attention_mask=self_mask,
                encoder_attention_mask=cross_mask,
                use_causal_mask=False,
                cache=block_cache,
                cache_index=cache_index,
                training=training,
            )
            new_keys.append(block_cache["key"])
            new_values.append(block_cache["value"])
            return x

        outputs = run_stack(self, inputs, run_block)
        new_cache = dict(cache)
        new_cache["self_key"] = tuple(new_keys)
        new_cache["self_value"] = tuple(new_values)
        return outputs, new_cache

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"Call the decoder once (or build it) before `{method}`. "
                "Received: an unbuilt decoder"
            )

    def compute_mask(self, decoder_sequence, mask=None):
        return mask

    def compute_output_shape(
        self, decoder_sequence_shape, encoder_sequence_shape=None
    ):
        return tuple(decoder_sequence_shape)

    def get_config(self):
        config = super().get_config()
        config.update(stack_config(self))
        return config
