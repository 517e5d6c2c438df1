import doctest
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from skipseq.diagnostics import (
    QUANTITIES,
    GradientFlowMonitor,
    find_residual_blocks,
    flow_to_logs,
    gradient_flow,
    monitor,
    plot_gradient_flow,
    read_flow_csv,
)
from skipseq.layers import (
    Residual,
    ResidualRNN,
    TransformerEncoder,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEPTH = 12
# Width 16 with a unit-normal input: each sigmoid layer scales the
# backward signal by about sigmoid' * ||W|| ~ 0.2, so twelve of them give
# a first-to-last ratio near 1e-8, two orders below the 1e-6 threshold
# (widths 8 and 32 and other seeds measured between 2e-8 and 7e-7).
WIDTH = 16


def sigmoid_stack(residual, depth=DEPTH, width=WIDTH):
    blocks = []
    for _ in range(depth):
        dense = keras.layers.Dense(width, activation="sigmoid")
        if residual:
            dense = Residual(dense, norm_position="none")
        blocks.append(dense)
    head = keras.layers.Dense(1, name="head")
    model = keras.Sequential([keras.Input((width,)), *blocks, head])
    return model, blocks


def batch(seed, n=32, width=WIDTH, out=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype("float32")
    y = rng.normal(size=(n, out)).astype("float32")
    return x, y


def first_to_last(values):
    return values[0] / values[-1]


# ---------------------------------------------------------------------------
# Vanishing gradients, known by construction.


def test_skips_lift_vanishing_gradient_ratio_by_orders_of_magnitude():
    x, y = batch(0)
    keras.utils.set_random_seed(0)
    plain, plain_blocks = sigmoid_stack(residual=False)
    keras.utils.set_random_seed(0)
    skipped, _ = sigmoid_stack(residual=True)

    # Plain layers are monitored through `layers=`; residuals are found.
    plain_flow = gradient_flow(plain, x, y, layers=plain_blocks, loss="mse")
    skip_flow = gradient_flow(skipped, x, y, loss="mse")
    assert len(skip_flow["names"]) == DEPTH

    for quantity in ("grad_norm", "input_grad_norm"):
        plain_ratio = first_to_last(plain_flow[quantity])
        skip_ratio = first_to_last(skip_flow[quantity])
        assert 0 < plain_ratio < 1e-6, (quantity, plain_ratio)
        assert skip_ratio > 1e3 * plain_ratio, (quantity, skip_ratio)
        # The identity path keeps the gradient of the same order.
        assert skip_ratio > 1e-2, (quantity, skip_ratio)
    # Plain layers have no skip, scale or gate to report.
    assert np.isnan(plain_flow["branch_ratio"]).all()
    assert np.isfinite(skip_flow["branch_ratio"]).all()


def test_plain_gradient_decays_monotonically_with_depth():
    x, y = batch(1)
    keras.utils.set_random_seed(1)
    plain, blocks = sigmoid_stack(residual=False)
    flow = gradient_flow(plain, x, y, layers=blocks, loss="mse")
    # Each sigmoid layer shrinks the backward signal (factor <= 0.25 * |W|).
    assert (np.diff(np.log(flow["input_grad_norm"])) > 0).all()


# ---------------------------------------------------------------------------
# Values equal a direct tf.GradientTape computation.


def mixed_blocks():
    """One block per skip variant, sizes chosen to include a projection."""
    rezero = Residual(keras.layers.Dense(12), scaling="rezero")
    return [
        Residual(keras.layers.Dense(8, activation="tanh")),
        Residual(keras.layers.Dense(12), norm_position="post"),
        rezero,
        Residual(keras.layers.Dense(12, activation="relu"), scaling="highway"),
        Residual(keras.layers.Dense(12), norm_position="sandwich"),
    ]


def build_mixed_model(seed=3):
    keras.utils.set_random_seed(seed)
    blocks = mixed_blocks()
    head = keras.layers.Dense(3)
    model = keras.Sequential([keras.Input((8,)), *blocks, head])
    # A zero ReZero scale would hide a wrong scale; make it nonzero.
    blocks[2].rezero_alpha.assign(0.3)
    model.compile(optimizer="sgd", loss="mse")
    return model, blocks, head


def direct_flow(blocks, head, x, y):
    """Hand computation: call the blocks in turn, watching each input."""
    with tf.GradientTape(persistent=True) as tape:
        h = tf.constant(x)
        inputs = []
        for block in blocks:
            tape.watch(h)
            inputs.append(h)
            h = block(h)
        loss = tf.reduce_mean(tf.square(head(h) - y))
    out = {q: [] for q in QUANTITIES}
    for block, h in zip(blocks, inputs, strict=True):
        grads = tape.gradient(loss, block.trainable_weights)
        out["grad_norm"].append(tf.linalg.global_norm(grads))
        out["input_grad_norm"].append(tf.norm(tape.gradient(loss, h)))
        # Recompute branch and skip from the block's parts.
        branch_in = h if block.input_norm is None else block.input_norm(h)
        branch = block.sublayer(branch_in)
        if block.norm_position == "sandwich":
            branch = block.output_norm(branch)
        skip = h if block.skip_projection is None else block.skip_projection(h)
        out["branch_ratio"].append(tf.norm(branch) / tf.norm(skip))
        alpha = block.rezero_alpha
        out["rezero_alpha"].append(math.nan if alpha is None else alpha)
        gate = block.gate
        out["gate_mean"].append(
            math.nan if gate is None else tf.reduce_mean(gate(h))
        )
    out = {q: np.array([float(v) for v in out[q]]) for q in out}
    out["loss"] = float(loss)
    return out


def assert_flow_equal(expected, received):
    for quantity in QUANTITIES:
        np.testing.assert_allclose(
            received[quantity],
            expected[quantity],
            rtol=1e-5,
            err_msg=quantity,
        )
    assert received["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_gradient_flow_equals_direct_tape():
    model, blocks, head = build_mixed_model()
    x, y = batch(4, n=6, width=8, out=3)
    expected = direct_flow(blocks, head, x, y)
    # The projection, ReZero and gate really are in play.
    assert blocks[1].skip_projection is not None
    assert expected["rezero_alpha"][2] == pytest.approx(0.3)
    assert 0 < expected["gate_mean"][3] < 1

    received = gradient_flow(model, x, y)
    assert received["names"] == [block.path for block in blocks]
    assert_flow_equal(expected, received)


def test_callback_measure_equals_direct_tape():
    model, blocks, head = build_mixed_model()
    x, y = batch(5, n=6, width=8, out=3)
    expected = direct_flow(blocks, head, x, y)
    monitor = GradientFlowMonitor((x, y), every_n_steps=1)
    monitor.set_model(model)
    monitor.on_train_begin()
    # The compiled (tf.function) pass; twice, so the retrace-free call
    # that fit uses after the first step is checked too.
    monitor.measure()
    assert_flow_equal(expected, monitor.measure())


def test_input_gradient_counts_only_the_path_through_the_block():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4)(inputs)
    block = Residual(keras.layers.Dense(4, activation="tanh"))
    # `hidden` also reaches the output around the block.
    side = keras.layers.Dense(4)(hidden)
    outputs = keras.layers.Add()([block(hidden), side])
    model = keras.Model(inputs, outputs)
    x, y = batch(6, n=5, width=4, out=4)

    with tf.GradientTape() as tape:
        h = model.layers[1](x)
        probe = tf.identity(h)
        tape.watch(probe)
        out = block(probe) + model.layers[3](h)
        loss = tf.reduce_mean(tf.square(out - y))
    expected = tf.norm(tape.gradient(loss, probe))

    flow = gradient_flow(model, x, y, loss="mse")
    np.testing.assert_allclose(flow["input_grad_norm"], [expected], rtol=1e-5)


class WithUnusedBlock(keras.Model):
    """Calls `blocks` then `head`; holds one more Residual it never calls."""

    def __init__(self, blocks, head, **kwargs):
        super().__init__(**kwargs)
        self.blocks = blocks
        self.head = head
        self.unused = Residual(keras.layers.Dense(12), name="unused")

    def call(self, inputs):
        hidden = inputs
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(hidden)


def assert_unused_last(expected, received, blocks, unused):
    """Used blocks equal the direct tape; the unused one is all NaN."""
    assert received["names"] == [b.path for b in blocks] + [unused.path]
    for quantity in QUANTITIES:
        np.testing.assert_allclose(
            received[quantity][:-1],
            expected[quantity],
            rtol=1e-5,
            err_msg=quantity,
        )
        assert math.isnan(received[quantity][-1]), quantity
    assert received["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_unused_block_is_nan_and_used_blocks_equal_direct_tape():
    keras.utils.set_random_seed(3)
    blocks = mixed_blocks()
    head = keras.layers.Dense(3)
    model = WithUnusedBlock(blocks, head)
    x, y = batch(11, n=6, width=8, out=3)
    # Built, so it has weights that no path connects to the loss.
    model.unused(np.zeros((1, 12), "float32"))
    model(x[:1])
    assert len(model.unused.trainable_weights) == 4
    blocks[2].rezero_alpha.assign(0.3)
    model.compile(optimizer="sgd", loss="mse")
    expected = direct_flow(blocks, head, x, y)

    assert_unused_last(
        expected, gradient_flow(model, x, y), blocks, model.unused
    )
    # The traced pass the callback runs, too.
    monitor = GradientFlowMonitor((x, y), every_n_steps=1)
    monitor.set_model(model)
    for _ in range(2):
        assert_unused_last(expected, monitor.measure(), blocks, model.unused)


def test_layers_from_another_model_are_nan():
    model, blocks, head = build_mixed_model()
    other, other_blocks, _ = build_mixed_model(seed=4)
    x, y = batch(12, n=6, width=8, out=3)
    expected = direct_flow(blocks, head, x, y)
    received = gradient_flow(model, x, y, layers=[*blocks, other_blocks[1]])
    assert_unused_last(expected, received, blocks, other_blocks[1])


class SpareWeight(keras.layers.Layer):
    """`x @ kernel`, plus a weight that `call` never reads."""

    def build(self, input_shape):
        width = input_shape[-1]
        self.kernel = self.add_weight(shape=(width, width))
        self.spare = self.add_weight(shape=(3,))

    def call(self, inputs):
        return inputs @ self.kernel


class DeadBranch(keras.Model):
    """Calls `dead` on the hidden state but discards its output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.used = SpareWeight()
        self.dead = keras.layers.Dense(4)

    def call(self, inputs):
        hidden = self.used(inputs)
        self.dead(hidden)
        return hidden


def test_called_blocks_without_a_path_to_the_loss_are_zero():
    keras.utils.set_random_seed(13)
    model = DeadBranch()
    x, y = batch(13, n=5, width=4, out=4)
    model(x)

    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_mean(tf.square(model.used(x_tensor) - y))
    kernel_grad, x_grad = tape.gradient(loss, [model.used.kernel, x_tensor])

    flow = gradient_flow(
        model, x, y, layers=[model.used, model.dead], loss="mse"
    )
    # The spare weight adds nothing to the norm (and does not crash it).
    np.testing.assert_allclose(
        flow["grad_norm"], [float(tf.norm(kernel_grad)), 0.0], rtol=1e-5
    )
    np.testing.assert_allclose(
        flow["input_grad_norm"], [float(tf.norm(x_grad)), 0.0], rtol=1e-5
    )


# ---------------------------------------------------------------------------
# Finding blocks in nested stacks.


class ReversedStack(keras.layers.Layer):
    """Creates its blocks last-first but calls them first-last."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.late = Residual(keras.layers.Dense(width), name="late")
        self.early = Residual(
            keras.layers.LSTM(width, return_sequences=True), name="early"
        )

    def call(self, inputs, mask=None):
        return self.late(self.early(inputs, mask=mask), mask=mask)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask


def test_nested_blocks_are_found_and_ordered_by_call():
    keras.utils.set_random_seed(7)
    tokens = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    h = ReversedStack(8, name="stack")(h)
    h = Residual(keras.layers.Dense(8), name="top")(h)
    outputs = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(tokens, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], "int32")
    y = np.zeros((2, 8), "float32")

    assert {b.name for b in find_residual_blocks(model)} == {
        "early",
        "late",
        "top",
    }
    flow = gradient_flow(model, x, y)
    names = [name.split("/")[-1] for name in flow["names"]]
    assert names == ["early", "late", "top"]
    assert flow["names"][0].endswith("stack/early")
    assert np.isfinite(flow["grad_norm"]).all()
    assert (flow["input_grad_norm"] > 0).all()
    # The patches are gone afterwards.
    assert all("call" not in b.__dict__ for b in find_residual_blocks(model))


def test_transformer_encoder_and_residual_rnn_blocks():
    keras.utils.set_random_seed(10)
    x = np.random.default_rng(10).normal(size=(2, 5, 8)).astype("float32")
    inputs = keras.Input((5, 8))
    encoder = TransformerEncoder(2, 16, num_heads=2, residual="pre")
    rnn = ResidualRNN("gru", num_layers=2, units=8, residual_start=1)
    model = keras.Model(inputs, rnn(encoder(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    y = np.zeros((2, 5, 8), "float32")

    flow = gradient_flow(model, x, y)
    # Two residuals per encoder block, then the RNN's second layer
    # (residual_start=1: the first layer has no skip).
    assert flow["names"] == [
        "transformer_encoder/block_0/self_attention",
        "transformer_encoder/block_0/feedforward",
        "transformer_encoder/block_1/self_attention",
        "transformer_encoder/block_1/feedforward",
        "residual_rnn/residual_1",
    ]
    assert np.isfinite(flow["branch_ratio"]).all()
    # The model input feeds only the first block, so the gradient reaching
    # that block's input is the gradient with respect to the model input.
    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_mean(tf.square(model(x_tensor) - y))
    expected = tf.norm(tape.gradient(loss, x_tensor))
    np.testing.assert_allclose(flow["input_grad_norm"][0], expected, rtol=1e-5)


# ---------------------------------------------------------------------------
# The callback in fit: History keys, CSV, TensorBoard, PNG.


def read_scalars(log_dir):
    scalars = {}
    for path in tf.io.gfile.glob(f"{log_dir}/events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = tf.make_ndarray(value.tensor)
                scalars[(value.tag, event.step)] = float(number)
    return scalars


def test_callback_in_fit_writes_history_csv_tensorboard_and_png(tmp_path):
    keras.utils.set_random_seed(8)
    blocks = [
        Residual(keras.layers.Dense(8, activation="relu")),
        Residual(keras.layers.Dense(8), scaling="rezero"),
        Residual(keras.layers.Dense(8), scaling="highway"),
    ]
    model = keras.Sequential([keras.Input((8,)), *blocks])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = batch(8, n=8, width=8, out=8)
    paths = {
        "csv_path": str(tmp_path / "flow.csv"),
        "log_dir": str(tmp_path / "tb"),
        "plot_path": str(tmp_path / "flow.png"),
    }
    monitor = GradientFlowMonitor((x[:4], y[:4]), every_n_steps=3, **paths)
    # 4 steps per epoch, 2 epochs: steps 0 and 3, then 6.
    history = model.fit(
        x, y, batch_size=2, epochs=2, callbacks=[monitor], verbose=0
    )
    records = monitor.records
    assert [r["step"] for r in records] == [0, 3, 6]
    assert [r["epoch"] for r in records] == [0, 0, 1]
    # Training moved the ReZero scale away from its zero start.
    assert records[0]["rezero_alpha"][1] == 0.0
    assert records[2]["rezero_alpha"][1] != 0.0

    # History: the latest record of each epoch.
    for key in ("grad_norm/block_00", "input_grad_norm/block_02"):
        quantity, block = key.split("/block_")
        expected = [records[1][quantity][int(block)]]
        expected.append(records[2][quantity][int(block)])
        np.testing.assert_allclose(history.history[key], expected)
    assert "rezero_alpha/block_01" in history.history
    assert "gate_mean/block_02" in history.history
    assert "rezero_alpha/block_00" not in history.history

    # CSV read back holds the same numbers.
    read = read_flow_csv(paths["csv_path"])
    assert [r["step"] for r in read] == [0, 3, 6]
    for got, want in zip(read, records, strict=True):
        assert got["names"] == want["names"]
        assert got["loss"] == want["loss"]
        for quantity in QUANTITIES:
            np.testing.assert_array_equal(got[quantity], want[quantity])

    # TensorBoard scalars at the recorded steps.
    scalars = read_scalars(paths["log_dir"])
    for record in records:
        for key, value in flow_to_logs(record).items():
            assert scalars[(key, record["step"])] == pytest.approx(value)

    with open(paths["plot_path"], "rb") as handle:
        png = handle.read()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000


def test_plot_has_one_line_per_record_on_log_axes(tmp_path):
    records = [
        {"step": s, "grad_norm": np.array([1e-8, 1e-4, 0.0, 1.0])}
        for s in (0, 10, 20)
    ]
    figure = plot_gradient_flow(
        records, tmp_path / "p.png", quantities=("grad_norm",)
    )
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 3
    ydata = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(ydata[[0, 1, 3]], [1e-8, 1e-4, 1.0])
    # Zero is masked, not clipped, on a log axis.
    assert np.isnan(ydata[2])
    # Colours follow the step.
    assert ax.lines[0].get_color() != ax.lines[2].get_color()
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_SIGNATURE)


# ---------------------------------------------------------------------------
# Argument checks.


def small_model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(4)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_model_without_residuals_needs_layers():
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="Received: layers=None"):
        gradient_flow(small_model(), x, x)


@pytest.mark.parametrize("layers", [[], ["dense"]], ids=["empty", "names"])
def test_layers_must_be_layers(layers):
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match=r"Received: layers=\["):
        gradient_flow(small_model(), x, x, layers=layers)


def test_loss_must_be_callable():
    model = small_model()
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="Received: loss=3"):
        gradient_flow(model, x, x, layers=model.layers, loss=3)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_every_n_steps_must_be_positive_int(value):
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match=f"every_n_steps={value!r}"):
        GradientFlowMonitor((x, x), every_n_steps=value)


def test_training_must_be_bool():
    model = small_model()
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="Received: training=1"):
        gradient_flow(model, x, x, layers=model.layers, training=1)
    with pytest.raises(ValueError, match="Received: training='yes'"):
        GradientFlowMonitor((x, x), training="yes")


