"""The results table of experiments/README.md, generated from the experiments' results files
(``python -m experiments.results_table``)."""

from experiments.results_table.rows import COLUMNS, NO_PROVENANCE, Row
from experiments.results_table.table import BEGIN, END, SOURCES, diff, generate, render, splice

__all__ = [
    "BEGIN",
    "COLUMNS",
    "END",
    "NO_PROVENANCE",
    "Row",
    "SOURCES",
    "diff",
    "generate",
    "render",
    "splice",
]
