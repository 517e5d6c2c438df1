"""Tests of the shared recipe machinery in `recipes.common`."""

import functools
import json
import math
import os
import signal

import keras
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from recipes.common import (
    cli,
    config,
    distribute,
    files,
    losses,
    metrics,
    pipeline,
    schedules,
    training,
)
from recipes.common import tokenizer as subwords

DEFAULTS = {"name": "x", "rate": 0.1, "steps": 10, "flag": True, "extra": None}


# --- configuration -------------------------------------------------------


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_merges_over_defaults(tmp_path):
    path = write(tmp_path / "c.json", '{"rate": 1, "extra": [1, 2]}')
    loaded = config.load_config(str(path), DEFAULTS, ["steps=3", "name=y"])
    assert loaded == {
        "name": "y",
        "rate": 1.0,
        "steps": 3,
        "flag": True,
        "extra": [1, 2],
    }
    assert isinstance(loaded["rate"], float)


def test_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(config.ConfigError, match="nope.json"):
        config.load_config(str(missing), DEFAULTS)
    with pytest.raises(config.ConfigError, match="no_such_config"):
        config.load_config("no_such_config", DEFAULTS)


def test_bad_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.json", '{\n"rate": 0.1,\n}')
    with pytest.raises(config.ConfigError) as info:
        config.load_config(str(path), DEFAULTS)
    assert "bad.json" in str(info.value)
    assert "not valid JSON" in str(info.value)
    assert "line 3" in str(info.value)


def test_non_object_json_is_rejected(tmp_path):
    path = write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(config.ConfigError, match="JSON object.*list"):
        config.load_config(str(path), DEFAULTS)


def test_unknown_key_is_named_with_file(tmp_path):
    path = write(tmp_path / "typo.json", '{"stepz": 3}')
    with pytest.raises(config.ConfigError) as info:
        config.load_config(str(path), DEFAULTS)
    message = str(info.value)
    assert "`stepz`" in message and "typo.json" in message
    with pytest.raises(config.ConfigError, match="`stepz` in --set"):
        config.load_config(None, DEFAULTS, ["stepz=3"])


def test_wrong_value_type_is_named(tmp_path):
    with pytest.raises(config.ConfigError) as info:
        config.load_config(None, DEFAULTS, ["steps=0.5"])
    assert str(info.value) == (
        "Config key `steps` in --set must be an int like its default 10. "
        "Received: steps=0.5"
    )
    path = write(tmp_path / "c.json", '{"flag": "yes"}')
    with pytest.raises(config.ConfigError, match="`flag` in config file"):
        config.load_config(str(path), DEFAULTS)


def test_override_syntax():
    assert config.parse_override("a=[1, 2]") == ("a", [1, 2])
    assert config.parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(config.ConfigError, match="key=value.*'novalue'"):
        config.parse_override("novalue")
    # A string key keeps a numeric-looking value as text.
    assert config.apply_overrides(DEFAULTS, ["name=123"], DEFAULTS)["name"] == (
        "123"
    )


def test_every_named_translation_config_loads():
    from recipes.translation.config import DEFAULTS as TRANSLATION

    names = sorted(p.stem for p in config.CONFIG_DIR.glob("translation*"))
    assert "translation_demo" in names
    for name in names:
        loaded = config.load_config(name, TRANSLATION)
        assert set(loaded) == set(TRANSLATION)


def test_save_config_round_trip(tmp_path):
    path = config.save_config(DEFAULTS, tmp_path / "run" / "config.json")
    assert config.load_config_file(path, DEFAULTS) == DEFAULTS


def test_cli_key_flags_and_set_order(tmp_path):
    parser = cli.make_parser("prog", "test")
    cli.add_config_arguments(
        parser, DEFAULTS, None, {"steps": "steps", "flag": "a flag"}
    )
    args = parser.parse_args(
        ["--steps", "5", "--flag", "false", "--set", "steps=7"]
    )
    loaded = cli.config_from_args(args, DEFAULTS)
    assert loaded["steps"] == 7 and loaded["flag"] is False


def test_cli_flag_errors_name_the_flag():
    parser = cli.make_parser("prog", "test")
    cli.add_config_arguments(
        parser, DEFAULTS, None, {"steps": "steps", "flag": "a flag"}
    )
    # A word that is not yes/no must not silently mean false.
    args = parser.parse_args(["--flag", "maybe"])
    with pytest.raises(config.ConfigError) as info:
        cli.config_from_args(args, DEFAULTS)
    assert str(info.value) == (
        "Config key `flag` in --flag must be a bool like its default True. "
        "Received: flag='maybe'"
    )
    args = parser.parse_args(["--steps", "x"])
    with pytest.raises(config.ConfigError, match="`steps` in --steps must"):
        cli.config_from_args(args, DEFAULTS)
    args = parser.parse_args(["--flag", "No"])
    assert cli.config_from_args(args, DEFAULTS)["flag"] is False


