"""Greedy and beam search over a translation model's cached decoder.

The search itself is `skipseq.decoding`; this module binds it to a model
(`model.initial_state` and `model.step`) and compiles it.
"""

import tensorflow as tf

from recipes.common import tokenizer as subwords
from skipseq import decoding


def search(model, source, max_length, beam_size=1, length_penalty=0.0):
    """Translate a batch of source ids; returns output ids.

    Args:
        model: a translator with `initial_state` and `step`.
        source: int32 `(batch, S)`, padded with 0.
        max_length: Python int, the output length (position 0 is `[BOS]`).
        beam_size: Python int; 1 runs greedy search.
        length_penalty: float, the GNMT alpha of beam search.

    Returns:
        int32 `(batch, max_length)`: `[BOS]`, the tokens, `[EOS]`, then
        `[PAD]`.
    """
    batch = tf.shape(source)[0]
    state = model.initial_state(source, max_length)
    start = tf.fill([batch], subwords.BOS_ID)
    if beam_size == 1:
        return decoding.greedy_search(
            model.step,
            start,
            state,
            max_length,
            end_token=subwords.EOS_ID,
            pad_token=subwords.PAD_ID,
        )
    tokens, _ = decoding.beam_search(
        model.step,
        start,
        state,
        max_length,
        end_token=subwords.EOS_ID,
        beam_size=beam_size,
        length_penalty=length_penalty,
        pad_token=subwords.PAD_ID,
    )
    return tokens[:, 0]


def make_search_fn(
    model, max_length, beam_size=1, length_penalty=0.0, jit_compile=True
):
    """A compiled `source ids -> output ids` function (see `search`)."""

    def run(source):
        return search(model, source, max_length, beam_size, length_penalty)

    # One exact trace per input shape: callers pad to a few shapes, and
    # XLA compiles each static shape anyway.
    return tf.function(run, jit_compile=jit_compile)
