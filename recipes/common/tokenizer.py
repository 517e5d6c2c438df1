"""WordPiece vocabularies: learn, save, load, tokenise and detokenise.

The vocabulary is learned from the training text with keras-hub's
`compute_word_piece_vocabulary` and applied with its `WordPieceTokenizer`;
both run tensorflow-text ops, so tokenisation happens inside the
TensorFlow graph (in `tf.data` and in an exported SavedModel). Case and
accents are kept, because BLEU is computed on cased text.

Special tokens take the first ids, in this order: `[PAD]` 0, `[UNK]` 1,
`[BOS]` 2, `[EOS]` 3. An unknown character or script becomes `[UNK]`.
"""

import pathlib

import keras_hub
import tensorflow as tf

from recipes.common.files import atomic_write_text, read_text

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))

# The tokenizer splits punctuation off words and detokenisation joins the
# words with single spaces; these patterns glue the punctuation back so
# that the output reads like ordinary text ("Hund ." -> "Hund.").
_DETOKENIZE_FIXES = (
    (r" ([.,!?;:%)\]}])", r"\1"),
    (r"([(\[{]) ", r"\1"),
    (r" ?([-/]) ?", r"\1"),
    (r" ?(') ?(s|t|re|ll|ve|d|m) ", r"\1\2 "),
    (r"^ +| +$", ""),
)


class VocabularyError(ValueError):
    """A vocabulary file is missing or unusable; the message names it."""


def learn_vocabulary(texts, vocabulary_size):
    """Learns a cased WordPiece vocabulary from a list of strings.

    Args:
        texts: iterable of sentences (the training split).
        vocabulary_size: int, the largest vocabulary to return, special
            tokens included.

    Returns:
        A list of tokens whose first entries are `SPECIAL_TOKENS`.
    """
    dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(1000)
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset,
        vocabulary_size=vocabulary_size,
        lowercase=False,
        strip_accents=False,
        reserved_tokens=list(SPECIAL_TOKENS),
    )
    return list(vocabulary)


def save_vocabulary(vocabulary, path):
    """Writes one token per line (atomically) and returns the path."""
    return atomic_write_text(path, "".join(f"{t}\n" for t in vocabulary))


def load_vocabulary(path):
    """Reads a vocabulary file written by `save_vocabulary`.

    Raises:
        VocabularyError: if the file is missing, unreadable, or does not
            start with `SPECIAL_TOKENS`; the message names the file.
    """
    path = pathlib.Path(path)
    text = read_text(path, "Vocabulary", VocabularyError)
    vocabulary = text.split("\n")
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    head = tuple(vocabulary[: len(SPECIAL_TOKENS)])
    if head != SPECIAL_TOKENS:
        raise VocabularyError(
            f"Vocabulary file '{path}' is corrupt: it must start with the "
            f"tokens {list(SPECIAL_TOKENS)}, one per line. "
            f"Received: {list(head)}"
        )
    if len(set(vocabulary)) != len(vocabulary):
        raise VocabularyError(
            f"Vocabulary file '{path}' is corrupt: it lists a token twice."
        )
    return vocabulary


def make_tokenizer(vocabulary):
    """Returns a cased `keras_hub.tokenizers.WordPieceTokenizer`.

    It maps a batch of strings to a ragged batch of int32 ids (no special
    tokens added).
    """
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary,
        lowercase=False,
        strip_accents=False,
        oov_token=UNK,
        dtype="int32",
    )


def trim_after_eos(ids):
    """Returns a ragged batch of the ids before each row's first `[EOS]`.

    `[PAD]` and `[BOS]` ids are dropped too. `ids` is an int tensor
    `(batch, length)`.
    """
    ids = tf.convert_to_tensor(ids)
    is_eos = tf.cast(tf.equal(ids, EOS_ID), "int32")
    # Positions at or after the first [EOS] of the row.
    after_eos = tf.cumsum(is_eos, axis=1) > 0
    keep = tf.logical_and(
        tf.logical_not(after_eos),
        tf.logical_and(tf.not_equal(ids, PAD_ID), tf.not_equal(ids, BOS_ID)),
    )
    return tf.ragged.boolean_mask(ids, keep)


def detokenize(tokenizer, ids):
    """Turns a batch of id rows into a batch of readable strings.

    Stops each row at its first `[EOS]`, joins subwords, and removes the
    spaces the tokenizer put around punctuation. Runs in the TensorFlow
    graph, so it can be part of an exported function.

    Args:
        tokenizer: the `WordPieceTokenizer` of the target side.
        ids: int tensor `(batch, length)`.

    Returns:
        A string tensor `(batch,)`.
    """
    ragged = trim_after_eos(ids)
    text = tokenizer.detokenize(ragged)
    for pattern, rewrite in _DETOKENIZE_FIXES:
        text = tf.strings.regex_replace(text, pattern, rewrite)
    return text
