"""Compiled, chunked text generation shared by the CLI and the export.

Generation runs in chunks of `chunk_length` new tokens, each one
XLA-compiled call of `ChunkDecoder` whose `tf.while_loop` (from
`skipseq.decoding`) runs `chunk_length` cached steps. Its input signature
is fixed, so it is traced once per decoder and never again for calls with
new prompts, seeds or temperatures.

- Transformer: every chunk starts from the last `window` tokens of the
  history (left-padded when shorter), fed to the model in one call that
  fills the key/value cache. Learned positions end at the context length,
  so a text longer than the context slides this window over the history.
- RNN (`model.carries_state`): the first chunk prefills the states from
  the prompt's window; every later chunk goes on from the states the
  previous one ended with, so the states summarise the whole text.

Streaming: the command line prints each chunk as soon as it is decoded.

Temperature is a tensor argument: the logits are divided by it before
`skipseq.decoding.sample`, and a temperature of 0 keeps only the arg-max
logit, which makes sampling exactly greedy. Beam search keeps the best
beam of each chunk and starts the next chunk from it alone.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from recipes.text_generation.vocabulary import BOS_ID, PAD_ID, UNK_ID
from skipseq import decoding

METHODS = ("greedy", "sample", "beam")
# Logit of the ids generation must never produce (pad, unknown, start).
NEVER = -1e9


def check_generation_args(
    num_new_tokens=0,
    temperature=1.0,
    top_k=None,
    top_p=None,
    beam_size=1,
    method="sample",
):
    """Raises ValueError naming the argument for unusable values."""
    if method not in METHODS:
        raise ValueError(
            f"Argument `method` must be one of {list(METHODS)}. "
            f"Received: method={method!r}"
        )
    if method != "sample" and (top_k is not None or top_p is not None):
        raise ValueError(
            "Arguments `top_k` and `top_p` filter sampling, and "
            f"method={method!r} does not sample. Received: top_k={top_k!r}, "
            f"top_p={top_p!r}"
        )
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
        or not 0 <= temperature < math.inf
    ):
        raise ValueError(
            "Argument `temperature` must be a finite number >= 0 (0 means "
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
        model: a `TransformerLM` or `RNNLM` (anything with `prefill`,
            `step_fn` and `carries_state`).
        window: int >= 2, the history tokens fed before the first chunk
            (before every chunk for a Transformer).
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

    Returns int32 `(batch, chunk_length)` new tokens; for a model that
    `carries_state`, `(tokens, state)`, and `resume(last_tokens, state,
    temperature, seed)` decodes the next chunk from there.
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
        check_generation_args(
            top_k=top_k, top_p=top_p, beam_size=beam_size, method=method
        )
        if window < 2:
            raise ValueError(
                f"Argument `window` must be >= 2. Received: window={window}"
            )
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
        self.carries_state = bool(getattr(model, "carries_state", False))
        scalars = [
            tf.TensorSpec((), "float32"),
            tf.TensorSpec((2,), "int32"),
        ]
        self.function = tf.function(
            self._decode,
            jit_compile=True,
            reduce_retracing=False,
            input_signature=[
                tf.TensorSpec((None, window), "int32"),
                tf.TensorSpec((None,), "int32"),
                *scalars,
            ],
        )
        self.resume_function = None
        if self.carries_state:
            self.state_spec = self._state_spec()
            self.resume_function = tf.function(
                self._resume,
                jit_compile=True,
                reduce_retracing=False,
                input_signature=[
                    tf.TensorSpec((None,), "int32"),
                    self.state_spec,
                    *scalars,
                ],
            )

    def __call__(self, window_ids, pad_counts, temperature, seed):
        return self.function(
            tf.cast(window_ids, "int32"),
            tf.cast(pad_counts, "int32"),
            tf.cast(temperature, "float32"),
            tf.cast(seed, "int32"),
        )

    def resume(self, last_tokens, state, temperature, seed):
        """The next chunk and state of a model that carries its state.

        `last_tokens` int32 `(batch,)` are the last tokens of the text,
        not yet fed; `state` is what the previous call returned.
        """
        if not self.carries_state:
            raise ValueError(
                "`resume` continues from carried states, and this model "
                "has none: call the decoder with a window of history."
            )
        return self.resume_function(
            tf.cast(last_tokens, "int32"),
            state,
            tf.cast(temperature, "float32"),
            tf.cast(seed, "int32"),
        )

    @property
    def tracing_count(self):
        count = self.function.experimental_get_tracing_count()
        if self.resume_function is not None:
            count += self.resume_function.experimental_get_tracing_count()
        return count

    def _state_spec(self):
        # The structure and widths of the states, batch left open.
        state = self.model.prefill(
            tf.zeros((1, 1), "int32"), tf.zeros((1,), "int32")
        )
        return tf.nest.map_structure(
            lambda t: tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype),
            state,
        )

    def _decode(self, window_ids, pad_counts, temperature, seed):
        prefill_length = self.window - 1
        max_length = prefill_length + self.chunk_length + 1
        state = self.model.prefill(
            window_ids[:, :-1], pad_counts, max_length=max_length
        )
        return self._continue(
            window_ids[:, -1], state, prefill_length, temperature, seed
        )

    def _resume(self, last_tokens, state, temperature, seed):
        return self._continue(last_tokens, state, 0, temperature, seed)

    def _continue(self, start, state, prefill_length, temperature, seed):
        """Decodes a chunk after `start`; with `carries_state`, also the
        state after feeding `start` and all new tokens but the last."""
        model_step = self.model.step_fn(prefill_length)

        def step_fn(tokens, state, index):
            logits, state = model_step(tokens, state, index)
            return shape_logits(logits, temperature), state

        length = self.chunk_length + 1
        carry = self.carries_state
        final_state = None
        if self.method == "beam":
            # Pad is never produced, so no hypothesis ends early.
            tokens, _ = decoding.beam_search(
                step_fn, start, state, length, PAD_ID, self.beam_size
            )
            tokens = tokens[:, 0]
        elif self.method == "greedy":
            tokens = decoding.greedy_search(
                step_fn, start, state, length, return_state=carry
            )
        else:
            tokens = decoding.sample(
                step_fn,
                start,
                state,
                length,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=seed,
                return_state=carry,
            )
        if carry and self.method != "beam":
            tokens, final_state = tokens
        new_tokens = tokens[:, 1:]
        if not carry:
            return new_tokens
        if final_state is None:
            # Beam search keeps no states per hypothesis: feed the chosen
            # tokens from the chunk's starting states once more.
            fed = tokens[:, :-1]
            final_state = self.model.prefill(
                fed, tf.zeros_like(fed[:, 0]), state=state
            )
        return new_tokens, final_state


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
    # The carried states and the last token not yet fed to them.
    state = last = None
    for chunk in range(chunks):
        seeds = [seed, chunk]
        if state is not None:
            new, state = decoder.resume(last, state, temperature, seeds)
        else:
            windows, pads = take_windows(history, lengths, decoder.window)
            new = decoder(windows, pads, temperature, seeds)
            if decoder.carries_state:
                new, state = new
        last = new[:, -1]
        history, lengths = append_tokens(history, lengths, new)
        yield new.numpy()[:, :remaining]
        remaining -= decoder.chunk_length


def generate_text(
    decoder, vocabulary, prompts, num_new_tokens, temperature=1.0, seed=0
):
    """The prompts followed by their generated continuations (strings)."""
    prompt_ids = [vocabulary.encode(p) for p in prompts]
    decoders = [vocabulary.stream_decoder() for _ in prompts]
    texts = list(prompts)
    for new in generate_ids(
        decoder, prompt_ids, num_new_tokens, temperature, seed
    ):
        for r, row in enumerate(new):
            texts[r] += decoders[r](row.tolist())
    return [
        text + decode([], final=True)
        for text, decode in zip(texts, decoders, strict=True)
    ]
