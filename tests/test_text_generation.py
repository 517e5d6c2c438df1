"""Tests of the text-generation recipe on a tiny model and real text."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recipes.common import cli
from recipes.common.config import ConfigError, load_config, save_config
from recipes.text_generation import __main__ as cli_main
from recipes.text_generation import generation, training
from recipes.text_generation.config import DEFAULTS, check_config
from recipes.text_generation.export import export
from recipes.text_generation.rnn_lm import RNNLM
from recipes.text_generation.transformer_lm import TransformerLM
from recipes.text_generation.vocabulary import BOS_ID, UNK_ID, Vocabulary
from tests.layer_test_utils import assert_config_complete

DATA_DIR = pathlib.Path(os.environ.get("SKIPSEQ_DATA_DIR", "/nonexistent"))
SHAKESPEARE = DATA_DIR / "tinyshakespeare" / "input.txt"
needs_data = pytest.mark.skipif(
    not SHAKESPEARE.is_file(), reason="SKIPSEQ_DATA_DIR has no Tiny Shakespeare"
)

TINY = {
    "context_length": 24,
    "chunk_length": 8,
    "width": 16,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_dim": 32,
    "dropout": 0.0,
    "batch_size": 16,
    "learning_rate": 0.01,
    "warmup_steps": 5,
    "max_steps": 40,
    "steps_per_epoch": 20,
    "validation_steps": 4,
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny Transformer trained for 40 steps on 20k real characters."""
    if not SHAKESPEARE.is_file():
        pytest.skip("SKIPSEQ_DATA_DIR has no Tiny Shakespeare")
    root = tmp_path_factory.mktemp("lm")
    text_file = root / "slice.txt"
    text = SHAKESPEARE.read_text("utf-8")[:20000]
    text_file.write_text(text, "utf-8")
    config = {**DEFAULTS, **TINY, "text_file": str(text_file)}

    # The loss of the same model before training, for comparison.
    train_text, val_text = text[:18000], text[18000:]
    vocabulary = Vocabulary.from_text(train_text)
    untrained = training.build_model(config, vocabulary.size)
    before = training.evaluate_model(untrained, vocabulary, val_text, config)

    run_dir = root / "run"
    report = training.train(config, run_dir)
    config, vocabulary, model = training.load_run(run_dir)
    chunk = config["chunk_length"]
    window = config["context_length"] - chunk
    greedy = generation.ChunkDecoder(model, window, chunk, method="greedy")
    return {
        "dir": run_dir,
        "config": config,
        "vocabulary": vocabulary,
        "model": model,
        "before": before,
        "report": report,
        "greedy": greedy,
        "sampler": generation.ChunkDecoder(model, window, chunk),
    }


def uncached_greedy(model, prompt_ids, window, chunk_length, steps):
    """Arg-max decoding by running the whole model on the growing text.

    It sees what the chunked decoder sees: each chunk starts from the last
    `window` tokens, and within a chunk the context grows by one token a
    step. (An RNN's state depends on every token it has read, so a
    sliding window of `window` tokens would be another model.)
    """
    tokens = list(prompt_ids) or [BOS_ID]
    for step in range(steps):
        if step % chunk_length == 0:
            start = max(len(tokens) - window, 0)
        logits = np.array(model(np.array([tokens[start:]]))[0, -1])
        logits[[0, UNK_ID, BOS_ID]] = -np.inf
        tokens.append(int(np.argmax(logits)))
    return tokens[-steps:]


def new_tokens(decoder, prompts, count, temperature=1.0, seed=0):
    chunks = generation.generate_ids(decoder, prompts, count, temperature, seed)
    return np.concatenate(list(chunks), axis=1)


# Vocabulary.


def test_char_vocabulary_unknown_and_round_trip():
    vocab = Vocabulary.from_text("hello world")
    assert vocab.encode("hold!") == vocab.encode("hold") + [UNK_ID]
    assert vocab.decode(vocab.encode("low")) == "low"
    assert vocab.size == 3 + len(set("hello world"))


def test_graph_encoder_matches_python(tmp_path):
    for vocab in (Vocabulary.from_text("abc d"), Vocabulary(kind="byte")):
        texts = ["ab d", "", "zé"]
        ragged = vocab.graph_encoder()(np.array(texts))
        assert ragged.to_list() == [vocab.encode(t) for t in texts]
        vocab.save(tmp_path / "v.json")
        again = Vocabulary.load(tmp_path / "v.json")
        assert again.tokens == vocab.tokens
    assert Vocabulary(kind="byte").decode(Vocabulary(kind="byte").encode("zé"))


