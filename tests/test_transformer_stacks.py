"""Transformer stacks: masks, causality, DLCL, embeddings, saving, dtypes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from skipseq.layers import (
    TokenAndPositionEmbedding,
    TransformerDecoder,
    TransformerEncoder,
)
from tests.layer_test_utils import assert_keras_round_trip

WIDTH, HEADS, HIDDEN, VOCAB = 16, 2, 32, 30


def to_np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def token_ids(lengths, total, seed=0):
    """A batch of random ids in [1, VOCAB) right-padded with 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(len(lengths), total))
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids.astype("int32")


@pytest.mark.parametrize("residual", ["pre", "post"])
def test_padded_encoder_equals_unpadded(residual):
    embed = TokenAndPositionEmbedding(VOCAB, 8, WIDTH, mask_zero=True)
    encoder = TransformerEncoder(2, HIDDEN, HEADS, residual=residual)
    ids = token_ids([6, 4], 6)
    padded = to_np(encoder(embed(ids)))
    alone = to_np(encoder(embed(ids[1:, :4])))
    np.testing.assert_allclose(padded[1, :4], alone[0], atol=1e-5)
    # The explicit padding mask gives the same as the implicit one.
    explicit = encoder(embed(ids) * 1.0, padding_mask=ids != 0)
    np.testing.assert_allclose(to_np(explicit), padded, atol=1e-6)


@pytest.mark.parametrize("residual", ["pre", "post", "rezero"])
def test_keras_embedding_mask_is_honoured(residual):
    # A plain `keras.layers.Embedding(mask_zero=True)`, as keras-hub's
    # TransformerEncoder ignores (keras-hub issue 2220).
    embed = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)
    encoder = TransformerEncoder(2, HIDDEN, HEADS, residual=residual)
    decoder = TransformerDecoder(2, HIDDEN, HEADS, residual=residual)
    source, target = token_ids([7, 3], 7, 1), token_ids([5, 2], 5, 2)

    def run(source, target):
        return to_np(decoder(embed(target), encoder(embed(source))))

    padded = run(source, target)
    alone = run(source[1:, :3], target[1:, :2])
    np.testing.assert_allclose(padded[1, :2], alone[0], atol=1e-5)


@pytest.mark.parametrize("residual", ["pre", "deepnorm"])
def test_padded_decoder_equals_unpadded(residual):
    source_embed = TokenAndPositionEmbedding(VOCAB, 8, WIDTH, mask_zero=True)
    target_embed = TokenAndPositionEmbedding(VOCAB, 8, WIDTH, mask_zero=True)
    encoder = TransformerEncoder(2, HIDDEN, HEADS, residual=residual)
    decoder = TransformerDecoder(2, HIDDEN, HEADS, residual=residual)
    # Source and target lengths differ: cross-attention must use the
    # source padding mask, not the target one.
    source, target = token_ids([7, 3], 7, 1), token_ids([5, 2], 5, 2)

    def run(source, target):
        return to_np(
            decoder(target_embed(target), encoder(source_embed(source)))
        )

    padded = run(source, target)
    alone = run(source[1:, :3], target[1:, :2])
    np.testing.assert_allclose(padded[1, :2], alone[0], atol=1e-5)
    explicit = decoder(
        target_embed(target) * 1.0,
        encoder(source_embed(source) * 1.0, padding_mask=source != 0),
        decoder_padding_mask=target != 0,
        encoder_padding_mask=source != 0,
    )
    np.testing.assert_allclose(to_np(explicit), padded, atol=1e-6)


def test_encoder_attention_mask_is_honoured():
    x = np.random.default_rng(0).normal(size=(1, 4, WIDTH)).astype("float32")
    encoder = TransformerEncoder(1, HIDDEN, HEADS, residual="pre")
    block_diagonal = np.zeros((1, 4, 4), bool)
    block_diagonal[:, :2, :2] = block_diagonal[:, 2:, 2:] = True
    masked = to_np(encoder(x, attention_mask=block_diagonal))
    np.testing.assert_allclose(masked[:, :2], to_np(encoder(x[:, :2])), 1e-5)


@pytest.mark.parametrize("cross", [False, True], ids=["lm", "cross"])
@pytest.mark.parametrize("residual", ["pre", "post"])
def test_causal_with_dropout_in_training(residual, cross):
    # Gradients of early outputs w.r.t. later inputs are exactly zero in
    # one training run, so the dropout masks are the same by construction.
    decoder = TransformerDecoder(
        2,
        HIDDEN,
        HEADS,
        dropout=0.3,
        residual=residual,
        stochastic_depth_rate=0.2,
        seed=1,
    )
    rng = np.random.default_rng(0)
    x = tf.Variable(rng.normal(size=(2, 6, WIDTH)).astype("float32"))
    source = rng.normal(size=(2, 5, WIDTH)).astype("float32") if cross else None
    with tf.GradientTape() as tape:
        outputs = decoder(x, source, training=True)
        loss = tf.reduce_sum(outputs[:, :3] ** 2)
    gradient = to_np(tape.gradient(loss, x))
    assert np.all(gradient[:, 3:] == 0.0)
    assert np.all(np.abs(gradient[:, :3]).sum(-1) > 0)


