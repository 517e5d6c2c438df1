"""Multi-head attention with a fixed-shape key/value cache."""

import numbers

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.dropout import Dropout

# Masked scores are replaced (not offset) by this value before a float32
# softmax: far below any real score, yet finite, so a fully masked row
# gives a uniform distribution instead of NaN.
MASK_VALUE = -1e9


def implicit_mask(inputs):
    """The padding mask Keras attached to `inputs` (or `None`).

    Keras 3 sets it on layer outputs (e.g. after `Embedding(mask_zero=True)`)
    and offers no public getter for it.
    """
    if inputs is None:
        return None
    from keras.src.backend import get_keras_mask

    return get_keras_mask(inputs)


def causal_mask(query_length, key_length, start_index=0):
    """Bool mask `(1, query_length, key_length)`, True where key <= query.

    Query `t` sits at absolute position `start_index + t`, so the same
    mask serves a full forward pass (`start_index=0`) and a cached step
    that attends over a cache of length `key_length`.
    """
    query_positions = ops.arange(query_length) + start_index
    key_positions = ops.arange(key_length)
    mask = ops.expand_dims(key_positions, 0) <= ops.expand_dims(
        query_positions, 1
    )
    return ops.expand_dims(mask, 0)


def merge_masks(*masks):
    """Logical AND of bool masks (`None` entries skipped); `None` if none."""
    merged = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged


def padding_to_attention_mask(padding_mask):
    """Key padding mask `(batch, keys)` to attention mask `(batch, 1, keys)`."""
    if padding_mask is None:
        return None
    return ops.expand_dims(ops.cast(padding_mask, "bool"), 1)


def static_int(value):
    """The value of a Python int or of an eager scalar tensor, else None.

    Inside a traced function the value is unknown and None is returned.
    """
    if isinstance(value, numbers.Integral):
        return int(value)
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    value = tf.get_static_value(value)
    return None if value is None else int(value)


def check_cache_index(cache_index, length, max_length):
    """Raise unless `cache_index` is an int whose `length` steps fit.

    A dynamic update slice clamps its start, so an index past the end of
    the cache would silently overwrite its last slots. The bounds are
    checked wherever the index is known (a Python int, an eager tensor);
    inside a compiled loop the caller keeps it below `max_length`.
    """
    is_int = isinstance(cache_index, numbers.Integral) and not isinstance(
        cache_index, bool
    )
    if not is_int and not (
        ops.is_tensor(cache_index)
        and "int" in keras.backend.standardize_dtype(cache_index.dtype)
    ):
        raise ValueError(
            "Argument `cache_index` must be an int or a scalar int tensor. "
            f"Received: cache_index={cache_index!r}"
        )
    if length is not None and max_length is not None and length > max_length:
        raise ValueError(
            f"The {length} steps do not fit in a cache of max_length="
            f"{max_length}. Received: cache_index={cache_index!r}"
        )
    index = static_int(cache_index)
    if index is None or length is None or max_length is None:
        return
    if index < 0 or index + length > max_length:
        raise ValueError(
            f"Argument `cache_index` must lie in [0, {max_length - length}] "
            f"so that the {length} step(s) fit in a cache of max_length="
            f"{max_length}. Received: cache_index={index}"
        )