def test_vocabulary_kind_error():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        Vocabulary(kind="word")


# Configuration.


def test_config_errors():
    with pytest.raises(ConfigError, match="Unknown config key `widht`"):
        load_config(None, DEFAULTS, ["widht=3"])
    with pytest.raises(ConfigError, match="`chunk_length` must be between"):
        check_config({**DEFAULTS, "chunk_length": 500})
    with pytest.raises(ConfigError, match="`model` must be one of"):
        check_config({**DEFAULTS, "model": "rnn"})


def test_named_configs_load():
    for name in ("lm_char_transformer", "lm_char_lstm", "lm_quality"):
        check_config(load_config(name, DEFAULTS))


def test_model_configs_complete():
    assert_config_complete(TransformerLM(5, 4, width=8, num_heads=2))
    assert_config_complete(RNNLM(5, width=8))


# Training and evaluation on real data.


@needs_data
def test_loss_falls_and_report(trained_run):
    before = trained_run["before"]["val_loss_nats_per_char"]
    report = trained_run["report"]
    assert report["val_loss_nats_per_char"] < before - 0.5
    saved = json.loads((trained_run["dir"] / "report.json").read_text())
    assert saved == report
    np.testing.assert_allclose(
        report["val_perplexity_per_char"],
        np.exp(report["val_loss_nats_per_char"]),
        rtol=1e-3,
    )


def test_ema_momentum_makes_final_weights_the_moving_average():
    """With `ema_momentum` m, `fit` ends with a_N, where a_1 = w_1 and
    a_k = m a_(k-1) + (1 - m) w_k over the weights w_k after each step."""
    import keras

    momentum, steps = 0.8, 6
    config = {**DEFAULTS, **TINY, "ema_momentum": momentum}
    keras.utils.set_random_seed(0)
    model = training.build_model(config, 12)
    training.compile_model(model, config)
    rng = np.random.default_rng(0)
    shape = (steps * config["batch_size"], config["context_length"])
    inputs = rng.integers(1, 12, shape).astype("int32")
    targets = rng.integers(1, 12, shape).astype("int32")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(
            [v.numpy().copy() for v in model.trainable_variables]
        )
    )
    model.fit(
        inputs, targets, batch_size=config["batch_size"], epochs=1,
        shuffle=False, callbacks=[record], verbose=0,
    )
    assert len(seen) == steps
    expected = seen[0]
    for weights in seen[1:]:
        expected = [momentum * a + (1 - momentum) * w
                    for a, w in zip(expected, weights)]
    # The last raw weights differ from their average, so the check bites.
    assert not np.allclose(seen[-1][0], expected[0], atol=1e-4)
    for variable, average in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), average, atol=1e-5)
    with pytest.raises(ConfigError, match="`ema_momentum` must be in"):
        check_config({**DEFAULTS, "ema_momentum": 1.0})


@needs_data
def test_evaluate_keeps_the_training_figures(trained_run):
    trained = trained_run["report"]
    report = training.evaluate(trained_run["dir"])
    saved = json.loads((trained_run["dir"] / "report.json").read_text())
    assert saved == report
    for key in ("train_seconds", "train_seconds_total", "steps", "parameters"):
        assert report[key] == trained[key]
    # The same weights on the same text: the same loss.
    np.testing.assert_allclose(
        report["val_loss_nats_per_char"],
        trained["val_loss_nats_per_char"],
        atol=1e-4,
    )


# Generation.


@needs_data
def test_cached_equals_uncached_argmax(trained_run):
    model, vocab = trained_run["model"], trained_run["vocabulary"]
    decoder = trained_run["greedy"]
    # Different lengths (left padding), one longer than the window.
    prompts = [vocab.encode("ROMEO:"), vocab.encode("First Citizen:\n" * 3)]
    cached = new_tokens(decoder, prompts, 8)
    for row, prompt in zip(cached, prompts, strict=True):
        expected = uncached_greedy(
            model, prompt, decoder.window, decoder.chunk_length, 8
        )
        assert row.tolist() == expected


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_rnn_cached_equals_uncached(cell_type):
    model = RNNLM(9, cell_type, width=8, num_layers=2, seed=3)
    model(np.zeros((1, 4), "int32"))
    decoder = generation.ChunkDecoder(model, 6, 4, method="greedy")
    prompts = [[4, 5], [3, 4, 5, 6, 7, 8, 4, 5]]
    # Seven tokens: a whole chunk of four, then part of a second one.
    cached = new_tokens(decoder, prompts, 7)
    for row, prompt in zip(cached, prompts, strict=True):
        assert row.tolist() == uncached_greedy(model, prompt, 6, 4, 7)


