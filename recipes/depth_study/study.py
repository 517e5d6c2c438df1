"""The core of the depth study: train every (family, variant, depth) run.

Each run trains one character LM from the same seed, on the same random
training windows, for the same number of tokens, and records:

```
final_val_loss      mean cross-entropy (nats/char) on fixed val windows
trains              final_val_loss < unigram entropy - margin (finite)
grad_ratio_init     ||dL/dW_first|| / ||dL/dW_last||, before training
grad_ratio_trained  the same ratio after training
```

The gradient norms are `skipseq.diagnostics.gradient_flow` on a fixed
probe batch, one value per block (weights of the whole block), so a ratio
far above 1 means the bottom block gets more gradient than the top one
(exploding towards the input) and far below 1 the reverse (vanishing).
"""

import logging
import math
import time

import keras
import numpy as np

from recipes.depth_study import data as char_data
from recipes.depth_study import models
from skipseq.diagnostics import gradient_flow

logger = logging.getLogger(__name__)

# The full study: 35 minutes on two CPU cores (README). Start-up (tracing
# and XLA compilation) and training both grow with depth, about 5 s per
# Transformer block per run, so `--transformer-depths 2,...,48` adds a
# 48-block column in about 20 more minutes.
DEFAULTS = {
    "transformer_depths": [2, 4, 8, 16, 32],
    "transformer_variants": list(models.TRANSFORMER_VARIANTS),
    "lstm_depths": [2, 4, 8, 16],
    "lstm_variants": list(models.LSTM_VARIANTS),
    "width": 64,
    "num_heads": 4,
    "intermediate_dim": 256,
    "context_length": 64,
    "batch_size": 16,
    # Tokens seen by every run, whatever its depth.
    "token_budget": 160 * 16 * 64,
    "learning_rate": 2e-3,
    "warmup_fraction": 0.1,
    "global_clipnorm": 1.0,
    "val_windows": 128,
    "probe_batch_size": 8,
    "loss_points": 8,
    "margin": 0.2,
    "train_fraction": 0.9,
    "max_chars": None,
    "seed": 0,
}
# `--quick`: the same study in miniature, a few minutes on two cores.
QUICK = {
    "transformer_depths": [2, 6],
    "lstm_depths": [2, 4],
    "width": 32,
    "num_heads": 2,
    "intermediate_dim": 64,
    "context_length": 32,
    "token_budget": 60 * 16 * 32,
    "learning_rate": 3e-3,
    "val_windows": 64,
    "loss_points": 4,
}


# Settings that must be positive ints; every one is a size or a count.
POSITIVE_INTS = (
    "width",
    "num_heads",
    "intermediate_dim",
    "context_length",
    "batch_size",
    "token_budget",
    "val_windows",
    "probe_batch_size",
    "loss_points",
)
# `keras.utils.set_random_seed` seeds NumPy, which takes 32-bit seeds.
MAX_SEED = 2**32 - 1
# `(setting, what it must be, test of a finite value)` of the real ones.
REAL_RANGES = (
    ("learning_rate", "a finite number > 0", lambda v: v > 0),
    ("margin", "a finite number >= 0", lambda v: v >= 0),
    ("warmup_fraction", "a number in [0, 1)", lambda v: 0 <= v < 1),
    ("global_clipnorm", "a finite number > 0", lambda v: v > 0),
    ("train_fraction", "a number in (0, 1)", lambda v: 0 < v < 1),
)


def make_config(quick=False, **overrides):
    """The defaults, the quick preset when asked, then `overrides`."""
    config = dict(DEFAULTS)
    if quick:
        config.update(QUICK)
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"Unknown depth study settings {unknown}. Known: {sorted(config)}"
        )
    config.update(overrides)
    check_config(config)
    # Lists, as results.json gives them back, so a resumed study's
    # settings compare equal to the ones it was written with.
    for family in models.FAMILIES:
        for kind in ("depths", "variants"):
            key = f"{family}_{kind}"
            config[key] = list(config[key])
    return config


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check(ok, key, expected, value):
    if not ok:
        raise ValueError(
            f"Setting `{key}` must be {expected}. Received: {key}={value!r}"
        )


