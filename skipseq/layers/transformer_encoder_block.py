"""A Transformer encoder block on the skipseq residual core."""

import keras

from skipseq.layers import _checks
from skipseq.layers.deepnorm import deepnorm_initializer
from skipseq.layers.feedforward import ACTIVATIONS, FeedForward
from skipseq.layers.multi_head_attention import (
    CachedMultiHeadAttention,
    check_padding_mask,
    implicit_mask,
    merge_masks,
    padding_to_attention_mask,
)
from skipseq.layers.residual import NORMS, Residual

# Each residual variant as arguments of the core `Residual` layer.
RESIDUALS = {
    "post": {"norm_position": "post"},
    "pre": {"norm_position": "pre"},
    "sandwich": {"norm_position": "sandwich"},
    "deepnorm": {"norm_position": "post", "scaling": "deepnorm"},
    "rezero": {"norm_position": "none", "scaling": "rezero"},
    # No skip at all: the baseline that shows what the skips buy.
    "plain": {"skip": "none", "norm_position": "post"},
}
# The variants whose stack needs a final normalisation.
NORMALIZE_FIRST = ("pre", "sandwich")


def check_plain_without_stochastic_depth(variant, layer):
    """Raise for stochastic depth on a block without skips.

    Dropping the branch of a block that has no skip would zero its
    output; the check names the block's or stack's own arguments.
    """
    if variant == "plain" and layer.stochastic_depth_rate != 0.0:
        raise ValueError(
            'Argument `residual="plain"` leaves no skip path to fall back '
            "on, so `stochastic_depth_rate` must be 0.0. Received: "
            f"residual={layer.residual!r}, "
            f"stochastic_depth_rate={layer.stochastic_depth_rate!r}"
        )


def resolve_residual(residual, normalize_first):
    """The residual variant named by `residual` and `normalize_first`.

    `residual=None` means `"pre"` when `normalize_first` else `"post"`
    (the keras-hub convention); a variant that does not normalise first
    together with `normalize_first=True` is a contradiction.
    """
    _checks.one_of("residual", residual, (None,) + tuple(RESIDUALS))
    if residual is None:
        return "pre" if normalize_first else "post"
    if normalize_first and residual not in NORMALIZE_FIRST:
        raise ValueError(
            "Argument `normalize_first=True` asks for a pre-norm block, "
            f"which contradicts residual={residual!r}. Received: "
            f"normalize_first={normalize_first!r}, residual={residual!r}"
        )
    return residual


def check_block_arguments(block):
    """The argument checks shared by the encoder and decoder blocks."""
    _checks.positive_int("intermediate_dim", block.intermediate_dim)
    _checks.positive_int("num_heads", block.num_heads)
    _checks.rate("dropout", block.dropout)
    _checks.one_of("activation", block.activation, ACTIVATIONS)
    _checks.positive("layer_norm_epsilon", block.layer_norm_epsilon)
    _checks.one_of("norm", block.norm, NORMS)
    _checks.rate("stochastic_depth_rate", block.stochastic_depth_rate)
    _checks.positive("deepnorm_alpha", block.deepnorm_alpha)
    _checks.positive("deepnorm_beta", block.deepnorm_beta)
    _checks.boolean("normalize_first", block.normalize_first)
    _checks.optional_int("seed", block.seed)
    variant = resolve_residual(block.residual, block.normalize_first)
    check_plain_without_stochastic_depth(variant, block)
    if variant != "deepnorm":
        for name in ("deepnorm_alpha", "deepnorm_beta"):
            if getattr(block, name) != 1.0:
                raise ValueError(
                    f"Argument `{name}` is only used with "
                    f'residual="deepnorm" and must be 1.0 otherwise. '
                    f"Received: {name}={getattr(block, name)!r} with "
                    f"residual={block.residual!r}"
                )
    return variant


def make_residual(block, sublayer, name, seed_offset):
    """Wrap `sublayer` in the block's residual variant."""
    seed = None if block.seed is None else block.seed + seed_offset
    alpha = block.deepnorm_alpha if block.variant == "deepnorm" else 1.0
    variant = {"skip": "identity", **RESIDUALS[block.variant]}
    return Residual(
        sublayer,
        norm=block.norm,
        layer_norm_epsilon=block.layer_norm_epsilon,
        alpha=alpha,
        dropout=block.dropout,
        stochastic_depth_rate=block.stochastic_depth_rate,
        seed=seed,
        name=name,
        dtype=block.dtype_policy,
        **variant,
    )


def make_attention(block, name, seed_offset):
    """Attention with DeepNorm's beta-scaled value and output kernels."""
    value_init = None
    kernel_init = "glorot_uniform"
    if block.variant == "deepnorm":
        kernel_init = deepnorm_initializer(1.0)
        value_init = deepnorm_initializer(block.deepnorm_beta)
    return CachedMultiHeadAttention(
        block.num_heads,
        dropout=block.dropout,
        kernel_initializer=kernel_init,
        value_kernel_initializer=value_init,
        seed=None if block.seed is None else block.seed + seed_offset,
        name=name,
        dtype=block.dtype_policy,
    )


