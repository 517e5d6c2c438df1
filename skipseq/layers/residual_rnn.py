"""A deep LSTM/GRU stack with residual connections (GNMT style)."""

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers._backend import in_xla_context
from skipseq.layers.dropout import Dropout
from skipseq.layers.residual import NORM_POSITIONS, NORMS, SKIPS, Residual

CELL_TYPES = ("lstm", "gru")
USE_CUDNN = ("auto", True, False)
RESIDUAL_SCALINGS = (None, "rezero", "highway")
STATES_PER_CELL = {"lstm": 2, "gru": 1}


def gpu_available():
    """Whether the TensorFlow backend sees a GPU (cuDNN can only run there)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def inner_use_cudnn(use_cudnn):
    """The `use_cudnn` value given to the Keras LSTM/GRU layers.

    `"auto"` becomes `False` without a GPU: then Keras never marks the
    layers (or a model holding them) as unable to run under XLA.
    """
    if use_cudnn == "auto" and not gpu_available():
        return False
    return use_cudnn


def make_rnn(cell_type, units, use_cudnn, name, dtype=None):
    """A Keras LSTM or GRU returning its full sequence and its states."""
    rnn_class = keras.layers.LSTM if cell_type == "lstm" else keras.layers.GRU
    return rnn_class(
        units,
        return_sequences=True,
        return_state=True,
        use_cudnn=use_cudnn,
        name=name,
        dtype=dtype,
    )


def keras_rnns(layer):
    """The Keras LSTM/GRU layers inside `layer` (Residual, Bidirectional)."""
    if isinstance(layer, Residual):
        return keras_rnns(layer.sublayer)
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.RNN):
        return [layer]
    if hasattr(layer, "rnn"):
        return [layer.rnn]
    return []


def set_use_cudnn(rnns, use_cudnn):
    """Set `use_cudnn` on Keras RNN layers and keep them XLA-compatible.

    Keras marks an LSTM/GRU as not XLA-compatible when it is built with a
    possible cuDNN path, and `Bidirectional` rebuilds its copies from a
    config without `use_cudnn` (keras-team/keras#18456, #21533). The stack
    picks the path itself under XLA, so the mark is reset here.
    """
    for rnn in rnns:
        rnn.use_cudnn = use_cudnn
        rnn.supports_jit = use_cudnn is not True


def run_mask(mask):
    """The mask given to the recurrent layers, and which rows have steps.

    cuDNN rejects a row without any valid step (tensorflow#36139), so such
    a row runs its first step; its states and outputs are reset afterwards.
    Returns `(mask, has_steps)`, boolean `(batch, time)` and `(batch,)`.
    """
    mask = ops.cast(mask, "bool")
    has_steps = ops.any(mask, axis=1)
    first = ops.arange(ops.shape(mask)[1]) == 0
    empty_first = ops.logical_and(
        ops.expand_dims(ops.logical_not(has_steps), 1),
        ops.expand_dims(first, 0),
    )
    return ops.logical_or(mask, empty_first), has_steps


def mask_outputs(outputs, states, initial, mask, has_steps):
    """Zero padded outputs; give rows without steps their initial states."""
    outputs = ops.where(
        ops.expand_dims(mask, -1), outputs, ops.zeros_like(outputs)
    )
    keep = ops.expand_dims(has_steps, -1)
    if initial is None:
        initial = [ops.zeros_like(s) for s in states]
    states = [
        ops.where(keep, s, s0) for s, s0 in zip(states, initial, strict=True)
    ]
    return outputs, states


def last_step(outputs, mask):
    """The output at each row's last valid step, `(batch, width)`."""
    if mask is None:
        return outputs[:, -1]
    lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
    index = ops.maximum(lengths - 1, 0)
    index = ops.reshape(index, (-1, 1, 1))
    return ops.take_along_axis(outputs, index, axis=1)[:, 0]


def wrap_residual(stack, layer, index):
    """Layer `index` of a recurrent stack, with its skip from
    `stack.residual_start` up, configured by the stack's skip arguments."""
    if index < stack.residual_start:
        return layer
    seed = None if stack.seed is None else stack.seed + index
    return Residual(
        layer,
        skip=stack.skip,
        norm_position=stack.norm_position,
        norm=stack.norm,
        layer_norm_epsilon=stack.layer_norm_epsilon,
        scaling=stack.scaling,
        dropout=stack.dropout,
        stochastic_depth_rate=stack.stochastic_depth_rate,
        seed=seed,
        name=f"residual_{index}",
        dtype=stack.dtype_policy,
    )


@keras.saving.register_keras_serializable(package="skipseq")
class ResidualRNN(keras.layers.Layer):
    """A deep LSTM or GRU stack with residual connections (GNMT style).

    Layer `i` (zero-based) is a plain recurrent layer below `residual_start`
    and a `skipseq.layers.Residual` around the recurrent layer from there
    on, so with the defaults (Wu et al. 2016) the skips start at the third
    layer:

    ```
    h_0 = RNN_0(x)                          (optionally bidirectional)
    h_i = RNN_i(h_{i-1})                    i < residual_start
    h_i = P(h_{i-1}) + RNN_i(N(h_{i-1}))    i >= residual_start
    ```

    `P` is the identity, or a learned projection when the widths differ;
    `N` and the variant of the sum follow `norm_position` and `scaling` as
    in `Residual`. With `bidirectional_first=True` the bottom layer runs in
    both directions and feeds the concatenation (width `2 * units[0]`)
    upward.

    Masking: padded steps leave every state unchanged, outputs at padded
    steps are zero, and outputs at valid steps equal those of the unpadded
    sequence. The output mask is the input mask (`return_sequences=True`).
    A row with no valid step gives zero outputs and the initial states,
    on every path (cuDNN would fail on it, tensorflow#36139). cuDNN also
    needs right-padded masks.

    Fast paths: `use_cudnn="auto"` uses the cuDNN kernels on a GPU, except
    when the stack is traced for XLA (`jit_compile=True`), where it takes
    the plain loop; the stack never turns XLA off for a model.
    `use_cudnn=False` always takes the plain loop; `use_cudnn=True` demands
    cuDNN and so does not support XLA.

    Args:
        cell_type: `"lstm"` (default) or `"gru"`.
        num_layers: int, number of recurrent layers. Defaults to `4`.
        units: int, the width of every layer, or a list of `num_layers`
            ints. Defaults to `256`.
        residual_start: int in `[0, num_layers]`, the first layer with a
            skip; `num_layers` turns the skips off. Defaults to `2`.
        bidirectional_first: bool, whether the bottom layer is
            bidirectional. Defaults to `False`.
        return_sequences: bool, return the whole output sequence rather
            than the output at the last valid step. Defaults to `True`.
        return_state: bool, also return the final states of every layer.
            Defaults to `False`.
        skip: `"auto"` (default), `"identity"` or `"projection"`.
        norm_position: `"none"` (default, as in GNMT), `"pre"`, `"post"` or
            `"sandwich"`.
        norm: `"layer"` (default) or `"rms"`.
        layer_norm_epsilon: float. Defaults to `1e-5`.
        scaling: `None` (default), `"rezero"` or `"highway"`.
        dropout: float in [0, 1), dropout between layers: on the input of
            each plain layer above the bottom one, on the branch output of
            each residual layer. Defaults to `0.0`.
        stochastic_depth_rate: float in [0, 1), stochastic depth of each
            residual branch. Defaults to `0.0`.
        seed: optional int seed for the dropouts.
        use_cudnn: `"auto"` (default), `True` or `False`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: `(batch, time, features)`.
        mask: optional boolean `(batch, time)`.
        initial_state: optional flat list of `(batch, units_i)` tensors in
            the order of the returned states.
        training: Python bool.

    Returns:
        `(batch, time, units[-1])`, or `(batch, units[-1])` when
        `return_sequences=False`; with `return_state=True` a list
        `[output, *states]`. States are listed layer by layer from the
        bottom: `h, c` for an LSTM, `h` for a GRU, and for a bidirectional
        bottom layer the forward states, then the backward ones.

    Example:

    >>> import numpy as np
    >>> stack = ResidualRNN("gru", num_layers=3, units=8)
    >>> tuple(stack(np.ones((2, 5, 4), "float32")).shape)
    (2, 5, 8)

    References:
        Wu et al. 2016, Google's Neural Machine Translation System.
    """

    def __init__(
        self,
        cell_type="lstm",
        num_layers=4,
        units=256,
        residual_start=2,
        bidirectional_first=False,
        return_sequences=True,
        return_state=False,
        skip="auto",
        norm_position="none",
        norm="layer",
        layer_norm_epsilon=1e-5,
        scaling=None,
        dropout=0.0,
        stochastic_depth_rate=0.0,
        seed=None,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.one_of("cell_type", cell_type, CELL_TYPES)
        _checks.positive_int("num_layers", num_layers)
        widths = check_units(units, num_layers)
        check_residual_start(residual_start, num_layers)
        _checks.one_of("skip", skip, SKIPS)
        _checks.one_of("norm_position", norm_position, NORM_POSITIONS)
        _checks.one_of("norm", norm, NORMS)
        _checks.one_of("scaling", scaling, RESIDUAL_SCALINGS)
        _checks.positive("layer_norm_epsilon", layer_norm_epsilon)
        _checks.rate("dropout", dropout)
        _checks.rate("stochastic_depth_rate", stochastic_depth_rate)
        _checks.one_of("use_cudnn", use_cudnn, USE_CUDNN)
        _checks.optional_int("seed", seed)
        for name, value in (
            ("bidirectional_first", bidirectional_first),
            ("return_sequences", return_sequences),
            ("return_state", return_state),
        ):
            _checks.boolean(name, value)

        self.cell_type = cell_type
        self.num_layers = num_layers
        self.units = units
        self.residual_start = residual_start
        self.bidirectional_first = bidirectional_first
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.skip = skip
        self.norm_position = norm_position
        self.norm = norm
        self.layer_norm_epsilon = layer_norm_epsilon
        self.scaling = scaling
        self.dropout = dropout
        self.stochastic_depth_rate = stochastic_depth_rate
        self.seed = seed
        self.use_cudnn = use_cudnn

        self.widths = widths
        self.supports_masking = True
        self.supports_jit = use_cudnn is not True
        self._inner_use_cudnn = inner_use_cudnn(use_cudnn)
        self.inter_dropout = Dropout(
            dropout, seed=seed, name="inter_dropout", dtype=self.dtype_policy
        )
        self.recurrent_layers = [self._make_layer(i) for i in range(num_layers)]
        set_use_cudnn(self.keras_rnns(), self._inner_use_cudnn)

    def _make_layer(self, index):
        rnn = make_rnn(
            self.cell_type,
            self.widths[index],
            self._inner_use_cudnn,
            name=f"{self.cell_type}_{index}",
            dtype=self.dtype_policy,
        )
        if index == 0 and self.bidirectional_first:
            rnn = keras.layers.Bidirectional(
                rnn, name="bidirectional_0", dtype=self.dtype_policy
            )
        return wrap_residual(self, rnn, index)

    def keras_rnns(self):
        """Every Keras LSTM/GRU layer of the stack, bottom first."""
        return [rnn for x in self.recurrent_layers for rnn in keras_rnns(x)]

    @property
    def state_counts(self):
        """Number of state tensors of each layer, bottom first."""
        per_cell = STATES_PER_CELL[self.cell_type]
        counts = [per_cell] * self.num_layers
        if self.bidirectional_first:
            counts[0] *= 2
        return counts

    @property
    def state_widths(self):
        """Width of each returned state tensor, in order."""
        widths = []
        for count, width in zip(self.state_counts, self.widths, strict=True):
            widths.extend([width] * count)
        return widths

    def initial_states(self, batch_size, dtype=None):
        """Zero initial states, a flat list in the order of the states."""
        dtype = dtype or self.compute_dtype
        return [ops.zeros((batch_size, w), dtype) for w in self.state_widths]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for index, layer in enumerate(self.recurrent_layers):
            layer.build(shape)
            width = self.widths[index]
            if index == 0 and self.bidirectional_first:
                width *= 2
            shape = shape[:-1] + (width,)
        self.built = True

    def split_states(self, states, batch_size=None):
        """Split a flat list of states into one list per layer."""
        if states is None:
            return [None] * self.num_layers
        states = check_states(
            "initial_state", states, self.state_widths, batch_size
        )
        per_layer, start = [], 0
        for count in self.state_counts:
            per_layer.append(states[start : start + count])
            start += count
        return per_layer

    def call(self, inputs, mask=None, initial_state=None, training=None):
        initial = self.split_states(initial_state, inputs.shape[0])
        kwargs = {}
        if mask is not None:
            _checks.static_dims_match("mask", mask.shape, inputs.shape[:2])
            mask = ops.cast(mask, "bool")
            kwargs["mask"], has_steps = run_mask(mask)

        # Under XLA the cuDNN kernels cannot run: take the plain loop.
        rnns = self.keras_rnns()
        plain = self.use_cudnn == "auto" and in_xla_context()
        if plain:
            set_use_cudnn(rnns, False)
        try:
            outputs, states = self._run_layers(
                inputs, initial, mask, kwargs, training
            )
        finally:
            # Keras marks a layer not XLA-compatible after a cuDNN run.
            set_use_cudnn(rnns, self._inner_use_cudnn)

        if not self.return_sequences:
            outputs = last_step(outputs, mask)
        if self.return_state:
            return [outputs, *states]
        return outputs

    def _run_layers(self, x, initial, mask, kwargs, training):
        final_states = []
        for index, layer in enumerate(self.recurrent_layers):
            if index > 0 and index < self.residual_start:
                x = self.inter_dropout(x, training=training)

            call_kwargs = dict(kwargs)
            if initial[index] is not None:
                call_kwargs["initial_state"] = list(initial[index])
            x, *states = layer(x, training=training, **call_kwargs)

            if mask is not None:
                has_steps = ops.any(mask, axis=1)
                x, states = mask_outputs(
                    x, states, initial[index], mask, has_steps
                )
            final_states.extend(states)
        return x, final_states

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_widths)
        return output_mask

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        if self.return_sequences:
            output_shape = (batch, input_shape[1], self.widths[-1])
        else:
            output_shape = (batch, self.widths[-1])
        if not self.return_state:
            return output_shape
        return [output_shape] + [(batch, w) for w in self.state_widths]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell_type": self.cell_type,
                "num_layers": self.num_layers,
                "units": self.units,
                "residual_start": self.residual_start,
                "bidirectional_first": self.bidirectional_first,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "skip": self.skip,
                "norm_position": self.norm_position,
                "norm": self.norm,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "scaling": self.scaling,
                "dropout": self.dropout,
                "stochastic_depth_rate": self.stochastic_depth_rate,
                "seed": self.seed,
                "use_cudnn": self.use_cudnn,
            }
        )
        return config


