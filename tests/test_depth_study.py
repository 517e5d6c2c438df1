"""The depth study recipe on a tiny slice of Tiny Shakespeare."""

import json
import math
import os
import pathlib

import keras
import numpy as np
import pytest

from recipes.common import cli
from recipes.depth_study import __main__ as command
from recipes.depth_study import data as char_data
from recipes.depth_study import models, report, study
from skipseq.diagnostics import gradient_flow
from skipseq.layers import Residual, TransformerDecoder

DATA_DIR = pathlib.Path(os.environ.get("SKIPSEQ_DATA_DIR", "/nonexistent"))
SHAKESPEARE = DATA_DIR / "tinyshakespeare" / "input.txt"
needs_data = pytest.mark.skipif(
    not SHAKESPEARE.is_file(), reason="SKIPSEQ_DATA_DIR has no Tiny Shakespeare"
)

# Two depths of two Transformer variants and one LSTM run, a few steps on
# 20k characters: every run compiles its own model, the main cost here.
TINY = dict(
    transformer_depths=[1, 2],
    transformer_variants=["plain", "pre"],
    lstm_depths=[2],
    lstm_variants=["residual"],
    width=8,
    num_heads=2,
    intermediate_dim=16,
    context_length=8,
    batch_size=4,
    token_budget=4 * 4 * 8,
    val_windows=8,
    probe_batch_size=2,
    loss_points=2,
    max_chars=20000,
)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The command's core on TINY, with its models kept."""
    if not SHAKESPEARE.is_file():
        pytest.skip("SKIPSEQ_DATA_DIR has no Tiny Shakespeare")
    output_dir = tmp_path_factory.mktemp("depth_study")
    config = study.make_config(**TINY)
    chars = char_data.load_char_data(max_chars=config["max_chars"])
    results, trained = command.run_command(
        config, output_dir, chars=chars, keep_models=True
    )
    return config, chars, results, trained, output_dir


def test_unigram_entropy_of_known_counts():
    # Counts 2, 1, 1 of three characters: H = -(1/2 ln 1/2 + 2/4 ln 1/4).
    ids = np.array([0, 0, 1, 2], "int32")
    expected = -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    assert char_data.unigram_entropy(ids, 4) == pytest.approx(expected)
    assert char_data.unigram_entropy(np.zeros(5, "int32"), 3) == 0.0


def test_windows_shift_targets_by_one():
    ids = np.arange(20, dtype="int32")
    x, y = char_data.windows(ids, [0, 5], 4)
    np.testing.assert_array_equal(x, [[0, 1, 2, 3], [5, 6, 7, 8]])
    np.testing.assert_array_equal(y, x + 1)
    x, _ = char_data.spaced_windows(ids, 3, 4)
    np.testing.assert_array_equal(x[:, 0], [0, 8, 15])


def test_encode_text_splits_ninety_ten():
    chars = char_data.encode_text("abcdefghij" * 10)
    assert len(chars.train_ids) == 90 and len(chars.val_ids) == 10
    assert chars.vocabulary == list("abcdefghij")
    np.testing.assert_array_equal(chars.val_ids, np.arange(10))


def test_plain_transformer_blocks_have_no_skip():
    keras.utils.set_random_seed(0)
    decoder = TransformerDecoder(2, 16, num_heads=2, residual="plain")
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    outputs = keras.ops.convert_to_numpy(decoder(x))
    residuals = [
        sublayer
        for block in decoder.blocks
        for sublayer in (block.self_attention, block.feedforward)
    ]
    assert all(isinstance(r, Residual) for r in residuals)
    assert all(r.skip == "none" for r in residuals)
    assert all(r.norm_position == "post" for r in residuals)
    assert decoder.final_norm is None

    # y = N(F(x)) for each sublayer: attention, then feed-forward.
    expected = x
    for block in decoder.blocks:
        attention = block.self_attention
        hidden = attention.sublayer(
            expected, attention_mask=np.tril(np.ones((5, 5), bool))[None]
        )
        hidden = attention.output_norm(hidden)
        feedforward = block.feedforward
        expected = feedforward.output_norm(feedforward.sublayer(hidden))
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


def test_plain_residual_rejects_stochastic_depth_in_a_stack():
    # At construction, naming the stack's own rate (not a block's share).
    with pytest.raises(
        ValueError, match="residual='plain', stochastic_depth_rate=0.2"
    ):
        TransformerDecoder(
            2, 16, num_heads=2, residual="plain", stochastic_depth_rate=0.2
        )