def make_feedforward(block):
    """Feed-forward with DeepNorm's beta-scaled kernels."""
    kernel_init = "glorot_uniform"
    if block.variant == "deepnorm":
        kernel_init = deepnorm_initializer(block.deepnorm_beta)
    return FeedForward(
        block.intermediate_dim,
        activation=block.activation,
        kernel_initializer=kernel_init,
        name="dense",
        dtype=block.dtype_policy,
    )


def block_config(block):
    """The constructor arguments shared by the encoder and decoder blocks."""
    return {
        "intermediate_dim": block.intermediate_dim,
        "num_heads": block.num_heads,
        "dropout": block.dropout,
        "activation": block.activation,
        "layer_norm_epsilon": block.layer_norm_epsilon,
        "normalize_first": block.normalize_first,
        "residual": block.residual,
        "norm": block.norm,
        "stochastic_depth_rate": block.stochastic_depth_rate,
        "deepnorm_alpha": block.deepnorm_alpha,
        "deepnorm_beta": block.deepnorm_beta,
        "seed": block.seed,
    }


@keras.saving.register_keras_serializable(package="skipseq")
class TransformerEncoderBlock(keras.layers.Layer):
    """Transformer encoder block: self-attention, then a feed-forward net.

    Each sublayer `F` is wrapped by `skipseq.layers.Residual`, so one
    argument, `residual`, picks the whole block's variant:

    ```
    post:      y = N(x + F(x))                     (Vaswani et al. 2017)
    pre:       y = x + F(N(x))                     (Xiong et al. 2020)
    sandwich:  y = x + N(F(N(x)))
    deepnorm:  y = N(alpha * x + F(x))             (Wang et al. 2022)
    rezero:    y = x + a * F(x), a learned from 0  (Bachlechner et al. 2020)
    plain:     y = N(F(x))                         (no skip, a baseline)
    ```

    `N` is LayerNorm or RMSNorm (`norm`), computed in float32. DeepNorm
    also draws the feed-forward kernels and the attention value and output
    kernels from Xavier-normal with gain `deepnorm_beta`; the stacks
    compute `deepnorm_alpha` and `deepnorm_beta` from their depths (see
    `skipseq.layers.deepnorm`). A pre-norm or sandwich block leaves its
    output unnormalised: the stack adds the final normalisation.

    Masking: keys at padded positions are never attended. The padding
    mask is `padding_mask` or, when that is `None`, the Keras mask of
    `inputs` (e.g. from `Embedding(mask_zero=True)`); it is combined with
    `attention_mask`. The output keeps the input's Keras mask.

    Args:
        intermediate_dim: int, hidden width of the feed-forward network.
        num_heads: int, number of attention heads; must divide the width.
        dropout: float in [0, 1), dropout on attention weights and on each
            sublayer output. Defaults to `0.0`.
        activation: feed-forward activation, `"relu"` (default),
            `"gelu"`, `"silu"`, or gated `"glu"`, `"reglu"`, `"geglu"`,
            `"swiglu"`.
        layer_norm_epsilon: float, normalisation epsilon. Defaults to
            `1e-5`.
        normalize_first: bool, keras-hub's pre-norm switch. Defaults to
            `False` (post-norm).
        residual: `None` (default: `"pre"` if `normalize_first` else
            `"post"`), `"post"`, `"pre"`, `"sandwich"`, `"deepnorm"`,
            `"rezero"` or `"plain"` (no skip; needs
            `stochastic_depth_rate=0.0`). `normalize_first=True` with
            `"post"`, `"deepnorm"`, `"rezero"` or `"plain"` is an error.
        norm: `"layer"` (default) or `"rms"`.
        stochastic_depth_rate: float in [0, 1), probability of dropping
            each sublayer per example in training. Defaults to `0.0`.
        deepnorm_alpha: float, DeepNorm skip multiplier. Defaults to `1.0`;
            only `residual="deepnorm"` may change it.
        deepnorm_beta: float, DeepNorm initialisation gain. Defaults to
            `1.0`; only `residual="deepnorm"` may change it.
        seed: optional int seed for dropout and stochastic depth.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch, T, width)`.
        padding_mask: optional bool tensor `(batch, T)`, True at tokens.
        attention_mask: optional bool tensor `(batch, T, T)`.
        training: Python bool, whether dropout acts.

    Returns:
        Tensor `(batch, T, width)`.

    Example:

    >>> import numpy as np
    >>> block = TransformerEncoderBlock(32, num_heads=2, residual="pre")
    >>> tuple(block(np.ones((2, 5, 8), "float32")).shape)
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
        self.feedforward = make_residual(
            self, make_feedforward(self), "feedforward", 3
        )

    def build(self, inputs_shape):
        self.self_attention.build(inputs_shape)
        self.feedforward.build(inputs_shape)
        self.built = True

    def call(
        self, inputs, padding_mask=None, attention_mask=None, training=None
    ):
        check_padding_mask("padding_mask", padding_mask, inputs)
        if padding_mask is None:
            padding_mask = implicit_mask(inputs)
        mask = merge_masks(
            padding_to_attention_mask(padding_mask), attention_mask
        )

        x = self.self_attention(inputs, attention_mask=mask, training=training)
        return self.feedforward(x, training=training)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(block_config(self))
        return config
