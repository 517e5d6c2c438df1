"""A stack of Transformer encoder blocks."""

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.deepnorm import deepnorm_constants
from skipseq.layers.feedforward import ACTIVATIONS
from skipseq.layers.multi_head_attention import (
    check_padding_mask,
    implicit_mask,
    merge_masks,
    padding_to_attention_mask,
)
from skipseq.layers.residual import NORMS, make_norm
from skipseq.layers.transformer_encoder_block import (
    NORMALIZE_FIRST,
    TransformerEncoderBlock,
    check_plain_without_stochastic_depth,
    resolve_residual,
)

LAYER_AGGREGATIONS = (None, "dlcl")


def check_stack_arguments(stack):
    """The argument checks shared by the encoder and decoder stacks.

    Block arguments are checked again by each block; checking them here
    reports a mistake at construction, before any block exists.
    """
    _checks.positive_int("num_layers", stack.num_layers)
    _checks.positive_int("intermediate_dim", stack.intermediate_dim)
    _checks.positive_int("num_heads", stack.num_heads)
    _checks.rate("dropout", stack.dropout)
    _checks.rate("stochastic_depth_rate", stack.stochastic_depth_rate)
    _checks.one_of("activation", stack.activation, ACTIVATIONS)
    _checks.positive("layer_norm_epsilon", stack.layer_norm_epsilon)
    _checks.one_of("norm", stack.norm, NORMS)
    _checks.boolean("normalize_first", stack.normalize_first)
    _checks.optional_int("seed", stack.seed)
    _checks.one_of(
        "layer_aggregation", stack.layer_aggregation, LAYER_AGGREGATIONS
    )
    variant = resolve_residual(stack.residual, stack.normalize_first)
    check_plain_without_stochastic_depth(variant, stack)
    return variant


def block_arguments(stack, index, alpha, beta):
    """Constructor arguments of block `index` of `stack`.

    Stochastic depth grows linearly with depth (Huang et al. 2016): block
    `i` of `L` drops its sublayers with `rate * (i + 1) / L`.
    """
    rate = stack.stochastic_depth_rate * (index + 1) / stack.num_layers
    return {
        "intermediate_dim": stack.intermediate_dim,
        "num_heads": stack.num_heads,
        "dropout": stack.dropout,
        "activation": stack.activation,
        "layer_norm_epsilon": stack.layer_norm_epsilon,
        "normalize_first": stack.normalize_first,
        "residual": stack.variant,
        "norm": stack.norm,
        "stochastic_depth_rate": rate,
        "deepnorm_alpha": alpha,
        "deepnorm_beta": beta,
        "seed": None if stack.seed is None else stack.seed + 10 * index,
        "name": f"block_{index}",
        "dtype": stack.dtype_policy,
    }


def build_stack_extras(stack, shape):
    """The final norm (pre-norm, sandwich) and DLCL weights of a stack."""
    stack.final_norm = None
    if stack.variant in NORMALIZE_FIRST:
        stack.final_norm = make_norm(
            stack.norm,
            stack.layer_norm_epsilon,
            "final_norm",
            stack.dtype_policy,
        )
        stack.final_norm.build(shape)
    stack.aggregation_weights = None
    if stack.layer_aggregation == "dlcl":
        # Row i weighs the outputs 0..i (0 is the stack input) into the
        # input of block i, row L into the stack output. The identity start
        # picks the latest output: a fresh DLCL stack is a plain stack.
        stack.aggregation_weights = stack.add_weight(
            name="aggregation_weights",
            shape=(stack.num_layers + 1, stack.num_layers + 1),
            initializer="identity",
        )


def aggregate(stack, outputs):
    """The input of the next block (or the stack output), from `outputs`."""
    if stack.aggregation_weights is None:
        return outputs[-1]
    row = len(outputs) - 1
    weights = ops.cast(stack.aggregation_weights[row], outputs[0].dtype)
    combined = weights[0] * outputs[0]
    for j in range(1, len(outputs)):
        combined = combined + weights[j] * outputs[j]
    return combined


def run_stack(stack, inputs, run_block):
    """Run the blocks (`run_block(index, block, x)`), aggregation, norm."""
    outputs = [inputs]
    for index, block in enumerate(stack.blocks):
        outputs.append(run_block(index, block, aggregate(stack, outputs)))
    x = aggregate(stack, outputs)
    if stack.final_norm is not None:
        x = stack.final_norm(x)
    return x