def test_data_must_be_batch_or_iterable():
    with pytest.raises(ValueError, match="Received: data=3"):
        GradientFlowMonitor(3)


def test_empty_data_is_reported_when_drawn():
    model = small_model()
    monitor = GradientFlowMonitor([], layers=model.layers)
    monitor.set_model(model)
    with pytest.raises(ValueError, match=r"yielded no batch.*data=\[\]"):
        monitor.measure()


def test_dataset_batches_are_cycled():
    model = small_model()
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 4)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(2)
    monitor = GradientFlowMonitor(dataset, layers=model.layers)
    monitor.set_model(model)
    losses = [monitor.measure()["loss"] for _ in range(3)]
    # Two batches, drawn in turn: the third measurement repeats the first.
    assert losses[0] == pytest.approx(losses[2])
    assert losses[0] != pytest.approx(losses[1])
    expected = gradient_flow(model, x[:2], x[:2], layers=model.layers)
    assert losses[0] == pytest.approx(expected["loss"], rel=1e-6)


def test_plot_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"Received: records=\[\]"):
        plot_gradient_flow([], tmp_path / "p.png")
    records = [{"step": 0, "grad_norm": np.ones(2)}]
    with pytest.raises(ValueError, match="Received: quantities=."):
        plot_gradient_flow(records, tmp_path / "p.png", quantities=("x",))


