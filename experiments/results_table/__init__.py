"""The results table of experiments/README.md, generated from the experiments' results files,
and the markdown sections the experiments write, copied into it
(``python -m experiments.results_table``)."""

from experiments.results_table.rows import COLUMNS, NO_PROVENANCE, Row
from experiments.results_table.table import (
    BEGIN,
    END,
    INCLUDE_END,
    SOURCES,
    diff,
    generate,
    render,
    splice,
    splice_includes,
)

__all__ = [
    "BEGIN",
    "COLUMNS",
    "END",
    "INCLUDE_END",
    "NO_PROVENANCE",
    "Row",
    "SOURCES",
    "diff",
    "generate",
    "render",
    "splice",
    "splice_includes",
]