def test_make_config_checks_settings():
    with pytest.raises(ValueError, match=r"transformer_variants=\['pree'\]"):
        study.make_config(transformer_variants=["pree"])
    with pytest.raises(ValueError, match=r"lstm_depths=\[0\]"):
        study.make_config(lstm_depths=[0])
    with pytest.raises(ValueError, match="token_budget=10"):
        study.make_config(token_budget=10)
    with pytest.raises(ValueError, match="'depht'"):
        study.make_config(depht=3)


@pytest.mark.parametrize("key", study.POSITIVE_INTS)
@pytest.mark.parametrize("value", [0, -16, 2.0, True])
def test_make_config_wants_positive_int_sizes(key, value):
    with pytest.raises(ValueError) as error:
        study.make_config(**{key: value})
    assert str(error.value) == (
        f"Setting `{key}` must be a positive int. Received: {key}={value!r}"
    )


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning_rate", 0.0, "a finite number > 0"),
        ("learning_rate", math.inf, "a finite number > 0"),
        ("margin", math.nan, "a finite number >= 0"),
        ("margin", -0.1, "a finite number >= 0"),
        ("margin", "0.2", "a finite number >= 0"),
        ("warmup_fraction", 1.0, "a number in [0, 1)"),
        ("warmup_fraction", -0.1, "a number in [0, 1)"),
        ("global_clipnorm", 0, "a finite number > 0"),
        ("train_fraction", 1.0, "a number in (0, 1)"),
        ("train_fraction", 0.0, "a number in (0, 1)"),
        ("max_chars", -1000000, "None or a positive int"),
        ("max_chars", 0, "None or a positive int"),
        ("seed", -1, "an int in [0, 4294967295]"),
        ("seed", 2**32, "an int in [0, 4294967295]"),
        ("lstm_depths", [2, 2], "a list of distinct positive ints"),
        ("lstm_depths", "2", "a list of distinct positive ints"),
        (
            "lstm_variants",
            "residual",
            "a list of distinct names from ['plain', 'residual']",
        ),
    ],
)
def test_make_config_checks_each_setting(key, value, expected):
    with pytest.raises(ValueError) as error:
        study.make_config(**{key: value})
    assert str(error.value) == (
        f"Setting `{key}` must be {expected}. Received: {key}={value!r}"
    )


def test_make_config_accepts_edges_and_gives_lists():
    config = study.make_config(
        margin=0,
        warmup_fraction=0.0,
        max_chars=1,
        seed=0,
        lstm_depths=(3,),
        transformer_variants=(),
    )
    assert config["margin"] == 0 and config["max_chars"] == 1
    # Lists, as results.json gives them back to --resume.
    assert config["lstm_depths"] == [3]
    assert config["transformer_variants"] == []


def test_make_config_wants_something_to_run():
    with pytest.raises(ValueError) as error:
        study.make_config(transformer_variants=[], lstm_depths=[])
    assert str(error.value) == (
        "Nothing to run: give at least one family a depth and a variant. "
        "Received: transformer_depths=[2, 4, 8, 16, 32], "
        "transformer_variants=[], lstm_depths=[], "
        "lstm_variants=['plain', 'residual']"
    )


def _cli_error(argv, tmp_path, monkeypatch, capsys):
    """`(exit status, last stderr line)` of the command on `argv`.

    Loading data or running fails the test: every error is expected
    before either.
    """

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(char_data, "load_char_data", no_data)
    argv = ["--quick", "--output-dir", str(tmp_path / "out"), *argv]
    try:
        status = command.cli_main(argv)
    except SystemExit as stop:
        status = stop.code
    errors = capsys.readouterr().err.strip().splitlines()
    return status, errors[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--margin", "nan"],
            "Setting `margin` must be a finite number >= 0. "
            "Received: margin=nan",
        ),
        (
            ["--batch-size", "0"],
            "Setting `batch_size` must be a positive int. "
            "Received: batch_size=0",
        ),
        (
            ["--context-length", "0"],
            "Setting `context_length` must be a positive int. "
            "Received: context_length=0",
        ),
        (
            ["--batch-size", "-16", "--token-budget", "-10240"],
            "Setting `batch_size` must be a positive int. "
            "Received: batch_size=-16",
        ),
        (
            ["--token-budget", "-10240"],
            "Setting `token_budget` must be a positive int. "
            "Received: token_budget=-10240",
        ),
        (
            ["--width", "0"],
            "Setting `width` must be a positive int. Received: width=0",
        ),
        (
            ["--max-chars", "-1000000"],
            "Setting `max_chars` must be None or a positive int. "
            "Received: max_chars=-1000000",
        ),
        (
            ["--transformer-variants", "", "--lstm-variants", ""],
            "Nothing to run: give at least one family a depth and a "
            "variant. Received: transformer_depths=[2, 6], "
            "transformer_variants=[], lstm_depths=[2, 4], lstm_variants=[]",
        ),
    ],
)
def test_command_rejects_settings_before_any_data(
    argv, message, tmp_path, monkeypatch, capsys
):
    status, error = _cli_error(argv, tmp_path, monkeypatch, capsys)
    assert (status, error) == (2, f"error: {message}")
    assert not (tmp_path / "out").exists()


