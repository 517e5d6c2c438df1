import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_keras_globals():
    """Tests may set a dtype policy or seed; restore them afterwards."""
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
    keras.utils.clear_session(free_memory=False)
