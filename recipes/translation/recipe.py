"""Train, load and evaluate translation models.

`train` learns (or reuses) the vocabulary, builds the model under the
configured distribution strategy, and fits it with BackupAndRestore so
that an interrupted run resumes. `Translator` reloads a finished run
(configuration, vocabularies and weights from the run directory) and
translates strings; `evaluate` scores it with sacrebleu.
"""

import json
import logging
import numbers
import pathlib
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from recipes.common import config as configs
from recipes.common import distribute, losses, metrics, schedules, training
from recipes.common import tokenizer as subwords
from recipes.common.files import atomic_write_text
from recipes.translation import data, models, search
from recipes.translation.config import DEFAULTS

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
REPORT_FILE = "report.json"
SUMMARY_FILE = "training.json"
MODELS = ("transformer", "rnn")
# The keys `--set` may change in a trained run (evaluate, translate,
# export); the others are fixed by the weights and the vocabulary.
SEARCH_KEYS = (
    "beam_size",
    "length_penalty",
    "max_decode_length",
    "eval_batch_size",
    "bucket_lengths",
    "jit_compile",
    "test_corpus",
    "test_split",
    "max_eval_examples",
)


def check_time_limit(config):
    """Raises `ConfigError` unless `max_train_seconds` is a usable limit."""
    seconds = config["max_train_seconds"]
    if seconds is None:
        return
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or seconds < 0
    ):
        raise configs.ConfigError(
            "Config key `max_train_seconds` must be null or a number >= 0 "
            f"(null or 0: no limit). Received: max_train_seconds={seconds!r}"
        )


def check_search_settings(config):
    """Raises `ConfigError` for search settings no search could use."""

    def fail(key, expected):
        raise configs.ConfigError(
            f"Config key `{key}` must be {expected}. "
            f"Received: {key}={config[key]!r}"
        )

    if config["beam_size"] < 1:
        fail("beam_size", "an integer >= 1 (1: greedy search)")
    if config["eval_batch_size"] < 1:
        fail("eval_batch_size", "an integer >= 1")
    if config["max_decode_length"] < 2:
        fail("max_decode_length", "at least 2 ([BOS] and one token)")
    if (
        config["model"] == "transformer"
        and config["max_decode_length"] > config["max_length"]
    ):
        # The position embeddings stop at max_length.
        fail(
            "max_decode_length",
            f"at most max_length (= {config['max_length']}) for a Transformer",
        )


def build_model(config, source_vocabulary_size, target_vocabulary_size):
    """The (built) translation model that `config` describes."""
    common = {
        "source_vocabulary_size": source_vocabulary_size,
        "target_vocabulary_size": target_vocabulary_size,
        "max_length": config["max_length"],
        "hidden_dim": config["hidden_dim"],
        "num_encoder_layers": config["num_encoder_layers"],
        "num_decoder_layers": config["num_decoder_layers"],
        "dropout": config["dropout"],
        "share_embeddings": config["share_embeddings"],
        "seed": config["seed"],
    }
    if config["model"] == "transformer":
        model = models.TransformerTranslator(
            intermediate_dim=config["intermediate_dim"],
            num_heads=config["num_heads"],
            residual=config["residual"],
            position=config["position"],
            **common,
        )
    elif config["model"] == "rnn":
        model = models.RNNTranslator(
            cell_type=config["cell_type"],
            residual_start=config["residual_start"],
            attention_score=config["attention_score"],
            **common,
        )
    else:
        raise configs.ConfigError(
            f"Config key `model` must be one of {list(MODELS)}. "
            f"Received: model={config['model']!r}"
        )
    dummy = np.ones((1, 2), "int32")
    model({"source": dummy, "target_in": dummy})
    return model