def test_model_must_be_a_layer():
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="Received: model=None"):
        gradient_flow(None, x, x)


@pytest.mark.parametrize(
    "layers, shown",
    [(5, "5"), ("dense", "'dense'"), ({}, r"\{\}")],
    ids=["int", "str", "dict"],
)
def test_layers_must_be_a_layer_or_list_of_layers(layers, shown):
    model = small_model()
    x = np.ones((2, 4), "float32")
    message = (
        r"must be None, a keras.layers.Layer or a non-empty list of "
        rf"keras.layers.Layer. Received: layers={shown}$"
    )
    with pytest.raises(ValueError, match=message):
        gradient_flow(model, x, x, layers=layers)
    with pytest.raises(ValueError, match=message):
        GradientFlowMonitor((x, x), layers=layers)


def test_one_layer_is_a_list_of_one():
    model = small_model()
    x = np.random.default_rng(14).normal(size=(3, 4)).astype("float32")
    layer = model.layers[1]
    single = gradient_flow(model, x, x, layers=layer)
    listed = gradient_flow(model, x, x, layers=[layer])
    assert single["names"] == listed["names"] == [layer.path]
    for quantity in QUANTITIES:
        np.testing.assert_array_equal(single[quantity], listed[quantity])
    assert GradientFlowMonitor((x, x), layers=layer).layers == [layer]
    # A generator is read once, in the constructor, and kept as a list.
    monitor = GradientFlowMonitor((x, x), layers=iter(model.layers))
    assert monitor.layers == model.layers
    monitor.set_model(model)
    assert len(monitor.measure()["names"]) == 2


