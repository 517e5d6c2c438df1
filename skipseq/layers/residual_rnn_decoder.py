"""A GNMT-style attention decoder on a residual LSTM/GRU stack."""

import keras
from keras import ops

from skipseq.layers import _checks
from skipseq.layers._backend import in_xla_context
from skipseq.layers.dropout import Dropout
from skipseq.layers.residual import NORM_POSITIONS, NORMS, SKIPS, Residual
from skipseq.layers.residual_rnn import (
    CELL_TYPES,
    RESIDUAL_SCALINGS,
    STATES_PER_CELL,
    USE_CUDNN,
    check_residual_start,
    check_states,
    check_units,
    inner_use_cudnn,
    keras_rnns,
    make_rnn,
    mask_outputs,
    run_mask,
    set_use_cudnn,
    wrap_residual,
)
from skipseq.layers.rnn_attention import SCORES, RNNAttention


class _ContextRNN(keras.layers.Layer):
    """Runs a Keras RNN on `concat([x, context])`.

    Used as the branch of the upper decoder layers so that a `Residual`
    around it keeps `x` (the layer below) on its skip, as in GNMT, while
    the recurrent layer also reads the attention context.
    """

    def __init__(self, rnn, context_width, **kwargs):
        super().__init__(**kwargs)
        self.rnn = rnn
        self.context_width = context_width
        self.supports_masking = True

    def _rnn_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + self.context_width,)

    def build(self, input_shape):
        self.rnn.build(self._rnn_shape(input_shape))
        self.built = True

    def call(
        self, inputs, context, mask=None, initial_state=None, training=None
    ):
        inputs = ops.concatenate([inputs, ops.cast(context, inputs.dtype)], -1)
        return self.rnn(
            inputs, mask=mask, initial_state=initial_state, training=training
        )

    def compute_output_shape(self, input_shape):
        return self.rnn.compute_output_shape(self._rnn_shape(input_shape))


