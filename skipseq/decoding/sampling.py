"""Random sampling with temperature, top-k and top-p (nucleus) filters."""

import numbers

import tensorflow as tf

from skipseq.decoding import _common


def filter_top_k(logits, top_k):
    """Keep the `top_k` largest logits of each row, set the rest very low.

    Args:
        logits: float tensor `(batch, vocab)`.
        top_k: Python int between 1 and `vocab`.

    Tokens tied with the `top_k`-th largest logit are kept as well.
    """
    _common.check_int("top_k", top_k, 1)
    vocab = logits.shape[-1]
    if vocab is not None and top_k > vocab:
        raise ValueError(
            f"`top_k` must be at most the vocabulary size {vocab}. "
            f"Received: top_k={top_k}"
        )
    kth = tf.math.top_k(logits, k=top_k).values[:, -1:]
    return tf.where(logits >= kth, logits, _common.NEG_INF)


def filter_top_p(logits, top_p):
    """Keep the smallest set of likeliest tokens whose mass reaches `top_p`.

    Tokens are taken in order of decreasing probability while the mass of
    the tokens before them is below `top_p`, so the likeliest token is
    always kept (Holtzman et al. 2020, "The Curious Case of Neural Text
    Degeneration"). Tokens tied with the last kept logit are kept as well.

    Args:
        logits: float tensor `(batch, vocab)`.
        top_p: Python float in (0, 1].
    """
    _check_top_p(top_p)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    mass_before = tf.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
    keep = mass_before < top_p
    # The smallest kept logit of each row, (batch, 1).
    threshold = tf.reduce_min(
        tf.where(keep, ordered, -_common.NEG_INF), axis=-1, keepdims=True
    )
    return tf.where(logits >= threshold, logits, _common.NEG_INF)


# XLA and the TensorFlow kernels draw different numbers from the same
# stateless seed, so the draw is always compiled: eager, graph and
# jit-compiled callers then get the same tokens for the same seed.
@tf.function(jit_compile=True, reduce_retracing=True)
def _draw(logits, seed):
    drawn = tf.random.stateless_categorical(logits, 1, seed=seed, dtype="int32")
    return drawn[:, 0]


def _check_sampling_args(temperature, top_k, top_p):
    if (
        not isinstance(temperature, numbers.Real)
        or isinstance(temperature, bool)
        or not temperature >= 0
    ):
        raise ValueError(
            "`temperature` must be a number >= 0 (0 means greedy). "
            f"Received: temperature={temperature!r}"
        )
    if top_k is not None:
        _common.check_int("top_k", top_k, 1)
    if top_p is not None:
        _check_top_p(top_p)


def _check_top_p(top_p):
    if (
        not isinstance(top_p, numbers.Real)
        or isinstance(top_p, bool)
        or not 0 < top_p <= 1
    ):
        raise ValueError(
            f"`top_p` must be a number in (0, 1]. Received: top_p={top_p!r}"
        )


def _seed_pair(seed):
    """Turn `seed` into the int32 `(2,)` tensor stateless ops expect.

    int32, because XLA has no stateless categorical for int64 seeds.
    """
    if seed is None:
        # Fresh randomness on every call; not reproducible by design.
        return tf.random.uniform([2], maxval=2**31 - 1, dtype="int32")
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return tf.constant([seed, 0], dtype="int32")
    if not tf.is_tensor(seed) or not seed.dtype.is_integer:
        raise ValueError(
            "`seed` must be None, an int, or an integer tensor of shape () "
            f"or (2,). Received: seed={seed!r}"
        )
    seed = tf.cast(seed, "int32")
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.constant(0, "int32")])
    if seed.shape != (2,):
        raise ValueError(
            "`seed` must be None, an int, or an integer tensor of shape () "
            f"or (2,). Received: seed.shape={seed.shape}"
        )
    return seed


def sample(
    step_fn,
    start_tokens,
    state,
    max_length,
    end_token=None,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    pad_token=0,
    prompt_length=None,
    return_state=False,
):
    """Decode by drawing each token from the (filtered) softmax.

    The loop, prompt forcing and end handling are those of
    `greedy_search`. At each free position the logits are divided by
    `temperature`, restricted to the `top_k` largest and then to the
    nucleus of mass `top_p`, and one token is drawn from the softmax of
    what remains:

        p(token) = softmax(filter(logits / temperature))

    Draws are stateless: step `index` uses the seed
    `fold_in(seed, index)`, so the same seed gives the same tokens, in
    eager mode and under `tf.function(jit_compile=True)` alike.

    Args:
        step_fn: `step_fn(tokens, state, index) -> (logits, new_state)`,
            see `skipseq.decoding`.
        start_tokens: int tensor `(batch,)` or `(batch, prompt_len)`.
        state: nest of tensors with the batch on axis 0; `()` for none.
        max_length: Python int, length of the output, position 0 included.
        end_token: int or None (default, never ends early).
        temperature: float >= 0, defaults to 1.0. 0 means greedy search
            (then `top_k`, `top_p` and `seed` are unused).
        top_k: None (default, no limit) or int >= 1.
        top_p: None (default, no limit) or float in (0, 1].
        seed: None (default: a fresh seed per call, not reproducible), an
            int, or an integer tensor of shape `()` or `(2,)`. Pass a
            tensor inside `tf.function` so that a new seed does not retrace.
        pad_token: int, defaults to 0. Fills positions after `end_token`.
        prompt_length: None (default: the whole width of `start_tokens`),
            an int, or an int tensor `(batch,)`.
        return_state: bool, defaults to False; see `greedy_search`.

    Returns:
        int32 tensor `(batch, max_length)`, or `(tokens, state)` with
        `return_state`.

    Example:

    >>> logits = tf.math.log([[.2, .3, .5]])
    >>> step_fn = lambda tokens, state, index: (
    ...     tf.repeat(logits, tf.shape(tokens)[0], axis=0), state)
    >>> tokens = sample(step_fn, tf.constant([0, 0]), (), 4, seed=7)
    >>> tokens.shape
    TensorShape([2, 4])
    """
    max_length = _common.check_int("max_length", max_length, 1)
    end_token = _common.check_optional_token("end_token", end_token)
    pad_token = _common.check_int("pad_token", pad_token, 0)
    _check_sampling_args(temperature, top_k, top_p)
    tokens, prompt_length = _common.prepare_prompt(
        start_tokens, max_length, prompt_length, pad_token
    )
    base_seed = None if temperature == 0 else _seed_pair(seed)

    def choose(logits, index):
        if temperature == 0:
            return tf.argmax(logits, axis=-1, output_type="int32")
        logits = logits / temperature
        if top_k is not None:
            logits = filter_top_k(logits, top_k)
        if top_p is not None and top_p < 1:
            logits = filter_top_p(logits, top_p)
        step_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        return _draw(logits, step_seed)

    return _common.token_loop(
        step_fn,
        tokens,
        prompt_length,
        state,
        max_length,
        end_token,
        pad_token,
        choose,
        return_state=bool(return_state),
    )
