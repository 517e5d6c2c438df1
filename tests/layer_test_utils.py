"""Checks every skipseq layer should pass, shared by the layer tests."""

import inspect

import keras
import numpy as np


def assert_config_complete(layer, ignore=()):
    """Every constructor argument appears in `get_config()`.

    A round trip alone misses a dropped key whose default happens to match,
    so compare the constructor signature with the config keys directly.
    """
    config = layer.get_config()
    parameters = inspect.signature(type(layer).__init__).parameters
    for name, parameter in parameters.items():
        if name == "self" or parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
        ):
            continue
        if name in ignore:
            continue
        assert name in config, (
            f"{type(layer).__name__}.get_config() lacks `{name}`"
        )


def assert_same_outputs(expected, received, atol=1e-6):
    """Compare (nested) outputs of two models."""
    expected = keras.tree.flatten(expected)
    received = keras.tree.flatten(received)
    assert len(expected) == len(received)
    for a, b in zip(expected, received, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            atol=atol,
        )


def assert_keras_round_trip(model, inputs, tmp_path, atol=1e-6):
    """A `.keras` save and load gives the same outputs as the original."""
    path = tmp_path / "model.keras"
    expected = model(inputs, training=False)
    model.save(path)
    restored = keras.saving.load_model(path)
    assert_same_outputs(expected, restored(inputs, training=False), atol)
    return restored


def assert_trains_one_step(model, inputs, targets, loss="mse"):
    """One `fit` step runs and changes every trainable weight it should."""
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    model.fit(inputs, targets, epochs=1, batch_size=len(targets), verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    changed = [
        not np.allclose(a, b) for a, b in zip(before, after, strict=True)
    ]
    assert any(changed), "no trainable weight changed after one step"