def _check_list(config, key, valid, expected):
    values = config[key]
    # `valid` first: `set` needs the hashable values it lets through.
    _check(
        isinstance(values, list | tuple)
        and all(valid(v) for v in values)
        and len(set(values)) == len(values),
        key,
        expected,
        values,
    )


def check_config(config):
    """Raises `ValueError` naming the first setting `config` gets wrong.

    Every check runs before any data is read, so a wrong setting fails
    at once instead of after the first run.
    """
    for family, variants in models.FAMILIES.items():
        _check_list(
            config,
            f"{family}_depths",
            lambda v: _is_int(v) and v >= 1,
            "a list of distinct positive ints",
        )
        _check_list(
            config,
            f"{family}_variants",
            lambda v, known=variants: v in known,
            f"a list of distinct names from {list(variants)}",
        )
    if not run_keys(config):
        names = [
            f"{family}_{kind}={config[f'{family}_{kind}']!r}"
            for family in models.FAMILIES
            for kind in ("depths", "variants")
        ]
        raise ValueError(
            "Nothing to run: give at least one family a depth and a "
            f"variant. Received: {', '.join(names)}"
        )
    for key in POSITIVE_INTS:
        _check(
            _is_int(config[key]) and config[key] >= 1,
            key,
            "a positive int",
            config[key],
        )
    for key, expected, in_range in REAL_RANGES:
        value = config[key]
        _check(_is_real(value) and in_range(value), key, expected, value)
    max_chars = config["max_chars"]
    _check(
        max_chars is None or (_is_int(max_chars) and max_chars >= 1),
        "max_chars",
        "None or a positive int",
        max_chars,
    )
    seed = config["seed"]
    _check(
        _is_int(seed) and 0 <= seed <= MAX_SEED,
        "seed",
        f"an int in [0, {MAX_SEED}]",
        seed,
    )
    if config["width"] % config["num_heads"]:
        raise ValueError(
            "Setting `num_heads` must divide `width`. Received: "
            f"width={config['width']}, num_heads={config['num_heads']}"
        )
    if steps_of(config) < 1:
        raise ValueError(
            "Setting `token_budget` must cover at least one batch of "
            "batch_size * context_length tokens. Received: "
            f"token_budget={config['token_budget']}"
        )


def steps_of(config):
    """Optimizer steps of every run: the token budget in whole batches."""
    per_step = config["batch_size"] * config["context_length"]
    return config["token_budget"] // per_step


def run_keys(config):
    """`(family, variant, depth)` of every run, in the order they run."""
    keys = []
    for family in models.FAMILIES:
        for depth in config[f"{family}_depths"]:
            for variant in config[f"{family}_variants"]:
                keys.append((family, variant, depth))
    return keys


class StudyData:
    """The data every run shares: training, validation and probe batches.

    Built once from `config`, so every run sees the same windows in the
    same order, and a test can rebuild the probe batch of a study.
    """

    def __init__(self, chars, config):
        self.chars = chars
        length = config["context_length"]
        steps = steps_of(config)
        self.unigram_entropy = char_data.unigram_entropy(
            chars.train_ids, chars.vocabulary_size
        )
        self.threshold = char_data.threshold(
            self.unigram_entropy, config["margin"]
        )
        self.train = char_data.random_windows(
            chars.train_ids,
            steps * config["batch_size"],
            length,
            config["seed"],
        )
        self.val = char_data.spaced_windows(
            chars.val_ids, config["val_windows"], length
        )
        # A separate draw, so the probe is not the first training batch.
        self.probe = char_data.random_windows(
            chars.train_ids,
            config["probe_batch_size"],
            length,
            config["seed"] + 1,
        )


def compile_model(model, config):
    steps = steps_of(config)
    warmup = int(config["warmup_fraction"] * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(steps - warmup, 1),
        warmup_target=config["learning_rate"],
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            schedule, global_clipnorm=config["global_clipnorm"]
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    # Slots made before `fit` spare it a second trace of the train step,
    # which roughly halves the start-up time of a deep model.
    model.optimizer.build(model.trainable_variables)


def measure_flow(model, probe):
    """`gradient_flow` over the stack's blocks on the probe batch."""
    x, y = probe
    return gradient_flow(
        model,
        x,
        y,
        layers=models.blocks(model),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def validation_loss(model, val, batch_size=64):
    """Mean cross-entropy (nats per character) over the windows `val`.

    Run eagerly: for a single pass over a few windows this is faster than
    compiling an evaluation function for a deep model.
    """
    x, y = val
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size], training=False)
        losses = keras.losses.sparse_categorical_crossentropy(
            y[start : start + batch_size], logits, from_logits=True
        )
        total += float(keras.ops.sum(losses))
    return total / y.size


