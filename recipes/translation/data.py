"""Sentence pairs, vocabularies and tf.data pipelines for translation.

Pairs come from the dataset registry (`skipseq.data.load_multi30k`) or
from the user's own files (`skipseq.data.load_parallel` for two aligned
files, `load_parallel_tsv` for a TSV file). Token ids are laid out as:

```
source    = tokens[: max_length - 1] + [EOS]
target_in = [BOS] + tokens[: max_length - 1]
target    = tokens[: max_length - 1] + [EOS]
```

so an empty sentence still has one position and never leaves a row fully
masked.
"""

import logging
import pathlib

import tensorflow as tf

from recipes.common import pipeline
from recipes.common import tokenizer as subwords
from skipseq import data as skipseq_data

logger = logging.getLogger(__name__)

SPLIT_KEYS = {"train": "train", "valid": "valid", "test": "test"}


def load_pairs(config, split):
    """Returns `(sources, targets)` for `split` ("train", "valid", "test").

    A `<split>_corpus` key in `config` names the user's files; otherwise
    the split `<split>_split` of `config["dataset"]` is read.
    """
    corpus = config[f"{split}_corpus"]
    if corpus is None:
        if config["dataset"] != "multi30k":
            raise ValueError(
                "Config key `dataset` must be 'multi30k' (or give "
                f"`{split}_corpus`). Received: dataset={config['dataset']!r}"
            )
        if config["train_corpus"] is not None:
            # Legitimate for an English-German corpus, a surprise otherwise.
            logger.warning(
                "No %s_corpus given: the %s split of Multi30k %s-%s is used "
                "with the training corpus %s.",
                split,
                config[f"{split}_split"],
                config["source_lang"],
                config["target_lang"],
                config["train_corpus"],
            )
        sources, targets = skipseq_data.load_multi30k(
            config[f"{split}_split"],
            src_lang=config["source_lang"],
            tgt_lang=config["target_lang"],
        )
    elif isinstance(corpus, str):
        pairs = skipseq_data.load_parallel_tsv(corpus)
        sources, targets = pairs.source, pairs.target
    elif isinstance(corpus, list) and len(corpus) == 2:
        pairs = skipseq_data.load_parallel(corpus[0], corpus[1])
        sources, targets = pairs.source, pairs.target
    else:
        raise ValueError(
            f"Config key `{split}_corpus` must be null, a TSV path or a "
            f"list of two paths. Received: {split}_corpus={corpus!r}"
        )
    limit = config[
        "max_train_examples" if split == "train" else "max_eval_examples"
    ]
    if limit is not None:
        sources, targets = sources[:limit], targets[:limit]
    return list(sources), list(targets)


def vocabulary_paths(run_dir, shared):
    """The vocabulary file(s) of a run: `(source_path, target_path)`."""
    run_dir = pathlib.Path(run_dir)
    if shared:
        path = run_dir / "vocab.txt"
        return path, path
    return run_dir / "vocab.source.txt", run_dir / "vocab.target.txt"


def build_vocabularies(config, sources, targets, run_dir):
    """Loads the run's vocabularies, learning and saving them if absent.

    Returns:
        `(source_vocabulary, target_vocabulary)`, lists of tokens (the
        same list when `shared_vocabulary` is true).
    """
    shared = config["shared_vocabulary"]
    source_path, target_path = vocabulary_paths(run_dir, shared)
    if source_path.exists() and target_path.exists():
        return (
            subwords.load_vocabulary(source_path),
            subwords.load_vocabulary(target_path),
        )
    sample = config["vocabulary_sample_size"]
    sources, targets = sources[:sample], targets[:sample]
    size = config["vocabulary_size"]
    logger.info("Learning WordPiece vocabulary from %d pairs.", len(sources))
    if shared:
        vocabulary = subwords.learn_vocabulary(sources + targets, size)
        subwords.save_vocabulary(vocabulary, source_path)
        return vocabulary, vocabulary
    source_vocabulary = subwords.learn_vocabulary(sources, size)
    target_vocabulary = subwords.learn_vocabulary(targets, size)
    subwords.save_vocabulary(source_vocabulary, source_path)
    subwords.save_vocabulary(target_vocabulary, target_path)
    return source_vocabulary, target_vocabulary


def load_vocabularies(run_dir, shared):
    """Reads a trained run's vocabularies (errors name the missing file)."""
    source_path, target_path = vocabulary_paths(run_dir, shared)
    return (
        subwords.load_vocabulary(source_path),
        subwords.load_vocabulary(target_path),
    )


def encode_source(tokenizer, texts, max_length):
    """Strings `(batch,)` to padded source ids `(batch, <= max_length)`.

    Runs in the graph. Over-long inputs are truncated, and every row ends
    with `[EOS]`.
    """
    ids = tokenizer.tokenize(texts)[:, : max_length - 1]
    eos = tf.fill([ids.nrows(), 1], subwords.EOS_ID)
    ids = tf.concat([ids, tf.cast(eos, ids.dtype)], axis=1)
    return tf.cast(ids.to_tensor(default_value=subwords.PAD_ID), "int32")


def _example(source_tokenizer, target_tokenizer, max_length):
    def make(source, target):
        src = source_tokenizer.tokenize(source)[: max_length - 1]
        tgt = target_tokenizer.tokenize(target)[: max_length - 1]
        src = tf.concat([tf.cast(src, "int32"), [subwords.EOS_ID]], 0)
        tgt = tf.cast(tgt, "int32")
        target_in = tf.concat([[subwords.BOS_ID], tgt], 0)
        target_out = tf.concat([tgt, [subwords.EOS_ID]], 0)
        return {"source": src, "target_in": target_in}, target_out

    return make


def _length(features, target):
    return tf.maximum(tf.shape(features["source"])[0], tf.shape(target)[0])


def make_dataset(
    sources,
    targets,
    source_tokenizer,
    target_tokenizer,
    config,
    batch_size,
    training,
):
    """A batched dataset of `({"source", "target_in"}, target)` ids.

    Training data is shuffled (seeded), repeated forever and bucketed;
    every batch has exactly `batch_size` rows and one of the bucket
    lengths, so a compiled train step sees only a few shapes.
    """
    max_length = config["max_length"]
    lengths = pipeline.check_buckets(config["bucket_lengths"], max_length)
    dataset = tf.data.Dataset.from_tensor_slices((sources, targets))
    if training:
        dataset = dataset.shuffle(
            len(sources), seed=config["seed"], reshuffle_each_iteration=True
        ).repeat()
    dataset = dataset.map(
        _example(source_tokenizer, target_tokenizer, max_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = pipeline.bucket_batches(
        dataset, _length, lengths, batch_size, drop_remainder=True
    )
    if not training:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)
