"""Learning-rate schedules with a linear warm-up.

Both are `keras.optimizers.schedules.LearningRateSchedule` subclasses with
a complete `get_config`, so an optimizer that uses them can be saved and
restored. `step` is the optimizer's iteration count (starting at 0).
"""

import math

import keras
from keras import ops


def _check(name, value, minimum, integer=False):
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or value < minimum
    ):
        what = "an integer" if integer else "a number"
        raise ValueError(
            f"Argument `{name}` must be {what} >= {minimum}. "
            f"Received: {name}={value!r}"
        )


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then decay with the inverse square root of the step.

    With `s = step + 1` and `w = warmup_steps`:

    ```
    lr(s) = peak_learning_rate * min(s / w, sqrt(w / s))
    ```

    The rate rises linearly to `peak_learning_rate` at step `w`, then
    falls as `1 / sqrt(s)` (Vaswani et al. 2017, with the peak given
    directly instead of through the model width).

    Args:
        peak_learning_rate: float > 0, the rate at the end of warm-up.
        warmup_steps: int >= 1, the length of the warm-up.

    >>> schedule = InverseSqrtSchedule(1e-3, warmup_steps=100)
    >>> [round(float(schedule(s)), 6) for s in (0, 99, 399)]
    [1e-05, 0.001, 0.0005]
    """

    def __init__(self, peak_learning_rate, warmup_steps):
        _check("peak_learning_rate", peak_learning_rate, 0.0)
        _check("warmup_steps", warmup_steps, 1, integer=True)
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        s = ops.cast(step, "float32") + 1.0
        w = float(self.warmup_steps)
        factor = ops.minimum(s / w, ops.sqrt(w / s))
        return self.peak_learning_rate * factor

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
        }


@keras.saving.register_keras_serializable(package="skipseq_recipes")
class WarmupCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a cosine decay to a floor.

    With `s = step + 1`, `w = warmup_steps`, `T = total_steps` and
    `p = clip((s - w) / (T - w), 0, 1)`:

    ```
    lr(s) = peak * s / w                                      for s < w
    lr(s) = floor + (peak - floor) * (1 + cos(pi * p)) / 2    otherwise
    ```

    With a `time_progress` variable, the fraction of a time budget used
    (0 to 1, kept up to date by `recipes.common.training.TimeLimit`), the
    progress is `max(p, time_progress)`: the decay reaches the floor when
    the budget runs out even if `T` is never reached, so a run bounded by
    time still ends on an annealed rate on a slower machine. The fraction
    counts the warm-up's time too, so the rate at the end of warm-up is
    already a little below the peak (at 8% of the budget, 98.4% of it).

    Args:
        peak_learning_rate: float > 0, the rate at the end of warm-up.
        warmup_steps: int >= 1, the length of the warm-up.
        total_steps: int > `warmup_steps`, the step where decay ends.
        final_learning_rate: float >= 0, the floor. Defaults to `0.0`.
        time_progress: optional scalar float variable, as above. It is
            read inside the compiled train step, so changing it needs no
            retracing. It is not part of `get_config`: a schedule rebuilt
            from its config follows the step count alone.

    >>> schedule = WarmupCosineSchedule(1e-3, 10, 110)
    >>> [round(float(schedule(s)), 6) for s in (4, 9, 59, 109)]
    [0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(
        self,
        peak_learning_rate,
        warmup_steps,
        total_steps,
        final_learning_rate=0.0,
        time_progress=None,
    ):
        _check("peak_learning_rate", peak_learning_rate, 0.0)
        _check("warmup_steps", warmup_steps, 1, integer=True)
        _check("total_steps", total_steps, warmup_steps + 1, integer=True)
        _check("final_learning_rate", final_learning_rate, 0.0)
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_learning_rate = final_learning_rate
        self.time_progress = time_progress

    def __call__(self, step):
        s = ops.cast(step, "float32") + 1.0
        w = float(self.warmup_steps)
        peak = self.peak_learning_rate
        floor = self.final_learning_rate
        progress = ops.clip((s - w) / float(self.total_steps - w), 0.0, 1.0)
        if self.time_progress is not None:
            used = ops.cast(
                ops.convert_to_tensor(self.time_progress), "float32"
            )
            progress = ops.maximum(progress, ops.clip(used, 0.0, 1.0))
        cosine = floor + (peak - floor) * 0.5 * (
            1.0 + ops.cos(math.pi * progress)
        )
        return ops.where(s < w, peak * s / w, cosine)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final_learning_rate": self.final_learning_rate,
        }


SCHEDULES = ("inverse_sqrt", "cosine", "constant")


def make_schedule(
    name,
    peak_learning_rate,
    warmup_steps,
    total_steps=None,
    final_learning_rate=0.0,
    time_progress=None,
):
    """Returns the schedule called `name` (one of `SCHEDULES`).

    `"constant"` returns the float `peak_learning_rate` itself.
    `final_learning_rate` and `time_progress` are those of
    `WarmupCosineSchedule`; only `"cosine"` takes a `time_progress`.
    """
    if time_progress is not None and name != "cosine":
        raise ValueError(
            "Argument `time_progress` needs name='cosine'. "
            f"Received: name={name!r}"
        )
    if name == "inverse_sqrt":
        return InverseSqrtSchedule(peak_learning_rate, warmup_steps)
    if name == "cosine":
        return WarmupCosineSchedule(
            peak_learning_rate,
            warmup_steps,
            total_steps,
            final_learning_rate=final_learning_rate,
            time_progress=time_progress,
        )
    if name == "constant":
        return float(peak_learning_rate)
    raise ValueError(
        f"Argument `name` must be one of {list(SCHEDULES)}. "
        f"Received: name={name!r}"
    )
