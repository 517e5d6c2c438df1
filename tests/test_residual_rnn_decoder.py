import doctest

import keras
import numpy as np
import pytest
from keras import ops

from skipseq.layers import ResidualRNN, ResidualRNNDecoder
from tests.layer_test_utils import (
    assert_config_complete,
    assert_keras_round_trip,
)

# Source lengths 6 and 4 of 6.
ENCODER_MASK = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]], bool)


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def step_through(decoder, targets, states, encoder_outputs, encoder_mask):
    outputs = []
    for t in range(targets.shape[1]):
        output, states = decoder.step(
            targets[:, t], states, encoder_outputs, encoder_mask
        )
        outputs.append(output)
    return ops.stack(outputs, axis=1), states


@pytest.mark.parametrize(
    "cell_type, score, output_context",
    [
        pytest.param("lstm", "additive", False, id="lstm-additive"),
        pytest.param("lstm", "dot", True, id="lstm-dot-context"),
        pytest.param("gru", "general", True, id="gru-general-context"),
    ],
)
def test_stepping_equals_teacher_forced_call(cell_type, score, output_context):
    decoder = ResidualRNNDecoder(
        cell_type,
        num_layers=3,
        units=8,
        residual_start=1,
        attention_score=score,
        output_context=output_context,
        norm_position="pre",
        return_state=True,
    )
    targets = random_inputs((2, 5, 4))
    encoder_outputs = random_inputs((2, 6, 8), 1)
    initial = [
        random_inputs((2, 8), seed=i + 2)
        for i in range(len(decoder.state_widths))
    ]
    full, *final_states = decoder(
        targets,
        encoder_outputs,
        encoder_mask=ENCODER_MASK,
        initial_state=initial,
    )
    stepped, states = step_through(
        decoder, targets, tuple(initial), encoder_outputs, ENCODER_MASK
    )
    np.testing.assert_allclose(stepped, full, atol=1e-5)
    assert isinstance(states, tuple)
    for state, expected in zip(states, final_states, strict=True):
        np.testing.assert_allclose(state, expected, atol=1e-5)


def test_gnmt_wiring_equals_hand_computation():
    decoder = ResidualRNNDecoder(
        "lstm", num_layers=3, units=6, residual_start=2, output_context=True
    )
    targets = random_inputs((2, 5, 4))
    encoder_outputs = random_inputs((2, 6, 7), 1)
    outputs = decoder(targets, encoder_outputs, encoder_mask=ENCODER_MASK)
    rnns = decoder.keras_rnns()

    h0 = rnns[0](targets)[0]
    context, _ = decoder.attention(h0, encoder_outputs, value_mask=ENCODER_MASK)
    h1 = rnns[1](ops.concatenate([h0, context], -1))[0]
    branch = rnns[2](ops.concatenate([h1, context], -1))[0]
    # The skip carries the layer below only, not the context.
    expected = ops.concatenate([h1 + branch, context], -1)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_stepping_in_an_xla_loop_equals_the_full_call():
    import tensorflow as tf

    decoder = ResidualRNNDecoder("gru", num_layers=3, units=8, residual_start=1)
    targets = random_inputs((2, 4, 4))
    encoder_outputs = random_inputs((2, 6, 8), 1)
    full = decoder(targets, encoder_outputs, encoder_mask=ENCODER_MASK)

    @tf.function(jit_compile=True)
    def greedy_like(targets, encoder_outputs, encoder_mask):
        def body(t, carry):
            outputs, states = carry
            token = ops.take(targets, t, axis=1)
            output, states = decoder.step(
                token, states, encoder_outputs, encoder_mask
            )
            # Beam search reorders states along the batch axis.
            states = tuple(ops.take(s, [0, 1], axis=0) for s in states)
            outputs = ops.slice_update(
                outputs, (0, t, 0), ops.expand_dims(output, 1)
            )
            return outputs, states

        start = (ops.zeros_like(full), decoder.initial_states(2))
        return ops.fori_loop(0, targets.shape[1], body, start)[0]

    stepped = greedy_like(targets, encoder_outputs, ENCODER_MASK)
    np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_target_padding_and_encoder_states():
    encoder = ResidualRNN("lstm", num_layers=2, units=8, return_state=True)
    decoder = ResidualRNNDecoder("lstm", num_layers=2, units=8)
    source = random_inputs((2, 6, 3))
    encoder_outputs, *encoder_states = encoder(source, mask=ENCODER_MASK)
    targets = random_inputs((2, 5, 4), 1)
    target_mask = np.array([[1, 1, 1, 0, 0], [1] * 5], bool)

    outputs = decoder(
        targets,
        encoder_outputs,
        encoder_mask=ENCODER_MASK,
        initial_state=encoder_states,
        mask=target_mask,
    )
    alone = decoder(
        targets[:1, :3],
        encoder_outputs[:1],
        encoder_mask=ENCODER_MASK[:1],
        initial_state=[s[:1] for s in encoder_states],
    )
    np.testing.assert_allclose(outputs[0, :3], alone[0], atol=1e-5)
    np.testing.assert_array_equal(outputs[0, 3:], 0.0)
    assert decoder.compute_mask(targets, target_mask) is target_mask
    # The encoder's final states are used.
    zero_start = decoder(targets, encoder_outputs, encoder_mask=ENCODER_MASK)
    assert not np.allclose(outputs[1], zero_start[1], atol=1e-3)


