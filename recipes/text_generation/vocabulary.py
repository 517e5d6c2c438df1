"""Character and byte vocabularies for language modelling.

Ids: `PAD_ID` 0 (never in the training text, pads prompts), `UNK_ID` 1
(a character the training text never had), `BOS_ID` 2 (the start of an
empty prompt), then the units in sorted order. A character vocabulary
holds the distinct characters of the training text; a byte vocabulary
holds the 256 byte values, so nothing is ever unknown. Subword units
(`recipes.text_generation.subword`) use the same special ids.

Both encode and decode in Python (training data, the command line) and
with TensorFlow string ops (an exported SavedModel), the same way.
`build_vocabulary` and `load_vocabulary` serve every kind.
"""

import codecs
import json
import pathlib

import tensorflow as tf

from recipes.common.files import atomic_write_text, read_text

PAD, UNK, BOS = "[PAD]", "[UNK]", "[BOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS)
PAD_ID, UNK_ID, BOS_ID = range(len(SPECIAL_TOKENS))
KINDS = ("char", "byte")
# Every tokenizer of the recipe: these and the subword units.
ALL_KINDS = KINDS + ("sentencepiece",)


class Vocabulary:
    """Maps text to ids and back, one id per character or per byte.

    Args:
        units: list of distinct single-character strings (`kind="char"`),
            or None for `kind="byte"` (the 256 byte values).
        kind: `"char"` (default) or `"byte"`.

    >>> vocab = Vocabulary.from_text("abca")
    >>> vocab.encode("cab?")
    [5, 3, 4, 1]
    >>> vocab.decode([5, 3, 4, 1])
    'cab'
    """

    def __init__(self, units=None, kind="char"):
        if kind not in KINDS:
            raise ValueError(
                f"Argument `kind` must be one of {list(KINDS)}. "
                f"Received: kind={kind!r}"
            )
        if kind == "byte":
            units = [bytes([b]).decode("latin-1") for b in range(256)]
        units = list(units or [])
        if len(set(units)) != len(units) or any(len(u) != 1 for u in units):
            raise ValueError(
                "Argument `units` must hold distinct single characters. "
                f"Received: units={units[:10]!r}..."
            )
        self.kind = kind
        self.units = units
        self.tokens = list(SPECIAL_TOKENS) + units
        self._ids = {u: i + len(SPECIAL_TOKENS) for i, u in enumerate(units)}

    @classmethod
    def from_text(cls, text, kind="char"):
        """The vocabulary of `text` (its sorted distinct characters)."""
        if kind == "byte":
            return cls(kind="byte")
        return cls(sorted(set(text)), kind=kind)

    @property
    def size(self):
        return len(self.tokens)

    def _split(self, text):
        if self.kind == "byte":
            return text.encode("utf-8").decode("latin-1")
        return text

    def encode(self, text):
        """A list of ids, `UNK_ID` for units outside the vocabulary."""
        return [self._ids.get(u, UNK_ID) for u in self._split(text)]

    def decode(self, ids):
        """The text of `ids`; special ids decode to nothing."""
        first = len(SPECIAL_TOKENS)
        text = "".join(self.units[i - first] for i in ids if i >= first)
        if self.kind == "byte":
            return text.encode("latin-1").decode("utf-8", errors="replace")
        return text

    def stream_decoder(self):
        """A function decoding successive chunks of ids of one text.

        Bytes of a character that a chunk boundary cuts are held back
        until the next chunk completes them (decoding each chunk alone
        would print a replacement character instead); `final=True` says
        no chunk follows.
        """
        if self.kind != "byte":
            return lambda ids, final=False: self.decode(ids)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        first = len(SPECIAL_TOKENS)

        def decode(ids, final=False):
            units = "".join(self.units[i - first] for i in ids if i >= first)
            return utf8.decode(units.encode("latin-1"), final=final)

        return decode

    def units_per_character(self, text):
        """Ids per character of `text`: 1 for characters, >= 1 for bytes."""
        return len(self._split(text)) / max(len(text), 1)

    # Graph versions, for tf.data and exported functions.

    def _table(self):
        keys = self.units
        if self.kind == "byte":
            keys = [u.encode("latin-1") for u in keys]
        keys = tf.constant(keys)
        values = tf.range(len(SPECIAL_TOKENS), self.size, dtype="int32")
        initializer = tf.lookup.KeyValueTensorInitializer(keys, values)
        return tf.lookup.StaticHashTable(initializer, default_value=UNK_ID)

    def graph_encoder(self):
        """A function: string tensor `(batch,)` -> ragged int32 ids."""
        table = self._table()
        byte_level = self.kind == "byte"

        def encode(texts):
            if byte_level:
                pieces = tf.strings.bytes_split(texts)
            else:
                pieces = tf.strings.unicode_split(texts, "UTF-8")
            return tf.ragged.map_flat_values(table.lookup, pieces)

        # Keep the table alive with the function (SavedModel tracking).
        encode.resources = table
        return encode

    def graph_decoder(self):
        """A function: int ids `(batch, length)` -> string tensor."""
        pieces = [""] * len(SPECIAL_TOKENS) + self.units
        if self.kind == "byte":
            pieces = [u.encode("latin-1") for u in pieces]
        pieces = tf.constant(pieces)

        def decode(ids):
            text = tf.strings.reduce_join(tf.gather(pieces, ids), axis=-1)
            if self.kind == "byte":
                text = tf.strings.unicode_transcode(
                    text, "UTF-8", "UTF-8", errors="replace"
                )
            return text

        decode.resources = None
        return decode

    # Files.

    def to_json(self):
        return {"kind": self.kind, "units": self.units}

    def save(self, path):
        """Writes the vocabulary as JSON (atomically); returns the path."""
        return save_json(self.to_json(), path)

    @classmethod
    def from_json(cls, values):
        kind = values.get("kind", "char")
        return cls(None if kind == "byte" else values["units"], kind=kind)

    @classmethod
    def load(cls, path):
        """Reads a file written by `save`; errors name the file."""
        return load_vocabulary(path)


