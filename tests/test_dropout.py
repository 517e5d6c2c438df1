import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from skipseq.layers import Dropout
from skipseq.layers import dropout as dropout_module
from tests.layer_test_utils import assert_config_complete

RATE = 0.25
SHAPE = (64, 1000)


def xla(fn):
    return tf.function(fn, jit_compile=True)


def train_call(layer):
    return xla(lambda x: layer(x, training=True))


def test_xla_mask_is_threefry_uniform_from_the_seed_state():
    layer = Dropout(RATE, seed=7)
    x = tf.constant(np.random.default_rng(0).normal(size=SHAPE), "float32")
    layer.build(x.shape)
    state = layer.seed_generator.state.numpy()

    received = train_call(layer)(x).numpy()

    # The same draw, by hand: the int64 seed state folded into int32.
    seed = tf.constant(np.mod(state, np.iinfo("int32").max - 1), "int32")
    draw = xla(
        lambda: tf.random.stateless_uniform(SHAPE, seed=seed, alg="threefry")
    )()
    expected = np.where(draw.numpy() >= RATE, x.numpy() / (1 - RATE), 0.0)
    np.testing.assert_allclose(received, expected, rtol=1e-6)
    # The call advanced the seed state, so the next mask is another one.
    assert not np.array_equal(layer.seed_generator.state.numpy(), state)


def test_xla_masks_drop_the_rate_and_keep_the_mean():
    layer = Dropout(RATE, seed=1)
    call = train_call(layer)
    ones = tf.ones(SHAPE)
    first, second = call(ones).numpy(), call(ones).numpy()
    for out in (first, second):
        # Kept entries are scaled by 1 / (1 - rate), dropped ones are 0.
        assert set(np.unique(out)) <= {0.0, np.float32(1 / (1 - RATE))}
        # 64,000 Bernoulli draws: the standard error of the share is 0.002.
        assert abs(np.mean(out == 0) - RATE) < 0.01
        assert abs(np.mean(out) - 1.0) < 0.015
    assert not np.array_equal(first, second)


def test_same_seed_gives_the_same_masks():
    ones = tf.ones(SHAPE)
    a = train_call(Dropout(RATE, seed=3))
    b = train_call(Dropout(RATE, seed=3))
    np.testing.assert_array_equal(a(ones).numpy(), b(ones).numpy())
    np.testing.assert_array_equal(a(ones).numpy(), b(ones).numpy())


def test_outside_xla_equals_keras_dropout():
    x = np.random.default_rng(1).normal(size=(8, 16)).astype("float32")
    ours = Dropout(RATE, seed=11)
    theirs = keras.layers.Dropout(RATE, seed=11)
    for _ in range(2):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours(x, training=True)),
            keras.ops.convert_to_numpy(theirs(x, training=True)),
        )


def test_inference_and_rate_zero_pass_through():
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 5)), "float32")
    layer = Dropout(RATE)
    np.testing.assert_array_equal(
        xla(lambda x: layer(x, training=False))(x).numpy(), x.numpy()
    )
    np.testing.assert_array_equal(
        train_call(Dropout(0.0))(x).numpy(), x.numpy()
    )


def test_rate_one_drops_everything_under_xla():
    out = train_call(Dropout(1.0))(tf.ones((3, 4))).numpy()
    np.testing.assert_array_equal(out, np.zeros((3, 4)))


def test_noise_shape_shares_the_mask_along_broadcast_axes():
    layer = Dropout(0.5, noise_shape=(None, 1, None), seed=5)
    out = train_call(layer)(tf.ones((16, 9, 32))).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))
    assert 0.3 < np.mean(out == 0) < 0.7


def test_gradient_is_the_scaled_mask():
    seed_generator = keras.random.SeedGenerator(2)
    x = tf.ones((32, 50))

    @tf.function(jit_compile=True)
    def value_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = dropout_module.dropout(x, RATE, seed_generator)
            total = tf.reduce_sum(y)
        return y, tape.gradient(total, x)

    y, grad = value_and_grad(x)
    # For x = 1, y is the scaled mask itself, and so is dy/dx.
    np.testing.assert_array_equal(grad.numpy(), y.numpy())


def test_mixed_float16_keeps_the_input_dtype():
    layer = Dropout(RATE, seed=4, dtype="mixed_float16")
    out = train_call(layer)(tf.ones((8, 64), "float16"))
    assert out.dtype == tf.float16
    assert set(np.unique(out.numpy())) <= {0.0, np.float16(1 / (1 - RATE))}


def test_in_xla_context_only_when_compiled(monkeypatch):
    seen = []
    original = dropout_module.in_xla_context

    def spy():
        seen.append(original())
        return seen[-1]

    monkeypatch.setattr(dropout_module, "in_xla_context", spy)
    layer = Dropout(RATE)
    x = tf.ones((2, 3))
    layer(x, training=True)
    tf.function(lambda x: layer(x, training=True))(x)
    train_call(layer)(x)
    assert seen == [False, False, True]


def test_fit_with_jit_compile_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    x = Dropout(0.3, seed=9, name="drop")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    # The first layer learns only through the dropout's gradient.
    first_kernel = model.layers[1].kernel.numpy()
    model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=True)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(256, 6)).astype("float32")
    targets = features[:, :1] - 2 * features[:, 1:2]
    history = model.fit(features, targets, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert not np.allclose(model.layers[1].kernel.numpy(), first_kernel)

    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("drop"), Dropout)
    assert restored.get_layer("drop").rate == 0.3
    np.testing.assert_allclose(
        restored.predict(features, verbose=0),
        model.predict(features, verbose=0),
        atol=1e-6,
    )


def test_config_is_complete():
    assert_config_complete(Dropout(0.1, noise_shape=(None, 1), seed=2))


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_bad_rate_names_the_value(rate):
    with pytest.raises(ValueError, match=str(rate)):
        Dropout(rate)


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(
        Dropout, globs={"keras": keras, "Dropout": Dropout}
    ):
        runner.run(test)
    assert runner.failures == 0
    assert runner.tries == 3
