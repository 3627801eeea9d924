"""The GFN2-xTB twin of 3BPA: relabelled MD sets and beta = 120/150/180 dihedral scans.

Run ``python -m experiments.xtb_data --out data/3bpa_xtb``; the logic is :func:`generate.run`.
"""

from experiments.xtb_data.generate import Config, Summary, run

__all__ = ["Config", "Summary", "run"]
