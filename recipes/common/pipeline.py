"""tf.data helpers that keep batch shapes to a few fixed sizes.

XLA compiles one program per input shape. Padding every batch to one of a
handful of bucket lengths (and dropping the last, smaller batch) keeps the
number of compilations equal to the number of buckets however long a run
is.
"""

import tensorflow as tf


def check_buckets(bucket_lengths, max_length):
    """Returns the sorted bucket lengths, the largest equal to `max_length`.

    Raises:
        ValueError: if a length is not a positive int or exceeds
            `max_length`.
    """
    lengths = sorted(set(bucket_lengths or ()) | {max_length})
    bad = [n for n in lengths if not isinstance(n, int) or n <= 0]
    if bad or lengths[-1] != max_length:
        raise ValueError(
            "Argument `bucket_lengths` must hold positive ints no larger "
            f"than max_length={max_length}. Received: "
            f"bucket_lengths={bucket_lengths!r}"
        )
    return lengths


def bucket_batches(
    dataset, length_fn, bucket_lengths, batch_size, drop_remainder=True
):
    """Groups examples by length and pads each batch to its bucket length.

    Every tensor of an example is a 1-D sequence no longer than the largest
    bucket length; in a batch they are all padded with zeros to the
    smallest bucket length that fits the longest sequence of the example
    (`length_fn(example)`), so only `len(bucket_lengths)` shapes occur.

    Args:
        dataset: a `tf.data.Dataset` of tuples/dicts of 1-D tensors.
        length_fn: function of one example returning its int32 length.
        bucket_lengths: sorted list of padded lengths.
        batch_size: int, examples per batch (the same for every bucket).
        drop_remainder: whether to drop each bucket's last partial batch,
            so that the batch dimension is static too. Defaults to True.

    Returns:
        The batched `tf.data.Dataset`.
    """
    # A bucket holds the lengths below its boundary and is padded to
    # boundary - 1, hence the + 1. The extra last bucket (lengths above
    # the largest boundary) stays empty since no sequence is that long.
    boundaries = [n + 1 for n in bucket_lengths]
    return dataset.bucket_by_sequence_length(
        element_length_func=length_fn,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )


def fixed_length_batches(dataset, length, batch_size, drop_remainder=True):
    """Pads every sequence of every example to `length` and batches.

    The single-shape alternative to `bucket_batches` (more padding, one
    compilation).
    """
    shapes = tf.nest.map_structure(
        lambda _: tf.TensorShape([length]), dataset.element_spec
    )
    return dataset.padded_batch(
        batch_size, padded_shapes=shapes, drop_remainder=drop_remainder
    )
