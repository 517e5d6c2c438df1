"""Gradient flow through skip connections, measured on the user's model.

For each monitored block (every `skipseq.layers.Residual` in the model, or
a list of layers the user chooses) one diagnostic pass records:

```
grad_norm        ||d loss / d W||   over the block's trainable weights
input_grad_norm  ||d loss / d x||   x: the block input, through the block
branch_ratio     ||F(.)|| / ||P(x)||  branch vs. skip activation
rezero_alpha     a                  the learned ReZero scale
gate_mean        mean(g)            the mean highway gate value
```

Norms are L2 norms over the whole batch. The pass needs the TensorFlow
backend: it runs under `tf.GradientTape`.
"""

import contextlib
import functools
import itertools
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from skipseq.diagnostics import _paths
from skipseq.diagnostics.records import (
    QUANTITIES,
    FlowWriters,
    flow_to_logs,
)
from skipseq.layers import _checks
from skipseq.layers.residual import Residual

logger = logging.getLogger(__name__)


def find_residual_blocks(model):
    """Every `Residual` layer inside `model`, nested ones included.

    The order is that of Keras' layer tracking, which need not be the
    order of execution; `gradient_flow` reorders blocks by their first
    call in the forward pass.
    """
    # Keras 3 has no public recursive walk (`submodules` is absent on the
    # TensorFlow backend); `_flatten_layers` is what Keras itself uses.
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, Residual)
    ]


def _check_model(model):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "Argument `model` must be a keras.Model or keras.layers.Layer. "
            f"Received: model={model!r}"
        )
    return model


def _layer_list(layers):
    """`layers` as a non-empty list of layers; one layer is a list of one."""
    if isinstance(layers, keras.layers.Layer):
        return [layers]
    checked = None
    if not isinstance(layers, str | bytes | dict):
        try:
            checked = list(layers)
        except TypeError:
            pass
    if not checked or not all(
        isinstance(layer, keras.layers.Layer) for layer in checked
    ):
        raise ValueError(
            "Argument `layers` must be None, a keras.layers.Layer or a "
            "non-empty list of keras.layers.Layer. "
            f"Received: layers={layers!r}"
        )
    return checked


def _check_layers(model, layers):
    """Resolve the monitored blocks: `layers`, or the model's residuals."""
    if layers is not None:
        return _layer_list(layers)
    blocks = find_residual_blocks(model)
    if not blocks:
        raise ValueError(
            "Found no skipseq.layers.Residual layer in the model; pass "
            "the layers to monitor as `layers`. Received: layers=None"
        )
    return blocks


def _is_float(value):
    return tf.is_tensor(value) and value.dtype.is_floating


def _norm(structure, empty=math.nan):
    """L2 norm over all float tensors of a (nested) structure, in fp32.

    `None` entries (unconnected gradients) count as zeros; `empty` is the
    value when there is no float tensor at all.
    """
    parts = [
        tf.cast(t, "float32")
        for t in tf.nest.flatten(structure)
        if t is not None and _is_float(t)
    ]
    if not parts:
        return tf.constant(empty, "float32")
    return tf.linalg.global_norm(parts)


@contextlib.contextmanager
def _patched_call(layer, make_wrapper):
    """Replace `layer.call` on this instance only, and put it back."""
    had_own = "call" in layer.__dict__
    original = layer.call
    # object.__setattr__ keeps Keras' attribute tracking out of the way.
    object.__setattr__(layer, "call", make_wrapper(original))
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            object.__delattr__(layer, "call")


class _Recorder:
    """Patches the blocks for one traced pass and keeps what they saw."""

    def __init__(self, blocks, tape):
        self.blocks = blocks
        self.tape = tape
        self.order = []
        self.inputs = {}
        self.stats = {}

    def block_wrapper(self, index, original):
        block = self.blocks[index]

        @functools.wraps(original)
        def call(inputs, *args, **kwargs):
            if index in self.inputs:
                return original(inputs, *args, **kwargs)
            self.order.append(index)
            # A fresh tensor that only this block consumes: the gradient
            # with respect to it is exactly what flows back through the
            # block, whatever else reads the same `inputs`.
            probe = tf.nest.map_structure(
                lambda t: tf.identity(t) if _is_float(t) else t, inputs
            )
            watched = [t for t in tf.nest.flatten(probe) if _is_float(t)]
            self.tape.watch(watched)
            self.inputs[index] = watched
            if isinstance(block, Residual):
                with self.tape.stop_recording():
                    self.stats[index] = self.skip_stats(block, probe)
            return original(probe, *args, **kwargs)

        return call

    def branch_wrapper(self, index, original):
        @functools.wraps(original)
        def call(*args, **kwargs):
            outputs = original(*args, **kwargs)
            stats = self.stats.get(index)
            if stats is not None and "branch_norm" not in stats:
                branch = outputs
                if isinstance(branch, list | tuple):
                    branch = branch[0]
                with self.tape.stop_recording():
                    block = self.blocks[index]
                    # The sandwich norm belongs to the branch F.
                    if block.norm_position == "sandwich":
                        branch = block.output_norm(branch)
                    stats["branch_norm"] = _norm(branch)
            return outputs

        return call

    @staticmethod
    def skip_stats(block, inputs):
        skip = inputs
        if block.skip_projection is not None:
            skip = block.skip_projection(inputs)
        stats = {"skip_norm": _norm(skip)}
        if block.rezero_alpha is not None:
            stats["rezero_alpha"] = tf.cast(block.rezero_alpha, "float32")
        if block.gate is not None:
            gate = tf.cast(block.gate(inputs), "float32")
            stats["gate_mean"] = tf.reduce_mean(gate)
        return stats

    def patches(self):
        stack = contextlib.ExitStack()
        for index, block in enumerate(self.blocks):
            stack.enter_context(
                _patched_call(
                    block, functools.partial(self.block_wrapper, index)
                )
            )
            if isinstance(block, Residual):
                stack.enter_context(
                    _patched_call(
                        block.sublayer,
                        functools.partial(self.branch_wrapper, index),
                    )
                )
        return stack