def test_dlcl_starts_as_a_plain_stack_and_learns_weights():
    x = np.random.default_rng(0).normal(size=(2, 5, WIDTH)).astype("float32")
    plain = TransformerEncoder(3, HIDDEN, HEADS, residual="pre")
    dlcl = TransformerEncoder(
        3, HIDDEN, HEADS, residual="pre", layer_aggregation="dlcl"
    )
    plain(x), dlcl(x)
    for a, b in zip(plain.blocks, dlcl.blocks, strict=True):
        b.set_weights(a.get_weights())
    dlcl.final_norm.set_weights(plain.final_norm.get_weights())
    np.testing.assert_allclose(to_np(dlcl(x)), to_np(plain(x)), atol=1e-6)

    # The combination y = sum_j w_Lj x_j with a chosen row.
    weights = np.eye(4, dtype="float32")
    weights[3] = [0.5, 0.0, 0.0, 0.5]
    dlcl.aggregation_weights.assign(weights)
    block_outputs = [x]
    for block in plain.blocks:
        block_outputs.append(to_np(block(block_outputs[-1])))
    expected = plain.final_norm(0.5 * x + 0.5 * block_outputs[-1])
    np.testing.assert_allclose(to_np(dlcl(x)), to_np(expected), atol=1e-5)


def test_token_and_position_embedding_values():
    embed = TokenAndPositionEmbedding(
        VOCAB, 8, 4, position="sinusoidal", scale_embedding=True, mask_zero=True
    )
    ids = np.array([[3, 5, 0]])
    hidden = embed(ids)
    table = to_np(embed.token_embeddings)
    positions = np.arange(3)[:, None]
    angles = positions / 10000.0 ** (np.array([0, 2]) / 4)
    sinusoid = np.stack([np.sin(angles), np.cos(angles)], -1).reshape(3, 4)
    expected = 2.0 * table[ids[0]] + sinusoid
    np.testing.assert_allclose(to_np(hidden)[0], expected, atol=1e-5)
    np.testing.assert_array_equal(
        to_np(embed.compute_mask(ids)), [[True, True, False]]
    )
    # Weight tying: logits = h @ E^T.
    logits = embed(hidden, reverse=True)
    np.testing.assert_allclose(
        to_np(logits), to_np(hidden) @ table.T, atol=1e-5
    )
    # A shifted start gives the positions of a later step.
    step = embed(ids[:, 2:], start_index=2)
    np.testing.assert_allclose(to_np(step)[0], expected[2:], atol=1e-5)


def translation_model(residual="pre", max_length=8, layer_aggregation=None):
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    source_embed = TokenAndPositionEmbedding(
        VOCAB, max_length, WIDTH, mask_zero=True
    )
    target_embed = TokenAndPositionEmbedding(
        VOCAB, max_length, WIDTH, position="sinusoidal", mask_zero=True
    )
    stack = {"residual": residual, "layer_aggregation": layer_aggregation}
    # The encoder's DeepNorm constants depend on the decoder's depth.
    encoded = TransformerEncoder(
        2, HIDDEN, HEADS, num_decoder_layers=2, **stack
    )(source_embed(source))
    decoded = TransformerDecoder(2, HIDDEN, HEADS, **stack)(
        target_embed(target), encoded
    )
    logits = target_embed(decoded, reverse=True)
    return keras.Model([source, target], logits)


@pytest.mark.parametrize("residual", ["deepnorm", "pre"])
def test_encoder_decoder_model_keras_round_trip(residual, tmp_path):
    model = translation_model(residual=residual, layer_aggregation="dlcl")
    # Every weight random, DLCL's identity start included, so each one
    # must come back for the outputs to match.
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(weight + 0.1 * rng.normal(size=weight.shape))
    inputs = [token_ids([6, 3], 6, 1), token_ids([5, 2], 5, 2)]
    restored = assert_keras_round_trip(model, inputs, tmp_path, atol=0.0)
    decoder = next(
        layer
        for layer in restored.layers
        if isinstance(layer, TransformerDecoder)
    )
    assert decoder.has_cross_attention


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_is_finite_on_a_fully_padded_row(policy):
    keras.config.set_dtype_policy(policy)
    model = translation_model()
    source = token_ids([6, 0], 6, 1)
    target = token_ids([5, 0], 5, 2)
    logits = to_np(model([source, target]))
    assert np.all(np.isfinite(logits))
    decoder = model.get_layer(index=5)
    norm = decoder.blocks[0].self_attention.input_norm
    assert norm.dtype_policy.name == policy
    # Large activations and a fully masked source row stay finite too.
    large = np.full((2, 3, WIDTH), 300.0, "float32")
    source_padding = np.array([[1, 1, 1], [0, 0, 0]], bool)
    hidden = to_np(decoder(large, large, encoder_padding_mask=source_padding))
    assert np.all(np.isfinite(hidden))
    # The norm computes in float32: squares of 1,000 overflow float16
    # (largest 65,504), yet it equals the float32 formula to float16
    # precision.
    x = np.random.default_rng(3).normal(0.0, 1000.0, (2, 3, WIDTH))
    got = to_np(norm(x.astype("float32"))).astype("float64")
    expected = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=0.02)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_policy_given_to_a_stack_reaches_every_sublayer(policy):
    # The global policy stays float32: only the stacks' `dtype` says mixed.
    encoder = TransformerEncoder(2, HIDDEN, HEADS, dtype=policy)
    decoder = TransformerDecoder(2, HIDDEN, HEADS, dtype=policy)
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2, 6, WIDTH)).astype("float32")
    target = rng.normal(size=(2, 4, WIDTH)).astype("float32")
    source_padding = np.array([[1] * 6, [0] * 6], bool)
    encoded = encoder(source, padding_mask=source_padding)
    decoded = decoder(target, encoded, encoder_padding_mask=source_padding)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(decoded.dtype) == compute
    assert np.all(np.isfinite(to_np(decoded).astype("float32")))
    sublayers = [
        layer
        for stack in (encoder, decoder)
        for layer in stack._flatten_layers(include_self=False)
    ]
    assert {layer.dtype_policy.name for layer in sublayers} == {policy}