def first_to_last(values):
    """`values[0] / values[-1]`, NaN when undefined."""
    first, last = float(values[0]), float(values[-1])
    if not (math.isfinite(first) and math.isfinite(last)) or last == 0.0:
        return math.nan
    return first / last


def _finite(value):
    return value if math.isfinite(value) else None


def train_one(family, variant, depth, study_data, config):
    """Train one run; returns `(record, model)`.

    The record is a JSON-ready dict (NaN and infinities become `None`).
    """
    start = time.monotonic()
    chars = study_data.chars
    model = models.build_model(
        family, chars.vocabulary_size, depth, variant, config
    )
    flow_init = measure_flow(model, study_data.probe)

    compile_model(model, config)
    steps = steps_of(config)
    points = max(1, min(config["loss_points"], steps))
    x, y = study_data.train
    # Whole chunks of steps; History then holds one mean loss per chunk.
    steps_per_point = steps // points
    used = steps_per_point * points * config["batch_size"]
    chunks = _ChunkLosses(steps_per_point)
    model.fit(
        x[:used],
        y[:used],
        batch_size=config["batch_size"],
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[chunks],
    )
    chunk_losses = chunks.losses
    val_loss = validation_loss(model, study_data.val)
    flow_trained = measure_flow(model, study_data.probe)

    trains = math.isfinite(val_loss) and val_loss < study_data.threshold
    record = {
        "family": family,
        "variant": variant,
        "depth": depth,
        "parameters": int(model.count_params()),
        "steps": steps_per_point * points,
        "tokens": used * config["context_length"],
        "final_val_loss": _finite(val_loss),
        "final_train_loss": _finite(chunk_losses[-1]),
        "train_loss_curve": [_finite(v) for v in chunk_losses],
        "trains": bool(trains),
        "grad_ratio_init": _finite(first_to_last(flow_init["grad_norm"])),
        "grad_ratio_trained": _finite(first_to_last(flow_trained["grad_norm"])),
        "input_grad_ratio_init": _finite(
            first_to_last(flow_init["input_grad_norm"])
        ),
        "input_grad_ratio_trained": _finite(
            first_to_last(flow_trained["input_grad_norm"])
        ),
        "grad_norm_init": [_finite(v) for v in flow_init["grad_norm"]],
        "grad_norm_trained": [_finite(v) for v in flow_trained["grad_norm"]],
        "seconds": round(time.monotonic() - start, 1),
    }
    return record, model


def _is_number(value):
    return _is_int(value) or isinstance(value, float)


def _is_number_or_none(value):
    return value is None or _is_number(value)


def _is_number_list(value):
    return isinstance(value, list) and all(map(_is_number_or_none, value))


_STRING = ("a string", lambda v: isinstance(v, str))
_INT = ("an int", _is_int)
_NUMBER = ("a number or null", _is_number_or_none)
_NUMBERS = ("a list of numbers or nulls", _is_number_list)
# What each field of a record (`train_one`) holds; null stands for NaN.
RECORD_FIELDS = {
    "family": _STRING,
    "variant": _STRING,
    "depth": _INT,
    "parameters": _INT,
    "steps": _INT,
    "tokens": _INT,
    "final_val_loss": _NUMBER,
    "final_train_loss": _NUMBER,
    "train_loss_curve": _NUMBERS,
    "trains": ("true or false", lambda v: isinstance(v, bool)),
    "grad_ratio_init": _NUMBER,
    "grad_ratio_trained": _NUMBER,
    "input_grad_ratio_init": _NUMBER,
    "input_grad_ratio_trained": _NUMBER,
    "grad_norm_init": _NUMBERS,
    "grad_norm_trained": _NUMBERS,
    "seconds": ("a number", _is_number),
}