@pytest.mark.parametrize("name", ["csv_path", "log_dir", "plot_path"])
@pytest.mark.parametrize("value", [5.5, "", b"flow"], ids=["float", "", "b"])
def test_paths_must_be_str_or_pathlike(name, value):
    x = np.ones((2, 4), "float32")
    message = rf"Argument `{name}` must be None or a (file|directory) path"
    with pytest.raises(ValueError, match=message) as info:
        GradientFlowMonitor((x, x), **{name: value})
    assert str(info.value).endswith(f"Received: {name}={value!r}")


@pytest.mark.parametrize("name", ["csv_path", "plot_path"])
def test_file_paths_need_an_existing_directory(tmp_path, name):
    x = np.ones((2, 4), "float32")
    missing = tmp_path / "missing"
    path = missing / "flow.out"
    with pytest.raises(ValueError) as info:
        GradientFlowMonitor((x, x), **{name: path})
    assert str(info.value) == (
        f"Argument `{name}` must be in an existing directory, but "
        f"{str(missing)!r} is not one. Received: {name}={path!r}"
    )
    # An existing directory is not a file name (matplotlib would have
    # written `<directory>.png` next to it).
    with pytest.raises(ValueError) as info:
        GradientFlowMonitor((x, x), **{name: str(tmp_path)})
    assert str(info.value) == (
        f"Argument `{name}` must be a file path, but {str(tmp_path)!r} is a "
        f"directory. Received: {name}={str(tmp_path)!r}"
    )


