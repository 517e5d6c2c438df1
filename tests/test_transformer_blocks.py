"""Transformer blocks: formulas, DeepNorm, argument checks, configs."""

import doctest
import re

import keras
import numpy as np
import pytest

from skipseq.layers import (
    CachedMultiHeadAttention,
    FeedForward,
    TokenAndPositionEmbedding,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    deepnorm,
    deepnorm_constants,
    feedforward,
    multi_head_attention,
    token_and_position_embedding,
    transformer_decoder,
    transformer_decoder_block,
    transformer_encoder,
    transformer_encoder_block,
)
from tests.layer_test_utils import assert_config_complete

WIDTH, HEADS, HIDDEN = 16, 2, 32
EPS = 1e-5


def to_np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def randomize(layer, seed=0):
    """Give every weight (biases and norm scales too) a random value."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(0.4 * rng.normal(size=weight.shape))


def np_layer_norm(x, norm):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    gamma, beta = (to_np(w) for w in (norm.gamma, norm.beta))
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_attention(x, layer, mask=None):
    b, t, w = x.shape
    d = w // layer.num_heads
    qkv = x @ to_np(layer.qkv_kernel) + to_np(layer.qkv_bias)
    q, k, v = (
        a.reshape(b, t, layer.num_heads, d) for a in np.split(qkv, 3, -1)
    )
    scores = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
    if mask is not None:
        scores = np.where(mask[:, None], scores, -1e9)
    out = np.einsum("bhts,bshd->bthd", np_softmax(scores), v)
    out = out.reshape(b, t, w)
    return out @ to_np(layer.output_kernel) + to_np(layer.output_bias)


def np_feedforward(x, layer):
    h = x @ to_np(layer.intermediate_kernel)
    h = h + to_np(layer.intermediate_bias)
    h = np.maximum(h, 0.0)
    return h @ to_np(layer.output_kernel) + to_np(layer.output_bias)


def inputs(batch=2, length=5, width=WIDTH, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, length, width)).astype("float32")


def test_attention_equals_formula_with_mask():
    x = inputs()
    layer = CachedMultiHeadAttention(HEADS)
    layer(x)
    randomize(layer)
    mask = np.tril(np.ones((5, 5), bool))[None].repeat(2, 0)
    mask[1, :, 3:] = False
    got = layer(x, attention_mask=mask)
    np.testing.assert_allclose(got, np_attention(x, layer, mask), atol=1e-5)


@pytest.mark.parametrize("residual", ["pre", "post"])
def test_encoder_block_equals_formula(residual):
    x = inputs()
    block = TransformerEncoderBlock(HIDDEN, HEADS, residual=residual)
    block(x)
    randomize(block)
    attention = block.self_attention.sublayer
    ffn = block.feedforward.sublayer
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    mask = np.broadcast_to(padding[:, None, :], (2, 5, 5))
    if residual == "pre":
        n1 = block.self_attention.input_norm
        n2 = block.feedforward.input_norm
        h = x + np_attention(np_layer_norm(x, n1), attention, mask)
        expected = h + np_feedforward(np_layer_norm(h, n2), ffn)
    else:
        n1 = block.self_attention.output_norm
        n2 = block.feedforward.output_norm
        h = np_layer_norm(x + np_attention(x, attention, mask), n1)
        expected = np_layer_norm(h + np_feedforward(h, ffn), n2)
    got = block(x, padding_mask=padding)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("residual", ["pre", "post"])
def test_decoder_block_equals_formula_with_cross_attention(residual):
    x, source = inputs(length=4), inputs(length=6, seed=2)
    block = TransformerDecoderBlock(HIDDEN, HEADS, residual=residual)
    block(x, source)
    randomize(block)
    cross = block.cross_attention.sublayer
    source_padding = np.array([[1] * 6, [1] * 4 + [0] * 2], bool)

    def np_cross(h):
        b, t, w = h.shape
        d = w // HEADS
        q = h @ to_np(cross.query_kernel) + to_np(cross.query_bias)
        kv = source @ to_np(cross.key_value_kernel)
        k, v = np.split(kv + to_np(cross.key_value_bias), 2, -1)
        q = q.reshape(b, t, HEADS, d)
        k, v = (a.reshape(b, 6, HEADS, d) for a in (k, v))
        scores = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
        scores = np.where(source_padding[:, None, None], scores, -1e9)
        out = np.einsum("bhts,bshd->bthd", np_softmax(scores), v)
        out = out.reshape(b, t, w) @ to_np(cross.output_kernel)
        return out + to_np(cross.output_bias)

    causal = np.tril(np.ones((4, 4), bool))[None].repeat(2, 0)

    def self_attention(h):
        return np_attention(h, block.self_attention.sublayer, causal)

    def ffn(h):
        return np_feedforward(h, block.feedforward.sublayer)

    sublayers = [
        (block.self_attention, self_attention),
        (block.cross_attention, np_cross),
        (block.feedforward, ffn),
    ]
    h = x
    for residual_layer, branch in sublayers:
        if residual == "pre":
            # y = x + F(LN(x))
            h = h + branch(np_layer_norm(h, residual_layer.input_norm))
        else:
            # y = LN(x + F(x))
            h = np_layer_norm(h + branch(h), residual_layer.output_norm)
    expected = h
    got = block(x, source, encoder_padding_mask=source_padding)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize(
    "activation, gate",
    [("glu", "sigmoid"), ("swiglu", "silu"), ("geglu", "gelu")],
)
def test_gated_feedforward_equals_formula(activation, gate):
    x = inputs()
    layer = FeedForward(HIDDEN, activation=activation)
    layer(x)
    randomize(layer)
    h = x @ to_np(layer.intermediate_kernel)
    h = h + to_np(layer.intermediate_bias)
    a, linear = np.split(h, 2, -1)
    gate_fn = keras.activations.get(gate)
    hidden = to_np(gate_fn(a)) * linear
    expected = hidden @ to_np(layer.output_kernel)
    expected = expected + to_np(layer.output_bias)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


def test_deepnorm_constants_equal_the_paper():
    # Hand-computed: (2*6)^(1/4), (8*6)^(-1/4), 0.81 * (6^5)^(1/16), ...
    c = deepnorm_constants(num_encoder_layers=6)
    assert c.encoder_alpha == pytest.approx(1.861210, abs=1e-6)
    assert c.encoder_beta == pytest.approx(0.379918, abs=1e-6)
    assert c.decoder_alpha is None
    c = deepnorm_constants(num_decoder_layers=6)
    assert c.decoder_alpha == pytest.approx(1.861210, abs=1e-6)
    assert c.decoder_beta == pytest.approx(0.379918, abs=1e-6)
    c = deepnorm_constants(6, 6)
    assert c.encoder_alpha == pytest.approx(1.417938, abs=1e-6)
    assert c.encoder_beta == pytest.approx(0.496989, abs=1e-6)
    assert c.decoder_alpha == pytest.approx(2.059767, abs=1e-6)
    assert c.decoder_beta == pytest.approx(0.343295, abs=1e-6)
    c = deepnorm_constants(18, 18)
    assert c.encoder_alpha == pytest.approx(1.998746, abs=1e-6)
    assert c.decoder_beta == pytest.approx(0.260847, abs=1e-6)


def test_deepnorm_constants_bad_arguments():
    with pytest.raises(ValueError, match="num_encoder_layers=-1"):
        deepnorm_constants(num_encoder_layers=-1)
    with pytest.raises(ValueError, match="num_decoder_layers=0"):
        deepnorm_constants(0, 0)


def test_stacks_give_blocks_the_deepnorm_constants():
    x, source = inputs(), inputs(length=6, seed=2)
    encoder = TransformerEncoder(
        6, HIDDEN, HEADS, residual="deepnorm", num_decoder_layers=6
    )
    decoder = TransformerDecoder(6, HIDDEN, HEADS, residual="deepnorm")
    decoder(x, encoder(source))
    lm = TransformerDecoder(6, HIDDEN, HEADS, residual="deepnorm")
    lm(x)
    for block in encoder.blocks:
        assert block.self_attention.alpha == pytest.approx(1.417938, 1e-6)
        assert block.deepnorm_beta == pytest.approx(0.496989, 1e-6)
    for block in decoder.blocks:
        assert block.cross_attention.alpha == pytest.approx(2.059767, 1e-6)
        assert block.feedforward.alpha == pytest.approx(2.059767, 1e-6)
    assert lm.blocks[0].self_attention.alpha == pytest.approx(1.861210, 1e-6)
    assert lm.blocks[0].deepnorm_beta == pytest.approx(0.379918, 1e-6)


def test_deepnorm_scales_value_output_and_feedforward_init():
    keras.utils.set_random_seed(0)
    beta = 0.25
    block = TransformerEncoderBlock(
        256, 2, residual="deepnorm", deepnorm_alpha=2.0, deepnorm_beta=beta
    )
    width = 128
    block(np.zeros((1, 2, width), "float32"))
    attention = block.self_attention.sublayer
    qkv = to_np(attention.qkv_kernel)
    xavier = np.sqrt(2.0 / (width + width))
    query_std, value_std = qkv[:, :width].std(), qkv[:, 2 * width :].std()
    assert query_std == pytest.approx(xavier, rel=0.05)
    assert value_std == pytest.approx(beta * xavier, rel=0.05)
    output_std = to_np(attention.output_kernel).std()
    assert output_std == pytest.approx(beta * xavier, rel=0.05)
    ffn = block.feedforward.sublayer
    ffn_xavier = np.sqrt(2.0 / (width + 256))
    ffn_std = to_np(ffn.intermediate_kernel).std()
    assert ffn_std == pytest.approx(beta * ffn_xavier, rel=0.05)
    assert block.self_attention.alpha == 2.0


@pytest.mark.parametrize(
    "residual, norm_position, scaling",
    [
        (None, "post", None),
        ("pre", "pre", None),
        ("sandwich", "sandwich", None),
        ("deepnorm", "post", "deepnorm"),
        ("rezero", "none", "rezero"),
    ],
)
def test_residual_variant_configures_the_core(residual, norm_position, scaling):
    block = TransformerEncoderBlock(
        HIDDEN, HEADS, residual=residual, norm="rms"
    )
    for sublayer in (block.self_attention, block.feedforward):
        assert sublayer.norm_position == norm_position
        assert sublayer.scaling == scaling
        assert sublayer.norm == "rms"


def test_normalize_first_selects_pre_norm():
    block = TransformerDecoderBlock(HIDDEN, HEADS, normalize_first=True)
    assert block.self_attention.norm_position == "pre"


def test_stack_final_norm_only_for_pre_norm_and_sandwich():
    x = inputs()
    for residual, has_norm in [("pre", True), ("sandwich", True)] + [
        ("post", False),
        ("rezero", False),
    ]:
        encoder = TransformerEncoder(2, HIDDEN, HEADS, residual=residual)
        encoder(x)
        assert (encoder.final_norm is not None) == has_norm, residual


def test_stochastic_depth_grows_linearly():
    encoder = TransformerEncoder(
        4, HIDDEN, HEADS, stochastic_depth_rate=0.4, residual="pre"
    )
    rates = [b.feedforward.stochastic_depth_rate for b in encoder.blocks]
    np.testing.assert_allclose(rates, [0.1, 0.2, 0.3, 0.4])


def test_bad_arguments_name_the_argument_and_value():
    with pytest.raises(ValueError, match="num_heads=3"):
        TransformerEncoderBlock(HIDDEN, 3)(inputs())
    with pytest.raises(ValueError, match="`norm`.*norm='batch'"):
        TransformerEncoderBlock(HIDDEN, HEADS, norm="batch")
    with pytest.raises(ValueError, match="dropout=-0.1"):
        TransformerDecoderBlock(HIDDEN, HEADS, dropout=-0.1)
    with pytest.raises(ValueError, match="dropout=-0.1"):
        TransformerEncoder(2, HIDDEN, HEADS, dropout=-0.1)
    with pytest.raises(ValueError, match="residual='deepnorm'"):
        TransformerEncoderBlock(
            HIDDEN, HEADS, normalize_first=True, residual="deepnorm"
        )
    with pytest.raises(ValueError, match="residual='postnorm'"):
        TransformerDecoder(2, HIDDEN, HEADS, residual="postnorm")
    with pytest.raises(ValueError, match="deepnorm_alpha=2.0"):
        TransformerEncoderBlock(HIDDEN, HEADS, deepnorm_alpha=2.0)
    with pytest.raises(ValueError, match="activation='tanh'"):
        FeedForward(HIDDEN, activation="tanh")
    with pytest.raises(ValueError, match="num_layers=0"):
        TransformerDecoder(0, HIDDEN, HEADS)
    with pytest.raises(ValueError, match="layer_aggregation='sum'"):
        TransformerEncoder(2, HIDDEN, HEADS, layer_aggregation="sum")
    with pytest.raises(ValueError, match="position='rotary'"):
        TokenAndPositionEmbedding(10, 8, 8, position="rotary")
    with pytest.raises(ValueError, match="embedding_dim=7"):
        TokenAndPositionEmbedding(10, 8, 7, position="sinusoidal")
    with pytest.raises(ValueError, match="num_heads=0"):
        CachedMultiHeadAttention(0)


def test_configs_are_complete_and_round_trip():
    x, source = inputs(), inputs(length=6, seed=2)
    layers = [
        CachedMultiHeadAttention(HEADS, dropout=0.1, seed=3),
        FeedForward(HIDDEN, activation="swiglu"),
        TokenAndPositionEmbedding(20, 8, WIDTH, position="sinusoidal"),
        TransformerEncoderBlock(
            HIDDEN, HEADS, residual="deepnorm", deepnorm_alpha=1.5
        ),
        TransformerDecoderBlock(HIDDEN, HEADS, norm="rms", residual="pre"),
        TransformerEncoder(
            2, HIDDEN, HEADS, layer_aggregation="dlcl", num_decoder_layers=3
        ),
        TransformerDecoder(2, HIDDEN, HEADS, stochastic_depth_rate=0.1),
    ]
    for layer in layers:
        assert_config_complete(layer)
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    # A rebuilt decoder block gets the cross-attention of the original.
    block = layers[4]
    block(x, source)
    clone = TransformerDecoderBlock.from_config(block.get_config())
    clone(x, source)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(clone(x, source), block(x, source), atol=1e-6)


@pytest.mark.parametrize(
    "module",
    [
        deepnorm,
        feedforward,
        multi_head_attention,
        token_and_position_embedding,
        transformer_decoder,
        transformer_decoder_block,
        transformer_encoder,
        transformer_encoder_block,
    ],
    ids=lambda m: m.__name__.rsplit(".", 1)[-1],
)
def test_docstring_examples_run(module):
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


# User mistakes are reported with the argument and its value, not by a
# failing TensorFlow kernel or a silently clamped result.
X = np.ones((2, 5, 8), "float32")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FeedForward(8, use_bias="no"), "use_bias='no'"),
        (
            lambda: CachedMultiHeadAttention(2, use_bias="no"),
            "use_bias='no'",
        ),
        (
            lambda: TokenAndPositionEmbedding(10, 5, 8, mask_zero="yes"),
            "mask_zero='yes'",
        ),
        (
            lambda: TransformerEncoderBlock(32, 2, normalize_first="yes"),
            "normalize_first='yes'",
        ),
        (lambda: TransformerEncoderBlock(32, 2, seed="s"), "seed='s'"),
        (lambda: TransformerDecoder(2, 32, 2, seed="s"), "seed='s'"),
        (
            lambda: TransformerDecoder(2, 32, 2, activation="tanh"),
            "activation='tanh'",
        ),
        (lambda: TransformerDecoder(2, 32, 2, norm="batch"), "norm='batch'"),
        (
            lambda: TransformerDecoder(2, 32, 2, layer_norm_epsilon=-1),
            "layer_norm_epsilon=-1",
        ),
        (
            lambda: TransformerEncoder(
                2, 32, 2, residual="plain", stochastic_depth_rate=0.1
            ),
            "residual='plain', stochastic_depth_rate=0.1",
        ),
        (
            lambda: TransformerDecoderBlock(
                32, 2, residual="plain", stochastic_depth_rate=0.2
            ),
            "residual='plain', stochastic_depth_rate=0.2",
        ),
    ],
)
def test_bad_constructor_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_attention_rejects_wrong_rank_and_batch():
    with pytest.raises(ValueError, match=r"`query` must have rank 3.*\(2, 8\)"):
        CachedMultiHeadAttention(2)(np.ones((2, 8), "float32"))
    with pytest.raises(
        ValueError, match=r"same batch size.*source.shape=\(3, 7, 8\)"
    ):
        TransformerDecoder(1, 16, 2)(X, np.ones((3, 7, 8), "float32"))


def test_masks_of_the_wrong_shape_are_named():
    block = TransformerEncoderBlock(16, 2)
    with pytest.raises(
        ValueError, match=r"`padding_mask` must have shape \(2, 5\)"
    ):
        block(X, padding_mask=np.ones((2, 4), bool))
    with pytest.raises(
        ValueError, match=r"`attention_mask` must broadcast.*\(2, 5, 4\)"
    ):
        block(X, attention_mask=np.ones((2, 5, 4), bool))
    with pytest.raises(ValueError, match=r"`encoder_padding_mask`.*\(2, 6\)"):
        TransformerDecoder(1, 16, 2)(
            X,
            np.ones((2, 7, 8), "float32"),
            encoder_padding_mask=np.ones((2, 6), bool),
        )


def test_cached_attention_rejects_an_index_past_the_cache():
    # A dynamic update slice would clamp the index and overwrite slot 3.
    attention = CachedMultiHeadAttention(2)
    attention(X)
    cache = {
        "key": np.zeros((2, 2, 4, 4), "float32"),
        "value": np.zeros((2, 2, 4, 4), "float32"),
    }
    with pytest.raises(
        ValueError, match=r"`cache_index` must lie in \[0, 3\].*cache_index=6"
    ):
        attention(X[:, :1], cache=cache, cache_index=6)


def test_embedding_reports_bad_tokens_and_positions():
    embed = TokenAndPositionEmbedding(10, 5, 8)
    with pytest.raises(ValueError, match=r"inputs.dtype=float32"):
        embed(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"inputs.shape=\(2, 3, 1\)"):
        embed(np.ones((2, 3, 1), "int32"))
    with pytest.raises(
        ValueError, match=r"below sequence_length=5.*inputs.shape=\(2, 9\)"
    ):
        embed(np.ones((2, 9), "int32"))
    with pytest.raises(ValueError, match=r"start_index=7"):
        embed(np.ones((2, 1), "int32"), start_index=7)
    with pytest.raises(ValueError, match=r"embedding_dim=8.*\(1, 2, 6\)"):
        embed(np.ones((1, 2, 6), "float32"), reverse=True)
