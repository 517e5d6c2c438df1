import doctest

import keras
import numpy as np
import pytest
from keras import ops

from skipseq.layers import RNNAttention
from tests.layer_test_utils import assert_config_complete

SCORES = ["dot", "general", "additive"]
# Lengths 4 and 2 of 4 source positions.
VALUE_MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def softmax(scores):
    scores = scores - scores.max(-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(-1, keepdims=True)


def masked_reference(scores, values, mask):
    """Context and weights from raw scores, masked positions excluded."""
    scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = softmax(scores)
    return weights @ values, weights


@pytest.mark.parametrize("score", SCORES)
def test_masked_positions_get_zero_weight(score):
    attention = RNNAttention(score)
    query, value = random_inputs((2, 3, 6)), random_inputs((2, 4, 6), 1)
    context, weights = attention(query, value, value_mask=VALUE_MASK)
    weights = ops.convert_to_numpy(weights)
    np.testing.assert_array_equal(weights[1, :, 2:], 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    # The context ignores whatever the padded positions hold.
    changed = value.copy()
    changed[1, 2:] = 100.0
    context_changed, _ = attention(query, changed, value_mask=VALUE_MASK)
    np.testing.assert_allclose(context, context_changed, atol=1e-6)


def test_luong_dot_equals_numpy_formula():
    query, value = random_inputs((2, 3, 5)), random_inputs((2, 4, 5), 1)
    context, weights = RNNAttention("dot")(query, value, value_mask=VALUE_MASK)
    scores = query @ value.transpose(0, 2, 1)
    expected_context, expected_weights = masked_reference(
        scores, value, VALUE_MASK
    )
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    np.testing.assert_allclose(context, expected_context, atol=1e-5)


def test_luong_general_equals_numpy_formula():
    query, value = random_inputs((2, 3, 5)), random_inputs((2, 4, 7), 1)
    attention = RNNAttention("general")
    context, _ = attention(query, value, value_mask=VALUE_MASK)
    kernel = ops.convert_to_numpy(attention.key_projection.kernel)
    scores = query @ (value @ kernel).transpose(0, 2, 1)
    expected, _ = masked_reference(scores, value, VALUE_MASK)
    np.testing.assert_allclose(context, expected, atol=1e-5)


def test_bahdanau_additive_equals_numpy_formula():
    query, value = random_inputs((2, 3, 5)), random_inputs((2, 4, 7), 1)
    attention = RNNAttention("additive", units=6)
    context, _ = attention(query, value, value_mask=VALUE_MASK)
    w_q = ops.convert_to_numpy(attention.query_projection.kernel)
    b_q = ops.convert_to_numpy(attention.query_projection.bias)
    w_k = ops.convert_to_numpy(attention.key_projection.kernel)
    w = ops.convert_to_numpy(attention.score_vector.kernel)[:, 0]
    hidden = (query @ w_q + b_q)[:, :, None] + (value @ w_k)[:, None]
    scores = np.tanh(hidden) @ w
    expected, _ = masked_reference(scores, value, VALUE_MASK)
    np.testing.assert_allclose(context, expected, atol=1e-5)


def test_single_step_query_equals_sequence_query():
    attention = RNNAttention("general")
    query, value = random_inputs((2, 3, 5)), random_inputs((2, 4, 5), 1)
    context, weights = attention(query, value, value_mask=VALUE_MASK)
    step_context, step_weights = attention(
        query[:, 1], value, value_mask=VALUE_MASK
    )
    np.testing.assert_allclose(step_context, context[:, 1], atol=1e-6)
    np.testing.assert_allclose(step_weights, weights[:, 1], atol=1e-6)


def test_fully_padded_source_gives_zero_weights():
    query, value = random_inputs((1, 2, 4)), random_inputs((1, 3, 4), 1)
    context, weights = RNNAttention("dot")(
        query, value, value_mask=np.zeros((1, 3), bool)
    )
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(context, 0.0)


def test_config_complete():
    attention = RNNAttention("additive", units=5)
    assert_config_complete(attention)
    clone = RNNAttention.from_config(attention.get_config())
    assert clone.get_config() == attention.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="score='luong'"):
        RNNAttention("luong")
    with pytest.raises(ValueError, match="units=0"):
        RNNAttention("additive", units=0)
    with pytest.raises(ValueError, match="query width 3, key width 4"):
        RNNAttention("dot")(random_inputs((1, 2, 3)), random_inputs((1, 2, 4)))


def test_docstring_example():
    runner = doctest.DocTestRunner()
    globs = {"RNNAttention": RNNAttention}
    for test in doctest.DocTestFinder().find(RNNAttention, globs=globs):
        runner.run(test)
    assert runner.failures == 0
    assert runner.tries > 0


def test_bad_shapes_are_named():
    source = np.ones((2, 7, 8), "float32")
    with pytest.raises(ValueError, match=r"query.shape=\(4,\)"):
        RNNAttention("general")(np.ones((4,), "float32"), source)
    with pytest.raises(ValueError, match=r"value.shape=\(2, 7, 8\)"):
        RNNAttention("general")(np.ones((3, 3, 4), "float32"), source)
    with pytest.raises(ValueError, match=r"value_mask.shape=\(2, 5\)"):
        RNNAttention("general")(
            np.ones((2, 3, 4), "float32"),
            source,
            value_mask=np.ones((2, 5), bool),
        )


@pytest.mark.parametrize("score", ["general", "additive"])
def test_a_policy_given_to_the_layer_reaches_its_projections(score):
    attention = RNNAttention(score, units=6, dtype="mixed_float16")
    query = np.random.default_rng(0).normal(size=(2, 3, 4))
    value = np.random.default_rng(1).normal(size=(2, 4, 4))
    context, weights = attention(
        query.astype("float32"), value.astype("float32"), value_mask=VALUE_MASK
    )
    assert keras.backend.standardize_dtype(context.dtype) == "float16"
    projections = attention._flatten_layers(include_self=False)
    assert {p.dtype_policy.name for p in projections} == {"mixed_float16"}
    # Weights stay a distribution under float16.
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.sum(ops.cast(weights, "float32"), -1)),
        1.0,
        atol=1e-2,
    )
