"""Helpers shared by the search functions: argument checks and prompts."""

import numbers

import tensorflow as tf

# Log-probability given to impossible choices. Finite, so that sums and
# differences of such values never produce NaN.
NEG_INF = -1e9


def check_int(name, value, minimum):
    """`value` is a Python int of at least `minimum`."""
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_optional_token(name, value):
    """`value` is None or a non-negative Python int token id."""
    if value is None:
        return None
    return check_int(name, value, 0)


def prepare_prompt(start_tokens, max_length, prompt_length, pad_token):
    """Lay out the forced tokens in a `(batch, max_length)` buffer.

    Args:
        start_tokens: int tensor `(batch,)` (one start token per row) or
            `(batch, prompt_len)` (a prompt per row, right-padded).
        max_length: Python int, the length of the returned buffer.
        prompt_length: None, an int, or an int tensor `()` or `(batch,)`:
            how many leading tokens of each row are forced. None means
            all of `start_tokens`' columns.
        pad_token: fills the buffer after the prompt.

    Returns:
        `(tokens, prompt_length)`: the int32 buffer `(batch, max_length)`
        with the prompt in front and `pad_token` after it, and the int32
        prompt lengths `(batch,)`. Positions at or after a row's prompt
        length hold `pad_token` even where `start_tokens` had a value.
    """
    start_tokens = tf.convert_to_tensor(start_tokens)
    if not start_tokens.dtype.is_integer:
        raise ValueError(
            "`start_tokens` must hold integer token ids. "
            f"Received: start_tokens.dtype={start_tokens.dtype.name}"
        )
    start_tokens = tf.cast(start_tokens, "int32")
    if start_tokens.shape.rank == 1:
        start_tokens = start_tokens[:, None]
    if start_tokens.shape.rank != 2:
        raise ValueError(
            "`start_tokens` must have shape (batch,) or (batch, "
            f"prompt_len). Received: start_tokens.shape={start_tokens.shape}"
        )
    width = start_tokens.shape[1]
    if width is None or width < 1 or width > max_length:
        raise ValueError(
            "`start_tokens` must have a static prompt length between 1 "
            f"and max_length={max_length}. "
            f"Received: start_tokens.shape={start_tokens.shape}"
        )
    batch = tf.shape(start_tokens)[0]

    if prompt_length is None:
        prompt_length = width
    if not isinstance(prompt_length, numbers.Integral) and not (
        tf.is_tensor(prompt_length) and prompt_length.dtype.is_integer
    ):
        raise ValueError(
            "`prompt_length` must be None, an int or an int tensor. "
            f"Received: prompt_length={prompt_length!r}"
        )
    if isinstance(prompt_length, numbers.Integral):
        if isinstance(prompt_length, bool) or not 1 <= prompt_length <= width:
            raise ValueError(
                f"`prompt_length` must be between 1 and {width} (the "
                "prompt width of `start_tokens`). "
                f"Received: prompt_length={prompt_length!r}"
            )
    prompt_length = tf.cast(prompt_length, "int32")
    prompt_length = tf.broadcast_to(prompt_length, [batch])

    # (batch, max_length): the prompt where forced, the pad token elsewhere.
    padding = tf.fill([batch, max_length - width], tf.constant(pad_token))
    tokens = tf.concat([start_tokens, padding], axis=1)
    positions = tf.range(max_length, dtype="int32")[None, :]
    forced = positions < prompt_length[:, None]
    tokens = tf.where(forced, tokens, pad_token)
    return tokens, prompt_length


def write_position(tokens, index, values):
    """Return `tokens` with `tokens[..., index] = values`.

    `tokens` is `(..., max_length)` and `values` is `tokens.shape[:-1]`; a
    `where` on a one-hot position keeps every shape static under XLA.
    """
    positions = tf.range(tf.shape(tokens)[-1], dtype="int32")
    return tf.where(positions == index, values[..., None], tokens)


def token_loop(
    step_fn,
    tokens,
    prompt_length,
    state,
    max_length,
    end_token,
    pad_token,
    choose_fn,
    return_state=False,
):
    """Feed one token per step and append the chosen next token.

    The skeleton shared by greedy search and sampling. `choose_fn(logits,
    index)` maps float32 logits `(batch, vocab)` to int32 tokens `(batch,)`.
    Positions below a row's prompt length keep their prompt token; after a
    row has produced `end_token` it receives `pad_token`. The loop stops
    once every row has finished, so later positions keep `pad_token`.
    With `return_state`, returns `(tokens, state)`: the state after the
    last fed token (every position but the last when no row ended early).
    """
    batch = tf.shape(tokens)[0]
    # A batch of one row decodes as two (row 0 twice; the copy is dropped
    # at the end). With one row, XLA on CPU copies every loop-carried
    # cache tensor at every step instead of updating it in place, so a
    # step's cost grew with the cache: decoding 512 tokens took 10 times as
    # long as 128, against 4.4 with two rows, which are also faster in
    # absolute time. The second row costs little: a one-row step is bound
    # by reading the weights, which two rows share.
    rows = tf.concat(
        [tf.range(batch), tf.zeros([tf.maximum(2 - batch, 0)], "int32")], 0
    )
    tokens, prompt_length, state = tf.nest.map_structure(
        lambda tensor: tf.gather(tensor, rows), (tokens, prompt_length, state)
    )
    finished = tf.zeros(tf.shape(rows), dtype="bool")

    def cond(index, tokens, state, finished):
        return tf.logical_and(
            index < max_length - 1,
            tf.logical_not(tf.reduce_all(finished)),
        )

    def body(index, tokens, state, finished):
        logits, state = step_fn(tokens[:, index], state, index)
        logits = tf.cast(logits, "float32")
        chosen = tf.cast(choose_fn(logits, index), "int32")

        # The token for position `index + 1`: the prompt where forced.
        next_index = index + 1
        forced = next_index < prompt_length
        next_tokens = tf.where(forced, tokens[:, next_index], chosen)
        next_tokens = tf.where(finished, pad_token, next_tokens)
        tokens = write_position(tokens, next_index, next_tokens)

        if end_token is not None:
            ended = tf.logical_and(tf.logical_not(forced), chosen == end_token)
            finished = tf.logical_or(finished, ended)
        return next_index, tokens, state, finished

    index = tf.constant(0, dtype="int32")
    _, tokens, state, _ = tf.while_loop(
        cond,
        body,
        (index, tokens, state, finished),
        maximum_iterations=max_length - 1,
    )
    if return_state:
        state = tf.nest.map_structure(lambda tensor: tensor[:batch], state)
        return tokens[:batch], state
    return tokens[:batch]