@needs_data
def test_top_k_one_and_temperature_zero_equal_greedy(trained_run):
    prompts = [trained_run["vocabulary"].encode("KING")]
    greedy = new_tokens(trained_run["greedy"], prompts, 12)
    chunk = trained_run["config"]["chunk_length"]
    top1 = generation.ChunkDecoder(
        trained_run["model"], trained_run["greedy"].window, chunk, top_k=1
    )
    np.testing.assert_array_equal(new_tokens(top1, prompts, 12, 1.3), greedy)
    cold = new_tokens(trained_run["sampler"], prompts, 12, temperature=0.0)
    np.testing.assert_array_equal(cold, greedy)


@needs_data
def test_beam_of_one_equals_greedy(trained_run):
    config = trained_run["config"]
    beam = generation.ChunkDecoder(
        trained_run["model"],
        trained_run["greedy"].window,
        config["chunk_length"],
        method="beam",
        beam_size=1,
    )
    prompts = [trained_run["vocabulary"].encode("To be")]
    np.testing.assert_array_equal(
        new_tokens(beam, prompts, 8),
        new_tokens(trained_run["greedy"], prompts, 8),
    )


@needs_data
def test_seeded_sampling_is_reproducible_without_retracing(trained_run):
    sampler, vocab = trained_run["sampler"], trained_run["vocabulary"]
    texts = [
        generation.generate_text(sampler, vocab, ["A"], 20, 1.0, seed=s)[0]
        for s in (5, 5, 6)
    ]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    generation.generate_text(sampler, vocab, ["Be", "x"], 9, 0.5, seed=1)
    assert sampler.tracing_count == 1


