"""Compiled, chunked text generation shared by the CLI and the export.

Generation runs in chunks of `chunk_length` new tokens. Each chunk is one
XLA-compiled call (`ChunkDecoder`): the last `window` tokens of the
history (left-padded when shorter) are fed to the model in one call that
fills the key/value cache (or the RNN states), then `skipseq.decoding`
runs its `tf.while_loop` over `chunk_length` cached steps. The compiled
function has a fixed input signature, so it is traced once per decoder
and never again for calls with new prompts, seeds or temperatures.

Streaming: the command line prints each chunk as soon as it is decoded;
longer texts than the context slide the window over the history (the
cache is rebuilt from the window for every chunk).

Temperature is a tensor argument: the logits are divided by it before
`skipseq.decoding.sample`, and a temperature of 0 keeps only the arg-max
logit, which makes sampling exactly greedy.
"""

import numbers

import numpy as np
import tensorflow as tf

from recipes.text_generation.vocabulary import BOS_ID, PAD_ID, UNK_ID
from skipseq import decoding

METHODS = ("greedy", "sample", "beam")
# Logit of the ids generation must never produce (pad, unknown, start).
NEVER = -1e9


def check_generation_args(
    num_new_tokens=0, temperature=1.0, top_k=None, top_p=None, beam_size=1
):
    """Raises ValueError naming the argument for unusable values."""
    if (
        not isinstance(num_new_tokens, numbers.Integral)
        or isinstance(num_new_tokens, bool)
        or num_new_tokens < 0
    ):
        raise ValueError(
            "Argument `num_new_tokens` must be an integer >= 0. "
            f"Received: num_new_tokens={num_new_tokens!r}"
        )
    if (
        not isinstance(temperature, numbers.Real)
        or isinstance(temperature, bool)
        or not temperature >= 0
    ):
        raise ValueError(
            "Argument `temperature` must be a number >= 0 (0 means "
            f"greedy). Received: temperature={temperature!r}"
        )
    if top_k is not None and (
        not isinstance(top_k, numbers.Integral)
        or isinstance(top_k, bool)
        or top_k < 1
    ):
        raise ValueError(
            f"Argument `top_k` must be an integer >= 1 or None. "
            f"Received: top_k={top_k!r}"
        )
    if top_p is not None and (
        not isinstance(top_p, numbers.Real)
        or isinstance(top_p, bool)
        or not 0 < top_p <= 1
    ):
        raise ValueError(
            "Argument `top_p` must be a number in (0, 1]. "
            f"Received: top_p={top_p!r}"
        )
    if (
        not isinstance(beam_size, numbers.Integral)
        or isinstance(beam_size, bool)
        or beam_size < 1
    ):
        raise ValueError(
            "Argument `beam_size` must be an integer >= 1. "
            f"Received: beam_size={beam_size!r}"
        )


def shape_logits(logits, temperature):
    """Forbid special ids, then divide by `temperature` (0: arg-max only)."""
    logits = tf.cast(logits, "float32")
    vocab = logits.shape[-1]
    special = tf.one_hot([PAD_ID, UNK_ID, BOS_ID], vocab, dtype="float32")
    forbidden = tf.reduce_max(special, axis=0) > 0
    logits = tf.where(forbidden, NEVER, logits)
    greedy = tf.where(
        tf.one_hot(tf.argmax(logits, axis=-1), vocab) > 0, 0.0, NEVER
    )
    safe = tf.maximum(temperature, 1e-6)
    return tf.where(temperature > 0, logits / safe, greedy)


