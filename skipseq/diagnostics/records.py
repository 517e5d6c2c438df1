"""Gradient flow records: Keras log keys, CSV files, TensorBoard events.

A record is the dict `gradient_flow` returns (`"names"`, `"loss"` and one
array per quantity, indexed by depth), plus `"step"` and `"epoch"` when the
monitor made it.
"""

import csv
import math
import os

import numpy as np
import tensorflow as tf

QUANTITIES = (
    "grad_norm",
    "input_grad_norm",
    "branch_ratio",
    "rezero_alpha",
    "gate_mean",
)
CSV_COLUMNS = ("step", "epoch", "block", "name", "loss") + QUANTITIES


def flow_to_logs(flow, digits=2):
    """Flatten a flow dict into Keras log keys like `grad_norm/block_03`.

    Values that do not apply (NaN) are left out, so a block without a
    ReZero scale has no `rezero_alpha/...` key.
    """
    logs = {}
    for quantity in QUANTITIES:
        for depth, value in enumerate(flow[quantity]):
            if not math.isnan(value):
                logs[f"{quantity}/block_{depth:0{digits}d}"] = float(value)
    return logs


def write_flow_csv(path, records, append=False):
    """Write records (flow dicts with `step` and `epoch`) as CSV rows.

    One row per (step, block); columns are `CSV_COLUMNS`.
    """
    new_file = not append or not os.path.exists(path)
    with open(path, "a" if append else "w", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(CSV_COLUMNS)
        for record in records:
            for depth, name in enumerate(record["names"]):
                row = [record["step"], record["epoch"], depth, name]
                row.append(repr(record["loss"]))
                row += [repr(float(record[q][depth])) for q in QUANTITIES]
                writer.writerow(row)


def read_flow_csv(path):
    """Read a file from `write_flow_csv` back into a list of records."""
    records = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            record = records.setdefault(
                step,
                {
                    "step": step,
                    "epoch": int(row["epoch"]),
                    "loss": float(row["loss"]),
                    "names": [],
                    **{q: [] for q in QUANTITIES},
                },
            )
            record["names"].append(row["name"])
            for q in QUANTITIES:
                record[q].append(float(row[q]))
    out = []
    for step in sorted(records):
        record = records[step]
        for q in QUANTITIES:
            record[q] = np.asarray(record[q])
        out.append(record)
    return out


class FlowWriters:
    """CSV and TensorBoard sinks shared by the monitor."""

    def __init__(self, csv_path, log_dir):
        self.csv_path = csv_path
        self.log_dir = log_dir
        self.csv_started = False
        self.summary_writer = None

    def open(self):
        if self.log_dir is not None and self.summary_writer is None:
            self.summary_writer = tf.summary.create_file_writer(self.log_dir)

    def write(self, record):
        if self.csv_path is not None:
            write_flow_csv(self.csv_path, [record], append=self.csv_started)
            self.csv_started = True
        if self.summary_writer is not None:
            with self.summary_writer.as_default():
                for key, value in flow_to_logs(record).items():
                    tf.summary.scalar(key, value, step=record["step"])

    def flush(self):
        if self.summary_writer is not None:
            self.summary_writer.flush()
