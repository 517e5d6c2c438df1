"""The training harness shared by the recipes: callbacks and `fit`.

A run directory holds everything a run writes:

```
<run_dir>/config.json          the resolved configuration
<run_dir>/backup/              BackupAndRestore state (while unfinished)
<run_dir>/logs/                TensorBoard event files
<run_dir>/model.weights.h5     the final weights (written atomically)
```

An interrupted run started again with the same run directory resumes at
the last completed epoch (weights, optimizer state and step counter),
because `keras.callbacks.BackupAndRestore` restores them before the first
step. A recipe's "epoch" is a fixed number of steps over a repeated
dataset, so a backup is written every `steps_per_epoch` steps.
"""

import json
import logging
import os
import pathlib
import shutil
import tempfile
import time

import keras

from recipes.common.config import ConfigError, load_config_file
from recipes.common.files import TEMP_PREFIX, atomic_write_text, default_mode

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"
BACKUP_DIR = "backup"
LOG_DIR = "logs"


class TimeLimit(keras.callbacks.Callback):
    """Stops training once `max_seconds` of training time have passed.

    The clock starts at `on_train_begin`; the check runs after every
    batch, so a run overshoots by at most one step. `stopped` tells
    whether the limit ended the run and `seconds` how much training time
    the run has used so far.

    With a `state_dir` (the BackupAndRestore folder) the clock survives an
    interruption: the time used by the end of each epoch is written there,
    and a run that resumes at epoch `e` starts its clock from the time
    recorded at the end of epoch `e`. A budget of 90 minutes is then 90
    minutes of training however often the run was restarted; the work
    lost after the last backup is not counted, because it is done again.

    With a `progress` variable, the share of `max_seconds` used so far is
    written into it before every step, for a schedule that decays over
    the time budget (`WarmupCosineSchedule(time_progress=...)`).

    Args:
        max_seconds: float > 0, or None for no limit.
        state_dir: folder for the clock's state, or None to start from
            zero on every call of `fit`.
        progress: optional scalar float variable, as above; needs a
            `max_seconds`.
    """

    STATE_FILE = "time_limit.json"
    # A class attribute, so that tests can run the clock by hand.
    _clock = staticmethod(time.monotonic)

    def __init__(self, max_seconds, state_dir=None, progress=None):
        super().__init__()
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(
                "Argument `max_seconds` must be None or > 0. "
                f"Received: max_seconds={max_seconds!r}"
            )
        if progress is not None and max_seconds is None:
            raise ValueError(
                "Argument `progress` needs a time limit. "
                "Received: max_seconds=None"
            )
        self.max_seconds = max_seconds
        self.progress = progress
        self.state_path = (
            None
            if state_dir is None
            else pathlib.Path(state_dir) / self.STATE_FILE
        )
        self.stopped = False
        self._start = None
        self._end = None
        self._offset = 0.0
        self._resumed = False
        self._recorded = {}

    @property
    def resumed_seconds(self):
        """Training seconds of the sessions before a resume (0 if none)."""
        return self._offset

    @property
    def seconds(self):
        """Training seconds used, including those before a resume."""
        if self._start is None:
            return self._offset
        end = self._clock() if self._end is None else self._end
        return self._offset + end - self._start

    def on_train_begin(self, logs=None):
        self._start = self._clock()
        self._end = None
        self._offset = 0.0
        self._resumed = False
        self._recorded = self._read_state()

    def on_train_end(self, logs=None):
        self._end = self._clock()

    def on_epoch_begin(self, epoch, logs=None):
        if self._resumed:
            return
        self._resumed = True
        # Keys are the number of epochs finished; BackupAndRestore resumes
        # at epoch `e` after `e` finished ones.
        if epoch > 0 and str(epoch) in self._recorded:
            self._offset = self._recorded[str(epoch)]
            logger.info(
                "Resuming at epoch %d with %.1f s of training time used.",
                epoch,
                self._offset,
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.state_path is None:
            return
        self._recorded[str(epoch + 1)] = round(self.seconds, 3)
        atomic_write_text(self.state_path, json.dumps(self._recorded) + "\n")

    def on_train_batch_begin(self, batch, logs=None):
        if self.progress is not None:
            self.progress.assign(min(self.seconds / self.max_seconds, 1.0))

    def on_train_batch_end(self, batch, logs=None):
        if self.max_seconds is None:
            return
        if self.seconds >= self.max_seconds:
            self.stopped = True
            self.model.stop_training = True

    def _read_state(self):
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or not all(
                isinstance(v, (int, float)) for v in state.values()
            ):
                raise ValueError("not a mapping of epochs to seconds")
        except ValueError as error:
            # The clock is advisory: a damaged file must not block a
            # resume of the weights BackupAndRestore still holds.
            logger.warning(
                "Ignoring '%s' (%s); the time limit counts from zero.",
                self.state_path,
                error,
            )
            return {}
        return {str(k): float(v) for k, v in state.items()}


class StepCounter(keras.callbacks.Callback):
    """Records the epoch a run started at and the optimizer steps done.

    After `fit`, `initial_epoch` is the epoch BackupAndRestore resumed at
    (0 for a fresh run), `epochs_done` the number of the last finished
    epoch, and `steps` the optimizer's iteration count.
    """

    def __init__(self):
        super().__init__()
        self.initial_epoch = None
        self.epochs_done = 0
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.initial_epoch is None:
            self.initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1

    def on_train_end(self, logs=None):
        self.steps = int(self.model.optimizer.iterations.numpy())


def check_decay_by_time(config, strategy_name="default"):
    """Raises `ConfigError` if config key `decay_by_time` cannot apply.

    `decay_by_time` asks for a cosine decay that ends when
    `max_train_seconds` runs out, if that comes before the last step. It
    needs the cosine schedule and a time limit, and not `multi_worker`,
    where every worker would read its own clock and so apply its own
    learning rate.
    """
    if not config["decay_by_time"]:
        return
    problems = {
        "schedule": (config["schedule"] != "cosine", "'cosine'"),
        "max_train_seconds": (
            not config["max_train_seconds"],
            "a time limit > 0",
        ),
        "strategy": (
            strategy_name == "multi_worker",
            "'default' or 'mirrored' (workers' clocks differ)",
        ),
    }
    for key, (bad, expected) in problems.items():
        if bad:
            value = strategy_name if key == "strategy" else config[key]
            raise ConfigError(
                f"Config key `decay_by_time` needs `{key}` {expected}. "
                f"Received: {key}={value!r}"
            )


def time_progress_variable(config, strategy_name="default"):
    """The variable through which the time limit drives the decay, or None.

    None unless config key `decay_by_time` is set (see
    `check_decay_by_time`, which this calls). Create it under the
    strategy's scope, with the model.
    """
    check_decay_by_time(config, strategy_name)
    if not config["decay_by_time"]:
        return None
    return keras.Variable(
        0.0, dtype="float32", trainable=False, name="time_budget_used"
    )


def make_callbacks(
    run_dir,
    is_chief=True,
    worker_index=0,
    max_seconds=None,
    tensorboard=True,
    time_progress=None,
):
    """The standard callbacks of a recipe run.

    BackupAndRestore (every epoch), TensorBoard (chief only), the time
    limit and a `StepCounter`. Non-chief workers of a multi-worker run
    back up into `backup_worker_<i>` so that workers never write the same
    file. `time_progress` is the variable of `time_progress_variable`.

    Returns:
        `(callbacks, time_limit, step_counter)`.
    """
    run_dir = pathlib.Path(run_dir)
    backup = run_dir / BACKUP_DIR
    if not is_chief:
        # Beside, not inside, the chief's folder, which the chief deletes
        # when it finishes.
        backup = run_dir / f"{BACKUP_DIR}_worker_{worker_index}"
    time_limit = TimeLimit(
        max_seconds, state_dir=backup, progress=time_progress
    )
    counter = StepCounter()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch"),
        time_limit,
        counter,
    ]
    if tensorboard and is_chief:
        callbacks.append(
            keras.callbacks.TensorBoard(
                str(run_dir / LOG_DIR), update_freq=50, profile_batch=0
            )
        )
    return callbacks, time_limit, counter