class ChunkDecoder:
    """One XLA-compiled call that decodes `chunk_length` tokens.

    Args:
        model: a `TransformerLM` or `RNNLM` (anything with `prefill` and
            `step_fn`).
        window: int >= 2, the history tokens fed before the chunk.
        chunk_length: int >= 1, the new tokens per call.
        method: `"sample"` (default; temperature 0 is greedy),
            `"greedy"` or `"beam"`.
        top_k, top_p: sampling filters, None for none.
        beam_size: int, for `method="beam"`.

    Call arguments (`decoder(window_ids, pad_counts, temperature, seed)`):
        window_ids: int32 `(batch, window)`, left-padded history.
        pad_counts: int32 `(batch,)`, pad tokens in front of each row.
        temperature: float32 scalar.
        seed: int32 `(2,)`.

    Returns int32 `(batch, chunk_length)` new tokens.
    """

    def __init__(
        self,
        model,
        window,
        chunk_length,
        method="sample",
        top_k=None,
        top_p=None,
        beam_size=4,
    ):
        if method not in METHODS:
            raise ValueError(
                f"Argument `method` must be one of {list(METHODS)}. "
                f"Received: method={method!r}"
            )
        if window < 2:
            raise ValueError(
                f"Argument `window` must be >= 2. Received: window={window}"
            )
        check_generation_args(top_k=top_k, top_p=top_p, beam_size=beam_size)
        if top_k is not None and top_k > model.vocabulary_size:
            raise ValueError(
                "Argument `top_k` must be at most the vocabulary size "
                f"({model.vocabulary_size}). Received: top_k={top_k}"
            )
        self.model = model
        self.window = window
        self.chunk_length = chunk_length
        self.method = method
        self.top_k = top_k
        self.top_p = top_p
        self.beam_size = beam_size
        self.function = tf.function(
            self._decode,
            jit_compile=True,
            reduce_retracing=False,
            input_signature=[
                tf.TensorSpec((None, window), "int32"),
                tf.TensorSpec((None,), "int32"),
                tf.TensorSpec((), "float32"),
                tf.TensorSpec((2,), "int32"),
            ],
        )

    def __call__(self, window_ids, pad_counts, temperature, seed):
        return self.function(
            tf.cast(window_ids, "int32"),
            tf.cast(pad_counts, "int32"),
            tf.cast(temperature, "float32"),
            tf.cast(seed, "int32"),
        )

    @property
    def tracing_count(self):
        return self.function.experimental_get_tracing_count()

    def _decode(self, window_ids, pad_counts, temperature, seed):
        prefill_length = self.window - 1
        max_length = prefill_length + self.chunk_length + 1
        state = self.model.prefill(
            window_ids[:, :-1], pad_counts, max_length=max_length
        )
        model_step = self.model.step_fn(prefill_length)

        def step_fn(tokens, state, index):
            logits, state = model_step(tokens, state, index)
            return shape_logits(logits, temperature), state

        start = window_ids[:, -1]
        length = self.chunk_length + 1
        if self.method == "beam":
            # Pad is never produced, so no hypothesis ends early.
            tokens, _ = decoding.beam_search(
                step_fn, start, state, length, PAD_ID, self.beam_size
            )
            tokens = tokens[:, 0]
        elif self.method == "greedy":
            tokens = decoding.greedy_search(step_fn, start, state, length)
        else:
            tokens = decoding.sample(
                step_fn,
                start,
                state,
                length,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=seed,
            )
        return tokens[:, 1:]


def take_windows(history, lengths, window):
    """The last `window` tokens of each row, left-padded, and pad counts.

    `history` is int32 `(batch, capacity)` whose row `r` holds its tokens
    in the first `lengths[r]` places.
    """
    lengths = tf.cast(lengths, "int32")
    columns = tf.range(window, dtype="int32")[None, :]
    index = lengths[:, None] - window + columns
    gathered = tf.gather(history, tf.maximum(index, 0), batch_dims=1)
    windows = tf.where(index >= 0, gathered, PAD_ID)
    return windows, tf.maximum(window - lengths, 0)


def append_tokens(history, lengths, new_tokens):
    """Writes `new_tokens` `(batch, n)` after each row's `lengths` tokens."""
    lengths = tf.cast(lengths, "int32")
    count = tf.shape(new_tokens)[1]
    rows = tf.range(tf.shape(history)[0], dtype="int32")[:, None]
    columns = lengths[:, None] + tf.range(count, dtype="int32")[None, :]
    rows = tf.broadcast_to(rows, tf.shape(columns))
    indices = tf.stack([rows, columns], axis=-1)
    history = tf.tensor_scatter_nd_update(history, indices, new_tokens)
    return history, lengths + count


def prompt_rows(prompt_ids):
    """Token lists with the start token standing in for empty prompts."""
    return [list(ids) if len(ids) else [BOS_ID] for ids in prompt_ids]


def generate_ids(decoder, prompt_ids, num_new_tokens, temperature=1.0, seed=0):
    """Yields `(batch, n)` numpy arrays of new tokens, chunk by chunk.

    The arrays together hold exactly `num_new_tokens` columns. Prompts
    longer than the window keep their last tokens; empty prompts start
    from the start token.
    """
    check_generation_args(num_new_tokens, temperature)
    rows = prompt_rows(prompt_ids)
    lengths = np.array([len(r) for r in rows], "int32")
    chunks = -(-num_new_tokens // decoder.chunk_length)
    capacity = int(lengths.max()) + chunks * decoder.chunk_length
    history = np.zeros((len(rows), capacity), "int32")
    for r, ids in enumerate(rows):
        history[r, : len(ids)] = ids
    history = tf.constant(history)
    remaining = num_new_tokens
    for chunk in range(chunks):
        windows, pads = take_windows(history, lengths, decoder.window)
        new = decoder(windows, pads, temperature, [seed, chunk])
        history, lengths = append_tokens(history, lengths, new)
        yield new.numpy()[:, :remaining]
        remaining -= decoder.chunk_length


def generate_text(
    decoder, vocabulary, prompts, num_new_tokens, temperature=1.0, seed=0
):
    """The prompts followed by their generated continuations (strings)."""
    prompt_ids = [vocabulary.encode(p) for p in prompts]
    pieces = [[] for _ in prompts]
    for new in generate_ids(
        decoder, prompt_ids, num_new_tokens, temperature, seed
    ):
        for r, row in enumerate(new):
            pieces[r].extend(row.tolist())
    return [
        p + vocabulary.decode(ids)
        for p, ids in zip(prompts, pieces, strict=True)
    ]
