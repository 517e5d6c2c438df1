"""Tests for skipseq.decoding, driven by fake step functions.

Every step function here is a lookup table whose best sequences can be
worked out by hand or by enumerating all sequences in numpy.
"""

import doctest
import itertools
import re

import numpy as np
import pytest
import tensorflow as tf

from skipseq import decoding
from skipseq.decoding import _common, beam, greedy, sampling

PAD, START, END = 0, 1, 4


def log_probs(rows):
    """Normalise rows of probabilities into float32 log-probabilities."""
    rows = np.asarray(rows, "float64")
    return np.log(rows / rows.sum(-1, keepdims=True)).astype("float32")


def table_step(table):
    """A step function whose logits depend on the fed token only."""
    table = tf.constant(table)

    def step_fn(tokens, state, index):
        return tf.gather(table, tokens), state

    return step_fn


# A cycle START -> 2 -> 3 -> END -> PAD -> START, each link 0.7 likely.
CHAIN = log_probs(
    [
        [0.1, 0.7, 0.1, 0.05, 0.05],
        [0.1, 0.05, 0.7, 0.1, 0.05],
        [0.1, 0.05, 0.05, 0.7, 0.1],
        [0.05, 0.1, 0.1, 0.05, 0.7],
        [0.7, 0.1, 0.1, 0.05, 0.05],
    ]
)

# Greedy takes 2 (0.6) and then finds only a flat distribution; the
# runner-up 3 (0.4) leads to END with probability 0.9.
TRAP = log_probs(
    [
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.0001, 0.0001, 0.6, 0.4, 0.0001],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.025, 0.025, 0.025, 0.025, 0.9],
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ]
)


class HistoryModel:
    """Logits depend on the previous and the current token.

    The previous token is read from a history kept in the state, so the
    state must follow its hypothesis through beam reordering.
    """

    def __init__(self, vocab, max_length, seed):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(vocab, vocab, vocab)).astype("float32")
        self.max_length = max_length

    def initial_state(self, batch):
        return {"history": tf.zeros([batch, self.max_length], "int32")}

    def __call__(self, tokens, state, index):
        history = _common.write_position(state["history"], index, tokens)
        previous = tf.where(
            index > 0, history[:, tf.maximum(index - 1, 0)], PAD
        )
        pairs = tf.stack([previous, tokens], axis=-1)
        return tf.gather_nd(self.table, pairs), {"history": history}

    def log_softmax(self, sequence, index):
        """numpy log-probabilities of the token after `sequence[index]`."""
        previous = sequence[index - 1] if index > 0 else PAD
        logits = self.table[previous, sequence[index]].astype("float64")
        return logits - np.logaddexp.reduce(logits)


def lp(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


def enumerate_hypotheses(model, prompt, max_length, alpha):
    """Every hypothesis after `prompt`, with its penalised score."""
    vocab = model.table.shape[0]
    others = [t for t in range(vocab) if t != END]
    generated = max_length - len(prompt)
    found = []
    for length in range(1, generated + 1):
        endings = (
            [(END,)]
            if length < generated
            else [(END,)] + [(t,) for t in others]
        )
        for body in itertools.product(others, repeat=length - 1):
            for ending in endings:
                sequence = list(prompt) + list(body) + list(ending)
                logp = sum(
                    model.log_softmax(sequence, i)[sequence[i + 1]]
                    for i in range(len(prompt) - 1, len(sequence) - 1)
                )
                padded = sequence + [PAD] * (max_length - len(sequence))
                found.append((logp / lp(length, alpha), padded))
    found.sort(key=lambda item: -item[0])
    return found


def numpy_greedy(model, prompt, max_length):
    sequence = list(prompt)
    while len(sequence) < max_length and sequence[-1] != END:
        logp = model.log_softmax(sequence, len(sequence) - 1)
        sequence.append(int(np.argmax(logp)))
    return sequence + [PAD] * (max_length - len(sequence))


def count_calls(step_fn):
    """Wrap `step_fn`, counting its (eager) calls in `wrapped.calls`."""

    def wrapped(tokens, state, index):
        wrapped.calls += 1
        return step_fn(tokens, state, index)

    wrapped.calls = 0
    return wrapped


# ---------------------------------------------------------------- helpers


def test_tile_beams_repeats_rows_next_to_each_other():
    x = tf.constant([[1, 2], [3, 4]])
    tiled = decoding.tile_beams({"a": x, "b": (x[:, 0],)}, 3)
    np.testing.assert_array_equal(
        tiled["a"], [[1, 2], [1, 2], [1, 2], [3, 4], [3, 4], [3, 4]]
    )
    np.testing.assert_array_equal(tiled["b"][0], [1, 1, 1, 3, 3, 3])


def test_flatten_and_unflatten_beams_are_inverse():
    x = tf.reshape(tf.range(24), [2, 3, 4])
    flat = decoding.flatten_beams(x)
    assert flat.shape == (6, 4)
    np.testing.assert_array_equal(flat[4], x[1, 1])
    back = decoding.unflatten_beams({"x": flat}, 3)["x"]
    np.testing.assert_array_equal(back, x)


def test_unflatten_keeps_static_inner_shape_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 5], "float32")])
    def shape_of(x):
        out = decoding.unflatten_beams(x, 2)
        assert out.shape.as_list() == [None, 2, 5]
        return tf.shape(out)

    np.testing.assert_array_equal(shape_of(tf.zeros([6, 5])), [3, 2, 5])