def test_log_dir_must_not_be_a_file(tmp_path):
    x = np.ones((2, 4), "float32")
    file = tmp_path / "events"
    file.write_text("")
    for log_dir in (str(file), str(file / "run_1")):
        with pytest.raises(ValueError) as info:
            GradientFlowMonitor((x, x), log_dir=log_dir)
        assert str(info.value) == (
            f"Argument `log_dir` must be a directory, but {str(file)!r} is "
            f"a file. Received: log_dir={log_dir!r}"
        )
    # Missing directories are fine: TensorFlow creates them.
    log_dir = tmp_path / "tb" / "run_1"
    assert GradientFlowMonitor((x, x), log_dir=log_dir).log_dir == log_dir


@pytest.mark.parametrize(
    "make, shown",
    [
        (lambda x: x, "ndarray of shape (2, 4)"),
        (tf.constant, "EagerTensor of shape (2, 4)"),
    ],
    ids=["numpy", "tensor"],
)
def test_data_must_not_be_a_bare_array(make, shown):
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError) as info:
        GradientFlowMonitor(make(x))
    message = str(info.value)
    assert "not a bare array; pass `(x, y)`" in message
    assert message.endswith(f"Received: data={shown}")


def test_data_must_not_be_a_string():
    with pytest.raises(ValueError, match="Received: data='xy'$"):
        GradientFlowMonitor("xy")


