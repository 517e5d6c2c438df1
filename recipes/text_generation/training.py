"""The `train` and `evaluate` commands and loading a trained run.

A run directory holds (see `recipes.common.training`):

```
<run_dir>/config.json        the resolved configuration
<run_dir>/vocabulary.json    the vocabulary of the training text
<run_dir>/backup/, logs/     BackupAndRestore state, TensorBoard events
<run_dir>/model.weights.h5   the final weights
<run_dir>/report.json        validation loss in nats per character
```
"""

import json
import logging
import math
import pathlib

import keras
import numpy as np
import tensorflow as tf

from recipes.common import training as harness
from recipes.common.config import load_config_file, save_config
from recipes.common.files import atomic_write_text
from recipes.common.losses import MaskedSparseCrossentropy
from recipes.common.schedules import make_schedule
from recipes.text_generation import data
from recipes.text_generation.config import DEFAULTS, check_config
from recipes.text_generation.rnn_lm import RNNLM
from recipes.text_generation.transformer_lm import TransformerLM
from recipes.text_generation.vocabulary import PAD_ID, load_vocabulary

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocabulary.json"
REPORT_FILE = "report.json"


def build_model(config, vocabulary_size):
    """The model of `config`, built (weights created)."""
    if config["model"] == "transformer":
        model = TransformerLM(
            vocabulary_size,
            config["context_length"],
            width=config["width"],
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            intermediate_dim=config["intermediate_dim"],
            dropout=config["dropout"],
            activation=config["activation"],
            residual=config["residual"],
            norm=config["norm"],
            stochastic_depth_rate=config["stochastic_depth_rate"],
            seed=config["seed"],
        )
    else:
        model = RNNLM(
            vocabulary_size,
            config["model"],
            width=config["width"],
            num_layers=config["num_layers"],
            residual_start=config["rnn_residual_start"],
            norm_position=config["rnn_norm_position"],
            dropout=config["dropout"],
            seed=config["seed"],
        )
    model(np.zeros((1, config["context_length"]), "int32"))
    return model


def compile_model(model, config, time_progress=None):
    warmup = max(1, config["warmup_steps"])
    rate = make_schedule(
        config["schedule"],
        config["learning_rate"],
        warmup,
        max(config["max_steps"], warmup + 1),
        final_learning_rate=config["final_learning_rate"],
        time_progress=time_progress,
    )
    optimizer = keras.optimizers.AdamW(
        rate,
        weight_decay=config["weight_decay"],
        beta_2=0.99,
        clipnorm=config["clipnorm"] or None,
        use_ema=config["ema_momentum"] > 0,
        ema_momentum=config["ema_momentum"] or 0.99,
    )
    # Decay matrices only, as in GPT-2 and nanoGPT.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(
        optimizer=optimizer,
        loss=MaskedSparseCrossentropy(pad_id=PAD_ID),
        jit_compile=True,
    )


def train(config, run_dir, overwrite=False, extra_callbacks=(), verbose="auto"):
    """Trains (or resumes) a run; returns the evaluation report.

    A finished run in `run_dir` is replaced only with `overwrite`; an
    unfinished one resumes if its configuration equals `config`.
    `extra_callbacks` are more Keras callbacks (e.g. for tests); `verbose`
    is passed to `model.fit`.
    """
    check_config(config)
    harness.check_decay_by_time(config)
    run_dir = pathlib.Path(run_dir)
    if harness.check_run_dir(run_dir, config, DEFAULTS, CONFIG_FILE, overwrite):
        harness.clear_run_dir(
            run_dir, (CONFIG_FILE, VOCABULARY_FILE, REPORT_FILE)
        )
    keras.utils.set_random_seed(config["seed"])
    train_text, val_text = data.split_corpus(data.load_corpus(config), config)
    vocabulary_path = run_dir / VOCABULARY_FILE
    resuming = vocabulary_path.exists()
    if resuming:
        # An unfinished run of this configuration keeps its ids.
        vocabulary = load_vocabulary(vocabulary_path)
    else:
        vocabulary = data.build_vocabulary(train_text, config)

    model = build_model(config, vocabulary.size)
    time_progress = harness.time_progress_variable(config)
    compile_model(model, config, time_progress)
    logger.info("Model: %d parameters.", model.count_params())
    context = config["context_length"]
    train_ids = data.encode(vocabulary, train_text)
    val_ids = data.encode(vocabulary, val_text)
    train_data = data.training_windows(
        train_ids,
        context,
        config["batch_size"],
        config["seed"],
        config["bos_rate"],
    )
    if len(val_ids) <= context:
        logger.warning(
            "The validation text has %d tokens, fewer than one context of "
            "%d: its loss says little.",
            len(val_ids),
            context,
        )
    val_data = data.evaluation_windows(val_ids, context, config["batch_size"])
    if config["validation_steps"] > 0:
        val_data = val_data.shuffle(10000, seed=0).take(
            config["validation_steps"]
        )
    # Written only now, when every check has passed, so that a run that
    # fails to start leaves nothing behind.
    if not resuming:
        vocabulary.save(vocabulary_path)
    save_config(config, run_dir / CONFIG_FILE)
    callbacks, time_limit, counter = harness.make_callbacks(
        run_dir,
        max_seconds=config["max_train_seconds"] or None,
        time_progress=time_progress,
    )
    epochs = math.ceil(config["max_steps"] / config["steps_per_epoch"])
    _, seconds = harness.fit(
        model,
        train_data,
        epochs,
        config["steps_per_epoch"],
        [*callbacks, *extra_callbacks],
        validation_data=val_data,
        verbose=verbose,
    )
    harness.save_weights_atomically(model, run_dir / harness.WEIGHTS_FILE)
    report = evaluate_model(model, vocabulary, val_text, config)
    report.update(
        {
            "train_seconds": round(seconds, 1),
            # With the sessions before a resume.
            "train_seconds_total": round(
                time_limit.resumed_seconds + seconds, 1
            ),
            "steps": counter.steps,
            "stopped_by_time_limit": time_limit.stopped,
            "parameters": model.count_params(),
        }
    )
    write_report(report, run_dir / REPORT_FILE)
    return report