def test_gather_beams_picks_per_batch_row():
    x = tf.constant([[[0], [1], [2]], [[10], [11], [12]]])
    picked = decoding.gather_beams(x, tf.constant([[2, 2], [0, 1]]))
    np.testing.assert_array_equal(picked[..., 0], [[2, 2], [10, 11]])


def test_gnmt_length_penalty_formula():
    got = decoding.gnmt_length_penalty(tf.constant([1, 3, 7]), 0.6)
    np.testing.assert_allclose(got, [1.0, (8 / 6) ** 0.6, 2.0**0.6], 1e-6)


def test_filter_top_k_keeps_k_largest():
    logits = tf.constant([[0.5, 3.0, 1.0, 2.0]])
    kept = decoding.filter_top_k(logits, 2).numpy()
    np.testing.assert_array_equal(kept[0, 1:4:2], [3.0, 2.0])
    assert (kept[0, [0, 2]] <= _common.NEG_INF).all()


def test_filter_top_p_keeps_smallest_nucleus():
    logits = tf.math.log(tf.constant([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]))
    kept = tf.nn.softmax(decoding.filter_top_p(logits, 0.6)).numpy()
    # Row 0: 0.5 alone is below 0.6, so 0.3 joins; row 1: 0.9 suffices.
    np.testing.assert_allclose(kept, [[0, 0.625, 0.375], [1, 0, 0]], 1e-6)


# ----------------------------------------------------------------- greedy


def test_greedy_follows_the_chain_and_pads_after_end():
    step_fn = count_calls(table_step(CHAIN))
    tokens = decoding.greedy_search(
        step_fn, tf.constant([START, 2]), (), max_length=7, end_token=END
    )
    np.testing.assert_array_equal(
        tokens, [[1, 2, 3, 4, 0, 0, 0], [2, 3, 4, 0, 0, 0, 0]]
    )
    # The loop stops once both rows have ended, at position 3.
    assert step_fn.calls == 3


def test_greedy_without_end_token_fills_max_length():
    tokens = decoding.greedy_search(
        table_step(CHAIN), tf.constant([START]), (), max_length=6
    )
    np.testing.assert_array_equal(tokens, [[1, 2, 3, 4, 0, 1]])


def test_greedy_forces_prompt_with_per_row_lengths():
    # Row 0 forces 1, 3, 3 (END inside a prompt does not end the row);
    # row 1 forces only 2, and its 4 and 3 are replaced.
    prompt = tf.constant([[START, END, 3], [2, 4, 3]])
    tokens = decoding.greedy_search(
        table_step(CHAIN),
        prompt,
        (),
        max_length=6,
        end_token=END,
        prompt_length=tf.constant([3, 1]),
    )
    np.testing.assert_array_equal(
        tokens, [[1, 4, 3, 4, 0, 0], [2, 3, 4, 0, 0, 0]]
    )


