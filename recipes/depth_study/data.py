"""Character data of the depth study: ids, windows and unigram entropy."""

import dataclasses
import math

import numpy as np

from skipseq import data


@dataclasses.dataclass
class CharData:
    """The encoded train and validation splits and their vocabulary.

    Attributes:
        vocabulary: the sorted characters; id `i` is `vocabulary[i]`.
        train_ids: int32 array of the training split.
        val_ids: int32 array of the validation split.
    """

    vocabulary: list
    train_ids: np.ndarray
    val_ids: np.ndarray

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)


def encode_text(text, train_fraction=0.9, max_chars=None):
    """Split `text` (optionally its first `max_chars`) and encode it.

    The vocabulary holds every character of the (truncated) text, so the
    validation split has no unknown character.
    """
    if max_chars is not None:
        text = text[:max_chars]
    train_text, val_text = data.split_text(text, train_fraction)
    vocabulary = sorted(set(text))
    index = {char: i for i, char in enumerate(vocabulary)}

    def encode(part):
        return np.fromiter((index[c] for c in part), "int32", len(part))

    return CharData(vocabulary, encode(train_text), encode(val_text))


def load_char_data(train_fraction=0.9, max_chars=None):
    """Tiny Shakespeare, split (90/10 by default) and encoded."""
    text = data.load_tiny_shakespeare()
    return encode_text(text, train_fraction, max_chars)


def unigram_entropy(ids, vocabulary_size):
    """Entropy in nats of the character frequencies of `ids`.

    `H = -sum_c p(c) log p(c)`: the cross-entropy of the best model that
    ignores context, so a model below it has learned to use context.
    """
    counts = np.bincount(ids, minlength=vocabulary_size).astype("float64")
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def windows(ids, starts, context_length):
    """`(inputs, targets)` of shape `(len(starts), context_length)`."""
    offsets = np.arange(context_length + 1)
    pieces = ids[np.asarray(starts)[:, None] + offsets[None, :]]
    return pieces[:, :-1], pieces[:, 1:]


def random_windows(ids, count, context_length, seed):
    """`count` windows at random offsets drawn with `seed`."""
    last = len(ids) - context_length - 1
    if last < 1:
        raise ValueError(
            f"The text ({len(ids)} characters) is too short for "
            f"context_length={context_length}."
        )
    rng = np.random.default_rng(seed)
    return windows(ids, rng.integers(0, last + 1, count), context_length)


def spaced_windows(ids, count, context_length):
    """`count` windows at evenly spaced offsets (the validation set).

    With fewer than `count` possible offsets every offset is taken.
    """
    last = len(ids) - context_length - 1
    if last < 0:
        raise ValueError(
            f"The validation text ({len(ids)} characters) is too short "
            f"for context_length={context_length}."
        )
    count = min(count, last + 1)
    starts = np.linspace(0, last, count).round().astype("int64")
    return windows(ids, starts, context_length)


def threshold(entropy, margin):
    """The validation loss a run must stay under to count as training."""
    if not math.isfinite(entropy):
        raise ValueError(f"The unigram entropy must be finite: {entropy}")
    return entropy - margin
