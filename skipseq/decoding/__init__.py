"""Search over the outputs of a step function: greedy, sampling, beam.

The functions here know nothing of models. A model takes part through a
step function:

    step_fn(tokens, state, index) -> (logits, new_state)

- `tokens`: int32 `(batch,)`, the token at position `index` (the start or
  prompt token, or the previous output).
- `state`: any nest (dict, tuple) of tensors with the batch on axis 0: a
  key/value cache, RNN states, encoder outputs. `new_state` must have the
  same structure and the same shapes (fixed-size caches are written at
  `index`), because the loop is a `tf.while_loop`. Beam search tiles it to
  `batch * beam_size` rows and reorders those rows after every step.
- `index`: int32 scalar tensor, the position being fed.
- `logits`: float `(batch, vocab)`, the scores of the token at position
  `index + 1`.

Every function returns sequences of length `max_length` whose position 0
is the start token. Prompts are handled here: pass `start_tokens` of
shape `(batch, prompt_len)` and optionally `prompt_length` (an int or a
`(batch,)` tensor, for right-padded prompts of different lengths); the
positions below a row's prompt length are fed through `step_fn` to fill
its cache but are kept as given (forced), and the search starts after
them. After a generated `end_token` a row holds `pad_token`.

All functions run eagerly and inside `tf.function(jit_compile=True)`;
`max_length`, `beam_size`, `temperature`, `top_k` and `top_p` are Python
values fixed at trace time, while tokens, state, `prompt_length` and a
tensor `seed` may change between calls without retracing.

Example, a text-generation loop over a cached decoder:

>>> import numpy as np
>>> import tensorflow as tf
>>> from skipseq import decoding
>>> table = np.log(np.array(
...     [[.1, .8, .1], [.1, .1, .8], [.8, .1, .1]], "float32"))
>>> def step_fn(tokens, state, index):
...     return tf.gather(table, tokens), state
>>> prompt = tf.constant([[2, 2, 0]])
>>> decoding.greedy_search(
...     step_fn, prompt, (), max_length=6, prompt_length=2).numpy()
array([[2, 2, 0, 1, 2, 0]], dtype=int32)
"""

from skipseq.decoding.beam import (
    beam_search,
    flatten_beams,
    gather_beams,
    gnmt_length_penalty,
    tile_beams,
    unflatten_beams,
)
from skipseq.decoding.greedy import greedy_search
from skipseq.decoding.sampling import filter_top_k, filter_top_p, sample

__all__ = [
    "beam_search",
    "filter_top_k",
    "filter_top_p",
    "flatten_beams",
    "gather_beams",
    "gnmt_length_penalty",
    "greedy_search",
    "sample",
    "tile_beams",
    "unflatten_beams",
]
