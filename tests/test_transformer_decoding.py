"""Incremental decoding with the fixed-shape cache, and XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from skipseq.layers import (
    CachedMultiHeadAttention,
    TransformerDecoder,
    TransformerEncoder,
)

WIDTH, HEADS, HIDDEN = 16, 2, 32
BATCH, SOURCE, TARGET = 2, 6, 5


def to_np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def random(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype("float32")


def make(residual, cross, layer_aggregation=None):
    """A built decoder, its encoder output (or None) and source mask."""
    decoder = TransformerDecoder(
        2, HIDDEN, HEADS, residual=residual, layer_aggregation=layer_aggregation
    )
    target = random(BATCH, TARGET, WIDTH, seed=1)
    if not cross:
        decoder(target)
        return decoder, target, None, None
    encoder = TransformerEncoder(2, HIDDEN, HEADS, residual=residual)
    source_padding = np.ones((BATCH, SOURCE), bool)
    source_padding[1, 4:] = False
    encoded = encoder(random(BATCH, SOURCE, WIDTH, seed=2))
    decoder(target, encoded, encoder_padding_mask=source_padding)
    return decoder, target, encoded, source_padding


def decode_steps(decoder, target, encoded, source_padding, chunks):
    cache = decoder.init_cache(
        BATCH,
        TARGET,
        encoder_outputs=encoded,
        encoder_padding_mask=source_padding,
    )
    outputs, start = [], 0
    for size in chunks:
        step, cache = decoder.call_with_cache(
            target[:, start : start + size], cache, start
        )
        outputs.append(to_np(step))
        start += size
    return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("cross", [False, True], ids=["lm", "cross"])
@pytest.mark.parametrize("residual", ["pre", "post", "deepnorm"])
def test_cached_steps_equal_the_full_causal_call(residual, cross):
    decoder, target, encoded, source_padding = make(residual, cross)
    full = to_np(
        decoder(target, encoded, encoder_padding_mask=source_padding)
        if cross
        else decoder(target)
    )
    stepped = decode_steps(decoder, target, encoded, source_padding, [1] * 5)
    np.testing.assert_allclose(stepped, full, atol=1e-5)
    # A prompt of several steps, then single steps.
    chunked = decode_steps(decoder, target, encoded, source_padding, [3, 1, 1])
    np.testing.assert_allclose(chunked, full, atol=1e-5)


def test_cached_dlcl_decoder_equals_full_call():
    decoder, target, _, _ = make("pre", cross=False, layer_aggregation="dlcl")
    rows = np.eye(3, dtype="float32") + np.tril(np.full((3, 3), 0.3), -1)
    decoder.aggregation_weights.assign(rows)
    full = to_np(decoder(target))
    stepped = decode_steps(decoder, target, None, None, [1] * 5)
    np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_cache_structure_and_beam_reorder():
    decoder, target, encoded, source_padding = make("pre", cross=True)
    cache = decoder.init_cache(BATCH, TARGET, encoded, source_padding)
    assert sorted(cache) == [
        "cross_key",
        "cross_value",
        "encoder_padding_mask",
        "self_key",
        "self_value",
    ]
    assert len(cache["self_key"]) == 2
    assert tuple(cache["self_key"][0].shape) == (BATCH, HEADS, 8, TARGET)
    assert tuple(cache["self_value"][0].shape) == (BATCH, HEADS, TARGET, 8)
    assert tuple(cache["cross_key"][1].shape) == (BATCH, HEADS, 8, SOURCE)
    assert tuple(cache["cross_value"][1].shape) == (BATCH, HEADS, SOURCE, 8)
    _, cache = decoder.call_with_cache(target[:, :2], cache, 0)
    # Swapping the batch rows of the cache swaps the next outputs.
    order = np.array([1, 0])
    swapped = keras.tree.map_structure(
        lambda t: keras.ops.take(t, order, axis=0), cache
    )
    step, _ = decoder.call_with_cache(target[:, 2:3], cache, 2)
    step_swapped, _ = decoder.call_with_cache(target[order, 2:3], swapped, 2)
    np.testing.assert_allclose(
        to_np(step_swapped), to_np(step)[order], atol=1e-6
    )


def split_heads(projected, part):
    """Part `part` of a fused projection as `(batch, heads, T, head_dim)`."""
    batch, length, _ = projected.shape
    parts = projected.reshape(batch, length, -1, HEADS, WIDTH // HEADS)
    return parts[:, :, part].transpose(0, 2, 1, 3)


# Documented layouts: keys (batch, heads, head_dim, length), values
# (batch, heads, length, head_dim).
CACHE_LAYOUT = {"key": (0, 1, 3, 2), "value": (0, 1, 2, 3)}


def test_cache_is_head_major_and_holds_the_projections():
    # The steps written at cache_index land on the length axis, unwritten
    # slots stay zero.
    attention = CachedMultiHeadAttention(HEADS)
    queries = random(BATCH, 3, WIDTH, seed=3)
    attention(queries)
    head_dim = WIDTH // HEADS
    zeros = {
        "key": np.zeros((BATCH, HEADS, head_dim, TARGET), "float32"),
        "value": np.zeros((BATCH, HEADS, TARGET, head_dim), "float32"),
    }
    _, cache = attention(queries, cache=zeros, cache_index=1)
    qkv = queries @ to_np(attention.qkv_kernel) + to_np(attention.qkv_bias)
    for name, part in (("key", 1), ("value", 2)):
        expected = np.zeros((BATCH, HEADS, TARGET, head_dim), "float32")
        expected[:, :, 1:4] = split_heads(qkv, part)
        np.testing.assert_allclose(
            to_np(cache[name]),
            expected.transpose(CACHE_LAYOUT[name]),
            atol=1e-5,
        )

    cross = CachedMultiHeadAttention(HEADS)
    source = random(BATCH, SOURCE, 12, seed=4)
    cross(queries, source)
    key_value = cross.compute_key_value(source)
    projected = source @ to_np(cross.key_value_kernel) + to_np(
        cross.key_value_bias
    )
    for name, part in (("key", 0), ("value", 1)):
        np.testing.assert_allclose(
            to_np(key_value[name]),
            split_heads(projected, part).transpose(CACHE_LAYOUT[name]),
            atol=1e-5,
        )


def test_left_padded_prompt_with_cache_padding_mask():
    decoder, target, _, _ = make("pre", cross=False)
    padding = np.ones((BATCH, TARGET), bool)
    padding[1, :2] = False
    full = to_np(decoder(target, decoder_padding_mask=padding))
    cache = decoder.init_cache(BATCH, TARGET)
    outputs = []
    for index in range(TARGET):
        step, cache = decoder.call_with_cache(
            target[:, index : index + 1],
            cache,
            index,
            decoder_padding_mask=padding,
        )
        outputs.append(to_np(step))
    stepped = np.concatenate(outputs, axis=1)
    np.testing.assert_allclose(stepped[0], full[0], atol=1e-5)
    np.testing.assert_allclose(stepped[1, 2:], full[1, 2:], atol=1e-5)


def test_compiled_decode_step_is_traced_once_and_matches():
    decoder, target, encoded, source_padding = make("post", cross=True)
    traces = []

    @tf.function(jit_compile=True)
    def step(inputs, cache, index):
        traces.append(1)
        return decoder.call_with_cache(inputs, cache, index)

    eager = decode_steps(decoder, target, encoded, source_padding, [1] * 5)
    for _ in range(2):
        cache = decoder.init_cache(BATCH, TARGET, encoded, source_padding)
        outputs = []
        for index in range(TARGET):
            out, cache = step(
                target[:, index : index + 1], cache, tf.constant(index)
            )
            outputs.append(to_np(out))
        np.testing.assert_allclose(
            np.concatenate(outputs, axis=1), eager, atol=1e-5
        )
    assert len(traces) == 1


def test_xla_full_call_equals_eager():
    decoder, target, _, source_padding = make("pre", cross=True)
    encoder = TransformerEncoder(2, HIDDEN, HEADS, residual="pre")
    source = random(BATCH, SOURCE, WIDTH, seed=2)
    mask = tf.constant(source_padding)

    def forward(source, target):
        encoded = encoder(source, padding_mask=mask)
        return encoded, decoder(target, encoded, encoder_padding_mask=mask)

    compiled = tf.function(forward, jit_compile=True)
    for got, eager in zip(
        compiled(source, target), forward(source, target), strict=True
    ):
        np.testing.assert_allclose(to_np(got), to_np(eager), atol=1e-5)


def test_init_cache_requires_encoder_outputs_for_cross_attention():
    decoder, _, _, _ = make("pre", cross=True)
    with pytest.raises(ValueError, match="encoder_outputs=None"):
        decoder.init_cache(BATCH, TARGET)
    with pytest.raises(ValueError, match="unbuilt"):
        TransformerDecoder(1, HIDDEN, HEADS).init_cache(BATCH, TARGET)


def _built_decoder():
    decoder = TransformerDecoder(2, 16, num_heads=2)
    source = np.ones((2, 7, 8), "float32")
    decoder(np.ones((2, 4, 8), "float32"), source)
    return decoder, source


@pytest.mark.parametrize("index", [4, 10, -1])
def test_call_with_cache_rejects_an_index_outside_the_cache(index):
    # Before, the update slice clamped the index and gave wrong outputs.
    decoder, source = _built_decoder()
    cache = decoder.init_cache(2, 4, encoder_outputs=source)
    step = np.ones((2, 1, 8), "float32")
    with pytest.raises(
        ValueError, match=rf"lie in \[0, 3\].*cache_index={index}"
    ):
        decoder.call_with_cache(step, cache, index)


def test_call_with_cache_names_bad_arguments():
    decoder, source = _built_decoder()
    cache = decoder.init_cache(2, 4, encoder_outputs=source)
    step = np.ones((2, 1, 8), "float32")
    with pytest.raises(ValueError, match=r"cache_index='0'"):
        decoder.call_with_cache(step, cache, "0")
    with pytest.raises(ValueError, match=r"Received: cache=None"):
        decoder.call_with_cache(step, None, 0)
    with pytest.raises(ValueError, match=r"a dict with keys \['self_key'\]"):
        decoder.call_with_cache(step, {"self_key": cache["self_key"]}, 0)
    with pytest.raises(ValueError, match=r"inputs.shape=\(3, 1, 8\)"):
        decoder.call_with_cache(np.ones((3, 1, 8), "float32"), cache, 0)
    with pytest.raises(ValueError, match=r"The 5 steps do not fit"):
        decoder.call_with_cache(np.ones((2, 5, 8), "float32"), cache, 0)
    with pytest.raises(
        ValueError, match=r"decoder_padding_mask.shape=\(2, 1\)"
    ):
        decoder.call_with_cache(
            step, cache, 0, decoder_padding_mask=np.ones((2, 1), bool)
        )
    with pytest.raises(ValueError, match="before `call_with_cache`"):
        TransformerDecoder(1, 16, 2).call_with_cache(step, cache, 0)


def test_init_cache_names_bad_arguments():
    decoder, source = _built_decoder()
    with pytest.raises(ValueError, match=r"max_length=0"):
        decoder.init_cache(2, 0, encoder_outputs=source)
    with pytest.raises(ValueError, match=r"batch_size='2'"):
        decoder.init_cache("2", 4, encoder_outputs=source)
    with pytest.raises(ValueError, match=r"encoder_outputs.shape=\(2, 7, 8\)"):
        decoder.init_cache(3, 4, encoder_outputs=source)
    with pytest.raises(ValueError, match=r"encoder_outputs.shape=\(2, 7, 6\)"):
        decoder.init_cache(2, 4, encoder_outputs=np.ones((2, 7, 6), "float32"))
