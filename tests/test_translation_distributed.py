"""The translation recipe under tf.distribute strategies.

Each test runs in fresh Python processes: logical CPU devices must be
configured before TensorFlow starts its devices, and a multi-worker
strategy must be created before any other TensorFlow op.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from skipseq import data as skipseq_data

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Same global batch (16) on one device and on two replicas of 8; no
# dropout, clipping or learning-rate scaling, so the runs differ only in
# how the batch is split.
COMMON = [
    "jit_compile=false",
    "validation_steps=0",
    "clipnorm=0.0",
    "lr_scaling=none",
    "dropout=0.0",
    "train_steps=6",
    "steps_per_epoch=2",
]

MIRRORED_SCRIPT = """
import json, shutil, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
from recipes.common.config import load_config
from recipes.translation import recipe
from recipes.translation.config import DEFAULTS

out, common = sys.argv[1], json.loads(sys.argv[2])
single = load_config("translation_tiny", DEFAULTS, common + ["batch_size=16"])
result_1 = recipe.train(single, out + "/single", verbose=0)
# Per-replica step counts: twice those of the single-device run, which
# the 2-replica run divides by 2.
mirrored = load_config(
    "translation_tiny", DEFAULTS,
    common + ["batch_size=8", "strategy=mirrored", "train_steps=12",
              "steps_per_epoch=4", "warmup_steps=10"],
)
shutil.copytree(out + "/single", out + "/mirrored",
                ignore=shutil.ignore_patterns("model.weights.h5"))
(__import__("pathlib").Path(out) / "mirrored/config.json").unlink()
result_2 = recipe.train(mirrored, out + "/mirrored", verbose=0)
print(json.dumps({
    "single": result_1["history"]["loss"],
    "mirrored": result_2["history"]["loss"],
    "replicas": result_2["replicas"],
    "steps": result_2["steps"],
}))
"""


def multi30k_available():
    try:
        skipseq_data.get_path("multi30k", "train", "en", download=False)
    except (skipseq_data.SkipseqDataError, FileNotFoundError):
        return False
    return True


pytestmark = pytest.mark.skipif(
    not multi30k_available(),
    reason="Multi30k not found offline (set SKIPSEQ_DATA_DIR)",
)


def environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_mirrored_two_cpus_matches_single_device(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)]
        + [json.dumps(COMMON)],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert losses["replicas"] == 2
    assert losses["steps"] == 6
    assert len(losses["single"]) == len(losses["mirrored"]) == 3
    # Each replica averages over its own tokens, so the losses agree
    # closely but not exactly.
    assert losses["mirrored"] == pytest.approx(losses["single"], rel=0.01)
    assert losses["mirrored"][-1] < losses["mirrored"][0]


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_localhost_write_one_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    cluster = {"worker": [f"localhost:{free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        tf_config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        argv = [sys.executable, "-m", "recipes.translation", "train"]
        argv += ["--config", "translation_tiny", "--output-dir", str(run_dir)]
        for override in COMMON + ["strategy=multi_worker", "batch_size=8"]:
            argv += ["--set", override]
        workers.append(
            subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment(TF_CONFIG=json.dumps(tf_config)),
                cwd=ROOT,
            )
        )
    outputs = [w.communicate(timeout=1200) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert "Trained 3 steps" in outputs[0][0]
    checkpoints = sorted(p.name for p in run_dir.rglob("*.weights.h5"))
    assert checkpoints == ["model.weights.h5"]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json",
        "model.weights.h5",
        "training.json",
        "vocab.txt",
    ]
