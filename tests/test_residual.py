import doctest

import keras
import numpy as np
import pytest

from skipseq.layers import DenseSkip, Residual, residual
from tests.layer_test_utils import (
    assert_config_complete,
    assert_keras_round_trip,
    assert_trains_one_step,
)

WIDTH = 4
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, WIDTH)).astype("float32")
KERNEL = RNG.normal(size=(WIDTH, WIDTH)).astype("float32") * 0.5
BIAS = RNG.normal(size=(WIDTH,)).astype("float32")


def dense(kernel=KERNEL, bias=BIAS):
    """A Dense layer with fixed weights, the branch F of the formulas."""
    layer = keras.layers.Dense(kernel.shape[1])
    layer.build((None, None, kernel.shape[0]))
    layer.set_weights([kernel, bias])
    return layer


def f(x, kernel=KERNEL, bias=BIAS):
    return x @ kernel + bias


def layer_norm(x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def rms_norm(x, eps=1e-5):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


FORMULAS = {
    "none": (dict(norm_position="none"), lambda x: x + f(x)),
    "pre": (dict(norm_position="pre"), lambda x: x + f(layer_norm(x))),
    "post": (dict(norm_position="post"), lambda x: layer_norm(x + f(x))),
    "sandwich": (
        dict(norm_position="sandwich"),
        lambda x: x + layer_norm(f(layer_norm(x))),
    ),
    "pre_rms": (
        dict(norm_position="pre", norm="rms"),
        lambda x: x + f(rms_norm(x)),
    ),
    "post_rms_eps": (
        dict(norm_position="post", norm="rms", layer_norm_epsilon=0.5),
        lambda x: rms_norm(x + f(x), eps=0.5),
    ),
    "deepnorm": (
        dict(norm_position="post", scaling="deepnorm", alpha=2.5),
        lambda x: layer_norm(2.5 * x + f(x)),
    ),
    # A fresh ReZero block is exactly the identity.
    "rezero_at_init": (
        dict(norm_position="none", scaling="rezero"),
        lambda x: x,
    ),
    "dropout_at_inference": (
        dict(norm_position="none", dropout=0.5, stochastic_depth_rate=0.5),
        lambda x: x + f(x),
    ),
    # Without a skip only the branch and its normalisations remain.
    "no_skip_post": (
        dict(skip="none", norm_position="post"),
        lambda x: layer_norm(f(x)),
    ),
    "no_skip_pre": (
        dict(skip="none", norm_position="pre"),
        lambda x: f(layer_norm(x)),
    ),
    "no_skip_sandwich": (
        dict(skip="none", norm_position="sandwich"),
        lambda x: layer_norm(f(layer_norm(x))),
    ),
    "no_skip_none": (dict(skip="none", norm_position="none"), f),
}


@pytest.mark.parametrize("case", FORMULAS, ids=list(FORMULAS))
def test_variant_equals_formula(case):
    kwargs, formula = FORMULAS[case]
    block = Residual(dense(), **kwargs)
    got = keras.ops.convert_to_numpy(block(X, training=False))
    np.testing.assert_allclose(got, formula(X), rtol=1e-5, atol=1e-5)


def test_rezero_uses_learned_scale():
    block = Residual(dense(), norm_position="none", scaling="rezero")
    block.build(X.shape)
    block.rezero_alpha.assign(0.3)
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, X + 0.3 * f(X), rtol=1e-5, atol=1e-5)


def test_highway_equals_formula_and_starts_carrying_input():
    block = Residual(dense(), norm_position="none", scaling="highway")
    block.build(X.shape)
    gate_kernel, gate_bias = block.gate.get_weights()
    np.testing.assert_allclose(gate_bias, residual.HIGHWAY_GATE_BIAS)

    gate = sigmoid(X @ gate_kernel + gate_bias)
    expected = gate * f(X) + (1.0 - gate) * X
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    # With a zero gate kernel the gate is sigmoid(-2) everywhere: the
    # block mostly carries its input.
    block.gate.set_weights([np.zeros_like(gate_kernel), gate_bias])
    carry = 1.0 - sigmoid(residual.HIGHWAY_GATE_BIAS)
    expected = (1.0 - carry) * f(X) + carry * X
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert carry > 0.85


def test_projected_skip_when_widths_differ():
    kernel = RNG.normal(size=(WIDTH, 6)).astype("float32")
    bias = np.zeros(6, "float32")
    block = Residual(dense(kernel, bias), norm_position="none")
    block.build(X.shape)
    assert block.skip_projection is not None
    (projection,) = block.skip_projection.get_weights()
    assert projection.shape == (WIDTH, 6)

    expected = X @ projection + f(X, kernel, bias)
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_projection_on_request_with_equal_widths():
    block = Residual(dense(), skip="projection", norm_position="none")
    block.build(X.shape)
    (projection,) = block.skip_projection.get_weights()
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, X @ projection + f(X), rtol=1e-5, atol=1e-5)


