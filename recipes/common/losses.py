"""Token-level loss and accuracy for padded sequence batches.

Targets are integer ids padded with `pad_id`; padded positions count
neither in the loss nor in the accuracy. Keras' own sparse cross-entropy
has `ignore_class` but no label smoothing, hence this small loss.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Sparse softmax cross-entropy with label smoothing and padding mask.

    With `V` classes, smoothing `e`, target `t` and log-probabilities
    `log p = log_softmax(logits)`:

    ```
    loss_i = -(1 - e) * log p[t_i] - (e / V) * sum_v log p[v]
    loss   = sum_i m_i * loss_i / sum_i m_i,   m_i = (t_i != pad_id)
    ```

    The mean is over the real (non-padding) tokens of the batch. Under a
    `tf.distribute` strategy each replica averages over its own tokens.

    Args:
        label_smoothing: float in [0, 1). Defaults to `0.0`.
        pad_id: int, the target id that is ignored. Defaults to `0`.
        name: loss name. Defaults to `"masked_sparse_crossentropy"`.

    >>> loss = MaskedSparseCrossentropy(pad_id=0)
    >>> logits = keras.ops.zeros((1, 2, 4))
    >>> round(float(loss(keras.ops.array([[1, 0]]), logits)), 4)  # log(4)
    1.3863
    """

    def __init__(
        self,
        label_smoothing=0.0,
        pad_id=0,
        name="masked_sparse_crossentropy",
        **kwargs,
    ):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                "Argument `label_smoothing` must be in [0, 1). "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)

        # (batch, length): the smoothed negative log-likelihood per token.
        nll = -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)
        nll = ops.squeeze(nll, axis=-1)
        uniform = -ops.mean(log_probs, axis=-1)
        e = self.label_smoothing
        per_token = (1.0 - e) * nll + e * uniform

        # Keras averages the returned values over all positions; rescale so
        # that this average is the mean over the real tokens only.
        mask = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        count = ops.maximum(ops.sum(mask), 1.0)
        size = ops.cast(ops.size(mask), "float32")
        return per_token * mask * (size / count)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"label_smoothing": self.label_smoothing, "pad_id": self.pad_id}
        )
        return config


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class MaskedAccuracy(keras.metrics.Metric):
    """Fraction of non-padding target tokens whose argmax is correct.

    Args:
        pad_id: int, the target id that is ignored. Defaults to `0`.
        name: metric name. Defaults to `"accuracy"`.
    """

    def __init__(self, pad_id=0, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = pad_id
        self.correct = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="hits"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        mask = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        hits = ops.cast(ops.equal(predicted, y_true), "float32") * mask
        self.correct.assign_add(ops.sum(hits))
        self.count.assign_add(ops.sum(mask))

    def result(self):
        return self.correct / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