def evaluate_model(model, vocabulary, text, config, batch_size=None):
    """Mean negative log-likelihood of `text` in nats per character.

    Every token of `text` but the first is a target once; the sum of the
    token losses is divided by the number of characters, so byte-level
    runs are comparable with character-level ones.
    """
    ids = data.encode(vocabulary, text)
    batch_size = batch_size or config["batch_size"]
    windows = data.evaluation_windows(ids, config["context_length"], batch_size)

    # No Python control flow to convert; AutoGraph only warned that it
    # could not read the closure over `model`.
    @tf.function(jit_compile=True, autograph=False)
    def summed_nll(inputs, targets):
        logits = tf.cast(model(inputs, training=False), "float32")
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
        mask = tf.cast(targets != PAD_ID, "float32")
        return tf.reduce_sum(nll * mask), tf.reduce_sum(mask)

    total, count = 0.0, 0.0
    for inputs, targets in windows:
        nll, tokens = summed_nll(inputs, targets)
        total += float(nll)
        count += float(tokens)
    characters = count / vocabulary.units_per_character(text)
    nats = total / characters
    return {
        "val_loss_nats_per_char": round(nats, 4),
        "val_bits_per_char": round(nats / math.log(2), 4),
        "val_perplexity_per_char": round(math.exp(nats), 4),
        "val_loss_nats_per_token": round(total / count, 4),
        "val_tokens": int(count),
        "tokenizer": vocabulary.kind,
        "model": config["model"],
    }


def write_report(report, path):
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text)
    logger.info("Report written to %s", path)


def load_run(run_dir):
    """`(config, vocabulary, model)` of a trained run directory."""
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"No trained run in '{run_dir}': '{config_path}' is missing."
        )
    config = check_config(load_config_file(config_path, DEFAULTS))
    vocabulary = load_vocabulary(run_dir / VOCABULARY_FILE)
    model = build_model(config, vocabulary.size)
    try:
        harness.load_weights(model, run_dir / harness.WEIGHTS_FILE)
    except ValueError as error:
        # The model's shapes come from config.json and the vocabulary
        # size, so a swapped vocabulary shows up here too.
        raise ValueError(
            f"{error} (the model was built from '{config_path}' and the "
            f"{vocabulary.size} ids of '{run_dir / VOCABULARY_FILE}')"
        ) from error
    return config, vocabulary, model


def read_report(path):
    """The report at `path`, or `{}` when there is none or it is corrupt."""
    try:
        report = json.loads(pathlib.Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("Replacing the unreadable report %s (%s).", path, error)
        return {}
    return report if isinstance(report, dict) else {}


def evaluate(run_dir):
    """Evaluates a trained run on its validation split; updates the report.

    The training figures `train` wrote (time, steps, parameters) stay in
    the report; only the evaluation keys are replaced.
    """
    config, vocabulary, model = load_run(run_dir)
    _, val_text = data.split_corpus(data.load_corpus(config), config)
    path = pathlib.Path(run_dir) / REPORT_FILE
    report = {**read_report(path)}
    report.update(evaluate_model(model, vocabulary, val_text, config))
    write_report(report, path)
    return report