def check_records(records, config):
    """Raises `ValueError` unless `records` are finished runs of `config`.

    Each record must hold every field of `RECORD_FIELDS` with a value of
    its kind, be a run of `config` and appear once: what a resumed study
    keeps and writes again.
    """
    if not isinstance(records, list):
        raise ValueError(f"`runs` must be a list, not {type(records).__name__}")
    keys = set(run_keys(config))
    seen = set()
    for index, record in enumerate(records):
        where = f"`runs[{index}]`"
        if not isinstance(record, dict):
            raise ValueError(f"{where} must be an object. Received: {record!r}")
        for field, (expected, valid) in RECORD_FIELDS.items():
            if field not in record:
                raise ValueError(f"{where} has no `{field}`")
            if not valid(record[field]):
                raise ValueError(
                    f"{where}.{field} must be {expected}. "
                    f"Received: {record[field]!r}"
                )
        key = (record["family"], record["variant"], record["depth"])
        if key not in keys:
            raise ValueError(f"{where} is not a run of the settings: {key}")
        if key in seen:
            raise ValueError(f"{where} repeats the run {key}")
        seen.add(key)


class _ChunkLosses(keras.callbacks.Callback):
    """Mean training loss over each chunk of `every` steps.

    Keras reports the running mean of the epoch in the batch logs, so the
    mean of a chunk is recovered from the running means at its ends.
    """

    def __init__(self, every):
        super().__init__()
        self.every = every

    def on_train_begin(self, logs=None):
        self.losses = []
        self._previous = 0.0

    def on_train_batch_end(self, batch, logs=None):
        steps = batch + 1
        if steps % self.every:
            return
        running = float(logs["loss"])
        # running * steps is the sum of all losses so far.
        total = running * steps
        chunk = (total - self._previous) / self.every
        self._previous = total
        self.losses.append(chunk)


def deepest_trained(records):
    """Per `family/variant`, the deepest depth whose run trains, or None."""
    deepest = {}
    for record in records:
        key = f"{record['family']}/{record['variant']}"
        deepest.setdefault(key, None)
        if record["trains"] and (
            deepest[key] is None or record["depth"] > deepest[key]
        ):
            deepest[key] = record["depth"]
    return deepest


def run_study(config, chars, on_record=None, keep_models=False, done=()):
    """Run every `(family, variant, depth)` of `config`.

    Args:
        config: a dict from `make_config`.
        chars: a `CharData`.
        on_record: optional `on_record(records)` called after each run
            (the command writes its files there).
        keep_models: keep the trained models (for tests).
        done: records of finished runs to keep instead of running them
            again (a resumed study).

    Returns:
        `(records, models)`: the records in run order, and a dict
        `(family, variant, depth) -> model` (empty unless `keep_models`).
    """
    study_data = StudyData(chars, config)
    finished = {(r["family"], r["variant"], r["depth"]): r for r in done}
    records, trained = [], {}
    keys = run_keys(config)
    for number, key in enumerate(keys, 1):
        if key in finished:
            records.append(finished[key])
            continue
        family, variant, depth = key
        record, model = train_one(family, variant, depth, study_data, config)
        logger.info(
            "[%d/%d] %s %s depth %d: val loss %s, grad ratio %s -> %s (%.0f s)",
            number,
            len(keys),
            family,
            variant,
            depth,
            record["final_val_loss"],
            record["grad_ratio_init"],
            record["grad_ratio_trained"],
            record["seconds"],
        )
        records.append(record)
        if keep_models:
            trained[key] = model
        else:
            keras.utils.clear_session(free_memory=False)
        if on_record is not None:
            on_record(records)
    return records, trained


def summary(config, study_data_or_entropy, records):
    """The JSON-ready results: settings, the definition, runs, deepest."""
    entropy = getattr(
        study_data_or_entropy, "unigram_entropy", study_data_or_entropy
    )
    limit = char_data.threshold(entropy, config["margin"])
    return {
        "config": config,
        "unigram_entropy": entropy,
        "threshold": limit,
        "trains_definition": (
            "a run trains when its final validation loss is finite and "
            f"below the unigram entropy of the training split minus "
            f"{config['margin']} nats ({entropy:.4f} - {config['margin']} "
            f"= {limit:.4f} nats/char)"
        ),
        "runs": records,
        "deepest_trained": deepest_trained(records),
        "seconds": round(sum(r["seconds"] for r in records), 1),
    }


def as_array(values):
    """A record's list of numbers as a float array (None -> NaN)."""
    return np.array([math.nan if v is None else v for v in values], "float64")
