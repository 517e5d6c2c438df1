"""The depth study's outputs: JSON, CSV, a Markdown table and PNG plots.

Every file is written through a temporary file and a rename, so a reader
(or a crash) never sees half a file.
"""

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import tempfile

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recipes.common.files import TEMP_PREFIX, atomic_write_text
from recipes.depth_study.study import as_array

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
TABLE_MD = "table.md"
VAL_LOSS_PNG = "val_loss.png"
GRAD_RATIO_PNG = "grad_ratio.png"
GRAD_PROFILE_PNG = "grad_profile.png"
OUTPUT_FILES = (
    RESULTS_JSON,
    RESULTS_CSV,
    TABLE_MD,
    VAL_LOSS_PNG,
    GRAD_RATIO_PNG,
    GRAD_PROFILE_PNG,
)
CSV_COLUMNS = (
    "family",
    "variant",
    "depth",
    "parameters",
    "steps",
    "tokens",
    "final_val_loss",
    "final_train_loss",
    "trains",
    "grad_ratio_init",
    "grad_ratio_trained",
    "input_grad_ratio_init",
    "input_grad_ratio_trained",
    "seconds",
)


def families(records):
    """`{family: {variant: [records by depth]}}` in first-seen order."""
    grouped = {}
    for record in records:
        variants = grouped.setdefault(record["family"], {})
        variants.setdefault(record["variant"], []).append(record)
    for variants in grouped.values():
        for runs in variants.values():
            runs.sort(key=lambda r: r["depth"])
    return grouped