def _compute_loss(model, loss, x, y, y_pred, sample_weight, training):
    if loss is None:
        return model.compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
    value = loss(y, y_pred)
    if sample_weight is not None and len(value.shape) > 0:
        value = value * tf.cast(sample_weight, value.dtype)
    return tf.reduce_mean(value)


def _measure(model, blocks, loss, training, x, y, sample_weight, order):
    """One forward and backward pass; returns a dict of fp32 tensors."""
    with tf.GradientTape() as tape:
        recorder = _Recorder(blocks, tape)
        with recorder.patches():
            y_pred = model(x, training=training)
        loss_value = _compute_loss(
            model, loss, x, y, y_pred, sample_weight, training
        )
    called = [i in recorder.inputs for i in range(len(blocks))]
    # Read after the pass, which builds a model that was not built yet.
    # A block never called (unused, or from another model) has no path to
    # the loss: its weights are left out rather than asked for.
    weights = [
        block.trainable_weights if used else []
        for block, used in zip(blocks, called, strict=True)
    ]
    inputs = [recorder.inputs.get(i, []) for i in range(len(blocks))]
    # Unconnected gradients stay None, the default: asking for zeros makes
    # TensorFlow read `variable.dtype`, a string for Keras variables, and
    # fail with "'str' object has no attribute '_type_enum'".
    weight_grads, input_grads = tape.gradient(loss_value, [weights, inputs])

    nan = tf.constant(math.nan)
    result = {q: [] for q in QUANTITIES}
    for i in range(len(blocks)):
        stats = recorder.stats.get(i, {})
        if not called[i]:
            result["grad_norm"].append(nan)
            result["input_grad_norm"].append(nan)
        else:
            # Called but not reaching the loss: a true zero gradient.
            result["grad_norm"].append(
                _norm(weight_grads[i], empty=0.0) if weights[i] else nan
            )
            # A block given no float input has no input gradient.
            empty = 0.0 if inputs[i] else math.nan
            result["input_grad_norm"].append(_norm(input_grads[i], empty=empty))
        if "branch_norm" in stats:
            ratio = stats["branch_norm"] / stats["skip_norm"]
        else:
            ratio = nan
        result["branch_ratio"].append(ratio)
        result["rezero_alpha"].append(stats.get("rezero_alpha", nan))
        result["gate_mean"].append(stats.get("gate_mean", nan))
    result = {q: tf.stack(v) for q, v in result.items()}
    result["loss"] = tf.cast(loss_value, "float32")
    # Python-side facts, filled while tracing (or running eagerly).
    order[:] = recorder.order
    return result