def check_run_dir(run_dir, config, defaults, config_file, overwrite):
    """Refuses to clobber a finished or different run in `run_dir`.

    A run directory with final weights is finished: it is replaced only
    with `overwrite`. One with a backup but no final weights is an
    interrupted run: it resumes if its saved configuration (`config_file`)
    equals `config` over the keys of `defaults`. A saved configuration
    with no backup is what a run left that stopped before its first
    epoch ended: there is no progress to keep.

    Returns:
        True when the caller should clear the run's files before
        training: with `overwrite`, or when leftovers of a run that never
        finished an epoch have another configuration (logged).
    """
    run_dir = pathlib.Path(run_dir)
    if overwrite:
        return True
    if (run_dir / WEIGHTS_FILE).exists():
        raise FileExistsError(
            f"'{run_dir}' already holds a trained model ({WEIGHTS_FILE}); "
            "pass --overwrite or choose another --output-dir."
        )
    saved = run_dir / config_file
    if not saved.exists():
        return False
    previous = load_config_file(saved, defaults)
    changed = sorted(k for k in defaults if previous[k] != config[k])
    if not changed:
        return False
    if not (run_dir / BACKUP_DIR).exists():
        logger.info(
            "'%s' holds files of a run that stopped before its first epoch "
            "ended, with another configuration (keys %s); starting afresh.",
            run_dir,
            changed,
        )
        return True
    raise ConfigError(
        f"'{run_dir}' holds an unfinished run with another "
        f"configuration (keys {changed} differ from '{saved}'); "
        "resume it with the same configuration, or pass "
        "--overwrite or another --output-dir."
    )


