"""Encoder-decoder translation models assembled from skipseq layers.

Both models take `{"source": ids, "target_in": ids}` (int32, padded with
0) and return target logits `(batch, T, target_vocabulary_size)` for
teacher-forced training. For search they expose the contract of
`skipseq.decoding`:

```
state = model.initial_state(source, max_length)
logits, state = model.step(tokens, state, index)
```

where `state` is a dict of tensors with the batch on axis 0 (the decoder
cache, the encoder outputs and the source padding mask), so beam search
can tile and reorder it.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from skipseq import layers
from skipseq.layers import Dropout

RESIDUALS = ("pre", "post", "sandwich", "deepnorm", "rezero")
CELL_TYPES = ("lstm", "gru")


def _one_of(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )


def padding_mask(ids):
    """True at real tokens of an id tensor padded with 0."""
    return ops.not_equal(ids, 0)


def example_batch():
    """A one-row `(inputs, targets)` batch with the recipe's structure."""
    ids = np.ones((1, 2), "int32")
    return {"source": ids, "target_in": ids}, ids


class Seq2SeqModel(keras.Model):
    """Base of the translators: works around a Keras distribution bug.

    Under a `tf.distribute` strategy, `fit` first reduces a whole input
    batch across replicas (`strategy.reduce("MEAN", batch)`) only to learn
    its shapes and build the model. `MultiWorkerMirroredStrategy` cannot
    reduce a nested (dict) batch (keras-team/keras#20329), and
    `MirroredStrategy` turns the int ids into floats. The build needs
    only shapes and dtypes, so it is given a local example batch instead.
    Under `MultiWorkerMirroredStrategy` the step logs are also returned as
    one-element vectors, which Keras' cross-worker reduction accepts.
    Drop these overrides once Keras fixes both.
    """

    def train_step(self, data):
        return self._reducible_logs(super().train_step(data))

    def test_step(self, data):
        return self._reducible_logs(super().test_step(data))

    def _reducible_logs(self, logs):
        # Keras reduces each log across workers with
        # `strategy.reduce("MEAN", value, axis=0)`, which rejects scalars
        # (tensorflow#72388); a one-element vector reduces to the scalar.
        strategy = self.distribute_strategy
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras sets `_distribute_strategy` when the model is made under a
        # strategy scope, and builds this way only then.
        if self._distribute_strategy is None or data_batch is not None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        with self._distribute_strategy.scope():
            self._symbolic_build(data_batch=example_batch())


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class TransformerTranslator(Seq2SeqModel):
    """Transformer encoder-decoder (Vaswani et al. 2017) from skipseq blocks.

    ```
    memory = Encoder(Embed_src(source))
    logits = Embed_tgt^T(Decoder(Embed_tgt(target_in), memory))
    ```

    The output projection is tied to the target embedding; with
    `share_embeddings=True` (a shared vocabulary) the source side uses the
    same table. The residual variant of every block is `residual`
    (`"pre"` by default; `"post"`, `"sandwich"`, `"deepnorm"` and
    `"rezero"` as in `skipseq.layers.TransformerEncoderBlock`).

    Args:
        source_vocabulary_size: int.
        target_vocabulary_size: int.
        max_length: int, the longest source or target sequence (ids).
        hidden_dim: int, the model width. Defaults to `256`.
        intermediate_dim: int, the feed-forward width. Defaults to `512`.
        num_heads: int. Defaults to `4`.
        num_encoder_layers: int. Defaults to `3`.
        num_decoder_layers: int. Defaults to `3`.
        dropout: float. Defaults to `0.1`.
        residual: str, the residual variant. Defaults to `"pre"`.
        position: `"learned"` (default) or `"sinusoidal"`.
        share_embeddings: bool, use one table for both sides (requires
            equal vocabulary sizes). Defaults to `False`.
        seed: optional int seed for dropout.

    >>> model = TransformerTranslator(50, 60, 8, hidden_dim=16,
    ...     intermediate_dim=32, num_heads=2, num_encoder_layers=2,
    ...     num_decoder_layers=1)
    >>> ids = np.array([[5, 6, 3, 0]], "int32")
    >>> tuple(model({"source": ids, "target_in": ids}).shape)
    (1, 4, 60)
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        max_length,
        hidden_dim=256,
        intermediate_dim=512,
        num_heads=4,
        num_encoder_layers=3,
        num_decoder_layers=3,
        dropout=0.1,
        residual="pre",
        position="learned",
        share_embeddings=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _one_of("residual", residual, RESIDUALS)
        if share_embeddings and (
            source_vocabulary_size != target_vocabulary_size
        ):
            raise ValueError(
                "Argument `share_embeddings=True` needs equal vocabulary "
                f"sizes. Received: source_vocabulary_size="
                f"{source_vocabulary_size}, target_vocabulary_size="
                f"{target_vocabulary_size}"
            )
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.max_length = max_length
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.dropout = dropout
        self.residual = residual
        self.position = position
        self.share_embeddings = share_embeddings
        self.seed = seed

        def embedding(size, name):
            return layers.TokenAndPositionEmbedding(
                size,
                max_length,
                hidden_dim,
                position=position,
                scale_embedding=True,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=hidden_dim**-0.5
                ),
                name=name,
            )

        self.target_embedding = embedding(
            target_vocabulary_size, "target_embedding"
        )
        self.source_embedding = (
            self.target_embedding
            if share_embeddings
            else embedding(source_vocabulary_size, "source_embedding")
        )
        stack = {
            "intermediate_dim": intermediate_dim,
            "num_heads": num_heads,
            "dropout": dropout,
            "residual": residual,
        }
        self.encoder = layers.TransformerEncoder(
            num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            seed=seed,
            name="encoder",
            **stack,
        )
        self.decoder = layers.TransformerDecoder(
            num_decoder_layers,
            seed=None if seed is None else seed + 1,
            name="decoder",
            **stack,
        )
        self.embedding_dropout = Dropout(dropout, seed=seed)

    def encode(self, source, training=False):
        """Returns `(memory (batch, S, hidden_dim), source_mask)`."""
        source_mask = padding_mask(source)
        x = self.source_embedding(source)
        x = self.embedding_dropout(x, training=training)
        memory = self.encoder(x, padding_mask=source_mask, training=training)
        return memory, source_mask

    def call(self, inputs, training=False):
        # Keras builds a distributed model from the MEAN of a data batch,
        # which turns the ids into floats; cast them back.
        source = ops.cast(inputs["source"], "int32")
        target_in = ops.cast(inputs["target_in"], "int32")
        memory, source_mask = self.encode(source, training=training)

        # The causal mask keeps real positions away from the trailing
        # padding, so the decoder needs only the source padding mask.
        y = self.target_embedding(target_in)
        y = self.embedding_dropout(y, training=training)
        y = self.decoder(
            y,
            memory,
            encoder_padding_mask=source_mask,
            training=training,
        )
        return self.target_embedding(y, reverse=True)

    def initial_state(self, source, max_length):
        """The search state for `source`: a decoder cache of `max_length`."""
        memory, source_mask = self.encode(source)
        batch = ops.shape(source)[0]
        return self.decoder.init_cache(
            batch,
            max_length,
            encoder_outputs=memory,
            encoder_padding_mask=source_mask,
        )

    def step(self, tokens, state, index):
        """One decoding step: `(batch,)` ids at `index` to next logits."""
        x = self.target_embedding(tokens[:, None], start_index=index)
        y, state = self.decoder.call_with_cache(x, state, index)
        logits = self.target_embedding(y, reverse=True)
        return logits[:, 0], state

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "max_length": self.max_length,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_heads": self.num_heads,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "dropout": self.dropout,
            "residual": self.residual,
            "position": self.position,
            "share_embeddings": self.share_embeddings,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class RNNTranslator(Seq2SeqModel):
    """GNMT-style residual RNN encoder-decoder with attention.

    ```
    memory = ResidualRNN(Embed_src(source))     (bidirectional bottom)
    h      = ResidualRNNDecoder(Embed_tgt(target_in), memory)
    logits = Dense(h)
    ```

    The decoder starts from zero states and attends to the encoder outputs
    from its bottom layer (Wu et al. 2016).

    Args:
        source_vocabulary_size: int.
        target_vocabulary_size: int.
        max_length: int, the longest sequence (kept for the search).
        hidden_dim: int, the embedding and recurrent width. Defaults to
            `256`.
        num_encoder_layers: int. Defaults to `2`.
        num_decoder_layers: int. Defaults to `2`.
        cell_type: `"lstm"` (default) or `"gru"`.
        residual_start: int, first layer with a skip (clipped to each
            stack's depth). Defaults to `1`.
        attention_score: `"additive"` (default), `"dot"` or `"general"`.
        dropout: float. Defaults to `0.1`.
        share_embeddings: bool. Defaults to `False`.
        seed: optional int seed for dropout.

    >>> model = RNNTranslator(50, 60, 8, hidden_dim=16, cell_type="gru")
    >>> ids = np.array([[5, 6, 3, 0]], "int32")
    >>> state = model.initial_state(ids, max_length=8)
    >>> logits, state = model.step(np.array([2]), state, 0)
    >>> tuple(logits.shape)
    (1, 60)
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        max_length,
        hidden_dim=256,
        num_encoder_layers=2,
        num_decoder_layers=2,
        cell_type="lstm",
        residual_start=1,
        attention_score="additive",
        dropout=0.1,
        share_embeddings=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _one_of("cell_type", cell_type, CELL_TYPES)
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.max_length = max_length
        self.hidden_dim = hidden_dim
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.cell_type = cell_type
        self.residual_start = residual_start
        self.attention_score = attention_score
        self.dropout = dropout
        self.share_embeddings = share_embeddings
        self.seed = seed

        self.target_embedding = keras.layers.Embedding(
            target_vocabulary_size, hidden_dim, name="target_embedding"
        )
        self.source_embedding = (
            self.target_embedding
            if share_embeddings
            else keras.layers.Embedding(
                source_vocabulary_size, hidden_dim, name="source_embedding"
            )
        )
        self.encoder = layers.ResidualRNN(
            cell_type,
            num_layers=num_encoder_layers,
            units=hidden_dim,
            residual_start=min(residual_start, num_encoder_layers),
            bidirectional_first=True,
            dropout=dropout,
            seed=seed,
            name="encoder",
        )
        self.decoder = layers.ResidualRNNDecoder(
            cell_type,
            num_layers=num_decoder_layers,
            units=hidden_dim,
            residual_start=min(residual_start, num_decoder_layers),
            attention_score=attention_score,
            output_context=True,
            dropout=dropout,
            seed=None if seed is None else seed + 1,
            name="decoder",
        )
        self.embedding_dropout = Dropout(dropout, seed=seed)
        self.output_projection = keras.layers.Dense(
            target_vocabulary_size, name="output_projection"
        )

    def encode(self, source, training=False):
        """Returns `(memory (batch, S, width), source_mask)`."""
        source_mask = padding_mask(source)
        x = self.source_embedding(source)
        x = self.embedding_dropout(x, training=training)
        memory = self.encoder(x, mask=source_mask, training=training)
        return memory, source_mask

    def call(self, inputs, training=False):
        # Keras builds a distributed model from the MEAN of a data batch,
        # which turns the ids into floats; cast them back.
        source = ops.cast(inputs["source"], "int32")
        target_in = ops.cast(inputs["target_in"], "int32")
        memory, source_mask = self.encode(source, training=training)
        y = self.target_embedding(target_in)
        y = self.embedding_dropout(y, training=training)
        h = self.decoder(
            y,
            memory,
            encoder_mask=source_mask,
            mask=padding_mask(target_in),
            training=training,
        )
        return ops.cast(self.output_projection(h), "float32")

    def initial_state(self, source, max_length):
        """The search state: encoder outputs, mask and zero RNN states."""
        memory, source_mask = self.encode(source)
        batch = ops.shape(source)[0]
        return {
            "memory": memory,
            "source_mask": source_mask,
            "rnn": self.decoder.initial_states(batch),
        }

    def step(self, tokens, state, index):
        """One decoding step: `(batch,)` ids to next-token logits."""
        x = self.target_embedding(tokens)
        h, rnn = self.decoder.step(
            x, state["rnn"], state["memory"], state["source_mask"]
        )
        logits = ops.cast(self.output_projection(h), "float32")
        return logits, {**state, "rnn": rnn}

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "max_length": self.max_length,
            "hidden_dim": self.hidden_dim,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "cell_type": self.cell_type,
            "residual_start": self.residual_start,
            "attention_score": self.attention_score,
            "dropout": self.dropout,
            "share_embeddings": self.share_embeddings,
            "seed": self.seed,
        }
