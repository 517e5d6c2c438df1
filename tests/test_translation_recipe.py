"""End-to-end tests of the translation recipe on a slice of Multi30k.

One tiny Transformer is trained once per module (a few hundred sentence
pairs, a dozen steps) and shared by the tests that only read it.
"""

import io
import json
import pathlib
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.common import config as configs
from recipes.common import tokenizer as subwords
from recipes.common import training
from recipes.translation import __main__ as cli_main
from recipes.translation import data, export, models, recipe, search
from recipes.translation.config import DEFAULTS
from skipseq import data as skipseq_data
from skipseq import decoding
from tests.recipe_test_utils import StopAt

TINY = "translation_tiny"
ODD_INPUTS = [
    "",
    " ".join(["A dog runs through the grass."] * 20),
    "日本語のテキスト ☃ Ω≈ç√",
    "Two dogs play in the snow.",
]


def multi30k_available():
    try:
        skipseq_data.get_path("multi30k", "train", "en", download=False)
        skipseq_data.get_path("multi30k", "train", "de", download=False)
    except (skipseq_data.SkipseqDataError, FileNotFoundError):
        return False
    return True


pytestmark = pytest.mark.skipif(
    not multi30k_available(),
    reason="Multi30k not found offline (set SKIPSEQ_DATA_DIR)",
)