def check_states(name, states, widths, batch_size=None):
    """Return `states` as a list, or raise unless they match `widths`.

    Each state must have the shape `(batch_size, width)`; unknown sizes
    (`None`) match anything.
    """
    states = list(states)
    if len(states) != len(widths):
        raise ValueError(
            f"Argument `{name}` must hold {len(widths)} tensors (layer by "
            f"layer, see `state_widths`). Received: {len(states)} tensors"
        )
    for index, (state, width) in enumerate(zip(states, widths, strict=True)):
        _checks.static_dims_match(
            f"{name}[{index}]", state.shape, (batch_size, width)
        )
    return states


def check_units(units, num_layers):
    """Return the list of layer widths, or raise a ValueError."""
    if isinstance(units, int) and not isinstance(units, bool):
        _checks.positive_int("units", units)
        return [units] * num_layers
    if not isinstance(units, list | tuple) or len(units) != num_layers:
        raise ValueError(
            "Argument `units` must be a positive int or a list of "
            f"num_layers={num_layers} positive ints. Received: units={units!r}"
        )
    for width in units:
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ValueError(
                "Argument `units` must hold positive ints. "
                f"Received: units={units!r}"
            )
    return list(units)


def check_residual_start(residual_start, num_layers):
    """Raise unless `residual_start` is an int in [0, num_layers]."""
    if (
        isinstance(residual_start, bool)
        or not isinstance(residual_start, int)
        or not 0 <= residual_start <= num_layers
    ):
        raise ValueError(
            "Argument `residual_start` must be an int in [0, num_layers] "
            f"with num_layers={num_layers} (num_layers turns the skips "
            f"off). Received: residual_start={residual_start!r}"
        )