def _resolve_loss(loss):
    """`None`, a loss name or a callable `loss(y_true, y_pred)`."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is not None and not callable(loss):
        raise ValueError(
            "Argument `loss` must be None, a loss name or a callable "
            f"`loss(y_true, y_pred)`. Received: loss={loss!r}"
        )
    return loss


def _check_training(training):
    if not isinstance(training, bool):
        raise ValueError(
            "Argument `training` must be a Python bool. "
            f"Received: training={training!r}"
        )
    return training


class _FlowProbe:
    """A reusable measurement for a fixed model and set of blocks."""

    def __init__(self, model, layers=None, loss=None, training=False):
        self.model = _check_model(model)
        self.blocks = _check_layers(model, layers)
        self.loss = _resolve_loss(loss)
        self.training = _check_training(training)
        self.order = []
        self._compiled = tf.function(self._run, reduce_retracing=True)

    def _run(self, x, y, sample_weight):
        return _measure(
            self.model,
            self.blocks,
            self.loss,
            self.training,
            x,
            y,
            sample_weight,
            self.order,
        )

    def __call__(self, x, y=None, sample_weight=None, compiled=False):
        run = self._compiled if compiled else self._run
        values = run(x, y, sample_weight)
        values = {k: np.asarray(v, "float64") for k, v in values.items()}
        # Depth order: first call in the forward pass, then unused blocks.
        order = list(self.order)
        order += [i for i in range(len(self.blocks)) if i not in order]
        # The path tells apart blocks that share a name in sibling layers.
        names = [self.blocks[i].path or self.blocks[i].name for i in order]
        flow = {"names": names}
        flow["loss"] = float(values.pop("loss"))
        for name, array in values.items():
            flow[name] = array[order]
        return flow


def gradient_flow(
    model, x, y=None, sample_weight=None, layers=None, loss=None, training=False
):
    """Measure gradient flow through the blocks of `model` on one batch.

    Runs `model(x, training=training)` once under `tf.GradientTape`, with
    each monitored block's `call` patched for that pass only, so the block
    input can be watched and its branch output read. The gradient with
    respect to a block's input counts what flows back through the block.

    Args:
        model: a built `keras.Model` (or layer) taking `x`.
        x: the input batch.
        y: the targets, passed to the loss.
        sample_weight: optional sample weights for the loss.
        layers: optional layer or list of layers to monitor instead of
            the model's `Residual` layers; plain layers get `grad_norm`
            and `input_grad_norm` only. Defaults to `None`.
        loss: `None` (default) for `model.compute_loss` (the compiled loss
            plus regularisation losses), a loss name, or a callable
            `loss(y_true, y_pred)` whose result is averaged.
        training: Python bool for the forward pass. Defaults to `False`,
            which keeps dropout off and BatchNorm statistics unchanged.

    Returns:
        A dict with `"names"` (block paths such as
        `"encoder/block_0/feedforward"`, in depth order, i.e. order of
        first call), `"loss"` (float) and one float64 array per quantity in
        `QUANTITIES`, indexed by depth. Quantities that do not apply to a
        block (no skip, no ReZero, no gate, never called) are NaN. A block
        called twice in one pass is measured at its first call.

    Example:

    >>> import numpy as np
    >>> from skipseq.layers import Residual
    >>> model = keras.Sequential(
    ...     [keras.Input((4,))]
    ...     + [Residual(keras.layers.Dense(4)) for _ in range(3)]
    ... )
    >>> flow = gradient_flow(
    ...     model, np.ones((2, 4)), np.zeros((2, 4)), loss="mse"
    ... )
    >>> flow["grad_norm"].shape
    (3,)
    """
    probe = _FlowProbe(model, layers=layers, loss=loss, training=training)
    return probe(x, y, sample_weight)


def _cycle(batches):
    """Iterate over `batches` again and again, without caching them."""
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise ValueError(
                "Argument `data` yielded no batch (an empty or exhausted "
                f"iterable). Received: data={batches!r}"
            )


def _batches(data):
    """A fixed `(x, y[, sample_weight])` tuple, or cycle through batches."""
    if isinstance(data, tuple) and len(data) in (1, 2, 3):
        return itertools.repeat(data)
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        # An array is iterable too, but its rows are not batches.
        raise ValueError(
            "Argument `data` must be a tuple (x, y) or (x, y, "
            "sample_weight), or an iterable of such batches, not a bare "
            "array; pass `(x, y)`. Received: data="
            f"{type(data).__name__} of shape {tuple(data.shape)}"
        )
    if hasattr(data, "__iter__") and not isinstance(
        data, tuple | dict | str | bytes
    ):
        return _cycle(data)
    raise ValueError(
        "Argument `data` must be a tuple (x, y) or (x, y, sample_weight), "
        f"or an iterable of such batches. Received: data={data!r}"
    )


def _unpack(batch):
    if not isinstance(batch, tuple | list):
        return batch, None, None
    batch = tuple(batch) + (None,) * (3 - len(batch))
    return batch[:3]


class GradientFlowMonitor(keras.callbacks.Callback):
    """Records gradient flow through skip connections during `fit`.

    Every `every_n_steps` training steps, before the step's update, the
    monitor runs `gradient_flow` on a probe batch from `data` and records,
    per block in depth order: the weight gradient norm, the gradient norm
    reaching the block input, the branch to skip norm ratio
    `||F(.)|| / ||P(x)||`, and the ReZero scale or mean highway gate.

    The latest values go into the epoch logs (and so into `History`) as
    `grad_norm/block_03`, `input_grad_norm/block_03`, ...; every record
    goes to `csv_path` (one row per step and block) and to TensorBoard
    scalars under `log_dir`. `plot_path` receives a PNG of gradient norm
    against depth, one line per recorded step, at the end of training.
    All records stay in `monitor.records`.

    The measurement is a `tf.function` traced once; its cost is one
    forward and backward pass per recorded step (see
    `bench/gradient_monitor_cost.py`). It needs the TensorFlow backend.

    Args:
        data: the probe batch, a tuple `(x, y)` or `(x, y, sample_weight)`,
            or an iterable of such batches (e.g. a `tf.data.Dataset`),
            cycled through. A fixed batch makes steps comparable.
        every_n_steps: positive int, steps between measurements; step 0
            is always measured. Defaults to `100`.
        layers: optional layer or list of layers to monitor instead of
            the model's `Residual` layers. Defaults to `None`.
        loss: `None` (default) for the model's compiled loss, a loss name,
            or a callable `loss(y_true, y_pred)`.
        training: Python bool for the probe's forward pass. Defaults to
            `False` (no dropout, BatchNorm statistics untouched).
        csv_path: optional path of a CSV file to write, in an existing
            directory. Defaults to `None`.
        log_dir: optional TensorBoard log directory, created if missing.
            Defaults to `None`.
        plot_path: optional path of an image written at the end of
            training, in an existing directory; a PNG unless the suffix
            names another format (`.pdf`, `.svg`). Checked when the
            monitor is made; if writing still fails, the error is logged
            and `fit` returns normally. Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> from skipseq.layers import Residual
    >>> model = keras.Sequential(
    ...     [keras.Input((4,))]
    ...     + [Residual(keras.layers.Dense(4)) for _ in range(2)]
    ... )
    >>> model.compile("sgd", "mse")
    >>> x, y = np.ones((8, 4)), np.zeros((8, 4))
    >>> monitor = GradientFlowMonitor((x, y), every_n_steps=2)
    >>> history = model.fit(
    ...     x, y, batch_size=2, callbacks=[monitor], verbose=0
    ... )
    >>> [record["step"] for record in monitor.records]
    [0, 2]
    >>> "grad_norm/block_01" in history.history
    True
    """

    def __init__(
        self,
        data,
        every_n_steps=100,
        layers=None,
        loss=None,
        training=False,
        csv_path=None,
        log_dir=None,
        plot_path=None,
    ):
        super().__init__()
        _checks.positive_int("every_n_steps", every_n_steps)
        _resolve_loss(loss)
        _check_training(training)
        if layers is not None:
            # A list now, so a one-shot iterable is not used up here.
            layers = _layer_list(layers)
        _paths.output_file("csv_path", csv_path)
        _paths.log_directory("log_dir", log_dir)
        _paths.output_file("plot_path", plot_path)
        self._batches = _batches(data)
        self.data = data
        self.every_n_steps = every_n_steps
        self.layers = layers
        self.loss = loss
        self.training = training
        self.csv_path = csv_path
        self.log_dir = log_dir
        self.plot_path = plot_path
        self.records = []
        self._writers = FlowWriters(csv_path, log_dir)
        self._probe = None
        self._step = 0
        self._step_synced = False
        self._epoch = 0

    def measure(self, step=None):
        """Record gradient flow on the next probe batch now."""
        if self._probe is None or self._probe.model is not self.model:
            self._probe = _FlowProbe(
                self.model, self.layers, self.loss, self.training
            )
        x, y, sample_weight = _unpack(next(self._batches))
        flow = self._probe(x, y, sample_weight, compiled=True)
        flow["step"] = self._step if step is None else int(step)
        flow["epoch"] = self._epoch
        self.records.append(flow)
        self._writers.write(flow)
        return flow

    def on_train_begin(self, logs=None):
        self._writers.open()
        if not self._step_synced:
            # Resume from the optimizer's count, once: later `fit` calls
            # continue this monitor's own count.
            iterations = getattr(self.model.optimizer, "iterations", None)
            if iterations is not None:
                self._step = int(iterations)
            self._step_synced = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._step % self.every_n_steps == 0:
            self.measure()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        # History needs the same keys every epoch: repeat the latest.
        if logs is not None and self.records:
            logs.update(flow_to_logs(self.records[-1]))
        self._writers.flush()

    def on_train_end(self, logs=None):
        self._writers.flush()
        if self.plot_path is not None and self.records:
            # Imported here so that matplotlib loads only when plotting.
            from skipseq.diagnostics.plots import plot_gradient_flow

            # The path was checked up front; if it went away since, keep
            # the finished training (and fit's History) over the plot.
            try:
                plot_gradient_flow(self.records, self.plot_path)
            except OSError as error:
                logger.error(
                    "Could not write the gradient flow plot to %s: %s",
                    self.plot_path,
                    error,
                )
                return
            logger.info("Wrote the gradient flow plot to %s", self.plot_path)


__all__ = [
    "GradientFlowMonitor",
    "find_residual_blocks",
    "gradient_flow",
]
