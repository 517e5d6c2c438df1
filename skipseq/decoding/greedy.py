"""Greedy search: take the most likely token at every step."""

import tensorflow as tf

from skipseq.decoding import _common


def greedy_search(
    step_fn,
    start_tokens,
    state,
    max_length,
    end_token=None,
    pad_token=0,
    prompt_length=None,
    return_state=False,
):
    """Decode by taking the arg-max token at every step.

    Position 0 holds the start token (or the prompt); at step `index` the
    token at position `index` is fed to `step_fn` and the arg-max of its
    logits becomes position `index + 1`, unless that position lies inside
    the row's prompt, in which case the prompt token is kept (forced).
    After a row produces `end_token`, the rest of it is `pad_token`. The
    loop stops as soon as every row has ended; the output shape is fixed.

    Args:
        step_fn: `step_fn(tokens, state, index) -> (logits, new_state)`,
            see `skipseq.decoding`.
        start_tokens: int tensor `(batch,)` of start tokens, or
            `(batch, prompt_len)` of prompts, right-padded.
        state: nest of tensors with the batch on axis 0, passed to
            `step_fn`; use `()` for none.
        max_length: Python int, length of the output, position 0 included.
        end_token: int or None (default). None decodes `max_length`
            tokens for every row.
        pad_token: int, defaults to 0. Fills positions after `end_token`.
        prompt_length: None (default: the whole width of `start_tokens`),
            an int, or an int tensor `(batch,)`: how many leading
            tokens of each row are forced.
        return_state: bool, defaults to False. When True, also return
            the state after the last fed token, for a caller that goes on
            decoding from where this call stopped (an RNN's states).

    Returns:
        int32 tensor `(batch, max_length)`, or `(tokens, state)` with
        `return_state`.

    Example:

    >>> import numpy as np
    >>> table = np.log(np.array(
    ...     [[.1, .8, .1], [.1, .1, .8], [.8, .1, .1]], "float32"))
    >>> def step_fn(tokens, state, index):
    ...     return tf.gather(table, tokens), state
    >>> greedy_search(step_fn, tf.constant([0]), (), 5).numpy()
    array([[0, 1, 2, 0, 1]], dtype=int32)
    """
    max_length = _common.check_int("max_length", max_length, 1)
    end_token = _common.check_optional_token("end_token", end_token)
    pad_token = _common.check_int("pad_token", pad_token, 0)
    tokens, prompt_length = _common.prepare_prompt(
        start_tokens, max_length, prompt_length, pad_token
    )

    def choose(logits, index):
        return tf.argmax(logits, axis=-1, output_type="int32")

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
