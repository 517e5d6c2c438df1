"""Beam search with a GNMT length penalty and a pool of ended hypotheses."""

import numbers

import tensorflow as tf

from skipseq.decoding import _common


def _dims(tensor, start=0):
    """Static sizes where known, dynamic ones elsewhere, from `start` on."""
    static = tensor.shape[start:]
    dynamic = tf.shape(tensor)[start:]
    return [d if d is not None else dynamic[i] for i, d in enumerate(static)]


def tile_beams(nest, beam_size):
    """Repeat each batch row `beam_size` times: `(batch, ...)` to
    `(batch * beam_size, ...)`, the copies of a row next to each other."""
    _common.check_int("beam_size", beam_size, 1)
    return tf.nest.map_structure(
        lambda t: tf.repeat(t, beam_size, axis=0), nest
    )


def flatten_beams(nest):
    """Merge the beam axis into the batch axis: `(batch, beam, ...)` to
    `(batch * beam, ...)`."""
    return tf.nest.map_structure(
        lambda t: tf.reshape(t, [-1] + _dims(t, 2)), nest
    )


def unflatten_beams(nest, beam_size):
    """Split the batch axis: `(batch * beam_size, ...)` to
    `(batch, beam_size, ...)`; the inverse of `flatten_beams`."""
    _common.check_int("beam_size", beam_size, 1)
    return tf.nest.map_structure(
        lambda t: tf.reshape(t, [-1, beam_size] + _dims(t, 1)), nest
    )


def gather_beams(nest, indices):
    """Pick beams per batch row: `out[b, j] = x[b, indices[b, j]]`.

    Args:
        nest: tensors `(batch, beam, ...)`.
        indices: int tensor `(batch, k)`.

    Returns:
        tensors `(batch, k, ...)`.
    """
    return tf.nest.map_structure(
        lambda t: tf.gather(t, indices, axis=1, batch_dims=1), nest
    )


def gnmt_length_penalty(length, alpha):
    """GNMT length penalty `lp(Y) = ((5 + |Y|) / 6) ** alpha`.

    Wu et al. 2016, "Google's Neural Machine Translation System".
    """
    length = tf.cast(length, "float32")
    return tf.pow((5.0 + length) / 6.0, alpha)


def _check_beam_args(end_token, beam_size, alpha):
    _common.check_int("end_token", end_token, 0)
    _common.check_int("beam_size", beam_size, 1)
    if (
        not isinstance(alpha, numbers.Real)
        or isinstance(alpha, bool)
        or alpha != alpha
    ):
        raise ValueError(
            "`length_penalty` must be a real number (the GNMT alpha). "
            f"Received: length_penalty={alpha!r}"
        )