def stack_config(stack):
    """The constructor arguments shared by the encoder and decoder stacks."""
    return {
        "num_layers": stack.num_layers,
        "intermediate_dim": stack.intermediate_dim,
        "num_heads": stack.num_heads,
        "dropout": stack.dropout,
        "activation": stack.activation,
        "layer_norm_epsilon": stack.layer_norm_epsilon,
        "normalize_first": stack.normalize_first,
        "residual": stack.residual,
        "norm": stack.norm,
        "stochastic_depth_rate": stack.stochastic_depth_rate,
        "layer_aggregation": stack.layer_aggregation,
        "seed": stack.seed,
    }


@keras.saving.register_keras_serializable(package="skipseq")
class TransformerEncoder(keras.layers.Layer):
    """A stack of `num_layers` `TransformerEncoderBlock`s.

    ```
    x_0 = inputs;  x_i = block_i(G_i(x_0 .. x_{i-1}));  y = N(G_L(...))
    ```

    `N` is the final normalisation that a pre-norm or sandwich stack needs
    (absent otherwise). `G_i` picks the latest output `x_{i-1}`, unless
    `layer_aggregation="dlcl"` (dynamic linear combination of layers,
    Wang et al. 2019): then `G_i = sum_j w_ij x_j` with learned weights,
    initialised to the identity so that a fresh stack equals a plain
    stack and learns from there to use earlier layers.

    With `residual="deepnorm"` the stack sets its blocks' `alpha` and
    `beta` from its depth `N` (and the paired decoder depth `M` when
    `num_decoder_layers` is given), see `skipseq.layers.deepnorm`:
    encoder only `alpha = (2N)^(1/4)`, `beta = (8N)^(-1/4)`; in an
    encoder-decoder `alpha = 0.81 (N^4 M)^(1/16)`,
    `beta = 0.87 (N^4 M)^(-1/16)`.

    Masking: the padding mask (`padding_mask`, else the Keras mask of
    `inputs`) hides padded keys in every block; the output keeps the
    input's Keras mask for a downstream decoder.

    Args:
        num_layers: int, number of blocks.
        intermediate_dim, num_heads, dropout, activation,
        layer_norm_epsilon, normalize_first, residual, norm: as in
            `TransformerEncoderBlock`.
        stochastic_depth_rate: float in [0, 1), the rate of the last
            block; block `i` uses `rate * (i + 1) / num_layers`.
            Defaults to `0.0`.
        layer_aggregation: `None` (default) or `"dlcl"`.
        num_decoder_layers: optional int, the depth of the decoder this
            encoder feeds; only DeepNorm uses it. Defaults to `None`
            (an encoder-only model).
        seed: optional int seed for dropout and stochastic depth.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch, T, width)`.
        padding_mask: optional bool `(batch, T)`, True at tokens.
        attention_mask: optional bool `(batch, T, T)`.
        training: Python bool, whether dropout acts.

    Example:

    >>> import numpy as np
    >>> encoder = TransformerEncoder(2, 32, num_heads=2, residual="pre")
    >>> tuple(encoder(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)
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
        num_decoder_layers=None,
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
        self.num_decoder_layers = num_decoder_layers
        self.seed = seed
        self.variant = check_stack_arguments(self)
        if num_decoder_layers is not None:
            _checks.positive_int("num_decoder_layers", num_decoder_layers)
        self.supports_masking = True

        alpha = beta = 1.0
        if self.variant == "deepnorm":
            constants = deepnorm_constants(num_layers, num_decoder_layers or 0)
            alpha, beta = constants.encoder_alpha, constants.encoder_beta
        self.blocks = [
            TransformerEncoderBlock(**block_arguments(self, i, alpha, beta))
            for i in range(num_layers)
        ]

    def build(self, inputs_shape):
        for block in self.blocks:
            block.build(inputs_shape)
        build_stack_extras(self, inputs_shape)
        self.built = True

    def call(
        self, inputs, padding_mask=None, attention_mask=None, training=None
    ):
        # Build the attention mask once for all blocks.
        check_padding_mask("padding_mask", padding_mask, inputs)
        if padding_mask is None:
            padding_mask = implicit_mask(inputs)
        mask = merge_masks(
            padding_to_attention_mask(padding_mask), attention_mask
        )

        def run_block(index, block, x):
            return block(x, attention_mask=mask, training=training)

        return run_stack(self, inputs, run_block)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(stack_config(self))
        config["num_decoder_layers"] = self.num_decoder_layers
        return config
