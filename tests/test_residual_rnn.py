import doctest

import keras
import numpy as np
import pytest
from keras import ops

from skipseq.layers import ResidualRNN, residual_rnn
from tests.layer_test_utils import (
    assert_config_complete,
    assert_keras_round_trip,
)

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
CASES = [
    pytest.param(cell, bidi, id=f"{cell}-{'bidi' if bidi else 'uni'}")
    for cell in ("lstm", "gru")
    for bidi in (False, True)
]


class MaskAsOutput(keras.layers.Layer):
    """Returns the Keras mask it receives, to check mask propagation."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return ops.cast(mask, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def run_plain(stack, x, initial_state=None):
    """Run plain Keras copies of the stack's layers; (outputs, states)."""
    initial = stack.split_states(initial_state)
    states = []
    for index, layer in enumerate(stack.recurrent_layers):
        rnn_class = CELLS[stack.cell_type]
        plain = rnn_class(
            stack.widths[index], return_sequences=True, return_state=True
        )
        if index == 0 and stack.bidirectional_first:
            plain = keras.layers.Bidirectional(plain)
        plain.build(x.shape)
        plain.set_weights(layer.get_weights())
        x, *layer_states = plain(x, initial_state=initial[index])
        states.extend(layer_states)
    return x, states


@pytest.mark.parametrize("cell_type, bidirectional", CASES)
def test_without_residuals_equals_plain_stack(cell_type, bidirectional):
    stack = ResidualRNN(
        cell_type,
        num_layers=3,
        units=[8, 6, 6],
        residual_start=3,
        bidirectional_first=bidirectional,
        return_state=True,
    )
    x = random_inputs((2, 5, 4))
    outputs, *states = stack(x)
    expected, expected_states = run_plain(stack, x)

    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # States come layer by layer, bottom first, forward before backward.
    assert len(states) == len(stack.state_widths)
    for state, expected_state in zip(states, expected_states, strict=True):
        np.testing.assert_allclose(state, expected_state, atol=1e-5)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_residual_layers_equal_hand_computed_sum(cell_type):
    stack = ResidualRNN(
        cell_type, num_layers=3, units=[6, 8, 8], residual_start=1
    )
    x = random_inputs((2, 5, 4))
    outputs = stack(x)
    rnns = stack.keras_rnns()
    res1, res2 = stack.recurrent_layers[1:]

    h0 = rnns[0](x)[0]
    # The width changes from 6 to 8: a projected skip, never a dropped one.
    assert res1.skip_projection is not None
    assert res2.skip_projection is None
    projection = ops.convert_to_numpy(res1.skip_projection.kernel)
    h1 = np.asarray(h0) @ projection + np.asarray(rnns[1](h0)[0])
    h2 = h1 + np.asarray(rnns[2](h1)[0])
    np.testing.assert_allclose(outputs, h2, atol=1e-5)


@pytest.mark.parametrize("cell_type, bidirectional", CASES)
def test_masked_steps_match_unpadded_runs(cell_type, bidirectional):
    # Lengths 3, 5 and a row of padding only.
    tokens = np.array(
        [[3, 1, 4, 0, 0], [2, 7, 1, 8, 2], [0, 0, 0, 0, 0]], "int32"
    )
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    stack = ResidualRNN(
        cell_type,
        num_layers=3,
        units=8,
        residual_start=1,
        bidirectional_first=bidirectional,
        return_state=True,
    )
    outputs, *states = stack(embedded)
    mask = MaskAsOutput()(outputs)
    model = keras.Model(inputs, [outputs, mask, *states])

    padded, received_mask, *padded_states = model(tokens)
    np.testing.assert_array_equal(received_mask, tokens != 0)
    for row, length in ((0, 3), (1, 5)):
        alone, _, *alone_states = model(tokens[row : row + 1, :length])
        np.testing.assert_allclose(padded[row, :length], alone[0], atol=1e-5)
        np.testing.assert_array_equal(padded[row, length:], 0.0)
        for state, expected in zip(padded_states, alone_states, strict=True):
            np.testing.assert_allclose(state[row], expected[0], atol=1e-5)

    # The row of padding only: zero outputs, the (zero) initial states.
    np.testing.assert_array_equal(padded[2], 0.0)
    for state in padded_states:
        np.testing.assert_array_equal(state[2], 0.0)


