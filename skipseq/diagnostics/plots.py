"""Plots of gradient flow records (matplotlib, Agg, no global state)."""

import os

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TITLES = {
    "grad_norm": "weight gradient norm",
    "input_grad_norm": "gradient norm at block input",
    "branch_ratio": "||F|| / ||x||",
}


def plot_gradient_flow(
    records, path, quantities=("grad_norm", "input_grad_norm")
):
    """Write a PNG of gradient norm against depth over training.

    One panel per quantity; in each, one line per recorded step, coloured
    by step (viridis, with a colour bar), on a log y axis. Values that are
    zero or NaN leave gaps rather than breaking the log scale.

    A `Figure` with an Agg canvas is used instead of `pyplot`, so the
    plot neither needs a display nor changes the caller's backend.

    Args:
        records: a list of flow dicts, each with `"step"` and one array
            per quantity (as kept in `GradientFlowMonitor.records`).
        path: where to write the image. A suffix that names a format
            (`.png`, `.pdf`, `.svg`, ...) picks it; otherwise a PNG is
            written to exactly `path`, with no suffix added.
        quantities: the quantities to plot, one panel each. Defaults to
            `("grad_norm", "input_grad_norm")`.

    Returns:
        The matplotlib `Figure`.
    """
    if not records:
        raise ValueError(
            f"Argument `records` must hold at least one record. "
            f"Received: records={records!r}"
        )
    unknown = [q for q in quantities if q not in records[0]]
    if not quantities or unknown:
        raise ValueError(
            "Argument `quantities` must name recorded quantities such as "
            f"{list(TITLES)}. Received: quantities={quantities!r}"
        )

    steps = [record["step"] for record in records]
    norm = colors.Normalize(vmin=min(steps), vmax=max(max(steps), 1))
    cmap = colormaps["viridis"]

    figure = Figure(figsize=(5 * len(quantities), 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(quantities), squeeze=False)[0]
    for ax, quantity in zip(axes, quantities, strict=True):
        for record, step in zip(records, steps, strict=True):
            values = np.asarray(record[quantity], "float64")
            # Log axes cannot show zeros; mask them instead of clipping.
            values = np.where(values > 0, values, np.nan)
            depth = np.arange(len(values))
            ax.plot(depth, values, color=cmap(norm(step)), marker=".")
        ax.set_yscale("log")
        ax.set_xlabel("block (depth)")
        ax.set_ylabel(TITLES.get(quantity, quantity))
        ax.set_title(TITLES.get(quantity, quantity))
        ax.grid(True, which="major", alpha=0.3)
    mappable = cm.ScalarMappable(norm=norm, cmap=cmap)
    figure.colorbar(mappable, ax=list(axes), label="training step")
    figure.savefig(path, dpi=100, format=_image_format(figure, path))
    return figure


def _image_format(figure, path):
    """The format named by the suffix of `path`, else `"png"`.

    Without an explicit format, matplotlib appends `.png` to a path with
    no suffix, so the file would not be where the caller looks for it.
    """
    suffix = os.path.splitext(os.fspath(path))[1][1:].lower()
    if suffix in figure.canvas.get_supported_filetypes():
        return suffix
    return "png"