def test_command_flag_errors_name_the_flag(tmp_path, monkeypatch, capsys):
    argv = ["--transformer-depths", "a,b"]
    status, error = _cli_error(argv, tmp_path, monkeypatch, capsys)
    assert status == 2
    assert error == (
        "python -m recipes.depth_study: error: argument "
        "--transformer-depths: expected comma-separated integers such as "
        "2,4,8. Received: 'a,b'"
    )
    argv = ["--resume", "--overwrite"]
    status, error = _cli_error(argv, tmp_path, monkeypatch, capsys)
    assert status == 2
    assert error.endswith(
        "error: argument --overwrite: not allowed with argument --resume"
    )


def test_output_dir_must_be_a_writable_folder(tmp_path, monkeypatch, capsys):
    file = tmp_path / "file"
    file.write_text("", encoding="utf-8")
    argv = ["--output-dir", str(file)]
    status, error = _cli_error(argv, tmp_path, monkeypatch, capsys)
    assert (status, error) == (
        2,
        "error: Argument `--output-dir` must be a folder or a new path; it "
        f"is a file. Received: --output-dir={file}",
    )
    argv = ["--output-dir", str(file / "sub")]
    status, error = _cli_error(argv, tmp_path, monkeypatch, capsys)
    assert error == (
        "error: Argument `--output-dir` must be a folder or a new path; "
        f"{file} is a file. Received: --output-dir={file / 'sub'}"
    )

    # The nearest existing folder is where the new ones would be made.
    asked = []

    def access(path, mode):
        asked.append((pathlib.Path(path), mode))
        return False

    monkeypatch.setattr(command.os, "access", access)
    new = tmp_path / "new" / "out"
    with pytest.raises(ValueError) as raised:
        command.check_output_dir(new, resume=False, overwrite=False)
    assert str(raised.value) == (
        f"Argument `--output-dir` must be writable; {tmp_path} is not. "
        f"Received: --output-dir={new}"
    )
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]
    monkeypatch.undo()

    (tmp_path / report.GRAD_RATIO_PNG).mkdir()
    with pytest.raises(ValueError) as raised:
        command.check_output_dir(tmp_path, resume=False, overwrite=False)
    assert str(raised.value) == (
        "Argument `--output-dir` holds a folder grad_ratio.png where the "
        f"study writes a file. Received: --output-dir={tmp_path}"
    )


def test_interrupted_study_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run_command", interrupted)
    argv = ["--quick", "--output-dir", str(tmp_path)]
    assert command.cli_main(argv) == cli.INTERRUPTED
    assert capsys.readouterr().err == (
        "\nerror: interrupted by SIGINT; files already written are kept "
        "(run the command again with --resume to continue the study).\n"
    )
    # The other recipes keep their own advice.
    assert cli.run(interrupted, ["train"]) == cli.INTERRUPTED
    assert "(an interrupted `train` resumes when run again)." in (
        capsys.readouterr().err
    )


def test_deepest_trained_takes_the_deepest_training_run():
    records = [
        dict(family="lstm", variant="plain", depth=d, trains=t)
        for d, t in ((2, True), (4, False), (8, True), (16, False))
    ]
    records.append(
        dict(family="lstm", variant="residual", depth=2, trains=False)
    )
    assert study.deepest_trained(records) == {
        "lstm/plain": 8,
        "lstm/residual": None,
    }