def test_cli_interrupt_is_one_line(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    def terminated(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert cli.run(interrupted, ["train"]) == cli.INTERRUPTED
    assert cli.run(terminated, ["export"]) == cli.INTERRUPTED
    # Each message starts on a line of its own, after a progress bar.
    assert capsys.readouterr().err.split("\n") == [
        "",
        "error: interrupted by SIGINT; files already written are kept (an "
        "interrupted `train` resumes when run again).",
        "",
        "error: interrupted by SIGTERM; files already written are kept "
        "(nothing is left half-written).",
        "",
    ]
    assert signal.getsignal(signal.SIGTERM) == before


def test_check_run_dir_clears_only_leftovers_without_progress(tmp_path):
    defaults = {"width": 8, "depth": 2}
    run_dir = tmp_path / "run"
    config.save_config({"width": 8, "depth": 2}, run_dir / "config.json")
    check = functools.partial(
        training.check_run_dir,
        run_dir,
        defaults=defaults,
        config_file="config.json",
    )
    # The same configuration resumes; nothing to clear.
    assert check(config={"width": 8, "depth": 2}, overwrite=False) is False
    # Another one, with no backup: the run never finished an epoch.
    assert check(config={"width": 16, "depth": 2}, overwrite=False) is True
    # With a backup there is progress to lose.
    (run_dir / training.BACKUP_DIR).mkdir()
    with pytest.raises(config.ConfigError, match=r"keys \['width'\] differ"):
        check(config={"width": 16, "depth": 2}, overwrite=False)
    assert check(config={"width": 16, "depth": 2}, overwrite=True) is True
    (run_dir / training.WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(FileExistsError, match="already holds a trained"):
        check(config={"width": 8, "depth": 2}, overwrite=False)


def test_cli_broken_pipe_is_quiet(capsys):
    def reader_went_away(argv):
        raise BrokenPipeError

    assert cli.run(reader_went_away, []) == cli.BROKEN_PIPE
    assert capsys.readouterr().err == ""


# --- files ---------------------------------------------------------------


def test_atomic_directory_failure_leaves_nothing(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with files.atomic_directory(target) as temp:
            (temp / "half.txt").write_text("partial")
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_never_overwrites_without_permission(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with files.atomic_directory(target):
            pass
    assert (target / "keep.txt").read_text() == "old"
    with files.atomic_directory(target, overwrite=True) as temp:
        (temp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_atomic_directory_replaces_only_marked_folders(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError) as info:
        with files.atomic_directory(mine, True, "saved_model.pb"):
            pass
    assert str(info.value) == (
        f"'{mine}' exists and is not an earlier export (it has no "
        "saved_model.pb); it is never replaced, even with --overwrite. "
        "Choose another folder."
    )
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    export = tmp_path / "export"
    with files.atomic_directory(export, False, "saved_model.pb") as temp:
        (temp / "saved_model.pb").write_text("v1")
    # Readable by others like any new folder, not private like mkdtemp's.
    mode = export.stat().st_mode & 0o777
    assert mode == files.default_directory_mode()
    with files.atomic_directory(export, True, "saved_model.pb") as temp:
        (temp / "saved_model.pb").write_text("v2")
    assert (export / "saved_model.pb").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "mine"]


def test_atomic_write_text(tmp_path):
    path = files.atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert path.read_text() == "hello"
    assert [p.name for p in path.parent.iterdir()] == ["b.txt"]


# --- schedules -----------------------------------------------------------


def test_inverse_sqrt_formula():
    schedule = schedules.InverseSqrtSchedule(2e-3, warmup_steps=4)
    for step in (0, 1, 3, 8, 99):
        s = step + 1
        expected = 2e-3 * min(s / 4, math.sqrt(4 / s))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_cosine_formula():
    schedule = schedules.WarmupCosineSchedule(1e-3, 10, 110, 1e-4)
    assert float(schedule(4)) == pytest.approx(5e-4)
    assert float(schedule(59)) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert float(schedule(500)) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.InverseSqrtSchedule(1e-3, 100),
        schedules.WarmupCosineSchedule(1e-3, 10, 100, 1e-5),
    ],
    ids=["inverse_sqrt", "cosine"],
)
def test_schedules_serialise(schedule):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert float(clone.learning_rate) == pytest.approx(
        float(schedule(0)), rel=1e-6
    )


def test_cosine_follows_the_time_budget_when_it_runs_out_first():
    used = keras.Variable(0.0, trainable=False)
    schedule = schedules.WarmupCosineSchedule(1e-3, 10, 110, 1e-4, used)
    plain = schedules.WarmupCosineSchedule(1e-3, 10, 110, 1e-4)

    def cosine(progress):
        return 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * progress))

    # Unused budget: the step count alone sets the rate.
    for step in (4, 59, 109):
        assert float(schedule(step)) == pytest.approx(float(plain(step)))
    used.assign(0.5)
    # Warm-up goes by steps alone; after it, the larger progress counts.
    assert float(schedule(4)) == pytest.approx(5e-4)
    assert float(schedule(19)) == pytest.approx(cosine(0.5))
    assert float(schedule(84)) == pytest.approx(cosine(0.75))
    used.assign(1.0)
    assert float(schedule(19)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="time_progress.*name='inverse_sqrt'"):
        schedules.make_schedule("inverse_sqrt", 1e-3, 10, time_progress=used)


def test_time_progress_is_read_inside_one_compiled_function():
    used = keras.Variable(0.0, trainable=False)
    schedule = schedules.WarmupCosineSchedule(1.0, 1, 1001, 0.0, used)
    traces = []

    @tf.function(jit_compile=True)
    def rate(step):
        traces.append(1)
        return schedule(step)

    step = tf.constant(1, "int64")
    assert float(rate(step)) == pytest.approx(1.0, abs=1e-5)
    used.assign(0.5)
    assert float(rate(step)) == pytest.approx(0.5, abs=1e-6)
    assert len(traces) == 1


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match=r"`warmup_steps`.*warmup_steps=0"):
        schedules.InverseSqrtSchedule(1e-3, 0)
    with pytest.raises(ValueError, match=r"`total_steps`.*total_steps=5"):
        schedules.WarmupCosineSchedule(1e-3, 10, 5)
    with pytest.raises(ValueError, match=r"`name`.*name='linear'"):
        schedules.make_schedule("linear", 1e-3, 10)