def test_no_skip_may_change_the_width_without_a_projection():
    kernel = RNG.normal(size=(WIDTH, 6)).astype("float32")
    bias = RNG.normal(size=(6,)).astype("float32")
    block = Residual(dense(kernel, bias), skip="none", norm_position="none")
    block.build(X.shape)
    assert block.skip_projection is None
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, f(X, kernel, bias), rtol=1e-5, atol=1e-5)


def test_identity_skip_with_equal_widths_has_no_projection():
    block = Residual(dense(), skip="identity")
    block.build(X.shape)
    assert block.skip_projection is None


def test_dense_skip_concatenates():
    block = DenseSkip(dense())
    got = keras.ops.convert_to_numpy(block(X))
    np.testing.assert_allclose(got, np.concatenate([X, f(X)], -1), atol=1e-6)
    assert block.compute_output_shape((None, 3, WIDTH)) == (None, 3, 2 * WIDTH)


def test_stochastic_depth_draws_whole_branches_and_is_unbiased():
    rate = 0.25
    block = Residual(
        dense(),
        norm_position="none",
        stochastic_depth_rate=rate,
        seed=1234,
    )
    x = np.tile(X[:1], (64, 1, 1))
    deterministic = x + f(x)
    kept = x + f(x) / (1.0 - rate)

    draws = np.stack(
        [keras.ops.convert_to_numpy(block(x, training=True)) for _ in range(50)]
    )
    # Every example is either the bare skip or skip plus rescaled branch,
    # never a mix across time steps or features.
    is_dropped = np.isclose(draws, x, atol=1e-5).all(axis=(2, 3))
    is_kept = np.isclose(draws, kept, atol=1e-4).all(axis=(2, 3))
    assert np.all(is_dropped ^ is_kept)

    # 3200 Bernoulli(0.25) draws: the standard error of the drop rate is
    # 0.0077, so 0.03 is about four standard errors.
    assert abs(is_dropped.mean() - rate) < 0.03
    # The mean over all 3200 draws matches the inference output. Its error
    # is |F(x)| times the keep-rate error over (1 - rate); |F(x)| < 3.5
    # here, so four standard errors are 3.5 * 4 * 0.0077 / 0.75 ~ 0.14.
    mean = draws.mean(axis=(0, 1))
    np.testing.assert_allclose(mean, deterministic[0], atol=0.15)


def test_branch_dropout_acts_only_in_training():
    block = Residual(dense(), norm_position="none", dropout=0.5, seed=7)
    trained = keras.ops.convert_to_numpy(block(X, training=True))
    assert not np.allclose(trained, X + f(X))
    inferred = keras.ops.convert_to_numpy(block(X, training=False))
    np.testing.assert_allclose(inferred, X + f(X), rtol=1e-5, atol=1e-5)


def _lstm_stack(norm_position):
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 16, mask_zero=True)(tokens)
    outputs = []
    for i in range(3):
        lstm = keras.layers.LSTM(16, return_sequences=True)
        x = Residual(lstm, norm_position=norm_position, name=f"block_{i}")(x)
        outputs.append(x)
    return keras.Model(tokens, outputs)


@pytest.mark.parametrize("norm_position", ["pre", "post", "none"])
def test_masks_survive_stacked_lstm_blocks(norm_position):
    keras.utils.set_random_seed(0)
    model = _lstm_stack(norm_position)
    padded = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]], "int32")
    padding_mask = padded != 0

    for block_output in model.outputs:
        assert block_output._keras_mask is not None

    # Run the layers one by one to read the mask after every block.
    x = model.get_layer(index=1)(padded)
    mask = model.get_layer(index=1).compute_mask(padded)
    for i in range(3):
        block = model.get_layer(f"block_{i}")
        x = block(x, mask=mask)
        mask = block.compute_mask(x, mask)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(mask), padding_mask
        )

    # Valid steps equal the unpadded sequence run alone.
    batch_outputs = model(padded)
    for row, length in ((0, 3), (1, 5)):
        alone = model(padded[row : row + 1, :length])
        for got, want in zip(batch_outputs, alone, strict=True):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(got)[row, :length],
                keras.ops.convert_to_numpy(want)[0],
                atol=1e-5,
            )


def test_mask_reaches_sublayer():
    seen = {}

    class Recorder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.supports_masking = True

        def call(self, inputs, mask=None):
            seen["mask"] = mask
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    mask = np.array([[True, True, False]])
    Residual(Recorder())(X[:1], mask=mask)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(seen["mask"]), mask
    )


def test_extra_outputs_of_the_sublayer_pass_through():
    class WithCache(keras.layers.Layer):
        def call(self, inputs, cache=None):
            return inputs * 2.0, cache + 1.0

        def compute_output_shape(self, input_shape):
            return input_shape

    y, cache = Residual(WithCache(), norm_position="none")(
        X, cache=np.zeros(3, "float32")
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), 3.0 * X)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cache), 1.0)


