"""Diagnostics that measure how skip connections behave in a model."""

from skipseq.diagnostics.monitor import (
    GradientFlowMonitor,
    find_residual_blocks,
    gradient_flow,
)
from skipseq.diagnostics.plots import plot_gradient_flow
from skipseq.diagnostics.records import (
    CSV_COLUMNS,
    QUANTITIES,
    flow_to_logs,
    read_flow_csv,
    write_flow_csv,
)

__all__ = [
    "CSV_COLUMNS",
    "QUANTITIES",
    "GradientFlowMonitor",
    "find_residual_blocks",
    "flow_to_logs",
    "gradient_flow",
    "plot_gradient_flow",
    "read_flow_csv",
    "write_flow_csv",
]