def compile_model(model, config, learning_rate, steps, time_progress=None):
    """Compiles `model` with the configured optimizer, loss and schedule.

    `learning_rate` and `steps` (`{"warmup", "total"}`) are already scaled
    to the number of replicas; `time_progress` is the variable of
    `training.time_progress_variable`.
    """
    schedule = schedules.make_schedule(
        config["schedule"],
        learning_rate,
        steps["warmup"],
        steps["total"],
        time_progress=time_progress,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=config["weight_decay"],
        beta_2=0.98,
        epsilon=1e-9,
        global_clipnorm=config["clipnorm"] or None,
    )
    model.compile(
        optimizer=optimizer,
        loss=losses.MaskedSparseCrossentropy(
            label_smoothing=config["label_smoothing"],
            pad_id=subwords.PAD_ID,
        ),
        metrics=[losses.MaskedAccuracy(pad_id=subwords.PAD_ID)],
        jit_compile=config["jit_compile"],
    )


def clear_run_dir(run_dir):
    """Deletes what `train` writes in `run_dir`, and nothing else."""
    run_dir = pathlib.Path(run_dir)
    names = [REPORT_FILE, CONFIG_FILE, SUMMARY_FILE]
    names += [p.name for p in data.vocabulary_paths(run_dir, True)]
    names += [p.name for p in data.vocabulary_paths(run_dir, False)]
    training.clear_run_dir(run_dir, names)