VARIANTS = {
    "pre": dict(),
    "post": dict(norm_position="post"),
    "sandwich_rms": dict(norm_position="sandwich", norm="rms"),
    "rezero": dict(scaling="rezero", norm_position="none"),
    "deepnorm": dict(scaling="deepnorm", norm_position="post", alpha=1.7),
    "highway": dict(scaling="highway"),
    "projection": dict(skip="projection", dropout=0.1),
    "stochastic": dict(stochastic_depth_rate=0.2, seed=3),
    "no_skip": dict(skip="none", norm_position="post", dropout=0.1),
}


def test_config_is_complete():
    for kwargs in VARIANTS.values():
        assert_config_complete(Residual(keras.layers.Dense(4), **kwargs))
    assert_config_complete(DenseSkip(keras.layers.Dense(4)))


def test_every_variant_survives_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, WIDTH))
    x = inputs
    for name, kwargs in VARIANTS.items():
        x = Residual(keras.layers.Dense(WIDTH), name=name, **kwargs)(x)
    x = Residual(keras.layers.Dense(6), name="auto_projection")(x)
    x = DenseSkip(keras.layers.Dense(3), name="dense_skip")(x)
    model = keras.Model(inputs, x)
    # Move the learned scalars off their initial values so that a
    # restore that forgot them would show.
    model.get_layer("rezero").rezero_alpha.assign(0.7)

    data = RNG.normal(size=(3, 5, WIDTH)).astype("float32")
    restored = assert_keras_round_trip(model, data, tmp_path)
    np.testing.assert_allclose(
        restored.get_layer("rezero").rezero_alpha.numpy(), 0.7
    )
    assert restored.get_layer("deepnorm").alpha == 1.7


def test_trains():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, WIDTH))
    x = Residual(keras.layers.Dense(WIDTH), scaling="rezero")(inputs)
    model = keras.Model(inputs, x)
    data = RNG.normal(size=(8, 5, WIDTH)).astype("float32")
    assert_trains_one_step(model, data, data * 2.0)


BAD_ARGUMENTS = {
    "negative_dropout": (dict(dropout=-0.1), "dropout=-0.1"),
    "dropout_one": (dict(dropout=1.0), "dropout=1.0"),
    "stochastic_depth_one": (
        dict(stochastic_depth_rate=1.0),
        "stochastic_depth_rate=1.0",
    ),
    "negative_stochastic_depth": (
        dict(stochastic_depth_rate=-0.5),
        "stochastic_depth_rate=-0.5",
    ),
    "unknown_norm": (dict(norm="batch"), "norm='batch'"),
    "unknown_norm_position": (
        dict(norm_position="middle"),
        "norm_position='middle'",
    ),
    "unknown_skip": (dict(skip="gated"), "skip='gated'"),
    "unknown_scaling": (dict(scaling="fixup"), "scaling='fixup'"),
    "deepnorm_pre": (
        dict(scaling="deepnorm", norm_position="pre"),
        "norm_position='pre'",
    ),
    "alpha_without_deepnorm": (dict(alpha=2.0), "alpha=2.0"),
    "no_skip_with_scaling": (
        dict(skip="none", scaling="rezero", norm_position="none"),
        "skip='none', scaling='rezero'",
    ),
    "no_skip_with_stochastic_depth": (
        dict(skip="none", stochastic_depth_rate=0.1),
        "skip='none', stochastic_depth_rate=0.1",
    ),
    "zero_epsilon": (dict(layer_norm_epsilon=0), "layer_norm_epsilon=0"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=list(BAD_ARGUMENTS))
def test_bad_arguments_name_argument_and_value(case):
    kwargs, message = BAD_ARGUMENTS[case]
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Residual(keras.layers.Dense(4), **kwargs)


def test_sublayer_must_be_a_layer():
    with pytest.raises(ValueError, match="sublayer"):
        Residual(lambda x: x)


def test_identity_skip_with_mismatched_widths_names_both_widths():
    block = Residual(keras.layers.Dense(6), skip="identity")
    with pytest.raises(ValueError, match=r"input width is 4.*width is 6"):
        block.build((None, 5, 4))


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for obj in (Residual, DenseSkip):
        for test in finder.find(obj, globs={}):
            runner.run(test)
    assert runner.failures == 0
    assert runner.tries == 8


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_layer_dtype_policy_reaches_inner_layers(policy):
    # The policy is given to this layer only, not set globally: inner
    # layers (projection, gate, norms) must follow it or the sum mixes
    # float16 and float32.
    block = Residual(
        keras.layers.Dense(6, dtype=policy),
        scaling="highway",
        norm_position="sandwich",
        dtype=policy,
    )
    y = block(X)
    assert keras.backend.standardize_dtype(y.dtype) == policy[len("mixed_") :]
    assert block.skip_projection.compute_dtype == policy[len("mixed_") :]
    assert block.skip_projection.variable_dtype == "float32"
    expected = Residual(
        keras.layers.Dense(6), scaling="highway", norm_position="sandwich"
    )
    expected.build(X.shape)
    expected.set_weights(block.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
        keras.ops.convert_to_numpy(expected(X)),
        atol=0.05,
    )
