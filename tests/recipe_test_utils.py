"""Helpers shared by the recipe tests."""

import keras


class StopAt(keras.callbacks.Callback):
    """Raises after `steps` optimizer steps, like a killed job."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            raise KeyboardInterrupt("simulated interruption")
