"""The skip-connection core: a layer that wraps any sublayer with a skip."""

import inspect

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers.dropout import Dropout

SKIPS = ("auto", "identity", "projection", "none")
NORM_POSITIONS = ("pre", "post", "sandwich", "none")
NORMS = ("layer", "rms")
SCALINGS = (None, "rezero", "deepnorm", "highway")

# A negative gate bias makes a fresh highway skip carry its input: with
# b = -2 the gate opens to sigmoid(-2) ~ 0.12, so y starts close to x.
HIGHWAY_GATE_BIAS = -2.0


def make_norm(norm, epsilon, name, dtype=None):
    """Return the normalisation layer called `norm` ("layer" or "rms").

    Both Keras layers compute in float32 under a mixed precision policy.
    """
    if norm == "layer":
        cls = keras.layers.LayerNormalization
    else:
        cls = keras.layers.RMSNormalization
    layer = cls(epsilon=epsilon, name=name, dtype=dtype)
    # RMSNormalization acts on each position alone, like LayerNormalization,
    # but Keras 3.15 does not mark it as mask-preserving and warns that it
    # "destroys" the mask of a masked input.
    layer.supports_masking = True
    return layer


def call_accepts(layer, argument):
    """Whether `layer.call` takes `argument` by name (or `**kwargs`)."""
    parameters = inspect.signature(layer.call).parameters
    if argument in parameters:
        return True
    return any(p.kind is p.VAR_KEYWORD for p in parameters.values())