# --- losses --------------------------------------------------------------


def test_masked_crossentropy_matches_hand_computation():
    logits = np.log(
        np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]])
    ).astype("float32")
    targets = np.array([[1, 2, 0]])
    e = 0.3
    log_p = np.log([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    per_token = [
        -(1 - e) * log_p[i, t] - e * log_p[i].mean()
        for i, t in enumerate([1, 2])
    ]
    loss = losses.MaskedSparseCrossentropy(label_smoothing=e, pad_id=0)
    assert float(loss(targets, logits)) == pytest.approx(
        np.mean(per_token), rel=1e-5
    )


def test_masked_crossentropy_argument_error():
    with pytest.raises(ValueError, match="label_smoothing=1.0"):
        losses.MaskedSparseCrossentropy(label_smoothing=1.0)


def test_masked_accuracy_ignores_padding():
    metric = losses.MaskedAccuracy(pad_id=0)
    logits = np.eye(4, dtype="float32")[[[1, 2, 3, 1]]]
    metric.update_state(np.array([[1, 2, 1, 0]]), logits)
    assert float(metric.result()) == pytest.approx(2 / 3)


# --- pipeline ------------------------------------------------------------


def test_bucket_batches_pad_to_bucket_lengths():
    lengths = [1, 2, 3, 5, 7, 8, 4, 6] * 6
    rows = [np.arange(1, n + 1, dtype="int32") for n in lengths]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((r, r) for r in rows),
        output_signature=(tf.TensorSpec([None], "int32"),) * 2,
    )
    batched = pipeline.bucket_batches(
        dataset, lambda a, b: tf.shape(a)[0], [4, 8], batch_size=4
    )
    shapes = set()
    for a, b in batched:
        shapes.add(tuple(a.shape))
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        # Padding is zeros after each row's real tokens.
        assert np.all(a.numpy()[:, 0] == 1)
    assert shapes <= {(4, 4), (4, 8)}
    assert len(shapes) == 2


def test_check_buckets_adds_max_and_rejects_bad():
    assert pipeline.check_buckets([16, 8], 32) == [8, 16, 32]
    with pytest.raises(ValueError, match="bucket_lengths=\\[64\\]"):
        pipeline.check_buckets([64], 32)


# --- tokenizer -----------------------------------------------------------

VOCAB = list(subwords.SPECIAL_TOKENS) + [
    "A", "dog", "runs", ".", "(", ")", "-", "T", "shirt", "##s", "man",
    "'", "s", ",",
]  # fmt: skip


def test_tokenize_and_detokenize_round_trip():
    tokenizer = subwords.make_tokenizer(VOCAB)

    @tf.function
    def round_trip(texts):
        ids = tokenizer.tokenize(texts).to_tensor()
        eos = tf.fill([tf.shape(ids)[0], 1], subwords.EOS_ID)
        # Tokens after [EOS] must be dropped.
        ids = tf.concat([ids, eos, ids], axis=1)
        return ids, subwords.detokenize(tokenizer, ids)

    texts = ["A dog runs.", "A man's T-shirts (dog), A", "", "Ein Hund"]
    ids, back = round_trip(tf.constant(texts))
    back = [s.decode() for s in back.numpy()]
    assert back[:3] == texts[:3]
    assert back[3] == "[UNK] [UNK]"
    assert ids.numpy()[0, :4].tolist() == [4, 5, 6, 7]


def test_learned_vocabulary_keeps_case(tmp_path):
    texts = ["The Dog runs .", "the dog Runs ."] * 20
    vocabulary = subwords.learn_vocabulary(texts, 100)
    assert tuple(vocabulary[:4]) == subwords.SPECIAL_TOKENS
    assert "Dog" in vocabulary and "dog" in vocabulary
    path = subwords.save_vocabulary(vocabulary, tmp_path / "vocab.txt")
    assert subwords.load_vocabulary(path) == vocabulary


def test_vocabulary_errors_name_the_file(tmp_path):
    with pytest.raises(subwords.VocabularyError, match="missing.txt"):
        subwords.load_vocabulary(tmp_path / "missing.txt")
    bad = write(tmp_path / "bad.txt", "hello\nworld\n")
    with pytest.raises(subwords.VocabularyError, match="bad.txt.*corrupt"):
        subwords.load_vocabulary(bad)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(subwords.VocabularyError, match="binary.txt"):
        subwords.load_vocabulary(binary)


# --- metrics -------------------------------------------------------------


def test_bleu_equals_sacrebleu():
    hyps = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee!"]
    refs = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee."]
    scores = metrics.corpus_scores(hyps, refs)
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert scores["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert "tok:13a" in scores["bleu_signature"]
    assert "case:mixed" in scores["bleu_signature"]
    with pytest.raises(ValueError, match="1 hypotheses, 2 references"):
        metrics.corpus_scores(hyps[:1], refs)


# --- distribution --------------------------------------------------------


def test_scale_for_replicas():
    steps = {"warmup": 100, "total": 1001, "epoch": None}
    assert distribute.scale_for_replicas(2, 32, 1e-3, steps, "sqrt") == (
        64,
        pytest.approx(1e-3 * math.sqrt(2)),
        {"warmup": 50, "total": 501, "epoch": None},
    )
    assert distribute.scale_for_replicas(1, 32, 1e-3, steps, "linear")[1:] == (
        1e-3,
        {"warmup": 100, "total": 1001, "epoch": None},
    )
    with pytest.raises(ValueError, match="lr_scaling='cube'"):
        distribute.scale_for_replicas(2, 32, 1e-3, steps, "cube")


def test_worker_info_reads_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.worker_info() == (0, True)
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert distribute.worker_info() == (1, False)


def test_make_strategy_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy='tpu'"):
        distribute.make_strategy("tpu")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    assert distribute.make_strategy("default").num_replicas_in_sync == 1


# --- training helpers ----------------------------------------------------


def test_time_limit_stops_training():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    limit = training.TimeLimit(1e-9)
    history = model.fit(
        np.ones((64, 2)),
        np.ones((64, 1)),
        batch_size=4,
        epochs=3,
        callbacks=[limit],
        verbose=0,
    )
    assert limit.stopped
    assert len(history.history["loss"]) == 1
    assert int(model.optimizer.iterations.numpy()) == 1
    with pytest.raises(ValueError, match="max_seconds=0"):
        training.TimeLimit(0)


class _InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


def _one_second_per_reading(monkeypatch):
    ticks = iter(range(10**6))
    monkeypatch.setattr(
        training.TimeLimit, "_clock", staticmethod(lambda: float(next(ticks)))
    )


def test_time_limit_counts_the_time_before_a_resume(tmp_path, monkeypatch):
    _one_second_per_reading(monkeypatch)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((16, 2)), np.ones((16, 1))
    backup = tmp_path / "backup"

    def run(limit, *extra):
        restore = keras.callbacks.BackupAndRestore(str(backup))
        return model.fit(
            x,
            y,
            batch_size=4,
            epochs=4,
            callbacks=[restore, limit, *extra],
            verbose=0,
        )

    first = training.TimeLimit(1e9, state_dir=backup)
    with pytest.raises(KeyboardInterrupt):
        run(first, _InterruptAt(2))
    recorded = json.loads((backup / "time_limit.json").read_text())
    assert list(recorded) == ["1", "2"]
    # Four batch ends and an epoch end read the clock once each.
    assert recorded["2"] - recorded["1"] == 5.0
    used = recorded["2"]

    # Resumed at epoch 2, the clock starts at the time used by then, so a
    # limit just above it stops the run after one more step; a clock
    # started from zero would let it run its 8 remaining steps.
    second = training.TimeLimit(used + 0.5, state_dir=backup)
    run(second)
    assert second.stopped
    assert int(model.optimizer.iterations.numpy()) == 2 * 4 + 1
    assert used < second.seconds < used + 5
    # A finished run leaves no backup, so the next run starts from zero.
    assert not backup.exists()


def test_time_limit_ignores_a_damaged_clock_file(tmp_path, caplog):
    state = write(tmp_path / "time_limit.json", "not json")
    limit = training.TimeLimit(100.0, state_dir=tmp_path)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with caplog.at_level("WARNING"):
        model.fit(
            np.ones((4, 2)), np.ones((4, 1)), callbacks=[limit], verbose=0
        )
    assert f"Ignoring '{state}'" in caplog.text
    assert not limit.stopped
    recorded = json.loads(state.read_text())
    assert list(recorded) == ["1"]
    assert 0 < recorded["1"] <= limit.seconds


def test_time_limit_drives_the_learning_rate_of_fit(monkeypatch):
    _one_second_per_reading(monkeypatch)
    used = keras.Variable(0.0, trainable=False)
    # 10 s of budget; train_steps so large that only time decays the rate.
    schedule = schedules.WarmupCosineSchedule(1.0, 1, 10**6, 0.0, used)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), "mse", jit_compile=True)
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rates.append(float(model.optimizer.learning_rate))

    limit = training.TimeLimit(10.0, progress=used)
    model.fit(
        np.ones((64, 2)),
        np.ones((64, 1)),
        batch_size=4,
        callbacks=[limit, Record()],
        verbose=0,
    )
    # Train begin reads the clock at 0; each step reads it at its begin
    # (the rate it trains with) and end (the limit). Step k begins at
    # 2k - 1 s and runs with the rate at that share of 10 s; the step
    # that ends at 10 s is the last.
    expected = [
        0.5 * (1 + math.cos(math.pi * (2 * k - 1) / 10))
        for k in (1, 2, 3, 4, 5)
    ]
    assert limit.stopped
    assert rates == pytest.approx(expected, abs=1e-6)


