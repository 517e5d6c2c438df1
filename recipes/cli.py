"""The `skipseq` console script: one entry point for every recipe.

```
skipseq translation train --config translation_transformer
skipseq text-generation generate --run-dir runs/lm --prompt "ROMEO:"
skipseq depth-study --quick
```

Each recipe is the same command as `python -m recipes.<recipe>`, with
the same flags and `--help` (whose usage line names the module form).
"""

import importlib
import os
import sys

# Command name -> (module, function taking argv and returning the status).
RECIPES = {
    "translation": ("recipes.translation.__main__", None),
    "text-generation": ("recipes.text_generation.__main__", None),
    "depth-study": ("recipes.depth_study.__main__", "cli_main"),
}

USAGE = """\
usage: skipseq {translation,text-generation,depth-study} ...

Run a skipseq recipe; `skipseq RECIPE --help` lists its commands.

  translation      train, evaluate, translate and export translation models
  text-generation  train, evaluate, generate and export language models
  depth-study      train residual and plain stacks of growing depth
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    # `text_generation` as in the module name works too.
    name = argv[0].replace("_", "-")
    if name not in RECIPES:
        print(
            f"error: unknown recipe {argv[0]!r}; choose one of "
            f"{', '.join(RECIPES)}.",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module_name, function = RECIPES[name]
    module = importlib.import_module(module_name)
    if function is not None:
        return getattr(module, function)(argv[1:])
    from recipes.common import cli

    return cli.run(module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
