"""Timing helpers shared by the benchmarks that compare several contestants.

The benchmarks run on shared, noisy machines. They build every contestant
in one process, warm each one up (tracing and compilation are not timed),
then time them in rounds whose order rotates, so a change of load hits
every contestant alike. These helpers record wall and process CPU time,
pick the order of each round and summarise the samples.
"""

import time

import keras
import numpy as np


class Stopwatch:
    """Wall and process CPU seconds of a block, as a context manager.

    Process CPU time counts the work of every thread of this process and
    none of the time spent waiting for a core, so a ratio of CPU times is
    a second estimate that another program's load does not inflate.
    """

    def __enter__(self):
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


class ExecutionTimer(keras.callbacks.Callback):
    """Wall and CPU seconds of each call of the train function in `fit`.

    On the CPU an eager call of the compiled train function returns when
    the step is done, so the batch hooks bracket exactly the step's work;
    the set-up of `fit` (data adapter, iterator, callbacks) is left out.
    """

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.cpu_seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self.watch = Stopwatch().__enter__()

    def on_train_batch_end(self, batch, logs=None):
        self.watch.__exit__(None, None, None)
        self.seconds.append(self.watch.seconds)
        self.cpu_seconds.append(self.watch.cpu_seconds)


def rotated(items, round_index):
    """`items` rotated left by `round_index`: the order of one round.

    Over `len(items)` rounds every item runs once in every position, and
    each one follows a different neighbour each time.
    """
    shift = round_index % len(items)
    return list(items[shift:]) + list(items[:shift])


def median(values):
    return float(np.median(np.asarray(values, dtype="float64")))


def paired_ratio(numerators, denominators):
    """Median of the per-round ratios, and the ratios themselves.

    Two contestants timed in the same round share that round's load, so
    the ratio within a round is less noisy than either time alone.
    """
    ratios = [
        float(n / d) for n, d in zip(numerators, denominators, strict=True)
    ]
    return median(ratios), ratios


class StepTimes:
    """The timed training steps of one contestant, round by round."""

    def __init__(self):
        self.step_seconds = []
        self.cpu_step_seconds = []
        self.round_seconds = []

    def add_round(self, timer):
        """Adds the steps an `ExecutionTimer` recorded in one round."""
        self.step_seconds += timer.seconds
        self.cpu_step_seconds += timer.cpu_seconds
        self.round_seconds.append(median(timer.seconds))


def fit_round(model, inputs, targets, batch_size):
    """One epoch of `model.fit` over the round's batches, in order.

    Returns the `ExecutionTimer` of its steps and the `History`.
    """
    timer = ExecutionTimer()
    history = model.fit(
        inputs,
        targets,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[timer],
    )
    return timer, history


def compare(numerator, denominator):
    """Step-time ratios of two `StepTimes` measured in the same rounds.

    Returns the ratio of the median step times, the median per-round
    ratio with the per-round ratios, and the ratio of the median CPU
    times.
    """
    paired, per_round = paired_ratio(
        numerator.round_seconds, denominator.round_seconds
    )
    return {
        "ratio": median(numerator.step_seconds)
        / median(denominator.step_seconds),
        "paired_ratio": paired,
        "per_round": per_round,
        "cpu_time_ratio": median(numerator.cpu_step_seconds)
        / median(denominator.cpu_step_seconds),
    }