def test_decay_by_time_needs_cosine_a_limit_and_one_clock():
    good = {
        "decay_by_time": True,
        "schedule": "cosine",
        "max_train_seconds": 60,
    }
    assert (
        training.time_progress_variable({**good, "decay_by_time": False})
        is None
    )
    variable = training.time_progress_variable(good, "mirrored")
    assert float(variable) == 0.0 and not variable.trainable
    for key, value, strategy in (
        ("schedule", "inverse_sqrt", "default"),
        ("max_train_seconds", None, "default"),
        ("max_train_seconds", 0.0, "default"),
        ("strategy", None, "multi_worker"),
    ):
        bad = dict(good) if key == "strategy" else {**good, key: value}
        shown = strategy if key == "strategy" else value
        with pytest.raises(
            config.ConfigError,
            match=rf"`decay_by_time` needs `{key}`.*{key}={shown!r}",
        ):
            training.time_progress_variable(bad, strategy)
    with pytest.raises(ValueError, match="`progress` needs a time limit"):
        training.TimeLimit(None, progress=variable)


def test_load_weights_errors_name_the_file(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        training.load_weights(model, tmp_path / "missing.weights.h5")
    bad = write(tmp_path / "bad.weights.h5", "not hdf5")
    with pytest.raises(ValueError, match="bad.weights.h5.*corrupt"):
        training.load_weights(model, bad)
    good = training.save_weights_atomically(model, tmp_path / "m.weights.h5")
    training.load_weights(model, good)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.weights.h5",
        "m.weights.h5",
    ]


def test_load_weights_mismatch_is_one_line(tmp_path):
    small = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = training.save_weights_atomically(small, tmp_path / "s.weights.h5")
    big = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    with pytest.raises(ValueError) as info:
        training.load_weights(big, path)
    message = str(info.value)
    assert message.startswith(
        f"Checkpoint file '{path}' is corrupt or does not match the model"
    )
    assert "\n" not in message