def test_plot_failure_after_training_keeps_history(tmp_path, caplog):
    keras.utils.set_random_seed(15)
    model = keras.Sequential(
        [keras.Input((4,)), Residual(keras.layers.Dense(4))]
    )
    model.compile(optimizer="sgd", loss="mse")
    x, y = batch(15, n=4, width=4, out=4)
    out = tmp_path / "out"
    out.mkdir()
    plot_path = str(out / "flow.png")
    monitor = GradientFlowMonitor((x, y), plot_path=plot_path)
    # The directory goes away during training.
    out.rmdir()
    with caplog.at_level("ERROR", logger="skipseq.diagnostics.monitor"):
        history = model.fit(x, y, epochs=2, callbacks=[monitor], verbose=0)
    assert len(history.history["loss"]) == 2
    assert "grad_norm/block_00" in history.history
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"Could not write the gradient flow plot to {plot_path}: "
    )


def test_plot_is_written_at_exactly_the_path(tmp_path):
    records = [
        {"step": 0, "grad_norm": np.ones(2), "input_grad_norm": np.ones(2)}
    ]
    plot_gradient_flow(records, tmp_path / "flow")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow"]
    assert (tmp_path / "flow").read_bytes().startswith(PNG_SIGNATURE)
    # A suffix that names a format picks it.
    plot_gradient_flow(records, str(tmp_path / "flow.svg"))
    assert b"<svg" in (tmp_path / "flow.svg").read_bytes()[:1000]


def test_docstring_examples_run():
    result = doctest.testmod(monitor, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