@keras.saving.register_keras_serializable(package="skipseq")
class ResidualRNNDecoder(keras.layers.Layer):
    """A GNMT-style attention decoder on a residual LSTM/GRU stack.

    The bottom layer reads the target embeddings; attention over the
    encoder outputs is computed from its output, and the context is
    concatenated into the inputs of every layer above (Wu et al. 2016).
    From `residual_start` on, layers carry a skip of the layer below:

    ```
    h_0 = RNN_0(y)
    c   = Attention(h_0, encoder_outputs)
    h_i = RNN_i([h_{i-1}, c])                     i < residual_start
    h_i = P(h_{i-1}) + RNN_i([N(h_{i-1}), c])     i >= residual_start
    output = h_top, or [h_top, c] with output_context=True
    ```

    Training calls the decoder on the whole (teacher-forced) target
    sequence; search calls `step` once per token with a flat tuple of
    states (batch on axis 0, so beam search can reorder them with
    `ops.take(state, indices, axis=0)`). Both run the same layers, so
    stepping reproduces the full call. Under XLA (`jit_compile=True`, or a
    `tf.while_loop` compiled with XLA) the plain recurrent loop is used.

    Masking: padded target steps leave the states unchanged and give zero
    outputs; padded source positions get zero attention weight. The output
    mask is the target mask.

    Args:
        cell_type: `"lstm"` (default) or `"gru"`.
        num_layers: int. Defaults to `4`.
        units: int, or a list of `num_layers` ints. Defaults to `256`.
        residual_start: int in `[0, num_layers]`. Defaults to `2`.
        attention_score: `"dot"`, `"general"` or `"additive"` (default),
            see `RNNAttention`.
        attention_units: optional int, hidden width of the additive score.
        output_context: bool, concatenate the context to the output.
            Defaults to `False`.
        return_state: bool, also return the final states. Defaults to
            `False`.
        skip, norm_position, norm, layer_norm_epsilon, scaling, dropout,
            stochastic_depth_rate, seed, use_cudnn: as in `ResidualRNN`
            (`norm_position` defaults to `"none"`).
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        target_embeddings: `(batch, target_time, features)`.
        encoder_outputs: `(batch, source_time, encoder_width)`.
        encoder_mask: optional boolean `(batch, source_time)`.
        initial_state: optional flat list of states, see `state_widths`.
        mask: optional boolean target mask `(batch, target_time)`.
        training: Python bool.

    Returns:
        `(batch, target_time, width)` with `width = units[-1]`, plus the
        encoder width with `output_context=True`; with `return_state=True`
        a list `[output, *states]`, states layer by layer from the bottom
        (`h, c` for an LSTM, `h` for a GRU).

    Example:

    >>> import numpy as np
    >>> decoder = ResidualRNNDecoder("lstm", num_layers=3, units=8)
    >>> source = np.ones((2, 7, 8), "float32")
    >>> tuple(decoder(np.ones((2, 5, 4), "float32"), source).shape)
    (2, 5, 8)
    >>> states = decoder.initial_states(2)
    >>> output, states = decoder.step(np.ones((2, 4), "float32"), states,
    ...                               source)
    >>> tuple(output.shape), len(states)
    ((2, 8), 6)
    """

    def __init__(
        self,
        cell_type="lstm",
        num_layers=4,
        units=256,
        residual_start=2,
        attention_score="additive",
        attention_units=None,
        output_context=False,
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
        _checks.one_of("attention_score", attention_score, SCORES)
        if attention_units is not None:
            _checks.positive_int("attention_units", attention_units)
        _checks.one_of("skip", skip, SKIPS)
        _checks.one_of("norm_position", norm_position, NORM_POSITIONS)
        _checks.one_of("norm", norm, NORMS)
        _checks.one_of("scaling", scaling, RESIDUAL_SCALINGS)
        _checks.positive("layer_norm_epsilon", layer_norm_epsilon)
        _checks.rate("dropout", dropout)
        _checks.rate("stochastic_depth_rate", stochastic_depth_rate)
        _checks.one_of("use_cudnn", use_cudnn, USE_CUDNN)
        _checks.optional_int("seed", seed)
        _checks.boolean("output_context", output_context)
        _checks.boolean("return_state", return_state)

        self.cell_type = cell_type
        self.num_layers = num_layers
        self.units = units
        self.residual_start = residual_start
        self.attention_score = attention_score
        self.attention_units = attention_units
        self.output_context = output_context
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
        self.attention = RNNAttention(
            attention_score,
            units=attention_units,
            name="attention",
            dtype=self.dtype_policy,
        )
        self.inter_dropout = Dropout(
            dropout, seed=seed, name="inter_dropout", dtype=self.dtype_policy
        )
        # The context width is known in `build`; set there.
        self.recurrent_layers = [self._make_layer(i) for i in range(num_layers)]
        set_use_cudnn(self.keras_rnns(), self._inner_use_cudnn)

    def _make_layer(self, index):
        layer = make_rnn(
            self.cell_type,
            self.widths[index],
            self._inner_use_cudnn,
            name=f"{self.cell_type}_{index}",
            dtype=self.dtype_policy,
        )
        if index > 0:
            layer = _ContextRNN(
                layer, None, name=f"context_{index}", dtype=self.dtype_policy
            )
        return wrap_residual(self, layer, index)

    def keras_rnns(self):
        """Every Keras LSTM/GRU layer of the decoder, bottom first."""
        return [rnn for x in self.recurrent_layers for rnn in keras_rnns(x)]

    @property
    def state_widths(self):
        """Width of each state tensor, layer by layer from the bottom."""
        per_cell = STATES_PER_CELL[self.cell_type]
        return [w for w in self.widths for _ in range(per_cell)]

    def initial_states(self, batch_size, dtype=None):
        """Zero initial states: a tuple in the order of `state_widths`."""
        dtype = dtype or self.compute_dtype
        return tuple(
            ops.zeros((batch_size, w), dtype) for w in self.state_widths
        )

    def build(self, target_embeddings_shape, encoder_outputs_shape):
        shape = tuple(target_embeddings_shape)
        context_width = encoder_outputs_shape[-1]
        for index, layer in enumerate(self.recurrent_layers):
            branch = layer.sublayer if isinstance(layer, Residual) else layer
            if isinstance(branch, _ContextRNN):
                branch.context_width = context_width
            layer.build(shape)
            shape = shape[:-1] + (self.widths[index],)
            if index == 0:
                self.attention.build(shape, tuple(encoder_outputs_shape))
        self.built = True

    def split_states(self, states, name="initial_state", batch_size=None):
        """Split a flat sequence of states into one list per layer."""
        if states is None:
            return [None] * self.num_layers
        states = check_states(name, states, self.state_widths, batch_size)
        per_cell = STATES_PER_CELL[self.cell_type]
        return [
            states[i : i + per_cell] for i in range(0, len(states), per_cell)
        ]

    def call(
        self,
        target_embeddings,
        encoder_outputs,
        encoder_mask=None,
        initial_state=None,
        mask=None,
        training=None,
    ):
        outputs, states = self._decode(
            target_embeddings,
            encoder_outputs,
            encoder_mask,
            self.split_states(
                initial_state, batch_size=target_embeddings.shape[0]
            ),
            mask,
            training,
        )
        if self.return_state:
            return [outputs, *states]
        return outputs

    def step(self, token_embedding, states, encoder_outputs, encoder_mask=None):
        """Decode one step: `(batch, features)` -> `(output, new_states)`.

        `states` and `new_states` are flat tuples in the order of
        `state_widths`, batch on axis 0. Built from `keras.ops` and the
        same layers as `call`, so it runs inside an XLA-compiled loop.
        """
        if not self.built:
            self.build(
                (None, 1) + tuple(token_embedding.shape[1:]),
                tuple(encoder_outputs.shape),
            )
        outputs, new_states = self._decode(
            ops.expand_dims(token_embedding, 1),
            encoder_outputs,
            encoder_mask,
            self.split_states(
                states, "states", batch_size=token_embedding.shape[0]
            ),
            None,
            False,
        )
        return outputs[:, 0], tuple(new_states)

    def _decode(
        self, x, encoder_outputs, encoder_mask, initial, mask, training
    ):
        kwargs = {}
        if mask is not None:
            mask = ops.cast(mask, "bool")
            kwargs["mask"], has_steps = run_mask(mask)

        rnns = self.keras_rnns()
        # Under XLA the cuDNN kernels cannot run: take the plain loop.
        if self.use_cudnn == "auto" and in_xla_context():
            set_use_cudnn(rnns, False)
        try:
            final_states = []
            context = None
            for index, layer in enumerate(self.recurrent_layers):
                if 0 < index < self.residual_start:
                    x = self.inter_dropout(x, training=training)

                call_kwargs = dict(kwargs)
                if index > 0:
                    call_kwargs["context"] = context
                if initial[index] is not None:
                    call_kwargs["initial_state"] = list(initial[index])
                x, *states = layer(x, training=training, **call_kwargs)
                if mask is not None:
                    x, states = mask_outputs(
                        x, states, initial[index], mask, has_steps
                    )
                final_states.extend(states)

                if index == 0:
                    # GNMT: attend once, from the bottom layer's output.
                    context, _ = self.attention(
                        x, encoder_outputs, value_mask=encoder_mask
                    )
        finally:
            # Keras marks a layer not XLA-compatible after a cuDNN run.
            set_use_cudnn(rnns, self._inner_use_cudnn)

        if self.output_context:
            x = ops.concatenate([x, ops.cast(context, x.dtype)], -1)
            if mask is not None:
                x = ops.where(ops.expand_dims(mask, -1), x, 0.0)
        return x, final_states

    def compute_mask(self, target_embeddings, mask=None):
        if self.return_state:
            return [mask] + [None] * len(self.state_widths)
        return mask

    def compute_output_shape(
        self, target_embeddings_shape, encoder_outputs_shape
    ):
        width = self.widths[-1]
        if self.output_context:
            width += encoder_outputs_shape[-1]
        output_shape = tuple(target_embeddings_shape[:-1]) + (width,)
        if not self.return_state:
            return output_shape
        batch = target_embeddings_shape[0]
        return [output_shape] + [(batch, w) for w in self.state_widths]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell_type": self.cell_type,
                "num_layers": self.num_layers,
                "units": self.units,
                "residual_start": self.residual_start,
                "attention_score": self.attention_score,
                "attention_units": self.attention_units,
                "output_context": self.output_context,
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
