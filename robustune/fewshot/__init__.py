"""Few-shot protocols of CoOp / FAP / ER-APT: few-shot, base-to-new and cross-dataset (spec §6).

The data side (K-shot sampling, base / new classes, the CoOp datasets) is in
:mod:`robustune.data.fewshot` and :mod:`robustune.data.coop`.
"""

from robustune.fewshot.protocol import (
    SETTINGS,
    ProtocolRun,
    ProtocolConfig,
    ProtocolError,
    cell_status,
    fewshot_config,
    plan_cells,
    run_cell,
    run_protocol,
)
from robustune.fewshot.table import harmonic_mean, markdown_tables, summarise, write_tables

__all__ = [
    "SETTINGS", "ProtocolRun", "ProtocolConfig", "ProtocolError", "cell_status", "fewshot_config", "harmonic_mean",
    "markdown_tables", "plan_cells", "run_cell", "run_protocol", "summarise", "write_tables",
]