def tiny_config(*overrides):
    return configs.load_config(TINY, DEFAULTS, overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny_run")
    result = recipe.train(tiny_config(), run_dir, verbose=0)
    translator = recipe.Translator.from_run_dir(run_dir)
    return run_dir, result, translator


def test_tiny_model_loss_falls(trained):
    run_dir, result, _ = trained
    losses = result["history"]["loss"]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 0.2
    assert result["steps"] == 12 and result["initial_epoch"] == 0
    saved = sorted(p.name for p in run_dir.iterdir())
    assert saved == [
        "config.json",
        "model.weights.h5",
        "training.json",
        "vocab.txt",
    ]


def test_beam_size_one_equals_greedy(trained):
    _, _, translator = trained
    model = translator.model
    source = translator.encode(["A man rides a bike.", "Two dogs.", ""])
    length = translator.config["max_decode_length"]
    start = tf.fill([3], subwords.BOS_ID)
    state = model.initial_state(source, length)
    greedy = decoding.greedy_search(
        model.step, start, state, length, end_token=subwords.EOS_ID
    )
    beam, _ = decoding.beam_search(
        model.step, start, state, length, subwords.EOS_ID, beam_size=1
    )
    np.testing.assert_array_equal(beam[:, 0].numpy(), greedy.numpy())
    compiled = search.make_search_fn(model, length, beam_size=1)(source)
    np.testing.assert_array_equal(compiled.numpy(), greedy.numpy())


def test_bad_inputs_give_strings(trained):
    _, _, translator = trained
    outputs = translator.translate(ODD_INPUTS)
    assert len(outputs) == len(ODD_INPUTS)
    assert all(isinstance(s, str) for s in outputs)
    assert translator.translate([]) == []


def test_export_reloads_in_fresh_process(trained, tmp_path, monkeypatch):
    run_dir, _, translator = trained
    expected = translator.translate(ODD_INPUTS)
    target = tmp_path / "export"
    export.export(translator, target)
    assert "import tensorflow_text" in (target / "README.txt").read_text()

    # Only the moved export is left for the fresh process to load.
    moved = tmp_path / "moved" / "translator"
    moved.parent.mkdir()
    shutil.move(target, moved)
    received, modules = export.translate_in_subprocess(moved, ODD_INPUTS)
    assert received == expected
    assert modules == []
    # A path relative to the working directory, as `make demo` passes it.
    monkeypatch.chdir(tmp_path)
    relative = pathlib.Path("moved", "translator")
    received, _ = export.translate_in_subprocess(relative, ODD_INPUTS[:1])
    assert received == expected[:1]
    # Exporting leaves the in-process translator working.
    assert translator.translate(ODD_INPUTS) == expected

    # An existing export is never replaced without overwrite.
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export(translator, moved)
    assert (moved / "saved_model.pb").exists()
    assert not [p for p in moved.parent.iterdir() if p.name != "translator"]


def test_evaluate_reports_sacrebleu(trained):
    run_dir, _, translator = trained
    report = recipe.evaluate(translator, translator.config, run_dir)
    written = json.loads((run_dir / recipe.REPORT_FILE).read_text())
    hyps = [e["hypothesis"] for e in written["examples"]]
    refs = [e["reference"] for e in written["examples"]]
    assert written["num_sentences"] == 16
    assert written["training"]["steps"] == 12
    assert written["config"]["model"] == "transformer"
    assert report["bleu"] == pytest.approx(written["bleu"])
    all_refs = skipseq_data.load_multi30k("test_2016_flickr")[1][:16]
    assert refs == all_refs[:5]
    assert hyps == translator.translate(
        skipseq_data.load_multi30k("test_2016_flickr")[0][:5]
    )
    (run_dir / recipe.REPORT_FILE).unlink()


def test_cli_translate_streams_lines(trained, tmp_path, capsys):
    run_dir, _, translator = trained
    lines = ["A man.", "", "Two dogs play."]
    path = tmp_path / "input.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["translate", str(path), "--output-dir", str(run_dir)]
    assert cli_main.main(args + ["--batch-lines", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == translator.translate(lines)


def test_train_never_clobbers_a_finished_run(trained):
    run_dir, _, _ = trained
    before = (run_dir / training.WEIGHTS_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a trained"):
        recipe.train(tiny_config(), run_dir)
    assert (run_dir / training.WEIGHTS_FILE).read_bytes() == before


def test_interrupted_run_resumes(trained, tmp_path):
    source_run, _, _ = trained
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Reuse the learned vocabulary instead of learning it again.
    shutil.copy(source_run / "vocab.txt", run_dir / "vocab.txt")
    config = tiny_config("jit_compile=false", "validation_steps=0")
    with pytest.raises(KeyboardInterrupt):
        recipe.train(config, run_dir, callbacks=[StopAt(6)], verbose=0)
    assert not (run_dir / training.WEIGHTS_FILE).exists()
    meta = json.loads(
        (run_dir / "backup" / "training_metadata.json").read_text()
    )
    assert meta["epoch"] == 1  # epoch 0 (steps 1-4) was backed up

    # A different configuration may not resume this run.
    with pytest.raises(configs.ConfigError, match="learning_rate"):
        recipe.train(
            tiny_config("jit_compile=false", "learning_rate=0.1"), run_dir
        )

    result = recipe.train(config, run_dir, verbose=0)
    assert result["initial_epoch"] == 1
    assert result["steps"] == 12  # 4 restored + 8 new
    assert len(result["history"]["loss"]) == 2
    assert (run_dir / training.WEIGHTS_FILE).exists()
    assert not (run_dir / "backup").exists()


def test_missing_run_files_are_named(trained, tmp_path):
    source_run, _, _ = trained
    with pytest.raises(FileNotFoundError, match="nowhere"):
        recipe.Translator.from_run_dir(tmp_path / "nowhere")

    run_dir = tmp_path / "partial"
    run_dir.mkdir()
    with pytest.raises(configs.ConfigError, match="config.json"):
        recipe.Translator.from_run_dir(run_dir)
    shutil.copy(source_run / "config.json", run_dir / "config.json")
    with pytest.raises(subwords.VocabularyError, match="vocab.txt"):
        recipe.Translator.from_run_dir(run_dir)
    shutil.copy(source_run / "vocab.txt", run_dir / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="model.weights.h5"):
        recipe.Translator.from_run_dir(run_dir)
    (run_dir / "model.weights.h5").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.weights.h5.*corrupt"):
        recipe.Translator.from_run_dir(run_dir)


@pytest.mark.parametrize("flag", ["--output-dir", "--run-dir"])
@pytest.mark.parametrize(
    "command", ["train", "evaluate", "translate", "export"]
)
def test_cli_run_directory_takes_either_name(command, flag):
    # The text-generation recipe says --run-dir; both names work here too.
    args = cli_main._parser().parse_args([command, flag, "runs/x"])
    assert args.output_dir == "runs/x"


def test_cli_errors_name_file_or_key(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    cases = [
        (["train", "--config", str(tmp_path / "none.json")], "none.json"),
        (["train", "--config", str(bad)], "bad.json"),
        (["train", "--set", "no_such_key=1"], "no_such_key"),
        (["evaluate", "--output-dir", str(tmp_path / "gone")], "gone"),
        # Neither is checked late, after the data and vocabulary are built.
        (
            ["train", "--reverse", "--train-corpus", "mine.tsv"],
            "--reverse swaps the languages of the dataset",
        ),
        (
            ["train", "--output-dir", str(tmp_path / "run")]
            + ["--max-train-seconds", "-5"],
            "`max_train_seconds` must be null or a number >= 0",
        ),
    ]
    for argv, name in cases:
        assert cli_main.cli.run(cli_main.main, argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and name in error
    assert list(tmp_path.iterdir()) == [bad]


def test_evaluate_help_lists_every_search_key(capsys):
    with pytest.raises(SystemExit):
        cli_main._parser().parse_args(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in recipe.SEARCH_KEYS:
        assert key in text.split("--set KEY=VALUE")[-1]


def test_time_limit_values():
    for seconds in (None, 0, 0.5, 5400):
        recipe.check_time_limit({"max_train_seconds": seconds})
    for seconds in (-1, "1h", True):
        with pytest.raises(configs.ConfigError) as info:
            recipe.check_time_limit({"max_train_seconds": seconds})
        assert str(info.value) == (
            "Config key `max_train_seconds` must be null or a number >= 0 "
            "(null or 0: no limit). Received: "
            f"max_train_seconds={seconds!r}"
        )


def test_trained_run_allows_only_search_overrides(trained):
    run_dir, _, _ = trained
    config = recipe.load_run_config(run_dir, ["beam_size=1"])
    assert config["beam_size"] == 1
    with pytest.raises(configs.ConfigError) as info:
        recipe.load_run_config(run_dir, ["hidden_dim=3"])
    message = str(info.value)
    assert message.startswith(
        "Config key `hidden_dim` is fixed by the trained run ("
    )
    assert "config.json" in message and "'hidden_dim=3'" in message
    cases = [
        ("beam_size=0", "Config key `beam_size` must be an integer >= 1"),
        ("eval_batch_size=0", "`eval_batch_size` must be an integer >= 1"),
        ("max_decode_length=1", "`max_decode_length` must be at least 2"),
        ("max_decode_length=99", "at most max_length (= 24)"),
    ]
    for override, expected in cases:
        with pytest.raises(configs.ConfigError, match=re.escape(expected)):
            recipe.load_run_config(run_dir, [override])
    # Checked before training, not after it.
    with pytest.raises(configs.ConfigError, match="beam_size=0"):
        recipe.train(tiny_config("beam_size=0"), run_dir / "never")
    assert not (run_dir / "never").exists()


def test_cli_input_errors_name_the_input(
    trained, tmp_path, monkeypatch, capsys
):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"A dog.\nCaf\xe9\n")
    with pytest.raises(ValueError) as info:
        list(cli_main._read_lines(str(bad)))
    assert str(info.value) == (
        f"Input file '{bad}' is not UTF-8 text: line 2 has the byte b'\\xe9'."
    )
    with pytest.raises(ValueError, match="cannot be read: Is a directory"):
        list(cli_main._read_lines(str(tmp_path)))
    stdin = io.TextIOWrapper(io.BytesIO("\n\U0001f600\n\xff".encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert list(cli_main._read_lines("-")) == ["", "\U0001f600", "\xff"]
    stdin = io.TextIOWrapper(io.BytesIO(b"ok\n\xff\n"))
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(ValueError, match="from standard input.*line 2"):
        list(cli_main._read_lines("-"))

    run_dir, _, _ = trained
    argv = ["translate", str(bad), "--output-dir", str(run_dir)]
    assert cli_main.cli.run(cli_main.main, argv + ["--batch-lines", "0"]) == 2
    assert capsys.readouterr().err == (
        "error: Argument --batch-lines must be >= 1. "
        "Received: --batch-lines=0\n"
    )


def test_export_never_replaces_other_folders(trained, tmp_path, capsys):
    run_dir, _, _ = trained
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for target in (mine, run_dir):
        before = sorted(p.name for p in target.iterdir())
        argv = ["export", "--output-dir", str(run_dir)]
        argv += ["--export-dir", str(target), "--overwrite"]
        assert cli_main.cli.run(cli_main.main, argv) == 2
        error = capsys.readouterr().err
        assert error == (
            f"error: '{target}' exists and is not an earlier export (it "
            "has no saved_model.pb); it is never replaced, even with "
            "--overwrite. Choose another folder.\n"
        )
        assert sorted(p.name for p in target.iterdir()) == before


def test_help_explains_every_flag(capsys):
    for command in ("train", "evaluate", "translate", "export"):
        with pytest.raises(SystemExit):
            cli_main.main([command, "--help"])
        text = capsys.readouterr().out
        assert "--output-dir" in text
    with pytest.raises(SystemExit):
        cli_main.main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--max-train-seconds", "--strategy", "--reverse", "--set"):
        assert flag in text


def test_user_corpus_from_tsv_or_two_files(tmp_path):
    (tmp_path / "train.tsv").write_text(
        "Hello .\tHallo .\nA dog\tEin Hund\n", encoding="utf-8"
    )
    (tmp_path / "src.txt").write_text("One\nTwo\nThree\n", encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("Eins\nZwei\nDrei\n", encoding="utf-8")
    tsv = tiny_config(f"train_corpus={tmp_path / 'train.tsv'}")
    assert data.load_pairs(tsv, "train") == (
        ["Hello .", "A dog"],
        ["Hallo .", "Ein Hund"],
    )
    files = json.dumps([str(tmp_path / "src.txt"), str(tmp_path / "tgt.txt")])
    pair = tiny_config(f"test_corpus={files}", "max_eval_examples=2")
    assert data.load_pairs(pair, "test") == (["One", "Two"], ["Eins", "Zwei"])
    missing = tiny_config(f"valid_corpus={tmp_path / 'nope.tsv'}")
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        data.load_pairs(missing, "valid")
    bad = tiny_config("train_corpus=[1, 2, 3]")
    with pytest.raises(ValueError, match="train_corpus=\\[1, 2, 3\\]"):
        data.load_pairs(bad, "train")


def test_reverse_flag_swaps_languages(tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, run_dir, overwrite=False):
        seen.update(config)
        raise FileExistsError("stop here")

    monkeypatch.setattr(recipe, "train", fake_train)
    argv = ["train", "--reverse", "--output-dir", str(tmp_path / "run")]
    assert cli_main.cli.run(cli_main.main, argv) == 2
    assert (seen["source_lang"], seen["target_lang"]) == ("de", "en")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=transformer"],
        ["residual=post", "num_encoder_layers=2"],
        ["residual=deepnorm", "num_decoder_layers=2"],
        ["residual=rezero", "position=sinusoidal"],
        ["model=rnn"],
        ["model=rnn", "cell_type=gru", "num_encoder_layers=1"],
    ],
    ids=["pre", "post", "deepnorm", "rezero", "lstm", "gru"],
)
def test_cached_step_equals_full_forward(overrides):
    """Teacher-forced logits equal the incremental decoder's logits."""
    keras.utils.set_random_seed(0)
    config = tiny_config(*overrides)
    model = recipe.build_model(config, 30, 40)
    source = np.array([[5, 6, 7, 3, 0], [8, 3, 0, 0, 0]], "int32")
    target = np.array([[2, 9, 10, 11], [2, 12, 13, 14]], "int32")
    full = model({"source": source, "target_in": target})
    state = model.initial_state(source, 4)
    for index in range(4):
        logits, state = model.step(target[:, index], state, index)
        np.testing.assert_allclose(
            logits.numpy(), full[:, index].numpy(), atol=1e-4
        )


def test_model_argument_errors():
    with pytest.raises(ValueError, match="residual='prenorm'"):
        models.TransformerTranslator(10, 10, 8, residual="prenorm")
    with pytest.raises(ValueError, match="share_embeddings=True"):
        models.TransformerTranslator(10, 12, 8, share_embeddings=True)
    with pytest.raises(ValueError, match="cell_type='rnn'"):
        models.RNNTranslator(10, 10, 8, cell_type="rnn")
    with pytest.raises(configs.ConfigError, match="model='cnn'"):
        recipe.build_model(tiny_config("model=cnn"), 10, 10)


def test_docstring_examples():
    import doctest

    from recipes.common import config as config_module
    from recipes.common import distribute, losses, metrics, schedules

    modules = [config_module, distribute, losses, metrics, schedules, models]
    for module in modules:
        result = doctest.testmod(module, extraglobs={"np": np})
        assert result.failed == 0, module.__name__