def beam_search(
    step_fn,
    start_tokens,
    state,
    max_length,
    end_token,
    beam_size,
    length_penalty=0.0,
    pad_token=0,
    prompt_length=None,
):
    """Keep the `beam_size` best hypotheses at every step.

    The state is tiled to `batch * beam_size` rows (`tile_beams`) and
    reordered along axis 0 after every step so that each row follows its
    hypothesis. Each step scores the `2 * beam_size` best extensions of
    the alive hypotheses by total log-probability; those ending with
    `end_token` go to a pool of ended hypotheses (kept at the
    `beam_size` best by penalised score), the best `beam_size` others stay
    alive. The penalised score of a hypothesis Y is

        score(Y) = log p(Y) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

    where |Y| counts the generated tokens, end token included, prompt
    excluded (Wu et al. 2016). A row stops early once its pool is full and
    no alive hypothesis can still beat the worst pooled one. Hypotheses
    still alive at `max_length` are ranked with the ended ones by the same
    score. Prompt positions are forced as in `greedy_search`: they add no
    log-probability and all beams of a row share them.

    Args:
        step_fn: `step_fn(tokens, state, index) -> (logits, new_state)`,
            see `skipseq.decoding`; it sees `batch * beam_size` rows.
        start_tokens: int tensor `(batch,)` or `(batch, prompt_len)`.
        state: nest of tensors with the batch on axis 0; `()` for none.
        max_length: Python int, length of the output, position 0 included.
        end_token: int.
        beam_size: int >= 1.
        length_penalty: float, the alpha above; defaults to 0.0 (rank by
            log-probability). Larger values favour longer hypotheses.
        pad_token: int, defaults to 0. Fills positions after `end_token`.
        prompt_length: None (default: the whole width of `start_tokens`),
            an int, or an int tensor `(batch,)`.

    Returns:
        `(tokens, scores)`: int32 `(batch, beam_size, max_length)` and
        float32 `(batch, beam_size)`, best first. When fewer than
        `beam_size` hypotheses exist (tiny vocabulary, short
        `max_length`) the last ones are filler with scores near -1e9.

    Example:

    >>> import numpy as np
    >>> table = np.log(np.array(
    ...     [[.1, .5, .4], [.1, .1, .8], [.1, .1, .8]], "float32"))
    >>> def step_fn(tokens, state, index):
    ...     return tf.gather(table, tokens), state
    >>> tokens, scores = beam_search(
    ...     step_fn, tf.constant([0]), (), 4, end_token=2, beam_size=2)
    >>> tokens[0, 0].numpy()
    array([0, 2, 0, 0], dtype=int32)
    """
    alpha = length_penalty
    lp = gnmt_length_penalty
    max_length = _common.check_int("max_length", max_length, 1)
    _check_beam_args(end_token, beam_size, alpha)
    pad_token = _common.check_int("pad_token", pad_token, 0)
    prompt, prompt_length = _common.prepare_prompt(
        start_tokens, max_length, prompt_length, pad_token
    )
    alpha = float(alpha)
    batch = tf.shape(prompt)[0]
    # Hypotheses generated by rows whose prompt fills the whole output.
    max_generated = max_length - prompt_length

    # Only beam 0 is live at first, so the first expansion does not pick
    # the same hypothesis `beam_size` times.
    first = tf.one_hot(0, beam_size, on_value=0.0, off_value=_common.NEG_INF)
    alive_logp = tf.tile(first[None, :], [batch, 1])
    alive_seq = unflatten_beams(tile_beams(prompt, beam_size), beam_size)
    ended_seq = alive_seq
    ended_score = tf.fill([batch, beam_size], _common.NEG_INF)
    ended_flag = tf.zeros([batch, beam_size], dtype="bool")
    done = tf.zeros([batch], dtype="bool")
    state = tile_beams(state, beam_size)

    def cond(index, alive_seq, alive_logp, ended, state, done):
        return tf.logical_and(
            index < max_length - 1, tf.logical_not(tf.reduce_all(done))
        )

    def body(index, alive_seq, alive_logp, ended, state, done):
        tokens = flatten_beams(alive_seq[:, :, index])
        logits, state = step_fn(tokens, state, index)
        logp = tf.nn.log_softmax(tf.cast(logits, "float32"))
        vocab = logp.shape[-1]
        if vocab is None or vocab < 2:
            raise ValueError(
                "`step_fn` must return logits with a static vocabulary "
                f"size of at least 2. Received: logits.shape={logits.shape}"
            )
        logp = unflatten_beams(logp, beam_size)  # (batch, beam, vocab)

        # Forced rows may only take their prompt token, at no cost.
        next_index = index + 1
        forced = next_index < prompt_length  # (batch,)
        forced_hot = tf.one_hot(alive_seq[:, :, next_index], vocab) > 0
        forced_logp = tf.where(forced_hot, 0.0, _common.NEG_INF)
        logp = tf.where(forced[:, None, None], forced_logp, logp)

        # The 2 * beam best extensions; at most beam of them end, since
        # each alive hypothesis has a single end token.
        total = alive_logp[:, :, None] + logp
        total = tf.reshape(total, [-1, beam_size * vocab])
        cand_logp, flat = tf.math.top_k(total, k=2 * beam_size)
        origin = flat // vocab  # (batch, 2 * beam)
        token = flat % vocab
        cand_seq = gather_beams(alive_seq, origin)
        cand_seq = _common.write_position(cand_seq, next_index, token)
        is_end = tf.logical_and(token == end_token, ~forced[:, None])

        # Alive: the best beam extensions that did not end. At least beam
        # of the candidates did not end, so -inf is never picked.
        alive_rank = tf.where(is_end, -float("inf"), cand_logp)
        alive_logp, keep = tf.math.top_k(alive_rank, k=beam_size)
        alive_seq = gather_beams(cand_seq, keep)
        parent = gather_beams(origin, keep)  # (batch, beam)
        reordered = flatten_beams(
            gather_beams(unflatten_beams(state, beam_size), parent)
        )
        # The reshapes lose a static batch size when another axis is
        # unknown, and the loop requires every shape to stay as it entered.
        state = tf.nest.map_structure(
            lambda new, old: tf.ensure_shape(new, old.shape), reordered, state
        )

        # Ended: merge the new ended extensions into the pool.
        generated = next_index + 1 - prompt_length  # (batch,)
        is_end = tf.logical_and(is_end, cand_logp > _common.NEG_INF / 2)
        end_score = cand_logp / lp(generated, alpha)[:, None]
        end_score = tf.where(is_end, end_score, _common.NEG_INF)
        old_seq, old_score, old_flag = ended
        pool_seq = tf.concat([old_seq, cand_seq], axis=1)
        pool_score = tf.concat([old_score, end_score], axis=1)
        pool_flag = tf.concat([old_flag, is_end], axis=1)
        new_score, best = tf.math.top_k(pool_score, k=beam_size)
        new_seq = gather_beams(pool_seq, best)
        new_flag = gather_beams(pool_flag, best)
        # A row that is done keeps its pool, so its result does not depend
        # on how long the other rows of the batch run.
        ended = (
            tf.where(done[:, None, None], old_seq, new_seq),
            tf.where(done[:, None], old_score, new_score),
            tf.where(done[:, None], old_flag, new_flag),
        )

        # Log-probabilities only fall, so an alive hypothesis scores at
        # most its current log p over the largest lp it could still get.
        best_lp = tf.maximum(lp(generated + 1, alpha), lp(max_generated, alpha))
        bound = tf.reduce_max(alive_logp, axis=1) / best_lp
        worst = tf.reduce_min(ended[1], axis=1)
        full = tf.reduce_all(ended[2], axis=1)
        done = tf.logical_or(done, tf.logical_and(full, bound < worst))
        return next_index, alive_seq, alive_logp, ended, state, done

    index = tf.constant(0, dtype="int32")
    ended = (ended_seq, ended_score, ended_flag)
    index, alive_seq, alive_logp, ended, _, done = tf.while_loop(
        cond,
        body,
        (index, alive_seq, alive_logp, ended, state, done),
        maximum_iterations=max_length - 1,
    )

    # Hypotheses cut at max_length compete with the ended ones, except in
    # rows that stopped early (none of theirs could win).
    generated = index + 1 - prompt_length
    alive_score = alive_logp / lp(generated, alpha)[:, None]
    alive_score = tf.where(done[:, None], _common.NEG_INF, alive_score)
    pool_seq = tf.concat([ended[0], alive_seq], axis=1)
    pool_score = tf.concat([ended[1], alive_score], axis=1)
    scores, best = tf.math.top_k(pool_score, k=beam_size)
    return gather_beams(pool_seq, best), scores