def test_greedy_feeds_the_prompt_through_the_state():
    model = HistoryModel(vocab=4, max_length=6, seed=3)
    prompt = [[2, 3, 0], [3, 3, 2]]
    tokens = decoding.greedy_search(
        model, tf.constant(prompt), model.initial_state(2), 6, END
    )
    for row, expected in zip(tokens.numpy(), prompt, strict=True):
        np.testing.assert_array_equal(row, numpy_greedy(model, expected, 6))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_greedy_one_row_equals_its_row_in_a_batch(jit_compile):
    # A single row is decoded alongside a copy of itself (see token_loop):
    # the copy must not leak into the result or the state.
    model = HistoryModel(vocab=4, max_length=6, seed=3)
    prompts = [[3, 3, 2], [2, 3, 0]]

    @tf.function(jit_compile=jit_compile)
    def decode(prompt):
        batch = tf.shape(prompt)[0]
        return decoding.greedy_search(
            model, prompt, model.initial_state(batch), 6, END
        )

    both = decode(tf.constant(prompts)).numpy()
    for r, prompt in enumerate(prompts):
        alone = decode(tf.constant([prompt])).numpy()
        assert alone.shape == (1, 6)
        np.testing.assert_array_equal(alone[0], both[r])
        np.testing.assert_array_equal(alone[0], numpy_greedy(model, prompt, 6))


# ------------------------------------------------------------------- beam


def test_beam_search_escapes_the_greedy_trap():
    start = tf.constant([START])
    greedy_tokens = decoding.greedy_search(table_step(TRAP), start, (), 4, END)
    assert greedy_tokens[0, 1] == 2
    tokens, scores = decoding.beam_search(
        table_step(TRAP), start, (), 4, end_token=END, beam_size=2
    )
    np.testing.assert_array_equal(tokens[0, 0], [1, 3, 4, 0])
    np.testing.assert_allclose(scores[0, 0], TRAP[1, 3] + TRAP[3, 4], 1e-5)


def test_beam_search_keeps_a_static_batch_with_another_axis_unknown():
    # A state of shape (batch, None) with a known batch: the beam reorder
    # reshapes must not turn the batch size unknown inside the loop.
    @tf.function(input_signature=[tf.TensorSpec([2, None], "float32")])
    def search(memory):
        def step_fn(tokens, state, index):
            return tf.gather(TRAP, tokens), state

        return decoding.beam_search(
            step_fn, tf.fill([2], START), memory, 4, end_token=END, beam_size=2
        )

    tokens, scores = search(tf.zeros([2, 3]))
    np.testing.assert_array_equal(tokens[:, 0], [[1, 3, 4, 0]] * 2)
    np.testing.assert_allclose(scores[:, 0], TRAP[1, 3] + TRAP[3, 4], 1e-5)


def test_beam_size_one_equals_greedy():
    model = HistoryModel(vocab=5, max_length=7, seed=0)
    # END is unlikely everywhere, so no ended hypothesis beats the path.
    model.table[..., END] -= 30.0
    start = tf.constant([2, 3, 0])
    state = model.initial_state(3)
    expected = decoding.greedy_search(model, start, state, 7, END)
    tokens, _ = decoding.beam_search(model, start, state, 7, END, 1)
    np.testing.assert_array_equal(tokens[:, 0], expected)


@pytest.mark.parametrize("alpha", [0.0, 0.7, 2.0], ids=lambda a: f"alpha{a}")
def test_beam_search_equals_exhaustive_search(alpha):
    # With 4 non-end tokens and at most 3 generated positions, 16 beams
    # keep every prefix alive, so beam search must return the exact top
    # 16; the history state makes any misordered state row visible.
    model = HistoryModel(vocab=5, max_length=5, seed=1)
    prompt = [[START, 2, 3], [3, 2, 2]]
    lengths = [2, 3]
    tokens, scores = decoding.beam_search(
        model,
        tf.constant(prompt),
        model.initial_state(2),
        5,
        END,
        16,
        length_penalty=alpha,
        prompt_length=tf.constant(lengths),
    )
    for row in range(2):
        best = enumerate_hypotheses(
            model, prompt[row][: lengths[row]], 5, alpha
        )[:16]
        np.testing.assert_array_equal(tokens[row], [h for _, h in best])
        np.testing.assert_allclose(scores[row], [s for s, _ in best], 1e-4)
    assert np.all(np.diff(scores.numpy(), axis=1) <= 0)


