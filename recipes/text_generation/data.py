"""Text loading, the train/validation split and the window datasets."""

import numpy as np
import tensorflow as tf

from recipes.text_generation import vocabulary as vocabularies
from recipes.text_generation.vocabulary import BOS_ID, PAD_ID
from skipseq import data

# How finely the start-token draw is resolved (see `training_windows`).
_BOS_RESOLUTION = 10000


def load_corpus(config):
    """The text of the run: `text_file` when set, else the dataset."""
    if config["text_file"]:
        return data.load_text(config["text_file"])
    if config["dataset"] != "tiny_shakespeare":
        raise ValueError(
            "Config key `dataset` must be 'tiny_shakespeare' (or set "
            f"`text_file`). Received: dataset={config['dataset']!r}"
        )
    return data.load_tiny_shakespeare()


def split_corpus(text, config):
    """`(train_text, validation_text)`, split by characters."""
    return data.split_text(text, config["train_fraction"])


def build_vocabulary(train_text, config):
    return vocabularies.build_vocabulary(
        train_text, config["tokenizer"], config["vocabulary_size"]
    )


def encode(vocabulary, text):
    return np.asarray(vocabulary.encode(text), dtype="int32")


def training_windows(ids, context_length, batch_size, seed, bos_rate=0.0):
    """An endless dataset of `(inputs, targets)` batches at random offsets.

    Each example is a slice of `context_length + 1` ids at a random
    offset; the targets are the inputs shifted by one. With probability
    `bos_rate` the first input becomes the start token, which teaches the
    model what to generate from an empty prompt.
    """
    count = len(ids) - context_length - 1
    if count < 1:
        raise ValueError(
            f"The training text is too short for context_length="
            f"{context_length}: it has {len(ids)} tokens."
        )
    ids = tf.constant(ids, "int32")
    bos_cut = int(bos_rate * _BOS_RESOLUTION)

    def window(draw):
        draw = tf.abs(draw)
        start = tf.cast(draw % count, "int32")
        piece = ids[start : start + context_length + 1]
        inputs, targets = piece[:-1], piece[1:]
        use_bos = (draw // count) % _BOS_RESOLUTION < bos_cut
        first = tf.where(use_bos, BOS_ID, inputs[0])
        inputs = tf.concat([first[None], inputs[1:]], axis=0)
        return inputs, targets

    dataset = tf.data.Dataset.random(seed=seed).map(window)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_windows(ids, context_length, batch_size):
    """Non-overlapping windows covering every id of `ids` once as target.

    The last window is right-padded; padded targets are `PAD_ID`, which
    the masked loss ignores.
    """
    targets_count = len(ids) - 1
    windows = -(-targets_count // context_length)
    size = windows * context_length + 1
    padded = np.full(size, PAD_ID, "int32")
    padded[: len(ids)] = ids
    starts = np.arange(windows) * context_length
    index = starts[:, None] + np.arange(context_length)[None, :]
    inputs, targets = padded[index], padded[index + 1]
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return dataset.batch(batch_size)