@keras.saving.register_keras_serializable(package="skipseq")
class Residual(keras.layers.Layer):
    """Wraps a sublayer `F` with a skip (residual) path.

    The layer computes one of these, chosen by `norm_position` and `scaling`
    (`P` is the identity or a learned projection, `N` a normalisation):

    ```
    pre:       y = P(x) + F(N(x))              (Xiong et al. 2020)
    post:      y = N(P(x) + F(x))              (Vaswani et al. 2017)
    sandwich:  y = P(x) + N(F(N(x)))
    none:      y = P(x) + F(x)
    rezero:    y = P(x) + a * F(x),            a learned, starts at 0
    deepnorm:  y = N(alpha * P(x) + F(x))      (Wang et al. 2022)
    highway:   y = g * F(x) + (1 - g) * P(x),  g = sigmoid(W x + b)
    ```

    `skip="none"` removes the skip path, leaving a plain (non-residual)
    layer with the same normalisation placement, for comparing a stack
    with and without skips:

    ```
    skip="none", pre:       y = F(N(x))
    skip="none", post:      y = N(F(x))
    skip="none", sandwich:  y = N(F(N(x)))
    skip="none", none:      y = F(x)
    ```

    Dropout applies to the branch output `F(.)` before it is added. With
    stochastic depth (Huang et al. 2016) the whole branch is dropped for
    each example with probability `stochastic_depth_rate` during training,
    and the kept branches are scaled by `1 / (1 - rate)`, so the expected
    output equals the inference output, where the branch is always kept.

    Masking: the output mask is the input mask. The mask is passed on to
    the sublayer when its `call` accepts a `mask` argument, which a plain
    `x + F(x)` or `keras.layers.Add` does not guarantee.

    The skip is an identity when the branch keeps the width of `x`; when
    the widths differ `skip="auto"` inserts a learned linear projection
    `P`. Asking for `skip="identity"` with different widths is an error
    rather than a silently dropped residual.

    Args:
        sublayer: a `keras.layers.Layer`, the branch `F`. Its output width
            is found with `sublayer.compute_output_shape`. When it returns
            a tuple `(out, *extras)`, this layer returns `(y, *extras)`.
        skip: `"auto"` (default), `"identity"`, `"projection"` or
            `"none"` (no skip path). `"none"` requires `scaling=None`
            and `stochastic_depth_rate=0.0`: each of these acts on the
            sum of skip and branch.
        norm_position: `"pre"` (default), `"post"`, `"sandwich"` or
            `"none"`.
        norm: `"layer"` (default) for `LayerNormalization` or `"rms"` for
            `RMSNormalization`.
        layer_norm_epsilon: float, epsilon of the normalisation. Defaults
            to `1e-5`.
        scaling: `None` (default), `"rezero"`, `"deepnorm"` or
            `"highway"`. `"deepnorm"` requires `norm_position="post"`.
        alpha: float, the skip multiplier of DeepNorm. Defaults to `1.0`;
            it must stay `1.0` unless `scaling="deepnorm"`.
        dropout: float in [0, 1), dropout rate on the branch output.
            Defaults to `0.0`.
        stochastic_depth_rate: float in [0, 1), probability of dropping
            the branch for an example during training. Defaults to `0.0`.
        seed: optional int seed for dropout and stochastic depth.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `x` of shape `(batch, ..., width)`.
        mask: optional mask for `x`, passed to the sublayer.
        training: Python bool, whether dropout and stochastic depth act.
        **kwargs: passed to the sublayer's call. Keras traces these as one
            nested argument, so they must all be tensors (or `None`):
            pass an index as `ops.convert_to_tensor(i, "int32")`.

    Returns:
        `y`, of shape `(batch, ..., branch_width)`, or `(y, *extras)` when
        the sublayer returns a tuple.

    Example:

    >>> import keras, numpy as np
    >>> from skipseq.layers import Residual
    >>> block = Residual(keras.layers.Dense(8), norm_position="post")
    >>> keras.ops.shape(block(np.ones((2, 5, 8), "float32")))
    (2, 5, 8)
    """

    def __init__(
        self,
        sublayer,
        skip="auto",
        norm_position="pre",
        norm="layer",
        layer_norm_epsilon=1e-5,
        scaling=None,
        alpha=1.0,
        dropout=0.0,
        stochastic_depth_rate=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(sublayer, keras.layers.Layer):
            raise ValueError(
                "Argument `sublayer` must be a keras.layers.Layer. "
                f"Received: sublayer={sublayer!r}"
            )
        _checks.one_of("skip", skip, SKIPS)
        _checks.one_of("norm_position", norm_position, NORM_POSITIONS)
        _checks.one_of("norm", norm, NORMS)
        _checks.one_of("scaling", scaling, SCALINGS)
        _checks.positive("layer_norm_epsilon", layer_norm_epsilon)
        _checks.positive("alpha", alpha)
        _checks.rate("dropout", dropout)
        _checks.rate("stochastic_depth_rate", stochastic_depth_rate)
        if scaling == "deepnorm" and norm_position != "post":
            raise ValueError(
                'Argument `scaling="deepnorm"` is defined for '
                'norm_position="post". '
                f"Received: norm_position={norm_position!r}"
            )
        if skip == "none" and scaling is not None:
            raise ValueError(
                'Argument `skip="none"` leaves no skip path to scale, so '
                "`scaling` must be None. Received: "
                f"skip={skip!r}, scaling={scaling!r}"
            )
        if skip == "none" and stochastic_depth_rate != 0.0:
            # Dropping the branch without a skip would zero the output.
            raise ValueError(
                'Argument `skip="none"` leaves no skip path to fall back '
                "on, so `stochastic_depth_rate` must be 0.0. Received: "
                f"skip={skip!r}, "
                f"stochastic_depth_rate={stochastic_depth_rate!r}"
            )
        if scaling != "deepnorm" and alpha != 1.0:
            raise ValueError(
                'Argument `alpha` is only used with scaling="deepnorm" and '
                f"must be 1.0 otherwise. Received: alpha={alpha!r} with "
                f"scaling={scaling!r}"
            )

        self.sublayer = sublayer
        self.skip = skip
        self.norm_position = norm_position
        self.norm = norm
        self.layer_norm_epsilon = layer_norm_epsilon
        self.scaling = scaling
        self.alpha = alpha
        self.dropout = dropout
        self.stochastic_depth_rate = stochastic_depth_rate
        self.seed = seed

        self.supports_masking = True
        self._sublayer_takes_mask = call_accepts(sublayer, "mask")
        self._sublayer_takes_training = call_accepts(sublayer, "training")
        self.branch_dropout = Dropout(
            dropout, seed=seed, name="branch_dropout", dtype=self.dtype_policy
        )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_norm = None
        self.output_norm = None
        self.skip_projection = None
        self.gate = None
        self.rezero_alpha = None

    def build(self, input_shape):
        input_width = input_shape[-1]
        if not self.sublayer.built:
            self.sublayer.build(input_shape)
        output_shape = self.sublayer.compute_output_shape(input_shape)
        if isinstance(output_shape, list | tuple) and isinstance(
            output_shape[0], list | tuple
        ):
            output_shape = output_shape[0]
        output_width = output_shape[-1]

        if self.skip == "identity" and input_width != output_width:
            raise ValueError(
                'An identity skip (skip="identity") needs the branch to '
                "keep the width of its input, but the input width is "
                f"{input_width} and the branch output width is "
                f"{output_width}. Use skip='auto' or 'projection'."
            )
        project = self.skip == "projection" or (
            self.skip == "auto" and input_width != output_width
        )
        if project:
            self.skip_projection = keras.layers.Dense(
                output_width,
                use_bias=False,
                name="skip_projection",
                dtype=self.dtype_policy,
            )
            self.skip_projection.build(input_shape)

        eps = self.layer_norm_epsilon
        if self.norm_position in ("pre", "sandwich"):
            self.input_norm = make_norm(
                self.norm, eps, "input_norm", self.dtype_policy
            )
            self.input_norm.build(input_shape)
        if self.norm_position in ("post", "sandwich"):
            self.output_norm = make_norm(
                self.norm, eps, "output_norm", self.dtype_policy
            )
            self.output_norm.build(tuple(output_shape))

        if self.scaling == "rezero":
            self.rezero_alpha = self.add_weight(
                name="rezero_alpha", shape=(), initializer="zeros"
            )
        if self.scaling == "highway":
            self.gate = keras.layers.Dense(
                output_width,
                activation="sigmoid",
                bias_initializer=keras.initializers.Constant(HIGHWAY_GATE_BIAS),
                name="gate",
                dtype=self.dtype_policy,
            )
            self.gate.build(input_shape)
        self.built = True

    def _drop_branch(self, branch, training):
        """Stochastic depth: keep or drop the branch of each example."""
        rate = self.stochastic_depth_rate
        if not training or rate == 0.0:
            return branch
        # One draw per example, broadcast over time and features.
        rank = len(branch.shape)
        shape = (ops.shape(branch)[0],) + (1,) * (rank - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator)
        keep = ops.cast(draw >= rate, branch.dtype)
        return branch * keep / (1.0 - rate)

    def call(self, inputs, mask=None, training=None, **kwargs):
        # Keep the skip path before anything normalises the input.
        skip = inputs
        if self.skip_projection is not None:
            skip = self.skip_projection(skip)

        branch_input = inputs
        if self.input_norm is not None:
            branch_input = self.input_norm(branch_input)

        if self._sublayer_takes_mask and mask is not None:
            kwargs["mask"] = mask
        if self._sublayer_takes_training:
            kwargs["training"] = training
        branch = self.sublayer(branch_input, **kwargs)
        extras = ()
        if isinstance(branch, list | tuple):
            branch, *extras = branch

        if self.norm_position == "sandwich":
            branch = self.output_norm(branch)
        branch = self.branch_dropout(branch, training=training)
        branch = self._drop_branch(branch, training)

        if self.skip == "none":
            outputs = branch
        elif self.scaling == "rezero":
            outputs = skip + ops.cast(self.rezero_alpha, branch.dtype) * branch
        elif self.scaling == "highway":
            gate = self.gate(inputs)
            outputs = gate * branch + (1.0 - gate) * skip
        elif self.scaling == "deepnorm":
            outputs = self.alpha * skip + branch
        else:
            outputs = skip + branch

        if self.norm_position == "post":
            outputs = self.output_norm(outputs)

        if extras:
            return (outputs, *extras)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        output_shape = self.sublayer.compute_output_shape(input_shape)
        if isinstance(output_shape, list | tuple) and isinstance(
            output_shape[0], list | tuple
        ):
            return tuple(output_shape[0])
        return tuple(output_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sublayer": keras.saving.serialize_keras_object(self.sublayer),
                "skip": self.skip,
                "norm_position": self.norm_position,
                "norm": self.norm,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "scaling": self.scaling,
                "alpha": self.alpha,
                "dropout": self.dropout,
                "stochastic_depth_rate": self.stochastic_depth_rate,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["sublayer"] = keras.saving.deserialize_keras_object(
            config["sublayer"]
        )
        return cls(**config)


@keras.saving.register_keras_serializable(package="skipseq")
class DenseSkip(keras.layers.Layer):
    """A DenseNet-style skip: concatenates the input and the branch output.

    `y = concat([x, F(x)], axis=-1)` (Huang et al. 2017). The output width
    is the input width plus the branch width, so a stack of these grows
    wider with depth and every later layer sees every earlier output.

    Masking: the output mask is the input mask, and the mask is passed on
    to a sublayer whose `call` accepts one.

    Args:
        sublayer: a `keras.layers.Layer`, the branch `F`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Example:

    >>> import keras, numpy as np
    >>> from skipseq.layers import DenseSkip
    >>> block = DenseSkip(keras.layers.Dense(3))
    >>> keras.ops.shape(block(np.ones((2, 5, 4), "float32")))
    (2, 5, 7)
    """

    def __init__(self, sublayer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sublayer, keras.layers.Layer):
            raise ValueError(
                "Argument `sublayer` must be a keras.layers.Layer. "
                f"Received: sublayer={sublayer!r}"
            )
        self.sublayer = sublayer
        self.supports_masking = True
        self._sublayer_takes_mask = call_accepts(sublayer, "mask")
        self._sublayer_takes_training = call_accepts(sublayer, "training")

    def build(self, input_shape):
        if not self.sublayer.built:
            self.sublayer.build(input_shape)
        self.built = True

    def call(self, inputs, mask=None, training=None):
        kwargs = {}
        if self._sublayer_takes_mask and mask is not None:
            kwargs["mask"] = mask
        if self._sublayer_takes_training:
            kwargs["training"] = training
        branch = self.sublayer(inputs, **kwargs)
        return ops.concatenate([inputs, ops.cast(branch, inputs.dtype)], -1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        branch_shape = self.sublayer.compute_output_shape(input_shape)
        width = None
        if input_shape[-1] is not None and branch_shape[-1] is not None:
            width = input_shape[-1] + branch_shape[-1]
        return tuple(input_shape[:-1]) + (width,)

    def get_config(self):
        config = super().get_config()
        config["sublayer"] = keras.saving.serialize_keras_object(self.sublayer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["sublayer"] = keras.saving.deserialize_keras_object(
            config["sublayer"]
        )
        return cls(**config)