@pytest.mark.parametrize("cell_type, bidirectional", CASES)
def test_initial_state_is_used(cell_type, bidirectional):
    stack = ResidualRNN(
        cell_type,
        num_layers=2,
        units=6,
        residual_start=2,
        bidirectional_first=bidirectional,
    )
    x = random_inputs((2, 4, 3))
    initial = [
        random_inputs((2, w), seed=i + 1)
        for i, w in enumerate(stack.state_widths)
    ]
    with_state = stack(x, initial_state=initial)
    expected, _ = run_plain(stack, x, initial)
    np.testing.assert_allclose(with_state, expected, atol=1e-5)
    assert not np.allclose(with_state, stack(x), atol=1e-3)


def test_fully_padded_row_keeps_given_initial_state():
    stack = ResidualRNN("lstm", num_layers=2, units=6, return_state=True)
    x = random_inputs((2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    initial = [random_inputs((2, 6), seed=i) for i in range(4)]
    outputs, *states = stack(x, mask=mask, initial_state=initial)
    assert np.all(np.isfinite(outputs))
    np.testing.assert_array_equal(outputs[1], 0.0)
    for state, start in zip(states, initial, strict=True):
        np.testing.assert_array_equal(state[1], start[1])


def test_last_step_output_when_not_returning_sequences():
    x = random_inputs((2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    config = dict(num_layers=3, units=6, residual_start=1)
    sequences = ResidualRNN("gru", **config)
    last = ResidualRNN("gru", return_sequences=False, **config)
    sequences.build(x.shape)
    last.build(x.shape)
    last.set_weights(sequences.get_weights())
    full = np.asarray(sequences(x, mask=mask))
    np.testing.assert_allclose(
        last(x, mask=mask), full[[0, 1], [2, 4]], atol=1e-6
    )
    assert last.compute_mask(x, mask) is None


def test_mixed_precision_close_to_float32():
    x = random_inputs((2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1] * 5], bool)
    config = dict(num_layers=3, units=[8, 6, 6], residual_start=1)
    full = ResidualRNN("lstm", norm_position="pre", **config)
    full.build(x.shape)
    keras.config.set_dtype_policy("mixed_float16")
    half = ResidualRNN("lstm", norm_position="pre", **config)
    half.build(x.shape)
    half.set_weights(full.get_weights())
    outputs = half(x, mask=mask)
    assert outputs.dtype == "float16"
    np.testing.assert_allclose(
        ops.cast(outputs, "float32"), full(x, mask=mask), atol=1e-2
    )


def xla_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(inputs)
    # GRU: the same XLA rules as LSTM, and a quicker compile on CPU.
    x = ResidualRNN(
        "gru",
        num_layers=2,
        units=4,
        residual_start=1,
        bidirectional_first=True,
        return_sequences=False,
    )(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def test_xla_training_stays_on_and_matches_eager_graph():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 12, size=(8, 6)).astype("int32")
    tokens[::2, 4:] = 0
    targets = rng.normal(size=(8, 1)).astype("float32")
    runs = []
    for jit_compile in (False, True):
        model = xla_model()
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss="mse",
            jit_compile=jit_compile,
        )
        history = model.fit(tokens, targets, epochs=2, verbose=0)
        assert model.jit_compile is jit_compile
        runs.append((history.history["loss"], model.get_weights()))
    (loss, weights), (xla_loss, xla_weights) = runs
    np.testing.assert_allclose(xla_loss, loss, atol=1e-5)
    for a, b in zip(weights, xla_weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_auto_cudnn_on_a_gpu_keeps_models_xla_compatible(monkeypatch):
    # Simulate a GPU: the inner layers may take cuDNN, yet XLA stays on.
    monkeypatch.setattr(residual_rnn, "gpu_available", lambda: True)
    stack = ResidualRNN("lstm", 2, 4, bidirectional_first=True)
    assert [rnn.use_cudnn for rnn in stack.keras_rnns()] == ["auto"] * 3
    assert all(layer.supports_jit for layer in stack._flatten_layers())
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, stack(inputs))
    model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is True

    forced = ResidualRNN("lstm", 2, 4, use_cudnn=True)
    assert not forced.supports_jit


def test_auto_cudnn_takes_the_plain_loop_under_xla(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(residual_rnn, "gpu_available", lambda: True)
    settings = []
    set_use_cudnn = residual_rnn.set_use_cudnn

    def spy(rnns, use_cudnn):
        settings.append(use_cudnn)
        set_use_cudnn(rnns, use_cudnn)

    stack = ResidualRNN("gru", 2, 4, bidirectional_first=True)
    monkeypatch.setattr(residual_rnn, "set_use_cudnn", spy)
    x = random_inputs((2, 3, 2))
    eager = stack(x)
    assert settings == ["auto"]
    xla = tf.function(stack, jit_compile=True)(x)
    # Switched off while traced for XLA, then restored.
    assert settings == ["auto", False, "auto"]
    np.testing.assert_allclose(xla, eager, atol=1e-5)


def test_use_cudnn_false_reaches_bidirectional_copies():
    stack = ResidualRNN("gru", 2, 4, bidirectional_first=True, use_cudnn=False)
    assert [rnn.use_cudnn for rnn in stack.keras_rnns()] == [False] * 3
    assert all(layer.supports_jit for layer in stack._flatten_layers())


def test_keras_round_trip_and_config(tmp_path):
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    stack = ResidualRNN(
        "lstm",
        num_layers=3,
        units=[6, 8, 8],
        residual_start=1,
        bidirectional_first=True,
        norm_position="pre",
        scaling="rezero",
    )
    model = keras.Model(inputs, stack(x))
    tokens = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], "int32")
    assert_keras_round_trip(model, tokens, tmp_path, atol=1e-6)
    assert_config_complete(stack)
    clone = ResidualRNN.from_config(stack.get_config())
    assert clone.get_config() == stack.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"num_layers": 0}, "num_layers=0", id="zero-layers"),
        pytest.param(
            {"num_layers": 2, "residual_start": 3},
            "residual_start=3",
            id="residual-start-beyond-depth",
        ),
        pytest.param(
            {"num_layers": 3, "units": [8, 8]},
            "units=[8, 8]",
            id="units-wrong-length",
        ),
        pytest.param({"cell_type": "rnn"}, "cell_type='rnn'", id="cell"),
        pytest.param({"use_cudnn": "yes"}, "use_cudnn='yes'", id="cudnn"),
        pytest.param(
            {"scaling": "deepnorm"}, "scaling='deepnorm'", id="scaling"
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        ResidualRNN(**kwargs)


def test_wrong_number_of_initial_states():
    stack = ResidualRNN("lstm", num_layers=2, units=4)
    with pytest.raises(ValueError, match="must hold 4 tensors"):
        stack(random_inputs((1, 3, 2)), initial_state=[np.zeros((1, 4))])


def test_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(ResidualRNN, globs={"ResidualRNN": ResidualRNN}):
        runner.run(test)
    assert runner.failures == 0
    assert runner.tries > 0


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match=r"seed='s'"):
        ResidualRNN(num_layers=3, units=8, seed="s")
    with pytest.raises(ValueError, match=r"return_sequences='no'"):
        ResidualRNN(num_layers=2, units=8, return_sequences="no")
    stack = ResidualRNN("lstm", num_layers=2, units=8)
    x = np.ones((2, 5, 4), "float32")
    with pytest.raises(ValueError, match=r"initial_state\[0\].shape=\(2, 6\)"):
        stack(x, initial_state=[np.zeros((2, 6), "float32")] * 4)
    with pytest.raises(ValueError, match=r"initial_state\[0\].shape=\(3, 8\)"):
        stack(x, initial_state=[np.zeros((3, 8), "float32")] * 4)
    with pytest.raises(ValueError, match=r"mask.shape=\(2, 4\)"):
        stack(x, mask=np.ones((2, 4), bool))