@needs_data
def test_bad_inputs(trained_run):
    sampler, vocab = trained_run["sampler"], trained_run["vocabulary"]
    window = sampler.window

    # Zero new tokens return the prompt.
    assert generation.generate_text(sampler, vocab, ["ROMEO"], 0) == ["ROMEO"]
    # An empty prompt starts from the start token.
    greedy = trained_run["greedy"]
    (text,) = generation.generate_text(greedy, vocab, [""], 10)
    expected = uncached_greedy(
        trained_run["model"], [], window, greedy.chunk_length, 10
    )
    assert text == vocab.decode(expected)
    # A long prompt keeps its last `window` tokens.
    long_prompt = "Now is the winter of our discontent " * 3
    ids = vocab.encode(long_prompt)
    np.testing.assert_array_equal(
        new_tokens(greedy, [ids], 8), new_tokens(greedy, [ids[-window:]], 8)
    )
    # Unseen characters become the unknown token and still generate.
    assert vocab.encode("\u00e9")[0] == UNK_ID
    (text,) = generation.generate_text(greedy, vocab, ["\u00e9\u00e9"], 5)
    assert text.startswith("\u00e9\u00e9") and len(text) == 7

    with pytest.raises(ValueError, match="`temperature` must be a number"):
        generation.generate_text(sampler, vocab, ["a"], 3, temperature=-0.5)
    with pytest.raises(ValueError, match=r"`top_p` must be a number in"):
        generation.ChunkDecoder(trained_run["model"], 4, 2, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_p=0"):
        generation.check_generation_args(top_p=0)
    with pytest.raises(ValueError, match="`num_new_tokens` must be"):
        generation.check_generation_args(num_new_tokens=-1)


@needs_data
def test_train_never_clobbers_or_mixes_runs(trained_run, tmp_path):
    run_dir, config = trained_run["dir"], trained_run["config"]
    weights = run_dir / "model.weights.h5"
    before = weights.read_bytes()
    with pytest.raises(FileExistsError) as info:
        training.train(config, run_dir)
    assert str(info.value) == (
        f"'{run_dir}' already holds a trained model (model.weights.h5); "
        "pass --overwrite or choose another --output-dir."
    )
    assert weights.read_bytes() == before
    # An unfinished run resumes only with its own configuration.
    unfinished = tmp_path / "unfinished"
    save_config(config, unfinished / "config.json")
    with pytest.raises(ConfigError, match=r"keys \['learning_rate'\] differ"):
        training.train({**config, "learning_rate": 0.5}, unfinished)
    assert sorted(p.name for p in unfinished.iterdir()) == ["config.json"]


@needs_data
def test_load_run_errors_name_the_file(trained_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run["dir"], run_dir)
    config_path = run_dir / "config.json"
    good_config = config_path.read_text("utf-8")
    config_path.write_text('{"widht": 16}', "utf-8")
    with pytest.raises(ConfigError, match="Unknown config key `widht` in"):
        training.load_run(run_dir)
    config_path.write_text("{", "utf-8")
    with pytest.raises(ConfigError, match="config.json' is not valid JSON"):
        training.load_run(run_dir)
    config_path.write_text(good_config, "utf-8")
    vocab_path = run_dir / "vocabulary.json"
    vocab_path.write_text("[1]", "utf-8")
    with pytest.raises(ValueError) as info:
        training.load_run(run_dir)
    assert str(info.value).startswith(
        f"Vocabulary file '{vocab_path}' is corrupt: it must hold a JSON object"
    )
    vocab_path.write_text('{"kind":', "utf-8")
    with pytest.raises(ValueError, match="vocabulary.json' cannot be read"):
        training.load_run(run_dir)


@needs_data
def test_top_k_above_vocabulary_and_export_target(trained_run, capsys):
    model, run_dir = trained_run["model"], trained_run["dir"]
    size = model.vocabulary_size
    with pytest.raises(ValueError) as info:
        generation.ChunkDecoder(model, 4, 2, top_k=size + 1)
    assert str(info.value) == (
        f"Argument `top_k` must be at most the vocabulary size ({size}). "
        f"Received: top_k={size + 1}"
    )
    # --overwrite never replaces a folder that is not an export.
    argv = ["export", "--run-dir", str(run_dir), "--export-dir"]
    argv += [str(run_dir), "--overwrite"]
    assert cli.run(cli_main.main, argv) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert (run_dir / "model.weights.h5").is_file()


def test_cli_bad_temperature_exits_with_message(capsys):
    argv = ["generate", "--run-dir", "/nonexistent", "--temperature", "-1"]
    from recipes.common import cli

    assert cli.run(cli_main.main, argv) == 2
    assert "`temperature` must be a number >= 0" in capsys.readouterr().err


def test_cli_help():
    with pytest.raises(SystemExit) as stop:
        cli_main.make_parser().parse_args(["--help"])
    assert stop.value.code == 0


@pytest.mark.parametrize("flag", ["--run-dir", "--output-dir"])
@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "export"])
def test_cli_run_directory_takes_either_name(command, flag):
    # The translation recipe says --output-dir everywhere; both recipes
    # accept both names for the run directory.
    argv = [command, flag, "runs/x"]
    if command == "export":
        argv += ["--export-dir", "runs/x/saved_model"]
    args = cli_main.make_parser().parse_args(argv)
    run_dir = args.output_dir if command == "train" else args.run_dir
    assert run_dir == "runs/x"


# Export.

RELOAD = """
import sys, tensorflow as tf
generate = tf.saved_model.load(sys.argv[1]).signatures["generate"]
for t in (0.0, 0.9):
    out = generate(prompts=tf.constant(["ROMEO:", ""]),
                   num_new_tokens=tf.constant(11),
                   temperature=tf.constant(t), seed=tf.constant(7))
    for text in out["text"].numpy():
        print(repr(text.decode("utf-8")))
"""


@needs_data
def test_export_reloads_in_fresh_process(trained_run, tmp_path):
    path = tmp_path / "exported"
    export(
        trained_run["model"],
        trained_run["vocabulary"],
        trained_run["config"],
        path,
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(FileExistsError):
        export(
            trained_run["model"],
            trained_run["vocabulary"],
            trained_run["config"],
            path,
        )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    sampler, vocab = trained_run["sampler"], trained_run["vocabulary"]
    expected = []
    for t in (0.0, 0.9):
        expected += generation.generate_text(
            sampler, vocab, ["ROMEO:", ""], 11, t, seed=7
        )
    assert result.stdout.split("\n")[:4] == [repr(t) for t in expected]
