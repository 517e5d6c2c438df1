"""Facts about the TensorFlow backend that Keras does not expose."""

import keras


def in_xla_context():
    """Whether the code is being traced for XLA (`jit_compile=True`).

    TensorFlow exposes the test only through a private module; without it
    we report False, and callers keep their non-XLA behaviour.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return False
    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))
