"""The position-wise feed-forward network of a Transformer block."""

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.multi_head_attention import concatenated_initializer

PLAIN_ACTIVATIONS = ("relu", "gelu", "silu")
# Gated variants (Shazeer 2020): the activation of the gate half.
GATED_ACTIVATIONS = {
    "glu": "sigmoid",
    "reglu": "relu",
    "geglu": "gelu",
    "swiglu": "silu",
}
ACTIVATIONS = PLAIN_ACTIVATIONS + tuple(GATED_ACTIVATIONS)


@keras.saving.register_keras_serializable(package="skipseq")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network, plain or gated.

    ```
    plain:  y = act(x W1 + b1) W2 + b2
    gated:  y = (act(x W + b) * (x V + c)) W2 + b2      (GLU family)
    ```

    The gated forms are GLU (`act` = sigmoid), ReGLU (relu), GEGLU (gelu)
    and SwiGLU (silu); `W` and `V` share one fused kernel. The output width
    equals the input width. Masking is not needed (position-wise).

    Args:
        intermediate_dim: int, width of the hidden layer.
        activation: one of `"relu"` (default), `"gelu"`, `"silu"`,
            `"glu"`, `"reglu"`, `"geglu"`, `"swiglu"`.
        use_bias: bool, whether the projections have biases. Defaults to
            `True`.
        kernel_initializer: initialiser of both kernels. Defaults to
            `"glorot_uniform"`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Example:

    >>> import numpy as np
    >>> ffn = FeedForward(intermediate_dim=32, activation="swiglu")
    >>> tuple(ffn(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.positive_int("intermediate_dim", intermediate_dim)
        _checks.one_of("activation", activation, ACTIVATIONS)
        _checks.boolean("use_bias", use_bias)
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True
        self.gated = activation in GATED_ACTIVATIONS
        self.activation_fn = keras.activations.get(
            GATED_ACTIVATIONS.get(activation, activation)
        )

    def build(self, input_shape):
        width = input_shape[-1]
        parts = 2 if self.gated else 1
        init = self.kernel_initializer
        self.intermediate_kernel = self.add_weight(
            name="intermediate_kernel",
            shape=(width, parts * self.intermediate_dim),
            initializer=concatenated_initializer([init] * parts),
        )
        self.output_kernel = self.add_weight(
            name="output_kernel",
            shape=(self.intermediate_dim, width),
            initializer=init,
        )
        self.intermediate_bias = None
        self.output_bias = None
        if self.use_bias:
            self.intermediate_bias = self.add_weight(
                name="intermediate_bias",
                shape=(parts * self.intermediate_dim,),
                initializer="zeros",
            )
            self.output_bias = self.add_weight(
                name="output_bias", shape=(width,), initializer="zeros"
            )
        self.built = True

    def call(self, inputs):
        hidden = ops.matmul(inputs, self.intermediate_kernel)
        if self.intermediate_bias is not None:
            hidden = hidden + self.intermediate_bias

        if self.gated:
            gate, linear = ops.split(hidden, 2, axis=-1)
            hidden = self.activation_fn(gate) * linear
        else:
            hidden = self.activation_fn(hidden)

        outputs = ops.matmul(hidden, self.output_kernel)
        if self.output_bias is not None:
            outputs = outputs + self.output_bias
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