def test_length_penalty_reranks_towards_longer_hypotheses():
    # From START: END at once (0.45), or 2 -> 3 -> END (0.33 * 0.97 ** 2).
    table = log_probs(
        [
            [1, 1, 1, 1, 1],
            [0.01, 0.01, 0.33, 0.2, 0.45],
            [0.01, 0.01, 0.005, 0.97, 0.005],
            [0.01, 0.01, 0.005, 0.005, 0.97],
            [1, 1, 1, 1, 1],
        ]
    )
    short = table[1, 4]
    long = table[1, 2] + table[2, 3] + table[3, 4]
    start = tf.constant([START])
    step_fn = table_step(table)

    tokens, scores = decoding.beam_search(step_fn, start, (), 6, END, 2)
    np.testing.assert_array_equal(tokens[0, 0], [1, 4, 0, 0, 0, 0])
    np.testing.assert_allclose(scores[0, 0], short, 1e-5)

    tokens, scores = decoding.beam_search(
        step_fn, start, (), 6, END, 2, length_penalty=2.0
    )
    np.testing.assert_array_equal(
        tokens[0], [[1, 2, 3, 4, 0, 0], [1, 4] + [0] * 4]
    )
    np.testing.assert_allclose(
        scores[0], [long / lp(3, 2.0), short / lp(1, 2.0)], 1e-5
    )


def test_beam_search_stops_once_no_alive_hypothesis_can_win():
    step_fn = count_calls(table_step(CHAIN))
    tokens, scores = decoding.beam_search(
        step_fn, tf.constant([START]), (), 40, END, 2
    )
    np.testing.assert_array_equal(tokens[0, 0, :5], [1, 2, 3, 4, 0])
    np.testing.assert_allclose(scores[0, 0], 3 * np.log(0.7), 1e-5)
    assert step_fn.calls < 10


# --------------------------------------------------------------- sampling


def random_step(vocab, seed):
    rng = np.random.default_rng(seed)
    return table_step(rng.normal(size=(vocab, vocab)).astype("float32"))


@pytest.mark.parametrize(
    "options",
    [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 0.0}],
    ids=["top_k_1", "top_p_tiny", "temperature_0"],
)
def test_degenerate_sampling_equals_greedy(options):
    step_fn = random_step(7, seed=2)
    start = tf.constant([0, 1, 2, 3, 4, 5])
    expected = decoding.greedy_search(step_fn, start, (), 8, END)
    for seed in (0, 1):
        tokens = decoding.sample(
            step_fn, start, (), 8, END, seed=seed, **options
        )
        np.testing.assert_array_equal(tokens, expected)


def test_sampling_is_reproducible_per_seed():
    step_fn = table_step(np.zeros([10, 10], "float32"))  # flat
    start = tf.zeros([4], "int32")
    first = decoding.sample(step_fn, start, (), 20, seed=5)
    again = decoding.sample(step_fn, start, (), 20, seed=tf.constant(5))
    other = decoding.sample(step_fn, start, (), 20, seed=6)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first.numpy() != other.numpy()) > 0.5


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, [0.2, 0.3, 0.5]),
        ({"temperature": 2.0}, np.sqrt([0.2, 0.3, 0.5])),
        ({"top_k": 2}, [0.0, 0.375, 0.625]),
        ({"top_p": 0.6}, [0.0, 0.375, 0.625]),
    ],
    ids=["plain", "temperature_2", "top_k_2", "top_p_0.6"],
)
def test_sample_frequencies_match_the_softmax(options, expected):
    expected = np.asarray(expected) / np.sum(expected)
    logits = tf.math.log(tf.constant([[0.2, 0.3, 0.5]]))

    def step_fn(tokens, state, index):
        return tf.repeat(logits, tf.shape(tokens)[0], axis=0), state

    tokens = decoding.sample(
        step_fn, tf.zeros([20000], "int32"), (), 3, seed=11, **options
    )
    counts = np.bincount(tokens.numpy()[:, 1:].ravel(), minlength=3)
    # Standard error of each frequency is below 0.003.
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.012)


# ------------------------------------------------------------ arguments


