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
from recipes.text_generation.subword import SubwordVocabulary
from recipes.text_generation.transformer_lm import TransformerLM
from recipes.text_generation.vocabulary import (
    BOS_ID,
    UNK_ID,
    Vocabulary,
    build_vocabulary,
    load_vocabulary,
)
from tests.layer_test_utils import assert_config_complete
from tests.recipe_test_utils import StopAt

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


def write_slice(tmp_path_factory, name, characters=20000):
    """A new folder and, in it, the first characters of Tiny Shakespeare
    as a file; returns the folder, the file and the text."""
    if not SHAKESPEARE.is_file():
        pytest.skip("SKIPSEQ_DATA_DIR has no Tiny Shakespeare")
    root = tmp_path_factory.mktemp(name)
    text = SHAKESPEARE.read_text("utf-8")[:characters]
    path = root / "slice.txt"
    path.write_text(text, "utf-8")
    return root, path, text


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny Transformer trained for 40 steps on 20k real characters."""
    root, text_file, text = write_slice(tmp_path_factory, "lm")
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


def uncached_rnn_greedy(model, prompt_ids, window, steps):
    """Arg-max decoding by running the RNN over the whole growing text.

    Only the prompt is cut to its last `window` tokens, as the decoder's
    first chunk does; after that the states see every generated token.
    """
    tokens = (list(prompt_ids) or [BOS_ID])[-window:]
    for _ in range(steps):
        logits = np.array(model(np.array([tokens]))[0, -1])
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
    byte = Vocabulary(kind="byte")
    assert byte.decode(byte.encode("zé")) == "zé"
    graph_text = byte.graph_decoder()(np.array([byte.encode("zé")]))
    assert graph_text.numpy()[0].decode("utf-8") == "zé"


def test_byte_stream_decoder_joins_characters_cut_by_chunks():
    vocab = Vocabulary(kind="byte")
    ids = vocab.encode("né €!")
    # Chunks of two ids cut both multi-byte characters.
    whole = vocab.decode(ids)
    decode = vocab.stream_decoder()
    pieces = [decode(ids[i : i + 2]) for i in range(0, len(ids), 2)]
    assert "".join(pieces) + decode([], final=True) == whole == "né €!"
    assert "\ufffd" not in "".join(pieces)
    # Each chunk decoded alone would lose them.
    alone = "".join(vocab.decode(ids[i : i + 2]) for i in range(0, 7, 2))
    assert alone != whole


@pytest.fixture(scope="module")
def subword_vocabulary():
    if not SHAKESPEARE.is_file():
        pytest.skip("SKIPSEQ_DATA_DIR has no Tiny Shakespeare")
    text = SHAKESPEARE.read_text("utf-8")[:60000]
    return SubwordVocabulary.train(text, 300), text


@needs_data
def test_subword_vocabulary_round_trip_and_graph(subword_vocabulary, tmp_path):
    vocab, text = subword_vocabulary
    assert 100 < vocab.size <= 300
    # Unseen text, with runs of spaces and blank lines.
    sample = text[50000:52000] + "  so   spaced\n\n\n  out \n"
    ids = vocab.encode(sample)
    # Exact round trip, newlines and runs of spaces included: a loss per
    # token then converts to a loss per character.
    assert vocab.decode(ids) == sample
    assert len(ids) < len(sample) / 1.5
    assert vocab.units_per_character(sample) == len(ids) / len(sample)
    # Chunks decode on their own, as the command line streams them.
    decode = vocab.stream_decoder()
    pieces = [decode(ids[i : i + 7]) for i in range(0, len(ids), 7)]
    assert "".join(pieces) == sample
    # Unseen characters are unknown and decode to nothing.
    assert vocab.encode("\u00e9") == [UNK_ID]
    assert vocab.decode([UNK_ID, BOS_ID, 0]) == ""
    # The graph versions agree with Python.
    texts = ["ROMEO:\n  Good morrow", "", "\u00e9t\u00e9"]
    ragged = vocab.graph_encoder()(np.array(texts))
    assert ragged.to_list() == [vocab.encode(t) for t in texts]
    graph_text = vocab.graph_decoder()(np.array([ids[:50]]))
    assert graph_text.numpy()[0].decode("utf-8") == vocab.decode(ids[:50])
    # Saved and loaded as any vocabulary.
    vocab.save(tmp_path / "v.json")
    again = load_vocabulary(tmp_path / "v.json")
    assert isinstance(again, SubwordVocabulary)
    assert again.encode(sample) == ids
    (tmp_path / "bad.json").write_text(
        '{"kind": "sentencepiece", "model": "AAAA"}', "utf-8"
    )
    with pytest.raises(ValueError, match="bad.json' is corrupt"):
        load_vocabulary(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="`kind` must be one of"):
        build_vocabulary(text, "wordpiece")


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
    with pytest.raises(ConfigError, match="`vocabulary_size` must be"):
        check_config({**DEFAULTS, "vocabulary_size": 2})


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
    # A run without a resume: its only session is all its time.
    assert report["train_seconds_total"] == report["train_seconds"] > 0
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
        inputs,
        targets,
        batch_size=config["batch_size"],
        epochs=1,
        shuffle=False,
        callbacks=[record],
        verbose=0,
    )
    assert len(seen) == steps
    expected = seen[0]
    for weights in seen[1:]:
        expected = [
            momentum * a + (1 - momentum) * w
            for a, w in zip(expected, weights, strict=True)
        ]
    # The last raw weights differ from their average, so the check bites.
    assert not np.allclose(seen[-1][0], expected[0], atol=1e-4)
    for variable, average in zip(
        model.trainable_variables, expected, strict=True
    ):
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
    # Different lengths (left padding), one longer than the window; 20
    # tokens take three chunks of 8, so the window slides twice.
    prompts = [vocab.encode("ROMEO:"), vocab.encode("First Citizen:\n" * 3)]
    cached = new_tokens(decoder, prompts, 20)
    for row, prompt in zip(cached, prompts, strict=True):
        expected = uncached_greedy(
            model, prompt, decoder.window, decoder.chunk_length, 20
        )
        assert row.tolist() == expected


def tiny_rnn(cell_type, vocabulary_size=9):
    """A small RNN language model with fixed random weights."""
    model = RNNLM(vocabulary_size, cell_type, width=8, num_layers=2, seed=3)
    model(np.zeros((1, 4), "int32"))
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    return model


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_rnn_carries_its_states_across_chunks(cell_type):
    model = tiny_rnn(cell_type)
    prompts = [[4, 5], [3, 4, 5, 6, 7, 8, 4, 5]]
    # Eleven tokens: chunks of four, so the states pass two boundaries;
    # the reference has read every token since the prompt's window.
    expected = [uncached_rnn_greedy(model, p, 6, 11) for p in prompts]
    greedy = generation.ChunkDecoder(model, 6, 4, method="greedy")
    assert new_tokens(greedy, prompts, 11).tolist() == expected
    # Sampling at temperature 0 and a beam of one take other paths to
    # the carried states (returned by the loop; fed again after a beam).
    sampler = generation.ChunkDecoder(model, 6, 4)
    cold = new_tokens(sampler, prompts, 11, temperature=0.0)
    assert cold.tolist() == expected
    beam = generation.ChunkDecoder(model, 6, 4, method="beam", beam_size=1)
    assert new_tokens(beam, prompts, 11).tolist() == expected
    assert greedy.tracing_count == 2  # the first chunk and the others
    with pytest.raises(ValueError, match="`resume` continues from carried"):
        generation.ChunkDecoder(
            TransformerLM(9, 8, 8, num_heads=2), 4, 2
        ).resume([3], {}, 1.0, [0, 0])


def brute_force_best_pair(model, prompt):
    """The two-token continuation of highest log-probability, by trying
    every pair of ids generation may produce."""
    allowed = np.arange(3, model.vocabulary_size)

    def log_probs(tokens):
        logits = np.array(model(np.array([tokens]))[0, -1], "float64")
        logits = logits[allowed]
        return logits - np.logaddexp.reduce(logits)

    first = log_probs(prompt)
    scores = [
        first[i] + log_probs(prompt + [a]).max() for i, a in enumerate(allowed)
    ]
    a = int(allowed[int(np.argmax(scores))])
    b = int(allowed[int(np.argmax(log_probs(prompt + [a])))])
    return [a, b]


def test_beam_as_wide_as_the_vocabulary_finds_the_best_pair():
    model = tiny_rnn("gru", vocabulary_size=8)
    # With a beam for every first token, a two-token search is exhaustive.
    beam = generation.ChunkDecoder(model, 4, 2, method="beam", beam_size=5)
    greedy = generation.ChunkDecoder(model, 4, 2, method="greedy")
    greedy_missed = 0
    prompts = [[4, 6, 3], [5, 5], [7, 3, 4, 6], [6], [3, 7], [4], [5, 7, 7]]
    for prompt in prompts:
        found = new_tokens(beam, [prompt], 2)[0].tolist()
        assert found == brute_force_best_pair(model, prompt)
        greedy_missed += new_tokens(greedy, [prompt], 2)[0].tolist() != found
    # The check bites only where greedy search misses the best pair.
    assert greedy_missed > 0


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
    # A long prompt keeps its last `window` tokens: the model, run on
    # them alone, predicts the same; the text keeps the whole prompt.
    long_prompt = "Now is the winter of our discontent " * 3
    ids = vocab.encode(long_prompt)
    assert len(ids) > window
    (text,) = generation.generate_text(greedy, vocab, [long_prompt], 8)
    expected = uncached_greedy(
        trained_run["model"], ids[-window:], window, greedy.chunk_length, 8
    )
    assert text == long_prompt + vocab.decode(expected)
    # Unseen characters become the unknown token and still generate.
    assert vocab.encode("\u00e9\u00e9") == [UNK_ID, UNK_ID]
    (text,) = generation.generate_text(greedy, vocab, ["\u00e9\u00e9"], 5)
    unknown = new_tokens(greedy, [[UNK_ID, UNK_ID]], 5)[0]
    assert text == "\u00e9\u00e9" + vocab.decode(unknown)
    assert len(text) == 7

    with pytest.raises(
        ValueError, match="`temperature` must be a finite number"
    ):
        generation.generate_text(sampler, vocab, ["a"], 3, temperature=-0.5)
    with pytest.raises(ValueError, match=r"`top_p` must be a number in"):
        generation.ChunkDecoder(trained_run["model"], 4, 2, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_p=0"):
        generation.check_generation_args(top_p=0)
    with pytest.raises(ValueError, match="`num_new_tokens` must be"):
        generation.check_generation_args(num_new_tokens=-1)
    with pytest.raises(ValueError) as info:
        generation.ChunkDecoder(greedy.model, 4, 2, "greedy", top_k=3)
    assert str(info.value) == (
        "Arguments `top_k` and `top_p` filter sampling, and "
        "method='greedy' does not sample. Received: top_k=3, top_p=None"
    )


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
    # An unfinished run (one with a backup of an epoch) resumes only with
    # its own configuration.
    unfinished = tmp_path / "unfinished"
    save_config(config, unfinished / "config.json")
    (unfinished / "backup").mkdir()
    with pytest.raises(ConfigError, match=r"keys \['learning_rate'\] differ"):
        training.train({**config, "learning_rate": 0.5}, unfinished)
    assert sorted(p.name for p in unfinished.iterdir()) == [
        "backup",
        "config.json",
    ]


@needs_data
def test_interrupted_training_resumes(trained_run, tmp_path):
    config = {**trained_run["config"], "validation_steps": 0}
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(config, run_dir, extra_callbacks=[StopAt(25)], verbose=0)
    assert not (run_dir / "model.weights.h5").exists()
    meta = json.loads(
        (run_dir / "backup" / "training_metadata.json").read_text()
    )
    assert meta["epoch"] == 1  # steps 1-20 were backed up
    vocabulary = (run_dir / "vocabulary.json").read_text()

    report = training.train(config, run_dir, verbose=0)
    # 20 restored steps and the 20 of the second epoch, not 40 new ones.
    assert report["steps"] == config["max_steps"] == 40
    assert report["train_seconds_total"] > report["train_seconds"]
    assert (run_dir / "vocabulary.json").read_text() == vocabulary
    assert (run_dir / "model.weights.h5").is_file()
    assert not (run_dir / "backup").exists()


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
    # A vocabulary of another run: the weights cannot match its size.
    Vocabulary.from_text("abc").save(vocab_path)
    with pytest.raises(ValueError) as info:
        training.load_run(run_dir)
    assert "does not match the model" in str(info.value)
    assert str(info.value).endswith(
        f"(the model was built from '{config_path}' and the 6 ids of "
        f"'{vocab_path}')"
    )


@needs_data
def test_a_run_that_cannot_start_leaves_nothing(trained_run, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be.", "utf-8")
    config = {**trained_run["config"], "text_file": str(short)}
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="training text is too short"):
        training.train(config, run_dir, verbose=0)
    assert not run_dir.exists() or not list(run_dir.iterdir())
    subword = {**config, "tokenizer": "sentencepiece", "vocabulary_size": 9}
    with pytest.raises(ValueError) as info:
        training.train(subword, run_dir, verbose=0)
    assert str(info.value) == (
        "Config key `vocabulary_size` must be at least 13 for this training "
        "text: a unit for each of its characters and the special tokens. "
        "Received: vocabulary_size=9"
    )


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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--temperature", "-1"], "`temperature` must be a finite number"),
        (["--temperature", "inf"], "`temperature` must be a finite number"),
        (
            ["--method", "greedy", "--temperature", "0.5"],
            "Argument `temperature` shapes sampling, and method='greedy' "
            "does not sample. Received: temperature=0.5",
        ),
    ],
)
def test_cli_bad_temperature_exits_with_message(flags, message, capsys):
    argv = ["generate", "--run-dir", "/nonexistent", *flags]
    assert cli.run(cli_main.main, argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, expected",
    [
        (None, ["train", "evaluate", "generate", "export"]),
        ("train", ["--config", "--tokenizer", "sentencepiece", "--set"]),
        ("generate", ["--method", "--top-p", "--seed", "--no-stream"]),
        ("export", ["--export-dir", "--overwrite"]),
    ],
)
def test_cli_help(command, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main.make_parser().parse_args([command or "--help", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for word in expected:
        assert word in text


@needs_data
def test_cli_generate_streams_what_generate_text_returns(
    trained_run, capsys, caplog
):
    vocab, sampler = trained_run["vocabulary"], trained_run["sampler"]
    (expected,) = generation.generate_text(
        sampler, vocab, ["KING:"], 19, 0.8, seed=4
    )
    argv = ["generate", "--run-dir", str(trained_run["dir"]), "--prompt"]
    argv += ["KING:", "--num-new-tokens", "19", "--temperature", "0.8"]
    argv += ["--seed", "4"]
    for extra in ([], ["--no-stream"]):
        assert cli.run(cli_main.main, argv + extra) == 0
        assert capsys.readouterr().out == expected + "\n"
    # Characters the model never saw are worth a warning.
    argv[argv.index("KING:")] = "\u00e9t\u00e9"
    with caplog.at_level("WARNING"):
        assert cli.run(cli_main.main, argv) == 0
    assert "2 unit(s) of the prompt never occur" in caplog.text
    argv = ["generate", "--run-dir", str(trained_run["dir"]), "--top-k"]
    assert cli.run(cli_main.main, argv + ["2", "--method", "beam"]) == 2
    assert "does not sample" in capsys.readouterr().err


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
import sys
# Only TensorFlow (and tensorflow-text) may load the export; the project
# and keras-hub are blocked, and Keras too unless tensorflow-text (which
# imports it itself) is needed.
blocked = ["keras_hub", "skipseq", "recipes"]
if sys.argv[2] != "text":
    blocked.append("keras")
for name in blocked:
    sys.modules[name] = None
import tensorflow as tf
if sys.argv[2] == "text":
    import tensorflow_text
generate = tf.saved_model.load(sys.argv[1]).signatures["generate"]
prompts = tf.constant(["ROMEO:", ""])
for t in (0.0, 0.9):
    out = generate(prompts=prompts, num_new_tokens=tf.constant(11),
                   temperature=tf.constant(t), seed=tf.constant(7))
    for text in out["text"].numpy():
        print(repr(text.decode("utf-8")))
out = generate(prompts=prompts, num_new_tokens=tf.constant(0),
               temperature=tf.constant(1.0), seed=tf.constant(7))
print([text.decode("utf-8") for text in out["text"].numpy()])
# Each bad argument fails with a message that names it.
for name, bad in [("temperature", dict(temperature=tf.constant(-1.0))),
                  ("num_new_tokens", dict(num_new_tokens=tf.constant(-3))),
                  ("prompts", dict(prompts=tf.constant([], tf.string)))]:
    arguments = dict(prompts=prompts, num_new_tokens=tf.constant(3),
                     temperature=tf.constant(1.0), seed=tf.constant(7))
    try:
        generate(**{**arguments, **bad})
    except tf.errors.InvalidArgumentError as error:
        print(f"Argument `{name}`" in error.message)
"""