def save_json(values, path):
    """Writes a vocabulary's JSON (atomically); returns the path."""
    text = json.dumps(values, ensure_ascii=True) + "\n"
    return atomic_write_text(path, text)


def build_vocabulary(text, kind="char", vocabulary_size=None):
    """The vocabulary of kind `kind` learned from `text`.

    `vocabulary_size` bounds a subword vocabulary (special ids included).
    """
    if kind not in ALL_KINDS:
        raise ValueError(
            f"Argument `kind` must be one of {list(ALL_KINDS)}. "
            f"Received: kind={kind!r}"
        )
    if kind == "sentencepiece":
        from recipes.text_generation.subword import SubwordVocabulary

        return SubwordVocabulary.train(text, vocabulary_size)
    return Vocabulary.from_text(text, kind=kind)


def load_vocabulary(path):
    """Reads a vocabulary file of any kind; errors name the file."""
    path = pathlib.Path(path)
    text = read_text(path, "Vocabulary")
    try:
        values = json.loads(text)
    except ValueError as error:
        raise ValueError(
            f"Vocabulary file '{path}' cannot be read: {error}"
        ) from None
    try:
        if values.get("kind") == "sentencepiece":
            from recipes.text_generation.subword import SubwordVocabulary

            return SubwordVocabulary.from_json(values)
        return Vocabulary.from_json(values)
    except (
        AttributeError,
        KeyError,
        RuntimeError,
        TypeError,
        ValueError,
    ) as error:
        # RuntimeError: SentencePiece refusing a corrupt model.
        raise ValueError(
            f"Vocabulary file '{path}' is corrupt: it must hold a JSON "
            'object {"kind": ..., ...} as written by `train`. '
            f"({type(error).__name__}: {error})"
        ) from None