@needs_data
def test_study_records_every_run_and_the_trains_rule(tiny_study):
    config, chars, results, trained, _ = tiny_study
    keys = [(r["family"], r["variant"], r["depth"]) for r in results["runs"]]
    assert keys == study.run_keys(config)
    expected_entropy = char_data.unigram_entropy(
        chars.train_ids, chars.vocabulary_size
    )
    assert results["unigram_entropy"] == pytest.approx(expected_entropy)
    assert results["threshold"] == pytest.approx(
        expected_entropy - config["margin"]
    )
    for run in results["runs"]:
        assert run["steps"] == 4
        assert run["tokens"] == config["token_budget"]
        assert run["trains"] == (run["final_val_loss"] < results["threshold"])
        assert len(run["grad_norm_init"]) == run["depth"]
        assert len(run["train_loss_curve"]) == 2
    # The loss of the command equals the cross-entropy of the model.
    model = trained[("lstm", "residual", 2)]
    x, y = study.StudyData(chars, config).val
    expected = keras.losses.sparse_categorical_crossentropy(
        y, model.predict(x, verbose=0), from_logits=True
    )
    run = results["runs"][-1]
    assert run["final_val_loss"] == pytest.approx(
        float(np.mean(expected)), rel=1e-5
    )
    assert results["deepest_trained"] == study.deepest_trained(results["runs"])
    # Every record has the fields a resumed study checks, and passes.
    for run in results["runs"]:
        assert sorted(run) == sorted(study.RECORD_FIELDS)
    study.check_records(results["runs"], config)


@needs_data
def test_gradient_ratios_equal_gradient_flow(tiny_study):
    config, chars, results, trained, _ = tiny_study
    probe = study.StudyData(chars, config).probe
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for run in results["runs"]:
        key = (run["family"], run["variant"], run["depth"])
        # After training: the kept model, measured again.
        model = trained[key]
        flow = gradient_flow(
            model, *probe, layers=models.blocks(model), loss=loss
        )
        norms = flow["grad_norm"]
        np.testing.assert_allclose(run["grad_norm_trained"], norms, rtol=1e-5)
        assert run["grad_ratio_trained"] == pytest.approx(
            norms[0] / norms[-1], rel=1e-5
        )
        # At initialisation: the same seed rebuilds the same weights.
        fresh = models.build_model(
            run["family"],
            chars.vocabulary_size,
            run["depth"],
            run["variant"],
            config,
        )
        flow = gradient_flow(
            fresh, *probe, layers=models.blocks(fresh), loss=loss
        )
        norms = flow["grad_norm"]
        assert run["grad_ratio_init"] == pytest.approx(
            norms[0] / norms[-1], rel=1e-5
        )
        inputs = flow["input_grad_norm"]
        assert run["input_grad_ratio_init"] == pytest.approx(
            inputs[0] / inputs[-1], rel=1e-5
        )