def clear_run_dir(run_dir, file_names):
    """Deletes what `train` writes in `run_dir`, and nothing else: the
    final weights, the backup and logs folders and `file_names`."""
    run_dir = pathlib.Path(run_dir)
    for name in (WEIGHTS_FILE, *file_names):
        (run_dir / name).unlink(missing_ok=True)
    for name in (BACKUP_DIR, LOG_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def save_weights_atomically(model, path):
    """Saves `model`'s weights to `path` through a temporary file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the `.weights.h5` suffix.
    handle, temp = tempfile.mkstemp(
        prefix=TEMP_PREFIX, suffix=".weights.h5", dir=path.parent
    )
    os.close(handle)
    try:
        model.save_weights(temp, overwrite=True)
        os.chmod(temp, default_mode())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return path


def load_weights(model, path):
    """Loads weights with an error that names the file when it fails."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint file not found: '{path}'. Train a model into this "
            "run directory first (the `train` command writes it)."
        )
    try:
        model.load_weights(str(path))
    except Exception as error:  # h5py and Keras raise many kinds.
        # Keras lists every layer it could not load; the first line says
        # enough and keeps the message to one line.
        reason = (str(error).strip().splitlines() or [""])[0]
        reason = reason.split(" Example error message")[0]
        raise ValueError(
            f"Checkpoint file '{path}' is corrupt or does not match the "
            f"model of this configuration: {reason or type(error).__name__}"
        ) from error


def fit(
    model,
    train_data,
    epochs,
    steps_per_epoch,
    callbacks,
    validation_data=None,
    validation_steps=None,
    verbose="auto",
):
    """Runs `model.fit` on a repeated dataset and logs the outcome.

    Returns:
        The Keras `History` and the seconds spent.
    """
    start = time.monotonic()
    history = model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        validation_steps=validation_steps,
        callbacks=callbacks,
        verbose=verbose,
        # The recipes' tf.data pipelines shuffle (seeded) themselves; Keras
        # would ignore shuffle=True on a dataset and warn on every run.
        shuffle=False,
    )
    seconds = time.monotonic() - start
    logger.info("Training took %.1f s.", seconds)
    return history, seconds
