"""The `skipseq` console script dispatches to the recipes' command lines."""

import importlib.metadata
import pathlib
import subprocess
import sys

from recipes import cli


def test_entry_point_is_the_dispatcher():
    # setup.cfg names `recipes.cli:main`; the installed metadata must load.
    (script,) = importlib.metadata.entry_points(
        group="console_scripts", name="skipseq"
    )
    assert script.load() is cli.main


def test_help_and_unknown_recipe(capsys):
    assert cli.main(["--help"]) == 0
    assert "translation" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert "usage: skipseq" in capsys.readouterr().err
    assert cli.main(["translate"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown recipe 'translate'; choose one of translation, "
        "text-generation, depth-study.\n"
    )


def test_recipe_errors_come_through(tmp_path, capsys):
    argv = ["translation", "train", "--set", "no_such_key=1"]
    assert cli.main(argv) == 2
    assert "no_such_key" in capsys.readouterr().err
    gone = tmp_path / "gone"
    for name in ("text-generation", "text_generation"):
        assert cli.main([name, "evaluate", "--run-dir", str(gone)]) == 2
        assert f"No trained run in '{gone}'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_installed_script_runs():
    script = pathlib.Path(sys.executable).parent / "skipseq"
    result = subprocess.run(
        [str(script), "depth-study", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "--transformer-depths" in result.stdout