@needs_data
def test_files_hold_the_recorded_values(tiny_study):
    config, _, results, _, output_dir = tiny_study
    saved = json.loads((output_dir / report.RESULTS_JSON).read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["config"] == config

    rows = report.read_csv(output_dir / report.RESULTS_CSV)
    assert len(rows) == len(results["runs"])
    for row, run in zip(rows, results["runs"], strict=True):
        for column in report.CSV_COLUMNS:
            assert row[column] == run[column], column

    table = (output_dir / report.TABLE_MD).read_text()
    assert table == report.markdown_table(results)
    assert f"{results['unigram_entropy']:.4f} nats/char" in table
    for run in results["runs"]:
        cell = f"{run['final_val_loss']:.3f}"
        assert cell in table
        ratio = (
            f"{run['grad_ratio_init']:.3g} -> {run['grad_ratio_trained']:.3g}"
        )
        assert ratio in table

    for name in (
        report.VAL_LOSS_PNG,
        report.GRAD_RATIO_PNG,
        report.GRAD_PROFILE_PNG,
    ):
        png = (output_dir / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # Nothing half-written is left behind.
    assert not list(output_dir.glob(".tmp-*"))


def test_table_marks_runs_that_do_not_train():
    run = dict(
        family="transformer",
        variant="plain",
        depth=4,
        final_val_loss=3.5,
        trains=False,
        grad_ratio_init=120.0,
        grad_ratio_trained=None,
    )
    results = dict(
        unigram_entropy=3.3,
        trains_definition="below 3.1",
        runs=[run],
        deepest_trained={"transformer/plain": None},
    )
    table = report.markdown_table(results)
    assert "| plain | 3.500 x | none |" in table
    assert "| plain | 120 -> nan |" in table


@needs_data
def test_resume_keeps_finished_runs_and_refuses_other_settings(tiny_study):
    config, chars, results, _, output_dir = tiny_study
    # Every run is in results.json already: nothing trains again.
    again, trained = command.run_command(
        config, output_dir, resume=True, chars=chars, keep_models=True
    )
    assert again["runs"] == results["runs"]
    assert trained == {}

    other = dict(config, seed=1)
    with pytest.raises(ValueError) as error:
        command.run_command(other, output_dir, resume=True, chars=chars)
    assert str(error.value) == (
        f"--resume: {output_dir / report.RESULTS_JSON} was written with "
        "other settings (seed=0 there, 1 now); pass the same settings, or "
        "use another --output-dir, or --overwrite instead of --resume."
    )


@pytest.mark.slow
@needs_data
def test_quick_command_end_to_end(tmp_path, capsys):
    assert command.main(["--quick", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / report.RESULTS_JSON).read_text())
    assert report.markdown_table(saved) in printed
    assert len(saved["runs"]) == len(study.run_keys(saved["config"]))


def test_an_earlier_study_is_kept_unless_asked(tmp_path):
    results = tmp_path / report.RESULTS_JSON
    results.write_text('{"runs": []}', encoding="utf-8")
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        command.check_output_dir(tmp_path, resume=False, overwrite=False)
    command.check_output_dir(tmp_path, resume=True, overwrite=False)
    command.check_output_dir(tmp_path, resume=False, overwrite=True)

    results.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.json is not a depth"):
        command.previous_runs(tmp_path, {})


RECORD = dict(
    family="lstm",
    variant="residual",
    depth=2,
    parameters=1234,
    steps=4,
    tokens=128,
    final_val_loss=3.25,
    final_train_loss=None,
    train_loss_curve=[3.5, None],
    trains=True,
    grad_ratio_init=0.1,
    grad_ratio_trained=2,
    input_grad_ratio_init=None,
    input_grad_ratio_trained=1.5,
    grad_norm_init=[1.0, 2.0],
    grad_norm_trained=[None, 0.5],
    seconds=1.5,
)


def _write_results(output_dir, config, runs):
    path = output_dir / report.RESULTS_JSON
    text = json.dumps({"config": config, "runs": runs})
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "runs, reason",
    [
        ({}, "`runs` must be a list, not dict"),
        (["lstm"], "`runs[0]` must be an object. Received: 'lstm'"),
        (
            [{"family": "lstm", "variant": "residual"}],
            "`runs[0]` has no `depth`",
        ),
        (
            [dict(RECORD, depth="2")],
            "`runs[0]`.depth must be an int. Received: '2'",
        ),
        (
            [dict(RECORD, grad_norm_init=[1.0, "x"])],
            "`runs[0]`.grad_norm_init must be a list of numbers or nulls. "
            "Received: [1.0, 'x']",
        ),
        (
            [RECORD, dict(RECORD, variant="plain")],
            "`runs[1]` is not a run of the settings: ('lstm', 'plain', 2)",
        ),
        (
            [RECORD, RECORD],
            "`runs[1]` repeats the run ('lstm', 'residual', 2)",
        ),
    ],
)
def test_resume_names_a_broken_results_file(tmp_path, runs, reason):
    config = study.make_config(
        transformer_depths=[], lstm_depths=[2, 4], lstm_variants=["residual"]
    )
    path = _write_results(tmp_path, config, runs)
    with pytest.raises(ValueError) as error:
        command.previous_runs(tmp_path, config)
    assert str(error.value) == (
        f"--resume: {path} holds a broken run: {reason}; use another "
        "--output-dir, or --overwrite instead of --resume."
    )


def test_resume_fails_before_loading_data(tmp_path, monkeypatch):
    config = study.make_config(transformer_depths=[], lstm_depths=[2])
    _write_results(tmp_path, config, [RECORD, RECORD])

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(char_data, "load_char_data", no_data)
    with pytest.raises(ValueError, match="repeats the run"):
        command.run_command(config, tmp_path, resume=True)
    # A good file gives its runs back.
    _write_results(tmp_path, config, [RECORD])
    assert command.previous_runs(tmp_path, config) == [RECORD]


def test_csv_holds_plain_values(tmp_path):
    text = report.csv_text([RECORD])
    assert text.splitlines() == [
        ",".join(report.CSV_COLUMNS),
        "lstm,residual,2,1234,4,128,3.25,,true,0.1,2,,1.5,1.5",
    ]
    path = tmp_path / report.RESULTS_CSV
    path.write_text(text, encoding="utf-8")
    (row,) = report.read_csv(path)
    assert row == {column: RECORD[column] for column in report.CSV_COLUMNS}