def concatenated_initializer(initializers):
    """One initialiser for kernels concatenated on the last axis.

    Each part is drawn on its own with shape `(fan_in, width / parts)`, so
    fan-based initialisers see the fans of one projection, not their sum.
    """
    if len(initializers) == 1:
        return initializers[0]

    def initialize(shape, dtype=None):
        parts = len(initializers)
        part_shape = tuple(shape[:-1]) + (shape[-1] // parts,)
        return ops.concatenate(
            [init(part_shape, dtype=dtype) for init in initializers], -1
        )

    return initialize


def heads_first(tensor):
    """`(batch, T, heads, head_dim)` to `(batch, heads, T, head_dim)`."""
    return ops.transpose(tensor, (0, 2, 1, 3))


def keys_last(tensor):
    """`(batch, T, heads, head_dim)` to `(batch, heads, head_dim, T)`."""
    return ops.transpose(tensor, (0, 2, 3, 1))


def check_same_batch(name, tensor, other_name, other):
    """Raise when two tensors have different known batch sizes."""
    a, b = tensor.shape[0], other.shape[0]
    if a is not None and b is not None and a != b:
        raise ValueError(
            f"Arguments `{name}` and `{other_name}` must have the same batch "
            f"size. Received: {name}.shape={tuple(tensor.shape)}, "
            f"{other_name}.shape={tuple(other.shape)}"
        )


def check_padding_mask(name, padding_mask, sequence):
    """Raise unless a padding mask has the shape `(batch, length)`."""
    if padding_mask is None or sequence is None:
        return
    _checks.static_dims_match(
        name, padding_mask.shape, tuple(sequence.shape[:2])
    )


def check_attention_mask(attention_mask, query, source, cache):
    """Raise unless the mask broadcasts to `(batch, T, S)` where known."""
    keys = query if source is None else source
    key_length = keys.shape[1] if cache is None else cache["value"].shape[2]
    expected = (query.shape[0], query.shape[1], key_length)
    shape = tuple(attention_mask.shape)
    fits = len(shape) == 3 and all(
        a is None or b is None or a in (1, b)
        for a, b in zip(shape, expected, strict=True)
    )
    if not fits:
        raise ValueError(
            "Argument `attention_mask` must broadcast to (batch, "
            f"query_length, key_length) = {expected}. "
            f"Received: attention_mask.shape={shape}"
        )


@keras.saving.register_keras_serializable(package="skipseq")
class CachedMultiHeadAttention(keras.layers.Layer):
    """Multi-head attention with a fixed-shape key/value cache.

    Self-attention (the layer is built without a source) projects the
    queries, keys and values with one fused kernel; cross-attention (built
    with a source shape) projects queries from the target and keys and
    values from the source:

    ```
    head_i = softmax(Q_i K_i^T / sqrt(head_dim) + mask) V_i
    y      = concat(head_1, ..., head_h) W_o + b_o
    ```

    Scores are masked and normalised in float32, so a fully masked row
    gives finite (uniform) weights under mixed precision. Dropout applies
    to the attention weights after masking, so it cannot undo a mask.

    Incremental decoding. A self-attention cache is a dict
    `{"key": k, "value": v}` of head-major tensors: keys `(batch,
    num_heads, head_dim, max_length)` and values `(batch, num_heads,
    max_length, head_dim)`. Called with `cache` and `cache_index`, the
    layer writes the keys and values of its `T` query steps at
    `cache_index` (the length axis of each) with a dynamic update slice,
    attends over the whole cache (the caller's mask hides slots not
    written yet) and returns `(outputs, new_cache)`. Shapes never change,
    so a compiled decode step is traced once. For cross-attention, `cache`
    holds keys and values precomputed by `compute_key_value(source)` in
    the same layouts, and the layer returns the outputs alone. The batch
    stays on axis 0, so beam search reorders a cache with
    `ops.take(t, indices, axis=0)`.

    These layouts are the operands of `q k` and `weights v` as plain
    (batched) matrix products, heads as the batch axis, so XLA multiplies
    the cache where it lies. With keys stored `(.., max_length, head_dim)`
    XLA on CPU transposed a copy of every layer's key cache at every step,
    a cost that grew with the cache and made long generations slower per
    token. Each step still attends over all `max_length` slots, written
    or not, the price of fixed shapes (one trace, one compiled loop):
    size the cache to the longest output needed.

    Args:
        num_heads: int, number of attention heads; must divide the width.
        dropout: float in [0, 1), dropout on the attention weights.
            Defaults to `0.0`.
        use_bias: bool, whether projections have biases. Defaults to `True`.
        kernel_initializer: initialiser of the query and key kernels (and of
            the others unless `value_kernel_initializer` is set). Defaults
            to `"glorot_uniform"`.
        value_kernel_initializer: optional initialiser of the value and
            output kernels (DeepNorm scales these). Defaults to `None`, the
            same as `kernel_initializer`.
        seed: optional int seed for dropout.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        query: tensor `(batch, T, width)`.
        source: tensor `(batch, S, source_width)` for cross-attention, or
            `None` for self-attention.
        attention_mask: optional bool tensor broadcastable to
            `(batch, T, S)`, True where a query may attend to a key.
        cache: optional dict `{"key", "value"}`: keys `(batch, num_heads,
            head_dim, length)` and values `(batch, num_heads, length,
            head_dim)`, see above.
        cache_index: int or scalar int tensor, where a self-attention step
            starts in the cache.
        training: Python bool, whether dropout acts.

    Returns:
        `(batch, T, width)`, or `(outputs, cache)` for a cached
        self-attention step.

    Example:

    >>> import numpy as np
    >>> attention = CachedMultiHeadAttention(num_heads=2)
    >>> tuple(attention(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        value_kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.positive_int("num_heads", num_heads)
        _checks.rate("dropout", dropout)
        _checks.boolean("use_bias", use_bias)
        self.num_heads = num_heads
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.value_kernel_initializer = (
            None
            if value_kernel_initializer is None
            else keras.initializers.get(value_kernel_initializer)
        )
        self.seed = seed
        self.attention_dropout = Dropout(
            dropout,
            seed=seed,
            name="attention_dropout",
            dtype=self.dtype_policy,
        )
        self.is_cross_attention = False
        # Keys are masked through `attention_mask`; the Keras mask of the
        # query passes through unchanged.
        self.supports_masking = True

    def _kernel(self, name, shape, initializers):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=concatenated_initializer(initializers),
        )

    def _bias(self, name, width):
        if not self.use_bias:
            return None
        return self.add_weight(name=name, shape=(width,), initializer="zeros")

    def build(self, query_shape, source_shape=None):
        for name, shape in (("query", query_shape), ("source", source_shape)):
            if shape is not None and len(shape) != 3:
                raise ValueError(
                    f"Argument `{name}` must have rank 3 (batch, length, "
                    f"width). Received: {name}.shape={tuple(shape)}"
                )
        width = query_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                "Argument `num_heads` must divide the width of the query, "
                f"but the width is {width}. Received: "
                f"num_heads={self.num_heads}"
            )
        self.width = width
        self.source_width = None if source_shape is None else source_shape[-1]
        self.head_dim = width // self.num_heads
        qk_init = self.kernel_initializer
        v_init = self.value_kernel_initializer or qk_init
        if source_shape is None:
            # One (width, 3 * width) kernel: q, k and v in a single matmul.
            self.qkv_kernel = self._kernel(
                "qkv_kernel", (width, 3 * width), [qk_init, qk_init, v_init]
            )
            self.qkv_bias = self._bias("qkv_bias", 3 * width)
        else:
            self.is_cross_attention = True
            self.query_kernel = self._kernel(
                "query_kernel", (width, width), [qk_init]
            )
            self.query_bias = self._bias("query_bias", width)
            self.key_value_kernel = self._kernel(
                "key_value_kernel",
                (source_shape[-1], 2 * width),
                [qk_init, v_init],
            )
            self.key_value_bias = self._bias("key_value_bias", 2 * width)
        self.output_kernel = self._kernel(
            "output_kernel", (width, width), [v_init]
        )
        self.output_bias = self._bias("output_bias", width)
        self.built = True

    def _project(self, inputs, kernel, bias, parts):
        # (batch, T, width_in) -> (batch, T, parts, heads, head_dim)
        outputs = ops.matmul(inputs, kernel)
        if bias is not None:
            outputs = outputs + bias
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        return ops.reshape(
            outputs, (batch, length, parts, self.num_heads, self.head_dim)
        )

    def compute_key_value(self, source):
        """Keys `(batch, heads, head_dim, S)` and values `(batch, heads, S,
        head_dim)` of `source`.

        Computed once per source sequence and passed back as `cache` at
        every decoding step of a cross-attention layer.
        """
        # A direct method call skips Keras' autocast of the inputs.
        source = ops.cast(source, self.compute_dtype)
        key_value = self._project(
            source, self.key_value_kernel, self.key_value_bias, 2
        )
        return {
            "key": keys_last(key_value[:, :, 0]),
            "value": heads_first(key_value[:, :, 1]),
        }

    def call(
        self,
        query,
        source=None,
        attention_mask=None,
        cache=None,
        cache_index=None,
        training=None,
    ):
        if source is not None:
            check_same_batch("query", query, "source", source)
        if attention_mask is not None:
            check_attention_mask(attention_mask, query, source, cache)

        if self.is_cross_attention:
            q = self._project(query, self.query_kernel, self.query_bias, 1)
            q = q[:, :, 0]
            if cache is None:
                cache = self.compute_key_value(source)
            k, v = cache["key"], cache["value"]
        else:
            qkv = self._project(query, self.qkv_kernel, self.qkv_bias, 3)
            q = qkv[:, :, 0]
            # Only the T new steps change layout; the cache already has it.
            k, v = keys_last(qkv[:, :, 1]), heads_first(qkv[:, :, 2])
            if cache is not None:
                if cache_index is None:
                    raise ValueError(
                        "A self-attention `cache` needs `cache_index`. "
                        "Received: cache_index=None"
                    )
                check_cache_index(
                    cache_index, query.shape[1], cache["value"].shape[2]
                )
                k = ops.slice_update(cache["key"], [0, 0, 0, cache_index], k)
                v = ops.slice_update(cache["value"], [0, 0, cache_index, 0], v)
                cache = {"key": k, "value": v}

        # Scale q before the product: cheaper than scaling the scores and
        # keeps float16 products small.
        q = q * ops.cast(1.0 / self.head_dim**0.5, q.dtype)
        # (batch, heads, T, S), normalised in float32.
        scores = ops.cast(ops.einsum("bthd,bhds->bhts", q, k), "float32")
        if attention_mask is not None:
            mask = ops.expand_dims(ops.cast(attention_mask, "bool"), 1)
            scores = ops.where(mask, scores, MASK_VALUE)
        weights = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        weights = self.attention_dropout(weights, training=training)

        outputs = ops.einsum("bhts,bhsd->bthd", weights, v)
        batch, length = ops.shape(query)[0], ops.shape(query)[1]
        outputs = ops.reshape(outputs, (batch, length, self.width))
        outputs = ops.matmul(outputs, self.output_kernel)
        if self.output_bias is not None:
            outputs = outputs + self.output_bias

        if cache is not None and not self.is_cross_attention:
            return outputs, cache
        return outputs

    def compute_output_shape(self, query_shape, source_shape=None):
        return tuple(query_shape)

    def get_config(self):
        config = super().get_config()
        value_init = self.value_kernel_initializer
        config.update(
            {
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "value_kernel_initializer": (
                    None
                    if value_init is None
                    else keras.initializers.serialize(value_init)
                ),
                "seed": self.seed,
            }
        )
        return config
