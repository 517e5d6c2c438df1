"""Choosing a `tf.distribute` strategy and scaling a run to its replicas.

- `"default"`: the default strategy (one device, no distribution).
- `"mirrored"`: `MirroredStrategy`, one replica per local GPU (or per
  logical CPU device when no GPU is present and several CPU devices were
  configured).
- `"multi_worker"`: `MultiWorkerMirroredStrategy`; the cluster and this
  process' role come from the `TF_CONFIG` environment variable.

A run's batch size, learning rate and step counts are given for a single
replica; `scale_for_replicas` turns them into global values: the global
batch is `batch_size * replicas`, the peak learning rate grows with the
replica count (linearly, by its square root, or not at all), and step
counts shrink by the replica count so that a run sees the same number of
examples.
"""

import json
import math
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
LR_SCALINGS = ("linear", "sqrt", "none")


def make_strategy(name):
    """Returns the `tf.distribute.Strategy` called `name`.

    Must run before TensorFlow starts its devices for `"multi_worker"`
    (that is, before any other TensorFlow op).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "Strategy 'multi_worker' needs the TF_CONFIG environment "
                "variable (cluster and task of this worker). Received: "
                "TF_CONFIG unset"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        f"Argument `strategy` must be one of {list(STRATEGIES)}. "
        f"Received: strategy={name!r}"
    )


def worker_info():
    """Returns `(task_index, is_chief)` of this process from TF_CONFIG.

    Without TF_CONFIG (a single process) the answer is `(0, True)`. The
    chief is the task of type "chief", or worker 0 when no chief is
    listed.
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = "chief" in config.get("cluster", {})
    is_chief = kind == "chief" or (kind == "worker" and index == 0)
    if has_chief and kind == "worker":
        is_chief = False
    return index, is_chief


def scale_for_replicas(
    replicas, batch_size, learning_rate, steps, lr_scaling="sqrt"
):
    """Global batch size, peak learning rate and step counts.

    Args:
        replicas: int, `strategy.num_replicas_in_sync`.
        batch_size: int, the batch of one replica.
        learning_rate: float, the peak rate for one replica.
        steps: dict of step counts for one replica (e.g. warm-up, total).
        lr_scaling: `"linear"`, `"sqrt"` (default) or `"none"`.

    Returns:
        `(global_batch_size, learning_rate, steps)` with every step count
        divided by `replicas` (rounded up, at least 1).

    >>> scale_for_replicas(4, 32, 1e-3, {"warmup": 100}, "linear")
    (128, 0.004, {'warmup': 25})
    """
    if lr_scaling not in LR_SCALINGS:
        raise ValueError(
            f"Argument `lr_scaling` must be one of {list(LR_SCALINGS)}. "
            f"Received: lr_scaling={lr_scaling!r}"
        )
    factor = {"linear": replicas, "sqrt": math.sqrt(replicas), "none": 1}
    scaled_steps = {
        k: None if v is None else max(1, math.ceil(v / replicas))
        for k, v in steps.items()
    }
    return (
        batch_size * replicas,
        learning_rate * factor[lr_scaling],
        scaled_steps,
    )
