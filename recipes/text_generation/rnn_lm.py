"""A residual LSTM/GRU language model that carries its states."""

import keras
from keras import ops

from skipseq.layers import Dropout, ResidualRNN


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class RNNLM(keras.Model):
    """Embedding, a skipseq `ResidualRNN` stack and a logits layer.

    ```
    h_0 = E[token_t];   h = ResidualRNN(h_0);   logits = W h + b
    ```

    Decoding feeds one token per step and carries the recurrent states
    (`prefill`, `step_fn`), from one generated chunk to the next as well
    (`carries_state`): unlike a Transformer's window, the states summarise
    everything generated so far. Left pad tokens of a prompt are masked,
    so they leave the states at zero.

    Args:
        vocabulary_size: int, the number of token ids.
        cell_type: `"lstm"` (default) or `"gru"`.
        width: int, embedding and recurrent width. Defaults to `256`.
        num_layers: int. Defaults to `3`.
        residual_start: int, the first layer with a skip. Defaults to `1`.
        norm_position: residual normalisation, as `ResidualRNN`.
            Defaults to `"none"`.
        dropout: float. Defaults to `0.0`.
        seed: optional int seed of the dropouts.

    >>> import numpy as np
    >>> model = RNNLM(10, "gru", width=8, num_layers=2)
    >>> tuple(model(np.zeros((2, 5), "int32")).shape)
    (2, 5, 10)
    """

    def __init__(
        self,
        vocabulary_size,
        cell_type="lstm",
        width=256,
        num_layers=3,
        residual_start=1,
        norm_position="none",
        dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.cell_type = cell_type
        self.width = width
        self.num_layers = num_layers
        self.residual_start = residual_start
        self.norm_position = norm_position
        self.dropout = dropout
        self.seed = seed

        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, width, name="token_embedding"
        )
        self.embedding_dropout = Dropout(dropout, seed=seed)
        self.rnn = ResidualRNN(
            cell_type,
            num_layers=num_layers,
            units=width,
            residual_start=min(residual_start, num_layers),
            norm_position=norm_position,
            dropout=dropout,
            seed=seed,
            return_state=True,
            name="rnn",
        )
        self.lm_head = keras.layers.Dense(vocabulary_size, name="lm_head")

    def build(self, input_shape):
        batch, length = input_shape[0], input_shape[1]
        self.token_embedding.build((batch, length))
        self.rnn.build((batch, length, self.width))
        self.lm_head.build((batch, length, self.width))
        self.built = True

    def call(self, token_ids, training=None):
        x = self.token_embedding(token_ids)
        x = self.embedding_dropout(x, training=training)
        outputs, *_ = self.rnn(x, training=training)
        return self.lm_head(outputs)

    # Generation hands the states of one chunk on to the next.
    carries_state = True

    def prefill(self, token_ids, pad_counts, max_length=None, state=None):
        """The states after feeding `token_ids` (left-padded) at once.

        `state`, a dict returned by `prefill` or by decoding, is where the
        recurrence starts (zeros when None); `max_length` is unused (an
        RNN has no cache to size).
        """
        width = token_ids.shape[1]
        positions = ops.arange(width, dtype="int32")[None, :]
        mask = positions >= pad_counts[:, None]
        x = self.token_embedding(token_ids)
        initial = None if state is None else list(state["states"])
        _, *states = self.rnn(x, mask=mask, initial_state=initial)
        return {"states": tuple(states)}

    def step_fn(self, prefill_length):
        """A `skipseq.decoding` step function carrying the RNN states."""

        def step(tokens, state, index):
            x = self.token_embedding(tokens[:, None])
            outputs, *states = self.rnn(x, initial_state=list(state["states"]))
            logits = self.lm_head(outputs[:, 0])
            return logits, {"states": tuple(states)}

        return step

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "cell_type": self.cell_type,
                "width": self.width,
                "num_layers": self.num_layers,
                "residual_start": self.residual_start,
                "norm_position": self.norm_position,
                "dropout": self.dropout,
                "seed": self.seed,
            }
        )
        return config