def reload_export(path, cwd, needs_text=False):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), "text" * needs_text],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split("\n")[:8]


def expected_reload(decoder, vocabulary):
    expected = []
    for t in (0.0, 0.9):
        expected += generation.generate_text(
            decoder, vocabulary, ["ROMEO:", ""], 11, t, seed=7
        )
    return [repr(t) for t in expected] + ["['ROMEO:', '']"] + ["True"] * 3


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
    assert reload_export(path, tmp_path) == expected_reload(
        trained_run["sampler"], trained_run["vocabulary"]
    )


@pytest.fixture(scope="module")
def subword_rnn_run(tmp_path_factory):
    """A tiny GRU on SentencePiece units, trained on 20k characters."""
    root, text_file, _ = write_slice(tmp_path_factory, "subword")
    config = {
        **DEFAULTS,
        **TINY,
        "model": "gru",
        "tokenizer": "sentencepiece",
        "vocabulary_size": 200,
        "text_file": str(text_file),
    }
    report = training.train(config, root / "run", verbose=0)
    return root / "run", report, text_file.read_text("utf-8")


@needs_data
def test_subword_rnn_trains_and_reports_per_character(subword_rnn_run):
    run_dir, report, text = subword_rnn_run
    config, vocab, model = training.load_run(run_dir)
    assert isinstance(vocab, SubwordVocabulary)
    assert report["tokenizer"] == "sentencepiece"
    val_text = text[18000:]
    # Pieces span characters, so a character costs less than a token.
    tokens = report["val_tokens"]
    assert tokens == len(vocab.encode(val_text)) - 1
    np.testing.assert_allclose(
        report["val_loss_nats_per_char"],
        report["val_loss_nats_per_token"]
        * len(vocab.encode(val_text))
        / len(val_text),
        rtol=1e-3,
    )
    untrained = training.build_model(config, vocab.size)
    before = training.evaluate_model(untrained, vocab, val_text, config)
    assert report["val_loss_nats_per_char"] < (
        before["val_loss_nats_per_char"] - 0.3
    )


@needs_data
def test_subword_rnn_export_reloads_with_tensorflow_text(
    subword_rnn_run, tmp_path
):
    run_dir = subword_rnn_run[0]
    config, vocab, model = training.load_run(run_dir)
    path = export(model, vocab, config, tmp_path / "exported")
    chunk = config["chunk_length"]
    sampler = generation.ChunkDecoder(
        model, config["context_length"] - chunk, chunk
    )
    # 11 new tokens: two chunks, the second from the carried states.
    assert reload_export(path, tmp_path, needs_text=True) == (
        expected_reload(sampler, vocab)
    )