def train(config, run_dir, overwrite=False, callbacks=(), verbose="auto"):
    """Trains a model as `config` says and saves it in `run_dir`.

    Args:
        config: a full configuration dict (see `recipes.translation.config`).
        run_dir: the run directory; an unfinished run there resumes.
        overwrite: replace a finished run in `run_dir`.
        callbacks: extra Keras callbacks (e.g. for tests).
        verbose: passed to `model.fit`.

    Returns:
        A dict with the history, the epoch the run started at, the steps
        done, whether it completed, and the seconds spent.
    """
    strategy = distribute.make_strategy(config["strategy"])
    worker_index, is_chief = distribute.worker_info()
    run_dir = pathlib.Path(run_dir)
    check_search_settings(config)
    check_time_limit(config)
    training.check_decay_by_time(config, config["strategy"])
    clear = training.check_run_dir(
        run_dir, config, DEFAULTS, CONFIG_FILE, overwrite
    )
    if clear and is_chief:
        clear_run_dir(run_dir)
    keras.utils.set_random_seed(config["seed"])

    sources, targets = data.load_pairs(config, "train")
    if is_chief:
        source_vocab, target_vocab = data.build_vocabularies(
            config, sources, targets, run_dir
        )
        configs.save_config(config, run_dir / CONFIG_FILE)
    else:
        # Other workers learn the same vocabulary but keep no copy, so
        # the run directory holds one vocabulary and one checkpoint.
        with tempfile.TemporaryDirectory() as scratch:
            source_vocab, target_vocab = data.build_vocabularies(
                config, sources, targets, scratch
            )

    replicas = strategy.num_replicas_in_sync
    batch, learning_rate, steps = distribute.scale_for_replicas(
        replicas,
        config["batch_size"],
        config["learning_rate"],
        {
            "warmup": config["warmup_steps"],
            "total": config["train_steps"],
            "epoch": config["steps_per_epoch"],
        },
        config["lr_scaling"],
    )
    epochs = -(-steps["total"] // steps["epoch"])
    logger.info(
        "%d replica(s): global batch %d, peak learning rate %.3g, %d epochs "
        "of %d steps.",
        replicas,
        batch,
        learning_rate,
        epochs,
        steps["epoch"],
    )

    source_tokenizer = subwords.make_tokenizer(source_vocab)
    target_tokenizer = subwords.make_tokenizer(target_vocab)
    train_data = data.make_dataset(
        sources,
        targets,
        source_tokenizer,
        target_tokenizer,
        config,
        batch,
        training=True,
    )
    valid_data = None
    if config["validation_steps"]:
        valid_sources, valid_targets = data.load_pairs(config, "valid")
        valid_data = data.make_dataset(
            valid_sources,
            valid_targets,
            source_tokenizer,
            target_tokenizer,
            config,
            batch,
            training=False,
        )

    with strategy.scope():
        model = build_model(config, len(source_vocab), len(target_vocab))
        time_progress = training.time_progress_variable(
            config, config["strategy"]
        )
        compile_model(model, config, learning_rate, steps, time_progress)
    standard, time_limit, counter = training.make_callbacks(
        run_dir,
        is_chief=is_chief,
        worker_index=worker_index,
        max_seconds=config["max_train_seconds"] or None,
        tensorboard=config["tensorboard"],
        time_progress=time_progress,
    )
    history, seconds = training.fit(
        model,
        train_data,
        epochs=epochs,
        steps_per_epoch=steps["epoch"],
        callbacks=standard + list(callbacks),
        validation_data=valid_data,
        validation_steps=config["validation_steps"] or None,
        verbose=verbose,
    )
    summary = {
        "history": history.history,
        "initial_epoch": counter.initial_epoch or 0,
        "epochs_done": counter.epochs_done,
        "steps": counter.steps,
        "stopped_by_time_limit": time_limit.stopped,
        "train_seconds": seconds,
        # With the time before any resume: what `max_train_seconds` limits.
        "train_seconds_total": round(time_limit.resumed_seconds + seconds, 1),
        "replicas": replicas,
        "global_batch_size": batch,
    }
    if is_chief:
        training.save_weights_atomically(model, run_dir / training.WEIGHTS_FILE)
        atomic_write_text(
            run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n"
        )
    return {**summary, "model": model}


def load_run_config(run_dir, overrides=()):
    """The configuration saved in `run_dir`, with `overrides` applied.

    Only the `SEARCH_KEYS` may be overridden.
    """
    path = pathlib.Path(run_dir) / CONFIG_FILE
    config = configs.load_config_file(path, DEFAULTS)
    for text in overrides:
        key = configs.parse_override(text)[0]
        if key in DEFAULTS and key not in SEARCH_KEYS:
            raise configs.ConfigError(
                f"Config key `{key}` is fixed by the trained run "
                f"('{path}'); --set here may change only "
                f"{list(SEARCH_KEYS)}. Received: {text!r}"
            )
    config = configs.apply_overrides(config, overrides, DEFAULTS)
    check_search_settings(config)
    return config


class Translator:
    """A trained model with its tokenizers: strings in, strings out.

    Args:
        model: a built translation model with trained weights.
        source_vocabulary, target_vocabulary: lists of tokens.
        config: the run's configuration (search settings are read from
            it: `beam_size`, `length_penalty`, `max_decode_length`,
            `max_length`, `eval_batch_size`, `jit_compile`).
    """

    def __init__(self, model, source_vocabulary, target_vocabulary, config):
        self.model = model
        self.config = config
        self.source_vocabulary = source_vocabulary
        self.target_vocabulary = target_vocabulary
        self.source_tokenizer = subwords.make_tokenizer(source_vocabulary)
        self.target_tokenizer = subwords.make_tokenizer(target_vocabulary)
        self._search_fns = {}
        # keras-hub tokenizers return Python lists when called eagerly;
        # inside a tf.function they stay tensors.
        max_length = config["max_length"]
        self._encode = tf.function(
            lambda texts: data.encode_source(
                self.source_tokenizer, texts, max_length
            )
        )
        self._decode = tf.function(
            lambda ids: subwords.detokenize(self.target_tokenizer, ids)
        )

    @classmethod
    def from_run_dir(cls, run_dir, overrides=()):
        """Loads a finished run; errors name the missing or bad file."""
        run_dir = pathlib.Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(
                f"Run directory not found: '{run_dir}'. Pass the "
                "--output-dir of a finished `train` run."
            )
        config = load_run_config(run_dir, overrides)
        source_vocab, target_vocab = data.load_vocabularies(
            run_dir, config["shared_vocabulary"]
        )
        model = build_model(config, len(source_vocab), len(target_vocab))
        training.load_weights(model, run_dir / training.WEIGHTS_FILE)
        return cls(model, source_vocab, target_vocab, config)

    def encode(self, texts):
        """Strings to padded source ids (truncated to `max_length`)."""
        return self._encode(tf.constant(list(texts), dtype=tf.string))

    def search_fn(self, beam_size, length_penalty):
        """The compiled search for these settings (cached)."""
        key = (beam_size, float(length_penalty))
        if key not in self._search_fns:
            self._search_fns[key] = search.make_search_fn(
                self.model,
                self.config["max_decode_length"],
                beam_size,
                length_penalty,
                jit_compile=self.config["jit_compile"],
            )
        return self._search_fns[key]

    def translate_ids(self, texts, beam_size=None, length_penalty=None):
        """Output ids `(batch, max_decode_length)` for a list of strings.

        Best called with at most `eval_batch_size` strings at a time
        (`translate_batches` does that).
        """
        beam_size = beam_size or self.config["beam_size"]
        if length_penalty is None:
            length_penalty = self.config["length_penalty"]
        source = self.encode(texts)
        source = pad_to_bucket(source, self.config)
        # Pad the batch to a multiple of `eval_batch_size` with empty
        # sources, so the compiled search sees few batch sizes.
        rows = int(source.shape[0])
        size = self.config["eval_batch_size"]
        filler = -rows % size
        empty = tf.one_hot(
            tf.zeros([filler], "int32"), source.shape[1], dtype="int32"
        )
        source = tf.concat([source, empty * subwords.EOS_ID], axis=0)
        ids = self.search_fn(beam_size, length_penalty)(source)
        return ids[:rows]

    def translate(self, texts, beam_size=None, length_penalty=None):
        """Translates a list of strings; returns a list of strings."""
        texts = list(texts)
        if not texts:
            return []
        ids = self.translate_ids(texts, beam_size, length_penalty)
        strings = self._decode(ids)
        return [s.decode("utf-8") for s in strings.numpy()]

    def translate_batches(self, texts, beam_size=None, progress=True):
        """Translates `texts` in batches of `eval_batch_size`, yielding
        one string per input, with a progress bar when `progress`."""
        size = self.config["eval_batch_size"]
        bar = keras.utils.Progbar(len(texts)) if progress else None
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            yield from self.translate(chunk, beam_size)
            if bar is not None:
                bar.add(len(chunk))


def pad_to_bucket(source, config):
    """Pads source ids to a bucket length so XLA sees few shapes."""
    lengths = sorted(set(config["bucket_lengths"]) | {config["max_length"]})
    width = int(source.shape[1])
    target = next(n for n in lengths if n >= width)
    return tf.pad(source, [[0, 0], [0, target - width]])


def evaluate(translator, config, run_dir=None, beam_size=None):
    """Translates the test split, scores it, and writes `report.json`.

    Returns:
        The report dict: BLEU and chrF with their sacrebleu signatures,
        the configuration, timings (decoding, and training from
        `training.json` when `run_dir` has one) and a few examples.
    """
    sources, references = data.load_pairs(config, "test")
    beam_size = beam_size or config["beam_size"]
    start = time.monotonic()
    hypotheses = list(translator.translate_batches(sources, beam_size))
    seconds = time.monotonic() - start
    scores = metrics.corpus_scores(hypotheses, references)
    report = {
        **scores,
        "test_set": config["test_corpus"] or config["test_split"],
        "num_sentences": len(sources),
        "beam_size": beam_size,
        "length_penalty": config["length_penalty"],
        "decode_seconds": seconds,
        "sentences_per_second": len(sources) / max(seconds, 1e-9),
        "examples": [
            {"source": s, "reference": r, "hypothesis": h}
            for s, r, h in zip(
                sources[:5], references[:5], hypotheses[:5], strict=True
            )
        ],
        "config": config,
    }
    if run_dir is not None:
        summary = pathlib.Path(run_dir) / SUMMARY_FILE
        if summary.exists():
            report["training"] = json.loads(summary.read_text("utf-8"))
        atomic_write_text(
            pathlib.Path(run_dir) / REPORT_FILE,
            json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        )
    return report
