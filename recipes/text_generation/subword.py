"""A subword vocabulary for language modelling: SentencePiece units.

The model is learned from the training text with the `sentencepiece`
library (the one keras-hub's SentencePiece tools use) and applied in the
TensorFlow graph with tensorflow-text's `SentencepieceTokenizer`, which
runs the same C++ code, so Python and graph tokenisation agree.

The text must come back exactly from its ids, or a loss per character
would not be one: no normalisation, spaces kept as they are, no space
added in front, and the newline is a piece of its own (SentencePiece
otherwise treats it as a sentence break and drops it). Pieces then
decode independently, so a text decoded chunk by chunk equals the text
decoded at once. Ids: `[PAD]` 0, `[UNK]` 1 (characters the training text
never had; they decode to nothing), `[BOS]` 2, as in `Vocabulary`.
"""

import base64
import io
import re

import tensorflow as tf

from recipes.text_generation.vocabulary import (
    BOS,
    BOS_ID,
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    save_json,
)

KIND = "sentencepiece"
# Lines longer than this many characters are cut for the trainer, which
# skips longer "sentences" without a word.
_TRAIN_PIECE_CHARACTERS = 2000


def _trainer_sentences(text):
    # The newline ends each line, so the trainer sees it as a symbol.
    for line in text.splitlines(keepends=True):
        for start in range(0, len(line), _TRAIN_PIECE_CHARACTERS):
            yield line[start : start + _TRAIN_PIECE_CHARACTERS]


class SubwordVocabulary:
    """SentencePiece subword units learned from a text.

    Args:
        proto: bytes, a serialised SentencePiece model, as `train` makes.

    Use `SubwordVocabulary.train(text, vocabulary_size)` to learn one.
    """

    kind = KIND

    def __init__(self, proto):
        import sentencepiece

        self.proto = bytes(proto)
        self.processor = sentencepiece.SentencePieceProcessor(
            model_proto=self.proto
        )
        special = [self.processor.id_to_piece(i) for i in range(3)]
        if special != [PAD, UNK, BOS]:
            raise ValueError(
                "A subword model must have the special pieces "
                f"{[PAD, UNK, BOS]} as ids 0, 1, 2. Received: {special}"
            )

    @classmethod
    def train(cls, text, vocabulary_size, model_type="unigram"):
        """Learns a vocabulary of at most `vocabulary_size` units.

        The limit is soft: a text with fewer distinct pieces gets a
        smaller vocabulary instead of an error.
        """
        import sentencepiece

        if "\n" not in text:
            # The newline must be a piece even if this text has none.
            text += "\n"
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=_trainer_sentences(text),
                model_writer=model,
                vocab_size=vocabulary_size,
                hard_vocab_limit=False,
                model_type=model_type,
                character_coverage=1.0,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                user_defined_symbols=["\n"],
                max_sentence_length=4 * _TRAIN_PIECE_CHARACTERS,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=-1,
                pad_piece=PAD,
                unk_piece=UNK,
                bos_piece=BOS,
                unk_surface="",
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as error:
            # SentencePiece says e.g. "Vocabulary size is smaller than
            # required_chars. 60 vs 61." when the text has more characters.
            needed = re.search(
                r"smaller than required_chars\. \d+ vs (\d+)", str(error)
            )
            if needed is None:
                raise
            raise ValueError(
                "Config key `vocabulary_size` must be at least "
                f"{needed.group(1)} for this training text: a unit for each "
                "of its characters and the special tokens. "
                f"Received: vocabulary_size={vocabulary_size}"
            ) from None
        return cls(model.getvalue())

    @property
    def size(self):
        return self.processor.get_piece_size()

    def encode(self, text):
        """A list of ids; characters never seen in training are `UNK_ID`."""
        return self.processor.encode(text)

    def decode(self, ids):
        """The text of `ids`; special ids decode to nothing."""
        return self.processor.decode([int(i) for i in ids])

    def stream_decoder(self):
        """A function decoding successive chunks of ids (see
        `Vocabulary.stream_decoder`): pieces decode on their own, so each
        chunk decodes alone."""
        return lambda ids, final=False: self.decode(ids)

    def units_per_character(self, text):
        """Ids per character of `text` (below 1: a piece spans characters)."""
        return len(self.encode(text)) / max(len(text), 1)

    # Graph versions, for tf.data and exported functions.

    def _tokenizer(self):
        import tensorflow_text

        return tensorflow_text.SentencepieceTokenizer(
            model=self.proto, out_type=tf.int32
        )

    def graph_encoder(self):
        """A function: string tensor `(batch,)` -> ragged int32 ids."""
        tokenizer = self._tokenizer()

        def encode(texts):
            return tokenizer.tokenize(texts)

        # Keep the tokenizer's resource alive with the function
        # (SavedModel tracking).
        encode.resources = tokenizer
        return encode

    def graph_decoder(self):
        """A function: int ids `(batch, length)` -> string tensor."""
        tokenizer = self._tokenizer()

        def decode(ids):
            return tokenizer.detokenize(tf.cast(ids, tf.int32))

        decode.resources = tokenizer
        return decode

    # Files.

    def to_json(self):
        return {
            "kind": KIND,
            "model": base64.b64encode(self.proto).decode("ascii"),
        }

    def save(self, path):
        """Writes the vocabulary as JSON (atomically); returns the path."""
        return save_json(self.to_json(), path)

    @classmethod
    def from_json(cls, values):
        return cls(base64.b64decode(values["model"], validate=True))
