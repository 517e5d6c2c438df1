"""Export a trained translator as a self-contained SavedModel.

The SavedModel's `serving_default` signature takes a batch of raw
strings and returns the translated strings; tokenisation, encoding, beam
search and detokenisation all run in the graph. Loading it needs only
TensorFlow and tensorflow-text, and tensorflow-text must be imported
before loading, because it registers the tokenizer ops:

```
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops)

translator = tf.saved_model.load("path/to/export")
out = translator.signatures["serving_default"](tf.constant(["A dog."]))
print(out["translations"].numpy())
```

The tokenizers are attributes of the exported `tf.Module`, so their
state is tracked and saved with it rather than captured by accident.
"""

import json
import pathlib
import shutil

import tensorflow as tf

from recipes.common import tokenizer as subwords
from recipes.common.files import atomic_directory
from recipes.translation import data, search

# The file every SavedModel folder holds; `--overwrite` replaces only a
# folder that has it.
MARKER = "saved_model.pb"

README = """\
Translation SavedModel ({source} -> {target}), exported by skipseq.

Load it with TensorFlow and tensorflow-text; import tensorflow_text FIRST,
because it registers the tokenizer ops the graph uses (without it,
loading fails with an unknown-op error such as
'Op type not registered FastWordpieceTokenizeWithOffsets'):

    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    model = tf.saved_model.load("{path}")
    serve = model.signatures["serving_default"]
    result = serve(tf.constant(["A man rides a bike."]))
    print([t.decode("utf-8") for t in result["translations"].numpy()])

Also callable as model.translate(tf.constant([...])), which returns the
string tensor directly.

Inputs: a 1-D string tensor. Empty strings, inputs longer than
{max_length} tokens (truncated) and characters the vocabulary never saw
all give a string. Search: beam size {beam_size}, GNMT length penalty
{length_penalty}, at most {max_decode} output tokens.
"""


class TranslationModule(tf.Module):
    """A `tf.Module` whose `translate` maps strings to translations.

    Args:
        translator: a `recipes.translation.recipe.Translator`.
        beam_size: int, the beam width of the exported search.
        length_penalty: float, its GNMT length penalty.
    """

    def __init__(self, translator, beam_size, length_penalty):
        super().__init__(name="translation")
        config = translator.config
        # The variables, not the Keras model, are attributes: a tracked
        # Keras model would add its own float-input serving signature.
        self.model_variables = list(translator.model.variables)
        # Tracked here so that SavedModel saves any tokenizer resource
        # (keras-hub issue 1629).
        self.source_tokenizer = translator.source_tokenizer
        self.target_tokenizer = translator.target_tokenizer
        self.max_length = config["max_length"]
        self.bucket_lengths = sorted(
            set(config["bucket_lengths"]) | {config["max_length"]}
        )
        self.search_fn = search.make_search_fn(
            translator.model,
            config["max_decode_length"],
            beam_size,
            length_penalty,
            jit_compile=config["jit_compile"],
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate(self, texts):
        """Strings `(batch,)` to translated strings `(batch,)`."""
        source = data.encode_source(
            self.source_tokenizer, texts, self.max_length
        )

        # Pad to a bucket length so the compiled search sees few shapes.
        lengths = tf.constant(self.bucket_lengths, "int32")
        width = tf.shape(source)[1]
        padded = tf.reduce_min(tf.boolean_mask(lengths, lengths >= width))
        source = tf.pad(source, [[0, 0], [0, padded - width]])

        ids = self.search_fn(source)
        return subwords.detokenize(self.target_tokenizer, ids)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, texts):
        """The serving signature: `{"translations": strings}`."""
        return {"translations": self.translate(texts)}


def export(translator, export_dir, overwrite=False, beam_size=None):
    """Writes the SavedModel to `export_dir` atomically.

    The model is written to a temporary folder next to `export_dir` and
    renamed into place when complete; a failure leaves nothing behind and
    an existing `export_dir` is replaced only with `overwrite`, and only
    if it is an earlier export (it holds `saved_model.pb`).

    Returns:
        The export path.
    """
    config = translator.config
    beam_size = beam_size or config["beam_size"]
    export_dir = pathlib.Path(export_dir)
    module = TranslationModule(translator, beam_size, config["length_penalty"])
    with atomic_directory(export_dir, overwrite, MARKER) as temp:
        tf.saved_model.save(
            module, str(temp), signatures={"serving_default": module.serve}
        )
        extra = temp / "assets.extra"
        extra.mkdir(exist_ok=True)
        source_vocab, target_vocab = data.vocabulary_paths(
            extra, config["shared_vocabulary"]
        )
        subwords.save_vocabulary(translator.source_vocabulary, source_vocab)
        subwords.save_vocabulary(translator.target_vocabulary, target_vocab)
        (extra / "config.json").write_text(
            json.dumps(config, indent=2) + "\n", encoding="utf-8"
        )
        readme = README.format(
            source=config["source_lang"],
            target=config["target_lang"],
            path=export_dir,
            max_length=config["max_length"],
            beam_size=beam_size,
            length_penalty=config["length_penalty"],
            max_decode=config["max_decode_length"],
        )
        (temp / "README.txt").write_text(readme, encoding="utf-8")
        shutil.copy(temp / "README.txt", extra / "README.txt")
    return export_dir


# Run in a fresh interpreter by `check_export`: only TensorFlow and
# tensorflow-text are imported, as a user of the export would.
LOAD_SNIPPET = """\
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.stdin.read())
out = model.signatures["serving_default"](tf.constant(texts, tf.string))
strings = [t.decode("utf-8") for t in out["translations"].numpy()]
bad = sorted(m for m in sys.modules if m.split(".")[0] in
             ("skipseq", "keras_hub", "recipes"))
print(json.dumps({"translations": strings, "modules": bad}))
"""


def translate_in_subprocess(export_dir, texts, timeout=600):
    """Loads the export in a fresh Python process and translates `texts`.

    Returns:
        `(translations, modules)`: the strings, and any of skipseq,
        keras_hub or recipes modules the process imported (should be
        none).
    """
    import os
    import subprocess
    import sys

    # The child runs elsewhere (below), so it needs an absolute path.
    export_dir = pathlib.Path(export_dir).resolve()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, str(export_dir)],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        # Not the repository root, so `import recipes` could not even work.
        cwd=str(export_dir.parent),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"Loading the export '{export_dir}' in a subprocess failed:\n"
            f"{result.stderr[-3000:]}"
        )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["translations"], answer["modules"]
