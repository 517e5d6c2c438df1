"""Export a trained run as a SavedModel with a `generate` signature.

```
generate(prompts: string (batch,), num_new_tokens: int32 (),
         temperature: float32 (), seed: int32 ()) -> {"text": string}
```

The function tokenises with TensorFlow string ops, runs the compiled
chunk decoder of `recipes.text_generation.generation` in a
`tf.while_loop` over chunks (carrying an RNN's states from chunk to
chunk) and returns each prompt followed by its continuation. Loading
needs TensorFlow alone:

```
generate = tf.saved_model.load(path).signatures["generate"]
generate(prompts=tf.constant(["ROMEO:"]), num_new_tokens=tf.constant(100),
         temperature=tf.constant(0.8), seed=tf.constant(1))["text"]
```

A negative or infinite temperature, a negative number of new tokens or
an empty batch of prompts fails with `InvalidArgumentError` naming the
argument.
"""

import tensorflow as tf

from recipes.common.files import atomic_directory
from recipes.text_generation import generation
from recipes.text_generation.vocabulary import BOS_ID, PAD_ID

SIGNATURE = "generate"
# The file every SavedModel folder holds; `overwrite` replaces only a
# folder that has it.
MARKER = "saved_model.pb"


class GenerationModule(tf.Module):
    """Holds the model, the vocabulary tables and the `generate` function."""

    def __init__(self, model, vocabulary, config):
        super().__init__()
        self.model = model
        self.encoder = vocabulary.graph_encoder()
        self.decoder_fn = vocabulary.graph_decoder()
        # Tracked attributes keep the vocabulary's tables and tokenizers
        # in the SavedModel.
        self.encoder_resources = self.encoder.resources
        self.decoder_resources = self.decoder_fn.resources
        chunk = config["chunk_length"]
        self.chunk_decoder = generation.ChunkDecoder(
            model, config["context_length"] - chunk, chunk
        )
        self.generate = tf.function(
            self._generate,
            input_signature=[
                tf.TensorSpec((None,), tf.string, name="prompts"),
                tf.TensorSpec((), tf.int32, name="num_new_tokens"),
                tf.TensorSpec((), tf.float32, name="temperature"),
                tf.TensorSpec((), tf.int32, name="seed"),
            ],
        )

    def _generate(self, prompts, num_new_tokens, temperature, seed):
        checks = [
            tf.debugging.assert_greater_equal(
                temperature,
                0.0,
                message="Argument `temperature` must be >= 0 (0 means greedy)",
            ),
            tf.debugging.assert_less(
                temperature,
                float("inf"),
                message="Argument `temperature` must be finite",
            ),
            tf.debugging.assert_greater_equal(
                num_new_tokens,
                0,
                message="Argument `num_new_tokens` must be >= 0",
            ),
            tf.debugging.assert_greater(
                tf.size(prompts),
                0,
                message="Argument `prompts` must hold at least one string",
            ),
        ]
        # Nothing may run before the checks: a negative count would fail
        # first in an op whose message names no argument.
        with tf.control_dependencies(checks):
            prompts = tf.identity(prompts)
            num_new_tokens = tf.identity(num_new_tokens)
            temperature = tf.identity(temperature)
        ids = self.encoder(prompts)
        lengths = tf.cast(ids.row_lengths(), "int32")
        batch = tf.shape(prompts)[0]
        dense = ids.to_tensor(default_value=PAD_ID)
        dense = tf.concat([dense, tf.fill([batch, 1], PAD_ID)], axis=1)
        # An empty prompt becomes the start token alone.
        empty = lengths == 0
        first = tf.where(empty, BOS_ID, dense[:, 0])
        dense = tf.concat([first[:, None], dense[:, 1:]], axis=1)
        lengths = tf.maximum(lengths, 1)

        chunk = self.chunk_decoder.chunk_length
        chunks = (num_new_tokens + chunk - 1) // chunk
        history = tf.concat(
            [dense, tf.zeros([batch, chunks * chunk], "int32")], axis=1
        )
        start_lengths = lengths
        decoder = self.chunk_decoder
        # Only a model that carries its states uses them; a Transformer's
        # loop carries an empty structure.
        state = ()
        if decoder.carries_state:
            state = tf.nest.map_structure(
                lambda spec: tf.zeros([batch, *spec.shape[1:]], spec.dtype),
                decoder.state_spec,
            )

        def from_window(history, lengths, seeds):
            windows, pads = generation.take_windows(
                history, lengths, decoder.window
            )
            return decoder(windows, pads, temperature, seeds)

        def body(index, history, lengths, state):
            seeds = tf.stack([seed, index])
            if not decoder.carries_state:
                new = from_window(history, lengths, seeds)
            else:
                last = tf.gather(history, lengths - 1, batch_dims=1)
                new, state = tf.cond(
                    index == 0,
                    lambda: from_window(history, lengths, seeds),
                    lambda: decoder.resume(last, state, temperature, seeds),
                )
            history, lengths = generation.append_tokens(history, lengths, new)
            return index + 1, history, lengths, state

        _, history, _, _ = tf.while_loop(
            lambda index, *_: index < chunks,
            body,
            (tf.constant(0), history, lengths, state),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, None]),
                tf.TensorShape([None]),
                tf.nest.map_structure(lambda t: t.shape, state),
            ),
        )
        columns = start_lengths[:, None] + tf.range(num_new_tokens)[None, :]
        new_ids = tf.gather(history, columns, batch_dims=1)
        return {"text": prompts + self.decoder_fn(new_ids)}


def export(model, vocabulary, config, path, overwrite=False):
    """Writes the SavedModel to `path` atomically; returns the path.

    An existing `path` is replaced only with `overwrite`, and only if it
    is an earlier export (it holds `saved_model.pb`).
    """
    module = GenerationModule(model, vocabulary, config)
    with atomic_directory(path, overwrite, MARKER) as temp:
        tf.saved_model.save(
            module, str(temp), signatures={SIGNATURE: module.generate}
        )
    return path