def test_keras_round_trip_and_config(tmp_path):
    decoder = ResidualRNNDecoder(
        "gru",
        num_layers=3,
        units=[6, 8, 8],
        residual_start=1,
        attention_score="general",
        scaling="highway",
    )
    targets = keras.Input((None, 4))
    encoder_outputs = keras.Input((None, 5))
    model = keras.Model(
        [targets, encoder_outputs], decoder(targets, encoder_outputs)
    )
    inputs = [random_inputs((2, 3, 4)), random_inputs((2, 6, 5), 1)]
    restored = assert_keras_round_trip(model, inputs, tmp_path, atol=1e-6)
    assert isinstance(restored.layers[-1], ResidualRNNDecoder)
    assert_config_complete(decoder)
    clone = ResidualRNNDecoder.from_config(decoder.get_config())
    assert clone.get_config() == decoder.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"num_layers": 0}, "num_layers=0", id="zero-layers"),
        pytest.param(
            {"num_layers": 2, "residual_start": 5},
            "residual_start=5",
            id="residual-start-beyond-depth",
        ),
        pytest.param(
            {"num_layers": 2, "units": [8]}, r"units=\[8\]", id="units"
        ),
        pytest.param({"cell_type": "LSTM"}, "cell_type='LSTM'", id="cell"),
        pytest.param(
            {"attention_score": "luong"},
            "attention_score='luong'",
            id="attention-score",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualRNNDecoder(**kwargs)


def test_wrong_number_of_states():
    decoder = ResidualRNNDecoder("gru", num_layers=2, units=4)
    with pytest.raises(ValueError, match="must hold 2 tensors"):
        decoder.step(
            random_inputs((1, 3)), (np.zeros((1, 4)),), random_inputs((1, 2, 4))
        )


def test_docstring_example():
    runner = doctest.DocTestRunner()
    globs = {"ResidualRNNDecoder": ResidualRNNDecoder}
    for test in doctest.DocTestFinder().find(ResidualRNNDecoder, globs=globs):
        runner.run(test)
    assert runner.failures == 0
    assert runner.tries > 0


def test_bad_states_and_sources_are_named():
    with pytest.raises(ValueError, match=r"output_context='yes'"):
        ResidualRNNDecoder(num_layers=2, units=8, output_context="yes")
    decoder = ResidualRNNDecoder("lstm", num_layers=3, units=8)
    source = np.ones((2, 7, 8), "float32")
    x = np.ones((2, 5, 4), "float32")
    decoder(x, source)
    # `step` names its own argument, `states`.
    with pytest.raises(ValueError, match=r"`states` must hold 6 tensors"):
        decoder.step(
            np.ones((2, 4), "float32"), decoder.initial_states(2)[:3], source
        )
    with pytest.raises(ValueError, match=r"initial_state\[0\].shape=\(2, 5\)"):
        decoder(x, source, initial_state=[np.zeros((2, 5), "float32")] * 6)
    with pytest.raises(ValueError, match=r"value.shape=\(3, 7, 8\)"):
        decoder(x, np.ones((3, 7, 8), "float32"))
