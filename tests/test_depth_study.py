"""The depth study recipe on a tiny slice of Tiny Shakespeare."""

import json
import math
import os
import pathlib

import keras
import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="stochastic_depth_rate=0.1"):
        TransformerDecoder(
            2, 16, num_heads=2, residual="plain", stochastic_depth_rate=0.2
        ).build((None, 5, 8))


def test_make_config_checks_settings():
    with pytest.raises(ValueError, match=r"transformer_variants=\['pree'\]"):
        study.make_config(transformer_variants=["pree"])
    with pytest.raises(ValueError, match=r"lstm_depths=\[0\]"):
        study.make_config(lstm_depths=[0])
    with pytest.raises(ValueError, match="token_budget=10"):
        study.make_config(token_budget=10)
    with pytest.raises(ValueError, match="'depht'"):
        study.make_config(depht=3)


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
    with pytest.raises(ValueError, match="other settings"):
        command.run_command(other, output_dir, resume=True, chars=chars)


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