def no_step(tokens, state, index):
    raise AssertionError("step_fn must not be called")


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: decoding.sample(no_step, [1], (), 4, temperature=-1.0),
            "temperature=-1.0",
        ),
        (lambda: decoding.sample(no_step, [1], (), 4, top_p=0.0), "top_p=0.0"),
        (lambda: decoding.sample(no_step, [1], (), 4, top_p=1.5), "top_p=1.5"),
        (lambda: decoding.sample(no_step, [1], (), 4, top_k=0), "top_k=0"),
        (lambda: decoding.sample(no_step, [1], (), 4, seed="x"), "seed='x'"),
        (lambda: decoding.greedy_search(no_step, [1], (), 0), "max_length=0"),
        (
            lambda: decoding.greedy_search(no_step, [1], (), 4, end_token=-2),
            "end_token=-2",
        ),
        (
            lambda: decoding.greedy_search(
                no_step, [[1, 2]], (), 4, prompt_length=3
            ),
            "prompt_length=3",
        ),
        (
            lambda: decoding.greedy_search(no_step, [1.5], (), 4),
            "start_tokens.dtype=float32",
        ),
        (
            lambda: decoding.greedy_search(no_step, [[1, 2, 3]], (), 2),
            "start_tokens.shape=(1, 3)",
        ),
        (
            lambda: decoding.beam_search(no_step, [1], (), 4, END, 0),
            "beam_size=0",
        ),
        (
            lambda: decoding.beam_search(
                no_step, [1], (), 4, END, 2, length_penalty="long"
            ),
            "length_penalty='long'",
        ),
    ],
    ids=[
        "temperature",
        "top_p_zero",
        "top_p_above_one",
        "top_k",
        "seed",
        "max_length",
        "end_token",
        "prompt_length",
        "start_dtype",
        "start_shape",
        "beam_size",
        "length_penalty",
    ],
)
def test_bad_arguments_raise_naming_argument_and_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_top_k_above_vocabulary_raises():
    with pytest.raises(
        ValueError, match=re.escape("size 5. Received: top_k=6")
    ):
        decoding.sample(table_step(CHAIN), [1], (), 4, top_k=6)


# ------------------------------------------------------------- XLA, tracing


def test_xla_equals_eager_and_does_not_retrace():
    model = HistoryModel(vocab=6, max_length=8, seed=4)
    traces = []

    @tf.function(jit_compile=True)
    def decode_all(prompt, lengths, seed):
        traces.append(1)
        state = model.initial_state(tf.shape(prompt)[0])
        greedy_tokens = decoding.greedy_search(
            model, prompt, state, 8, END, prompt_length=lengths
        )
        sampled = decoding.sample(
            model,
            prompt,
            state,
            8,
            END,
            top_k=4,
            top_p=0.9,
            seed=seed,
            prompt_length=lengths,
        )
        beams, scores = decoding.beam_search(
            model,
            prompt,
            state,
            8,
            END,
            3,
            length_penalty=0.6,
            prompt_length=lengths,
        )
        return greedy_tokens, sampled, beams, scores

    prompt = tf.constant([[2, 3], [5, 0], [1, 2]])
    lengths = tf.constant([2, 1, 2])
    seed = tf.constant([3, 4], "int64")
    compiled = decode_all(prompt, lengths, seed)
    eager = decode_all.python_function(prompt, lengths, seed)
    for got, expected in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5)

    decode_all(prompt[::-1], lengths[::-1], seed + 1)
    assert len(traces) == 2  # one trace and one eager call


# ------------------------------------------------------------ docstrings


@pytest.mark.parametrize("module", [decoding, greedy, sampling, beam])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_public_helpers_check_their_arguments():
    logits = tf.zeros((2, 3))
    with pytest.raises(ValueError, match=r"top_k=0"):
        decoding.filter_top_k(logits, 0)
    with pytest.raises(ValueError, match=r"top_k='2'"):
        decoding.filter_top_k(logits, "2")
    with pytest.raises(ValueError, match=r"top_p=0"):
        decoding.filter_top_p(logits, 0)
    with pytest.raises(ValueError, match=r"top_p=2"):
        decoding.filter_top_p(logits, 2)
    with pytest.raises(ValueError, match=r"beam_size=0"):
        decoding.tile_beams(logits, 0)
    with pytest.raises(ValueError, match=r"beam_size=0"):
        decoding.unflatten_beams(logits, 0)


def test_float_prompt_length_is_rejected():
    def step_fn(tokens, state, index):
        return tf.zeros((tf.shape(tokens)[0], 3)), state

    with pytest.raises(ValueError, match=r"prompt_length=2.0"):
        decoding.greedy_search(
            step_fn, tf.zeros((1, 3), "int32"), (), 5, prompt_length=2.0
        )