def _number(value, digits):
    if value is None or not math.isfinite(value):
        return "nan"
    if digits == "g":
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def markdown_table(results):
    """The results as Markdown: one loss and one ratio table per family."""
    lines = [
        "# Depth study",
        "",
        f"Unigram entropy of the training characters: "
        f"{results['unigram_entropy']:.4f} nats/char.",
        f"Trains: {results['trains_definition']}.",
        "",
    ]
    deepest = results["deepest_trained"]
    for family, variants in families(results["runs"]).items():
        depths = sorted({r["depth"] for v in variants.values() for r in v})
        head = "| variant | " + " | ".join(f"L={d}" for d in depths)
        rule = "|---|" + "---:|" * len(depths)

        lines += [
            f"## {family}: final validation loss (nats/char; "
            "`x` = does not train)",
            "",
            head + " | deepest that trains |",
            rule + "---:|",
        ]
        for variant, runs in variants.items():
            by_depth = {r["depth"]: r for r in runs}
            cells = []
            for depth in depths:
                run = by_depth.get(depth)
                if run is None:
                    cells.append("")
                    continue
                mark = "" if run["trains"] else " x"
                cells.append(_number(run["final_val_loss"], 3) + mark)
            best = deepest.get(f"{family}/{variant}")
            best = "none" if best is None else str(best)
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {best} |")

        lines += [
            "",
            f"## {family}: first / last block gradient norm "
            "(at initialisation -> after training)",
            "",
            head + " |",
            rule,
        ]
        for variant, runs in variants.items():
            by_depth = {r["depth"]: r for r in runs}
            cells = []
            for depth in depths:
                run = by_depth.get(depth)
                if run is None:
                    cells.append("")
                    continue
                cells.append(
                    _number(run["grad_ratio_init"], "g")
                    + " -> "
                    + _number(run["grad_ratio_trained"], "g")
                )
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _csv_cell(value):
    """A plain CSV value: empty for None (NaN), lower-case booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # str of a float is its shortest round-tripping form.
    return str(value)


def csv_text(records):
    """One row per run, `CSV_COLUMNS` in order, plain CSV values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([_csv_cell(record[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _csv_value(column, text):
    if text == "":
        return None
    if column in ("family", "variant"):
        return text
    if column == "trains":
        return text == "true"
    if column in ("depth", "parameters", "steps", "tokens"):
        return int(text)
    return float(text)


def read_csv(path):
    """The rows of `results.csv` as dicts of Python values."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {k: _csv_value(k, v) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def atomic_save_figure(figure, path):
    """Save a PNG through a temporary file in the same folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(
        prefix=TEMP_PREFIX + path.name, suffix=".png", dir=path.parent
    )
    os.close(handle)
    try:
        figure.savefig(temp, dpi=100, format="png")
        # mkstemp makes the file private; results are for everyone to read.
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    return path


def _panels(count, height=4):
    figure = Figure(figsize=(5.5 * count, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, count, squeeze=False)[0]


def plot_val_loss(results, path):
    """Final validation loss against depth, one line per variant."""
    grouped = families(results["runs"])
    figure, axes = _panels(len(grouped))
    for ax, (family, variants) in zip(axes, grouped.items(), strict=True):
        for variant, runs in variants.items():
            depths = [r["depth"] for r in runs]
            losses = as_array([r["final_val_loss"] for r in runs])
            ax.plot(depths, losses, marker="o", label=variant)
        ax.axhline(
            results["unigram_entropy"],
            color="grey",
            linestyle=":",
            label="unigram entropy",
        )
        ax.axhline(
            results["threshold"],
            color="black",
            linestyle="--",
            label="trains below",
        )
        _depth_axis(ax, variants)
        ax.set_ylabel("final validation loss (nats/char)")
        ax.set_title(f"{family}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return atomic_save_figure(figure, path)


def _depth_axis(ax, variants):
    """A log2 depth axis labelled with the depths that were run."""
    depths = sorted({r["depth"] for runs in variants.values() for r in runs})
    ax.set_xscale("log", base=2)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("depth (blocks)")


def plot_grad_ratio(results, path):
    """First / last block gradient norm against depth, init and trained."""
    grouped = families(results["runs"])
    figure, axes = _panels(len(grouped))
    for ax, (family, variants) in zip(axes, grouped.items(), strict=True):
        for index, (variant, runs) in enumerate(variants.items()):
            color = f"C{index}"
            depths = [r["depth"] for r in runs]
            for key, style, when in (
                ("grad_ratio_init", "-", "init"),
                ("grad_ratio_trained", "--", "trained"),
            ):
                ratios = as_array([r[key] for r in runs])
                ratios = np.where(ratios > 0, ratios, np.nan)
                ax.plot(
                    depths,
                    ratios,
                    style,
                    color=color,
                    marker="o",
                    label=f"{variant} ({when})",
                )
        ax.axhline(1.0, color="grey", linestyle=":")
        _depth_axis(ax, variants)
        ax.set_yscale("log")
        ax.set_ylabel("||grad first block|| / ||grad last block||")
        ax.set_title(f"{family}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
    return atomic_save_figure(figure, path)


def plot_grad_profile(results, path):
    """Gradient norm per block of the deepest run of each variant."""
    grouped = families(results["runs"])
    figure, axes = _panels(len(grouped))
    for ax, (family, variants) in zip(axes, grouped.items(), strict=True):
        for index, (variant, runs) in enumerate(variants.items()):
            run = runs[-1]
            for key, style, when in (
                ("grad_norm_init", "-", "init"),
                ("grad_norm_trained", "--", "trained"),
            ):
                values = as_array(run[key])
                values = np.where(values > 0, values, np.nan)
                ax.plot(
                    np.arange(len(values)),
                    values,
                    style,
                    color=f"C{index}",
                    label=f"{variant} L={run['depth']} ({when})",
                )
        ax.set_yscale("log")
        ax.set_xlabel("block (0 = first)")
        ax.set_ylabel("weight gradient norm")
        ax.set_title(f"{family}: deepest run per variant")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
    return atomic_save_figure(figure, path)


def write_all(results, output_dir):
    """Write the JSON, CSV, Markdown and PNG files; return their paths."""
    output_dir = pathlib.Path(output_dir)
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    paths = {
        "json": atomic_write_text(output_dir / RESULTS_JSON, text),
        "csv": atomic_write_text(
            output_dir / RESULTS_CSV, csv_text(results["runs"])
        ),
        "table": atomic_write_text(
            output_dir / TABLE_MD, markdown_table(results)
        ),
    }
    if results["runs"]:
        paths["val_loss"] = plot_val_loss(results, output_dir / VAL_LOSS_PNG)
        paths["grad_ratio"] = plot_grad_ratio(
            results, output_dir / GRAD_RATIO_PNG
        )
        paths["grad_profile"] = plot_grad_profile(
            results, output_dir / GRAD_PROFILE_PNG
        )
    return paths
